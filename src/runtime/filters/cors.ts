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
 *
 * Policies with `dialect: 'ingress-nginx'` follow ingress-nginx's CORS template instead
 * (rootfs/etc/nginx/template/nginx.tmpl, `define "CORS"`): see `handleNginxCors`. With
 * `dialect: 'gateway-api'` a preflight answer also carries `-expose-headers`, and with credentials
 * a `*` method or header list is answered with what the preflight asked for.
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
  /** ingress-nginx dialect: the headers after allow-origin on every allowed answer (pairs); null = Envoy semantics. */
  nginx: string[] | null;
  /** Gateway API with credentials: answer `*` methods / headers with the preflight's requested ones. */
  echoMethods: boolean;
  echoHeaders: boolean;
}

export function compileCors(p: CorsPolicy): CompiledCors {
  const anyOrigin = p.allowOrigins.some((o) => o.kind === 'exact' && o.value === '*');
  const preflight: string[] = [];
  const actual: string[] = [];
  const gatewayApi = p.dialect === 'gateway-api';
  const echoMethods = gatewayApi && p.allowCredentials && p.allowMethods.includes('*');
  const echoHeaders = gatewayApi && p.allowCredentials && p.allowHeaders.includes('*');
  if (p.allowMethods.length > 0 && !echoMethods) preflight.push('access-control-allow-methods', p.allowMethods.join(','));
  if (p.allowHeaders.length > 0 && !echoHeaders) preflight.push('access-control-allow-headers', p.allowHeaders.join(','));
  if (gatewayApi && p.exposeHeaders.length > 0) preflight.push('access-control-expose-headers', p.exposeHeaders.join(','));
  if (p.maxAgeSeconds !== null) preflight.push('access-control-max-age', String(p.maxAgeSeconds));
  if (p.allowCredentials) {
    preflight.push('access-control-allow-credentials', 'true');
    actual.push('access-control-allow-credentials', 'true');
  }
  if (p.exposeHeaders.length > 0) actual.push('access-control-expose-headers', p.exposeHeaders.join(','));
  let nginx: string[] | null = null;
  if (p.dialect === 'ingress-nginx') {
    // The template's order: credentials (when true), methods, headers, expose (when set), max-age.
    nginx = [];
    if (p.allowCredentials) nginx.push('access-control-allow-credentials', 'true');
    nginx.push('access-control-allow-methods', p.allowMethods.join(', '), 'access-control-allow-headers', p.allowHeaders.join(','));
    if (p.exposeHeaders.length > 0) nginx.push('access-control-expose-headers', p.exposeHeaders.join(','));
    nginx.push('access-control-max-age', String(p.maxAgeSeconds ?? 0));
  }
  return { origins: p.allowOrigins.map(compileStringMatch), anyOrigin, preflight, actual, ignoreUnmatched: p.unmatchedPreflights === 'ignore', nginx, echoMethods, echoHeaders };
}

export function originAllowed(c: CompiledCors, origin: string): boolean {
  if (c.anyOrigin) return true;
  for (let i = 0; i < c.origins.length; i++) if (c.origins[i](origin)) return true;
  return false;
}

/**
 * Handles a preflight; true when it was answered here, false when it must be forwarded upstream.
 */
export function answerPreflight(c: CompiledCors, origin: string, d: Downstream, requested: CorsInput | null = null): boolean {
  if (originAllowed(c, origin)) {
    const h = ['server', SERVER_NAME, 'access-control-allow-origin', origin, ...c.preflight];
    if (requested !== null && c.echoMethods) {
      const m = requested.header('access-control-request-method');
      if (m !== null && m !== '') h.push('access-control-allow-methods', m);
    }
    if (requested !== null && c.echoHeaders) {
      const hs = requested.header('access-control-request-headers');
      if (hs !== null && hs !== '') h.push('access-control-allow-headers', hs);
    }
    h.push('content-length', '0');
    sendPreflight(d, h);
    return true;
  }
  if (!c.ignoreUnmatched) return false;
  sendPreflight(d, ['server', SERVER_NAME, 'content-length', '0']);
  return true;
}

/** A preflight answer is a local reply of its own: the route's other local-reply headers are not added. */
function sendPreflight(d: Downstream, h: string[], status = 200): void {
  const saved = d.replyHeaders;
  d.replyHeaders = null;
  sendLocalReply(d, status, h, null, null, null);
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
  /** Lowercase names whose upstream values are dropped before `extraResponseHeaders` are added; null = none. */
  replacedResponseHeaders: string[] | null;
}

/**
 * Runs a route's CORS policy on a request: true when the gateway answered it (a preflight), false
 * when it goes on (maybe with CORS headers queued for its response).
 */
export function handleCors(c: CompiledCors, x: CorsInput): boolean {
  if (c.nginx !== null) return handleNginxCors(c, c.nginx, x);
  const origin = x.header('origin');
  if (origin === null) return false;
  if (x.method === 'OPTIONS' && x.header('access-control-request-method') !== null) return answerPreflight(c, origin, x.d, c.echoMethods || c.echoHeaders ? x : null);
  const h = corsResponseHeaders(c, origin);
  if (h !== null) {
    // Proxied responses read extraResponseHeaders; the gateway's own answers (redirect, direct
    // response, 503...) read the local-reply headers.
    x.extraResponseHeaders = x.extraResponseHeaders === null ? h : x.extraResponseHeaders.concat(h);
    addLocalReplyHeaders(x.d, h);
  }
  return false;
}

const NGINX_CORS_NAMES = ['access-control-allow-origin', 'access-control-allow-credentials', 'access-control-allow-methods', 'access-control-allow-headers', 'access-control-expose-headers', 'access-control-max-age'];

/**
 * ingress-nginx's CORS template: `$cors` is true for any request when the origin list is `*` (the
 * answer then says `*`), else when the Origin matches; an allowed `OPTIONS` is `return 204` with every
 * CORS header, `Content-Type: text/plain charset=UTF-8` and `Content-Length: 0`; any other allowed
 * request gets the same CORS headers on its answer (`more_set_headers`: the backend's values are
 * replaced). Not allowed: nothing is added and the request goes on (also an `OPTIONS`).
 */
function handleNginxCors(c: CompiledCors, rest: string[], x: CorsInput): boolean {
  let allowOrigin: string;
  if (c.anyOrigin) allowOrigin = '*';
  else {
    const origin = x.header('origin');
    if (origin === null || !originAllowed(c, origin)) return false;
    allowOrigin = origin;
  }
  const h = ['access-control-allow-origin', allowOrigin, ...rest];
  if (x.method === 'OPTIONS') {
    sendPreflight(x.d, ['server', SERVER_NAME, ...h, 'content-type', 'text/plain charset=UTF-8', 'content-length', '0'], 204);
    return true;
  }
  x.extraResponseHeaders = x.extraResponseHeaders === null ? h : x.extraResponseHeaders.concat(h);
  x.replacedResponseHeaders = x.replacedResponseHeaders === null ? NGINX_CORS_NAMES : x.replacedResponseHeaders.concat(NGINX_CORS_NAMES);
  addLocalReplyHeaders(x.d, h);
  return false;
}
