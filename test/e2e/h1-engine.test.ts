/**
 * HTTP/1.1 engine behaviour over raw sockets (issue 11): pipelined requests answered in order,
 * HEAD/204/304 without a body on a connection that stays usable, response framing per RFC 9112 §6.3
 * (chunked when the length is unknown; close-delimited for HTTP/1.0), HTTP/1.0 keep-alive,
 * `Expect: 100-continue` answered before the body is sent, request bodies chunked with trailers,
 * and the head written with the first body bytes. Runs against the engine MESHGATE_HTTP1_ENGINE
 * names (default: meshgate's own), so both engines must pass it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { sendRaw } from '../security/harness.js';

/** An upstream whose answers the path decides: /delay/<ms>, /status/<code>, /nolength, /echo (body and trailers). */
async function startUpstream(): Promise<{ port: number; seen: string[]; close(): Promise<void> }> {
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = req.url ?? '/';
      const body = Buffer.concat(chunks);
      if (url.startsWith('/delay/')) {
        setTimeout(() => {
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(url.length) });
          res.end(url);
        }, Number(url.split('/')[2]));
      } else if (url.startsWith('/status/')) {
        const status = Number(url.split('/')[2]);
        res.writeHead(status, status === 304 || status === 204 ? {} : { 'content-length': '5' });
        res.end(status === 304 || status === 204 ? undefined : 'hello');
      } else if (url === '/head') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '123' });
        res.end();
      } else if (url === '/nolength') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('part one, ');
        setTimeout(() => res.end('part two'), 20);
      } else {
        const out = JSON.stringify({ method: req.method, url, body: body.toString('latin1'), length: req.headers['content-length'] ?? null, te: req.headers['transfer-encoding'] ?? null });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(out)) });
        res.end(out);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    seen,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Splits raw HTTP/1.1 responses: status, headers (lowercase) and body per response (Content-Length or chunked). */
function responses(text: string, heads: ('HEAD' | 'GET')[] = []): { status: number; headers: Record<string, string>; body: string }[] {
  const out: { status: number; headers: Record<string, string>; body: string }[] = [];
  let rest = text;
  while (rest.startsWith('HTTP/1.1 ')) {
    const end = rest.indexOf('\r\n\r\n');
    if (end === -1) break;
    const lines = rest.slice(0, end).split('\r\n');
    const status = Number(lines[0].split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
    rest = rest.slice(end + 4);
    let body = '';
    const noBody = heads[out.length] === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
    if (noBody) body = '';
    else if (headers['transfer-encoding'] === 'chunked') {
      for (;;) {
        const nl = rest.indexOf('\r\n');
        const size = parseInt(rest.slice(0, nl), 16);
        rest = rest.slice(nl + 2);
        if (size === 0) {
          rest = rest.slice(rest.indexOf('\r\n') + 2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      body = rest.slice(0, n);
      rest = rest.slice(n);
    } else {
      body = rest;
      rest = '';
    }
    out.push({ status, headers, body });
  }
  return out;
}

describe('HTTP/1.1 engine', { timeout: 60_000 }, () => {
  let up: Awaited<ReturnType<typeof startUpstream>>;
  let gw: RuntimeHarness;
  let port: number;
  const H = 'Host: engine.test\r\n';

  before(async () => {
    up = await startUpstream();
    gw = await startRuntime(snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])]));
    port = gw.port();
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  test('pipelined requests are answered in order, even when the first is the slowest', async () => {
    const r = await sendRaw(port, `GET /delay/300 HTTP/1.1\r\n${H}\r\nGET /delay/0 HTTP/1.1\r\n${H}\r\nGET /delay/100 HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 5000);
    const got = responses(r.text);
    assert.deepEqual(got.map((x) => x.body), ['/delay/300', '/delay/0', '/delay/100'], r.text);
    assert.ok(r.closed, 'closed after the request that said Connection: close');
  });

  test('HEAD, 204 and 304 carry no body, and the connection goes on', async () => {
    const r = await sendRaw(port, `HEAD /head HTTP/1.1\r\n${H}\r\nGET /status/204 HTTP/1.1\r\n${H}\r\nGET /status/304 HTTP/1.1\r\n${H}\r\nGET /echo HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 5000);
    const got = responses(r.text, ['HEAD']);
    assert.deepEqual(got.map((x) => x.status), [200, 204, 304, 200], r.text);
    assert.equal(got[0].headers['content-length'], '123', 'HEAD keeps the length of the GET answer');
    assert.equal(JSON.parse(got[3].body).url, '/echo', 'the request after them was read as a request');
    assert.equal(got[1].headers['transfer-encoding'], undefined);
  });

  test('an answer without a length is chunked for HTTP/1.1 and close-delimited for HTTP/1.0', async () => {
    const r11 = await sendRaw(port, `GET /nolength HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 5000);
    const [a] = responses(r11.text);
    assert.equal(a.headers['transfer-encoding'], 'chunked', r11.text);
    assert.equal(a.body, 'part one, part two');
    const r10 = await sendRaw(port, `GET /nolength HTTP/1.0\r\n${H}Connection: keep-alive\r\n\r\n`, 5000);
    const [b] = responses(r10.text);
    assert.equal(b.headers['transfer-encoding'], undefined, r10.text);
    assert.equal(b.headers['content-length'], undefined);
    assert.equal(b.body, 'part one, part two');
    assert.ok(r10.closed, 'the body ends with the connection');
  });

  test('HTTP/1.0 keep-alive: two requests on one connection', async () => {
    const r = await sendRaw(port, `GET /echo HTTP/1.0\r\n${H}Connection: keep-alive\r\n\r\nGET /echo2 HTTP/1.0\r\n${H}\r\n`, 5000);
    const got = responses(r.text);
    assert.deepEqual(got.map((x) => JSON.parse(x.body).url), ['/echo', '/echo2'], r.text);
    assert.match(r.text, /connection: keep-alive/i);
    assert.ok(r.closed, 'closed after the HTTP/1.0 request without keep-alive');
  });

  test('a chunked request body with trailers reaches the upstream whole', async () => {
    const r = await sendRaw(port, `POST /echo HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n`, 5000);
    const [a] = responses(r.text);
    assert.equal(a.status, 200, r.text);
    assert.equal(JSON.parse(a.body).body, 'hello world');
  });

  test('Expect: 100-continue is answered before the body is sent', async () => {
    const socket = net.connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
    try {
      socket.write(`POST /echo HTTP/1.1\r\n${H}Content-Length: 4\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`);
      const deadline = Date.now() + 3000;
      while (!text.includes('100 Continue') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.match(text, /^HTTP\/1\.1 100 Continue\r\n\r\n/, `no 100 Continue before the body, got ${JSON.stringify(text)}`);
      socket.write('ping');
      await new Promise((r) => socket.once('close', r));
      assert.equal(JSON.parse(text.slice(text.indexOf('{'))).body, 'ping');
    } finally {
      socket.destroy();
    }
  });

  test('keep-alive: 50 requests on one connection, one at a time', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<number>();
    try {
      for (let i = 0; i < 50; i++) {
        const local = await new Promise<number>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: `/ka${i}`, agent, headers: { host: 'engine.test' } }, (res) => {
            res.resume();
            res.on('end', () => resolve(req.socket!.localPort!));
          });
          req.on('error', reject);
        });
        ports.add(local);
      }
      assert.equal(ports.size, 1, `requests used ${ports.size} connections`);
    } finally {
      agent.destroy();
    }
  });

  test('the head of a response goes out with its body (one segment for a small answer)', async () => {
    // A proxied small answer: head and body must arrive together, never the head alone first.
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    try {
      socket.setNoDelay(true);
      socket.write(`GET /echo HTTP/1.1\r\n${H}\r\n`);
      const deadline = Date.now() + 3000;
      while (!Buffer.concat(chunks).toString('latin1').includes('"url"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
      assert.ok(chunks[0].toString('latin1').includes('"url"'), `the first segment held only ${JSON.stringify(chunks[0].toString('latin1').slice(0, 80))}...`);
    } finally {
      socket.destroy();
    }
  });
  test('an Upgrade meshgate does not tunnel (h2c, as curl --http2 sends) is served as the plain request it is, body and keep-alive included', { skip: process.env.MESHGATE_HTTP1_ENGINE === 'node' ? 'node:http hands every Upgrade to the tunnel code (README, HTTP/1.1 engine)' : false }, async () => {
    const h2c = `Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n`;
    const r = await sendRaw(port, `POST /echo HTTP/1.1\r\n${H}${h2c}Content-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\n${H}Connection: close\r\n\r\n`, 5000);
    const got = responses(r.text);
    assert.equal(got.length, 2, r.text);
    assert.equal(got[0].status, 200);
    assert.equal(got[0].headers.upgrade, undefined, 'no switch is announced');
    const echoed = JSON.parse(got[0].body) as { method: string; body: string; length: string | null };
    assert.deepEqual([echoed.method, echoed.body, echoed.length], ['POST', 'hello', '5']);
    assert.equal(JSON.parse(got[1].body).url, '/after');
  });

  test('the upstream never sees Upgrade or HTTP2-Settings of an untunnelled upgrade', { skip: process.env.MESHGATE_HTTP1_ENGINE === 'node' ? 'node:http hands every Upgrade to the tunnel code' : false }, async () => {
    const seen = new Promise<http.IncomingHttpHeaders>((resolve) => {
      const server = http.createServer((req, res) => {
        resolve(req.headers);
        res.end('ok');
        server.close();
      });
      server.listen(0, '127.0.0.1', async () => {
        const upPort = (server.address() as net.AddressInfo).port;
        const gw2 = await startRuntime(snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up2']))])])], [cluster('up2', [{ port: upPort }])]));
        try {
          await sendRaw(gw2.port(), `GET / HTTP/1.1\r\n${H}Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n`, 5000);
        } finally {
          await gw2.close();
        }
      });
    });
    const headers = await seen;
    assert.equal(headers.upgrade, undefined);
    assert.equal(headers['http2-settings'], undefined);
    assert.ok(!/upgrade/i.test(String(headers.connection ?? '')), `connection: ${String(headers.connection)}`);
  });
});
