/**
 * Protocol detection for the sidecar's two capture listeners (reference/mesh.md §2.4): what the
 * first bytes a client sends say, as Envoy's listener filters decide it. One rule for both sides
 * (outbound 15001 and inbound 15006), so the same bytes are HTTP on both:
 *
 * - TLS (tls_inspector): a handshake record, `0x16 0x03`; `classify` then parses the ClientHello
 *   for its SNI and ALPN offer (`tcp/client-hello.ts`);
 * - HTTP/2 with prior knowledge: the whole connection preface `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`;
 * - HTTP/1.x (http_inspector, which runs an HTTP/1 parser over the request line): a whole request
 *   line, `METHOD SP request-target SP HTTP/1.0|1.1 CRLF` (a bare LF accepted, RFC 9112 §2.2),
 *   the method being 1-20 upper-case letters, `-` or `_` (every registered method: `GET`,
 *   `PROPFIND`, `MKCALENDAR`...; a lower-case word is some other protocol's command, e.g.
 *   memcached's `get key`);
 * - anything else is opaque: no detection can succeed any more. `need-more` while the bytes so far
 *   are a prefix of something detectable (up to REQUEST_LINE_LIMIT bytes of request line).
 */
import { parseClientHello } from '../tcp/client-hello.js';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Longest method looked at; a longer run of method characters is no method. */
const MAX_METHOD = 20;

/** Longest HTTP/1.x request line waited for (a longer one is opaque). */
export const REQUEST_LINE_LIMIT = 8192;

const VERSION = Buffer.from('HTTP/1.', 'latin1');
const SP = 0x20;
const CR = 0x0d;
const LF = 0x0a;

/** What the bytes so far are, without parsing a ClientHello (`tls` = a TLS handshake record starts). */
export type SniffKind = 'tls' | 'h2' | 'http1' | 'opaque' | 'need-more';

export function sniffKind(b: Buffer): SniffKind {
  if (b.length === 0) return 'need-more';
  if (b[0] === 0x16) return b.length < 2 ? 'need-more' : b[1] === 0x03 ? 'tls' : 'opaque';
  const n = Math.min(b.length, PREFACE.length);
  if (b.compare(PREFACE, 0, n, 0, n) === 0) return b.length >= PREFACE.length ? 'h2' : 'need-more';
  return requestLine(b);
}

/** An HTTP/1.x request line, as far as the bytes go. */
function requestLine(b: Buffer): 'http1' | 'opaque' | 'need-more' {
  const end = Math.min(b.length, REQUEST_LINE_LIMIT);
  const more = b.length >= REQUEST_LINE_LIMIT ? 'opaque' : 'need-more';
  let i = 0;
  while (i < end && i <= MAX_METHOD && isMethodChar(b[i])) i++;
  if (i > MAX_METHOD) return 'opaque';
  if (i === end) return more;
  if (i === 0 || b[i] !== SP) return 'opaque';
  const target = ++i;
  while (i < end && b[i] !== SP && b[i] !== CR && b[i] !== LF) i++;
  if (i === end) return more;
  if (i === target || b[i] !== SP) return 'opaque';
  i++;
  for (let k = 0; k < VERSION.length; k++, i++) {
    if (i === end) return more;
    if (b[i] !== VERSION[k]) return 'opaque';
  }
  if (i === end) return more;
  if (b[i] !== 0x30 && b[i] !== 0x31) return 'opaque';
  if (++i === end) return more;
  if (b[i] === LF) return 'http1';
  if (b[i] !== CR) return 'opaque';
  if (++i === end) return more;
  return b[i] === LF ? 'http1' : 'opaque';
}

function isMethodChar(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || c === 0x2d || c === 0x5f;
}

export type FirstBytes =
  | { kind: 'need-more' }
  | { kind: 'tls'; sni: string; alpn: string[] }
  | { kind: 'h2' }
  | { kind: 'http1' }
  | { kind: 'opaque' };

/** `sniffKind` with the ClientHello parsed: `tls` once its SNI and ALPN offer are known. */
export function classify(data: Buffer): FirstBytes {
  const k = sniffKind(data);
  if (k !== 'tls') return { kind: k };
  const hello = parseClientHello(data);
  if (hello.kind === 'need-more') return hello;
  if (hello.kind === 'sni') return { kind: 'tls', sni: hello.serverName, alpn: hello.alpn };
  if (hello.kind === 'no-sni') return { kind: 'tls', sni: '', alpn: hello.alpn };
  return { kind: 'opaque' };
}
