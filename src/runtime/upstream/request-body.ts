/**
 * A request body that can be sent more than once (retries) and copied (mirrors), within a bound.
 *
 * The client's body is streamed to the current try as it arrives (back-pressure kept: the client is
 * read only when the try's stream asks for more) and, up to `limit` bytes, also kept in memory. A
 * new try gets a fresh stream that first replays the kept bytes, then continues with the client.
 * Once more than `limit` bytes went through, nothing is kept: a try that already consumed bytes
 * cannot be repeated (`replayable` false), as Envoy stops retrying when a body exceeds its buffer.
 * A try that consumed nothing (a connection that could not be made) can always be repeated.
 */

import { Readable } from 'node:stream';

/** Bodies up to this size are kept for retries and mirrors (Envoy's per-request buffer is similar). */
export const MAX_REPLAY_BODY_BYTES = 64 * 1024;

export class ReplayableBody {
  readonly #req: Readable;
  readonly #limit: number;
  /** Kept chunks; null once the body went over the limit. */
  #chunks: Buffer[] | null = [];
  #size = 0;
  /** Bytes read from the client so far. */
  #pulled = 0;
  #ended = false;
  #current: Readable | null = null;
  #onComplete: ((body: Buffer | null) => void)[] | null = null;
  /** The request is over: whatever still arrives is drained, not kept. */
  #released = false;

  constructor(req: Readable, limit = MAX_REPLAY_BODY_BYTES) {
    this.#req = req;
    this.#limit = limit;
    req.on('data', (chunk: Buffer) => this.#data(chunk));
    req.on('end', () => this.#end());
    req.pause();
  }

  /** Whether a new try can be given the whole body. */
  get replayable(): boolean {
    return this.#pulled === 0 || this.#chunks !== null;
  }

  /** A stream for a new try (the previous try's stream is abandoned); null when not replayable. */
  stream(): Readable | null {
    if (!this.replayable) return null;
    const req = this.#req;
    const s = new Readable({
      read() {
        req.resume();
      },
    });
    // undici destroys the body of a try it aborts; that must not touch the client's stream.
    s.on('error', noop);
    this.#current = s;
    if (this.#chunks !== null) for (const c of this.#chunks) s.push(c);
    if (this.#ended) s.push(null);
    return s;
  }

  /** Calls `cb` with the whole body once it has arrived, or null when it is over the limit. */
  whenComplete(cb: (body: Buffer | null) => void): void {
    if (this.#ended) return cb(this.#chunks === null ? null : Buffer.concat(this.#chunks, this.#size));
    (this.#onComplete ??= []).push(cb);
  }

  /** The request is answered: stop keeping bytes and let the rest of the body drain (keep-alive). */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#chunks = null;
    this.#current = null;
    if (!this.#ended) this.#req.resume();
  }

  #data(chunk: Buffer): void {
    this.#pulled += chunk.length;
    if (this.#released) return;
    if (this.#chunks !== null) {
      if (this.#size + chunk.length <= this.#limit) {
        this.#chunks.push(chunk);
        this.#size += chunk.length;
      } else {
        this.#chunks = null;
        this.#size = 0;
      }
    }
    const s = this.#current;
    if (s === null || s.destroyed || !s.push(chunk)) this.#req.pause();
  }

  #end(): void {
    this.#ended = true;
    const s = this.#current;
    if (s !== null && !s.destroyed) s.push(null);
    const waiters = this.#onComplete;
    this.#onComplete = null;
    if (waiters !== null) {
      const body = this.#chunks === null ? null : Buffer.concat(this.#chunks, this.#size);
      for (const cb of waiters) cb(body);
    }
  }
}

function noop(): void {}
