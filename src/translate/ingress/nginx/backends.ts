/**
 * ingress-nginx backend annotations that change where a path's requests go. PURE.
 *
 * - service-upstream: the Service's ClusterIP:port is the one endpoint (kube-proxy balances), in a
 *   cluster of its own (`outbound|<port>|service-upstream|<fqdn>`). A Service without a ClusterIP
 *   (headless) cannot be used so: error, the Ingress is not served.
 * - default-backend: when the path's Service has no ready endpoint, requests go to this Service (same
 *   namespace, its first port) with `X-Code: 503`, `X-Namespace`, `X-Ingress-Name`, `X-Service-Name`
 *   and `X-Service-Port`, as ingress-nginx's custom default backend receives them. Decided per
 *   snapshot: endpoints coming back give a new snapshot that routes to the Service again.
 */

import { createHash } from 'node:crypto';
import type { Cluster, LbPolicy, Route, RouteDestination, RouteFilters, UpstreamTls } from '../../../ir/types.js';
import type { ResourceSet } from '../../../resources/resource-set.js';
import type { KubeObject } from '../../../resources/types.js';
import { obj, str } from '../../../lib/unknown.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, clusterName, resolveCluster, servicePorts } from '../../backends.js';
import type { TranslateContext } from '../../types.js';

/** The ClusterIP cluster of a Service port; null (reported) when the Service has no ClusterIP. */
export function serviceUpstreamCluster(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject, made: Cluster, field: string): string | null {
  const svc = resources.get('Service', made.service.namespace, made.service.name);
  const ip = svc === undefined ? undefined : str(obj(svc.body.spec).clusterIP);
  if (ip === undefined || ip === '' || ip === 'None') {
    ctx.report('error', 'MG_INVALID_FIELD', ing, field, `service-upstream: Service ${made.service.namespace}/${made.service.name} has no ClusterIP (headless or not allocated yet); Ingress ${ing.metadata.namespace}/${ing.metadata.name} is not served`);
    return null;
  }
  const name = clusterName(made.service.port, 'service-upstream', made.service.host);
  ctx.addCluster({ ...made, name, subset: 'service-upstream', discovery: 'eds', endpoints: [{ address: ip, port: made.service.port, ready: true }] });
  return name;
}

/**
 * backend-protocol AUTO_HTTP: the TLS twin of a Service cluster (`outbound|<port>|auto-https|<fqdn>`,
 * the same endpoints, TLS origination with `tls`), for the requests that came over HTTPS.
 */
export function autoHttpsCluster(ctx: TranslateContext, made: Cluster, tls: UpstreamTls): string {
  const name = clusterName(made.service.port, 'auto-https', made.service.host);
  ctx.addCluster({ ...made, name, subset: 'auto-https', tls });
  return name;
}

/** The twin of `route` for HTTPS requests: the same, matching scheme https, `from` replaced by `to`. */
export function autoHttpsRoute(route: Route, from: string, to: string): Route | null {
  if (route.action.kind !== 'forward' || !route.action.destinations.some((d) => d.cluster === from)) return null;
  return {
    ...route,
    name: `${route.name}/auto-https`,
    matches: route.matches.map((m) => ({ ...m, scheme: { kind: 'exact', value: 'https', ignoreCase: false } })),
    action: { ...route.action, destinations: route.action.destinations.map((d) => (d.cluster === from ? { ...d, cluster: to } : d)) },
  };
}

/** The destination to use instead of `made` when it has no ready endpoint; null = keep `made`. */
export function defaultBackendDestination(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject, made: Cluster, backend: string, field: string): RouteDestination | null {
  if (made.discovery === 'eds' && made.endpoints.some((e) => e.ready)) return null;
  const svc = resources.get('Service', ing.metadata.namespace, backend);
  const port = svc === undefined ? undefined : servicePorts(svc)[0]?.port;
  const cluster = resolveCluster(ctx, resources, {
    service: { namespace: ing.metadata.namespace, name: backend, port: port === undefined ? null : { number: port } },
    subset: null,
    lbPolicy: 'ROUND_ROBIN',
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    connectionPool: null,
    outlierDetection: null,
    from: ing,
    field,
  });
  const set = [
    { name: 'x-code', value: '503' },
    { name: 'x-namespace', value: ing.metadata.namespace },
    { name: 'x-ingress-name', value: ing.metadata.name },
    { name: 'x-service-name', value: made.service.name },
    { name: 'x-service-port', value: String(made.service.port) },
  ];
  return { cluster, weight: 1, requestHeaders: { set, add: [], remove: [] }, responseHeaders: null };
}


/**
 * custom-http-errors: the route's answers with a listed status are replaced by the default-backend
 * Service's page (see IR `ErrorPages`). Needs `default-backend` (checked by the parser).
 */
/**
 * The error pages of a path (ingress-nginx error_page to the default backend): the Ingress's own
 * custom-http-errors go to its default-backend annotation, else to the global default backend
 * (`--default-backend-service`); without codes of its own, the ConfigMap's custom-http-errors (http-level
 * error_page in nginx.tmpl) go to the global default backend. disable-proxy-intercept-errors (the
 * annotation or the ConfigMap key) turns both off. null = no error pages.
 */
export function nginxErrorPages(ctx: TranslateContext, ing: KubeObject, own: number[], ownBackend: string | null, global: { customErrors: number[]; disableInterceptErrors: boolean } | null, disabled: boolean): { codes: number[]; backend: { namespace: string; name: string } } | null {
  const fallback = ctx.options.nginxDefaultBackend ?? null;
  if (disabled || global?.disableInterceptErrors === true) return null;
  if (own.length > 0) {
    if (ownBackend !== null) return { codes: own, backend: { namespace: ing.metadata.namespace, name: ownBackend } };
    return fallback === null ? null : { codes: own, backend: fallback };
  }
  if (global !== null && global.customErrors.length > 0 && fallback !== null) return { codes: global.customErrors, backend: fallback };
  return null;
}

export function withErrorPages(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject, codes: number[], backend: string | null, route: Route, backendNamespace: string = ing.metadata.namespace): Route {
  if (codes.length === 0 || backend === null || route.action.kind !== 'forward') return route;
  const made = ctx.getCluster(route.action.destinations[0].cluster);
  const svc = resources.get('Service', backendNamespace, backend);
  const port = svc === undefined ? undefined : servicePorts(svc)[0]?.port;
  const cluster = resolveCluster(ctx, resources, {
    service: { namespace: backendNamespace, name: backend, port: port === undefined ? null : { number: port } },
    subset: null,
    lbPolicy: 'ROUND_ROBIN',
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    connectionPool: null,
    outlierDetection: null,
    from: ing,
    field: 'metadata.annotations["nginx.ingress.kubernetes.io/default-backend"]',
  });
  const headers = [
    { name: 'x-namespace', value: ing.metadata.namespace },
    { name: 'x-ingress-name', value: ing.metadata.name },
    { name: 'x-service-name', value: made?.service.name ?? '' },
    { name: 'x-service-port', value: String(made?.service.port ?? '') },
  ];
  const filters: RouteFilters = route.filters ?? { maxRequestBodyBytes: null, requestLimit: null, sourceRanges: null, basicAuth: null };
  return { ...route, filters: { ...filters, errorPages: { codes, cluster, headers } } };
}

/**
 * ingress-nginx's backend key of an affinity cookie (`<key>|<backend key>`, balancer/sticky.lua:
 * md5(md5(name) .. name)), here over the cluster name. A canary reads it to keep a client on the side
 * that issued its cookie.
 */
export function nginxAffinityBackendKey(clusterName: string): string {
  const md5 = (s: string): string => createHash('md5').update(s).digest('hex');
  return md5(md5(clusterName) + clusterName);
}

/**
 * Completes the affinity cookie of a cluster registered from an Ingress: its backend key. A cluster
 * is shared by Service port (the first Ingress naming it decides, as the shared nginx upstream), so an
 * already completed cluster is left alone. `from` overrides the cluster's policy (a sticky canary
 * takes the main's affinity settings).
 */
export function completeNginxAffinity(ctx: TranslateContext, name: string, from?: LbPolicy): void {
  const cluster = ctx.getCluster(name);
  if (cluster === undefined) return;
  const lb = from ?? cluster.lbPolicy;
  if (typeof lb !== 'object' || lb.hashOn.kind !== 'cookie' || lb.hashOn.affinity === undefined) return;
  if (from === undefined && lb.hashOn.affinity.backendKey !== '') return;
  cluster.lbPolicy = { ...lb, hashOn: { ...lb.hashOn, affinity: { ...lb.hashOn.affinity, backendKey: nginxAffinityBackendKey(name) } } };
}
