/**
 * gRPC through the gateway with real @grpc/grpc-js clients and servers: the four call kinds,
 * metadata and trailers, server statuses, `grpc-timeout`, and the errors the gateway produces
 * itself answered as gRPC statuses (HTTP 200, trailers-only) the way Envoy maps them.
 */

import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cluster, exact, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { grpc, grpcClient, startGrpcEcho, unary, type EchoClient, type EchoReply, type GrpcEchoServer } from '../support/grpc-echo.js';
import { within } from '../support/http-client.js';
import { RequestRecord } from '../../src/observability/record.js';
import type { RequestObserver } from '../../src/observability/observer.js';

/** A port that refuses connections (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** One raw HTTP/2 gRPC-shaped request; returns the response headers, trailers and elapsed ms. */
function rawGrpc(port: number, authority: string, path: string, extra: Record<string, string> = {}): Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders | null; ms: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', reject);
    const req = session.request({ ':method': 'POST', ':path': path, ':authority': authority, 'content-type': 'application/grpc', te: 'trailers', ...extra });
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders | null = null;
    req.on('response', (h) => (headers = h));
    req.on('trailers', (t) => (trailers = t));
    req.on('data', () => {});
    req.on('end', () => {
      session.close();
      resolve({ headers, trailers, ms: Date.now() - started });
    });
    req.on('error', reject);
    // An empty message: 0 (not compressed) + length 0.
    req.end(Buffer.from([0, 0, 0, 0, 0]));
  });
}

describe('gRPC through the gateway', { timeout: 60_000 }, () => {
  let upstream: GrpcEchoServer;
  let gw: RuntimeHarness;
  let client: EchoClient;
  let port: number;
  /** Every finished request's record (what istio_requests_total and the access log read). */
  const records: RequestRecord[] = [];
  const observer: RequestObserver = {
    begin: (listener, d) => new RequestRecord(listener, d, { finish: (rec) => records.push(rec) }),
    upstreamTraceHeaders: () => null,
  };

  before(async () => {
    upstream = await startGrpcEcho('g1');
    const refused = await closedPort();
    const prefix = (value: string) => ({ kind: 'prefix' as const, value, ignoreCase: false });
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('grpc', ['grpc.example.com'], [
              route('grpc/echo', forward(['grpc']), [match({ path: prefix('/meshgate.test.Echo/') })]),
            ]),
            vhost('broken', ['broken.example.com'], [
              route('broken/empty', forward(['empty']), [match({ headers: [{ name: 'x-case', match: exact('empty'), invert: false }] })]),
              route('broken/refused', forward(['refused']), [match({ headers: [{ name: 'x-case', match: exact('refused'), invert: false }] })]),
              route('broken/timeout', forward(['grpc'], { timeoutMs: 300 }), [match({ headers: [{ name: 'x-case', match: exact('timeout'), invert: false }] })]),
              route('broken/other', forward(['grpc']), [match({ path: prefix('/other') })]),
              route('broken/direct', { kind: 'direct', status: 503, body: 'down', contentType: null }, [match({ headers: [{ name: 'x-case', match: exact('direct'), invert: false }] })]),
            ]),
          ]),
        ],
        [
          cluster('grpc', [{ port: upstream.port }], { protocol: 'HTTP2' }),
          cluster('empty', [], { protocol: 'HTTP2' }),
          cluster('refused', [{ port: refused }], { protocol: 'HTTP2' }),
        ],
      ),
      { observer },
    );
    port = gw.port();
    client = grpcClient(port, 'grpc.example.com');
  });
  after(async () => {
    client?.close();
    await gw?.close(500);
    await upstream?.close();
  });

  test("istio_requests_total labels: request_protocol grpc, grpc_response_status from trailers, headers or the HTTP status", async () => {
    /** The record of the next request made by `call`. */
    const recordOf = async (call: () => Promise<unknown>): Promise<RequestRecord> => {
      const before = records.length;
      await call();
      const deadline = Date.now() + 5000;
      while (records.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(records.length, before + 1, 'one record per call');
      return records[before];
    };
    const label = (r: RequestRecord) => [r.protocol, r.status, r.grpcStatus];
    // OK: grpc-status 0 in the upstream's trailers.
    assert.deepEqual(label(await recordOf(() => unary(client, { text: 'ok' }))), ['grpc', 200, '0']);
    // The server's NOT_FOUND in its trailers.
    assert.deepEqual(label(await recordOf(() => unary(client, { text: 'fail:5' }))), ['grpc', 200, '5']);
    // The gateway's own trailers-only answer (no healthy upstream): grpc-status 14 in the headers.
    assert.deepEqual(label(await recordOf(() => rawGrpc(port, 'broken.example.com', '/meshgate.test.Echo/Unary', { 'x-case': 'empty' }))), ['grpc', 200, '14']);
    // An HTTP 503 without grpc-status (a route's direct answer): mapped from the status (UNAVAILABLE).
    const direct = await recordOf(() => rawGrpc(port, 'broken.example.com', '/meshgate.test.Echo/Unary', { 'x-case': 'direct' }));
    assert.deepEqual(label(direct), ['grpc', 503, '14']);
    // A plain HTTP/2 request is 'http' with no gRPC status.
    const plain = await recordOf(() => rawGrpc(port, 'grpc.example.com', '/meshgate.test.Echo/Unary', { 'content-type': 'text/plain' }));
    assert.deepEqual([plain.protocol, plain.grpcStatus], ['http', '']);
    // gRPC-Web is not gRPC to Istio's stats (Envoy's hasGrpcContentType).
    const web = await recordOf(() => rawGrpc(port, 'grpc.example.com', '/meshgate.test.Echo/Unary', { 'content-type': 'application/grpc-web+proto' }));
    assert.equal(web.protocol, 'http');
  });

  test('unary: message, request metadata, response headers and trailers all cross', async () => {
    const md = new grpc.Metadata();
    md.set('x-user', 'alice');
    const r = await within(10_000, unary(client, { text: 'hello' }, md), 'unary call');
    assert.equal(r.error, null, `expected success, got ${r.error?.code} ${r.error?.details}`);
    assert.deepEqual(r.reply, { text: 'hello', from: 'g1' });
    assert.equal(r.headers?.get('x-user')[0], 'alice', 'request metadata x-user should reach the server and come back in its headers');
    assert.equal(r.status?.metadata.get('x-trailer')[0], 'done', 'trailing metadata x-trailer should reach the client');
  });

  test('a status set by the server crosses unchanged, with its message and trailers', async () => {
    const r = await within(10_000, unary(client, { text: 'fail:5' }), 'failing call');
    assert.equal(r.error?.code, grpc.status.NOT_FOUND, `expected NOT_FOUND (5), got ${r.error?.code}`);
    assert.equal(r.error?.details, 'failed as asked (fail:5)');
    assert.equal(r.status?.metadata.get('x-trailer')[0], 'done');
  });

  test('server streaming: every message in order', async () => {
    const call = client.ServerStream({ text: 's', count: 50 });
    const got: string[] = [];
    await within(10_000, new Promise<void>((resolve, reject) => {
      call.on('data', (m: EchoReply) => got.push(m.text));
      call.on('error', reject);
      call.on('end', () => resolve());
    }), 'server stream');
    assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => `s#${i}`));
  });

  test('client streaming: every message reaches the server', async () => {
    const reply = await within(10_000, new Promise<EchoReply>((resolve, reject) => {
      const call = client.ClientStream(new grpc.Metadata(), {}, (err, res) => (err ? reject(err) : resolve(res!)));
      for (let i = 0; i < 20; i++) call.write({ text: `c${i}` });
      call.end();
    }), 'client stream');
    assert.equal(reply.text, Array.from({ length: 20 }, (_, i) => `c${i}`).join(','));
  });

  test('bidirectional streaming: each answer arrives before the next message is sent', async () => {
    const call = client.Bidi();
    const answers: string[] = [];
    await within(10_000, (async () => {
      for (let i = 0; i < 10; i++) {
        const next = new Promise<EchoReply>((resolve) => call.once('data', resolve));
        call.write({ text: `m${i}` });
        answers.push((await next).text);
      }
      call.end();
      await new Promise<void>((resolve) => call.on('end', () => resolve()).on('status', () => resolve()));
    })(), 'bidi stream');
    assert.deepEqual(answers, Array.from({ length: 10 }, (_, i) => `echo:m${i}`));
  });

  test('grpc-timeout is honoured by the gateway: DEADLINE_EXCEEDED from the gateway, upstream call cancelled', async () => {
    // No client-side deadline: only the grpc-timeout header limits the call.
    const before = upstream.cancelled;
    // EchoRequest{text: "sleep:3000"}: field 1, length 10.
    const sleeping = Buffer.from([0, 0, 0, 0, 12, 0x0a, 10, ...Buffer.from('sleep:3000')]);
    // The server sends its response headers at once, then sleeps: the deadline passes mid-response.
    const r2 = await within(5000, new Promise<{ headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; ms: number }>((resolve, reject) => {
      const started = Date.now();
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on('error', reject);
      const req = session.request({ ':method': 'POST', ':path': '/meshgate.test.Echo/Unary', ':authority': 'grpc.example.com', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '200m' });
      let trailers: http2.IncomingHttpHeaders = {};
      req.on('trailers', (t) => (trailers = t));
      req.on('response', (h) => {
        req.resume();
        req.on('end', () => {
          session.close();
          resolve({ headers: h, trailers, ms: Date.now() - started });
        });
      });
      req.on('error', reject);
      req.end(sleeping);
    }), 'sleeping call');
    assert.equal(r2.headers[':status'], 200, 'a gRPC error is HTTP 200');
    assert.equal(r2.headers['grpc-status'], undefined, 'the upstream head (sent before the deadline) carries no status');
    assert.equal(r2.trailers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED), `expected grpc-status 4 in the trailers, got ${JSON.stringify(r2.trailers)}`);
    assert.ok(r2.ms < 2000, `expected the answer near 200 ms, got ${r2.ms} ms`);
    await within(3000, (async () => {
      while (upstream.cancelled === before) await new Promise((r) => setTimeout(r, 20));
    })(), 'upstream cancellation');
  });

  test('grpc-timeout passing before the upstream answers at all: trailers-only DEADLINE_EXCEEDED with flag UT', async () => {
    const quiet = Buffer.from([0, 0, 0, 0, 12, 0x0a, 10, ...Buffer.from('quiet:3000')]);
    const r = await within(5000, new Promise<{ headers: http2.IncomingHttpHeaders; ms: number }>((resolve, reject) => {
      const started = Date.now();
      const session = http2.connect(`http://127.0.0.1:${port}`);
      session.on('error', reject);
      const req = session.request({ ':method': 'POST', ':path': '/meshgate.test.Echo/Unary', ':authority': 'grpc.example.com', 'content-type': 'application/grpc', te: 'trailers', 'grpc-timeout': '150m' });
      req.on('response', (h, flags) => {
        assert.ok((flags & http2.constants.NGHTTP2_FLAG_END_STREAM) !== 0, 'the answer should be one HEADERS frame with END_STREAM');
        req.resume();
        req.on('end', () => {
          session.close();
          resolve({ headers: h, ms: Date.now() - started });
        });
      });
      req.on('error', reject);
      req.end(quiet);
    }), 'quiet call');
    assert.equal(r.headers[':status'], 200);
    assert.equal(r.headers['grpc-status'], String(grpc.status.DEADLINE_EXCEEDED), `expected grpc-status 4, got ${r.headers['grpc-status']}`);
    assert.equal(r.headers['x-meshgate-flags'], 'UT');
    assert.ok(r.ms >= 140 && r.ms < 2000, `expected the answer near 150 ms, got ${r.ms} ms`);
  });

  const gatewayErrors: { desc: string; path: string; authority: string; headers: Record<string, string>; code: number; flag: string }[] = [
    { desc: 'no route (404 NR) is UNIMPLEMENTED', path: '/meshgate.test.Echo/Unary', authority: 'broken.example.com', headers: {}, code: grpc.status.UNIMPLEMENTED, flag: 'NR' },
    { desc: 'no healthy upstream (503 UH) is UNAVAILABLE', path: '/meshgate.test.Echo/Unary', authority: 'broken.example.com', headers: { 'x-case': 'empty' }, code: grpc.status.UNAVAILABLE, flag: 'UH' },
    { desc: 'connection refused (503 UF) is UNAVAILABLE', path: '/meshgate.test.Echo/Unary', authority: 'broken.example.com', headers: { 'x-case': 'refused' }, code: grpc.status.UNAVAILABLE, flag: 'UF' },
  ];
  for (const c of gatewayErrors) {
    test(`gateway error as gRPC status: ${c.desc}`, async () => {
      const r = await within(10_000, rawGrpc(port, c.authority, c.path, c.headers), c.desc);
      assert.equal(r.headers[':status'], 200, `expected HTTP 200, got ${r.headers[':status']}`);
      assert.equal(r.headers['content-type'], 'application/grpc');
      assert.equal(r.headers['grpc-status'], String(c.code), `expected grpc-status ${c.code} in the trailers-only HEADERS, got ${r.headers['grpc-status']} (trailers ${JSON.stringify(r.trailers)})`);
      assert.equal(r.headers['x-meshgate-flags'], c.flag);
      assert.equal(r.trailers, null, 'a trailers-only response has no separate trailers');
    });
  }

  test('gateway error seen by a grpc-js client: no route is UNIMPLEMENTED with the route message', async () => {
    const c = grpcClient(port, 'broken.example.com');
    try {
      const r = await within(10_000, unary(c, { text: 'x' }), 'unrouted call');
      assert.equal(r.error?.code, grpc.status.UNIMPLEMENTED, `expected UNIMPLEMENTED, got ${r.error?.code} ${r.error?.details}`);
    } finally {
      c.close();
    }
  });

  test('route timeout caps a longer grpc-timeout (grpc-js client, deadline 10 s, route 300 ms)', async () => {
    const c = grpcClient(port, 'broken.example.com');
    try {
      const md = new grpc.Metadata();
      md.set('x-case', 'timeout');
      const started = Date.now();
      const r = await within(10_000, unary(c, { text: 'sleep:3000' }, md, { deadline: Date.now() + 10_000 }), 'capped call');
      // The route /meshgate.test.Echo/ on broken.example.com is matched by the x-case header route.
      assert.equal(r.error?.code, grpc.status.DEADLINE_EXCEEDED, `expected DEADLINE_EXCEEDED, got ${r.error?.code} ${r.error?.details}`);
      assert.ok(Date.now() - started < 2500, `expected the answer near 300 ms, got ${Date.now() - started} ms`);
    } finally {
      c.close();
    }
  });
});
