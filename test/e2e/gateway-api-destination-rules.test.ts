/**
 * DestinationRules applied to Gateway API backends, end to end through the real `meshgate run`
 * process (Istio applies a DestinationRule's traffic policy to the Services HTTPRoute backendRefs
 * name, as to VirtualService destinations). Each behaviour is checked against the same backend
 * reached through a Service no rule covers, so the difference is the rule's:
 * - connectionPool: maxConnections 1 + http1MaxPendingRequests 1: of three concurrent requests to a
 *   slow backend one is refused at once with 503 (UO) and never reaches it; maxRequestsPerConnection 1:
 *   every request opens its own upstream connection;
 * - outlierDetection: an endpoint answering 500 is ejected after consecutive5xxErrors and gets no
 *   more traffic while the other keeps serving;
 * - tls SIMPLE with a credentialName Secret (ca.crt) and sni: TLS to an HTTPS backend, verified;
 *   without the rule the same backend is spoken to in plaintext and fails;
 * - a BackendTLSPolicy with the wrong CA under a DestinationRule whose tls has the right one: the
 *   rule's TLS is used (Istio: the DestinationRule's fields win); a BackendTLSPolicy under a rule
 *   setting only a connection pool: the policy's TLS is used, also while an Ingress reaches the same
 *   Service port in plaintext.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess, type Reply } from '../helpers/gateway.js';
import { makePki, type Pki } from '../support/mtls-certs.js';
import { startBackend, type Backend } from './traffic-support.js';

describe('Gateway API backends with DestinationRules through meshgate run', { timeout: 90_000 }, () => {
  const dir = tempDir();
  let pki: Pki;
  let tlsServer: https.Server;
  let slow: Backend;
  let counted: Backend;
  /** The same kind of backend for the rule-less Service: upstream pools are per endpoint, so the two must not share one. */
  let reused: Backend;
  let good: Backend;
  let bad: Backend;
  let gw: GatewayProcess;

  const indent = (pem: string, n: number): string => pem.trim().split('\n').map((l) => `${' '.repeat(n)}${l}`).join('\n');
  const dr = (name: string, policy: string): string => `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: ${name}, namespace: default }
spec:
  host: ${name}.default.svc.cluster.local
  trafficPolicy:
${policy}
`;
  const btp = (name: string, ca: string): string => `apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: { name: ${name}, namespace: default }
spec:
  targetRefs: [{ group: "", kind: Service, name: ${name} }]
  validation:
    caCertificateRefs: [{ group: "", kind: ConfigMap, name: ${ca} }]
    hostname: api.example.com
`;
  const routes = ['slow', 'slow-free', 'counted', 'counted-free', 'flaky', 'flaky-free', 'tls-dr', 'tls-none', 'tls-dr-over-btp', 'tls-btp-under-dr'];

  before(async () => {
    pki = makePki(['api.example.com']);
    tlsServer = https.createServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => {
      const body = JSON.stringify({ name: 'secure', sni: (req.socket as TLSSocket).servername ?? null });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    await new Promise<void>((r) => tlsServer.listen(0, '127.0.0.1', r));
    const tlsPort = (tlsServer.address() as AddressInfo).port;
    slow = await startBackend('slow', () => ({ delayMs: 700, status: 200 }));
    counted = await startBackend('counted');
    reused = await startBackend('reused');
    good = await startBackend('good');
    bad = await startBackend('bad', () => 500);
    writeConfig(
      dir,
      'all.yaml',
      [
        serviceYaml('slow', [slow.port]),
        serviceYaml('slow-free', [slow.port]),
        serviceYaml('counted', [counted.port]),
        serviceYaml('counted-free', [reused.port]),
        serviceYaml('flaky', [good.port, bad.port]),
        serviceYaml('flaky-free', [good.port, bad.port]),
        serviceYaml('tls-dr', [tlsPort], { servicePort: 443, portName: 'https' }),
        serviceYaml('tls-none', [tlsPort], { servicePort: 443, portName: 'https' }),
        serviceYaml('tls-dr-over-btp', [tlsPort], { servicePort: 443, portName: 'https' }),
        serviceYaml('tls-btp-under-dr', [tlsPort], { servicePort: 443, portName: 'https' }),
        dr('slow', '    connectionPool:\n      tcp: { maxConnections: 1 }\n      http: { http1MaxPendingRequests: 1 }'),
        dr('counted', '    connectionPool:\n      http: { maxRequestsPerConnection: 1 }'),
        dr('flaky', '    loadBalancer: { simple: ROUND_ROBIN }\n    outlierDetection: { consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 5m, maxEjectionPercent: 100 }'),
        dr('tls-dr', '    tls: { mode: SIMPLE, sni: api.example.com, credentialName: backend-ca }'),
        dr('tls-dr-over-btp', '    tls: { mode: SIMPLE, sni: api.example.com, credentialName: backend-ca }'),
        dr('tls-btp-under-dr', '    connectionPool:\n      http: { http1MaxPendingRequests: 100 }'),
        btp('tls-dr-over-btp', 'ca-b'),
        btp('tls-btp-under-dr', 'ca-a'),
        `apiVersion: v1
kind: Secret
metadata: { name: backend-ca, namespace: default }
stringData:
  ca.crt: |
${indent(pki.caA.cert, 4)}
`,
        `apiVersion: v1
kind: ConfigMap
metadata: { name: ca-a, namespace: default }
data:
  ca.crt: |
${indent(pki.caA.cert, 4)}
`,
        `apiVersion: v1
kind: ConfigMap
metadata: { name: ca-b, namespace: default }
data:
  ca.crt: |
${indent(pki.caB.cert, 4)}
`,
        `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: meshgate
  listeners: [{ name: http, port: 80, protocol: HTTP, hostname: "*.example.com" }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
${routes.map((n) => `    - matches: [{ path: { type: PathPrefix, value: /${n}/ } }]\n      backendRefs: [{ name: ${n}, port: ${n.startsWith('tls-') ? 443 : 80} }]`).join('\n')}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: legacy, namespace: default }
spec:
  ingressClassName: meshgate
  rules:
    - host: legacy.example.org
      http:
        paths: [{ path: /, pathType: Prefix, backend: { service: { name: tls-btp-under-dr, port: { number: 443 } } } }]
`,
      ].join('---\n'),
    );
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const b of [slow, counted, reused, good, bad]) await b?.close();
    await new Promise<void>((r) => (tlsServer ? tlsServer.close(() => r()) : r()));
    pki?.cleanup();
    removeDir(dir);
  });

  const at = (route: string, path = 'x', headers: Record<string, string> = {}): Promise<Reply> => get(`http://127.0.0.1:${gw.httpPort}/${route}/${path}`, { host: 'any.example.com', headers });

  test('connectionPool maxConnections 1 + http1MaxPendingRequests 1: the third concurrent request gets 503 UO and never reaches the backend', async () => {
    const before = slow.hits.length;
    const t0 = Date.now();
    const timed = (i: number): Promise<Reply & { ms: number }> => at('slow', `c${i}`).then((r) => ({ ...r, ms: Date.now() - t0 }));
    const replies = await Promise.all([timed(0), timed(1), timed(2)]);
    const statuses = replies.map((r) => r.status).sort();
    assert.deepEqual(statuses, [200, 200, 503], `statuses ${statuses.join(',')}: ${replies.map((r) => r.body).join(' | ')}`);
    const overflow = replies.find((r) => r.status === 503)!;
    assert.equal(overflow.headers['x-envoy-overloaded'], 'true', `headers ${JSON.stringify(overflow.headers)}`);
    const served = replies.filter((r) => r.status === 200).map((r) => r.ms);
    assert.ok(overflow.ms < Math.min(...served), `the overflow (${overflow.ms} ms) must be answered before a slot frees (${Math.min(...served)} ms)`);
    assert.equal(slow.hits.length - before, 2, 'the refused request never reached the backend');
  });

  test('the same backend without a DestinationRule: all three concurrent requests are served', async () => {
    const replies = await Promise.all([0, 1, 2].map((i) => at('slow-free', `f${i}`)));
    assert.deepEqual(replies.map((r) => r.status), [200, 200, 200]);
  });

  test('maxRequestsPerConnection 1: each request opens its own upstream connection; without the rule one connection is reused', async () => {
    const before = counted.connections;
    for (let i = 0; i < 4; i++) assert.equal((await at('counted', `k${i}`)).status, 200);
    const withRule = counted.connections - before;
    assert.equal(withRule, 4, `4 requests with maxRequestsPerConnection 1 used ${withRule} upstream connections`);
    const mid = reused.connections;
    for (let i = 0; i < 4; i++) assert.equal((await at('counted-free', `k${i}`)).status, 200);
    const withoutRule = reused.connections - mid;
    assert.ok(withoutRule <= 1, `4 sequential requests without the rule used ${withoutRule} new upstream connections (keep-alive reuses one)`);
  });

  test('outlierDetection consecutive5xxErrors 2: the failing endpoint is ejected and the rest of the traffic is served', async () => {
    const badBefore = bad.hits.length;
    const replies: number[] = [];
    for (let i = 0; i < 12; i++) replies.push((await at('flaky', `o${i}`)).status);
    assert.equal(bad.hits.length - badBefore, 2, `the 500-answering endpoint got ${bad.hits.length - badBefore} requests; ejected after 2`);
    assert.deepEqual(replies.slice(-6), [200, 200, 200, 200, 200, 200], `statuses ${replies.join(',')}`);
    // Without the rule, round robin keeps sending it every other request.
    const freeBefore = bad.hits.length;
    for (let i = 0; i < 8; i++) await at('flaky-free', `p${i}`);
    assert.equal(bad.hits.length - freeBefore, 4, 'without outlier detection the failing endpoint keeps its share');
  });

  test('tls SIMPLE (credentialName with ca.crt, sni): TLS to the HTTPS backend, verified; without the rule it fails', async () => {
    const r = await at('tls-dr');
    assert.equal(r.status, 200, r.body);
    assert.equal((r.json as unknown as { sni: string }).sni, 'api.example.com');
    const plain = await at('tls-none');
    assert.ok(plain.status >= 500, `plaintext to a TLS backend should fail, got ${plain.status}: ${plain.body}`);
  });

  test('DestinationRule tls over a BackendTLSPolicy (wrong CA): the rule wins; a rule without tls leaves the policy in charge', async () => {
    const over = await at('tls-dr-over-btp');
    assert.equal(over.status, 200, `the DestinationRule's CA verifies the backend; the BackendTLSPolicy's would not: ${over.status} ${over.body}`);
    // An Ingress (which does not read BackendTLSPolicy) routes to the same Service port in plaintext:
    // the HTTPRoute still gets the policy's TLS (its own twin cluster).
    const under = await at('tls-btp-under-dr');
    assert.equal(under.status, 200, under.body);
    assert.equal((under.json as unknown as { sni: string }).sni, 'api.example.com');
  });
});
