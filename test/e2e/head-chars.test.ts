/**
 * Header characters on the wire (review L2, L2b), one validator for every head writer: a header
 * name that is not an RFC 9110 token, or a value with NUL, CR, LF or another CTL (route header
 * ops), never reaches the client through meshgate's HTTP/1.1 engine, nor the upstream or the
 * client on the WebSocket upgrade path; identical upstream Content-Length lines go out once; an
 * upgrade answer whose head carries a bare LF or a CTL is refused (502), not relayed. Raw TCP on
 * both sides, so the exact bytes are seen.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, match, ops, route, snapshot, vhost } from '../support/ir-builders.js';
import { rawExchange } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';

const prefix = (value: string) => [match({ path: { kind: 'prefix', value, ignoreCase: false } })];
const BAD_RESPONSE_OPS = ops({
  add: [
    { name: 'x-nul', value: 'a\u0000b' },
    { name: 'x-del', value: 'a\u007fb' },
    { name: 'x-split', value: 'a\r\nx-injected: 1' },
    { name: 'bad name', value: 'v' },
    { name: 'x-colon:y', value: 'v' },
    { name: 'x-good', value: 'g' },
  ],
});

describe('head writers: only valid header characters reach the wire', () => {
  let upstream: net.Server;
  let gw: RuntimeHarness;
  const heads: string[] = [];

  before(async () => {
    upstream = net.createServer((s) => {
      let buf = '';
      s.on('error', () => {});
      s.on('data', (d: Buffer) => {
        buf += d.toString('latin1');
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.slice(0, end);
        buf = buf.slice(end + 4);
        heads.push(head);
        const path = head.split(' ')[1] ?? '/';
        if (path.startsWith('/ws-lf')) s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-evil: a\nx-injected: 1\r\n\r\n');
        else if (path.startsWith('/ws-nul')) s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\nx-evil: a\u0000b\r\n\r\n');
        else if (path.startsWith('/ws')) s.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n');
        else s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok');
      });
    });
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const up = (upstream.address() as net.AddressInfo).port;
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('any', ['*'], [
              route('ws', forward(['up']), prefix('/ws'), {
                requestHeaders: ops({ add: [{ name: 'x-req-split', value: 'a\r\nx-smuggled: 1' }, { name: 'bad name', value: 'v' }, { name: 'x-req-good', value: 'g' }] }),
                responseHeaders: BAD_RESPONSE_OPS,
              }),
              route('cfg', forward(['up']), prefix('/cfg'), { responseHeaders: BAD_RESPONSE_OPS }),
              route('all', forward(['up'])),
            ]),
          ]),
        ],
        [cluster('up', [{ port: up }])],
      ),
      { http1Engine: 'meshgate' },
    );
  });

  after(async () => {
    await gw?.close();
    await new Promise<void>((r) => upstream.close(() => r()));
  });

  function headOf(raw: string): string {
    const end = raw.indexOf('\r\n\r\n');
    assert.notEqual(end, -1, `a complete head, got ${JSON.stringify(raw)}`);
    return raw.slice(0, end + 2);
  }

  function assertClean(head: string): void {
    assert.doesNotMatch(head, /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/, "no CTL in the head");
    assert.doesNotMatch(head, /[^\r]\n/, 'no bare LF');
    assert.doesNotMatch(head, /x-injected|x-smuggled|bad name|x-colon|x-nul|x-del|x-split/i);
  }

  test('HTTP/1.1 engine: route headers with CTL values or non-token names are left out', async () => {
    const head = headOf(await rawExchange(gw.port(), 'GET /cfg HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n'));
    assert.match(head, /^HTTP\/1\.1 200 /);
    assert.match(head, /\r\nx-good: g\r\n/);
    assertClean(head);
  });

  test('HTTP/1.1 engine: identical upstream Content-Length lines go out once', async () => {
    const raw = await rawExchange(gw.port(), 'GET /dup HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.equal(raw.match(/content-length:/gi)?.length, 1, raw);
    assert.ok(raw.endsWith('\r\n\r\nok'));
  });

  test('WebSocket: the upstream request head carries no injected line; the 101 relayed carries no bad header', async () => {
    heads.length = 0;
    const raw = await rawExchange(gw.port(), 'GET /ws HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', 500);
    const head = headOf(raw);
    assert.match(head, /^HTTP\/1\.1 101 /);
    assert.match(head, /\r\nx-good: g\r\n/);
    assertClean(head);
    assert.equal(heads.length, 1);
    assert.match(heads[0], /\r\nx-req-good: g(\r\n|$)/);
    assert.doesNotMatch(heads[0], /x-smuggled|x-req-split|bad name/);
  });

  for (const [path, what] of [['/ws-lf', 'a bare LF'], ['/ws-nul', 'a NUL']] as const) {
    test(`WebSocket: an upstream 101 head with ${what} is refused (502), not relayed`, async () => {
      const raw = await rawExchange(gw.port(), `GET ${path} HTTP/1.1\r\nhost: t\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, 1000);
      assert.match(raw, /^HTTP\/1\.1 502 /);
      assert.doesNotMatch(raw, /x-injected|x-evil/);
    });
  }
});
