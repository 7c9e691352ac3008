/**
 * The istio.io recipes a new user follows first, as written there, served from a directory (#12):
 * - "Secure Gateways" (TLS ingress): the Secret in istio-system, the Gateway and VirtualService in
 *   default (a same-named Secret in default must not be used);
 * - the "Ingress gateway" authorization task: an IP allow-list selecting `app: istio-ingressgateway`;
 * - the "Circuit breaking" task's DestinationRule (deprecated `consecutiveErrors: 1`): one 500 does
 *   not eject the only endpoint, a 503 (a gateway error) does;
 * - "JWT claim based routing": RequestAuthentication + a VirtualService matching
 *   `@request.auth.claims.groups`, with Istio's own sample tokens.
 * The YAML is the tasks' (namespace defaults as `kubectl apply` without -n gives them). Only what a
 * test cannot have is changed: the httpbin Service's endpoints point at a local httpbin stand-in,
 * and the JWT rule carries Istio's sample JWKS inline (`jwks`) instead of fetching it from GitHub.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { generatePkiSync } from '../support/x509-gen.js';

/** A small httpbin: /status/N answers N, /headers echoes the request headers, anything else 200. */
async function startHttpbin(): Promise<{ port: number; hits: string[]; close(): Promise<void> }> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    const status = /^\/status\/(\d{3})/.exec(req.url ?? '');
    if (status) return void res.writeHead(Number(status[1])).end();
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ url: req.url, headers: req.headers }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    hits,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** samples/httpbin: the Service (port 8000) whose endpoints are the local stand-in. */
const httpbinService = (port: number, namespace = 'default') => serviceYaml('httpbin', [port], { namespace, servicePort: 8000 });

/** samples/httpbin/httpbin-gateway.yaml. */
const HTTPBIN_GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
spec:
  # The selector matches the ingress gateway pod labels.
  # If you installed Istio using Helm following the standard documentation, this would be "istio=ingress"
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "*"
  gateways:
  - httpbin-gateway
  http:
  - route:
    - destination:
        host: httpbin
        port:
          number: 8000
`;

let httpbin: Awaited<ReturnType<typeof startHttpbin>>;
before(async () => {
  httpbin = await startHttpbin();
});
after(async () => {
  await httpbin?.close();
});

describe('Secure Gateways: credentialName in istio-system, Gateway in default', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const pki = generatePkiSync([
    { name: 'example.com', ca: true },
    { name: 'httpbin', cn: 'httpbin.example.com', issuer: 'example.com', dns: ['httpbin.example.com'], eku: ['serverAuth'] },
    { name: 'decoy-ca', ca: true },
    { name: 'decoy', cn: 'httpbin.example.com', issuer: 'decoy-ca', dns: ['httpbin.example.com'], eku: ['serverAuth'] },
  ]);
  const tlsSecret = (namespace: string, p: { cert: string; key: string }) => `apiVersion: v1
kind: Secret
metadata:
  name: httpbin-credential
  namespace: ${namespace}
type: kubernetes.io/tls
data:
  tls.crt: ${Buffer.from(p.cert).toString('base64')}
  tls.key: ${Buffer.from(p.key).toString('base64')}
`;

  before(async () => {
    // kubectl create -n istio-system secret tls httpbin-credential --key=httpbin.example.com.key --cert=httpbin.example.com.crt
    writeConfig(dir, 'secret.yaml', tlsSecret('istio-system', pki.certs.httpbin));
    // A Secret of the same name in the Gateway's namespace: Istio never reads it (CVE-2021-34824).
    writeConfig(dir, 'decoy.yaml', tlsSecret('default', pki.certs.decoy));
    writeConfig(
      dir,
      'gateway.yaml',
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: mygateway
spec:
  selector:
    istio: ingressgateway # use istio default ingress gateway
  servers:
  - port:
      number: 443
      name: https
      protocol: HTTPS
    tls:
      mode: SIMPLE
      credentialName: httpbin-credential # must be the same as secret
    hosts:
    - httpbin.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - "httpbin.example.com"
  gateways:
  - mygateway
  http:
  - match:
    - uri:
        prefix: /status
    - uri:
        prefix: /delay
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
`,
    );
    writeConfig(dir, 'httpbin.yaml', httpbinService(httpbin.port));
    gw = await startGateway({ configDir: dir, workers: 1 });
  });
  after(async () => {
    await gw?.stop();
    removeDir(dir);
  });

  test('curl -v -HHost:httpbin.example.com --cacert example.com.crt "https://httpbin.example.com/status/418": 418 with the istio-system certificate', async () => {
    const r = await new Promise<{ status: number; issuer: string }>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: gw.httpsPort, servername: 'httpbin.example.com', path: '/status/418', headers: { host: 'httpbin.example.com' }, ca: pki.certs['example.com'].cert, agent: false },
        (res) => {
          const peer = (res.socket as TLSSocket).getPeerX509Certificate?.() as X509Certificate | undefined;
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, issuer: peer?.issuer ?? '' }));
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(r.status, 418);
    assert.match(r.issuer, /CN=example\.com/);
  });
});

describe('Ingress gateway authorization: an IP allow-list selecting app: istio-ingressgateway', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const policy = (ipBlocks: string) => `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ingress-policy
  namespace: istio-system
spec:
  selector:
    matchLabels:
      app: istio-ingressgateway
  action: ALLOW
  rules:
  - from:
    - source:
        ipBlocks: [${ipBlocks}]
`;
  before(async () => {
    writeConfig(dir, 'httpbin-gateway.yaml', HTTPBIN_GATEWAY);
    writeConfig(dir, 'httpbin.yaml', httpbinService(httpbin.port));
    writeConfig(dir, 'policy.yaml', policy('"1.2.3.4", "5.6.7.0/24"'));
    gw = await startGateway({ configDir: dir, workers: 1 });
  });
  after(async () => {
    await gw?.stop();
    removeDir(dir);
  });

  test('a client outside the allow-list gets 403; once its IP is listed, 200', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/headers`, { host: 'httpbin.example.com' });
    assert.equal(r.status, 403, `the policy must apply at this gateway: ${r.status} ${r.body}`);
    writeConfig(dir, 'policy.yaml', policy('"1.2.3.4", "5.6.7.0/24", "127.0.0.1"'));
    await waitFor(async () => (await get(`http://127.0.0.1:${gw.httpPort}/headers`, { host: 'httpbin.example.com' })).status === 200, 10_000, 'the allow-list with the client IP served');
  });
});

describe('Circuit breaking: the task DestinationRule with the deprecated consecutiveErrors', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  before(async () => {
    writeConfig(dir, 'httpbin-gateway.yaml', HTTPBIN_GATEWAY);
    writeConfig(dir, 'httpbin.yaml', httpbinService(httpbin.port));
    writeConfig(
      dir,
      'destination-rule.yaml',
      `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
    outlierDetection:
      consecutiveErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
`,
    );
    gw = await startGateway({ configDir: dir, workers: 1 });
  });
  after(async () => {
    await gw?.stop();
    removeDir(dir);
  });

  test('a 500 does not eject the only endpoint (consecutiveErrors counts gateway errors); a 503 does; the deprecation is reported', async () => {
    const at = (p: string) => get(`http://127.0.0.1:${gw.httpPort}${p}`, { host: 'httpbin.example.com' });
    assert.equal((await at('/status/500')).status, 500);
    for (let i = 0; i < 3; i++) assert.equal((await at('/get')).status, 200, 'ejected after one 500: consecutiveErrors was read as consecutive5xxErrors');
    assert.equal((await at('/status/503')).status, 503);
    const hitsBefore = httpbin.hits.length;
    const after503 = await at('/get');
    assert.equal(after503.status, 503, 'a gateway error ejects the endpoint for baseEjectionTime');
    assert.equal(httpbin.hits.length, hitsBefore, 'nothing reaches the ejected endpoint');
    const diags = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { reason: string; field: string | null; message: string }[] };
    const dep = diags.diagnostics.find((d) => d.reason === 'MG_DEPRECATED_FIELD' && d.field === 'spec.trafficPolicy.outlierDetection.consecutiveErrors');
    assert.ok(dep, 'consecutiveErrors is reported deprecated');
    assert.match(dep.message, /consecutiveGatewayErrors/);
  });
});

describe('JWT claim based routing at the ingress gateway', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  // Istio's samples (security/tools/jwt/samples): the JWKS, groups-scope.jwt (groups: group1, group2) and demo.jwt (no groups).
  const JWKS = '{ "keys":[ {"e":"AQAB","kid":"DHFbpoIUqrY8t2zpA2qXfCmr5VO5ZEr4RzHU_-envvQ","kty":"RSA","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ"}]}';
  const TOKEN_GROUP =
    'eyJhbGciOiJSUzI1NiIsImtpZCI6IkRIRmJwb0lVcXJZOHQyenBBMnFYZkNtcjVWTzVaRXI0UnpIVV8tZW52dlEiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjM1MzczOTExMDQsImdyb3VwcyI6WyJncm91cDEiLCJncm91cDIiXSwiaWF0IjoxNTM3MzkxMTA0LCJpc3MiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyIsInNjb3BlIjpbInNjb3BlMSIsInNjb3BlMiJdLCJzdWIiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyJ9.EdJnEZSH6X8hcyEii7c8H5lnhgjB5dwo07M5oheC8Xz8mOllyg--AHCFWHybM48reunF--oGaG6IXVngCEpVF0_P5DwsUoBgpPmK1JOaKN6_pe9sh0ZwTtdgK_RP01PuI7kUdbOTlkuUi2AO-qUyOm7Art2POzo36DLQlUXv8Ad7NBOqfQaKjE9ndaPWT7aexUsBHxmgiGbz1SyLH879f7uHYPbPKlpHU6P9S-DaKnGLaEchnoKnov7ajhrEhGXAQRukhDPKUHO9L30oPIr5IJllEQfHYtt6IZvlNUGeLUcif3wpry1R5tBXRicx2sXMQ7LyuDremDbcNy_iE76Upg';
  const TOKEN_NO_GROUP =
    'eyJhbGciOiJSUzI1NiIsImtpZCI6IkRIRmJwb0lVcXJZOHQyenBBMnFYZkNtcjVWTzVaRXI0UnpIVV8tZW52dlEiLCJ0eXAiOiJKV1QifQ.eyJleHAiOjQ2ODU5ODk3MDAsImZvbyI6ImJhciIsImlhdCI6MTUzMjM4OTcwMCwiaXNzIjoidGVzdGluZ0BzZWN1cmUuaXN0aW8uaW8iLCJzdWIiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyJ9.CfNnxWP2tcnR9q0vxyxweaF3ovQYHYZl82hAUsn21bwQd9zP7c-LS9qd_vpdLG4Tn1A15NxfCjp5f7QNBUo-KC9PJqYpgGbaXhaGx7bEdFWjcwv3nZzvc7M__ZpaCERdwU7igUmJqYGBYQ51vr2njU9ZimyKkfDe3axcyiBZde7G6dabliUosJvvKOPcKIWPccCgefSj_GNfwIip3-SsFdlR7BtbVUcqR-yv-XOxJ3Uc1MI0tz3uMiiZcyPV7sNCU4KRnemRIMHVOfuvHsU60_GhGbiSFzgPTAa9WTltbnarTbxudb_YEOx12JiwYToeX0DCPb43W1tzIBxgm8NxUg';

  before(async () => {
    writeConfig(dir, 'httpbin.yaml', httpbinService(httpbin.port, 'foo'));
    writeConfig(
      dir,
      'gateway.yaml',
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: httpbin-gateway
  namespace: foo
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 80
      name: http
      protocol: HTTP
    hosts:
    - "*"
`,
    );
    writeConfig(
      dir,
      'request-authentication.yaml',
      `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: "jwt-example"
  namespace: istio-system
spec:
  selector:
    matchLabels:
      istio: ingressgateway
  jwtRules:
  - issuer: "testing@secure.istio.io"
    jwks: '${JWKS}'
`,
    );
    writeConfig(
      dir,
      'virtual-service.yaml',
      `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
  namespace: foo
spec:
  hosts:
  - "*"
  gateways:
  - httpbin-gateway
  http:
  - match:
    - uri:
        prefix: /headers
      headers:
        "@request.auth.claims.groups":
          exact: group1
    route:
    - destination:
        port:
          number: 8000
        host: httpbin
`,
    );
    gw = await startGateway({ configDir: dir, workers: 1 });
  });
  after(async () => {
    await gw?.stop();
    removeDir(dir);
  });

  test('no token: 404; a token whose groups hold group1: 200; a token without it: 404; an invalid token: 401', async () => {
    const at = (token?: string) => get(`http://127.0.0.1:${gw.httpPort}/headers`, { host: 'httpbin.example.com', headers: token ? { authorization: `Bearer ${token}` } : {} });
    assert.equal((await at()).status, 404);
    const ok = await at(TOKEN_GROUP);
    assert.equal(ok.status, 200, ok.body);
    assert.equal((await at(TOKEN_NO_GROUP)).status, 404);
    assert.equal((await at('some.invalid.token')).status, 401);
    const diags = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { severity: string; message: string }[] };
    assert.deepEqual(diags.diagnostics.filter((d) => d.severity !== 'info' && /claims/.test(d.message)), [], 'no warning about the claim match');
  });
});
