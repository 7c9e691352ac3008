/**
 * RequestRecord: what one downstream request did, filled in by the request path as it goes and read
 * once, when the response closes, by metrics, the access log and tracing.
 *
 * One object per request, and only when some observability is on (`RequestEnv.observer` is null
 * otherwise and nothing here runs). The request path only assigns fields; every string is built
 * after the response has closed, and only by the sinks that are enabled.
 *
 * Other parts of the data plane add fields here rather than hooks of their own: retries set
 * `attempts` and `flags` (`URX`), circuit breaking `flags` (`UO`), HTTP/2 and gRPC `protocol` and
 * `grpcStatus`.
 */
import type { CompiledDestination, CompiledListener, CompiledRoute } from '../runtime/compile/types.js';
import { sentHeader, type Downstream } from '../runtime/http/downstream.js';
import { httpToGrpcStatus } from '../runtime/http/grpc.js';

/** Every Istio label but the per-request ones (`request_protocol`, `response_code`, `grpc_response_status`, `response_flags`). */
export type MeshLabels = Readonly<Record<string, string>>;

/**
 * Envoy's `Grpc::Common::hasGrpcContentType`: `application/grpc`, or it followed by `+` or `;`
 * (gRPC-Web's `application/grpc-web` is not, so Istio counts it as `http`).
 */
function isGrpcContentType(ct: string | null): boolean {
  if (ct === null || ct.length < 16 || !ct.startsWith('application/grpc')) return false;
  if (ct.length === 16) return true;
  const next = ct.charCodeAt(16);
  return next === 43 /* + */ || next === 59 /* ; */;
}

/** Where a finished record goes. */
export interface RecordSink {
  finish(rec: RequestRecord): void;
}

export class RequestRecord {
  /** `performance.now()` when the request head had been read. */
  readonly start: number;
  readonly listener: CompiledListener;
  /** The downstream exchange (request head, connection facts, and the head that was sent). */
  readonly d: Downstream;
  readonly sink: RecordSink;
  /** The route that matched; null before matching and when none did (`NR`). */
  route: CompiledRoute | null = null;
  /** The weighted destination picked; null when the request was not forwarded. */
  destination: CompiledDestination | null = null;
  /** `address:port` of the endpoint the (last) attempt went to; null when none was chosen. */
  upstreamHost: string | null = null;
  /** x-request-id sent upstream (kept from the client or generated); null when not forwarded. */
  requestId: string | null = null;
  /** Envoy response flags (`NR`, `UH`, `UF`, `URX,UF`...); `-` when none. */
  flags = '-';
  /** Envoy `%RESPONSE_CODE_DETAILS%`; null = `via_upstream` when forwarded, else derived from flags. */
  details: string | null = null;
  /** A sidecar's outbound request (or the gateway's as a mesh client): the `x-envoy-peer-metadata` the destination's sidecar answered with (Istio's metadata exchange); null = none. */
  upstreamPeerMetadata: string | null = null;
  /** Response body bytes written downstream. */
  bytesSent = 0;
  /** ms from the upstream request to its response head; -1 when there was none. */
  upstreamServiceTime = -1;
  /** Upstream attempts made (retries add to it). */
  attempts = 0;
  /** Istio `request_protocol`: `http`, or `grpc` for a gRPC request (settled when the record closes). */
  protocol = 'http';
  /** gRPC status for `grpc_response_status` (settled when the record closes); '' when not gRPC. */
  grpcStatus = '';
  /**
   * The `grpc-status` of the response's trailers, set by the request path when they end the answer
   * (the upstream's, relayed or not, or the gateway's own DEADLINE_EXCEEDED); null = none.
   */
  trailerGrpcStatus: string | null = null;
  /**
   * WebSocket (runtime/http/websocket.ts): the status the endpoint's answer to an upgrade was relayed
   * with outside the response object: 101 (200 for an HTTP/2 extended CONNECT) when a tunnel was
   * opened, else the relayed refusal; 0 when the request was no upgrade. A tunnel's record finishes
   * when the tunnel closes, so the duration is its lifetime and `bytesSent` the bytes relayed to the client.
   */
  upgradeStatus = 0;
  /** Bytes relayed from the client into a WebSocket tunnel; -1 when none was opened (then the request's Content-Length counts). */
  tunnelBytesReceived = -1;
  /** Set when the record is finished. */
  durationMs = 0;
  status = 0;
  /** Opaque per-request state of the tracer (its span), when tracing is on. */
  span: unknown = null;
  /**
   * Istio labels fixed by the connection (a sidecar's inbound side: `reporter="destination"`, the
   * peer's `source_*`, the workload's `destination_*`, `connection_security_policy`), set by whoever
   * began the record; metrics then count the request under them instead of the gateway's route and
   * cluster labels. null = the gateway's labels. When `meshLabelsOf` is set and no labels were, they
   * are its answer, asked when read (a sidecar's outbound side: they depend on the endpoint picked).
   */
  get meshLabels(): MeshLabels | null {
    return this.#meshLabels ?? (this.meshLabelsOf === null ? null : this.meshLabelsOf(this));
  }
  set meshLabels(labels: MeshLabels | null) {
    this.#meshLabels = labels;
  }
  #meshLabels: MeshLabels | null = null;
  /** Computes `meshLabels` when they are read (one function per observer, not per request: no per-record property). */
  meshLabelsOf: ((rec: RequestRecord) => MeshLabels | null) | null = null;

  constructor(listener: CompiledListener, d: Downstream, sink: RecordSink) {
    this.start = performance.now();
    this.listener = listener;
    this.d = d;
    this.sink = sink;
    d.record = this;
  }

  /** The response closed (the engine calls it once): the status is settled and the sinks read the record. */
  closed(d: Downstream): void {
    this.durationMs = performance.now() - this.start;
    if (this.upgradeStatus !== 0 && !d.headersSent) {
      // An HTTP/1.1 upgrade answered on the raw socket (websocket.ts): the tunnel or the relayed refusal.
      this.status = this.upgradeStatus;
    } else if (d.finished || this.upgradeStatus !== 0) {
      this.status = d.status;
    } else {
      // The client went away before the response was complete (Envoy `DC`); 0 when no head was sent.
      this.status = d.headersSent ? d.status : 0;
      if (this.flags === '-') this.flags = 'DC';
    }
    if (isGrpcContentType(d.header('content-type'))) {
      // Istio's stats filter: request_protocol "grpc" for a gRPC request, and its grpc_response_status
      // from the trailers, else the headers (a trailers-only answer), else mapped from the HTTP status
      // (Envoy Grpc::Common::getGrpcStatus); '' when no answer was sent.
      this.protocol = 'grpc';
      this.grpcStatus = this.trailerGrpcStatus ?? sentHeader(d, 'grpc-status') ?? (this.status > 0 ? String(httpToGrpcStatus(this.status)) : '');
    }
    this.sink.finish(this);
  }

  /** Upstream cluster name, or null when the request was not forwarded. */
  get clusterName(): string | null {
    return this.destination === null ? null : this.destination.clusterName;
  }

  /** Bytes of the request body: its Content-Length (chunked bodies are not counted). */
  get bytesReceived(): number {
    if (this.tunnelBytesReceived >= 0) return this.tunnelBytesReceived;
    // rawHeaders, not `req.headers`: that getter builds an object of every header on first use.
    const raw = this.d.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i];
      if (name.length === 14 && name.toLowerCase() === 'content-length') {
        const n = Number(raw[i + 1]);
        return Number.isFinite(n) ? n : 0;
      }
    }
    return 0;
  }
}

/** Called by the local-reply function: the gateway answered itself with `flag`, `bytes` of body and `details`. */
export function noteLocalReply(rec: RequestRecord | null, flag: string | null, bytes: number, details: string | null = null): void {
  if (rec === null) return;
  if (details !== null) rec.details = details;
  if (flag !== null) rec.flags = rec.flags === '-' ? flag : `${rec.flags},${flag}`;
  rec.bytesSent = bytes;
}

/** Envoy `%RESPONSE_CODE_DETAILS%` for a finished record. */
export function responseDetails(rec: RequestRecord): string {
  if (rec.details !== null) return rec.details;
  const f = rec.flags;
  if (f === '-') return rec.upstreamHost !== null ? 'via_upstream' : rec.route !== null ? 'direct_response' : '-';
  if (f.includes('NR')) return 'route_not_found';
  if (f.includes('NC')) return 'cluster_not_found';
  if (f.includes('UH')) return 'no_healthy_upstream';
  if (f.includes('UO')) return 'upstream_reset_before_response_started{overflow}';
  if (f.includes('UF')) return 'upstream_reset_before_response_started{connection_failure}';
  if (f.includes('UT')) return 'response_timeout';
  if (f.includes('UC')) return rec.d.headersSent ? 'upstream_reset_after_response_started{connection_termination}' : 'upstream_reset_before_response_started{connection_termination}';
  if (f.includes('UPE')) return 'upstream_reset_before_response_started{protocol_error}';
  if (f.includes('DC')) return 'downstream_remote_disconnect';
  if (f.includes('DPE')) return 'http1.codec_error';
  return '-';
}
