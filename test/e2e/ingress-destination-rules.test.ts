/**
 * DestinationRules applied to Kubernetes Ingress backends, end to end through `meshgate run`, as
 * Istio's Ingress support applies them (an Ingress is a VirtualService to the gateway):
 * - outlierDetection: an endpoint answering 500 is ejected after consecutive5xxErrors, while the
 *   same endpoints behind a Service no rule covers keep getting their share;
 * - connectionPool maxConnections 1 + http1MaxPendingRequests 1: the third concurrent request to a
 *   slow backend is refused with 503 and never reaches it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess, type Reply } from '../helpers/gateway.js';
import { startBackend, type Backend } from './traffic-support.js';

describe('Ingress backends with DestinationRules through meshgate run', { timeout: 90_000 }, () => {
  const dir = tempDir();
  let good: Backend;
  let bad: Backend;
  let slow: Backend;
  let gw: GatewayProcess;

  before(async () => {
    good = await startBackend('good');
    bad = await startBackend('bad', () => 500);
    slow = await startBackend('slow', () => ({ delayMs: 700, status: 200 }));
    const path = (p: string, svc: string): string => `      - { path: /${p}, pathType: Prefix, backend: { service: { name: ${svc}, port: { number: 80 } } } }`;
    writeConfig(
      dir,
      'all.yaml',
      [
        serviceYaml('flaky', [good.port, bad.port]),
        serviceYaml('flaky-free', [good.port, bad.port]),
        serviceYaml('slow', [slow.port]),
        `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: flaky, namespace: default }
spec:
  host: flaky
  trafficPolicy:
    outlierDetection: { consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5m, maxEjectionPercent: 100 }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: slow, namespace: istio-system }
spec:
  host: slow.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: { maxConnections: 1 }
      http: { http1MaxPendingRequests: 1 }
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: { name: meshgate }
spec: { controller: meshgate.io/ingress-controller }
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: shop, namespace: default }
spec:
  ingressClassName: meshgate
  rules:
  - host: shop.example.com
    http:
      paths:
${path('flaky-free', 'flaky-free')}
${path('flaky', 'flaky')}
${path('slow', 'slow')}
`,
      ].join('---\n'),
    );
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const b of [good, bad, slow]) await b?.close();
    removeDir(dir);
  });

  const at = (p: string): Promise<Reply> => get(`http://127.0.0.1:${gw.httpPort}/${p}`, { host: 'shop.example.com' });

  test('outlierDetection: the 500-answering endpoint is ejected after 2 errors; without the rule it keeps its share', async () => {
    const before = bad.hits.length;
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) statuses.push((await at(`flaky/o${i}`)).status);
    assert.equal(bad.hits.length - before, 2, `the failing endpoint got ${bad.hits.length - before} requests: ${statuses.join(',')}`);
    assert.deepEqual(statuses.slice(-6), [200, 200, 200, 200, 200, 200]);
    const freeBefore = bad.hits.length;
    for (let i = 0; i < 8; i++) await at(`flaky-free/p${i}`);
    assert.equal(bad.hits.length - freeBefore, 4, 'without the rule round robin keeps sending it every other request');
  });

  test('connectionPool (a rule in the root namespace): the third concurrent request gets 503 and never reaches the backend', async () => {
    const before = slow.hits.length;
    const replies = await Promise.all([0, 1, 2].map((i) => at(`slow/c${i}`)));
    assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 503], replies.map((r) => `${r.status} ${r.body}`).join(' | '));
    assert.equal(replies.find((r) => r.status === 503)!.headers['x-envoy-overloaded'], 'true');
    assert.equal(slow.hits.length - before, 2);
  });
});
