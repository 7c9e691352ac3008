/**
 * External authentication by subrequest (IR `ExternalAuth`, ingress-nginx `auth-url`, nginx
 * `auth_request`). See ir/route-filters.ts for the contract; this module sends the auth request
 * through the cluster's long-lived endpoint pools and answers or lets the request go on.
 */

import type { ExternalAuth } from '../../ir/types.js';
import type { CompiledCluster } from '../compile/types.js';
import { FLAGS_HEADER, SERVER_NAME, sendLocalReply } from '../http/local-reply.js';
import type { Downstream } from '../http/downstream.js';
import { selectEndpoint } from '../upstream/load-balancer.js';
import type { AuthHeaderEdits } from './jwt.js';
import { authCacheKey, escapeUri, evaluateUrlTemplate, lookupAuthAnswer, storeAuthAnswer } from './auth-cache.js';

export interface CompiledExternalAuth {
  auth: ExternalAuth;
  /** null when the snapshot has no such cluster: every request is answered 500. */
  cluster: CompiledCluster | null;
  /** `auth.hosts` by host: the target of a `$host` auth-url; null = `cluster` for every request. */
  byHost: Map<string, { cluster: CompiledCluster | null; authority: string }> | null;
}

export function compileExternalAuth(a: ExternalAuth, clusters: ReadonlyMap<string, CompiledCluster>): CompiledExternalAuth {
  const byHost = a.hosts === undefined ? null : new Map(a.hosts.map((h) => [h.host, { cluster: clusters.get(h.cluster) ?? null, authority: h.authority }]));
  return { auth: a, cluster: clusters.get(a.cluster) ?? null, byHost };
}

/** What the check reads from the request (the Exchange). */
export interface ExternalAuthInput {
  readonly d: Downstream;
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly scheme: string;
  readonly authority: string;
  authEdits: AuthHeaderEdits | null;
  extraResponseHeaders: string[] | null;
}

/**
 * Headers of the client request never copied into the auth request: hop-by-hop ones, and every
 * header meshgate sets itself, so the auth service sees only meshgate's value. A client must not be
 * able to send its own `X-Original-URL` ahead of meshgate's: an auth service reading the first value
 * (Go's Header.Get) would decide on the forged URL (ingress-nginx's `proxy_set_header` replaces them
 * the same way).
 */
const SKIP = new Set([
  'host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'te', 'trailer', 'upgrade', 'expect', 'proxy-connection',
  'x-original-url', 'x-original-method', 'x-original-uri', 'x-scheme', 'x-sent-from', 'x-real-ip', 'x-auth-request-redirect',
]);

/** Runs the check; calls `next` when allowed, else answers the client. */
export function runExternalAuth(c: CompiledExternalAuth, x: ExternalAuthInput, clientIp: string, next: () => void): void {
  check(c, x, clientIp).then(
    (ok) => {
      if (ok) next();
    },
    // Never an unhandled rejection in a data-plane process: an unexpected failure denies (500).
    () => void fail(x.d, 500),
  );
}

async function check(c: CompiledExternalAuth, x: ExternalAuthInput, clientIp: string): Promise<boolean> {
  const a = c.auth;
  const requestUri = x.query === '' ? x.path : `${x.path}?${x.query}`;
  const originalUrl = `${x.scheme}://${x.authority}${requestUri}`;
  // auth-url with $host: the target resolved for the request's host (never a host the Ingress does not name).
  let cluster = c.cluster;
  let authority = a.authority;
  if (c.byHost !== null) {
    const t = c.byHost.get(x.authority.replace(/:\d+$/, '').toLowerCase());
    if (t === undefined) return fail(x.d, 500);
    cluster = t.cluster;
    authority = t.authority;
  }
  const path = a.pathTemplate === undefined ? a.path : evaluateUrlTemplate(a.pathTemplate, x, clientIp);
  const headers: string[] = ['host', authority];
  const raw = x.d.rawHeaders;
  let xff: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i].toLowerCase();
    if (SKIP.has(n) || n.startsWith(':')) continue;
    if (n === 'x-forwarded-for') {
      xff = xff === null ? raw[i + 1] : `${xff}, ${raw[i + 1]}`;
      continue;
    }
    headers.push(n, raw[i + 1]);
  }
  headers.push(
    'x-original-url', originalUrl,
    'x-original-method', x.method,
    'x-sent-from', 'nginx-ingress-controller',
    'x-real-ip', clientIp,
    'x-forwarded-for', xff === null ? clientIp : `${xff}, ${clientIp}`,
    'x-auth-request-redirect', a.requestRedirect ?? requestUri,
  );
  if (a.method !== null) headers.push('x-original-uri', requestUri, 'x-scheme', x.scheme);
  if (a.requestHeaders !== undefined) for (const h of a.requestHeaders) headers.push(h.name, h.value);
  let status: number;
  let resHeaders: Record<string, string | string[] | undefined>;
  // auth-cache-key: a kept answer for this key stands for the auth request (nginx proxy_cache).
  const cacheKey = a.cache === undefined ? null : authCacheKey(a.cache, x, clientIp);
  const cached = cacheKey === null ? null : lookupAuthAnswer(cacheKey, Date.now());
  if (cached !== null) {
    status = cached.status;
    resHeaders = cached.headers;
  } else {
    const endpoint = cluster === null || cluster.discovery === 'missing' ? null : selectEndpoint(cluster, Math.random);
    if (endpoint === null || endpoint.handle === null) return fail(x.d, 500);
    try {
      const r = await (await endpoint.handle.fetcher()).request({ method: (a.method ?? x.method) as 'GET', path, headers, signal: AbortSignal.timeout(a.timeoutMs), headersTimeout: 0, bodyTimeout: 0 });
      await r.body.dump();
      status = r.statusCode;
      resHeaders = r.headers;
    } catch {
      return fail(x.d, 500);
    }
    if (cacheKey !== null) storeAuthAnswer(a.cache!, cacheKey, status, resHeaders, Date.now());
  }
  if (x.d.destroyed || x.d.headersSent) return false;
  const cookies = resHeaders['set-cookie'];
  const cookieList = cookies === undefined ? [] : Array.isArray(cookies) ? cookies : [cookies];
  if (status >= 200 && status < 300) {
    const set: [string, string][] = [];
    const remove: string[] = [];
    for (const h of a.responseHeaders) {
      const v = resHeaders[h];
      if (v === undefined) remove.push(h);
      else set.push([h, Array.isArray(v) ? v.join(', ') : v]);
    }
    if (set.length > 0 || remove.length > 0) x.authEdits = x.authEdits === null ? { set, remove } : { set: [...x.authEdits.set, ...set], remove: [...x.authEdits.remove, ...remove] };
    if (cookieList.length > 0) {
      const extra: string[] = [];
      for (const v of cookieList) extra.push('set-cookie', v);
      x.extraResponseHeaders = x.extraResponseHeaders === null ? extra : x.extraResponseHeaders.concat(extra);
    }
    return true;
  }
  const extra: string[] = [];
  if (a.alwaysSetCookie) for (const v of cookieList) extra.push('set-cookie', v);
  if (status === 401 && a.signin !== null) {
    // ingress-nginx buildAuthSignURL: `<param>=$pass_access_scheme://$http_host$escaped_request_uri` is
    // appended unless the sign-in URL already gives the parameter a value.
    let location: string;
    if (a.signinTemplate !== undefined) location = evaluateUrlTemplate(a.signinTemplate, x, clientIp);
    else {
      const sep = a.signin.includes('?') ? '&' : '?';
      location = new RegExp(`[?&]${a.signinRedirectParam}=[^&]`).test(a.signin) ? a.signin : `${a.signin}${sep}${a.signinRedirectParam}=${x.scheme}://${x.authority}${escapeUri(requestUri)}`;
    }
    return fail(x.d, 302, ['location', location, ...extra]);
  }
  if (status === 401) {
    const w = resHeaders['www-authenticate'];
    if (w !== undefined) for (const v of Array.isArray(w) ? w : [w]) extra.push('www-authenticate', v);
    return fail(x.d, 401, extra);
  }
  return fail(x.d, status === 403 ? 403 : 500, extra);
}

function fail(d: Downstream, status: number, headers: string[] = []): false {
  sendLocalReply(d, status, ['server', SERVER_NAME, ...headers, 'content-length', '0', FLAGS_HEADER, 'UAEX'], null, 'UAEX', null);
  return false;
}
