/**
 * The gateway's own answers to upstream failures: ingress-nginx's statuses on Ingress routes
 * (a refused or reset connection 502, a TLS failure 502, a read timeout 504), Envoy's on Istio routes
 * to the same backends (503 `UF`/`UC`). The response flag is Envoy's on both, so logs and metrics
 * read alike. Real sockets: a port nothing listens on, a server that resets every connection as the
 * request arrives, a plaintext server reached over TLS, and a server that never answers.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { freePort, get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, service: string, annotations: Record<string, string> = {}): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: ${service}, port: { number: 80 } } } }] }
`;
}

function virtualService(name: string, host: string, service: string): string {
  return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${host}]
  gateways: [istio-system/gw]
  http:
    - route: [{ destination: { host: ${service}.default.svc.cluster.local, port: { number: 80 } } }]
`;
}

describe('answers to upstream failures: ingress-nginx statuses on Ingress routes, Envoy statuses on Istio routes', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const sockets = new Set<net.Socket>();
  // Resets every connection once a request arrives (before any response byte).
  const resetter = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.resetAndDestroy());
  });
  // Answers nothing, ever (the read timeout decides).
  const silent = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  });
  // Plain HTTP, reached with backend-protocol HTTPS: the TLS handshake fails.
  const plain = net.createServer((s) => {
    s.on('error', () => {});
    s.on('data', () => s.end('HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n'));
  });

  before(async () => {
    const refusedPort = await freePort(); // nothing listens there
    for (const s of [resetter, silent, plain]) await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s: net.Server) => (s.address() as net.AddressInfo).port;
    writeConfig(dir, 'services.yaml', [serviceYaml('refused', [refusedPort]), serviceYaml('resetter', [port(resetter)]), serviceYaml('silent', [port(silent)]), serviceYaml('plain', [port(plain)])].join('---\n'));
    writeConfig(dir, 'ingress.yaml', [
      ingress('refused', 'refused.nginx.test', 'refused'),
      ingress('reset', 'reset.nginx.test', 'resetter'),
      ingress('tls', 'tls.nginx.test', 'plain', { 'backend-protocol': 'HTTPS' }),
      ingress('slow', 'slow.nginx.test', 'silent', { 'proxy-read-timeout': '1', 'proxy-next-upstream-tries': '1' }),
    ].join('---\n'));
    writeConfig(dir, 'istio.yaml', [
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*.istio.test"]
`,
      virtualService('refused', 'refused.istio.test', 'refused'),
      virtualService('reset', 'reset.istio.test', 'resetter'),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const s of sockets) s.destroy();
    for (const s of [resetter, silent, plain]) s.close();
    removeDir(dir);
  });

  const at = (host: string) => get(`http://127.0.0.1:${gw.httpPort}/x`, { host });

  test('a refused connection: 502 on the Ingress (nginx "connect() failed"), 503 UF on the VirtualService', async () => {
    const nginx = await at('refused.nginx.test');
    assert.equal(nginx.status, 502, nginx.body);
    assert.match(String(nginx.headers['x-meshgate-flags']), /UF/);
    const istio = await at('refused.istio.test');
    assert.equal(istio.status, 503, istio.body);
    assert.match(String(istio.headers['x-meshgate-flags']), /UF/);
  });

  test('a reset before the response: 502 on the Ingress ("upstream prematurely closed"), 503 UC on the VirtualService', async () => {
    const nginx = await at('reset.nginx.test');
    assert.equal(nginx.status, 502, nginx.body);
    assert.match(String(nginx.headers['x-meshgate-flags']), /UC/);
    const istio = await at('reset.istio.test');
    assert.equal(istio.status, 503, istio.body);
    assert.match(String(istio.headers['x-meshgate-flags']), /UC/);
  });

  test('a failed TLS handshake to an HTTPS backend: 502 on the Ingress', async () => {
    const r = await at('tls.nginx.test');
    assert.equal(r.status, 502, r.body);
    assert.match(String(r.headers['x-meshgate-flags']), /UF/);
  });

  test('no response within proxy-read-timeout: 504, as before', async () => {
    const r = await at('slow.nginx.test');
    assert.equal(r.status, 504, r.body);
    assert.match(String(r.headers['x-meshgate-flags']), /UT/);
  });
});
