/**
 * Circuit breaking (Istio ConnectionPoolSettings, Envoy cluster circuit breakers), per cluster.
 *
 * A request takes a slot before it is dispatched and gives it back when it is finished (all its
 * tries included). With `maxConnections` set, requests beyond it wait as pending, in arrival order;
 * a request over `maxRequests` (in flight, pending included) or `maxPendingRequests` is refused at
 * once: the caller answers 503 `UO` with `x-envoy-overloaded: true`. Retries in progress are capped
 * by `maxRetries`: over it, the failure is returned instead of retried.
 *
 * Protocol-neutral on purpose: the HTTP/1.1 exchange and the HTTP/2 / gRPC upstream code call the
 * same three methods (`admit`, `release`, `cancel`). The state lives in `ClusterState` and survives
 * snapshot swaps, so a reload resets no counter; the limits are updated at each swap.
 */

import type { ConnectionPool } from '../../ir/types.js';

/** Someone waiting for a slot. `onSlot` runs on a later tick, with the slot already taken. */
export interface SlotWaiter {
  onSlot(): void;
}

export const enum Admission {
  /** The slot is taken: dispatch now. */
  Go,
  /** Queued: `onSlot` will be called, or `cancel` must be. */
  Queued,
  /** Over a limit: answer 503 UO. Nothing was taken. */
  Overflow,
}

export class CircuitBreaker {
  /** Current limits (from the latest snapshot); null = none. */
  limits: ConnectionPool | null = null;
  /** Requests holding a slot. */
  active = 0;
  /** Retries in progress. */
  retries = 0;
  /** Requests refused for overflow since start (for tests and metrics). */
  overflows = 0;
  readonly #pending: SlotWaiter[] = [];

  get pending(): number {
    return this.#pending.length;
  }

  admit(w: SlotWaiter): Admission {
    const l = this.limits;
    if (l !== null) {
      if (l.maxRequests !== null && this.active + this.#pending.length >= l.maxRequests) {
        this.overflows++;
        return Admission.Overflow;
      }
      if (l.maxConnections !== null && this.active >= l.maxConnections) {
        if (l.maxPendingRequests !== null && this.#pending.length >= l.maxPendingRequests) {
          this.overflows++;
          return Admission.Overflow;
        }
        this.#pending.push(w);
        return Admission.Queued;
      }
    }
    this.active++;
    return Admission.Go;
  }

  /**
   * Takes a slot only when one is free at once (no queueing): for traffic that must never wait or
   * crowd out clients, i.e. mirror copies. false (and an overflow counted) otherwise.
   */
  tryTake(): boolean {
    const l = this.limits;
    if (l !== null) {
      const over =
        (l.maxRequests !== null && this.active + this.#pending.length >= l.maxRequests) ||
        (l.maxConnections !== null && this.active >= l.maxConnections) ||
        this.#pending.length > 0;
      if (over) {
        this.overflows++;
        return false;
      }
    }
    this.active++;
    return true;
  }

  /** Gives a slot back; the oldest pending request (if any, and the limits allow) gets it. */
  release(): void {
    this.active--;
    const q = this.#pending;
    while (q.length > 0) {
      const max = this.limits?.maxConnections ?? null;
      if (max !== null && this.active >= max) return;
      const w = q.shift()!;
      this.active++;
      process.nextTick(grant, w);
    }
  }

  /** Removes a pending request that gave up (timeout, client gone). */
  cancel(w: SlotWaiter): void {
    const i = this.#pending.indexOf(w);
    if (i !== -1) this.#pending.splice(i, 1);
  }

  /** Takes a retry slot; false when `maxRetries` retries are already in progress. */
  tryStartRetry(): boolean {
    const max = this.limits?.maxRetries ?? null;
    if (max !== null && this.retries >= max) {
      this.overflows++;
      return false;
    }
    this.retries++;
    return true;
  }

  endRetry(): void {
    this.retries--;
  }
}

function grant(w: SlotWaiter): void {
  w.onSlot();
}
