/**
 * HTTPS listeners end to end: certificate and filter chain chosen by SNI, certificate replacement
 * on swap, TLS version range and cipher policy, handshakes that match no chain.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { startEchoServer, type EchoServer } from '../../src/demo/echo-server.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { chain, cluster, forward, httpsListener, named, route, snapshot, tlsContext, vhost } from '../support/ir-builders.js';
import { httpsRequest } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { makeCerts, type TestCert } from '../support/tls-certs.js';

/** Resolves true when a TLS handshake with these client settings succeeds. */
function handshake(port: number, opts: tls.ConnectionOptions): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false, ...opts });
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 5000);
    s.on('secureConnect', () => {
      clearTimeout(timer);
      s.end();
      resolve(true);
    });
    s.on('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
  });
}

describe('runtime HTTPS end to end', { timeout: 60_000 }, () => {
  let certs: TestCert[];
  let echo: EchoServer;
  let gw: RuntimeHarness;
  let port: number;

  function ir(certA: TestCert): IRSnapshot {
    const cert = (c: TestCert, names: string[]) => ({ secret: `default/${c.cn}`, serverNames: names, certChain: c.certChain, privateKey: c.privateKey });
    return snapshot(
      [
        httpsListener(0, [
          chain('a', [vhost('a', ['a.example.com'], [route('a', forward(['echo']))])], ['a.example.com'], tlsContext([cert(certA, ['a.example.com'])])),
          chain('b', [vhost('b', ['*'], [named('chain-b')])], ['b.example.com', '*.b.example.com'], tlsContext([cert(certs[1], ['b.example.com'])])),
          chain('strict', [vhost('s', ['*'], [named('chain-strict')])], ['strict.example.com'], tlsContext([cert(certs[1], [])], { minProtocolVersion: 'TLSv1.3' })),
        ]),
      ],
      [cluster('echo', [{ port: echo.port }])],
    );
  }

  before(async () => {
    certs = makeCerts(['a.example.com', 'b.example.com', 'a-renewed.example.com']);
    echo = await startEchoServer({ name: 'echo' });
    gw = await startRuntime(ir(certs[0]));
    port = gw.port();
  });
  after(async () => {
    await gw?.close(500);
    await echo?.close();
  });

  test('the certificate and chain are chosen by SNI', async () => {
    const a = await httpsRequest(port, { servername: 'a.example.com' });
    assert.equal(a.peerCN, 'a.example.com');
    assert.equal(a.status, 200);
    assert.equal(a.json?.headers['x-forwarded-proto'], 'https');
    const b = await httpsRequest(port, { servername: 'b.example.com' });
    assert.equal(b.peerCN, 'b.example.com');
    assert.equal(b.body, 'chain-b');
    const wild = await httpsRequest(port, { servername: 'x.b.example.com' });
    assert.equal(wild.peerCN, 'b.example.com');
    assert.equal(wild.body, 'chain-b');
  });

  test('the chain comes from SNI, not from Host', async () => {
    const r = await httpsRequest(port, { servername: 'b.example.com', host: 'a.example.com' });
    assert.equal(r.body, 'chain-b');
  });

  test('a server name no chain accepts, or no SNI without a default chain: handshake refused', async () => {
    assert.equal(await handshake(port, { servername: 'other.org' }), false);
    assert.equal(await handshake(port, {}), false);
  });

  test('TLS 1.2 is accepted by default, only with ECDHE + AEAD ciphers', async () => {
    assert.equal(await handshake(port, { servername: 'a.example.com', maxVersion: 'TLSv1.2' }), true);
    assert.equal(await handshake(port, { servername: 'a.example.com', maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256' }), false, 'static RSA refused');
    assert.equal(await handshake(port, { servername: 'a.example.com', maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA' }), false, 'CBC refused');
    const r = await httpsRequest(port, { servername: 'a.example.com' });
    assert.equal(r.protocol, 'TLSv1.3');
  });

  test("a chain's minimum version is enforced", async () => {
    const ok = await httpsRequest(port, { servername: 'strict.example.com' });
    assert.equal(ok.body, 'chain-strict');
    assert.equal(await handshake(port, { servername: 'strict.example.com', maxVersion: 'TLSv1.2' }), false);
  });

  test('a replaced certificate is served to new connections after apply', async () => {
    const result = await gw.apply(ir(certs[2]));
    assert.deepEqual(result.errors, []);
    assert.equal(gw.port(), port, 'the listener survived the swap');
    const r = await httpsRequest(port, { servername: 'a.example.com' });
    assert.equal(r.peerCN, 'a-renewed.example.com');
    assert.equal(r.status, 200);
  });
});


