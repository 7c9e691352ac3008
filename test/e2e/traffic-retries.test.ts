/**
 * Retries end to end, against backends that fail on purpose: 5xx on a schedule, refused
 * connections, connections killed before or after the response head, slow answers. Asserts what the
 * client sees and how many tries each endpoint received (no request lost, none duplicated where the
 * policy forbids it).
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { Cluster, RetryPolicy } from '../../src/ir/types.js';
import { backoffMs, compileRetryPolicy } from '../../src/runtime/upstream/retry-policy.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { request } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { counts, istioDefaultRetries, refusingPort, retryPolicy, startBackend, type Action, type Backend, type Hit } from './traffic-support.js';

const open: { close(): Promise<void> }[] = [];
after(async () => {
  for (const o of open.reverse()) await o.close();
});

async function backend(name: string, behave: (hit: Hit) => Action = () => 200): Promise<Backend> {
  const b = await startBackend(name, behave);
  open.push(b);
  return b;
}

/** A gateway with one catch-all route to a cluster over `ports`, with `retries` and an optional route timeout. */
async function gateway(ports: number[], retries: RetryPolicy | null, extra: { timeoutMs?: number; cluster?: Partial<Cluster> } = {}): Promise<RuntimeHarness> {
  const gw = await startRuntime(
    snapshot(
      [httpListener(0, [vhost('v', ['*'], [route('r', forward(['c'], { retries, timeoutMs: extra.timeoutMs ?? null }), [match()])])])],
      [cluster('c', ports.map((port) => ({ port })), { connectTimeoutMs: 1000, ...extra.cluster })],
    ),
  );
  open.push({ close: () => gw.close(500) });
  return gw;
}

describe('retries', { timeout: 60_000 }, () => {
  test('5xx on a schedule: the retry goes to the other endpoint and the client sees 200', async () => {
    // a fails its first two requests with 503, b always answers.
    const a = await backend('a', (h) => (h.n <= 2 ? 503 : 200));
    const b = await backend('b');
    const gw = await gateway([a.port, b.port], retryPolicy({ retryOn: ['5xx'] }));
    for (let i = 0; i < 4; i++) {
      const r = await request(gw.port(), { path: `/req${i}` });
      assert.equal(r.status, 200, `request ${i}: want 200, got ${r.status} ${r.body}`);
    }
    // Every request that failed on a was retried exactly once, on b (never on a again).
    const aUrls = a.hits.map((h) => h.url);
    const bUrls = b.hits.map((h) => h.url);
    assert.equal(a.hits.filter((h) => h.n <= 2).length, 2);
    for (const u of aUrls.slice(0, 2)) assert.equal(bUrls.filter((x) => x === u).length, 1, `retry of ${u} should reach b once; b got ${bUrls.join(',')}`);
    assert.equal(aUrls.length + bUrls.length, 4 + 2, `tries: want 6 (4 requests + 2 retries), got a=${aUrls.join(',')} b=${bUrls.join(',')}`);
  });

  test('retries run out: the last 5xx reaches the client; tries = 1 + attempts, spread over endpoints', async () => {
    const a = await backend('a', () => 503);
    const b = await backend('b', () => 503);
    const c = await backend('c', () => 503);
    const gw = await gateway([a.port, b.port, c.port], retryPolicy({ numRetries: 2, retryOn: ['gateway-error'] }));
    const r = await request(gw.port(), { path: '/x' });
    assert.equal(r.status, 503);
    assert.deepEqual(counts([a, b, c]), { a: 1, b: 1, c: 1 }, 'each try on a different endpoint');
  });

  test('retriable-status-codes retries only the listed codes', async () => {
    const a = await backend('a', () => 500);
    const gw = await gateway([a.port], retryPolicy({ numRetries: 3, retryOn: ['retriable-status-codes'], retriableStatusCodes: [503] }));
    assert.equal((await request(gw.port())).status, 500);
    assert.equal(a.hits.length, 1, '500 is not in the list: no retry');
    a.behave = (h) => (h.n <= 3 ? 503 : 200);
    assert.equal((await request(gw.port())).status, 200);
    assert.equal(a.hits.length, 4, 'one endpoint: retries go back to it (no other is available)');
  });

  test('refused connections: Istio default policy retries on connect-failure, no request lost', async () => {
    const dead = await refusingPort();
    const live = await backend('live');
    const gw = await gateway([dead, live.port], istioDefaultRetries());
    const n = 20;
    const replies = await Promise.all(Array.from({ length: n }, (_, i) => request(gw.port(), { path: `/r${i}` })));
    assert.deepEqual(replies.map((r) => r.status), Array(n).fill(200));
    const urls = live.hits.map((h) => h.url).sort();
    assert.deepEqual(urls, Array.from({ length: n }, (_, i) => `/r${i}`).sort(), 'every request reached the live endpoint exactly once');
  });

  test('killed before the head: not retried by the default policy (the request may have been processed)', async () => {
    const a = await backend('a', () => 'reset-before-head');
    const b = await backend('b');
    const gw = await gateway([a.port, b.port], istioDefaultRetries());
    const r = await request(gw.port(), { path: '/once' });
    assert.equal(r.status, 503);
    assert.equal(r.headers['x-meshgate-flags'], 'UC');
    assert.deepEqual(counts([a, b]), { a: 1, b: 0 }, 'no duplicate: the reset request is not sent again');
  });

  test('killed before the head with retryOn reset: retried on the other endpoint', async () => {
    const a = await backend('a', () => 'reset-before-head');
    const b = await backend('b');
    const gw = await gateway([a.port, b.port], retryPolicy({ retryOn: ['reset'] }));
    for (let i = 0; i < 4; i++) assert.equal((await request(gw.port(), { path: `/k${i}` })).status, 200);
    assert.equal(b.hits.length, 4, 'every request answered by b, once');
    const aUrls = a.hits.map((h) => h.url);
    assert.equal(new Set(aUrls).size, aUrls.length, `a never got a retry of a request it had reset: ${aUrls.join(',')}`);
  });

  test('killed mid-body (after the head): never retried, the client connection is reset', async () => {
    const a = await backend('a', () => 'reset-mid-body');
    const b = await backend('b');
    const gw = await gateway([a.port, b.port], retryPolicy({ retryOn: ['5xx', 'reset', 'connect-failure'] }));
    await assert.rejects(request(gw.port(), { path: '/mid' }), 'a truncated body must not look complete');
    assert.deepEqual(counts([a, b]), { a: 1, b: 0 });
  });

  test('small POST body is replayed byte for byte on the retry', async () => {
    const a = await backend('a', () => 503);
    const b = await backend('b');
    const gw = await gateway([a.port, b.port], retryPolicy({ retryOn: ['5xx'] }));
    const body = 'x'.repeat(10_000) + 'END';
    const r = await request(gw.port(), { method: 'POST', path: '/post', body, headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 200);
    assert.equal(a.hits[0].body, body);
    assert.equal(b.hits[0].body, body, 'the retry carries the same body');
  });

  test('large POST body (over 64 KiB) that went upstream is not replayed: the 5xx reaches the client', async () => {
    const a = await backend('a', () => 503);
    const b = await backend('b');
    const gw = await gateway([a.port, b.port], retryPolicy({ retryOn: ['5xx'] }));
    const body = 'y'.repeat(200_000);
    const r = await request(gw.port(), { method: 'POST', path: '/big', body });
    assert.equal(r.status, 503);
    assert.deepEqual(counts([a, b]), { a: 1, b: 0 });
    assert.equal(a.hits[0].body.length, body.length);
  });

  test('large POST body to a refusing endpoint is retried (nothing was sent)', async () => {
    const dead = await refusingPort();
    const b = await backend('b');
    const gw = await gateway([dead, b.port], retryPolicy({ retryOn: ['connect-failure'] }), { cluster: { lbPolicy: 'ROUND_ROBIN' } });
    const body = 'z'.repeat(300_000);
    // Round robin starts at the refusing endpoint.
    const r = await request(gw.port(), { method: 'POST', path: '/big', body });
    assert.equal(r.status, 200);
    assert.equal(b.hits.length, 1);
    assert.equal(b.hits[0].body.length, body.length);
  });

  test('per-try timeout: a slow endpoint is abandoned and the retry answers quickly', async () => {
    const slow = await backend('slow', () => ({ delayMs: 3000, status: 200 }));
    const fast = await backend('fast');
    const gw = await gateway([slow.port, fast.port], retryPolicy({ retryOn: ['gateway-error'], perTryTimeoutMs: 150 }));
    const t0 = Date.now();
    const r = await request(gw.port(), { path: '/slow' });
    const ms = Date.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'fast');
    assert.ok(ms < 1500, `answered in ${ms} ms, want well under the slow endpoint's 3 s`);
  });

  test('per-try timeout without a retriable condition: 504 UT after one try', async () => {
    const slow = await backend('slow', () => ({ delayMs: 3000, status: 200 }));
    const gw = await gateway([slow.port], retryPolicy({ retryOn: ['connect-failure'], perTryTimeoutMs: 150 }));
    const r = await request(gw.port());
    assert.equal(r.status, 504);
    assert.equal(r.headers['x-meshgate-flags'], 'UT');
    assert.equal(slow.hits.length, 1);
  });

  test('the route timeout bounds all tries together', async () => {
    const a = await backend('a', () => ({ delayMs: 200, status: 503 }));
    const gw = await gateway([a.port], retryPolicy({ numRetries: 10, retryOn: ['5xx'] }), { timeoutMs: 500 });
    const t0 = Date.now();
    const r = await request(gw.port());
    const ms = Date.now() - t0;
    assert.equal(r.status, 504);
    assert.ok(ms < 1200, `took ${ms} ms`);
    assert.ok(a.hits.length >= 2 && a.hits.length <= 4, `tries within 500 ms: ${a.hits.length}`);
  });

  test('no retry policy: exactly one try', async () => {
    const a = await backend('a', () => 503);
    const b = await backend('b', () => 503);
    const gw = await gateway([a.port, b.port], null);
    assert.equal((await request(gw.port())).status, 503);
    assert.equal(a.hits.length + b.hits.length, 1);
  });
});

describe('retry backoff', () => {
  test('jittered exponential: retry n waits in [0, min(base*2^(n-1), 10*base))', () => {
    const p = compileRetryPolicy(retryPolicy({ backoffBaseMs: 25 }))!;
    const cases = [
      { retry: 1, max: 25 },
      { retry: 2, max: 50 },
      { retry: 3, max: 100 },
      { retry: 5, max: 250 },
      { retry: 9, max: 250 },
    ];
    for (const c of cases) {
      assert.equal(backoffMs(p, c.retry, 0), 0);
      const hi = backoffMs(p, c.retry, 0.999999);
      assert.equal(hi, c.max - 1, `retry ${c.retry}: want max ${c.max - 1}, got ${hi}`);
    }
  });
});
