/**
 * Trace context without a collector: what Istio's proxies do by default (Envoy's tracer with no
 * backend still makes a span per request). The client's W3C `traceparent` or B3 context is
 * continued, or a new trace is started; the request gets a span of its own (a fresh span id, so the
 * upstream sees a new parent span id) and the upstream gets it in W3C and B3 form. Nothing is
 * exported: the OpenTelemetry SDK (otel-tracer.ts) replaces this tracer when a collector is set, and
 * is never loaded otherwise.
 *
 * Sampling is decided as with a collector (the parent's decision, else `samplingPercentage`, Istio's
 * default 1 %), so the sampled flag passed on means the same whether or not spans are exported.
 */
import { randomFillSync } from 'node:crypto';
import type { RequestRecord } from './record.js';
import { parseB3, parseTraceparent, type Tracer, type TracerSettings } from './tracing.js';

interface LocalSpan {
  traceId: string;
  spanId: string;
  sampled: boolean;
  /** The client's span id (B3 `x-b3-parentspanid` upstream), or null for a new trace. */
  parentSpanId: string | null;
}

/** Random ids from a pooled buffer: one getrandom per 256 ids, not one per request. */
class IdSource {
  readonly #pool = Buffer.alloc(4096);
  #at = this.#pool.length;

  hex(bytes: number): string {
    for (;;) {
      if (this.#at + bytes > this.#pool.length) {
        randomFillSync(this.#pool);
        this.#at = 0;
      }
      const pool = this.#pool;
      const at = this.#at;
      this.#at += bytes;
      // All-zero ids are invalid in both W3C and B3.
      let zero = true;
      for (let i = at; i < at + bytes && zero; i++) zero = pool[i] === 0;
      if (!zero) return pool.toString('hex', at, at + bytes);
    }
  }
}

/** The B3 headers (multi-header form and the single `b3`). */
const B3_HEADERS = new Set(['b3', 'x-b3-traceid', 'x-b3-spanid', 'x-b3-sampled', 'x-b3-flags']);

export class PropagatingTracer implements Tracer {
  readonly #ids = new IdSource();
  #ratio: number;

  constructor(samplingPercentage = 1) {
    this.#ratio = Math.max(0, Math.min(100, samplingPercentage)) / 100;
  }

  configure(settings: TracerSettings): void {
    this.#ratio = Math.max(0, Math.min(100, settings.samplingPercentage)) / 100;
  }

  start(rec: RequestRecord): void {
    const d = rec.d;
    // One pass over the head for every trace header (most requests carry only traceparent, or none).
    const raw = d.rawHeaders;
    let traceparent: string | undefined;
    let hasB3 = false;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i];
      const len = n.length;
      // The first traceparent, as `Downstream.header` reads it.
      if (len === 11 && traceparent === undefined && (n === 'traceparent' || n.toLowerCase() === 'traceparent')) traceparent = raw[i + 1];
      else if (len === 2 || ((len === 10 || len === 11 || len === 12) && (n.charCodeAt(0) | 32) === 120 /* x */ && n.charCodeAt(3) === 51 /* 3 */)) hasB3 ||= B3_HEADERS.has(n.toLowerCase());
    }
    const w3c = parseTraceparent(traceparent);
    let traceId: string;
    let parentSpanId: string | null = null;
    let sampled: boolean;
    if (w3c !== null) {
      traceId = w3c.traceId;
      parentSpanId = w3c.spanId;
      sampled = (w3c.traceFlags & 1) === 1;
    } else {
      const b3 = hasB3 ? parseB3({ b3: d.header('b3') ?? undefined, 'x-b3-traceid': d.header('x-b3-traceid') ?? undefined, 'x-b3-spanid': d.header('x-b3-spanid') ?? undefined, 'x-b3-sampled': d.header('x-b3-sampled') ?? undefined, 'x-b3-flags': d.header('x-b3-flags') ?? undefined }) : null;
      if (b3 !== null) {
        traceId = b3.context.traceId;
        parentSpanId = b3.context.spanId;
        sampled = b3.sampled ?? Math.random() < this.#ratio;
      } else {
        traceId = this.#ids.hex(16);
        sampled = Math.random() < this.#ratio;
      }
    }
    rec.span = { traceId, spanId: this.#ids.hex(8), sampled, parentSpanId } satisfies LocalSpan;
  }

  headers(rec: RequestRecord): string[] {
    const s = rec.span as LocalSpan | null;
    if (s === null) return [];
    const out = ['traceparent', `00-${s.traceId}-${s.spanId}-${s.sampled ? '01' : '00'}`, 'x-b3-traceid', s.traceId, 'x-b3-spanid', s.spanId, 'x-b3-sampled', s.sampled ? '1' : '0'];
    if (s.parentSpanId !== null) out.push('x-b3-parentspanid', s.parentSpanId);
    return out;
  }

  end(rec: RequestRecord): void {
    rec.span = null;
  }

  async close(): Promise<void> {}
}
