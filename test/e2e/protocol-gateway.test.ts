/**
 * The protocols through the real `meshgate run` process and its YAML translation:
 * - Istio Gateway `tls.mode` MUTUAL and OPTIONAL_MUTUAL (CA from the credential's ca.crt or from
 *   `<credentialName>-cacert`, subjectAltNames), driven by curl with client certificates (by
 *   node:http2 / node:https when curl is not installed, so the cases never skip);
 * - gRPC to a Service whose port says so (`appProtocol: grpc`, or a `grpc-` port name);
 * - WebSocket on a VirtualService route and on an Ingress route.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startEchoServer, type EchoServer } from '../../src/demo/echo-server.js';
import { removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { grpc, grpcClient, startGrpcEcho, unary, type GrpcEchoServer } from '../support/grpc-echo.js';
import { makePki, type Pem, type Pki } from '../support/mtls-certs.js';
import { within } from '../support/http-client.js';
import { open, startWsEcho, type WsEcho } from '../support/ws-echo.js';
import { hasProgram } from '../support/requires.js';
import http2 from 'node:http2';
import nodeHttps from 'node:https';

const b64 = (s: string) => Buffer.from(s).toString('base64');

/**
 * What `curl -o /dev/null -w '%{http_code} %{http_version}'` reports, with Node's clients: HTTP/2
 * (ALPN h2) unless `http1`; `tls12` caps the version at TLS 1.2. A refused handshake is code 1.
 */
function nodeClient(port: number, host: string, ca: string, client: Pem | null, http1: boolean, tls12: boolean): Promise<{ code: number; stdout: string; stderr: string }> {
  const tlsOptions = { servername: host, ca, ...(client === null ? {} : { cert: client.cert, key: client.key }), ...(tls12 ? { maxVersion: 'TLSv1.2' as const } : {}) };
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: { code: number; stdout: string; stderr: string }, cleanup: () => void) => {
      if (settled) return;
      settled = true;
      cleanup();
      resolve(r);
    };
    if (http1) {
      const req = nodeHttps.request({ host: '127.0.0.1', port, path: '/', headers: { host }, agent: false, ...tlsOptions }, (res) => {
        res.resume();
        res.on('end', () => finish({ code: 0, stdout: `${res.statusCode} 1.1`, stderr: '' }, () => {}));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
      req.on('error', (e) => finish({ code: 1, stdout: '', stderr: e.message }, () => {}));
      req.end();
      return;
    }
    const session = http2.connect(`https://127.0.0.1:${port}`, tlsOptions);
    const done = (r: { code: number; stdout: string; stderr: string }) => finish(r, () => session.destroy());
    const timer = setTimeout(() => done({ code: 1, stdout: '', stderr: 'timed out' }), 10_000);
    session.on('error', (e) => done({ code: 1, stdout: '', stderr: e.message }));
    session.on('close', () => done({ code: 1, stdout: '', stderr: 'connection closed' }));
    const req = session.request({ ':path': '/', ':authority': host });
    let status = 0;
    req.on('response', (h) => (status = Number(h[':status'])));
    req.on('error', (e) => done({ code: 1, stdout: '', stderr: e.message }));
    req.on('end', () => {
      clearTimeout(timer);
      done(status === 0 ? { code: 1, stdout: '', stderr: 'no response' } : { code: 0, stdout: `${status} 2`, stderr: '' });
    });
    req.resume();
    req.end();
  });
}

function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], { timeout: 15_000 }, (err, stdout, stderr) =>
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr }),
    );
  });
}

describe('protocols through meshgate run (Istio and Ingress YAML)', { timeout: 90_000 }, () => {
  const dir = tempDir();
  let pki: Pki;
  let gw: GatewayProcess;
  let echo: EchoServer;
  let grpcServer: GrpcEchoServer;
  let ws: WsEcho;

  before(async () => {
    pki = makePki(['mtls.example.com', 'san.example.com', 'opt.example.com', 'other.example.com']);
    echo = await startEchoServer({ name: 'echo' });
    grpcServer = await startGrpcEcho('grpc-upstream');
    ws = await startWsEcho('ws-upstream');
    writeConfig(dir, 'services.yaml', [
      serviceYaml('echo', [echo.port]),
      serviceYaml('grpc-named', [grpcServer.port], { portName: 'grpc-api' }),
      serviceYaml('ws', [ws.port]),
    ].join('---\n') + `---
apiVersion: v1
kind: Service
metadata: { name: grpc-app, namespace: default }
spec:
  ports: [{ name: api, port: 80, appProtocol: grpc }]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: grpc-app-0, namespace: default, labels: { kubernetes.io/service-name: grpc-app } }
addressType: IPv4
ports: [{ name: api, port: ${grpcServer.port} }]
endpoints: [{ addresses: [127.0.0.1] }]
`);
    const tlsSecret = (name: string, pair: Pem, ca?: string) => `apiVersion: v1
kind: Secret
metadata: { name: ${name}, namespace: istio-system }
type: kubernetes.io/tls
data:
  tls.crt: ${b64(pair.cert)}
  tls.key: ${b64(pair.key)}
${ca === undefined ? '' : `  ca.crt: ${b64(ca)}\n`}`;
    writeConfig(dir, 'secrets.yaml', [
      tlsSecret('mtls-cred', pki.server, pki.caA.cert),
      tlsSecret('opt-cred', pki.server),
      tlsSecret('other-cred', pki.server, pki.caB.cert),
      `apiVersion: v1
kind: Secret
metadata: { name: opt-cred-cacert, namespace: istio-system }
data:
  ca.crt: ${b64(pki.caA.cert)}
`,
    ].join('---\n'));
    writeConfig(dir, 'istio.yaml', `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 443, name: https-mtls, protocol: HTTPS }
      hosts: [mtls.example.com]
      tls: { mode: MUTUAL, credentialName: mtls-cred }
    - port: { number: 443, name: https-san, protocol: HTTPS }
      hosts: [san.example.com]
      tls: { mode: MUTUAL, credentialName: mtls-cred, subjectAltNames: ["spiffe://test/client-a"] }
    - port: { number: 443, name: https-opt, protocol: HTTPS }
      hosts: [opt.example.com]
      tls: { mode: OPTIONAL_MUTUAL, credentialName: opt-cred }
    - port: { number: 443, name: https-other, protocol: HTTPS }
      hosts: [other.example.com]
      tls: { mode: MUTUAL, credentialName: other-cred }
    - port: { number: 80, name: grpc, protocol: GRPC }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: default }
spec:
  hosts: [mtls.example.com, san.example.com, opt.example.com, other.example.com]
  gateways: [istio-system/gw]
  http:
    - route: [{ destination: { host: echo } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: grpc, namespace: default }
spec:
  hosts: [grpc-named.example.com, grpc-app.example.com]
  gateways: [istio-system/gw]
  http:
    - match: [{ authority: { prefix: grpc-named } }]
      route: [{ destination: { host: grpc-named } }]
    - route: [{ destination: { host: grpc-app } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ws, namespace: default }
spec:
  hosts: [ws.example.com]
  gateways: [istio-system/gw]
  http:
    - match: [{ uri: { prefix: /chat } }]
      route: [{ destination: { host: ws } }]
`);
    writeConfig(dir, 'ingress.yaml', `
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: { name: meshgate }
spec: { controller: meshgate.io/ingress-controller }
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ws, namespace: default }
spec:
  ingressClassName: meshgate
  rules:
    - host: ws-ingress.example.com
      http:
        paths:
          - { path: /socket, pathType: Prefix, backend: { service: { name: ws, port: { number: 80 } } } }
`);
    gw = await startGateway({ configDir: dir });
  });
  after(async () => {
    await gw?.stop();
    await echo?.close();
    await grpcServer?.close();
    await ws?.close();
    pki?.cleanup();
    removeDir(dir);
  });

  const clientPem = (name: string): Pem => ({ cert: readFileSync(join(pki.dir, `${name}.crt`), 'utf8'), key: readFileSync(join(pki.dir, `${name}.key`), 'utf8') });
  const https = (host: string, client: string | null, extra: string[] = []) =>
    !hasProgram('curl')
      ? nodeClient(gw.httpsPort, host, pki.caA.cert, client === null ? null : clientPem(client), extra.includes('--http1.1'), extra.includes('1.2'))
      : curl([
      '--cacert', join(pki.dir, 'ca-a.crt'),
      '--resolve', `${host}:${gw.httpsPort}:127.0.0.1`,
      ...(client === null ? [] : ['--cert', join(pki.dir, `${client}.crt`), '--key', join(pki.dir, `${client}.key`)]),
      '-o', '/dev/null', '-w', '%{http_code} %{http_version}',
      ...extra,
      `https://${host}:${gw.httpsPort}/`,
    ]);

  const cases = [
    { desc: 'MUTUAL, client certificate from the CA: 200 (over HTTP/2)', host: 'mtls.example.com', client: 'client-a', ok: true },
    { desc: 'MUTUAL, no client certificate: refused', host: 'mtls.example.com', client: null, ok: false },
    { desc: 'MUTUAL, certificate from another CA: refused', host: 'mtls.example.com', client: 'client-b', ok: false },
    { desc: 'MUTUAL, certificate without the clientAuth EKU: refused', host: 'mtls.example.com', client: 'client-no-eku', ok: false },
    { desc: 'MUTUAL with subjectAltNames, the listed SAN: 200', host: 'san.example.com', client: 'client-a', ok: true },
    { desc: 'MUTUAL with subjectAltNames, another SAN from the same CA: refused', host: 'san.example.com', client: 'client-other-san', ok: false },
    { desc: 'OPTIONAL_MUTUAL (CA from <name>-cacert), no certificate: 200', host: 'opt.example.com', client: null, ok: true },
    { desc: 'OPTIONAL_MUTUAL, good certificate: 200', host: 'opt.example.com', client: 'client-a', ok: true },
    { desc: 'OPTIONAL_MUTUAL, certificate from another CA: refused', host: 'opt.example.com', client: 'client-b', ok: false },
    // Two MUTUAL servers on one port with different CAs: each trusts only its own.
    { desc: 'MUTUAL with CA B on the same port: a CA B certificate: 200', host: 'other.example.com', client: 'client-b', ok: true },
    { desc: 'MUTUAL with CA B on the same port: a CA A certificate is refused (no cross-server trust)', host: 'other.example.com', client: 'client-a', ok: false },
  ];
  for (const c of cases) {
    test(c.desc, async () => {
      const r = await https(c.host, c.client);
      if (c.ok) assert.equal(r.stdout, '200 2', `expected 200 over HTTP/2, got "${r.stdout}" (curl ${r.code}: ${r.stderr.trim()})`);
      else assert.ok(r.code !== 0 && !r.stdout.startsWith('200'), `expected the connection refused, got "${r.stdout}" (curl exit ${r.code})`);
    });
  }

  test('MUTUAL over HTTP/1.1 and TLS 1.2 too', async () => {
    const r = await https('mtls.example.com', 'client-a', ['--http1.1', '--tls-max', '1.2']);
    assert.equal(r.stdout, '200 1.1', `got "${r.stdout}" ${r.stderr}`);
    const bad = await https('mtls.example.com', null, ['--http1.1', '--tls-max', '1.2']);
    assert.notEqual(bad.code, 0, 'no certificate over TLS 1.2: refused');
  });

  for (const host of ['grpc-named.example.com', 'grpc-app.example.com']) {
    test(`gRPC on a GRPC Gateway server to a Service declared gRPC (${host === 'grpc-app.example.com' ? 'appProtocol: grpc' : 'port name grpc-api'})`, async () => {
      const client = grpcClient(gw.httpPort, host);
      try {
        const r = await within(10_000, unary(client, { text: 'via-yaml' }), 'grpc call');
        assert.equal(r.error, null, `expected success, got ${r.error?.code} ${r.error?.details}`);
        assert.equal(r.reply?.from, 'grpc-upstream');
        const s = await within(10_000, unary(client, { text: 'fail:7' }), 'failing grpc call');
        assert.equal(s.error?.code, grpc.status.PERMISSION_DENIED);
      } finally {
        client.close();
      }
    });
  }

  for (const c of [
    { via: 'VirtualService', host: 'ws.example.com', path: '/chat/room' },
    { via: 'Ingress', host: 'ws-ingress.example.com', path: '/socket/x' },
  ]) {
    test(`WebSocket on a ${c.via} route`, async () => {
      const r = await within(10_000, open(`ws://127.0.0.1:${gw.httpPort}${c.path}`, { host: c.host }), 'open');
      assert.ok('ws' in r, `expected the upgrade accepted, got ${JSON.stringify(r)}`);
      try {
        assert.equal(r.hello.url, c.path);
        const echoed = new Promise<string>((resolve) => r.ws.once('message', (d) => resolve(String(d))));
        r.ws.send('ping');
        assert.equal(await within(5000, echoed, 'echo'), 'ws-upstream:ping');
      } finally {
        r.ws.close();
      }
    });
  }
});
