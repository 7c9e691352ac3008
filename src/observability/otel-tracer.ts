/**
 * The OpenTelemetry tracer (SDK, OTLP/HTTP exporter): loaded with a dynamic import by
 * `createObservability` only when tracing is on, so processes that do not trace never load the SDK.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Span } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler, type Sampler } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { RequestRecord } from './record.js';
import { otlpTracesUrl, parseB3, parseTraceparent, type Tracer, type TracerSettings, type TracingOptions } from './tracing.js';

interface SpanState {
  span: Span;
  /** The client's span id (B3 `x-b3-parentspanid` upstream), or null for a new trace. */
  parentSpanId: string | null;
}

export class OtelTracer implements Tracer {
  readonly #provider: BasicTracerProvider;
  readonly #tracer: ReturnType<BasicTracerProvider['getTracer']>;
  #ratio: number;
  /** The root sampler for new traces, replaced when the sampling percentage changes. */
  #rootSampler: TraceIdRatioBasedSampler;
  #report = true;
  #tags: TracerSettings['customTags'] = [];

  constructor(options: TracingOptions) {
    this.#ratio = Math.max(0, Math.min(100, options.samplingPercentage)) / 100;
    this.#rootSampler = new TraceIdRatioBasedSampler(this.#ratio);
    // Delegates to the current root sampler, so a snapshot can change the percentage in place.
    const root: Sampler = { shouldSample: (context, traceId) => this.#rootSampler.shouldSample(context, traceId), toString: () => `meshgate ratio ${this.#ratio}` };
    const exporter = new OTLPTraceExporter({ url: otlpTracesUrl(options.endpoint), timeoutMillis: 5000 });
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName }),
      sampler: new ParentBasedSampler({ root }),
      spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: options.exportDelayMs ?? 1000, maxQueueSize: 8192, maxExportBatchSize: 512 })],
    });
    this.#tracer = this.#provider.getTracer('meshgate');
  }

  configure(settings: TracerSettings): void {
    const ratio = Math.max(0, Math.min(100, settings.samplingPercentage)) / 100;
    if (ratio !== this.#ratio) {
      this.#ratio = ratio;
      this.#rootSampler = new TraceIdRatioBasedSampler(ratio);
    }
    this.#report = !settings.disableSpanReporting;
    this.#tags = settings.customTags;
  }

  start(rec: RequestRecord): void {
    const d = rec.d;
    let parent = parseTraceparent(d.header('traceparent') ?? undefined);
    if (parent === null) {
      const b3 = parseB3({ b3: d.header('b3') ?? undefined, 'x-b3-traceid': d.header('x-b3-traceid') ?? undefined, 'x-b3-spanid': d.header('x-b3-spanid') ?? undefined, 'x-b3-sampled': d.header('x-b3-sampled') ?? undefined, 'x-b3-flags': d.header('x-b3-flags') ?? undefined });
      if (b3 !== null) {
        parent = b3.context;
        // B3 without a decision: decide here, as for a new trace.
        if (b3.sampled === null && Math.random() < this.#ratio) parent.traceFlags = TraceFlags.SAMPLED;
      }
    }
    const ctx = parent === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
    const span = this.#tracer.startSpan(d.method, { kind: SpanKind.SERVER }, ctx);
    rec.span = { span, parentSpanId: parent === null ? null : parent.spanId } satisfies SpanState;
  }

  headers(rec: RequestRecord): string[] {
    const state = rec.span as SpanState | null;
    if (state === null) return [];
    const c = state.span.spanContext();
    const sampled = (c.traceFlags & TraceFlags.SAMPLED) !== 0;
    const out = ['traceparent', `00-${c.traceId}-${c.spanId}-${sampled ? '01' : '00'}`, 'x-b3-traceid', c.traceId, 'x-b3-spanid', c.spanId, 'x-b3-sampled', sampled ? '1' : '0'];
    if (state.parentSpanId !== null) out.push('x-b3-parentspanid', state.parentSpanId);
    return out;
  }

  end(rec: RequestRecord): void {
    const state = rec.span as SpanState | null;
    if (state === null) return;
    rec.span = null;
    const span = state.span;
    if (!span.isRecording()) return;
    const d = rec.d;
    const host = d.header('host') ?? d.header(':authority') ?? '';
    span.updateName(rec.route === null ? `${host}${d.target}` : rec.route.name);
    span.setAttributes({
      'http.method': d.method,
      'http.url': `${rec.listener.scheme}://${host}${d.target}`,
      'http.protocol': d.http2 ? 'HTTP/2.0' : `HTTP/1.${d.versionMinor}`,
      'http.status_code': String(rec.status),
      'guid:x-request-id': rec.requestId ?? d.header('x-request-id') ?? '',
      'user_agent': d.header('user-agent') ?? '',
      'downstream_cluster': '-',
      'response_flags': rec.flags,
      'upstream_cluster': rec.clusterName ?? '-',
      'upstream_cluster.name': rec.clusterName ?? '-',
      'peer.address': d.remoteAddress,
      'component': 'proxy',
      'node_id': 'meshgate',
      'meshgate.route': rec.route?.name ?? '-',
      'meshgate.upstream_host': rec.upstreamHost ?? '-',
    });
    for (const t of this.#tags) {
      const v = t.kind === 'literal' ? t.value : (d.header(t.value.toLowerCase()) ?? t.defaultValue);
      if (v !== null) span.setAttribute(t.name, v);
    }
    if (rec.status === 0 || rec.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    // disableSpanReporting: the span was made and propagated; an unended span is never exported.
    if (this.#report) span.end();
  }

  async close(): Promise<void> {
    await this.#provider.shutdown();
  }
}
