/**
 * Request metrics of one data-plane process, in Istio's standard names, labels and buckets
 * (https://istio.io/latest/docs/reference/config/metrics/), plus meshgate's per-route series.
 *
 * Hot path: `observe` does one WeakMap lookup (the route's destination, or the route, to its
 * series group, built once per compiled object) and one Map lookup by a number (status code and
 * interned flags) to a cell of plain counters; no string is built and no label object is touched.
 * The Prometheus view (label objects, cumulative buckets) is built only when `/metrics` is scraped,
 * as prom-client custom metrics (`get()`), which prom-client's AggregatorRegistry sums across the
 * worker processes.
 */
import type { Registry } from 'prom-client';
import type { CompiledDestination, CompiledRoute, CompiledSnapshot } from '../runtime/compile/types.js';
import type { RequestRecord } from './record.js';
import type { StructObject } from '../lib/proto-struct.js';

/** Envoy's default histogram buckets, which Istio's duration and size histograms use. */
export const ISTIO_BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

/** Who the gateway says it is in `source_*` labels. */
export interface WorkloadIdentity {
  workload: string;
  namespace: string;
  app: string;
  version: string;
  cluster: string;
  /**
   * `source_canonical_service` / `source_canonical_revision` when they differ from `app` /
   * `version` (a sidecar: Istio's canonical-service labels and fallbacks); absent = `app` / `version`.
   */
  canonicalService?: string;
  canonicalRevision?: string;
  /**
   * The gateway as a mesh client (`run --control`): what else Istio's metadata exchange tells
   * destination sidecars of this workload (runtime/sidecar/peer-metadata.ts `gatewayPeerMetadata`);
   * absent = no exchange.
   */
  exchange?: { podName: string; podIp: string; labels: Record<string, string> };
}

export const DEFAULT_IDENTITY: WorkloadIdentity = { workload: 'meshgate', namespace: 'unknown', app: 'meshgate', version: 'unknown', cluster: 'unknown' };

/** Istio's label order for istio_requests_total and friends. */
export const ISTIO_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_workload',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_service',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_service_name',
  'destination_service_namespace',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

type Labels = Record<string, string | number>;

class Histogram {
  /** counts[i]: observations <= ISTIO_BUCKETS[i] and > the bucket before; last: above every bucket. */
  readonly counts = new Float64Array(ISTIO_BUCKETS.length + 1);
  sum = 0;

  observe(v: number): void {
    this.sum += v;
    let i = 0;
    while (i < ISTIO_BUCKETS.length && v > ISTIO_BUCKETS[i]) i++;
    this.counts[i]++;
  }

  addTo(into: Histogram): void {
    for (let i = 0; i < this.counts.length; i++) into.counts[i] += this.counts[i];
    into.sum += this.sum;
  }
}

/** Everything counted for one (route, destination, status, flags, protocol). */
class Cell {
  count = 0;
  readonly duration = new Histogram();
  readonly requestBytes = new Histogram();
  readonly responseBytes = new Histogram();
  constructor(
    readonly status: number,
    readonly flags: string,
    readonly protocol: string,
    readonly grpcStatus: string,
  ) {}
}

/** The series of one route and one destination cluster (or of requests no route matched). */
class SeriesGroup {
  readonly cells = new Map<number, Cell>();
  /** Istio destination labels (everything but the per-request ones). */
  readonly destination: Labels;
  /**
   * The gateway as a mesh client: the same route and cluster, answered by workloads whose sidecars
   * said who they are (Istio's metadata exchange), by their destination labels; null = none yet.
   */
  peers: Map<Labels, SeriesGroup> | null = null;
  constructor(
    readonly route: string,
    readonly cluster: string,
    destination?: Labels,
  ) {
    this.destination = destination ?? destinationLabels(cluster);
  }
}

/** TCP counters of one cluster and response-flags value (filled by the TCP proxy). */
class TcpSeries {
  opened = 0;
  closed = 0;
  sent = 0;
  received = 0;
  constructor(
    readonly cluster: string,
    /** Envoy response flags of the connections counted here (`-` when none; always `-` for `opened`). */
    readonly flags: string,
  ) {}
}

/** Each group, then its peer sub-groups. */
function* allGroups(groups: Iterable<SeriesGroup>): Generator<SeriesGroup> {
  for (const g of groups) {
    yield g;
    if (g.peers !== null) yield* g.peers.values();
  }
}

/** Most peer sub-groups per route and cluster (workloads behind one Service); later peers count under the group. */
const MAX_PEER_GROUPS = 1000;

/**
 * How a peer's metadata names the destination (Istio's metadata exchange): `base` labels with the
 * `destination_*` of the workload in `peer` (an `x-envoy-peer-metadata` value, or the Struct of a
 * TCP preamble); `base` itself when it says nothing usable. The same object for the same base and
 * value. Given by the runtime (runtime/sidecar/peer-metadata.ts `destinationPeerLabels`) in the
 * processes that serve, so that observability loads no runtime code.
 */
export type DestinationPeerLabels = (base: Readonly<Record<string, string>>, peer: string | StructObject) => Readonly<Record<string, string>>;

/** Counters of upstream behaviour per cluster (filled by retries and circuit breakers; outlier ejections are read from the trackers). */
export type UpstreamEvent = 'retry' | 'overflow';

/**
 * Istio's destination labels for a cluster named `outbound|<port>|<subset>|<fqdn>` (what translate
 * names them). The gateway knows the Service, not the workload behind it: workload labels are
 * `unknown`, as Istio reports them without peer metadata.
 */
export function destinationLabels(cluster: string): Labels {
  let service = 'unknown';
  let name = 'unknown';
  let namespace = 'unknown';
  if (cluster !== '') {
    const parts = cluster.split('|');
    // `outbound|<port>|<subset>|<fqdn>`, or an AUTO_PASSTHROUGH SNI-DNAT cluster `outbound_.<port>_.<subset>_.<fqdn>`.
    const dnat = parts.length === 4 ? null : /^outbound_\.\d+_\.[^_]*_\.(.+)$/.exec(cluster);
    service = parts.length === 4 ? parts[3] : dnat !== null ? dnat[1] : cluster;
    const labels = service.split('.');
    name = labels[0];
    if (labels.length >= 2 && service.endsWith('.svc.cluster.local')) namespace = labels[1];
  }
  return {
    destination_workload: 'unknown',
    destination_workload_namespace: namespace,
    destination_principal: 'unknown',
    destination_app: 'unknown',
    destination_version: 'unknown',
    destination_service: service,
    destination_canonical_service: name,
    destination_canonical_revision: 'latest',
    destination_service_name: name,
    destination_service_namespace: namespace,
    destination_cluster: 'unknown',
  };
}

export class RequestMetrics {
  readonly #identity: Labels;
  /** Groups by `route\0cluster`: they outlive snapshots, so counters never go back. */
  readonly #groups = new Map<string, SeriesGroup>();
  /** Compiled destination (or route, when not forwarded) -> its group; one lookup per request. */
  readonly #byObject = new WeakMap<object, SeriesGroup>();
  readonly #noRoute: SeriesGroup;
  readonly #flagIds = new Map<string, number>();
  readonly #tcp = new Map<string, TcpSeries>();
  readonly #upstream = new Map<string, number>();
  /** Requests counted under connection-fixed labels (`RequestRecord.meshLabels`), by every label value. */
  readonly #mesh = new Map<string, { labels: Labels; cell: Cell }>();
  /** The same series by label object, then by the per-request values (`status\0flags\0protocol\0grpc`). */
  readonly #meshByLabels = new WeakMap<object, Map<number, { labels: Labels; cell: Cell }>>();
  readonly #meshTcp = new Map<string, { labels: Labels; opened: number; closed: number; sent: number; received: number }>();
  /** Where upstream pool gauges are read from at scrape time. */
  #runtime: { readonly current: CompiledSnapshot | null; connectionCounts?(): Promise<{ listener: string; active: number }[]> } | null = null;
  /** Access-log lines dropped because the writer could not keep up. */
  droppedLogLines = 0;

  constructor(identity: WorkloadIdentity = DEFAULT_IDENTITY) {
    this.#identity = {
      reporter: 'source',
      source_workload: identity.workload,
      source_canonical_service: identity.canonicalService ?? identity.app,
      source_canonical_revision: identity.canonicalRevision ?? (identity.version === 'unknown' ? 'latest' : identity.version),
      source_workload_namespace: identity.namespace,
      source_principal: 'unknown',
      source_app: identity.app,
      source_version: identity.version,
      source_cluster: identity.cluster,
    };
    this.#noRoute = this.#group('', '');
  }

  /** The runtime whose snapshot (upstream pools) and listeners the gauges read. */
  attach(runtime: { readonly current: CompiledSnapshot | null; connectionCounts?(): Promise<{ listener: string; active: number }[]> }): void {
    this.#runtime = runtime;
  }

  observe(rec: RequestRecord): void {
    const meshLabels = rec.meshLabels;
    if (meshLabels !== null) return this.#observeMesh(rec, meshLabels);
    let group = this.#groupOf(rec.route, rec.destination);
    // The gateway as a mesh client: the destination workload its sidecar told (reporter="source"
    // destination_* labels, as istio_stats fills them from the upstream peer).
    if (rec.upstreamPeerMetadata !== null && this.destinationPeer !== null) group = this.#peerGroup(group, rec.upstreamPeerMetadata, this.destinationPeer);
    const flags = rec.flags;
    const key = this.#requestKey(rec);
    let cell = group.cells.get(key);
    if (cell === undefined) {
      cell = new Cell(rec.status, flags, rec.protocol, rec.grpcStatus);
      group.cells.set(key, cell);
    }
    cell.count++;
    // Retries and circuit-breaker overflows, read off the finished record (no hook in the hot path).
    if (rec.attempts > 1 || (rec.flags !== '-' && rec.flags.includes('UO'))) {
      const cluster = rec.clusterName;
      if (cluster !== null) {
        if (rec.attempts > 1) this.#countUpstream('retry', cluster, rec.attempts - 1);
        if (rec.flags.includes('UO')) this.#countUpstream('overflow', cluster, 1);
      }
    }
    cell.duration.observe(rec.durationMs);
    cell.requestBytes.observe(rec.bytesReceived);
    cell.responseBytes.observe(rec.bytesSent);
  }

  /** status (0-999) x flags x protocol (http or not) x gRPC status ('' or 0-16): one number. */
  #requestKey(rec: RequestRecord): number {
    const flags = rec.flags;
    let fid = this.#flagIds.get(flags);
    if (fid === undefined) {
      fid = this.#flagIds.size;
      this.#flagIds.set(flags, fid);
    }
    return ((rec.status * 4096 + fid) * 2 + (rec.protocol === 'http' ? 0 : 1)) * 18 + (rec.grpcStatus === '' ? 0 : Number(rec.grpcStatus) + 1);
  }

  /** A request counted under labels its connection fixed (a sidecar's inbound side: `reporter="destination"`). */
  #observeMesh(rec: RequestRecord, labels: Readonly<Record<string, string>>): void {
    // Label objects are made once per connection or endpoint: their series are found by the object
    // and the per-request values, without joining every label value for each request.
    let byRequest = this.#meshByLabels.get(labels);
    if (byRequest === undefined) this.#meshByLabels.set(labels, (byRequest = new Map()));
    const perRequest = this.#requestKey(rec);
    let m = byRequest.get(perRequest);
    if (m === undefined) {
      const key = `${meshKey(labels)}\0${rec.status}\0${rec.flags}\0${rec.protocol}\0${rec.grpcStatus}`;
      m = this.#mesh.get(key);
      if (m === undefined) {
        const all: Labels = { ...labels, request_protocol: rec.protocol, response_code: String(rec.status), grpc_response_status: rec.grpcStatus, response_flags: rec.flags };
        this.#mesh.set(key, (m = { labels: ordered(all), cell: new Cell(rec.status, rec.flags, rec.protocol, rec.grpcStatus) }));
      }
      byRequest.set(perRequest, m);
    }
    const cell = m.cell;
    cell.count++;
    cell.duration.observe(rec.durationMs);
    cell.requestBytes.observe(rec.bytesReceived);
    cell.responseBytes.observe(rec.bytesSent);
  }

  /** istio_tcp_* under labels the connection fixed (a sidecar's inbound side). */
  meshTcpOpened(labels: Readonly<Record<string, string>>): void {
    this.#meshTcpSeries(labels, '-').opened++;
  }
  meshTcpClosed(labels: Readonly<Record<string, string>>, sentBytes: number, receivedBytes: number, flags = '-'): void {
    const s = this.#meshTcpSeries(labels, flags);
    s.closed++;
    s.sent += sentBytes;
    s.received += receivedBytes;
  }

  #meshTcpSeries(labels: Readonly<Record<string, string>>, flags: string): { labels: Labels; opened: number; closed: number; sent: number; received: number } {
    const key = `${meshKey(labels)}\0${flags}`;
    let s = this.#meshTcp.get(key);
    if (s === undefined) {
      const all = ordered({ ...labels, request_protocol: 'tcp', response_flags: flags });
      this.#meshTcp.set(key, (s = { labels: all, opened: 0, closed: 0, sent: 0, received: 0 }));
    }
    return s;
  }

  /**
   * The gateway's labels of a TCP connection to `cluster` whose server sent Istio's TCP metadata
   * exchange preamble: `destination_*` from its workload (istio_stats fills them from the upstream peer).
   */
  tcpPeerLabels(cluster: string, peer: StructObject): Readonly<Record<string, string>> | null {
    if (this.destinationPeer === null) return null;
    let base = this.#tcpBase.get(cluster);
    if (base === undefined) {
      base = { ...this.#identity, ...destinationLabels(cluster), connection_security_policy: 'unknown' } as Record<string, string>;
      if (this.#tcpBase.size < 10_000) this.#tcpBase.set(cluster, base);
    }
    return this.destinationPeer(base, peer);
  }
  readonly #tcpBase = new Map<string, Readonly<Record<string, string>>>();

  /** Istio's metadata exchange at the gateway (`DestinationPeerLabels`); null = not read (then peers are not named). */
  destinationPeer: DestinationPeerLabels | null = null;

  /** The sub-group of `g` for a destination whose sidecar sent `value`; `g` itself when it says nothing usable. */
  #peerGroup(g: SeriesGroup, value: string, merge: DestinationPeerLabels): SeriesGroup {
    const labels = merge(g.destination as Readonly<Record<string, string>>, value) as Labels;
    if (labels === g.destination) return g;
    g.peers ??= new Map();
    let sub = g.peers.get(labels);
    if (sub === undefined) {
      if (g.peers.size >= MAX_PEER_GROUPS) return g;
      g.peers.set(labels, (sub = new SeriesGroup(g.route, g.cluster, labels)));
    }
    return sub;
  }

  /** TCP proxy hooks (istio_tcp_*). */
  tcpOpened(cluster: string): void {
    this.#tcpSeries(cluster, '-').opened++;
  }
  /** A TCP connection closed with `flags` (`-` or e.g. `UF`, as Istio labels `response_flags`); its bytes go to that series. */
  tcpClosed(cluster: string, sentBytes: number, receivedBytes: number, flags = '-'): void {
    const s = this.#tcpSeries(cluster, flags);
    s.closed++;
    s.sent += sentBytes;
    s.received += receivedBytes;
  }

  /** Retries and circuit-breaker overflows, per cluster. */
  upstreamEvent(event: UpstreamEvent, cluster: string): void {
    this.#countUpstream(event, cluster, 1);
  }

  #countUpstream(event: UpstreamEvent, cluster: string, n: number): void {
    const key = `${event}\0${cluster}`;
    this.#upstream.set(key, (this.#upstream.get(key) ?? 0) + n);
  }

  #tcpSeries(cluster: string, flags: string): TcpSeries {
    const key = `${cluster}\0${flags}`;
    let s = this.#tcp.get(key);
    if (s === undefined) this.#tcp.set(key, (s = new TcpSeries(cluster, flags)));
    return s;
  }

  #groupOf(route: CompiledRoute | null, destination: CompiledDestination | null): SeriesGroup {
    const obj: object | null = destination ?? route;
    if (obj === null) return this.#noRoute;
    let g = this.#byObject.get(obj);
    if (g === undefined) {
      g = this.#group(route === null ? '' : route.name, destination === null ? '' : destination.clusterName);
      this.#byObject.set(obj, g);
    }
    return g;
  }

  #group(route: string, cluster: string): SeriesGroup {
    const key = `${route}\0${cluster}`;
    let g = this.#groups.get(key);
    if (g === undefined) this.#groups.set(key, (g = new SeriesGroup(route, cluster)));
    return g;
  }

  /** Registers every metric on `registry` (prom-client custom metrics, built at scrape time). */
  register(registry: Registry): void {
    // `aggregator`: how prom-client's AggregatorRegistry merges the workers' values (sum unless said).
    const add = (name: string, help: string, type: 'counter' | 'gauge' | 'histogram', values: () => Promise<Value[]> | Value[], aggregator: 'sum' | 'max' = 'sum') => {
      registry.registerMetric({ name, help, type, aggregator, get: async () => ({ name, help, type, aggregator, values: await values() }) } as unknown as Parameters<Registry['registerMetric']>[0]);
    };
    add('istio_requests_total', 'Requests (Istio standard metric).', 'counter', () => this.#istioValues('count'));
    add('istio_request_duration_milliseconds', 'Request duration in ms (Istio standard metric).', 'histogram', () => this.#istioValues('duration'));
    add('istio_request_bytes', 'Request body size in bytes (Istio standard metric).', 'histogram', () => this.#istioValues('requestBytes'));
    add('istio_response_bytes', 'Response body size in bytes (Istio standard metric).', 'histogram', () => this.#istioValues('responseBytes'));
    add('istio_tcp_connections_opened_total', 'TCP connections opened (Istio standard metric).', 'counter', () => this.#tcpValues('opened'));
    add('istio_tcp_connections_closed_total', 'TCP connections closed (Istio standard metric).', 'counter', () => this.#tcpValues('closed'));
    add('istio_tcp_sent_bytes_total', 'Bytes sent to the client on TCP connections (Istio standard metric).', 'counter', () => this.#tcpValues('sent'));
    add('istio_tcp_received_bytes_total', 'Bytes received from the client on TCP connections (Istio standard metric).', 'counter', () => this.#tcpValues('received'));
    add('meshgate_route_requests_total', 'Requests per route and destination cluster.', 'counter', () => this.#routeCounts());
    add('meshgate_route_request_duration_milliseconds', 'Request duration per route and destination cluster, in ms.', 'histogram', () => this.#routeDurations());
    add('meshgate_upstream_retries_total', 'Upstream request retries per cluster.', 'counter', () => this.#upstreamValues('retry'));
    add('meshgate_upstream_overflows_total', 'Requests refused by a circuit breaker (UO) per cluster.', 'counter', () => this.#upstreamValues('overflow'));
    // Outlier detection runs in every worker on its own answers: ejection counts are summed, the
    // per-endpoint state is the worst worker's (ejected in any worker = 1, the latest end).
    add('meshgate_outlier_ejections_total', 'Endpoints ejected by outlier detection per cluster (summed over workers).', 'counter', () => this.#outlierValues('total'));
    add('meshgate_outlier_ejected_endpoints', 'Endpoints currently ejected by outlier detection per cluster (summed over workers).', 'gauge', () => this.#outlierValues('ejected'));
    add('meshgate_outlier_endpoint_ejected', 'Whether outlier detection ejects the endpoint now (1 when any worker does).', 'gauge', () => this.#outlierEndpointValues('ejected'), 'max');
    add('meshgate_outlier_endpoint_ejected_until_seconds', 'When the current ejection of the endpoint ends at the latest (Unix time in seconds; 0 when not ejected).', 'gauge', () => this.#outlierEndpointValues('until'), 'max');
    add('meshgate_outlier_endpoint_ejections_total', 'Times outlier detection ejected the endpoint (summed over workers).', 'counter', () => this.#outlierEndpointValues('times'));
    add('meshgate_upstream_connections', 'Open upstream connections per endpoint.', 'gauge', () => this.#poolValues('connected'));
    add('meshgate_upstream_pending_requests', 'Requests waiting for an upstream connection per endpoint.', 'gauge', () => this.#poolValues('pending'));
    add('meshgate_upstream_active_requests', 'Requests in flight to an upstream per endpoint.', 'gauge', () => this.#poolValues('running'));
    add('meshgate_listener_connections_active', 'Open downstream connections per listener.', 'gauge', async () => {
      const counts = (await this.#runtime?.connectionCounts?.()) ?? [];
      return counts.map((c) => ({ labels: { listener: c.listener }, value: c.active }));
    });
    add('meshgate_access_log_dropped_total', 'Access-log lines dropped because the writer could not keep up.', 'counter', () => [{ labels: {}, value: this.droppedLogLines }]);
  }

  #istioValues(what: 'count' | 'duration' | 'requestBytes' | 'responseBytes'): Value[] {
    // Groups of different routes to one cluster share Istio labels: sum them.
    const merged = new Map<string, { labels: Labels; count: number; hist: Histogram }>();
    for (const g of allGroups(this.#groups.values())) {
      const workload = g.destination.destination_workload;
      for (const cell of g.cells.values()) {
        const key = `${g.cluster}\0${workload === 'unknown' ? '' : `${g.destination.destination_workload_namespace}/${workload}/${meshKey(g.destination as Readonly<Record<string, string>>)}`}\0${cell.status}\0${cell.flags}\0${cell.protocol}\0${cell.grpcStatus}`;
        let m = merged.get(key);
        if (m === undefined) {
          const labels: Labels = {
            ...this.#identity,
            ...g.destination,
            request_protocol: cell.protocol,
            response_code: String(cell.status),
            grpc_response_status: cell.grpcStatus,
            response_flags: cell.flags,
            connection_security_policy: 'unknown',
          };
          merged.set(key, (m = { labels: ordered(labels), count: 0, hist: new Histogram() }));
        }
        m.count += cell.count;
        if (what !== 'count') cell[what].addTo(m.hist);
      }
    }
    const out: Value[] = [];
    for (const m of merged.values()) {
      if (what === 'count') out.push({ labels: m.labels, value: m.count });
      else pushHistogram(out, metricNameOf(what), m.labels, m.hist, m.count);
    }
    for (const m of this.#mesh.values()) {
      if (what === 'count') out.push({ labels: m.labels, value: m.cell.count });
      else pushHistogram(out, metricNameOf(what), m.labels, m.cell[what], m.cell.count);
    }
    return out;
  }

  #routeCounts(): Value[] {
    const out: Value[] = [];
    for (const g of this.#groups.values()) {
      // A group's peer sub-groups (the gateway's metadata exchange) count under the same route labels.
      const byCode = new Map<string, Value>();
      for (const sub of allGroups([g])) {
        for (const cell of sub.cells.values()) {
          const k = `${cell.status}\0${cell.flags}`;
          const v = byCode.get(k);
          if (v !== undefined) v.value += cell.count;
          else byCode.set(k, { labels: { route: g.route, destination_cluster: g.cluster, response_code: String(cell.status), response_flags: cell.flags }, value: cell.count });
        }
      }
      for (const v of byCode.values()) out.push(v);
    }
    return out;
  }

  #routeDurations(): Value[] {
    const out: Value[] = [];
    for (const g of this.#groups.values()) {
      const hist = new Histogram();
      let count = 0;
      for (const sub of allGroups([g])) {
        for (const cell of sub.cells.values()) {
          cell.duration.addTo(hist);
          count += cell.count;
        }
      }
      if (count === 0) continue;
      pushHistogram(out, 'meshgate_route_request_duration_milliseconds', { route: g.route, destination_cluster: g.cluster }, hist, count);
    }
    return out;
  }

  #tcpValues(what: 'opened' | 'closed' | 'sent' | 'received'): Value[] {
    const out: Value[] = [];
    for (const s of this.#tcp.values()) {
      const labels = ordered({ ...this.#identity, ...destinationLabels(s.cluster), request_protocol: 'tcp', response_flags: s.flags, connection_security_policy: 'unknown' });
      delete labels.response_code;
      delete labels.grpc_response_status;
      out.push({ labels, value: s[what] });
    }
    for (const s of this.#meshTcp.values()) out.push({ labels: s.labels, value: s[what] });
    return out;
  }

  #upstreamValues(event: UpstreamEvent): Value[] {
    const out: Value[] = [];
    for (const [key, value] of this.#upstream) {
      const [e, cluster] = key.split('\0');
      if (e === event) out.push({ labels: { cluster }, value });
    }
    return out;
  }

  /** Per cluster with outlier detection, read from the trackers at scrape time. */
  #outlierValues(what: 'total' | 'ejected'): Value[] {
    const snapshot = this.#runtime?.current ?? null;
    if (snapshot === null) return [];
    const out: Value[] = [];
    for (const cluster of snapshot.clusters.values()) {
      const t = cluster.state?.outlier ?? null;
      if (t !== null) out.push({ labels: { cluster: cluster.name }, value: what === 'total' ? t.totalEjections : t.ejectedCount });
    }
    return out;
  }

  /** Per endpoint ever ejected (series appear at the first ejection). */
  #outlierEndpointValues(what: 'ejected' | 'until' | 'times'): Value[] {
    const snapshot = this.#runtime?.current ?? null;
    if (snapshot === null) return [];
    const out: Value[] = [];
    for (const cluster of snapshot.clusters.values()) {
      const t = cluster.state?.outlier ?? null;
      if (t === null) continue;
      for (const e of t.endpointStates()) {
        const value = what === 'ejected' ? (e.ejected ? 1 : 0) : what === 'times' ? e.timesEjected : e.ejectedUntil === null ? 0 : e.ejectedUntil / 1000;
        out.push({ labels: { cluster: cluster.name, endpoint: e.endpoint }, value });
      }
    }
    return out;
  }

  #poolValues(stat: 'connected' | 'pending' | 'running'): Value[] {
    const snapshot = this.#runtime?.current ?? null;
    if (snapshot === null) return [];
    const seen = new Set<string>();
    const out: Value[] = [];
    for (const cluster of snapshot.clusters.values()) {
      for (const e of cluster.endpoints) {
        if (e.handle === null || seen.has(e.key)) continue;
        seen.add(e.key);
        out.push({ labels: { endpoint: e.key }, value: e.handle.dispatcher.stats[stat] });
      }
    }
    return out;
  }
}

interface Value {
  labels: Labels;
  value: number;
  metricName?: string;
}

function metricNameOf(what: 'duration' | 'requestBytes' | 'responseBytes'): string {
  return what === 'duration' ? 'istio_request_duration_milliseconds' : what === 'requestBytes' ? 'istio_request_bytes' : 'istio_response_bytes';
}

/** A map key of every label value, in Istio's order. */
function meshKey(labels: Readonly<Record<string, string>>): string {
  let k = '';
  for (const n of ISTIO_LABELS) k += `${labels[n] ?? ''}\0`;
  return k;
}

/** Labels in Istio's order (objects keep insertion order; exposition follows it). */
function ordered(labels: Labels): Labels {
  const out: Labels = {};
  for (const k of ISTIO_LABELS) if (k in labels) out[k] = labels[k];
  return out;
}

function pushHistogram(out: Value[], name: string, labels: Labels, h: Histogram, count: number): void {
  let cumulative = 0;
  for (let i = 0; i < ISTIO_BUCKETS.length; i++) {
    cumulative += h.counts[i];
    out.push({ labels: { ...labels, le: ISTIO_BUCKETS[i] }, value: cumulative, metricName: `${name}_bucket` });
  }
  out.push({ labels: { ...labels, le: '+Inf' }, value: count, metricName: `${name}_bucket` });
  out.push({ labels, value: h.sum, metricName: `${name}_sum` });
  out.push({ labels, value: count, metricName: `${name}_count` });
}
