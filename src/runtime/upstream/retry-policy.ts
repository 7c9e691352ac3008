/**
 * Retry decisions (Envoy router retry state, as Istio configures it): which failures of a try are
 * retried, how long to back off, and which endpoint a retry goes to.
 *
 * Compiled once per snapshot into a bit set, so the decision on a response is a few integer tests;
 * response headers are scanned only when a condition needs them.
 */

import type { RetryPolicy } from '../../ir/types.js';

/** Why a try failed before any response head arrived. */
export const enum TryFailure {
  /** The connection could not be made (refused, unreachable, connect timeout): nothing was sent. */
  Connect,
  /** The connection broke or was reset before the response head. */
  Reset,
  /** The per-try timeout expired before the response head. */
  PerTryTimeout,
}

const enum On {
  Any5xx = 1 << 0,
  GatewayError = 1 << 1,
  Reset = 1 << 2,
  ConnectFailure = 1 << 3,
  Retriable4xx = 1 << 4,
  StatusCodes = 1 << 5,
  Headers = 1 << 6,
  RateLimited = 1 << 7,
  GrpcCancelled = 1 << 8,
  GrpcDeadline = 1 << 9,
  GrpcInternal = 1 << 10,
  GrpcResource = 1 << 11,
  GrpcUnavailable = 1 << 12,
  RefusedStream = 1 << 13,
}

const GRPC = On.GrpcCancelled | On.GrpcDeadline | On.GrpcInternal | On.GrpcResource | On.GrpcUnavailable;

const BITS: Record<RetryPolicy['retryOn'][number], number> = {
  '5xx': On.Any5xx,
  'gateway-error': On.GatewayError,
  reset: On.Reset,
  'reset-before-request': On.ConnectFailure,
  'connect-failure': On.ConnectFailure,
  'refused-stream': On.RefusedStream,
  'retriable-4xx': On.Retriable4xx,
  'retriable-status-codes': On.StatusCodes,
  'retriable-headers': On.Headers,
  'envoy-ratelimited': On.RateLimited,
  cancelled: On.GrpcCancelled,
  'deadline-exceeded': On.GrpcDeadline,
  internal: On.GrpcInternal,
  'resource-exhausted': On.GrpcResource,
  unavailable: On.GrpcUnavailable,
};

/** Most times the load balancer is asked again for an endpoint not tried yet (Istio `host_selection_retry_max_attempts`). */
export const HOST_SELECTION_ATTEMPTS = 5;

export interface CompiledRetryPolicy {
  /** Tries in all: 1 + retries. */
  maxTries: number;
  /** ms; 0 = none. */
  perTryTimeoutMs: number;
  bits: number;
  /** Statuses for `retriable-status-codes`; null when empty. */
  statusCodes: ReadonlySet<number> | null;
  backoffBaseMs: number;
  /** Envoy: the backoff cap is 10x the base. */
  backoffMaxMs: number;
  ignorePreviousHosts: boolean;
  /** True when a response header decides (`grpc-status`, `x-envoy-ratelimited`, retriable-headers). */
  needsHeaders: boolean;
  /** IR `idempotentOnly`: POST, LOCK and PATCH are retried only after a connect failure. */
  idempotentOnly: boolean;
}

/** nginx's non-idempotent methods (ngx_http_upstream_next: POST, LOCK, PATCH). */
export function nonIdempotent(method: string): boolean {
  return method === 'POST' || method === 'PATCH' || method === 'LOCK';
}

export function compileRetryPolicy(p: RetryPolicy): CompiledRetryPolicy | null {
  if (p.numRetries <= 0) return null;
  let bits = 0;
  for (const r of p.retryOn) bits |= BITS[r];
  return {
    maxTries: 1 + p.numRetries,
    perTryTimeoutMs: p.perTryTimeoutMs ?? 0,
    bits,
    statusCodes: p.retriableStatusCodes.length > 0 ? new Set(p.retriableStatusCodes) : null,
    backoffBaseMs: p.backoffBaseMs,
    backoffMaxMs: p.backoffBaseMs * 10,
    ignorePreviousHosts: p.ignorePreviousHosts,
    needsHeaders: (bits & (GRPC | On.RateLimited | On.Headers)) !== 0,
    idempotentOnly: p.idempotentOnly === true,
  };
}

/** Whether a try that failed this way (before any response head) is retried by `p`. */
export function retriesFailure(p: CompiledRetryPolicy, f: TryFailure): boolean {
  const anyReset = On.Any5xx | On.GatewayError | On.Reset;
  if (f === TryFailure.Connect) return (p.bits & (anyReset | On.ConnectFailure)) !== 0;
  return (p.bits & anyReset) !== 0;
}

/**
 * Whether a response head is retried by `p`. `rawHeaders` are the upstream's flat (name, value) strings;
 * `retriableHeaderNames` is the request's `x-envoy-retriable-header-names` (lowercase), or null.
 */
export function retriesResponse(p: CompiledRetryPolicy, status: number, rawHeaders: string[], retriableHeaderNames: string[] | null): boolean {
  const b = p.bits;
  if (status >= 500) {
    if ((b & On.Any5xx) !== 0) return true;
    if ((b & On.GatewayError) !== 0 && status >= 502 && status <= 504) return true;
  }
  if (status === 409 && (b & On.Retriable4xx) !== 0) return true;
  if (p.statusCodes !== null && (b & On.StatusCodes) !== 0 && p.statusCodes.has(status)) return true;
  if (!p.needsHeaders) return false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    const len = name.length;
    if (len === 11 && (b & GRPC) !== 0 && name.toLowerCase() === 'grpc-status') {
      if ((b & grpcBit(Number(rawHeaders[i + 1]))) !== 0) return true;
    } else if (len === 19 && (b & On.RateLimited) !== 0 && name.toLowerCase() === 'x-envoy-ratelimited') {
      return true;
    } else if (retriableHeaderNames !== null && (b & On.Headers) !== 0 && retriableHeaderNames.includes(name.toLowerCase())) {
      return true;
    }
  }
  return false;
}

function grpcBit(code: number): number {
  switch (code) {
    case 1:
      return On.GrpcCancelled;
    case 4:
      return On.GrpcDeadline;
    case 8:
      return On.GrpcResource;
    case 13:
      return On.GrpcInternal;
    case 14:
      return On.GrpcUnavailable;
    default:
      return 0;
  }
}

/** Whether `p` looks at `x-envoy-retriable-header-names` at all. */
export function usesRetriableHeaders(p: CompiledRetryPolicy): boolean {
  return (p.bits & On.Headers) !== 0;
}

/**
 * Envoy's jittered exponential backoff: before retry `n` (1-based) wait a uniform time in
 * [0, min(base * 2^(n-1), 10 * base)) ms.
 */
export function backoffMs(p: CompiledRetryPolicy, retry: number, random: number): number {
  const ceiling = Math.min(p.backoffBaseMs * 2 ** (retry - 1), p.backoffMaxMs);
  return Math.floor(random * ceiling);
}
