/**
 * Host-level ingress-nginx annotations, applied to the virtual host drafts once every path is in
 * place. PURE. They are server-level in ingress-nginx: the first Ingress of a host (creation order)
 * that sets one decides.
 *
 * - app-root: `/` (exactly) answers 302 to `<scheme>://<Host><app-root>` (query not kept).
 * - server-alias: extra names served by the host's routes (a name some rule defines keeps its own).
 * - from-to-www-redirect: `www.<host>` (or `<host>` without `www.`) answers 308 to the other name,
 *   path and query kept, unless some rule defines that name.
 * (ssl-redirect and force-ssl-redirect are per path: ssl-redirect.ts.)
 */

import type { Route } from '../../../ir/types.js';
import type { KubeObject } from '../../../resources/types.js';
import { sourceOf, type TranslateContext, type VirtualHostDraft } from '../../types.js';
import type { NginxIngressConfig } from './parse.js';

/** Per host: its non-canary Ingresses in creation order. */
export type NginxHostExtras = Map<string, { ing: KubeObject; cfg: NginxIngressConfig; firstPath: string }[]>;

const anyMatch = () => ({ path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null });

/** A host with auth-tls-*: its HTTPS virtual host gets its own chain (by SNI) asking for client certificates. */
export interface ClientTlsHost {
  host: string;
  vhost: VirtualHostDraft;
  clientTls: NonNullable<NginxIngressConfig['clientTls']>;
}

export function finishNginxHosts(ctx: TranslateContext, extras: NginxHostExtras, httpHosts: VirtualHostDraft[], httpsHosts: VirtualHostDraft[], hsts: string | null = null, tlsHosts: ReadonlySet<string> = new Set(), redirectCode: 301 | 302 | 307 | 308 = 308): ClientTlsHost[] {
  const clientTlsHosts: ClientTlsHost[] = [];
  const defined = new Set(httpHosts.map((v) => v.domain));
  const aliasedBy = new Map<string, KubeObject>();
  for (const [host, list] of extras) {
    let http = httpHosts.find((v) => v.domain === host);
    const https = httpsHosts.find((v) => v.domain === host);
    if (http === undefined || https === undefined) continue;
    // The two listeners may share one draft: give the plain-HTTP one its own before editing it.
    if (http === https) httpHosts[httpHosts.indexOf(http)] = http = { ...http };

    const appRoot = list.find((e) => e.cfg.appRoot !== null);
    if (appRoot !== undefined) {
      const route: Route = {
        name: `ingress/${appRoot.ing.metadata.namespace}/${appRoot.ing.metadata.name}/app-root`,
        source: sourceOf(appRoot.ing, 'metadata.annotations["nginx.ingress.kubernetes.io/app-root"]'),
        matches: [{ ...anyMatch(), path: { kind: 'exact', value: '/', ignoreCase: false } }],
        // A trailing `?` in the replacement: the request's query string is not kept (nginx `return 302 $scheme://$http_host<root>`).
        action: { kind: 'redirect', scheme: null, authority: null, port: null, path: { kind: 'full', value: `${appRoot.cfg.appRoot}?` }, responseCode: 302 },
        requestHeaders: null,
        responseHeaders: null,
        cors: null,
      };
      http.routes = [route, ...http.routes];
      https.routes = [route, ...https.routes];
    }

    const aliasOwner = list.find((e) => e.cfg.serverAliases.length > 0);
    if (aliasOwner !== undefined) {
      for (const alias of aliasOwner.cfg.serverAliases) {
        // The same Ingress's other rule host already took it (nginx: the first server with the alias keeps it).
        if (aliasedBy.get(alias) === aliasOwner.ing) continue;
        if (defined.has(alias)) {
          ctx.report('warning', 'MG_DUPLICATE_HOST', aliasOwner.ing, 'metadata.annotations["nginx.ingress.kubernetes.io/server-alias"]', `server-alias "${alias}" is a host some Ingress rule defines; that rule's routes serve it`);
          continue;
        }
        defined.add(alias);
        aliasedBy.set(alias, aliasOwner.ing);
        httpHosts.push({ ...http, domain: alias });
        httpsHosts.push({ ...https, domain: alias });
      }
    }

    const www = list.find((e) => e.cfg.fromToWww);
    if (www !== undefined && !host.startsWith('*')) {
      const twin = host.startsWith('www.') ? host.slice(4) : `www.${host}`;
      if (!defined.has(twin)) {
        defined.add(twin);
        const route: Route = {
          name: `ingress/${www.ing.metadata.namespace}/${www.ing.metadata.name}/from-to-www`,
          source: sourceOf(www.ing, 'metadata.annotations["nginx.ingress.kubernetes.io/from-to-www-redirect"]'),
          matches: [anyMatch()],
          action: { kind: 'redirect', scheme: null, authority: host, port: null, path: null, responseCode: redirectCode },
          requestHeaders: null,
          responseHeaders: null,
          cors: null,
        };
        httpHosts.push({ domain: twin, singleLabelWildcard: true, httpsRedirect: null, routes: [route], source: route.source });
        httpsHosts.push({ domain: twin, singleLabelWildcard: true, httpsRedirect: null, routes: [route], source: route.source });
      }
    }
  }

  // ConfigMap hsts: Strict-Transport-Security on HTTPS responses of hosts that have a certificate.
  if (hsts !== null) {
    for (let i = 0; i < httpsHosts.length; i++) {
      const vh = httpsHosts[i];
      if (!tlsHosts.has(vh.domain)) continue;
      const routes = vh.routes.map((r): Route => ({ ...r, responseHeaders: { set: [...(r.responseHeaders?.set ?? []).filter((h) => h.name !== 'strict-transport-security'), { name: 'strict-transport-security', value: hsts }], add: r.responseHeaders?.add ?? [], remove: r.responseHeaders?.remove ?? [] } }));
      httpsHosts[i] = { ...vh, routes };
      const j = httpHosts.indexOf(vh);
      if (j !== -1) httpHosts[j] = { ...vh };
    }
  }

  // auth-tls-*: server-level, the first Ingress of the host with a CA decides for every HTTPS path of the host.
  for (const [host, list] of extras) {
    const owner = list.find((e) => e.cfg.clientTls !== null);
    if (owner === undefined) continue;
    const i = httpsHosts.findIndex((v) => v.domain === host);
    if (i === -1) continue;
    const policy = owner.cfg.clientTls!.policy;
    const vh = httpsHosts[i];
    const routes = vh.routes.map((r): Route => ({ ...r, filters: { ...(r.filters ?? { maxRequestBodyBytes: null, requestLimit: null, sourceRanges: null, basicAuth: null }), clientCertificate: policy } }));
    const j = httpHosts.indexOf(vh);
    if (j !== -1) httpHosts[j] = { ...vh };
    httpsHosts[i] = { ...vh, routes };
    clientTlsHosts.push({ host, vhost: httpsHosts[i], clientTls: owner.cfg.clientTls! });
  }
  return clientTlsHosts;
}
