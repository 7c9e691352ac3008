/**
 * meshgate's HTTP/2 upstream client over real node:http2 servers (h2c prior knowledge):
 * multiplexing, trailers, the server's stream limit, GOAWAY and refused streams, idle sessions.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import https from 'node:https';
import type tls from 'node:tls';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import type { UpstreamClient } from './client.js';
import { H1Client } from './h1-client.js';
import { H2Client, type H2ClientOptions } from './h2-client.js';
import { send } from '../../../test/support/upstream-client.js';
import { makeCerts } from '../../../test/support/tls-certs.js';
import { upstreamTlsConnect } from './upstream-tls.js';

const haveOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

const servers: http2.Http2Server[] = [];
const clients: UpstreamClient[] = [];

after(async () => {
  for (const c of clients) await c.destroy();
  for (const s of servers) s.close();
});

interface Counted {
  port: number;
  sessions: () => number;
}

async function h2Server(onStream: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, n: number) => void, settings: http2.Settings = {}): Promise<Counted> {
  let sessions = 0;
  let n = 0;
  const server = http2.createServer({ settings });
  server.on('session', (s) => {
    sessions++;
    s.on('error', () => {});
  });
  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    onStream(stream, headers, n++);
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, sessions: () => sessions };
}

function client(port: number, extra: Partial<H2ClientOptions> = {}): H2Client {
  const c = new H2Client({
    host: '127.0.0.1',
    port,
    connections: 8,
    connectTimeoutMs: 2000,
    idleTimeoutMs: 4000,
    tls: null,
    http1Fallback: () => new H1Client({ host: '127.0.0.1', port, connections: 8, connectTimeoutMs: 2000, keepAliveTimeoutMs: 4000, keepAliveMaxTimeoutMs: 60_000, keepAliveTimeoutThresholdMs: 1000, maxRequestsPerConnection: 0, tls: null }),
    ...extra,
  });
  clients.push(c);
  return c;
}

describe('H2Client', () => {
  test('concurrent requests share one session; :authority, :path and headers arrive', async () => {
    const seen: string[] = [];
    const s = await h2Server((stream, headers) => {
      seen.push(`${headers[':method']} ${headers[':authority']} ${headers[':path']} ${headers['x-a']} ${headers.connection ?? '-'}`);
      setTimeout(() => {
        stream.respond({ ':status': 200, 'x-b': 'c' });
        stream.end(String(headers[':path']));
      }, 20);
    });
    const c = client(s.port);
    const all = await Promise.all(Array.from({ length: 20 }, (_, i) => send(c, { path: `/r${i}`, headers: ['host', 'svc.test:8080', 'x-a', 'v', 'connection', 'keep-alive'] })));
    for (let i = 0; i < 20; i++) {
      assert.equal(all[i].error, null, all[i].error?.message);
      assert.equal(all[i].status, 200);
      assert.equal(all[i].body, `/r${i}`);
      assert.equal(all[i].headers['x-b'], 'c');
    }
    assert.equal(s.sessions(), 1, 'one multiplexed session');
    assert.equal(seen[0], 'GET svc.test:8080 /r0 v -');
  });

  test('trailers (gRPC grpc-status) reach onComplete', async () => {
    const s = await h2Server((stream) => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0', 'grpc-message': 'ok' }));
      stream.end(Buffer.from([0, 0, 0, 0, 0]));
    });
    const r = await send(client(s.port), { path: '/svc/Method', method: 'POST', headers: ['host', 'x', 'content-type', 'application/grpc', 'te', 'trailers'], body: Buffer.from([0, 0, 0, 0, 0]) });
    assert.equal(r.error, null);
    assert.equal((r.trailers as Record<string, string>)['grpc-status'], '0');
    assert.equal((r.trailers as Record<string, string>)['grpc-message'], 'ok');
  });

  test('a streamed request body arrives whole', async () => {
    const s = await h2Server((stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(Buffer.concat(chunks));
      });
    });
    const body = Readable.from([Buffer.from('one,'), Buffer.from('two,'), Buffer.from('three')]);
    const r = await send(client(s.port), { path: '/', method: 'POST', headers: ['host', 'x'], body });
    assert.equal(r.body, 'one,two,three');
  });

  test('a body that ends in the turn of the event loop its data came in goes out as one DATA frame with END_STREAM, in the write of its HEADERS', async () => {
    const s = await h2Server((stream) => {
      const chunks: Buffer[] = [];
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(Buffer.concat(chunks));
      });
    });
    // A relay that records what the client sends, TCP read by TCP read.
    const reads: Buffer[] = [];
    const relay = net.createServer((c) => {
      const u = net.connect(s.port, '127.0.0.1');
      c.on('data', (d: Buffer) => {
        reads.push(d);
        u.write(d);
      });
      u.pipe(c);
      c.on('error', () => u.destroy());
      u.on('error', () => c.destroy());
      c.on('close', () => u.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    after(() => relay.close());
    const c = client((relay.address() as net.AddressInfo).port);
    for (let i = 0; i < 3; i++) {
      // As a gRPC message relayed from a downstream HTTP/2 stream: the data first, its end a little
      // later in the same turn of the event loop (node:http2 delivers a DATA frame's data and its
      // END_STREAM in two callbacks).
      const body = new Readable({ read() {} });
      body.push(Buffer.from(`message-${i}`));
      const pending = send(c, { path: '/', method: 'POST', headers: ['host', 'x'], body });
      await new Promise<void>((r) => process.nextTick(r));
      await Promise.resolve();
      body.push(null);
      const r = await pending;
      assert.equal(r.body, `message-${i}`);
    }
    const frames = h2Frames(Buffer.concat(reads));
    for (const id of [1, 3, 5]) {
      const data = frames.filter((f) => f.type === 0 && f.stream === id);
      assert.deepEqual(data.map((f) => ({ length: f.length, endStream: (f.flags & 1) === 1 })), [{ length: 9, endStream: true }], `stream ${id}: one DATA frame carrying END_STREAM`);
    }
    // HEADERS and DATA of each request left in one write (one TCP read here on loopback).
    const readWith = (type: number, id: number) => reads.findIndex((d) => h2Frames(d, true).some((f) => f.type === type && f.stream === id));
    for (const id of [3, 5]) assert.equal(readWith(0, id), readWith(1, id), `stream ${id}: HEADERS and DATA in one write`);
  });

  test('a body that streams is relayed as it comes (a chunk is not held until the end) and arrives whole', async () => {
    const got: string[] = [];
    let firstSeen: () => void = () => {};
    const first = new Promise<void>((r) => (firstSeen = r));
    const s = await h2Server((stream) => {
      stream.on('data', (d: Buffer) => {
        got.push(d.toString());
        firstSeen();
      });
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(got.join(''));
      });
    });
    const body = new Readable({ read() {} });
    body.push(Buffer.from('first;'));
    const pending = send(client(s.port), { path: '/', method: 'POST', headers: ['host', 'x'], body });
    // The body has not ended: its first chunk still reaches the server.
    await Promise.race([first, new Promise((_, reject) => setTimeout(() => reject(new Error('the first chunk was held back')), 5000))]);
    body.push(Buffer.from('second;'));
    setTimeout(() => {
      body.push(Buffer.from('third'));
      body.push(null);
    }, 20);
    const r = await pending;
    assert.equal(r.body, 'first;second;third');
  });

  test('a large relayed body keeps back-pressure with a slow reader and arrives intact', async () => {
    const total = 8 * 1024 * 1024;
    const s = await h2Server((stream) => {
      let n = 0;
      const hash = createHash('sha256');
      stream.on('data', (d: Buffer) => {
        n += d.length;
        hash.update(d);
        // A slow reader: pauses now and then.
        stream.pause();
        setImmediate(() => stream.resume());
      });
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end(`${n}:${hash.digest('hex')}`);
      });
    });
    let produced = 0;
    const expect = createHash('sha256');
    const body = new Readable({
      read() {
        if (produced >= total) return void this.push(null);
        const chunk = Buffer.alloc(64 * 1024, (produced / (64 * 1024)) % 251);
        for (let i = 0; i < chunk.length; i += 4099) chunk[i] = i % 256;
        expect.update(chunk);
        produced += chunk.length;
        this.push(chunk);
      },
    });
    const r = await send(client(s.port), { path: '/', method: 'POST', headers: ['host', 'x'], body });
    assert.equal(r.error, null);
    assert.equal(r.body, `${total}:${expect.digest('hex')}`);
  });

  test("the server's SETTINGS_MAX_CONCURRENT_STREAMS is honoured: more sessions open", async () => {
    let open = 0;
    let maxOpen = 0;
    const perSession = new Map<unknown, number>();
    let maxPerSession = 0;
    const s = await h2Server(
      (stream) => {
        open++;
        maxOpen = Math.max(maxOpen, open);
        const n = (perSession.get(stream.session) ?? 0) + 1;
        perSession.set(stream.session, n);
        maxPerSession = Math.max(maxPerSession, n);
        setTimeout(() => {
          open--;
          perSession.set(stream.session, perSession.get(stream.session)! - 1);
          stream.respond({ ':status': 200 });
          stream.end('x');
        }, 150);
      },
      { maxConcurrentStreams: 2 },
    );
    const c = client(s.port);
    const all = await Promise.all(Array.from({ length: 5 }, () => send(c, { path: '/' })));
    assert.deepEqual(all.map((r) => r.status), [200, 200, 200, 200, 200]);
    assert.ok(maxPerSession <= 2, `at most 2 streams per session, saw ${maxPerSession}`);
    assert.ok(s.sessions() >= 2, `expected more sessions, got ${s.sessions()}`);
  });

  test('GOAWAY: a stream above the last stream id is sent again on a new session', async () => {
    const s = await h2Server((stream, _h, n) => {
      if (n === 1) {
        // The second stream of the first session: GOAWAY saying only stream 1 was processed.
        stream.session!.goaway(http2.constants.NGHTTP2_NO_ERROR, 1);
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end(`answer ${n}`);
    });
    const c = client(s.port);
    assert.equal((await send(c, { path: '/1' })).body, 'answer 0');
    const r = await send(c, { path: '/2' });
    assert.equal(r.error, null, `expected the refused stream to be retried, got ${r.error?.message}`);
    assert.equal(r.body, 'answer 2');
    assert.equal(s.sessions(), 2);
  });

  test('RST_STREAM REFUSED_STREAM is retried once; another reset is an error', async () => {
    const s = await h2Server((stream, headers, n) => {
      if (headers[':path'] === '/refused-once' && n === 0) return stream.close(http2.constants.NGHTTP2_REFUSED_STREAM);
      if (headers[':path'] === '/internal') return stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    const c = client(s.port);
    const r = await send(c, { path: '/refused-once' });
    assert.equal(r.error, null, r.error?.message);
    assert.equal(r.body, 'ok');
    const bad = await send(c, { path: '/internal' });
    assert.ok(bad.error !== null, 'an INTERNAL_ERROR reset fails the request');
    assert.ok(['ERR_HTTP2_STREAM_ERROR', 'UND_ERR_SOCKET'].includes(String(bad.error.code)), String(bad.error.code));
  });

  test('connection refused: ECONNREFUSED', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const c = client(port);
    const all = await Promise.all([send(c, { path: '/' }), send(c, { path: '/' })]);
    assert.deepEqual(all.map((r) => r.error?.code), ['ECONNREFUSED', 'ECONNREFUSED']);
  });

  test('abort mid-response cancels the stream (RST_STREAM CANCEL), the session stays', async () => {
    let reset = -1;
    const s = await h2Server((stream, headers) => {
      if (headers[':path'] === '/slow') {
        stream.on('close', () => (reset = stream.rstCode ?? -1));
        stream.respond({ ':status': 200 });
        stream.write('part');
        return;
      }
      stream.respond({ ':status': 200 });
      stream.end('fine');
    });
    const c = client(s.port);
    let abort: ((e?: Error) => void) | null = null;
    const p = send(c, { path: '/slow' }, (a) => (abort = a));
    await new Promise((r) => setTimeout(r, 100));
    abort!();
    assert.equal((await p).error?.code, 'UND_ERR_ABORTED');
    const until = Date.now() + 3000;
    while (reset === -1 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(reset, http2.constants.NGHTTP2_CANCEL);
    assert.equal((await send(c, { path: '/' })).body, 'fine');
    assert.equal(s.sessions(), 1);
  });

  test('100 streams per session: the 101st request opens a second session', async () => {
    const held: http2.ServerHttp2Stream[] = [];
    const s = await h2Server((stream) => {
      held.push(stream);
      if (held.length === 101) {
        for (const h of held) {
          h.respond({ ':status': 200 });
          h.end();
        }
      }
    });
    const c = client(s.port);
    const all = await Promise.all(Array.from({ length: 101 }, () => send(c, { path: '/' })));
    assert.equal(all.filter((r) => r.status === 200).length, 101);
    assert.equal(s.sessions(), 2);
  });

  test('over TLS, a server that chooses http/1.1 by ALPN is served by the HTTP/1.1 pool', { skip: haveOpenssl ? false : 'needs openssl (apt-get install openssl)' }, async () => {
    const [cert] = makeCerts(['h1only.test']);
    const server = https.createServer({ cert: cert.certChain, key: cert.privateKey }, (req, res) => res.end(`http/${req.httpVersion} ${req.url}`));
    const alpn: (string | false | null)[] = [];
    server.on('secureConnection', (sock: tls.TLSSocket) => alpn.push(sock.alpnProtocol));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const t = upstreamTlsConnect({ mode: 'SIMPLE', caCertificates: { kind: 'inline', pem: cert.certChain, secret: 'default/ca' }, clientCertificate: null, sni: 'h1only.test', subjectAltNames: [], insecureSkipVerify: false });
    const c = client(port, {
      tls: t,
      http1Fallback: () => new H1Client({ host: '127.0.0.1', port, connections: 8, connectTimeoutMs: 2000, keepAliveTimeoutMs: 4000, keepAliveMaxTimeoutMs: 60_000, keepAliveTimeoutThresholdMs: 1000, maxRequestsPerConnection: 0, tls: t }),
    });
    try {
      const all = await Promise.all([send(c, { path: '/a' }), send(c, { path: '/b' })]);
      assert.deepEqual(all.map((r) => r.body), ['http/1.1 /a', 'http/1.1 /b']);
      assert.equal((await send(c, { path: '/c' })).body, 'http/1.1 /c');
      assert.equal(alpn[0], 'http/1.1');
    } finally {
      await c.destroy();
      server.closeAllConnections();
      server.close();
    }
  });

  test('an idle session is closed after idleTimeoutMs', async () => {
    let closed = false;
    const server = http2.createServer();
    server.on('session', (sess) => sess.on('close', () => (closed = true)));
    server.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const c = client((server.address() as net.AddressInfo).port, { idleTimeoutMs: 150 });
    await send(c, { path: '/' });
    const until = Date.now() + 3000;
    while (!closed && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, true);
  });
});

/** HTTP/2 frame headers in `buf` (after the client preface); `partial`: a chunk that may start mid-frame is scanned from its start only. */
function h2Frames(buf: Buffer, partial = false): { type: number; flags: number; stream: number; length: number }[] {
  const PREFACE = 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n';
  let i = buf.subarray(0, PREFACE.length).toString('latin1') === PREFACE ? PREFACE.length : 0;
  const out: { type: number; flags: number; stream: number; length: number }[] = [];
  while (i + 9 <= buf.length) {
    const length = buf.readUIntBE(i, 3);
    out.push({ length, type: buf[i + 3], flags: buf[i + 4], stream: buf.readUInt32BE(i + 5) & 0x7fffffff });
    i += 9 + length;
  }
  if (!partial) assert.equal(i, buf.length, 'whole frames');
  return out;
}
