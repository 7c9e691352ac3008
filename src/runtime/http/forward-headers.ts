/**
 * Header rewriting between downstream and upstream: hop-by-hop removal (RFC 9110 §7.6.1), the
 * gateway's forwarding headers, and the response side. Works on flat `[name, value, ...]` arrays
 * with lowercase names, the shape undici and `res.writeHead` take.
 */

import { randomUUID } from 'node:crypto';
import { SERVER_NAME } from './local-reply.js';

/** A client-supplied x-request-id is kept when it is this shape (Envoy keeps any; we bound it). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** What the request-side pass learned besides the header list. */
export interface DownstreamHeaders {
  /** Upstream request headers (lowercase names), without host and forwarding headers yet. */
  headers: string[];
  /** Whether the request has a body (Content-Length or Transfer-Encoding present). */
  hasBody: boolean;
  /** The x-request-id sent upstream (the client's, or generated), for logs and traces. */
  requestId: string;
}

/**
 * One pass over the client's raw headers: drops hop-by-hop headers (plus every name the Connection
 * header lists), `expect` (Node already answered `100-continue`), `host` and the forwarding headers
 * the gateway owns, then appends host, x-forwarded-for/-proto/-host and x-request-id.
 *
 * `te` is kept only as `te: trailers` (RFC 9110 §10.1.4). Transfer-Encoding is dropped because
 * the body is re-framed (undici chunks a stream body without Content-Length). Content-Length is
 * kept as is.
 */
export function buildUpstreamRequestHeaders(
  raw: string[],
  host: string,
  originalAuthority: string,
  scheme: string,
  remoteAddress: string,
): DownstreamHeaders {
  const out: string[] = [];
  let xff: string | null = null;
  let requestId: string | null = null;
  let connection: string | null = null;
  let hasBody = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    // HTTP/2 pseudo-headers (`:method`, `:path`, ...) are not headers; the upstream request gets its own.
    if (name.charCodeAt(0) === 58 /* : */) continue;
    switch (name) {
      case 'host':
      case 'keep-alive':
      case 'proxy-connection':
      case 'upgrade':
      case 'expect':
      case 'http2-settings':
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
        continue;
      case 'connection':
        connection = connection === null ? value : `${connection},${value}`;
        continue;
      case 'transfer-encoding':
        hasBody = true;
        continue;
      case 'content-length':
        hasBody = true;
        break;
      case 'te':
        if (/(?:^|,)\s*trailers\s*(?:;|,|$)/i.test(value)) out.push('te', 'trailers');
        continue;
      case 'x-forwarded-for':
        xff = xff === null ? value : `${xff}, ${value}`;
        continue;
      case 'x-request-id':
        requestId = value;
        continue;
    }
    out.push(name, value);
  }
  if (connection !== null) removeConnectionTokens(out, connection);
  out.push(
    'host', host,
    'x-forwarded-for', xff === null ? remoteAddress : `${xff}, ${remoteAddress}`,
    'x-forwarded-proto', scheme,
    'x-forwarded-host', originalAuthority,
    'x-request-id', (requestId = requestId !== null && REQUEST_ID.test(requestId) ? requestId : randomUUID()),
  );
  return { headers: out, hasBody, requestId };
}

/**
 * The upstream response headers for the client: hop-by-hop removed (and every name listed in
 * Connection), `server` replaced by ours, trailers dropped (HTTP/1.1 trailers are not relayed).
 * Values are decoded as latin1 so their bytes go out unchanged (Node writes heads as latin1).
 */
export function buildDownstreamResponseHeaders(raw: Buffer[]): string[] {
  const out: string[] = [];
  let connection: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toString('latin1').toLowerCase();
    switch (name) {
      case 'connection': {
        const v = raw[i + 1].toString('latin1');
        connection = connection === null ? v : `${connection},${v}`;
        continue;
      }
      case 'keep-alive':
      case 'proxy-connection':
      case 'transfer-encoding':
      case 'upgrade':
      case 'te':
      case 'trailer':
      case 'server':
        continue;
    }
    out.push(name, raw[i + 1].toString('latin1'));
  }
  if (connection !== null) removeConnectionTokens(out, connection);
  out.push('server', SERVER_NAME);
  return out;
}

/** Removes from `headers` every header named in a Connection value (except `close`/`keep-alive`). */
function removeConnectionTokens(headers: string[], connection: string): void {
  // The common values name no header: skip the split.
  const lc = connection.length <= 10 ? connection.toLowerCase() : '';
  if (lc === 'keep-alive' || lc === 'close') return;
  let names: Set<string> | null = null;
  for (const token of connection.split(',')) {
    const t = token.trim().toLowerCase();
    if (t === '' || t === 'close' || t === 'keep-alive') continue;
    (names ??= new Set()).add(t);
  }
  if (names === null) return;
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    if (names.has(headers[r])) continue;
    headers[w] = headers[r];
    headers[w + 1] = headers[r + 1];
    w += 2;
  }
  headers.length = w;
}
