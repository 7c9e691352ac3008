/**
 * Edge security through the real `meshgate run` and YAML: AuthorizationPolicy (DENY, ALLOW with
 * requestPrincipals), RequestAuthentication with an inline JWKS, the rate-limit annotation, and
 * header hardening, against an echo backend.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type CryptoKey } from 'jose';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { sendRaw } from '../security/harness.js';

describe('security policies through meshgate run', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;
  let privateKey: CryptoKey;
  const shop = (p: string, headers: Record<string, string> = {}) => get(`http://127.0.0.1:${gw.httpPort}${p}`, { host: 'shop.example.com', headers });
  const token = (sub = 'alice') => new SignJWT({ sub }).setProtectedHeader({ alg: 'ES256', kid: 'e1' }).setIssuer('https://auth.example.com').setAudience('shop').setExpirationTime('5m').sign(privateKey);

  before(async () => {
    echo = await startEchoServer({ name: 'web' });
    const pair = await generateKeyPair('ES256');
    privateKey = pair.privateKey;
    const jwks = JSON.stringify({ keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'e1', alg: 'ES256' }] });
    writeConfig(dir, 'backends.yaml', serviceYaml('web', [echo.port]));
    writeConfig(dir, 'gateway.yaml', `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: public, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*/shop.example.com", "*/limited.example.com"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/public]
  http: [{ route: [{ destination: { host: web } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: limited
  namespace: default
  annotations: { meshgate.io/local-rate-limit: "3/m key=remote-ip" }
spec:
  hosts: [limited.example.com]
  gateways: [istio-system/public]
  http: [{ route: [{ destination: { host: web } }] }]
`);
    writeConfig(dir, 'security.yaml', `
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  jwtRules:
    - issuer: https://auth.example.com
      audiences: [shop]
      jwks: '${jwks}'
      outputClaimToHeaders: [{ header: x-user, claim: sub }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: istio-system }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin", "/admin/*"] } }] }]
---
apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata: { name: api-needs-jwt, namespace: istio-system }
spec:
  action: ALLOW
  rules:
    - from: [{ source: { requestPrincipals: ["*"] } }]
      to: [{ operation: { paths: ["/api/*"] } }]
    - to: [{ operation: { notPaths: ["/api/*"] } }]
---
# Another namespace: does not apply to the gateway.
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-all, namespace: shop }
spec:
  action: DENY
  rules: [{}]
`);
    gw = await startGateway({ configDir: dir });
  });
  after(async () => {
    await gw?.stop();
    await echo?.close();
    removeDir(dir);
  });

  test('public paths pass; a policy in another namespace does not apply', async () => {
    assert.equal((await shop('/public')).status, 200);
  });

  for (const p of ['/admin', '//admin', '/./admin', '/%61dmin', '/public/../admin', '/admin/x']) {
    test(`DENY /admin holds for ${p}`, async () => {
      const r = await shop(p);
      assert.equal(r.status, 403, `${p}: ${r.body}`);
      assert.equal(r.body, 'RBAC: access denied');
    });
  }

  test('encoded slash is refused outright', async () => {
    assert.equal((await shop('/public%2F..%2Fadmin')).status, 400);
  });

  test('ALLOW with requestPrincipals: /api needs a valid token', async () => {
    assert.equal((await shop('/api/orders')).status, 403);
    const ok = await shop('/api/orders', { authorization: `Bearer ${await token()}` });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(ok.json?.headers['x-user'], 'alice');
    assert.equal(ok.json?.headers.authorization, undefined);
    assert.equal((await shop('/api/orders', { authorization: 'Bearer abc.def.ghi' })).status, 401);
  });

  test('local rate limit: 3 per minute per client, then 429 with retry-after', async () => {
    const statuses: number[] = [];
    let last = null;
    for (let i = 0; i < 5; i++) {
      last = await get(`http://127.0.0.1:${gw.httpPort}/x`, { host: 'limited.example.com' });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses, [200, 200, 200, 429, 429]);
    assert.ok(Number(last!.headers['retry-after']) > 0);
    assert.equal(last!.headers['x-ratelimit-limit'], '3');
    assert.equal((await shop('/public')).status, 200, 'other routes are not limited');
  });

  test('header names with underscores are refused (400)', async () => {
    const r = await sendRaw(gw.httpPort, 'GET /public HTTP/1.1\r\nHost: shop.example.com\r\nX_User: admin\r\n\r\n');
    assert.equal(r.statuses[0], 400);
  });
});
