/**
 * meshgate's HTTP/1.1 upstream client over real sockets: keep-alive reuse, the stale-connection
 * retry, every response framing, interim answers, malformed answers, limits, timeouts, aborts and
 * back-pressure. Servers are node:http or raw `net` servers that misbehave on purpose.
 */

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import type tls from 'node:tls';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, test } from 'node:test';
import type { UpstreamClient, UpstreamHandler } from './client.js';
import { send, type Outcome } from '../../../test/support/upstream-client.js';
import { H1Client, type H1ClientOptions } from './h1-client.js';
import { upstreamTlsConnect } from './upstream-tls.js';
import { TLS_VERIFY_CODES } from '../http/local-reply.js';
import type { UpstreamTls } from '../../ir/types.js';
import { makeCerts } from '../../../test/support/tls-certs.js';

function options(port: number, extra: Partial<H1ClientOptions> = {}): H1ClientOptions {
  return { host: '127.0.0.1', port, connections: 8, connectTimeoutMs: 2000, keepAliveTimeoutMs: 4000, keepAliveMaxTimeoutMs: 60_000, keepAliveTimeoutThresholdMs: 1000, maxRequestsPerConnection: 0, tls: null, ...extra };
}

const servers: net.Server[] = [];
const clients: UpstreamClient[] = [];

after(async () => {
  for (const c of clients) await c.destroy();
  for (const s of servers) {
    (s as http.Server).closeAllConnections?.();
    s.close();
  }
});

async function listen<S extends net.Server>(server: S): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as net.AddressInfo).port;
}

function client(port: number, extra: Partial<H1ClientOptions> = {}): H1Client {
  const c = new H1Client(options(port, extra));
  clients.push(c);
  return c;
}

/** A raw server answering every request (read up to the end of its head) with `answer(n)`, n counting from 0 per server. */
async function rawServer(answer: (n: number, head: string, socket: net.Socket) => string | Buffer | null): Promise<{ port: number; connections: () => number }> {
  let n = 0;
  let conns = 0;
  const server = net.createServer((socket) => {
    conns++;
    let buf = '';
    socket.on('data', (d) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end !== -1; end = buf.indexOf('\r\n\r\n')) {
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        const a = answer(n++, head, socket);
        if (a !== null) socket.write(a);
      }
    });
    socket.on('error', () => {});
  });
  const port = await listen(server);
  return { port, connections: () => conns };
}

describe('H1Client: keep-alive and connections', () => {
  test('sequential requests reuse one kept-alive connection', async () => {
    let conns = 0;
    const server = http.createServer((req, res) => res.end(`hello ${req.url}`));
    server.on('connection', () => conns++);
    const c = client(await listen(server));
    for (let i = 0; i < 5; i++) {
      const r = await send(c, { path: `/${i}` });
      assert.equal(r.error, null);
      assert.equal(r.status, 200);
      assert.equal(r.body, `hello /${i}`);
    }
    assert.equal(conns, 1, `expected 1 upstream connection, got ${conns}`);
    assert.equal(c.stats.connected, 1);
  });

  test('a kept-alive connection the upstream closed before answering: the request is sent once more on a new one', async () => {
    // Each connection answers its first request, then closes when the second arrives (the race of
    // an upstream closing an idle connection as the gateway reuses it).
    const seen: number[] = [];
    const server = net.createServer((socket) => {
      let count = 0;
      socket.on('data', (d) => {
        for (let i = d.indexOf('\r\n\r\n'); i !== -1; i = d.indexOf('\r\n\r\n', i + 4)) {
          count++;
          if (count === 1) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok');
          else socket.destroy();
        }
      });
      seen.push(1);
    });
    const c = client(await listen(server));
    assert.equal((await send(c, { path: '/a' })).status, 200);
    const r = await send(c, { path: '/b' });
    assert.equal(r.error, null, `expected a retried 200, got ${r.error?.message}`);
    assert.equal(r.status, 200);
    assert.equal(seen.length, 2, 'the retry used a new connection');
  });

  test('no retry when the body was already streamed: UND_ERR_SOCKET', async () => {
    const server = net.createServer((socket) => {
      let count = 0;
      socket.on('data', (d) => {
        if (d.includes('\r\n\r\n')) count++;
        if (count === 1 && d.includes('\r\n\r\n')) socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
        else if (count > 1) socket.destroy();
      });
    });
    const c = client(await listen(server));
    assert.equal((await send(c, { path: '/a' })).status, 200);
    const r = await send(c, { path: '/b', method: 'POST', headers: ['host', 'x', 'content-length', '3'], body: Readable.from([Buffer.from('abc')]) });
    assert.equal(r.error?.code, 'UND_ERR_SOCKET');
  });

  test('a fresh connection closed before any answer byte fails with UND_ERR_SOCKET (not retried)', async () => {
    const s = await rawServer((_n, _h, socket) => {
      socket.destroy();
      return null;
    });
    const r = await send(client(s.port), { path: '/' });
    assert.equal(r.error?.code, 'UND_ERR_SOCKET');
    assert.equal(s.connections(), 1);
  });

  test('the connection limit queues requests; they run one after another on the one connection', async () => {
    let conns = 0;
    let inFlight = 0;
    let maxInFlight = 0;
    const server = http.createServer((_req, res) => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      setTimeout(() => {
        inFlight--;
        res.end('x');
      }, 20);
    });
    server.on('connection', () => conns++);
    const c = client(await listen(server), { connections: 1 });
    const all = await Promise.all(Array.from({ length: 5 }, (_, i) => send(c, { path: `/${i}` })));
    assert.deepEqual(all.map((r) => r.status), [200, 200, 200, 200, 200]);
    assert.equal(conns, 1);
    assert.equal(maxInFlight, 1);
  });

  test('maxRequestsPerConnection: the last request says Connection: close and the next uses a new connection', async () => {
    const heads: string[] = [];
    const s = await rawServer((_n, head) => {
      heads.push(head);
      return 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n';
    });
    const c = client(s.port, { maxRequestsPerConnection: 2 });
    for (let i = 0; i < 3; i++) assert.equal((await send(c, { path: '/' })).status, 200);
    assert.match(heads[1], /\r\nconnection: close/);
    assert.equal(s.connections(), 2);
  });

  test('Keep-Alive: timeout=1 (below the 1 s margin) closes the connection after the answer', async () => {
    const s = await rawServer(() => 'HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 0\r\n\r\n');
    const c = client(s.port);
    await send(c, { path: '/' });
    await send(c, { path: '/' });
    assert.equal(s.connections(), 2);
  });

  test('Connection: close and HTTP/1.0 answers are not reused', async () => {
    const a = await rawServer(() => 'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    const ca = client(a.port);
    await send(ca, { path: '/' });
    await send(ca, { path: '/' });
    assert.equal(a.connections(), 2);
    const b = await rawServer(() => 'HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n');
    const cb = client(b.port);
    await send(cb, { path: '/' });
    await send(cb, { path: '/' });
    assert.equal(b.connections(), 2);
  });

  test('an idle connection is closed after keepAliveTimeoutMs (the upstream hint is capped by keepAliveMaxTimeoutMs)', async () => {
    let closed = 0;
    const server = http.createServer((_req, res) => res.end('x'));
    server.keepAliveTimeout = 30_000;
    server.on('connection', (s: net.Socket) => s.on('close', () => closed++));
    // node:http sends `Keep-Alive: timeout=5`: honoured minus 1 s, capped at 100 ms here.
    const c = client(await listen(server), { keepAliveTimeoutMs: 100, keepAliveMaxTimeoutMs: 100 });
    await send(c, { path: '/' });
    const until = Date.now() + 3000;
    while (closed === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, 1, 'the gateway closed the idle connection');
    assert.equal(c.stats.connected, 0);
  });
});

describe('H1Client: response framing (RFC 9112 §6.3)', () => {
  const cases: { desc: string; answer: string; method?: string; status: number; body: string; trailers?: string[] }[] = [
    { desc: 'Content-Length', answer: 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello', status: 200, body: 'hello' },
    { desc: 'identical Content-Length values', answer: 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nhi', status: 200, body: 'hi' },
    { desc: 'chunked with extensions', answer: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n1\r\n!\r\n0\r\n\r\n', status: 200, body: 'hello!' },
    { desc: 'chunked with trailers', answer: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\ngrpc-status: 0\r\nx-t: 1\r\n\r\n', status: 200, body: 'hi', trailers: ['grpc-status', '0', 'x-t', '1'] },
    { desc: 'HEAD: no body despite Content-Length', method: 'HEAD', answer: 'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n', status: 200, body: '' },
    { desc: '204: no body', answer: 'HTTP/1.1 204 No Content\r\n\r\n', status: 204, body: '' },
    { desc: '304: no body despite Content-Length', answer: 'HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n', status: 304, body: '' },
    { desc: '100 Continue and 103 Early Hints are skipped', answer: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok', status: 201, body: 'ok' },
    { desc: 'empty reason phrase', answer: 'HTTP/1.1 200 \r\ncontent-length: 1\r\n\r\nx', status: 200, body: 'x' },
    { desc: 'no reason phrase at all', answer: 'HTTP/1.1 200\r\ncontent-length: 1\r\n\r\nx', status: 200, body: 'x' },
  ];
  for (const c of cases) {
    test(c.desc, async () => {
      const s = await rawServer(() => c.answer);
      const r = await send(client(s.port), { path: '/', method: c.method ?? 'GET' });
      assert.equal(r.error, null, `expected an answer, got ${r.error?.message}`);
      assert.equal(r.status, c.status);
      assert.equal(r.body, c.body);
      if (c.trailers !== undefined) assert.deepEqual((r.trailers as Buffer[]).map((b) => b.toString()), c.trailers);
    });
  }

  test('the same connection carries the next request after each bodyless answer', async () => {
    const s = await rawServer((n) => (n % 2 === 0 ? 'HTTP/1.1 204 No Content\r\n\r\n' : 'HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\nx'));
    const c = client(s.port);
    for (let i = 0; i < 4; i++) assert.equal((await send(c, { path: '/' })).error, null);
    assert.equal(s.connections(), 1);
  });

  test('close-delimited body: read until the upstream closes; the connection is not reused', async () => {
    const server = net.createServer((socket) => {
      socket.once('data', () => {
        socket.write('HTTP/1.1 200 OK\r\n\r\npart one, ');
        setTimeout(() => socket.end('part two'), 30);
      });
    });
    const r = await send(client(await listen(server)), { path: '/' });
    assert.equal(r.error, null);
    assert.equal(r.body, 'part one, part two');
  });

  test('a head split into 1-byte writes is parsed', async () => {
    const answer = 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-a: b\r\n\r\nabc';
    const server = net.createServer((socket) => {
      socket.setNoDelay(true);
      socket.once('data', async () => {
        for (const ch of answer) {
          socket.write(ch);
          await new Promise((r) => setImmediate(r));
        }
      });
    });
    const r = await send(client(await listen(server)), { path: '/' });
    assert.equal(r.error, null);
    assert.equal(r.headers['x-a'], 'b');
    assert.equal(r.body, 'abc');
  });

  const malformed: { desc: string; answer: string; code: string }[] = [
    { desc: 'Content-Length with Transfer-Encoding', answer: 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', code: 'HPE_UNEXPECTED_CONTENT_LENGTH' },
    { desc: 'conflicting Content-Length headers', answer: 'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd', code: 'HPE_UNEXPECTED_CONTENT_LENGTH' },
    { desc: 'conflicting Content-Length list', answer: 'HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabcd', code: 'HPE_UNEXPECTED_CONTENT_LENGTH' },
    { desc: 'signed Content-Length', answer: 'HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\nabc', code: 'HPE_UNEXPECTED_CONTENT_LENGTH' },
    { desc: 'Transfer-Encoding not ending with chunked', answer: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n', code: 'HPE_INVALID_TRANSFER_ENCODING' },
    { desc: 'bad status line', answer: 'HTTP/1.1 2OO OK\r\n\r\n', code: 'HPE_INVALID_STATUS' },
    { desc: 'not HTTP', answer: 'SSH-2.0-OpenSSH\r\n\r\n', code: 'HPE_INVALID_CONSTANT' },
    { desc: 'HTTP/2.0 in a status line', answer: 'HTTP/2.0 200 OK\r\n\r\n', code: 'HPE_INVALID_CONSTANT' },
    { desc: 'bare LF in the head', answer: 'HTTP/1.1 200 OK\nx: y\r\ncontent-length: 0\r\n\r\n', code: 'HPE_INVALID_STATUS' },
    { desc: 'obs-fold header line', answer: 'HTTP/1.1 200 OK\r\nx: a\r\n b\r\ncontent-length: 0\r\n\r\n', code: 'HPE_INVALID_HEADER_TOKEN' },
    { desc: 'space before the colon', answer: 'HTTP/1.1 200 OK\r\nx : a\r\ncontent-length: 0\r\n\r\n', code: 'HPE_INVALID_HEADER_TOKEN' },
    { desc: 'control character in a value', answer: 'HTTP/1.1 200 OK\r\nx: a\x01b\r\ncontent-length: 0\r\n\r\n', code: 'HPE_INVALID_HEADER_TOKEN' },
    { desc: 'invalid chunk size', answer: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n', code: 'HPE_INVALID_CHUNK_SIZE' },
    { desc: 'chunk data longer than its size', answer: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n', code: 'HPE_STRICT' },
    { desc: 'huge chunk size', answer: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nfffffffffffffffff\r\n', code: 'HPE_INVALID_CHUNK_SIZE' },
    { desc: '101 never asked for', answer: 'HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n', code: 'UND_ERR_INFO' },
    { desc: 'head larger than 16 KiB', answer: `HTTP/1.1 200 OK\r\nx: ${'a'.repeat(17 * 1024)}\r\n\r\n`, code: 'UND_ERR_HEADERS_OVERFLOW' },
    { desc: 'bytes after a complete answer', answer: 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n', code: '' },
  ];
  for (const c of malformed) {
    test(`refused: ${c.desc}${c.code === '' ? ' (connection dropped, not reused)' : ` -> ${c.code}`}`, async () => {
      const s = await rawServer(() => c.answer);
      const cl = client(s.port);
      const r = await send(cl, { path: '/' });
      if (c.code === '') {
        assert.equal(r.status, 200);
        await send(cl, { path: '/' });
        assert.equal(s.connections(), 2, 'the connection that carried extra bytes is not reused');
        return;
      }
      assert.equal(r.error?.code, c.code, `expected ${c.code}, got ${r.error?.code ?? `status ${r.status}`}`);
    });
  }
});

describe('H1Client: request bodies', () => {
  test('a Content-Length body streams as is; a body without one is sent chunked', async () => {
    const got: { te?: string; cl?: string; body: string }[] = [];
    const server = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        got.push({ te: req.headers['transfer-encoding'], cl: req.headers['content-length'], body });
        res.end('ok');
      });
    });
    const c = client(await listen(server));
    await send(c, { path: '/', method: 'POST', headers: ['host', 'x', 'content-length', '6'], body: Readable.from([Buffer.from('abc'), Buffer.from('def')]) });
    await send(c, { path: '/', method: 'POST', headers: ['host', 'x'], body: Readable.from([Buffer.from('ghi'), Buffer.from('jkl')]) });
    await send(c, { path: '/', method: 'POST', headers: ['host', 'x'], body: Buffer.from('buffered') });
    await send(c, { path: '/', method: 'POST', headers: ['host', 'x'], body: null });
    assert.deepEqual(got, [
      { te: undefined, cl: '6', body: 'abcdef' },
      { te: 'chunked', cl: undefined, body: 'ghijkl' },
      { te: undefined, cl: '8', body: 'buffered' },
      { te: undefined, cl: '0', body: '' },
    ]);
  });

  test('the request head and the body bytes already there go out in one write', async () => {
    const firstReads: string[] = [];
    const server = net.createServer((socket) => {
      socket.once('data', (d) => {
        firstReads.push(d.toString('latin1'));
        socket.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
      });
    });
    const c = client(await listen(server));
    const body = new Readable({ read() {} });
    body.push(Buffer.from('payload!'));
    body.push(null);
    await send(c, { path: '/', method: 'POST', headers: ['host', 'x', 'content-length', '8'], body });
    assert.match(firstReads[0], /\r\n\r\npayload!$/);
  });

  test('an answer before the whole body was sent is relayed; the body is drained, the connection not reused', async () => {
    let conns = 0;
    const server = http.createServer((_req, res) => {
      res.writeHead(413, { connection: 'keep-alive' });
      res.end('too big');
    });
    server.on('connection', () => conns++);
    const c = client(await listen(server));
    let pulled = 0;
    const total = 4 * 1024 * 1024;
    const body = new Readable({
      read() {
        if (pulled >= total) return void this.push(null);
        pulled += 64 * 1024;
        setTimeout(() => this.push(Buffer.alloc(64 * 1024, 'x')), 2);
      },
    });
    const r = await send(c, { path: '/', method: 'POST', headers: ['host', 'x', 'content-length', String(total)], body });
    assert.equal(r.status, 413);
    assert.equal(r.body, 'too big');
    const until = Date.now() + 10_000;
    while (!body.readableEnded && Date.now() < until) await new Promise((res) => setTimeout(res, 20));
    assert.equal(body.readableEnded, true, 'the rest of the body was read and dropped');
    assert.equal((await send(c, { path: '/' })).status, 413);
    assert.equal(conns, 2, 'the connection that had an unfinished body is not reused');
  });

  test('a body shorter than its Content-Length fails with UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', async () => {
    const server = http.createServer((req) => req.resume());
    const r = await send(client(await listen(server)), { path: '/', method: 'POST', headers: ['host', 'x', 'content-length', '10'], body: Readable.from([Buffer.from('abc')]) });
    assert.equal(r.error?.code, 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH');
  });

  test('a header value with CR/LF, or a target with a space or CR/LF, is refused before anything is sent', async () => {
    const heads: string[] = [];
    const s = await rawServer((_n, head) => {
      heads.push(head);
      return 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n';
    });
    const c = client(s.port);
    assert.equal((await send(c, { path: '/', headers: ['host', 'x', 'x-evil', 'a\r\nx-injected: 1'] })).error?.code, 'UND_ERR_INVALID_ARG');
    assert.equal((await send(c, { path: '/a b' })).error?.code, 'UND_ERR_INVALID_ARG');
    assert.equal((await send(c, { path: '/a\r\nx-injected: 1' })).error?.code, 'UND_ERR_INVALID_ARG');
    assert.deepEqual(heads, []);
  });
});

describe('H1Client: TLS origination', () => {
  const haveOpenssl = (() => {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  })();
  const skip = haveOpenssl ? false : 'needs openssl (apt-get install openssl) to make test certificates';

  function tlsOf(caPem: string): UpstreamTls {
    return { mode: 'SIMPLE', caCertificates: { kind: 'inline', pem: caPem, secret: 'default/up-ca' }, clientCertificate: null, sni: 'up.test', subjectAltNames: ['up.test'], insecureSkipVerify: false };
  }

  test('the cluster SNI is sent, the chain and SANs are verified, the TLS session is resumed on the next connection', { skip }, async () => {
    const [cert, other] = makeCerts(['up.test', 'other.test']);
    const snis: (string | false)[] = [];
    const reused: boolean[] = [];
    const server = https.createServer({ cert: cert.certChain, key: cert.privateKey }, (req, res) => res.end(`tls ${req.url}`));
    server.on('secureConnection', (s: tls.TLSSocket) => {
      snis.push((s as tls.TLSSocket & { servername: string | false }).servername);
      reused.push(s.isSessionReused());
    });
    const port = await listen(server);
    // One request per connection: the second one opens a new TLS connection.
    const c = client(port, { maxRequestsPerConnection: 1, tls: upstreamTlsConnect(tlsOf(cert.certChain)) });
    for (let i = 0; i < 3; i++) {
      const r = await send(c, { path: `/${i}` });
      assert.equal(r.error, null, r.error?.message);
      assert.equal(r.body, `tls /${i}`);
    }
    assert.deepEqual(snis, ['up.test', 'up.test', 'up.test']);
    assert.equal(reused[0], false);
    assert.ok(reused.slice(1).some((x) => x), `a later connection resumed the TLS session (${reused.join(', ')})`);
    const bad = await send(client(port, { tls: upstreamTlsConnect(tlsOf(other.certChain)) }), { path: '/' });
    assert.ok(bad.error !== null && TLS_VERIFY_CODES.has(String(bad.error.code)), `a verification code, got ${bad.error?.code}`);
  });
});

describe('H1Client: failures, timeouts, aborts', () => {
  test('connection refused: ECONNREFUSED', async () => {
    const s = net.createServer();
    const port = await listen(s);
    s.close();
    const r = await send(client(port), { path: '/' });
    assert.equal(r.error?.code, 'ECONNREFUSED');
  });

  test('connect timeout (a TLS handshake that never completes): UND_ERR_CONNECT_TIMEOUT', async () => {
    // A TCP server that accepts and never speaks: the TLS handshake hangs.
    const server = net.createServer(() => {});
    const port = await listen(server);
    const c = client(port, { connectTimeoutMs: 200, tls: { options: { rejectUnauthorized: false }, failure: null, servername: '', perConnection: null, alpn: null } });
    const t0 = Date.now();
    const r = await send(c, { path: '/' });
    assert.equal(r.error?.code, 'UND_ERR_CONNECT_TIMEOUT');
    assert.ok(Date.now() - t0 < 3000);
  });

  test('abort while queued, and abort mid-response, end the request with the reason', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first');
      // never ends
    });
    const c = client(await listen(server), { connections: 1 });
    const reason = Object.assign(new Error('gone'), { code: 'MG_ERR_DOWNSTREAM_CLOSED' });
    let abortFirst: ((e?: Error) => void) | null = null;
    const first = new Promise<Outcome>((resolve) => {
      const h: UpstreamHandler = {
        onConnect(a) {
          abortFirst = a;
        },
        onHeaders() {
          return true;
        },
        onData() {
          setImmediate(() => abortFirst!(reason));
          return true;
        },
        onComplete() {
          resolve({ status: 0, headers: {}, body: '', trailers: null, error: null });
        },
        onError(err) {
          resolve({ status: 0, headers: {}, body: '', trailers: null, error: err });
        },
      };
      c.dispatch({ path: '/1', method: 'GET', headers: ['host', 'x'], body: null }, h);
    });
    let abortQueued: ((e?: Error) => void) | null = null;
    const queued = send(c, { path: '/2' }, (a) => (abortQueued = a));
    abortQueued!(reason);
    assert.equal((await queued).error, reason);
    assert.equal((await first).error, reason);
    assert.equal(c.stats.pending, 0);
    assert.equal(c.stats.running, 0);
  });

  test('back-pressure: onData returning false pauses reading until resume()', async () => {
    const big = Buffer.alloc(8 * 1024 * 1024, 'a');
    let finished = false;
    const server = http.createServer((_req, res) => {
      res.end(big, () => (finished = true));
    });
    const c = client(await listen(server));
    let received = 0;
    let resume: (() => void) | null = null;
    const done = new Promise<void>((resolve, reject) => {
      c.dispatch({ path: '/', method: 'GET', headers: ['host', 'x'], body: null }, {
        onConnect() {},
        onHeaders(_s, _h, r) {
          resume = r;
          return true;
        },
        onData(chunk) {
          received += chunk.length;
          return false;
        },
        onComplete: () => resolve(),
        onError: reject,
      });
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(received < big.length / 2, `paused reader took ${received} bytes`);
    assert.equal(finished, false, 'the upstream is held back');
    const until = Date.now() + 20_000;
    while (received < big.length && Date.now() < until) {
      resume!();
      await new Promise((r) => setImmediate(r));
    }
    await done;
    assert.equal(received, big.length);
  });

  test('close() waits for the request in flight, then closes every connection', async () => {
    const server = http.createServer((_req, res) => setTimeout(() => res.end('late'), 100));
    const c = new H1Client(options(await listen(server)));
    const pending = send(c, { path: '/' });
    await new Promise((r) => setTimeout(r, 20));
    await c.close();
    assert.equal((await pending).body, 'late');
    assert.equal(c.closed, true);
    const after = await send(c, { path: '/' });
    assert.equal(after.error?.code, 'UND_ERR_CLOSED');
  });
});

describe('H1Client: bytes after a complete answer never answer another request (response desync)', () => {
  // What an upstream (or an attacker it echoes) puts after the end of an answer, shaped as an answer.
  const smuggled = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPWNED!';
  const cases: { name: string; method: string; answer: string; status: number; body: string }[] = [
    { name: 'a body on a HEAD answer', method: 'HEAD', answer: `HTTP/1.1 200 OK\r\ncontent-length: ${smuggled.length}\r\n\r\n${smuggled}`, status: 200, body: '' },
    { name: 'a body on a 204', method: 'GET', answer: `HTTP/1.1 204 No Content\r\n\r\n${smuggled}`, status: 204, body: '' },
    { name: 'a body on a 304', method: 'GET', answer: `HTTP/1.1 304 Not Modified\r\n\r\n${smuggled}`, status: 304, body: '' },
    { name: 'more bytes than Content-Length', method: 'GET', answer: `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok${smuggled}`, status: 200, body: 'ok' },
    { name: 'a second answer after a chunked one in the same write', method: 'GET', answer: `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n${smuggled}`, status: 200, body: 'ok' },
  ];
  for (const k of cases) {
    test(`${k.name}: the queued request gets its own answer from a fresh connection`, async () => {
      // One connection, two requests: the second waits in the queue while the first is answered
      // with trailing bytes in the same write.
      const s = await rawServer((n, head) => {
        if (n === 0) return k.answer;
        const path = head.split(' ')[1];
        const body = `real ${path}`;
        return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
      });
      const c = client(s.port, { connections: 1 });
      const [a, b] = await Promise.all([send(c, { path: '/alice', method: k.method }), send(c, { path: '/bob' })]);
      assert.equal(a.error, null);
      assert.equal(a.status, k.status);
      assert.equal(a.body, k.body);
      assert.equal(b.error, null, `bob failed: ${b.error?.message}`);
      assert.equal(b.body, 'real /bob', 'the queued request was answered by the trailing bytes of another answer');
      assert.equal(s.connections(), 2, 'the connection with trailing bytes is not reused');
    });
  }

  test('an answer that ends exactly at the end of the chunk still hands the connection to the queued request', async () => {
    const s = await rawServer((_n, head) => {
      const body = `real ${head.split(' ')[1]}`;
      return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
    });
    const c = client(s.port, { connections: 1 });
    const out = await Promise.all([send(c, { path: '/1' }), send(c, { path: '/2' }), send(c, { path: '/3' })]);
    assert.deepEqual(out.map((o) => o.body), ['real /1', 'real /2', 'real /3']);
    assert.equal(s.connections(), 1);
  });

  test('a request dispatched from onComplete (as the circuit breaker does) waits for the read to end, then reuses the connection', async () => {
    const s = await rawServer((_n, head) => {
      const body = `real ${head.split(' ')[1]}`;
      return `HTTP/1.1 200 OK\r\ncontent-length: ${body.length}\r\n\r\n${body}`;
    });
    const c = client(s.port);
    const bodies: string[] = [];
    await new Promise<void>((resolve, reject) => {
      const next = (i: number): void => {
        let body = '';
        c.dispatch({ method: 'GET', path: `/${i}`, headers: ['host', 'x'], body: null }, {
          onConnect() {},
          onHeaders: () => true,
          onData: (d) => {
            body += d.toString();
            return true;
          },
          onComplete() {
            bodies.push(body);
            if (i < 5) next(i + 1);
            else resolve();
          },
          onError: reject,
        });
      };
      next(1);
    });
    assert.deepEqual(bodies, ['real /1', 'real /2', 'real /3', 'real /4', 'real /5']);
    assert.equal(s.connections(), 1, 'no extra connection for a socket about to be free');
  });
});

describe('H1Client: the stale-connection retry never repeats a non-idempotent request', () => {
  /**
   * Each connection answers GETs; the first request with `method` it receives (over all
   * connections) is read, then the connection is destroyed without an answer (a crash, or an idle
   * close racing the reuse); later ones get a 201. `count()`: how many such requests arrived.
   */
  async function closingServer(method: string): Promise<{ port: number; count: () => number }> {
    let count = 0;
    const s = await rawServer((_n, head, socket) => {
      if (head.startsWith('GET ')) return 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n';
      if (!head.startsWith(`${method} `)) return 'HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n';
      count++;
      if (count === 1) {
        // Let the body (sent in the same write) arrive, then close.
        setTimeout(() => socket.destroy(), 20);
        return null;
      }
      return 'HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n';
    });
    return { port: s.port, count: () => count };
  }

  test('a POST on a kept-alive connection closed after it was read is delivered once and fails with UND_ERR_SOCKET', async () => {
    const s = await closingServer('POST');
    const c = client(s.port, { connections: 1 });
    assert.equal((await send(c, { path: '/warm' })).status, 200);
    const r = await send(c, { path: '/pay', method: 'POST', body: Buffer.from('charge=100') });
    assert.equal(r.error?.code, 'UND_ERR_SOCKET');
    assert.equal(s.count(), 1, 'the POST was delivered twice');
  });

  test('PATCH (not idempotent) is not sent again either', async () => {
    const s = await closingServer('PATCH');
    const c = client(s.port, { connections: 1 });
    assert.equal((await send(c, { path: '/warm' })).status, 200);
    const r = await send(c, { path: '/x', method: 'PATCH', body: Buffer.from('{}') });
    assert.equal(r.error?.code, 'UND_ERR_SOCKET');
    assert.equal(s.count(), 1);
  });

  for (const method of ['PUT', 'DELETE', 'OPTIONS']) {
    test(`${method} (idempotent, RFC 9110 §9.2.2) is sent once more on a new connection`, async () => {
      const s = await closingServer(method);
      const c = client(s.port, { connections: 1 });
      assert.equal((await send(c, { path: '/warm' })).status, 200);
      const r = await send(c, { path: '/x', method, body: method === 'PUT' ? Buffer.from('v') : null });
      assert.equal(r.error, null, r.error?.message);
      assert.equal(r.status, 201);
      assert.equal(s.count(), 2);
    });
  }

  test('a POST with an Idempotency-Key header is sent once more', async () => {
    const s = await closingServer('POST');
    const c = client(s.port, { connections: 1 });
    assert.equal((await send(c, { path: '/warm' })).status, 200);
    const r = await send(c, { path: '/pay', method: 'POST', headers: ['host', 'x', 'Idempotency-Key', '"8e03978e-40d5"'], body: Buffer.from('charge=100') });
    assert.equal(r.error, null, r.error?.message);
    assert.equal(r.status, 201);
    assert.equal(s.count(), 2);
  });
});

describe('H1Client: HTTP/1.0 requests (ingress-nginx proxy-http-version "1.0")', () => {
  test('the request line says HTTP/1.0, no Connection options go out, and every request gets its own connection', async () => {
    const heads: string[] = [];
    const s = await rawServer((_n, head) => {
      heads.push(head);
      return 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok';
    });
    const c = client(s.port);
    for (let i = 0; i < 2; i++) {
      const r = await send(c, { path: `/p${i}`, headers: ['host', 'a', 'connection', 'keep-alive', 'keep-alive', 'timeout=5'], http10: true });
      assert.equal(r.error, null);
      assert.equal(r.body, 'ok');
    }
    assert.deepEqual(heads.map((h) => h.split('\r\n')[0]), ['GET /p0 HTTP/1.0', 'GET /p1 HTTP/1.0']);
    for (const h of heads) assert.doesNotMatch(h, /\r\n(connection|keep-alive):/i);
    assert.equal(s.connections(), 2, 'no keep-alive with HTTP/1.0');
  });

  test('a streamed body without Content-Length is read whole and sent with one; over the bound it fails with MG_ERR_BODY_TOO_LARGE before any connection', async () => {
    let received = '';
    const server = http.createServer((req, res) => {
      received = `${req.httpVersion} ${req.headers['content-length']} ${req.headers['transfer-encoding'] ?? '-'}`;
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => res.end(String(n)));
    });
    let conns = 0;
    server.on('connection', () => conns++);
    const c = client(await listen(server));
    const body = Readable.from([Buffer.alloc(3000, 1), Buffer.alloc(2000, 2)]);
    const r = await send(c, { path: '/up', method: 'POST', headers: ['host', 'a'], body, http10: true });
    assert.equal(r.error, null);
    assert.equal(r.body, '5000');
    assert.equal(received, '1.0 5000 -');
    const before = conns;
    const big = await send(c, { path: '/up', method: 'POST', headers: ['host', 'a'], body: Readable.from([Buffer.alloc(3000, 1), Buffer.alloc(3000, 2)]), http10: true, http10BodyLimit: 4096 });
    assert.equal(big.error?.code, 'MG_ERR_BODY_TOO_LARGE');
    assert.equal(conns, before, 'no connection was opened for it');
  });
});
