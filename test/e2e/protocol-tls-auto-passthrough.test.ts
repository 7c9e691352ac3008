/**
 * AUTO_PASSTHROUGH (Istio multi-network east-west gateway) through the real `meshgate run` process:
 * with no VirtualService, a ClientHello offering an Istio mTLS ALPN (`istio`) whose SNI is `outbound_.<port>_.<subset>_.<fqdn>` reaches
 * that service port (and DestinationRule subset), and the TLS bytes are forwarded untouched (the
 * client sees the backend's own certificate); a host the server's hosts do not admit (another
 * namespace), an unknown port or subset, an SNI of another form, and a client without an Istio ALPN
 * are closed without a byte.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { within } from '../support/http-client.js';
import { makeCerts } from '../support/tls-certs.js';

/** A TLS server that says which one it is. */
async function startTlsBackend(name: string, cert: { certChain: string; privateKey: string }): Promise<{ port: number; close(): Promise<void> }> {
  const server = tls.createServer({ cert: cert.certChain, key: cert.privateKey }, (s) => {
    s.write(`hello from ${name}\n`);
    s.on('error', () => {});
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

/** Resolves with the certificate CN the peer showed and its first line, or with how it failed and the bytes received. */
function tlsHello(port: number, servername: string, ALPNProtocols: string[] = ['istio']): Promise<{ cn: string; line: string } | { failed: string; bytes: number }> {
  return new Promise((resolve) => {
    const raw = net.connect(port, '127.0.0.1');
    let bytes = 0;
    raw.on('data', (d: Buffer) => (bytes += d.length));
    raw.on('error', () => {});
    const s = tls.connect({ socket: raw, servername, rejectUnauthorized: false, ...(ALPNProtocols.length > 0 ? { ALPNProtocols } : {}) });
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
    s.on('error', (e: Error & { code?: string }) => resolve({ failed: e.code ?? e.message, bytes }));
    s.on('close', () => resolve({ failed: 'closed', bytes }));
  });
}

const TLS_MODE = 'security.istio.io/tlsMode';

describe('AUTO_PASSTHROUGH east-west gateway through meshgate run', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    const [cert, other] = makeCerts(['reviews.default.svc.cluster.local', 'hidden.private.svc.cluster.local']);
    const v1 = await startTlsBackend('v1', cert);
    const v2 = await startTlsBackend('v2', cert);
    const hidden = await startTlsBackend('hidden', other);
    const plain = await startTlsBackend('plain', other);
    closers.push(v1.close, v2.close, hidden.close, plain.close);
    writeConfig(dir, 'all.yaml', [
      // Sidecar'd workloads carry Istio's tlsMode label; only those are reachable through AUTO_PASSTHROUGH.
      serviceYaml('reviews', [v1.port, v2.port], { servicePort: 9080, portName: 'tls', podLabels: [{ app: 'reviews', version: 'v1', [TLS_MODE]: 'istio' }, { app: 'reviews', version: 'v2', [TLS_MODE]: 'istio' }] }),
      serviceYaml('plain', [plain.port], { servicePort: 9080, portName: 'tls', podLabels: [{ app: 'plain' }] }),
      serviceYaml('hidden', [hidden.port], { namespace: 'private', servicePort: 9080, portName: 'tls' }),
    ].join('---\n') + `---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  subsets:
    - { name: v1, labels: { version: v1 } }
    - { name: v2, labels: { version: v2 } }
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: cross-network, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 443, name: tls, protocol: TLS }
      hosts: ["default/*.local"]
      tls: { mode: AUTO_PASSTHROUGH }
`);
    gw = await startGateway({ configDir: dir, waitReady: true });
  });
  after(async () => {
    await gw?.stop();
    for (const c of closers) await c();
    removeDir(dir);
  });

  test('SNI outbound_.9080_.v2_.<fqdn>: always the v2 subset, TLS untouched (the backend certificate is seen)', async () => {
    for (let i = 0; i < 4; i++) {
      const r = await within(10_000, tlsHello(gw.httpsPort, 'outbound_.9080_.v2_.reviews.default.svc.cluster.local'), 'v2');
      assert.deepEqual(r, { cn: 'reviews.default.svc.cluster.local', line: 'hello from v2' });
    }
    const r1 = await within(10_000, tlsHello(gw.httpsPort, 'outbound_.9080_.v1_.reviews.default.svc.cluster.local'), 'v1');
    assert.deepEqual(r1, { cn: 'reviews.default.svc.cluster.local', line: 'hello from v1' });
  });

  test('SNI outbound_.9080_._.<fqdn> (empty subset): the whole service, both endpoints', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const r = await within(10_000, tlsHello(gw.httpsPort, 'outbound_.9080_._.reviews.default.svc.cluster.local'), 'any');
      assert.ok('line' in r, `expected an answer, got ${JSON.stringify(r)}`);
      seen.add(r.line);
    }
    assert.deepEqual([...seen].sort(), ['hello from v1', 'hello from v2']);
  });

  test('unknown SNIs are closed without a byte: another namespace, port, subset, not the outbound_ form, or a service without sidecars', async () => {
    for (const sni of [
      'outbound_.9080_._.hidden.private.svc.cluster.local',
      // Admitted and known, but no endpoint terminates Istio mTLS (no sidecar): never reachable.
      'outbound_.9080_._.plain.default.svc.cluster.local',
      'outbound_.9999_._.reviews.default.svc.cluster.local',
      'outbound_.9080_.v3_.reviews.default.svc.cluster.local',
      'reviews.default.svc.cluster.local',
    ]) {
      const r = await within(10_000, tlsHello(gw.httpsPort, sni), sni);
      assert.ok('failed' in r, `${sni}: expected the connection closed, got ${JSON.stringify(r)}`);
      assert.equal(r.bytes, 0, `${sni}: the gateway writes nothing back`);
    }
  });

  test('a client that offers no Istio mTLS ALPN is closed without a byte (Istio matches AUTO_PASSTHROUGH chains on them)', async () => {
    for (const alpn of [[], ['h2', 'http/1.1']]) {
      const r = await within(10_000, tlsHello(gw.httpsPort, 'outbound_.9080_.v1_.reviews.default.svc.cluster.local', alpn), `alpn ${alpn.join(',')}`);
      assert.ok('failed' in r, `ALPN [${alpn.join(', ')}]: expected the connection closed, got ${JSON.stringify(r)}`);
      assert.equal(r.bytes, 0);
    }
    const ok = await within(10_000, tlsHello(gw.httpsPort, 'outbound_.9080_.v1_.reviews.default.svc.cluster.local', ['h2', 'istio-peer-exchange']), 'peer exchange');
    assert.deepEqual(ok, { cn: 'reviews.default.svc.cluster.local', line: 'hello from v1' });
  });
});
