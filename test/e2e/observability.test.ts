/**
 * Observability end to end: the real `meshgate run` (two workers) with echo backends on loopback.
 * Istio's metric names, labels and buckets on /metrics (summed over workers), access-log lines with
 * Envoy's response flags, and one request id in the upstream's headers and the log.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { ISTIO_BUCKETS } from '../../src/observability/metrics.js';
import { parsePrometheus } from '../../src/admin/dashboard/stats.js';
import { freePort, get, removeDir, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { observabilityConfig } from '../support/observability-config.js';
import { FLAKY_CLUSTER, FLAKY_HOST, outlierConfig, startFailingServer } from '../support/outlier-config.js';
import { spawnSync } from 'node:child_process';
import { CLI } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

/** One request on a fresh connection (so the kernel spreads them over the workers). */
function fresh(port: number, path: string, host: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers: { host, ...headers }, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

async function metrics(gw: GatewayProcess) {
  const res = await get(`http://127.0.0.1:${gw.adminPort}/metrics`);
  assert.equal(res.status, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return { text: res.body, samples: parsePrometheus(res.body) };
}

function sum(samples: ReturnType<typeof parsePrometheus>, name: string, labels: Record<string, string>): number {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((n, s) => n + s.value, 0);
}

/** Access-log lines (Istio TEXT format) in the gateway's output. */
function textLines(gw: GatewayProcess): string[] {
  return gw.output().split('\n').filter((l) => l.startsWith('['));
}

describe('metrics and access log (text), two workers', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};
  const HOST = 'obs.example.com';

  before(async () => {
    for (const name of ['web', 'a', 'b']) e[name] = await startEchoServer({ name });
    writeConfig(dir, 'config.yaml', observabilityConfig({ web: e.web.port, a: e.a.port, b: e.b.port, down: await freePort() }));
    gw = await startGateway({ configDir: dir, workers: 2, args: ['--access-log', 'stdout'] });
  });

  after(async () => {
    await gw?.stop();
    for (const s of Object.values(e)) await s.close();
    removeDir(dir);
  });

  test('istio_requests_total: Istio labels in order, summed over both workers', async () => {
    for (let i = 0; i < 20; i++) assert.equal((await fresh(gw.httpPort, '/ok', HOST)).status, 200);
    await waitFor(async () => sum((await metrics(gw)).samples, 'istio_requests_total', { destination_service: 'web.default.svc.cluster.local', response_code: '200' }) >= 20, 5000, '20 requests counted');
    const { text, samples } = await metrics(gw);
    const line = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('destination_service="web.default.svc.cluster.local"') && l.includes('response_code="200"'));
    assert.ok(line, `no istio_requests_total line for web in:\n${text}`);
    const names = [...line.matchAll(/([a-z_]+)="/g)].map((m) => m[1]);
    assert.deepEqual(names, [
      'reporter', 'source_workload', 'source_canonical_service', 'source_canonical_revision', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version', 'source_cluster',
      'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version', 'destination_service', 'destination_canonical_service',
      'destination_canonical_revision', 'destination_service_name', 'destination_service_namespace', 'destination_cluster', 'request_protocol', 'response_code', 'grpc_response_status',
      'response_flags', 'connection_security_policy',
    ]);
    const s = samples.find((x) => x.name === 'istio_requests_total' && x.labels.destination_service === 'web.default.svc.cluster.local' && x.labels.response_code === '200')!;
    assert.equal(s.labels.reporter, 'source');
    assert.equal(s.labels.source_workload, 'meshgate');
    assert.equal(s.labels.destination_service_name, 'web');
    assert.equal(s.labels.destination_service_namespace, 'default');
    assert.equal(s.labels.request_protocol, 'http');
    assert.equal(s.labels.response_flags, '-');
    assert.equal(s.labels.grpc_response_status, '');
    assert.equal(s.labels.connection_security_policy, 'unknown');
    assert.equal(s.value, 20, 'both workers counted, summed once each');
    assert.match(text, /# TYPE istio_requests_total counter/);
  });

  test('duration and size histograms: Envoy default buckets, _sum and _count', async () => {
    const { samples, text } = await metrics(gw);
    for (const name of ['istio_request_duration_milliseconds', 'istio_request_bytes', 'istio_response_bytes']) {
      assert.match(text, new RegExp(`# TYPE ${name} histogram`));
      const buckets = samples.filter((s) => s.name === `${name}_bucket` && s.labels.destination_service === 'web.default.svc.cluster.local' && s.labels.response_code === '200');
      assert.deepEqual(buckets.map((b) => b.labels.le), [...ISTIO_BUCKETS.map(String), '+Inf'], `${name} buckets`);
      const count = sum(samples, `${name}_count`, { destination_service: 'web.default.svc.cluster.local', response_code: '200' });
      assert.equal(buckets[buckets.length - 1].value, count);
      assert.ok(count >= 20);
    }
    // Response bodies of the echo backend are a few hundred bytes: the sum says so.
    assert.ok(sum(samples, 'istio_response_bytes_sum', { destination_service: 'web.default.svc.cluster.local', response_code: '200' }) > 20 * 100);
    for (const name of ['istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total', 'istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total']) assert.match(text, new RegExp(`# TYPE ${name} counter`));
  });

  test('response flags in metrics and access log: NR, UH, UF,URX, UT, DC, UC', async () => {
    assert.equal((await fresh(gw.httpPort, '/ok', 'unknown.example.com')).status, 404);
    assert.equal((await fresh(gw.httpPort, '/empty', HOST)).status, 503);
    assert.equal((await fresh(gw.httpPort, '/down', HOST)).status, 503);
    assert.equal((await fresh(gw.httpPort, '/delay/3000', HOST)).status, 504);
    // DC: the client goes away while the upstream is still thinking.
    await new Promise<void>((resolve) => {
      const req = http.request({ host: '127.0.0.1', port: gw.httpPort, path: '/wait', headers: { host: HOST }, agent: false });
      req.on('error', () => resolve());
      req.end();
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 300);
    });
    // UC: the upstream resets after sending its head.
    await fresh(gw.httpPort, '/abort/1000', HOST).catch(() => null);

    const want: [string, Record<string, string>][] = [
      ['NR', { response_code: '404', destination_service: 'unknown' }],
      ['UH', { response_code: '503', destination_service: 'empty.default.svc.cluster.local' }],
      // Connection refused, retried by Istio's default policy (2 retries), then given up: UF,URX.
      ['UF,URX', { response_code: '503', destination_service: 'down.default.svc.cluster.local' }],
      ['UT', { response_code: '504', destination_service: 'web.default.svc.cluster.local' }],
      ['DC', { response_code: '0', destination_service: 'web.default.svc.cluster.local' }],
      ['UC', { response_code: '200', destination_service: 'web.default.svc.cluster.local' }],
    ];
    await waitFor(async () => {
      const { samples } = await metrics(gw);
      return want.every(([flag, labels]) => sum(samples, 'istio_requests_total', { ...labels, response_flags: flag }) === 1);
    }, 8000, `one request counted per flag ${want.map((w) => w[0]).join(',')}`);

    // The refused connection was retried twice (Istio's default policy): counted per cluster.
    const { samples } = await metrics(gw);
    assert.equal(sum(samples, 'meshgate_upstream_retries_total', { cluster: 'outbound|80||down.default.svc.cluster.local' }), 2);

    await waitFor(() => want.every(([flag]) => textLines(gw).some((l) => l.split(' ')[5] === flag)), 5000, 'a log line per flag');
    const lines = textLines(gw);
    const byFlag = (flag: string) => lines.find((l) => l.split(' ')[5] === flag)!;
    // [start] "METHOD PATH PROTO" CODE FLAGS DETAILS ...
    assert.match(byFlag('NR'), /^\[\d{4}-\d\d-\d\dT[\d:.]+Z\] "GET \/ok HTTP\/1\.1" 404 NR route_not_found - "-" 0 0 \d+ - "-" "-" "-" "unknown\.example\.com" "-" - - 127\.0\.0\.1:\d+ 127\.0\.0\.1:\d+ - -$/);
    assert.match(byFlag('UH'), /" 503 UH no_healthy_upstream .* "obs\.example\.com" "-" outbound\|80\|\|empty\.default\.svc\.cluster\.local .* virtualservice\/default\/obs\/http\/\d+$/);
    assert.match(byFlag('UF,URX'), new RegExp(`" 503 UF,URX upstream_reset_before_response_started\\{connection_failure\\} .* "127\\.0\\.0\\.1:\\d+" outbound\\|80\\|\\|down\\.default\\.svc\\.cluster\\.local `));
    assert.match(byFlag('UT'), /"GET \/delay\/3000 HTTP\/1\.1" 504 UT response_timeout /);
    assert.match(byFlag('DC'), /"GET \/wait HTTP\/1\.1" 0 DC downstream_remote_disconnect /);
    assert.match(byFlag('UC'), /"GET \/abort\/1000 HTTP\/1\.1" 200 UC /);
  });

  test('one request id in the upstream request and the access log', async () => {
    const given = await fresh(gw.httpPort, '/ok?given', HOST, { 'x-request-id': 'obs-test-request-1', 'user-agent': 'obs-test' });
    const generated = await fresh(gw.httpPort, '/ok?generated', HOST);
    const genId = (JSON.parse(generated.body) as { headers: Record<string, string> }).headers['x-request-id'];
    assert.equal((JSON.parse(given.body) as { headers: Record<string, string> }).headers['x-request-id'], 'obs-test-request-1');
    assert.match(genId, /^[0-9a-f-]{36}$/);
    await waitFor(() => textLines(gw).some((l) => l.includes('/ok?generated')), 5000, 'log lines');
    const lineGiven = textLines(gw).find((l) => l.includes('/ok?given'))!;
    assert.match(lineGiven, /" 200 - via_upstream - "-" 0 \d+ \d+ \d+ "-" "obs-test" "obs-test-request-1" "obs\.example\.com" "127\.0\.0\.1:\d+" outbound\|80\|\|web\.default\.svc\.cluster\.local /);
    assert.ok(textLines(gw).find((l) => l.includes('/ok?generated'))!.includes(`"${genId}"`), 'generated id logged');
  });

  test('meshgate metrics: snapshot, reloads, per-route split, upstream pools, listener connections', async () => {
    for (let i = 0; i < 100; i++) assert.equal((await get(`http://127.0.0.1:${gw.httpPort}/canary`, { host: HOST })).status, 200);
    await waitFor(async () => sum((await metrics(gw)).samples, 'meshgate_route_requests_total', { route: 'virtualservice/default/obs/http/1' }) === 100, 5000, 'canary requests counted');
    const { samples, text } = await metrics(gw);
    const a = sum(samples, 'meshgate_route_requests_total', { route: 'virtualservice/default/obs/http/1', destination_cluster: 'outbound|80||a.default.svc.cluster.local' });
    const b = sum(samples, 'meshgate_route_requests_total', { route: 'virtualservice/default/obs/http/1', destination_cluster: 'outbound|80||b.default.svc.cluster.local' });
    assert.equal(a + b, 100);
    assert.ok(a > 55 && b > 5, `80/20 split expected, got ${a}/${b}`);
    assert.equal(samples.filter((s) => s.name === 'meshgate_snapshot_info' && s.value === 1).length, 1);
    assert.equal(sum(samples, 'meshgate_config_reloads_total', { outcome: 'applied' }), 1);
    assert.ok(sum(samples, 'meshgate_upstream_connections', {}) >= 1, 'pooled upstream connections');
    assert.ok(samples.some((s) => s.name === 'meshgate_listener_connections_active' && s.labels.listener !== undefined));
    for (const name of ['meshgate_upstream_retries_total', 'meshgate_upstream_overflows_total', 'meshgate_outlier_ejections_total', 'meshgate_upstream_pending_requests', 'meshgate_access_log_dropped_total']) assert.match(text, new RegExp(`# TYPE ${name} `));
    // The Istio path works too.
    assert.equal((await get(`http://127.0.0.1:${gw.adminPort}/stats/prometheus`)).status, 200);
  });
});

describe('access log as JSON, metrics off', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Echo;

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    writeConfig(dir, 'config.yaml', observabilityConfig({ web: web.port, a: web.port, b: web.port, down: await freePort() }));
    gw = await startGateway({ configDir: dir, workers: 1, args: ['--access-log', 'stdout', '--access-log-format', 'json', '--metrics', 'off'] });
  });

  after(async () => {
    await gw?.stop();
    await web.close();
    removeDir(dir);
  });

  test('one JSON object per request with Istio keys', async () => {
    assert.equal((await fresh(gw.httpPort, '/ok', 'obs.example.com', { 'x-request-id': 'json-1', 'x-forwarded-for': '10.0.0.1' })).status, 200);
    assert.equal((await fresh(gw.httpPort, '/empty', 'obs.example.com')).status, 503);
    const entries = () =>
      gw
        .output()
        .split('\n')
        .filter((l) => l.startsWith('{"start_time"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    await waitFor(() => entries().length >= 2, 5000, 'two JSON log lines');
    const [ok, uh] = [entries().find((x) => x.request_id === 'json-1')!, entries().find((x) => x.response_flags === 'UH')!];
    assert.deepEqual(Object.keys(ok).sort(), [
      'authority', 'bytes_received', 'bytes_sent', 'connection_termination_details', 'downstream_local_address', 'downstream_remote_address', 'duration', 'method', 'path',
      'protocol', 'request_id', 'requested_server_name', 'response_code', 'response_code_details', 'response_flags', 'route_name', 'start_time', 'upstream_cluster',
      'upstream_host', 'upstream_local_address', 'upstream_service_time', 'upstream_transport_failure_reason', 'user_agent', 'x_forwarded_for',
    ]);
    assert.equal(ok.response_code, 200);
    assert.equal(ok.response_flags, '-');
    assert.equal(ok.x_forwarded_for, '10.0.0.1');
    assert.equal(ok.upstream_cluster, 'outbound|80||web.default.svc.cluster.local');
    assert.equal(ok.upstream_host, `127.0.0.1:${web.port}`);
    assert.equal(ok.route_name, 'virtualservice/default/obs/http/5');
    assert.equal(typeof ok.duration, 'number');
    assert.ok((ok.bytes_sent as number) > 0);
    assert.equal(uh.response_code, 503);
    assert.equal(uh.upstream_host, null);
    // Metrics off: no request series at all.
    const m = await get(`http://127.0.0.1:${gw.adminPort}/metrics`);
    assert.doesNotMatch(m.body, /istio_requests_total/);
    assert.match(m.body, /meshgate_config_reloads_total/);
  });
});



/** A fake OTLP/HTTP collector: keeps every span posted to /v1/traces (OTLP JSON encoding). */
interface ExportedSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
}
async function startCollector(): Promise<{ port: number; spans: ExportedSpan[]; contentTypes: string[]; close(): Promise<void> }> {
  const spans: ExportedSpan[] = [];
  const contentTypes: string[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      contentTypes.push(String(req.headers['content-type']));
      if (req.url === '/v1/traces' && req.method === 'POST') {
        const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: (Omit<ExportedSpan, 'attributes'> & { attributes: { key: string; value: Record<string, unknown> }[] })[] }[] }[] };
        for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, attributes: Object.fromEntries(s.attributes.map((a) => [a.key, Object.values(a.value)[0]])) });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as import('node:net').AddressInfo).port, spans, contentTypes, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('tracing: W3C and B3 propagation, spans over OTLP/HTTP', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Echo;
  let collector: Awaited<ReturnType<typeof startCollector>>;
  const HOST = 'obs.example.com';
  const upstreamHeaders = (body: string) => (JSON.parse(body) as { headers: Record<string, string> }).headers;

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    collector = await startCollector();
    writeConfig(dir, 'config.yaml', observabilityConfig({ web: web.port, a: web.port, b: web.port, down: await freePort() }));
    gw = await startGateway({
      configDir: dir,
      workers: 1,
      args: ['--tracing-endpoint', `http://127.0.0.1:${collector.port}/v1/traces`, '--tracing-sampling', '100', '--access-log', 'stdout', '--access-log-format', 'json'],
    });
  });

  after(async () => {
    await gw?.stop();
    await web.close();
    await collector.close();
    removeDir(dir);
  });

  test('a sampled W3C parent: the upstream gets the gateway span as parent, the collector gets the span', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parent = '00f067aa0ba902b7';
    const r = await fresh(gw.httpPort, '/ok', HOST, { traceparent: `00-${traceId}-${parent}-01`, 'x-request-id': 'trace-req-1' });
    const h = upstreamHeaders(r.body);
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(h.traceparent);
    assert.ok(m, `traceparent upstream: ${h.traceparent}`);
    assert.equal(m[1], traceId);
    assert.notEqual(m[2], parent, 'the gateway span is the new parent');
    assert.equal(h['x-b3-traceid'], traceId);
    assert.equal(h['x-b3-spanid'], m[2]);
    assert.equal(h['x-b3-parentspanid'], parent);
    assert.equal(h['x-b3-sampled'], '1');
    assert.equal(h['x-request-id'], 'trace-req-1');
    await waitFor(() => collector.spans.some((s) => s.traceId === traceId), 10_000, 'the span at the collector');
    const span = collector.spans.find((s) => s.traceId === traceId)!;
    assert.equal(span.spanId, m[2]);
    assert.equal(span.parentSpanId, parent);
    assert.equal(span.kind, 2, 'SERVER');
    assert.equal(span.name, 'virtualservice/default/obs/http/5');
    assert.equal(span.attributes['guid:x-request-id'], 'trace-req-1');
    assert.equal(span.attributes['http.status_code'], '200');
    assert.equal(span.attributes.upstream_cluster, 'outbound|80||web.default.svc.cluster.local');
    assert.match(collector.contentTypes[0], /application\/json/);
    // The same id in the access log.
    await waitFor(() => gw.output().includes('"request_id":"trace-req-1"'), 5000, 'log line');
  });

  test('B3 (64-bit trace id) in, W3C and B3 out; a new trace when there is none; unsampled parents stay unsampled', async () => {
    const b3 = upstreamHeaders((await fresh(gw.httpPort, '/ok?b3', HOST, { 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': '00f067aa0ba902b7', 'x-b3-sampled': '1' })).body);
    assert.match(b3.traceparent, /^00-0000000000000000a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    assert.equal(b3['x-b3-parentspanid'], '00f067aa0ba902b7');

    const fresh1 = upstreamHeaders((await fresh(gw.httpPort, '/ok?new', HOST)).body);
    const created = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(fresh1.traceparent);
    assert.ok(created, `a new sampled trace (100%): ${fresh1.traceparent}`);
    assert.equal(fresh1['x-b3-parentspanid'], undefined);

    const unsampledTrace = 'aaaabbbbccccddddeeeeffff00001111';
    const un = upstreamHeaders((await fresh(gw.httpPort, '/ok?unsampled', HOST, { traceparent: `00-${unsampledTrace}-1111222233334444-00` })).body);
    assert.match(un.traceparent, new RegExp(`^00-${unsampledTrace}-[0-9a-f]{16}-00$`));
    assert.equal(un['x-b3-sampled'], '0');

    await waitFor(() => collector.spans.some((s) => s.traceId === created[1]) && collector.spans.some((s) => s.traceId === '0000000000000000a3ce929d0e0e4736'), 10_000, 'spans of the B3 and new traces');
    const root = collector.spans.find((s) => s.traceId === created[1])!;
    assert.equal(root.parentSpanId ?? '', '');
    assert.match(String(root.attributes['guid:x-request-id']), /^[0-9a-f-]{36}$/);
    assert.equal(root.attributes['guid:x-request-id'], fresh1['x-request-id'], 'span and upstream share the generated request id');
    await new Promise((r) => setTimeout(r, 1500));
    assert.ok(!collector.spans.some((s) => s.traceId === unsampledTrace), 'no span exported for an unsampled parent');
  });
});

describe('outlier ejections: metrics, admin clusters JSON and CLI table, two workers', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let good: Echo;
  let bad: Awaited<ReturnType<typeof startFailingServer>>;

  before(async () => {
    good = await startEchoServer({ name: 'good' });
    bad = await startFailingServer();
    writeConfig(dir, 'config.yaml', outlierConfig({ good: good.port, bad: bad.port }));
    gw = await startGateway({ configDir: dir, workers: 2 });
  });

  after(async () => {
    await gw?.stop();
    await good?.close();
    await bad?.close();
    removeDir(dir);
  });

  test('consecutive 5xx eject the failing endpoint: counter, gauges, /api/clusters, meshgate clusters', async () => {
    const badKey = `127.0.0.1:${bad.port}`;
    // Fresh connections reach both workers; each ejects on its own after 3 consecutive 503s.
    await waitFor(
      async () => {
        for (let i = 0; i < 10; i++) await fresh(gw.httpPort, '/', FLAKY_HOST);
        return sum((await metrics(gw)).samples, 'meshgate_outlier_endpoint_ejected', { cluster: FLAKY_CLUSTER, endpoint: badKey }) === 1;
      },
      15_000,
      'the failing endpoint ejected',
    );
    const { samples } = await metrics(gw);
    assert.ok(sum(samples, 'meshgate_outlier_ejections_total', { cluster: FLAKY_CLUSTER }) >= 1, 'meshgate_outlier_ejections_total counts the ejection');
    assert.ok(sum(samples, 'meshgate_outlier_ejected_endpoints', { cluster: FLAKY_CLUSTER }) >= 1, 'meshgate_outlier_ejected_endpoints counts it now');
    assert.ok(sum(samples, 'meshgate_outlier_endpoint_ejections_total', { cluster: FLAKY_CLUSTER, endpoint: badKey }) >= 1);
    const until = sum(samples, 'meshgate_outlier_endpoint_ejected_until_seconds', { cluster: FLAKY_CLUSTER, endpoint: badKey });
    assert.ok(until * 1000 > Date.now() + 30_000 && until * 1000 <= Date.now() + 61_000, `ejection ends about 60 s from now, got ${until}`);
    assert.equal(sum(samples, 'meshgate_outlier_endpoint_ejected', { cluster: FLAKY_CLUSTER, endpoint: `127.0.0.1:${good.port}` }), 0, 'the healthy endpoint is never ejected');

    // Once ejected everywhere, traffic only reaches the healthy endpoint.
    await waitFor(
      async () => {
        const codes = await Promise.all(Array.from({ length: 10 }, () => fresh(gw.httpPort, '/', FLAKY_HOST).then((r) => r.status)));
        return codes.every((c) => c === 200);
      },
      15_000,
      'only 200s once both workers ejected the failing endpoint',
    );

    const res = await get(`http://127.0.0.1:${gw.adminPort}/api/clusters`);
    assert.equal(res.status, 200);
    const body = JSON.parse(res.body) as { clusters: { cluster: string; ejected: number; outlierDetection: boolean; endpoints: { port: number; health: string; outlier: { ejected: boolean; ejectedUntil: number | null; timesEjected: number } | null }[] }[] };
    const flaky = body.clusters.find((c) => c.cluster === FLAKY_CLUSTER);
    assert.ok(flaky, `no ${FLAKY_CLUSTER} in ${res.body}`);
    assert.equal(flaky.outlierDetection, true);
    assert.equal(flaky.ejected, 1);
    const badRow = flaky.endpoints.find((e) => e.port === bad.port)!;
    assert.equal(badRow.health, 'ejected');
    assert.equal(badRow.outlier?.ejected, true);
    assert.ok((badRow.outlier?.timesEjected ?? 0) >= 1);
    assert.ok((badRow.outlier?.ejectedUntil ?? 0) > Date.now());
    const goodRow = flaky.endpoints.find((e) => e.port === good.port)!;
    assert.equal(goodRow.health, 'healthy');
    assert.equal(goodRow.outlier, null);

    const cli = spawnSync(process.execPath, [CLI, 'clusters', '--admin', `http://127.0.0.1:${gw.adminPort}`], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(cli.status, 0, cli.stderr);
    assert.match(cli.stdout, /^CLUSTER\s+SERVICE\s+SUBSET\s+LB\s+READY\s+EJECTED\s+ENDPOINTS\n/);
    const line = cli.stdout.split('\n').find((l) => l.startsWith(FLAKY_CLUSTER));
    assert.ok(line, `no ${FLAKY_CLUSTER} line in:\n${cli.stdout}`);
    assert.match(line, /ROUND_ROBIN\s+2\/2\s+1\s+127\.0\.0\.1/, 'READY 2/2, EJECTED 1');
    assert.match(line, new RegExp(`127\\.0\\.0\\.1:${bad.port} \\(ejected \\d+s left, \\d+x\\)`));
    assert.match(line, new RegExp(`127\\.0\\.0\\.1:${good.port}(,|$)`));
  });
});
