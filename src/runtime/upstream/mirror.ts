/**
 * Traffic mirroring (Envoy request_mirror_policies, Istio `mirror`/`mirrors`): fire-and-forget copies.
 *
 * - The copy goes to an endpoint of the mirror cluster chosen by its load balancer, with the
 *   Host/:authority suffixed `-shadow` (`a.example.com:8080` -> `a.example.com-shadow:8080`).
 * - It never affects the client: its answer is read and dropped, its errors are swallowed, it is
 *   bounded in time (the route timeout, else 30 s), and the client's request never waits for it.
 * - Bodies: a request without a body is mirrored at once; a body is mirrored only when it is at most
 *   the mirror's `bodyLimit` (default `MAX_REPLAY_BODY_BYTES`; ingress-nginx mirrors raise it to
 *   proxy-body-size), once it has fully arrived (the copy is sent from memory). Larger bodies are not
 *   mirrored (the copy would need an unbounded buffer or would slow the client down).
 * - A copy takes a slot of the mirror cluster's circuit breaker (Envoy sends shadows through the
 *   cluster's connection pool and its circuit breakers) but never waits for one: when the cluster's
 *   limits are reached the copy is dropped (`mirrorStats.overflow`, and the breaker's overflow
 *   count). Outlier detection does not see mirror answers.
 */

import type { Mirror } from '../../ir/types.js';
import type { CompiledCluster } from '../compile/types.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import { selectEndpoint } from './load-balancer.js';
import { MAX_REPLAY_BODY_BYTES, type ReplayableBody } from './request-body.js';
import type { UpstreamClient, UpstreamHandler } from './client.js';

export interface CompiledMirror {
  clusterName: string;
  /** null when the cluster is not in the snapshot (nothing is mirrored). */
  cluster: CompiledCluster | null;
  /** Share of requests mirrored, 0-1. */
  fraction: number;
  /** Host of the copy; null = the request's with `-shadow`. */
  authority: string | null;
  /** false: the copy goes without the body. */
  withBody: boolean;
  /** Largest body mirrored, bytes (IR `requestBodyLimitBytes`, default MAX_REPLAY_BODY_BYTES). */
  bodyLimit: number;
}

export function compileMirrors(mirrors: Mirror[], clusters: Map<string, CompiledCluster>): CompiledMirror[] {
  return mirrors.map((m) => ({ clusterName: m.cluster, cluster: clusters.get(m.cluster) ?? null, fraction: m.percentage / 100, authority: m.authority ?? null, withBody: m.requestBody !== false, bodyLimit: m.requestBodyLimitBytes ?? MAX_REPLAY_BODY_BYTES }));
}

/** Mirror copies are cut after this long when the route has no timeout. */
const DEFAULT_MIRROR_TIMEOUT_MS = 30_000;

/** Copies sent and dropped, for tests and metrics. */
export const mirrorStats = { sent: 0, skippedBody: 0, failed: 0, overflow: 0 };

/** Abort reason of a copy that ran out of time. */
const MIRROR_TIMEOUT = Object.assign(new Error('meshgate: mirror timeout'), { code: 'MG_ERR_UPSTREAM_TIMEOUT' });

/**
 * One copy in flight: its answer is drained and dropped, errors are counted and swallowed, the
 * copy is cut after its time bound, and the circuit-breaker slot (if one was taken) is given back
 * once when it ends.
 */
class ShadowCopy implements UpstreamHandler {
  #breaker: CircuitBreaker | null;
  #abort: ((err?: Error) => void) | null = null;
  #timer: NodeJS.Timeout | null;

  constructor(breaker: CircuitBreaker | null, timeoutMs: number) {
    this.#breaker = breaker;
    this.#timer = setTimeout(onCopyTimeout, timeoutMs, this);
    this.#timer.unref();
  }

  onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
  }
  onHeaders(): boolean {
    return true;
  }
  onData(): boolean {
    return true;
  }
  onComplete(): void {
    this.#end();
  }
  onError(): void {
    mirrorStats.failed++;
    this.#end();
  }

  expired(): void {
    this.#timer = null;
    this.#abort?.(MIRROR_TIMEOUT);
  }

  #end(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    const b = this.#breaker;
    this.#breaker = null;
    b?.release();
  }
}

function onCopyTimeout(c: ShadowCopy): void {
  c.expired();
}

/**
 * Sends the copies `mirrors` call for. `headers` are the final upstream request headers (lowercase
 * names, including `host`); `body` is the kept request body, or null when the request has none.
 */
export function sendMirrors(
  mirrors: CompiledMirror[],
  random: () => number,
  method: string,
  target: string,
  headers: string[],
  body: ReplayableBody | null,
  timeoutMs: number,
): void {
  for (const m of mirrors) {
    if (m.cluster === null || m.cluster.discovery === 'missing') continue;
    if (m.fraction < 1 && random() >= m.fraction) continue;
    // No hash input: a mirror must not generate a sticky cookie on the client's response.
    const endpoint = selectEndpoint(m.cluster, random, null);
    if (endpoint === null || endpoint.handle === null) continue;
    const client = endpoint.handle.dispatcher;
    const breaker = m.cluster.state?.breaker ?? null;
    const shadowHeaders = m.authority === null ? shadow(headers) : withHost(headers, m.authority, !m.withBody);
    const t = timeoutMs > 0 ? timeoutMs : DEFAULT_MIRROR_TIMEOUT_MS;
    if (body === null || !m.withBody) {
      dispatchCopy(client, breaker, method, target, shadowHeaders, null, t);
      continue;
    }
    body.whenComplete((buf) => {
      if (buf === null || buf.length > m.bodyLimit) {
        mirrorStats.skippedBody++;
        return;
      }
      dispatchCopy(client, breaker, method, target, shadowHeaders, buf, t);
    });
  }
}

function dispatchCopy(client: UpstreamClient, breaker: CircuitBreaker | null, method: string, path: string, headers: string[], body: Buffer | null, timeoutMs: number): void {
  let held: CircuitBreaker | null = null;
  if (breaker !== null && breaker.limits !== null) {
    if (!breaker.tryTake()) {
      mirrorStats.overflow++;
      return;
    }
    held = breaker;
  }
  mirrorStats.sent++;
  client.dispatch({ method, path, headers, body }, new ShadowCopy(held, timeoutMs));
}

/** A copy of `headers` with `host` replaced (and, `bodyless`, without the body's framing headers). */
function withHost(headers: string[], host: string, bodyless: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i];
    if (n === 'host' || (bodyless && (n === 'content-length' || n === 'transfer-encoding'))) continue;
    out.push(n, headers[i + 1]);
  }
  out.push('host', host);
  return out;
}

/** A copy of `headers` with the host suffixed `-shadow` (before any port). */
export function shadow(headers: string[]): string[] {
  const out = headers.slice();
  for (let i = 0; i < out.length; i += 2) {
    if (out[i] !== 'host') continue;
    out[i + 1] = shadowHost(out[i + 1]);
  }
  return out;
}

export function shadowHost(host: string): string {
  const close = host.lastIndexOf(']');
  const colon = host.lastIndexOf(':');
  if (colon > close) return `${host.slice(0, colon)}-shadow${host.slice(colon)}`;
  return `${host}-shadow`;
}
