/**
 * Access logging in the IR (`IRSnapshot.accessLogging`), from Istio MeshConfig (`accessLogFile`,
 * `accessLogEncoding`, `accessLogFormat`, `extensionProviders[].envoyFileAccessLog`,
 * `defaultProviders.accessLogging`) and the Telemetry API (`telemetry.istio.io`
 * `spec.accessLogging`). The data plane applies it on every snapshot swap, without a restart.
 */

import type { SourceRef } from './types.js';

export interface AccessLogging {
  /**
   * Whether the configuration decides access logging. false: no Telemetry `accessLogging` applies
   * to this gateway and MeshConfig has no `accessLogFile`; the operator's `--access-log` /
   * `--access-log-format` flags are then the default (off unless given). true: `logs` is the whole
   * truth (an empty list means off), and the flags are not used.
   */
  configured: boolean;
  /**
   * Logs written, in provider-name order. Every HTTP request and TCP connection whose `filter`
   * matches is written to each. Several logs may share a `path` (each writes its own line).
   */
  logs: AccessLog[];
}

export interface AccessLog {
  /** Provider name: `envoy` (Istio's built-in, from MeshConfig), or a MeshConfig `extensionProviders[].name`; `mesh-config` for the legacy `accessLogFile`. */
  provider: string;
  /** `/dev/stdout`, `/dev/stderr`, or a file path (opened for append by each data-plane process). */
  path: string;
  /** `TEXT`: one line per `format`; `JSON`: one JSON object per line with `jsonFormat` keys. */
  encoding: 'TEXT' | 'JSON';
  /**
   * TEXT only: an Envoy format string of `%COMMAND%` operators (see formats/log-format.ts);
   * null = Istio's default format (the TEXT line `[%START_TIME%] "%REQ(:METHOD)% ..."`).
   */
  format: string | null;
  /** JSON only: key -> Envoy format string, in the author's order; null = Istio's default keys. */
  jsonFormat: { key: string; format: string }[] | null;
  /** A CEL expression (formats/cel.ts); a request is logged only when it is true. null = every request. */
  filter: string | null;
  /** The objects that configured this log (Telemetry, MeshConfig ConfigMap), most specific last. */
  sources: SourceRef[];
}

/**
 * Tracing from the Telemetry API (`spec.tracing`) and MeshConfig tracing providers, on top of the
 * operator's `--tracing-endpoint` / `--tracing-sampling` (which stay the defaults). Applied on every
 * snapshot swap; the OpenTelemetry SDK is loaded only by processes that trace.
 */
export interface TracingConfig {
  /** Whether a Telemetry `tracing` entry applies to this gateway; false: the flags alone decide. */
  configured: boolean;
  /** The provider chosen (MeshConfig `extensionProviders[].name`); null = the `--tracing-endpoint` flag's exporter. */
  provider: string | null;
  /**
   * OTLP/HTTP traces URL of `provider` (`http://<service>:<port><http.path, default /v1/traces>`);
   * null with a provider = the provider cannot be used (reported) and tracing is off.
   */
  endpoint: string | null;
  /** Percentage (0-100) of new traces sampled; null = `--tracing-sampling` (default 1). A parent's decision is always kept. */
  samplingPercentage: number | null;
  /** Spans are made and their context propagated upstream, but not exported. */
  disableSpanReporting: boolean;
  /** Extra span attributes, sorted by name. */
  customTags: CustomTag[];
  /** The Telemetry objects that configured tracing, least specific first. */
  sources: SourceRef[];
}

export interface CustomTag {
  /** Span attribute name. */
  name: string;
  /** `literal`: `value`; `header`: the request header named `value`; `environment`: the data-plane process's environment variable named `value`. */
  kind: 'literal' | 'header' | 'environment';
  value: string;
  /** Used when the header or variable is absent; null = the tag is left out. */
  defaultValue: string | null;
}
