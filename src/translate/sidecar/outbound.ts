/**
 * A sidecar's outbound side (reference/mesh.md §2.7, §2.8, §2.10): the service ports it may call,
 * their per-port HTTP route tables and their TCP/TLS relays. PURE.
 *
 * - Service ports: every Kubernetes Service port (not UDP/SCTP) and ServiceEntry
 *   host/port exported to the proxy's namespace and admitted by the Sidecar's `egress[].hosts`.
 *   A ServiceEntry host equal to an earlier service's is ignored (reported).
 * - Addresses: cluster IPs; for headless Services and ServiceEntries without `addresses`, the
 *   endpoint IPs. An ExternalName Service has none (Istio: resolution DNS, address 0.0.0.0): its
 *   HTTP ports are reached by Host on the port's table (kube-dns answers the name with a CNAME to
 *   the external name, so the original destination is the external host's address), its cluster's
 *   endpoint is the external name, resolved when connecting.
 * - VirtualServices that apply: `gateways` empty or naming `mesh`, exported to the proxy's
 *   namespace, hosts (relative to the VirtualService's namespace) admitted by the Sidecar. Per
 *   service host the first one naming or covering it (wildcard hosts) wins, in Istio's order:
 *   private to the proxy's namespace, exported to it by name, public, each by age. Sidecars never
 *   merge VirtualServices; the others get MG_DUPLICATE_HOST.
 * - HTTP (and UNKNOWN) ports: table `outbound_<port>`, one virtual host per service with Istio's
 *   domains (`vhostDomains`); routes from the VirtualService (match blocks evaluated against this
 *   proxy: `mesh`, sourceLabels, sourceNamespace, port), else one default route to
 *   `outbound|<port>||<host>` with Istio's default retry policy and no timeout.
 * - TCP, TLS (and UNKNOWN) ports: relay `outbound_<port>_tcp_<host>` with the VirtualService's `tcp`
 *   (or, for TLS, `tls`) routes that apply, then the default route: on TCP (and UNKNOWN) ports unless
 *   one of them matches every connection; on TLS ports only when none applies (Istio
 *   buildSidecarOutboundTLSFilterChainOpts: a ClientHello no `tls` route matches finds no filter
 *   chain and is closed).
 */
import type { Listener, Route, TcpListener, TcpMatch, TcpRoute, VirtualHost } from '../../ir/types.js';
import type { DnsHost, MeshPortProtocol, OutboundService } from '../../ir/sidecar.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { arr, num, obj, str, strMap, type Obj } from '../../lib/unknown.js';
import { CLUSTER_DOMAIN, externalNameOf, matchesLabels, serviceFqdn } from '../backends.js';
import { sourceOf, type TranslateContext } from '../types.js';
import { domainMatch } from '../merge/listeners.js';
import type { DestinationRuleIndex } from '../istio/destination-rules.js';
import { isIpAddress } from '../istio/hosts.js';
import { istioObjects, resolveServiceHost } from '../istio/objects.js';
import { DEFAULT_RETRY_POLICY } from '../istio/route-policies.js';
import { destinationCluster, translateVirtualServiceRoutes, type RouteEnv, type TranslatedRoute } from '../istio/routes.js';
import { egressAdmits, exportedTo, exportToOf, hostCovers, type ExportToDefaults, type SidecarScope } from './scope.js';
import { isHttpProtocol, serviceEntryPortProtocol, servicePortProtocol } from './protocol.js';
import { autoAllocatedAddresses, NameTableBuilder, proxyAutoVips } from './dns.js';

export interface OutboundEnv {
  ctx: TranslateContext;
  resources: ResourceSet;
  drs: DestinationRuleIndex;
  /** The proxy's namespace. */
  namespace: string;
  scope: SidecarScope;
  /** MeshConfig's exportTo defaults. */
  exportTo: ExportToDefaults;
  /** DNS proxying (dns.ts): null when off; else whether this proxy uses auto-allocated VIPs, and its pod IPs (their families pick the VIPs). */
  dns?: { autoAllocate: boolean; podIps: string[] } | null;
}

/** A visible service port, before its tables are built. */
interface Candidate {
  host: string;
  namespace: string;
  port: number;
  protocol: MeshPortProtocol;
  /** Cluster IPs / ServiceEntry addresses (VIPs, may be CIDRs for entries). */
  vips: string[];
  /** Use endpoint IPs as addresses (headless Service, entry without addresses). */
  endpointAddresses: boolean;
  /** A Kubernetes Service (short-name domains apply). */
  kube: boolean;
  obj: KubeObject;
  field: string;
  /** `outbound|<port>||<host>`, filled by `translateOutbound`. */
  cluster: string;
  /** A passthrough service for DNS (headless Service, ServiceEntry resolution NONE): its name answers its endpoint IPs. */
  passthrough: boolean;
  /** Wildcard ServiceEntry hosts served per connection (OutboundService.forward). */
  forward?: 'original-dst' | 'dynamic-dns';
  /** ExternalName Services: the external name (lowercase, no trailing dot). */
  externalName?: string;
}

export interface OutboundResult {
  outbound: OutboundService[];
  outboundHttp: Listener[];
  outboundTcp: TcpListener[];
  /** The DNS name table of what the proxy sees (dns.ts), sorted by host; [] when DNS proxying is off. */
  dnsHosts: DnsHost[];
}

export function translateOutbound(env: OutboundEnv): OutboundResult {
  const { candidates, aliases } = externalNameAliases(env, visibleServicePorts(env));
  for (const c of candidates) c.cluster = destinationCluster(routeEnv(env, c.obj, c.port), { host: c.host, port: { number: c.port } }, c.field);
  const vss = meshVirtualServices(env);
  // Exact host -> VirtualServices naming it, in the order of `vss`.
  const byName = new Map<string, MeshVs[]>();
  for (const v of vss) {
    for (const h of v.hosts) {
      if (h.wildcard) continue;
      for (const n of h.names) {
        const list = byName.get(n) ?? [];
        if (!list.includes(v)) list.push(v);
        byName.set(n, list);
      }
    }
  }
  const chosen = new Map<string, KubeObject | null>();
  for (const c of candidates) if (!chosen.has(c.host)) chosen.set(c.host, chooseVirtualService(env, vss, c.host, byName));
  reportUnusedVirtualServices(env, vss, candidates);

  const outbound: OutboundService[] = [];
  const httpByPort = new Map<number, VirtualHost[]>();
  const domainsTaken = new Map<number, Set<string>>();
  const outboundTcp: TcpListener[] = [];
  const routeCache = new Map<string, TranslatedRoute[]>();
  const names = new NameTableBuilder();
  for (const c of candidates) {
    const vs = chosen.get(c.host) ?? null;
    const cluster = env.ctx.getCluster(c.cluster);
    // Wildcard hosts too (Istio's BuildNameTable has no exception for them): with `addresses` they
    // answer those; served per connection (`forward`) without addresses they have none, so no entry.
    if (env.dns) {
      const kube = c.kube ? { name: c.obj.metadata.name, namespace: c.namespace } : null;
      const publishNotReady = c.kube && obj(c.obj.body.spec).publishNotReadyAddresses === true;
      names.add(c.host, kube, c.vips, c.passthrough, () => (cluster ? cluster.endpoints.filter((e) => e.ready || publishNotReady).map((e) => e.address) : []));
      if (c.kube && c.passthrough) names.addHeadlessPods(env.resources, c.obj, c.host);
    }
    const endpointIps = c.endpointAddresses && cluster ? cluster.endpoints.map((e) => e.address).filter(isIpAddress) : [];
    const addresses = [...new Set([...c.vips, ...endpointIps])];
    const http = isHttpProtocol(c.protocol) || c.protocol === 'UNKNOWN';
    const tcp = !isHttpProtocol(c.protocol);
    let httpRoutes: string | null = null;
    if (http) {
      httpRoutes = `outbound_${c.port}`;
      let taken = domainsTaken.get(c.port);
      if (!taken) domainsTaken.set(c.port, (taken = new Set()));
      const aliasDomains = (aliases.get(c.host) ?? []).flatMap((a) => vhostDomains(a, c.port, env.namespace, true, []));
      const domains = [...new Set([...vhostDomains(c.host, c.port, env.namespace, c.kube, c.vips, c.kube && c.endpointAddresses), ...aliasDomains])].filter((d) => !taken.has(d));
      for (const d of domains) taken.add(d);
      const routes = httpRoutesFor(env, c, vs, routeCache);
      let list = httpByPort.get(c.port);
      if (!list) httpByPort.set(c.port, (list = []));
      list.push({ name: `${c.host}:${c.port}`, domains: domains.map((d) => domainMatch(d, false)), httpsRedirect: null, routes });
    }
    let tcpRoutes: string | null = null;
    if (tcp) {
      tcpRoutes = `outbound_${c.port}_tcp_${c.host}`;
      outboundTcp.push({ name: tcpRoutes, address: '0.0.0.0', port: c.port, externalPort: c.port, protocol: c.protocol === 'TLS' ? 'TLS' : 'TCP', routes: tcpRoutesFor(env, c, vs), tlsChains: [] });
    }
    outbound.push({ host: c.host, namespace: c.namespace, port: c.port, protocol: c.protocol, addresses, httpRoutes, tcpRoutes, ...(c.forward !== undefined ? { forward: c.forward } : {}) });
  }
  const outboundHttp: Listener[] = [...httpByPort.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([port, virtualHosts]) => ({
      name: `outbound_${port}`,
      address: '0.0.0.0',
      port,
      externalPort: port,
      protocol: 'HTTP' as const,
      filterChains: [{ name: `outbound_${port}`, serverNames: [], tls: null, virtualHosts: [...virtualHosts].sort((a, b) => cmp(a.name, b.name)) }],
    }));
  outbound.sort((a, b) => cmp(a.host, b.host) || a.port - b.port);
  outboundTcp.sort((a, b) => a.port - b.port || cmp(a.name, b.name));
  return { outbound, outboundHttp, outboundTcp, dnsHosts: env.dns ? names.hosts() : [] };
}

function routeEnv(env: OutboundEnv, vs: KubeObject, port: number): RouteEnv {
  return { ctx: env.ctx, resources: env.resources, drs: env.drs, vs, gateways: ['mesh'], port, mesh: { namespace: env.namespace } };
}

// ---- service ports ------------------------------------------------------------------------------

function visibleServicePorts(env: OutboundEnv): Candidate[] {
  const { ctx, resources, namespace, scope } = env;
  const out: Candidate[] = [];
  const seen = new Map<string, Candidate>();
  const services = resources.ofKind('Service').filter((s) => s.apiVersion === 'v1');
  for (const svc of [...services].sort((a, b) => cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name))) {
    const ns = svc.metadata.namespace;
    if (!exportedTo(exportToOf(svc, env.exportTo), ns, namespace)) continue;
    const spec = obj(svc.body.spec);
    const host = serviceFqdn(svc.metadata.name, ns);
    // ExternalName: a DNS-resolved service (Istio's kube registry): no VIP, its endpoint is the
    // external name on each service port (backends.ts); HTTP reaches it by Host on the port's table.
    const externalName = str(spec.type) === 'ExternalName';
    if (externalName && externalNameOf(svc) === null) {
      if (egressAdmits(scope, ns, host, null)) ctx.report('warning', 'MG_MISSING_FIELD', svc, 'spec.externalName', 'an ExternalName Service needs spec.externalName; it is not served on sidecars');
      continue;
    }
    const clusterIps = externalName ? [] : [...arr(spec.clusterIPs).map(str), str(spec.clusterIP)].filter((x): x is string => x !== undefined && x !== '' && x !== 'None');
    const headless = !externalName && str(spec.clusterIP) === 'None';
    arr(spec.ports).forEach((p, i) => {
      const po = obj(p);
      const port = num(po.port);
      if (port === undefined) return;
      const protocol = servicePortProtocol({ name: str(po.name) ?? '', appProtocol: str(po.appProtocol) ?? '', protocol: str(po.protocol) });
      if (protocol === null) return;
      if (!egressAdmits(scope, ns, host, port)) return;
      const key = `${host}|${port}`;
      if (seen.has(key)) return;
      const c: Candidate = { host, namespace: ns, port, protocol, vips: [...new Set(clusterIps)].sort(), endpointAddresses: headless, kube: true, obj: svc, field: `spec.ports[${i}]`, cluster: '', passthrough: headless, ...(externalName ? { externalName: externalNameOf(svc)! } : {}) };
      seen.set(key, c);
      out.push(c);
    });
  }
  for (const se of [...istioObjects(resources, 'ServiceEntry')].sort(compareByCreation)) {
    const ns = se.metadata.namespace;
    if (!exportedTo(exportToOf(se, env.exportTo), ns, namespace)) continue;
    const spec = obj(se.body.spec);
    const addresses = arr(spec.addresses).map(str).filter((x): x is string => x !== undefined && x !== '');
    const resolution = str(spec.resolution) ?? 'NONE';
    arr(spec.hosts).forEach((h, k) => {
      const host = (str(h) ?? '').toLowerCase().replace(/\.$/, '');
      if (host === '') return;
      let forward: Candidate['forward'];
      const hasEndpoints = arr(spec.endpoints).length > 0 || (spec.workloadSelector !== undefined && spec.workloadSelector !== null);
      // Istio gives a sidecar an ORIGINAL_DST cluster for resolution NONE (cluster.go
      // convertResolution: Passthrough): without endpoints, an exact host's connections go to their
      // original destination, as a wildcard's do.
      if (!host.includes('*') && resolution === 'NONE' && !hasEndpoints) forward = 'original-dst';
      if (host.includes('*')) {
        if (host === '*' || !host.startsWith('*.') || host.slice(2).includes('*')) {
          if (egressAdmits(scope, ns, host, null)) ctx.report('warning', 'MG_INVALID_FIELD', se, `spec.hosts[${k}]`, `host ${JSON.stringify(host)} is not a valid ServiceEntry host (a wildcard host is *.suffix); not served on sidecars`);
          return;
        }
        // Istio: a wildcard host's traffic goes to the original destination (NONE) or to the name
        // asked for (DYNAMIC_DNS); DNS resolution needs endpoints (validation: a wildcard is not a
        // name to resolve); STATIC and DNS with endpoints are served by their endpoints.
        if (resolution === 'NONE' && !hasEndpoints) forward = 'original-dst';
        else if (resolution === 'DYNAMIC_DNS') forward = 'dynamic-dns';
        else if ((resolution === 'DNS' || resolution === 'DNS_ROUND_ROBIN') && !hasEndpoints) {
          if (egressAdmits(scope, ns, host, null)) ctx.report('warning', 'MG_INVALID_FIELD', se, 'spec.resolution', `wildcard host ${host} with resolution ${resolution} and no endpoints has nothing to resolve (Istio: use DYNAMIC_DNS or NONE); not served on sidecars`);
          return;
        }
      }
      arr(spec.ports).forEach((p, j) => {
        const po = obj(p);
        const port = num(po.number);
        if (port === undefined) return;
        const protocol = serviceEntryPortProtocol({ name: str(po.name) ?? '', protocol: str(po.protocol) ?? '' });
        if (protocol === null) return;
        if (!egressAdmits(scope, ns, host, port)) return;
        // Istio builds a dynamic forward proxy cluster for HTTP, HTTP2, GRPC and TLS ports only: a TCP
        // (or undeclared) port's relay has nothing to forward to, and its 0.0.0.0_<port> listener's
        // own chain leads nowhere.
        if (forward === 'dynamic-dns' && (protocol === 'TCP' || protocol === 'UNKNOWN') && !seen.has(`${host}|${port}`)) {
          const closed = protocol === 'TCP' ? `connections to an unknown destination on port ${port}` : `TLS connections on port ${port} whose SNI it covers`;
          ctx.report('warning', 'MG_UNSUPPORTED', se, `spec.ports[${j}]`, `${protocol === 'TCP' ? 'TCP port' : 'port (protocol not declared)'} ${port} of wildcard host ${host} with resolution DYNAMIC_DNS: Istio's dynamic forward proxy serves HTTP, HTTP2, GRPC and TLS ports only, so ${closed} have nothing to reach and are closed, unless a tcp route of its VirtualService sends them to another service`);
        }
        const key = `${host}|${port}`;
        const prev = seen.get(key);
        if (prev) {
          if (prev.obj !== se) ctx.report('warning', 'MG_DUPLICATE_HOST', se, `spec.hosts[${k}]`, `${host} port ${port} is already defined by ${prev.obj.kind} ${prev.obj.metadata.namespace}/${prev.obj.metadata.name}; this entry is ignored for it on sidecars`);
          return;
        }
        // A VIP auto-allocated for DNS proxying (dns.ts) stands where `addresses` would: routing
        // matches it, the DNS proxy answers it.
        const vips = addresses.length > 0 ? [...addresses].sort() : env.dns?.autoAllocate && forward === undefined ? proxyAutoVips(autoAllocatedAddresses(resources).get(`${ns}/${host}`), env.dns.podIps) : [];
        const c: Candidate = { host, namespace: ns, port, protocol, vips, endpointAddresses: addresses.length === 0 && forward === undefined, kube: false, obj: se, field: `spec.hosts[${k}]`, cluster: '', passthrough: resolution === 'NONE' && forward === undefined, ...(forward !== undefined ? { forward } : {}) };
        seen.set(key, c);
        out.push(c);
      });
    });
  }
  return out;
}

/**
 * ExternalName Services whose external name is a service this proxy sees (a Service FQDN or an exact
 * ServiceEntry host) are aliases of it, as Istio serves them (ENABLE_EXTERNAL_NAME_ALIAS, on by
 * default since 1.21): their names join the concrete service's virtual hosts on every port of it
 * (its VirtualService, DestinationRule and mTLS apply), and they get nothing of their own. Others
 * stay DNS-resolved services of their own (Istio's behaviour before aliases): `aliases` maps a
 * concrete host to the FQDNs of its aliases, through chains of ExternalNames.
 */
function externalNameAliases(env: OutboundEnv, all: Candidate[]): { candidates: Candidate[]; aliases: Map<string, string[]> } {
  const concrete = new Set(all.filter((c) => c.externalName === undefined).map((c) => c.host));
  // Every ExternalName the proxy sees, with ports or without (an alias needs none).
  const next = new Map<string, string>();
  const objs = new Map<string, KubeObject>();
  for (const svc of env.resources.ofKind('Service')) {
    const name = svc.apiVersion === 'v1' ? externalNameOf(svc) : null;
    if (name === null) continue;
    const ns = svc.metadata.namespace;
    const host = serviceFqdn(svc.metadata.name, ns);
    if (!exportedTo(exportToOf(svc, env.exportTo), ns, env.namespace) || !egressAdmits(env.scope, ns, host, null)) continue;
    next.set(host, name);
    objs.set(host, svc);
  }
  const aliases = new Map<string, string[]>();
  const aliased = new Set<string>();
  for (const [alias, first] of next) {
    let target = first;
    const seen = new Set([alias]);
    while (next.has(target) && !seen.has(target)) {
      seen.add(target);
      target = next.get(target)!;
    }
    if (!concrete.has(target)) continue;
    aliased.add(alias);
    const list = aliases.get(target) ?? [];
    list.push(alias);
    aliases.set(target, list.sort());
  }
  for (const alias of [...aliased].sort()) {
    const target = [...aliases].find(([, l]) => l.includes(alias))?.[0];
    env.ctx.report('info', 'MG_ALIAS', objs.get(alias)!, 'spec.externalName', `ExternalName ${alias} is an alias of ${target} (Istio): its requests are routed as that service's, on that service's ports; its own ports, VirtualServices and DestinationRules do not apply`);
  }
  return { candidates: all.filter((c) => !aliased.has(c.host)), aliases };
}

/**
 * Istio's virtual-host domains for a service port seen from `proxyNamespace`
 * (generateVirtualHostDomains): the host and `host:port`; for Kubernetes Services the short forms
 * (`name` within the same namespace, `name.ns`, `name.ns.svc`), each with and without `:port`; for
 * headless Kubernetes Services also `*.<name>` of each name without port (StatefulSet pod names such
 * as `db-0.db.ns.svc.cluster.local`); and every cluster IP with and without `:port` (IPv6 in
 * brackets with the port). A wildcard host: itself and its addresses.
 */
export function vhostDomains(host: string, port: number, proxyNamespace: string, kube: boolean, vips: string[], headless = false): string[] {
  const out: string[] = [];
  const add = (name: string): void => {
    for (const d of [name, withPort(name, port)]) if (!out.includes(d)) out.push(d);
  };
  if (host.startsWith('*')) {
    // A wildcard host's addresses are its domains too (httproute.go generateVirtualHostDomains adds
    // every address of the service): HTTP to one of them by address is routed as the host's.
    out.push(host);
    for (const vip of vips) if (isIpAddress(vip)) add(vip);
    return out;
  }
  add(host);
  const suffix = `.svc.${CLUSTER_DOMAIN.slice('svc.'.length)}`;
  if (kube && host.endsWith(suffix)) {
    const [name, ns] = host.slice(0, -suffix.length).split('.');
    if (ns === proxyNamespace) add(name);
    add(`${name}.${ns}`);
    add(`${name}.${ns}.svc`);
  }
  if (headless) for (const d of out.filter((x) => !x.includes(':'))) out.push(`*.${d}`);
  for (const vip of vips) if (isIpAddress(vip)) add(vip);
  return out;
}

function withPort(name: string, port: number): string {
  return name.includes(':') ? `[${name}]:${port}` : `${name}:${port}`;
}

// ---- VirtualServices ----------------------------------------------------------------------------

interface MeshVs {
  vs: KubeObject;
  /** Hosts as the VS means them: patterns (`*.x`), literal names and their Service FQDNs; admitted by the Sidecar only. */
  hosts: { index: number; names: string[]; wildcard: boolean }[];
  /** Some host is a wildcard. */
  wildcard: boolean;
}

/**
 * VirtualServices for sidecars (`gateways` empty or with `mesh`) exported to the proxy, in Istio's
 * order (PushContext virtualServiceIndex): those private to the proxy's namespace (`exportTo: .`),
 * then those exported to it by name, then public ones, each group in creation order.
 */
function meshVirtualServices(env: OutboundEnv): MeshVs[] {
  const out: (MeshVs & { tier: number })[] = [];
  for (const vs of [...istioObjects(env.resources, 'VirtualService')].sort(compareByCreation)) {
    const spec = obj(vs.body.spec);
    const gateways = arr(spec.gateways).map(str).filter((g): g is string => g !== undefined && g !== '');
    if (gateways.length > 0 && !gateways.includes('mesh')) continue;
    const ns = vs.metadata.namespace;
    const exportTo = exportToOf(vs, env.exportTo).map((x) => x.trim());
    if (!exportedTo(exportTo, ns, env.namespace)) continue;
    const tier = exportTo.includes('*') || exportTo.every((x) => x === '') ? 2 : exportTo.includes('.') && ns === env.namespace ? 0 : 1;
    const hosts: MeshVs['hosts'] = [];
    arr(spec.hosts).forEach((h, index) => {
      const raw = (str(h) ?? '').toLowerCase().replace(/\.$/, '');
      if (raw === '') return;
      if (raw === '*') {
        // Istio validation: "wildcard host * is not allowed for virtual services bound to the mesh gateway".
        env.ctx.report('warning', 'MG_INVALID_FIELD', vs, `spec.hosts[${index}]`, 'host "*" is not allowed for VirtualServices that apply to sidecars (mesh); it is ignored here');
        return;
      }
      const wildcard = raw.includes('*');
      const names = wildcard ? [raw] : [...new Set([raw, ...(raw.includes('.') ? [] : [serviceFqdn(raw, ns)]), ...(raw.includes('.') ? [resolveServiceHost(raw, ns)?.fqdn].filter((x): x is string => x !== undefined) : [])])];
      if (!names.some((n) => egressAdmits(env.scope, ns, n, null))) return;
      hosts.push({ index, names, wildcard });
    });
    if (hosts.length > 0) out.push({ vs, hosts, wildcard: hosts.some((h) => h.wildcard), tier });
  }
  // Array.prototype.sort is stable: creation order is kept within a tier.
  return out.sort((a, b) => a.tier - b.tier);
}

function matchesHost(h: MeshVs['hosts'][number], host: string): boolean {
  return h.wildcard ? hostCovers(h.names[0], host) : h.names.includes(host);
}

/** The VirtualService for `host`: the first (Istio's order, see meshVirtualServices) whose hosts name or cover it; no merging. */
function chooseVirtualService(env: OutboundEnv, vss: MeshVs[], host: string, byName: Map<string, MeshVs[]>): KubeObject | null {
  const exact = byName.get(host) ?? [];
  const ordered = vss.filter((v) => exact.includes(v) || (v.wildcard && v.hosts.some((h) => h.wildcard && matchesHost(h, host))));
  if (ordered.length === 0) return null;
  const first = ordered[0].vs;
  for (const later of ordered.slice(1)) {
    const h = later.hosts.find((x) => matchesHost(x, host));
    env.ctx.report('warning', 'MG_DUPLICATE_HOST', later.vs, h ? `spec.hosts[${h.index}]` : 'spec.hosts', `host ${host} is already routed by VirtualService ${first.metadata.namespace}/${first.metadata.name} (first by Istio's order: private to this namespace, exported to it, public; then age); sidecars do not merge VirtualServices, so this one is ignored for that host`);
  }
  return first;
}

function reportUnusedVirtualServices(env: OutboundEnv, vss: MeshVs[], candidates: Candidate[]): void {
  const hosts = new Set(candidates.map((c) => c.host));
  for (const v of vss) {
    for (const h of v.hosts) {
      if (h.wildcard ? [...hosts].some((c) => hostCovers(h.names[0], c)) : h.names.some((n) => hosts.has(n))) continue;
      env.ctx.report('info', 'MG_SERVICE_NOT_FOUND', v.vs, `spec.hosts[${h.index}]`, `host ${h.names[h.names.length - 1]} is not a Service or ServiceEntry this sidecar sees (exportTo, Sidecar egress); it gets no routes here`);
    }
  }
}

// ---- HTTP ---------------------------------------------------------------------------------------

function httpRoutesFor(env: OutboundEnv, c: Candidate, vs: KubeObject | null, cache: Map<string, TranslatedRoute[]>): Route[] {
  if (vs !== null && arr(obj(vs.body.spec).http).length > 0) {
    const key = `${vs.metadata.namespace}/${vs.metadata.name}|${c.port}`;
    let routes = cache.get(key);
    if (routes === undefined) {
      routes = translateVirtualServiceRoutes(routeEnv(env, vs, c.port));
      cache.set(key, routes);
      if (routes.length === 0) env.ctx.report('info', 'MG_NOT_BOUND', vs, 'spec.http', `no HTTP route of this VirtualService applies to this sidecar on port ${c.port} (match gateways, port, sourceLabels, sourceNamespace); the default route is used`);
    }
    if (routes.length > 0) return routes.map((r) => r.route);
  }
  return [defaultHttpRoute(c)];
}

function defaultHttpRoute(c: Candidate): Route {
  return {
    name: 'default',
    source: sourceOf(c.obj, c.field),
    matches: [{ path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null }],
    action: { kind: 'forward', destinations: [{ cluster: c.cluster, weight: 100, requestHeaders: null, responseHeaders: null }], rewrite: null, timeoutMs: null, retries: DEFAULT_RETRY_POLICY, fault: null, mirrors: [] },
    requestHeaders: null,
    responseHeaders: null,
    cors: null,
  };
}

// ---- TCP and TLS --------------------------------------------------------------------------------

function tcpRoutesFor(env: OutboundEnv, c: Candidate, vs: KubeObject | null): TcpRoute[] {
  const section = c.protocol === 'TLS' ? 'tls' : 'tcp';
  const routes: TcpRoute[] = vs !== null ? vsTcpRoutes(env, c, vs, section) : [];
  // A wildcard host's TLS port is matched by SNI only (no address): Istio
  // (buildSidecarOutboundTLSFilterChainOpts) gives it the filter chains of its VirtualService's tls
  // matches when one holds for this proxy, and its own SNI chain only when none does. A connection
  // no route matches follows the outbound traffic policy (the listener's passthrough chain).
  if (c.forward !== undefined && section === 'tls' && routes.length > 0) return routes;
  const catchAll = routes.some((r) => r.matches.some((m) => m.sniHosts.length === 0 && m.destinationSubnets.length === 0 && m.port === null));
  // Istio adds a TLS port's default filter chain only when no `tls` route applies (tls.go `hasTLSMatch`).
  const tlsRouted = c.protocol === 'TLS' && c.forward === undefined && routes.length > 0;
  if (!catchAll && !tlsRouted) routes.push({ name: 'default', source: sourceOf(c.obj, c.field), matches: defaultTlsMatches(c, section), destinations: [{ cluster: c.cluster, weight: 100 }] });
  return routes;
}

/**
 * The default route's matches. On a TLS port the default filter chain names the service's host as
 * its SNI where the destination alone does not say the service (tls.go
 * buildSidecarOutboundTLSFilterChainOpts): a DYNAMIC_DNS wildcard host (also on the listener of its
 * own address), and an address range (a CIDR of `addresses`: Istio makes one service per address,
 * a range's chains on `0.0.0.0_<port>` match its prefix). A plain address takes every connection.
 * A connection no chain takes follows the outbound traffic policy (the listener's passthrough chain).
 */
function defaultTlsMatches(c: Candidate, section: 'tcp' | 'tls'): TcpMatch[] {
  const any: TcpMatch = { sniHosts: [], destinationSubnets: [], port: null };
  if (section !== 'tls') return [any];
  const byName: TcpMatch = { sniHosts: [c.host], destinationSubnets: [], port: null };
  if (c.forward === 'dynamic-dns') return [byName];
  const ranges = c.vips.filter(isAddressRange);
  if (ranges.length === 0) return [any];
  // The plain addresses (their own listeners) take every connection; the ranges the host's SNI only.
  const plain = c.vips.filter((a) => !isAddressRange(a));
  return plain.length === 0 ? [byName] : [{ ...any, destinationSubnets: plain }, byName];
}

/** A CIDR that is not a single address (Istio's conversion.go turns a /32 or /128 into the address). */
function isAddressRange(a: string): boolean {
  const slash = a.indexOf('/');
  if (slash < 0) return false;
  const ip = a.slice(0, slash);
  const bits = Number(a.slice(slash + 1));
  return isIpAddress(ip) && bits !== (ip.includes(':') ? 128 : 32);
}

/** The `tcp`/`tls` routes of a VirtualService that apply to this sidecar for one service port. */
function vsTcpRoutes(env: OutboundEnv, c: Candidate, vs: KubeObject, section: 'tcp' | 'tls'): TcpRoute[] {
  const { ctx } = env;
  const out: TcpRoute[] = [];
  const renv = routeEnv(env, vs, c.port);
  arr(obj(vs.body.spec)[section]).forEach((raw, i) => {
    const r = obj(raw);
    const field = `spec.${section}[${i}]`;
    const matches = meshTcpMatches(env, vs, r, field, c, section);
    if (matches === null) return;
    const dests = arr(r.route);
    if (dests.length === 0) {
      ctx.report('error', 'MG_MISSING_FIELD', vs, `${field}.route`, 'a route needs at least one destination; it is not served');
      return;
    }
    const destinations: TcpRoute['destinations'] = [];
    dests.forEach((d, k) => {
      const w = obj(d).weight;
      const weight = w === undefined || w === null ? (dests.length === 1 ? 100 : 0) : (num(w) ?? 0);
      if (!Number.isInteger(weight) || weight <= 0) return;
      destinations.push({ cluster: destinationCluster(renv, obj(obj(d).destination), `${field}.route[${k}].destination`), weight });
    });
    if (destinations.length === 0) {
      ctx.report('error', 'MG_INVALID_WEIGHTS', vs, `${field}.route`, 'every destination has weight 0; the route is not served');
      return;
    }
    out.push({ name: `virtualservice/${vs.metadata.namespace}/${vs.metadata.name}/${section}/${i}`, source: sourceOf(vs, field), matches, destinations });
  });
  return out;
}

/** Match blocks holding for this sidecar and port: `mesh` (or no gateways), port, sourceLabels, sourceNamespace; null when none. */
function meshTcpMatches(env: OutboundEnv, vs: KubeObject, r: Obj, field: string, c: Candidate, section: 'tcp' | 'tls'): TcpMatch[] | null {
  const raw = arr(r.match);
  const blocks = raw.length === 0 ? [{}] : raw;
  const out: TcpMatch[] = [];
  blocks.forEach((b, j) => {
    const m = obj(b);
    const gws = arr(m.gateways).map(str).filter((g): g is string => g !== undefined && g !== '');
    if (gws.length > 0 && !gws.includes('mesh')) return;
    const port = num(m.port) ?? null;
    if (port !== null && port !== c.port) return;
    if (m.sourceLabels !== undefined && m.sourceLabels !== null && !matchesLabels(env.ctx.options.gatewayLabels, strMap(m.sourceLabels))) return;
    const sourceNamespace = str(m.sourceNamespace);
    if (sourceNamespace !== undefined && sourceNamespace !== '' && sourceNamespace !== env.namespace) return;
    let sniHosts: string[] = [];
    if (section === 'tls') {
      sniHosts = arr(m.sniHosts).map(str).filter((h): h is string => h !== undefined && h !== '').map((h) => h.toLowerCase());
      if (sniHosts.length === 0) {
        env.ctx.report('error', 'MG_MISSING_FIELD', vs, `${field}.match[${j}].sniHosts`, 'a tls route match needs sniHosts; this match block is not served');
        return;
      }
      if (sniHosts.includes('*')) sniHosts = [];
    }
    const destinationSubnets = arr(m.destinationSubnets).map(str).filter((x): x is string => x !== undefined && x !== '');
    out.push({ sniHosts, destinationSubnets, port });
  });
  return out.length === 0 ? null : out;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
