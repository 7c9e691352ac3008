/**
 * Fault injection (Istio HTTPFaultInjection, Envoy fault filter), applied after the route is chosen
 * and before any endpoint is: a delay (flag `DI`), then maybe an abort answered locally (flag `FI`).
 * The route timeout starts after the delay, as in Envoy (the router only sees the request then).
 */

import type { FaultAbort, FaultInjection } from '../../ir/types.js';
import type { Downstream } from '../http/downstream.js';
import { faultAbortError, grpcFaultAbortError } from '../http/local-errors.js';
import { sendLocalError } from '../http/local-reply.js';

/** Delay (ms, 0 = none) drawn for one request. */
export function faultDelayMs(f: FaultInjection, random: () => number): number {
  const d = f.delay;
  if (d === null || d.percentage <= 0) return 0;
  return d.percentage >= 100 || random() * 100 < d.percentage ? d.fixedDelayMs : 0;
}

/** The abort drawn for one request, or null. */
export function faultAbort(f: FaultInjection, random: () => number): FaultAbort | null {
  const a = f.abort;
  if (a === null || a.percentage <= 0) return null;
  return a.percentage >= 100 || random() * 100 < a.percentage ? a : null;
}

/** Answers an injected abort: the status with body `fault filter abort`, or a gRPC trailers-only answer. */
export function sendFaultAbort(d: Downstream, a: FaultAbort): void {
  sendLocalError(d, a.kind === 'grpc' ? grpcFaultAbortError(a.grpcStatus) : faultAbortError(a.status));
}
