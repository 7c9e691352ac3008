/**
 * Load shedding (hardening D-05, Envoy's overload manager): when the V8 heap of this process is
 * above `heapFraction` of its limit, new requests are answered 503 at once (flag `OM`,
 * `x-envoy-overloaded: true`) while requests already in flight complete, instead of the process
 * running out of memory. The heap is sampled on a coarse timer (unref'd), so a request pays one
 * boolean read.
 */

import { getHeapStatistics } from 'node:v8';

/** Mutable for tests. Envoy's edge example stops accepting requests at 98 % of the heap; meshgate sheds at 95 %. */
export const OVERLOAD = {
  heapFraction: 0.95,
  sampleIntervalMs: 250,
};

let shedding = false;
let timer: NodeJS.Timeout | null = null;

function sample(): void {
  const h = getHeapStatistics();
  shedding = h.used_heap_size > OVERLOAD.heapFraction * h.heap_size_limit;
}

/** True while the process sheds load. Starts the sampler on first use. */
export function isOverloaded(): boolean {
  if (timer === null) {
    sample();
    timer = setInterval(sample, OVERLOAD.sampleIntervalMs);
    timer.unref();
  }
  return shedding;
}

/** Takes a sample now (tests). */
export function sampleOverloadNow(): void {
  sample();
}

