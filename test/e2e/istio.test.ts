/**
 * Istio Gateway + VirtualService + DestinationRule end to end: the real `meshgate run` process,
 * echo backends on loopback, real HTTP(S) clients.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

describe('Istio Gateway and VirtualService', () => {
  const dir = tempDir();
  const certDir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;
  const shop = (p: string, headers: Record<string, string> = {}, method = 'GET') => get(url(p), { host: 'shop.example.com', headers, method });

  before(async () => {
    for (const name of ['v1', 'v2', 'api', 'other']) e[name] = await startEchoServer({ name });
    const secure = makeCert(certDir, 'secure.example.com');
    writeConfig(dir, 'backends.yaml', [
      serviceYaml('reviews', [e.v1.port, e.v2.port], { servicePort: 9080, podLabels: [{ app: 'reviews', version: 'v1' }, { app: 'reviews', version: 'v2' }] }),
      serviceYaml('api', [e.api.port], { namespace: 'backend' }),
      serviceYaml('other', [e.other.port]),
    ].join('---\n'));
    writeConfig(dir, 'secret.yaml', tlsSecret('secure-cred', 'istio-system', secure));
    writeConfig(dir, 'gateway.yaml', `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: public, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*/shop.example.com", "*/other.example.com"]
    - port: { number: 80, name: http-redirect, protocol: HTTP }
      hosts: ["secure.example.com"]
      tls: { httpsRedirect: true }
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: ["secure.example.com"]
      tls: { mode: SIMPLE, credentialName: secure-cred }
---
# Not selected by this gateway's labels: never served.
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata: { name: internal, namespace: default }
spec:
  selector: { istio: internal-gateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["internal.example.com"]
`);
    writeConfig(dir, 'reviews.yaml', `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z" }
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http:
    - name: testers
      match:
        - headers: { x-canary: { exact: always } }
        - headers: { cookie: { regex: ".*(^|; )user=alice(;.*|$)" } }
      route: [{ destination: { host: reviews, subset: v2 } }]
    - name: items
      match: [{ uri: { regex: "/items/[0-9]+" } }]
      directResponse: { status: 200, body: { string: "item" } }
    - name: old
      match: [{ uri: { exact: /old } }]
      redirect: { uri: /new, authority: www.example.com, redirectCode: 302 }
    - name: api
      match: [{ uri: { prefix: /api/v1/ } }]
      rewrite: { uri: / }
      route: [{ destination: { host: api.backend.svc.cluster.local, port: { number: 80 } } }]
      headers:
        request:
          set: { x-env: prod }
          add: { x-added: one }
          remove: [x-remove-me]
        response:
          set: { x-served-by: meshgate-test }
    - name: regex-rewrite
      match: [{ uri: { prefix: /users/ } }]
      rewrite:
        uriRegexRewrite: { match: "^/users/([^/]+)/profile$", rewrite: "/profiles/\\\\1" }
      route: [{ destination: { host: api.backend, port: { number: 80 } } }]
    - name: methods
      match: [{ method: { exact: POST }, uri: { prefix: /submit } }]
      directResponse: { status: 201, body: { string: "created" } }
    - name: debug
      match: [{ queryParams: { debug: { exact: "1" } }, withoutHeaders: { x-no-debug: {} } }]
      directResponse: { status: 200, body: { string: "debug" } }
    - name: caseless
      match: [{ uri: { prefix: /CaseLess }, ignoreUriCase: true }]
      directResponse: { status: 200, body: { string: "caseless" } }
    - name: canary
      route:
        - { destination: { host: reviews, subset: v1 }, weight: 90 }
        - { destination: { host: reviews, subset: v2 }, weight: 10 }
---
# A second VirtualService for the same host, created later: its specific route still comes before
# the first one's catch-all (Istio moves catch-all routes last when merging).
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop-extra, namespace: default, creationTimestamp: "2024-02-01T00:00:00Z" }
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http:
    - match: [{ uri: { prefix: /extra } }]
      route: [{ destination: { host: other } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: secure, namespace: default }
spec:
  hosts: [secure.example.com]
  gateways: [istio-system/public]
  http:
    - route: [{ destination: { host: other } }]
`);
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await Promise.all(Object.values(e).map((x) => x.close()));
    removeDir(dir);
    removeDir(certDir);
  });

  test('90/10 canary: the split holds within 3 points over 2000 requests', async () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 2000; i++) {
      const r = await shop('/reviews');
      const n = r.json?.name ?? `status ${r.status}`;
      counts[n] = (counts[n] ?? 0) + 1;
    }
    const v1 = (counts.v1 ?? 0) / 2000;
    assert.equal((counts.v1 ?? 0) + (counts.v2 ?? 0), 2000, `unexpected answers: ${JSON.stringify(counts)}`);
    assert.ok(Math.abs(v1 - 0.9) <= 0.03, `v1 share ${v1} not within 0.9 ± 0.03 (${JSON.stringify(counts)})`);
  });

  test('header and cookie routes send testers to v2', async () => {
    for (let i = 0; i < 20; i++) assert.equal((await shop('/reviews', { 'x-canary': 'always' })).json?.name, 'v2');
    for (let i = 0; i < 20; i++) assert.equal((await shop('/reviews', { cookie: 'theme=dark; user=alice' })).json?.name, 'v2');
    const bob = new Set<string>();
    for (let i = 0; i < 60; i++) bob.add((await shop('/reviews', { cookie: 'user=alicex' })).json?.name ?? '');
    assert.ok(bob.has('v1'), 'a cookie that does not match goes to the canary split');
  });

  test('uri regex is a full match', async () => {
    assert.equal((await shop('/items/42')).body, 'item');
    assert.notEqual((await shop('/items/42a')).body, 'item');
    assert.notEqual((await shop('/x/items/42')).body, 'item');
  });

  test('redirect replaces path and authority with the given code', async () => {
    const r = await shop('/old?q=1');
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'http://www.example.com/new?q=1');
  });

  test('prefix rewrite and header edits on both directions', async () => {
    const r = await shop('/api/v1/users?id=7', { 'x-remove-me': 'secret', 'x-added': 'zero' });
    assert.equal(r.json?.name, 'api');
    assert.equal(r.json?.url, '/users?id=7');
    assert.equal(r.json?.headers['x-env'], 'prod');
    assert.equal(r.json?.headers['x-remove-me'], undefined);
    assert.match(String(r.json?.headers['x-added']), /zero.*one/);
    assert.equal(r.headers['x-served-by'], 'meshgate-test');
  });

  test('uriRegexRewrite substitutes capture groups', async () => {
    const r = await shop('/users/ann/profile');
    assert.equal(r.json?.path, '/profiles/ann');
  });

  test('method, query parameter, withoutHeaders and ignoreUriCase matches', async () => {
    assert.equal((await shop('/submit', {}, 'POST')).status, 201);
    assert.notEqual((await shop('/submit', {}, 'GET')).status, 201);
    assert.equal((await shop('/anything?debug=1')).body, 'debug');
    assert.notEqual((await shop('/anything?debug=1', { 'x-no-debug': 'yes' })).body, 'debug');
    assert.notEqual((await shop('/anything?debug=10')).body, 'debug');
    assert.equal((await shop('/caseless/x')).body, 'caseless');
  });

  test('VirtualServices for one host merge with catch-all routes last', async () => {
    assert.equal((await shop('/extra/1')).json?.name, 'other');
  });

  test('no route: 404 NR; unselected gateway hosts are not served', async () => {
    const r = await get(url('/'), { host: 'nobody.example.com' });
    assert.equal(r.status, 404);
    assert.equal(r.headers['x-meshgate-flags'], 'NR');
    assert.equal((await get(url('/'), { host: 'internal.example.com' })).status, 404);
  });

  test('httpsRedirect answers 301 and the HTTPS server terminates TLS with credentialName', async () => {
    const r = await get(url('/a?b=c'), { host: 'secure.example.com' });
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, 'https://secure.example.com/a?b=c');
    const s = await getTls(gw.httpsPort, '/hello', { host: 'secure.example.com' });
    assert.equal(s.status, 200);
    assert.equal(s.peerCN, 'secure.example.com');
    assert.equal(s.json?.name, 'other');
    assert.equal(s.json?.headers['x-forwarded-proto'], 'https');
  });
});
