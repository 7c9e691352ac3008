/**
 * Istio Gateway servers that relay bytes, and the VirtualService `tcp` and `tls` routes bound to them:
 *  - protocol TCP: `spec.tcp` routes (match on port and destinationSubnets);
 *  - protocol TLS, or HTTPS, with `tls.mode: PASSTHROUGH` (the enum's zero value, so also an absent
 *    mode): `spec.tls` routes matched on `sniHosts` (plus port and destinationSubnets). The gateway
 *    reads the SNI from the ClientHello and never terminates TLS.
 * Order: servers of a port in Gateway creation then list order, VirtualServices in creation order,
 * each one's routes in the author's order (first match). A port an HTTP listener already holds
 * stays HTTP (MG_PORT_CONFLICT); two servers of one port must agree on TCP vs TLS.
 * AUTO_PASSTHROUGH (multi-network east-west routing by `outbound_.<port>_.<subset>_.<host>` SNI) and
 * TLS termination on a TLS server (mode SIMPLE/MUTUAL on protocol TLS) are not served.
 */

import type { TcpListener, TcpMatch, TcpRoute } from '../../ir/types.js';
import { arr, num, obj, str, type Obj } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { sourceOf, type TranslateContext } from '../types.js';
import { DestinationRuleIndex } from './destination-rules.js';
import { intersectHosts, namespaceAdmits, parseServerHost, type ServerHost } from './hosts.js';
import { bindVirtualServices, selectGateways, type GatewayInfo } from './index.js';
import { destinationCluster } from './routes.js';

interface TcpServer {
  gateway: GatewayInfo;
  field: string;
  protocol: 'TCP' | 'TLS';
  port: number;
  bindPort: number;
  address: string;
  hosts: ServerHost[];
}

export function translateIstioTcp(ctx: TranslateContext, resources: ResourceSet, httpPorts: Set<number>): TcpListener[] {
  const gateways = selectGateways(ctx, resources);
  const servers = gateways.flatMap((g) => tcpServers(ctx, g));
  if (servers.length === 0) return [];
  const bound = bindVirtualServices(ctx, resources, gateways);
  const drs = new DestinationRuleIndex(resources);
  const byPort = new Map<number, { listener: TcpListener; first: TcpServer }>();
  for (const s of servers) {
    const src = sourceOf(s.gateway.obj, s.field);
    if (httpPorts.has(s.bindPort)) {
      ctx.reportAt('error', 'MG_PORT_CONFLICT', src, `port ${s.port} is already served as HTTP(S); this ${s.protocol} server is not served`);
      continue;
    }
    let entry = byPort.get(s.bindPort);
    if (entry === undefined) {
      entry = { listener: { name: `${s.address}_${s.bindPort}`, address: s.address, port: s.bindPort, externalPort: s.port, protocol: s.protocol, routes: [] }, first: s };
      byPort.set(s.bindPort, entry);
    } else if (entry.listener.protocol !== s.protocol) {
      const f = entry.first;
      ctx.reportAt('error', 'MG_PORT_CONFLICT', src, `port ${s.port} is already served as ${f.protocol} for Gateway ${f.gateway.key} ${f.field}; this ${s.protocol} server is not served`);
      continue;
    }
    for (const vs of bound.get(s.gateway.key) ?? []) entry.listener.routes.push(...vsRoutes(ctx, resources, drs, s, vs, entry.listener.routes));
  }
  return [...byPort.values()].map((e) => e.listener).sort((a, b) => a.port - b.port);
}

function tcpServers(ctx: TranslateContext, g: GatewayInfo): TcpServer[] {
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
    let kind: 'TCP' | 'TLS';
    if (protocol === 'TCP') kind = 'TCP';
    else if ((protocol === 'TLS' || protocol === 'HTTPS') && mode === 'PASSTHROUGH') kind = 'TLS';
    else if (protocol === 'TLS') {
      // (HTTPS servers with other modes are terminated, or reported, with the HTTP servers.)
      ctx.report('warning', 'MG_UNSUPPORTED', gw, `${field}.tls.mode`, `tls.mode ${mode} on a TLS server is not supported (only PASSTHROUGH relays TLS; AUTO_PASSTHROUGH is for multi-network east-west gateways); the server is not served`);
      return;
    } else return;
    if (protocol === 'HTTPS' && (tls.mode === undefined || tls.mode === null)) {
      ctx.report('info', 'MG_UNSUPPORTED', gw, `${field}.tls`, 'tls.mode is not set, which Istio reads as PASSTHROUGH: the server relays TLS by SNI without terminating it (set mode: SIMPLE and credentialName to terminate)');
    }
    const hosts = arr(server.hosts).map(str).filter((h): h is string => h !== undefined && h !== '').map((h) => parseServerHost(h, gw.metadata.namespace));
    if (hosts.length === 0) return;
    const bind = str(server.bind);
    out.push({ gateway: g, field, protocol: kind, port: number, bindPort: ctx.options.portMap[String(number)] ?? number, address: bind !== undefined && bind !== '' ? bind : ctx.options.bindAddress, hosts });
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
  const section = s.protocol === 'TCP' ? 'tcp' : 'tls';
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
