/**
 * WebSocket through the gateway with the `ws` client and server: the upgrade request is routed like
 * any request (match, weights, rewrites, header edits, local answers), then bytes flow both ways;
 * a refused upgrade is relayed; idle tunnels are closed.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import { cluster, exact, forward, httpListener, match, ops, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { within } from '../support/http-client.js';
import { open, startWsEcho, type Hello, type WsEcho } from '../support/ws-echo.js';
import { setWebSocketIdleTimeout } from '../../src/runtime/http/websocket.js';

function next(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (d) => resolve(String(d))));
}

describe('WebSocket through the gateway', { timeout: 60_000 }, () => {
  const be: Record<string, WsEcho> = {};
  let gw: RuntimeHarness;
  let base: string;

  before(async () => {
    be.a = await startWsEcho('a');
    be.b = await startWsEcho('b');
    const prefix = (value: string) => ({ kind: 'prefix' as const, value, ignoreCase: false });
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('ws', ['ws.example.com'], [
              route('ws/canary', forward(['b']), [match({ headers: [{ name: 'x-canary', match: exact('yes'), invert: false }] })]),
              route('ws/weighted', forward([{ cluster: 'a', weight: 1 }, { cluster: 'b', weight: 3 }]), [match({ path: prefix('/weighted') })]),
              route('ws/rewrite', forward(['a'], { rewrite: { path: { kind: 'prefix', value: '/inner' }, authority: null } }), [match({ path: prefix('/outer') })], {
                requestHeaders: ops({ set: [{ name: 'x-route', value: 'rewrite' }] }),
                responseHeaders: ops({ set: [{ name: 'x-resp', value: 'edited' }] }),
              }),
              route('ws/denied', { kind: 'direct', status: 403, body: 'denied', contentType: null }, [match({ path: prefix('/denied') })]),
              route('ws/empty', forward(['empty']), [match({ path: prefix('/empty') })]),
              route('ws/all', forward(['a']), [match({ path: prefix('/') })]),
            ]),
            vhost('other', ['other.example.com'], [route('other/only', forward(['a']), [match({ path: { kind: 'exact', value: '/only', ignoreCase: false } })])]),
          ]),
        ],
        [cluster('a', [{ port: be.a.port }]), cluster('b', [{ port: be.b.port }]), cluster('empty', [])],
      ),
    );
    base = `ws://127.0.0.1:${gw.port()}`;
  });
  after(async () => {
    await gw?.close(300);
    await Promise.all(Object.values(be).map((b) => b.close()));
  });

  test('echo both ways, text and a 1 MiB binary message; forwarding headers reach the backend', async () => {
    const r = await within(5000, open(`${base}/chat?room=1`, { host: 'ws.example.com' }), 'open');
    assert.ok('ws' in r, `expected an open WebSocket, got ${JSON.stringify(r)}`);
    const { ws, hello } = r;
    try {
      assert.equal(hello.name, 'a');
      assert.equal(hello.url, '/chat?room=1');
      assert.equal(hello.headers['x-forwarded-proto'], 'http');
      assert.equal(hello.headers['x-forwarded-host'], 'ws.example.com');
      assert.ok(hello.headers['sec-websocket-key'], 'the handshake key reaches the backend');
      ws.send('hello');
      assert.equal(await within(5000, next(ws), 'text echo'), 'a:hello');
      const big = Buffer.alloc(1024 * 1024, 7);
      const got = new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer)));
      ws.send(big);
      const echoed = await within(10_000, got, 'binary echo');
      assert.equal(echoed.length, big.length + 2);
      assert.ok(echoed.subarray(2).equals(big), 'the binary payload comes back unchanged');
    } finally {
      ws.close();
    }
  });

  test('the route is matched at the upgrade request: header match, rewrite and header edits apply', async () => {
    const canary = await open(`${base}/x`, { host: 'ws.example.com', 'x-canary': 'yes' });
    assert.ok('ws' in canary && canary.hello.name === 'b', `x-canary: yes should reach b, got ${JSON.stringify('ws' in canary ? canary.hello.name : canary)}`);
    canary.ws.close();
    const rw = await new Promise<{ hello: Hello; resp: string | undefined; ws: WebSocket }>((resolve, reject) => {
      const ws = new WebSocket(`${base}/outer/room`, { headers: { host: 'ws.example.com' } });
      let resp: string | undefined;
      ws.once('upgrade', (res) => (resp = res.headers['x-resp'] as string | undefined));
      ws.once('message', (d) => resolve({ hello: JSON.parse(String(d)) as Hello, resp, ws }));
      ws.once('error', reject);
    });
    assert.equal(rw.hello.url, '/inner/room', 'prefix rewrite applies to the upgrade request');
    assert.equal(rw.hello.headers['x-route'], 'rewrite', 'request header edits apply');
    assert.equal(rw.resp, 'edited', 'response header edits apply to the 101');
    rw.ws.close();
  });

  test('weights 1:3 are applied per upgrade request (400 upgrades within ±8%)', async () => {
    const counts: Record<string, number> = { a: 0, b: 0 };
    for (let batch = 0; batch < 8; batch++) {
      const opened = await Promise.all(Array.from({ length: 50 }, () => open(`${base}/weighted`, { host: 'ws.example.com' })));
      for (const o of opened) {
        assert.ok('ws' in o, `expected an open WebSocket, got ${JSON.stringify(o)}`);
        counts[o.hello.name]++;
        o.ws.terminate();
      }
    }
    const shareB = counts.b / 400;
    assert.ok(Math.abs(shareB - 0.75) <= 0.08, `expected ~75% to b, got ${(shareB * 100).toFixed(1)}% (${JSON.stringify(counts)})`);
  });

  const refusals = [
    { desc: 'no route: 404 NR', path: '/nothing', host: 'other.example.com', status: 404, flags: 'NR' },
    { desc: 'direct response on the matched route: 403', path: '/denied', host: 'ws.example.com', status: 403, flags: undefined },
    { desc: 'no healthy upstream: 503 UH', path: '/empty', host: 'ws.example.com', status: 503, flags: 'UH' },
    { desc: 'the backend refuses the upgrade: its 400 is relayed', path: '/reject', host: 'ws.example.com', status: 400, flags: undefined },
  ];
  for (const c of refusals) {
    test(`upgrade answered without a tunnel: ${c.desc}`, async () => {
      const r = await within(5000, open(`${base}${c.path}`, { host: c.host }), c.desc);
      assert.ok(!('ws' in r), `expected the upgrade to be refused, it was accepted by ${'ws' in r ? r.hello.name : ''}`);
      assert.equal(r.status, c.status, `expected ${c.status}, got ${r.status} ${r.body}`);
      assert.equal(r.flags, c.flags);
    });
  }

  test('the backend closing the WebSocket closes the client side', async () => {
    const r = await open(`${base}/close`, { host: 'ws.example.com' });
    assert.ok('ws' in r);
    const code = await within(5000, new Promise<number>((resolve) => r.ws.once('close', (c) => resolve(c))), 'close');
    assert.equal(code, 1000);
  });

  test('an idle tunnel is closed after the idle timeout; an active one is not', async () => {
    setWebSocketIdleTimeout(400);
    try {
      const idle = await open(`${base}/idle`, { host: 'ws.example.com' });
      const busy = await open(`${base}/busy`, { host: 'ws.example.com' });
      assert.ok('ws' in idle && 'ws' in busy);
      const started = Date.now();
      const closed = new Promise<number>((resolve) => idle.ws.once('close', () => resolve(Date.now() - started)));
      let busyClosed = false;
      busy.ws.once('close', () => (busyClosed = true));
      const ticker = setInterval(() => busy.ws.send('tick'), 100);
      const ms = await within(5000, closed, 'idle close');
      clearInterval(ticker);
      assert.ok(ms >= 300 && ms < 2000, `expected the idle tunnel closed after ~400 ms, got ${ms} ms`);
      assert.equal(busyClosed, false, 'the active tunnel stays open');
      busy.ws.close();
    } finally {
      setWebSocketIdleTimeout(300_000);
    }
  });
});
