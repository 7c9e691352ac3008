/**
 * HTTP/2 downstream with real clients (curl, nghttp, node:http2, node:tls): ALPN `h2` with
 * `http/1.1` still offered on TLS listeners, h2c with prior knowledge on plaintext ones (a preface
 * split into single bytes included), bodies both ways with back-pressure, and a graceful GOAWAY
 * when a listener is removed by a reload.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { startEchoServer, type EchoServer } from '../../src/demo/echo-server.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { chain, cluster, forward, httpListener, httpsListener, route, snapshot, tlsContext, vhost } from '../support/ir-builders.js';
import { httpsRequest, rawExchange, request, within } from '../support/http-client.js';
import { closeH2Sessions, h2Request } from '../support/h2-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { freePort } from '../helpers/gateway.js';
import { makeCerts, type TestCert } from '../support/tls-certs.js';
import { needs } from '../support/requires.js';

function run(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 15_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) =>
      resolve({ stdout, stderr, code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1 }),
    );
  });
}

/** The ALPN protocol a TLS handshake offering `offer` ends with (false: none). */
function alpnOf(port: number, offer: string[] | undefined): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, servername: 'h2.example.com', rejectUnauthorized: false, ...(offer ? { ALPNProtocols: offer } : {}) });
    s.on('secureConnect', () => {
      const p = s.alpnProtocol ?? false;
      s.destroy();
      resolve(p);
    });
    s.on('error', reject);
  });
}

describe('HTTP/2 downstream', { timeout: 90_000 }, () => {
  let cert: TestCert;
  let echo: EchoServer;
  let gw: RuntimeHarness;
  let plain: number;
  let secure: number;

  let ports: [number, number];

  function ir(withPlain = true): IRSnapshot {
    const vh = [vhost('all', ['*'], [route('all', forward(['echo']))])];
    const listeners = [
      httpsListener(ports[1], [chain('tls', vh, [], tlsContext([{ secret: 'default/h2', serverNames: [], certChain: cert.certChain, privateKey: cert.privateKey }]))]),
    ];
    if (withPlain) listeners.unshift(httpListener(ports[0], vh));
    return snapshot(listeners, [cluster('echo', [{ port: echo.port }])]);
  }

  before(async () => {
    [cert] = makeCerts(['h2.example.com']);
    ports = [await freePort(), await freePort()];
    echo = await startEchoServer({ name: 'echo' });
    gw = await startRuntime(ir());
    plain = gw.port(0);
    secure = gw.port(1);
  });
  after(async () => {
    closeH2Sessions();
    await gw?.close(500);
    await echo?.close();
  });

  test('ALPN: h2 preferred, http/1.1 still offered, no ALPN means HTTP/1.1', async () => {
    assert.equal(await alpnOf(secure, ['h2', 'http/1.1']), 'h2');
    assert.equal(await alpnOf(secure, ['http/1.1', 'h2']), 'h2', 'the server picks from its own order');
    assert.equal(await alpnOf(secure, ['http/1.1']), 'http/1.1');
    assert.equal(await alpnOf(secure, undefined), false);
    const r = await httpsRequest(secure, { servername: 'h2.example.com', path: '/h1-over-tls' });
    assert.equal(r.status, 200, `HTTP/1.1 over TLS without ALPN: expected 200, got ${r.status}`);
    assert.equal(r.json?.path, '/h1-over-tls');
  });

  test('curl --http2 over TLS and --http2-prior-knowledge on plaintext', { skip: needs('curl') }, async () => {
    const viaTls = await run('curl', ['-sS', '-k', '--http2', '-w', '\n%{http_version} %{http_code}', '--resolve', `h2.example.com:${secure}:127.0.0.1`, `https://h2.example.com:${secure}/tls?x=1`]);
    assert.match(viaTls.stdout, /\n2 200$/, `curl --http2: expected HTTP/2 200, got ${viaTls.stdout.slice(-40)} ${viaTls.stderr}`);
    assert.equal((JSON.parse(viaTls.stdout.split('\n')[0]) as { url: string }).url, '/tls?x=1');
    const h2c = await run('curl', ['-sS', '--http2-prior-knowledge', '-w', '\n%{http_version} %{http_code}', `http://127.0.0.1:${plain}/h2c`]);
    assert.match(h2c.stdout, /\n2 200$/, `curl h2c: expected HTTP/2 200, got ${h2c.stdout.slice(-40)} ${h2c.stderr}`);
    const h1 = await run('curl', ['-sS', '--http1.1', '-w', '\n%{http_version} %{http_code}', `http://127.0.0.1:${plain}/h1`]);
    assert.match(h1.stdout, /\n1\.1 200$/, 'plain HTTP/1.1 still works on the same port');
  });

  test('nghttp: several streams on one connection', { skip: needs('nghttp') }, async () => {
    const r = await run('nghttp', ['-nv', '-m', '5', `http://127.0.0.1:${plain}/multi`]);
    assert.equal(r.code, 0, `nghttp failed: ${r.stderr}`);
    const statuses = r.stdout.split('\n').filter((l) => /:status: 200/.test(l)).length;
    assert.equal(statuses, 5, `expected 5 responses with :status 200, got ${statuses}`);
    assert.match(r.stdout, /SETTINGS_MAX_CONCURRENT_STREAMS\(0x03\):100/, 'the gateway advertises 100 concurrent streams');
  });

  test('h2c preface and HTTP/1.1 request split into 1-byte writes are both recognised', async () => {
    const bytewise = (payload: Buffer): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const s = net.connect(plain, '127.0.0.1');
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        s.on('error', reject);
        s.on('connect', async () => {
          s.setNoDelay(true);
          for (const b of payload) {
            s.write(Buffer.from([b]));
            await new Promise((r) => setTimeout(r, 1));
          }
          setTimeout(() => {
            s.destroy();
            resolve(Buffer.concat(chunks));
          }, 300);
        });
      });
    // Preface + an empty SETTINGS frame: the server must answer with its own SETTINGS frame (type 4).
    const preface = Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);
    const h2 = await within(5000, bytewise(preface), 'h2 preface');
    assert.ok(h2.length >= 9 && h2[3] === 4, `expected a SETTINGS frame first, got ${h2.subarray(0, 16).toString('hex')}`);
    const h1 = await within(5000, bytewise(Buffer.from('GET /split HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')), 'h1 split');
    assert.match(h1.toString('latin1'), /^HTTP\/1\.1 200 /);
    // "PRX..." starts like the preface, then differs: it is HTTP/1.1 (and a bad request).
    const notPreface = await rawExchange(plain, 'PRX / HTTP/1.1\r\nHost: x\r\n\r\n', 500);
    assert.match(notPreface, /^HTTP\/1\.1 (400|404|405|501) /, `expected an HTTP/1.1 answer, got ${notPreface.slice(0, 30)}`);
  });

  test('bodies both ways over HTTP/2: 5 MB upload and 5 MB download arrive whole', { skip: needs('curl') }, async () => {
    const body = Buffer.alloc(5 * 1024 * 1024, 'y');
    const up = await h2Request(plain, { method: 'POST', path: '/upload', body });
    assert.equal(up.status, 200);
    assert.equal((JSON.parse(up.body) as { bytes: number }).bytes, body.length);
    const r = await run('curl', ['-sS', '--http2-prior-knowledge', '-o', '-', `http://127.0.0.1:${plain}/bytes/${5 * 1024 * 1024}`]);
    assert.equal(r.stdout.length, 5 * 1024 * 1024, `expected 5 MiB, got ${r.stdout.length} bytes`);
    const want = createHash('sha256').update(Buffer.alloc(5 * 1024 * 1024, 'x')).digest('hex');
    assert.equal(createHash('sha256').update(r.stdout).digest('hex'), want);
  });

  test('HTTP/2 over TLS through node:http2 with SNI: the request sees https and its :authority', async () => {
    const r = await h2Request(secure, { host: 'h2.example.com', path: '/secure', tls: { servername: 'h2.example.com' } });
    assert.equal(r.status, 200);
    assert.equal(r.json?.headers['x-forwarded-proto'], 'https');
    assert.equal(r.json?.headers.host, 'h2.example.com');
  });

  test('connections the client closes are closed by the gateway too (no CLOSE-WAIT), whatever stage they were at', { skip: needs('ss') }, async () => {
    // TLS: the client closes right after its side of the handshake, for each ALPN outcome.
    for (const offer of [['h2'], ['http/1.1'], undefined]) await alpnOf(secure, offer);
    // Plaintext: FIN before any byte; an h2c session used and destroyed.
    await new Promise<void>((resolve) => {
      const s = net.connect(plain, '127.0.0.1', () => s.end());
      s.on('close', () => resolve());
      s.resume();
    });
    const c = http2.connect(`http://127.0.0.1:${plain}`);
    await new Promise<void>((resolve, reject) => {
      const r = c.request({ ':path': '/', ':authority': 'x' });
      r.resume();
      r.on('end', () => resolve());
      r.on('error', reject);
    });
    c.destroy();
    const closeWait = async () => (await run('ss', ['-tanH', 'state', 'close-wait', `( sport = :${secure} or sport = :${plain} )`])).stdout.trim();
    let left = await closeWait();
    for (let i = 0; i < 20 && left !== ''; i++) {
      await new Promise((r) => setTimeout(r, 50));
      left = await closeWait();
    }
    assert.equal(left, '', `expected no gateway socket in CLOSE-WAIT (tls ${secure}, plain ${plain}), got:\n${left}`);
  });

  test('a listener removed by a reload sends GOAWAY; the stream in flight finishes', async () => {
    const session = http2.connect(`http://127.0.0.1:${plain}`);
    try {
      const goaway = new Promise<void>((resolve) => session.once('goaway', () => resolve()));
      const slow = new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = session.request({ ':path': '/delay/400', ':authority': 'x' });
        let status = 0;
        let body = '';
        req.on('response', (h) => (status = Number(h[':status'])));
        req.setEncoding('utf8');
        req.on('data', (c: string) => (body += c));
        req.on('end', () => resolve({ status, body }));
        req.on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 100));
      await gw.apply(ir(false));
      await within(3000, goaway, 'GOAWAY');
      const r = await within(5000, slow, 'in-flight stream');
      assert.equal(r.status, 200, `the in-flight stream should complete, got ${r.status}`);
      assert.match(r.body, /"path":"\/delay\/400"/);
    } finally {
      session.destroy();
    }
    // Back to the original listeners for any later test.
    await gw.apply(ir());
  });
});

describe('HTTP/1.1 through the new front end', () => {
  test('a plain keep-alive request still works (request helper sanity)', async () => {
    const echo = await startEchoServer({ name: 'e' });
    const gw = await startRuntime(snapshot([httpListener(0, [vhost('all', ['*'], [route('all', forward(['e']))])])], [cluster('e', [{ port: echo.port }])]));
    try {
      const r = await request(gw.port(), { path: '/x' });
      assert.equal(r.status, 200);
      assert.equal(r.json?.path, '/x');
    } finally {
      await gw.close(200);
      await echo.close();
    }
  });
});
