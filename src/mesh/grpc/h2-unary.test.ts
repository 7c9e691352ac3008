/**
 * The gRPC unary client on node:http2 against a plain node:http2 TLS server playing the gRPC
 * server's side of the wire (the success path against meshgate's real CA server is in
 * test/e2e/mesh-ca.test.ts): framing, metadata, the status in trailers and in a trailers-only
 * response, the deadline, the server name check, and the protobuf helpers.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { makeCert } from '../../../test/helpers/gateway.js';
import { GrpcCallError, GrpcH2Client, pbBytes, pbFields, pbVarint } from './h2-unary.js';
import { decodeCertificateResponse, encodeCertificateRequest } from './istioca-wire.js';

const NAME = 'istiod.istio-system.svc';
const pair = makeCert('', NAME);
let server: http2.Http2SecureServer;
let port = 0;
const seen: { path: string; headers: http2.IncomingHttpHeaders; body: Buffer }[] = [];

before(async () => {
  server = http2.createSecureServer({ cert: pair.cert, key: pair.key, allowHTTP1: false });
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      const path = String(headers[':path']);
      seen.push({ path, headers, body });
      if (path === '/echo/Ok') {
        const msg = Buffer.concat([pbBytes(1, 'a'), pbBytes(1, 'bé'), pbVarint(2, 7)]);
        const head = Buffer.alloc(5);
        head.writeUInt32BE(msg.length, 1);
        stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
        stream.end(Buffer.concat([head, msg]));
      } else if (path === '/echo/Denied') {
        // Trailers-only, as servers answer an error before any message.
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': encodeURIComponent('authenticate failure: no token') }, { endStream: true });
      } else if (path === '/echo/Slow') {
        setTimeout(() => stream.destroyed || stream.close(), 5000).unref();
      } else {
        stream.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '12' }, { endStream: true });
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(() => new Promise<void>((r) => server.close(() => r())));

test('unary: one length-prefixed message out with metadata, grpc-timeout and te: trailers; the answer decoded', async () => {
  const c = new GrpcH2Client({ address: `127.0.0.1:${port}`, rootCertPem: pair.cert, servername: NAME });
  try {
    const res = await c.unary('/echo/Ok', pbBytes(1, 'hello'), { authorization: 'Bearer t0ken' }, 5000);
    const fields = pbFields(res);
    assert.deepEqual(fields.filter((f) => f.field === 1).map((f) => (f.value as Buffer).toString()), ['a', 'bé']);
    assert.equal(fields.find((f) => f.field === 2)?.value, 7n);
    const req = seen.find((s) => s.path === '/echo/Ok')!;
    assert.equal(req.headers['content-type'], 'application/grpc');
    assert.equal(req.headers.te, 'trailers');
    assert.equal(req.headers.authorization, 'Bearer t0ken');
    assert.equal(req.headers[':authority'], NAME);
    assert.match(String(req.headers['grpc-timeout']), /^\d+m$/);
    assert.deepEqual([...req.body.subarray(0, 5)], [0, 0, 0, 0, 7]);
    assert.equal(pbFields(req.body.subarray(5))[0].value.toString(), 'hello');
    // The session is reused for the next call.
    await c.unary('/echo/Ok', Buffer.alloc(0), {}, 5000);
  } finally {
    c.close();
  }
});

test('unary: a trailers-only error keeps its code and decoded message; an unknown method is UNIMPLEMENTED', async () => {
  const c = new GrpcH2Client({ address: `127.0.0.1:${port}`, rootCertPem: pair.cert, servername: NAME });
  try {
    await assert.rejects(c.unary('/echo/Denied', Buffer.alloc(0), {}, 5000), (e: GrpcCallError) => e.code === 16 && e.details === 'authenticate failure: no token' && e.message === '16 UNAUTHENTICATED: authenticate failure: no token');
    await assert.rejects(c.unary('/echo/Nope', Buffer.alloc(0), {}, 5000), (e: GrpcCallError) => e.code === 12);
  } finally {
    c.close();
  }
});

test('unary: the deadline gives DEADLINE_EXCEEDED', async () => {
  const c = new GrpcH2Client({ address: `127.0.0.1:${port}`, rootCertPem: pair.cert, servername: NAME });
  try {
    const t0 = Date.now();
    await assert.rejects(c.unary('/echo/Slow', Buffer.alloc(0), {}, 300), (e: GrpcCallError) => e.code === 4);
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    c.close();
  }
});

test('unary: a server certificate without the expected name, or from another root, is UNAVAILABLE; so is nothing listening', async () => {
  const wrongName = new GrpcH2Client({ address: `127.0.0.1:${port}`, rootCertPem: pair.cert, servername: 'other.istio-system.svc' });
  await assert.rejects(wrongName.unary('/echo/Ok', Buffer.alloc(0), {}, 5000), (e: GrpcCallError) => e.code === 14);
  wrongName.close();
  const otherRoot = new GrpcH2Client({ address: `127.0.0.1:${port}`, rootCertPem: makeCert('', NAME).cert, servername: NAME });
  await assert.rejects(otherRoot.unary('/echo/Ok', Buffer.alloc(0), {}, 5000), (e: GrpcCallError) => e.code === 14);
  otherRoot.close();
  const closed = new GrpcH2Client({ address: '127.0.0.1:9', rootCertPem: pair.cert, servername: NAME });
  await assert.rejects(closed.unary('/echo/Ok', Buffer.alloc(0), {}, 5000), (e: GrpcCallError) => e.code === 14);
  closed.close();
});

test('protobuf helpers: varints up to 64 bits, length-delimited fields, unknown fields skipped', () => {
  for (const v of [0n, 1n, 127n, 128n, 300n, 2n ** 32n, 2n ** 63n - 1n]) {
    assert.equal(pbFields(pbVarint(3, v))[0].value, v, String(v));
  }
  const req = encodeCertificateRequest('CSR', 86400);
  assert.deepEqual(pbFields(req).map((f) => [f.field, f.wire, typeof f.value === 'bigint' ? f.value : f.value.toString()]), [[1, 2, 'CSR'], [3, 0, 86400n]]);
  assert.deepEqual(pbFields(encodeCertificateRequest('CSR', 0)).map((f) => f.field), [1], 'a zero validity is the proto3 default: not sent');
  const fixed64 = Buffer.from([0x09, 1, 2, 3, 4, 5, 6, 7, 8]);
  const res = Buffer.concat([pbBytes(1, 'leaf'), fixed64, pbVarint(5, 1), pbBytes(1, 'root')]);
  assert.deepEqual(decodeCertificateResponse(res).cert_chain, ['leaf', 'root']);
  assert.throws(() => pbFields(Buffer.from([0x0a, 5, 1])), /truncated/);
});

test('a connection whose handshake never completes is not reused after the deadline: the next call dials again', async () => {
  const net = await import('node:net');
  const accepted: import('node:net').Socket[] = [];
  const silent = net.createServer((s) => accepted.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const client = new GrpcH2Client({ address: `127.0.0.1:${(silent.address() as AddressInfo).port}`, rootCertPem: pair.cert, servername: NAME });
  try {
    for (let i = 0; i < 2; i++) {
      await assert.rejects(client.unary('/echo/Ok', Buffer.alloc(0), {}, 150), (e: unknown) => e instanceof GrpcCallError && e.code === 4);
    }
    const t0 = Date.now();
    while (accepted.length < 2 && Date.now() - t0 < 2000) await new Promise((r) => setTimeout(r, 10));
    assert.equal(accepted.length, 2);
  } finally {
    client.close();
    for (const s of accepted) s.destroy();
    await new Promise((r) => silent.close(r));
  }
});

test('metadata node:http2 refuses fails the call at once, and nothing fires after it', async () => {
  const client = new GrpcH2Client({ address: `127.0.0.1:${port}`, rootCertPem: pair.cert, servername: NAME });
  try {
    await assert.rejects(client.unary('/echo/Ok', Buffer.alloc(0), { ':bogus': '1' }, 100), (e: unknown) => e instanceof GrpcCallError && e.code === 13);
    // Past the deadline: the call's timer must not run (it would touch the stream that was never made).
    await new Promise((r) => setTimeout(r, 250));
  } finally {
    client.close();
  }
});
