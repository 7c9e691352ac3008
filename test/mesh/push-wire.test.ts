/**
 * The sidecar's config push without grpc-js: the hand-written wire encoding (mesh/push/wire.ts)
 * against the control plane's protobufjs encoding of the same messages (proto.ts's service
 * definition, the functions its grpc-js server runs), and the node:http2 stream
 * (mesh/grpc/h2-stream.ts) under ConfigPushClient against a plain node:http2 TLS server playing a
 * misbehaving control plane: the server closing the connection, a grpc-status error, malformed
 * frames and messages, an oversized view, a non-gRPC answer, an unanswered keepalive ping, a server
 * that never completes the handshake. The success path against the real control plane is
 * test/e2e/mesh-push.test.ts.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { makeCert, tempDir, waitFor } from '../helpers/gateway.js';
import { pbBytes, pbVarint } from '../../src/mesh/grpc/h2-unary.js';
import { GrpcH2Stream, type GrpcStatus } from '../../src/mesh/grpc/h2-stream.js';
import { ConfigPushClient } from '../../src/mesh/push/client.js';
import { configPushService, type PushRequest, type PushResponse } from '../../src/mesh/push/proto.js';
import { CONFIG_PUSH_STREAM_PATH, decodePushResponse, encodePushRequest } from '../../src/mesh/push/wire.js';
import { Logger } from '../../src/lib/log.js';
import { meshServerView } from './sidecar-programs.js';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const method = configPushService().Stream;
/** protobufjs, as the control plane decodes what the sidecar sends. */
const pjDecodeRequest = (b: Buffer) => method.requestDeserialize(b) as PushRequest;
/** protobufjs, as the control plane encodes what it sends. */
const pjEncodeResponse = (r: PushResponse) => method.responseSerialize(r) as Buffer;

const meta = (over: Partial<Record<string, unknown>> = {}) => ({ namespace: 'shop', service_account: 'cart', pod_name: 'cart-7d9f-x2', pod_ips: ['10.1.0.9', 'fd00::9'], trust_domain: 'cluster.local', ...over });

test('wire: every PushRequest the sidecar sends decodes with protobufjs to the same message', () => {
  const cases: { req: PushRequest; want: PushRequest }[] = [
    { req: { hello: { proxy: meta(), meshgate_version: '1.4.0' } as PushRequest['hello'] }, want: { kind: 'hello', hello: { proxy: meta(), meshgate_version: '1.4.0' } as PushRequest['hello'] } },
    // Empty strings and an empty list are proto3 defaults: not on the wire, read back as defaults.
    { req: { hello: { proxy: meta({ pod_name: '', pod_ips: [], trust_domain: '' }), meshgate_version: '' } as PushRequest['hello'] }, want: { kind: 'hello', hello: { proxy: meta({ pod_name: '', pod_ips: [], trust_domain: '' }), meshgate_version: '' } as PushRequest['hello'] } },
    { req: { ack: { version: '2026-12-07T14:00:00Z/42', nonce: '17' } }, want: { kind: 'ack', ack: { version: '2026-12-07T14:00:00Z/42', nonce: '17' } } },
    // An ACK of the empty version: the oneof member is still there.
    { req: { ack: { version: '', nonce: '' } }, want: { kind: 'ack', ack: { version: '', nonce: '' } } },
    { req: { nack: { version: 'v3', nonce: '9', error_detail: 'payments: port 8443 — réservé ✗ 🚫' } }, want: { kind: 'nack', nack: { version: 'v3', nonce: '9', error_detail: 'payments: port 8443 — réservé ✗ 🚫' } } },
  ];
  for (const c of cases) {
    const got = pjDecodeRequest(encodePushRequest(c.req));
    assert.equal(got.kind, c.want.kind);
    const k = c.want.kind!;
    assert.deepEqual({ ...(got[k] as object) }, { ...(c.want[k] as object) }, JSON.stringify(c.req));
    if (k === 'hello') assert.deepEqual({ ...got.hello!.proxy }, { ...c.want.hello!.proxy });
    for (const other of ['hello', 'ack', 'nack'] as const) if (other !== k) assert.ok(got[other] === null || got[other] === undefined, `${other} is not set`);
  }
  assert.throws(() => encodePushRequest({}), /one of hello, ack, nack/);
  // Long fields: lengths past one varint byte.
  const long = 'x'.repeat(70_000);
  assert.equal(pjDecodeRequest(encodePushRequest({ nack: { version: 'v', nonce: '1', error_detail: long } })).nack!.error_detail, long);
});

test('wire: random messages round-trip between the hand-written encoding and protobufjs', () => {
  const s = fc.string({ unit: 'binary', maxLength: 40 });
  fc.assert(
    fc.property(s, s, s, s, fc.array(s, { maxLength: 4 }), s, s, (ns, sa, pod, td, ips, version, nonce) => {
      const hello = pjDecodeRequest(encodePushRequest({ hello: { proxy: { namespace: ns, service_account: sa, pod_name: pod, pod_ips: ips, trust_domain: td }, meshgate_version: version } }));
      assert.deepEqual({ ...hello.hello!.proxy }, { namespace: ns, service_account: sa, pod_name: pod, pod_ips: ips, trust_domain: td });
      assert.equal(hello.hello!.meshgate_version, version);
      const nack = pjDecodeRequest(encodePushRequest({ nack: { version, nonce, error_detail: ns } }));
      assert.deepEqual({ ...nack.nack }, { version, nonce, error_detail: ns });
    }),
    { numRuns: 300 },
  );
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 60 }), fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 3000 }), (version, nonce, view) => {
      const got = decodePushResponse(pjEncodeResponse({ version, nonce, view: Buffer.from(view) }));
      assert.equal(got.version, version);
      assert.equal(got.nonce, nonce);
      assert.deepEqual([...got.view], [...view]);
    }),
    { numRuns: 300 },
  );
});

test('wire: PushResponse decoding: a 5 MiB view, defaults, unknown fields skipped, wrong wire types and truncation refused', () => {
  const big = Buffer.alloc(5 * 1024 * 1024, 0x7b);
  const got = decodePushResponse(pjEncodeResponse({ version: 'v9', nonce: '3', view: big }));
  assert.equal(got.version, 'v9');
  assert.ok(got.view.equals(big));
  assert.deepEqual(decodePushResponse(Buffer.alloc(0)), { version: '', nonce: '', view: Buffer.alloc(0) });
  // A newer control plane's fields (varint 4, bytes 15, fixed64 6, fixed32 7) are skipped, as protobuf does.
  const fixed64 = Buffer.from([(6 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
  const fixed32 = Buffer.from([(7 << 3) | 5, 1, 2, 3, 4]);
  const withUnknown = Buffer.concat([pbVarint(4, 12345), pbBytes(1, 'v1'), fixed64, pbBytes(15, 'future'), fixed32, pbBytes(2, 'n'), pbBytes(3, '{}')]);
  assert.deepEqual({ ...decodePushResponse(withUnknown), view: decodePushResponse(withUnknown).view.toString() }, { version: 'v1', nonce: 'n', view: '{}' });
  // And protobufjs reads the same bytes the same way.
  const pj = method.responseDeserialize(withUnknown) as PushResponse;
  assert.deepEqual([pj.version, pj.nonce, Buffer.from(pj.view).toString()], ['v1', 'n', '{}']);
  assert.throws(() => decodePushResponse(pbVarint(1, 5)), /field 1 has wire type 0/);
  assert.throws(() => decodePushResponse(Buffer.from([0x1a, 10, 1, 2])), /truncated/);
  assert.throws(() => decodePushResponse(Buffer.from([0x0a, 0x80])), /truncated/);
  assert.throws(() => decodePushResponse(Buffer.from([(3 << 3) | 3])), /wire type 3/);
});

// ---- the stream, against a plain node:http2 server that misbehaves on demand ----

const NAME = 'istiod.istio-system.svc';
const pair = makeCert('', NAME);
const quiet = new Logger('error');
let server: http2.Http2SecureServer;
let port = 0;
/** What the fake control plane does with the next stream. */
let behave: (s: http2.ServerHttp2Stream, first: PushRequest, ctx: { headers: http2.IncomingHttpHeaders; received: PushRequest[] }) => void = () => undefined;
const streams: { headers: http2.IncomingHttpHeaders; received: PushRequest[] }[] = [];
const dir = tempDir('meshgate-push-wire-');
const tokenFile = path.join(dir, 'token');
writeFileSync(tokenFile, 'tok3n\n');

function frame(msg: Buffer, flags = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

function viewMessage(version: string, nonce = '1'): Buffer {
  return pjEncodeResponse({ version, nonce, view: Buffer.from(JSON.stringify(meshServerView('127.0.0.1', '127.0.0.2', version))) });
}

/** Headers, then trailers with a status, as a gRPC server ends a call. */
function endWith(s: http2.ServerHttp2Stream, code: number, message: string, body?: Buffer): void {
  if (!s.headersSent) s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
  s.once('wantTrailers', () => s.sendTrailers({ 'grpc-status': String(code), 'grpc-message': encodeURIComponent(message) }));
  s.end(body);
}

before(async () => {
  server = http2.createSecureServer({ cert: pair.cert, key: pair.key, allowHTTP1: false });
  server.on('stream', (s, headers) => {
    const ctx = { headers, received: [] as PushRequest[] };
    streams.push(ctx);
    let buf = Buffer.alloc(0);
    let first = true;
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
        const msg = pjDecodeRequest(buf.subarray(5, 5 + buf.readUInt32BE(1)));
        buf = buf.subarray(5 + buf.readUInt32BE(1));
        ctx.received.push(msg);
        if (first) {
          first = false;
          behave(s, msg, ctx);
        }
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;
});

after(() => new Promise<void>((r) => server.close(() => r())));

function client(extra: Partial<ConstructorParameters<typeof ConfigPushClient>[0]> = {}): ConfigPushClient {
  return new ConfigPushClient({
    address: `127.0.0.1:${port}`,
    rootCertPem: pair.cert,
    tokenFile,
    proxy: { namespace: 'shop', serviceAccount: 'cart', podName: 'cart-1', podIps: ['10.1.0.9'], trustDomain: 'cluster.local' },
    log: quiet,
    apply: () => undefined,
    initialBackoffMs: 50,
    maxBackoffMs: 200,
    ...extra,
  });
}

test('stream: the call on the wire (path, content-type, te, token, authority), the hello, then one ACK per view', async () => {
  streams.length = 0;
  behave = (s) => {
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    s.write(frame(viewMessage('v1', 'n1')));
    s.write(frame(viewMessage('v1', 'n2')));
  };
  const c = client();
  try {
    c.start();
    await c.whenReady(10_000);
    await waitFor(() => (streams[0]?.received.length ?? 0) >= 3, 5000, 'hello and two ACKs');
    const { headers, received } = streams[0];
    assert.equal(headers[':path'], CONFIG_PUSH_STREAM_PATH);
    assert.equal(headers[':method'], 'POST');
    assert.equal(headers[':authority'], NAME);
    assert.equal(headers['content-type'], 'application/grpc');
    assert.equal(headers.te, 'trailers');
    assert.equal(headers.authorization, 'Bearer tok3n');
    assert.equal(received[0].kind, 'hello');
    assert.deepEqual({ ...received[0].hello!.proxy }, { namespace: 'shop', service_account: 'cart', pod_name: 'cart-1', pod_ips: ['10.1.0.9'], trust_domain: 'cluster.local' });
    assert.deepEqual(received.slice(1).map((m) => [m.kind, m.ack?.version, m.ack?.nonce]), [['ack', 'v1', 'n1'], ['ack', 'v1', 'n2']]);
    assert.equal(c.applied, 1, 'the same version again is ACKed, not applied again');
    assert.equal(c.connected, true);
  } finally {
    await c.stop();
  }
});

/** Serve v1, then do `then` on the same stream; the client must keep v1, say why, and reconnect. */
async function afterV1(then: (s: http2.ServerHttp2Stream) => void, want: RegExp): Promise<void> {
  let n = 0;
  behave = (s) => {
    n++;
    s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
    s.write(frame(viewMessage('v1')));
    // The first stream misbehaves once its view is ACKed; later ones stay quiet (serving v1).
    if (n === 1) setTimeout(() => then(s), 100);
  };
  const c = client();
  const disconnected: string[] = [];
  c.on('disconnected', (why: string) => disconnected.push(why));
  try {
    c.start();
    await c.whenReady(10_000);
    await waitFor(() => c.connects >= 2 && c.connected, 10_000, `a new stream after: ${want}`);
    assert.match(disconnected[0] ?? '', want, disconnected.join(' | '));
    assert.match(c.lastError ?? '', want);
    assert.equal(c.version, 'v1', 'the last good view keeps serving');
    assert.equal(c.applied, 1);
  } finally {
    await c.stop();
  }
}

test('stream errors: the server drops the connection (UNAVAILABLE); the view is kept and the client reconnects', async () => {
  await afterV1((s) => s.session?.destroy(), /^UNAVAILABLE: /);
});

test('stream errors: a grpc-status error in the trailers is reported with its name and decoded message', async () => {
  await afterV1((s) => endWith(s, 8, 'too many streams: réessayez'), /^RESOURCE_EXHAUSTED: too many streams: réessayez$/);
});

test('stream errors: the server ends the call with OK: "the control plane ended the stream"', async () => {
  await afterV1((s) => endWith(s, 0, ''), /^the control plane ended the stream$/);
});

test('stream errors: malformed frames: a compressed flag never offered, a message that cannot be parsed, an oversized view, a truncated frame', async () => {
  await afterV1((s) => s.write(frame(Buffer.from('zz'), 1)), /^INTERNAL: a compressed message/);
  await afterV1((s) => s.write(frame(pbVarint(1, 5))), /^INTERNAL: cannot parse the server's message: PushResponse field 1 has wire type 0/);
  await afterV1((s) => s.write(frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]))), /^INTERNAL: cannot parse the server's message: protobuf varint too long/);
  await afterV1((s) => endWith(s, 0, '', frame(Buffer.alloc(100)).subarray(0, 40)), /^INTERNAL: the stream ended inside a message \(40 bytes left over\)/);
  // maxViewBytes: a larger view is refused before it is buffered.
  let n = 0;
  behave = (s) => {
    n++;
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    const head = Buffer.alloc(5);
    head.writeUInt32BE(64 * 1024 * 1024, 1);
    if (n === 1) s.write(head);
  };
  const c = client({ maxViewBytes: 1024 * 1024 });
  try {
    c.start();
    await waitFor(() => c.lastError !== null, 10_000, 'the oversized view refused');
    assert.match(c.lastError ?? '', /^RESOURCE_EXHAUSTED: received message larger than max \(67108864 vs\. 1048576\)/);
    assert.equal(c.ready, false);
  } finally {
    await c.stop();
  }
});

test('stream errors: a trailers-only refusal and a non-gRPC answer: the client is never "connected"', async () => {
  behave = (s) => s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '7', 'grpc-message': encodeURIComponent('the token\'s identity shop/cart is not the proxy\'s shop/x') }, { endStream: true });
  const c = client();
  let connected = 0;
  c.on('connected', () => connected++);
  try {
    c.start();
    await waitFor(() => c.connects >= 2 && c.lastError !== null, 10_000, 'refused and retried');
    assert.equal(c.lastError, "PERMISSION_DENIED: the token's identity shop/cart is not the proxy's shop/x");
    assert.equal(connected, 0);
    assert.equal(c.ready, false);
  } finally {
    await c.stop();
  }
  behave = (s) => s.respond({ ':status': 404, 'content-type': 'text/plain' }, { endStream: true });
  const d = client();
  try {
    d.start();
    await waitFor(() => d.lastError !== null, 10_000, 'the 404');
    assert.equal(d.lastError, 'UNIMPLEMENTED: HTTP status 404');
    assert.equal(d.connected, false);
  } finally {
    await d.stop();
  }
});

test('stream errors: a server certificate from another root is UNAVAILABLE; stop() ends a stream and its connection', async () => {
  const c = client({ rootCertPem: makeCert('', NAME).cert });
  try {
    c.start();
    await waitFor(() => c.lastError !== null, 10_000, 'the TLS failure');
    assert.match(c.lastError ?? '', /^UNAVAILABLE: /);
  } finally {
    await c.stop();
  }
  // An address that cannot be dialled at all: said, and retried (no exception out of a timer).
  const bad = client({ address: 'not a host:15012' });
  try {
    bad.start();
    await waitFor(() => bad.connects >= 2, 10_000, 'retried');
    assert.match(bad.lastError ?? '', /^UNAVAILABLE: .*Invalid URL/);
  } finally {
    await bad.stop();
  }
  let closed = false;
  behave = (s) => {
    s.respond({ ':status': 200, 'content-type': 'application/grpc' });
    s.write(frame(viewMessage('v1')));
    s.session?.once('close', () => (closed = true));
  };
  const d = client();
  d.start();
  await d.whenReady(10_000);
  await d.stop();
  await waitFor(() => closed, 5000, 'the connection closed by stop()');
  assert.equal(d.connected, false);
  assert.throws(() => d.start(), /stopped/);
});

/** A TLS server that speaks just enough HTTP/2 (its SETTINGS) and then nothing: no PING is ever answered. */
async function mute(handshake: boolean): Promise<{ port: number; close: () => void }> {
  const sockets = new Set<net.Socket>();
  const srv = handshake
    ? tls.createServer({ cert: pair.cert, key: pair.key, ALPNProtocols: ['h2'] }, (sock) => {
        sockets.add(sock);
        sock.on('error', () => undefined);
        sock.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
        let acked = false;
        sock.on('data', () => {
          if (!acked) sock.write(Buffer.from([0, 0, 0, 4, 1, 0, 0, 0, 0]));
          acked = true;
        });
      })
    : net.createServer((sock) => {
        sockets.add(sock);
        sock.on('error', () => undefined);
      });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { port: (srv.address() as AddressInfo).port, close: () => { for (const s of sockets) s.destroy(); srv.close(); } };
}

test('stream: an unanswered keepalive PING ends the call with UNAVAILABLE; so does a server that never finishes the handshake', async () => {
  const m = await mute(true);
  try {
    const s = new GrpcH2Stream({ address: `127.0.0.1:${m.port}`, rootCertPem: pair.cert, servername: NAME, path: CONFIG_PUSH_STREAM_PATH, metadata: {}, maxReceiveBytes: 1024, keepaliveTimeMs: 200, keepaliveTimeoutMs: 300, connectTimeoutMs: 5000 });
    const t0 = Date.now();
    const status = await new Promise<GrpcStatus>((r) => s.once('status', r));
    assert.deepEqual(status, { code: 14, details: 'keepalive ping not answered within 300 ms' });
    assert.ok(Date.now() - t0 < 4000);
  } finally {
    m.close();
  }
  const n = await mute(false);
  try {
    const s = new GrpcH2Stream({ address: `127.0.0.1:${n.port}`, rootCertPem: pair.cert, servername: NAME, path: CONFIG_PUSH_STREAM_PATH, metadata: {}, maxReceiveBytes: 1024, keepaliveTimeMs: 0, keepaliveTimeoutMs: 0, connectTimeoutMs: 300 });
    const status = await new Promise<GrpcStatus>((r) => s.once('status', r));
    assert.deepEqual(status, { code: 14, details: 'no connection within 300 ms' });
  } finally {
    n.close();
  }
});
