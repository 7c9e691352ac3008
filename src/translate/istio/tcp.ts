/**
 * Istio Gateway servers that relay bytes, and the VirtualService `tcp` and `tls` routes bound to them:
 *  - protocol TCP: `spec.tcp` routes (match on port and destinationSubnets);
 *  - protocol TLS, or HTTPS, with `tls.mode: PASSTHROUGH` (the enum's zero value, so also an absent
 *    mode): `spec.tls` routes matched on `sniHosts` (plus port and destinationSubnets). The gateway
 *    reads the SNI from the ClientHello and never terminates TLS;
 *  - protocol TLS with `tls.mode` SIMPLE, MUTUAL or OPTIONAL_MUTUAL: TLS is terminated with the
 *    server's credentials (as for HTTPS servers: `tlsContext`, `clientValidationOf`), one chain per
 *    server chosen by SNI, and the decrypted bytes follow the `spec.tcp` routes (Istio gateway.go
 *    createGatewayTCPFilterChainOpts: a non-passthrough TLS server uses buildGatewayNetworkFiltersFromTCPRoutes;
 *    `tls` routes there only come from Gateway API TLSRoutes, which meshgate does not read);
 *  - protocol TLS with `tls.mode: AUTO_PASSTHROUGH` (multi-network east-west gateways): no
 *    VirtualService; one route per Service (or MESH_INTERNAL ServiceEntry host) admitted by the
 *    server's hosts, per port (not UDP) and per DestinationRule subset, matched on the SNI
 *    `outbound_.<port>_.<subset>_.<fqdn>` (Istio model.BuildDNSSrvSubsetKey; subset empty for the
 *    whole service) and one of Istio's mTLS ALPNs, and relayed to that cluster without terminating
 *    TLS. Sorted by SNI.
 * Order: servers of a port in Gateway creation then list order, VirtualServices in creation order,
 * each one's routes in the author's order (first match). A port an HTTP listener already holds
 * stays HTTP (MG_PORT_CONFLICT); two servers of one port must agree on TCP vs TLS passthrough vs
 * TLS termination.
 */

import type { TcpListener, TcpMatch, TcpRoute, TlsContext } from '../../ir/types.js';
import { arr, num, obj, str, type Obj } from '../../lib/unknown.js';
import { compareByCreation } from '../../resources/resource-set.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { sourceOf, type TranslateContext } from '../types.js';
import { destinationRulesFor, type DestinationRuleIndex } from './destination-rules.js';
import { intersectHosts, namespaceAdmits, parseServerHost, type ServerHost } from './hosts.js';
import { bindVirtualServices, selectGateways, tlsContext, type GatewayInfo } from './index.js';
import { istioObjects } from './objects.js';
import { destinationCluster } from './routes.js';
import { clientValidationOf } from './tls.js';
import { labelledServiceEndpoints, serviceFqdn } from '../backends.js';

interface TcpServer {
  gateway: GatewayInfo;
  field: string;
  protocol: TcpListener['protocol'];
  /** AUTO_PASSTHROUGH: routes come from the service registry, not from VirtualServices. */
  auto: boolean;
  port: number;
  bindPort: number;
  address: string;
  hosts: ServerHost[];
  /** TLS_TERMINATE: the chain this server becomes. */
  chain: { name: string; serverNames: string[]; tls: TlsContext } | null;
}

export function translateIstioTcp(ctx: TranslateContext, resources: ResourceSet, httpPorts: Set<number>): TcpListener[] {
  const gateways = selectGateways(ctx, resources);
  const servers = gateways.flatMap((g) => tcpServers(ctx, resources, g));
  if (servers.length === 0) return [];
  const bound = bindVirtualServices(ctx, resources, gateways);
  const drs = destinationRulesFor(ctx, resources);
  const byPort = new Map<number, { listener: TcpListener; first: TcpServer }>();
  for (const s of servers) {
    const src = sourceOf(s.gateway.obj, s.field);
    if (httpPorts.has(s.bindPort)) {
      ctx.reportAt('error', 'MG_PORT_CONFLICT', src, `port ${s.port} is already served as HTTP(S); this ${label(s.protocol)} server is not served`);
      continue;
    }
    let entry = byPort.get(s.bindPort);
    if (entry === undefined) {
      entry = { listener: { name: `${s.address}_${s.bindPort}`, address: s.address, port: s.bindPort, externalPort: s.port, protocol: s.protocol, routes: [], tlsChains: [] }, first: s };
      byPort.set(s.bindPort, entry);
    } else if (entry.listener.protocol !== s.protocol) {
      const f = entry.first;
      ctx.reportAt('error', 'MG_PORT_CONFLICT', src, `port ${s.port} is already served as ${label(f.protocol)} for Gateway ${f.gateway.key} ${f.field}; this ${label(s.protocol)} server is not served`);
      continue;
    }
    if (s.chain !== null) {
      const routes: TcpRoute[] = [];
      for (const vs of bound.get(s.gateway.key) ?? []) routes.push(...vsRoutes(ctx, resources, drs, s, vs, routes));
      entry.listener.tlsChains.push({ ...s.chain, routes });
    } else if (s.auto) {
      const routes = entry.listener.routes;
      // A service admitted by two AUTO_PASSTHROUGH servers of the port keeps the first server's route.
      const taken = new Set(routes.flatMap((e) => e.matches.flatMap((m) => m.sniHosts)));
      for (const r of autoPassthroughRoutes(ctx, resources, drs, s)) if (!taken.has(r.matches[0].sniHosts[0])) routes.push(r);
    } else {
      for (const vs of bound.get(s.gateway.key) ?? []) entry.listener.routes.push(...vsRoutes(ctx, resources, drs, s, vs, entry.listener.routes));
    }
  }
  return [...byPort.values()].map((e) => e.listener).sort((a, b) => a.port - b.port);
}

/** How diagnostics name a kind of TCP listener. */
function label(p: TcpListener['protocol']): string {
  return p === 'TLS_TERMINATE' ? 'TLS-terminating' : p;
}

function tcpServers(ctx: TranslateContext, resources: ResourceSet, g: GatewayInfo): TcpServer[] {
  const gw = g.obj;
  const out: TcpServer[] = [];
  arr(obj(gw.body.spec).servers).forEach((raw, i) => {
    const server = obj(raw);
    const field = `spec.servers[${i}]`;
    const port = obj(server.port);
    const number = num(port.number);
    const protocol = (str(port.protocol) ?? '').toUpperCase();
    if (number === undefined || !Number.isInteger(number) || number < 1 || number > 65535) return;
    // An HTTPS server without tls settings is an error reported with the HTTP servers.
    if (protocol === 'HTTPS' && (server.tls === null || typeof server.tls !== 'object')) return;
    const tls = obj(server.tls);
    const mode = str(tls.mode) ?? 'PASSTHROUGH';
    let kind: TcpListener['protocol'];
    let auto = false;
    if (protocol === 'TCP') kind = 'TCP';
    else if ((protocol === 'TLS' || protocol === 'HTTPS') && mode === 'PASSTHROUGH') kind = 'TLS';
    else if (protocol === 'TLS' && mode === 'AUTO_PASSTHROUGH') {
      kind = 'TLS';
      auto = true;
    } else if (protocol === 'TLS' && (mode === 'SIMPLE' || mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL')) kind = 'TLS_TERMINATE';
    else if (protocol === 'TLS') {
      // (HTTPS servers with other modes are terminated, or reported, with the HTTP servers.)
      ctx.report('warning', 'MG_UNSUPPORTED', gw, `${field}.tls.mode`, `tls.mode ${mode} on a TLS server is not supported (PASSTHROUGH and AUTO_PASSTHROUGH relay TLS; SIMPLE, MUTUAL and OPTIONAL_MUTUAL terminate it); the server is not served`);
      return;
    } else return;
    if (protocol === 'HTTPS' && (tls.mode === undefined || tls.mode === null)) {
      ctx.report('info', 'MG_UNSUPPORTED', gw, `${field}.tls`, 'tls.mode is not set, which Istio reads as PASSTHROUGH: the server relays TLS by SNI without terminating it (set mode: SIMPLE and credentialName to terminate)');
    }
    const hosts = arr(server.hosts).map(str).filter((h): h is string => h !== undefined && h !== '').map((h) => parseServerHost(h, gw.metadata.namespace));
    if (hosts.length === 0) return;
    let chain: TcpServer['chain'] = null;
    if (kind === 'TLS_TERMINATE') {
      // The same TLS settings as an HTTPS server (certificates by SNI, versions, ciphers, client certificates).
      const serverNames = hosts.some((h) => h.dnsName === '*') ? [] : [...new Set(hosts.map((h) => h.dnsName))].sort();
      const context = tlsContext(ctx, resources, gw, tls, `${field}.tls`, serverNames);
      if (context === null) return;
      if (mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL') {
        context.clientValidation = clientValidationOf(ctx, resources, gw, tls, `${field}.tls`, mode);
        if (context.clientValidation === null) return;
      }
      const chainLabel = str(server.name) || str(port.name) || String(i);
      chain = { name: `tls.${number}.${chainLabel}.${gw.metadata.name}.${gw.metadata.namespace}`, serverNames, tls: context };
    }
    const bind = str(server.bind);
    out.push({ gateway: g, field, protocol: kind, auto, port: number, bindPort: ctx.options.portMap[String(number)] ?? number, address: bind !== undefined && bind !== '' ? bind : ctx.options.bindAddress, hosts, chain });
  });
  return out;
}

/** The routes one VirtualService contributes to one TCP/TLS server. */
function vsRoutes(ctx: TranslateContext, resources: ResourceSet, drs: DestinationRuleIndex, s: TcpServer, vs: KubeObject, existing: TcpRoute[]): TcpRoute[] {
  const spec = obj(vs.body.spec);
  const ns = vs.metadata.namespace;
  const vsHosts = arr(spec.hosts).map(str).filter((h): h is string => h !== undefined && h !== '');
  // The VirtualService must be admitted by one of this server's hosts (as for HTTP).
  const admitted = vsHosts.filter((h) => s.hosts.some((sh) => namespaceAdmits(sh, ns) && intersectHosts(sh.dnsName, h) !== null));
  if (admitted.length === 0) return [];
  // Terminated TLS is routed like TCP (Istio buildGatewayNetworkFiltersFromTCPRoutes).
  const section = s.protocol === 'TLS' ? 'tls' : 'tcp';
  const out: TcpRoute[] = [];
  const env = { ctx, resources, drs, vs, gateways: [s.gateway.key], port: s.port };
  arr(spec[section]).forEach((raw, i) => {
    const r = obj(raw);
    const field = `spec.${section}[${i}]`;
    const name = `virtualservice/${ns}/${vs.metadata.name}/${section}/${i}`;
    if (existing.some((e) => e.name === name)) return;
    const matches = tcpMatches(ctx, vs, r, field, s, admitted);
    if (matches === null) return;
    const dests = arr(r.route);
    if (dests.length === 0) {
      ctx.report('error', 'MG_MISSING_FIELD', vs, `${field}.route`, 'a route needs at least one destination; it is not served');
      return;
    }
    const destinations: TcpRoute['destinations'] = [];
    dests.forEach((d, k) => {
      const w = obj(d).weight;
      const weight = w === undefined || w === null ? (dests.length === 1 ? 100 : 0) : num(w) ?? 0;
      if (weight <= 0) return;
      destinations.push({ cluster: destinationCluster(env, obj(obj(d).destination), `${field}.route[${k}].destination`), weight });
    });
    if (destinations.length === 0) {
      ctx.report('error', 'MG_INVALID_WEIGHTS', vs, `${field}.route`, 'every destination has weight 0; the route is not served');
      return;
    }
    out.push({ name, source: sourceOf(vs, field), matches, destinations });
  });
  return out;
}

/** Istio's mTLS ALPNs (listener.go allIstioMtlsALPNs), required of AUTO_PASSTHROUGH clients. */
const ISTIO_MTLS_ALPNS = ['istio', 'istio-peer-exchange', 'istio-http/1.0', 'istio-http/1.1', 'istio-h2'];

/** The label Istio puts on workloads whose sidecar terminates Istio mTLS. */
const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

/**
 * AUTO_PASSTHROUGH (Istio gateway.go builtAutoPassthroughFilterChains): for every service host the
 * server's hosts admit (namespace part honoured; MESH_EXTERNAL ServiceEntries skipped, as Istio
 * does), every port but UDP ones, the whole service and each DestinationRule subset: a route on the
 * SNI `outbound_.<port>_.<subset>_.<fqdn>` (lowercase: SNI is matched lowercased) with one of
 * Istio's mTLS ALPNs. Sorted by SNI.
 *
 * Each route goes to an SNI-DNAT cluster named like the SNI (as Istio names them) holding only the
 * endpoints that terminate Istio mTLS: Pods (or WorkloadEntries, ServiceEntry endpoints) labelled
 * `security.istio.io/tlsMode: istio`. The ALPN check alone protects nothing (a client offers what
 * it likes); without this filter the other network could reach plaintext or non-mesh TLS workloads
 * (Istio: "filtering out plaintext destinations in EDS"). No such endpoint: the connection closes.
 */
function autoPassthroughRoutes(ctx: TranslateContext, resources: ResourceSet, drs: DestinationRuleIndex, s: TcpServer): TcpRoute[] {
  const gw = s.gateway.obj;
  const targets: { fqdn: string; namespace: string; ports: number[]; service: string | null }[] = [];
  for (const svc of resources.ofKind('Service')) {
    const ports = arr(obj(svc.body.spec).ports).map(obj).filter((p) => (str(p.protocol) ?? 'TCP').toUpperCase() !== 'UDP').map((p) => num(p.port)).filter((n): n is number => n !== undefined);
    targets.push({ fqdn: serviceFqdn(svc.metadata.name, svc.metadata.namespace), namespace: svc.metadata.namespace, ports, service: svc.metadata.name });
  }
  for (const se of [...istioObjects(resources, 'ServiceEntry')].sort(compareByCreation)) {
    const spec = obj(se.body.spec);
    if ((str(spec.location) ?? 'MESH_EXTERNAL') !== 'MESH_INTERNAL') continue;
    const ports = arr(spec.ports).map(obj).filter((p) => (str(p.protocol) ?? '').toUpperCase() !== 'UDP').map((p) => num(p.number)).filter((n): n is number => n !== undefined);
    for (const h of arr(spec.hosts).map(str)) {
      if (h === undefined || h === '' || h.includes('*')) continue;
      targets.push({ fqdn: h.toLowerCase(), namespace: se.metadata.namespace, ports, service: null });
    }
  }
  const bySni = new Map<string, TcpRoute>();
  const env = { ctx, resources, drs, vs: gw, gateways: [s.gateway.key], port: s.port };
  for (const t of targets) {
    if (!s.hosts.some((sh) => namespaceAdmits(sh, t.namespace) && intersectHosts(sh.dnsName, t.fqdn) === t.fqdn)) continue;
    const subsets = ['', ...[...(drs.lookup(t.fqdn, t.namespace)?.subsets.keys() ?? [])]];
    for (const port of [...new Set(t.ports)]) {
      for (const subset of subsets) {
        const sni = `outbound_.${port}_.${subset}_.${t.fqdn}`.toLowerCase();
        if (bySni.has(sni)) continue;
        const base = ctx.getCluster(destinationCluster(env, { host: t.fqdn, port: { number: port }, ...(subset === '' ? {} : { subset }) }, `${s.field}.tls`));
        if (base === undefined) continue;
        const mesh = t.service !== null ? labelledServiceEndpoints(resources, t.namespace, t.service, port, { [TLS_MODE_LABEL]: 'istio' }) : meshEntryAddresses(resources, t.namespace);
        const cluster = sni;
        // The client's own Istio mTLS passes through: no TLS of the gateway's (nor auto mTLS) on top.
        const { autoMtls: _autoMtls, ...plain } = base;
        const endpoints = base.endpoints.filter((e) => mesh.has(t.service !== null ? `${e.address}:${e.port}` : e.address)).map(({ tlsMode: _tlsMode, ...e }) => e);
        ctx.addCluster({ ...plain, name: cluster, endpoints, tls: null });
        bySni.set(sni, {
          name: `gateway/${gw.metadata.namespace}/${gw.metadata.name}/${s.field.slice('spec.'.length)}/${sni}`,
          source: sourceOf(gw, `${s.field}.tls.mode`),
          matches: [{ sniHosts: [sni], destinationSubnets: [], port: null, applicationProtocols: [...ISTIO_MTLS_ALPNS] }],
          destinations: [{ cluster, weight: 100 }],
        });
      }
    }
  }
  return [...bySni.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map((e) => e[1]);
}

/**
 * Addresses in `namespace` of ServiceEntry endpoints and WorkloadEntries labelled
 * `security.istio.io/tlsMode: istio` (the mesh-capable endpoints of MESH_INTERNAL entries).
 */
function meshEntryAddresses(resources: ResourceSet, namespace: string): Set<string> {
  const out = new Set<string>();
  const add = (o: Obj): void => {
    const address = str(o.address);
    if (address !== undefined && str(obj(o.labels)[TLS_MODE_LABEL]) === 'istio') out.add(address);
  };
  for (const se of istioObjects(resources, 'ServiceEntry')) if (se.metadata.namespace === namespace) for (const e of arr(obj(se.body.spec).endpoints)) add(obj(e));
  for (const we of istioObjects(resources, 'WorkloadEntry')) {
    if (we.metadata.namespace !== namespace) continue;
    const spec = obj(we.body.spec);
    add({ address: spec.address, labels: { ...we.metadata.labels, ...obj(spec.labels) } });
  }
  return out;
}

/**
 * Match blocks that apply to this server: a block naming other gateways or another port does not;
 * none left means the route is not for this server (null). TLS routes need sniHosts, each admitted
 * by the VirtualService's hosts (Istio validation).
 */
function tcpMatches(ctx: TranslateContext, vs: KubeObject, r: Obj, field: string, s: TcpServer, vsHosts: string[]): TcpMatch[] | null {
  const raw = arr(r.match);
  const blocks = raw.length === 0 ? [{}] : raw;
  const out: TcpMatch[] = [];
  blocks.forEach((b, j) => {
    const m = obj(b);
    const mf = `${field}.match[${j}]`;
    const gws = arr(m.gateways).map(str).filter((g): g is string => g !== undefined);
    if (gws.length > 0 && !gws.some((g) => (g.includes('/') ? g : `${vs.metadata.namespace}/${g}`) === s.gateway.key)) return;
    const port = num(m.port) ?? null;
    if (port !== null && port !== s.port) return;
    let sniHosts: string[] = [];
    if (s.protocol === 'TLS') {
      sniHosts = arr(m.sniHosts).map(str).filter((h): h is string => h !== undefined && h !== '').map((h) => h.toLowerCase());
      if (sniHosts.length === 0) {
        ctx.report('error', 'MG_MISSING_FIELD', vs, `${mf}.sniHosts`, 'a tls route match needs sniHosts; this match block is not served');
        return;
      }
      const stray = sniHosts.filter((h) => !vsHosts.some((v) => intersectHosts(v, h) !== null));
      if (stray.length > 0) ctx.report('warning', 'MG_INVALID_FIELD', vs, `${mf}.sniHosts`, `sniHosts ${stray.join(', ')} are not among the VirtualService's hosts (Istio rejects this); they are matched anyway`);
      sniHosts = sniHosts.includes('*') ? [] : sniHosts;
    }
    const destinationSubnets = arr(m.destinationSubnets).map(str).filter((c): c is string => c !== undefined && isCidr(c));
    out.push({ sniHosts, destinationSubnets, port });
  });
  return out.length === 0 ? null : out;
}

/** `a.b.c.d[/n]` or an IPv6 address with optional `/n` (a bare address is a host route). */
function isCidr(s: string): boolean {
  const [addr, len] = s.split('/');
  const v4 = /^(\d{1,3})(\.\d{1,3}){3}$/.test(addr);
  const v6 = !v4 && addr.includes(':') && /^[0-9a-fA-F:.]+$/.test(addr);
  if (!v4 && !v6) return false;
  if (len === undefined) return true;
  const n = Number(len);
  return Number.isInteger(n) && n >= 0 && n <= (v4 ? 32 : 128);
}
