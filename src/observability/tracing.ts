/**
 * Distributed tracing: the gateway continues the client's trace (W3C `traceparent`, or B3 as
 * `x-b3-*` headers or the single `b3` header) or starts one, makes one SERVER span per request,
 * sends the upstream request as its child in both W3C and B3 form, and exports sampled spans with
 * the OpenTelemetry SDK over OTLP/HTTP (otel-tracer.ts; imported only when tracing is on, as it
 * costs every process that loads it tens of MiB).
 *
 * Sampling follows the parent when there is one (as Envoy does); a new trace, or a B3 parent that
 * left the decision open, is sampled with `samplingPercentage` (Istio's default is 1%). The span
 * carries the request id as `guid:x-request-id`, as Envoy's spans do, so a log line, its trace and
 * the upstream's headers share one id.
 */
// Types only: the OpenTelemetry SDK is loaded (otel-tracer.ts, dynamic import) only when tracing is on.
import type { SpanContext } from '@opentelemetry/api';
import type { IncomingHttpHeaders } from 'node:http';
import type { RequestRecord } from './record.js';

/** W3C trace flags (the values of @opentelemetry/api's TraceFlags, without loading it). */
const TraceFlags = { NONE: 0, SAMPLED: 1 } as const;

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

/** What a snapshot may change on a running tracer (Telemetry API `tracing`). */
export interface TracerSettings {
  /** Percentage (0-100) of new traces sampled. */
  samplingPercentage: number;
  /** Spans are made and propagated but not exported. */
  disableSpanReporting: boolean;
  /** Extra span attributes; `environment` tags are resolved by the caller into `literal` ones. */
  customTags: { name: string; kind: 'literal' | 'header'; value: string; defaultValue: string | null }[];
}

/** The per-request tracing hooks the observer calls. */
export interface Tracer {
  start(rec: RequestRecord): void;
  /** Header pairs (flat) carrying the span's context to the upstream. */
  headers(rec: RequestRecord): string[];
  end(rec: RequestRecord): void;
  close(): Promise<void>;
  /** Applies a snapshot's settings (optional: test tracers need not). */
  configure?(settings: TracerSettings): void;
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
  // The usual form (what proxies send): version 00, lowercase, nothing around it; checked by char codes.
  if (value.length === 55) {
    const fast = traceparent00(value);
    if (fast !== undefined) return fast;
  }
  const parts = value.trim().toLowerCase().split('-');
  if (parts.length < 4) return null;
  const [version, traceId, spanId, flags] = parts;
  if (!/^[0-9a-f]{2}$/.test(version) || version === 'ff' || (version === '00' && parts.length !== 4)) return null;
  if (!HEX32.test(traceId) || traceId === ZERO32 || !HEX16.test(spanId) || spanId === ZERO16 || !/^[0-9a-f]{2}$/.test(flags)) return null;
  return { traceId, spanId, traceFlags: parseInt(flags, 16) & TraceFlags.SAMPLED, isRemote: true };
}

/** `00-<32 hex>-<16 hex>-<2 hex>` in lowercase: its context (null when an id is all zeros); undefined = another form (the general parser decides). */
function traceparent00(v: string): SpanContext | null | undefined {
  if (v.charCodeAt(0) !== 48 || v.charCodeAt(1) !== 48 || v.charCodeAt(2) !== 45 || v.charCodeAt(35) !== 45 || v.charCodeAt(52) !== 45) return undefined;
  let traceZero = true;
  let spanZero = true;
  for (let i = 3; i < 55; i++) {
    if (i === 35 || i === 52) continue;
    const c = v.charCodeAt(i);
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return undefined;
    if (c !== 48) {
      if (i < 35) traceZero = false;
      else if (i < 52) spanZero = false;
    }
  }
  if (traceZero || spanZero) return null;
  return { traceId: v.slice(3, 35), spanId: v.slice(36, 52), traceFlags: parseInt(v.slice(53, 55), 16) & TraceFlags.SAMPLED, isRemote: true };
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

export function str(v: string | string[] | undefined): string | undefined {
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
