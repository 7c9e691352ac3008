/**
 * The upstream client reads its sockets into one buffer shared by every socket of the process
 * (`onread`, runtime/upstream/h1-client.ts) and copies each read out. These tests would see it if a
 * read were handed on without its copy: many answers at once, over plaintext and TLS, to clients
 * that read slowly (so the gateway's writes queue and hold what they were given), must each arrive
 * byte for byte. And the small answers whose head and body the downstream writes as one Buffer
 * (runtime/h1/h1-downstream.ts) must keep their exact framing on kept-alive connections.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { makeCerts } from '../support/tls-certs.js';

/** The answer for `/body/<seed>/<size>`: deterministic bytes that differ per seed. */
function bodyFor(seed: number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    // xorshift32: every request's bytes differ, so a byte from another read shows.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Answers `/body/<seed>/<size>` in writes of varied sizes, so reads split anywhere. */
function answer(req: http.IncomingMessage, res: http.ServerResponse): void {
  const m = /\/body\/(\d+)\/(\d+)$/.exec(req.url ?? '');
  const body = bodyFor(Number(m?.[1] ?? 0), Number(m?.[2] ?? 0));
  res.writeHead(200, { 'content-length': body.length, 'x-sha': sha(body) });
  let at = 0;
  let step = 1;
  const more = (): void => {
    while (at < body.length) {
      const n = Math.min(body.length - at, 700 + ((step++ * 7919) % 40_000));
      const ok = res.write(body.subarray(at, at + n));
      at += n;
      if (!ok) {
        res.once('drain', more);
        return;
      }
    }
    res.end();
  };
  more();
}

/** GET through the gateway; `pauseMs` > 0: a slow client that starts reading only after that long. */
function slowGet(port: number, path: string, pauseMs: number): Promise<{ status: number; sha: string; expected: string; length: number }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      // Nothing read for a while: the kernel's buffers fill, then the gateway's writes queue
      // (holding the Buffers they were given) while other sockets' reads go on.
      if (pauseMs > 0) {
        res.pause();
        setTimeout(() => res.resume(), pauseMs);
      }
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const all = Buffer.concat(chunks);
        resolve({ status: res.statusCode ?? 0, sha: sha(all), expected: String(res.headers['x-sha']), length: all.length });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(30_000, () => req.destroy(new Error(`${path}: no answer within 30 s`)));
  });
}

describe('upstream reads through the shared read buffer', { timeout: 120_000 }, () => {
  let gw: RuntimeHarness;
  let port: number;
  const servers: net.Server[] = [];

  async function listen<S extends net.Server>(s: S): Promise<number> {
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return (s.address() as net.AddressInfo).port;
  }

  before(async () => {
    const [cert] = makeCerts(['upstream.test']);
    const plainPort = await listen(http.createServer(answer));
    const tlsPort = await listen(https.createServer({ cert: cert.certChain, key: cert.privateKey }, answer));
    // Small answers, fixed length or chunked, on one kept-alive connection.
    const smallPort = await listen(
      http.createServer((req, res) => {
        if (req.url === '/small/chunked') {
          res.writeHead(200, { 'x-kind': 'chunked' });
          res.end('chunked body');
        } else {
          res.writeHead(200, { 'content-length': 11, 'x-kind': 'fixed' });
          res.end('fixed body!');
        }
      }),
    );
    const p = (path: string) => [match({ path: { kind: 'segment-prefix', value: path, ignoreCase: false } })];
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('v', ['*'], [
              route('tls', forward(['tls']), p('/tls')),
              route('small', forward(['small']), p('/small')),
              route('plain', forward(['plain']), [match()]),
            ]),
          ]),
        ],
        [
          cluster('plain', [{ port: plainPort }]),
          cluster('tls', [{ port: tlsPort }], { tls: { mode: 'SIMPLE', caCertificates: null, clientCertificate: null, sni: 'upstream.test', subjectAltNames: [], insecureSkipVerify: true } }),
          cluster('small', [{ port: smallPort }]),
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

  for (const prefix of ['', '/tls']) {
    test(`${prefix === '' ? 'plaintext' : 'TLS'} upstreams: concurrent large answers to slow clients arrive byte for byte`, async () => {
      const sizes = [1, 700, 4096, 65_536, 300_000, 8_000_000];
      const gets: Promise<{ status: number; sha: string; expected: string; length: number }>[] = [];
      for (let i = 0; i < 12; i++) {
        const size = sizes[i % sizes.length];
        gets.push(slowGet(port, `${prefix}/body/${i + 1}/${size}`, i % 3 === 2 ? 400 : 0));
      }
      const results = await Promise.all(gets);
      results.forEach((r, i) => {
        assert.equal(r.status, 200, `request ${i}`);
        assert.equal(r.length, sizes[i % sizes.length], `request ${i}: length`);
        assert.equal(r.sha, r.expected, `request ${i}: body differs from what the upstream sent`);
      });
    });
  }

  test('small answers written as one buffer keep their framing on a kept-alive connection', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const sockets = new Set<net.Socket>();
      for (let i = 0; i < 20; i++) {
        const path = i % 2 === 0 ? '/small/fixed' : '/small/chunked';
        const r = await new Promise<{ status: number; body: string; kind: string; te: string; cl: string }>((resolve, reject) => {
          const req = http.get({ host: '127.0.0.1', port, path, agent }, (res) => {
            sockets.add(res.socket);
            let body = '';
            res.setEncoding('latin1');
            res.on('data', (c: string) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, kind: String(res.headers['x-kind']), te: String(res.headers['transfer-encoding']), cl: String(res.headers['content-length']) }));
          });
          req.on('error', reject);
        });
        assert.equal(r.status, 200);
        if (i % 2 === 0) {
          assert.deepEqual([r.body, r.kind, r.cl], ['fixed body!', 'fixed', '11']);
        } else {
          assert.deepEqual([r.body, r.kind, r.te], ['chunked body', 'chunked', 'chunked']);
        }
      }
      assert.equal(sockets.size, 1, 'every answer on one kept-alive connection');
    } finally {
      agent.destroy();
    }
  });
});
