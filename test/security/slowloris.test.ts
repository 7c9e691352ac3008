/**
 * Slowloris (hardening D-01): connections that trickle a request head byte by byte are closed at
 * most headersTimeout (10 s) + the 1 s check interval + slack after they open, however steadily
 * bytes arrive, while a normal client keeps being served. Bounded: 40 connections, about 13 s.
 */

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { SERVER_OPTIONS } from '../../src/runtime/listeners/listener-manager.js';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { request } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { startCatchAllRuntime, startRecordingUpstream, type RecordingUpstream } from './harness.js';

describe('slowloris', { timeout: 40_000 }, () => {
  let rig: Awaited<ReturnType<typeof startCatchAllRuntime>>;
  let up: RecordingUpstream;
  let gw: RuntimeHarness;
  let port: number;

  before(async () => {
    rig = await startCatchAllRuntime();
    ({ up, gw } = rig);
    port = gw.port();
  });
  after(async () => {
    await rig?.close();
  });

  test('trickling heads are closed within headersTimeout + 2 s; a normal client is served meanwhile', async () => {
    const limit = SERVER_OPTIONS.headersTimeout + 2000;
    const head = 'GET / HTTP/1.1\r\nHost: slow.test\r\nX-Slow: ' + 'a'.repeat(200);
    const started = Date.now();
    const closedAfter: number[] = [];
    const sockets: net.Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    const done = Promise.all(
      Array.from({ length: 40 }, () => new Promise<void>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        sockets.push(s);
        let i = 0;
        const t = setInterval(() => {
          if (i < head.length && !s.destroyed) s.write(head[i++]);
        }, 250);
        timers.push(t);
        s.on('error', () => undefined);
        s.on('close', () => {
          clearInterval(t);
          closedAfter.push(Date.now() - started);
          resolve();
        });
      })),
    );
    // A normal client while the attack runs.
    await new Promise((r) => setTimeout(r, 2000));
    const probe = await request(port, { path: '/probe', host: 'ok.test', timeoutMs: 3000 });
    assert.equal(probe.status, 200);
    const guard = new Promise<void>((resolve) => setTimeout(resolve, limit + 3000));
    await Promise.race([done, guard]);
    for (const t of timers) clearInterval(t);
    for (const s of sockets) s.destroy();
    assert.equal(closedAfter.length, 40, `only ${closedAfter.length} of 40 slow connections were closed by the gateway`);
    const worst = Math.max(...closedAfter);
    assert.ok(worst <= limit, `a slow connection lived ${worst} ms (limit ${limit} ms)`);
  });
});

describe('connection cap per listener', { timeout: 30_000 }, () => {
  test('connections above the cap are closed at once; established ones keep working', async () => {
    const { EDGE_LIMITS } = await import('../../src/runtime/listeners/edge-limits.js');
    const saved = EDGE_LIMITS.maxConnectionsPerListener;
    EDGE_LIMITS.maxConnectionsPerListener = 10;
    const up = await startRecordingUpstream();
    const gw = await startRuntime(snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])]));
    EDGE_LIMITS.maxConnectionsPerListener = saved;
    const sockets: net.Socket[] = [];
    try {
      const closed: number[] = [];
      for (let i = 0; i < 15; i++) {
        const s = net.connect(gw.port(), '127.0.0.1');
        s.on('error', () => undefined);
        s.on('close', () => closed.push(i));
        sockets.push(s);
        await new Promise((r) => s.once('connect', r));
      }
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(closed.length, 5, `expected the 5 connections over the cap to be closed, got ${closed.length}`);
      const reply = await new Promise<string>((resolve) => {
        let got = '';
        sockets[0].on('data', (c: Buffer) => (got += c.toString()));
        sockets[0].write('GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n');
        sockets[0].on('close', () => resolve(got));
      });
      assert.match(reply, /^HTTP\/1\.1 200/);
    } finally {
      for (const s of sockets) s.destroy();
      await gw.close();
      await up.close();
    }
  });
});

describe('load shedding', { timeout: 30_000 }, () => {
  test('above the heap threshold new requests get 503 at once; below it they are served', async () => {
    const { OVERLOAD, sampleOverloadNow } = await import('../../src/runtime/filters/overload.js');
    const up = await startRecordingUpstream();
    const gw = await startRuntime(snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])]));
    const saved = OVERLOAD.heapFraction;
    try {
      OVERLOAD.heapFraction = 0;
      sampleOverloadNow();
      const shed = await request(gw.port(), { path: '/x', host: 'a.test', agent: false });
      assert.equal(shed.status, 503);
      assert.equal(up.requests.length, 0);
      OVERLOAD.heapFraction = saved;
      sampleOverloadNow();
      assert.equal((await request(gw.port(), { path: '/x', host: 'a.test', agent: false })).status, 200);
    } finally {
      OVERLOAD.heapFraction = saved;
      sampleOverloadNow();
      await gw.close();
      await up.close();
    }
  });
});
