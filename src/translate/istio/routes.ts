/**
 * VirtualService `http[]` -> IR routes, for one Gateway and one server port.
 *
 * Istio (pilot/pkg/networking/core/route/route.go, BuildHTTPRoutesForVirtualService):
 *  - routes keep the author's order; match blocks of one route are OR-ed, fields of a block AND-ed;
 *  - a match block whose `gateways` does not name this Gateway, whose `port` is another port, or whose
 *    `sourceLabels` do not select this proxy does not exist here; a route left with no block is skipped;
 *  - generation stops at the first catch-all (no match, or only `uri.prefix: /` / `uri.regex: .*`):
 *    later routes of the VirtualService can never match (MG_UNREACHABLE_ROUTE) and are not emitted.
 *
 * Route names: `virtualservice/<ns>/<name>/http/<index>`, and `:<route.name>` appended when the route
 * has a name. The index keeps names unique and stable when an author reuses or omits names; the suffix
 * keeps the author's name visible in metrics, logs and the dashboard.
 *
 * A route with an invalid part (bad regex, bad weights, bad redirect code, no action) gets an error
 * diagnostic and is dropped alone; the rest of the VirtualService is served.
 */
import type {
  HeaderMatch,
  HeaderOps,
  HeaderValue,
  PathMatch,
  PathRewrite,
  QueryParamMatch,
  Regex,
  RedirectAction,
  Rewrite,
  Route,
  RouteAction,
  RouteDestination,
  RouteMatch,
  StringMatch,
} from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { parseDuration } from '../../api/duration.js';
import { compileRe2, compileRe2Unanchored } from '../../lib/re2.js';
import { arr, isObj, num, obj, str, strMap, type Obj } from '../../lib/unknown.js';
import { clusterName, matchesLabels, resolveCluster, servicePorts } from '../backends.js';
import { sourceOf, type TranslateContext } from '../types.js';
import type { DestinationRuleIndex } from './destination-rules.js';
import { resolveTrafficPolicy } from './traffic-policy.js';
import { h2UpgradePolicyOf } from './protocol.js';
import { translateCors, translateFault, translateMirrors, translateRetries } from './route-policies.js';
import { resolveServiceHost } from './objects.js';
import { serviceEntryCluster } from './service-entry.js';
import { checkHeaderOps } from '../header-ops-check.js';
import { rootNamespaceOf } from '../mesh-config.js';

/** HeaderMatch names with this prefix match a claim of the verified JWT (see ir/types.ts HeaderMatch). */
const CLAIM_PREFIX = '@request.auth.claims.';

/** Whether a RequestAuthentication (security.istio.io) applies at this gateway: claims can exist. */
function requestAuthenticationApplies(env: RouteEnv): boolean {
  const ns = env.ctx.options.gatewayNamespace;
  const root = rootNamespaceOf(env.ctx, env.resources);
  return env.resources.ofKind('RequestAuthentication').some((o) => o.apiVersion.startsWith('security.istio.io/') && (o.metadata.namespace === ns || o.metadata.namespace === root));
}

export interface RouteEnv {
  ctx: TranslateContext;
  resources: ResourceSet;
  drs: DestinationRuleIndex;
  vs: KubeObject;
  /**
   * `namespace/name` of the Gateways the routes are built for: several when servers of several
   * Gateways share one port (one filter chain) and each binds this VirtualService; a match block
   * naming any of them applies, since their traffic cannot be told apart on the shared listener.
   */
  gateways: string[];
  /** The server's port number (the listener's externalPort). */
  port: number;
  /**
   * Sidecar (`mesh`) translation (translate/sidecar/): the proxy's namespace. Then a match block
   * applies when its `gateways` is empty or names `mesh`, `sourceNamespace` must equal this
   * namespace, DestinationRules are the ones visible from it, and a destination without a port on a
   * Service (or ServiceEntry) with several ports uses `port` (Istio GetDestinationCluster with the
   * listener port). Absent for gateways.
   */
  mesh?: { namespace: string };
}

export interface TranslatedRoute {
  route: Route;
  /** Matches every request (Istio's catch-all); sorted after other routes of the virtual host. */
  catchAll: boolean;
  /** `spec.http[i]`, for diagnostics about the route. */
  field: string;
}

/** Routes of one VirtualService for one Gateway and port, in the author's order, ending at the first catch-all. */
export function translateVirtualServiceRoutes(env: RouteEnv): TranslatedRoute[] {
  const out: TranslatedRoute[] = [];
  let catchAll: TranslatedRoute | null = null;
  const http = arr(obj(env.vs.body.spec).http);
  for (let i = 0; i < http.length; i++) {
    const field = `spec.http[${i}]`;
    const r = translateHttpRoute(env, obj(http[i]), i, field, catchAll === null);
    if (r === null) continue;
    if (catchAll) {
      env.ctx.report('warning', 'MG_UNREACHABLE_ROUTE', env.vs, field, `route ${'route' in r ? r.route.name : r.name} can never match on port ${env.port}: route ${catchAll.route.name} before it matches every request (Istio drops routes after a catch-all)`);
      continue;
    }
    if (!('route' in r)) continue;
    out.push(r);
    if (r.catchAll) catchAll = r;
  }
  return out;
}

/** Sentinel: the route is invalid (a diagnostic has been reported) and is dropped. */
const INVALID = Symbol('invalid');
type Invalid = typeof INVALID;

/**
 * One HTTPRoute; null when it does not exist on this Gateway/port or is invalid. With `reachable`
 * false (after a catch-all) only its name is returned, once its matches say it applies here: no
 * clusters are registered for a route that can never be used.
 */
function translateHttpRoute(env: RouteEnv, http: Obj, index: number, field: string, reachable: boolean): TranslatedRoute | { name: string } | null {
  const { ctx, vs } = env;
  const routeName = str(http.name);
  const name = `virtualservice/${vs.metadata.namespace}/${vs.metadata.name}/http/${index}${routeName ? `:${routeName}` : ''}`;

  const m = translateMatches(env, http, field);
  if (m === null || m === INVALID) return null;
  if (!reachable) return { name };

  if (http.delegate !== undefined && http.delegate !== null && http.route === undefined && http.redirect === undefined && http.directResponse === undefined) {
    ctx.report('warning', 'MG_UNSUPPORTED', vs, `${field}.delegate`, `delegate is not supported yet: route ${name} is not served, so its requests fall through to later routes`);
    return null;
  }

  const action = translateAction(env, http, field, m.matches);
  if (action === INVALID) return null;

  const headers = obj(http.headers);
  const route: Route = {
    name,
    source: sourceOf(vs, field),
    matches: m.matches,
    action,
    requestHeaders: checkedHeaderOps(env, headers.request, `${field}.headers.request`),
    responseHeaders: checkedHeaderOps(env, headers.response, `${field}.headers.response`),
    cors: translateCors(ctx, vs, http.corsPolicy, `${field}.corsPolicy`),
  };
  return { route, catchAll: m.catchAll, field };
}

// ---- matches ----------------------------------------------------------------------------------

const CATCH_ALL_MATCH: RouteMatch = { path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null };

function translateMatches(env: RouteEnv, http: Obj, field: string): { matches: RouteMatch[]; catchAll: boolean } | null | Invalid {
  const blocks = arr(http.match);
  if (blocks.length === 0) return { matches: [{ ...CATCH_ALL_MATCH }], catchAll: true };
  const matches: RouteMatch[] = [];
  let invalid = false;
  for (let j = 0; j < blocks.length; j++) {
    const mf = `${field}.match[${j}]`;
    const block = obj(blocks[j]);
    if (!blockApplies(env, block, mf)) continue;
    const rm = translateMatch(env, block, mf);
    if (rm === INVALID) {
      invalid = true;
      continue;
    }
    if (rm === null) continue;
    matches.push(rm);
    // Istio stops generating at the first catch-all block: nothing after it could be reached.
    if (!invalid && isCatchAll(rm)) return { matches, catchAll: true };
  }
  if (invalid) return INVALID;
  if (matches.length === 0) return null;
  return { matches, catchAll: false };
}

/** Does this match block exist on this Gateway and port (and for this proxy's labels)? */
function blockApplies(env: RouteEnv, block: Obj, field: string): boolean {
  const gateways = arr(block.gateways).map(str).filter((g): g is string => g !== undefined);
  if (env.mesh !== undefined) return meshBlockApplies(env, env.mesh.namespace, block, gateways);
  if (gateways.length > 0 && !gateways.some((g) => g !== 'mesh' && env.gateways.includes(qualifyGateway(g, env.vs.metadata.namespace)))) return false;
  const port = num(block.port);
  if (port !== undefined && port !== env.port) return false;
  // A gateway is the "source" of the requests it forwards: Istio compares sourceLabels with the proxy's own labels.
  if (block.sourceLabels !== undefined && block.sourceLabels !== null && !matchesLabels(env.ctx.options.gatewayLabels, strMap(block.sourceLabels))) return false;
  if (str(block.sourceNamespace) !== undefined) {
    env.ctx.report('info', 'MG_UNSUPPORTED', env.vs, `${field}.sourceNamespace`, 'sourceNamespace only applies to sidecars (mesh); it is ignored at the gateway');
  }
  return true;
}

/** A match block on a sidecar: `mesh` among its gateways (or none), its port, and this proxy as the source (labels, namespace). */
function meshBlockApplies(env: RouteEnv, namespace: string, block: Obj, gateways: string[]): boolean {
  if (gateways.length > 0 && !gateways.includes('mesh')) return false;
  const port = num(block.port);
  if (port !== undefined && port !== env.port) return false;
  // The sidecar's own labels are in `gatewayLabels` (translate/sidecar/ sets them).
  if (block.sourceLabels !== undefined && block.sourceLabels !== null && !matchesLabels(env.ctx.options.gatewayLabels, strMap(block.sourceLabels))) return false;
  const sourceNamespace = str(block.sourceNamespace);
  if (sourceNamespace !== undefined && sourceNamespace !== '' && sourceNamespace !== namespace) return false;
  return true;
}

/** `[ns/]name` of a Gateway reference, unqualified names in `namespace`. */
export function qualifyGateway(ref: string, namespace: string): string {
  const slash = ref.indexOf('/');
  return slash < 0 ? `${namespace}/${ref}` : ref;
}

/** One HTTPMatchRequest; null when the block can never match here (it is dropped). */
function translateMatch(env: RouteEnv, block: Obj, field: string): RouteMatch | null | Invalid {
  const { ctx, vs } = env;
  let invalid = false;
  const sm = (v: unknown, f: string): StringMatch | null => {
    const r = stringMatch(ctx, vs, v, f, false);
    if (r === INVALID) {
      invalid = true;
      return null;
    }
    return r;
  };

  let path: PathMatch | null = null;
  if (isObj(block.uri)) {
    const uri = block.uri;
    const ignoreCase = block.ignoreUriCase === true;
    if (typeof uri.exact === 'string') path = { kind: 'exact', value: uri.exact, ignoreCase };
    else if (typeof uri.prefix === 'string') path = { kind: 'prefix', value: uri.prefix, ignoreCase };
    else if (typeof uri.regex === 'string') {
      const re = regex(ctx, vs, uri.regex, `${field}.uri.regex`);
      if (re === INVALID) invalid = true;
      else path = re;
    }
  }

  const headers: HeaderMatch[] = [];
  let neverMatches = false;
  for (const [key, invert] of [['headers', false], ['withoutHeaders', true]] as const) {
    for (const [rawName, value] of Object.entries(obj(block[key]))) {
      const hf = `${field}.${key}[${JSON.stringify(rawName)}]`;
      const name = rawName.toLowerCase();
      if (name.startsWith('@request.auth.claims')) {
        // Istio "JWT claim based routing": the claims of the token RequestAuthentication verified,
        // `@request.auth.claims.<name>`, nested with `.`; claim names keep their case.
        const claim = /^@request\.auth\.claims\.(.+)$/i.exec(rawName);
        if (claim === null || claim[1].split('.').some((p) => p === '')) {
          ctx.report('warning', 'MG_INVALID_FIELD', vs, hf, `"${rawName}" names no claim (use @request.auth.claims.NAME, nested as NAME.SUB); this match block never matches`);
          if (!invert) neverMatches = true;
          continue;
        }
        if (!requestAuthenticationApplies(env)) {
          const where = [...new Set([ctx.options.gatewayNamespace, rootNamespaceOf(ctx, env.resources)])].map((n) => `"${n}"`).join(' or ');
          ctx.report('warning', 'MG_UNSUPPORTED', vs, hf, `no RequestAuthentication applies to this gateway (namespace ${where}), so requests carry no verified claims: ${invert ? 'this condition always holds' : 'this match block never matches'}`);
        }
        headers.push({ name: `${CLAIM_PREFIX}${claim[1]}`, match: sm(value, hf), invert });
        continue;
      }
      if (name.startsWith(':') || name === 'uri' || name === 'scheme' || name === 'method' || name === 'authority') {
        ctx.report('info', 'MG_UNSUPPORTED', vs, hf, `header key "${rawName}" is ignored (Istio ignores uri/scheme/method/authority and pseudo-header keys here; use the match's own fields)`);
        continue;
      }
      headers.push({ name, match: sm(value, hf), invert });
    }
  }

  const queryParams: QueryParamMatch[] = [];
  for (const [name, value] of Object.entries(obj(block.queryParams))) {
    queryParams.push({ name, match: sm(value, `${field}.queryParams[${JSON.stringify(name)}]`) });
  }

  const method = sm(block.method, `${field}.method`);
  const scheme = sm(block.scheme, `${field}.scheme`);
  const authority = sm(block.authority, `${field}.authority`);
  if (invalid) return INVALID;
  if (neverMatches) return null;
  const port = num(block.port) ?? null;
  return { path, method, scheme, authority, headers, queryParams, port };
}

/** Istio's catch-all: no conditions but a path matching everything (port and gateways do not count). */
function isCatchAll(m: RouteMatch): boolean {
  if (m.method || m.scheme || m.authority || m.headers.length > 0 || m.queryParams.length > 0) return false;
  const p = m.path;
  return p === null || (p.kind === 'prefix' && p.value === '/') || (p.kind === 'regex' && p.regex.original === '.*');
}

/** Istio StringMatch -> IR; null when empty (`{}` means "present" for headers/query, "any" elsewhere). */
function stringMatch(ctx: TranslateContext, vs: KubeObject, v: unknown, field: string, ignoreCase: boolean): StringMatch | null | Invalid {
  if (!isObj(v)) return null;
  if (typeof v.exact === 'string') return { kind: 'exact', value: v.exact, ignoreCase };
  if (typeof v.prefix === 'string') return { kind: 'prefix', value: v.prefix, ignoreCase };
  if (typeof v.regex === 'string') return regex(ctx, vs, v.regex, `${field}.regex`);
  return null;
}

function regex(ctx: TranslateContext, vs: KubeObject, pattern: string, field: string): { kind: 'regex'; regex: Regex } | Invalid {
  const r = compileRe2(pattern);
  if (!r.ok) {
    ctx.report('error', 'MG_INVALID_REGEX', vs, field, `${r.message}; the route is not served`);
    return INVALID;
  }
  return { kind: 'regex', regex: r.regex };
}

// ---- actions ----------------------------------------------------------------------------------

const REDIRECT_CODES = [301, 302, 303, 307, 308];

function translateAction(env: RouteEnv, http: Obj, field: string, matches: RouteMatch[]): RouteAction | Invalid {
  const { ctx, vs } = env;
  // Istio translateRoute: redirect, then directResponse, then route.
  if (isObj(http.redirect)) {
    if (http.rewrite !== undefined && http.rewrite !== null) ctx.report('warning', 'MG_INVALID_FIELD', vs, `${field}.rewrite`, 'rewrite cannot be combined with redirect; it is ignored');
    return translateRedirect(ctx, vs, http.redirect, `${field}.redirect`);
  }
  if (isObj(http.directResponse)) {
    const d = http.directResponse;
    const status = num(d.status);
    if (status === undefined || !Number.isInteger(status) || status < 200 || status > 599) {
      ctx.report('error', 'MG_INVALID_FIELD', vs, `${field}.directResponse.status`, `directResponse.status must be an HTTP status from 200 to 599; the route is not served`);
      return INVALID;
    }
    const body = obj(d.body);
    let text: string | null = null;
    if (typeof body.string === 'string') text = body.string;
    else if (typeof body.bytes === 'string') text = Buffer.from(body.bytes, 'base64').toString('utf8');
    return { kind: 'direct', status, body: text, contentType: null };
  }
  const dests = arr(http.route);
  if (dests.length === 0) {
    ctx.report('error', 'MG_MISSING_FIELD', vs, field, 'an HTTP route needs one of route, redirect, directResponse or delegate; the route is not served');
    return INVALID;
  }
  const destinations = translateDestinations(env, dests, `${field}.route`);
  if (destinations === INVALID) return INVALID;
  const rewrite = translateRewrite(ctx, vs, http.rewrite, `${field}.rewrite`, matches);
  if (rewrite === INVALID) return INVALID;
  let timeoutMs: number | null = null;
  if (http.timeout !== undefined && http.timeout !== null) {
    const ms = typeof http.timeout === 'string' ? parseDuration(http.timeout) : null;
    if (ms === null || ms < 0) ctx.report('warning', 'MG_INVALID_FIELD', vs, `${field}.timeout`, `timeout ${JSON.stringify(http.timeout)} is not a duration (like "1.5s", "100ms"); no timeout is applied`);
    // Istio: 0s disables the timeout.
    else if (ms > 0) timeoutMs = Math.max(1, Math.round(ms));
  }
  return {
    kind: 'forward',
    destinations,
    rewrite,
    timeoutMs,
    retries: translateRetries(ctx, vs, http.retries, `${field}.retries`),
    fault: translateFault(ctx, vs, http.fault, `${field}.fault`),
    mirrors: translateMirrors(ctx, vs, http, field, (d, f) => destinationCluster(env, d, f)),
  };
}

function translateRedirect(ctx: TranslateContext, vs: KubeObject, r: Obj, field: string): RedirectAction | Invalid {
  const code = num(r.redirectCode);
  const responseCode = code === undefined || code === 0 ? 301 : code;
  if (!REDIRECT_CODES.includes(responseCode)) {
    ctx.report('error', 'MG_INVALID_FIELD', vs, `${field}.redirectCode`, `redirectCode ${responseCode} is not one of ${REDIRECT_CODES.join(', ')}; the route is not served`);
    return INVALID;
  }
  let port: RedirectAction['port'] = null;
  const p = num(r.port);
  if (p !== undefined && p > 0) port = p;
  else if (r.derivePort === 'FROM_PROTOCOL_DEFAULT') port = 'from-protocol';
  else if (r.derivePort === 'FROM_REQUEST_PORT') port = 'from-request';
  let path: PathRewrite | null = null;
  if (typeof r.uri === 'string' && r.uri !== '') path = { kind: 'full', value: r.uri };
  else if (typeof r.prefixRewrite === 'string') path = { kind: 'prefix', value: r.prefixRewrite };
  return {
    kind: 'redirect',
    scheme: str(r.scheme) || null,
    authority: str(r.authority) || null,
    port,
    path,
    responseCode,
  };
}

/**
 * `rewrite.uri`: Envoy's prefix_rewrite, which Istio always uses: a prefix-matched block replaces the
 * matched prefix, an exact or regex block the whole path, and a block without `uri` (Envoy prefix `/`)
 * replaces the leading `/`. When no block is prefix-like the IR says `full`; otherwise `prefix`, and
 * blocks without `uri` get an explicit `prefix: /` path so the runtime replaces just that `/`.
 */
function translateRewrite(ctx: TranslateContext, vs: KubeObject, v: unknown, field: string, matches: RouteMatch[]): Rewrite | null | Invalid {
  if (!isObj(v)) return null;
  const authority = str(v.authority) || null;
  let path: PathRewrite | null = null;
  const rr = obj(v.uriRegexRewrite);
  if (typeof v.uri === 'string' && v.uri !== '') {
    if (v.uriRegexRewrite !== undefined && v.uriRegexRewrite !== null) ctx.report('warning', 'MG_INVALID_FIELD', vs, `${field}.uriRegexRewrite`, 'uri and uriRegexRewrite are mutually exclusive; uriRegexRewrite is ignored');
    const prefixLike = matches.some((m) => m.path === null || m.path.kind === 'prefix');
    if (prefixLike) {
      path = { kind: 'prefix', value: v.uri };
      for (let k = 0; k < matches.length; k++) if (matches[k].path === null) matches[k] = { ...matches[k], path: { kind: 'prefix', value: '/', ignoreCase: false } };
    } else {
      path = { kind: 'full', value: v.uri };
    }
  } else if (typeof rr.match === 'string') {
    const r = compileRe2Unanchored(rr.match);
    if (!r.ok) {
      ctx.report('error', 'MG_INVALID_REGEX', vs, `${field}.uriRegexRewrite.match`, `${r.message}; the route is not served`);
      return INVALID;
    }
    // The IR keeps the substitution as written (`\1` groups); the runtime converts it once at compile.
    path = { kind: 'regex', regex: r.regex, substitution: str(rr.rewrite) ?? '' };
  }
  if (path === null && authority === null) return null;
  return { path, authority };
}


// ---- destinations -----------------------------------------------------------------------------

function translateDestinations(env: RouteEnv, dests: unknown[], field: string): RouteDestination[] | Invalid {
  const { ctx, vs } = env;
  // Weights: one destination takes everything; otherwise non-negative integers, zeros dropped.
  const weights: number[] = [];
  for (let k = 0; k < dests.length; k++) {
    const w = obj(dests[k]).weight;
    if (dests.length === 1) {
      weights.push(100);
      continue;
    }
    const n = w === undefined || w === null ? 0 : num(w);
    if (n === undefined || !Number.isInteger(n) || n < 0) {
      ctx.report('error', 'MG_INVALID_WEIGHTS', vs, `${field}[${k}].weight`, `weight ${JSON.stringify(w)} is not a non-negative integer; the route is not served`);
      return INVALID;
    }
    weights.push(n);
  }
  if (weights.reduce((a, b) => a + b, 0) <= 0) {
    ctx.report('error', 'MG_INVALID_WEIGHTS', vs, field, `the ${dests.length} destinations have no weight (all 0 or absent), so no traffic could be sent; the route is not served`);
    return INVALID;
  }
  const out: RouteDestination[] = [];
  for (let k = 0; k < dests.length; k++) {
    if (weights[k] === 0) continue;
    const d = obj(dests[k]);
    const df = `${field}[${k}]`;
    const headers = obj(d.headers);
    out.push({
      cluster: destinationCluster(env, obj(d.destination), `${df}.destination`),
      weight: weights[k],
      requestHeaders: checkedHeaderOps(env, headers.request, `${df}.headers.request`),
      responseHeaders: checkedHeaderOps(env, headers.response, `${df}.headers.response`),
    });
  }
  return out;
}

/** Destination -> cluster name; every failure is reported and yields a `missing` cluster (503 NC). */
export function destinationCluster(env: RouteEnv, dest: Obj, field: string): string {
  const { ctx, resources, vs } = env;
  const host = str(dest.host) ?? '';
  const portNumberSet = num(obj(dest.port).number);
  const subsetName = str(dest.subset) ?? '';
  // A ServiceEntry host wins over reading the host as a Service name (service-entry.ts).
  const fromEntry = serviceEntryCluster({ ctx, resources, drs: env.drs, from: vs, ...(env.mesh ? { mesh: { namespace: env.mesh.namespace, listenerPort: env.port } } : {}) }, host, portNumberSet, subsetName, field);
  if (fromEntry !== null) return fromEntry;
  const svcName = resolveServiceHost(host, vs.metadata.namespace);
  if (!svcName) {
    ctx.report('error', 'MG_SERVICE_NOT_FOUND', vs, `${field}.host`, `host ${JSON.stringify(host)} is neither a Kubernetes Service name (name, name.namespace or name.namespace.svc.cluster.local) nor a ServiceEntry host; requests to it get 503 (NC)`);
    return missingCluster(ctx, { namespace: '', name: host, host: host.toLowerCase(), port: portNumberSet ?? 0 }, subsetName);
  }
  const dr = env.drs.lookup(svcName.fqdn, svcName.namespace);
  const svc = resources.get('Service', svcName.namespace, svcName.name);
  const ports = svc ? servicePorts(svc) : [];
  let portNumber = portNumberSet;
  if (env.mesh && portNumber === undefined && ports.length > 1 && ports.some((p) => p.port === env.port)) portNumber = env.port;
  if (svc && portNumber === undefined && ports.length > 1) {
    ctx.report('error', 'MG_MISSING_FIELD', vs, `${field}.port`, `Service ${svcName.namespace}/${svcName.name} has several ports (${ports.map((p) => p.port).join(', ')}): destination.port.number is required (Istio IST0112); requests to it get 503 (NC)`);
    return missingCluster(ctx, { namespace: svcName.namespace, name: svcName.name, host: svcName.fqdn, port: 0 }, subsetName);
  }
  let subset = null;
  if (subsetName !== '') {
    subset = dr?.subsets.get(subsetName) ?? null;
    if (!subset) {
      const known = dr ? [...dr.subsets.keys()] : [];
      const where = dr ? `the DestinationRules for ${svcName.fqdn} define ${known.length ? known.join(', ') : 'no subsets'}` : `no DestinationRule for ${svcName.fqdn} applies to the proxy in namespace ${env.drs.proxy.namespace}`;
      ctx.report('error', 'MG_SUBSET_NOT_FOUND', vs, `${field}.subset`, `subset "${subsetName}" does not exist: ${where}; requests to it get 503 (NC)`);
      const port = portNumber ?? (ports.length === 1 ? ports[0].port : 0);
      return missingCluster(ctx, { namespace: svcName.namespace, name: svcName.name, host: svcName.fqdn, port }, subsetName);
    }
  }
  const policy = resolveTrafficPolicy(ctx, dr, subset, portNumber ?? (ports.length === 1 ? ports[0].port : 0), { resources, host: svcName.fqdn });
  return resolveCluster(ctx, resources, {
    service: { namespace: svcName.namespace, name: svcName.name, port: portNumber !== undefined ? { number: portNumber } : null },
    subset: subset ? { name: subset.name, labels: subset.labels } : null,
    lbPolicy: policy.lbPolicy,
    connectTimeoutMs: policy.connectTimeoutMs,
    connectionPool: policy.connectionPool,
    outlierDetection: policy.outlierDetection,
    tls: policy.tls,
    tlsSet: policy.tlsSet,
    h2UpgradePolicy: h2UpgradePolicyOf(dr, subset, portNumber ?? (ports.length === 1 ? ports[0].port : 0)),
    from: vs,
    field,
  });
}

function missingCluster(ctx: TranslateContext, service: { namespace: string; name: string; host: string; port: number }, subset: string): string {
  const name = clusterName(service.port, subset, service.host);
  const policy = resolveTrafficPolicy(ctx, null, null, service.port);
  ctx.addCluster({ name, service, subset, discovery: 'missing', lbPolicy: policy.lbPolicy, endpoints: [], connectTimeoutMs: policy.connectTimeoutMs, connectionPool: null, outlierDetection: null, protocol: 'HTTP1', tls: null });
  return name;
}

// ---- headers ----------------------------------------------------------------------------------

/** `headerOps`, each name and value checked (header-ops-check.ts); `field` is the HeaderOperations' path. */
function checkedHeaderOps(env: RouteEnv, v: unknown, field: string): HeaderOps | null {
  return checkHeaderOps(env.ctx, env.vs, headerOps(v), (list, i, name) => (list === 'remove' ? `${field}.remove[${i}]` : `${field}.${list}.${name}`));
}

/** Istio HeaderOperations -> IR; null when it changes nothing. Names lowercased. */
function headerOps(v: unknown): HeaderOps | null {
  if (!isObj(v)) return null;
  const values = (m: unknown): HeaderValue[] => Object.entries(strMap(m)).map(([name, value]) => ({ name: name.toLowerCase(), value }));
  const set = values(v.set);
  const add = values(v.add);
  const remove = arr(v.remove)
    .map(str)
    .filter((s): s is string => s !== undefined && s !== '')
    .map((s) => s.toLowerCase());
  if (set.length === 0 && add.length === 0 && remove.length === 0) return null;
  return { set, add, remove };
}
