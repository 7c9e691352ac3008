/**
 * Combine what the Ingress and Istio translators want served into one list of listeners.
 *
 * Precedence (decided here, once):
 *  - One listener per bind address and port. Drafts arrive Istio first, then Ingress; a draft whose protocol differs
 *    from the port's first draft is dropped with MG_PORT_CONFLICT.
 *  - HTTP: every draft's chains merge into one chain (SNI does not exist on plaintext).
 *  - HTTPS: chains with the same server-name set merge; others stay separate (picked by SNI).
 *  - Within a chain, virtual-host drafts for the same domain merge: routes concatenated in draft order,
 *    the first httpsRedirect wins. Drafts from different objects for one domain get MG_DUPLICATE_HOST
 *    (a warning: both sets of routes stay reachable, the earlier first).
 */
import type { DomainMatch, FilterChain, Listener, TcpRoute, VirtualHost } from '../../ir/types.js';
import type { FilterChainDraft, ListenerDraft, TranslateContext, VirtualHostDraft } from '../types.js';

export function mergeListeners(ctx: TranslateContext, drafts: ListenerDraft[]): Listener[] {
  // One listener per address and port: a draft for another address of the port (a Gateway API
  // Gateway's own address, an Istio server's `bind`) is a listener of its own; beside a wildcard
  // listener of the port it is served through that socket, by the address a connection arrived at.
  const byPort = new Map<string, { first: ListenerDraft; chains: FilterChainDraft[]; passthrough: TcpRoute[] }>();
  for (const d of drafts) {
    const entry = byPort.get(`${d.address}_${d.port}`);
    if (!entry) {
      byPort.set(`${d.address}_${d.port}`, { first: d, chains: [...d.chains], passthrough: [...(d.passthrough ?? [])] });
      continue;
    }
    if (entry.first.protocol !== d.protocol) {
      const f = entry.first.source;
      ctx.reportAt('error', 'MG_PORT_CONFLICT', d.source, `port ${d.port} is already served as ${entry.first.protocol} for ${f.kind}/${f.namespace}/${f.name}; this ${d.protocol} server is not served`);
      continue;
    }
    entry.chains.push(...d.chains);
    if (d.passthrough !== undefined) entry.passthrough.push(...d.passthrough);
  }
  const listeners: Listener[] = [];
  for (const { first, chains, passthrough } of byPort.values()) {
    const port = first.port;
    const groups = new Map<string, FilterChainDraft[]>();
    for (const c of chains) {
      const key = first.protocol === 'HTTP' ? '' : [...c.serverNames].sort().join(',');
      const g = groups.get(key);
      if (g) g.push(c);
      else groups.set(key, [c]);
    }
    const filterChains: FilterChain[] = [];
    for (const group of groups.values()) filterChains.push(mergeChain(ctx, group, port));
    const listener: Listener = { name: `${first.address}_${port}`, address: first.address, port, externalPort: first.externalPort, protocol: first.protocol, filterChains };
    // TLS passthrough by SNI on an HTTPS port (ingress-nginx ssl-passthrough).
    if (first.protocol === 'HTTPS' && passthrough.length > 0) listener.passthrough = passthrough;
    listeners.push(listener);
  }
  return listeners.sort((a, b) => a.port - b.port || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

function mergeChain(ctx: TranslateContext, group: FilterChainDraft[], port: number): FilterChain {
  const first = group[0];
  const byDomain = new Map<string, { draft: VirtualHostDraft; routes: VirtualHost['routes']; owners: Set<string> }>();
  for (const chain of group) {
    for (const vh of chain.virtualHosts) {
      const owner = `${vh.source.kind}/${vh.source.namespace}/${vh.source.name}`;
      const entry = byDomain.get(vh.domain);
      if (!entry) {
        byDomain.set(vh.domain, { draft: { ...vh, httpsRedirect: vh.httpsRedirect }, routes: [...vh.routes], owners: new Set([owner]) });
        continue;
      }
      if (!entry.owners.has(owner) && vh.source.kind !== entry.draft.source.kind) {
        const s = entry.draft.source;
        ctx.reportAt('warning', 'MG_DUPLICATE_HOST', vh.source, `host "${vh.domain}" on port ${port} is also served by ${s.kind}/${s.namespace}/${s.name}; its routes are tried first`);
      }
      entry.owners.add(owner);
      if (!entry.draft.httpsRedirect && vh.httpsRedirect) entry.draft = { ...entry.draft, httpsRedirect: vh.httpsRedirect };
      entry.routes.push(...vh.routes);
    }
  }
  const virtualHosts: VirtualHost[] = [...byDomain.values()].map(({ draft, routes }) => ({
    name: `${draft.domain}:${port}`,
    domains: [domainMatch(draft.domain, draft.singleLabelWildcard)],
    httpsRedirect: draft.httpsRedirect,
    routes,
  }));
  virtualHosts.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const tls = first.tls ? { ...first.tls, certificates: dedupeCerts(group.flatMap((c) => c.tls?.certificates ?? [])) } : null;
  const chain: FilterChain = { name: first.name, serverNames: [...first.serverNames].sort(), tls, virtualHosts };
  if (first.rejectMisdirected === true) chain.rejectMisdirected = true;
  return chain;
}

function dedupeCerts<T extends { secret: string; serverNames: string[] }>(certs: T[]): T[] {
  const seen = new Set<string>();
  return certs.filter((c) => {
    const k = `${c.secret}|${c.serverNames.join(',')}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export function domainMatch(domain: string, singleLabel: boolean): DomainMatch {
  if (domain === '*') return { kind: 'any' };
  if (domain.startsWith('*.')) return { kind: 'suffix', suffix: domain.slice(1), singleLabel };
  return { kind: 'exact', host: domain };
}
