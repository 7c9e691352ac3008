/**
 * Kubernetes Ingress end to end: the real `meshgate run` process, echo backends on loopback, real
 * HTTP and HTTPS clients. One gateway for the whole file; each test asserts what a user would see.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

describe('Kubernetes Ingress', () => {
  const dir = tempDir();
  const certDir = tempDir();
  let gw: GatewayProcess;
  const echoes: Record<string, Echo> = {};
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;

  before(async () => {
    for (const name of ['web', 'api', 'exact', 'wild', 'anyhost', 'fallback', 'named', 'rr-a', 'rr-b', 'other-class']) echoes[name] = await startEchoServer({ name });
    const a = makeCert(certDir, 'a.example.com');
    const b = makeCert(certDir, 'b.example.com');
    writeConfig(dir, 'services.yaml', [
      serviceYaml('web', [echoes.web.port]),
      serviceYaml('api', [echoes.api.port]),
      serviceYaml('exact', [echoes.exact.port]),
      serviceYaml('wild', [echoes.wild.port]),
      serviceYaml('anyhost', [echoes.anyhost.port]),
      serviceYaml('fallback', [echoes.fallback.port]),
      serviceYaml('named', [echoes.named.port], { portName: 'web', servicePort: 8080 }),
      serviceYaml('rr', [echoes['rr-a'].port, echoes['rr-b'].port]),
      serviceYaml('down', [echoes.web.port], { notReady: [echoes.web.port] }),
      serviceYaml('other', [echoes['other-class'].port]),
    ].join('---\n'));
    writeConfig(dir, 'secrets.yaml', tlsSecret('a-tls', 'default', a) + '---\n' + tlsSecret('b-tls', 'default', b));
    writeConfig(dir, 'ingress.yaml', `
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: { name: meshgate }
spec: { controller: meshgate.io/ingress-controller }
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: { name: nginx }
spec: { controller: k8s.io/ingress-nginx }
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: main, namespace: default }
spec:
  ingressClassName: meshgate
  defaultBackend: { service: { name: fallback, port: { number: 80 } } }
  tls:
    - hosts: [a.example.com]
      secretName: a-tls
    - hosts: [b.example.com]
      secretName: b-tls
  rules:
    - host: a.example.com
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
          - { path: /api, pathType: Prefix, backend: { service: { name: api, port: { number: 80 } } } }
          - { path: /api/exact, pathType: Exact, backend: { service: { name: exact, port: { number: 80 } } } }
          - { path: /named, pathType: ImplementationSpecific, backend: { service: { name: named, port: { name: web } } } }
          - { path: /rr, pathType: Prefix, backend: { service: { name: rr, port: { number: 80 } } } }
          - { path: /down, pathType: Prefix, backend: { service: { name: down, port: { number: 80 } } } }
          - { path: /missing, pathType: Prefix, backend: { service: { name: does-not-exist, port: { number: 80 } } } }
    - host: "*.wild.example.com"
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: wild, port: { number: 80 } } } }
    - http:
        paths:
          - { path: /anyhost, pathType: Prefix, backend: { service: { name: anyhost, port: { number: 80 } } } }
    - host: b.example.com
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
---
# A second Ingress for the same host: its rules merge with the first.
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: merged, namespace: default }
spec:
  ingressClassName: meshgate
  rules:
    - host: a.example.com
      http:
        paths:
          - { path: /api/v2, pathType: Prefix, backend: { service: { name: exact, port: { number: 80 } } } }
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: not-ours, namespace: default }
spec:
  ingressClassName: nginx
  rules:
    - host: other.example.com
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: other, port: { number: 80 } } } }
`);
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await Promise.all(Object.values(echoes).map((e) => e.close()));
    removeDir(dir);
    removeDir(certDir);
  });

  const backendOf = async (host: string, path: string) => {
    const r = await get(url(path), { host });
    return r.json?.name ?? `status ${r.status}`;
  };

  test('Prefix paths match element-wise and the longest wins', async () => {
    // Plain HTTP for a TLS host redirects, so ask over HTTPS here.
    const cases: [string, string][] = [
      ['/', 'web'],
      ['/api', 'api'],
      ['/api/', 'api'],
      ['/api/users', 'api'],
      ['/apix', 'web'], // never `/apix` for prefix `/api`
      ['/api/exact', 'exact'], // Exact beats Prefix
      ['/api/exact/more', 'api'], // Exact does not match longer paths
      ['/api/v2/items', 'exact'], // merged from the second Ingress, longer prefix wins
      ['/named/x', 'named'], // ImplementationSpecific = Prefix; service port by name
    ];
    for (const [path, want] of cases) {
      const r = await getTls(gw.httpsPort, path, { host: 'a.example.com' });
      assert.equal(r.json?.name ?? `status ${r.status}`, want, `GET a.example.com${path}: expected backend ${want}`);
      assert.equal(r.json?.path, path, 'the backend receives the path unchanged');
    }
  });

  test('plain HTTP for a TLS host is redirected to HTTPS with 308', async () => {
    const r = await get(url('/api/users?x=1'), { host: 'a.example.com' });
    assert.equal(r.status, 308);
    // 443 is mapped to the HTTPS port (--port-map 443=...), so the Location names no port.
    assert.equal(r.headers.location, 'https://a.example.com/api/users?x=1');
  });

  test('hosts: exact, one-label wildcard, host-less rules and the default backend', async () => {
    assert.equal(await backendOf('x.wild.example.com', '/'), 'wild');
    assert.equal(await backendOf('X.Wild.Example.COM:8080', '/'), 'wild', 'Host is matched case-insensitively with the port stripped');
    // `*.wild.example.com` covers exactly one label.
    assert.equal(await backendOf('a.b.wild.example.com', '/anyhost'), 'anyhost');
    assert.equal(await backendOf('wild.example.com', '/anyhost'), 'anyhost');
    assert.equal(await backendOf('unknown.example.com', '/anyhost/x'), 'anyhost');
    // Nothing matches: the defaultBackend answers.
    assert.equal(await backendOf('unknown.example.com', '/nothing'), 'fallback');
    assert.equal(await backendOf('x.wild.example.com', '/'), 'wild');
  });

  test('an Ingress of another class is ignored', async () => {
    assert.equal(await backendOf('other.example.com', '/'), 'fallback');
  });

  test('round robin over ready endpoints', async () => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < 40; i++) {
      const r = await getTls(gw.httpsPort, '/rr', { host: 'a.example.com' });
      const n = r.json?.name ?? `status ${r.status}`;
      seen[n] = (seen[n] ?? 0) + 1;
    }
    assert.deepEqual(seen, { 'rr-a': 20, 'rr-b': 20 }, `expected an even split, got ${JSON.stringify(seen)}`);
  });

  test('no ready endpoint: 503; missing service: 503', async () => {
    const down = await getTls(gw.httpsPort, '/down', { host: 'a.example.com' });
    assert.equal(down.status, 503);
    assert.equal(down.headers['x-meshgate-flags'], 'UH');
    const missing = await getTls(gw.httpsPort, '/missing', { host: 'a.example.com' });
    assert.equal(missing.status, 503);
    assert.equal(missing.headers['x-meshgate-flags'], 'NC');
  });

  test('TLS certificates are chosen by SNI', async () => {
    const a = await getTls(gw.httpsPort, '/', { host: 'a.example.com' });
    assert.equal(a.peerCN, 'a.example.com');
    assert.equal(a.json?.headers['x-forwarded-proto'], 'https');
    const b = await getTls(gw.httpsPort, '/', { host: 'b.example.com' });
    assert.equal(b.peerCN, 'b.example.com');
    assert.equal(b.json?.name, 'web');
  });

  test('forwarding headers, Date and Server', async () => {
    const r = await getTls(gw.httpsPort, '/api', { host: 'a.example.com', headers: { 'x-forwarded-for': '203.0.113.7', connection: 'keep-alive, x-secret', 'x-secret': 'hop' } });
    assert.equal(r.json?.headers['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(r.json?.headers['x-forwarded-host'], 'a.example.com');
    assert.ok(r.json?.headers['x-request-id'], 'x-request-id is set');
    assert.equal(r.json?.headers['x-secret'], undefined, 'headers named in Connection are hop-by-hop');
    assert.ok(r.headers.date);
    assert.equal(r.headers.server, 'meshgate');
  });

  test('/config_dump and /diagnostics describe the serving snapshot', async () => {
    const dump = await get(`http://127.0.0.1:${gw.adminPort}/config_dump`);
    const body = JSON.parse(dump.body) as { version: string; snapshot: { listeners: { port: number }[] } };
    assert.match(body.version, /^[0-9a-f]{16}$/);
    assert.deepEqual(body.snapshot.listeners.map((l) => l.port).sort(), [gw.httpPort, gw.httpsPort].sort());
    assert.ok(!dump.body.includes('PRIVATE KEY'), 'private keys are never dumped');
    const diags = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { reason: string; object: { name: string } | null }[] };
    assert.ok(diags.diagnostics.some((d) => d.reason === 'MG_SERVICE_NOT_FOUND'), 'the missing service is reported');
    assert.ok(diags.diagnostics.some((d) => d.reason === 'MG_INGRESS_CLASS_IGNORED' && d.object?.name === 'not-ours'));
  });
});
