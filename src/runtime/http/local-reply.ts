/**
 * Responses the gateway generates itself: errors from the catalogue (local-errors.ts), redirects,
 * direct responses and CORS preflights. They all go through `sendLocalReply`, which adds the
 * headers every local reply carries (`server: meshgate`, the route's CORS headers) and records
 * what was sent (status, flag, details, body bytes) for logs and metrics; `sendLocalError` answers
 * gRPC requests with a gRPC status instead of an HTTP error.
 */

import type { Downstream } from './downstream.js';
import { noteLocalReply } from '../../observability/record.js';
import { isGrpcRequest, grpcLocalErrorHeaders } from './grpc.js';
import type { LocalError } from './local-errors.js';
import type { CompiledProxyHeaders } from './proxy-headers.js';

export { Errors, classifyUpstreamError, nginxStatus, TLS_VERIFY_CODES, type LocalError, type ResponseFlag } from './local-errors.js';

/** The server header on every response, proxied or local (Envoy writes `server: istio-envoy`). */
export const SERVER_NAME = 'meshgate';

/** Header carrying the Envoy response flag on locally generated error responses. */
export const FLAGS_HEADER = 'x-meshgate-flags';

/**
 * Headers (name/value pairs) every local reply to this request carries from now on: the CORS
 * headers of the route that matched (Envoy's CORS filter encodes local replies too, so a browser
 * sees the 503 or the redirect instead of a CORS error).
 */
export function addLocalReplyHeaders(d: Downstream, pairs: string[]): void {
  d.replyHeaders = d.replyHeaders === null ? pairs : d.replyHeaders.concat(pairs);
}

/**
 * The one function that writes a local reply: `server` first, then `headers`, then the route's
 * local-reply headers; the record gets `flag`, `details` and the body's length.
 */
export function sendLocalReply(d: Downstream, status: number, headers: string[], body: Buffer | null, flag: string | null, details: string | null): void {
  if (d.headersSent || d.destroyed) return;
  noteLocalReply(d.record, flag, body === null ? 0 : body.length, details);
  // ProxyConfig proxyHeaders (proxy-headers.ts): null unless the proxy's differ from the defaults.
  if (d.proxyHeaders !== null) applyLocalReplyPolicy(headers, d.proxyHeaders);
  const extra = d.replyHeaders;
  if (extra !== null) for (let i = 0; i < extra.length; i++) headers.push(extra[i]);
  d.respond(status, headers, body);
}

/**
 * Answers with a catalogued error: gRPC requests get HTTP 200 with `grpc-status` and
 * `grpc-message` (trailers-only), others the status with a text body and `x-meshgate-flags`.
 * `close`: the connection closes after it and nothing pipelined behind the request is served.
 */
export function sendLocalError(d: Downstream, e: LocalError, close = false): void {
  if (close) d.rejectConnection();
  const headerFlag = e.headerFlag ?? e.flag;
  if (e.alwaysGrpc === true || isGrpcRequest(d)) {
    const h = grpcLocalErrorHeaders(d, e, SERVER_NAME);
    if (headerFlag !== null) h.push(FLAGS_HEADER, headerFlag);
    if (!d.http2) h.push('content-length', '0');
    return sendLocalReply(d, 200, h, null, e.flag, e.details ?? null);
  }
  const fixed = e.headers;
  const h = ['server', SERVER_NAME];
  // An external authorization service's denial brings its own content-type.
  if (fixed == null || !hasName(fixed, 'content-type')) h.push('content-type', 'text/plain');
  h.push('content-length', String(e.body.length));
  if (headerFlag !== null) h.push(FLAGS_HEADER, headerFlag);
  if (fixed != null) for (let i = 0; i < fixed.length; i++) h.push(fixed[i]);
  sendLocalReply(d, e.status, h, e.body, e.flag, e.details ?? null);
}

export function sendRedirect(d: Downstream, status: number, location: string): void {
  sendLocalReply(d, status, ['server', SERVER_NAME, 'location', location, 'content-length', '0'], null, null, null);
}

export function sendDirect(d: Downstream, status: number, contentType: string, body: Buffer, headers: string[] | null): void {
  const h = ['server', SERVER_NAME, 'content-length', String(body.length)];
  if (body.length > 0) h.push('content-type', contentType);
  if (headers !== null) for (let i = 0; i < headers.length; i++) h.push(headers[i]);
  sendLocalReply(d, status, h, body, null, null);
}

function hasName(headers: readonly string[], name: string): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i].toLowerCase() === name) return true;
  return false;
}

/**
 * A local answer's header list under a policy that is not the default: `server` set to the policy's
 * name or removed (pass-through: a local answer has no upstream header to pass), the debug headers
 * removed when they are off. Edits `headers` in place.
 */
export function applyLocalReplyPolicy(headers: string[], ph: CompiledProxyHeaders): void {
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    const n = headers[r];
    if (n === 'server') {
      if (ph.server === null) continue;
      headers[r + 1] = ph.server;
    } else if (!ph.debugHeaders && (n === FLAGS_HEADER || n === 'x-envoy-overloaded')) continue;
    headers[w] = n;
    headers[w + 1] = headers[r + 1];
    w += 2;
  }
  headers.length = w;
}
