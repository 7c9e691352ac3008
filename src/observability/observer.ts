/**
 * Observability of one data-plane process: the RequestObserver the request path calls, feeding
 * metrics, the access log and tracing from one RequestRecord per request.
 *
 * Access logs are configured twice: the operator's `--access-log` flags at start (a default), and
 * each snapshot's `accessLogging` (MeshConfig and the Telemetry API), applied on every swap by
 * `applySnapshot`: when the snapshot configures access logging it is the whole truth, else the
 * flags apply. Formats and filters are compiled once per change of that config, log files are
 * opened and closed as it changes, and when no log is on nothing is built per request. Tracing
 * likewise: the snapshot's `tracing` (Telemetry) over the `--tracing-*` flags, the exporter made
 * (and the OpenTelemetry SDK imported) only when one is needed.
 */
import os from 'node:os';
import type { AccessLog, AccessLogging, IRSnapshot, TracingConfig } from '../ir/types.js';
import { Registry } from './prom.js';
import type { CompiledListener } from '../runtime/compile/types.js';
import { sentHeader, type Downstream } from '../runtime/http/downstream.js';
import { AccessLogWriter, accessLogEntry, formatJson, formatText, header, type AccessLogOptions, type LogEntry } from './access-log.js';
import { compileCel, type CelFilter, type CelSubject } from '../formats/cel.js';
import { parseLogFormat, renderJson, renderText, type JsonLogFormat, type LogFormat } from '../formats/log-format.js';
import { DEFAULT_IDENTITY, RequestMetrics, type WorkloadIdentity } from './metrics.js';
import { RequestRecord, type RecordSink } from './record.js';
import { tcpAccessLogEntry, type TcpObserver, type TcpRecord } from './tcp-record.js';
import { replaceTraceHeaders, type Tracer, type TracerSettings, type TracingOptions } from './tracing.js';
import { PropagatingTracer } from './propagating-tracer.js';

/** Plain data (it travels to worker processes in an environment variable). */
export interface ObservabilityOptions {
  /** Istio and meshgate request metrics on `/metrics`. */
  metrics: boolean;
  /**
   * The operator's access log (`--access-log`); null = none. A default only: used while the served
   * snapshot does not configure access logging (`IRSnapshot.accessLogging.configured` false).
   */
  accessLog: AccessLogOptions | null;
  /** null = no tracing. */
  tracing: TracingOptions | null;
  /** `source_*` labels. */
  identity: WorkloadIdentity;
}

export const DEFAULT_OBSERVABILITY: ObservabilityOptions = { metrics: true, accessLog: null, tracing: null, identity: DEFAULT_IDENTITY };

/** What the request path calls: one record per request, when observability is on. */
export interface RequestObserver {
  /** The record of a new request; null when nothing would read it (no metrics, no log, no tracing right now). */
  begin(listener: CompiledListener, d: Downstream): RequestRecord | null;
  /** Trace headers to add to the upstream request (`traceparent`, B3); null when not tracing. */
  upstreamTraceHeaders(rec: RequestRecord): string[] | null;
  /** A new snapshot is served (called by the runtime on every swap, off the request path); the runtime waits for a returned promise before serving it. */
  applySnapshot?(ir: IRSnapshot): Promise<void> | void;
}

/** One access log being written: its writer (shared by path) and compiled format and filter. */
interface ActiveLog {
  writer: AccessLogWriter;
  json: boolean;
  /** Custom TEXT format; null = Istio's default line. */
  text: LogFormat | null;
  /** Custom JSON keys; null = Istio's default keys. */
  jsonFormat: JsonLogFormat | null;
  filter: CelFilter | null;
}

export class Observability implements RequestObserver, RecordSink, TcpObserver {
  readonly options: ObservabilityOptions;
  /** Metrics of this process; null when metrics are off. */
  readonly metrics: RequestMetrics | null;
  /** Where this process's metrics are registered (read by the primary through AggregatorRegistry). */
  readonly registry = new Registry();
  /** Logs every request and TCP connection goes to (filters permitting); [] = access logging off. */
  #logs: readonly ActiveLog[] = [];
  /** Open writers by path (the operator's and the snapshot's). */
  readonly #writers = new Map<string, AccessLogWriter>();
  /** The `accessLogging` last applied (JSON), so an unchanged config costs one string compare. */
  #applied: string | null = null;
  #tracer: Tracer | null;
  /** A tracer given to the constructor (tests): kept, only reconfigured. */
  readonly #fixedTracer: boolean;
  /** The exporter URL of `#tracer` (when made here). */
  #tracerEndpoint: string | null = null;
  /** The OpenTelemetry SDK being imported for a new exporter; null when none is. */
  #tracerLoading: Promise<void> | null = null;
  /** Bumped by every tracing change, so a late import does not install a stale tracer. */
  #tracingGen = 0;
  /** The tracing settings last applied (JSON). */
  #tracingKey: string | null = null;
  #closed = false;

  constructor(options: ObservabilityOptions, tracer: Tracer | null = null) {
    this.options = options;
    this.metrics = options.metrics ? new RequestMetrics(options.identity) : null;
    this.metrics?.register(this.registry);
    this.#logs = this.#operatorLogs();
    // Without a collector, trace context is still made and passed on (as Istio's proxies do).
    this.#tracer = tracer ?? new PropagatingTracer(options.tracing?.samplingPercentage ?? 1);
    this.#fixedTracer = tracer !== null;
  }

  /**
   * True: the request path asks `begin` for a record per request. Always, since any snapshot may
   * turn access logging on (MeshConfig, Telemetry) while the process runs; `begin` makes a record
   * only while metrics, an access log or tracing is on.
   */
  get active(): boolean {
    return true;
  }

  /** The `--access-log` flags as logs (the default when the snapshot does not configure logging). */
  #operatorLogs(): ActiveLog[] {
    const o = this.options.accessLog;
    if (o === null) return [];
    const writer = this.#writer(o.path);
    return writer === null ? [] : [{ writer, json: o.format === 'json', text: null, jsonFormat: null, filter: null }];
  }

  #writer(path: string): AccessLogWriter | null {
    const key = path === 'stdout' ? '/dev/stdout' : path;
    let w = this.#writers.get(key);
    if (w === undefined) {
      try {
        w = new AccessLogWriter(key, () => this.#dropped());
      } catch (e) {
        process.stderr.write(`meshgate: cannot open access log ${key}: ${(e as Error).message}\n`);
        return null;
      }
      this.#writers.set(key, w);
    }
    return w;
  }

  /**
   * Called by the runtime on every swap: access logs, then tracing. Returns a promise only while a
   * new exporter's SDK is being imported (the runtime waits, so no request on the snapshot goes
   * untraced).
   */
  applySnapshot(ir: IRSnapshot): Promise<void> | void {
    this.applyAccessLogging(ir.accessLogging);
    return this.applyTracing(ir.tracing);
  }

  /**
   * Tracing for a snapshot: the Telemetry provider's exporter, else the `--tracing-endpoint` flag's;
   * sampling, span reporting and custom tags from Telemetry over the flags. The OpenTelemetry SDK is
   * imported (dynamic import) only when an exporter is first needed: processes that never trace
   * never load it.
   */
  applyTracing(config: TracingConfig | undefined): Promise<void> | void {
    const flag = this.options.tracing;
    const cfg = config !== undefined && config.configured ? config : null;
    const endpoint = cfg !== null && cfg.provider !== null ? cfg.endpoint : (flag?.endpoint ?? null);
    const settings: TracerSettings = {
      samplingPercentage: cfg?.samplingPercentage ?? flag?.samplingPercentage ?? 1,
      disableSpanReporting: cfg?.disableSpanReporting ?? false,
      customTags: [],
    };
    for (const t of cfg?.customTags ?? []) {
      if (t.kind !== 'environment') settings.customTags.push({ name: t.name, kind: t.kind, value: t.value, defaultValue: t.defaultValue });
      else {
        const v = process.env[t.value] ?? t.defaultValue;
        if (v !== null) settings.customTags.push({ name: t.name, kind: 'literal', value: v, defaultValue: null });
      }
    }
    const key = JSON.stringify({ endpoint, settings });
    if (key === this.#tracingKey) return this.#tracerLoading ?? undefined;
    this.#tracingKey = key;
    if (this.#fixedTracer) {
      this.#tracer?.configure?.(settings);
      return;
    }
    if (endpoint !== null && this.#tracer !== null && this.#tracerEndpoint === endpoint) {
      this.#tracer.configure?.(settings);
      return;
    }
    const gen = ++this.#tracingGen;
    const old = this.#tracer;
    if (endpoint === null) {
      // No collector: trace context is still created and propagated, nothing is exported.
      const local = new PropagatingTracer();
      local.configure(settings);
      this.#tracer = local;
      this.#tracerEndpoint = null;
      if (old !== null) void old.close();
      return;
    }
    const load = import('./otel-tracer.js').then(
      (m) => {
        if (this.#closed || gen !== this.#tracingGen) return;
        let t: InstanceType<typeof m.OtelTracer>;
        try {
          t = new m.OtelTracer({ endpoint, samplingPercentage: settings.samplingPercentage, serviceName: flag?.serviceName ?? this.options.identity.workload, exportDelayMs: flag?.exportDelayMs });
        } catch (e) {
          process.stderr.write(`meshgate: tracing is off: exporter for ${endpoint}: ${(e as Error).message}\n`);
          return;
        }
        t.configure(settings);
        const prev = this.#tracer;
        this.#tracer = t;
        this.#tracerEndpoint = endpoint;
        if (prev !== null) void prev.close();
      },
      (e: unknown) => {
        process.stderr.write(`meshgate: tracing is off: cannot load the OpenTelemetry SDK: ${(e as Error).message}\n`);
      },
    );
    const loading: Promise<void> = load.finally(() => {
      if (this.#tracerLoading === loading) this.#tracerLoading = null;
    });
    this.#tracerLoading = loading;
    return loading;
  }

  /** Switches to the access logs of `config` (compiled here, once); writers no log uses any more are closed. */
  applyAccessLogging(config: AccessLogging | undefined): void {
    const key = config === undefined ? 'none' : JSON.stringify(config);
    if (key === this.#applied) return;
    this.#applied = key;
    const logs: ActiveLog[] = [];
    if (config === undefined || !config.configured) logs.push(...this.#operatorLogs());
    else for (const l of config.logs) {
      const active = this.#compileLog(l);
      if (active !== null) logs.push(active);
    }
    this.#logs = logs;
    const used = new Set(logs.map((l) => l.writer));
    for (const [path, w] of this.#writers) {
      if (used.has(w)) continue;
      this.#writers.delete(path);
      void w.close();
    }
  }

  #compileLog(l: AccessLog): ActiveLog | null {
    // Translate checked formats and filters; one that still fails here is skipped, not fatal.
    try {
      const text = l.encoding === 'TEXT' && l.format !== null ? parseLogFormat(l.format, os.hostname()) : null;
      const jsonFormat = l.encoding === 'JSON' && l.jsonFormat !== null ? l.jsonFormat.map((j) => ({ key: j.key, format: parseLogFormat(j.format, os.hostname()) })) : null;
      const filter = l.filter === null ? null : compileCel(l.filter);
      const writer = this.#writer(l.path);
      return writer === null ? null : { writer, json: l.encoding === 'JSON', text, jsonFormat, filter };
    } catch (e) {
      process.stderr.write(`meshgate: access log ${l.provider} (${l.path}) skipped: ${(e as Error).message}\n`);
      return null;
    }
  }

  #write(logs: readonly ActiveLog[], subject: CelSubject): void {
    for (const log of logs) {
      if (log.filter !== null && !log.filter(subject)) continue;
      const line = log.text !== null ? renderText(log.text, subject) : log.jsonFormat !== null ? renderJson(log.jsonFormat, subject) : log.json ? formatJson(subject.entry) : formatText(subject.entry);
      log.writer.push(line);
    }
  }

  begin(listener: CompiledListener, d: Downstream): RequestRecord | null {
    if (this.metrics === null && this.#logs.length === 0 && this.#tracer === null) return null;
    const rec = new RequestRecord(listener, d, this);
    if (this.#tracer !== null) this.#tracer.start(rec);
    return rec;
  }

  upstreamTraceHeaders(rec: RequestRecord): string[] | null {
    return this.#tracer === null ? null : this.#tracer.headers(rec);
  }

  finish(rec: RequestRecord): void {
    if (this.metrics !== null) this.metrics.observe(rec);
    const logs = this.#logs;
    if (logs.length > 0) this.#write(logs, new HttpLogSubject(rec, accessLogEntry(rec, Date.now())));
    if (this.#tracer !== null) this.#tracer.end(rec);
  }

  /** A TCP proxy connection (tcp-record.ts): `open` when routed, `close` once when it ends (metrics, then one access-log line). */
  observeTcp(rec: TcpRecord, phase: 'open' | 'close'): void {
    if (phase === 'open') {
      // The gateway's relay to a server that told who it is in Istio's TCP metadata exchange.
      if (rec.meshLabels === null && rec.peerMetadata !== null && this.metrics !== null) rec.meshLabels = this.metrics.tcpPeerLabels(rec.cluster, rec.peerMetadata);
      if (rec.meshLabels !== null) this.metrics?.meshTcpOpened(rec.meshLabels);
      else this.metrics?.tcpOpened(rec.cluster);
      return;
    }
    if (rec.meshLabels !== null) this.metrics?.meshTcpClosed(rec.meshLabels, rec.bytesSent, rec.bytesReceived, rec.flags ?? '-');
    else this.metrics?.tcpClosed(rec.cluster, rec.bytesSent, rec.bytesReceived, rec.flags ?? '-');
    const logs = this.#logs;
    if (logs.length > 0) this.#write(logs, new TcpLogSubject(rec, tcpAccessLogEntry(rec)));
  }

  #dropped(): void {
    if (this.metrics !== null) this.metrics.droppedLogLines++;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.#tracerLoading;
    this.#logs = [];
    await Promise.all([...this.#writers.values()].map((w) => w.close()));
    this.#writers.clear();
    await this.#tracer?.close();
  }
}

/**
 * Called by the request path once the upstream request headers are final: records the request id
 * and puts the trace context of the gateway's span in place of the client's.
 */
export function observeForward(observer: RequestObserver, rec: RequestRecord, headers: string[], requestId: string | null): string[] {
  rec.requestId = requestId;
  const trace = observer.upstreamTraceHeaders(rec);
  return trace === null ? headers : replaceTraceHeaders(headers, trace);
}

/**
 * The Observability of a data-plane process for `options`. Tracing starts with the first snapshot
 * (`applySnapshot`), which also decides whether the `--tracing-*` flags or Telemetry apply.
 */
export function createObservability(options: ObservabilityOptions): Observability {
  return new Observability(options);
}

/** What access-log formats and filters read of an HTTP request (built only when a log is on). */
class HttpLogSubject implements CelSubject {
  readonly http = true;
  constructor(
    readonly rec: RequestRecord,
    readonly entry: LogEntry,
  ) {}

  get startWall(): number {
    return Date.now() - this.rec.durationMs;
  }
  get attempts(): number {
    return this.rec.attempts;
  }
  get grpcStatus(): string {
    return this.rec.grpcStatus;
  }
  get mtls(): boolean {
    const tls = this.rec.d.tls;
    return tls !== null && tls.authorized === true;
  }

  requestHeader(name: string): string | null {
    const d = this.rec.d;
    switch (name) {
      case ':method':
        return d.method;
      case ':path':
        return d.target;
      case ':authority':
        return header(this.rec, 'host') ?? header(this.rec, ':authority');
      case ':scheme':
        return d.tls !== null ? 'https' : 'http';
      case 'x-request-id':
        return this.rec.requestId ?? header(this.rec, name);
      default:
        // From rawHeaders: `req.headers` would build an object of every header per logged request.
        return header(this.rec, name);
    }
  }

  /** The response header as it was sent (every engine keeps the head it wrote). */
  responseHeader(name: string): string | null {
    return sentHeader(this.rec.d, name);
  }
}

/** The same for a TCP connection: no headers, no HTTP attributes. */
class TcpLogSubject implements CelSubject {
  readonly http = false;
  readonly mtls = false;
  readonly attempts = 1;
  readonly grpcStatus = '';
  constructor(
    readonly rec: TcpRecord,
    readonly entry: LogEntry,
  ) {}
  get startWall(): number {
    return this.rec.startWall;
  }
  requestHeader(): string | null {
    return null;
  }
  responseHeader(): string | null {
    return null;
  }
}

