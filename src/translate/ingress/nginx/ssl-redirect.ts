/**
 * ingress-nginx's HTTPS redirect (ssl-redirect, force-ssl-redirect, preserve-trailing-slash,
 * use-port-in-redirects, no-tls-redirect-locations, http-redirect-code) on the plain-HTTP virtual
 * hosts of Ingresses. PURE.
 *
 * In ingress-nginx these are location settings read by lua_ingress.lua `rewrite()`, so each path
 * follows the annotations of the Ingress that defines it, whichever Ingress of the host supplies the
 * certificate:
 * - a path redirects when its Ingress says force-ssl-redirect, or says ssl-redirect (default true)
 *   and the host has a certificate;
 * - Location: `https://<Host without its port><request URI>`, one trailing `/` of the URI left out
 *   unless preserve-trailing-slash; with use-port-in-redirects `https://<host>:<https port><URI>`, the
 *   port written even when it is 443. Without it the port is never written, whatever port the
 *   controller serves HTTPS on (ingress-nginx assumes a Service or load balancer on 443 in front);
 * - the status is http-redirect-code (ConfigMap, default 308);
 * - paths under no-tls-redirect-locations (default `/.well-known/acme-challenge`) are never redirected;
 * - a request that matches no path is served by the host's implicit root location, which carries the
 *   annotations of the first Ingress of the host (controller.go createServers): it redirects when that
 *   Ingress's settings say so.
 * A redirect route runs no request filters: nginx answers the redirect in the rewrite phase, before
 * limits, allowlists and auth.
 */

import type { RedirectAction, Route } from '../../../ir/types.js';
import type { KubeObject } from '../../../resources/types.js';
import { sourceOf, type VirtualHostDraft } from '../../types.js';
import type { NginxIngressConfig } from './parse.js';

export interface NginxHttpsRedirectOptions {
  /** The config of each served Ingress, by `namespace/name`. */
  configs: ReadonlyMap<string, NginxIngressConfig>;
  /** Per host: the first (oldest) non-canary Ingress defining it; its settings rule unmatched requests. */
  owners: ReadonlyMap<string, KubeObject>;
  /** Hosts that have a usable certificate. */
  tlsHosts: ReadonlySet<string>;
  noTlsRedirectLocations: readonly string[];
  /** http-redirect-code. */
  code: 301 | 302 | 307 | 308;
  /** The HTTPS port as clients reach it (use-port-in-redirects). */
  httpsPort: number;
  /** The spec.defaultBackend catch-all route (the implicit root location's backend), if any. */
  defaultRouteName: string | null;
  /**
   * The ConfigMap's use-forwarded-headers: the request's scheme is its X-Forwarded-Proto when sent
   * (lua_ingress.lua pass_access_scheme), so only a request without it, or with exactly "http", is
   * redirected; a TLS-offloading proxy in front sending "https" gets the route (no redirect loop).
   */
  trustForwardedProto: boolean;
}

const keyOf = (ns: string, name: string) => `${ns}/${name}`;

/** Rewrites the plain-HTTP virtual hosts in place (each gets its own draft object). */
export function applyNginxHttpsRedirects(httpHosts: VirtualHostDraft[], o: NginxHttpsRedirectOptions): void {
  for (let i = 0; i < httpHosts.length; i++) {
    const vh = httpHosts[i];
    const hasCert = o.tlsHosts.has(vh.domain);
    const redirects = (cfg: NginxIngressConfig | undefined): boolean => cfg !== undefined && (cfg.forceSslRedirect || (cfg.sslRedirect && hasCert));
    const owner = o.owners.get(vh.domain);
    const ownerCfg = owner === undefined ? undefined : o.configs.get(keyOf(owner.metadata.namespace, owner.metadata.name));
    let changed = false;
    const routes = vh.routes.flatMap((r): Route[] => {
      if (r.action.kind !== 'forward') return [r];
      const isRoot = r.name === o.defaultRouteName;
      const cfg = isRoot ? ownerCfg : o.configs.get(keyOf(r.source.namespace, r.source.name));
      if (!redirects(cfg)) return [r];
      const p = r.matches[0]?.path ?? null;
      if (!isRoot && p !== null && p.kind !== 'regex' && o.noTlsRedirectLocations.some((l) => p.value.startsWith(l))) return [r];
      changed = true;
      const { filters: _filters, ...rest } = r;
      const redirect: Route = { ...rest, action: redirectAction(cfg!, o) };
      return o.trustForwardedProto ? [...forwardedHttpOnly(redirect), r] : [redirect];
    });
    // No path matched and no default backend: the implicit root location of the first Ingress.
    if (o.defaultRouteName === null && owner !== undefined && redirects(ownerCfg) && !vh.routes.some(servesEverything)) {
      changed = true;
      const root: Route = {
        name: `ingress/${owner.metadata.namespace}/${owner.metadata.name}/ssl-redirect`,
        source: sourceOf(owner, `metadata.annotations["nginx.ingress.kubernetes.io/${ownerCfg!.forceSslRedirect ? 'force-ssl-redirect' : 'ssl-redirect'}"]`),
        matches: [{ path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null }],
        action: redirectAction(ownerCfg!, o),
        requestHeaders: null,
        responseHeaders: null,
        cors: null,
      };
      routes.push(...(o.trustForwardedProto ? forwardedHttpOnly(root) : [root]));
    }
    if (changed) httpHosts[i] = { ...vh, httpsRedirect: null, routes };
  }
}

/**
 * The redirect route split in two, for use-forwarded-headers: one for requests without
 * X-Forwarded-Proto, one for X-Forwarded-Proto exactly "http" (lua_ingress.lua redirects only when
 * pass_access_scheme is "http"); any other value falls through to the route that follows.
 */
function forwardedHttpOnly(r: Route): Route[] {
  const withHeader = (suffix: string, h: Route['matches'][number]['headers'][number]): Route => ({ ...r, name: `${r.name}/${suffix}`, matches: r.matches.map((m) => ({ ...m, headers: [...m.headers, h] })) });
  return [
    withHeader('no-forwarded-proto', { name: 'x-forwarded-proto', match: null, invert: true }),
    withHeader('forwarded-proto-http', { name: 'x-forwarded-proto', match: { kind: 'exact', value: 'http', ignoreCase: false }, invert: false }),
  ];
}

/** A route whose match takes every request (a `/` prefix path): the implicit root is never reached. */
function servesEverything(r: Route): boolean {
  return r.matches.some((m) => (m.path === null || (m.path.kind === 'segment-prefix' && m.path.value === '/')) && m.method === null && m.scheme === null && m.authority === null && m.port === null && m.headers.length === 0 && m.queryParams.length === 0);
}

function redirectAction(cfg: NginxIngressConfig, o: NginxHttpsRedirectOptions): RedirectAction {
  return {
    kind: 'redirect',
    scheme: 'https',
    authority: null,
    port: cfg.usePortInRedirects ? o.httpsPort : 'from-protocol',
    path: null,
    responseCode: o.code,
    ...(cfg.usePortInRedirects ? { keepDefaultPort: true } : {}),
    ...(cfg.preserveTrailingSlash ? {} : { stripTrailingSlash: true }),
    // use-forwarded-headers: the redirect goes to X-Forwarded-Host when a proxy in front sent one.
    ...(o.trustForwardedProto ? { authorityFromHeader: 'x-forwarded-host' as const } : {}),
  };
}
