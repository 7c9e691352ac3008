/**
 * The traffic-management steps of forwarding, called by the request handler with a line each:
 * fault injection before an endpoint is chosen, then the UpstreamCall (retries, circuit breaking,
 * outlier reporting) and mirrors once the upstream request is built. Routes and clusters that use
 * none of them pay one null check each.
 */

import type { Downstream } from '../http/downstream.js';
import type { FaultInjection } from '../../ir/types.js';
import { noteLocalReply } from '../../observability/record.js';
import type { CompiledCluster, CompiledEndpoint, CompiledForward } from '../compile/types.js';
import { faultAbort, faultDelayMs, sendFaultAbort } from '../filters/fault.js';
import type { Exchange } from '../http/exchange.js';
import { sendMirrors } from './mirror.js';
import { ReplayableBody } from './request-body.js';
import { nonIdempotent } from './retry-policy.js';
import { UpstreamCall } from './upstream-call.js';

/**
 * Applies a route's fault: waits the drawn delay (flag DI), then answers the drawn abort (flag FI)
 * or calls `next` to forward. A client that leaves during the delay cancels it.
 */
export function injectFault(f: FaultInjection, random: () => number, d: Downstream, next: () => void): void {
  const delay = faultDelayMs(f, random);
  const abort = faultAbort(f, random);
  const go = (): void => {
    // A client that left during the delay: nothing is sent or forwarded.
    if (d.destroyed || d.ended) return;
    if (abort !== null) return sendFaultAbort(d, abort);
    next();
  };
  if (delay <= 0) return go();
  noteLocalReply(d.record, 'DI', 0);
  setTimeout(go, delay);
}

/** The body kept for the copies: the largest bound of the mirrors that send one. */
function mirrorBodyLimit(mirrors: CompiledForward['mirrors'] & object): number | undefined {
  let limit: number | undefined;
  for (const m of mirrors) if (m.withBody && (limit === undefined || m.bodyLimit > limit)) limit = m.bodyLimit;
  return limit;
}

/**
 * Starts what the upstream request needs beyond a plain dispatch: mirrors are sent, and an
 * UpstreamCall is returned when there is a retry policy, a body to keep for copies, connection
 * limits or outlier detection (null otherwise: the Exchange dispatches directly).
 */
export function startUpstreamPolicies(
  random: () => number,
  x: Exchange,
  cluster: CompiledCluster,
  endpoint: CompiledEndpoint,
  action: CompiledForward,
  target: string,
  headers: string[],
  hasBody: boolean,
  timeoutMs: number,
): UpstreamCall | null {
  const mirrors = action.mirrors;
  // A POST under an idempotent-only policy (ingress-nginx) is retried only when nothing was sent: no copy is kept.
  const keep = mirrors === null ? (action.retry !== null && action.retry.idempotentOnly && nonIdempotent(x.method) ? 0 : undefined) : mirrorBodyLimit(mirrors);
  const body = hasBody && (action.retry !== null || mirrors !== null) ? new ReplayableBody(x.requestBody ?? x.d.body, keep) : null;
  if (mirrors !== null) sendMirrors(mirrors, random, x.method, target, headers, body, timeoutMs);
  const state = cluster.state;
  if (action.retry === null && body === null && (state === null || (state.breaker.limits === null && state.outlier === null))) return null;
  return new UpstreamCall(x, cluster, endpoint, action.retry, random, body);
}
