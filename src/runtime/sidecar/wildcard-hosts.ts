/**
 * Wildcard ServiceEntry hosts on the sidecar's outbound side (`*.example.com`, resolution NONE or
 * DYNAMIC_DNS): Istio serves them with an ORIGINAL_DST cluster (NONE) or Envoy's dynamic forward
 * proxy (DYNAMIC_DNS), whose upstream is decided per connection or request. Here the view's cluster
 * for such a host has no endpoints; each destination gets a never-bound copy of the host's virtual
 * host (its VirtualService routes: retries, timeouts, faults, header edits) whose clusters of that
 * host have the one endpoint of this destination. PURE helpers; outbound.ts caches the compiled
 * copies per destination.
 *
 * Precedence is Istio's: a service found by its address, then an exact virtual host of the port's
 * table, then the most specific wildcard (compile/lookup.ts); for TLS to an unknown destination the
 * most specific wildcard covering the SNI.
 */
import type { Cluster, IRSnapshot, Listener, OutboundService, VirtualHost } from '../../ir/types.js';
import { normalizeHost } from '../compile/lookup.js';

export interface HostOnlyServices {
  wildcardVhosts: Map<string, OutboundService>;
  /** Address-less services matched by SNI on their port: exact TLS hosts first, then wildcards, longest first. */
  wildcardTls: Map<number, OutboundService[]>;
  addresslessTcp: Map<number, OutboundService>;
}

/**
 * The services of a view reached by name rather than address (see outbound.ts `State`).
 * `wildcardVhosts`: every virtual host of `tables` with a route to a cluster of a `forward` service
 * (the wildcard host's own, or an exact host a wildcard VirtualService covers), by name.
 */
export function hostOnlyServices(outbound: readonly OutboundService[], tables: readonly Listener[] = [], clusters: readonly Cluster[] = []): HostOnlyServices {
  const wildcardVhosts = new Map<string, OutboundService>();
  const forwardBy = new Map<string, OutboundService>();
  for (const s of outbound) if (s.forward !== undefined) forwardBy.set(`${s.host}|${s.port}`, s);
  if (forwardBy.size > 0) {
    const byCluster = new Map<string, OutboundService>();
    for (const c of clusters) {
      const s = forwardBy.get(`${c.service.host}|${c.service.port}`);
      if (s !== undefined) byCluster.set(c.name, s);
    }
    for (const l of tables) {
      for (const ch of l.filterChains) {
        for (const v of ch.virtualHosts) {
          for (const r of v.routes) {
            if (r.action.kind !== 'forward') continue;
            const s = r.action.destinations.map((d) => byCluster.get(d.cluster)).find((x) => x !== undefined);
            if (s !== undefined && !wildcardVhosts.has(v.name)) wildcardVhosts.set(v.name, s);
          }
        }
      }
    }
  }
  const wildcardTls = new Map<number, OutboundService[]>();
  const addresslessTcp = new Map<number, OutboundService>();
  const wildcardTcp: OutboundService[] = [];
  for (const s of outbound) {
    const wildcard = s.host.startsWith('*.');
    if (s.addresses.length > 0 || s.tcpRoutes === null) continue;
    // TLS: by SNI (Istio's filter chains of `0.0.0.0_<port>` by server name), wildcard hosts of any
    // declared protocol with a relay, exact hosts of TLS ports.
    if (wildcard || s.protocol === 'TLS') {
      const list = wildcardTls.get(s.port) ?? [];
      list.push(s);
      wildcardTls.set(s.port, list);
    }
    // TCP: Istio's `0.0.0.0_<port>` TCP listener takes every connection on the port: first by host,
    // exact hosts before wildcard ones (whose relay goes to the original destination, or for
    // DYNAMIC_DNS nowhere: Istio builds no cluster for it).
    if (s.protocol === 'TCP') {
      if (wildcard) wildcardTcp.push(s);
      else if (!addresslessTcp.has(s.port)) addresslessTcp.set(s.port, s);
    }
  }
  for (const s of wildcardTcp) if (!addresslessTcp.has(s.port)) addresslessTcp.set(s.port, s);
  // Exact names first, then the longest suffix: the most specific wins.
  for (const list of wildcardTls.values()) list.sort((a, b) => Number(a.host.startsWith('*.')) - Number(b.host.startsWith('*.')) || b.host.length - a.host.length);
  return { wildcardVhosts, wildcardTls, addresslessTcp };
}

/** How a cluster's endpoint is found per connection (`perConnectionClusters`). */
export interface PerConnectionCluster {
  forward: 'original-dst' | 'dynamic-dns';
  /** The cluster's service port (DYNAMIC_DNS: the port the SNI name is dialled on). */
  port: number;
  /** DYNAMIC_DNS on a TCP or undeclared port: Istio builds no dynamic forward proxy cluster for it (HTTP, HTTP2, GRPC, TLS only), there is nothing to reach. */
  unreachable: boolean;
}

/**
 * The view's clusters of wildcard hosts served per connection (`forward`), subsets included, by
 * name: Envoy's ORIGINAL_DST cluster (NONE) and dynamic forward proxy cluster (DYNAMIC_DNS). TCP
 * and TLS relays (runtime/tcp/) ask for their endpoint per connection (`forwardTarget`).
 */
export function perConnectionClusters(outbound: readonly OutboundService[], clusters: readonly Cluster[]): Map<string, PerConnectionCluster> {
  const out = new Map<string, PerConnectionCluster>();
  const byHost = new Map<string, 'original-dst' | 'dynamic-dns'>();
  const ports = new Map<string, OutboundService>();
  for (const s of outbound) {
    if (s.forward === undefined) continue;
    if (!byHost.has(s.host)) byHost.set(s.host, s.forward);
    ports.set(`${s.host}|${s.port}`, s);
  }
  if (byHost.size === 0) return out;
  for (const c of clusters) {
    const forward = byHost.get(c.service.host);
    if (forward === undefined || c.discovery !== 'eds' || c.endpoints.length > 0) continue;
    const protocol = ports.get(`${c.service.host}|${c.service.port}`)?.protocol;
    out.set(c.name, { forward, port: c.service.port, unreachable: forward === 'dynamic-dns' && protocol !== 'TLS' });
  }
  return out;
}

/**
 * Where one connection relayed to cluster `c` goes: its original destination (NONE), or the SNI
 * name on the cluster's port (DYNAMIC_DNS, Envoy's sni_dynamic_forward_proxy); null when there is
 * nothing to reach (no SNI, no original destination).
 */
export function forwardTarget(c: PerConnectionCluster, localAddress: string, localPort: number, sni: string): { address: string; port: number } | null {
  if (c.forward === 'original-dst') return localAddress === '' || localPort === 0 ? null : { address: localAddress, port: localPort };
  if (c.unreachable || sni === '') return null;
  return { address: sni, port: c.port };
}

/** The first (most specific) service naming or, for wildcards, covering `name`. */
export function matchWildcard(list: readonly OutboundService[] | undefined, name: string): OutboundService | undefined {
  if (list === undefined) return undefined;
  const n = name.toLowerCase().replace(/\.$/, '');
  return list.find((s) => covers(s, n));
}

/**
 * Every service naming or covering `name`, most specific first: the first whose relay has a route
 * for the connection takes it (outbound.ts), since Istio's filter chains of `0.0.0.0_<port>` carry
 * the server names of the VirtualService's `tls` matches, not the service's host.
 */
export function matchWildcards(list: readonly OutboundService[] | undefined, name: string): OutboundService[] {
  if (list === undefined) return [];
  const n = name.toLowerCase().replace(/\.$/, '');
  return list.filter((s) => covers(s, n));
}

function covers(s: OutboundService, n: string): boolean {
  return s.host.startsWith('*.') ? n.length > s.host.length - 1 && n.endsWith(s.host.slice(1)) : n === s.host;
}

/**
 * Where a request to wildcard host `svc` goes: the original destination (NONE), or the name of the
 * Host on its port, else the service port (DYNAMIC_DNS). null when the Host names no host.
 */
export function wildcardTarget(svc: OutboundService, authority: string, originalAddress: string, originalPort: number): { address: string; port: number } | null {
  if (svc.forward === 'original-dst') return originalAddress === '' || originalPort === 0 ? null : { address: originalAddress, port: originalPort };
  let host = normalizeHost(authority);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (host === '') return null;
  const rest = authority.slice(authority.startsWith('[') ? authority.indexOf(']') + 1 : authority.indexOf(':') >= 0 ? authority.indexOf(':') : authority.length);
  const p = rest.startsWith(':') ? Number(rest.slice(1)) : NaN;
  const port = Number.isInteger(p) && p > 0 && p < 65536 ? p : svc.port;
  return { address: host, port };
}

/**
 * A snapshot with one listener: virtual host `vhostName` (any Host) and the clusters its routes
 * use, those of wildcard host `svc` with `target` as their one endpoint. null when the view's
 * table has no such virtual host.
 */
export function wildcardSnapshot(ir: IRSnapshot, vhostName: string, svc: OutboundService, target: { address: string; port: number }): IRSnapshot | null {
  let table: Listener | undefined;
  let vhost: VirtualHost | undefined;
  for (const l of ir.listeners) {
    for (const c of l.filterChains) {
      const v = c.virtualHosts.find((x) => x.name === vhostName);
      if (v !== undefined) {
        table = l;
        vhost = v;
      }
    }
  }
  if (table === undefined || vhost === undefined) return null;
  const used = new Set<string>();
  for (const r of vhost.routes) {
    if (r.action.kind !== 'forward') continue;
    for (const d of r.action.destinations) used.add(d.cluster);
    for (const m of r.action.mirrors) used.add(m.cluster);
  }
  const clusters: Cluster[] = ir.clusters
    .filter((c) => used.has(c.name))
    .map((c) => (c.service.host === svc.host && c.endpoints.length === 0 && c.discovery === 'eds' ? { ...c, endpoints: [{ address: target.address, port: target.port, ready: true }] } : c));
  const name = `wildcard_${vhostName}_${target.address}_${target.port}`;
  return {
    ...ir,
    version: name,
    listeners: [{ ...table, name, filterChains: [{ name, serverNames: [], tls: null, virtualHosts: [{ ...vhost, domains: [{ kind: 'any' }] }] }] }],
    clusters,
    tcpListeners: [],
  };
}
