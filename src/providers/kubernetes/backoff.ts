/**
 * Exponential backoff with jitter and a cap, as client-go's reflector uses between failed lists and
 * watches: 0.5 s doubling to 30 s; each delay is drawn in [d/2, d] so replicas do not retry in step.
 */
export interface BackoffOptions {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 500, maxMs: 30_000 };

export class Backoff {
  readonly #opts: BackoffOptions;
  #attempt = 0;

  constructor(opts: BackoffOptions = DEFAULT_BACKOFF, readonly random: () => number = Math.random) {
    this.#opts = opts;
  }

  /** The delay before the next attempt; grows with each call until reset(). */
  next(): number {
    const ceiling = Math.min(this.#opts.maxMs, this.#opts.initialMs * 2 ** Math.min(this.#attempt, 30));
    this.#attempt++;
    return Math.round(ceiling / 2 + (this.random() * ceiling) / 2);
  }

  reset(): void {
    this.#attempt = 0;
  }
}

/** A sleep that `wake()` ends early (used to stop loops promptly). */
export class Sleeper {
  #timer: NodeJS.Timeout | null = null;
  #resolve: (() => void) | null = null;

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#resolve = resolve;
      // A retry delay never keeps the process alive by itself.
      this.#timer = setTimeout(() => this.wake(), ms).unref();
    });
  }

  wake(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    const r = this.#resolve;
    this.#resolve = null;
    r?.();
  }
}
