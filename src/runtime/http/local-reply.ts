/**
 * Responses the gateway generates itself: errors with an Envoy response flag, redirects and direct
 * responses. Every one carries `server: meshgate`; Node adds `date`.
 */

import { markConnectionRejected } from './h1-guard.js';
import type { ServerResponse } from 'node:http';
import { noteLocalReply } from '../../observability/record.js';
import { isGrpcRequest, sendGrpcLocalError } from './grpc.js';

/** The server header on every response, proxied or local (Envoy writes `server: istio-envoy`). */
export const SERVER_NAME = 'meshgate';

/** Header carrying the Envoy response flag on locally generated error responses. */
export const FLAGS_HEADER = 'x-meshgate-flags';

/**
 * Envoy response flags used by meshgate (Envoy access-log `%RESPONSE_FLAGS%`):
 * NR no route, NC no cluster, UH no healthy upstream, UF upstream connection failure,
 * UC upstream connection termination, UT upstream request timeout, UPE upstream protocol error,
 * DPE downstream protocol error, DC downstream connection termination, UO upstream overflow (circuit
 * breaker), FI fault-injected abort, DI fault-injected delay, URX retry limit reached.
 */
export type ResponseFlag = 'NR' | 'NC' | 'UH' | 'UF' | 'UC' | 'UT' | 'UPE' | 'DPE' | 'DC' | 'UO' | 'FI' | 'DI' | 'URX';

/** A canned error answer: status, flag and Envoy-like body. */
export interface LocalError {
  readonly status: number;
  readonly flag: ResponseFlag;
  readonly body: Buffer;
  readonly code: string;
  /** Envoy `%RESPONSE_CODE_DETAILS%` when more precise than the flag says (TLS failures); null = derived from the flag. */
  readonly details?: string | null;
}

function localError(status: number, flag: ResponseFlag, code: string, body: string, details: string | null = null): LocalError {
  return { status, flag, code, body: Buffer.from(body), details };
}

const RESET_PREFIX = 'upstream connect error or disconnect/reset before headers. reset reason: ';

/** Stable codes (STYLE.md: errors carry a code, status and flag). */
export const Errors = {
  noRoute: localError(404, 'NR', 'MG_ERR_ROUTE_NO_MATCH', ''),
  noCluster: localError(503, 'NC', 'MG_ERR_CLUSTER_NOT_FOUND', 'cluster not found'),
  noHealthyUpstream: localError(503, 'UH', 'MG_ERR_NO_HEALTHY_UPSTREAM', 'no healthy upstream'),
  connectFailure: localError(503, 'UF', 'MG_ERR_UPSTREAM_CONNECT', RESET_PREFIX + 'connection failure'),
  connectTimeout: localError(503, 'UF', 'MG_ERR_UPSTREAM_CONNECT_TIMEOUT', RESET_PREFIX + 'connection timeout'),
  connectionTermination: localError(503, 'UC', 'MG_ERR_UPSTREAM_RESET', RESET_PREFIX + 'connection termination'),
  protocolError: localError(502, 'UPE', 'MG_ERR_UPSTREAM_PROTOCOL', RESET_PREFIX + 'protocol error'),
  timeout: localError(504, 'UT', 'MG_ERR_UPSTREAM_TIMEOUT', 'upstream request timeout'),
  badRequest: localError(400, 'DPE', 'MG_ERR_BAD_REQUEST', 'bad request'),
  /** A circuit-breaker limit (Cluster.connectionPool) was reached; sent with `x-envoy-overloaded: true`. */
  overflow: localError(503, 'UO', 'MG_ERR_UPSTREAM_OVERFLOW', RESET_PREFIX + 'overflow'),
  tooManyHeaders: localError(431, 'DPE', 'MG_ERR_TOO_MANY_HEADERS', 'too many request headers'),
} as const;

const kReplyHeaders = Symbol('meshgate.localReplyHeaders');
type TaggedResponse = ServerResponse & { [kReplyHeaders]?: string[] };

/**
 * Headers (name/value pairs) every local reply to this request carries from now on: the CORS
 * headers of the route that matched (Envoy's CORS filter encodes local replies too, so a browser
 * sees the 503 or the redirect instead of a CORS error).
 */
export function addLocalReplyHeaders(res: ServerResponse, pairs: string[]): void {
  const t = res as TaggedResponse;
  t[kReplyHeaders] = t[kReplyHeaders] === undefined ? pairs : t[kReplyHeaders].concat(pairs);
}

function replyHeaders(res: ServerResponse): string[] | undefined {
  return (res as TaggedResponse)[kReplyHeaders];
}

export function sendLocalError(res: ServerResponse, e: LocalError, close = false): void {
  if (close) {
    res.shouldKeepAlive = false;
    markConnectionRejected(res); // requests already pipelined behind this one are never served (h1-guard.ts)
  }
  noteLocalReply(res, e.flag, e.body.length, e.details ?? null);
  const extra = replyHeaders(res);
  if (res.req !== undefined && isGrpcRequest(res.req)) return sendGrpcLocalError(res, e, SERVER_NAME, FLAGS_HEADER, extra);
  // Envoy marks circuit-breaker answers (merged with the list below by writeHead).
  if (e.flag === 'UO') res.setHeader('x-envoy-overloaded', 'true');
  const h = [
    'server', SERVER_NAME,
    'content-type', 'text/plain',
    'content-length', String(e.body.length),
    FLAGS_HEADER, e.flag,
  ];
  if (extra !== undefined) for (let i = 0; i < extra.length; i++) h.push(extra[i]);
  res.writeHead(e.status, h);
  res.end(e.body);
}

export function sendRedirect(res: ServerResponse, status: number, location: string): void {
  noteLocalReply(res, null, 0);
  const h = ['server', SERVER_NAME, 'location', location, 'content-length', '0'];
  const extra = replyHeaders(res);
  if (extra !== undefined) for (let i = 0; i < extra.length; i++) h.push(extra[i]);
  res.writeHead(status, h);
  res.end();
}

export function sendDirect(res: ServerResponse, status: number, contentType: string, body: Buffer, headers: string[] | null): void {
  noteLocalReply(res, null, body.length);
  const h = ['server', SERVER_NAME, 'content-length', String(body.length)];
  if (body.length > 0) h.push('content-type', contentType);
  if (headers !== null) for (let i = 0; i < headers.length; i++) h.push(headers[i]);
  const extra = replyHeaders(res);
  if (extra !== undefined) for (let i = 0; i < extra.length; i++) h.push(extra[i]);
  res.writeHead(status, h);
  res.end(body);
}

/**
 * Maps an undici/socket error raised before the response headers to the answer Envoy would give.
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
    default:
      if (TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_')) return tlsFailure(code);
      if (code.startsWith('HPE_') || code === 'UND_ERR_INFO' || code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') return Errors.protocolError;
      return Errors.connectionTermination;
  }
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
function tlsFailure(code: string): LocalError {
  let e = tlsFailures.get(code);
  if (e === undefined) {
    const reason = TLS_VERIFY_CODES.has(code) ? `TLS_error:CERTIFICATE_VERIFY_FAILED:${code}` : `TLS_error:${code.slice('ERR_SSL_'.length)}`;
    e = localError(503, 'UF', 'MG_ERR_UPSTREAM_TLS', `${RESET_PREFIX}connection failure, transport failure reason: ${reason}`, `upstream_reset_before_response_started{connection_failure,${reason}}`);
    if (tlsFailures.size < 256) tlsFailures.set(code, e);
  }
  return e;
}
