/**
 * HTTPRoute and GRPCRoute rules -> IR routes, one IR route per match (a rule with several matches
 * competes with each match separately, as Istio splits them) with the key the spec's precedence
 * sorts on. Filters: RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite,
 * RequestMirror, CORS; ExtensionRef (and any filter meshgate cannot run) answers 500, never skipped.
 * Invalid backendRefs answer 500 for their share of the weight (a fault abort of that percentage in
 * front of the valid backends; gRPC: UNAVAILABLE); a rule without usable backends answers 500.
 */
import type { CorsPolicy, FaultInjection, LbPolicy, HeaderMatch, HeaderOps, Mirror, PathMatch, PathRewrite, QueryParamMatch, RedirectAction, RetryPolicy, Rewrite, Route, RouteAction, RouteDestination, RouteMatch, StringMatch } from '../../ir/types.js';
import { parseDuration } from '../../api/duration.js';
import { compileRe2 } from '../../lib/re2.js';
import { sha256Hex } from '../../lib/hash.js';
import { arr, num, obj, str, type Obj } from '../../lib/unknown.js';
import type { KubeObject } from '../../resources/types.js';
import { sourceOf } from '../types.js';
import { checkHeaderOps } from '../header-ops-check.js';
import { invalidBackendCluster, resolveBackend, type BackendEnv, type BackendProblem } from './backends.js';

/** One IR route with what the spec's precedence compares (bigger first, then smaller ordinals). */
export interface RankedRoute {
  route: Route;
  /** Sort key, compared element-wise ascending. */
  key: number[];
}

export interface BuiltRoute {
  ranked: RankedRoute[];
  /** First unresolved reference (route `ResolvedRefs=False`), with every message. */
  problems: BackendProblem[];
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH']);

/**
 * Translate every rule of `route` for a listener whose Gateway port is `listenerPort` (the default
 * port of redirects). `ordinal` is the route's place in creation-then-namespace/name order.
 */
export function buildHttpRoute(env: BackendEnv, route: KubeObject, listenerPort: number, ordinal: number): BuiltRoute {
  const grpc = route.kind === 'GRPCRoute';
  const problems: BackendProblem[] = [];
  const ranked: RankedRoute[] = [];
  const rules = arr(obj(route.body.spec).rules);
  const ruleList = rules.length > 0 ? rules : [{}];
  ruleList.forEach((r, ri) => {
    const rule = obj(r);
    const field = `spec.rules[${ri}]`;
    const base = buildRule(env, route, rule, field, listenerPort, grpc, problems);
    const matches = arr(rule.matches);
    const matchList: unknown[] = matches.length > 0 ? matches : [{}];
    matchList.forEach((m, mi) => {
      const mfield = `${field}.matches[${mi}]`;
      const built = grpc ? grpcMatch(env, route, obj(m), mfield) : httpMatch(env, route, obj(m), mfield);
      if (built === null) return;
      const ruleName = str(rule.name);
      const name = `${route.kind.toLowerCase()}/${route.metadata.namespace}/${route.metadata.name}/rule/${ri}${ruleName ? `:${ruleName}` : ''}/match/${mi}`;
      ranked.push({
        route: { name, source: sourceOf(route, matches.length > 0 ? mfield : field), matches: [built.match], action: base.action, requestHeaders: base.requestHeaders, responseHeaders: base.responseHeaders, cors: base.cors },
        key: [...built.key, ordinal, ri, mi],
      });
    });
  });
  return { ranked, problems };
}

type RuleParts = Omit<Route, 'name' | 'source' | 'matches'>;

function buildRule(env: BackendEnv, route: KubeObject, rule: Obj, field: string, listenerPort: number, grpc: boolean, problems: BackendProblem[]): RuleParts {
  const { ctx } = env;
  let requestHeaders: HeaderOps | null = null;
  let responseHeaders: HeaderOps | null = null;
  let redirect: RedirectAction | null = null;
  let rewrite: Rewrite | null = null;
  let cors: CorsPolicy | null = null;
  const mirrors: Mirror[] = [];
  let refuse: string | null = null;
  arr(rule.filters).forEach((f, i) => {
    const fo = obj(f);
    const ff = `${field}.filters[${i}]`;
    const type = str(fo.type) ?? '';
    switch (type) {
      case 'RequestHeaderModifier':
        requestHeaders = checkedHeaderOps(env, route, fo.requestHeaderModifier, `${ff}.requestHeaderModifier`);
        break;
      case 'ResponseHeaderModifier':
        responseHeaders = checkedHeaderOps(env, route, fo.responseHeaderModifier, `${ff}.responseHeaderModifier`);
        break;
      case 'RequestRedirect':
        if (grpc) refuse ??= `${ff}: RequestRedirect is not a GRPCRoute filter`;
        else redirect = redirectOf(obj(fo.requestRedirect), listenerPort);
        break;
      case 'URLRewrite':
        if (grpc) refuse ??= `${ff}: URLRewrite is not a GRPCRoute filter`;
        else rewrite = rewriteOf(obj(fo.urlRewrite));
        break;
      case 'RequestMirror': {
        const m = obj(fo.requestMirror);
        const res = resolveBackend(env, route, obj(m.backendRef), `${ff}.requestMirror.backendRef`, grpc);
        if (!res.ok) {
          problems.push(res.problem);
          break;
        }
        const fraction = obj(m.fraction);
        const percentage = num(m.percent) ?? (num(fraction.numerator) !== undefined ? (100 * (num(fraction.numerator) as number)) / (num(fraction.denominator) ?? 100) : 100);
        mirrors.push({ cluster: res.cluster, percentage: Math.min(100, percentage) });
        break;
      }
      case 'CORS':
        if (grpc) refuse ??= `${ff}: CORS is not a GRPCRoute filter`;
        else cors = corsOf(obj(fo.cors));
        break;
      case 'ExtensionRef': {
        const e = obj(fo.extensionRef);
        refuse ??= `${ff}: ExtensionRef ${str(e.group) ?? ''}/${str(e.kind) ?? ''} ${str(e.name) ?? ''} is not a filter meshgate knows`;
        break;
      }
      default:
        refuse ??= `${ff}: filter type ${JSON.stringify(type)} is not supported`;
    }
  });
  const headerParts = { requestHeaders, responseHeaders, cors };
  if (refuse !== null) {
    // The spec: a filter that cannot be run must not be skipped; the requests it would process get an error.
    ctx.report('error', 'MG_UNSUPPORTED', route, field, `${refuse}; requests matching this rule get 500`);
    return { ...headerParts, action: { kind: 'direct', status: 500, body: null, contentType: null } };
  }
  if (redirect !== null) return { ...headerParts, action: redirect };
  const sticky = isSet(rule.sessionPersistence) ? sessionLb(env, route, obj(rule.sessionPersistence), `${field}.sessionPersistence`, `${route.kind}/${route.metadata.namespace}/${route.metadata.name}/${field}`) : null;

  // Backends: valid ones become destinations; the weight of invalid ones is answered with 500.
  const destinations: RouteDestination[] = [];
  let invalidWeight = 0;
  arr(rule.backendRefs).forEach((b, i) => {
    const bo = obj(b);
    const bf = `${field}.backendRefs[${i}]`;
    const weight = num(bo.weight) ?? 1;
    let reqOps: HeaderOps | null = null;
    let respOps: HeaderOps | null = null;
    let badFilter: string | null = null;
    arr(bo.filters).forEach((f, k) => {
      const fo = obj(f);
      const type = str(fo.type) ?? '';
      if (type === 'RequestHeaderModifier') reqOps = checkedHeaderOps(env, route, fo.requestHeaderModifier, `${bf}.filters[${k}].requestHeaderModifier`);
      else if (type === 'ResponseHeaderModifier') respOps = checkedHeaderOps(env, route, fo.responseHeaderModifier, `${bf}.filters[${k}].responseHeaderModifier`);
      else badFilter ??= `${bf}.filters[${k}]: filter type ${type} on a backendRef is not supported`;
    });
    const res = resolveBackend(env, route, bo, bf, grpc);
    if (!res.ok) {
      problems.push(res.problem);
      invalidWeight += weight;
      return;
    }
    if (badFilter !== null) {
      ctx.report('error', 'MG_UNSUPPORTED', route, bf, `${badFilter}; this backend's share of requests gets 500`);
      invalidWeight += weight;
      return;
    }
    const cluster = sticky === null ? res.cluster : stickyCluster(env, res.cluster, sticky, `${route.metadata.namespace}.${route.metadata.name}.${field.replace(/\D+/g, '')}`);
    if (weight > 0) destinations.push({ cluster, weight, requestHeaders: reqOps, responseHeaders: respOps });
  });
  if (sticky !== null && destinations.length > 1) {
    ctx.report('warning', 'MG_UNSUPPORTED', route, `${field}.sessionPersistence`, 'session persistence holds within each backend Service; the choice between several backendRefs stays by weight');
  }
  const total = destinations.reduce((s, d) => s + d.weight, 0) + invalidWeight;
  if (destinations.length === 0) {
    if (!grpc) return { ...headerParts, action: { kind: 'direct', status: 500, body: null, contentType: null } };
    // gRPC clients expect a gRPC status: UNAVAILABLE, from an abort in front of a cluster that never has endpoints.
    const cluster = invalidBackendCluster(env, route, field);
    return { ...headerParts, action: forward([{ cluster, weight: 1, requestHeaders: null, responseHeaders: null }], rewrite, rule, env, route, field, { delay: null, abort: { kind: 'grpc', grpcStatus: 14, percentage: 100 } }, mirrors) };
  }
  let fault: FaultInjection | null = null;
  if (invalidWeight > 0) {
    const percentage = Math.round((invalidWeight / total) * 1e6) / 1e4;
    fault = { delay: null, abort: grpc ? { kind: 'grpc', grpcStatus: 14, percentage } : { kind: 'http', status: 500, percentage } };
  }
  return { ...headerParts, action: forward(destinations, rewrite, rule, env, route, field, fault, mirrors) };
}

/**
 * Experimental `sessionPersistence` on the engine's consistent hashing, with the gateway issuing
 * and checking the session key (IR SessionKey): `Cookie` (default) hashes on the session cookie and,
 * when a request has none (or one past a timeout), starts a session and sets the cookie (a session
 * cookie, or `Max-Age` = absoluteTimeout with `lifetimeType: Permanent`); `Header` does the same
 * with a response header the client sends back. `absoluteTimeout` ends a session that long after it
 * began, `idleTimeout` (API up to v1.5) after that long without a request. Both shapes are read:
 * v1.6 (`sessionName`, `cookieConfig.lifetimeType`) and the later one (`cookie: {name, path,
 * lifetimeType}`, `header: {name}`). The same key keeps reaching the same endpoint of a Service
 * while its endpoint set is unchanged (not an encoded endpoint as Envoy Gateway's stateful
 * sessions: a scale-out moves about 1/N of the sessions). Between several backendRefs the choice
 * stays by weight (reported).
 */
function sessionLb(env: BackendEnv, route: KubeObject, sp: Obj, field: string, ruleKey: string): LbPolicy | null {
  const type = str(sp.type) ?? 'Cookie';
  const cookie = obj(sp.cookie);
  const header = obj(sp.header);
  // "If not specified, a unique cookie name SHOULD be generated": one per rule.
  const generated = `mg-session-${sha256Hex(ruleKey, 8)}`;
  let name = str(sp.sessionName) || str(type === 'Header' ? header.name : cookie.name) || generated;
  // The name goes into Set-Cookie (or a response header) as written: only a token (RFC 6265 cookie-name,
  // RFC 9110 field-name), so a route cannot add cookie attributes (`; Domain=...`) or break the head.
  if (!TOKEN.test(name)) {
    const at = str(sp.sessionName) ? 'sessionName' : type === 'Header' ? 'header.name' : 'cookie.name';
    env.ctx.report('warning', 'MG_INVALID_FIELD', route, `${field}.${at}`, `session name ${JSON.stringify(name)} is not a ${type === 'Header' ? 'header' : 'cookie'} name (a token); ${generated} is used`);
    name = generated;
  }
  const timeout = (key: 'absoluteTimeout' | 'idleTimeout'): number | null => {
    const v = sp[key];
    if (typeof v !== 'string') return null;
    const ms = parseDuration(v);
    if (ms === null || ms <= 0) {
      env.ctx.report('warning', 'MG_INVALID_FIELD', route, `${field}.${key}`, `${key} ${JSON.stringify(v)} is not a positive duration; it is ignored`);
      return null;
    }
    return Math.max(1, Math.ceil(ms / 1000));
  };
  const session = { absoluteTimeoutSeconds: timeout('absoluteTimeout'), idleTimeoutSeconds: timeout('idleTimeout') };
  const algorithm = { kind: 'ring-hash' as const, minimumRingSize: 1024 };
  if (type === 'Header') return { kind: 'consistent-hash', hashOn: { kind: 'header', name: name.toLowerCase(), session }, algorithm };
  if (type !== 'Cookie') {
    env.ctx.report('warning', 'MG_UNSUPPORTED', route, `${field}.type`, `session persistence type ${JSON.stringify(type)} is not supported; requests are balanced round robin`);
    return null;
  }
  const lifetime = str(obj(sp.cookieConfig).lifetimeType) ?? str(cookie.lifetimeType) ?? 'Session';
  let ttlSeconds = 0;
  if (lifetime === 'Permanent') {
    if (session.absoluteTimeoutSeconds === null) env.ctx.report('warning', 'MG_MISSING_FIELD', route, `${field}.absoluteTimeout`, 'a Permanent session cookie needs absoluteTimeout (its Max-Age); a session cookie is set instead');
    else ttlSeconds = session.absoluteTimeoutSeconds;
  } else if (lifetime !== 'Session') env.ctx.report('warning', 'MG_INVALID_FIELD', route, `${field}.cookieConfig.lifetimeType`, `lifetimeType ${JSON.stringify(lifetime)} is not Session or Permanent; a session cookie is set`);
  let path = str(cookie.path) || '/';
  // The cookie's Path attribute: a path, nothing that would end the attribute (`;`) or the header.
  if (!COOKIE_PATH.test(path)) {
    env.ctx.report('warning', 'MG_INVALID_FIELD', route, `${field}.cookie.path`, `cookie path ${JSON.stringify(path)} is not an absolute path without ";", spaces or control characters; "/" is used`);
    path = '/';
  }
  return { kind: 'consistent-hash', hashOn: { kind: 'cookie', name, path, ttlSeconds, session }, algorithm };
}

/** RFC 9110 token: a cookie name (RFC 6265) or a header name. */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** RFC 6265 path-value, absolute: any CHAR but CTLs and `;` (and no space, which nginx and browsers trim). */
const COOKIE_PATH = /^\/[\x21-\x3a\x3c-\x7e]*$/;

/** A copy of `base` balanced by `lb`, for one rule's session persistence (other routes to the Service keep their balancing). */
function stickyCluster(env: BackendEnv, base: string, lb: LbPolicy, key: string): string {
  const cluster = env.ctx.getCluster(base);
  if (cluster === undefined) return base;
  const parts = base.split('|');
  const name = parts.length === 4 ? `${parts[0]}|${parts[1]}|session-${key}|${parts[3]}` : `${base}|session-${key}`;
  env.ctx.addCluster({ ...cluster, name, lbPolicy: lb });
  return name;
}

function forward(destinations: RouteDestination[], rewrite: Rewrite | null, rule: Obj, env: BackendEnv, route: KubeObject, field: string, fault: FaultInjection | null, mirrors: Mirror[]): RouteAction {
  const timeouts = obj(rule.timeouts);
  const request = durationMs(env, route, timeouts.request, `${field}.timeouts.request`);
  const backend = durationMs(env, route, timeouts.backendRequest, `${field}.timeouts.backendRequest`);
  const retries = retryOf(obj(rule.retry), backend);
  // Without retries one backend request is the whole exchange: the shorter limit applies.
  const timeoutMs = retries === null && backend !== null ? (request === null ? backend : Math.min(request, backend)) : request;
  return { kind: 'forward', destinations, rewrite, timeoutMs, retries, fault, mirrors };
}

/** HTTPRoute `retry` (experimental): `attempts` retries on `codes` and on connection errors, `backoff` apart. */
function retryOf(retry: Obj, perTryTimeoutMs: number | null): RetryPolicy | null {
  const attempts = num(retry.attempts);
  const codes = arr(retry.codes).filter((c): c is number => typeof c === 'number');
  if (attempts === undefined && codes.length === 0) return null;
  if (attempts === 0) return null;
  const backoff = typeof retry.backoff === 'string' ? parseDuration(retry.backoff) : null;
  return {
    numRetries: attempts ?? 1,
    perTryTimeoutMs,
    retryOn: codes.length > 0 ? ['connect-failure', 'reset', 'retriable-status-codes'] : ['connect-failure', 'reset'],
    retriableStatusCodes: [...new Set(codes)].sort((a, b) => a - b),
    backoffBaseMs: backoff !== null && backoff > 0 ? backoff : 25,
    ignorePreviousHosts: true,
  };
}

function durationMs(env: BackendEnv, route: KubeObject, v: unknown, field: string): number | null {
  if (typeof v !== 'string') return null;
  const ms = parseDuration(v);
  if (ms === null || ms < 0) {
    env.ctx.report('warning', 'MG_INVALID_FIELD', route, field, `${JSON.stringify(v)} is not a duration; it is ignored`);
    return null;
  }
  // Gateway API: `0s` disables the timeout.
  return ms === 0 ? null : Math.max(1, Math.round(ms));
}

/** `headerOps`, each name and value checked (header-ops-check.ts); `field` is the modifier's path. */
function checkedHeaderOps(env: BackendEnv, route: KubeObject, v: unknown, field: string): HeaderOps {
  return checkHeaderOps(env.ctx, route, headerOps(v), (list, i) => `${field}.${list}[${i}]`)!;
}

function headerOps(v: unknown): HeaderOps {
  const o = obj(v);
  const values = (x: unknown) =>
    arr(x)
      .map(obj)
      .filter((h) => typeof h.name === 'string')
      .map((h) => ({ name: (h.name as string).toLowerCase(), value: str(h.value) ?? '' }));
  return { set: values(o.set), add: values(o.add), remove: arr(o.remove).filter((n): n is string => typeof n === 'string').map((n) => n.toLowerCase()) };
}

function pathModifier(p: Obj): PathRewrite | null {
  const type = str(p.type);
  if (type === 'ReplaceFullPath') return { kind: 'full', value: str(p.replaceFullPath) ?? '/' };
  if (type === 'ReplacePrefixMatch') return { kind: 'prefix', value: str(p.replacePrefixMatch) ?? '/' };
  return null;
}

/**
 * RequestRedirect: default status 302; the port when unset is the scheme's default when a scheme
 * is set, else the listener's port (the Gateway's, not the locally mapped one); Location is absolute.
 */
function redirectOf(r: Obj, listenerPort: number): RedirectAction {
  const scheme = str(r.scheme) ?? null;
  const port = num(r.port);
  return {
    kind: 'redirect',
    scheme,
    authority: str(r.hostname) ?? null,
    port: port !== undefined ? port : scheme !== null ? 'from-protocol' : listenerPort,
    path: isSet(r.path) ? pathModifier(obj(r.path)) : null,
    responseCode: num(r.statusCode) ?? 302,
  };
}

function rewriteOf(r: Obj): Rewrite {
  return { path: isSet(r.path) ? pathModifier(obj(r.path)) : null, authority: str(r.hostname) ?? null };
}

function isSet(v: unknown): boolean {
  return v !== undefined && v !== null;
}

/**
 * CORS filter: origins `scheme://host[:port]` with `*` in the host greedy to the left, lone `*` =
 * any; a preflight from an origin not allowed is answered without CORS headers (not forwarded).
 */
function corsOf(c: Obj): CorsPolicy {
  const allowOrigins: StringMatch[] = [];
  for (const o of arr(c.allowOrigins)) {
    if (typeof o !== 'string') continue;
    if (o === '*') allowOrigins.push({ kind: 'exact', value: '*', ignoreCase: false });
    else if (o.includes('*')) {
      const source = `^${o.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\/-]/g, '\\$&')).join('.*')}$`;
      allowOrigins.push({ kind: 'regex', regex: { original: o, source, flags: 'u' } });
    } else allowOrigins.push({ kind: 'exact', value: o, ignoreCase: false });
  }
  const strings = (x: unknown): string[] => arr(x).filter((s): s is string => typeof s === 'string' && s !== '');
  return {
    allowOrigins,
    allowMethods: strings(c.allowMethods),
    allowHeaders: strings(c.allowHeaders),
    exposeHeaders: strings(c.exposeHeaders),
    maxAgeSeconds: num(c.maxAge) ?? 5,
    allowCredentials: c.allowCredentials === true,
    unmatchedPreflights: 'ignore',
    dialect: 'gateway-api',
  };
}

// ---- matches ------------------------------------------------------------------------------------

const EMPTY_MATCH: RouteMatch = { path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null };

function valueMatch(env: BackendEnv, route: KubeObject, m: Obj, field: string): StringMatch | null | 'bad' {
  const type = str(m.type) ?? 'Exact';
  const value = str(m.value) ?? '';
  if (type === 'Exact') return { kind: 'exact', value, ignoreCase: false };
  if (type === 'RegularExpression') {
    const r = compileRe2(value);
    if (r.ok) return { kind: 'regex', regex: r.regex };
    env.ctx.report('error', 'MG_INVALID_REGEX', route, `${field}.value`, `${r.message}; this match is dropped`);
    return 'bad';
  }
  env.ctx.report('error', 'MG_INVALID_FIELD', route, `${field}.type`, `match type ${JSON.stringify(type)} is not supported; this match is dropped`);
  return 'bad';
}

function headerMatches(env: BackendEnv, route: KubeObject, list: unknown, field: string): HeaderMatch[] | null {
  const out: HeaderMatch[] = [];
  const seen = new Set<string>();
  const items = arr(list);
  for (let i = 0; i < items.length; i++) {
    const h = obj(items[i]);
    const name = (str(h.name) ?? '').toLowerCase();
    // The spec: when a name repeats, the first entry wins.
    if (seen.has(name)) continue;
    seen.add(name);
    const m = valueMatch(env, route, h, `${field}[${i}]`);
    if (m === 'bad') return null;
    out.push({ name, match: m, invert: false });
  }
  return out;
}

/** HTTPRoute match -> IR match and the precedence key: Exact, then RegularExpression, then PathPrefix (longest first); method; most headers; most query params. */
function httpMatch(env: BackendEnv, route: KubeObject, m: Obj, field: string): { match: RouteMatch; key: number[] } | null {
  const p = obj(m.path);
  const type = str(p.type) ?? 'PathPrefix';
  const value = str(p.value) ?? '/';
  let path: PathMatch;
  let rank: number;
  if (type === 'Exact') {
    path = { kind: 'exact', value, ignoreCase: false };
    rank = 0;
  } else if (type === 'PathPrefix') {
    const trimmed = value.length > 1 ? value.replace(/\/+$/, '') || '/' : value;
    path = { kind: 'segment-prefix', value: trimmed, ignoreCase: false };
    rank = 2;
  } else if (type === 'RegularExpression') {
    const r = compileRe2(value);
    if (!r.ok) {
      env.ctx.report('error', 'MG_INVALID_REGEX', route, `${field}.path.value`, `${r.message}; this match is dropped`);
      return null;
    }
    path = { kind: 'regex', regex: r.regex };
    rank = 1;
  } else {
    env.ctx.report('error', 'MG_INVALID_FIELD', route, `${field}.path.type`, `path type ${JSON.stringify(type)} is not supported; this match is dropped`);
    return null;
  }
  const headers = headerMatches(env, route, m.headers, `${field}.headers`);
  if (headers === null) return null;
  const queryParams: QueryParamMatch[] = [];
  const seen = new Set<string>();
  const qs = arr(m.queryParams);
  for (let i = 0; i < qs.length; i++) {
    const q = obj(qs[i]);
    const name = str(q.name) ?? '';
    if (seen.has(name)) continue;
    seen.add(name);
    const vm = valueMatch(env, route, q, `${field}.queryParams[${i}]`);
    if (vm === 'bad') return null;
    queryParams.push({ name, match: vm });
  }
  let method: StringMatch | null = null;
  const mm = str(m.method);
  if (mm !== undefined) {
    if (!METHODS.has(mm)) {
      env.ctx.report('error', 'MG_INVALID_FIELD', route, `${field}.method`, `method ${JSON.stringify(mm)} is not an HTTP method the spec allows; this match is dropped`);
      return null;
    }
    method = { kind: 'exact', value: mm, ignoreCase: false };
  }
  const match: RouteMatch = { ...EMPTY_MATCH, path, method, headers, queryParams };
  const length = path.kind === 'regex' ? path.regex.original.length : path.value.length;
  return { match, key: [0, rank, -length, method ? 0 : 1, -headers.length, -queryParams.length] };
}

/**
 * GRPCRoute match: `/<service>/<method>` on the path. Exact with both -> exact path; service only
 * -> the `/<service>/` prefix; method only -> any service; RegularExpression pieces join into one
 * regex. Precedence: most characters in service, then in method, then most header matches.
 */
function grpcMatch(env: BackendEnv, route: KubeObject, m: Obj, field: string): { match: RouteMatch; key: number[] } | null {
  const mm = obj(m.method);
  const type = str(mm.type) ?? 'Exact';
  const service = str(mm.service) ?? '';
  const method = str(mm.method) ?? '';
  let path: PathMatch | null = null;
  if (type === 'Exact') {
    if (service !== '' && method !== '') path = { kind: 'exact', value: `/${service}/${method}`, ignoreCase: false };
    else if (service !== '') path = { kind: 'prefix', value: `/${service}/`, ignoreCase: false };
    else if (method !== '') {
      const r = compileRe2(`/[^/]+/${method.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`);
      if (r.ok) path = { kind: 'regex', regex: r.regex };
    }
  } else if (type === 'RegularExpression') {
    const r = compileRe2(`/(?:${service || '[^/]+'})/(?:${method || '[^/]+'})`);
    if (!r.ok) {
      env.ctx.report('error', 'MG_INVALID_REGEX', route, `${field}.method`, `${r.message}; this match is dropped`);
      return null;
    }
    path = { kind: 'regex', regex: r.regex };
  } else {
    env.ctx.report('error', 'MG_INVALID_FIELD', route, `${field}.method.type`, `method match type ${JSON.stringify(type)} is not supported; this match is dropped`);
    return null;
  }
  const headers = headerMatches(env, route, m.headers, `${field}.headers`);
  if (headers === null) return null;
  // GRPCRoutes sort before HTTPRoutes of the same host (their paths are specific); see index.ts.
  return { match: { ...EMPTY_MATCH, path, headers }, key: [-1, 0, -service.length, -method.length, -headers.length, 0] };
}
