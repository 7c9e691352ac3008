/**
 * Upstream behaviour end to end: error answers with Envoy flags (UH, NC, UF, UT), failures after the
 * response head, client disconnects, streamed bodies with back-pressure, pool reuse.
 */

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { Readable } from 'node:stream';
import v8 from 'node:v8';
import vm from 'node:vm';
import { after, before, describe, test } from 'node:test';
import { startEchoServer, type EchoServer } from '../../src/demo/echo-server.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { request, within } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

/** A port with nothing listening on it (bound, then released). */
async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('runtime upstream end to end', { timeout: 90_000 }, () => {
  let echo: EchoServer;
  let gw: RuntimeHarness;
  let port: number;
  /** An upstream that never answers and records when its requests are closed by the gateway. */
  let hang: http.Server;
  let hangPort: number;
  const hangClosed: string[] = [];

  before(async () => {
    echo = await startEchoServer({ name: 'echo' });
    hang = http.createServer((req) => {
      req.socket.on('close', () => hangClosed.push(req.url ?? ''));
    });
    await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
    hangPort = (hang.address() as net.AddressInfo).port;
    const dead = await deadPort();
    const p = (path: string) => [match({ path: { kind: 'segment-prefix', value: path, ignoreCase: false } })];
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('v', ['*'], [
              route('uh', forward(['empty']), p('/uh')),
              route('nc-missing', forward(['missing']), p('/nc')),
              route('nc-unknown', forward(['not-in-snapshot']), p('/nc2')),
              route('uf', forward(['dead']), p('/uf')),
              route('ut', forward(['echo'], { timeoutMs: 200 }), p('/delay')),
              route('hang', forward(['hang']), p('/hang')),
              route('lr', forward(['lr']), p('/lr')),
              route('echo', forward(['echo']), [match()]),
            ]),
          ]),
        ],
        [
          cluster('empty', [{ port: echo.port, ready: false }]),
          cluster('missing', [], { discovery: 'missing' }),
          cluster('dead', [{ port: dead }]),
          cluster('echo', [{ port: echo.port }]),
          cluster('hang', [{ port: hangPort }]),
          cluster('lr', [{ port: echo.port }, { port: echo.port, address: 'localhost' }], { lbPolicy: 'LEAST_REQUEST' }),
        ],
      ),
    );
    port = gw.port();
  });

  after(async () => {
    await gw?.close(500);
    hang.closeAllConnections();
    await new Promise<void>((r) => hang.close(() => r()));
    await echo.close();
  });

  const flagCases = [
    { path: '/uh', status: 503, flag: 'UH', body: 'no healthy upstream' },
    { path: '/nc', status: 503, flag: 'NC', body: 'cluster not found' },
    { path: '/nc2', status: 503, flag: 'NC', body: 'cluster not found' },
    { path: '/uf', status: 503, flag: 'UF', body: 'upstream connect error or disconnect/reset before headers. reset reason: connection failure' },
    { path: '/delay/2000', status: 504, flag: 'UT', body: 'upstream request timeout' },
  ];
  for (const c of flagCases) {
    test(`${c.path}: ${c.status} ${c.flag}`, async () => {
      const r = await request(port, { path: c.path });
      assert.equal(r.status, c.status, `expected ${c.status}, got ${r.status} ${r.body}`);
      assert.equal(r.headers['x-meshgate-flags'], c.flag);
      assert.equal(r.body, c.body);
      assert.equal(r.headers['content-type'], 'text/plain');
      assert.equal(r.headers.server, 'meshgate');
      assert.ok(r.headers.date);
    });
  }

  test('a route timeout that is not reached lets the response through', async () => {
    const r = await request(port, { path: '/delay/20' });
    assert.equal(r.status, 200);
  });

  test('upstream status codes pass through', async () => {
    const r = await request(port, { path: '/status/503' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-meshgate-flags'], undefined, 'an upstream 503 is not a local reply');
  });

  test('upstream killed mid-response: the client sees an error, never a short body as complete', async () => {
    await assert.rejects(within(5000, request(port, { path: '/abort/50000' }), 'abort'), /aborted|incomplete|socket hang up|ECONNRESET/);
  });

  test('client gone mid-request: the upstream request is aborted', async () => {
    const before = hangClosed.length;
    const req = http.request({ host: '127.0.0.1', port, path: '/hang/1', agent: false });
    req.on('error', () => undefined);
    req.end();
    await new Promise((r) => setTimeout(r, 200));
    req.destroy();
    const deadline = Date.now() + 3000;
    while (hangClosed.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(hangClosed.length > before, 'the upstream connection of the abandoned request was closed');
  });

  test('64 MB upload and 64 MB download stream through without buffering', async (t) => {
    // 64 MB, so that holding a body (or most of it) cannot pass for transient buffers: on a loaded
    // machine a 20 MB transfer showed up to 21 MiB of in-flight buffers in this one process
    // (client, gateway and backend together), too close to the body size to tell them apart.
    const size = 64 * 1024 * 1024;
    // Live memory, not RSS alone: RSS also counts freed-but-not-returned malloc memory and garbage
    // buffers not yet collected, which says little about buffering. Sampled after a forced GC.
    const live = (): number => {
      gc();
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers;
    };
    const baseLive = live();
    const baseRss = process.memoryUsage().rss;
    let peakLive = baseLive;
    let peakRss = baseRss;
    const sampler = setInterval(() => {
      peakLive = Math.max(peakLive, live());
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 25);
    try {
      // Upload: a generated body the echo server counts without keeping.
      const up = await within(
        30_000,
        new Promise<string>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/upload', agent: false, headers: { 'content-length': String(size) } });
          req.on('error', reject);
          req.on('response', (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve(body));
          });
          const chunk = Buffer.alloc(64 * 1024, 'u');
          let sent = 0;
          Readable.from(
            (function* () {
              while (sent < size) {
                sent += chunk.length;
                yield chunk;
              }
            })(),
          ).pipe(req);
        }),
        'upload',
      );
      assert.equal((JSON.parse(up) as { bytes: number }).bytes, size);
      // Download: read slowly at first so back-pressure has to hold the upstream.
      const got = await within(
        30_000,
        new Promise<number>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path: `/bytes/${size}`, agent: false }, (res) => {
            let n = 0;
            res.pause();
            setTimeout(() => res.resume(), 300);
            res.on('data', (c: Buffer) => (n += c.length));
            res.on('end', () => (res.complete ? resolve(n) : reject(new Error('incomplete'))));
            res.on('error', reject);
          });
          req.on('error', reject);
        }),
        'download',
      );
      assert.equal(got, size);
    } finally {
      clearInterval(sampler);
    }
    const mib = (n: number) => (n / (1024 * 1024)).toFixed(1);
    t.diagnostic(`peak growth: live ${mib(peakLive - baseLive)} MiB, RSS ${mib(peakRss - baseRss)} MiB`);
    // Buffering one whole body would hold 20 MiB live; streaming holds socket-sized chunks.
    assert.ok(peakLive - baseLive < 40 * 1024 * 1024, `live memory grew by ${mib(peakLive - baseLive)} MiB during a 64 MB transfer (expected < 40; the test rig alone accounts for about 4)`);
    assert.ok(peakRss - baseRss < 64 * 1024 * 1024, `RSS grew by ${mib(peakRss - baseRss)} MiB (expected < 64)`);
  });

  test('back-pressure: a client that does not read stops the upstream from writing', async (t) => {
    let written = 0;
    const producer = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 'p');
      const pump = (): void => {
        while (written < 100 * 1024 * 1024) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    await new Promise<void>((r) => producer.listen(0, '127.0.0.1', r));
    const producerPort = (producer.address() as net.AddressInfo).port;
    const h = await startRuntime(snapshot([httpListener(0, [vhost('v', ['*'], [route('p', forward(['p']))])])], [cluster('p', [{ port: producerPort }])]));
    const req = http.get({ host: '127.0.0.1', port: h.port(), path: '/', agent: false });
    try {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => req.on('response', resolve).on('error', reject));
      res.pause();
      await new Promise((r) => setTimeout(r, 700));
      const stalled = written;
      t.diagnostic(`upstream wrote ${(written / 1048576).toFixed(1)} MiB before stalling`);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(written, stalled, 'the upstream stopped writing while the client did not read');
      assert.ok(written < 40 * 1024 * 1024, `only socket buffers fill up: upstream wrote ${written} bytes of 100 MiB`);
    } finally {
      req.destroy();
      await h.close(200);
      producer.closeAllConnections();
      await new Promise<void>((r) => producer.close(() => r()));
    }
  });

  test('chunked upstream response (no content-length) streams to the client complete', async () => {
    const r = await request(port, { path: '/stream/50?size=100' });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 5000);
  });

  test('LEAST_REQUEST balances over endpoints', async () => {
    const replies = await Promise.all(Array.from({ length: 20 }, () => request(port, { path: '/lr' })));
    for (const r of replies) assert.equal(r.status, 200);
  });

  test('upstream connections are reused (keep-alive to the upstream)', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ports = new Set<string>();
    try {
      for (let i = 0; i < 10; i++) {
        const r = await request(port, { path: '/x', agent });
        ports.add(String(r.json?.headers['x-forwarded-for']));
      }
      // One client connection and sequential requests: the echo server sees one upstream socket.
      const r = await request(port, { path: '/x', agent });
      assert.equal(r.status, 200);
    } finally {
      agent.destroy();
    }
  });
});
