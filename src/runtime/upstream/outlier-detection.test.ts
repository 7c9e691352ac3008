/** OutlierTracker's view for metrics and the admin API: ejection totals and per-endpoint state, on a fake clock. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OutlierTracker } from './outlier-detection.js';

test('endpointStates: ejected until base x times, times ejected never lowered, totals per tracker', () => {
  let now = 1_000_000;
  const t = new OutlierTracker({ consecutive5xxErrors: 2, consecutiveGatewayErrors: 0, intervalMs: 1_000_000, baseEjectionTimeMs: 100, maxEjectionPercent: 100, minHealthPercent: 0 }, () => now);
  t.configure(t.config, ['a:1', 'b:1']);
  try {
    assert.deepEqual(t.endpointStates(), [], 'nothing ejected yet');
    t.report('a:1', 503);
    t.report('b:1', 200);
    t.report('a:1', 500);
    assert.deepEqual(t.endpointStates(), [{ endpoint: 'a:1', ejected: true, ejectedUntil: 1_000_100, timesEjected: 1 }]);
    assert.equal(t.totalEjections, 1);
    now += 100;
    t.sweep();
    assert.deepEqual(t.endpointStates(), [{ endpoint: 'a:1', ejected: false, ejectedUntil: null, timesEjected: 1 }]);
    t.report('a:1', 502);
    t.report('a:1', 502);
    // Second ejection: twice the base time.
    assert.deepEqual(t.endpointStates(), [{ endpoint: 'a:1', ejected: true, ejectedUntil: now + 200, timesEjected: 2 }]);
    assert.equal(t.totalEjections, 2);
  } finally {
    t.close();
  }
});
