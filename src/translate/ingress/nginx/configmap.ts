/**
 * The ingress-nginx controller ConfigMap (`--nginx-configmap NS/NAME`) -> global defaults for every
 * Ingress meshgate serves. PURE.
 *
 * When the flag is given, ingress-nginx's global defaults apply to every Ingress, whether or not the
 * ConfigMap exists yet: body limit 1m, connect timeout 5 s, read timeout 60 s, rate-limited requests
 * answered 503, HSTS on HTTPS responses of hosts with a certificate. Without the flag meshgate keeps its
 * own defaults (no body limit, no HSTS). Annotations on an Ingress override these.
 *
 * Keys (ingress-nginx syntax, strictly parsed; a bad value is an error on the ConfigMap and that key
 * keeps its default): see KEYS. `*-snippet` keys are refused (never executed) and
 * `allow-snippet-annotations: "true"` is reported: snippets stay refused. Other keys ingress-nginx
 * knows but meshgate does not implement are warnings; keys nobody knows are warnings too.
 */

import type { AccessLog, AccessLogging, TlsVersion } from '../../../ir/types.js';
import { ipFamily } from '../../../lib/ip.js';
import { obj, str } from '../../../lib/unknown.js';
import type { ResourceSet } from '../../../resources/resource-set.js';
import type { KubeObject } from '../../../resources/types.js';
import type { TranslateContext } from '../../types.js';
import { CONFIGMAP_SNIPPET_KEYS } from './registry.js';
import { headersFromConfigMap, NEXT_UPSTREAM_DEFAULT, parseBool, parseNextUpstream, resolveNextUpstream, type NextUpstream, type NextUpstreamSet } from './parse.js';

export interface NginxGlobalConfig {
  /** The ConfigMap (null when the flag names one that does not exist: defaults only). */
  source: KubeObject | null;
  maxBodyBytes: number | null;
  connectTimeoutMs: number;
  readTimeoutMs: number;
  /** proxy-next-upstream, -tries, -timeout (defaults `error timeout`, 3, 0); an Ingress annotation overrides each. */
  nextUpstream: { conditions: string; tries: number; timeoutMs: number };
  limitStatus: number;
  /** limit-conn-status-code (default 503): the answer to a request over limit-connections. */
  limitConnStatus: number;
  sslRedirect: boolean;
  forceSslRedirect: boolean;
  /** use-forwarded-headers (default false): X-Forwarded-Proto decides whether a request is redirected to HTTPS. */
  useForwardedHeaders: boolean;
  /** use-port-in-redirects (default false): HTTPS redirects name the HTTPS port; an annotation overrides it. */
  usePortInRedirects: boolean;
  /** http-redirect-code (301, 302, 307 or 308; default 308): the status of the HTTPS and from-to-www redirects. */
  httpRedirectCode: 301 | 302 | 307 | 308;
  /** `Strict-Transport-Security` value, or null (hsts "false"). */
  hsts: string | null;
  tlsMin: TlsVersion;
  tlsMax: TlsVersion;
  /** OpenSSL TLS 1.2 cipher names; [] = meshgate's default list. */
  ciphers: string[];
  allow: string[];
  deny: string[];
  /**
   * Client address for source ranges and limits (nginx realip): with use-forwarded-headers the last
   * address of `header` not inside `trusted`, walking from the right; null = the connection's peer.
   */
  realIp: { header: string; trusted: string[] } | null;
  /** Access log from log-format-upstream; null = unchanged. */
  accessLog: AccessLog | null;
  /** add-headers: response headers on every Ingress response. */
  addHeaders: { name: string; value: string }[];
  /** proxy-set-headers: request headers sent upstream for every Ingress. */
  proxySetHeaders: { name: string; value: string }[];
  /** global-allowed-response-headers (lowercase); null = any name (key absent). */
  allowedResponseHeaders: string[] | null;
  /** no-tls-redirect-locations: Ingress paths starting with one of these are not redirected to HTTPS. */
  noTlsRedirectLocations: string[];
  /** compute-full-forwarded-for (default false: X-Forwarded-For is replaced by the client address). */
  computeFullForwardedFor: boolean;
  /** custom-http-errors: answers with these statuses (300-599) go to the global default backend; [] = none. */
  customErrors: number[];
  /** disable-proxy-intercept-errors (default false): custom-http-errors is not applied. */
  disableInterceptErrors: boolean;
}

/** Keys meshgate reads, with their meaning in one line (docs and the unknown-key check). */
export const CONFIGMAP_KEYS: Readonly<Record<string, string>> = {
  'proxy-body-size': 'global body limit (default 1m); 413 above it',
  'proxy-connect-timeout': 'connect timeout, seconds (default 5)',
  'proxy-read-timeout': 'response-head timeout, seconds (default 60)',
  'proxy-send-timeout': 'validated; meshgate applies back-pressure instead',
  'proxy-next-upstream': 'retry conditions of every Ingress (default "error timeout"); POST, LOCK, PATCH only after a connect failure unless non_idempotent',
  'proxy-next-upstream-tries': 'tries including the first (default 3; 0 = up to 10)',
  'proxy-next-upstream-timeout': 'time limit of all tries, seconds (default 0 = none)',
  'limit-req-status-code': 'status of rate-limited requests (default 503)',
  'limit-conn-status-code': 'status of requests over limit-connections (default 503)',
  'ssl-redirect': 'HTTPS redirect for hosts with a certificate (default true)',
  'force-ssl-redirect': 'HTTPS redirect for every host (default false)',
  'use-port-in-redirects': '"true": HTTPS redirects name meshgate\'s HTTPS port as clients reach it (--port-map aware), 443 included, as lua_ingress.lua with --https-port; "false" (default): never, whatever the port (an annotation overrides it)',
  'http-redirect-code': 'status of the HTTPS and from-to-www redirects: 301, 302, 307 or 308 (default 308)',
  hsts: 'Strict-Transport-Security on HTTPS responses (default true)',
  'hsts-max-age': 'max-age (default 31536000)',
  'hsts-include-subdomains': 'includeSubDomains (default true)',
  'hsts-preload': 'preload (default false)',
  'ssl-protocols': 'TLS versions of the Ingress HTTPS listener (TLSv1.2, TLSv1.3)',
  'ssl-ciphers': 'TLS 1.2 ciphers (OpenSSL names, colon-separated)',
  'use-forwarded-headers': 'client address from forwarded-for-header for source ranges and limits; X-Forwarded-Proto other than "http" turns off the HTTPS redirect (TLS offloaded in front)',
  'enable-real-ip': 'as use-forwarded-headers, for the client address only',
  'forwarded-for-header': 'header holding the client address (default X-Forwarded-For)',
  'proxy-real-ip-cidr': 'proxies trusted to set it (default 0.0.0.0/0)',
  'compute-full-forwarded-for': '"false" (default): X-Forwarded-For sent upstream is the client address alone (the forwarded-for-header address with use-forwarded-headers), the client\'s list in X-Original-Forwarded-For; "true": the client\'s list with the peer appended',
  'whitelist-source-range': 'global allowlist (an Ingress annotation overrides it)',
  'denylist-source-range': 'global denylist (an Ingress annotation overrides it)',
  'log-format-upstream': 'access-log line, nginx variables mapped onto meshgate log operators',
  'log-format-escape-json': 'accepted with log-format-upstream',
  'allow-snippet-annotations': 'snippets are refused whatever it says',
  'annotations-risk-level': 'meshgate refuses snippets and fail-closed unsupported annotations whatever it says',
  'allow-cross-namespace-resources': 'cross-namespace references stay refused',
  'strict-validate-path-type': 'meshgate matches Prefix and Exact as Kubernetes defines them',
  'use-http2': 'HTTP/2 is always offered on HTTPS',
  'generate-request-id': 'x-request-id is always generated when absent',
  'add-headers': 'NS/NAME of a ConfigMap of response headers added to every Ingress response',
  'proxy-set-headers': 'NS/NAME of a ConfigMap of request headers sent upstream for every Ingress',
  'global-allowed-response-headers': 'header names custom-headers may set (when the key is present)',
  'custom-http-errors': 'answers with a listed status (300-599) of every Ingress without its own custom-http-errors are replaced by the --default-backend-service answer (GET / with X-Code and the names)',
  'disable-proxy-intercept-errors': 'true: custom-http-errors is not applied',
  'no-tls-redirect-locations': 'comma list of path prefixes never redirected to HTTPS (default /.well-known/acme-challenge, the ACME HTTP-01 solvers)',
};

const UNSUPPORTED_KEYS = new Set([
  'use-gzip', 'gzip-level', 'gzip-types', 'enable-brotli', 'use-proxy-protocol', 'large-client-header-buffers',
  'client-header-buffer-size', 'client-body-buffer-size', 'upstream-keepalive-connections', 'upstream-keepalive-timeout',
  'upstream-keepalive-requests', 'block-cidrs', 'block-user-agents', 'block-referers',
  'global-auth-url', 'global-auth-signin', 'global-auth-response-headers', 'load-balance', 'keep-alive', 'keep-alive-requests',
  'enable-modsecurity', 'enable-owasp-modsecurity-crs', 'enable-opentelemetry', 'proxy-buffer-size', 'proxy-buffering',
  'worker-processes', 'max-worker-connections', 'server-tokens', 'ssl-session-cache', 'ssl-session-timeout',
  'global-rate-limit-memcached-host', 'disable-access-log', 'access-log-path', 'error-log-path',
]);

/** ingress-nginx's no-tls-redirect-locations default (the ACME HTTP-01 challenge path). */
export const NO_TLS_REDIRECT_DEFAULT: readonly string[] = ['/.well-known/acme-challenge'];

const SIZE = /^(\d+)([bkmg]?)$/i;
const UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 * 1024, g: 1024 * 1024 * 1024 };

/** The global config; null when no `--nginx-configmap` is configured. */
export function readNginxConfigMap(ctx: TranslateContext, resources: ResourceSet): NginxGlobalConfig | null {
  const ref = ctx.options.nginxConfigMap;
  if (ref === undefined || ref === null) return null;
  const cm = resources.get('ConfigMap', ref.namespace, ref.name) ?? null;
  const g: NginxGlobalConfig = {
    source: cm,
    maxBodyBytes: 1024 * 1024,
    connectTimeoutMs: 5000,
    readTimeoutMs: 60_000,
    nextUpstream: { ...NEXT_UPSTREAM_DEFAULT },
    limitStatus: 503,
    limitConnStatus: 503,
    sslRedirect: true,
    forceSslRedirect: false,
    useForwardedHeaders: false,
    usePortInRedirects: false,
    httpRedirectCode: 308,
    hsts: 'max-age=31536000; includeSubDomains',
    tlsMin: 'TLSv1.2',
    tlsMax: 'TLSv1.3',
    ciphers: [],
    allow: [],
    deny: [],
    realIp: null,
    accessLog: null,
    addHeaders: [],
    proxySetHeaders: [],
    allowedResponseHeaders: null,
    customErrors: [],
    disableInterceptErrors: false,
    computeFullForwardedFor: false,
    noTlsRedirectLocations: [...NO_TLS_REDIRECT_DEFAULT],
  };
  if (cm === null) return g;
  const data: Record<string, string> = {};
  const raw = obj(cm.body.data);
  for (const k of Object.keys(raw)) {
    const v = str(raw[k]);
    if (v !== undefined) data[k] = v.trim();
  }
  // Field paths as the file loader records them (api/field-path.ts): plain keys dotted, others quoted.
  const field = (k: string) => (/^[A-Za-z0-9_$-]+$/.test(k) ? `data.${k}` : `data[${JSON.stringify(k)}]`);
  const bad = (k: string, m: string) => ctx.report('error', 'MG_INVALID_FIELD', cm, field(k), `${m}; the default is used`);
  const bool = (k: string, d: boolean): boolean => {
    const v = data[k];
    if (v === undefined) return d;
    const b = parseBool(v);
    if (b !== null) return b;
    bad(k, `${k} must be "true" or "false", not ${JSON.stringify(v)}`);
    return d;
  };
  const seconds = (k: string, d: number): number => {
    const v = data[k];
    if (v === undefined) return d;
    if (/^\d+$/.test(v)) return Number(v) * 1000;
    bad(k, `${k} must be whole seconds without unit, not ${JSON.stringify(v)}`);
    return d;
  };
  const cidrs = (k: string): string[] => {
    const v = data[k];
    if (v === undefined || v === '') return [];
    const out: string[] = [];
    for (const c of v.split(',').map((s) => s.trim()).filter(Boolean)) {
      if (isCidr(c)) out.push(c);
      else bad(k, `${k}: ${JSON.stringify(c)} is not an IP address or CIDR block`);
    }
    return out;
  };

  for (const k of Object.keys(data).sort()) {
    if (CONFIGMAP_SNIPPET_KEYS.includes(k)) {
      ctx.report('error', 'MG_NGINX_SNIPPET_REFUSED', cm, field(k), `${k} is nginx source text; meshgate never executes it (the rest of the ConfigMap applies)`);
    } else if (UNSUPPORTED_KEYS.has(k)) {
      ctx.report('warning', 'MG_UNSUPPORTED', cm, field(k), `${k} is not supported by meshgate; it is ignored`);
    } else if (!Object.hasOwn(CONFIGMAP_KEYS, k)) {
      ctx.report('warning', 'MG_UNSUPPORTED', cm, field(k), `${k} is not an ingress-nginx ConfigMap key meshgate knows; it is ignored`);
    }
  }
  if (parseBool(data['allow-snippet-annotations'] ?? '') === true) ctx.report('warning', 'MG_NGINX_SNIPPET_REFUSED', cm, field('allow-snippet-annotations'), 'allow-snippet-annotations is "true", but meshgate never executes snippets: an Ingress with a *-snippet annotation is not served');
  g.computeFullForwardedFor = bool('compute-full-forwarded-for', false);
  const ntr = data['no-tls-redirect-locations'];
  if (ntr !== undefined) {
    const locs = ntr.split(',').map((l) => l.trim()).filter(Boolean);
    const badLocs = locs.filter((l) => !/^\/[-._~A-Za-z0-9/]*$/.test(l));
    if (badLocs.length > 0) bad('no-tls-redirect-locations', `no-tls-redirect-locations: ${badLocs.map((b) => JSON.stringify(b)).join(', ')} is not a plain absolute path`);
    else g.noTlsRedirectLocations = locs;
  }

  const size = data['proxy-body-size'];
  if (size !== undefined) {
    const m = SIZE.exec(size);
    if (m) g.maxBodyBytes = Number(m[1]) === 0 ? null : Number(m[1]) * UNITS[m[2].toLowerCase()];
    else bad('proxy-body-size', `proxy-body-size must be an nginx size, not ${JSON.stringify(size)}`);
  }
  // custom-http-errors (ingress-nginx filterErrors: 300-599 only); the error pages come from the
  // global default backend (--default-backend-service), else they are not applied (reported).
  const ce = data['custom-http-errors'];
  if (ce !== undefined && ce !== '') {
    const codes = ce.split(',').map((s) => s.trim()).filter(Boolean);
    const badCodes = codes.filter((c) => !/^\d{3}$/.test(c) || Number(c) < 300 || Number(c) > 599);
    if (badCodes.length > 0) bad('custom-http-errors', `custom-http-errors: ${badCodes.map((b) => JSON.stringify(b)).join(', ')} is not an HTTP status from 300 to 599`);
    else g.customErrors = [...new Set(codes.map(Number))].sort((a, b) => a - b);
    if (g.customErrors.length > 0 && (ctx.options.nginxDefaultBackend ?? null) === null) {
      ctx.report('warning', 'MG_UNSUPPORTED', cm, field('custom-http-errors'), 'custom-http-errors needs --default-backend-service NS/NAME (ingress-nginx\'s default backend, which serves the error pages); without it ingress-nginx answers every listed status with its internal server\'s "404 Not Found" page, meshgate returns the backends\' own answers (status and body) instead');
      g.customErrors = [];
    }
  }
  g.disableInterceptErrors = bool('disable-proxy-intercept-errors', false);
  g.connectTimeoutMs = seconds('proxy-connect-timeout', 5000);
  g.readTimeoutMs = seconds('proxy-read-timeout', 60_000);
  seconds('proxy-send-timeout', 60_000);
  const nuRaw = data['proxy-next-upstream'];
  if (nuRaw !== undefined && nuRaw !== '') {
    if (parseNextUpstream(nuRaw, 3, 0, (m) => bad('proxy-next-upstream', m)) !== null) g.nextUpstream.conditions = nuRaw;
  }
  const nuTries = data['proxy-next-upstream-tries'];
  if (nuTries !== undefined) {
    if (/^\d+$/.test(nuTries) && Number(nuTries) <= 100) g.nextUpstream.tries = Number(nuTries);
    else bad('proxy-next-upstream-tries', `proxy-next-upstream-tries must be an integer from 0 to 100, not ${JSON.stringify(nuTries)}`);
  }
  g.nextUpstream.timeoutMs = seconds('proxy-next-upstream-timeout', 0);
  const code = data['limit-req-status-code'];
  if (code !== undefined) {
    if (/^[45]\d\d$/.test(code)) g.limitStatus = Number(code);
    else bad('limit-req-status-code', `limit-req-status-code must be a 4xx or 5xx status, not ${JSON.stringify(code)}`);
  }
  const connCode = data['limit-conn-status-code'];
  if (connCode !== undefined) {
    if (/^[45]\d\d$/.test(connCode)) g.limitConnStatus = Number(connCode);
    else bad('limit-conn-status-code', `limit-conn-status-code must be a 4xx or 5xx status, not ${JSON.stringify(connCode)}`);
  }
  g.sslRedirect = bool('ssl-redirect', true);
  g.forceSslRedirect = bool('force-ssl-redirect', false);
  g.usePortInRedirects = bool('use-port-in-redirects', false);
  const redirectCode = data['http-redirect-code'];
  if (redirectCode !== undefined) {
    if (redirectCode === '301' || redirectCode === '302' || redirectCode === '307' || redirectCode === '308') g.httpRedirectCode = Number(redirectCode) as 301 | 302 | 307 | 308;
    else bad('http-redirect-code', `http-redirect-code must be 301, 302, 307 or 308, not ${JSON.stringify(redirectCode)}`);
  }
  if (bool('hsts', true)) {
    let age = 31536000;
    const a = data['hsts-max-age'];
    if (a !== undefined) {
      if (/^\d+$/.test(a)) age = Number(a);
      else bad('hsts-max-age', `hsts-max-age must be seconds, not ${JSON.stringify(a)}`);
    }
    g.hsts = `max-age=${age}${bool('hsts-include-subdomains', true) ? '; includeSubDomains' : ''}${bool('hsts-preload', false) ? '; preload' : ''}`;
  } else {
    g.hsts = null;
  }
  const protocols = data['ssl-protocols'];
  if (protocols !== undefined) {
    const versions = protocols.split(/\s+/).filter(Boolean);
    const known = versions.filter((v): v is TlsVersion => v === 'TLSv1.2' || v === 'TLSv1.3');
    const old = versions.filter((v) => /^(SSLv[23]|TLSv1(\.[01])?)$/.test(v));
    if (known.length + old.length !== versions.length || known.length === 0) bad('ssl-protocols', `ssl-protocols ${JSON.stringify(protocols)}: meshgate serves TLSv1.2 and TLSv1.3 only`);
    else {
      if (old.length > 0) ctx.report('warning', 'MG_UNSUPPORTED', cm, field('ssl-protocols'), `${old.join(', ')} are not offered: meshgate serves TLSv1.2 and TLSv1.3 only`);
      g.tlsMin = known.includes('TLSv1.2') ? 'TLSv1.2' : 'TLSv1.3';
      g.tlsMax = known.includes('TLSv1.3') ? 'TLSv1.3' : 'TLSv1.2';
    }
  }
  const ciphers = data['ssl-ciphers'];
  if (ciphers !== undefined && ciphers !== '') {
    const names = ciphers.split(':').map((c) => c.trim()).filter(Boolean);
    const plain = names.filter((c) => /^[A-Z0-9][A-Z0-9-]*$/.test(c));
    if (plain.length === 0) bad('ssl-ciphers', `ssl-ciphers ${JSON.stringify(ciphers)} lists no OpenSSL cipher name`);
    else {
      if (plain.length !== names.length) ctx.report('warning', 'MG_UNSUPPORTED', cm, field('ssl-ciphers'), `cipher-string operators (${names.filter((c) => !plain.includes(c)).join(':')}) are ignored; the named ciphers are used`);
      g.ciphers = plain;
    }
  }
  g.allow = cidrs('whitelist-source-range');
  g.deny = cidrs('denylist-source-range');
  g.useForwardedHeaders = bool('use-forwarded-headers', false);
  if (g.useForwardedHeaders || bool('enable-real-ip', false)) {
    const header = (data['forwarded-for-header'] || 'X-Forwarded-For').toLowerCase();
    if (!/^[a-z0-9-]+$/.test(header)) bad('forwarded-for-header', `forwarded-for-header ${JSON.stringify(header)} is not a header name`);
    const trusted = data['proxy-real-ip-cidr'] === undefined ? ['0.0.0.0/0', '::/0'] : cidrs('proxy-real-ip-cidr');
    g.realIp = { header: /^[a-z0-9-]+$/.test(header) ? header : 'x-forwarded-for', trusted };
  }
  for (const [key, target] of [['add-headers', 'addHeaders'], ['proxy-set-headers', 'proxySetHeaders']] as const) {
    const ref = data[key];
    if (ref === undefined || ref === '') continue;
    const r = headersFromConfigMap(resources, ref, cm.metadata.namespace, false);
    if (typeof r === 'string') bad(key, `${key} ${ref}: ${r}`);
    else g[target] = r;
  }
  const allowed = data['global-allowed-response-headers'];
  if (allowed !== undefined) g.allowedResponseHeaders = allowed.split(',').map((h) => h.trim().toLowerCase()).filter(Boolean);
  const fmt = data['log-format-upstream'];
  if (fmt !== undefined && fmt !== '') {
    const mapped = mapLogFormat(fmt);
    for (const v of mapped.unknown) ctx.report('warning', 'MG_UNSUPPORTED', cm, field('log-format-upstream'), `nginx variable $${v} has no meshgate equivalent; it is logged as "-"`);
    g.accessLog = {
      provider: 'ingress-nginx',
      path: '/dev/stdout',
      encoding: 'TEXT',
      format: mapped.format,
      jsonFormat: null,
      filter: null,
      sources: [{ kind: 'ConfigMap', namespace: cm.metadata.namespace, name: cm.metadata.name, file: cm.origin.file, line: cm.origin.fieldLines['data.log-format-upstream'] ?? cm.origin.line }],
    };
  }
  return g;
}

/** nginx log variables -> Envoy format operators (observability/log-format.ts). */
const LOG_VARS: Record<string, string> = {
  remote_addr: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%',
  binary_remote_addr: '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%',
  remote_user: '-',
  time_local: '%START_TIME%',
  time_iso8601: '%START_TIME%',
  request: '%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%',
  request_method: '%REQ(:METHOD)%',
  request_uri: '%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%',
  uri: '%REQ(:PATH)%',
  server_protocol: '%PROTOCOL%',
  status: '%RESPONSE_CODE%',
  body_bytes_sent: '%BYTES_SENT%',
  bytes_sent: '%BYTES_SENT%',
  request_length: '%BYTES_RECEIVED%',
  request_time: '%DURATION%',
  http_referer: '%REQ(REFERER)%',
  http_user_agent: '%REQ(USER-AGENT)%',
  host: '%REQ(:AUTHORITY)%',
  http_host: '%REQ(:AUTHORITY)%',
  proxy_upstream_name: '%UPSTREAM_CLUSTER%',
  upstream_addr: '%UPSTREAM_HOST%',
  upstream_status: '%RESPONSE_CODE%',
  upstream_response_time: '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%',
  req_id: '%REQ(X-REQUEST-ID)%',
  http_x_forwarded_for: '%REQ(X-FORWARDED-FOR)%',
};

export function mapLogFormat(fmt: string): { format: string; unknown: string[] } {
  const unknown: string[] = [];
  const format = fmt.replace(/\$\{?([a-z_][a-z0-9_]*)\}?/gi, (_m, name: string) => {
    const v = name.toLowerCase();
    if (Object.hasOwn(LOG_VARS, v)) return LOG_VARS[v];
    const h = /^http_([a-z0-9_]+)$/.exec(v);
    if (h) return `%REQ(${h[1].replace(/_/g, '-').toUpperCase()})%`;
    const sh = /^sent_http_([a-z0-9_]+)$/.exec(v);
    if (sh) return `%RESP(${sh[1].replace(/_/g, '-').toUpperCase()})%`;
    if (!unknown.includes(v)) unknown.push(v);
    return '-';
  });
  return { format, unknown };
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

/**
 * An Ingress's config with the ConfigMap's globals filling what its annotations leave unset
 * (annotations win, as in ingress-nginx).
 */
export function withGlobals<C extends { maxBodyBytes: number | null; connectTimeoutMs: number | null; readTimeoutMs: number | null; nextUpstream: NextUpstream; nextUpstreamSet: NextUpstreamSet; sslRedirect: boolean; forceSslRedirect: boolean; usePortInRedirects: boolean; allow: string[]; deny: string[] }>(cfg: C, g: NginxGlobalConfig | null, annotations: Readonly<Record<string, string>>): C {
  if (g === null) return cfg;
  const has = (k: string) => annotations[`nginx.ingress.kubernetes.io/${k}`] !== undefined;
  const acl = has('whitelist-source-range') || has('allowlist-source-range') || has('denylist-source-range');
  return {
    ...cfg,
    maxBodyBytes: has('proxy-body-size') ? cfg.maxBodyBytes : g.maxBodyBytes,
    connectTimeoutMs: cfg.connectTimeoutMs ?? g.connectTimeoutMs,
    readTimeoutMs: cfg.readTimeoutMs ?? g.readTimeoutMs,
    // Each proxy-next-upstream key the Ingress does not set comes from the ConfigMap (both were validated).
    nextUpstream: resolveNextUpstream(cfg.nextUpstreamSet, g.nextUpstream, () => undefined),
    sslRedirect: has('ssl-redirect') ? cfg.sslRedirect : g.sslRedirect,
    forceSslRedirect: has('force-ssl-redirect') ? cfg.forceSslRedirect : g.forceSslRedirect,
    usePortInRedirects: has('use-port-in-redirects') ? cfg.usePortInRedirects : g.usePortInRedirects,
    allow: acl ? cfg.allow : g.allow,
    deny: acl ? cfg.deny : g.deny,
  };
}

/** The ConfigMap's log-format-upstream, added to the access logs (the only log when nothing else configures logging). */
export function withNginxAccessLog(ctx: TranslateContext, resources: ResourceSet, logging: AccessLogging): AccessLogging {
  const log = readNginxConfigMap(ctx, resources)?.accessLog ?? null;
  if (log === null) return logging;
  return { configured: true, logs: logging.configured ? [...logging.logs, log] : [log] };
}
