/**
 * Give memory back after a configuration change. Translating and compiling a large snapshot grows
 * V8's heap (the young generation to its maximum, old space with garbage of the previous snapshot);
 * V8 keeps those pages committed while the process is idle, and they are most of the idle RSS of a
 * gateway with thousands of routes (measured: 10,000 routes, primary 153 -> 112 MiB, worker
 * 126 -> 118 MiB after one full collection, the primary to 82 MiB after two). So, once the reloads settle (`delayMs` after the last
 * call), a few full garbage collections run, never per request, once per burst of reloads.
 *
 * The collection that gives memory back is V8's memory-reducing one (it also shrinks the young
 * generation, which a plain full collection leaves at its largest: 8-16 MiB committed per process).
 * V8 runs one by itself only 8 s after the last full collection with little allocation (its memory
 * reducer). From JavaScript, `v8.queryObjects` (Node.js >= 20.13, experimental) starts with exactly
 * that collection (`CollectAllAvailableGarbage`, reason "heap profiler"); it is asked to count the
 * instances of a class that has none, so what remains of its cost is one walk over the heap
 * (see `ReduceMode` for what it costs and where it is used). `npm run bench:rss`, 3 s after routing
 * works: `--workers 0` one route 65.2 -> 61.7 MiB; primary of `--workers 1` with the 500-route bench
 * table 79.3 -> 64.0 MiB (docs/benchmarks.md).
 *
 * Without `v8.queryObjects`: V8 exposes a collection to JavaScript only with `--expose-gc`; the flag
 * is set at run time and the `gc` function taken from a new context (it applies to contexts created
 * after it is set), so operators need no extra node flags. Those full collections free the garbage
 * but keep the young generation's pages.
 */
import v8 from 'node:v8';
import vm from 'node:vm';

let gc: (() => void) | null | undefined;
let timer: NodeJS.Timeout | null = null;

function collector(): (() => void) | null {
  if (gc !== undefined) return gc;
  const exposed = (globalThis as { gc?: () => void }).gc;
  if (typeof exposed === 'function') return (gc = exposed);
  try {
    v8.setFlagsFromString('--expose-gc');
    const fn: unknown = vm.runInNewContext('gc');
    gc = typeof fn === 'function' ? (fn as () => void) : null;
  } catch {
    gc = null;
  }
  return gc;
}

type QueryObjects = (ctor: abstract new () => unknown, options: { format: 'count' }) => number;
const queryObjects = (v8 as unknown as { queryObjects?: QueryObjects }).queryObjects;

/** A class never instantiated: counting its instances finds none, quickly. */
class NeverInstantiated {}

/**
 * One memory-reducing full collection through `v8.queryObjects`; false when this Node.js has none
 * (or it failed). The one-time ExperimentalWarning it emits in Node.js 20 is not printed.
 */
export function reduceMemory(): boolean {
  if (typeof queryObjects !== 'function') return false;
  const emitWarning = process.emitWarning;
  process.emitWarning = () => {};
  try {
    queryObjects(NeverInstantiated, { format: 'count' });
    return true;
  } catch {
    return false;
  } finally {
    process.emitWarning = emitWarning;
  }
}

/** Full collections in a row; V8 shrinks the heap a step per collection (measured: 3 reach the floor). */
const ROUNDS = 3;

/**
 * How far to go (`reduce`). The memory-reducing collection walks the whole heap as well: measured
 * ~8 ms per MiB of live heap (11 MiB: 90 ms, 69 MiB: 530 ms, 230 MiB: 1.8 s), 4-5x the three plain
 * collections, in one pause. So:
 *   - 'always': a process that serves no traffic (the primary of `--workers N`);
 *   - 'small-heap': only while at most `SMALL_HEAP_BYTES` are live (`--workers 0`, which serves
 *     traffic: a small install pays ~100 ms once after a reload; a large table gets plain ones);
 *   - 'never': plain collections only (data-plane workers: no extra pause under traffic).
 */
export type ReduceMode = 'always' | 'small-heap' | 'never';

/** Live heap up to which 'small-heap' runs the memory-reducing collection (about 250 ms of pause). */
export const SMALL_HEAP_BYTES = 32 * 1024 * 1024;

/**
 * Full collections `delayMs` after the last call (each call postpones them): one memory-reducing
 * collection (per `reduce`), or `ROUNDS` plain ones 50 ms apart (weak callbacks and finalizers run
 * in between, and each round lets V8 lower its limits).
 */
export function compactHeapSoon(delayMs = 2000, reduce: ReduceMode = 'never'): void {
  if (timer !== null) clearTimeout(timer);
  let round = 0;
  const step = () => {
    timer = null;
    if (round === 0 && (reduce === 'always' || (reduce === 'small-heap' && process.memoryUsage().heapUsed <= SMALL_HEAP_BYTES)) && reduceMemory()) return;
    const gc = collector();
    if (gc === null) return;
    gc();
    if (++round < ROUNDS) {
      timer = setTimeout(step, 50);
      timer.unref();
    }
  };
  timer = setTimeout(step, delayMs);
  timer.unref();
}
