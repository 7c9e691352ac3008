import assert from 'node:assert/strict';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { test } from 'node:test';
import { compactHeapSoon } from './heap.js';

test('compactHeapSoon: full collections run once calls settle, without --expose-gc', async () => {
  assert.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'this test runs without --expose-gc');
  const majors: number[] = [];
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if ((e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) majors.push(e.startTime);
  });
  obs.observe({ entryTypes: ['gc'] });
  try {
    const asked = performance.now();
    // Three calls in a row: one burst, so one series of collections, 50 ms after the last call.
    compactHeapSoon(50);
    compactHeapSoon(50);
    compactHeapSoon(50);
    const deadline = Date.now() + 10_000;
    while (majors.filter((t) => t >= asked).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(majors.filter((t) => t >= asked).length >= 3, `expected 3 full collections, saw ${majors.length}`);
  } finally {
    obs.disconnect();
  }
});
