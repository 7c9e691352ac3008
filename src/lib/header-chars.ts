/**
 * The characters a header field may carry on the wire (RFC 9110 §5.1, §5.5), shared by every head
 * writer (h1-downstream, websocket, h2-downstream) and by translate-time validation of config:
 * - a name is a token: `!#$%&'*+-.^_\`|~`, digits and letters, at least one;
 * - a value is `field-content` or empty: HTAB, SP, VCHAR and obs-text (0x80-0xff), no other CTL
 *   (so no NUL, CR or LF: no response splitting, and nothing node:http2 refuses).
 * In lib/ (pure, no node imports): translate/ validates config with it too.
 */

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;

/** `name` is an RFC 9110 token (a valid field name). */
export function isHeaderName(name: string): boolean {
  return TOKEN.test(name);
}

/** `value` has no character a field value may not carry (CTL other than HTAB, DEL, or a code point above 0xff). */
export function isHeaderValue(value: string): boolean {
  return !BAD_VALUE.test(value);
}

/** Both name and value may go on the wire. */
export function isHeaderField(name: string, value: string): boolean {
  return TOKEN.test(name) && !BAD_VALUE.test(value);
}

/** What is wrong with a field, for a diagnostic; null when nothing. */
export function headerFieldProblem(name: string, value: string | null): string | null {
  if (!TOKEN.test(name)) return `header name ${JSON.stringify(name)} is not an RFC 9110 token`;
  if (value !== null && BAD_VALUE.test(value)) {
    const what = /[^\t\x20-\x7e\x80-\xff]/.exec(value)![0].charCodeAt(0) > 0xff ? 'a character above U+00FF (a header value is bytes: ISO-8859-1 at most)' : 'a control character';
    return `header value ${JSON.stringify(value)} of ${name} has ${what} (only HTAB, SP, visible characters and obs-text are allowed)`;
  }
  return null;
}

/**
 * Fields HTTP/2 carries once (node:http2's single-value set: a repeated one makes `respond` throw
 * ERR_HTTP2_HEADER_SINGLE_VALUE). An HTTP/1 upstream repeating one gets its first value kept.
 */
export const H2_SINGLE_VALUE = new Set([
  'access-control-allow-credentials',
  'access-control-max-age',
  'access-control-request-method',
  'age',
  'authorization',
  'content-encoding',
  'content-language',
  'content-length',
  'content-location',
  'content-md5',
  'content-range',
  'content-type',
  'date',
  'dnt',
  'etag',
  'expires',
  'from',
  'host',
  'if-match',
  'if-modified-since',
  'if-none-match',
  'if-range',
  'if-unmodified-since',
  'last-modified',
  'location',
  'max-forwards',
  'proxy-authorization',
  'range',
  'referer',
  'retry-after',
  'tk',
  'upgrade-insecure-requests',
  'user-agent',
  'x-content-type-options',
]);

/** Connection-specific fields HTTP/2 forbids (RFC 9113 §8.2.2; node:http2 throws on them). `te` is allowed only as `trailers`. */
export const H2_CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'http2-settings']);
