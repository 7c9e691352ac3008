/**
 * Gateway API (GatewayClass, Gateway, HTTPRoute, ReferenceGrant) end to end: the real `meshgate run`
 * process reading a config directory, echo backends on loopback, real HTTP/1.1 and HTTPS clients.
 * Gateway port 80 is served on the mapped HTTP port and 443 on the mapped HTTPS port (--port-map).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

const CLASS = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
`;

const grant = (enabled: boolean) =>
  enabled
    ? `
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: routes-from-default, namespace: backend }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default }]
  to: [{ group: "", kind: Service, name: api }]
`
    : '';

describe('Gateway API: HTTPRoute and HTTPS through meshgate run', { timeout: 120_000 }, () => {
  const dir = tempDir();
  const certDir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};
  const http = (p: string, host: string, headers: Record<string, string> = {}, method = 'GET') => get(`http://127.0.0.1:${gw.httpPort}${p}`, { host, headers, method });
  const shop = (p: string, headers: Record<string, string> = {}, method = 'GET') => http(p, 'shop.example.com', headers, method);

  /** URLs the mirror backend received. */
  const mirrored: string[] = [];
  let mirrorServer: Server;
  /** Answers 503 to every other request (counting), for the retry test. */
  let flakyServer: Server;
  let flakyHits = 0;

  before(async () => {
    for (const name of ['v1', 'v2', 'api', 'wild', 'foo']) e[name] = await startEchoServer({ name });
    mirrorServer = createServer((req, res) => {
      mirrored.push(req.url ?? '');
      res.end('mirror');
    });
    await new Promise<void>((r) => mirrorServer.listen(0, '127.0.0.1', r));
    const mirrorPort = (mirrorServer.address() as AddressInfo).port;
    flakyServer = createServer((req, res) => {
      flakyHits++;
      res.writeHead(flakyHits % 2 === 1 ? 503 : 200, { 'content-type': 'text/plain' });
      res.end(flakyHits % 2 === 1 ? 'unavailable' : 'ok');
    });
    await new Promise<void>((r) => flakyServer.listen(0, '127.0.0.1', r));
    const flakyPort = (flakyServer.address() as AddressInfo).port;
    const secure = makeCert(certDir, 'secure.example.com');
    writeConfig(dir, 'backends.yaml', [
      serviceYaml('v1', [e.v1.port]),
      serviceYaml('v2', [e.v2.port]),
      serviceYaml('api', [e.api.port], { namespace: 'backend' }),
      serviceYaml('mirror', [mirrorPort]),
      serviceYaml('wild', [e.wild.port]),
      serviceYaml('foo', [e.foo.port]),
      serviceYaml('down', [e.v1.port], { notReady: [e.v1.port] }),
      serviceYaml('pair', [e.v1.port, e.v2.port]),
      serviceYaml('flaky', [flakyPort]),
    ].join('---\n'));
    writeConfig(dir, 'secret.yaml', tlsSecret('secure-cert', 'infra', secure));
    writeConfig(dir, 'grant.yaml', grant(true));
    writeConfig(dir, 'gateway.yaml', `${CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: public, namespace: infra }
spec:
  gatewayClassName: meshgate
  listeners:
    - { name: http, port: 80, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }
    - { name: wild, port: 80, protocol: HTTP, hostname: "*.wild.test", allowedRoutes: { namespaces: { from: All } } }
    - { name: foo, port: 80, protocol: HTTP, hostname: "foo.wild.test", allowedRoutes: { namespaces: { from: All } } }
    - name: https
      port: 443
      protocol: HTTPS
      hostname: secure.example.com
      tls: { certificateRefs: [{ name: secure-cert }] }
      allowedRoutes: { namespaces: { from: All } }
`);
    writeConfig(dir, 'routes.yaml', `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z" }
spec:
  parentRefs: [{ name: public, namespace: infra, sectionName: http }]
  hostnames: [shop.example.com]
  rules:
    - matches: [{ path: { type: Exact, value: /exact } }]
      backendRefs: [{ name: v2, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /split } }]
      backendRefs: [{ name: v1, port: 80, weight: 70 }, { name: v2, port: 80, weight: 30 }, { name: mirror, port: 80, weight: 0 }]
    - matches:
        - { path: { type: PathPrefix, value: /match }, headers: [{ name: X-Tier, value: gold }] }
        - { path: { type: PathPrefix, value: /match }, method: POST }
        - { path: { type: PathPrefix, value: /match }, queryParams: [{ name: q, type: RegularExpression, value: "[0-9]+" }] }
      backendRefs: [{ name: v2, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /headers } }]
      filters:
        - type: RequestHeaderModifier
          requestHeaderModifier: { set: [{ name: X-Set, value: set }], add: [{ name: X-Add, value: added }], remove: [X-Remove] }
        - type: ResponseHeaderModifier
          responseHeaderModifier: { set: [{ name: X-Resp, value: from-gateway }] }
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /redirect } }]
      filters: [{ type: RequestRedirect, requestRedirect: { hostname: www.example.com } }]
    - matches: [{ path: { type: PathPrefix, value: /to-https } }]
      filters: [{ type: RequestRedirect, requestRedirect: { scheme: https, statusCode: 301, path: { type: ReplacePrefixMatch, replacePrefixMatch: /secure } } }]
    - matches: [{ path: { type: PathPrefix, value: /port-redirect } }]
      filters: [{ type: RequestRedirect, requestRedirect: { port: 8083, statusCode: 307, path: { type: ReplaceFullPath, replaceFullPath: /moved } } }]
    - matches: [{ path: { type: PathPrefix, value: /strip } }]
      filters: [{ type: URLRewrite, urlRewrite: { hostname: rewritten.internal, path: { type: ReplacePrefixMatch, replacePrefixMatch: / } } }]
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /mirrored } }]
      filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: mirror, port: 80 } } }]
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /cors } }]
      filters: [{ type: CORS, cors: { allowOrigins: ["https://*.example.com"], allowMethods: [GET, PUT], allowHeaders: [x-custom], maxAge: 30 } }]
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /extension } }]
      filters: [{ type: ExtensionRef, extensionRef: { group: example.com, kind: Auth, name: x } }]
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /half-invalid } }]
      backendRefs: [{ name: v1, port: 80 }, { name: missing, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /no-backends } }]
    - matches: [{ path: { type: PathPrefix, value: /down } }]
      backendRefs: [{ name: down, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /delay } }]
      timeouts: { request: 300ms }
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /sticky } }]
      sessionPersistence: { sessionName: shop-session }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /retried } }]
      retry: { codes: [503], attempts: 2, backoff: 10ms }
      backendRefs: [{ name: flaky, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /not-retried } }]
      backendRefs: [{ name: flaky, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /delay }, headers: [{ name: x-backend-timeout, value: "yes" }] }]
      timeouts: { request: 5s, backendRequest: 300ms }
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /cross } }]
      backendRefs: [{ name: api, namespace: backend, port: 80 }]
---
# Same hostname, created later: its /exact/more prefix is longer than anything of "shop" for that
# path and wins; its catch-all comes after shop's more specific rules.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shop-extra, namespace: default, creationTimestamp: "2026-01-02T00:00:00Z" }
spec:
  parentRefs: [{ name: public, namespace: infra, sectionName: http }]
  hostnames: [shop.example.com]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /exact/more } }]
      backendRefs: [{ name: api, namespace: backend, port: 80 }]
    - backendRefs: [{ name: v1, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: wild, namespace: default }
spec:
  parentRefs: [{ name: public, namespace: infra, sectionName: wild }]
  rules: [{ backendRefs: [{ name: wild, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: foo, namespace: default }
spec:
  parentRefs: [{ name: public, namespace: infra, sectionName: foo }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /only } }]
      backendRefs: [{ name: foo, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: secure, namespace: default }
spec:
  parentRefs: [{ name: public, namespace: infra, sectionName: https }]
  rules: [{ backendRefs: [{ name: v2, port: 80 }] }]
`);
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await Promise.all(Object.values(e).map((x) => x.close()));
    await new Promise<void>((r) => mirrorServer?.close(() => r()));
    await new Promise<void>((r) => flakyServer?.close(() => r()));
    removeDir(dir);
    removeDir(certDir);
  });

  test('path precedence across rules and routes: Exact, then the longest PathPrefix, then the catch-all', async () => {
    assert.equal((await shop('/exact')).json?.name, 'v2');
    assert.equal((await shop('/exact/more/x')).json?.name, 'api', 'the longer prefix of the newer route wins');
    assert.equal((await shop('/exact/')).json?.name, 'v1', 'Exact does not match a trailing slash; the catch-all does');
    assert.equal((await shop('/matchless')).json?.name, 'v1', 'PathPrefix is element-wise: /match does not match /matchless');
  });

  test('header, method and query-param matches (ORed matches of one rule)', async () => {
    assert.equal((await shop('/match', { 'x-tier': 'gold' })).json?.name, 'v2');
    assert.equal((await shop('/match', {}, 'POST')).json?.name, 'v2');
    assert.equal((await shop('/match?q=42')).json?.name, 'v2');
    assert.equal((await shop('/match?q=x')).json?.name, 'v1');
    assert.equal((await shop('/match', { 'x-tier': 'silver' })).json?.name, 'v1');
  });

  test('weights split 70/30 within 4 points over 2000 requests; weight 0 gets nothing', async () => {
    // Picks are random: 2000 requests put ±4 points at about 4 standard deviations (500, as the
    // conformance suite uses, needs its retries).
    const counts: Record<string, number> = {};
    for (let i = 0; i < 2000; i++) {
      const r = await shop('/split');
      const n = r.json?.name ?? `status ${r.status}`;
      counts[n] = (counts[n] ?? 0) + 1;
    }
    assert.equal(counts.mirror, undefined, `weight-0 backend got traffic: ${JSON.stringify(counts)}`);
    const v1 = (counts.v1 ?? 0) / 2000;
    assert.ok(Math.abs(v1 - 0.7) <= 0.04, `v1 share ${v1} not within 0.7 ± 0.04 (${JSON.stringify(counts)})`);
  });

  test('request and response header modifiers', async () => {
    const r = await shop('/headers', { 'x-remove': 'gone', 'x-add': 'first', 'x-set': 'old' });
    assert.equal(r.json?.headers['x-set'], 'set');
    assert.equal(r.json?.headers['x-remove'], undefined);
    assert.match(String(r.json?.headers['x-add']), /first.*added/);
    assert.equal(r.headers['x-resp'], 'from-gateway');
  });

  test('RequestRedirect: 302 by default, absolute Location on the listener port (80, not the mapped port)', async () => {
    const r = await shop('/redirect/x?y=1');
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'http://www.example.com/redirect/x?y=1');
    const s = await shop('/to-https/page');
    assert.equal(s.status, 301);
    assert.equal(s.headers.location, 'https://shop.example.com/secure/page');
    const p = await shop('/port-redirect/a?b=1');
    assert.equal(p.status, 307);
    assert.equal(p.headers.location, 'http://shop.example.com:8083/moved?b=1');
  });

  test('URLRewrite: ReplacePrefixMatch and hostname', async () => {
    const r = await shop('/strip/a/b?k=v');
    assert.equal(r.json?.url, '/a/b?k=v');
    assert.equal(r.json?.headers.host, 'rewritten.internal');
    assert.equal((await shop('/strip')).json?.path, '/');
  });

  test('RequestMirror: the client gets the primary answer, the mirror receives a copy', async () => {
    const r = await shop('/mirrored/one?n=1');
    assert.equal(r.json?.name, 'v1');
    await waitFor(() => mirrored.some((u) => u === '/mirrored/one?n=1'), 5000, `the mirror to receive /mirrored/one?n=1 (it saw ${JSON.stringify(mirrored)})`);
  });

  test('CORS: preflight answered by the gateway for an allowed origin, not for another', async () => {
    const ok = await shop('/cors', { origin: 'https://app.example.com', 'access-control-request-method': 'PUT' }, 'OPTIONS');
    assert.ok(ok.status === 200 || ok.status === 204, `preflight status ${ok.status}`);
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.match(String(ok.headers['access-control-allow-methods']), /PUT/);
    assert.equal(ok.json, null, 'the preflight was answered by the gateway, not the backend');
    const other = await shop('/cors', { origin: 'https://evil.org', 'access-control-request-method': 'PUT' }, 'OPTIONS');
    assert.equal(other.headers['access-control-allow-origin'], undefined);
    const simple = await shop('/cors', { origin: 'https://app.example.com' });
    assert.equal(simple.json?.name, 'v1');
    assert.equal(simple.headers['access-control-allow-origin'], 'https://app.example.com');
  });

  test('ExtensionRef answers 500 (never skipped); no backendRefs answers 500', async () => {
    assert.equal((await shop('/extension')).status, 500);
    assert.equal((await shop('/no-backends')).status, 500);
  });

  test('an invalid backend gets 500 for its share of the weight; a Service without ready endpoints 503', async () => {
    const counts: Record<string, number> = {};
    for (let i = 0; i < 400; i++) {
      const r = await shop('/half-invalid');
      const k = r.status === 200 ? (r.json?.name ?? '?') : String(r.status);
      counts[k] = (counts[k] ?? 0) + 1;
    }
    assert.deepEqual(Object.keys(counts).sort(), ['500', 'v1'], JSON.stringify(counts));
    assert.ok(Math.abs((counts['500'] ?? 0) / 400 - 0.5) <= 0.1, `500 share not near 50%: ${JSON.stringify(counts)}`);
    assert.equal((await shop('/down')).status, 503);
  });

  test('timeouts.request: a slower backend answers 504', async () => {
    const r = await shop('/delay/2000');
    assert.equal(r.status, 504);
  });

  test('listener isolation: a host is served only by the most specific listener and its routes', async () => {
    assert.equal((await http('/x', 'a.wild.test')).json?.name, 'wild');
    assert.equal((await http('/only/x', 'foo.wild.test')).json?.name, 'foo');
    // foo.wild.test matches the foo listener, whose only route is /only: 404, not the wild route.
    assert.equal((await http('/x', 'foo.wild.test')).status, 404);
    // A host no route names on the catch-all listener: 404.
    assert.equal((await http('/x', 'nobody.example.org')).status, 404);
    // The Host port is ignored for matching.
    assert.equal((await http('/exact', 'shop.example.com:80')).json?.name, 'v2');
  });

  test('HTTPS listener terminates TLS with the certificateRefs Secret; unknown hostnames are refused', async () => {
    const r = await getTls(gw.httpsPort, '/x', { host: 'secure.example.com' });
    assert.equal(r.peerCN, 'secure.example.com');
    assert.equal(r.json?.name, 'v2');
    await assert.rejects(getTls(gw.httpsPort, '/x', { host: 'other.example.com' }));
  });

  test('ReferenceGrant applies live: deleting it turns the cross-namespace backend into 500, restoring it brings it back', async () => {
    assert.equal((await shop('/cross')).json?.name, 'api');
    writeConfig(dir, 'grant.yaml', grant(false));
    await waitFor(async () => (await shop('/cross')).status === 500, 15_000, 'the cross-namespace backend to answer 500 without its ReferenceGrant');
    const status = await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`);
    const routes = (JSON.parse(status.body) as { status: { routes: { name: string; parents: { conditions: { type: string; status: string; reason: string; message: string }[] }[] }[] } }).status.routes;
    const shopRoute = routes.find((x) => x.name === 'shop');
    const resolved = shopRoute?.parents[0].conditions.find((c) => c.type === 'ResolvedRefs');
    // The route also has a missing Service (the first reason); the message names every reference.
    assert.equal(resolved?.status, 'False');
    assert.match(String(resolved?.message), /Service backend\/api is in another namespace and no ReferenceGrant/);
    writeConfig(dir, 'grant.yaml', grant(true));
    await waitFor(async () => (await shop('/cross')).json?.name === 'api', 15_000, 'the cross-namespace backend to come back with its ReferenceGrant');
  });

  test('/gateway_api_status shows Gateway and listener conditions with attachedRoutes', async () => {
    const r = await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`);
    const s = JSON.parse(r.body) as { status: { gateways: { name: string; conditions: { type: string; status: string }[]; listeners: { name: string; attachedRoutes: number }[] }[] } };
    const g = s.status.gateways.find((x) => x.name === 'public');
    assert.ok(g, 'Gateway infra/public has a status');
    assert.deepEqual(g.conditions.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'Programmed=True']);
    assert.deepEqual(Object.fromEntries(g.listeners.map((l) => [l.name, l.attachedRoutes])), { http: 2, wild: 1, foo: 1, https: 1 });
  });

  test('the dashboard lists HTTPRoute rules with their object and file:line', async () => {
    const r = await get(`http://127.0.0.1:${gw.adminPort}/api/overview`);
    const rows = (JSON.parse(r.body) as { routes: { route: string; source: string; sourceRef: { kind: string } }[] }).routes;
    const exact = rows.find((x) => x.route === 'httproute/default/shop/rule/0/match/0');
    assert.ok(exact, `no row for the shop route's first rule in ${rows.length} rows`);
    assert.equal(exact.sourceRef.kind, 'HTTPRoute');
    assert.match(exact.source, /^HTTPRoute\/default\/shop \(routes\.yaml:\d+\)$/);
  });

  test('sessionPersistence (experimental): the cookie set on the first answer keeps a client on one endpoint', async () => {
    const first = await shop('/sticky');
    const setCookie = String(first.headers['set-cookie'] ?? '');
    const m = /shop-session=([^;]+)/.exec(setCookie);
    assert.ok(m, `no session cookie in ${JSON.stringify(first.headers['set-cookie'])}`);
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) seen.add((await shop('/sticky', { cookie: `shop-session=${m[1]}` })).json?.name ?? '?');
    assert.equal(seen.size, 1, `one session reached ${[...seen].join(', ')}`);
    // Without the cookie, requests spread over both endpoints.
    const spread = new Set<string>();
    for (let i = 0; i < 40; i++) spread.add((await shop('/sticky')).json?.name ?? '?');
    assert.deepEqual([...spread].sort(), ['v1', 'v2']);
  });

  test('retry (experimental): a 503 is retried and the client sees the second answer; without retry it sees the 503', async () => {
    flakyHits = 0;
    for (let i = 0; i < 5; i++) {
      const r = await shop('/retried');
      assert.equal(r.status, 200, `attempt ${i}: ${r.status} ${r.body}`);
    }
    assert.equal(flakyHits, 10, 'each request took exactly one retry');
    flakyHits = 0;
    assert.equal((await shop('/not-retried')).status, 503);
  });

  test('timeouts.backendRequest: one backend request longer than it answers 504', async () => {
    const t0 = Date.now();
    // Same path as the request-timeout rule; the header match makes this rule win (more headers).
    const r = await shop('/delay/2000', { 'x-backend-timeout': 'yes' });
    assert.equal(r.status, 504);
    assert.ok(Date.now() - t0 < 1800, `answered after ${Date.now() - t0} ms`);
  });
});
