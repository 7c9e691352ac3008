/**
 * Observability across processes: the options travel to each worker in an environment variable;
 * each worker keeps its metrics in its own prom-client Registry, and the primary asks every
 * worker for them and sums them with prom-client's AggregatorRegistry (its IPC messages have their
 * own `type`, which the data plane's message handlers ignore).
 */
import { AggregatorRegistry } from 'prom-client';
import { createObservability, DEFAULT_OBSERVABILITY, type Observability, type ObservabilityOptions } from './observer.js';

export const OBSERVABILITY_ENV = 'MESHGATE_OBSERVABILITY';

/** Environment for a forked worker. */
export function observabilityEnv(options: ObservabilityOptions): Record<string, string> {
  return { [OBSERVABILITY_ENV]: JSON.stringify(options) };
}

/** In a worker: the Observability its primary asked for, registered for AggregatorRegistry. */
export function workerObservability(): Observability {
  const raw = process.env[OBSERVABILITY_ENV];
  const options: ObservabilityOptions = raw ? { ...DEFAULT_OBSERVABILITY, ...(JSON.parse(raw) as Partial<ObservabilityOptions>) } : DEFAULT_OBSERVABILITY;
  const obs = createObservability(options);
  AggregatorRegistry.setRegistries([obs.registry]);
  // Constructing one is what makes prom-client answer the primary's requests in a worker.
  new AggregatorRegistry();
  return obs;
}

let aggregator: AggregatorRegistry<'text/plain; version=0.0.4; charset=utf-8'> | null = null;

/** In the primary: every worker's metrics, summed, in the Prometheus text format. */
export function clusterMetrics(): Promise<string> {
  aggregator ??= new AggregatorRegistry();
  return aggregator.clusterMetrics();
}
