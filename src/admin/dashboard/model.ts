/**
 * Readable views of an IR snapshot: route and cluster rows for the dashboard and for the
 * `meshgate routes` / `meshgate clusters` tables (live, from `/config_dump`, or offline, from
 * `meshgate translate DIR --routes`). Pure: IR in, rows out.
 */
import type { Cluster, DomainMatch, FaultInjection, IRSnapshot, Mirror, PathMatch, Route, RouteAction, RouteMatch, SourceRef, StringMatch, TcpMatch, TcpRoute } from '../../ir/types.js';

export interface RouteRow {
  listener: string;
  port: number;
  protocol: string;
  /** Virtual host name (`host:port`). */
  vhost: string;
  domains: string;
  route: string;
  match: string;
  action: string;
  /** Weighted destinations, for the dashboard's configured-vs-real split. */
  destinations: { cluster: string; weight: number; percent: number }[];
  source: string;
  sourceRef: SourceRef;
}

/** Outlier-detection state of one endpoint, as the data plane reports it (see `outlierStates`). */
export interface EndpointOutlierState {
  /** Ejected now (by at least one worker). */
  ejected: boolean;
  /** When the current ejection ends at the latest (epoch ms); null when not ejected. */
  ejectedUntil: number | null;
  /** Times ejected (summed over workers). */
  timesEjected: number;
}

export interface EndpointRow {
  address: string;
  port: number;
  ready: boolean;
  /** `healthy`, `not ready` (the Service says so) or `ejected` (outlier detection). */
  health: 'healthy' | 'not ready' | 'ejected';
  /** null when outlier detection never ejected the endpoint (or the state is not known: offline tables). */
  outlier: EndpointOutlierState | null;
}

export interface ClusterRow {
  cluster: string;
  service: string;
  subset: string;
  discovery: string;
  lbPolicy: string;
  /** Whether the cluster has outlier detection (DestinationRule trafficPolicy.outlierDetection). */
  outlierDetection: boolean;
  endpoints: EndpointRow[];
  ready: number;
  total: number;
  /** Endpoints ejected now. */
  ejected: number;
}

function domain(d: DomainMatch): string {
  return d.kind === 'exact' ? d.host : d.kind === 'suffix' ? `*${d.suffix}` : '*';
}

function stringMatch(m: StringMatch): string {
  if (m.kind === 'regex') return `~${m.regex.original}`;
  const ic = m.ignoreCase ? ' (i)' : '';
  return m.kind === 'exact' ? `=${m.value}${ic}` : m.kind === 'prefix' ? `^${m.value}${ic}` : `$${m.value}${ic}`;
}

function pathMatch(p: PathMatch): string {
  switch (p.kind) {
    case 'exact':
      return `${p.value}${p.ignoreCase ? ' (i)' : ''}`;
    case 'prefix':
      return `${p.value}*${p.ignoreCase ? ' (i)' : ''}`;
    case 'segment-prefix':
      return `${p.value === '/' ? '/' : `${p.value}/`}**${p.ignoreCase ? ' (i)' : ''}`;
    case 'regex':
      return `~${p.regex.original}`;
  }
}

/** One RouteMatch as `path & method=GET & header:x-canary=always`; `*` for a catch-all. */
export function describeMatch(m: RouteMatch): string {
  const parts: string[] = [];
  if (m.path !== null) parts.push(pathMatch(m.path));
  if (m.method !== null) parts.push(`method${stringMatch(m.method)}`);
  if (m.scheme !== null) parts.push(`scheme${stringMatch(m.scheme)}`);
  if (m.authority !== null) parts.push(`authority${stringMatch(m.authority)}`);
  if (m.port !== null) parts.push(`port=${m.port}`);
  for (const h of m.headers) parts.push(`${h.invert ? '!' : ''}header:${h.name}${h.match === null ? '' : stringMatch(h.match)}`);
  for (const q of m.queryParams) parts.push(`query:${q.name}${q.match === null ? '' : stringMatch(q.match)}`);
  return parts.length === 0 ? '*' : parts.join(' & ');
}

export function describeAction(a: RouteAction): string {
  switch (a.kind) {
    case 'forward': {
      const total = a.destinations.reduce((n, d) => n + d.weight, 0);
      const dests = a.destinations.map((d) => (a.destinations.length === 1 ? d.cluster : `${d.cluster} ${pct(d.weight, total)}%`)).join(', ');
      return `-> ${dests}${a.timeoutMs !== null ? ` (timeout ${a.timeoutMs}ms)` : ''}${describeFault(a.fault)}${describeMirrors(a.mirrors)}`;
    }
    case 'redirect':
      return `redirect ${a.responseCode}${a.scheme || a.authority ? ' ' : ''}${a.scheme ? `${a.scheme}://` : ''}${a.authority ?? ''}`;
    case 'direct':
      return `direct ${a.status}`;
  }
}

/** ` fault: delay 5000ms 100%, abort 500 10%`; '' when none. */
function describeFault(f: FaultInjection | null): string {
  if (f === null) return '';
  const parts: string[] = [];
  if (f.delay !== null) parts.push(`delay ${f.delay.fixedDelayMs}ms ${f.delay.percentage}%`);
  if (f.abort !== null) parts.push(`abort ${f.abort.kind === 'http' ? f.abort.status : `grpc ${f.abort.grpcStatus}`} ${f.abort.percentage}%`);
  return ` fault: ${parts.join(', ')}`;
}

/** ` mirror: cluster 50%`; '' when none. */
function describeMirrors(m: Mirror[]): string {
  return m.length === 0 ? '' : ` mirror: ${m.map((x) => `${x.cluster} ${x.percentage}%`).join(', ')}`;
}

/** One TCP/TLS match as `sni:a.example.com & subnet:10.0.0.0/8 & port=31400`; `*` for a catch-all. */
function describeTcpMatch(m: TcpMatch): string {
  const parts: string[] = [];
  if (m.sniHosts.length > 0) parts.push(`sni:${m.sniHosts.join(',')}`);
  if (m.destinationSubnets.length > 0) parts.push(`subnet:${m.destinationSubnets.join(',')}`);
  if (m.port !== null) parts.push(`port=${m.port}`);
  if (m.applicationProtocols !== undefined) parts.push(`alpn:${m.applicationProtocols.join(',')}`);
  return parts.length === 0 ? '*' : parts.join(' & ');
}

function pct(weight: number, total: number): number {
  return total === 0 ? 0 : Math.round((weight / total) * 1000) / 10;
}

export function describeSource(s: SourceRef): string {
  const obj = `${s.kind}/${s.namespace}/${s.name}`;
  return s.file === null ? obj : `${obj} (${s.file}${s.line === null ? '' : `:${s.line}`})`;
}

export function routeRows(ir: IRSnapshot): RouteRow[] {
  const rows: RouteRow[] = [];
  for (const l of ir.listeners) {
    for (const chain of l.filterChains) {
      for (const vh of chain.virtualHosts) {
        if (vh.httpsRedirect !== null) {
          rows.push({
            listener: l.name,
            port: l.externalPort,
            protocol: l.protocol,
            vhost: vh.name,
            domains: vh.domains.map(domain).join(','),
            route: '(https redirect)',
            match: '*',
            action: `redirect ${vh.httpsRedirect.responseCode} https`,
            destinations: [],
            source: '-',
            sourceRef: { kind: '', namespace: '', name: '', file: null, line: null },
          });
        }
        for (const r of vh.routes) rows.push(routeRow(l.name, l.externalPort, l.protocol, vh.name, vh.domains.map(domain).join(','), r));
      }
    }
  }
  // TCP, TLS passthrough and TLS-terminating listeners: their routes are matched per connection.
  for (const l of ir.tcpListeners ?? []) {
    const chains = l.protocol === 'TLS_TERMINATE' ? l.tlsChains.map((c) => ({ vhost: c.name, domains: c.serverNames.join(',') || '*', routes: c.routes })) : [{ vhost: l.name, domains: '*', routes: l.routes }];
    for (const c of chains) for (const r of c.routes) rows.push(tcpRouteRow(l.name, l.externalPort, l.protocol, c.vhost, c.domains, r));
  }
  return rows;
}

function tcpRouteRow(listener: string, port: number, protocol: string, vhost: string, domains: string, r: TcpRoute): RouteRow {
  const total = r.destinations.reduce((n, d) => n + d.weight, 0);
  return {
    listener,
    port,
    protocol,
    vhost,
    domains,
    route: r.name,
    match: r.matches.map(describeTcpMatch).join(' | '),
    action: `-> ${r.destinations.map((d) => (r.destinations.length === 1 ? d.cluster : `${d.cluster} ${pct(d.weight, total)}%`)).join(', ')}`,
    destinations: r.destinations.map((d) => ({ cluster: d.cluster, weight: d.weight, percent: pct(d.weight, total) })),
    source: describeSource(r.source),
    sourceRef: r.source,
  };
}

function routeRow(listener: string, port: number, protocol: string, vhost: string, domains: string, r: Route): RouteRow {
  const total = r.action.kind === 'forward' ? r.action.destinations.reduce((n, d) => n + d.weight, 0) : 0;
  return {
    listener,
    port,
    protocol,
    vhost,
    domains,
    route: r.name,
    match: r.matches.map(describeMatch).join(' | '),
    action: describeAction(r.action),
    destinations: r.action.kind === 'forward' ? r.action.destinations.map((d) => ({ cluster: d.cluster, weight: d.weight, percent: pct(d.weight, total) })) : [],
    source: describeSource(r.source),
    sourceRef: r.source,
  };
}

/** Key of `outlierStates`: cluster name and `address:port` (IPv6 addresses unbracketed, as the runtime keys them). */
export function outlierKey(cluster: string, endpoint: string): string {
  return `${cluster}\0${endpoint}`;
}

/** Cluster rows of `ir`; `outlier` (live, from the data plane's metrics) adds each endpoint's ejection state. */
export function clusterRows(ir: IRSnapshot, outlier: ReadonlyMap<string, EndpointOutlierState> = new Map()): ClusterRow[] {
  return ir.clusters.map((c: Cluster) => {
    const endpoints = c.endpoints.map((e): EndpointRow => {
      const state = outlier.get(outlierKey(c.name, `${e.address}:${e.port}`)) ?? null;
      return { address: e.address, port: e.port, ready: e.ready, health: !e.ready ? 'not ready' : state?.ejected === true ? 'ejected' : 'healthy', outlier: state };
    });
    return {
      cluster: c.name,
      service: `${c.service.namespace}/${c.service.name}:${c.service.port}`,
      subset: c.subset,
      discovery: c.discovery,
      lbPolicy: typeof c.lbPolicy === 'string' ? c.lbPolicy : `${c.lbPolicy.algorithm.kind.toUpperCase()} (consistent hash)`,
      outlierDetection: c.outlierDetection !== null,
      endpoints,
      ready: c.endpoints.filter((e) => e.ready).length,
      total: c.endpoints.length,
      ejected: endpoints.filter((e) => e.health === 'ejected').length,
    };
  });
}

/** A plain-text table: a header row, a rule, one line per row; columns padded to their widest cell. */
export function formatTable(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n') + '\n';
}

export function routesTable(ir: IRSnapshot): string {
  return formatTable(
    ['PORT', 'DOMAINS', 'MATCH', 'ACTION', 'ROUTE', 'SOURCE'],
    routeRows(ir).map((r) => [`${r.port}/${r.protocol}`, r.domains, r.match, r.action, r.route, r.source]),
  );
}

/** The clusters table; `now` (epoch ms) turns ejection ends into seconds left. */
export function clustersTable(ir: IRSnapshot): string {
  return clusterRowsTable(clusterRows(ir), Date.now());
}

export function clusterRowsTable(rows: ClusterRow[], now: number): string {
  return formatTable(
    ['CLUSTER', 'SERVICE', 'SUBSET', 'LB', 'READY', 'EJECTED', 'ENDPOINTS'],
    rows.map((c) => [
      c.cluster,
      c.service,
      c.subset === '' ? '-' : c.subset,
      c.lbPolicy,
      c.discovery === 'missing' ? 'missing' : `${c.ready}/${c.total}`,
      c.outlierDetection ? String(c.ejected) : '-',
      c.endpoints.length === 0 ? '-' : c.endpoints.map((e) => `${e.address.includes(':') ? `[${e.address}]` : e.address}:${e.port}${endpointNote(e, now)}`).join(', '),
    ]),
  );
}

function endpointNote(e: EndpointRow, now: number): string {
  if (!e.ready) return ' (not ready)';
  const o = e.outlier;
  if (o === null) return '';
  if (o.ejected) return ` (ejected${o.ejectedUntil === null ? '' : ` ${Math.max(0, Math.ceil((o.ejectedUntil - now) / 1000))}s left`}, ${o.timesEjected}x)`;
  return ` (ejected ${o.timesEjected}x before)`;
}
