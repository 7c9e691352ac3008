/**
 * HTTP/2 downstream answers whatever response head an HTTP/1.1 upstream or a route produces,
 * without node:http2 throwing inside the upstream socket's 'data' handler (which ended the
 * worker, review C2): a repeated single-value field (two Content-Type, two Location, a route
 * adding Content-Type over the upstream's) keeps its first value; a config value with a CTL
 * character is left out; a status HTTP/2 cannot carry becomes 502. After each, the gateway keeps
 * serving the next request on a new connection. Real sockets: a raw TCP upstream, node:http2
 * client with prior knowledge (h2c).
 */

import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, match, ops, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import fc from 'fast-check';
import { headerObject } from '../../src/runtime/h2/h2-downstream.js';
import { H2_SINGLE_VALUE } from '../../src/lib/header-chars.js';

const RESPONSES: Record<string, string> = {
  '/dup-ct': 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-type: text/html\r\ncontent-length: 2\r\n\r\nok',
  '/dup-loc': 'HTTP/1.1 302 Found\r\nLocation: /a\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n',
  '/dup-etag': 'HTTP/1.1 200 OK\r\netag: "1"\r\netag: "2"\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 2\r\n\r\nok',
  '/status-599': 'HTTP/1.1 599 Odd\r\ncontent-length: 2\r\n\r\nok',
  '/plain': 'HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nplain',
};

interface H2Reply {
  status: number;
  headers: http2.IncomingHttpHeaders;
  body: string;
  rstCode: number;
}

/** One request on a fresh h2c session (a new connection each time). */
function h2get(port: number, path: string): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error(`no answer for ${path} in 10 s`));
    }, 10_000);
    session.on('error', () => {});
    const req = session.request({ ':path': path, ':authority': 't.example' });
    let status = 0;
    let headers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      headers = h;
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('error', () => {});
    req.on('close', () => {
      clearTimeout(timer);
      session.close();
      resolve({ status, headers, body: Buffer.concat(chunks).toString(), rstCode: req.rstCode ?? 0 });
    });
    req.end();
  });
}

describe('HTTP/2 downstream: response heads node:http2 would refuse', () => {
  let upstream: net.Server;
  let gw: RuntimeHarness;
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);

  before(async () => {
    process.on('uncaughtException', onUncaught);
    upstream = net.createServer((s) => {
      let buf = '';
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        let end: number;
        while ((end = buf.indexOf('\r\n\r\n')) !== -1) {
          const line = buf.slice(0, buf.indexOf('\r\n'));
          buf = buf.slice(end + 4);
          const path = line.split(' ')[1] ?? '/';
          s.write(RESPONSES[path] ?? RESPONSES['/plain']);
        }
      });
      s.on('error', () => {});
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const up = (upstream.address() as net.AddressInfo).port;
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('any', ['*'], [
              route('add-ct', forward(['up']), [match({ path: { kind: 'prefix', value: '/add-ct', ignoreCase: false } })], {
                responseHeaders: ops({ add: [{ name: 'content-type', value: 'text/html' }] }),
              }),
              route('bad-value', forward(['up']), [match({ path: { kind: 'prefix', value: '/bad-value', ignoreCase: false } })], {
                responseHeaders: ops({ add: [{ name: 'x-bad', value: 'a\u0001b' }, { name: 'bad name', value: 'v' }, { name: 'x-good', value: 'g' }] }),
              }),
              route('all', forward(['up'])),
            ]),
          ]),
        ],
        [cluster('up', [{ port: up }])],
      ),
    );
  });

  after(async () => {
    await gw?.close();
    await new Promise<void>((r) => upstream.close(() => r()));
    process.off('uncaughtException', onUncaught);
  });

  async function followUpWorks(): Promise<void> {
    const r = await h2get(gw.port(), '/plain');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'plain');
    assert.deepEqual(uncaught, [], 'no uncaught exception (a worker would have exited)');
  }

  test('two Content-Type lines from the upstream: the first is kept', async () => {
    const r = await h2get(gw.port(), '/dup-ct');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'text/plain');
    assert.equal(r.body, 'ok');
    await followUpWorks();
  });

  test('a 302 with two Location lines: the first is kept', async () => {
    const r = await h2get(gw.port(), '/dup-loc');
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, '/a');
    await followUpWorks();
  });

  test('repeated ETag keeps the first; repeated Set-Cookie keeps both', async () => {
    const r = await h2get(gw.port(), '/dup-etag');
    assert.equal(r.status, 200);
    assert.equal(r.headers.etag, '"1"');
    assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
    await followUpWorks();
  });

  test('a route adding Content-Type over the upstream one', async () => {
    const r = await h2get(gw.port(), '/add-ct');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'plain');
    assert.equal(typeof r.headers['content-type'], 'string');
    await followUpWorks();
  });

  test('config header with a CTL value or a non-token name is left out, the rest goes out', async () => {
    const r = await h2get(gw.port(), '/bad-value');
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-bad'], undefined);
    assert.equal(r.headers['x-good'], 'g');
    await followUpWorks();
  });

  test('headerObject: status outside 200-599 becomes 502; connection-specific fields dropped; prototype names safe', () => {
    const o = headerObject(700, ['Connection', 'close', 'te', 'gzip', 'constructor', 'x', '__proto__', 'y', 'x-a', '1', 'x-a', '2']);
    assert.equal(o[':status'], 502);
    assert.equal(o.connection, undefined);
    assert.equal(o.te, undefined);
    assert.equal(o.constructor, 'x');
    assert.equal(Object.getOwnPropertyDescriptor(o, '__proto__')?.value, 'y');
    assert.deepEqual(o['x-a'], ['1', '2']);
    assert.equal(headerObject(101, [])[':status'], 502);
  });

  test('property: node:http2 accepts whatever headerObject builds (random names, values, repeats, statuses)', async () => {
    const server = http2.createServer();
    const thrown: string[] = [];
    let next: { status: number; headers: string[] } = { status: 200, headers: [] };
    server.on('stream', (stream) => {
      try {
        stream.respond(headerObject(next.status, next.headers), { endStream: true });
      } catch (err) {
        thrown.push(`${(err as { code?: string }).code}: ${JSON.stringify(next)}`);
        stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', () => {});
    const names = fc.oneof(
      fc.constantFrom(...H2_SINGLE_VALUE, 'set-cookie', 'vary', 'Content-Type', 'LOCATION', 'connection', 'keep-alive', 'transfer-encoding', 'upgrade', 'te', 'proxy-connection', 'http2-settings', ':status', ':path', 'x a', 'x:y', '', 'x\u0000', 'constructor', '__proto__'),
      fc.string({ maxLength: 8 }),
    );
    const values = fc.oneof(fc.constantFrom('trailers', 'gzip', 'a', '', ' a ', 'a\tb', 'a\r\nb', 'a\u0000b', 'a\u007fb', 'caf\u00e9', '\u20ac'), fc.string({ maxLength: 8 }));
    try {
      await fc.assert(
        fc.asyncProperty(fc.integer({ min: 0, max: 999 }), fc.array(fc.tuple(names, values), { maxLength: 12 }), async (status, pairs) => {
          next = { status, headers: pairs.flat() };
          const before = thrown.length;
          await new Promise<void>((resolve) => {
            const req = client.request({ ':path': '/' });
            req.on('error', () => {});
            req.on('close', () => resolve());
            req.resume();
            req.end();
          });
          assert.equal(thrown.length, before, thrown.at(-1));
        }),
        { numRuns: 150 },
      );
    } finally {
      client.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
