/**
 * UpstreamCall: the resilience side of one forwarded request (retries, per-try timeouts, circuit
 * breaking, outlier reporting), kept out of the Exchange so the plain path stays as it was.
 *
 * Created only when the route or cluster needs it (a retry policy, connection-pool limits or
 * outlier detection); the Exchange then hands it every try's outcome:
 *
 *   begin ──admit──► dispatch try ──► onResponse(status) ──► relay (Exchange)
 *     │  (overflow: 503 UO)   │  ▲           │ retriable?
 *     │  (queued: onSlot)     │  │           ▼
 *     │                       ▼  └─ backoff ◄─ abort(RETRY) / onTryError(reset, connect, per-try)
 *
 * Rules (Envoy router + Istio defaults):
 *  - at most `maxTries` tries; a retry waits a jittered exponential backoff (25 ms base);
 *  - a retry avoids the endpoints already tried while another is available;
 *  - a body is replayed only from the bounded copy (`request-body.ts`): a try that consumed body
 *    bytes that were not all kept is never repeated;
 *  - over the cluster's `maxRetries` retries in progress, the failure is returned instead;
 *  - the route timeout (Exchange) bounds all tries together; the per-try timeout each one;
 *  - every answer and failure of an endpoint is reported to outlier detection.
 */

import type { CompiledCluster, CompiledEndpoint } from '../compile/types.js';
import type { UpstreamRequest } from './client.js';
import { Errors, TLS_VERIFY_CODES, type LocalError } from '../http/local-reply.js';
import { Admission, type SlotWaiter } from './circuit-breaker.js';
import { selectEndpoint, type HashInput } from './load-balancer.js';
import type { ReplayableBody } from './request-body.js';
import { backoffMs, nonIdempotent, retriesFailure, retriesResponse, TryFailure, usesRetriableHeaders, type CompiledRetryPolicy } from './retry-policy.js';

/** What the call needs from the Exchange. */
export interface CallOwner extends HashInput {
  /** True while no response head was relayed and the request is not finished. */
  readonly waiting: boolean;
  /** Sends a try to `endpoint` (the previous try, if any, is over). */
  dispatchTo(endpoint: CompiledEndpoint, opts: UpstreamRequest): void;
  /** Ends the request with a local answer. */
  fail(e: LocalError): void;
  /** The request method (for `idempotentOnly` policies). */
  readonly method: string;
}

/** Abort reason when a response head is discarded to retry. */
export const RETRY_ABORT = Object.assign(new Error('meshgate: retrying'), { code: 'MG_RETRY' });
/** Abort reason of an expired per-try timeout; classified as an upstream timeout (504 UT). */
export const PER_TRY_TIMEOUT = Object.assign(new Error('meshgate: per-try timeout'), { code: 'UND_ERR_HEADERS_TIMEOUT' });

/** What the Exchange does with a response head (UpstreamCall.onResponse). */
export const enum ResponseVerdict {
  /** Relay it to the client. */
  Relay,
  /** Nothing: the try was aborted and a retry is scheduled. */
  Retried,
  /** Read and drop the body, then call `drained()`. */
  DrainThenRetry,
}

/** Dropped answers up to this size are read to the end so the connection can be reused. */
const MAX_DRAIN_BYTES = 16 * 1024;

/** Whether the answer says it has a body of at most MAX_DRAIN_BYTES (Content-Length). */
function smallBody(rawHeaders: string[]): boolean {
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i];
    if (name.length === 14 && name.toLowerCase() === 'content-length') {
      const n = Number(rawHeaders[i + 1]);
      return Number.isInteger(n) && n >= 0 && n <= MAX_DRAIN_BYTES;
    }
  }
  return false;
}

/** Error codes of connections that could not be made (nothing was sent). */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT', 'ECONNRESET_BEFORE_CONNECT']);

/** Errors that are not the endpoint's fault (not reported to outlier detection, never retried). */
const LOCAL_CODES = new Set(['MG_ERR_UPSTREAM_TIMEOUT', 'MG_ERR_DOWNSTREAM_CLOSED', 'UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'UND_ERR_ABORTED', 'MG_ERR_BODY_TOO_LARGE']);

export class UpstreamCall implements SlotWaiter {
  readonly #owner: CallOwner;
  readonly #cluster: CompiledCluster;
  readonly #retry: CompiledRetryPolicy | null;
  readonly #random: () => number;
  readonly #body: ReplayableBody | null;
  #opts: UpstreamRequest | null = null;
  #endpoint: CompiledEndpoint | null = null;
  #tries = 0;
  #tried: CompiledEndpoint[] | null = null;
  #abort: ((err?: Error) => void) | null = null;
  #perTryTimer: NodeJS.Timeout | null = null;
  #perTryExpired = false;
  #backoffTimer: NodeJS.Timeout | null = null;
  /** Holds a circuit-breaker slot / is queued for one / holds a retry slot. */
  #slot = false;
  #queued = false;
  #retrySlot = false;
  #retriableHeaderNames: string[] | null | undefined = undefined;

  constructor(owner: CallOwner, cluster: CompiledCluster, endpoint: CompiledEndpoint, retry: CompiledRetryPolicy | null, random: () => number, body: ReplayableBody | null) {
    this.#owner = owner;
    this.#cluster = cluster;
    this.#endpoint = endpoint;
    this.#retry = retry;
    this.#random = random;
    this.#body = body;
  }

  /** Number of tries dispatched so far. */
  get tries(): number {
    return this.#tries;
  }

  /** First try: takes a circuit-breaker slot (or queues, or overflows), then dispatches. */
  begin(opts: UpstreamRequest): void {
    this.#opts = opts;
    const breaker = this.#cluster.state?.breaker ?? null;
    if (breaker !== null) {
      const a = breaker.admit(this);
      if (a === Admission.Overflow) return this.#owner.fail(Errors.overflow);
      if (a === Admission.Queued) {
        this.#queued = true;
        return;
      }
      this.#slot = true;
    }
    this.#dispatch(this.#endpoint!);
  }

  /** The circuit breaker granted a slot to this queued request. */
  onSlot(): void {
    this.#queued = false;
    this.#slot = true;
    if (!this.#owner.waiting) {
      this.#releaseSlot();
      return;
    }
    this.#dispatch(this.#endpoint!);
  }

  #dispatch(endpoint: CompiledEndpoint): void {
    const opts = this.#opts!;
    if (this.#body !== null) opts.body = this.#body.stream();
    this.#endpoint = endpoint;
    this.#tries++;
    this.#abort = null;
    this.#perTryExpired = false;
    const perTry = this.#retry?.perTryTimeoutMs ?? 0;
    if (perTry > 0) this.#perTryTimer = setTimeout(onPerTryTimeout, perTry, this);
    this.#owner.dispatchTo(endpoint, opts);
  }

  /** The client took the try (it may be aborted from now on). */
  connected(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#perTryExpired) abort(PER_TRY_TIMEOUT);
  }

  perTryExpired(): void {
    this.#perTryTimer = null;
    this.#perTryExpired = true;
    if (this.#abort !== null) this.#abort(PER_TRY_TIMEOUT);
  }

  /**
   * A response head arrived. Reports it to outlier detection and says what the Exchange does with
   * it: relay it, nothing (the try was aborted for a retry), or read and drop its small body, then
   * call `drained()` (the connection stays usable: cheaper than aborting it).
   */
  onResponse(status: number, rawHeaders: string[]): ResponseVerdict {
    this.#endTry(status);
    const p = this.#retry;
    if (p === null || !retriesResponse(p, status, rawHeaders, this.#headerNames(p))) return ResponseVerdict.Relay;
    // nginx: a non-idempotent request that reached the upstream is never passed to the next one.
    if (p.idempotentOnly && nonIdempotent(this.#owner.method)) return ResponseVerdict.Relay;
    if (!this.#canRetry()) return ResponseVerdict.Relay;
    if (smallBody(rawHeaders)) return ResponseVerdict.DrainThenRetry;
    // Abort the try; the client reports RETRY_ABORT through onTryError, which schedules the retry.
    this.#abort!(RETRY_ABORT);
    return ResponseVerdict.Retried;
  }

  /** The dropped answer of a retried try was read to its end (or broke off): send the retry. */
  drained(): void {
    this.#scheduleRetry();
  }

  /** A try failed before its response head. True when a retry was scheduled (no answer to send). */
  onTryError(err: Error): boolean {
    if (err === RETRY_ABORT) {
      this.#scheduleRetry();
      return true;
    }
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && LOCAL_CODES.has(code)) {
      this.#endTry(-1);
      return false;
    }
    this.#endTry(0);
    const p = this.#retry;
    if (p === null || !this.#owner.waiting) return false;
    const failure = err === PER_TRY_TIMEOUT ? TryFailure.PerTryTimeout : typeof code === 'string' && (CONNECT_CODES.has(code) || TLS_VERIFY_CODES.has(code) || code.startsWith('ERR_SSL_')) ? TryFailure.Connect : TryFailure.Reset;
    if (!retriesFailure(p, failure) || (failure !== TryFailure.Connect && p.idempotentOnly && nonIdempotent(this.#owner.method)) || !this.#canRetry()) return false;
    this.#scheduleRetry();
    return true;
  }

  /** The request is over (answered, failed, or the client left). */
  finish(): void {
    this.#clearPerTry();
    this.#body?.release();
    if (this.#backoffTimer !== null) {
      clearTimeout(this.#backoffTimer);
      this.#backoffTimer = null;
    }
    if (this.#retrySlot) {
      this.#retrySlot = false;
      this.#cluster.state?.breaker.endRetry();
    }
    if (this.#queued) {
      this.#queued = false;
      this.#cluster.state?.breaker.cancel(this);
    }
    this.#releaseSlot();
  }

  #releaseSlot(): void {
    if (!this.#slot) return;
    this.#slot = false;
    this.#cluster.state?.breaker.release();
  }

  /** Ends the current try: timers, retry slot, outlier report (`status` 0 = local-origin failure, -1 = none). */
  #endTry(status: number): void {
    this.#clearPerTry();
    if (this.#retrySlot) {
      this.#retrySlot = false;
      this.#cluster.state?.breaker.endRetry();
    }
    const outlier = this.#cluster.state?.outlier ?? null;
    if (outlier !== null && status >= 0 && this.#endpoint !== null) outlier.report(this.#endpoint.key, status);
  }

  #canRetry(): boolean {
    const p = this.#retry!;
    if (this.#tries >= p.maxTries || !this.#owner.waiting) return false;
    if (this.#body !== null && !this.#body.replayable) return false;
    const breaker = this.#cluster.state?.breaker ?? null;
    if (breaker !== null && !breaker.tryStartRetry()) return false;
    this.#retrySlot = breaker !== null;
    return true;
  }

  #scheduleRetry(): void {
    (this.#tried ??= []).push(this.#endpoint!);
    const delay = backoffMs(this.#retry!, this.#tries, this.#random());
    this.#backoffTimer = setTimeout(onBackoff, delay, this);
  }

  /** Backoff over: pick an endpoint (avoiding those tried) and send the next try. */
  retryNow(): void {
    this.#backoffTimer = null;
    if (!this.#owner.waiting) return;
    const p = this.#retry!;
    const endpoint = selectEndpoint(this.#cluster, this.#random, this.#owner, p.ignorePreviousHosts ? this.#tried : null);
    if (endpoint === null || endpoint.handle === null) return this.#owner.fail(Errors.noHealthyUpstream);
    this.#dispatch(endpoint);
  }

  #clearPerTry(): void {
    if (this.#perTryTimer !== null) {
      clearTimeout(this.#perTryTimer);
      this.#perTryTimer = null;
    }
  }

  /** The request's `x-envoy-retriable-header-names`, lowercased (read once, only when the policy uses it). */
  #headerNames(p: CompiledRetryPolicy): string[] | null {
    if (this.#retriableHeaderNames !== undefined) return this.#retriableHeaderNames;
    if (!usesRetriableHeaders(p)) return (this.#retriableHeaderNames = null);
    const v = this.#owner.header('x-envoy-retriable-header-names');
    return (this.#retriableHeaderNames = v === null ? null : v.split(',').map((s) => s.trim().toLowerCase()).filter((s) => s !== ''));
  }
}

function onPerTryTimeout(c: UpstreamCall): void {
  c.perTryExpired();
}

function onBackoff(c: UpstreamCall): void {
  c.retryNow();
}
