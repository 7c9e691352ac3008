/**
 * The mesh graph, as Kiali draws its workload graph from Istio's standard metrics (Kiali
 * graph/telemetry/istio/istio.go and appender/security_policy.go), computed from the sidecars'
 * own metrics instead of Prometheus queries.
 *
 * - **Nodes** are workloads (`workload/<namespace>/<name>`); a destination whose workload is not
 *   known is its service (`service/<namespace>/<name>`, which is how PassthroughCluster and
 *   BlackHoleCluster appear); a caller without a sidecar is `unknown`.
 * - **Edges** are (source node, destination node, protocol) with protocol `http`, `grpc` (from
 *   `request_protocol` of istio_requests_total) or `tcp` (istio_tcp_*). As in Kiali, traffic is read
 *   from `reporter="source"` reports of known source workloads (they also count requests that never
 *   reached the destination: 503 UF, circuit breaking, BlackHole) and from `reporter="destination"`
 *   reports of unknown sources (callers without a sidecar report nothing). One addition, because we
 *   read sidecars rather than a Prometheus that has all of them: a destination report whose source
 *   workload has no scraped sidecar stands for that edge.
 * - **Rates** are increases over the window (history.ts) divided by each sidecar's scrape span.
 *   **Error ratio** (Kiali's `httpPercentErr` / `grpcPercentErr`, graph/protocol.go): HTTP 4xx,
 *   5xx and no response at all (`response_code` 0, Kiali's `-`); for gRPC any status but OK
 *   (`grpc_response_status`), an HTTP 4xx/5xx or no response; over all requests. **Health**, of
 *   edges and of nodes (their inbound requests, per protocol), with Kiali's default tolerances
 *   (config.go `AddHealthDefault`, checked as frontend types/Health.ts `ascendingThresholdCheck`):
 *   HTTP 5xx degraded above 0 %, failing from 10 %; HTTP 4xx degraded from 10 %, failing from 20 %;
 *   gRPC statuses 1-16 and no response degraded above 0 %, failing from 10 %. **p99** from the duration
 *   histogram's bucket increases, interpolated as Prometheus's histogram_quantile; when the window
 *   holds no bucket increase for an edge that has requests, the cumulative buckets are used and the
 *   edge says so (`p99Basis`).
 * - **mTLS** (Kiali's lock): the share of the edge's traffic whose destination reported
 *   `connection_security_policy="mutual_tls"`; when no destination report matches the edge (the
 *   destination is not meshed, or is a service node), the share the source sent with Istio mTLS
 *   (`destination_principal` set). `all` 100 %, `some` between, `none` 0 %, `unknown` no evidence.
 * - **Basis.** Once any sidecar has two scrapes the graph is a window; until then (right after the
 *   control plane starts) it shows each sidecar's cumulative counters with no rates (`basis: "cumulative"`).
 */
import type { Series, TargetHistory } from './history.js';
import { layoutGraph } from './layout.js';

export type Protocol = 'http' | 'grpc' | 'tcp';
export type NodeKind = 'workload' | 'service' | 'unknown';
export type Health = 'healthy' | 'degraded' | 'failing' | 'idle';
export type MtlsState = 'all' | 'some' | 'none' | 'unknown';

/**
 * Kiali's default request health tolerances (config.go `AddHealthDefault`), as shares of the
 * requests of one protocol: degraded above `degraded` (0: any), failing from `failure`.
 */
export const HEALTH_TOLERANCES = {
  http5xx: { degraded: 0, failure: 0.1 },
  http4xx: { degraded: 0.1, failure: 0.2 },
  grpcError: { degraded: 0, failure: 0.1 },
  noResponse: { degraded: 0, failure: 0.1 },
} as const;

export interface GraphNode {
  id: string;
  kind: NodeKind;
  namespace: string;
  name: string;
  /** A scraped sidecar reports as this workload. */
  sidecar: boolean;
  /** Kiali's health of the requests it received, per protocol (`idle`: none in the window). */
  health: Health;
  inbound: { requests: number; rate: number | null; errorRatio: number | null };
  /** Position of the node's centre in the drawing (layout.ts). */
  x: number;
  y: number;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  protocol: Protocol;
  /** Which sidecar's reports carry the traffic (see the module comment). */
  reporter: 'source' | 'destination';
  /** The services the traffic was addressed to (`destination_service`). */
  services: string[];
  /** HTTP and gRPC edges; null on TCP edges. */
  http: {
    /** Requests in the window (cumulative basis: since the sidecars started). */
    requests: number;
    /** Requests per second; null on a cumulative basis. */
    rate: number | null;
    errors: number;
    errorRatio: number;
    /** Requests by `response_code` (and `grpc:<status>` for gRPC). */
    codes: Record<string, number>;
    /** Milliseconds; null without histogram data. */
    p99Ms: number | null;
    p99Basis: 'window' | 'cumulative' | null;
  } | null;
  /** TCP edges; null on HTTP/gRPC edges. Rates are null on a cumulative basis. */
  tcp: {
    sentBytes: number;
    receivedBytes: number;
    connectionsOpened: number;
    sentBytesRate: number | null;
    receivedBytesRate: number | null;
    connectionsOpenedRate: number | null;
  } | null;
  mtls: MtlsState;
  /** Percent of the traffic with mTLS; null when unknown. */
  mtlsPercent: number | null;
  mtlsFrom: 'destination' | 'source' | null;
  health: Health;
}

export interface GraphTarget {
  /** `<pod>.<namespace>` as /debug/proxy-status names the proxy. */
  name: string;
  address: string;
  port: number;
  /** The workload it reports as (`namespace/name`), once known from its metrics. */
  workload: string | null;
  scrapes: number;
  lastScrapeAt: string | null;
  lastError: string | null;
  /** Still connected to the control plane (a gone proxy's data stays until it leaves the window). */
  connected: boolean;
  /** Whether its data is in the graph (a window needs two scrapes). */
  contributing: boolean;
}

export interface MeshGraph {
  time: string;
  windowSeconds: number;
  intervalSeconds: number;
  basis: 'window' | 'cumulative';
  nodes: GraphNode[];
  edges: GraphEdge[];
  targets: GraphTarget[];
  /** Size of the drawing the node positions fit in. */
  width: number;
  height: number;
}

export interface TargetInput {
  name: string;
  address: string;
  port: number;
  connected: boolean;
  lastError: string | null;
  history: TargetHistory;
}

/** Requests of one protocol by what Kiali's error ratio and health count. */
interface Outcomes {
  requests: number;
  /** Kiali's errors: the error ratio's numerator. */
  errors: number;
  noResponse: number;
  http4xx: number;
  http5xx: number;
  /** gRPC statuses 1-16 (Kiali's gRPC tolerance). */
  grpcError: number;
}

function outcomes(): Outcomes {
  return { requests: 0, errors: 0, noResponse: 0, http4xx: 0, http5xx: 0, grpcError: 0 };
}

function addOutcomes(into: Outcomes, o: Outcomes): void {
  into.requests += o.requests;
  into.errors += o.errors;
  into.noResponse += o.noResponse;
  into.http4xx += o.http4xx;
  into.http5xx += o.http5xx;
  into.grpcError += o.grpcError;
}

/**
 * Counts `amount` requests of a series into `o` as Kiali reads them: the response code is `-` when
 * Istio reported none (`response_code` 0), else the HTTP code for HTTP, for gRPC answered with an
 * HTTP 4xx/5xx or without a gRPC status, else the gRPC status (graph/telemetry/istio/util
 * `HandleResponseCode`); errors are HTTP 4xx, 5xx and `-` (`IsHTTPErr`), for gRPC every code but 0
 * (`IsGRPCErr`).
 */
function countOutcome(o: Outcomes, l: Readonly<Record<string, string>>, protocol: Protocol, amount: number): void {
  o.requests += amount;
  const rc = l.response_code ?? '';
  if (rc === '0' || rc === '') {
    o.noResponse += amount;
    o.errors += amount;
    return;
  }
  const httpError = rc.startsWith('4') || rc.startsWith('5');
  const grpcStatus = l.grpc_response_status;
  if (protocol !== 'grpc' || httpError || grpcStatus === undefined || grpcStatus === '') {
    if (!httpError) return;
    o.errors += amount;
    // Kiali's 4XX and 5XX tolerances are for HTTP only.
    if (protocol !== 'grpc') {
      if (rc.startsWith('4')) o.http4xx += amount;
      else o.http5xx += amount;
    }
    return;
  }
  if (grpcStatus === '0') return;
  o.errors += amount;
  if (/^(?:[1-9]|1[0-6])$/.test(grpcStatus)) o.grpcError += amount;
}

interface EdgeAcc {
  source: string;
  target: string;
  protocol: Protocol;
  reporter: 'source' | 'destination';
  services: Set<string>;
  requests: number;
  rate: number;
  outcomes: Outcomes;
  codes: Map<string, number>;
  buckets: Map<number, number>;
  count: number;
  cumBuckets: Map<number, number>;
  cumCount: number;
  sent: number;
  received: number;
  opened: number;
  sentRate: number;
  receivedRate: number;
  openedRate: number;
  /** Source-side evidence: traffic sent with / without Istio mTLS. */
  srcMtls: number;
  srcOther: number;
}

const UNKNOWN = 'unknown';

function known(v: string | undefined): v is string {
  return v !== undefined && v !== '' && v !== UNKNOWN;
}

function sourceNode(l: Readonly<Record<string, string>>): string {
  return known(l.source_workload) ? `workload/${l.source_workload_namespace ?? UNKNOWN}/${l.source_workload}` : UNKNOWN;
}

function destinationNode(l: Readonly<Record<string, string>>): string {
  if (known(l.destination_workload)) return `workload/${l.destination_workload_namespace ?? UNKNOWN}/${l.destination_workload}`;
  if (known(l.destination_service_name)) return `service/${l.destination_service_namespace ?? UNKNOWN}/${l.destination_service_name}`;
  if (known(l.destination_service)) return `service/${l.destination_service_namespace ?? UNKNOWN}/${l.destination_service}`;
  return UNKNOWN;
}

/** The workload a sidecar reports as, from any of its series. */
export function reportingWorkload(series: Iterable<Series>): string | null {
  for (const s of series) {
    const l = s.labels;
    if (l.reporter === 'source' && known(l.source_workload)) return `${l.source_workload_namespace}/${l.source_workload}`;
    if (l.reporter === 'destination' && known(l.destination_workload)) return `${l.destination_workload_namespace}/${l.destination_workload}`;
  }
  return null;
}


/**
 * histogram_quantile as Prometheus computes it: buckets (upper bound → cumulative count) summed over
 * series, made monotonic, linear interpolation inside the bucket holding the rank; the +Inf bucket
 * answers the highest finite bound. `count` stands for a missing +Inf bucket.
 */
export function histogramQuantile(q: number, buckets: ReadonlyMap<number, number>, count: number | null = null): number | null {
  const les = [...buckets.keys()].sort((a, b) => a - b);
  const pairs: [number, number][] = les.map((le) => [le, buckets.get(le) ?? 0]);
  if (pairs.length === 0 || pairs[pairs.length - 1][0] !== Infinity) {
    if (count === null || count <= 0) return null;
    pairs.push([Infinity, count]);
  }
  if (pairs.length < 2) return null;
  // Buckets missing from one series make the sum dip: keep it monotonic (Prometheus's ensureMonotonic).
  for (let i = 1; i < pairs.length; i++) if (pairs[i][1] < pairs[i - 1][1]) pairs[i][1] = pairs[i - 1][1];
  const total = pairs[pairs.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let i = pairs.findIndex((p) => p[1] >= rank);
  if (i === -1) i = pairs.length - 1;
  if (i === pairs.length - 1) return pairs[pairs.length - 2][0];
  const upper = pairs[i][0];
  let lower = 0;
  let below = 0;
  if (i > 0) {
    lower = pairs[i - 1][0];
    below = pairs[i - 1][1];
  } else if (upper <= 0) return upper;
  const inBucket = pairs[i][1] - below;
  return inBucket <= 0 ? upper : lower + ((upper - lower) * (rank - below)) / inBucket;
}

const HEALTH_ORDER: Record<Health, number> = { idle: 0, healthy: 1, degraded: 2, failing: 3 };

/** The worst status over Kiali's tolerances (`ascendingThresholdCheck`: a share above 0 at or above failure fails, else at or above degraded degrades). */
function healthOf(o: Outcomes): Health {
  if (o.requests <= 0) return 'idle';
  let worst: Health = 'healthy';
  const check = (count: number, t: { degraded: number; failure: number }) => {
    const share = count / o.requests;
    if (share <= 0) return;
    const h: Health = share >= t.failure ? 'failing' : share >= t.degraded ? 'degraded' : 'healthy';
    if (HEALTH_ORDER[h] > HEALTH_ORDER[worst]) worst = h;
  };
  check(o.http5xx, HEALTH_TOLERANCES.http5xx);
  check(o.http4xx, HEALTH_TOLERANCES.http4xx);
  check(o.grpcError, HEALTH_TOLERANCES.grpcError);
  check(o.noResponse, HEALTH_TOLERANCES.noResponse);
  return worst;
}

/** A node's health: the worst of its inbound requests' health per protocol (Kiali's health reads each protocol's requests apart). */
function nodeHealthOf(byProtocol: ReadonlyMap<Protocol, Outcomes>): Health {
  let worst: Health = 'idle';
  for (const o of byProtocol.values()) {
    const h = healthOf(o);
    if (HEALTH_ORDER[h] > HEALTH_ORDER[worst]) worst = h;
  }
  return worst;
}

function nodeOf(id: string): Pick<GraphNode, 'id' | 'kind' | 'namespace' | 'name'> {
  if (id === UNKNOWN) return { id, kind: 'unknown', namespace: UNKNOWN, name: UNKNOWN };
  const [kind, namespace, ...rest] = id.split('/');
  return { id, kind: kind as NodeKind, namespace, name: rest.join('/') };
}

export function buildMeshGraph(targets: readonly TargetInput[], opts: { now: number; windowMs: number; intervalMs: number }): MeshGraph {
  const basis: MeshGraph['basis'] = targets.some((t) => t.history.scrapes.length >= 2) ? 'window' : 'cumulative';
  const edges = new Map<string, EdgeAcc>();
  /** Destination-side mTLS evidence by `source\0destination\0http|tcp`. */
  const dstMtls = new Map<string, { mtls: number; other: number }>();
  const sidecars = new Set<string>();
  const targetRows: GraphTarget[] = [];

  const inputs = targets.map((t) => ({ t, workload: reportingWorkload(t.history.series.values()) }));
  for (const { workload } of inputs) if (workload !== null) sidecars.add(`workload/${workload}`);

  for (const { t, workload } of inputs) {
    const h = t.history;
    const latest = h.latest;
    const contributing = basis === 'window' ? h.scrapes.length >= 2 : latest !== null;
    targetRows.push({ name: t.name, address: t.address, port: t.port, workload, scrapes: h.scrapes.length, lastScrapeAt: latest === null ? null : new Date(latest.t).toISOString(), lastError: t.lastError, connected: t.connected, contributing });
    if (!contributing || latest === null) continue;
    const amounts = basis === 'window' ? h.increases() : new Map([...latest.values].filter(([, v]) => v > 0));
    const span = basis === 'window' ? h.spanSeconds : 0;
    for (const [key, amount] of amounts) {
      const s = h.series.get(key);
      if (s === undefined) continue;
      const l = s.labels;
      const tcp = s.name.startsWith('istio_tcp_');
      const protocol: Protocol = tcp ? 'tcp' : l.request_protocol === 'grpc' ? 'grpc' : 'http';
      const src = sourceNode(l);
      const dst = destinationNode(l);
      // Destination-side mTLS evidence: requests, and TCP bytes both ways.
      if (l.reporter === 'destination' && (s.name === 'istio_requests_total' || s.name === 'istio_tcp_sent_bytes_total' || s.name === 'istio_tcp_received_bytes_total')) {
        const k = `${src}\0${dst}\0${tcp ? 'tcp' : 'http'}`;
        let e = dstMtls.get(k);
        if (e === undefined) dstMtls.set(k, (e = { mtls: 0, other: 0 }));
        if (l.connection_security_policy === 'mutual_tls') e.mtls += amount;
        else e.other += amount;
      }
      // Kiali's choice of reporter (module comment).
      let reporter: 'source' | 'destination';
      if (l.reporter === 'source' && src !== UNKNOWN) reporter = 'source';
      else if (l.reporter === 'destination' && (src === UNKNOWN || !sidecars.has(src))) reporter = 'destination';
      else continue;
      const id = `${src}\0${dst}\0${protocol}`;
      let e = edges.get(id);
      if (e === undefined) {
        e = { source: src, target: dst, protocol, reporter, services: new Set(), requests: 0, rate: 0, outcomes: outcomes(), codes: new Map(), buckets: new Map(), count: 0, cumBuckets: new Map(), cumCount: 0, sent: 0, received: 0, opened: 0, sentRate: 0, receivedRate: 0, openedRate: 0, srcMtls: 0, srcOther: 0 };
        edges.set(id, e);
      }
      if (known(l.destination_service)) e.services.add(l.destination_service);
      const rate = span > 0 ? amount / span : 0;
      switch (s.name) {
        case 'istio_requests_total': {
          e.requests += amount;
          e.rate += rate;
          countOutcome(e.outcomes, l, protocol, amount);
          const code = l.response_code ?? '';
          e.codes.set(code, (e.codes.get(code) ?? 0) + amount);
          if (protocol === 'grpc' && l.grpc_response_status !== undefined && l.grpc_response_status !== '') e.codes.set(`grpc:${l.grpc_response_status}`, (e.codes.get(`grpc:${l.grpc_response_status}`) ?? 0) + amount);
          if (l.reporter === 'source') {
            if (known(l.destination_principal)) e.srcMtls += amount;
            else e.srcOther += amount;
          }
          break;
        }
        case 'istio_request_duration_milliseconds_bucket': {
          const le = l.le === '+Inf' ? Infinity : Number(l.le);
          if (!Number.isNaN(le)) e.buckets.set(le, (e.buckets.get(le) ?? 0) + amount);
          break;
        }
        case 'istio_request_duration_milliseconds_count':
          e.count += amount;
          break;
        case 'istio_tcp_sent_bytes_total':
        case 'istio_tcp_received_bytes_total':
          if (s.name === 'istio_tcp_sent_bytes_total') {
            e.sent += amount;
            e.sentRate += rate;
          } else {
            e.received += amount;
            e.receivedRate += rate;
          }
          if (l.reporter === 'source') {
            if (known(l.destination_principal)) e.srcMtls += amount;
            else e.srcOther += amount;
          }
          break;
        case 'istio_tcp_connections_opened_total':
          e.opened += amount;
          e.openedRate += rate;
          break;
      }
    }
    // The p99 fallback: this sidecar's cumulative buckets for the edges it reports.
    if (basis === 'window') {
      for (const [key, v] of latest.values) {
        const s = h.series.get(key);
        if (s === undefined || (s.name !== 'istio_request_duration_milliseconds_bucket' && s.name !== 'istio_request_duration_milliseconds_count')) continue;
        const l = s.labels;
        const protocol: Protocol = l.request_protocol === 'grpc' ? 'grpc' : 'http';
        const e = edges.get(`${sourceNode(l)}\0${destinationNode(l)}\0${protocol}`);
        if (e === undefined || e.reporter !== l.reporter) continue;
        if (s.name === 'istio_request_duration_milliseconds_count') e.cumCount += v;
        else {
          const le = l.le === '+Inf' ? Infinity : Number(l.le);
          if (!Number.isNaN(le)) e.cumBuckets.set(le, (e.cumBuckets.get(le) ?? 0) + v);
        }
      }
    }
  }

  const nodeAcc = new Map<string, { requests: number; rate: number; errors: number; byProtocol: Map<Protocol, Outcomes> }>();
  const touch = (id: string) => {
    let n = nodeAcc.get(id);
    if (n === undefined) nodeAcc.set(id, (n = { requests: 0, rate: 0, errors: 0, byProtocol: new Map() }));
    return n;
  };
  const out: GraphEdge[] = [];
  for (const [id, e] of [...edges].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))) {
    const isTcp = e.protocol === 'tcp';
    if (isTcp ? e.sent + e.received + e.opened <= 0 : e.requests <= 0) continue;
    touch(e.source);
    const dst = touch(e.target);
    let http: GraphEdge['http'] = null;
    if (!isTcp) {
      dst.requests += e.requests;
      dst.rate += e.rate;
      dst.errors += e.outcomes.errors;
      let inbound = dst.byProtocol.get(e.protocol);
      if (inbound === undefined) dst.byProtocol.set(e.protocol, (inbound = outcomes()));
      addOutcomes(inbound, e.outcomes);
      let p99 = histogramQuantile(0.99, e.buckets, e.count > 0 ? e.count : null);
      let p99Basis: 'window' | 'cumulative' | null = p99 === null ? null : basis;
      if (p99 === null && basis === 'window') {
        p99 = histogramQuantile(0.99, e.cumBuckets, e.cumCount > 0 ? e.cumCount : null);
        p99Basis = p99 === null ? null : 'cumulative';
      }
      http = { requests: e.requests, rate: basis === 'window' ? e.rate : null, errors: e.outcomes.errors, errorRatio: e.outcomes.errors / e.requests, codes: Object.fromEntries([...e.codes].sort()), p99Ms: p99, p99Basis };
    }
    const ev = dstMtls.get(`${e.source}\0${e.target}\0${isTcp ? 'tcp' : 'http'}`);
    let share: number | null = null;
    let mtlsFrom: GraphEdge['mtlsFrom'] = null;
    if (ev !== undefined && ev.mtls + ev.other > 0) {
      share = ev.mtls / (ev.mtls + ev.other);
      mtlsFrom = 'destination';
    } else if (e.srcMtls + e.srcOther > 0) {
      share = e.srcMtls / (e.srcMtls + e.srcOther);
      mtlsFrom = 'source';
    }
    out.push({
      id: id.replace(/\0/g, ' '),
      source: e.source,
      target: e.target,
      protocol: e.protocol,
      reporter: e.reporter,
      services: [...e.services].sort(),
      http,
      tcp: isTcp ? { sentBytes: e.sent, receivedBytes: e.received, connectionsOpened: e.opened, sentBytesRate: basis === 'window' ? e.sentRate : null, receivedBytesRate: basis === 'window' ? e.receivedRate : null, connectionsOpenedRate: basis === 'window' ? e.openedRate : null } : null,
      mtls: share === null ? 'unknown' : share >= 1 ? 'all' : share <= 0 ? 'none' : 'some',
      mtlsPercent: share === null ? null : Math.round(share * 1000) / 10,
      mtlsFrom,
      health: http === null ? 'healthy' : healthOf(e.outcomes),
    });
  }
  const ids = [...nodeAcc.keys()].sort();
  const layout = layoutGraph(ids, out.map((e) => [e.source, e.target] as const));
  const nodes: GraphNode[] = ids.map((id) => {
    const n = nodeAcc.get(id)!;
    const pos = layout.positions.get(id)!;
    return {
      ...nodeOf(id),
      sidecar: sidecars.has(id),
      health: nodeHealthOf(n.byProtocol),
      inbound: { requests: n.requests, rate: basis === 'window' && n.requests > 0 ? n.rate : null, errorRatio: n.requests > 0 ? n.errors / n.requests : null },
      x: pos.x,
      y: pos.y,
    };
  });
  targetRows.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.address < b.address ? -1 : 1));
  return { time: new Date(opts.now).toISOString(), windowSeconds: opts.windowMs / 1000, intervalSeconds: opts.intervalMs / 1000, basis, nodes, edges: out, targets: targetRows, width: layout.width, height: layout.height };
}
