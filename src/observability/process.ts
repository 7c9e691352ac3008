/**
 * Observability across processes, the primary's side: the options travel to each worker in an
 * environment variable (read by `worker.ts`); each worker keeps its metrics in its own prom-client
 * Registry, and the primary asks every worker for them and sums them with prom-client's
 * AggregatorRegistry (its IPC messages have their own `type`, which the data plane's message handlers
 * ignore). This file loads neither the request observer nor the metric definitions: the primary
 * only forwards options and sums text.
 */
import { AggregatorRegistry } from './prom.js';
import type { ObservabilityOptions } from './observer.js';

export const OBSERVABILITY_ENV = 'MESHGATE_OBSERVABILITY';

/** Environment for a forked worker. */
export function observabilityEnv(options: ObservabilityOptions): Record<string, string> {
  return { [OBSERVABILITY_ENV]: JSON.stringify(options) };
}

let aggregator: AggregatorRegistry<'text/plain; version=0.0.4; charset=utf-8'> | null = null;

/** In the primary: every worker's metrics, summed, in the Prometheus text format. */
export function clusterMetrics(): Promise<string> {
  aggregator ??= new AggregatorRegistry();
  return aggregator.clusterMetrics();
}
