import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { test } from 'node:test';
import v8 from 'node:v8';
import { compactHeapSoon, reduceMemory } from './heap.js';

const newSpaceBytes = (): number => v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;

/** Grows the young generation as translating a configuration does: many objects that survive scavenges, then dropped. */
function growYoungGeneration(): void {
  let keep: { i: number; s: string }[] | null = [];
  for (let i = 0; i < 400_000; i++) keep.push({ i, s: `x${i}` });
  keep = null;
}

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

test('reduceMemory: the young generation grown by a burst of allocation is given back (a plain full collection keeps it)', { skip: typeof (v8 as { queryObjects?: unknown }).queryObjects === 'function' ? false : 'needs Node.js >= 20.13 (v8.queryObjects)' }, () => {
  growYoungGeneration();
  const grown = newSpaceBytes();
  assert.ok(reduceMemory());
  const after = newSpaceBytes();
  assert.ok(after < grown, `new space ${grown} -> ${after} bytes`);
  assert.ok(after <= 4 * 1024 * 1024, `new space after the memory-reducing collection: ${after} bytes`);
});

test("compactHeapSoon 'always': the memory-reducing collection gives the young generation back", { skip: typeof (v8 as { queryObjects?: unknown }).queryObjects === 'function' ? false : 'needs Node.js >= 20.13 (v8.queryObjects)' }, async () => {
  growYoungGeneration();
  const grown = newSpaceBytes();
  compactHeapSoon(20, 'always');
  const deadline = Date.now() + 10_000;
  while (newSpaceBytes() >= grown && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(newSpaceBytes() < grown, `new space ${grown} -> ${newSpaceBytes()} bytes`);
});

test('reduceMemory prints no ExperimentalWarning (a fresh process: Node.js warns once per process)', () => {
  const heapModule = new URL('./heap.js', import.meta.url).href;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const { reduceMemory } = await import(${JSON.stringify(heapModule)}); if (!reduceMemory()) process.exit(3);`], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
});
