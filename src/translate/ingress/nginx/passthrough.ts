/**
 * ingress-nginx `ssl-passthrough` -> TLS passthrough routes on the Ingress HTTPS listener. PURE.
 *
 * ingress-nginx (internal/ingress/controller/controller.go): the annotation is server-level: any
 * Ingress of a host that sets it makes the host a passthrough server; its backend is the Service of
 * the host's `/` location (whichever Ingress defines it), other locations are ignored with a warning,
 * and a host without a `/` location is not passed through. Connections are chosen by the SNI of the
 * ClientHello, never terminated. ingress-nginx needs `--enable-ssl-passthrough` and a second port
 * behind its TCP proxy; meshgate serves both on the HTTPS port (IR `Listener.passthrough`).
 */

import type { Route, TcpRoute } from '../../../ir/types.js';
import type { KubeObject } from '../../../resources/types.js';
import { arr, obj, str } from '../../../lib/unknown.js';
import { sourceOf, type TranslateContext } from '../../types.js';
import type { NginxIngressConfig } from './parse.js';

const FIELD = 'metadata.annotations["nginx.ingress.kubernetes.io/ssl-passthrough"]';

/**
 * The passthrough routes, one per passthrough host, in host order. `rootRoute(host)`: the route of
 * the host's `/` path (any Ingress), null when there is none. `paths(host)`: every path of the host.
 */
export function nginxPassthroughRoutes(
  ctx: TranslateContext,
  ingresses: KubeObject[],
  nginx: Map<KubeObject, NginxIngressConfig>,
  rootRoute: (host: string) => Route | null,
  paths: (host: string) => string[],
): TcpRoute[] {
  /** Host -> the first Ingress (creation order) that turned passthrough on for it. */
  const hosts = new Map<string, KubeObject>();
  for (const ing of ingresses) {
    const cfg = nginx.get(ing);
    if (cfg === undefined || !cfg.sslPassthrough) continue;
    if (cfg.canary !== null) {
      ctx.report('warning', 'MG_UNSUPPORTED', ing, FIELD, 'ssl-passthrough on a canary Ingress is ignored (canary Ingresses only add routing rules to the main Ingress)');
      continue;
    }
    for (const rule of arr(obj(ing.body.spec).rules).map(obj)) {
      const host = str(rule.host)?.toLowerCase() ?? '';
      if (host === '') {
        ctx.report('warning', 'MG_UNSUPPORTED', ing, FIELD, 'ssl-passthrough needs a host: passthrough is chosen by the TLS server name (SNI); the rule without a host is served terminated');
        continue;
      }
      if (!hosts.has(host)) hosts.set(host, ing);
    }
  }
  const routes: TcpRoute[] = [];
  for (const [host, ing] of [...hosts.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    const root = rootRoute(host);
    if (root === null || root.action.kind !== 'forward') {
      ctx.report('warning', 'MG_UNSUPPORTED', ing, FIELD, `ssl-passthrough: host "${host}" has no "/" path with a Service backend; its HTTPS connections are terminated (as ingress-nginx, which passes through only to the "/" location's Service)`);
      continue;
    }
    const others = paths(host).filter((p) => p !== '/');
    if (others.length > 0) ctx.report('warning', 'MG_UNSUPPORTED', ing, FIELD, `ssl-passthrough: host "${host}" is passed through to the Service of its "/" path; HTTPS requests never reach the paths ${others.map((p) => JSON.stringify(p)).join(', ')} (plain HTTP still does)`);
    routes.push({
      name: `ingress/${ing.metadata.namespace}/${ing.metadata.name}/ssl-passthrough/${host}`,
      source: sourceOf(ing, FIELD),
      matches: [{ sniHosts: [host], destinationSubnets: [], port: null }],
      destinations: root.action.destinations.map((d) => ({ cluster: d.cluster, weight: d.weight })),
    });
  }
  return routes;
}
