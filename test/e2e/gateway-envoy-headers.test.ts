/**
 * The headers Envoy's router adds on Istio's ingress gateway, through the real `meshgate run` over
 * real sockets (Istio: pilot/pkg/networking/core/gateway.go sets `include_request_attempt_count` on
 * every gateway virtual host, and the router's `suppress_envoy_headers` only with ProxyConfig
 * `proxyHeaders.envoyDebugHeaders.disabled`):
 * - x-envoy-attempt-count on every upstream request, 1 then the try number on retries; a client's
 *   own value never reaches the upstream;
 * - x-envoy-expected-rq-timeout-ms: the per-try timeout, else the route timeout; a client's is
 *   dropped;
 * - x-envoy-upstream-service-time on relayed answers: whole ms from the complete request to the
 *   answer's head, replacing the upstream's own (GET and a POST with a body);
 * - with `attemptCount.disabled` and `envoyDebugHeaders.disabled` (MeshConfig, reloaded) none of them
 *   is added: the client's attempt count passes, the upstream's service time passes.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

const HOST = 'shop.example.com';

const ROUTES = `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: public, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*/${HOST}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: [${HOST}]
  gateways: [istio-system/public]
  http:
    - match: [{ uri: { prefix: /flaky } }]
      route: [{ destination: { host: web } }]
      timeout: 7s
      retries: { attempts: 3, perTryTimeout: 2s, retryOn: 5xx }
    - match: [{ uri: { prefix: /timed } }]
      route: [{ destination: { host: web } }]
      timeout: 4s
    - route: [{ destination: { host: web } }]
`;

function meshConfig(proxyHeaders: string): string {
  return `
apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |
    defaultConfig:
      ${proxyHeaders}
`;
}

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

describe("Envoy's router headers at the gateway", { timeout: 90_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let backend: http.Server;
  const seen: Seen[] = [];
  /** Tries left to answer 503 on /flaky. */
  let failures = 0;
  let base = '';

  before(async () => {
    backend = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const path = req.url ?? '';
        seen.push({ path, headers: req.headers, body: Buffer.concat(chunks).toString() });
        // The upstream's own value, which the gateway must replace (or pass when debug headers are off).
        const head = { 'content-type': 'text/plain', 'x-envoy-upstream-service-time': '99999' };
        if (path.startsWith('/flaky') && failures > 0) {
          failures--;
          res.writeHead(503, head).end('try again');
          return;
        }
        const delay = path.startsWith('/slow') ? 120 : 0;
        setTimeout(() => res.writeHead(200, head).end('ok'), delay);
      });
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    writeConfig(dir, 'backends.yaml', serviceYaml('web', [(backend.address() as AddressInfo).port]));
    writeConfig(dir, 'routes.yaml', ROUTES);
    gw = await startGateway({ configDir: dir });
    base = `http://127.0.0.1:${gw.httpPort}`;
  });

  after(async () => {
    await gw?.stop();
    await new Promise<void>((r) => backend.close(() => r()));
    removeDir(dir);
  });

  const seenFor = (path: string): Seen[] => seen.filter((s) => s.path === path);

  test('x-envoy-attempt-count: 1, then the try number on each retry; the client\'s value is replaced', async () => {
    failures = 2;
    const r = await get(`${base}/flaky/1`, { host: HOST, headers: { 'x-envoy-attempt-count': '42' } });
    assert.equal(r.status, 200, r.body);
    const tries = seenFor('/flaky/1');
    assert.deepEqual(tries.map((t) => t.headers['x-envoy-attempt-count']), ['1', '2', '3']);
    // The per-try timeout, not the route timeout (Envoy's router).
    assert.deepEqual(tries.map((t) => t.headers['x-envoy-expected-rq-timeout-ms']), ['2000', '2000', '2000']);
  });

  test('x-envoy-expected-rq-timeout-ms: the route timeout; none without one; a client\'s is dropped', async () => {
    await get(`${base}/timed/1`, { host: HOST, headers: { 'x-envoy-expected-rq-timeout-ms': '5' } });
    assert.equal(seenFor('/timed/1')[0]?.headers['x-envoy-expected-rq-timeout-ms'], '4000');
    await get(`${base}/plain/1`, { host: HOST, headers: { 'x-envoy-expected-rq-timeout-ms': '5' } });
    assert.equal(seenFor('/plain/1')[0]?.headers['x-envoy-expected-rq-timeout-ms'], undefined);
    assert.equal(seenFor('/plain/1')[0]?.headers['x-envoy-attempt-count'], '1', 'every route counts attempts, with or without retries');
  });

  test('x-envoy-upstream-service-time: whole ms from the complete request to the answer, replacing the upstream\'s', async () => {
    const slow = await get(`${base}/slow/1`, { host: HOST });
    assert.equal(slow.status, 200);
    const ms = Number(slow.headers['x-envoy-upstream-service-time']);
    assert.ok(Number.isInteger(ms) && ms >= 110 && ms < 5000, `x-envoy-upstream-service-time ${String(slow.headers['x-envoy-upstream-service-time'])}, want about 120`);
    const post = await get(`${base}/slow/post`, { host: HOST, method: 'POST', body: 'x'.repeat(64 * 1024) });
    assert.equal(post.status, 200);
    assert.equal(seenFor('/slow/post')[0]?.body.length, 64 * 1024);
    const postMs = Number(post.headers['x-envoy-upstream-service-time']);
    assert.ok(Number.isInteger(postMs) && postMs >= 110 && postMs < 5000, `POST: x-envoy-upstream-service-time ${String(post.headers['x-envoy-upstream-service-time'])}`);
    const quick = await get(`${base}/plain/2`, { host: HOST });
    assert.match(String(quick.headers['x-envoy-upstream-service-time']), /^\d+$/);
    assert.notEqual(quick.headers['x-envoy-upstream-service-time'], '99999');
    assert.equal(quick.headers.server, 'meshgate');
  });

  test('ProxyConfig attemptCount and envoyDebugHeaders disabled: nothing added, the client\'s and upstream\'s values pass', async () => {
    writeConfig(dir, 'mesh.yaml', meshConfig('proxyHeaders: { attemptCount: { disabled: true }, envoyDebugHeaders: { disabled: true } }'));
    await waitFor(async () => (await get(`${base}/plain/wait`, { host: HOST })).headers['x-envoy-upstream-service-time'] === '99999', 10_000, 'the reload that disables the debug headers');
    failures = 1;
    const r = await get(`${base}/flaky/2`, { host: HOST, headers: { 'x-envoy-attempt-count': '42' } });
    assert.equal(r.status, 200, r.body);
    const tries = seenFor('/flaky/2');
    assert.deepEqual(tries.map((t) => t.headers['x-envoy-attempt-count']), ['42', '42'], 'the client\'s value, untouched on each try');
    assert.deepEqual(tries.map((t) => t.headers['x-envoy-expected-rq-timeout-ms']), [undefined, undefined]);
    assert.equal(r.headers['x-envoy-upstream-service-time'], '99999', 'the upstream\'s own passes');
    await get(`${base}/plain/3`, { host: HOST });
    assert.equal(seenFor('/plain/3')[0]?.headers['x-envoy-attempt-count'], undefined);
  });
});
