/**
 * ingress-nginx annotations of one Ingress -> `NginxIngressConfig`. PURE.
 *
 * Every value is parsed strictly, with ingress-nginx's syntax and defaults. A value that does not
 * parse is an error naming the annotation (file:line) and the Ingress is not served: ingress-nginx
 * drops an Ingress whose annotation fails validation too, and serving it with the annotation half
 * applied (an allowlist ignored, a limit dropped) would be worse than not serving it. Refused
 * (snippet) and fail-closed unsupported annotations also stop the Ingress; other unsupported and
 * unknown keys are warnings and the Ingress is served without them (registry.ts).
 */

import type { BasicAuth, ClientCertificatePolicy, CorsPolicy, ExternalAuth, HashKey, LbPolicy, RequestLimit, RetryOn, StringMatch, UrlTemplatePart } from '../../../ir/types.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, resolveCluster } from '../../backends.js';
import { X509Certificate } from 'node:crypto';
import { compileRe2, compileRe2Unanchored } from '../../../lib/re2.js';
import { ipFamily } from '../../../lib/ip.js';
import { arr, obj, str } from '../../../lib/unknown.js';
import type { ResourceSet } from '../../../resources/resource-set.js';
import type { KubeObject } from '../../../resources/types.js';
import type { TranslateContext } from '../../types.js';
import { classifyAnnotations, NGINX_PREFIX } from './registry.js';
import { DEFAULT_AUTH_CACHE_DURATION, parseAuthCacheDuration, parseAuthCacheKey, parseUrlTemplate } from './auth-cache.js';

/** Highest bcrypt cost meshgate checks (runtime/filters/password-hashes.ts MAX_BCRYPT_COST; translate does not import runtime). */
const MAX_BCRYPT_COST = 14;
import { isHeaderName, isHeaderValue } from '../../../lib/header-chars.js';

export interface CanaryConfig {
  byHeader: string | null;
  byHeaderValue: string | null;
  /** RE2 pattern (unanchored), when -value is not set. */
  byHeaderPattern: string | null;
  byCookie: string | null;
  weight: number;
  weightTotal: number;
  /**
   * affinity-canary-behavior: `sticky` (default) = the canary cluster gets the main's affinity cookie
   * settings and a cookie issued by one side keeps the client there, before every canary rule;
   * `legacy` = the canary sets no affinity cookie of its own (a main cookie still keeps the client on main).
   */
  affinityBehavior: 'sticky' | 'legacy';
}

export interface RedirectConfig {
  scheme: string;
  host: string;
  port: number | null;
  /** Path and query of the URL, as written (`/a?b`), `/` when it has none. */
  pathAndQuery: string;
  code: number;
}

export interface NextUpstream {
  retryOn: RetryOn[];
  retriableStatusCodes: number[];
  /** Total tries including the first. */
  tries: number;
  /** ms, 0 = none. */
  timeoutMs: number;
  /** `non_idempotent` listed: POST, LOCK and PATCH are retried like other methods. */
  nonIdempotent: boolean;
}

/** proxy-next-upstream, -tries and -timeout as the Ingress sets them (null = not set: the controller ConfigMap's value, else ingress-nginx's default). */
export interface NextUpstreamSet {
  conditions: string | null;
  tries: number | null;
  timeoutMs: number | null;
}

/** ingress-nginx's defaults: `proxy-next-upstream: error timeout`, 3 tries, no time limit. */
export const NEXT_UPSTREAM_DEFAULT = { conditions: 'error timeout', tries: 3, timeoutMs: 0 } as const;

/** What the annotations of one Ingress ask for; null fields = not set (ingress-nginx defaults apply). */
export interface NginxIngressConfig {
  canary: CanaryConfig | null;
  rewriteTarget: string | null;
  useRegex: boolean;
  appRoot: string | null;
  xForwardedPrefix: string | null;
  upstreamVhost: string | null;
  /** ssl-redirect (default true). */
  sslRedirect: boolean;
  forceSslRedirect: boolean;
  redirect: RedirectConfig | null;
  fromToWww: boolean;
  serverAliases: string[];
  /** Body limit in bytes; 0 = none (explicit), null = not set. */
  maxBodyBytes: number | null;
  connectTimeoutMs: number | null;
  readTimeoutMs: number | null;
  /** Retries (ingress-nginx retries by default: `error timeout`, 3 tries); `nextUpstreamSet` is what the Ingress itself set. */
  nextUpstream: NextUpstream;
  nextUpstreamSet: NextUpstreamSet;
  allow: string[];
  deny: string[];
  basicAuth: BasicAuth | null;
  externalAuth: ExternalAuth | null;
  /** auth-tls-*: the CA bundle (and CRL) and the per-request policy; host-level (first Ingress of the host wins). */
  clientTls: { caPem: string; caSecret: string; crlPem: string | null; policy: ClientCertificatePolicy; verify: boolean; verifyDepth: number } | null;
  cors: CorsPolicy | null;
  limit: Omit<RequestLimit, 'zone' | 'status'> | null;
  lbPolicy: LbPolicy | null;
  /** Affinity cookie path given by session-cookie-path (else the Ingress path is used). */
  cookiePathSet: boolean;
  serviceUpstream: boolean;
  /** mirror-target: the cluster copies of each request go to; null = none. */
  mirrorCluster: string | null;
  /** Host of the copies (mirror-host, else the mirror-target's host). */
  mirrorHost: string | null;
  /** mirror-request-body (default "on"). */
  mirrorBody: boolean;
  /** custom-headers: response headers from a ConfigMap (names lowercase); [] = none. */
  customHeaders: { name: string; value: string }[];
  /** default-backend: a Service name in the Ingress's namespace; null = none. */
  defaultBackend: string | null;
  /** proxy-redirect-from/-to; null = none. */
  locationRewrite: { from: string; to: string } | null;
  /** custom-http-errors (with a default-backend, unless disable-proxy-intercept-errors); [] = none. */
  customErrors: number[];
  /** ssl-passthrough: the Ingress's hosts are relayed unterminated by SNI on the HTTPS port (server-level: any Ingress of the host turns it on). */
  sslPassthrough: boolean;
  /** proxy-http-version "1.0": requests go upstream as HTTP/1.0. */
  http10: boolean;
  /** preserve-trailing-slash (default false: HTTPS redirects leave out one trailing slash). */
  preserveTrailingSlash: boolean;
  /**
   * use-port-in-redirects (default false, or the ConfigMap's): HTTPS redirects of this Ingress's paths
   * name the HTTPS port, 443 included (lua_ingress.lua `https://host:<https port><uri>`); false: never.
   */
  usePortInRedirects: boolean;
  /** disable-proxy-intercept-errors "true": no error pages, neither this Ingress's nor the ConfigMap's custom-http-errors. */
  interceptErrorsDisabled: boolean;
}

export interface ParseResult {
  /** null: the Ingress is not served (errors reported). */
  config: NginxIngressConfig | null;
}

const SIZE = /^(\d+)([bkmg]?)$/i;
const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 * 1024, g: 1024 * 1024 * 1024 };
const REWRITE_TARGET = /^[-._~a-zA-Z0-9/:$]*$/;
const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HOST_NAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export const CORS_DEFAULT_METHODS = ['GET', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS'];
export const CORS_DEFAULT_HEADERS = 'DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization'.split(',');

/** Parses the annotations of `ing`; reports every problem. */
export function parseNginxAnnotations(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject): ParseResult {
  const a = ing.metadata.annotations;
  const field = (name: string) => `metadata.annotations["${NGINX_PREFIX}${name}"]`;
  const ref = `Ingress ${ing.metadata.namespace}/${ing.metadata.name}`;
  let ok = true;
  const fail = (name: string, message: string): void => {
    ctx.report('error', 'MG_INVALID_FIELD', ing, field(name), `${message}; ${ref} is not served`);
    ok = false;
  };

  // Registry: refused, unsupported, unknown.
  for (const c of classifyAnnotations(a)) {
    if (c.status === 'refused') {
      ctx.report('error', 'MG_NGINX_SNIPPET_REFUSED', ing, field(c.name), `${c.name} is refused: ${c.info?.note ?? ''}. meshgate never executes nginx snippets, whatever allow-snippet-annotations says; express it with typed annotations (custom headers, timeouts, redirects) or Istio/Gateway API resources`);
      ok = false;
    } else if (c.status === 'unsupported') {
      if (c.info?.failClosed) {
        ctx.report('error', 'MG_UNSUPPORTED', ing, field(c.name), `${c.name} is not supported: ${c.info.note}; ${ref} is not served`);
        ok = false;
      } else {
        ctx.report('warning', 'MG_UNSUPPORTED', ing, field(c.name), `${c.name} is not supported: ${c.info?.note ?? ''}; the Ingress is served without it`);
      }
    } else if (c.status === 'unknown') {
      ctx.report('warning', 'MG_UNSUPPORTED', ing, field(c.name), `${c.name} is not an ingress-nginx annotation meshgate knows; it is ignored`);
    }
  }

  const get = (name: string): string | undefined => {
    const v = a[NGINX_PREFIX + name];
    return v === undefined ? undefined : v.trim();
  };
  const bool = (name: string, dflt: boolean): boolean => {
    const v = get(name);
    if (v === undefined) return dflt;
    const b = parseBool(v);
    if (b !== null) return b;
    fail(name, `${name} must be "true" or "false", not ${JSON.stringify(v)}`);
    return dflt;
  };
  const seconds = (name: string): number | null => {
    const v = get(name);
    if (v === undefined) return null;
    if (!/^\d+$/.test(v)) {
      fail(name, `${name} must be a whole number of seconds without unit (ingress-nginx syntax), not ${JSON.stringify(v)}`);
      return null;
    }
    return Number(v) * 1000;
  };
  const int = (name: string, min: number, max: number): number | null => {
    const v = get(name);
    if (v === undefined) return null;
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
      fail(name, `${name} must be an integer from ${min} to ${max}, not ${JSON.stringify(v)}`);
      return null;
    }
    return Number(v);
  };
  const size = (name: string): number | null => {
    const v = get(name);
    if (v === undefined) return null;
    const m = SIZE.exec(v);
    if (!m) {
      fail(name, `${name} must be an nginx size (digits with an optional k, m or g), not ${JSON.stringify(v)}`);
      return null;
    }
    return Number(m[1]) * UNITS[m[2].toLowerCase()];
  };
  const cidrs = (name: string): string[] => {
    const v = get(name);
    if (v === undefined || v === '') return [];
    const out: string[] = [];
    for (const raw of v.split(',')) {
      const c = raw.trim();
      if (c === '') continue;
      if (!isCidr(c)) {
        fail(name, `${name}: ${JSON.stringify(c)} is not an IP address or CIDR block`);
        continue;
      }
      out.push(c);
    }
    return out;
  };

  // Canary.
  let canary: CanaryConfig | null = null;
  if (bool('canary', false)) {
    const byHeader = get('canary-by-header') || null;
    if (byHeader !== null && !HEADER_NAME.test(byHeader)) fail('canary-by-header', `canary-by-header ${JSON.stringify(byHeader)} is not a header name`);
    const pattern = get('canary-by-header-pattern') || null;
    if (pattern !== null) {
      const r = compileRe2Unanchored(pattern);
      if (!r.ok) fail('canary-by-header-pattern', `canary-by-header-pattern ${JSON.stringify(pattern)}: ${r.message}`);
    }
    const weight = int('canary-weight', 0, 1_000_000) ?? 0;
    const total = Math.max(100, int('canary-weight-total', 0, 1_000_000) ?? 100);
    if (weight > total) fail('canary-weight', `canary-weight ${weight} is larger than canary-weight-total ${total}`);
    const behavior = get('affinity-canary-behavior');
    if (behavior !== undefined && behavior !== '' && behavior !== 'sticky' && behavior !== 'legacy') fail('affinity-canary-behavior', `affinity-canary-behavior must be "sticky" or "legacy", not ${JSON.stringify(behavior)}`);
    canary = { byHeader, byHeaderValue: get('canary-by-header-value') || null, byHeaderPattern: pattern, byCookie: get('canary-by-cookie') || null, weight, weightTotal: total, affinityBehavior: behavior === 'legacy' ? 'legacy' : 'sticky' };
  }

  // Paths and rewrites.
  const useRegex = bool('use-regex', false);
  let rewriteTarget = get('rewrite-target') ?? null;
  if (rewriteTarget !== null && !REWRITE_TARGET.test(rewriteTarget)) {
    fail('rewrite-target', `rewrite-target ${JSON.stringify(rewriteTarget)} may hold only letters, digits, "-._~/:" and $n group references`);
    rewriteTarget = null;
  }
  let appRoot = get('app-root') ?? null;
  if (appRoot !== null && (!appRoot.startsWith('/') || !/^[-._~a-zA-Z0-9/]*$/.test(appRoot))) {
    fail('app-root', `app-root ${JSON.stringify(appRoot)} must be an absolute path (letters, digits, "-._~/")`);
    appRoot = null;
  }
  let xForwardedPrefix = get('x-forwarded-prefix') ?? null;
  if (xForwardedPrefix !== null && !/^[-._~a-zA-Z0-9/]+$/.test(xForwardedPrefix)) {
    fail('x-forwarded-prefix', `x-forwarded-prefix ${JSON.stringify(xForwardedPrefix)} must be a path`);
    xForwardedPrefix = null;
  }
  let upstreamVhost = get('upstream-vhost') ?? null;
  if (upstreamVhost !== null && !/^[a-zA-Z0-9]([-.a-zA-Z0-9]*)(:\d{1,5})?$/.test(upstreamVhost)) {
    fail('upstream-vhost', `upstream-vhost ${JSON.stringify(upstreamVhost)} must be a host name with an optional port (nginx variables are not accepted)`);
    upstreamVhost = null;
  }
  const preserveTrailingSlash = bool('preserve-trailing-slash', false);
  const usePortInRedirects = bool('use-port-in-redirects', false);

  // Redirects. temporal-redirect wins over permanent-redirect (ingress-nginx's redirect parser).
  const sslRedirect = bool('ssl-redirect', true);
  const forceSslRedirect = bool('force-ssl-redirect', false);
  let redirect: RedirectConfig | null = null;
  for (const [name, codeName, dflt, maxCode] of [['temporal-redirect', 'temporal-redirect-code', 302, 307], ['permanent-redirect', 'permanent-redirect-code', 301, 308]] as const) {
    const url = get(name);
    const code = int(codeName, 300, maxCode);
    if (url === undefined || url === '' || redirect !== null) continue;
    const parsed = parseRedirectUrl(url);
    if (parsed === null) {
      fail(name, `${name} ${JSON.stringify(url)} must be an absolute http or https URL`);
      continue;
    }
    // IR redirects are 301, 302, 303, 307 or 308.
    const c = code ?? dflt;
    if (![301, 302, 303, 307, 308].includes(c)) {
      fail(codeName, `${codeName} ${c} is a status meshgate does not redirect with (301, 302, 303, 307, 308)`);
      continue;
    }
    redirect = { ...parsed, code: c };
  }
  const fromToWww = bool('from-to-www-redirect', false);
  const sslPassthrough = bool('ssl-passthrough', false);
  const serverAliases: string[] = [];
  const aliasRaw = get('server-alias');
  if (aliasRaw !== undefined && aliasRaw !== '') {
    for (const raw of aliasRaw.split(',')) {
      const name = raw.trim().toLowerCase();
      if (name === '') continue;
      if (!HOST_NAME.test(name)) fail('server-alias', `server-alias ${JSON.stringify(name)} is not a host name`);
      else serverAliases.push(name);
    }
  }

  // Limits and timeouts.
  const maxBody = size('proxy-body-size');
  size('client-body-buffer-size');
  const connectTimeoutMs = seconds('proxy-connect-timeout');
  const readTimeoutMs = seconds('proxy-read-timeout');
  seconds('proxy-send-timeout');
  const httpVersion = get('proxy-http-version');
  if (httpVersion !== undefined && httpVersion !== '1.1' && httpVersion !== '1.0') fail('proxy-http-version', `proxy-http-version must be "1.0" or "1.1", not ${JSON.stringify(httpVersion)}`);
  for (const name of ['proxy-buffering', 'proxy-request-buffering']) {
    const v = get(name);
    if (v === undefined) continue;
    if (v !== 'on' && v !== 'off') fail(name, `${name} must be "on" or "off", not ${JSON.stringify(v)}`);
    else if (v === 'on' && name === 'proxy-buffering') ctx.report('info', 'MG_UNSUPPORTED', ing, field(name), 'proxy-buffering "on": meshgate streams responses as they arrive (nothing is buffered to disk)');
  }
  const nextUpstreamSet: NextUpstreamSet = { conditions: get('proxy-next-upstream') ?? null, tries: int('proxy-next-upstream-tries', 0, 100), timeoutMs: seconds('proxy-next-upstream-timeout') };
  const nextUpstream = resolveNextUpstream(nextUpstreamSet, NEXT_UPSTREAM_DEFAULT, (m) => fail('proxy-next-upstream', m));

  // Access control. allowlist-source-range is the current key; whitelist- is read when it is empty.
  const allow = get('allowlist-source-range') ? cidrs('allowlist-source-range') : cidrs('whitelist-source-range');
  const deny = cidrs('denylist-source-range');
  const basicAuth = parseAuth(ctx, resources, ing, get, field, (name, m) => fail(name, m));
  const externalAuth = parseAuthUrl(ctx, resources, ing, get, field, (name, m) => fail(name, m));
  const clientTls = parseAuthTls(ctx, resources, ing, get, field, (name, m) => fail(name, m));

  const cors = bool('enable-cors', false) ? parseCors(get, (name, m) => fail(name, m)) : null;

  // Rate limits.
  let limit: NginxIngressConfig['limit'] = null;
  const rps = int('limit-rps', 0, 1_000_000);
  const rpm = int('limit-rpm', 0, 1_000_000);
  const conns = int('limit-connections', 0, 1_000_000);
  const mult = int('limit-burst-multiplier', 1, 1000) ?? 5;
  // limit-allowlist is the current key; limit-whitelist is read when it is empty (ingress-nginx alias).
  const exempt = get('limit-allowlist') ? cidrs('limit-allowlist') : cidrs('limit-whitelist');
  if ((rps ?? 0) > 0 || (rpm ?? 0) > 0 || (conns ?? 0) > 0) {
    // The template's order: limit_conn, then limit_req for rps, then for rpm; nginx applies both
    // limit_req zones (a request must pass each). Burst = limit x limit-burst-multiplier for each.
    const rates = [...((rps ?? 0) > 0 ? [{ requests: rps!, periodMs: 1000, burst: rps! * mult }] : []), ...((rpm ?? 0) > 0 ? [{ requests: rpm!, periodMs: 60_000, burst: rpm! * mult }] : [])];
    limit = { rate: rates[0] ?? null, maxConcurrent: (conns ?? 0) > 0 ? conns : null, exempt };
    if (rates.length > 1) limit.moreRates = rates.slice(1);
  }

  const lbPolicy = parseLb(get, (name, m) => fail(name, m), seconds);
  const serviceUpstream = bool('service-upstream', false);
  let customHeaders: { name: string; value: string }[] = [];
  const ch = get('custom-headers');
  if (ch !== undefined && ch !== '') {
    const r = headersFromConfigMap(resources, ch, ing.metadata.namespace, true);
    if (typeof r === 'string') fail('custom-headers', `custom-headers ${ch}: ${r}`);
    else customHeaders = r;
  }
  let mirrorCluster: string | null = null;
  let mirrorHost: string | null = null;
  const mirror = get('mirror-target');
  if (mirror !== undefined && mirror !== '') {
    // ingress-nginx's documented form `https://host$request_uri`: the copy keeps the request's URI.
    const m = /^(https?:\/\/[^/$\s]+)\$request_uri$/.exec(mirror);
    const url = m ? parseAbsoluteUrl(`${m[1]}/`) : null;
    if (url === null) fail('mirror-target', `mirror-target ${JSON.stringify(mirror)} must be scheme://host[:port]$request_uri (the copy keeps the request URI; other nginx variables are refused)`);
    else {
      mirrorCluster = urlCluster(ctx, resources, ing, url, field('mirror-target'));
      // ingress-nginx: the copy's Host is mirror-host, else the target's host name (without port).
      mirrorHost = url.host;
    }
  }
  const mirrorHostRaw = get('mirror-host');
  if (mirrorHostRaw !== undefined && mirrorHostRaw !== '') {
    if (!/^[a-zA-Z0-9]([-.a-zA-Z0-9]*)(:\d{1,5})?$/.test(mirrorHostRaw)) fail('mirror-host', `mirror-host ${JSON.stringify(mirrorHostRaw)} must be a host name with an optional port (nginx variables are not accepted)`);
    else if (mirrorCluster === null) ctx.report('warning', 'MG_INVALID_FIELD', ing, field('mirror-host'), 'mirror-host without mirror-target has no effect (as in ingress-nginx)');
    else mirrorHost = mirrorHostRaw;
  }
  const mirrorBody = get('mirror-request-body');
  if (mirrorBody !== undefined && mirrorBody !== 'on' && mirrorBody !== 'off') fail('mirror-request-body', `mirror-request-body must be "on" or "off", not ${JSON.stringify(mirrorBody)}`);

  let defaultBackend = get('default-backend') || null;
  if (defaultBackend !== null && defaultBackend.includes('/')) {
    const [dns, dname] = defaultBackend.split('/', 2);
    if (dns !== ing.metadata.namespace) fail('default-backend', `default-backend ${defaultBackend} is in another namespace than the Ingress (${ing.metadata.namespace}); cross-namespace references are refused`);
    defaultBackend = dname;
  }
  let locationRewrite: NginxIngressConfig['locationRewrite'] = null;
  const redirectFrom = get('proxy-redirect-from');
  const redirectTo = get('proxy-redirect-to');
  if (redirectFrom !== undefined && redirectFrom !== '' && redirectFrom !== 'off' && redirectFrom !== 'default') {
    // nginx variables and regex forms (`~`) are refused: only a literal prefix and its replacement.
    const literal = /^[^\s"'`\\{};$~]+$/;
    if (!literal.test(redirectFrom)) fail('proxy-redirect-from', `proxy-redirect-from ${JSON.stringify(redirectFrom)} must be a literal URL prefix (no nginx variables or ~regex)`);
    else if (redirectTo === undefined || redirectTo === '' || !literal.test(redirectTo)) fail('proxy-redirect-to', `proxy-redirect-to ${JSON.stringify(redirectTo ?? '')} must be a literal replacement when proxy-redirect-from is set`);
    else locationRewrite = { from: redirectFrom, to: redirectTo };
  }
  let customErrors: number[] = [];
  const ce = get('custom-http-errors');
  if (ce !== undefined && ce !== '') {
    const codes = ce.split(',').map((s) => s.trim()).filter(Boolean);
    const bad = codes.filter((c) => !/^[1-5]\d\d$/.test(c));
    if (bad.length > 0) fail('custom-http-errors', `custom-http-errors: ${bad.map((b) => JSON.stringify(b)).join(', ')} is not an HTTP status`);
    else customErrors = [...new Set(codes.map(Number))].sort((a, b) => a - b);
    if (bool('disable-proxy-intercept-errors', false)) customErrors = [];
    else if (customErrors.length > 0 && (get('default-backend') ?? '') === '' && (ctx.options.nginxDefaultBackend ?? null) === null) {
      ctx.report('warning', 'MG_UNSUPPORTED', ing, field('custom-http-errors'), 'custom-http-errors needs a default-backend annotation or --default-backend-service NS/NAME (ingress-nginx\'s default backend); without one ingress-nginx answers every listed status with its internal server\'s "404 Not Found" page, meshgate returns the backend\'s own answers (status and body) instead');
      customErrors = [];
    }
  }
  const interceptErrorsDisabled = get('disable-proxy-intercept-errors') !== undefined && parseBool(get('disable-proxy-intercept-errors')!) === true;
  if (defaultBackend !== null && !/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(defaultBackend)) fail('default-backend', `default-backend ${JSON.stringify(defaultBackend)} is not a Service name`);
  else if (defaultBackend !== null && resources.get('Service', ing.metadata.namespace, defaultBackend) === undefined) fail('default-backend', `default-backend Service ${ing.metadata.namespace}/${defaultBackend} does not exist`);

  if (!ok) return { config: null };
  return {
    config: {
      canary,
      rewriteTarget,
      useRegex,
      appRoot,
      xForwardedPrefix,
      upstreamVhost,
      sslRedirect,
      forceSslRedirect,
      redirect,
      fromToWww,
      serverAliases,
      maxBodyBytes: maxBody,
      connectTimeoutMs,
      readTimeoutMs,
      nextUpstream,
      nextUpstreamSet,
      allow,
      deny,
      basicAuth,
      externalAuth,
      clientTls,
      cors,
      limit,
      lbPolicy,
      cookiePathSet: get('session-cookie-path') !== undefined,
      serviceUpstream,
      mirrorCluster,
      mirrorHost,
      mirrorBody: mirrorBody !== 'off',
      customHeaders,
      customErrors,
      locationRewrite,
      defaultBackend,
      sslPassthrough,
      http10: httpVersion === '1.0',
      preserveTrailingSlash,
      usePortInRedirects,
      interceptErrorsDisabled,
    },
  };
}

function isCidr(s: string): boolean {
  const slash = s.indexOf('/');
  const addr = slash === -1 ? s : s.slice(0, slash);
  const fam = ipFamily(addr);
  if (fam === 0) return false;
  if (slash === -1) return true;
  const bits = s.slice(slash + 1);
  return /^\d{1,3}$/.test(bits) && Number(bits) <= (fam === 4 ? 32 : 128);
}

function parseRedirectUrl(url: string): Omit<RedirectConfig, 'code'> | null {
  if (/[\s"'`\\{};$]/.test(url)) return null;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '' || u.username !== '' || u.hash !== '') return null;
  return { scheme: u.protocol.slice(0, -1), host: u.hostname, port: u.port === '' ? null : Number(u.port), pathAndQuery: `${u.pathname}${u.search}` };
}

/** What the Ingress set, each key falling back to `dflt` (the controller ConfigMap's, else ingress-nginx's defaults). */
export function resolveNextUpstream(set: NextUpstreamSet, dflt: { conditions: string; tries: number; timeoutMs: number }, fail: (m: string) => void): NextUpstream {
  return parseNextUpstream(set.conditions ?? dflt.conditions, set.tries ?? dflt.tries, set.timeoutMs ?? dflt.timeoutMs, fail) ?? parseNextUpstream(NEXT_UPSTREAM_DEFAULT.conditions, NEXT_UPSTREAM_DEFAULT.tries, 0, fail)!;
}

/** nginx proxy_next_upstream conditions -> retry conditions; null (reported) when a condition is unknown. */
export function parseNextUpstream(raw: string, tries: number, timeoutMs: number, fail: (m: string) => void): NextUpstream | null {
  const words = raw.split(/\s+/).filter((w) => w !== '');
  let nonIdempotent = false;
  const retryOn = new Set<RetryOn>();
  const codes = new Set<number>();
  let off = false;
  for (const w of words) {
    switch (w) {
      case 'off':
        off = true;
        break;
      case 'error':
        retryOn.add('connect-failure');
        retryOn.add('reset');
        break;
      case 'timeout':
      case 'invalid_header':
        retryOn.add('reset');
        break;
      case 'non_idempotent':
        nonIdempotent = true;
        break;
      case 'http_500':
      case 'http_502':
      case 'http_503':
      case 'http_504':
      case 'http_403':
      case 'http_404':
      case 'http_429':
        retryOn.add('retriable-status-codes');
        codes.add(Number(w.slice(5)));
        break;
      default:
        fail(`proxy-next-upstream: ${JSON.stringify(w)} is not one of error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent, off`);
        return null;
    }
  }
  // nginx counts the first try; tries 0 means unlimited (bounded here at 10).
  const t = tries === 0 ? 10 : tries;
  if (off || retryOn.size === 0 || t <= 1) return { retryOn: [], retriableStatusCodes: [], tries: 1, timeoutMs, nonIdempotent };
  return { retryOn: [...retryOn].sort(), retriableStatusCodes: [...codes].sort((x, y) => x - y), tries: t, timeoutMs, nonIdempotent };
}

function parseCors(get: (n: string) => string | undefined, fail: (name: string, m: string) => void): CorsPolicy {
  const origins: StringMatch[] = [];
  const rawOrigins = get('cors-allow-origin') ?? '*';
  for (const raw of rawOrigins.split(',')) {
    const o = raw.trim();
    if (o === '') continue;
    if (o === '*') {
      // ingress-nginx's parser: `*` anywhere in the list means any origin, the rest is not read.
      origins.length = 0;
      origins.push({ kind: 'exact', value: '*', ignoreCase: false });
      break;
    }
    const m = /^(https?):\/\/(\*\.)?([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*)(:\d{1,5})?$/.exec(o);
    if (!m) {
      fail('cors-allow-origin', `cors-allow-origin: ${JSON.stringify(o)} is not "*" or scheme://host[:port] (one leading *. label allowed)`);
      continue;
    }
    if (m[2] === undefined) {
      origins.push({ kind: 'exact', value: o.toLowerCase(), ignoreCase: true });
    } else {
      // `*.` stands for exactly one DNS label, matched case-insensitively.
      const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const r = compileRe2(`(?i)${esc(m[1])}://[a-z0-9-]+\\.${esc(m[3])}${esc(m[7] ?? '')}`);
      if (r.ok) origins.push({ kind: 'regex', regex: r.regex });
    }
  }
  const list = (name: string, dflt: string[], re: RegExp): string[] => {
    const v = get(name);
    if (v === undefined || v === '') return dflt;
    const out: string[] = [];
    for (const raw of v.split(',')) {
      const x = raw.trim();
      if (x === '') continue;
      if (!re.test(x)) fail(name, `${name}: ${JSON.stringify(x)} is not valid`);
      else out.push(x);
    }
    return out;
  };
  const methods = list('cors-allow-methods', CORS_DEFAULT_METHODS, /^[A-Za-z]+$/).map((m) => m.toUpperCase());
  const headers = list('cors-allow-headers', CORS_DEFAULT_HEADERS, HEADER_NAME);
  const expose = list('cors-expose-headers', [], /^([!#$%&'*+.^_`|~0-9A-Za-z-]+|\*)$/);
  const credRaw = get('cors-allow-credentials');
  let credentials = true;
  if (credRaw !== undefined) {
    if (parseBool(credRaw) !== null) credentials = parseBool(credRaw)!;
    else fail('cors-allow-credentials', `cors-allow-credentials must be "true" or "false", not ${JSON.stringify(credRaw)}`);
  }
  let maxAge = 1728000;
  const ageRaw = get('cors-max-age');
  if (ageRaw !== undefined) {
    if (/^\d+$/.test(ageRaw)) maxAge = Number(ageRaw);
    else fail('cors-max-age', `cors-max-age must be a number of seconds, not ${JSON.stringify(ageRaw)}`);
  }
  return { allowOrigins: origins, allowMethods: methods, allowHeaders: headers, exposeHeaders: expose, maxAgeSeconds: maxAge, allowCredentials: credentials, unmatchedPreflights: 'forward', dialect: 'ingress-nginx' };
}

/** affinity, upstream-hash-by and load-balance -> the Service cluster's LB policy (upstream-hash-by wins over load-balance, affinity over both). */
function parseLb(get: (n: string) => string | undefined, fail: (name: string, m: string) => void, seconds: (n: string) => number | null): LbPolicy | null {
  const affinity = get('affinity');
  if (affinity !== undefined && affinity !== '') {
    if (affinity !== 'cookie') {
      fail('affinity', `affinity ${JSON.stringify(affinity)}: only "cookie" exists`);
      return null;
    }
    const mode = get('affinity-mode');
    if (mode !== undefined && mode !== 'balanced' && mode !== 'persistent') fail('affinity-mode', `affinity-mode must be "balanced" or "persistent", not ${JSON.stringify(mode)}`);
    const name = get('session-cookie-name') || 'INGRESSCOOKIE';
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) fail('session-cookie-name', `session-cookie-name ${JSON.stringify(name)} is not a cookie name`);
    const path = get('session-cookie-path') ?? null;
    if (path !== null && !/^\/[-._~a-zA-Z0-9/]*$/.test(path)) fail('session-cookie-path', `session-cookie-path ${JSON.stringify(path)} must be a plain absolute path`);
    const maxAge = seconds('session-cookie-max-age');
    const expires = seconds('session-cookie-expires');
    const ttl = maxAge ?? expires;
    // session-cookie-secure / -samesite / -domain: attributes of the generated cookie.
    let attributes = '';
    const secure = get('session-cookie-secure');
    if (secure !== undefined) {
      const b = parseBool(secure);
      if (b === null) fail('session-cookie-secure', `session-cookie-secure must be "true" or "false", not ${JSON.stringify(secure)}`);
      else if (b) attributes += '; Secure';
    }
    const sameSite = get('session-cookie-samesite');
    if (sameSite !== undefined && sameSite !== '') {
      if (!['None', 'Lax', 'Strict'].includes(sameSite)) fail('session-cookie-samesite', `session-cookie-samesite must be None, Lax or Strict, not ${JSON.stringify(sameSite)}`);
      else attributes += `; SameSite=${sameSite}`;
    }
    const domain = get('session-cookie-domain');
    if (domain !== undefined && domain !== '') {
      if (!/^\.?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*$/.test(domain)) fail('session-cookie-domain', `session-cookie-domain ${JSON.stringify(domain)} is not a domain`);
      else attributes += `; Domain=${domain}`;
    }
    const conditional = get('session-cookie-conditional-samesite-none');
    let conditionalSameSiteNone = false;
    if (conditional !== undefined) {
      const b = parseBool(conditional);
      if (b === null) fail('session-cookie-conditional-samesite-none', `session-cookie-conditional-samesite-none must be "true" or "false", not ${JSON.stringify(conditional)}`);
      else conditionalSameSiteNone = b && sameSite === 'None';
    }
    const cof = get('session-cookie-change-on-failure');
    let changeOnFailure = false;
    if (cof !== undefined) {
      const b = parseBool(cof);
      if (b === null) fail('session-cookie-change-on-failure', `session-cookie-change-on-failure must be "true" or "false", not ${JSON.stringify(cof)}`);
      else changeOnFailure = b;
    }
    // backendKey is filled in once the cluster is known (ingress/index.ts, nginxAffinityBackendKey).
    const sticky = { mode: mode === 'persistent' ? ('persistent' as const) : ('balanced' as const), changeOnFailure, backendKey: '' };
    const hashOn: HashKey = { kind: 'cookie', name, path, ttlSeconds: ttl === null ? 0 : ttl / 1000, ...(attributes === '' ? {} : { attributes }), ...(conditionalSameSiteNone ? { conditionalSameSiteNone } : {}), affinity: sticky };
    return { kind: 'consistent-hash', hashOn, algorithm: { kind: 'ring-hash', minimumRingSize: 1024 } };
  }
  const by = get('upstream-hash-by');
  if (by !== undefined && by !== '') {
    let hashOn: HashKey | null = null;
    let m: RegExpExecArray | null;
    if (by === '$remote_addr' || by === '$binary_remote_addr') hashOn = { kind: 'source-ip' };
    else if ((m = /^\$http_([a-z0-9_]+)$/i.exec(by))) hashOn = { kind: 'header', name: m[1].toLowerCase().replace(/_/g, '-') };
    else if ((m = /^\$cookie_([A-Za-z0-9_-]+)$/.exec(by))) hashOn = { kind: 'cookie', name: m[1], path: null, ttlSeconds: null };
    else if ((m = /^\$arg_([A-Za-z0-9_-]+)$/.exec(by))) hashOn = { kind: 'query-parameter', name: m[1] };
    if (hashOn === null) {
      fail('upstream-hash-by', `upstream-hash-by ${JSON.stringify(by)}: meshgate hashes on one of $remote_addr, $binary_remote_addr, $http_<name>, $cookie_<name>, $arg_<name>`);
      return null;
    }
    // upstream-hash-by-subset (+ -subset-size, default 3): the key picks a group of endpoints, then one at random.
    const subsetRaw = get('upstream-hash-by-subset');
    const subset = subsetRaw === undefined ? false : parseBool(subsetRaw);
    if (subset === null) fail('upstream-hash-by-subset', `upstream-hash-by-subset must be "true" or "false", not ${JSON.stringify(subsetRaw)}`);
    const sizeRaw = get('upstream-hash-by-subset-size');
    if (sizeRaw !== undefined && (!/^\d+$/.test(sizeRaw) || Number(sizeRaw) < 1 || Number(sizeRaw) > 1000)) fail('upstream-hash-by-subset-size', `upstream-hash-by-subset-size must be an integer from 1 to 1000, not ${JSON.stringify(sizeRaw)}`);
    const subsetSize = subset === true ? (sizeRaw !== undefined && /^\d+$/.test(sizeRaw) ? Number(sizeRaw) : 3) : undefined;
    return { kind: 'consistent-hash', hashOn, algorithm: { kind: 'ring-hash', minimumRingSize: 1024 }, ...(subsetSize !== undefined ? { subsetSize } : {}) };
  }
  const lb = get('load-balance');
  if (lb !== undefined) {
    if (lb === 'round_robin') return 'ROUND_ROBIN';
    if (lb === 'ewma') return 'LEAST_REQUEST';
    fail('load-balance', `load-balance must be "round_robin" or "ewma", not ${JSON.stringify(lb)}`);
  }
  return null;
}

/** auth-type basic with auth-secret (auth-file or auth-map) and auth-realm. */
function parseAuth(
  ctx: TranslateContext,
  resources: ResourceSet,
  ing: KubeObject,
  get: (n: string) => string | undefined,
  field: (n: string) => string,
  fail: (name: string, m: string) => void,
): BasicAuth | null {
  const type = get('auth-type');
  if (type === undefined || type === '') {
    if (get('auth-secret') !== undefined) ctx.report('warning', 'MG_INVALID_FIELD', ing, field('auth-secret'), 'auth-secret without auth-type has no effect (as in ingress-nginx)');
    return null;
  }
  if (type !== 'basic' && type !== 'digest') {
    fail('auth-type', `auth-type must be "basic" or "digest", not ${JSON.stringify(type)}`);
    return null;
  }
  const realm = get('auth-realm') ?? '';
  if (/["\\\r\n]/.test(realm)) fail('auth-realm', 'auth-realm may not contain quotes, backslashes or line breaks');
  const secretType = get('auth-secret-type') ?? 'auth-file';
  if (secretType !== 'auth-file' && secretType !== 'auth-map') {
    fail('auth-secret-type', `auth-secret-type must be "auth-file" or "auth-map", not ${JSON.stringify(secretType)}`);
    return null;
  }
  const ref = get('auth-secret');
  if (ref === undefined || ref === '') {
    fail('auth-secret', 'auth-type basic needs auth-secret');
    return null;
  }
  const slash = ref.indexOf('/');
  const ns = slash === -1 ? ing.metadata.namespace : ref.slice(0, slash);
  const name = slash === -1 ? ref : ref.slice(slash + 1);
  if (ns !== ing.metadata.namespace) {
    fail('auth-secret', `auth-secret ${ref} is in another namespace than the Ingress (${ing.metadata.namespace}); cross-namespace Secrets are refused (ingress-nginx allow-cross-namespace-resources: false)`);
    return null;
  }
  const unavailable = (why: string): BasicAuth => {
    // ingress-nginx denies the location (503 for every request) rather than serve it unauthenticated.
    ctx.report('error', 'MG_SECRET_INVALID', ing, field('auth-secret'), `${why}; every request to this Ingress's paths is answered 503`);
    return type === 'digest' ? { scheme: 'digest', realm, users: [], unavailable: true } : { realm, users: [], unavailable: true };
  };
  const secret = resources.get('Secret', ns, name);
  if (secret === undefined) return unavailable(`Secret ${ns}/${name} does not exist`);
  const data = secretData(secret);
  const users: BasicAuth['users'] = [];
  if (secretType === 'auth-file') {
    const text = data.auth;
    if (text === undefined) return unavailable(`Secret ${ns}/${name} has no key "auth"`);
    for (const line of text.split(/\r?\n/)) {
      const l = line.trim();
      if (l === '' || l.startsWith('#')) continue;
      const colon = l.indexOf(':');
      if (colon <= 0) continue;
      if (type === 'digest') {
        // htdigest: user:realm:HA1; only lines of the configured realm count.
        const parts = l.split(':');
        if (parts.length === 3 && parts[1] === realm && /^[0-9a-f]{32}$/i.test(parts[2])) users.push({ name: parts[0], hash: parts[2].toLowerCase() });
        else ctx.report('warning', 'MG_SECRET_INVALID', ing, field('auth-secret'), `Secret ${ns}/${name}: line for ${JSON.stringify(parts[0])} is not user:${realm}:<32 hex digits> (htdigest for realm ${JSON.stringify(realm)}); that user is refused`);
        continue;
      }
      users.push({ name: l.slice(0, colon), hash: l.slice(colon + 1) });
    }
  } else {
    for (const k of Object.keys(data).sort()) users.push({ name: k, hash: data[k].trim() });
  }
  for (const u of users) {
    const bcrypt = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/.exec(u.hash);
    if (type === 'basic' && bcrypt !== null && (Number(bcrypt[1]) < 4 || Number(bcrypt[1]) > MAX_BCRYPT_COST)) {
      ctx.report('warning', 'MG_SECRET_INVALID', ing, field('auth-secret'), `Secret ${ns}/${name}: user ${JSON.stringify(u.name)} has a bcrypt hash of cost ${bcrypt[1]}; meshgate checks costs 4 to ${MAX_BCRYPT_COST} (a higher cost would stall the gateway on every check); that user is refused`);
    } else if (type === 'basic' && bcrypt === null && !/^(\$apr1\$|\$1\$|\$5\$|\$6\$|\{SHA\}|\{PLAIN\})/.test(u.hash)) {
      ctx.report('warning', 'MG_SECRET_INVALID', ing, field('auth-secret'), `Secret ${ns}/${name}: user ${JSON.stringify(u.name)} has a password hash meshgate cannot check (it reads $apr1$, $1$, $5$, $6$, $2a$/$2b$/$2y$ bcrypt, {SHA}, {PLAIN}); that user is refused`);
    }
  }
  if (users.length === 0) return unavailable(`Secret ${ns}/${name} lists no users`);
  return type === 'digest' ? { scheme: 'digest', realm, users, unavailable: false } : { realm, users, unavailable: false };
}

function secretData(secret: KubeObject): Record<string, string> {
  const out: Record<string, string> = {};
  const data = obj(secret.body.data);
  for (const k of Object.keys(data)) {
    const v = str(data[k]);
    if (v !== undefined) out[k] = Buffer.from(v, 'base64').toString('utf8');
  }
  const sd = obj(secret.body.stringData);
  for (const k of Object.keys(sd)) {
    const v = str(sd[k]);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/**
 * auth-url (+ auth-method, auth-signin, auth-signin-redirect-param, auth-response-headers,
 * auth-request-redirect, auth-always-set-cookie) -> ExternalAuth. The URL is parsed strictly
 * (absolute http/https, no nginx variables: the CVE-2025-24514 class of injection cannot arise). Its
 * host is a Service of the cluster when it names one (`svc`, `svc.ns`, `svc.ns.svc[.cluster.local]`),
 * else an external host reached by DNS; https is originated without verifying the certificate, as
 * nginx's `proxy_ssl_verify off` default.
 */
function parseAuthUrl(
  ctx: TranslateContext,
  resources: ResourceSet,
  ing: KubeObject,
  get: (n: string) => string | undefined,
  field: (n: string) => string,
  fail: (name: string, m: string) => void,
): ExternalAuth | null {
  const raw = get('auth-url');
  if (raw === undefined || raw === '') {
    for (const k of ['auth-signin', 'auth-response-headers', 'auth-method']) if (get(k) !== undefined) ctx.report('warning', 'MG_INVALID_FIELD', ing, field(k), `${k} without auth-url has no effect (as in ingress-nginx)`);
    return null;
  }
  const withVars = raw.includes('$') ? parseAuthUrlTemplate(raw) : null;
  if (typeof withVars === 'string') {
    fail('auth-url', `auth-url ${JSON.stringify(raw)}: ${withVars}`);
    return null;
  }
  const url = withVars !== null ? withVars.url : parseAbsoluteUrl(raw);
  if (url === null) {
    fail('auth-url', `auth-url ${JSON.stringify(raw)} must be an absolute http or https URL`);
    return null;
  }
  const method = get('auth-method') || null;
  if (method !== null && !/^(GET|HEAD|POST|PUT|PATCH|DELETE|OPTIONS)$/.test(method)) fail('auth-method', `auth-method ${JSON.stringify(method)} is not an HTTP method`);
  const param = get('auth-signin-redirect-param') || 'rd';
  if (!/^[A-Za-z0-9_.-]+$/.test(param)) fail('auth-signin-redirect-param', `auth-signin-redirect-param ${JSON.stringify(param)} is not a query parameter name`);
  let signin = get('auth-signin') || null;
  let signinTemplate: UrlTemplatePart[] | undefined;
  if (signin !== null && signin.includes('$')) {
    const t = parseSigninTemplate(signin, param);
    if (typeof t === 'string') {
      fail('auth-signin', `auth-signin ${JSON.stringify(signin)}: ${t}`);
      signin = null;
    } else signinTemplate = t;
  } else if (signin !== null && parseAbsoluteUrl(signin) === null) {
    fail('auth-signin', `auth-signin ${JSON.stringify(signin)} must be an absolute http or https URL`);
    signin = null;
  }
  const responseHeaders: string[] = [];
  for (const h of (get('auth-response-headers') ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!HEADER_NAME.test(h)) fail('auth-response-headers', `auth-response-headers: ${JSON.stringify(h)} is not a header name`);
    else responseHeaders.push(h.toLowerCase());
  }
  const redirect = get('auth-request-redirect') || null;
  if (redirect !== null && /[\s"'`\\{};$]/.test(redirect)) fail('auth-request-redirect', `auth-request-redirect ${JSON.stringify(redirect)} may not contain spaces, quotes, braces, ; or $`);
  const always = get('auth-always-set-cookie');
  if (always !== undefined && parseBool(always) === null) fail('auth-always-set-cookie', `auth-always-set-cookie must be "true" or "false", not ${JSON.stringify(always)}`);
  // auth-url "https://$host/...": one target per host of the Ingress, resolved now (as nginx resolves
  // the name); a request can never make meshgate call a host the Ingress does not name.
  let hosts: ExternalAuth['hosts'];
  if (withVars !== null && withVars.hostVariable) {
    const ruleHosts = ruleHostsOf(ing);
    // server-alias names serve the routes of every Ingress of the host (one nginx server): each needs its target too.
    const names = ruleHosts.length === 0 ? [] : [...new Set([...ruleHosts, ...aliasesSharing(resources, ruleHosts)])].sort();
    if (names.length === 0) {
      fail('auth-url', `auth-url ${JSON.stringify(raw)}: $host in the host part needs rules with hosts (not wildcards): meshgate resolves the auth service of each host when translating, never from what a client sends`);
      return null;
    }
    hosts = names.map((h) => ({ host: h, cluster: urlCluster(ctx, resources, ing, { ...url, host: h }, field('auth-url')), authority: url.port === null ? h : `${h}:${url.port}` }));
  }
  const cluster = hosts !== undefined ? hosts[0].cluster : urlCluster(ctx, resources, ing, url, field('auth-url'));
  let requestHeaders: { name: string; value: string }[] = [];
  const aps = get('auth-proxy-set-headers');
  if (aps !== undefined && aps !== '') {
    const r = headersFromConfigMap(resources, aps, ing.metadata.namespace, true);
    if (typeof r === 'string') fail('auth-proxy-set-headers', `auth-proxy-set-headers ${aps}: ${r}`);
    else requestHeaders = r;
  }
  // auth-cache-key / auth-cache-duration: the zone is set per route (apply.ts), as nginx's key holds the location.
  let cache: ExternalAuth['cache'];
  const cacheKey = get('auth-cache-key');
  const cacheDuration = get('auth-cache-duration');
  if (cacheKey !== undefined && cacheKey !== '') {
    const key = parseAuthCacheKey(cacheKey);
    const valid = parseAuthCacheDuration(cacheDuration ?? DEFAULT_AUTH_CACHE_DURATION);
    if (typeof key === 'string') fail('auth-cache-key', `auth-cache-key ${JSON.stringify(cacheKey)}: ${key}`);
    else if (typeof valid === 'string') fail('auth-cache-duration', `auth-cache-duration ${valid}`);
    else cache = { zone: '', key, valid };
  } else if (cacheDuration !== undefined) {
    ctx.report('warning', 'MG_INVALID_FIELD', ing, field('auth-cache-duration'), 'auth-cache-duration without auth-cache-key has no effect (as in ingress-nginx)');
  }
  return {
    ...(requestHeaders.length > 0 ? { requestHeaders } : {}),
    ...(cache !== undefined ? { cache } : {}),
    ...(withVars?.pathTemplate !== undefined ? { pathTemplate: withVars.pathTemplate } : {}),
    ...(hosts !== undefined ? { hosts } : {}),
    ...(signinTemplate !== undefined ? { signinTemplate } : {}),
    cluster,
    authority: hosts !== undefined ? hosts[0].authority : url.port === null ? url.host : `${url.host}:${url.port}`,
    path: url.pathAndQuery,
    method,
    responseHeaders,
    signin,
    signinRedirectParam: param,
    requestRedirect: redirect,
    alwaysSetCookie: always !== undefined && parseBool(always) === true,
    timeoutMs: 60_000,
  };
}

/**
 * auth-url with nginx variables (ingress-nginx's URLWithNginxVariableRegex): a literal http or https
 * scheme; a literal host, or `$host` / `$http_host` (with an optional literal port) standing for the
 * request's host; variables in the path and query (`parseUrlTemplate`). An error sentence otherwise.
 */
function parseAuthUrlTemplate(raw: string): { url: { scheme: string; host: string; port: number | null; pathAndQuery: string }; hostVariable: boolean; pathTemplate?: UrlTemplatePart[] } | string {
  const m = /^(https?):\/\/([^/?#]*)([/?][^#]*)?$/.exec(raw);
  if (m === null) return 'must be an absolute http or https URL (the scheme cannot be a variable)';
  const [, scheme, authority, rest = '/'] = m;
  const hm = /^\$(?:\{(?:http_)?host\}|(?:http_)?host)(?::(\d{1,5}))?$/.exec(authority);
  if (hm === null && authority.includes('$')) return 'only $host or $http_host (with an optional port) may stand for the host';
  const base = parseAbsoluteUrl(`${scheme}://${hm !== null ? `host.invalid${hm[1] !== undefined ? `:${hm[1]}` : ''}` : authority}/`);
  if (base === null) return 'must be an absolute http or https URL';
  const pathAndQuery = rest.startsWith('?') ? `/${rest}` : rest;
  const parts = parseUrlTemplate(pathAndQuery);
  if (typeof parts === 'string') return parts;
  const url = { scheme, host: base.host, port: base.port, pathAndQuery };
  return parts.some((p) => p.kind !== 'literal') ? { url, hostVariable: hm !== null, pathTemplate: parts } : { url, hostVariable: hm !== null };
}

/**
 * auth-signin with nginx variables: the whole Location as a template, with ingress-nginx's
 * `<param>=$pass_access_scheme://$http_host$escaped_request_uri` appended (buildAuthSignURL) unless the
 * URL already gives the parameter a value. An error sentence when it does not parse.
 */
function parseSigninTemplate(raw: string, param: string): UrlTemplatePart[] | string {
  if (!/^(https?|\$scheme|\$pass_access_scheme|\$\{scheme\}|\$\{pass_access_scheme\}):\/\/[^/?#]+/.test(raw)) return 'must be an absolute http or https URL with a host';
  const parts = parseUrlTemplate(raw);
  if (typeof parts === 'string') return parts;
  if (new RegExp(`[?&]${param.replace(/\./g, '\\.')}=[^&]`).test(raw)) return parts;
  return [
    ...parts,
    { kind: 'literal', value: `${raw.includes('?') ? '&' : '?'}${param}=` },
    { kind: 'request', name: 'pass_access_scheme' },
    { kind: 'literal', value: '://' },
    { kind: 'request', name: 'http_host' },
    { kind: 'request', name: 'escaped_request_uri' },
  ];
}

function parseAbsoluteUrl(raw: string): { scheme: string; host: string; port: number | null; pathAndQuery: string } | null {
  if (/[\s"'`\\{};$]/.test(raw)) return null;
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return null;
  }
  if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.hostname === '' || u.username !== '' || u.password !== '') return null;
  return { scheme: u.protocol.slice(0, -1), host: u.hostname, port: u.port === '' ? null : Number(u.port), pathAndQuery: `${u.pathname}${u.search}` };
}

/** The cluster a URL's host stands for (auth-url, mirror-target): a Service when the name is one, else the host by DNS. */
function urlCluster(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject, url: { scheme: string; host: string; port: number | null }, field: string): string {
  const port = url.port ?? (url.scheme === 'https' ? 443 : 80);
  const tls = url.scheme === 'https' ? { mode: 'SIMPLE' as const, caCertificates: null, clientCertificate: null, sni: url.host, subjectAltNames: [], insecureSkipVerify: true } : undefined;
  const labels = url.host.split('.');
  const svcName = labels[0];
  const ns = labels.length === 1 ? ing.metadata.namespace : labels[1];
  const inCluster = labels.length === 1 || labels.length === 2 || (labels.length >= 3 && labels[2] === 'svc' && (labels.length === 3 || labels.slice(3).join('.') === 'cluster.local'));
  if (inCluster && resources.get('Service', ns, svcName) !== undefined) {
    return resolveCluster(ctx, resources, { service: { namespace: ns, name: svcName, port: { number: port } }, subset: null, lbPolicy: 'ROUND_ROBIN', connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS, connectionPool: null, outlierDetection: null, tls, from: ing, field });
  }
  const name = `outbound|${port}||${url.host}`;
  ctx.addCluster({ name, service: { namespace: ing.metadata.namespace, name: url.host, host: url.host, port }, subset: '', discovery: 'eds', lbPolicy: 'ROUND_ROBIN', endpoints: [{ address: url.host, port, ready: true }], connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS, connectionPool: null, outlierDetection: null, protocol: 'HTTP1', tls: tls ?? null });
  return name;
}

/**
 * auth-tls-secret (+ auth-tls-verify-client, -verify-depth, -error-page, -match-cn,
 * -pass-certificate-to-upstream). The Secret must be in the Ingress's namespace and hold `ca.crt`
 * (optional `ca.crl`); otherwise the Ingress is not served (ingress-nginx answers 403 for the host).
 */
function parseAuthTls(
  ctx: TranslateContext,
  resources: ResourceSet,
  ing: KubeObject,
  get: (n: string) => string | undefined,
  field: (n: string) => string,
  fail: (name: string, m: string) => void,
): NginxIngressConfig['clientTls'] {
  const ref = get('auth-tls-secret');
  if (ref === undefined || ref === '') {
    for (const k of ['auth-tls-verify-client', 'auth-tls-error-page', 'auth-tls-match-cn', 'auth-tls-pass-certificate-to-upstream', 'auth-tls-verify-depth']) if (get(k) !== undefined) ctx.report('warning', 'MG_INVALID_FIELD', ing, field(k), `${k} without auth-tls-secret has no effect (as in ingress-nginx)`);
    return null;
  }
  const slash = ref.indexOf('/');
  const ns = slash === -1 ? ing.metadata.namespace : ref.slice(0, slash);
  const name = slash === -1 ? ref : ref.slice(slash + 1);
  if (ns !== ing.metadata.namespace) {
    fail('auth-tls-secret', `auth-tls-secret ${ref} is in another namespace than the Ingress (${ing.metadata.namespace}); cross-namespace Secrets are refused`);
    return null;
  }
  const verifyRaw = get('auth-tls-verify-client') ?? 'on';
  if (!['on', 'off', 'optional', 'optional_no_ca'].includes(verifyRaw)) {
    fail('auth-tls-verify-client', `auth-tls-verify-client must be on, off, optional or optional_no_ca, not ${JSON.stringify(verifyRaw)}`);
    return null;
  }
  // auth-tls-verify-depth: nginx ssl_verify_depth (ingress-nginx default 1): intermediates allowed between the certificate and the CA.
  const depth = get('auth-tls-verify-depth');
  if (depth !== undefined && (!/^\d+$/.test(depth) || Number(depth) < 1 || Number(depth) > 100)) fail('auth-tls-verify-depth', `auth-tls-verify-depth must be an integer from 1 to 100, not ${JSON.stringify(depth)}`);
  const verifyDepth = depth !== undefined && /^\d+$/.test(depth) ? Number(depth) : 1;
  let errorPage = get('auth-tls-error-page') || null;
  if (errorPage !== null && parseAbsoluteUrl(errorPage) === null) {
    fail('auth-tls-error-page', `auth-tls-error-page ${JSON.stringify(errorPage)} must be an absolute http or https URL`);
    errorPage = null;
  }
  const cn = get('auth-tls-match-cn') || null;
  let subjectPattern: ClientCertificatePolicy['subjectPattern'] = null;
  if (cn !== null) {
    // Compiled as a regex, never pasted into configuration (CVE-2025-1097 was an injection through it).
    const r = compileRe2Unanchored(cn);
    if (!r.ok) fail('auth-tls-match-cn', `auth-tls-match-cn ${JSON.stringify(cn)}: ${r.message}`);
    else subjectPattern = r.regex;
  }
  const pass = get('auth-tls-pass-certificate-to-upstream');
  if (pass !== undefined && parseBool(pass) === null) fail('auth-tls-pass-certificate-to-upstream', `auth-tls-pass-certificate-to-upstream must be "true" or "false", not ${JSON.stringify(pass)}`);
  const secret = resources.get('Secret', ns, name);
  const data = secret === undefined ? {} : secretData(secret);
  const ca = data['ca.crt'];
  if (ca === undefined || !ca.includes('-----BEGIN CERTIFICATE-----')) {
    fail('auth-tls-secret', secret === undefined ? `Secret ${ns}/${name} does not exist` : `Secret ${ns}/${name} has no PEM ca.crt`);
    return null;
  }
  for (const block of ca.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
    try {
      new X509Certificate(block);
    } catch (e) {
      fail('auth-tls-secret', `Secret ${ns}/${name}: a certificate of ca.crt does not parse (${(e as Error).message})`);
      return null;
    }
  }
  return {
    caPem: ca,
    caSecret: `${ns}/${name}`,
    crlPem: data['ca.crl'] ?? null,
    verify: verifyRaw !== 'off',
    verifyDepth,
    policy: {
      required: verifyRaw === 'on',
      errorPage,
      subjectPattern,
      passCertificate: pass !== undefined && parseBool(pass) === true,
      ...(verifyRaw === 'optional_no_ca' ? { acceptUnverified: true } : {}),
      ...(verifyRaw !== 'off' ? { caSecret: `${ns}/${name}` } : {}),
    },
  };
}

/**
 * Header name -> value pairs of a ConfigMap named `ns/name` or `name` (in `namespace`), for
 * custom-headers and the controller ConfigMap's add-headers / proxy-set-headers. Names must be
 * header tokens and values free of line breaks and nginx variables; otherwise a message says why.
 */
export function headersFromConfigMap(resources: ResourceSet, ref: string, namespace: string, sameNamespaceOnly: boolean): { name: string; value: string }[] | string {
  const slash = ref.indexOf('/');
  const ns = slash === -1 ? namespace : ref.slice(0, slash);
  const name = slash === -1 ? ref : ref.slice(slash + 1);
  if (sameNamespaceOnly && ns !== namespace) return `ConfigMap ${ns}/${name} is in another namespace (${namespace}); cross-namespace references are refused`;
  const cm = resources.get('ConfigMap', ns, name);
  if (cm === undefined) return `ConfigMap ${ns}/${name} does not exist`;
  const data = obj(cm.body.data);
  const out: { name: string; value: string }[] = [];
  for (const k of Object.keys(data).sort()) {
    const v = str(data[k]) ?? '';
    if (!isHeaderName(k)) return `key ${JSON.stringify(k)} of ConfigMap ${ns}/${name} is not a header name (an RFC 9110 token)`;
    if (!isHeaderValue(v)) return `the value of ${k} in ConfigMap ${ns}/${name} holds a control character (a line break, NUL, ...)`;
    if (/\$[a-z_{]/i.test(v)) return `the value of ${k} in ConfigMap ${ns}/${name} holds an nginx variable`;
    out.push({ name: k.toLowerCase(), value: v });
  }
  return out;
}

/** Go's strconv.ParseBool, which ingress-nginx's annotation parser uses: 1 t T TRUE true True / 0 f F FALSE false False. */
export function parseBool(v: string): boolean | null {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return null;
}

/** The exact (non-wildcard) rule hosts of an Ingress, lowercased. */
function ruleHostsOf(ing: KubeObject): string[] {
  return [...new Set(arr(obj(ing.body.spec).rules).map((r) => str(obj(r).host)?.toLowerCase()).filter((h): h is string => h !== undefined && h !== '' && !h.includes('*')))];
}

/**
 * The valid server-alias names of every Ingress that shares a rule host with `hosts` (in nginx the
 * aliases of a host's first Ingress name the whole server). A superset is harmless: a name only
 * reaches these routes when the alias is served.
 */
function aliasesSharing(resources: ResourceSet, hosts: string[]): string[] {
  const out: string[] = [];
  for (const other of resources.ofKind('Ingress')) {
    const raw = other.metadata.annotations[`${NGINX_PREFIX}server-alias`];
    if (raw === undefined || raw === '' || !ruleHostsOf(other).some((h) => hosts.includes(h))) continue;
    for (const a of raw.split(',')) {
      const name = a.trim().toLowerCase();
      if (name !== '' && !name.includes('*') && HOST_NAME.test(name)) out.push(name);
    }
  }
  return out;
}
