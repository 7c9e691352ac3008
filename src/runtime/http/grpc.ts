/**
 * gRPC at the gateway: errors the gateway itself produces are answered the way gRPC clients read
 * them (HTTP 200, trailers-only `grpc-status`/`grpc-message`, as Envoy does for requests whose
 * content-type is `application/grpc*`), `grpc-timeout` is honoured, and upstream trailers reach an
 * HTTP/2 client (grpc-status travels in trailers).
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Http2ServerResponse, OutgoingHttpHeaders } from 'node:http2';
import { isHttp2 } from './h2-compat.js';
import type { LocalError } from './local-reply.js';

/** gRPC status codes used here (grpc/doc/statuscodes.md). */
export const GrpcStatus = {
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** True when the request is gRPC (or gRPC-Web): content-type `application/grpc` or `application/grpc+…`/`;…`. */
export function isGrpcRequest(req: IncomingMessage): boolean {
  const ct = req.headers['content-type'];
  return typeof ct === 'string' && ct.length >= 16 && ct.startsWith('application/grpc');
}

/**
 * The gRPC status for a local HTTP answer (Envoy `Grpc::Utility::httpToGrpcStatus`, which follows
 * grpc/doc/http-grpc-status-mapping.md): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 * 404 UNIMPLEMENTED, 429/502/503 UNAVAILABLE. A route or `grpc-timeout` expiry (504 `UT`) is
 * DEADLINE_EXCEEDED: the call's deadline passed, which is what the client's own deadline reports
 * (hardening G-01); Envoy's generic table would say UNAVAILABLE.
 */
export function grpcStatusOf(e: LocalError): number {
  if (e.flag === 'UT') return GrpcStatus.DEADLINE_EXCEEDED;
  switch (e.status) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** `grpc-message` is percent-encoded (gRPC over HTTP/2 spec): everything outside 0x20–0x7E and `%`. */
function encodeGrpcMessage(message: string): string {
  let out = '';
  for (const byte of Buffer.from(message, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/**
 * Answers a gRPC request with a trailers-only response: HTTP 200, content-type application/grpc,
 * `grpc-status` and `grpc-message` in the one HEADERS frame that ends the stream.
 */
export function sendGrpcLocalError(res: ServerResponse, e: LocalError, serverName: string, flagsHeader: string, extra?: string[]): void {
  const status = grpcStatusOf(e);
  const message = e.body.length > 0 ? e.body.toString('utf8') : e.status === 404 ? 'route not found' : `HTTP ${e.status}`;
  const contentType = res.req !== undefined ? String(res.req.headers['content-type'] ?? 'application/grpc') : 'application/grpc';
  const headers = [
    'server', serverName,
    'content-type', contentType.startsWith('application/grpc-web') ? contentType : 'application/grpc',
    'grpc-status', String(status),
    'grpc-message', encodeGrpcMessage(message),
    flagsHeader, e.flag,
  ];
  if (extra !== undefined) for (let i = 0; i < extra.length; i++) headers.push(extra[i]);
  if (res.req !== undefined && isHttp2(res.req)) {
    const stream = (res as unknown as Http2ServerResponse).stream;
    if (stream.headersSent || stream.destroyed) return;
    const obj: OutgoingHttpHeaders = { ':status': 200 };
    for (let i = 0; i < headers.length; i += 2) obj[headers[i]] = headers[i + 1];
    stream.respond(obj, { endStream: true });
    return;
  }
  res.writeHead(200, [...headers, 'content-length', '0']);
  res.end();
}

/**
 * Ends a gRPC response whose deadline passed after its head was sent: HTTP/2 clients get
 * `grpc-status: 4` in the trailers; anything else is reset (a truncated body is never complete).
 */
export function endGrpcCallDeadline(res: ServerResponse): void {
  if (res.req === undefined || !isHttp2(res.req) || res.writableEnded) {
    res.destroy();
    return;
  }
  res.addTrailers({ 'grpc-status': String(GrpcStatus.DEADLINE_EXCEEDED), 'grpc-message': 'upstream request timeout' });
  res.end();
}

/** Whether a flat response header list is a gRPC trailers-only answer (it carries `grpc-status`). */
export function isTrailersOnly(headers: string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'grpc-status') return true;
  return false;
}

/** Sends a complete HEADERS frame with END_STREAM (HTTP/2 downstream only). */
export function respondEnded(res: ServerResponse, status: number, headers: string[]): boolean {
  const stream = (res as unknown as Http2ServerResponse).stream;
  if (stream.headersSent || stream.destroyed) return false;
  const obj: Record<string, string | string[] | number> = { ':status': status };
  for (let i = 0; i < headers.length; i += 2) {
    const prev = obj[headers[i]];
    obj[headers[i]] = prev === undefined ? headers[i + 1] : Array.isArray(prev) ? [...prev, headers[i + 1]] : [String(prev), headers[i + 1]];
  }
  stream.respond(obj, { endStream: true });
  return true;
}

/**
 * Upstream trailers for an HTTP/2 client. undici hands them over as a flat Buffer list (HTTP/1.1)
 * or a headers object (HTTP/2). Hop-by-hop and pseudo fields are never trailers.
 */
export function addTrailers(res: ServerResponse, trailers: unknown): void {
  if (trailers === null || trailers === undefined) return;
  const out: Record<string, string | string[]> = {};
  let any = false;
  if (Array.isArray(trailers)) {
    for (let i = 0; i + 1 < trailers.length; i += 2) {
      const name = String(trailers[i]).toLowerCase();
      if (name.charCodeAt(0) === 58) continue;
      out[name] = String(trailers[i + 1]);
      any = true;
    }
  } else if (typeof trailers === 'object') {
    for (const [name, value] of Object.entries(trailers as Record<string, unknown>)) {
      if (name.charCodeAt(0) === 58 || value === undefined) continue;
      out[name] = Array.isArray(value) ? value.map(String) : String(value);
      any = true;
    }
  }
  if (any) res.addTrailers(out);
}

const GRPC_TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/**
 * The `grpc-timeout` of a request in ms (gRPC over HTTP/2: 1–8 digits and a unit H M S m u n), or
 * null when absent or malformed. A sub-millisecond deadline counts as 1 ms.
 */
export function grpcTimeoutMs(req: IncomingMessage): number | null {
  const v = req.headers['grpc-timeout'];
  if (typeof v !== 'string' || v.length < 2 || v.length > 9) return null;
  const unit = GRPC_TIMEOUT_UNITS[v[v.length - 1]];
  const digits = v.slice(0, -1);
  if (unit === undefined || !/^[0-9]+$/.test(digits)) return null;
  return Math.max(1, Math.ceil(Number(digits) * unit));
}

/** The effective timeout: the client's `grpc-timeout`, capped by the route timeout when one is set (0 = none). */
export function effectiveGrpcTimeout(req: IncomingMessage, routeTimeoutMs: number): number {
  const t = grpcTimeoutMs(req);
  if (t === null) return routeTimeoutMs;
  return routeTimeoutMs > 0 ? Math.min(t, routeTimeoutMs) : t;
}
