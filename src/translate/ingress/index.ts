/**
 * Kubernetes Ingress (networking.k8s.io/v1) -> listener drafts, following the Kubernetes spec and
 * ingress-nginx's behaviour where the spec leaves room.
 *
 * - Class: `spec.ingressClassName` (an IngressClass whose controller is ours, or named like
 *   `--ingress-class`), else the legacy `kubernetes.io/ingress.class` annotation, else the IngressClass
 *   marked `ingressclass.kubernetes.io/is-default-class`. With no default IngressClass at all (a plain
 *   directory config), class-less Ingresses are served. Ingresses for another class are ignored (info).
 * - Hosts: exact, `*.example.com` (exactly one DNS label), or no host (any host not claimed by a rule
 *   with a host). Host rules from all Ingresses merge.
 * - Paths (per host, across Ingresses, in creation order): longest path first; at equal length Exact
 *   before Prefix. Prefix is element-wise. ImplementationSpecific is treated as Prefix. An identical
 *   (path, pathType) defined twice: the earlier Ingress wins (MG_DUPLICATE_PATH).
 * - `spec.defaultBackend` of the earliest Ingress that has one: catch-all of every host and of requests
 *   for unknown hosts (ingress-nginx puts it at `/` of each server). With none, unmatched requests 404.
 * - Backends: `nginx.ingress.kubernetes.io/backend-protocol` (HTTP, HTTPS, GRPC, GRPCS) and the
 *   `proxy-ssl-*` annotations set the cluster's upstream protocol and TLS (backend-protocol.ts).
 * - TLS: certificates from `spec.tls[].secretName`, chosen by SNI on the HTTPS listener; plain-HTTP
 *   requests to the paths of a host with a certificate are redirected to HTTPS with 308 (ingress-nginx),
 *   per path: unless the path's Ingress says `nginx.ingress.kubernetes.io/ssl-redirect: "false"`
 *   (nginx/ssl-redirect.ts).
 */
import type { Route, RouteMatch, TlsCertificate } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import { compareByCreation, type ResourceSet } from '../../resources/resource-set.js';
import { arr, num, obj, str, type Obj } from '../../lib/unknown.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, resolveCluster, serviceFqdn } from '../backends.js';
import { BACKEND_PROTOCOL_ANNOTATION, backendSettings } from './backend-protocol.js';
import { ingressBackendPolicy } from './destination-rules.js';
import { loadTlsCertificate } from '../secrets.js';
import { parseNginxAnnotations, type NginxIngressConfig } from './nginx/parse.js';
import { applyNginxToRoute, canaryRoutes, regexPathMatch } from './nginx/apply.js';
import { finishNginxHosts, type NginxHostExtras } from './nginx/hosts.js';
import { NO_TLS_REDIRECT_DEFAULT, readNginxConfigMap, withGlobals } from './nginx/configmap.js';
import { autoHttpsCluster, autoHttpsRoute, completeNginxAffinity, nginxErrorPages, defaultBackendDestination, serviceUpstreamCluster, withErrorPages } from './nginx/backends.js';
import { nginxPassthroughRoutes } from './nginx/passthrough.js';
import { applyNginxHttpsRedirects } from './nginx/ssl-redirect.js';
import { TranslateContext, sourceOf, type ListenerDraft, type TranslateOptions, type VirtualHostDraft } from '../types.js';

const CLASS_ANNOTATION = 'kubernetes.io/ingress.class';
const DEFAULT_CLASS_ANNOTATION = 'ingressclass.kubernetes.io/is-default-class';

interface PathEntry {
  host: string;
  path: string;
  exact: boolean;
  route: Route;
  ingress: KubeObject;
  /** ingress-nginx canary routes evaluated before `route` (same host and path). */
  before?: Route[];
  /** backend-protocol AUTO_HTTP: the twin of `route` for HTTPS requests (TLS to the backend), right before it. */
  autoHttps?: Route;
}

export function translateIngresses(ctx: TranslateContext, resources: ResourceSet): ListenerDraft[] {
  const ours = resources
    .ofKind('Ingress')
    .filter((ing) => isOurs(ctx, resources, ing))
    .sort(compareByCreation);
  // ingress-nginx annotations (nginx/): an Ingress whose annotations fail is not served at all.
  const nginx = new Map<KubeObject, NginxIngressConfig>();
  const global = readNginxConfigMap(ctx, resources);
  for (const ing of ours) {
    const cfg = parseNginxAnnotations(ctx, resources, ing).config;
    // custom-headers may set only the names the controller ConfigMap allows (ingress-nginx v1.12+).
    const allowed = global?.allowedResponseHeaders ?? null;
    const denied = cfg === null || allowed === null ? [] : cfg.customHeaders.filter((h) => !allowed.includes(h.name)).map((h) => h.name);
    if (denied.length > 0) ctx.report('error', 'MG_INVALID_FIELD', ing, 'metadata.annotations["nginx.ingress.kubernetes.io/custom-headers"]', `custom-headers sets ${denied.join(', ')}, which global-allowed-response-headers of the controller ConfigMap does not list; Ingress ${ing.metadata.namespace}/${ing.metadata.name} is not served`);
    else if (cfg !== null) nginx.set(ing, withGlobals(cfg, global, ing.metadata.annotations));
  }
  const regexHosts = nginxRegexHosts(ctx, nginx);
  const ingresses = ours.filter((ing) => nginx.has(ing));
  if (ingresses.length === 0) return [];
  const canaries: { host: string; path: string; exact: boolean; ing: KubeObject; route: Route; field: string }[] = [];
  const extras: NginxHostExtras = new Map();

  const byHost = new Map<string, PathEntry[]>();
  const certificates: TlsCertificate[] = [];
  /** Hosts that have a usable certificate. */
  const tlsHosts = new Set<string>();
  let defaultRoute: Route | null = null;

  for (const ing of ingresses) {
    const cfg = nginx.get(ing)!;
    const spec = obj(ing.body.spec);
    const ns = ing.metadata.namespace;
    const base = `ingress/${ns}/${ing.metadata.name}`;
    const rules = arr(spec.rules).map(obj);

    if (spec.defaultBackend !== undefined && defaultRoute === null) {
      const action = backendAction(ctx, resources, ing, obj(spec.defaultBackend), 'spec.defaultBackend');
      if (action) defaultRoute = makeRoute(`${base}/default-backend`, ing, 'spec.defaultBackend', catchAll(), action);
    }

    rules.forEach((rule, ri) => {
      const rawHost = str(rule.host);
      const host = rawHost === undefined || rawHost === '' ? '*' : rawHost.toLowerCase();
      if (cfg.canary === null) extras.set(host, [...(extras.get(host) ?? []), { ing, cfg, firstPath: str(obj(arr(obj(rule.http).paths)[0]).path) ?? '/' }]);
      const paths = arr(obj(rule.http).paths).map(obj);
      paths.forEach((p, pi) => {
        const field = `spec.rules[${ri}].http.paths[${pi}]`;
        const pathType = str(p.pathType) ?? 'ImplementationSpecific';
        let path = str(p.path) ?? (pathType === 'ImplementationSpecific' ? '/' : '');
        if (!path.startsWith('/')) {
          ctx.report('error', 'MG_INVALID_FIELD', ing, `${field}.path`, `path "${path}" must be an absolute path starting with "/"; this path is not served`);
          return;
        }
        const exact = pathType === 'Exact';
        const regexMode = regexHosts.has(host);
        if (!exact && !regexMode) path = trimTrailingSlashes(path);
        // Affinity cookie Path: session-cookie-path, else the Ingress path (ingress-nginx); the cluster is shared, its first path decides.
        // Only a plain path is written into Set-Cookie (an ImplementationSpecific path such as `/a; Domain=x` would add attributes).
        const lb = cfg.lbPolicy;
        const plainPath = /^\/[-._~a-zA-Z0-9/%]*$/.test(path);
        const pathCfg = lb !== null && typeof lb === 'object' && lb.hashOn.kind === 'cookie' && lb.hashOn.path === null && lb.hashOn.ttlSeconds !== null && !regexMode && plainPath ? { ...cfg, lbPolicy: { ...lb, hashOn: { ...lb.hashOn, path } } } : cfg;
        const auto: AutoHttpsOut = {};
        const action = backendAction(ctx, resources, ing, obj(p.backend), `${field}.backend`, pathCfg, auto);
        if (!action) return;
        const rx = regexMode ? regexPathMatch(path) : null;
        const match: RouteMatch = { ...catchAll()[0], path: rx !== null && rx.ok ? rx.match : exact ? { kind: 'exact', value: path, ignoreCase: false } : { kind: 'segment-prefix', value: path, ignoreCase: false } };
        const plain = makeRoute(`${base}/rule/${ri}/path/${pi}`, ing, field, [match], action);
        if (cfg.canary !== null) {
          canaries.push({ host, path, exact, ing, route: plain, field });
          return;
        }
        const pages = nginxErrorPages(ctx, ing, cfg.customErrors, cfg.defaultBackend, global, cfg.interceptErrorsDisabled);
        const route = withErrorPages(ctx, resources, ing, pages?.codes ?? [], pages?.backend.name ?? null, applyNginxToRoute(plain, cfg, path, regexMode, base, { limitStatus: global?.limitStatus ?? 503, limitConnStatus: global?.limitConnStatus ?? 503, realIp: global?.realIp ?? null, addHeaders: global?.addHeaders ?? [], proxySetHeaders: global?.proxySetHeaders ?? [], replaceForwardedFor: global !== null && !global.computeFullForwardedFor, useForwardedHeaders: global?.useForwardedHeaders ?? false }), pages?.backend.namespace);
        let list = byHost.get(host);
        if (!list) byHost.set(host, (list = []));
        const dup = list.find((e) => e.path === path && e.exact === exact);
        if (dup) {
          ctx.report('warning', 'MG_DUPLICATE_PATH', ing, `${field}.path`, `${pathType} path "${path}" for host "${host}" is already defined by Ingress ${dup.ingress.metadata.namespace}/${dup.ingress.metadata.name}, which wins`);
          return;
        }
        const twin = auto.autoHttps === undefined ? null : autoHttpsRoute(route, auto.autoHttps.from, auto.autoHttps.to);
        list.push({ host, path, exact, route, ingress: ing, ...(twin !== null ? { autoHttps: twin } : {}) });
      });
      if (!byHost.has(host)) byHost.set(host, []);
    });

    arr(spec.tls).map(obj).forEach((t, ti) => {
      const secretName = str(t.secretName);
      const field = `spec.tls[${ti}]`;
      let hosts = arr(t.hosts).map(str).filter((h): h is string => !!h).map((h) => h.toLowerCase());
      // No hosts listed: the certificate serves this Ingress's own rule hosts.
      if (hosts.length === 0) hosts = rules.map((r) => str(r.host)?.toLowerCase()).filter((h): h is string => !!h);
      if (!secretName) {
        ctx.report('warning', 'MG_MISSING_FIELD', ing, `${field}.secretName`, 'TLS entry without secretName: these hosts get no certificate of their own');
        return;
      }
      const cert = loadTlsCertificate(ctx, resources, { namespace: ns, name: secretName, serverNames: hosts, from: ing, field: `${field}.secretName` });
      if (!cert) return;
      certificates.push(cert);
      for (const h of hosts) tlsHosts.add(h);
    });
  }

  // ingress-nginx canaries: found by the main (non-canary) path with the same host, path and type, and
  // attached to that path's Service upstream (Q3): every path of any host that proxies to the same
  // Service gets the canary rules; only the first canary of a Service counts (balancer.lua uses
  // alternative_backends[1]).
  const attached = new Map<string, string>();
  for (const c of canaries) {
    const main = byHost.get(c.host)?.find((e) => e.path === c.path && e.exact === c.exact);
    const cfg = nginx.get(c.ing)!;
    if (main === undefined || main.route.action.kind !== 'forward' || c.route.action.kind !== 'forward') {
      ctx.report('warning', 'MG_UNSUPPORTED', c.ing, `${c.field}.path`, `canary Ingress: no non-canary Ingress serves host "${c.host}" path "${c.path}"; a lone canary is not served (as ingress-nginx)`);
      continue;
    }
    const canaryCluster = c.route.action.destinations[0].cluster;
    const mainCluster = main.route.action.destinations[0].cluster;
    const first = attached.get(mainCluster);
    if (first !== undefined) {
      ctx.report('warning', 'MG_UNSUPPORTED', c.ing, `${c.field}.path`, `canary Ingress: the Service of host "${c.host}" path "${c.path}" (${mainCluster}) already has the canary of Ingress ${first}; ingress-nginx uses only the first canary of a Service, so this one is not served`);
      continue;
    }
    attached.set(mainCluster, `${c.ing.metadata.namespace}/${c.ing.metadata.name}`);
    // affinity-canary-behavior sticky (ingress-nginx's default): the canary's upstream takes the main's session affinity.
    const mainLb = ctx.getCluster(main.route.action.destinations[0]?.cluster ?? '')?.lbPolicy;
    const mainCookie = typeof mainLb === 'object' && mainLb.hashOn.kind === 'cookie' && mainLb.hashOn.affinity !== undefined ? mainLb.hashOn : null;
    if (mainCookie !== null && typeof mainLb === 'object' && cfg.canary!.affinityBehavior === 'sticky') completeNginxAffinity(ctx, canaryCluster, mainLb);
    const canaryLb = ctx.getCluster(canaryCluster)?.lbPolicy;
    const affinity = {
      main: mainCookie,
      canary: typeof canaryLb === 'object' && canaryLb.hashOn.kind === 'cookie' && canaryLb.hashOn.affinity !== undefined ? canaryLb.hashOn : null,
    };
    const made = canaryRoutes(main.route, canaryCluster, cfg.canary!, c.route.name, affinity);
    main.route = made.main;
    main.before = [...(main.before ?? []), ...made.before];
    // The AUTO_HTTP twin (HTTPS requests) takes the weighted split too; the header and cookie rules come before it.
    if (main.autoHttps !== undefined) main.autoHttps = canaryRoutes(main.autoHttps, canaryCluster, cfg.canary!, c.route.name, affinity).main;
    for (const entries of byHost.values()) {
      for (const e of entries) {
        if (e === main || e.route.action.kind !== 'forward' || e.route.action.destinations.length !== 1 || e.route.action.destinations[0].cluster !== mainCluster) continue;
        const other = canaryRoutes(e.route, canaryCluster, cfg.canary!, `${c.route.name}/on/${e.route.name}`, affinity);
        e.route = other.main;
        e.before = [...(e.before ?? []), ...other.before];
        if (e.autoHttps !== undefined) e.autoHttps = canaryRoutes(e.autoHttps, canaryCluster, cfg.canary!, c.route.name, affinity).main;
      }
    }
  }

  // The default backend answers unknown hosts too.
  if (defaultRoute && !byHost.has('*')) byHost.set('*', []);

  const opts = ctx.options;
  const first = ingresses[0];
  const httpHosts: VirtualHostDraft[] = [];
  const httpsHosts: VirtualHostDraft[] = [];
  for (const [host, entries] of [...byHost.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const routes = sortPaths(entries).flatMap((e) => [...(e.before ?? []), ...(e.autoHttps !== undefined ? [e.autoHttps] : []), e.route]);
    if (defaultRoute) routes.push(defaultRoute);
    const owner = entries[0]?.ingress ?? first;
    const vh: VirtualHostDraft = { domain: host, singleLabelWildcard: true, httpsRedirect: null, routes, source: sourceOf(owner) };
    httpHosts.push(vh);
    httpsHosts.push(vh);
  }
  // ssl-redirect / force-ssl-redirect: per path, as ingress-nginx's locations (nginx/ssl-redirect.ts).
  applyNginxHttpsRedirects(httpHosts, {
    configs: new Map([...nginx].map(([ing, c]) => [`${ing.metadata.namespace}/${ing.metadata.name}`, c])),
    owners: new Map([...extras].map(([host, list]) => [host, list[0].ing])),
    tlsHosts: certificates.length > 0 ? tlsHosts : new Set(),
    noTlsRedirectLocations: global?.noTlsRedirectLocations ?? NO_TLS_REDIRECT_DEFAULT,
    code: global?.httpRedirectCode ?? 308,
    httpsPort: externalPortOf(opts.portMap, opts.httpsPort),
    defaultRouteName: defaultRoute?.name ?? null,
    trustForwardedProto: global?.useForwardedHeaders ?? false,
  });
  const clientTlsHosts = finishNginxHosts(ctx, extras, httpHosts, httpsHosts, global?.hsts ?? null, certificates.length > 0 ? tlsHosts : new Set(), global?.httpRedirectCode ?? 308);

  // ssl-passthrough hosts: relayed by SNI on the HTTPS port, before termination (nginx/passthrough.ts).
  const passthrough = nginxPassthroughRoutes(
    ctx,
    ingresses,
    nginx,
    (host) => byHost.get(host)?.find((e) => e.path === '/')?.route ?? null,
    (host) => (byHost.get(host) ?? []).map((e) => e.path),
  );

  const source = sourceOf(first);
  const drafts: ListenerDraft[] = [
    {
      address: opts.bindAddress,
      port: opts.httpPort,
      externalPort: externalPortOf(opts.portMap, opts.httpPort),
      protocol: 'HTTP',
      chains: [{ name: 'ingress-http', serverNames: [], tls: null, virtualHosts: httpHosts }],
      source,
    },
  ];
  if (certificates.length > 0 || passthrough.length > 0) {
    drafts.push({
      address: opts.bindAddress,
      port: opts.httpsPort,
      externalPort: externalPortOf(opts.portMap, opts.httpsPort),
      protocol: 'HTTPS',
      // Without a certificate the port serves passthrough hosts only.
      chains: certificates.length === 0 ? [] : [
        // auth-tls-* hosts: a chain chosen by SNI that asks for (and verifies) client certificates.
        ...clientTlsHosts.map((c) => ({
          name: `ingress-https-client-tls-${c.host}`,
          serverNames: [c.host],
          tls: { certificates, minProtocolVersion: global?.tlsMin ?? 'TLSv1.2', maxProtocolVersion: global?.tlsMax ?? 'TLSv1.3', cipherSuites: global?.ciphers ?? [], clientValidation: c.clientTls.verify ? { mode: 'OPTIONAL' as const, caCertificates: c.clientTls.caPem, caSecret: c.clientTls.caSecret, subjectAltNames: [], ...(c.clientTls.crlPem ? { caCrl: { kind: 'inline' as const, pem: c.clientTls.crlPem, secret: c.clientTls.caSecret } } : {}), verifyDepth: c.clientTls.verifyDepth, deferFailures: true } : null },
          virtualHosts: [c.vhost],
        })),
        { name: 'ingress-https', serverNames: [], tls: { certificates, minProtocolVersion: global?.tlsMin ?? 'TLSv1.2', maxProtocolVersion: global?.tlsMax ?? 'TLSv1.3', cipherSuites: global?.ciphers ?? [], clientValidation: null }, virtualHosts: httpsHosts },
      ],
      source,
      ...(passthrough.length > 0 ? { passthrough } : {}),
    });
  }
  return drafts;
}

/**
 * The Ingresses this controller serves, by the same class rules translateIngresses applies, in canonical
 * order. Pure; for the Kubernetes status writer, which publishes addresses on exactly these.
 */
export function servedIngresses(resources: ResourceSet, options: TranslateOptions): KubeObject[] {
  const ctx = new TranslateContext(options);
  return resources.ofKind('Ingress').filter((ing) => isOurs(ctx, resources, ing));
}

/** Whether this controller serves the Ingress; reports the ones it ignores. */
function isOurs(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject): boolean {
  const { ingressClass, controllerName } = ctx.options;
  const className = str(obj(ing.body.spec).ingressClassName);
  const classes = resources.ofKind('IngressClass');
  const ours = (ic: KubeObject): boolean => str(obj(ic.body.spec).controller) === controllerName;
  if (className !== undefined) {
    const ic = classes.find((c) => c.metadata.name === className);
    const accepted = ic ? ours(ic) : className === ingressClass;
    if (!accepted) ctx.report('warning', 'MG_INGRESS_CLASS_IGNORED', ing, 'spec.ingressClassName', `IngressClass "${className}" ${ic ? `belongs to controller "${str(obj(ic.body.spec).controller) ?? ''}"` : 'does not exist'}; meshgate serves class "${ingressClass}" and IngressClasses with controller "${controllerName}"`);
    return accepted;
  }
  const annotated = ing.metadata.annotations[CLASS_ANNOTATION];
  if (annotated !== undefined) {
    const accepted = annotated === ingressClass || classes.some((c) => c.metadata.name === annotated && ours(c));
    if (!accepted) ctx.report('warning', 'MG_INGRESS_CLASS_IGNORED', ing, `metadata.annotations["${CLASS_ANNOTATION}"]`, `class "${annotated}" is not meshgate's ("${ingressClass}")`);
    return accepted;
  }
  const defaults = classes.filter((c) => c.metadata.annotations[DEFAULT_CLASS_ANNOTATION] === 'true');
  if (defaults.length === 0) return true;
  const accepted = defaults.some(ours);
  if (!accepted) ctx.report('warning', 'MG_INGRESS_CLASS_IGNORED', ing, null, `no ingressClassName, and the default IngressClass "${defaults[0].metadata.name}" belongs to another controller`);
  return accepted;
}

/** The forward action for an IngressBackend, or null (reported) when it cannot be served. */
/** What backendAction adds for backend-protocol AUTO_HTTP: the plain cluster and its TLS twin. */
interface AutoHttpsOut {
  autoHttps?: { from: string; to: string };
}

function backendAction(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject, backend: Obj, field: string, cfg?: NginxIngressConfig, auto?: AutoHttpsOut): Route['action'] | null {
  if (backend.resource !== undefined) {
    ctx.report('warning', 'MG_UNSUPPORTED', ing, `${field}.resource`, 'resource backends are not supported; only service backends are served');
    return null;
  }
  const svc = obj(backend.service);
  const name = str(svc.name);
  if (!name) {
    ctx.report('error', 'MG_MISSING_FIELD', ing, `${field}.service.name`, 'backend has no service name');
    return null;
  }
  const port = obj(svc.port);
  const portNumber = num(port.number);
  const portName = str(port.name);
  const settings = backendSettings(ctx, resources, ing, serviceFqdn(name, ing.metadata.namespace));
  const servicePort = portNumber !== undefined ? { number: portNumber } : portName !== undefined ? { name: portName } : null;
  // DestinationRules apply to Ingress backends as Istio applies them; annotations win per component (ingress/destination-rules.ts).
  const dr = ingressBackendPolicy(ctx, resources, ing.metadata.namespace, name, servicePort);
  const cluster = resolveCluster(ctx, resources, {
    ...settings,
    service: { namespace: ing.metadata.namespace, name, port: servicePort },
    subset: null,
    lbPolicy: cfg?.lbPolicy ?? dr.policy?.lbPolicy ?? 'ROUND_ROBIN',
    connectTimeoutMs: cfg?.connectTimeoutMs ?? dr.policy?.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    connectionPool: dr.policy?.connectionPool ?? null,
    outlierDetection: dr.policy?.outlierDetection ?? null,
    tls: settings.tls !== undefined ? settings.tls : (dr.policy?.tls ?? null),
    tlsSet: settings.tls !== undefined || dr.policy?.tlsSet === true,
    h2UpgradePolicy: settings.h2UpgradePolicy ?? dr.h2UpgradePolicy,
    from: ing,
    field: `${field}.service`,
  });
  completeNginxAffinity(ctx, cluster);
  // Clusters are shared by Service port: a backend asking for another protocol or TLS than the
  // cluster already has (another Ingress, a VirtualService) cannot get it.
  const made = ctx.getCluster(cluster);
  // (TLS a DestinationRule sets is the same for every API: not a conflict.)
  const tlsConflict = settings.tls !== undefined ? JSON.stringify(made?.tls) !== JSON.stringify(settings.tls) : dr.policy?.tlsSet !== true && made?.tls !== null;
  if (made !== undefined && made.discovery === 'eds' && (tlsConflict || (settings.h2UpgradePolicy === 'UPGRADE' && made.protocol !== 'HTTP2'))) {
    ctx.report('warning', 'MG_UNSUPPORTED', ing, `metadata.annotations["${BACKEND_PROTOCOL_ANNOTATION}"]`, `cluster ${cluster} is also used with other protocol or TLS settings, which win; this backend is reached as that cluster says`);
  }
  let target = cluster;
  if (cfg?.serviceUpstream && made !== undefined) {
    const upstream = serviceUpstreamCluster(ctx, resources, ing, made, `metadata.annotations["nginx.ingress.kubernetes.io/service-upstream"]`);
    if (upstream === null) return null;
    target = upstream;
  }
  if (settings.autoHttps !== undefined && auto !== undefined && made !== undefined && made.discovery === 'eds' && made.tls === null && target === cluster) auto.autoHttps = { from: cluster, to: autoHttpsCluster(ctx, made, settings.autoHttps) };
  const fallback = cfg?.defaultBackend && made !== undefined ? defaultBackendDestination(ctx, resources, ing, made, cfg.defaultBackend, `metadata.annotations["nginx.ingress.kubernetes.io/default-backend"]`) : null;
  return { kind: 'forward', destinations: [fallback ?? { cluster: target, weight: 1, requestHeaders: null, responseHeaders: null }], rewrite: null, timeoutMs: null, retries: null, fault: null, mirrors: [] };
}

function makeRoute(name: string, ing: KubeObject, field: string, matches: RouteMatch[], action: Route['action']): Route {
  return { name, source: sourceOf(ing, field), matches, action, requestHeaders: null, responseHeaders: null, cors: null };
}

function catchAll(): RouteMatch[] {
  return [{ path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null }];
}

/** Kubernetes Ingress v1: the longest path wins; at equal length Exact wins over Prefix. Stable otherwise. */
function sortPaths(entries: PathEntry[]): PathEntry[] {
  return entries
    .map((e, i) => ({ e, i }))
    .sort((a, b) => b.e.path.length - a.e.path.length || Number(b.e.exact) - Number(a.e.exact) || a.i - b.i)
    .map(({ e }) => e);
}

/** `/foo/` and `/foo` are the same Prefix path (element-wise matching); `/` stays `/`. */
function trimTrailingSlashes(path: string): string {
  let p = path;
  while (p.length > 1 && p.endsWith('/')) p = p.slice(0, -1);
  return p;
}

/** The port clients use for a bind port: the `--port-map` entry that maps to it, else the port itself. */
function externalPortOf(portMap: Record<string, number>, bindPort: number): number {
  for (const [ext, bind] of Object.entries(portMap)) if (bind === bindPort) return Number(ext);
  return bindPort;
}

/**
 * ingress-nginx's host-wide regex mode: a host any of whose Ingresses sets `use-regex: "true"` or a
 * `rewrite-target` has every path, from every Ingress, matched as `~* "^<path>"`. An Ingress whose
 * path does not compile as a regex there is not served (reported).
 */
function nginxRegexHosts(ctx: TranslateContext, nginx: Map<KubeObject, NginxIngressConfig>): Set<string> {
  const hostsOf = (ing: KubeObject): string[] => arr(obj(ing.body.spec).rules).map((r) => str(obj(r).host)?.toLowerCase() || '*');
  const hosts = new Set<string>();
  for (const [ing, cfg] of nginx) if (cfg.useRegex || cfg.rewriteTarget !== null) for (const h of hostsOf(ing)) hosts.add(h);
  for (const ing of [...nginx.keys()]) {
    arr(obj(ing.body.spec).rules).map(obj).forEach((rule, ri) => {
      if (!hosts.has(str(rule.host)?.toLowerCase() || '*')) return;
      arr(obj(rule.http).paths).map(obj).forEach((p, pi) => {
        const r = regexPathMatch(str(p.path) ?? '/');
        if (!r.ok && nginx.delete(ing)) {
          ctx.report('error', 'MG_INVALID_REGEX', ing, `spec.rules[${ri}].http.paths[${pi}].path`, `path ${JSON.stringify(str(p.path))} is matched as a regex (use-regex or rewrite-target on this host) and ${r.message}; Ingress ${ing.metadata.namespace}/${ing.metadata.name} is not served`);
        }
      });
    });
  }
  return hosts;
}
