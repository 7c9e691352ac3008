/**
 * Gateway API beyond HTTP/1.1 through the real `meshgate run` process: GRPCRoute over h2c with
 * prior knowledge on a plain HTTP listener (@grpc/grpc-js client and server), TLSRoute on a TLS
 * Passthrough listener (SNI routing, the backend's own certificate), TLSRoute on a TLS Terminate
 * listener (the gateway's certificate, plaintext to the backend) and TCPRoute (bytes and
 * half-close relayed; the older of two routes gets the connections).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { freePort, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { grpc, grpcClient, grpcTlsClient, startGrpcEcho, unary } from '../support/grpc-echo.js';
import { within } from '../support/http-client.js';
import { startSummingBackend } from '../support/tcp-backends.js';
import { makeCerts } from '../support/tls-certs.js';

async function startTlsBackend(name: string, cert: { certChain: string; privateKey: string }): Promise<{ port: number; close(): Promise<void> }> {
  const server = tls.createServer({ cert: cert.certChain, key: cert.privateKey }, (s) => {
    s.write(`hello from ${name}\n`);
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

function tlsHello(port: number, servername: string): Promise<{ cn: string; line: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false });
    s.setEncoding('utf8');
    let data = '';
    s.on('data', (d: string) => {
      data += d;
      if (data.includes('\n')) {
        const cn = String(s.getPeerCertificate().subject?.CN ?? '');
        s.destroy();
        resolve({ cn, line: data.split('\n')[0] });
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error('closed before a line arrived')));
  });
}

/** Send `payload`, half-close, and read everything until the server ends. */
function tcpExchange(port: number, payload: Buffer, secure?: { servername: string }): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = secure ? tls.connect({ host: '127.0.0.1', port, servername: secure.servername, rejectUnauthorized: false, allowHalfOpen: true } as tls.ConnectionOptions) : net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    let out = '';
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('end', () => {
      s.end();
      resolve(out);
    });
    s.on('error', reject);
    s.on(secure ? 'secureConnect' : 'connect', () => s.end(payload));
  });
}

describe('Gateway API: GRPCRoute (h2c), TLSRoute and TCPRoute through meshgate run', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let tcpPort = 0;
  let terminatePort = 0;
  let grpcsPort = 0;
  let grpcsCa = '';
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    const g1 = await startGrpcEcho('g1');
    const g2 = await startGrpcEcho('g2');
    const [ca, cb, cdb, cgrpc] = makeCerts(['a.example.com', 'b.example.com', 'db.example.com', 'grpc.example.com']);
    grpcsCa = cgrpc.certChain;
    grpcsPort = await freePort();
    const a = await startTlsBackend('a', ca);
    const b = await startTlsBackend('b', cb);
    const sum = await startSummingBackend('sum');
    const other = await startSummingBackend('other');
    closers.push(g1.close, g2.close, a.close, b.close, sum.close, other.close);
    tcpPort = await freePort();
    terminatePort = await freePort();
    const svc = (name: string, port: number, servicePort: number) => serviceYaml(name, [port], { servicePort, portName: 'tcp' });
    writeConfig(dir, 'backends.yaml', [svc('g1', g1.port, 50051), svc('g2', g2.port, 50051), svc('tls-a', a.port, 443), svc('tls-b', b.port, 443), svc('sum', sum.port, 9000), svc('other', other.port, 9000)].join('---\n'));
    writeConfig(dir, 'secret.yaml', tlsSecret('db-cert', 'default', { cert: cdb.certChain, key: cdb.privateKey }) + '---\n' + tlsSecret('grpc-cert', 'default', { cert: cgrpc.certChain, key: cgrpc.privateKey }));
    writeConfig(dir, 'gateway.yaml', `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: meshgate
  listeners:
    - { name: grpc, port: 80, protocol: HTTP, hostname: grpc.example.com }
    - { name: grpcs, port: ${grpcsPort}, protocol: HTTPS, hostname: grpc.example.com, tls: { certificateRefs: [{ name: grpc-cert }] } }
    - { name: pass, port: 443, protocol: TLS, hostname: "*.example.com", tls: { mode: Passthrough } }
    - { name: term, port: ${terminatePort}, protocol: TLS, hostname: db.example.com, tls: { mode: Terminate, certificateRefs: [{ name: db-cert }] } }
    - { name: tcp, port: ${tcpPort}, protocol: TCP }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: echo, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: grpc }, { name: gw, sectionName: grpcs }]
  rules:
    - matches: [{ method: { service: meshgate.test.Echo, method: Unary }, headers: [{ name: x-pick, value: g2 }] }]
      filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: x-from-gateway, value: "yes" }] } }]
      backendRefs: [{ name: g2, port: 50051 }]
    - matches: [{ method: { service: meshgate.test.Echo, method: Unary }, headers: [{ name: x-split, value: "yes" }] }]
      backendRefs: [{ name: g1, port: 50051, weight: 70 }, { name: g2, port: 50051, weight: 30 }]
    - matches: [{ method: { service: meshgate.test.Echo, method: Unary } }]
      backendRefs: [{ name: g1, port: 50051, weight: 1 }, { name: missing, port: 50051, weight: 1 }]
    - matches: [{ method: { service: meshgate.test.Echo } }]
      backendRefs: [{ name: g1, port: 50051 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: { name: a, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: pass }]
  hostnames: [a.example.com]
  rules: [{ backendRefs: [{ name: tls-a, port: 443 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: { name: b, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: pass }]
  hostnames: ["*.example.com"]
  rules: [{ backendRefs: [{ name: tls-b, port: 443 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TLSRoute
metadata: { name: db, namespace: default }
spec:
  parentRefs: [{ name: gw, sectionName: term }]
  hostnames: [db.example.com]
  rules: [{ backendRefs: [{ name: sum, port: 9000 }] }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: { name: first, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z" }
spec:
  parentRefs: [{ name: gw, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: sum, port: 9000 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: second, namespace: default, creationTimestamp: "2026-01-02T00:00:00Z" }
spec:
  parentRefs: [{ name: gw, sectionName: tcp }]
  rules: [{ backendRefs: [{ name: other, port: 9000 }] }]
`);
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const c of closers) await c();
    removeDir(dir);
  });

  test('GRPCRoute over h2c prior knowledge: method and header matches, request header filter', async () => {
    const client = grpcClient(gw.httpPort, 'grpc.example.com');
    try {
      const md = new grpc.Metadata();
      md.set('x-pick', 'g2');
      const picked = await unary(client, { text: 'hi' }, md);
      assert.equal(picked.error, null, picked.error?.message);
      assert.equal(picked.reply?.from, 'g2');
      // The echo server copies request metadata x-* into its response headers.
      assert.equal(picked.headers?.get('x-from-gateway')[0], 'yes');
      const stream = client.ServerStream({ text: 's', count: 2 });
      const got: string[] = [];
      await within(10_000, new Promise<void>((resolve, reject) => {
        stream.on('data', (m: { from: string }) => got.push(m.from));
        stream.on('end', () => resolve());
        stream.on('error', reject);
      }), 'server stream');
      assert.deepEqual(got, ['g1', 'g1'], 'service-only match serves the other methods');
    } finally {
      client.close();
    }
  });

  test('GRPCRoute: an invalid backend gets UNAVAILABLE for its share; an unknown host is UNIMPLEMENTED', async () => {
    const client = grpcClient(gw.httpPort, 'grpc.example.com');
    try {
      const codes: Record<string, number> = {};
      for (let i = 0; i < 200; i++) {
        const r = await unary(client, { text: 'x' });
        const k = r.error ? `code ${r.error.code}` : (r.reply?.from ?? '?');
        codes[k] = (codes[k] ?? 0) + 1;
      }
      assert.deepEqual(Object.keys(codes).sort(), [`code ${grpc.status.UNAVAILABLE}`, 'g1'].sort(), JSON.stringify(codes));
      assert.ok(Math.abs((codes.g1 ?? 0) / 200 - 0.5) <= 0.12, JSON.stringify(codes));
    } finally {
      client.close();
    }
    const stranger = grpcClient(gw.httpPort, 'other.example.com');
    try {
      const r = await unary(stranger, { text: 'x' });
      assert.equal(r.error?.code, grpc.status.UNIMPLEMENTED);
    } finally {
      stranger.close();
    }
  });

  test('GRPCRoute weights: 70/30 within 4 points over 1500 calls', async () => {
    const client = grpcClient(gw.httpPort, 'grpc.example.com');
    try {
      const counts: Record<string, number> = {};
      const md = new grpc.Metadata();
      md.set('x-split', 'yes');
      for (let i = 0; i < 1500; i++) {
        const r = await unary(client, { text: 'w' }, md);
        const k = r.error ? `code ${r.error.code}` : (r.reply?.from ?? '?');
        counts[k] = (counts[k] ?? 0) + 1;
      }
      assert.equal((counts.g1 ?? 0) + (counts.g2 ?? 0), 1500, JSON.stringify(counts));
      assert.ok(Math.abs((counts.g1 ?? 0) / 1500 - 0.7) <= 0.04, JSON.stringify(counts));
    } finally {
      client.close();
    }
  });

  test('GRPCRoute on an HTTPS listener: TLS with HTTP/2 by ALPN', async () => {
    const client = grpcTlsClient(grpcsPort, 'grpc.example.com', grpcsCa);
    try {
      const md = new grpc.Metadata();
      md.set('x-pick', 'g2');
      const r = await unary(client, { text: 'secure' }, md);
      assert.equal(r.error, null, r.error?.message);
      assert.equal(r.reply?.from, 'g2');
    } finally {
      client.close();
    }
  });

  test('TLSRoute passthrough: SNI picks the backend (exact before wildcard), which terminates TLS itself', async () => {
    assert.deepEqual(await within(10_000, tlsHello(gw.httpsPort, 'a.example.com'), 'sni a'), { cn: 'a.example.com', line: 'hello from a' });
    assert.deepEqual(await within(10_000, tlsHello(gw.httpsPort, 'z.example.com'), 'sni z'), { cn: 'b.example.com', line: 'hello from b' });
    await assert.rejects(within(10_000, tlsHello(gw.httpsPort, 'a.example.org'), 'sni outside the listener'));
  });

  test('TLSRoute terminate: the gateway shows its certificate and relays plaintext', async () => {
    const payload = randomBytes(64 * 1024);
    const answer = await within(10_000, tcpExchange(terminatePort, payload, { servername: 'db.example.com' }), 'terminated exchange');
    assert.equal(answer, `sum bytes=${payload.length} sha=${createHash('sha256').update(payload).digest('hex')}`);
  });

  test('TCPRoute: bytes and half-close relayed to the older of two routes', async () => {
    const payload = randomBytes(1024 * 1024);
    const answer = await within(10_000, tcpExchange(tcpPort, payload), 'tcp exchange');
    assert.equal(answer, `sum bytes=${payload.length} sha=${createHash('sha256').update(payload).digest('hex')}`);
  });
});
