/**
 * parseClientHello on real ClientHellos written by node:tls: SNI and the offered ALPN protocols,
 * `need-more` for every proper prefix, `not-tls` for plaintext.
 */
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import tls from 'node:tls';
import { parseClientHello } from './client-hello.js';

/** The first bytes node:tls writes for these options (its ClientHello), captured without a network. */
function clientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        chunks.push(chunk);
        cb();
        resolve(Buffer.concat(chunks));
        // The hello is all we need: end the handshake once the write returned.
        setImmediate(() => t.destroy());
      },
    });
    const t = tls.connect({ socket, rejectUnauthorized: false, ...opts });
    t.on('error', () => {});
  });
}

const cases: { desc: string; opts: tls.ConnectionOptions; want: unknown }[] = [
  { desc: 'SNI and ALPN in the client order', opts: { servername: 'Outbound_.9080_.v1_.reviews.default.svc.cluster.local', ALPNProtocols: ['istio-peer-exchange', 'istio'] }, want: { kind: 'sni', serverName: 'outbound_.9080_.v1_.reviews.default.svc.cluster.local', alpn: ['istio-peer-exchange', 'istio'] } },
  { desc: 'SNI without ALPN', opts: { servername: 'a.example.com' }, want: { kind: 'sni', serverName: 'a.example.com', alpn: [] } },
  { desc: 'ALPN without SNI', opts: { servername: '', ALPNProtocols: ['h2', 'http/1.1'] }, want: { kind: 'no-sni', alpn: ['h2', 'http/1.1'] } },
];

for (const c of cases) {
  test(`parseClientHello: ${c.desc}`, async () => {
    const hello = await clientHello(c.opts);
    assert.deepEqual(parseClientHello(hello), c.want);
    // Every proper prefix is incomplete, never misread.
    for (const n of [0, 1, 5, 6, Math.floor(hello.length / 2), hello.length - 1]) assert.deepEqual(parseClientHello(hello.subarray(0, n)), { kind: 'need-more' }, `prefix of ${n} bytes`);
  });
}

test('parseClientHello: plaintext is not TLS', () => {
  assert.deepEqual(parseClientHello(Buffer.from('GET / HTTP/1.1\r\n\r\n')), { kind: 'not-tls' });
});
