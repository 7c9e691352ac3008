/**
 * Circuit breaking (connection-pool limits, 503 UO) and outlier detection (ejection, return,
 * growing ejection time, state kept across snapshot swaps), end to end.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { ConnectionPool, IRSnapshot, OutlierDetection } from '../../src/ir/types.js';
import type { OutlierTracker } from '../../src/runtime/upstream/outlier-detection.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { request, type Reply } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { counts, retryPolicy, sleep, startBackend, type Action, type Backend, type Hit } from './traffic-support.js';

const open: { close(): Promise<void> }[] = [];
after(async () => {
  for (const o of open.reverse()) await o.close();
});

async function backend(name: string, behave: (hit: Hit) => Action = () => 200): Promise<Backend> {
  const b = await startBackend(name, behave);
  open.push(b);
  return b;
}

function pool(p: Partial<ConnectionPool>): ConnectionPool {
  return { maxConnections: null, maxPendingRequests: null, maxRequests: null, maxRequestsPerConnection: null, maxRetries: null, idleTimeoutMs: null, ...p };
}

function outlier(o: Partial<OutlierDetection>): OutlierDetection {
  return { consecutive5xxErrors: 3, consecutiveGatewayErrors: 0, intervalMs: 50, baseEjectionTimeMs: 400, maxEjectionPercent: 100, minHealthPercent: 0, ...o };
}

function ir(ports: number[], extra: { connectionPool?: ConnectionPool | null; outlierDetection?: OutlierDetection | null; retries?: ReturnType<typeof retryPolicy> | null }): IRSnapshot {
  return snapshot(
    [httpListener(0, [vhost('v', ['*'], [route('r', forward(['c'], { retries: extra.retries ?? null }), [match()])])])],
    [cluster('c', ports.map((port) => ({ port })), { connectionPool: extra.connectionPool ?? null, outlierDetection: extra.outlierDetection ?? null })],
  );
}

async function gateway(snap: IRSnapshot): Promise<RuntimeHarness> {
  const gw = await startRuntime(snap);
  open.push({ close: () => gw.close(500) });
  return gw;
}

function tracker(gw: RuntimeHarness): OutlierTracker {
  const t = gw.runtime.current!.clusters.get('c')!.state!.outlier;
  assert.ok(t, 'cluster c should have outlier detection');
  return t;
}

describe('circuit breaking', { timeout: 60_000 }, () => {
  test('maxConnections 1 + 1 pending: the third concurrent request gets 503 UO at once, the others are served', async () => {
    const slow = await backend('slow', () => ({ delayMs: 400, status: 200 }));
    const gw = await gateway(ir([slow.port], { connectionPool: pool({ maxConnections: 1, maxPendingRequests: 1 }) }));
    const t0 = Date.now();
    const timed = (i: number): Promise<Reply & { ms: number }> => request(gw.port(), { path: `/c${i}` }).then((r) => ({ ...r, ms: Date.now() - t0 }));
    const replies = await Promise.all([timed(0), timed(1), timed(2)]);
    const overflow = replies.filter((r) => r.status === 503);
    assert.equal(overflow.length, 1, `statuses: ${replies.map((r) => r.status).join(',')}`);
    const uo = overflow[0];
    assert.equal(uo.headers['x-meshgate-flags'], 'UO');
    assert.equal(uo.headers['x-envoy-overloaded'], 'true');
    assert.equal(replies.filter((r) => r.status === 200).length, 2);
    // The pending one waited for the first: served one after the other, never two at once.
    const served = replies.filter((r) => r.status === 200).map((r) => r.ms).sort((a, b) => a - b);
    // At once: before the first slot came back (a fixed bound in ms fails on a loaded machine).
    assert.ok(uo.ms < served[0], `overflow answered after ${uo.ms} ms, the first request (400 ms upstream) after ${served[0]} ms: must not wait for a slot`);
    assert.ok(served[1] >= 750, `second request finished after ${served[1]} ms; the two must run one after the other`);
    assert.equal(slow.hits.length, 2, 'the refused request never reached the upstream');
  });

  test('maxRequests: requests over the limit in flight are refused, the slot comes back afterwards', async () => {
    const slow = await backend('slow', () => ({ delayMs: 300, status: 200 }));
    const gw = await gateway(ir([slow.port], { connectionPool: pool({ maxRequests: 2 }) }));
    const replies = await Promise.all([0, 1, 2, 3].map((i) => request(gw.port(), { path: `/m${i}` })));
    assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 503, 503]);
    assert.equal((await request(gw.port(), { path: '/after' })).status, 200, 'slots are released when requests finish');
    assert.equal(gw.runtime.current!.clusters.get('c')!.state!.breaker.active, 0);
  });

  test('maxRetries 0 spare: failures are returned instead of retried when the retry budget is used up', async () => {
    const bad = await backend('bad', () => ({ delayMs: 150, status: 503 }));
    const gw = await gateway(ir([bad.port], { connectionPool: pool({ maxRetries: 1 }), retries: retryPolicy({ numRetries: 1, retryOn: ['5xx'], backoffBaseMs: 1 }) }));
    const replies = await Promise.all([0, 1, 2, 3].map((i) => request(gw.port(), { path: `/x${i}` })));
    assert.deepEqual(replies.map((r) => r.status), [503, 503, 503, 503]);
    // Four first tries at once; at most one retry at a time: fewer than 4 retries happened.
    assert.ok(bad.hits.length >= 5 && bad.hits.length < 8, `tries: ${bad.hits.length}`);
  });
});

describe('outlier detection', { timeout: 60_000 }, () => {
  test('consecutive 5xx ejects the endpoint; it gets no traffic until its time runs out, then returns', async () => {
    const good1 = await backend('good1');
    const good2 = await backend('good2');
    const bad = await backend('bad', () => 500);
    const gw = await gateway(ir([good1.port, good2.port, bad.port], { outlierDetection: outlier({ consecutive5xxErrors: 3, baseEjectionTimeMs: 600 }) }));
    // Round robin: bad gets every third request; after 3 of them it is ejected.
    for (let i = 0; i < 9; i++) await request(gw.port(), { path: `/a${i}` });
    assert.equal(bad.hits.length, 3);
    const t = tracker(gw);
    assert.equal(t.isEjected(`127.0.0.1:${bad.port}`), true);
    const ejectedAt = t.events.at(-1)!.at;
    // While ejected: nothing reaches it.
    for (let i = 0; i < 12; i++) assert.equal((await request(gw.port(), { path: `/b${i}` })).status, 200);
    assert.equal(bad.hits.length, 3, 'ejected endpoint got traffic');
    // After baseEjectionTime (x1) plus one sweep interval it is back.
    bad.behave = () => 200;
    while (t.isEjected(`127.0.0.1:${bad.port}`)) await sleep(20);
    const back = t.events.at(-1)!;
    assert.equal(back.kind, 'return');
    assert.ok(back.at - ejectedAt >= 600 && back.at - ejectedAt < 600 + 400, `returned after ${back.at - ejectedAt} ms, want 600 ms + at most a sweep or so`);
    for (let i = 0; i < 6; i++) await request(gw.port(), { path: `/c${i}` });
    assert.equal(bad.hits.length, 5, 'back in rotation');
  });

  test('a second ejection lasts twice as long; ejections survive a snapshot swap', async () => {
    const good = await backend('good');
    const bad = await backend('bad', () => 503);
    const od = outlier({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, baseEjectionTimeMs: 300 });
    const gw = await gateway(ir([good.port, bad.port], { outlierDetection: od }));
    const t = tracker(gw);
    const key = `127.0.0.1:${bad.port}`;
    for (let i = 0; i < 4; i++) await request(gw.port());
    assert.equal(t.isEjected(key), true);
    while (t.isEjected(key)) await sleep(10);
    const first = t.events.filter((e) => e.endpoint === key);
    const firstLen = first[1].at - first[0].at;
    // Fails again at once: second ejection (x2).
    for (let i = 0; i < 4 && !t.isEjected(key); i++) await request(gw.port());
    assert.equal(t.isEjected(key), true);
    assert.equal(t.ejections(key), 2);
    // A new snapshot with the same cluster: the ejection is kept (state by stable ids).
    await gw.apply(ir([good.port, bad.port], { outlierDetection: od }));
    assert.equal(tracker(gw), t, 'the same tracker serves the new snapshot');
    const before = bad.hits.length;
    for (let i = 0; i < 6; i++) assert.equal((await request(gw.port())).status, 200);
    assert.equal(bad.hits.length, before, 'still ejected after the swap');
    while (t.isEjected(key)) await sleep(10);
    const ev = t.events.filter((e) => e.endpoint === key);
    const secondLen = ev[3].at - ev[2].at;
    assert.ok(secondLen >= 2 * 300 && secondLen > firstLen, `ejections lasted ${firstLen} then ${secondLen} ms; the second must be about twice the base`);
  });

  test('maxEjectionPercent caps ejections (one is always allowed)', async () => {
    const bads = await Promise.all(['b1', 'b2', 'b3', 'b4'].map((n) => backend(n, () => 500)));
    const gw = await gateway(ir(bads.map((b) => b.port), { outlierDetection: outlier({ consecutive5xxErrors: 1, maxEjectionPercent: 30, baseEjectionTimeMs: 10_000 }) }));
    for (let i = 0; i < 20; i++) await request(gw.port());
    const t = tracker(gw);
    assert.equal(t.ejectedCount, 1, `30% of 4 endpoints rounds to 1 ejection; got ${t.ejectedCount}`);
    const ejected = bads.filter((b) => t.isEjected(`127.0.0.1:${b.port}`));
    assert.equal(ejected.length, 1);
    assert.equal(ejected[0].hits.length, 1, 'the ejected endpoint got nothing after its ejection');
  });

  test('retries avoid the failing endpoint and outlier detection sees every try', async () => {
    const good = await backend('good');
    const bad = await backend('bad', () => 503);
    const gw = await gateway(ir([good.port, bad.port], { outlierDetection: outlier({ consecutive5xxErrors: 2, baseEjectionTimeMs: 5000 }), retries: retryPolicy({ retryOn: ['5xx'] }) }));
    for (let i = 0; i < 10; i++) assert.equal((await request(gw.port(), { path: `/r${i}` })).status, 200);
    assert.equal(bad.hits.length, 2, 'bad was ejected after 2 failures');
    assert.equal(good.hits.length, 10, 'every request answered by good exactly once');
    assert.deepEqual(counts([good, bad]), { good: 10, bad: 2 });
  });
});

describe('endpoint conditions', { timeout: 30_000 }, () => {
  test('an endpoint that stops being ready (terminating) finishes its in-flight request and gets no new ones', async () => {
    const leaving = await backend('leaving', () => ({ delayMs: 600, status: 200 }));
    const staying = await backend('staying');
    const snap = (leavingReady: boolean): IRSnapshot =>
      snapshot(
        [httpListener(0, [vhost('v', ['*'], [route('r', forward(['c']), [match()])])])],
        [cluster('c', [{ port: leaving.port, ready: leavingReady }, { port: staying.port }])],
      );
    const gw = await gateway(snap(true));
    // Round robin starts at `leaving`: this request is in flight there when the endpoint turns not ready.
    const inflight = request(gw.port(), { path: '/slow' });
    while (leaving.hits.length === 0) await sleep(10);
    await gw.apply(snap(false));
    for (let i = 0; i < 6; i++) assert.equal((await request(gw.port(), { path: `/n${i}` })).body, 'staying');
    const r = await inflight;
    assert.equal(r.status, 200, 'the in-flight request finished on the terminating endpoint');
    assert.equal(r.body, 'leaving');
    assert.equal(leaving.hits.length, 1);
  });
});
