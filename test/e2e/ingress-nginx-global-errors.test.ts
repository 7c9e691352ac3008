/**
 * The ingress-nginx ConfigMap's global `custom-http-errors` with `--default-backend-service` (the
 * controller's default backend, which serves the error pages), and `compute-full-forwarded-for`: real
 * `meshgate run`, an echo backend and an error-page backend on loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, annotations: Record<string, string>): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }] }
`;
}

const configMap = (codes: string, extra = '') => `apiVersion: v1
kind: ConfigMap
metadata: { name: ingress-nginx-controller, namespace: ingress-nginx }
data: { custom-http-errors: "${codes}"${extra} }
`;

describe('ingress-nginx ConfigMap custom-http-errors', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Awaited<ReturnType<typeof startEchoServer>>;
  let lastErrorHeaders: http.IncomingHttpHeaders = {};
  let errorCalls = 0;
  const errorPages = http.createServer((req, res) => {
    errorCalls++;
    lastErrorHeaders = req.headers;
    const code = Number(req.headers['x-code'] ?? 500);
    res.writeHead(code, { 'content-type': 'text/html' }).end(`<h1>global ${code} page for ${req.url}</h1>`);
  });
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    await new Promise<void>((r) => errorPages.listen(0, '127.0.0.1', r));
    writeConfig(dir, 'services.yaml', [serviceYaml('web', [web.port]), serviceYaml('default-http-backend', [(errorPages.address() as AddressInfo).port], { namespace: 'ingress-nginx' })].join('---\n'));
    writeConfig(dir, 'configmap.yaml', configMap('404,503'));
    writeConfig(dir, 'ingress.yaml', [
      ingress('plain', 'plain.example.com', {}),
      ingress('own', 'own.example.com', { 'custom-http-errors': '418' }),
      ingress('off', 'off.example.com', { 'disable-proxy-intercept-errors': 'true' }),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir, args: ['--nginx-configmap', 'ingress-nginx/ingress-nginx-controller', '--default-backend-service', 'ingress-nginx/default-http-backend', '--log-level', 'error'] });
  });

  after(async () => {
    await gw?.stop();
    await web.close();
    errorPages.closeAllConnections();
    await new Promise<void>((r) => errorPages.close(() => r()));
    removeDir(dir);
  });

  test('a listed status of any Ingress is replaced by the default backend\'s page, with X-Code and the names; others pass through', async () => {
    const r = await get(url('/status/503?x=1'), { host: 'plain.example.com', headers: { accept: 'text/html' } });
    assert.equal(r.status, 503);
    assert.equal(r.body, '<h1>global 503 page for /</h1>');
    assert.equal(lastErrorHeaders['x-code'], '503');
    assert.equal(lastErrorHeaders['x-original-uri'], '/status/503?x=1');
    assert.equal(lastErrorHeaders['x-namespace'], 'default');
    assert.equal(lastErrorHeaders['x-ingress-name'], 'plain');
    assert.equal(lastErrorHeaders['x-service-name'], 'web');
    assert.equal(lastErrorHeaders['x-format'], 'text/html');
    const other = await get(url('/status/500'), { host: 'plain.example.com' });
    assert.equal(other.status, 500);
    assert.equal(other.json?.name, 'web', 'an unlisted status is the backend\'s own answer');
  });

  test('an Ingress\'s own custom-http-errors replace the global list (nginx error_page inheritance) and use the global default backend', async () => {
    const teapot = await get(url('/status/418'), { host: 'own.example.com' });
    assert.equal(teapot.status, 418);
    assert.equal(teapot.body, '<h1>global 418 page for /</h1>');
    const before = errorCalls;
    const notFound = await get(url('/status/404'), { host: 'own.example.com' });
    assert.equal(notFound.status, 404);
    assert.equal(notFound.json?.name, 'web', 'the global 404 does not apply to an Ingress with its own list');
    assert.equal(errorCalls, before);
  });

  test('compute-full-forwarded-for "false" (default with the ConfigMap): X-Forwarded-For is the client address, the client\'s list in X-Original-Forwarded-For; "true" appends', async () => {
    const r = await get(url('/xff'), { host: 'plain.example.com', headers: { 'x-forwarded-for': '203.0.113.9' } });
    assert.equal(r.status, 200);
    assert.match(String(r.json?.headers['x-forwarded-for']), /^(127\.0\.0\.1|::1|::ffff:127\.0\.0\.1)$/, 'a spoofed X-Forwarded-For is not passed on');
    assert.equal(r.json?.headers['x-original-forwarded-for'], '203.0.113.9');
    const none = await get(url('/xff'), { host: 'plain.example.com', headers: { 'x-original-forwarded-for': 'forged' } });
    assert.equal(none.json?.headers['x-original-forwarded-for'], undefined, 'a client-sent X-Original-Forwarded-For is dropped');
    writeConfig(dir, 'configmap.yaml', configMap('404,503', ', compute-full-forwarded-for: "true"'));
    await waitFor(async () => String((await get(url('/xff'), { host: 'plain.example.com', headers: { 'x-forwarded-for': '203.0.113.9' } })).json?.headers['x-forwarded-for']).startsWith('203.0.113.9, '), 15_000, 'compute-full-forwarded-for "true"');
  });

  test('disable-proxy-intercept-errors opts an Ingress out; a ConfigMap change applies without a restart', async () => {
    const off = await get(url('/status/503'), { host: 'off.example.com' });
    assert.equal(off.status, 503);
    assert.equal(off.json?.name, 'web');
    writeConfig(dir, 'configmap.yaml', configMap('500'));
    await waitFor(async () => (await get(url('/status/500'), { host: 'plain.example.com' })).body === '<h1>global 500 page for /</h1>', 15_000, 'the new custom-http-errors');
    const r = await get(url('/status/503'), { host: 'plain.example.com' });
    assert.equal(r.json?.name, 'web', '503 is no longer listed');
  });
});
