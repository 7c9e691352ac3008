/**
 * CORS (Istio CorsPolicy, Envoy CORS filter semantics).
 *
 * - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) from an allowed Origin
 *   is answered by the gateway: 200 with `access-control-allow-origin` (the request's Origin),
 *   `-allow-methods`, `-allow-headers`, `-max-age` and `-allow-credentials` as configured.
 * - A preflight from another Origin is forwarded upstream like any request (Istio's default
 *   `unmatchedPreflights: FORWARD`), or answered 200 without CORS headers (`IGNORE`).
 * - Any other request from an allowed Origin gets `access-control-allow-origin`,
 *   `-allow-credentials` and `-expose-headers` added to its response, whether proxied or answered
 *   by the gateway (redirect, direct response, local error), as Envoy's CORS filter does.
 */

import type { CorsPolicy } from '../../ir/types.js';
import { compileStringMatch } from '../compile/string-match.js';
import type { Downstream } from '../http/downstream.js';
import { addLocalReplyHeaders, sendLocalReply, SERVER_NAME } from '../http/local-reply.js';

export interface CompiledCors {
  /** Origin tests; `anyOrigin` when an exact `*` is listed. */
  origins: ((origin: string) => boolean)[];
  anyOrigin: boolean;
  /** Preflight answer headers after allow-origin (pairs); built once. */
  preflight: string[];
  /** Headers after allow-origin on other responses (pairs). */
  actual: string[];
  ignoreUnmatched: boolean;
}

export function compileCors(p: CorsPolicy): CompiledCors {
  const anyOrigin = p.allowOrigins.some((o) => o.kind === 'exact' && o.value === '*');
  const preflight: string[] = [];
  const actual: string[] = [];
  if (p.allowMethods.length > 0) preflight.push('access-control-allow-methods', p.allowMethods.join(','));
  if (p.allowHeaders.length > 0) preflight.push('access-control-allow-headers', p.allowHeaders.join(','));
  if (p.maxAgeSeconds !== null) preflight.push('access-control-max-age', String(p.maxAgeSeconds));
  if (p.allowCredentials) {
    preflight.push('access-control-allow-credentials', 'true');
    actual.push('access-control-allow-credentials', 'true');
  }
  if (p.exposeHeaders.length > 0) actual.push('access-control-expose-headers', p.exposeHeaders.join(','));
  return { origins: p.allowOrigins.map(compileStringMatch), anyOrigin, preflight, actual, ignoreUnmatched: p.unmatchedPreflights === 'ignore' };
}

export function originAllowed(c: CompiledCors, origin: string): boolean {
  if (c.anyOrigin) return true;
  for (let i = 0; i < c.origins.length; i++) if (c.origins[i](origin)) return true;
  return false;
}

/**
 * Handles a preflight; true when it was answered here, false when it must be forwarded upstream.
 */
export function answerPreflight(c: CompiledCors, origin: string, d: Downstream): boolean {
  if (originAllowed(c, origin)) {
    const h = ['server', SERVER_NAME, 'access-control-allow-origin', origin, ...c.preflight, 'content-length', '0'];
    sendPreflight(d, h);
    return true;
  }
  if (!c.ignoreUnmatched) return false;
  sendPreflight(d, ['server', SERVER_NAME, 'content-length', '0']);
  return true;
}

/** A preflight answer is a local reply of its own: the route's other local-reply headers are not added. */
function sendPreflight(d: Downstream, h: string[]): void {
  const saved = d.replyHeaders;
  d.replyHeaders = null;
  sendLocalReply(d, 200, h, null, null, null);
  d.replyHeaders = saved;
}

/** CORS headers (pairs) for a non-preflight response to `origin`; null when the origin is not allowed. */
export function corsResponseHeaders(c: CompiledCors, origin: string): string[] | null {
  if (!originAllowed(c, origin)) return null;
  return c.actual.length === 0 ? ['access-control-allow-origin', origin] : ['access-control-allow-origin', origin, ...c.actual];
}

/** What the CORS check needs from the request (the Exchange). */
export interface CorsInput {
  readonly method: string;
  readonly d: Downstream;
  header(name: string): string | null;
  extraResponseHeaders: string[] | null;
}

/**
 * Runs a route's CORS policy on a request: true when the gateway answered it (a preflight), false
 * when it goes on (maybe with CORS headers queued for its response).
 */
export function handleCors(c: CompiledCors, x: CorsInput): boolean {
  const origin = x.header('origin');
  if (origin === null) return false;
  if (x.method === 'OPTIONS' && x.header('access-control-request-method') !== null) return answerPreflight(c, origin, x.d);
  const h = corsResponseHeaders(c, origin);
  if (h !== null) {
    // Proxied responses read extraResponseHeaders; the gateway's own answers (redirect, direct
    // response, 503...) read the local-reply headers.
    x.extraResponseHeaders = x.extraResponseHeaders === null ? h : x.extraResponseHeaders.concat(h);
    addLocalReplyHeaders(x.d, h);
  }
  return false;
}
