/**
 * Local rate limiting: token buckets per route, per client address or per header value (IR
 * `LocalRateLimit`). Over the limit: 429 with `retry-after`, `x-ratelimit-limit`,
 * `x-ratelimit-remaining` and `x-ratelimit-reset`, and the Envoy response flag `RL`.
 *
 * Buckets are per process (with `--workers N`, each worker enforces the limit on its share, as
 * Envoy's local rate limit does per instance) and survive snapshot swaps while the limit's
 * settings are unchanged. The number of keyed buckets is bounded (`MAX_KEYS`); the least recently
 * used ones are forgotten first, so random keys cannot exhaust memory.
 */

import type { LocalRateLimit } from '../../ir/types.js';

/** Keyed buckets kept per limit. */
export const MAX_KEYS = 10_000;

interface Bucket {
  tokens: number;
  /** ms timestamp of the last refill. */
  at: number;
}

export class CompiledRateLimit {
  readonly name: string;
  readonly key: LocalRateLimit['key'];
  readonly maxTokens: number;
  readonly tokensPerFill: number;
  readonly fillIntervalMs: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(l: LocalRateLimit) {
    this.name = l.name;
    this.key = l.key;
    this.maxTokens = l.maxTokens;
    this.tokensPerFill = l.tokensPerFill;
    this.fillIntervalMs = l.fillIntervalMs;
  }

  /**
   * Takes a token for `key` at time `now` (ms). Returns -1 when allowed, else the ms until a token
   * is available.
   */
  take(key: string, now: number): number {
    let b = this.#buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.maxTokens, at: now };
      if (this.#buckets.size >= MAX_KEYS) this.#buckets.delete(this.#buckets.keys().next().value as string);
    } else {
      // Refill in whole fill intervals, as Envoy's token bucket does.
      const fills = Math.floor((now - b.at) / this.fillIntervalMs);
      if (fills > 0) {
        b.tokens = Math.min(this.maxTokens, b.tokens + fills * this.tokensPerFill);
        b.at += fills * this.fillIntervalMs;
      }
      this.#buckets.delete(key); // re-inserted below: Map order is the LRU order
    }
    this.#buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      return -1;
    }
    return Math.max(1, b.at + this.fillIntervalMs - now);
  }

  remaining(key: string): number {
    return Math.floor(this.#buckets.get(key)?.tokens ?? this.maxTokens);
  }
}

/** Buckets survive swaps: one CompiledRateLimit per name and settings, per process. */
const live = new Map<string, CompiledRateLimit>();

export function compileRateLimit(l: LocalRateLimit): CompiledRateLimit {
  const id = `${l.name}\n${l.maxTokens}\n${l.tokensPerFill}\n${l.fillIntervalMs}\n${JSON.stringify(l.key)}`;
  let c = live.get(id);
  if (c === undefined) {
    c = new CompiledRateLimit(l);
    live.set(id, c);
    if (live.size > 1000) live.delete(live.keys().next().value as string);
  }
  return c;
}

/** The bucket key of a request. */
export function rateLimitKey(l: CompiledRateLimit, routeName: string, remoteIp: string, header: (name: string) => string | null): string {
  switch (l.key.kind) {
    case 'route':
      return routeName;
    case 'remote-ip':
      return `${routeName}\n${remoteIp}`;
    case 'header':
      return `${routeName}\n${header(l.key.name) ?? ''}`;
  }
}

