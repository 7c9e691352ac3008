/**
 * validateIR's checks of a sidecar view (`IRSnapshot.sidecar`, see sidecar.ts): every name a table
 * refers to exists, routes and relays point at known clusters with positive integer weights, and a
 * sidecar snapshot binds no listeners of its own.
 */
import type { IRSnapshot, Listener, TcpListener } from './types.js';
import type { SidecarView } from './sidecar.js';
import { ipFamily } from '../lib/ip.js';
import { checkMatch } from './validate.js';

export function validateSidecarView(ir: IRSnapshot, view: SidecarView, clusters: ReadonlySet<string>): string[] {
  const problems: string[] = [];
  if (ir.listeners.length > 0 || ir.tcpListeners.length > 0) problems.push('sidecar view: listeners and tcpListeners must be empty');
  const http = tables(view.outboundHttp, 'outbound HTTP table', problems);
  const inboundHttp = tables(view.inboundHttp, 'inbound HTTP table', problems);
  const tcp = new Set<string>();
  for (const t of view.outboundTcp) {
    if (tcp.has(t.name)) problems.push(`sidecar view: outbound TCP relay ${t.name} defined twice`);
    tcp.add(t.name);
    checkRelay(t, clusters, problems);
  }
  for (const l of [...view.outboundHttp, ...view.inboundHttp]) checkTable(l, clusters, problems);
  const seen = new Set<string>();
  for (const s of view.outbound) {
    const key = `${s.host}:${s.port}`;
    if (seen.has(key)) problems.push(`sidecar view: outbound service ${key} listed twice`);
    seen.add(key);
    if (!(s.port > 0 && s.port < 65536)) problems.push(`sidecar view: outbound service ${key} has an invalid port`);
    if (s.httpRoutes === null && s.tcpRoutes === null) problems.push(`sidecar view: outbound service ${key} has neither HTTP routes nor a TCP relay`);
    if (s.httpRoutes !== null && !http.has(s.httpRoutes)) problems.push(`sidecar view: outbound service ${key}: unknown HTTP table ${s.httpRoutes}`);
    if (s.tcpRoutes !== null && !tcp.has(s.tcpRoutes)) problems.push(`sidecar view: outbound service ${key}: unknown TCP relay ${s.tcpRoutes}`);
  }
  const ports = new Set<number>();
  for (const p of view.inbound) {
    if (ports.has(p.port)) problems.push(`sidecar view: inbound port ${p.port} listed twice`);
    ports.add(p.port);
    if (!(p.port > 0 && p.port < 65536)) problems.push(`sidecar view: inbound port ${p.port} is invalid`);
    if (!clusters.has(p.cluster)) problems.push(`sidecar view: inbound port ${p.port}: unknown cluster ${p.cluster}`);
    if (p.httpRoutes !== null && !inboundHttp.has(p.httpRoutes)) problems.push(`sidecar view: inbound port ${p.port}: unknown HTTP table ${p.httpRoutes}`);
  }
  if (view.dns !== undefined) checkDns(view.dns, problems);
  return problems;
}

function checkDns(dns: NonNullable<SidecarView['dns']>, problems: string[]): void {
  const hosts = new Set<string>();
  for (const h of dns.hosts) {
    if (hosts.has(h.host)) problems.push(`sidecar view: DNS host ${h.host} listed twice`);
    hosts.add(h.host);
    if (!/^(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$/.test(h.host) || h.host.length > 253) problems.push(`sidecar view: DNS host "${h.host}" is not a lowercase domain name`);
    if (h.addresses.length === 0) problems.push(`sidecar view: DNS host ${h.host} has no address`);
    for (const a of h.addresses) if (ipFamily(a) === 0) problems.push(`sidecar view: DNS host ${h.host}: "${a}" is not an IP address`);
  }
}

function tables(list: Listener[], what: string, problems: string[]): Set<string> {
  const names = new Set<string>();
  for (const l of list) {
    if (names.has(l.name)) problems.push(`sidecar view: ${what} ${l.name} defined twice`);
    names.add(l.name);
    if (l.protocol !== 'HTTP' || l.filterChains.length !== 1) problems.push(`sidecar view: ${what} ${l.name} must be HTTP with exactly one filter chain`);
  }
  return names;
}

function checkTable(l: Listener, clusters: ReadonlySet<string>, problems: string[]): void {
  for (const chain of l.filterChains) {
    const domains = new Set<string>();
    for (const vh of chain.virtualHosts) {
      for (const d of vh.domains) {
        const key = JSON.stringify(d);
        if (domains.has(key)) problems.push(`sidecar view: table ${l.name}: domain ${key} in two virtual hosts`);
        domains.add(key);
      }
      for (const r of vh.routes) {
        const where = `sidecar view: table ${l.name} route ${r.name}`;
        if (r.matches.length === 0) problems.push(`${where}: no match block`);
        for (const m of r.matches) checkMatch(m, where, problems);
        if (r.action.kind !== 'forward') continue;
        if (r.action.destinations.length === 0) problems.push(`${where}: forward without destinations`);
        for (const d of r.action.destinations) {
          if (!clusters.has(d.cluster)) problems.push(`${where}: unknown cluster ${d.cluster}`);
          if (!(Number.isInteger(d.weight) && d.weight > 0)) problems.push(`${where}: weight ${d.weight} is not a positive integer`);
        }
        for (const m of r.action.mirrors) if (!clusters.has(m.cluster)) problems.push(`${where}: unknown mirror cluster ${m.cluster}`);
      }
    }
  }
}

function checkRelay(t: TcpListener, clusters: ReadonlySet<string>, problems: string[]): void {
  if (t.routes.length === 0) problems.push(`sidecar view: relay ${t.name} has no route`);
  for (const r of t.routes) {
    if (r.matches.length === 0) problems.push(`sidecar view: relay ${t.name} route ${r.name}: no match block`);
    if (r.destinations.length === 0) problems.push(`sidecar view: relay ${t.name} route ${r.name}: no destination`);
    for (const d of r.destinations) {
      if (!clusters.has(d.cluster)) problems.push(`sidecar view: relay ${t.name} route ${r.name}: unknown cluster ${d.cluster}`);
      if (!(Number.isInteger(d.weight) && d.weight > 0)) problems.push(`sidecar view: relay ${t.name} route ${r.name}: weight ${d.weight} is not a positive integer`);
    }
  }
}
