/**
 * The sidecar's outbound side (OutboundHandler, src/runtime/sidecar/outbound.ts) over real sockets on
 * loopback, without a lab: a plain listener on a loopback address stands for the service VIP (its
 * address and port are the original destination, as TPROXY keeps them) and hands every accepted
 * socket to the handler; the apps listen on another loopback address, which the view's workload
 * table knows as the pod `reviews-v1`.
 *
 * Proves:
 * - the headers an app sees from the client sidecar are Envoy's sidecar outbound ones: the app's
 *   x-forwarded-proto, x-forwarded-host and x-request-id kept (x-forwarded-proto `http` and a new
 *   x-request-id when it sent none), no x-forwarded-host added, x-forwarded-for not appended,
 *   x-envoy-attempt-count 1 then 2 on a retry, x-envoy-expected-rq-timeout-ms with a route timeout,
 *   metadata-exchange headers dropped both ways;
 * - istio_tcp_* at `reporter="source"` carry every standard label, destination_workload included,
 *   for a TCP service, PassthroughCluster and BlackHoleCluster.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import http from 'node:http';
import net from 'node:net';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { createObservability, DEFAULT_OBSERVABILITY, type Observability } from '../../src/observability/observer.js';
import type { Cluster, IRSnapshot, Listener, OutboundService, SidecarView, TcpListener } from '../../src/ir/types.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { LoopbackServers } from '../support/loopback-servers.js';

const net8 = `127.${100 + ((process.pid >> 3) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
const VIP = `${net8}.10`;
const APP = `${net8}.11`;
const OTHER = `${net8}.12`;
const FQDN = (name: string) => `${name}.default.svc.cluster.local`;

/** Every connection any server of this file accepted (destroyed at the end). */
const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

function meshCluster(name: string, port: number, endpoints: { address: string; port: number }[]): Cluster {
  const c = cluster(`outbound|${port}||${FQDN(name)}`, endpoints);
  return { ...c, service: { namespace: 'default', name, host: FQDN(name), port }, subset: '', connectTimeoutMs: 2000 };
}

function view(httpPort: number, tcpPort: number, appHttp: number, appTcp: number, policy: SidecarView['outboundTrafficPolicy']): IRSnapshot {
  const reviews = meshCluster('reviews', httpPort, [{ address: APP, port: appHttp }]);
  const echo = meshCluster('echo', tcpPort, [{ address: APP, port: appTcp }]);
  const names = [FQDN('reviews'), 'reviews', 'reviews.default', 'reviews.default.svc'];
  const table: Listener = httpListener(
    httpPort,
    [
      vhost(`${FQDN('reviews')}:${httpPort}`, [...names, ...names.map((n) => `${n}:${httpPort}`), `${VIP}:${httpPort}`], [
        route('vs/reviews/retry', forward([reviews.name], { timeoutMs: 3000, retries: { numRetries: 2, perTryTimeoutMs: null, retryOn: ['5xx'], retriableStatusCodes: [], backoffBaseMs: 5, ignorePreviousHosts: false } }), [match({ path: { kind: 'prefix', value: '/retry', ignoreCase: false } })]),
        route('default/reviews', forward([reviews.name])),
      ]),
    ],
    { name: `outbound_${httpPort}`, address: '0.0.0.0' },
  );
  const tcp: TcpListener = {
    name: `outbound_${tcpPort}_tcp_${FQDN('echo')}`,
    address: '0.0.0.0',
    port: tcpPort,
    externalPort: tcpPort,
    protocol: 'TCP',
    routes: [{ name: 'default/echo', source: { kind: 'Service', namespace: 'default', name: 'echo', file: null, line: null }, matches: [{ sniHosts: [], destinationSubnets: [], port: null }], destinations: [{ cluster: echo.name, weight: 1 }] }],
    tlsChains: [],
  };
  const services: OutboundService[] = [
    { host: FQDN('echo'), namespace: 'default', port: tcpPort, protocol: 'TCP', addresses: [VIP], httpRoutes: null, tcpRoutes: tcp.name },
    { host: FQDN('reviews'), namespace: 'default', port: httpPort, protocol: 'HTTP', addresses: [VIP], httpRoutes: table.name, tcpRoutes: null },
  ];
  const sidecar: SidecarView = {
    proxy: { namespace: 'shop', serviceAccount: 'web', podName: 'web-0', podIps: [`${net8}.2`], labels: { app: 'web', version: 'v3' }, spiffeId: 'spiffe://cluster.local/ns/shop/sa/web', workload: 'web' },
    outboundTrafficPolicy: policy,
    outbound: services,
    outboundHttp: [table],
    outboundTcp: [tcp],
    inbound: [],
    inboundDefault: 'PERMISSIVE',
    inboundHttp: [],
    workloads: [
      { ip: APP, namespace: 'default', name: 'reviews-v1', serviceAccount: 'reviews', app: 'reviews', version: 'v1', canonicalService: 'reviews', canonicalRevision: 'v1', meshed: false },
      { ip: OTHER, namespace: 'legacy', name: 'old-db', serviceAccount: 'default', app: '', version: '', canonicalService: 'old-db', canonicalRevision: 'latest', meshed: false },
    ],
  };
  return { ...snapshot([], [echo, reviews]), version: `v-${policy}`, sidecar };
}

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
}

describe('sidecar outbound over loopback: forwarding headers and source-side TCP telemetry', () => {
  const servers: net.Server[] = [];
  const seen: Seen[] = [];
  let handler: OutboundHandler;
  let obs: Observability;
  const P = { http: 0, tcp: 0, appHttp: 0, appTcp: 0, other: 0 };
  let failNext = 0;

  before(async () => {
    const app = http.createServer((req, res) => {
      seen.push({ path: req.url ?? '', headers: req.headers });
      if (req.url?.startsWith('/retry') && failNext > 0) {
        failNext--;
        res.writeHead(503).end('try again');
        return;
      }
      // An upstream's own service time never reaches the app: the sidecar sets its own.
      res.setHeader('x-envoy-upstream-service-time', 'upstream');
      res.setHeader('x-envoy-peer-metadata', 'Cg0KB25hbWUSAhoA');
      res.setHeader('x-envoy-peer-metadata-id', 'sidecar~10.0.0.1~x~y');
      res.end('ok');
    });
    app.keepAliveTimeout = 500;
    const echo = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', (c: Buffer) => s.write(c));
      s.on('end', () => s.end());
      s.on('error', () => {});
    });
    const other = net.createServer((s) => {
      s.end('other\n');
      s.on('error', () => {});
    });
    P.appHttp = await listen(app, APP);
    P.appTcp = await listen(echo, APP);
    P.other = await listen(other, OTHER);
    servers.push(app, echo, other);
    obs = createObservability({ ...DEFAULT_OBSERVABILITY, metrics: true, identity: { workload: 'web', namespace: 'shop', app: 'web', version: 'v3', cluster: 'Kubernetes' } });
    handler = new OutboundHandler({ env: { random: Math.random, observer: obs }, tcpObserver: obs, clusterId: 'Kubernetes', detectionTimeoutMs: 200 });
    const vip = (): net.Server => net.createServer({ allowHalfOpen: true }, (s) => handler.handle(s));
    // The VIP ports (any free ones) then the view that names them.
    const vh = vip();
    const vt = vip();
    P.http = await listen(vh, VIP);
    P.tcp = await listen(vt, VIP);
    servers.push(vh, vt);
    handler.apply(view(P.http, P.tcp, P.appHttp, P.appTcp, 'ALLOW_ANY'));
  });

  after(async () => {
    await handler.close(0);
    const closing = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const s of servers) if (s instanceof http.Server) s.closeAllConnections();
    loopback.destroyConnections();
    await Promise.all(closing);
    await obs.close();
  });

  const get = (path: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.get({ host: VIP, port: P.http, path, headers: { host: `reviews:${P.http}`, connection: 'close', ...headers }, timeout: 5000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
    });

  const tcpExchange = (host: string, port: number, data: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host, port });
      let got = '';
      s.setEncoding('utf8');
      s.on('connect', () => s.end(data));
      s.on('data', (c: string) => (got += c));
      s.on('close', () => resolve(got));
      s.on('error', reject);
      s.setTimeout(5000, () => s.destroy(new Error('timeout')));
    });

  test('the app sees Envoy sidecar outbound headers: nothing of the gateway added, the app\'s own kept', async () => {
    const r = await get('/plain');
    assert.equal(r.status, 200);
    const h = seen.at(-1)!.headers;
    assert.equal(h['x-forwarded-proto'], 'http', 'x-forwarded-proto set when the app sent none');
    assert.equal(h['x-forwarded-host'], undefined, `x-forwarded-host added: ${String(h['x-forwarded-host'])}`);
    assert.equal(h['x-forwarded-for'], undefined, 'x-forwarded-for appended');
    assert.match(String(h['x-request-id']), /^[0-9a-f-]{36}$/, 'x-request-id generated');
    assert.equal(h['x-envoy-attempt-count'], '1');
    assert.equal(h['x-envoy-expected-rq-timeout-ms'], undefined, 'no timeout on the route: no expected timeout');
    assert.equal(h.host, `reviews:${P.http}`);
    // Envoy's router on the sidecar answers with its own upstream service time (whole ms).
    assert.match(String(r.headers['x-envoy-upstream-service-time']), /^\d+$/);
    // The upstream's metadata-exchange answer stops at the sidecar.
    assert.equal(r.headers['x-envoy-peer-metadata'], undefined);
    assert.equal(r.headers['x-envoy-peer-metadata-id'], undefined);

    await get('/own', { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example.com', 'x-request-id': 'abc-123', 'x-envoy-attempt-count': '7', 'x-envoy-peer-metadata': 'forged', 'x-envoy-peer-metadata-id': 'forged' });
    const own = seen.at(-1)!.headers;
    assert.equal(own['x-forwarded-proto'], 'https', "the app's x-forwarded-proto is kept");
    assert.equal(own['x-forwarded-host'], 'shop.example.com', "the app's x-forwarded-host is kept");
    assert.equal(own['x-request-id'], 'abc-123', "the app's x-request-id is kept");
    assert.equal(own['x-envoy-attempt-count'], '1', 'the attempt count is the sidecar\'s');
    assert.equal(own['x-envoy-peer-metadata'], undefined);
    assert.equal(own['x-envoy-peer-metadata-id'], undefined);
  });

  test('x-envoy-attempt-count counts the tries of a retried request', async () => {
    failNext = 1;
    const before = seen.length;
    const r = await get('/retry');
    assert.equal(r.status, 200, r.body);
    const tries = seen.slice(before).map((s) => s.headers['x-envoy-attempt-count']);
    assert.deepEqual(tries, ['1', '2']);
    assert.deepEqual(seen.slice(before).map((s) => s.headers['x-envoy-expected-rq-timeout-ms']), ['3000', '3000'], "the route's 3 s timeout");
    assert.equal(seen[before].headers['x-request-id'], seen[before + 1].headers['x-request-id'], 'one x-request-id for every try');
  });

  test('istio_tcp_* at reporter="source": every standard label, destination_workload from the endpoint', async () => {
    assert.equal(await tcpExchange(VIP, P.tcp, 'ping'), 'ping');
    assert.equal(await tcpExchange(OTHER, P.other, ''), 'other\n', 'direct control');
    const deadline = Date.now() + 5000;
    let lines: string[] = [];
    const find = (name: string, ...parts: string[]) => lines.find((l) => l.startsWith(`${name}{`) && parts.every((p) => l.includes(p)));
    while (Date.now() < deadline) {
      lines = (await obs.registry.metrics()).split('\n');
      if (find('istio_tcp_connections_closed_total', `destination_service="${FQDN('echo')}"`)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const name of ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total', 'istio_tcp_sent_bytes_total', 'istio_tcp_received_bytes_total']) {
      const line = find(name, `destination_service="${FQDN('echo')}"`);
      assert.ok(line !== undefined, `no ${name} series in:\n${lines.filter((l) => l.startsWith('istio_tcp')).join('\n')}`);
      const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      assert.deepEqual(labels, {
        reporter: 'source',
        source_workload: 'web',
        source_canonical_service: 'web',
        source_canonical_revision: 'v3',
        source_workload_namespace: 'shop',
        source_principal: 'unknown',
        source_app: 'web',
        source_version: 'v3',
        source_cluster: 'Kubernetes',
        destination_workload: 'reviews-v1',
        destination_workload_namespace: 'default',
        destination_principal: 'unknown',
        destination_app: 'reviews',
        destination_version: 'v1',
        destination_service: FQDN('echo'),
        destination_canonical_service: 'reviews',
        destination_canonical_revision: 'v1',
        destination_service_name: 'echo',
        destination_service_namespace: 'default',
        destination_cluster: 'Kubernetes',
        request_protocol: 'tcp',
        response_flags: '-',
        connection_security_policy: 'unknown',
      }, name);
      if (name.endsWith('bytes_total')) assert.ok(Number(line.split(' ').at(-1)) >= 4, line);
    }
  });

  test('HTTP to an unknown Host: PassthroughCluster (ALLOW_ANY) and BlackHoleCluster (REGISTRY_ONLY) with the Host as destination_service', async (t) => {
    // An HTTP app at OTHER on the table's port: the original destination of an unknown Host.
    const app = http.createServer((req, res) => res.end(`other ${req.url}`));
    try {
      await listen(app, OTHER, P.http);
    } catch (e) {
      t.skip(`port ${P.http} is taken on ${OTHER}: ${(e as Error).message}`);
      return;
    }
    servers.push(app);
    const front = net.createServer((s) => {
      Object.defineProperty(s, 'localAddress', { value: OTHER });
      Object.defineProperty(s, 'localPort', { value: P.http });
      handler.handle(s);
    });
    const frontPort = await listen(front, VIP);
    servers.push(front);
    const ask = () =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = http.get({ host: VIP, port: frontPort, path: '/x', headers: { host: 'unknown.example:8080', connection: 'close' }, timeout: 5000 }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        });
        req.on('error', reject);
      });
    const passed = await ask();
    assert.equal(passed.status, 200, passed.body);
    assert.equal(passed.body, 'other /x');
    handler.apply(view(P.http, P.tcp, P.appHttp, P.appTcp, 'REGISTRY_ONLY'));
    try {
      assert.equal((await ask()).status, 502);
    } finally {
      handler.apply(view(P.http, P.tcp, P.appHttp, P.appTcp, 'ALLOW_ANY'));
    }
    const lines = (await obs.registry.metrics()).split('\n');
    const series = (name: string) => lines.find((l) => l.startsWith('istio_requests_total{') && l.includes(`destination_service_name="${name}"`));
    const pass = series('PassthroughCluster');
    assert.ok(pass !== undefined, lines.filter((l) => l.startsWith('istio_requests_total')).join('\n'));
    assert.match(pass, /destination_service="unknown\.example:8080"/);
    assert.match(pass, /destination_workload="old-db"/);
    assert.match(pass, /reporter="source"/);
    assert.match(pass, /response_code="200"/);
    const hole = series('BlackHoleCluster');
    assert.ok(hole !== undefined, lines.filter((l) => l.startsWith('istio_requests_total')).join('\n'));
    assert.match(hole, /destination_service="unknown\.example:8080"/);
    assert.match(hole, /response_code="502"/);
    assert.match(hole, /source_workload="web"/);
  });

  test('PassthroughCluster and BlackHoleCluster connections: the catch-all cluster as destination_service_name, the peer workload when known', async () => {
    // An unknown original destination: the listener stands for it (its socket says OTHER:<app port>, as TPROXY would).
    const pass = net.createServer({ allowHalfOpen: true }, (s) => {
      Object.defineProperty(s, 'localPort', { value: P.other });
      handler.handle(s);
    });
    const passPort = await listen(pass, OTHER);
    servers.push(pass);
    assert.equal(await tcpExchange(OTHER, passPort, 'x'), 'other\n', 'relayed to the original destination');
    handler.apply(view(P.http, P.tcp, P.appHttp, P.appTcp, 'REGISTRY_ONLY'));
    try {
      assert.equal(await tcpExchange(OTHER, passPort, 'x'), '', 'REGISTRY_ONLY closes an unknown TCP destination');
    } finally {
      handler.apply(view(P.http, P.tcp, P.appHttp, P.appTcp, 'ALLOW_ANY'));
    }
    const lines = (await obs.registry.metrics()).split('\n');
    const labelsOf = (line: string) => Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const passLine = lines.find((l) => l.startsWith('istio_tcp_connections_closed_total{') && l.includes('destination_service_name="PassthroughCluster"'));
    assert.ok(passLine !== undefined, lines.filter((l) => l.startsWith('istio_tcp')).join('\n'));
    const pl = labelsOf(passLine);
    assert.equal(pl.reporter, 'source');
    assert.equal(pl.destination_service, 'unknown');
    assert.equal(pl.destination_workload, 'old-db');
    assert.equal(pl.destination_workload_namespace, 'legacy');
    assert.equal(pl.destination_service_namespace, 'legacy');
    assert.equal(pl.destination_canonical_service, 'old-db');
    assert.equal(pl.request_protocol, 'tcp');
    const holeLine = lines.find((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('destination_service_name="BlackHoleCluster"'));
    assert.ok(holeLine !== undefined, lines.filter((l) => l.startsWith('istio_tcp')).join('\n'));
    const hl = labelsOf(holeLine);
    assert.equal(hl.destination_service, 'unknown');
    assert.equal(hl.destination_workload, 'unknown');
    assert.equal(hl.source_workload, 'web');
  });
});
