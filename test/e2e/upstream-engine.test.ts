/**
 * meshgate's own upstream clients seen through the gateway: what a client gets when the upstream
 * answers oddly or breaks the protocol (502 UPE), the stale kept-alive connection retried, interim
 * answers, bodyless answers on a kept-alive connection, a TLS handshake that never ends (503 UF),
 * and an HTTP/2 (h2c) cluster multiplexing requests over one session with its trailers.
 */

import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { request } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';

/** Raw answers by request path (the first line of the request head). */
const ANSWERS: Record<string, string> = {
  '/cl-te': 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
  '/two-lengths': 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 5\r\n\r\nhello',
  '/bad-status': 'HTTP/1.1 20 OK\r\ncontent-length: 0\r\n\r\n',
  '/bad-chunk': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nxyz\r\n',
  '/obs-fold': 'HTTP/1.1 200 OK\r\nx-a: 1\r\n  continued\r\ncontent-length: 0\r\n\r\n',
  '/interim': 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal',
  '/no-content': 'HTTP/1.1 204 No Content\r\nx-kind: 204\r\n\r\n',
  '/not-modified': 'HTTP/1.1 304 Not Modified\r\netag: "v1"\r\ncontent-length: 42\r\n\r\n',
  '/head': 'HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n',
  '/chunked': 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\nx-checksum: 1\r\n\r\n',
};

describe('upstream engine through the gateway', { timeout: 90_000 }, () => {
  let gw: RuntimeHarness;
  let port: number;
  const servers: net.Server[] = [];
  let rawConnections = 0;
  let staleConnections = 0;
  let stalePosts = 0;
  let h2Sessions = 0;

  async function listen<S extends net.Server>(s: S): Promise<number> {
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as net.AddressInfo).port;
  }

  before(async () => {
    // Answers per path from ANSWERS, on kept-alive connections.
    const raw = net.createServer((socket) => {
      rawConnections++;
      let buf = '';
      socket.on('error', () => {});
      socket.on('data', (d) => {
        buf += d.toString('latin1');
        for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
          const head = buf.slice(0, end);
          buf = buf.slice(end + 4);
          const [, path] = head.split(' ');
          socket.write(ANSWERS[path] ?? 'HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
        }
      });
    });
    // Answers the first request of each connection, then closes it when the next one arrives.
    const stale = net.createServer((socket) => {
      staleConnections++;
      let n = 0;
      socket.on('error', () => {});
      socket.on('data', (d) => {
        if (!d.includes('\r\n\r\n')) return;
        if (d.subarray(0, 5).toString('latin1') === 'POST ') stalePosts++;
        if (n++ === 0) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh');
        else socket.destroy();
      });
    });
    // Accepts TCP and never speaks: a TLS handshake towards it never ends.
    const mute = net.createServer(() => {});
    const h2 = http2.createServer();
    h2.on('session', () => h2Sessions++);
    h2.on('stream', (stream, headers) => {
      setTimeout(() => {
        stream.respond({ ':status': 200, 'content-type': 'text/plain' }, { waitForTrailers: true });
        stream.on('wantTrailers', () => stream.sendTrailers({ 'x-trailer': 'yes' }));
        stream.end(`h2 ${headers[':path']}`);
      }, 50);
    });
    const rawPort = await listen(raw);
    const stalePort = await listen(stale);
    const mutePort = await listen(mute);
    const h2Port = await listen(h2);
    const p = (path: string) => [match({ path: { kind: 'segment-prefix', value: path, ignoreCase: false } })];
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('v', ['*'], [
              route('stale', forward(['stale']), p('/stale')),
              route('mute', forward(['mute']), p('/mute')),
              route('h2', forward(['h2']), p('/h2')),
              route('raw', forward(['raw']), [match()]),
            ]),
          ]),
        ],
        [
          cluster('raw', [{ port: rawPort }]),
          cluster('stale', [{ port: stalePort }]),
          cluster('mute', [{ port: mutePort }], { connectTimeoutMs: 300, tls: { mode: 'SIMPLE', caCertificates: null, clientCertificate: null, sni: 'mute.test', subjectAltNames: [], insecureSkipVerify: true } }),
          cluster('h2', [{ port: h2Port }], { protocol: 'HTTP2' }),
        ],
      ),
    );
    port = gw.port();
  });

  after(async () => {
    await gw?.close(500);
    for (const s of servers) {
      (s as http.Server).closeAllConnections?.();
      s.close();
    }
  });

  for (const path of ['/cl-te', '/two-lengths', '/bad-status', '/obs-fold']) {
    test(`a malformed answer (${path}) is 502 UPE, never relayed`, async () => {
      const r = await request(port, { path });
      assert.equal(r.status, 502, `expected 502, got ${r.status} ${r.body}`);
      assert.equal(r.headers['x-meshgate-flags'], 'UPE');
      assert.equal(r.body, 'upstream connect error or disconnect/reset before headers. reset reason: protocol error');
    });
  }

  test('a malformed chunk after a valid head: the client connection is reset, never a short body as complete', async () => {
    await assert.rejects(request(port, { path: '/bad-chunk' }), (err: NodeJS.ErrnoException) => err.code === 'ECONNRESET' || /aborted|hang up/.test(err.message));
  });

  test('interim 1xx answers are skipped; the final answer is relayed', async () => {
    const r = await request(port, { path: '/interim' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'final');
  });

  test('204, 304 and HEAD answers carry no body, and the kept-alive connection serves on', async () => {
    const before = rawConnections;
    const a = await request(port, { path: '/no-content' });
    assert.equal(a.status, 204);
    assert.equal(a.headers['x-kind'], '204');
    assert.equal(a.body, '');
    const b = await request(port, { path: '/not-modified' });
    assert.equal(b.status, 304);
    assert.equal(b.headers.etag, '"v1"');
    assert.equal(b.body, '');
    const c = await request(port, { path: '/head', method: 'HEAD' });
    assert.equal(c.status, 200);
    assert.equal(c.headers['content-length'], '1000');
    const d = await request(port, { path: '/chunked' });
    assert.equal(d.status, 200);
    assert.equal(d.body, 'abcdef');
    assert.ok(rawConnections - before <= 1, `one upstream connection carried them all (opened ${rawConnections - before})`);
  });

  test('a kept-alive connection the upstream closed is retried on a new one: the client never sees it', async () => {
    for (let i = 0; i < 3; i++) {
      const r = await request(port, { path: '/stale' });
      assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.body}`);
      assert.equal(r.body, 'fresh');
    }
    assert.equal(staleConnections, 3);
  });

  for (const body of [undefined, 'charge=100']) {
    test(`a POST${body === undefined ? '' : ' with a body'} on a kept-alive connection the upstream closed after reading it is not sent again: 503 (no retry policy)`, async () => {
      const first = await request(port, { path: '/stale/warm' });
      assert.equal(first.status, 200);
      const before = stalePosts;
      const r = await request(port, { path: '/stale/pay', method: 'POST', body, headers: body === undefined ? { 'content-length': '0' } : {} });
      assert.equal(r.status, 503, r.body);
      assert.equal(stalePosts - before, 1, 'the POST was delivered once');
    });
  }

  test('a TLS handshake that never completes: 503 UF after the connect timeout', async () => {
    const t0 = Date.now();
    const r = await request(port, { path: '/mute' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-meshgate-flags'], 'UF');
    assert.equal(r.body, 'upstream connect error or disconnect/reset before headers. reset reason: connection timeout');
    assert.ok(Date.now() - t0 < 5000);
  });

  test('an HTTP2 cluster: concurrent requests share one h2c session; trailers reach an HTTP/2 client', async () => {
    const all = await Promise.all(Array.from({ length: 10 }, (_, i) => request(port, { path: `/h2/${i}` })));
    all.forEach((r, i) => {
      assert.equal(r.status, 200);
      assert.equal(r.body, `h2 /h2/${i}`);
    });
    assert.equal(h2Sessions, 1, `one upstream session, got ${h2Sessions}`);
    const client = http2.connect(`http://127.0.0.1:${port}`);
    try {
      const trailers = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const s = client.request({ ':path': '/h2/t', 'te': 'trailers' });
        s.on('trailers', resolve);
        s.on('error', reject);
        s.resume();
      });
      assert.equal(trailers['x-trailer'], 'yes');
    } finally {
      client.close();
    }
  });
});

describe('upstream engine through the gateway, one connection per endpoint: bytes after an answer', { timeout: 60_000 }, () => {
  // The answer to the first request, then in the same write bytes shaped as another answer.
  const smuggled = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPWNED!';
  const answers: Record<string, string> = {
    '/smuggle': `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok${smuggled}`,
    '/no-content': `HTTP/1.1 204 No Content\r\n\r\n${smuggled}`,
  };
  let gw: RuntimeHarness;
  let port: number;
  let server: net.Server;

  before(async () => {
    server = net.createServer((socket) => {
      let buf = '';
      socket.on('error', () => {});
      socket.on('data', (d) => {
        buf += d.toString('latin1');
        for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
          const [, path] = buf.slice(0, end).split(' ');
          buf = buf.slice(end + 4);
          // The first answer waits, so the next requests queue behind it on the one connection.
          if (path in answers) setTimeout(() => socket.write(answers[path]), 150);
          else socket.write(`HTTP/1.1 200 OK\r\ncontent-length: ${path.length}\r\n\r\n${path}`);
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const upstream = (server.address() as net.AddressInfo).port;
    gw = await startRuntime(snapshot([httpListener(0, [vhost('v', ['*'], [route('raw', forward(['raw']), [match()])])])], [cluster('raw', [{ port: upstream }])]), { pools: { connections: 1 } });
    port = gw.port();
  });

  after(async () => {
    await gw?.close(500);
    server?.close();
  });

  for (const [path, method, status, body] of [
    ['/smuggle', 'GET', 200, 'ok'],
    ['/no-content', 'GET', 204, ''],
  ] as const) {
    test(`${method} ${path}: the requests queued behind it get their own answers`, async () => {
      const first = request(port, { path, method });
      await new Promise((r) => setTimeout(r, 50));
      const others = [request(port, { path: '/victim-1' }), request(port, { path: '/victim-2' })];
      const a = await first;
      assert.equal(a.status, status);
      assert.equal(a.body, body);
      const got = await Promise.all(others);
      assert.deepEqual(got.map((o) => `${o.status} ${o.body}`), ['200 /victim-1', '200 /victim-2'], 'another client got the trailing bytes of an answer');
    });
  }
});
