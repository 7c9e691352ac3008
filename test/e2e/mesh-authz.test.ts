/**
 * AuthorizationPolicy `principals` and `namespaces` at the gateway for clients holding mesh
 * workload certificates: the clients get their certificates from `meshgate control` over the real
 * CSR flow (each with its own token), then call the gateway's MUTUAL HTTPS server, whose client CA
 * is the mesh root.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import { IdentityClient } from '../../src/mesh/identity/client.js';
import type { MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { Logger } from '../../src/lib/log.js';

const b64 = (s: string): string => Buffer.from(s).toString('base64');

describe('AuthorizationPolicy principals and namespaces for mesh workload certificates', { timeout: 90_000 }, () => {
  let cp: ControlPlane;
  let gw: GatewayProcess;
  let backend: http.Server;
  const ids = new Map<string, MeshIdentityMaterial>();

  async function workload(namespace: string, serviceAccount: string): Promise<MeshIdentityMaterial> {
    const dir = tempDir('meshgate-wl-');
    const tokenFile = path.join(dir, 'token');
    writeFileSync(tokenFile, await issueToken(cp.ca.material.signingKey, { namespace, serviceAccount }, 600));
    const client = new IdentityClient({ address: `127.0.0.1:${cp.grpcPort}`, rootCertPem: cp.ca.rootCertPem, tokenFile, namespace, serviceAccount, trustDomain: 'cluster.local', ttlSeconds: 3600, log: new Logger('error'), onCertificate: () => {} });
    try {
      return await client.fetch();
    } finally {
      client.stop();
    }
  }

  function call(id: MeshIdentityMaterial | null): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: gw.httpsPort, path: '/', servername: 'gw.example.com', headers: { host: 'gw.example.com' }, ca: cp.ca.rootCertPem, agent: false, ...(id ? { cert: id.certChainPem, key: id.keyPem } : {}) },
        (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
      // A failed connection says what the gateway printed (and whether it is still running).
      req.on('error', (e) => reject(new Error(`${e.message}; gateway exit code ${gw.proc.exitCode}, output:\n${gw.output()}`)));
      req.end();
    });
  }

  before(async () => {
    cp = await startControlPlane({ configDir: tempDir('meshgate-cp-'), caDir: path.join(tempDir('meshgate-ca-'), 'ca'), listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', adminPort: 0, certTtlSeconds: 3600, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: new Logger('error') });
    for (const [ns, sa] of [['shop', 'frontend'], ['shop', 'batch'], ['trusted', 'anyone']]) ids.set(`${ns}/${sa}`, await workload(ns, sa));
    backend = http.createServer((req, res) => res.end(`hello ${req.headers['x-forwarded-client-cert'] ? 'with xfcc' : ''}`));
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    const serving = await cp.ca.issueServing(['gw.example.com'], 3600);
    const configDir = tempDir('meshgate-authz-');
    writeConfig(
      configDir,
      'gw.yaml',
      `apiVersion: v1
kind: Secret
metadata: { name: gw-cert, namespace: istio-system }
data:
  tls.crt: ${b64(serving.certChainPem)}
  tls.key: ${b64(serving.keyPem)}
  ca.crt: ${b64(cp.ca.rootCertPem)}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 443, name: https, protocol: HTTPS }, hosts: ["gw.example.com"], tls: { mode: MUTUAL, credentialName: gw-cert } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: vs, namespace: istio-system }
spec:
  hosts: ["gw.example.com"]
  gateways: [gw]
  http: [{ route: [{ destination: { host: backend.default.svc.cluster.local, port: { number: 80 } } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: mesh-callers, namespace: istio-system }
spec:
  selector: { matchLabels: { istio: ingressgateway } }
  action: ALLOW
  rules:
    - from: [{ source: { principals: ["cluster.local/ns/shop/sa/frontend"] } }]
    - from: [{ source: { namespaces: ["trusted"] } }]
---
apiVersion: v1
kind: Service
metadata: { name: backend, namespace: default }
spec: { ports: [{ name: http, port: 80 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: backend-1, namespace: default, labels: { kubernetes.io/service-name: backend } }
addressType: IPv4
ports: [{ name: http, port: ${(backend.address() as AddressInfo).port} }]
endpoints: [{ addresses: [127.0.0.1] }]
`,
    );
    gw = await startGateway({ configDir, workers: 1 });
  });

  after(async () => {
    if (process.env.MESHGATE_TEST_DEBUG) console.log(gw?.output());
    await gw?.stop();
    await cp?.stop();
    backend?.close();
  });

  test('principals: the workload certificate of shop/frontend is allowed', async () => {
    const r = await call(ids.get('shop/frontend')!);
    assert.equal(r.status, 200, r.body);
  });

  test('principals: another service account of the same namespace is denied (403 RBAC)', async () => {
    const r = await call(ids.get('shop/batch')!);
    assert.equal(r.status, 403, r.body);
    assert.match(r.body, /RBAC: access denied/);
  });

  test('namespaces: any service account of namespace trusted is allowed', async () => {
    const r = await call(ids.get('trusted/anyone')!);
    assert.equal(r.status, 200, r.body);
  });
});
