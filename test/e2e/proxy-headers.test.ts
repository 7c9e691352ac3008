/**
 * Istio ProxyConfig `proxyHeaders` at the gateway, through the real `meshgate run` (one worker) over
 * real sockets, changed by reloads:
 * - MeshConfig `defaultConfig.proxyHeaders`: `server.value` names the server on relayed answers
 *   (HTTP/1.1 and HTTP/2) and on local ones; `requestId.disabled` generates no x-request-id but
 *   keeps a client's; `envoyDebugHeaders.disabled` removes x-meshgate-flags from local answers;
 * - the gateway pod's `proxy.istio.io/config` annotation with `server.disabled`: the upstream's own
 *   `server` header passes through, local answers carry none (Envoy's PASS_THROUGH), while
 *   MeshConfig's requestId.disabled stays (Istio's merge);
 * - a WebSocket upgrade's 101 follows the same rule (named, nothing added on pass-through);
 * - with proxyHeaders gone, meshgate's defaults are back (`server: meshgate`, an id generated,
 *   x-meshgate-flags on local answers).
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { startWsEcho, type WsEcho } from '../support/ws-echo.js';
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
    - match: [{ uri: { prefix: /ws } }]
      route: [{ destination: { host: wsecho } }]
    - route: [{ destination: { host: web } }]
`;

function meshConfig(proxyHeaders: string | null): string {
  return `
apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |
    defaultConfig:
${proxyHeaders === null ? '      {}' : proxyHeaders.replace(/^/gm, '      ')}
`;
}

const GATEWAY_POD = `
apiVersion: v1
kind: Pod
metadata:
  name: ingressgateway-1
  namespace: istio-system
  labels: { app: istio-ingressgateway, istio: ingressgateway }
  annotations:
    proxy.istio.io/config: |
      proxyHeaders:
        server: { disabled: true }
status: { phase: Running, podIP: 10.0.0.10 }
`;

/** The `server` header of a WebSocket upgrade's 101 through the gateway (undefined when absent). */
function wsServerHeader(port: number): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws`, { headers: { host: HOST } });
    let server: string | undefined;
    ws.once('upgrade', (res) => (server = res.headers.server as string | undefined));
    ws.once('message', () => {
      ws.terminate();
      resolve(server);
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

/** One HTTP/2 (h2c) request; resolves with the response head. */
function h2Request(port: number, headers: http2.OutgoingHttpHeaders): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', reject);
    const req = client.request(headers, { endStream: true });
    let head: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('error', reject);
    req.setTimeout(10_000, () => req.close(http2.constants.NGHTTP2_CANCEL));
    req.resume();
    req.on('close', () => {
      client.close();
      resolve(head);
    });
  });
}

describe('ProxyConfig proxyHeaders at the gateway', { timeout: 90_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let wsEcho: WsEcho;
  let base = '';

  before(async () => {
    echo = await startEchoServer({ name: 'web' });
    wsEcho = await startWsEcho('ws');
    writeConfig(dir, 'backends.yaml', serviceYaml('web', [echo.port]));
    writeConfig(dir, 'ws-backend.yaml', serviceYaml('wsecho', [wsEcho.port]));
    writeConfig(dir, 'routes.yaml', ROUTES);
    writeConfig(dir, 'mesh.yaml', meshConfig('proxyHeaders:\n  server: { value: edge }\n  requestId: { disabled: true }\n  envoyDebugHeaders: { disabled: true }'));
    gw = await startGateway({ configDir: dir });
    base = `http://127.0.0.1:${gw.httpPort}`;
  });

  after(async () => {
    await gw?.stop();
    await echo?.close();
    await wsEcho?.close();
    removeDir(dir);
  });

  test('MeshConfig: server named on relayed and local answers, no request id made, no flags header', async () => {
    const ok = await get(`${base}/a`, { host: HOST });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.headers.server, 'edge', 'the relayed answer names the configured server, not the upstream\'s `echo`');
    assert.equal(ok.json?.headers['x-request-id'], undefined, `no x-request-id generated, got ${String(ok.json?.headers['x-request-id'])}`);
    const own = await get(`${base}/b`, { host: HOST, headers: { 'x-request-id': 'client-id-1' } });
    assert.equal(own.json?.headers['x-request-id'], 'client-id-1', "a client's id is still passed on");
    const nr = await get(`${base}/c`, { host: 'nowhere.example.com' });
    assert.equal(nr.status, 404);
    assert.equal(nr.headers.server, 'edge');
    assert.equal(nr.headers['x-meshgate-flags'], undefined, 'envoyDebugHeaders disabled: no flags header on local answers');
    const h2 = await h2Request(gw.httpPort, { ':path': '/d', ':authority': HOST });
    assert.equal(h2[':status'], 200);
    assert.equal(h2.server, 'edge', 'HTTP/2 too');
    const h2nr = await h2Request(gw.httpPort, { ':path': '/e', ':authority': 'nowhere.example.com' });
    assert.equal(h2nr[':status'], 404);
    assert.equal(h2nr.server, 'edge');
    assert.equal(await wsServerHeader(gw.httpPort), 'edge', "a WebSocket upgrade's 101 too");
  });

  test("the gateway pod's annotation: server passed through (upstream's on relayed answers, none on local ones)", async () => {
    writeConfig(dir, 'pod.yaml', GATEWAY_POD);
    await waitFor(async () => (await get(`${base}/f`, { host: HOST })).headers.server === 'echo', 10_000, 'the upstream server header to pass through');
    const ok = await get(`${base}/g`, { host: HOST });
    assert.equal(ok.headers.server, 'echo');
    assert.equal(ok.json?.headers['x-request-id'], undefined, "MeshConfig's requestId.disabled is kept (Istio's merge)");
    const nr = await get(`${base}/h`, { host: 'nowhere.example.com' });
    assert.equal(nr.status, 404);
    assert.equal(nr.headers.server, undefined, `a local answer has no server header, got ${String(nr.headers.server)}`);
    // The annotation's proxyHeaders replaces MeshConfig's but for the five fields Istio keeps: envoyDebugHeaders stays disabled.
    assert.equal(nr.headers['x-meshgate-flags'], undefined);
    const h2 = await h2Request(gw.httpPort, { ':path': '/i', ':authority': HOST });
    assert.equal(h2.server, 'echo');
    assert.equal(await wsServerHeader(gw.httpPort), undefined, 'the WebSocket backend sends none: none is added');
  });

  test("without proxyHeaders, meshgate's defaults are back", async () => {
    writeConfig(dir, 'pod.yaml', '');
    writeConfig(dir, 'mesh.yaml', meshConfig(null));
    await waitFor(async () => (await get(`${base}/j`, { host: HOST })).headers.server === 'meshgate', 10_000, 'server: meshgate again');
    const ok = await get(`${base}/k`, { host: HOST });
    assert.match(String(ok.json?.headers['x-request-id']), /^[0-9a-f-]{36}$/, 'an id is generated again');
    const nr = await get(`${base}/l`, { host: 'nowhere.example.com' });
    assert.equal(nr.headers.server, 'meshgate');
    assert.equal(nr.headers['x-meshgate-flags'], 'NR');
    assert.equal(await wsServerHeader(gw.httpPort), 'meshgate');
  });
});
