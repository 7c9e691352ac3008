/**
 * Traffic mirroring (Envoy request_mirror_policies, Istio `mirror`/`mirrors`): fire-and-forget copies.
 *
 * - The copy goes to an endpoint of the mirror cluster chosen by its load balancer, with the
 *   Host/:authority suffixed `-shadow` (`a.example.com:8080` -> `a.example.com-shadow:8080`).
 * - It never affects the client: its answer is read and dropped, its errors are swallowed, it is
 *   bounded in time (the route timeout, else 30 s), and the client's request never waits for it.
 * - Bodies: a request without a body is mirrored at once; a body is mirrored only when it is at most
 *   `MAX_REPLAY_BODY_BYTES`, once it has fully arrived (the copy is sent from memory). Larger bodies
 *   are not mirrored (the copy would need an unbounded buffer or would slow the client down).
 * - A copy takes a slot of the mirror cluster's circuit breaker (Envoy sends shadows through the
 *   cluster's connection pool and its circuit breakers) but never waits for one: when the cluster's
 *   limits are reached the copy is dropped (`mirrorStats.overflow`, and the breaker's overflow
 *   count). Outlier detection does not see mirror answers.
 */

import type { Dispatcher } from 'undici';
import type { Mirror } from '../../ir/types.js';
import type { CompiledCluster } from '../compile/types.js';
import type { CircuitBreaker } from './circuit-breaker.js';
import { selectEndpoint } from './load-balancer.js';
import type { ReplayableBody } from './request-body.js';

export interface CompiledMirror {
  clusterName: string;
  /** null when the cluster is not in the snapshot (nothing is mirrored). */
  cluster: CompiledCluster | null;
  /** Share of requests mirrored, 0-1. */
  fraction: number;
}

export function compileMirrors(mirrors: Mirror[], clusters: Map<string, CompiledCluster>): CompiledMirror[] {
  return mirrors.map((m) => ({ clusterName: m.cluster, cluster: clusters.get(m.cluster) ?? null, fraction: m.percentage / 100 }));
}

/** Mirror copies are cut after this long when the route has no timeout. */
const DEFAULT_MIRROR_TIMEOUT_MS = 30_000;

/** Copies sent and dropped, for tests and metrics. */
export const mirrorStats = { sent: 0, skippedBody: 0, failed: 0, overflow: 0 };

/** The answer of a copy is drained and dropped; errors are counted and swallowed. */
const SHADOW_HANDLER: Dispatcher.DispatchHandler = {
  onConnect() {},
  onHeaders() {
    return true;
  },
  onData() {
    return true;
  },
  onComplete() {},
  onError() {
    mirrorStats.failed++;
  },
};

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
    const dispatcher = endpoint.handle.dispatcher;
    const breaker = m.cluster.state?.breaker ?? null;
    const shadowHeaders = shadow(headers);
    const t = timeoutMs > 0 ? timeoutMs : DEFAULT_MIRROR_TIMEOUT_MS;
    if (body === null) {
      dispatchCopy(dispatcher, breaker, method, target, shadowHeaders, null, t);
      continue;
    }
    body.whenComplete((buf) => {
      if (buf === null) {
        mirrorStats.skippedBody++;
        return;
      }
      dispatchCopy(dispatcher, breaker, method, target, shadowHeaders, buf, t);
    });
  }
}

function dispatchCopy(dispatcher: Dispatcher, breaker: CircuitBreaker | null, method: string, path: string, headers: string[], body: Buffer | null, timeoutMs: number): void {
  let handler = SHADOW_HANDLER;
  if (breaker !== null && breaker.limits !== null) {
    if (!breaker.tryTake()) {
      mirrorStats.overflow++;
      return;
    }
    handler = releasingHandler(breaker);
  }
  mirrorStats.sent++;
  try {
    dispatcher.dispatch({ method: method as Dispatcher.HttpMethod, path, headers, body, headersTimeout: timeoutMs, bodyTimeout: timeoutMs }, handler);
  } catch (e) {
    if (handler === SHADOW_HANDLER) mirrorStats.failed++;
    else handler.onError!(e as Error); // counts the failure and gives the slot back
  }
}

/** SHADOW_HANDLER that also gives the circuit-breaker slot back, once, when the copy ends. */
function releasingHandler(breaker: CircuitBreaker): Dispatcher.DispatchHandler {
  let held = true;
  const release = (): void => {
    if (!held) return;
    held = false;
    breaker.release();
  };
  return {
    ...SHADOW_HANDLER,
    onComplete() {
      release();
    },
    onError() {
      mirrorStats.failed++;
      release();
    },
  };
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
