/**
 * The mesh graph's math on hand-written Prometheus text: rates and increases over two or more
 * scrapes, counter resets, new series, one scrape (cumulative), p99 from bucket deltas with missing
 * buckets, Kiali's choice of reporter, mTLS from either side, unknown callers and PassthroughCluster,
 * and a layout that does not depend on input order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildMeshGraph, histogramQuantile, type GraphEdge, type MeshGraph, type TargetInput } from './graph.js';
import { TargetHistory } from './history.js';
import { layoutGraph, MARGIN_X } from './layout.js';
import { parsePromText } from './prom-text.js';

const T0 = 1_700_000_000_000;
const TD = 'cluster.local';

interface Req {
  reporter: 'source' | 'destination';
  src: [string, string] | null;
  dst: [string, string] | null;
  svc: string;
  code?: string;
  proto?: string;
  csp?: string;
  /** mTLS seen by the source (destination_principal set). */
  srcMtls?: boolean;
  grpc?: string;
}

function labels(r: Req): string {
  const svcName = r.svc.split('.')[0];
  const svcNs = r.svc.endsWith('.svc.cluster.local') ? r.svc.split('.')[1] : 'unknown';
  const l: Record<string, string> = {
    reporter: r.reporter,
    source_workload: r.src?.[1] ?? 'unknown',
    source_workload_namespace: r.src?.[0] ?? 'unknown',
    source_principal: r.src !== null && r.reporter === 'destination' && r.csp === 'mutual_tls' ? `spiffe://${TD}/ns/${r.src[0]}/sa/${r.src[1]}` : 'unknown',
    destination_workload: r.dst?.[1] ?? 'unknown',
    destination_workload_namespace: r.dst?.[0] ?? svcNs,
    destination_principal: r.dst !== null && (r.srcMtls === true || r.csp === 'mutual_tls') ? `spiffe://${TD}/ns/${r.dst[0]}/sa/${r.dst[1]}` : 'unknown',
    destination_service: r.svc,
    destination_service_name: svcName,
    destination_service_namespace: svcNs,
    request_protocol: r.proto ?? 'http',
    response_code: r.code ?? '200',
    grpc_response_status: r.grpc ?? '',
    response_flags: '-',
    connection_security_policy: r.reporter === 'source' ? 'unknown' : (r.csp ?? 'none'),
  };
  return Object.entries(l).map(([k, v]) => `${k}="${v}"`).join(',');
}

const req = (r: Req, n: number) => `istio_requests_total{${labels(r)}} ${n}`;
const hist = (r: Req, buckets: [string, number][]) =>
  [...buckets.map(([le, n]) => `istio_request_duration_milliseconds_bucket{${labels(r)},le="${le}"} ${n}`), `istio_request_duration_milliseconds_count{${labels(r)}} ${buckets[buckets.length - 1][1]}`].join('\n');
const tcp = (r: Req, metric: 'sent' | 'received' | 'opened', n: number) =>
  `istio_tcp_${metric === 'opened' ? 'connections_opened' : `${metric}_bytes`}_total{${labels({ ...r, proto: 'tcp', code: '0' })}} ${n}`;

/** A target whose scrapes are the given texts, `stepS` seconds apart. */
function target(name: string, texts: string[], stepS = 10, start = T0): TargetInput {
  const history = new TargetHistory();
  texts.forEach((t, i) => history.add(start + i * stepS * 1000, parsePromText(t)));
  return { name, address: `10.0.0.${name.length}`, port: 15020, connected: true, lastError: null, history };
}

function graph(targets: TargetInput[], now = T0 + 60_000, windowMs = 120_000): MeshGraph {
  return buildMeshGraph(targets, { now, windowMs, intervalMs: 10_000 });
}

function edge(g: MeshGraph, source: string, dest: string, protocol = 'http'): GraphEdge {
  const e = g.edges.find((x) => x.source === source && x.target === dest && x.protocol === protocol);
  assert.ok(e, `edge ${source} -> ${dest} (${protocol}) expected; edges: ${JSON.stringify(g.edges.map((x) => x.id))}`);
  return e;
}

const A: [string, string] = ['shop', 'frontend'];
const B: [string, string] = ['shop', 'reviews-v1'];
const BSVC = 'reviews.shop.svc.cluster.local';
const AB: Req = { reporter: 'source', src: A, dst: B, svc: BSVC, srcMtls: true };
const AB_DST: Req = { reporter: 'destination', src: A, dst: B, svc: BSVC, csp: 'mutual_tls' };

test('two scrapes: rate, error ratio and p99 from the increases; the destination report is not counted twice', () => {
  const a = target('a', [
    [req(AB, 10), hist(AB, [['5', 10], ['10', 10], ['+Inf', 10]])].join('\n'),
    // A 503 series appears in the second scrape: it counts from 0.
    [req(AB, 30), req({ ...AB, code: '503' }, 2), hist(AB, [['5', 20], ['10', 32], ['+Inf', 32]])].join('\n'),
  ]);
  const b = target('bb', [[req(AB_DST, 10)].join('\n'), [req(AB_DST, 30), req({ ...AB_DST, code: '503' }, 2)].join('\n')]);
  const g = graph([a, b]);
  assert.equal(g.basis, 'window');
  assert.equal(g.edges.length, 1, JSON.stringify(g.edges.map((e) => e.id)));
  const e = edge(g, 'workload/shop/frontend', 'workload/shop/reviews-v1');
  assert.equal(e.reporter, 'source');
  assert.deepEqual(e.services, [BSVC]);
  assert.equal(e.http!.requests, 22);
  assert.equal(e.http!.rate, 2.2);
  assert.equal(e.http!.errors, 2);
  assert.equal(e.http!.errorRatio, 2 / 22);
  assert.deepEqual(e.http!.codes, { '200': 20, '503': 2 });
  // Deltas le5:10 le10:22 +Inf:22; rank 0.99*22 = 21.78 inside (5,10]: 5 + 5*(21.78-10)/12.
  assert.ok(Math.abs(e.http!.p99Ms! - (5 + (5 * 11.78) / 12)) < 1e-9, `p99 ${e.http!.p99Ms}`);
  assert.equal(e.http!.p99Basis, 'window');
  assert.equal(e.mtls, 'all');
  assert.equal(e.mtlsFrom, 'destination');
  assert.equal(e.health, 'degraded');
  const nb = g.nodes.find((n) => n.id === 'workload/shop/reviews-v1')!;
  assert.equal(nb.sidecar, true);
  assert.equal(nb.health, 'degraded');
  assert.equal(nb.inbound.requests, 22);
  assert.deepEqual(g.targets.map((t) => [t.name, t.workload, t.scrapes, t.contributing]), [['a', 'shop/frontend', 2, true], ['bb', 'shop/reviews-v1', 2, true]]);
});

test('a counter reset (sidecar restart) counts the new value, not a negative increase', () => {
  const a = target('a', [req(AB, 100), req(AB, 5), req(AB, 8)]);
  const e = edge(graph([a]), 'workload/shop/frontend', 'workload/shop/reviews-v1');
  assert.equal(e.http!.requests, 8);
  assert.equal(e.http!.rate, 8 / 20);
});

test('a series that vanishes and comes back counts from 0 again', () => {
  const a = target('a', [req(AB, 50), '', req(AB, 4)]);
  assert.equal(edge(graph([a]), 'workload/shop/frontend', 'workload/shop/reviews-v1').http!.requests, 4);
});

test('one scrape: cumulative counters, no rate, p99 said to be cumulative', () => {
  const a = target('a', [[req(AB, 40), hist(AB, [['1', 30], ['2', 40], ['+Inf', 40]])].join('\n')]);
  const g = graph([a]);
  assert.equal(g.basis, 'cumulative');
  const e = edge(g, 'workload/shop/frontend', 'workload/shop/reviews-v1');
  assert.equal(e.http!.requests, 40);
  assert.equal(e.http!.rate, null);
  assert.equal(e.http!.p99Basis, 'cumulative');
  // rank 39.6 inside (1,2]: 1 + (39.6-30)/10.
  assert.ok(Math.abs(e.http!.p99Ms! - 1.96) < 1e-9);
});

test('no bucket increase in the window but requests: p99 falls back to the cumulative buckets', () => {
  const h = hist(AB, [['10', 100], ['+Inf', 100]]);
  const a = target('a', [[req(AB, 100), h].join('\n'), [req(AB, 101), h].join('\n')]);
  const e = edge(graph([a]), 'workload/shop/frontend', 'workload/shop/reviews-v1');
  assert.equal(e.http!.p99Basis, 'cumulative');
  assert.ok(Math.abs(e.http!.p99Ms! - 9.9) < 1e-9);
});

test('a sidecar with one scrape waits for its second while others already give a window', () => {
  const a = target('a', [req(AB, 1), req(AB, 3)]);
  const late = target('late', [req({ ...AB, src: ['shop', 'late'] }, 1000)]);
  const g = graph([a, late]);
  assert.equal(g.basis, 'window');
  assert.equal(g.edges.length, 1);
  assert.equal(g.targets.find((t) => t.name === 'late')!.contributing, false);
});

test('callers without a sidecar come from the destination report, as node "unknown"', () => {
  const u: Req = { reporter: 'destination', src: null, dst: B, svc: BSVC, csp: 'none' };
  const b = target('b', [req(u, 0), [req(u, 10), req({ ...u, code: '403' }, 5)].join('\n')]);
  const g = graph([b]);
  const e = edge(g, 'unknown', 'workload/shop/reviews-v1');
  assert.equal(e.reporter, 'destination');
  assert.equal(e.http!.requests, 15);
  // Kiali counts 4xx as errors (graph/protocol.go: http4xx IsErr); 33 % of 4xx fails its 20 % tolerance.
  assert.equal(e.http!.errorRatio, 5 / 15);
  assert.equal(e.health, 'failing');
  assert.equal(e.mtls, 'none');
  assert.deepEqual(g.nodes.map((n) => [n.id, n.kind]), [['unknown', 'unknown'], ['workload/shop/reviews-v1', 'workload']]);
});

test('unknown destinations: PassthroughCluster and BlackHoleCluster service nodes, plaintext seen from the source', () => {
  const p: Req = { reporter: 'source', src: A, dst: null, svc: 'PassthroughCluster' };
  const bh: Req = { reporter: 'source', src: A, dst: null, svc: 'BlackHoleCluster', code: '502' };
  const a = target('a', ['', [req(p, 4), req(bh, 2)].join('\n')]);
  const g = graph([a]);
  const e = edge(g, 'workload/shop/frontend', 'service/unknown/PassthroughCluster');
  assert.equal(e.mtls, 'none');
  assert.equal(e.mtlsFrom, 'source');
  assert.equal(edge(g, 'workload/shop/frontend', 'service/unknown/BlackHoleCluster').health, 'failing');
  assert.deepEqual(g.nodes.find((n) => n.name === 'PassthroughCluster')?.kind, 'service');
});

test('mTLS on some of the traffic: "some" with its share', () => {
  const b = target('b', [req(AB_DST, 0), [req(AB_DST, 3), req({ ...AB_DST, csp: 'none' }, 1)].join('\n')]);
  const a = target('a', [req(AB, 0), req(AB, 4)]);
  const e = edge(graph([a, b]), 'workload/shop/frontend', 'workload/shop/reviews-v1');
  assert.equal(e.mtls, 'some');
  assert.equal(e.mtlsPercent, 75);
});

test('a destination report stands for the edge when the source sidecar is not scraped', () => {
  const b = target('b', [req(AB_DST, 0), req(AB_DST, 6)]);
  const e = edge(graph([b]), 'workload/shop/frontend', 'workload/shop/reviews-v1');
  assert.equal(e.reporter, 'destination');
  assert.equal(e.http!.requests, 6);
  assert.equal(e.mtls, 'all');
});

test('gRPC: a non-OK status is an error even with HTTP 200', () => {
  const g1: Req = { ...AB, proto: 'grpc', grpc: '0' };
  const a = target('a', ['', [req(g1, 9), req({ ...g1, grpc: '14' }, 1)].join('\n')]);
  const e = edge(graph([a]), 'workload/shop/frontend', 'workload/shop/reviews-v1', 'grpc');
  assert.equal(e.http!.errorRatio, 0.1);
  assert.equal(e.http!.codes['grpc:14'], 1);
});

test('TCP edges: byte and connection rates, mTLS from the destination', () => {
  const db: [string, string] = ['data', 'db'];
  const s: Req = { reporter: 'source', src: A, dst: db, svc: 'db.data.svc.cluster.local' };
  const d: Req = { reporter: 'destination', src: A, dst: db, svc: 'db.data.svc.cluster.local', csp: 'mutual_tls' };
  const a = target('a', [[tcp(s, 'sent', 100), tcp(s, 'received', 1000), tcp(s, 'opened', 1)].join('\n'), [tcp(s, 'sent', 300), tcp(s, 'received', 5000), tcp(s, 'opened', 3)].join('\n')]);
  const b = target('bbbb', [[tcp(d, 'sent', 1000), tcp(d, 'received', 100)].join('\n'), [tcp(d, 'sent', 5000), tcp(d, 'received', 300)].join('\n')]);
  const e = edge(graph([a, b]), 'workload/shop/frontend', 'workload/data/db', 'tcp');
  assert.equal(e.http, null);
  assert.deepEqual(e.tcp, { sentBytes: 200, receivedBytes: 4000, connectionsOpened: 2, sentBytesRate: 20, receivedBytesRate: 400, connectionsOpenedRate: 0.2 });
  assert.equal(e.mtls, 'all');
});

test('edges without traffic in the window are not drawn', () => {
  const a = target('a', [req(AB, 5), req(AB, 5)]);
  assert.equal(graph([a]).edges.length, 0);
});

test('a sidecar gone from the push keeps its data until it leaves the window', () => {
  const a = target('a', [req(AB, 1), req(AB, 5)]);
  a.connected = false;
  assert.equal(graph([a], T0 + 30_000, 60_000).edges.length, 1);
  a.history.prune(T0 + 200_000, 60_000);
  assert.equal(a.history.scrapes.length, 0);
  assert.equal(a.history.series.size, 0);
  assert.equal(graph([a], T0 + 200_000, 60_000).edges.length, 0);
});

test('pruning keeps one baseline scrape before the window', () => {
  const h = new TargetHistory();
  for (let i = 0; i < 10; i++) h.add(T0 + i * 10_000, parsePromText(req(AB, i * 10)));
  h.prune(T0 + 90_000, 30_000);
  assert.deepEqual(h.scrapes.map((s) => (s.t - T0) / 1000), [60, 70, 80, 90]);
  assert.equal(h.increases().get([...h.series.keys()][0]), 30);
  assert.equal(h.spanSeconds, 30);
});

const quantiles: { desc: string; buckets: [number, number][]; count?: number; q?: number; want: number | null }[] = [
  { desc: 'interpolates inside the bucket', buckets: [[10, 50], [20, 100], [Infinity, 100]], q: 0.75, want: 15 },
  { desc: 'first bucket from 0', buckets: [[4, 100], [Infinity, 100]], q: 0.5, want: 2 },
  { desc: 'in +Inf: the highest finite bound', buckets: [[10, 1], [Infinity, 100]], want: 10 },
  { desc: 'no +Inf bucket: the count stands for it', buckets: [[10, 50], [20, 100]], count: 100, q: 0.75, want: 15 },
  { desc: 'no +Inf and no count', buckets: [[10, 50], [20, 100]], want: null },
  { desc: 'a bucket missing from one series (sum not monotonic) is made monotonic', buckets: [[5, 60], [10, 40], [20, 100], [Infinity, 100]], q: 0.5, want: (5 * 50) / 60 },
  { desc: 'no observations', buckets: [[10, 0], [Infinity, 0]], want: null },
  { desc: 'only +Inf', buckets: [[Infinity, 5]], want: null },
];
for (const c of quantiles) {
  test(`histogramQuantile: ${c.desc}`, () => {
    const got = histogramQuantile(c.q ?? 0.99, new Map(c.buckets), c.count ?? null);
    if (c.want === null) assert.equal(got, null);
    else assert.ok(got !== null && Math.abs(got - c.want) < 1e-9, `want ${c.want}, got ${got}`);
  });
}

test('layout: callers left of callees, unknown first, same positions whatever the input order', () => {
  const nodes = ['workload/a/db', 'unknown', 'workload/a/web', 'workload/a/api', 'service/unknown/PassthroughCluster'];
  const edges: [string, string][] = [['unknown', 'workload/a/web'], ['workload/a/web', 'workload/a/api'], ['workload/a/api', 'workload/a/db'], ['workload/a/api', 'service/unknown/PassthroughCluster'], ['workload/a/db', 'workload/a/api']];
  const l1 = layoutGraph(nodes, edges);
  const l2 = layoutGraph([...nodes].reverse(), [...edges].reverse());
  assert.deepEqual([...l1.positions].sort(), [...l2.positions].sort());
  const x = (id: string) => l1.positions.get(id)!.x;
  assert.equal(x('unknown'), MARGIN_X);
  assert.ok(x('unknown') < x('workload/a/web') && x('workload/a/web') < x('workload/a/api') && x('workload/a/api') < x('workload/a/db'));
  const ys = new Set([...l1.positions.values()].map((p) => `${p.x},${p.y}`));
  assert.equal(ys.size, nodes.length, 'no two nodes at one place');
  // A mesh that is one cycle still lays out.
  const cyc = layoutGraph(['b', 'a'], [['a', 'b'], ['b', 'a']]);
  assert.ok(cyc.positions.get('a')!.x < cyc.positions.get('b')!.x);
});

test('series equal on the labels the graph reads are summed and kept once', () => {
  const flags = (f: string, n: number) => req(AB, n).replace('response_flags="-"', `response_flags="${f}"`);
  const a = target('a', [[flags('-', 10), flags('URX', 1)].join('\n'), [flags('-', 15), flags('URX', 3)].join('\n')]);
  assert.equal(a.history.series.size, 1);
  assert.equal(edge(graph([a]), 'workload/shop/frontend', 'workload/shop/reviews-v1').http!.requests, 7);
});

test("health follows Kiali's default tolerances: 5xx degrade above 0 % and fail from 10 %, 4xx degrade from 10 % and fail from 20 %", () => {
  const cases: [string, [string, number][], 'healthy' | 'degraded' | 'failing', number][] = [
    ['all 2xx', [['200', 100]], 'healthy', 0],
    ['3xx are no errors', [['200', 50], ['304', 50]], 'healthy', 0],
    ['one 5xx in 1000', [['200', 999], ['503', 1]], 'degraded', 0.001],
    ['5xx at 10 %', [['200', 90], ['503', 10]], 'failing', 0.1],
    ['4xx under 10 %', [['200', 91], ['404', 9]], 'healthy', 0.09],
    ['4xx at 10 %', [['200', 90], ['404', 10]], 'degraded', 0.1],
    ['4xx at 20 %', [['200', 80], ['403', 20]], 'failing', 0.2],
    ['no response (DC, UF...): response_code 0', [['200', 95], ['0', 5]], 'degraded', 0.05],
  ];
  for (const [what, codes, health, ratio] of cases) {
    const a = target('a', ['', codes.map(([code, n]) => req({ ...AB, code }, n)).join('\n')]);
    const e = edge(graph([a]), 'workload/shop/frontend', 'workload/shop/reviews-v1');
    assert.equal(e.health, health, what);
    assert.ok(Math.abs(e.http!.errorRatio - ratio) < 1e-12, `${what}: error ratio ${e.http!.errorRatio}`);
  }
});

test("gRPC health: statuses 1-16 degrade above 0 % and fail from 10 %; an HTTP 4xx counts as an error but not against Kiali's HTTP-only tolerances", () => {
  const g: Req = { ...AB, proto: 'grpc', grpc: '0' };
  const of = (series: string[]) => edge(graph([target('a', ['', series.join('\n')])]), 'workload/shop/frontend', 'workload/shop/reviews-v1', 'grpc');
  assert.equal(of([req(g, 99), req({ ...g, grpc: '5' }, 1)]).health, 'degraded');
  assert.equal(of([req(g, 90), req({ ...g, grpc: '14' }, 10)]).health, 'failing');
  const http4xx = of([req(g, 90), req({ ...g, code: '429', grpc: '' }, 10)]);
  assert.equal(http4xx.http!.errorRatio, 0.1);
  assert.equal(http4xx.health, 'healthy');
});

test("a node's health is its inbound requests' worst, per protocol", () => {
  const c: Req = { ...AB, src: ['shop', 'checkout'] };
  // frontend -> reviews: 8 % 4xx (healthy); checkout -> reviews: 4 % 4xx. Together 6 %: healthy, while
  // a gRPC caller's single UNAVAILABLE degrades the node.
  const a = target('a', ['', [req({ ...AB, code: '200' }, 92), req({ ...AB, code: '404' }, 8), req({ ...c, code: '200' }, 96), req({ ...c, code: '404' }, 4)].join('\n')]);
  const node = (g: MeshGraph) => g.nodes.find((n) => n.id === 'workload/shop/reviews-v1')!;
  assert.equal(node(graph([a])).health, 'healthy');
  const grpc: Req = { ...AB, src: ['shop', 'ratings'], proto: 'grpc', grpc: '0' };
  const b = target('b', ['', [req(grpc, 999), req({ ...grpc, grpc: '14' }, 1)].join('\n')]);
  assert.equal(node(graph([a, b])).health, 'degraded');
});
