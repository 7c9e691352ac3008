/**
 * Gateway API, several Gateways and several HTTPS listeners on one port, through the real
 * `meshgate run` process (--bind-address 127.0.0.1, Gateway port 80 -> the mapped HTTP port):
 *  - HTTPRouteMultipleGateways: Gateways with addresses of their own (127.0.0.2, 127.0.0.3) get
 *    their own sockets, each serving only its own routes plus the route shared by both; two Gateways
 *    without an address and identical listeners on the shared address serve the union of their
 *    routes, both Accepted/Programmed (not Conflicted);
 *  - with --bind-address 0.0.0.0, a Gateway with its own address beside a Gateway on every address:
 *    the wildcard socket hands connections to the own address's listeners (HTTP and HTTPS), across
 *    reloads that add and remove it;
 *  - an Istio Gateway and a Gateway API Gateway with the same namespace/name are both served;
 *  - HTTPRouteHTTPSListenerDetectMisdirectedRequests: the conformance test's table of (SNI, Host) ->
 *    200 from the right backend, 421 or 404, over HTTP/2 and HTTP/1.1; an HTTP/2 connection reused
 *    for a second authority (connection coalescing) gets 421, never the other listener's routes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

const CLASS = `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
`;

/** One HTTP/1.1 request to `address:port` (a fresh connection each time). */
function getAt(address: string, port: number, path: string, host: string): Promise<{ status: number; name: string | null }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address, port, path, headers: { host }, agent: false }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => {
        let name: string | null = null;
        try {
          name = (JSON.parse(body) as { name: string }).name;
        } catch {
          name = null;
        }
        resolve({ status: res.statusCode ?? 0, name });
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`request to ${address}:${port}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

interface Status {
  gateways: { name: string; addresses: { value: string }[]; conditions: { type: string; status: string; reason: string }[]; listeners: { name: string; attachedRoutes: number; conditions: { type: string; status: string; reason: string }[] }[] }[];
}

describe('Gateway API: several Gateways on one port, and same-name Istio and Gateway API Gateways', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};

  before(async () => {
    for (const name of ['v1', 'v2', 'v3', 'istio']) e[name] = await startEchoServer({ name });
    const istioCert = makeCert(dir, 'istio.example.com');
    writeConfig(dir, 'backends.yaml', ['v1', 'v2', 'v3', 'istio'].map((n) => serviceYaml(n, [e[n].port], { namespace: 'infra' })).join('---\n'));
    writeConfig(dir, 'secret.yaml', tlsSecret('istio-cert', 'istio-system', istioCert));
    writeConfig(dir, 'gateways.yaml', `${CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: own-a, namespace: infra, creationTimestamp: "2026-01-01T00:00:00Z" }
spec:
  gatewayClassName: meshgate
  addresses: [{ type: IPAddress, value: 127.0.0.2 }]
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: own-b, namespace: infra, creationTimestamp: "2026-01-02T00:00:00Z" }
spec:
  gatewayClassName: meshgate
  addresses: [{ value: 127.0.0.3 }]
  listeners: [{ name: http, port: 80, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: same-namespace, namespace: infra, creationTimestamp: "2026-01-03T00:00:00Z" }
spec:
  gatewayClassName: meshgate
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: all-namespaces, namespace: infra, creationTimestamp: "2026-01-04T00:00:00Z" }
spec:
  gatewayClassName: meshgate
  listeners: [{ name: http, port: 80, protocol: HTTP, allowedRoutes: { namespaces: { from: All } } }]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: same-namespace, namespace: infra }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 443, name: https, protocol: HTTPS }, hosts: [istio.example.com], tls: { mode: SIMPLE, credentialName: istio-cert } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: istio, namespace: infra }
spec:
  hosts: [istio.example.com]
  gateways: [same-namespace]
  http: [{ route: [{ destination: { host: istio } }] }]
`);
    writeConfig(dir, 'routes.yaml', `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: own-shared, namespace: infra, creationTimestamp: "2026-02-01T00:00:00Z" }
spec:
  parentRefs: [{ name: own-a }, { name: own-b }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /shared } }], backendRefs: [{ name: v1, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: own-a-dedicated, namespace: infra, creationTimestamp: "2026-02-02T00:00:00Z" }
spec:
  parentRefs: [{ name: own-a }]
  rules: [{ backendRefs: [{ name: v2, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: own-b-dedicated, namespace: infra, creationTimestamp: "2026-02-03T00:00:00Z" }
spec:
  parentRefs: [{ name: own-b }]
  rules: [{ backendRefs: [{ name: v3, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: merged-shared, namespace: infra, creationTimestamp: "2026-02-04T00:00:00Z" }
spec:
  parentRefs: [{ name: same-namespace }, { name: all-namespaces }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /shared } }], backendRefs: [{ name: v1, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: merged-a, namespace: infra, creationTimestamp: "2026-02-05T00:00:00Z" }
spec:
  parentRefs: [{ name: same-namespace }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /only-a } }], backendRefs: [{ name: v2, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: merged-b, namespace: infra, creationTimestamp: "2026-02-06T00:00:00Z" }
spec:
  parentRefs: [{ name: all-namespaces }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /only-b } }], backendRefs: [{ name: v3, port: 80 }] }]
`);
    gw = await startGateway({ configDir: dir, args: ['--gateway-bind-addresses', '127.0.0.0/8'] });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(e)) await x.close();
    removeDir(dir);
  });

  test('HTTPRouteMultipleGateways: each Gateway with its own address serves the shared route and only its own dedicated route', async () => {
    const port = gw.httpPort;
    assert.deepEqual(await getAt('127.0.0.2', port, '/shared', 'any.test'), { status: 200, name: 'v1' });
    assert.deepEqual(await getAt('127.0.0.2', port, '/', 'any.test'), { status: 200, name: 'v2' });
    assert.deepEqual(await getAt('127.0.0.3', port, '/shared', 'any.test'), { status: 200, name: 'v1' });
    assert.deepEqual(await getAt('127.0.0.3', port, '/', 'any.test'), { status: 200, name: 'v3' });
    // The shared address (127.0.0.1) has none of their routes.
    assert.equal((await getAt('127.0.0.1', port, '/', 'any.test')).status, 404);
  });

  test('identical listeners of two Gateways without an address serve the union of their routes; both stay Programmed', async () => {
    const port = gw.httpPort;
    assert.deepEqual(await getAt('127.0.0.1', port, '/shared', 'any.test'), { status: 200, name: 'v1' });
    assert.deepEqual(await getAt('127.0.0.1', port, '/only-a', 'any.test'), { status: 200, name: 'v2' });
    assert.deepEqual(await getAt('127.0.0.1', port, '/only-b', 'any.test'), { status: 200, name: 'v3' });
    // ...and none of them on the Gateways with their own address.
    assert.equal((await getAt('127.0.0.2', port, '/only-b', 'any.test')).name, 'v2', 'own-a answers /only-b with its own catch-all');
    const s = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`)).body) as { status: Status }).status;
    const byName = new Map(s.gateways.map((g) => [g.name, g]));
    for (const name of ['same-namespace', 'all-namespaces', 'own-a', 'own-b']) {
      const g = byName.get(name);
      assert.ok(g, `Gateway infra/${name} has a status`);
      assert.deepEqual(g.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`), ['Accepted=True/Accepted', 'Programmed=True/Programmed'], name);
      const l = g.listeners[0];
      assert.deepEqual(l.conditions.filter((c) => c.type === 'Conflicted' || c.type === 'Programmed').map((c) => `${c.type}=${c.status}`), ['Conflicted=False', 'Programmed=True'], name);
    }
    assert.deepEqual(byName.get('own-a')?.addresses.map((a) => a.value), ['127.0.0.2']);
    assert.deepEqual(byName.get('own-b')?.addresses.map((a) => a.value), ['127.0.0.3']);
    assert.equal(byName.get('same-namespace')?.listeners[0].attachedRoutes, 2);
    assert.equal(byName.get('all-namespaces')?.listeners[0].attachedRoutes, 2);
    const list = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { reason: string; message: string }[] }).diagnostics;
    assert.ok(list.some((d) => d.reason === 'MG_LISTENERS_MERGED' && d.message.includes('infra/same-namespace/http') && d.message.includes('infra/all-namespaces/http')), 'MG_LISTENERS_MERGED names both Gateways');
  });

  test('an Istio Gateway and a Gateway API Gateway named infra/same-namespace are both served', async () => {
    const r = await getTls(gw.httpsPort, '/', { host: 'istio.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.json?.name, 'istio');
    assert.equal(r.peerCN, 'istio.example.com');
    assert.deepEqual(await getAt('127.0.0.1', gw.httpPort, '/only-a', 'any.test'), { status: 200, name: 'v2' });
  });
});

describe('Gateway API: 421 Misdirected Request on HTTPS listeners of one port', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};

  before(async () => {
    for (const name of ['v1', 'v2', 'v3']) e[name] = await startEchoServer({ name });
    // One certificate for every name, as the conformance test's: only listener selection differs.
    const cert = makeCert(dir, 'example.org', ['example.org', 'second-example.org', '*.wildcard.org', 'unknown-example.org']);
    writeConfig(dir, 'backends.yaml', ['v1', 'v2', 'v3'].map((n) => serviceYaml(n, [e[n].port], { namespace: 'infra' })).join('---\n'));
    writeConfig(dir, 'secret.yaml', tlsSecret('tls-validity-checks-certificate', 'infra', cert));
    const tls = '{ certificateRefs: [{ group: "", kind: Secret, name: tls-validity-checks-certificate }] }';
    writeConfig(dir, 'gateway.yaml', `${CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: same-namespace-with-https-listener, namespace: infra }
spec:
  gatewayClassName: meshgate
  listeners:
    - { name: https, port: 443, protocol: HTTPS, tls: ${tls} }
    - { name: https-with-hostname, port: 443, hostname: second-example.org, protocol: HTTPS, tls: ${tls} }
    - { name: https-with-wildcard-hostname, port: 443, hostname: "*.wildcard.org", protocol: HTTPS, tls: ${tls} }
    - { name: https-with-hostname-matching-wildcard, port: 443, hostname: fourth-example.wildcard.org, protocol: HTTPS, tls: ${tls} }
`);
    const route = (n: number, section: string, backend: string, hostnames = '') => `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: test-${n}, namespace: infra }
spec:
  parentRefs: [{ name: same-namespace-with-https-listener, sectionName: ${section} }]
  ${hostnames}
  rules: [{ matches: [{ path: { type: PathPrefix, value: /detect-misdirected-requests } }], backendRefs: [{ name: ${backend}, port: 80 }] }]
`;
    writeConfig(dir, 'routes.yaml', [
      route(1, 'https', 'v1', 'hostnames: [example.org]'),
      route(2, 'https-with-hostname', 'v2'),
      route(3, 'https-with-wildcard-hostname', 'v3'),
      route(4, 'https-with-hostname-matching-wildcard', 'v1'),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(e)) await x.close();
    removeDir(dir);
  });

  // The conformance test's table (HTTPRouteHTTPSListenerDetectMisdirectedRequests).
  const cases: { sni: string; host: string; status: number; backend?: string }[] = [
    { sni: 'example.org', host: 'example.org', status: 200, backend: 'v1' },
    { sni: 'example.org', host: 'second-example.org', status: 421 },
    { sni: 'example.org', host: 'unknown-example.org', status: 404 },
    { sni: 'second-example.org', host: 'second-example.org', status: 200, backend: 'v2' },
    { sni: 'second-example.org', host: 'example.org', status: 421 },
    { sni: 'second-example.org', host: 'unknown-example.org', status: 421 },
    { sni: 'third-example.wildcard.org', host: 'third-example.wildcard.org', status: 200, backend: 'v3' },
    { sni: 'third-example.wildcard.org', host: 'fith-example.wildcard.org', status: 200, backend: 'v3' },
    { sni: 'third-example.wildcard.org', host: 'fourth-example.wildcard.org', status: 421 },
    { sni: 'third-example.wildcard.org', host: 'second-example.org', status: 421 },
    { sni: 'third-example.wildcard.org', host: 'unknown-example.org', status: 421 },
    { sni: 'fourth-example.wildcard.org', host: 'fourth-example.wildcard.org', status: 200, backend: 'v1' },
    { sni: 'fourth-example.wildcard.org', host: 'fith-example.wildcard.org', status: 421 },
    { sni: 'unknown-example.org', host: 'example.org', status: 200, backend: 'v1' },
    { sni: 'unknown-example.org', host: 'unknown-example.org', status: 404 },
  ];

  test('HTTP/2 (as the conformance suite): SNI and :authority table -> 200 from the right backend, 421 or 404', async () => {
    const got: string[] = [];
    for (const c of cases) {
      const session = http2.connect(`https://127.0.0.1:${gw.httpsPort}`, { servername: c.sni, rejectUnauthorized: false });
      try {
        const r = await h2Get(session, c.host, '/detect-misdirected-requests');
        got.push(`${c.sni} ${c.host} -> ${r.status}${r.name ? ` ${r.name}` : ''}`);
      } finally {
        session.close();
      }
    }
    assert.deepEqual(got, cases.map((c) => `${c.sni} ${c.host} -> ${c.status}${c.backend ? ` ${c.backend}` : ''}`));
  });

  test('HTTP/1.1 with a servername that differs from Host: the same answers', async () => {
    for (const c of cases) {
      const r = await getTls(gw.httpsPort, '/detect-misdirected-requests', { host: c.host, servername: c.sni });
      assert.equal(`${r.status}${c.backend ? ` ${r.json?.name}` : ''}`, `${c.status}${c.backend ? ` ${c.backend}` : ''}`, `SNI ${c.sni}, Host ${c.host}`);
    }
  });

  test('an HTTP/2 connection reused for a second authority (coalescing) gets 421, never the other listener\'s routes', async () => {
    const session = http2.connect(`https://127.0.0.1:${gw.httpsPort}`, { servername: 'third-example.wildcard.org', rejectUnauthorized: false });
    try {
      assert.deepEqual(await h2Get(session, 'third-example.wildcard.org', '/detect-misdirected-requests'), { status: 200, name: 'v3' });
      // The certificate covers second-example.org too, so a browser may coalesce: same connection.
      assert.deepEqual(await h2Get(session, 'second-example.org', '/detect-misdirected-requests'), { status: 421, name: null });
      assert.deepEqual(await h2Get(session, 'fourth-example.wildcard.org', '/detect-misdirected-requests'), { status: 421, name: null });
      // The connection still serves its own listener afterwards.
      assert.deepEqual(await h2Get(session, 'fith-example.wildcard.org', '/detect-misdirected-requests'), { status: 200, name: 'v3' });
    } finally {
      session.close();
    }
    // On a connection of its own, second-example.org reaches its listener's backend.
    const own = http2.connect(`https://127.0.0.1:${gw.httpsPort}`, { servername: 'second-example.org', rejectUnauthorized: false });
    try {
      assert.deepEqual(await h2Get(own, 'second-example.org', '/detect-misdirected-requests'), { status: 200, name: 'v2' });
    } finally {
      own.close();
    }
  });
});

/** One HTTP/2 GET on `session` with `:authority` `authority`; the echo backend's name when it answered. */
function h2Get(session: http2.ClientHttp2Session, authority: string, path: string): Promise<{ status: number; name: string | null }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`HTTP/2 request for ${authority}${path} timed out`)), 10_000);
    const req = session.request({ ':method': 'GET', ':path': path, ':authority': authority });
    let status = 0;
    let body = '';
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      clearTimeout(timer);
      let name: string | null = null;
      try {
        name = (JSON.parse(body) as { name: string }).name;
      } catch {
        name = null;
      }
      resolve({ status, name });
    });
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}

describe('Gateway API: a Gateway with its own address beside Gateways on every address (--bind-address 0.0.0.0)', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};

  const gateways = (withOwn: boolean) => `${CLASS}---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: shared, namespace: infra }
spec:
  gatewayClassName: meshgate
  listeners:
    - { name: http, port: 80, protocol: HTTP }
    - { name: https, port: 443, protocol: HTTPS, tls: { certificateRefs: [{ name: shared-cert }] } }
${withOwn ? `---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: own, namespace: infra }
spec:
  gatewayClassName: meshgate
  addresses: [{ value: 127.0.0.7 }]
  listeners:
    - { name: http, port: 80, protocol: HTTP }
    - { name: https, port: 443, protocol: HTTPS, tls: { certificateRefs: [{ name: own-cert }] } }
` : ''}`;

  before(async () => {
    for (const name of ['shared', 'own']) e[name] = await startEchoServer({ name });
    writeConfig(dir, 'backends.yaml', ['shared', 'own'].map((n) => serviceYaml(n, [e[n].port], { namespace: 'infra' })).join('---\n'));
    writeConfig(dir, 'secrets.yaml', `${tlsSecret('shared-cert', 'infra', makeCert(dir, 'shared.example.com'))}---\n${tlsSecret('own-cert', 'infra', makeCert(dir, 'own.example.com'))}`);
    writeConfig(dir, 'gateways.yaml', gateways(true));
    writeConfig(dir, 'routes.yaml', `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: shared, namespace: infra }
spec:
  parentRefs: [{ name: shared }]
  rules: [{ backendRefs: [{ name: shared, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: own, namespace: infra }
spec:
  parentRefs: [{ name: own }]
  rules: [{ backendRefs: [{ name: own, port: 80 }] }]
`);
    gw = await startGateway({ configDir: dir, args: ['--bind-address', '0.0.0.0', '--gateway-bind-addresses', '127.0.0.0/8'] });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(e)) await x.close();
    removeDir(dir);
  });

  /** HTTPS to `address`: the backend that answered and the certificate's CN. */
  const tlsAt = (address: string) =>
    new Promise<string>((resolve, reject) => {
      const req = https.request({ host: address, port: gw.httpsPort, path: '/', servername: 'any.example.com', headers: { host: 'any.example.com' }, rejectUnauthorized: false, agent: false }, (res) => {
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => resolve(`${(JSON.parse(body) as { name: string }).name} ${String(cert.subject?.CN)}`));
      });
      req.setTimeout(10_000, () => req.destroy(new Error(`HTTPS to ${address} timed out`)));
      req.on('error', reject);
      req.end();
    });

  test('connections to the own address reach only that Gateway (HTTP and HTTPS with its certificate); every other address the shared one', async () => {
    assert.deepEqual(await getAt('127.0.0.7', gw.httpPort, '/', 'any.test'), { status: 200, name: 'own' });
    assert.deepEqual(await getAt('127.0.0.1', gw.httpPort, '/', 'any.test'), { status: 200, name: 'shared' });
    assert.deepEqual(await getAt('127.0.0.9', gw.httpPort, '/', 'any.test'), { status: 200, name: 'shared' });
    assert.equal(await tlsAt('127.0.0.7'), 'own own.example.com');
    assert.equal(await tlsAt('127.0.0.1'), 'shared shared.example.com');
    const s = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`)).body) as { status: Status }).status;
    assert.deepEqual(s.gateways.find((g) => g.name === 'own')?.conditions.map((c) => `${c.type}=${c.status}`), ['Accepted=True', 'Programmed=True']);
  });

  test('the own-address Gateway removed and added back: its address falls back to the shared Gateway, then is its own again', async () => {
    writeConfig(dir, 'gateways.yaml', gateways(false));
    await waitFor(async () => (await getAt('127.0.0.7', gw.httpPort, '/', 'any.test').catch(() => null))?.name === 'shared', 15_000, '127.0.0.7 served by the shared Gateway');
    writeConfig(dir, 'gateways.yaml', gateways(true));
    await waitFor(async () => (await getAt('127.0.0.7', gw.httpPort, '/', 'any.test').catch(() => null))?.name === 'own', 15_000, '127.0.0.7 served by its own Gateway again');
    assert.deepEqual(await getAt('127.0.0.1', gw.httpPort, '/', 'any.test'), { status: 200, name: 'shared' });
    assert.equal(await tlsAt('127.0.0.7'), 'own own.example.com');
  });
});
