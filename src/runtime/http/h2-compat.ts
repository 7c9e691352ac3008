/**
 * What differs between an HTTP/1.1 request and an HTTP/2 one seen through Node's compatibility
 * API (`Http2ServerRequest` stands in for `IncomingMessage`): the authority travels in the
 * `:authority` pseudo-header, pseudo-headers appear in `rawHeaders`, and a body is announced by the
 * absence of END_STREAM on the HEADERS frame rather than by Content-Length/Transfer-Encoding.
 */

import type { IncomingMessage } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';

export function isHttp2(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 2;
}

/** `:authority` when present (RFC 9113 §8.3.1: it wins over Host), else the Host found in the head. */
export function h2Authority(req: IncomingMessage, host: string | null): string | null {
  const a = req.headers[':authority'];
  return typeof a === 'string' && a !== '' ? a : host;
}

/** Whether the HTTP/2 request has a body (its HEADERS frame did not end the stream). */
export function h2HasBody(req: IncomingMessage): boolean {
  return (req as unknown as Http2ServerRequest).stream.endAfterHeaders !== true;
}
