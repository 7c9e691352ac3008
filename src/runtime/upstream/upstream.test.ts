/**
 * Table tests for the pure parts of traffic management: retry decisions, circuit-breaker admission,
 * outlier ejection with a fake clock, cookie parsing, shadow hosts.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { RetryPolicy } from '../../ir/types.js';
import { Admission, CircuitBreaker } from './circuit-breaker.js';
import { cookieValue } from './load-balancer.js';
import { shadowHost } from './mirror.js';
import { OutlierTracker } from './outlier-detection.js';
import { compileRetryPolicy, retriesFailure, retriesResponse, TryFailure } from './retry-policy.js';

function policy(p: Partial<RetryPolicy>): NonNullable<ReturnType<typeof compileRetryPolicy>> {
  return compileRetryPolicy({ numRetries: 2, perTryTimeoutMs: null, retryOn: ['5xx'], retriableStatusCodes: [], backoffBaseMs: 25, ignorePreviousHosts: true, ...p })!;
}

const h = (...pairs: string[]): string[] => pairs;

describe('retry decisions', () => {
  const cases: { desc: string; p: Partial<RetryPolicy>; status: number; headers?: string[]; names?: string[] | null; want: boolean }[] = [
    { desc: '5xx retries 500', p: { retryOn: ['5xx'] }, status: 500, want: true },
    { desc: '5xx does not retry 404', p: { retryOn: ['5xx'] }, status: 404, want: false },
    { desc: 'gateway-error retries 502/503/504 only', p: { retryOn: ['gateway-error'] }, status: 503, want: true },
    { desc: 'gateway-error does not retry 500', p: { retryOn: ['gateway-error'] }, status: 500, want: false },
    { desc: 'retriable-4xx retries 409', p: { retryOn: ['retriable-4xx'] }, status: 409, want: true },
    { desc: 'retriable-status-codes: listed', p: { retryOn: ['retriable-status-codes'], retriableStatusCodes: [429] }, status: 429, want: true },
    { desc: 'retriable-status-codes: empty list retries nothing (Istio default)', p: { retryOn: ['retriable-status-codes'] }, status: 503, want: false },
    { desc: 'unavailable: grpc-status 14', p: { retryOn: ['unavailable'] }, status: 200, headers: h('Grpc-Status', '14'), want: true },
    { desc: 'unavailable: grpc-status 13 is not it', p: { retryOn: ['unavailable'] }, status: 200, headers: h('grpc-status', '13'), want: false },
    { desc: 'envoy-ratelimited', p: { retryOn: ['envoy-ratelimited'] }, status: 429, headers: h('x-envoy-ratelimited', 'true'), want: true },
    { desc: 'retriable-headers: named by the request', p: { retryOn: ['retriable-headers'] }, status: 200, headers: h('X-Retry-Me', '1'), names: ['x-retry-me'], want: true },
    { desc: 'retriable-headers: not named', p: { retryOn: ['retriable-headers'] }, status: 200, headers: h('X-Retry-Me', '1'), names: null, want: false },
  ];
  for (const c of cases) {
    test(c.desc, () => assert.equal(retriesResponse(policy(c.p), c.status, c.headers ?? [], c.names ?? null), c.want));
  }

  const failures: { desc: string; on: RetryPolicy['retryOn']; f: TryFailure; want: boolean }[] = [
    { desc: 'connect-failure retries a refused connection', on: ['connect-failure'], f: TryFailure.Connect, want: true },
    { desc: 'connect-failure does not retry a reset after connecting', on: ['connect-failure'], f: TryFailure.Reset, want: false },
    { desc: 'reset retries a reset', on: ['reset'], f: TryFailure.Reset, want: true },
    { desc: '5xx retries a per-try timeout', on: ['5xx'], f: TryFailure.PerTryTimeout, want: true },
    { desc: 'retriable-4xx retries no failure', on: ['retriable-4xx'], f: TryFailure.Connect, want: false },
  ];
  for (const c of failures) test(c.desc, () => assert.equal(retriesFailure(policy({ retryOn: c.on }), c.f), c.want));

  test('attempts 0 compiles to no policy', () => assert.equal(compileRetryPolicy({ numRetries: 0, perTryTimeoutMs: null, retryOn: ['5xx'], retriableStatusCodes: [], backoffBaseMs: 25, ignorePreviousHosts: true }), null));
});

describe('circuit breaker', () => {
  const waiter = () => ({ granted: 0, onSlot() { this.granted++; } });

  test('no limits: always Go', () => {
    const b = new CircuitBreaker();
    for (let i = 0; i < 5; i++) assert.equal(b.admit(waiter()), Admission.Go);
    assert.equal(b.active, 5);
  });

  test('maxConnections then maxPendingRequests then overflow; release hands the slot to the oldest', async () => {
    const b = new CircuitBreaker();
    b.limits = { maxConnections: 1, maxPendingRequests: 2, maxRequests: null, maxRequestsPerConnection: null, maxRetries: null, idleTimeoutMs: null };
    const [w1, w2, w3, w4] = [waiter(), waiter(), waiter(), waiter()];
    assert.deepEqual([b.admit(w1), b.admit(w2), b.admit(w3), b.admit(w4)], [Admission.Go, Admission.Queued, Admission.Queued, Admission.Overflow]);
    b.release();
    await new Promise((r) => process.nextTick(r));
    assert.deepEqual([w2.granted, w3.granted], [1, 0]);
    b.cancel(w3);
    b.release();
    assert.equal(b.active, 0);
    assert.equal(b.overflows, 1);
  });

  test('maxRetries', () => {
    const b = new CircuitBreaker();
    b.limits = { maxConnections: null, maxPendingRequests: null, maxRequests: null, maxRequestsPerConnection: null, maxRetries: 1, idleTimeoutMs: null };
    assert.equal(b.tryStartRetry(), true);
    assert.equal(b.tryStartRetry(), false);
    b.endRetry();
    assert.equal(b.tryStartRetry(), true);
  });
});

describe('outlier detection', () => {
  test('ejection, return at a sweep after base x count, multiplier decay', () => {
    let now = 0;
    const t = new OutlierTracker({ consecutive5xxErrors: 2, consecutiveGatewayErrors: 0, intervalMs: 1_000_000, baseEjectionTimeMs: 100, maxEjectionPercent: 100, minHealthPercent: 0 }, () => now);
    t.close(); // sweeps are driven by hand
    t.configure(t.config, ['a', 'b']);
    t.report('a', 500);
    t.report('a', 200); // a success resets the count
    t.report('a', 500);
    assert.equal(t.isEjected('a'), false);
    t.report('a', 0); // local-origin failure counts
    assert.equal(t.isEjected('a'), true);
    now = 99;
    t.sweep();
    assert.equal(t.isEjected('a'), true);
    now = 100;
    t.sweep();
    assert.equal(t.isEjected('a'), false);
    t.report('a', 503);
    t.report('a', 503);
    assert.equal(t.ejections('a'), 2);
    now = 100 + 199;
    t.sweep();
    assert.equal(t.isEjected('a'), true, 'second ejection lasts 2 x base');
    now = 300;
    t.sweep();
    assert.equal(t.isEjected('a'), false);
    now = 400;
    t.sweep();
    assert.equal(t.ejections('a'), 1, 'one base time back in service lowers the multiplier');
  });

  test('gateway detector counts 502-504 and connect failures only', () => {
    const t = new OutlierTracker({ consecutive5xxErrors: 0, consecutiveGatewayErrors: 2, intervalMs: 1_000_000, baseEjectionTimeMs: 100, maxEjectionPercent: 100, minHealthPercent: 0 });
    t.close();
    t.configure(t.config, ['a']);
    t.report('a', 502);
    t.report('a', 500);
    t.report('a', 504);
    assert.equal(t.isEjected('a'), false, '500 breaks the gateway-error streak');
    t.report('a', 0);
    assert.equal(t.isEjected('a'), true);
  });

  test('an endpoint gone from the cluster is forgotten', () => {
    const t = new OutlierTracker({ consecutive5xxErrors: 1, consecutiveGatewayErrors: 0, intervalMs: 1_000_000, baseEjectionTimeMs: 100, maxEjectionPercent: 100, minHealthPercent: 0 });
    t.close();
    t.configure(t.config, ['a', 'b']);
    t.report('a', 500);
    assert.equal(t.ejectedCount, 1);
    t.configure(t.config, ['b']);
    assert.equal(t.ejectedCount, 0);
    assert.equal(t.isEjected('a'), false);
  });
});

describe('helpers', () => {
  const cookies: { header: string | null; name: string; want: string | null }[] = [
    { header: 'a=1; b=2', name: 'b', want: '2' },
    { header: 'a=1;b=2', name: 'a', want: '1' },
    { header: 'ab=1; b=2', name: 'a', want: null },
    { header: 'x=1,session=abc', name: 'session', want: 'abc' },
    { header: null, name: 'a', want: null },
  ];
  for (const c of cookies) test(`cookieValue(${JSON.stringify(c.header)}, ${c.name})`, () => assert.equal(cookieValue(c.header, c.name), c.want));

  const hosts: [string, string][] = [
    ['shop.example.com', 'shop.example.com-shadow'],
    ['shop.example.com:8080', 'shop.example.com-shadow:8080'],
    ['[::1]:80', '[::1]-shadow:80'],
    ['[::1]', '[::1]-shadow'],
  ];
  for (const [host, want] of hosts) test(`shadowHost(${host})`, () => assert.equal(shadowHost(host), want));
});
