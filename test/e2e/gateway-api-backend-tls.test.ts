/**
 * BackendTLSPolicy end to end through the real `meshgate run` process: an HTTPRoute to a Service whose
 * endpoint speaks HTTPS with a certificate from a test CA. With a policy naming that CA (ConfigMap
 * `ca.crt`) and the hostname, the gateway originates TLS with that SNI and verifies the certificate;
 * a policy with another CA fails the handshake (503); a policy whose ConfigMap is missing fails too
 * (never falls back to plaintext or to the system roots). `subjectAltNames` (BackendTLSPolicySANValidation):
 * a certificate without the listed name fails although the chain and `hostname` check out.
 */
import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { makePki, type Pki } from '../support/mtls-certs.js';

describe('Gateway API: BackendTLSPolicy through meshgate run', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let pki: Pki;
  let server: https.Server;
  let gw: GatewayProcess;

  const configMap = (name: string, pem: string) => `apiVersion: v1
kind: ConfigMap
metadata: { name: ${name}, namespace: default }
data:
  ca.crt: |
${pem.trim().split('\n').map((l) => `    ${l}`).join('\n')}
`;
  const policy = (name: string, service: string, ca: string, sans = '') => `apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: { name: ${name}, namespace: default }
spec:
  targetRefs: [{ group: "", kind: Service, name: ${service} }]
  validation:
    caCertificateRefs: [{ group: "", kind: ConfigMap, name: ${ca} }]
    hostname: api.example.com
${sans ? `    subjectAltNames: ${sans}
` : ''}`;

  before(async () => {
    pki = makePki(['api.example.com']);
    server = https.createServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => {
      const body = JSON.stringify({ name: 'secure', sni: (req.socket as TLSSocket).servername ?? null, path: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    writeConfig(dir, 'all.yaml', [
      serviceYaml('good', [port], { servicePort: 443, portName: 'https' }),
      serviceYaml('wrong-ca', [port], { servicePort: 443, portName: 'https' }),
      serviceYaml('no-ca', [port], { servicePort: 443, portName: 'https' }),
      serviceYaml('san-good', [port], { servicePort: 443, portName: 'https' }),
      serviceYaml('san-bad', [port], { servicePort: 443, portName: 'https' }),
      configMap('ca-a', pki.caA.cert),
      configMap('ca-b', pki.caB.cert),
      policy('good', 'good', 'ca-a'),
      policy('wrong-ca', 'wrong-ca', 'ca-b'),
      policy('no-ca', 'no-ca', 'missing'),
      policy('san-good', 'san-good', 'ca-a', '[{ type: Hostname, hostname: other.example.com }, { type: Hostname, hostname: api.example.com }]'),
      policy('san-bad', 'san-bad', 'ca-a', '[{ type: Hostname, hostname: other.example.com }, { type: URI, uri: "spiffe://cluster.local/ns/default/sa/other" }]'),
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
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /good } }]
      backendRefs: [{ name: good, port: 443 }]
    - matches: [{ path: { type: PathPrefix, value: /wrong-ca } }]
      backendRefs: [{ name: wrong-ca, port: 443 }]
    - matches: [{ path: { type: PathPrefix, value: /no-ca } }]
      backendRefs: [{ name: no-ca, port: 443 }]
    - matches: [{ path: { type: PathPrefix, value: /san-good } }]
      backendRefs: [{ name: san-good, port: 443 }]
    - matches: [{ path: { type: PathPrefix, value: /san-bad } }]
      backendRefs: [{ name: san-bad, port: 443 }]
`,
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await new Promise<void>((r) => server?.close(() => r()));
    pki?.cleanup();
    removeDir(dir);
  });

  test('the policy CA and hostname: TLS with that SNI, certificate verified', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/good/x`, { host: 'any.example.com' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json?.name, 'secure');
    assert.equal((r.json as unknown as { sni: string }).sni, 'api.example.com');
  });

  test('another CA: the handshake fails, 503', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/wrong-ca/x`, { host: 'any.example.com' });
    assert.equal(r.status, 503, r.body);
  });

  test('a missing CA ConfigMap: no fallback to plaintext or system roots, the request fails', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/no-ca/x`, { host: 'any.example.com' });
    assert.ok(r.status >= 500, `status ${r.status}: ${r.body}`);
  });

  test('BackendTLSPolicySANValidation: one listed subjectAltName on the certificate is enough; none listed there fails the handshake', async () => {
    const good = await get(`http://127.0.0.1:${gw.httpPort}/san-good/x`, { host: 'any.example.com' });
    assert.equal(good.status, 200, good.body);
    assert.equal(good.json?.name, 'secure');
    const bad = await get(`http://127.0.0.1:${gw.httpPort}/san-bad/x`, { host: 'any.example.com' });
    assert.equal(bad.status, 503, bad.body);
  });
});
