/**
 * Starts a Runtime in-process for a test and tears it down: the IR's listeners usually use port 0,
 * and `port(i)` returns what listener i actually bound.
 */

import assert from 'node:assert/strict';
import type { IRSnapshot } from '../../src/ir/types.js';
import { Runtime, type ApplyResult, type RuntimeOptions } from '../../src/runtime/runtime.js';

export interface RuntimeHarness {
  runtime: Runtime;
  /** The last apply result. */
  result: ApplyResult;
  /** Bound port of listener `i` (default 0) of the last applied snapshot. */
  port(i?: number): number;
  apply(ir: IRSnapshot): Promise<ApplyResult>;
  close(graceMs?: number): Promise<void>;
}

export async function startRuntime(ir: IRSnapshot, options: RuntimeOptions = {}): Promise<RuntimeHarness> {
  const runtime = new Runtime({ listenerDrainMs: 2000, ...options });
  const h: RuntimeHarness = {
    runtime,
    result: await runtime.apply(ir),
    port(i = 0) {
      const l = h.result.listeners[i];
      assert.ok(l && l.boundPort !== null, `listener ${i} should be bound, got ${JSON.stringify(l)}`);
      return l.boundPort;
    },
    async apply(next) {
      h.result = await runtime.apply(next);
      return h.result;
    },
    close: (graceMs = 1000) => runtime.close(graceMs),
  };
  assert.equal(h.result.applied, true, `apply should succeed, errors: ${h.result.errors.join('; ')}`);
  return h;
}
