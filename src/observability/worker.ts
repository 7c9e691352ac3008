/** Observability in a worker process: the options its primary sent, metrics registered for the primary's AggregatorRegistry. */
import { AggregatorRegistry } from './prom.js';
import { createObservability, DEFAULT_OBSERVABILITY, type Observability, type ObservabilityOptions } from './observer.js';
import { OBSERVABILITY_ENV } from './process.js';

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
