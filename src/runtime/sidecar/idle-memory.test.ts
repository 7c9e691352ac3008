import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compactAfterTraffic } from './idle-memory.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Keeps this process on the CPU for `ms`, yielding to timers every few ms. */
async function busy(ms: number): Promise<void> {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    const slice = performance.now() + 5;
    while (performance.now() < slice) Math.sqrt(Math.random());
    await new Promise<void>((r) => setImmediate(r));
  }
}

/** Waits until `check()` or `ms` pass (a loaded machine delays timers). */
async function until(check: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check() && Date.now() < deadline) await sleep(20);
}

test('compactAfterTraffic: compacts once when a busy period turns idle, and not again while idle', async () => {
  let calls = 0;
  const stop = compactAfterTraffic({ compact: () => calls++, intervalMs: 100, growthBytes: -Infinity, quietMs: 0 });
  try {
    await busy(350);
    await until(() => calls > 0, 5000);
    assert.equal(calls, 1, 'one compaction after the busy period ended');
    await sleep(400);
    assert.equal(calls, 1, 'none while idle');
    await busy(350);
    await until(() => calls > 1, 5000);
    assert.equal(calls, 2, 'the next burst gets its own');
  } finally {
    stop();
  }
});

test('compactAfterTraffic: nothing when the process was never busy, or the heap did not grow enough', async () => {
  let calls = 0;
  const stopIdle = compactAfterTraffic({ compact: () => calls++, intervalMs: 100, growthBytes: -Infinity, quietMs: 0 });
  await sleep(500);
  stopIdle();
  assert.equal(calls, 0, 'idle all along');
  const stopSmall = compactAfterTraffic({ compact: () => calls++, intervalMs: 100, growthBytes: 1024 ** 4, quietMs: 0 });
  await busy(350);
  await sleep(1000);
  stopSmall();
  assert.equal(calls, 0, 'the heap did not grow by the threshold');
});

test('compactAfterTraffic: waits for a quiet period; a burst inside it starts the wait again', async () => {
  let calls = 0;
  let at = 0;
  const stop = compactAfterTraffic({ compact: () => ((calls += 1), (at = performance.now())), intervalMs: 100, growthBytes: -Infinity, quietMs: 800 });
  try {
    await busy(350);
    const idleFrom = performance.now();
    await sleep(400);
    assert.equal(calls, 0, 'not within the quiet period');
    // A second burst before the period is over: the wait starts again after it.
    await busy(350);
    const idleAgain = performance.now();
    await sleep(500);
    assert.equal(calls, 0, 'the burst restarted the quiet period');
    await until(() => calls > 0, 5000);
    assert.equal(calls, 1);
    assert.ok(at - idleAgain >= 700, `compacted ${Math.round(at - idleAgain)} ms after the last burst, ${Math.round(at - idleFrom)} ms after the first`);
  } finally {
    stop();
  }
});
