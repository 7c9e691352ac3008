/**
 * IR `SecurityConfig.proxyHeaders` (Istio ProxyConfig `proxyHeaders`, ir/proxy-headers.ts) compiled
 * once per snapshot into what the request path reads. With every default in force the compiled value
 * is null: the request path then does exactly what it did before (one null check per request, in
 * `handleRequest`), and nothing else is looked at.
 *
 * Where each part acts:
 * - `server`: `buildDownstreamResponseHeaders` (relayed answers, forward-headers.ts), the WebSocket
 *   101 (websocket.ts) and `sendLocalReply` (every local answer, local-reply.ts);
 * - `forwardFlags` (`requestId`, `attemptCount`, `envoyDebugHeaders`): `buildUpstreamRequestHeaders`
 *   (what is made, and which of the app's own `x-envoy-*` a sidecar's outbound side passes on);
 *   retries do not rewrite a header the sidecar did not set (exchange.ts);
 * - `debugHeaders`: `x-envoy-expected-rq-timeout-ms` (request-handler.ts), the gateway's
 *   `x-envoy-upstream-service-time` (exchange.ts), `x-envoy-overloaded` and
 *   `x-meshgate-flags` on local answers (local-reply.ts `applyLocalReplyPolicy`);
 * - `forwardClientCertDetails` / `clientCertDetails`: read when a sidecar compiles its inbound side
 *   (sidecar/inbound.ts), into `CompiledSecurity.xfcc` / `xfccDetails`.
 */
import type { ProxyHeaders } from '../../ir/proxy-headers.js';
import { SERVER_NAME } from './local-reply.js';
import { NO_ATTEMPT_COUNT, NO_DEBUG_HEADERS, NO_REQUEST_ID, XFCC_CERT, XFCC_CHAIN, XFCC_DNS, XFCC_SIDECAR, XFCC_SUBJECT, XFCC_URI } from './forward-headers.js';

export interface CompiledProxyHeaders {
  /** The `server` header to write on every answer; null = the upstream's passes through, local answers carry none. */
  readonly server: string | null;
  /** x-envoy-attempt-count is set (gateway and sidecar outbound). */
  readonly attemptCount: boolean;
  /** The router's `x-envoy-*` headers and `x-meshgate-flags` are added. */
  readonly debugHeaders: boolean;
  /** `NO_REQUEST_ID | NO_ATTEMPT_COUNT | NO_DEBUG_HEADERS`, for `buildUpstreamRequestHeaders`. */
  readonly forwardFlags: number;
}

/** null when nothing differs from the defaults per request (`metadataExchange` and the XFCC fields never do). */
export function compileProxyHeaders(p: ProxyHeaders | undefined): CompiledProxyHeaders | null {
  if (p === undefined) return null;
  const server = p.server === undefined ? SERVER_NAME : p.server.mode === 'pass-through' ? null : p.server.name;
  const requestId = p.requestId !== false;
  const attemptCount = p.attemptCount !== false;
  const debugHeaders = p.envoyDebugHeaders !== false;
  if (server === SERVER_NAME && requestId && attemptCount && debugHeaders) return null;
  return { server, attemptCount, debugHeaders, forwardFlags: (requestId ? 0 : NO_REQUEST_ID) | (attemptCount ? 0 : NO_ATTEMPT_COUNT) | (debugHeaders ? 0 : NO_DEBUG_HEADERS) };
}

/** A sidecar inbound side's XFCC element parts (`forward-headers.ts` XFCC_* bits) from IR `clientCertDetails`. */
export function xfccDetailsOf(p: ProxyHeaders | undefined): number {
  const d = p?.clientCertDetails;
  if (d === undefined) return XFCC_SIDECAR;
  return (d.subject ? XFCC_SUBJECT : 0) | (d.cert ? XFCC_CERT : 0) | (d.chain ? XFCC_CHAIN : 0) | (d.dns ? XFCC_DNS : 0) | (d.uri ? XFCC_URI : 0);
}
