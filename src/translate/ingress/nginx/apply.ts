/**
 * `NginxIngressConfig` -> IR on the routes of one Ingress. PURE.
 *
 * Mapping onto the IR features Istio uses: rewrite-target -> `Rewrite.path` (regex), upstream-vhost
 * -> `Rewrite.authority`, redirects -> `RedirectAction`, timeouts and proxy-next-upstream ->
 * `timeoutMs`/`RetryPolicy`, enable-cors -> `CorsPolicy`, canaries -> header matches and weighted
 * destinations, affinity/upstream-hash-by/load-balance -> the cluster's `LbPolicy`, x-forwarded-prefix
 * -> request `HeaderOps`. What Istio has no field for goes to `Route.filters` (route-filters.ts).
 */

import type { ClientAddress, HashKey, HeaderValue, ForwardAction, HeaderMatch, PathMatch, RedirectAction, Route, RouteMatch } from '../../../ir/types.js';
import { compileRe2, compileRe2Unanchored } from '../../../lib/re2.js';
import type { NginxIngressConfig } from './parse.js';

/** Host-wide regex mode (ingress-nginx quirk): a path becomes `~* ^<path>`: case-insensitive, anchored at the start only. */
export function regexPathMatch(path: string): { ok: true; match: PathMatch } | { ok: false; message: string } {
  const r = compileRe2(`(?i)(?:${path}).*`);
  if (!r.ok) return { ok: false, message: r.message };
  return { ok: true, match: { kind: 'regex', regex: { ...r.regex, original: path } } };
}

/**
 * Applies the per-path annotations to a route made from an Ingress path. `regexMode`: the host is in
 * regex mode (the path is a regex). `zone`: the Ingress's rate-limit zone. `limitStatus`: the status
 * of a limited request.
 */
export interface NginxRouteGlobals {
  limitStatus: number;
  /** limit-conn-status-code; absent = limitStatus. */
  limitConnStatus?: number;
  realIp: ClientAddress | null;
  addHeaders: HeaderValue[];
  proxySetHeaders: HeaderValue[];
  /** The ConfigMap's compute-full-forwarded-for is "false" (ingress-nginx's default): X-Forwarded-For is replaced. */
  replaceForwardedFor?: boolean;
  /** The ConfigMap's use-forwarded-headers: X-Forwarded-Proto/-Port/-Host are trusted for the upstream headers. */
  useForwardedHeaders?: boolean;
}

/** Bound of a mirrored body without proxy-body-size, and the most any mirror keeps (bytes). */
const MIRROR_BODY_DEFAULT = 8 * 1024 * 1024;
const MIRROR_BODY_MAX = 64 * 1024 * 1024;

export function applyNginxToRoute(route: Route, cfg: NginxIngressConfig, path: string, regexMode: boolean, zone: string, globals: NginxRouteGlobals): Route {
  const { limitStatus, realIp } = globals;
  const responseSet = [...globals.addHeaders.filter((h) => !cfg.customHeaders.some((c) => c.name === h.name)), ...cfg.customHeaders];
  const responseHeaders = responseSet.length === 0 ? route.responseHeaders : { set: responseSet, add: [], remove: [] };
  if (cfg.redirect !== null) {
    const r = cfg.redirect;
    // nginx `return <code> <url>`: the URL verbatim. A trailing `?` in the IR replacement means "no
    // query" (the request's query string is not appended).
    const pathAndQuery = r.pathAndQuery.includes('?') ? r.pathAndQuery : `${r.pathAndQuery}?`;
    const action: RedirectAction = { kind: 'redirect', scheme: r.scheme, authority: r.host, port: r.port ?? 'from-protocol', path: { kind: 'full', value: pathAndQuery }, responseCode: r.code };
    return { ...route, action, cors: cfg.cors, responseHeaders };
  }
  if (route.action.kind !== 'forward') return route;
  // ingress-nginx's own answers to upstream failures: 502 for a refused or reset connection, 504 for a connect timeout.
  const action: ForwardAction = { ...route.action, upstreamErrorStatuses: 'nginx' };
  let requestHeaders = globals.proxySetHeaders.length === 0 ? route.requestHeaders : { set: globals.proxySetHeaders, add: [], remove: [] };
  if (cfg.rewriteTarget !== null && cfg.rewriteTarget !== path) {
    // nginx `rewrite "(?i)<path>" <target> break`: the whole URI is replaced; `$n` are the path's groups.
    const re = compileRe2Unanchored(`(?i)^(?:${regexMode ? path : escapeRegex(path)}).*`);
    if (re.ok) action.rewrite = { path: { kind: 'regex', regex: re.regex, substitution: cfg.rewriteTarget.replace(/\$(\d)/g, '\\$1') }, authority: action.rewrite?.authority ?? null };
    if (cfg.xForwardedPrefix !== null) requestHeaders = { set: [...(requestHeaders?.set ?? []), { name: 'x-forwarded-prefix', value: cfg.xForwardedPrefix }], add: requestHeaders?.add ?? [], remove: requestHeaders?.remove ?? [] };
  }
  // mirror-request-body on: nginx reads the whole body (spooling it to disk past client-body-buffer-size)
  // and mirrors it, up to proxy-body-size. meshgate keeps it in memory: up to proxy-body-size, at most
  // 64 MiB, 8 MiB when there is no body limit; a larger body is proxied but not mirrored.
  if (cfg.mirrorCluster !== null) action.mirrors = [{ cluster: cfg.mirrorCluster, percentage: 100, ...(cfg.mirrorHost !== null ? { authority: cfg.mirrorHost } : {}), ...(cfg.mirrorBody ? { requestBodyLimitBytes: cfg.maxBodyBytes !== null && cfg.maxBodyBytes > 0 ? Math.min(cfg.maxBodyBytes, MIRROR_BODY_MAX) : MIRROR_BODY_DEFAULT } : { requestBody: false }) }];
  if (cfg.upstreamVhost !== null) action.rewrite = { path: action.rewrite?.path ?? null, authority: cfg.upstreamVhost };
  // proxy-http-version 1.0: no chunked coding, so a body of unknown length is read whole first
  // (nginx buffers it); proxy-body-size bounds it, else meshgate's 16 MiB.
  if (cfg.http10) {
    action.httpVersion = '1.0';
    if (cfg.maxBodyBytes !== null && cfg.maxBodyBytes > 0) action.http10BodyLimitBytes = cfg.maxBodyBytes;
  }
  // proxy-next-upstream (ingress-nginx default `error timeout`, 3 tries): every try waits
  // proxy-read-timeout for its response head; proxy-next-upstream-timeout bounds all tries.
  const nu = cfg.nextUpstream;
  if (nu.tries > 1) {
    action.retries = { numRetries: nu.tries - 1, perTryTimeoutMs: cfg.readTimeoutMs, retryOn: nu.retryOn, retriableStatusCodes: nu.retriableStatusCodes, backoffBaseMs: 25, ignorePreviousHosts: true, ...(nu.nonIdempotent ? {} : { idempotentOnly: true }) };
    if (nu.timeoutMs > 0) action.timeoutMs = nu.timeoutMs;
  } else if (cfg.readTimeoutMs !== null) {
    action.timeoutMs = nu.timeoutMs > 0 ? Math.min(nu.timeoutMs, cfg.readTimeoutMs) : cfg.readTimeoutMs;
  } else if (nu.timeoutMs > 0) {
    action.timeoutMs = nu.timeoutMs;
  }
  if (cfg.basicAuth !== null) {
    // ingress-nginx: the Authorization header is not passed to the backend after basic auth.
    requestHeaders = { set: requestHeaders?.set ?? [], add: requestHeaders?.add ?? [], remove: [...(requestHeaders?.remove ?? []), 'authorization'] };
  }
  const out: Route = { ...route, action, requestHeaders, responseHeaders, cors: cfg.cors };
  const maxBody = cfg.maxBodyBytes === 0 ? null : cfg.maxBodyBytes;
  // Every Ingress route sends ingress-nginx's upstream headers (X-Real-IP, X-Forwarded-Port...).
  out.filters = {
    maxRequestBodyBytes: maxBody,
    requestLimit: cfg.limit === null ? null : { zone, ...cfg.limit, status: limitStatus, ...(globals.limitConnStatus !== undefined && globals.limitConnStatus !== limitStatus && cfg.limit.maxConcurrent !== null ? { concurrencyStatus: globals.limitConnStatus } : {}) },
    sourceRanges: cfg.allow.length > 0 || cfg.deny.length > 0 ? { allow: cfg.allow, deny: cfg.deny } : null,
    basicAuth: cfg.basicAuth,
  };
  if (realIp !== null) out.filters.clientAddress = realIp;
  // The auth cache is per location in nginx (server name + auth location): here per route.
  if (cfg.externalAuth !== null) out.filters.externalAuth = cfg.externalAuth.cache === undefined ? cfg.externalAuth : { ...cfg.externalAuth, cache: { ...cfg.externalAuth.cache, zone: route.name } };
  if (cfg.locationRewrite !== null) out.filters.locationRewrite = cfg.locationRewrite;
  if (globals.replaceForwardedFor === true) out.filters.forwardedFor = 'replace';
  out.filters.nginxProxyHeaders = { trustForwarded: globals.useForwardedHeaders === true, host: globals.useForwardedHeaders === true && cfg.upstreamVhost === null };
  return out;
}

/**
 * The routes a canary Ingress adds in front of the main route (same host and path), in ingress-nginx's
 * order: header, then cookie, then weight. `main` is the main route (annotations applied); `canaryCluster`
 * the canary Ingress's backend cluster. Returns the routes to put before `main` and the main route with
 * the weighted split.
 */
export function canaryRoutes(main: Route, canaryCluster: string, c: NonNullable<NginxIngressConfig['canary']>, name: string, affinity: CanaryAffinity = { main: null, canary: null }): { before: Route[]; main: Route } {
  if (main.action.kind !== 'forward') return { before: [], main };
  const fwd = main.action;
  const toCanary: ForwardAction = { ...fwd, destinations: [{ cluster: canaryCluster, weight: 1, requestHeaders: null, responseHeaders: null }] };
  const mk = (suffix: string, extra: HeaderMatch[], action: ForwardAction): Route => ({
    ...main,
    name: `${name}/${suffix}`,
    matches: main.matches.map((m): RouteMatch => ({ ...m, headers: [...m.headers, ...extra] })),
    action,
  });
  const before: Route[] = [];
  // balancer.lua route_to_alternative_balancer: a request whose affinity cookie was issued by the main
  // stays on the main, one issued by the canary goes to the canary, before the header, cookie and
  // weight rules (the cookie is `<key>|<backend key>`).
  const affinityCookie = (hashOn: CookieHash): HeaderMatch | null => {
    const key = hashOn.affinity?.backendKey ?? '';
    if (key === '') return null;
    const r = compileRe2(`(?:.*[;,]\\s*)?${escapeRegex(hashOn.name)}=[^;,|]*\\|${key}(?:\\s*[;,].*)?`);
    return r.ok ? { name: 'cookie', match: { kind: 'regex', regex: r.regex }, invert: false } : null;
  };
  const mainSticky = affinity.main === null ? null : affinityCookie(affinity.main);
  if (mainSticky !== null) before.push(mk('canary-affinity-main', [mainSticky], fwd));
  const canarySticky = affinity.canary === null ? null : affinityCookie(affinity.canary);
  if (canarySticky !== null) before.push(mk('canary-affinity', [canarySticky], toCanary));
  if (c.byHeader !== null) {
    const h = c.byHeader.toLowerCase();
    if (c.byHeaderValue !== null) {
      before.push(mk('canary-header', [{ name: h, match: { kind: 'exact', value: c.byHeaderValue, ignoreCase: false }, invert: false }], toCanary));
    } else if (c.byHeaderPattern !== null) {
      const r = compileRe2(`.*(?:${c.byHeaderPattern}).*`);
      if (r.ok) before.push(mk('canary-header', [{ name: h, match: { kind: 'regex', regex: { ...r.regex, original: c.byHeaderPattern } }, invert: false }], toCanary));
    } else {
      before.push(mk('canary-header', [{ name: h, match: { kind: 'exact', value: 'always', ignoreCase: false }, invert: false }], toCanary));
      before.push(mk('canary-header-never', [{ name: h, match: { kind: 'exact', value: 'never', ignoreCase: false }, invert: false }], fwd));
    }
  }
  if (c.byCookie !== null) {
    const cookie = (v: string): HeaderMatch => {
      const r = compileRe2(`(?:.*[;,]\\s*)?${escapeRegex(c.byCookie!)}=${v}(?:\\s*[;,].*)?`);
      return { name: 'cookie', match: r.ok ? { kind: 'regex', regex: r.regex } : { kind: 'exact', value: `${c.byCookie}=${v}`, ignoreCase: false }, invert: false };
    };
    before.push(mk('canary-cookie', [cookie('always')], toCanary));
    before.push(mk('canary-cookie-never', [cookie('never')], fwd));
  }
  let weighted = main;
  if (c.weight > 0) {
    const mainWeight = c.weightTotal - c.weight;
    const destinations = [
      ...(mainWeight > 0 ? fwd.destinations.map((d) => ({ ...d, weight: d.weight * mainWeight })) : []),
      { cluster: canaryCluster, weight: c.weight * fwd.destinations.reduce((s, d) => s + d.weight, 0), requestHeaders: null, responseHeaders: null },
    ];
    weighted = { ...main, action: { ...fwd, destinations } };
  }
  return { before, main: weighted };
}

type CookieHash = Extract<HashKey, { kind: 'cookie' }>;

/** The affinity cookies of a canary's main and canary clusters (null: that side is not sticky). */
export interface CanaryAffinity {
  main: CookieHash | null;
  canary: CookieHash | null;
}

export function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
