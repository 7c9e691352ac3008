/**
 * Ingress backend protocols end to end (`meshgate run`, real backends on loopback): ingress-nginx's
 * `backend-protocol: GRPC` to a real @grpc/grpc-js server (HTTP/2 in clear, the Service port not
 * named for gRPC), `HTTPS` to a TLS backend without verification (ingress-nginx's default),
 * `proxy-ssl-verify: "on"` with the right and the wrong `ca.crt`, and `proxy-ssl-secret` client
 * certificates for a backend that requires one.
 */

import assert from 'node:assert/strict';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { grpcClient, startGrpcEcho, unary, type GrpcEchoServer } from '../support/grpc-echo.js';
import { makePki, type Pki } from '../support/mtls-certs.js';

async function startHttpsEcho(pki: Pki, requireClientCert: boolean): Promise<{ server: https.Server; port: number }> {
  const server = https.createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.caA.cert, requestCert: requireClientCert, rejectUnauthorized: requireClientCert }, (req, res) => {
    const sock = req.socket as TLSSocket;
    const peer = sock.getPeerCertificate();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ tls: true, sni: sock.servername ?? null, client: peer?.subjectaltname ?? null, path: req.url }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('Ingress backend-protocol and proxy-ssl annotations', { timeout: 90_000 }, () => {
  const dir = tempDir();
  let pki: Pki;
  let gw: GatewayProcess;
  let grpcEcho: GrpcEchoServer;
  let simple: { server: https.Server; port: number };
  let mutual: { server: https.Server; port: number };

  before(async () => {
    pki = makePki(['backend.internal']);
    grpcEcho = await startGrpcEcho('grpc-backend');
    simple = await startHttpsEcho(pki, false);
    mutual = await startHttpsEcho(pki, true);
    writeConfig(dir, 'services.yaml', [
      serviceYaml('grpc', [grpcEcho.port], { portName: 'tcp' }),
      serviceYaml('tls-noverify', [simple.port], { portName: 'tcp', servicePort: 443 }),
      serviceYaml('tls-verify', [simple.port], { portName: 'tcp', servicePort: 443 }),
      serviceYaml('tls-wrongca', [simple.port], { portName: 'tcp', servicePort: 443 }),
      serviceYaml('tls-mutual', [mutual.port], { portName: 'tcp', servicePort: 443 }),
    ].join('---\n'));
    writeConfig(dir, 'secrets.yaml', `apiVersion: v1
kind: Secret
metadata: { name: backend-ca, namespace: default }
data: { ca.crt: ${b64(pki.caA.cert)} }
---
apiVersion: v1
kind: Secret
metadata: { name: other-ca, namespace: default }
data: { ca.crt: ${b64(pki.caB.cert)} }
---
apiVersion: v1
kind: Secret
metadata: { name: client, namespace: default }
data: { ca.crt: ${b64(pki.caA.cert)}, tls.crt: ${b64(pki.clientA.cert)}, tls.key: ${b64(pki.clientA.key)} }
`);
    const ingress = (name: string, host: string, service: string, port: number, annotations: Record<string, string>) => `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(annotations)} }
spec:
  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: ${service}, port: { number: ${port} } } } }] }
`;
    const p = 'nginx.ingress.kubernetes.io/';
    writeConfig(dir, 'ingress.yaml', [
      ingress('grpc', 'grpc.example.com', 'grpc', 80, { [`${p}backend-protocol`]: 'GRPC' }),
      ingress('noverify', 'noverify.example.com', 'tls-noverify', 443, { [`${p}backend-protocol`]: 'HTTPS' }),
      ingress('verify', 'verify.example.com', 'tls-verify', 443, { [`${p}backend-protocol`]: 'HTTPS', [`${p}proxy-ssl-verify`]: 'on', [`${p}proxy-ssl-secret`]: 'default/backend-ca', [`${p}proxy-ssl-name`]: 'backend.internal' }),
      ingress('wrongca', 'wrongca.example.com', 'tls-wrongca', 443, { [`${p}backend-protocol`]: 'HTTPS', [`${p}proxy-ssl-verify`]: 'on', [`${p}proxy-ssl-secret`]: 'other-ca' }),
      ingress('mutual', 'mutual.example.com', 'tls-mutual', 443, { [`${p}backend-protocol`]: 'HTTPS', [`${p}proxy-ssl-verify`]: 'on', [`${p}proxy-ssl-secret`]: 'default/client', [`${p}proxy-ssl-name`]: 'backend.internal' }),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });
  after(async () => {
    await gw?.stop();
    await grpcEcho?.close();
    simple?.server.close();
    mutual?.server.close();
    simple?.server.closeAllConnections();
    mutual?.server.closeAllConnections();
    pki?.cleanup();
    removeDir(dir);
  });

  test('backend-protocol GRPC: a gRPC call reaches the @grpc/grpc-js backend over HTTP/2 in clear', async () => {
    const client = grpcClient(gw.httpPort, 'grpc.example.com');
    try {
      const r = await unary(client, { text: 'hi' });
      assert.equal(r.error, null, `expected a reply, got ${r.error?.message}`);
      assert.equal(r.reply?.from, 'grpc-backend');
      assert.equal(r.reply?.text, 'hi');
    } finally {
      client.close();
    }
  });

  test('backend-protocol HTTPS without proxy-ssl-verify: TLS, backend certificate not verified, SNI = the Service name', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/x`, { host: 'noverify.example.com' });
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body) as { tls: boolean; sni: string };
    assert.equal(body.tls, true);
    assert.equal(body.sni, 'tls-noverify.default.svc.cluster.local');
  });

  test('proxy-ssl-verify on with the right ca.crt and proxy-ssl-name: 200, SNI = proxy-ssl-name', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/x`, { host: 'verify.example.com' });
    assert.equal(r.status, 200, r.body);
    assert.equal((JSON.parse(r.body) as { sni: string }).sni, 'backend.internal');
  });

  test('proxy-ssl-verify on with another CA: 502 (nginx) with flag UF and the TLS reason', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/x`, { host: 'wrongca.example.com' });
    assert.equal(r.status, 502);
    assert.equal(r.headers['x-meshgate-flags'], 'UF');
    assert.match(r.body, /CERTIFICATE_VERIFY_FAILED/);
  });

  test('proxy-ssl-secret with tls.crt/tls.key: the backend that requires a client certificate gets it', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/x`, { host: 'mutual.example.com' });
    assert.equal(r.status, 200, r.body);
    assert.match((JSON.parse(r.body) as { client: string }).client, /spiffe:\/\/test\/client-a/);
  });
});
