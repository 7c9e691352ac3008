/**
 * validateIR: the last gate before a snapshot is served. Translators should never produce what this
 * rejects; when one does, the control plane keeps serving the last good snapshot.
 */
import type { IRSnapshot, Regex, RouteMatch, StringMatch } from './types.js';
import { validateSidecarView } from './validate-sidecar.js';

/** Problems found, as sentences; empty when the snapshot is sound. */
/** `0.0.0.0`, `::` (and their long forms): a socket bound there takes the port on every address. */
export function isWildcardAddress(address: string): boolean {
  return address === '0.0.0.0' || /^[0:]+$/.test(address);
}

export function validateIR(ir: IRSnapshot): string[] {
  const problems: string[] = [];
  const clusters = new Set<string>();
  for (const c of ir.clusters) {
    if (clusters.has(c.name)) problems.push(`cluster ${c.name} defined twice`);
    clusters.add(c.name);
    for (const e of c.endpoints) if (!(e.port > 0 && e.port < 65536)) problems.push(`cluster ${c.name}: endpoint ${e.address} has invalid port ${e.port}`);
  }
  // One listener per address and port. HTTP/HTTPS listeners may pair a wildcard address (0.0.0.0,
  // ::) with specific ones on a port: the wildcard socket hands each connection to the listener of
  // the address it arrived at (runtime/listeners). A TCP listener takes its port on every address
  // it overlaps.
  const ports = new Map<number, { address: string; tcp: boolean }[]>();
  const claim = (address: string, port: number, tcp: boolean): void => {
    const held = ports.get(port) ?? [];
    const clash = held.some((h) => h.address === address || ((tcp || h.tcp) && (isWildcardAddress(h.address) || isWildcardAddress(address))));
    if (clash) problems.push(`port ${port} has two listeners`);
    held.push({ address, tcp });
    ports.set(port, held);
  };
  for (const l of ir.listeners) {
    claim(l.address, l.port, false);
    if (l.protocol === 'HTTP' && l.filterChains.length !== 1) problems.push(`listener ${l.name}: HTTP listeners have exactly one filter chain`);
    for (const chain of l.filterChains) {
      if (l.protocol === 'HTTPS' && (!chain.tls || chain.tls.certificates.length === 0)) problems.push(`listener ${l.name} chain ${chain.name}: HTTPS without a certificate`);
      for (const vh of chain.virtualHosts) {
        for (const r of vh.routes) {
          const where = `route ${r.name}`;
          if (r.matches.length === 0) problems.push(`${where}: no match block`);
          for (const m of r.matches) checkMatch(m, where, problems);
          if (r.action.kind === 'forward') {
            if (r.action.destinations.length === 0) problems.push(`${where}: forward without destinations`);
            for (const d of r.action.destinations) {
              if (!clusters.has(d.cluster)) problems.push(`${where}: unknown cluster ${d.cluster}`);
              if (!(Number.isInteger(d.weight) && d.weight > 0)) problems.push(`${where}: weight ${d.weight} is not a positive integer`);
            }
            const p = r.action.rewrite?.path;
            if (p?.kind === 'regex') checkRegex(p.regex, where, problems);
            for (const m of r.action.mirrors) if (!clusters.has(m.cluster)) problems.push(`${where}: unknown mirror cluster ${m.cluster}`);
            if (r.action.retries !== null && !(Number.isInteger(r.action.retries.numRetries) && r.action.retries.numRetries >= 1)) problems.push(`${where}: retries.numRetries ${r.action.retries.numRetries} is not a positive integer`);
          } else if (r.action.kind === 'direct') {
            if (!(r.action.status >= 200 && r.action.status <= 599)) problems.push(`${where}: direct response status ${r.action.status}`);
          } else if (![301, 302, 303, 307, 308].includes(r.action.responseCode)) {
            problems.push(`${where}: redirect code ${r.action.responseCode}`);
          }
        }
      }
    }
  }
  for (const l of ir.listeners) {
    if (l.passthrough === undefined || l.passthrough.length === 0) continue;
    if (l.protocol !== 'HTTPS') problems.push(`listener ${l.name}: passthrough routes on a ${l.protocol} listener`);
    for (const r of l.passthrough) {
      if (r.matches.length === 0 || r.matches.some((m) => m.sniHosts.length === 0)) problems.push(`listener ${l.name} passthrough route ${r.name}: every match must name SNI hosts`);
      if (r.destinations.length === 0) problems.push(`listener ${l.name} passthrough route ${r.name}: no destination`);
      for (const d of r.destinations) if (!clusters.has(d.cluster)) problems.push(`listener ${l.name} passthrough route ${r.name}: unknown cluster ${d.cluster}`);
    }
  }
  for (const l of ir.tcpListeners) {
    claim(l.address, l.port, true);
    if (l.protocol === 'TLS_TERMINATE' && l.tlsChains.length === 0) problems.push(`tcp listener ${l.name}: TLS_TERMINATE without a chain`);
    for (const c of l.tlsChains) if (c.tls.certificates.length === 0) problems.push(`tcp listener ${l.name} chain ${c.name}: no certificate`);
    for (const r of [...l.routes, ...l.tlsChains.flatMap((c) => c.routes)]) {
      if (r.matches.length === 0) problems.push(`tcp route ${r.name}: no match block`);
      if (r.destinations.length === 0) problems.push(`tcp route ${r.name}: no destination`);
      for (const d of r.destinations) {
        if (!clusters.has(d.cluster)) problems.push(`tcp route ${r.name}: unknown cluster ${d.cluster}`);
        if (!(Number.isInteger(d.weight) && d.weight > 0)) problems.push(`tcp route ${r.name}: weight ${d.weight} is not a positive integer`);
      }
    }
  }
  for (const p of ir.security.extAuthzProviders ?? []) {
    if (!clusters.has(p.cluster)) problems.push(`ext-authz provider ${p.name}: unknown cluster ${p.cluster}`);
    if (!(Number.isInteger(p.timeoutMs) && p.timeoutMs > 0)) problems.push(`ext-authz provider ${p.name}: timeoutMs ${p.timeoutMs} is not a positive integer`);
  }
  if (ir.sidecar !== undefined) problems.push(...validateSidecarView(ir, ir.sidecar, clusters));
  const hops = ir.security.numTrustedProxies;
  if (hops !== undefined && !(Number.isInteger(hops) && hops >= 0)) problems.push(`security: numTrustedProxies ${hops} is not a non-negative integer`);
  // A server name goes out as a header value: no control characters, no leading or trailing space.
  const ps = ir.security.proxyHeaders?.server;
  const server = ps?.mode === 'overwrite' ? ps.name : null;
  if (server !== null && !/^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/.test(server)) problems.push(`security: proxyHeaders.server ${JSON.stringify(server)} is not a header value`);
  return problems;
}

export function checkMatch(m: RouteMatch, where: string, problems: string[]): void {
  if (m.path?.kind === 'regex') checkRegex(m.path.regex, where, problems);
  for (const s of [m.method, m.scheme, m.authority, ...m.headers.map((h) => h.match), ...m.queryParams.map((q) => q.match)]) checkString(s, where, problems);
}

function checkString(s: StringMatch | null, where: string, problems: string[]): void {
  if (s?.kind === 'regex') checkRegex(s.regex, where, problems);
}

function checkRegex(r: Regex, where: string, problems: string[]): void {
  try {
    new RegExp(r.source, r.flags);
  } catch (e) {
    problems.push(`${where}: regex ${r.original} does not compile (${(e as Error).message})`);
  }
}
