/**
 * The one catalogue of the gateway's local errors (as undici's `core/errors.js` and fastify's
 * `errors.js` are for theirs): every answer the gateway makes itself instead of an upstream has
 * a stable code, an HTTP status, the Envoy response flag it is logged with, the
 * `%RESPONSE_CODE_DETAILS%` Envoy would log, and its body. `local-reply.ts` turns an entry into a
 * response (a gRPC status for gRPC requests) and records what was sent.
 *
 * Pure data: no I/O, nothing per request. Entries whose body depends on the request (a JWT
 * failure's reason, an ext-authz denial, an injected fault's status) are made by the functions
 * at the end, from a fixed set of inputs, and cached where that set is small.
 */

/**
 * Envoy response flags used by meshgate (Envoy access-log `%RESPONSE_FLAGS%`):
 * NR no route, NC no cluster, UH no healthy upstream, UF upstream connection failure,
 * UC upstream connection termination, UT upstream request timeout, UPE upstream protocol error,
 * DPE downstream protocol error, DC downstream connection termination, UO upstream overflow (circuit
 * breaker, overload), FI fault-injected abort, DI fault-injected delay, URX retry limit reached,
 * RL rate limited (local rate limit), UAEX unauthorized by the external authorization service.
 */
export type ResponseFlag = 'NR' | 'NC' | 'UH' | 'UF' | 'UC' | 'UT' | 'UPE' | 'DPE' | 'DC' | 'UO' | 'FI' | 'DI' | 'URX' | 'RL' | 'UAEX';

/** One local error (STYLE.md: errors carry a code, status and flag). */
export interface LocalError {
  /** Stable code (`MG_ERR_*`), for docs and tests. */
  readonly code: string;
  /** HTTP status of the answer (gRPC requests get HTTP 200 and the mapped `grpc-status`). */
  readonly status: number;
  /** Envoy response flag logged for it and sent in `x-meshgate-flags`; null = none (Envoy logs none for RBAC or JWT denials). */
  readonly flag: ResponseFlag | null;
  /** `x-meshgate-flags` value when no Envoy flag applies (`RBAC`); null = the flag, or no header. */
  readonly headerFlag?: string | null;
  /** Response body (text/plain); for gRPC requests it becomes `grpc-message`. */
  readonly body: Buffer;
  /** Envoy `%RESPONSE_CODE_DETAILS%` when more precise than the flag says; null = derived from the flag. */
  readonly details?: string | null;
  /** Header lines the answer always carries (`x-envoy-overloaded`, `www-authenticate`); null = none. */
  readonly headers?: readonly string[] | null;
  /** gRPC status to answer gRPC requests with; undefined = mapped from the HTTP status (grpc.ts). */
  readonly grpcStatus?: number;
  /** Answer as gRPC even when the request did not say so (an injected gRPC fault). */
  readonly alwaysGrpc?: boolean;
}

export function localError(status: number, flag: ResponseFlag | null, code: string, body: string, details: string | null = null, headers: readonly string[] | null = null): LocalError {
  return { status, flag, code, body: Buffer.from(body), details, headers };
}

const FORBIDDEN = Buffer.from('RBAC: access denied');
const RESET_PREFIX = 'upstream connect error or disconnect/reset before headers. reset reason: ';
const OVERLOADED_HEADERS = ['x-envoy-overloaded', 'true'] as const;

/** The fixed entries. */
export const Errors = {
  // ---- downstream: the request itself (the connection closes after these) ----
  badRequest: localError(400, 'DPE', 'MG_ERR_BAD_REQUEST', 'bad request'),
  /** A body too large to be buffered for an HTTP/1.0 upstream request. */
  bodyTooLarge: localError(413, 'DPE', 'MG_ERR_BODY_TOO_LARGE', 'request entity too large'),
  badPath: localError(400, 'DPE', 'MG_ERR_BAD_PATH', 'bad request'),
  tooManyHeaders: localError(431, 'DPE', 'MG_ERR_TOO_MANY_HEADERS', 'too many request headers'),
  headerUnderscore: localError(400, 'DPE', 'MG_ERR_HEADER_UNDERSCORE', 'header name with underscore'),
  transferCoding: localError(501, 'DPE', 'MG_ERR_TRANSFER_CODING', 'transfer coding not implemented'),
  // ---- routing ----
  noRoute: localError(404, 'NR', 'MG_ERR_ROUTE_NO_MATCH', ''),
  /** HTTPS: the Host/:authority belongs to another listener (certificate) of the port than the SNI chose (RFC 9110 §15.5.20). */
  misdirected: localError(421, 'NR', 'MG_ERR_MISDIRECTED_REQUEST', 'misdirected request', 'misdirected_request'),
  noCluster: localError(503, 'NC', 'MG_ERR_CLUSTER_NOT_FOUND', 'cluster not found'),
  noHealthyUpstream: localError(503, 'UH', 'MG_ERR_NO_HEALTHY_UPSTREAM', 'no healthy upstream'),
  // ---- upstream ----
  connectFailure: localError(503, 'UF', 'MG_ERR_UPSTREAM_CONNECT', RESET_PREFIX + 'connection failure'),
  connectTimeout: localError(503, 'UF', 'MG_ERR_UPSTREAM_CONNECT_TIMEOUT', RESET_PREFIX + 'connection timeout'),
  connectionTermination: localError(503, 'UC', 'MG_ERR_UPSTREAM_RESET', RESET_PREFIX + 'connection termination'),
  protocolError: localError(502, 'UPE', 'MG_ERR_UPSTREAM_PROTOCOL', RESET_PREFIX + 'protocol error'),
  timeout: localError(504, 'UT', 'MG_ERR_UPSTREAM_TIMEOUT', 'upstream request timeout'),
  /** A circuit-breaker limit (Cluster.connectionPool) was reached; sent with `x-envoy-overloaded: true`. */
  overflow: localError(503, 'UO', 'MG_ERR_UPSTREAM_OVERFLOW', RESET_PREFIX + 'overflow', null, OVERLOADED_HEADERS),
  /** The process is over its memory limit (filters/overload.ts, Envoy's overload manager). */
  overloaded: localError(503, 'UO', 'MG_ERR_OVERLOADED', 'envoy overloaded', null, OVERLOADED_HEADERS),
  // ---- policies ----
  /** AuthorizationPolicy denial with no policy named (no ALLOW policy matched). Envoy's RBAC filter: 403, no response flag. */
  forbidden: rbacDenied(null),
} as const;

/** 403 as Envoy's RBAC filter answers it; `policy` is the policy that decided (details `rbac_access_denied_matched_policy[...]`). */
export function rbacDenied(policy: string | null): LocalError {
  return {
    status: 403,
    flag: null,
    headerFlag: 'RBAC',
    code: 'MG_ERR_RBAC_DENIED',
    body: FORBIDDEN,
    details: `rbac_access_denied_matched_policy[${policy ?? 'none'}]`,
  };
}

const BEARER = ['www-authenticate', 'Bearer realm="meshgate", error="invalid_token"'] as const;

/** 401 as Envoy's jwt_authn filter answers it (RFC 6750 `WWW-Authenticate`); details `jwt_authn_access_denied{reason}`. */
export function jwtDenied(reason: string): LocalError {
  return { status: 401, flag: null, code: 'MG_ERR_JWT_DENIED', body: Buffer.from(reason), details: `jwt_authn_access_denied{${reason}}`, headers: BEARER };
}

/** A denial by an external authorization service: its status, headers and body (flag `UAEX`). */
export function extAuthzDenied(status: number, headers: string[], body: Buffer): LocalError {
  return { status, flag: 'UAEX', code: 'MG_ERR_EXT_AUTHZ_DENIED', body, details: 'ext_authz_denied', headers };
}

/** 429 of a local rate limit (flag `RL`), with the rate-limit headers of `limit`. */
export function rateLimited(maxTokens: number, waitMs: number): LocalError {
  const reset = String(Math.ceil(waitMs / 1000));
  return {
    status: 429,
    flag: 'RL',
    code: 'MG_ERR_RATE_LIMITED',
    body: RATE_LIMITED,
    details: 'local_rate_limited',
    headers: ['retry-after', reset, 'x-ratelimit-limit', String(maxTokens), 'x-ratelimit-remaining', '0', 'x-ratelimit-reset', reset],
  };
}
const RATE_LIMITED = Buffer.from('local_rate_limited');

const faultAborts = new Map<number, LocalError>();
const FAULT_BODY = Buffer.from('fault filter abort');

/** An injected HTTP abort (flag `FI`); one entry per status. */
export function faultAbortError(status: number): LocalError {
  let e = faultAborts.get(status);
  if (e === undefined) {
    e = { status, flag: 'FI', code: 'MG_ERR_FAULT_ABORT', body: FAULT_BODY, details: 'fault_filter_abort' };
    if (faultAborts.size < 64) faultAborts.set(status, e);
  }
  return e;
}

const grpcFaultAborts = new Map<number, LocalError>();

/** An injected gRPC abort (flag `FI`): a trailers-only answer with `grpcStatus`; one entry per status. */
export function grpcFaultAbortError(grpcStatus: number): LocalError {
  let e = grpcFaultAborts.get(grpcStatus);
  if (e === undefined) {
    e = { status: 200, flag: 'FI', code: 'MG_ERR_FAULT_ABORT', body: FAULT_BODY, details: 'fault_filter_abort', grpcStatus, alwaysGrpc: true };
    if (grpcFaultAborts.size < 64) grpcFaultAborts.set(grpcStatus, e);
  }
  return e;
}

/**
 * Node.js codes of a server certificate that failed verification (OpenSSL X509 errors, and the name
 * checks of `upstream/upstream-tls.ts`). Like `ERR_SSL_*` handshake failures, they are upstream
 * connection failures (503 `UF`; retried under `connect-failure`, counted by outlier detection).
 */
export const TLS_VERIFY_CODES: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED', 'CERT_REJECTED',
  'CERT_REVOKED', 'INVALID_CA', 'INVALID_PURPOSE', 'CERT_CHAIN_TOO_LONG', 'PATH_LENGTH_EXCEEDED', 'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID', 'MG_TLS_FILE_UNREADABLE',
  // Istio mTLS (upstream/upstream-tls.ts): a server with another SPIFFE ID; no workload certificate yet.
  'MG_TLS_SPIFFE_MISMATCH', 'MG_MESH_NO_IDENTITY',
]);

/** One LocalError per TLS failure code (a small, fixed set of codes), built on first use. */
const tlsFailures = new Map<string, LocalError>();

/**
 * 503 `UF` for a TLS failure towards the upstream, worded as Envoy words it: the body says
 * `transport failure reason: TLS_error:...CERTIFICATE_VERIFY_FAILED...`, and the access log's
 * `response_code_details` is `upstream_reset_before_response_started{connection_failure,TLS_error:...}`.
 */
export function tlsFailure(code: string): LocalError {
  let e = tlsFailures.get(code);
  if (e === undefined) {
    const reason = TLS_VERIFY_CODES.has(code) ? `TLS_error:CERTIFICATE_VERIFY_FAILED:${code}` : `TLS_error:${code.slice('ERR_SSL_'.length)}`;
    e = localError(503, 'UF', 'MG_ERR_UPSTREAM_TLS', `${RESET_PREFIX}connection failure, transport failure reason: ${reason}`, `upstream_reset_before_response_started{connection_failure,${reason}}`);
    if (tlsFailures.size < 256) tlsFailures.set(code, e);
  }
  return e;
}

/** nginx's answer for each failure whose status differs from Envoy's, built on first use. */
const nginxAnswers = new Map<LocalError, LocalError>();

/**
 * The answer ingress-nginx gives for an upstream failure Envoy answers with `e`
 * (ngx_http_upstream_next): a connect timeout is 504, a refused, reset or TLS-failed connection 502
 * ("connect() failed", "upstream prematurely closed connection", "SSL_do_handshake() failed");
 * everything else (timeouts 504, no endpoints 503, protocol errors 502) is already the same. The
 * response flag, code and details stay Envoy's, so logs and metrics read alike on every route.
 */
export function nginxStatus(e: LocalError): LocalError {
  const status = e === Errors.connectTimeout ? 504 : e.flag === 'UF' || e.flag === 'UC' ? 502 : e.status;
  if (status === e.status) return e;
  let n = nginxAnswers.get(e);
  if (n === undefined) {
    n = { ...e, status };
    if (nginxAnswers.size < 256) nginxAnswers.set(e, n);
  }
  return n;
}

/**
 * Maps an upstream client or socket error raised before the response headers to the answer Envoy
 * would give.
 */
export function classifyUpstreamError(err: unknown): LocalError {
  const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
  switch (code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
      return Errors.connectTimeout;
    case 'ECONNREFUSED':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
    case 'EADDRNOTAVAIL':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return Errors.connectFailure;
    case 'UND_ERR_HEADERS_TIMEOUT':
      return Errors.timeout;
    case 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH':
      return Errors.badRequest;
    case 'MG_ERR_BODY_TOO_LARGE':
      return Errors.bodyTooLarge;
    default:
      if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_')) return tlsFailure(code);
      if (code.startsWith('HPE_') || code === 'UND_ERR_INFO' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return Errors.protocolError;
      return Errors.connectionTermination;
  }
}
