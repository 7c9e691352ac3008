/**
 * Distributed tracing: the gateway continues the client's trace (W3C `traceparent`, or B3 as
 * `x-b3-*` headers or the single `b3` header) or starts one, makes one SERVER span per request,
 * sends the upstream request as its child in both W3C and B3 form, and exports sampled spans with
 * the OpenTelemetry SDK over OTLP/HTTP.
 *
 * Sampling follows the parent when there is one (as Envoy does); a new trace, or a B3 parent that
 * left the decision open, is sampled with `samplingPercentage` (Istio's default is 1%). The span
 * carries the request id as `guid:x-request-id`, as Envoy's spans do, so a log line, its trace and
 * the upstream's headers share one id.
 */
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace, type Span, type SpanContext } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, ParentBasedSampler, TraceIdRatioBasedSampler } from '@opentelemetry/sdk-trace-base';
import { ATTR_SERVICE_NAME } from '@opentelemetry/semantic-conventions';
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestRecord } from './record.js';

export interface TracingOptions {
  /** OTLP/HTTP traces URL, e.g. `http://otel-collector:4318/v1/traces` (a bare origin gets `/v1/traces`). */
  endpoint: string;
  /** Percentage (0-100) of new traces sampled. */
  samplingPercentage: number;
  /** `service.name` of the spans. */
  serviceName: string;
  /** How long spans wait to be exported in a batch, in ms (default 1000). */
  exportDelayMs?: number;
}

/** The per-request tracing hooks the observer calls. */
export interface Tracer {
  start(rec: RequestRecord): void;
  /** Header pairs (flat) carrying the span's context to the upstream. */
  headers(rec: RequestRecord): string[];
  end(rec: RequestRecord): void;
  close(): Promise<void>;
}

/** Trace headers the gateway replaces on the upstream request (tracestate is passed on). */
const TRACE_HEADERS = new Set(['traceparent', 'b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-parentspanid', 'x-b3-sampled', 'x-b3-flags']);

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const ZERO32 = '0'.repeat(32);
const ZERO16 = '0'.repeat(16);

/** W3C Trace Context `traceparent` (version 00 and future versions read as 00); null when invalid. */
export function parseTraceparent(value: string | undefined): SpanContext | null {
  if (value === undefined) return null;
  const parts = value.trim().toLowerCase().split('-');
  if (parts.length < 4) return null;
  const [version, traceId, spanId, flags] = parts;
  if (!/^[0-9a-f]{2}$/.test(version) || version === 'ff' || (version === '00' && parts.length !== 4)) return null;
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16 || !/^[0-9a-f]{2}$/.test(flags)) return null;
  return { traceId, spanId, traceFlags: parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: true };
}

/**
 * B3 multi-header (`x-b3-traceid`, `x-b3-spanid`, `x-b3-sampled`, `x-b3-flags`) or single (`b3`).
 * 64-bit trace ids are left-padded to 128 bits. `sampled: null` = the sender left it to us.
 */
export function parseB3(h: IncomingHttpHeaders): { context: SpanContext; sampled: boolean | null } | null {
  let traceId: string | undefined;
  let spanId: string | undefined;
  let sampled: string | undefined;
  const single = h.b3;
  if (typeof single === 'string' && single.includes('-')) {
    [traceId, spanId, sampled] = single.toLowerCase().split('-');
  } else {
    traceId = str(h['x-b3-traceid'])?.toLowerCase();
    spanId = str(h['x-b3-spanid'])?.toLowerCase();
    sampled = str(h['x-b3-flags']) === '1' ? '1' : str(h['x-b3-sampled'])?.toLowerCase();
  }
  if (traceId === undefined || spanId === undefined) return null;
  if (/^[0-9a-f]{16}$/.test(traceId)) traceId = ZERO16 + traceId;
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16) return null;
  const decision = sampled === '1' || sampled === 'true' || sampled === 'd' ? true : sampled === '0' || sampled === 'false' ? false : null;
  return { context: { traceId, spanId, traceFlags: decision === true ? TraceFlags.SAMPLED : TraceFlags.NONE, isRemote: true }, sampled: decision };
}

function str(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

/** `headers` without the client's trace headers, plus `trace` (flat name/value pairs). */
export function replaceTraceHeaders(headers: string[], traceHeaders: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!TRACE_HEADERS.has(headers[i])) out.push(headers[i], headers[i + 1]);
  for (const h of traceHeaders) out.push(h);
  return out;
}

/** The OTLP traces URL for `endpoint`: a bare origin gets the standard `/v1/traces` path. */
export function otlpTracesUrl(endpoint: string): string {
  const u = new URL(endpoint);
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/v1/traces';
  return u.toString();
}

interface SpanState {
  span: Span;
  /** The client's span id (B3 `x-b3-parentspanid` upstream), or null for a new trace. */
  parentSpanId: string | null;
}

export class OtelTracer implements Tracer {
  readonly #provider: BasicTracerProvider;
  readonly #tracer: ReturnType<BasicTracerProvider['getTracer']>;
  readonly #ratio: number;

  constructor(options: TracingOptions) {
    this.#ratio = Math.max(0, Math.min(100, options.samplingPercentage)) / 100;
    const exporter = new OTLPTraceExporter({ url: otlpTracesUrl(options.endpoint), timeoutMillis: 5000 });
    this.#provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName }),
      sampler: new ParentBasedSampler({ root: new TraceIdRatioBasedSampler(this.#ratio) }),
      spanProcessors: [new BatchSpanProcessor(exporter, { scheduledDelayMillis: options.exportDelayMs ?? 1000, maxQueueSize: 8192, maxExportBatchSize: 512 })],
    });
    this.#tracer = this.#provider.getTracer('meshgate');
  }

  start(rec: RequestRecord): void {
    const h = rec.req.headers;
    let parent = parseTraceparent(str(h.traceparent));
    if (parent === null) {
      const b3 = parseB3(h);
      if (b3 !== null) {
        parent = b3.context;
        // B3 without a decision: decide here, as for a new trace.
        if (b3.sampled === null && Math.random() < this.#ratio) parent.traceFlags = TraceFlags.SAMPLED;
      }
    }
    const ctx = parent === null ? ROOT_CONTEXT : trace.setSpanContext(ROOT_CONTEXT, parent);
    const span = this.#tracer.startSpan(`${rec.req.method ?? 'GET'}`, { kind: SpanKind.SERVER }, ctx);
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
    const req = rec.req;
    span.updateName(rec.route === null ? `${req.headers.host ?? ''}${req.url ?? ''}` : rec.route.name);
    span.setAttributes({
      'http.method': req.method ?? '',
      'http.url': `${rec.listener.scheme}://${req.headers.host ?? ''}${req.url ?? ''}`,
      'http.protocol': `HTTP/${req.httpVersion}`,
      'http.status_code': String(rec.status),
      'guid:x-request-id': rec.requestId ?? str(req.headers['x-request-id']) ?? '',
      'user_agent': str(req.headers['user-agent']) ?? '',
      'downstream_cluster': '-',
      'response_flags': rec.flags,
      'upstream_cluster': rec.clusterName ?? '-',
      'upstream_cluster.name': rec.clusterName ?? '-',
      'peer.address': req.socket.remoteAddress ?? '',
      'component': 'proxy',
      'node_id': 'meshgate',
      'meshgate.route': rec.route?.name ?? '-',
      'meshgate.upstream_host': rec.upstreamHost ?? '-',
    });
    if (rec.status === 0 || rec.status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }

  async close(): Promise<void> {
    await this.#provider.shutdown();
  }
}
