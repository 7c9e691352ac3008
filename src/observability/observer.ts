/**
 * Observability of one data-plane process: the RequestObserver the request path calls, feeding
 * metrics, the access log and tracing from one RequestRecord per request.
 *
 * `createObservability` returns null when everything is off, and the request path then skips
 * observability entirely (one null check per request).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Registry } from 'prom-client';
import type { CompiledListener } from '../runtime/compile/types.js';
import { AccessLogWriter, accessLogEntry, formatJson, formatText, type AccessLogOptions } from './access-log.js';
import { DEFAULT_IDENTITY, RequestMetrics, type WorkloadIdentity } from './metrics.js';
import { RequestRecord, type RecordSink } from './record.js';
import { OtelTracer, replaceTraceHeaders, type Tracer, type TracingOptions } from './tracing.js';

/** Plain data (it travels to worker processes in an environment variable). */
export interface ObservabilityOptions {
  /** Istio and meshgate request metrics on `/metrics`. */
  metrics: boolean;
  /** null = no access log. */
  accessLog: AccessLogOptions | null;
  /** null = no tracing. */
  tracing: TracingOptions | null;
  /** `source_*` labels. */
  identity: WorkloadIdentity;
}

export const DEFAULT_OBSERVABILITY: ObservabilityOptions = { metrics: true, accessLog: null, tracing: null, identity: DEFAULT_IDENTITY };

/** What the request path calls: one record per request, when observability is on. */
export interface RequestObserver {
  begin(listener: CompiledListener, req: IncomingMessage, res: ServerResponse): RequestRecord;
  /** Trace headers to add to the upstream request (`traceparent`, B3); null when not tracing. */
  upstreamTraceHeaders(rec: RequestRecord): string[] | null;
}

export class Observability implements RequestObserver, RecordSink {
  readonly options: ObservabilityOptions;
  /** Metrics of this process; null when metrics are off. */
  readonly metrics: RequestMetrics | null;
  /** Where this process's metrics are registered (read by the primary through AggregatorRegistry). */
  readonly registry = new Registry();
  readonly #log: AccessLogWriter | null;
  readonly #json: boolean;
  readonly #tracer: Tracer | null;

  constructor(options: ObservabilityOptions, tracer: Tracer | null = null) {
    this.options = options;
    this.metrics = options.metrics ? new RequestMetrics(options.identity) : null;
    this.metrics?.register(this.registry);
    this.#log = options.accessLog === null ? null : new AccessLogWriter(options.accessLog.path, () => this.#dropped());
    this.#json = options.accessLog?.format === 'json';
    this.#tracer = tracer;
  }

  /** True when anything per request is on. */
  get active(): boolean {
    return this.metrics !== null || this.#log !== null || this.#tracer !== null;
  }

  begin(listener: CompiledListener, req: IncomingMessage, res: ServerResponse): RequestRecord {
    const rec = new RequestRecord(listener, req, res, this);
    if (this.#tracer !== null) this.#tracer.start(rec);
    return rec;
  }

  upstreamTraceHeaders(rec: RequestRecord): string[] | null {
    return this.#tracer === null ? null : this.#tracer.headers(rec);
  }

  finish(rec: RequestRecord): void {
    if (this.metrics !== null) this.metrics.observe(rec);
    if (this.#log !== null) {
      const entry = accessLogEntry(rec, Date.now());
      this.#log.push(this.#json ? formatJson(entry) : formatText(entry));
    }
    if (this.#tracer !== null) this.#tracer.end(rec);
  }

  #dropped(): void {
    if (this.metrics !== null) this.metrics.droppedLogLines++;
  }

  async close(): Promise<void> {
    await this.#log?.close();
    await this.#tracer?.close();
  }
}

/**
 * Called by the request path once the upstream request headers are final: records the request id
 * and puts the trace context of the gateway's span in place of the client's.
 */
export function observeForward(observer: RequestObserver, rec: RequestRecord, headers: string[], requestId: string): string[] {
  rec.requestId = requestId;
  const trace = observer.upstreamTraceHeaders(rec);
  return trace === null ? headers : replaceTraceHeaders(headers, trace);
}

/** The Observability of a data-plane process for `options` (tracing starts its exporter). */
export function createObservability(options: ObservabilityOptions): Observability {
  return new Observability(options, options.tracing === null ? null : new OtelTracer(options.tracing));
}
