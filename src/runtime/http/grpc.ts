/**
 * gRPC at the gateway: errors the gateway itself produces are answered the way gRPC clients read
 * them (HTTP 200, trailers-only `grpc-status`/`grpc-message`, as Envoy does for requests whose
 * content-type is `application/grpc*`), `grpc-timeout` is honoured, and upstream trailers reach an
 * HTTP/2 client (grpc-status travels in trailers).
 */

import type { Downstream } from './downstream.js';
import type { LocalError } from './local-errors.js';

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
export function isGrpcRequest(d: Downstream): boolean {
  const ct = d.header('content-type');
  return ct !== null && ct.length >= 16 && ct.startsWith('application/grpc');
}

/**
 * The gRPC status for a local HTTP answer (Envoy `Grpc::Utility::httpToGrpcStatus`, which follows
 * grpc/doc/http-grpc-status-mapping.md): 400 INTERNAL, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED,
 * 404 UNIMPLEMENTED, 429/502/503 UNAVAILABLE. A route or `grpc-timeout` expiry (504 `UT`) is
 * DEADLINE_EXCEEDED: the call's deadline passed, which is what the client's own deadline reports
 * (hardening G-01); Envoy's generic table would say UNAVAILABLE.
 */
export function grpcStatusOf(e: LocalError): number {
  if (e.grpcStatus !== undefined) return e.grpcStatus;
  if (e.flag === 'UT') return GrpcStatus.DEADLINE_EXCEEDED;
  return httpToGrpcStatus(e.status);
}

/** Envoy's `Grpc::Utility::httpToGrpcStatus` table (grpc/doc/http-grpc-status-mapping.md). */
export function httpToGrpcStatus(status: number): number {
  switch (status) {
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
 * The head of a trailers-only gRPC answer to a local error: `content-type` (gRPC-Web keeps its
 * own), `grpc-status` and `grpc-message` (local-reply.ts sends it as the one HEADERS frame that
 * ends an HTTP/2 stream).
 */
export function grpcLocalErrorHeaders(d: Downstream, e: LocalError, serverName: string): string[] {
  const status = grpcStatusOf(e);
  const message = e.body.length > 0 ? e.body.toString('utf8') : e.status === 404 ? 'route not found' : `HTTP ${e.status}`;
  const contentType = d.header('content-type') ?? 'application/grpc';
  return [
    'server', serverName,
    'content-type', contentType.startsWith('application/grpc-web') ? contentType : 'application/grpc',
    'grpc-status', String(status),
    'grpc-message', encodeGrpcMessage(message),
  ];
}

/**
 * Ends a gRPC response whose deadline passed after its head was sent: HTTP/2 clients get
 * `grpc-status: 4` in the trailers; anything else is reset (a truncated body is never complete).
 */
export function endGrpcCallDeadline(d: Downstream): void {
  if (!d.http2 || d.ended) {
    d.reset();
    return;
  }
  d.end(null, ['grpc-status', String(GrpcStatus.DEADLINE_EXCEEDED), 'grpc-message', 'upstream request timeout']);
}

/** Whether a flat response header list is a gRPC trailers-only answer (it carries `grpc-status`). */
export function isTrailersOnly(headers: string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'grpc-status') return true;
  return false;
}

/**
 * Upstream trailers as flat pairs for the downstream. The upstream client hands them over as a flat
 * list (HTTP/1.1, Buffers or strings) or a headers object (HTTP/2). Pseudo fields are never
 * trailers. Null when there are none.
 */
/** The `grpc-status` of trailers in either shape `trailerPairs` reads; null when absent. */
export function grpcStatusIn(trailers: unknown): string | null {
  if (Array.isArray(trailers)) {
    for (let i = 0; i + 1 < trailers.length; i += 2) if (String(trailers[i]).toLowerCase() === 'grpc-status') return String(trailers[i + 1]);
    return null;
  }
  if (trailers !== null && typeof trailers === 'object') {
    const v = (trailers as Record<string, unknown>)['grpc-status'];
    if (v === undefined || v === null) return null;
    return String(Array.isArray(v) ? v[0] : v);
  }
  return null;
}

export function trailerPairs(trailers: unknown): string[] | null {
  if (trailers === null || trailers === undefined) return null;
  const out: string[] = [];
  if (Array.isArray(trailers)) {
    for (let i = 0; i + 1 < trailers.length; i += 2) {
      const name = String(trailers[i]).toLowerCase();
      if (name.charCodeAt(0) === 58) continue;
      out.push(name, String(trailers[i + 1]));
    }
  } else if (typeof trailers === 'object') {
    for (const [name, value] of Object.entries(trailers as Record<string, unknown>)) {
      if (name.charCodeAt(0) === 58 || value === undefined) continue;
      if (Array.isArray(value)) for (const v of value) out.push(name, String(v));
      else out.push(name, String(value));
    }
  }
  return out.length === 0 ? null : out;
}

const GRPC_TIMEOUT_UNITS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 0.001, n: 0.000001 };

/**
 * The `grpc-timeout` of a request in ms (gRPC over HTTP/2: 1–8 digits and a unit H M S m u n), or
 * null when absent or malformed. A sub-millisecond deadline counts as 1 ms.
 */
export function grpcTimeoutMs(d: Downstream): number | null {
  const v = d.header('grpc-timeout');
  if (v === null || v.length < 2 || v.length > 9) return null;
  const unit = GRPC_TIMEOUT_UNITS[v[v.length - 1]];
  const digits = v.slice(0, -1);
  if (unit === undefined || !/^[0-9]+$/.test(digits)) return null;
  return Math.max(1, Math.ceil(Number(digits) * unit));
}

/** The effective timeout: the client's `grpc-timeout`, capped by the route timeout when one is set (0 = none). */
export function effectiveGrpcTimeout(d: Downstream, routeTimeoutMs: number): number {
  const t = grpcTimeoutMs(d);
  if (t === null) return routeTimeoutMs;
  return routeTimeoutMs > 0 ? Math.min(t, routeTimeoutMs) : t;
}
