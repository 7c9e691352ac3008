/**
 * custom-http-errors with no default backend at all (no default-backend annotation, no
 * --default-backend-service). ingress-nginx then sends the listed statuses to its internal default
 * server (`location / { return 404; }` in nginx.tmpl), so every listed status, a 503 included, reaches
 * the client as nginx's "404 Not Found" page. meshgate's choice: the backend's own answer (status and
 * body) is returned, and a warning on the Ingress and on the ConfigMap says what ingress-nginx would
 * do (admin /diagnostics, `meshgate migrate`). Real `meshgate run`, an echo backend on loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

describe('ingress-nginx custom-http-errors without a default backend', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Awaited<ReturnType<typeof startEchoServer>>;
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    writeConfig(dir, 'services.yaml', serviceYaml('web', [web.port]));
    writeConfig(dir, 'configmap.yaml', `apiVersion: v1
kind: ConfigMap
metadata: { name: ingress-nginx-controller, namespace: ingress-nginx }
data: { custom-http-errors: "503" }
`);
    writeConfig(dir, 'ingress.yaml', `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: plain, namespace: default }
spec:
  rules:
    - host: plain.example.com
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }] }
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: own, namespace: default, annotations: { nginx.ingress.kubernetes.io/custom-http-errors: "404,502" } }
spec:
  rules:
    - host: own.example.com
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }] }
`);
    gw = await startGateway({ configDir: dir, args: ['--nginx-configmap', 'ingress-nginx/ingress-nginx-controller'] });
  });

  after(async () => {
    await gw?.stop();
    await web?.close();
    removeDir(dir);
  });

  test('the listed statuses reach the client as the backend answered them', async () => {
    const g = await get(url('/status/503'), { host: 'plain.example.com' });
    assert.equal(g.status, 503, 'the ConfigMap\'s listed 503 keeps its status (ingress-nginx: 404)');
    assert.equal(g.json?.name, 'web', 'and the backend\'s body');
    const o = await get(url('/status/404'), { host: 'own.example.com' });
    assert.equal(o.status, 404);
    assert.equal(o.json?.name, 'web');
    const b = await get(url('/status/502'), { host: 'own.example.com' });
    assert.equal(b.status, 502);
    assert.equal(b.json?.name, 'web');
  });

  test('a warning on the ConfigMap and on the Ingress says what ingress-nginx would answer', async () => {
    const list = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { severity: string; reason: string; message: string; object: { kind: string; name: string } | null; field: string | null }[] }).diagnostics;
    const about = (kind: string, name: string) => list.find((d) => d.object?.kind === kind && d.object.name === name && (d.field ?? '').includes('custom-http-errors'));
    for (const [kind, name] of [['ConfigMap', 'ingress-nginx-controller'], ['Ingress', 'own']]) {
      const d = about(kind, name);
      assert.ok(d !== undefined, `a diagnostic on ${kind} ${name}: ${JSON.stringify(list)}`);
      assert.equal(d.severity, 'warning');
      assert.match(d.message, /404 Not Found/);
    }
  });
});
