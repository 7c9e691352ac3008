/**
 * ingress-nginx `ssl-passthrough` end to end, on the one HTTPS port and without a global flag: a
 * connection whose SNI is a passthrough Ingress's host is relayed unterminated to the Service of its
 * `/` path (a TLS backend presenting its own certificate: the client sees that certificate and talks
 * TLS with the backend itself), while another host on the same port is still terminated by the
 * gateway with the Ingress's certificate and served as HTTP. Plain HTTP for the passthrough host is
 * still proxied (ingress-nginx's port 80 is not affected), and an unknown SNI is terminated.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, service: string, annotations: Record<string, string>, tlsSecretName: string | null): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
${tlsSecretName === null ? '' : `  tls: [{ hosts: [${host}], secretName: ${tlsSecretName} }]\n`}  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: ${service}, port: { number: 443 } } } }] }
`;
}

describe('ingress-nginx ssl-passthrough', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Echo;
  const backendCert = makeCert(dir, 'backend.internal', ['pass.example.com', 'backend.internal']);
  const gatewayCert = makeCert(dir, 'gateway.example.com', ['web.example.com', 'pass.example.com']);
  // The passthrough backend: a TLS server with its own certificate, answering who it is and the SNI it saw.
  const tlsBackend = https.createServer({ cert: backendCert.cert, key: backendCert.key }, (req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' }).end(`tls-backend sni=${(req.socket as TLSSocket).servername} host=${req.headers.host}`);
  });

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    await new Promise<void>((r) => tlsBackend.listen(0, '127.0.0.1', r));
    writeConfig(dir, 'all.yaml', [
      serviceYaml('secure', [(tlsBackend.address() as AddressInfo).port], { servicePort: 443 }),
      serviceYaml('web', [web.port], { servicePort: 443 }),
      tlsSecret('gw-tls', 'default', gatewayCert),
      // With a tls entry naming the host too (as ingress-nginx's own e2e test): passthrough still wins for HTTPS.
      ingress('pass', 'pass.example.com', 'secure', { 'ssl-passthrough': 'true' }, 'gw-tls'),
      ingress('web', 'web.example.com', 'web', {}, 'gw-tls'),
      ingress('pass-only', 'only.example.com', 'secure', { 'ssl-passthrough': 'true' }, null),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await web?.close();
    tlsBackend.closeAllConnections();
    await new Promise<void>((r) => tlsBackend.close(() => r()));
    removeDir(dir);
  });

  test('a passthrough SNI reaches the TLS backend unterminated: the client sees the backend\'s certificate', async () => {
    const r = await getTls(gw.httpsPort, '/x', { host: 'pass.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.peerCN, 'backend.internal', 'the certificate is the backend\'s, not the gateway\'s');
    assert.equal(r.body, 'tls-backend sni=pass.example.com host=pass.example.com');
    assert.equal(r.headers.server, undefined, 'the gateway added nothing: it never saw the HTTP exchange');
  });

  test('a passthrough host without any certificate on the gateway is relayed too', async () => {
    const r = await getTls(gw.httpsPort, '/', { host: 'only.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.peerCN, 'backend.internal');
    assert.equal(r.body, 'tls-backend sni=only.example.com host=only.example.com');
  });

  test('another host on the same port is still terminated by the gateway and served as HTTP (HTTP/1.1 and HTTP/2 by ALPN)', async () => {
    const r = await getTls(gw.httpsPort, '/hello', { host: 'web.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.peerCN, 'gateway.example.com');
    assert.equal(r.json?.name, 'web');
    assert.equal(r.json?.url, '/hello');
    const http2 = await import('node:http2');
    const session = http2.connect(`https://127.0.0.1:${gw.httpsPort}`, { servername: 'web.example.com', rejectUnauthorized: false });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const s = session.request({ ':path': '/h2', ':authority': 'web.example.com' });
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('end', () => resolve(Buffer.concat(chunks).toString()));
        s.on('error', reject);
        s.setTimeout(10_000, () => s.close());
      });
      assert.equal(JSON.parse(body).url, '/h2');
    } finally {
      session.close();
    }
  });

  test('an SNI that is not a passthrough host is terminated (the gateway\'s certificate, its routes)', async () => {
    const r = await getTls(gw.httpsPort, '/', { host: 'web.example.com', servername: 'unknown.example.com' });
    assert.equal(r.peerCN, 'gateway.example.com');
    assert.equal(r.json?.name, 'web');
  });

  test('plain HTTP for the passthrough host is still proxied (redirected to HTTPS, since the host has a certificate)', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/p`, { host: 'pass.example.com' });
    assert.equal(r.status, 308);
    assert.match(String(r.headers.location), /^https:\/\/pass\.example\.com(:\d+)?\/p$/);
  });

  test('removing ssl-passthrough at run time: the port switches to terminating every host, without a restart', async () => {
    writeConfig(dir, 'all.yaml', [
      serviceYaml('secure', [(tlsBackend.address() as AddressInfo).port], { servicePort: 443 }),
      serviceYaml('web', [web.port], { servicePort: 443 }),
      tlsSecret('gw-tls', 'default', gatewayCert),
      ingress('pass', 'pass.example.com', 'web', {}, 'gw-tls'),
      ingress('web', 'web.example.com', 'web', {}, 'gw-tls'),
    ].join('---\n'));
    await waitFor(async () => (await getTls(gw.httpsPort, '/', { host: 'pass.example.com' }).catch(() => null))?.peerCN === 'gateway.example.com', 15_000, 'pass.example.com terminated by the gateway');
    const r = await getTls(gw.httpsPort, '/after', { host: 'pass.example.com' });
    assert.equal(r.json?.name, 'web');
    assert.equal(r.json?.url, '/after');
  });
});
