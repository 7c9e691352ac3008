/**
 * Give memory back after a configuration change. Translating and compiling a large snapshot grows
 * V8's heap (the young generation to its maximum, old space with garbage of the previous snapshot);
 * V8 keeps those pages committed while the process is idle, and they are most of the idle RSS of a
 * gateway with thousands of routes (measured: 10,000 routes, primary 153 -> 112 MiB, worker
 * 126 -> 118 MiB after one full collection, the primary to 82 MiB after two). So, once the reloads settle (`delayMs` after the last
 * call), a few full garbage collections run, never per request, once per burst of reloads.
 *
 * V8 exposes a collection to JavaScript only with `--expose-gc`; the flag is set at run time and the
 * `gc` function taken from a new context (it applies to contexts created after it is set), so
 * operators need no extra node flags.
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

/** Full collections in a row; V8 shrinks the heap a step per collection (measured: 3 reach the floor). */
const ROUNDS = 3;

/**
 * Full collections `delayMs` after the last call (each call postpones them), `ROUNDS` of them 50 ms
 * apart (weak callbacks and finalizers run in between, and each round lets V8 lower its limits).
 */
export function compactHeapSoon(delayMs = 2000): void {
  if (timer !== null) clearTimeout(timer);
  let round = 0;
  const step = () => {
    timer = null;
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
