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
import { startRecordingUpstream, type RecordingUpstream } from './harness.js';

describe('slowloris', { timeout: 40_000 }, () => {
  let up: RecordingUpstream;
  let gw: RuntimeHarness;
  let port: number;

  before(async () => {
    up = await startRecordingUpstream();
    gw = await startRuntime(snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])]));
    port = gw.port();
  });
  after(async () => {
    await gw?.close();
    await up?.close();
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
