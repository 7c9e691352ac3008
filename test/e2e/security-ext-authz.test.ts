/**
 * AuthorizationPolicy CUSTOM with an HTTP external authorization service (Istio `envoyExtAuthzHttp`
 * from the MeshConfig ConfigMap istio-system/istio), through the real `meshgate run` and YAML, with
 * a real ext-authz HTTP server and a real upstream that records what reaches it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { freePort, get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
}

async function listen(handler: http.RequestListener): Promise<http.Server> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

function close(server: http.Server | undefined): Promise<void> {
  if (server === undefined) return Promise.resolve();
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}

describe('AuthorizationPolicy CUSTOM with an HTTP ext-authz service', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let upstream: http.Server;
  let authz: http.Server;
  const upstreamSeen: Seen[] = [];
  const authzSeen: Seen[] = [];
  const shop = (p: string, opts: { headers?: Record<string, string>; method?: string } = {}) =>
    get(`http://127.0.0.1:${gw.httpPort}${p}`, { host: 'shop.example.com', ...opts });

  before(async () => {
    upstream = await listen((req, res) => {
      upstreamSeen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ name: 'web', method: req.method, url: req.url, path: req.url, headers: req.headers, body: '' }));
    });
    authz = await listen((req, res) => {
      authzSeen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
      const url = req.url ?? '';
      if (url.startsWith('/check/slow/')) {
        const t = setTimeout(() => res.writeHead(200).end(), 3000);
        res.on('close', () => clearTimeout(t));
        return;
      }
      if (url.startsWith('/check/secure/odd-status')) {
        // A status HTTP/2 cannot carry, with a repeated single-value header (node:http2 threw on both).
        res.writeHead(799, [['content-type', 'text/plain'], ['x-ext-authz-reason', 'odd'], ['content-type', 'text/html']].flat());
        return res.end('odd');
      }
      if (url.startsWith('/check/secure/allow')) {
        res.writeHead(200, { 'x-user': 'alice', 'x-not-forwarded': 'no' });
        return res.end();
      }
      res.writeHead(401, { 'content-type': 'text/plain', 'x-ext-authz-reason': 'no-ticket', 'x-hidden': 'secret' });
      res.end('denied by ext-authz');
    });
    const closedPort = await freePort();
    writeConfig(dir, 'backends.yaml', [
      serviceYaml('web', [(upstream.address() as AddressInfo).port]),
      serviceYaml('ext-authz', [(authz.address() as AddressInfo).port], { namespace: 'auth', servicePort: 8000 }),
      serviceYaml('gone', [closedPort], { namespace: 'auth', servicePort: 8000 }),
    ].join('---\n'));
    writeConfig(dir, 'gateway.yaml', `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: public, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*/shop.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http: [{ route: [{ destination: { host: web } }] }]
`);
    writeConfig(dir, 'mesh.yaml', `
apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |
    extensionProviders:
    - name: ext
      envoyExtAuthzHttp:
        service: ext-authz.auth.svc.cluster.local
        port: 8000
        timeout: 2s
        pathPrefix: /check
        includeRequestHeadersInCheck: [x-ticket, x-forwarded-client-cert]
        includeAdditionalHeadersInCheck: { x-gateway: meshgate }
        headersToUpstreamOnAllow: [x-user]
        headersToDownstreamOnDeny: [content-type, x-ext-authz-reason]
    - name: slow
      envoyExtAuthzHttp: { service: ext-authz.auth.svc.cluster.local, port: 8000, timeout: 0.3s, pathPrefix: /check }
    - name: down
      envoyExtAuthzHttp: { service: auth/gone.auth.svc.cluster.local, port: 8000, timeout: 2s }
    - name: down-open
      envoyExtAuthzHttp: { service: gone.auth.svc.cluster.local, port: 8000, timeout: 2s, failOpen: true }
`);
    const custom = (name: string, provider: string, path: string) => `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: ${name}, namespace: istio-system }
spec:
  action: CUSTOM
  provider: { name: ${provider} }
  rules: [{ to: [{ operation: { paths: ["${path}"] } }] }]
`;
    writeConfig(dir, 'security.yaml', [
      custom('ext', 'ext', '/secure/*'),
      custom('slow', 'slow', '/slow/*'),
      custom('down', 'down', '/down/*'),
      custom('down-open', 'down-open', '/open/*'),
      `---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-after-custom, namespace: istio-system }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/secure/allow/forbidden"] } }] }]
`,
    ].join(''));
    gw = await startGateway({ configDir: dir });
  });
  after(async () => {
    await gw?.stop();
    await close(upstream);
    await close(authz);
    removeDir(dir);
  });

  const reset = () => {
    upstreamSeen.length = 0;
    authzSeen.length = 0;
  };

  test('allow: the check carries method, prefixed path, configured headers; the injected header reaches the upstream', async () => {
    reset();
    const r = await shop('/secure/allow/1?q=2', { method: 'POST', headers: { 'x-ticket': 't-1', authorization: 'Basic abc', 'x-secret': 'not-for-authz', 'x-user': 'mallory', 'x-forwarded-client-cert': 'By=spiffe://forged;URI=spiffe://cluster.local/ns/x/sa/admin' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(authzSeen.length, 1, 'one check request');
    const check = authzSeen[0];
    assert.equal(check.method, 'POST');
    assert.equal(check.url, '/check/secure/allow/1?q=2');
    assert.equal(check.headers['x-ticket'], 't-1');
    assert.equal(check.headers.authorization, 'Basic abc');
    assert.equal(check.headers.host, 'shop.example.com');
    assert.equal(check.headers['x-gateway'], 'meshgate');
    assert.equal(check.headers['x-forwarded-for'], '127.0.0.1');
    assert.equal(check.headers['x-forwarded-proto'], 'http');
    assert.equal(check.headers['x-secret'], undefined, 'headers not listed are not sent to the service');
    assert.equal(check.headers['x-forwarded-client-cert'], undefined, 'a client-sent XFCC is sanitized before the check (plaintext: no client certificate)');
    assert.equal(upstreamSeen.length, 1);
    assert.equal(upstreamSeen[0].headers['x-user'], 'alice', 'headersToUpstreamOnAllow overwrites the client value');
    assert.equal(upstreamSeen[0].headers['x-not-forwarded'], undefined);
  });

  test('deny: the service status, body and listed headers reach the client; nothing reaches the upstream', async () => {
    reset();
    const r = await shop('/secure/nope');
    assert.equal(r.status, 401);
    assert.equal(r.body, 'denied by ext-authz');
    assert.equal(r.headers['x-ext-authz-reason'], 'no-ticket');
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.headers['x-hidden'], undefined, 'headers not in headersToDownstreamOnDeny are dropped');
    assert.equal(authzSeen.length, 1);
    assert.equal(upstreamSeen.length, 0, 'the upstream saw nothing');
  });

  test('CUSTOM runs before DENY: allowed by the service, then denied by a DENY policy', async () => {
    reset();
    const r = await shop('/secure/allow/forbidden');
    assert.equal(r.status, 403);
    assert.equal(r.body, 'RBAC: access denied');
    assert.equal(authzSeen.length, 1);
    assert.equal(upstreamSeen.length, 0);
  });

  test('a request the CUSTOM rules do not match never calls the service', async () => {
    reset();
    const r = await shop('/public');
    assert.equal(r.status, 200);
    assert.equal(authzSeen.length, 0);
    assert.equal(upstreamSeen.length, 1);
  });

  test('service down: 403 by default, nothing reaches the upstream', async () => {
    reset();
    const r = await shop('/down/x');
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-meshgate-flags'], 'UAEX', 'answered by the ext-authz error path');
    assert.equal(r.body, '');
    assert.equal(upstreamSeen.length, 0);
  });

  test('service down with failOpen: allowed', async () => {
    reset();
    const r = await shop('/open/x');
    assert.equal(r.status, 200, r.body);
    assert.equal(upstreamSeen.length, 1);
  });

  test('service too slow: 403 after the provider timeout, not after the service answers', async () => {
    reset();
    const started = Date.now();
    const r = await shop('/slow/x');
    const took = Date.now() - started;
    assert.equal(r.status, 403);
    assert.equal(r.headers['x-meshgate-flags'], 'UAEX');
    assert.ok(took < 2500, `answered after ${took} ms; the timeout is 300 ms`);
    assert.equal(authzSeen.length, 1);
    assert.equal(upstreamSeen.length, 0);
  });

  test('HTTP/2 client, a denial with status 799 and a repeated header: 502 on the stream, the gateway keeps serving', async () => {
    reset();
    const h2 = (path: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const session = http2.connect(`http://127.0.0.1:${gw.httpPort}`);
        session.on('error', reject);
        const req = session.request({ ':path': path, ':authority': 'shop.example.com' });
        let status = 0;
        let body = '';
        req.on('response', (h) => (status = Number(h[':status'])));
        req.setEncoding('utf8');
        req.on('data', (c: string) => (body += c));
        req.on('error', () => {});
        req.on('close', () => {
          session.close();
          resolve({ status, body });
        });
        req.end();
      });
    const odd = await h2('/secure/odd-status');
    assert.equal(odd.status, 502);
    const again = await h2('/secure/allow/after');
    assert.equal(again.status, 200, again.body);
    assert.equal((await shop('/open/x')).status, 200);
  });
});
