/**
 * The parts of prom-client meshgate uses, loaded from their own files. prom-client's index also
 * loads its default process metrics, one of which imports `@opentelemetry/api` (for exemplars):
 * through the index, every process with metrics would load OpenTelemetry although tracing is off
 * (issue 11, lean processes). Types come from the package's own declarations.
 */
import { createRequire } from 'node:module';
import type * as Prom from 'prom-client';

const require = createRequire(import.meta.url);

export type Registry<T extends Prom.RegistryContentType = Prom.PrometheusContentType> = Prom.Registry<T>;
export const Registry = require('prom-client/lib/registry') as typeof Prom.Registry;
export type Counter<T extends string = string> = Prom.Counter<T>;
export const Counter = require('prom-client/lib/counter') as typeof Prom.Counter;
export type Gauge<T extends string = string> = Prom.Gauge<T>;
export const Gauge = require('prom-client/lib/gauge') as typeof Prom.Gauge;
export type AggregatorRegistry<T extends Prom.RegistryContentType = Prom.PrometheusContentType> = Prom.AggregatorRegistry<T>;
export const AggregatorRegistry = require('prom-client/lib/cluster') as typeof Prom.AggregatorRegistry;
export type Histogram<T extends string = string> = Prom.Histogram<T>;
export const Histogram = require('prom-client/lib/histogram') as typeof Prom.Histogram;
