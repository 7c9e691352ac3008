/**
 * One record per TCP proxy connection (TCP, TLS passthrough, terminated TLS), filled by
 * `runtime/tcp/tcp-listeners.ts` and read twice: when the connection is routed (`open`:
 * istio_tcp_connections_opened_total) and when it closes (`close`: closed, bytes both ways, the
 * access-log line). Built only when observability is on.
 *
 * Response flags as Envoy's tcp_proxy sets them: `NR` no route (or unknown SNI), `NC` the route's
 * cluster does not exist, `UH` no healthy endpoint, `UF` connect failure (a connect timeout is
 * `UF` too) or upstream TLS failure, `UC` upstream reset after connecting, `DC` downstream reset.
 */
import type { StructObject } from '../lib/proto-struct.js';

/** What the TCP proxy calls; `Observability.observeTcp` implements it. */
export interface TcpObserver {
  observeTcp(rec: TcpRecord, phase: 'open' | 'close'): void;
}

/** `observer` as a TcpObserver when it is one (the runtime is given a RequestObserver). */
export function tcpObserverOf(observer: unknown): TcpObserver | null {
  return observer !== null && typeof observer === 'object' && typeof (observer as Partial<TcpObserver>).observeTcp === 'function' ? (observer as TcpObserver) : null;
}

export class TcpRecord {
  /** `performance.now()` at accept. */
  readonly start = performance.now();
  /** Wall clock at accept (ms since the epoch). */
  readonly startWall = Date.now();
  /** Route name, null when none matched. */
  route: string | null = null;
  /** Cluster name, '' when none. */
  cluster = '';
  /** `address:port` of the upstream endpoint. */
  upstreamHost: string | null = null;
  /** `address:port` the upstream connection was made from (a sidecar's inbound side: 127.0.0.6:…); null when not recorded. */
  upstreamLocal: string | null = null;
  /** Envoy response flag; null = none (`-`). */
  flags: string | null = null;
  /** Why the upstream transport failed (`TLS_error:...`), else null. */
  upstreamFailure: string | null = null;
  /** Why the proxy closed the connection itself (Envoy's `connection_termination_details`, e.g. `rbac_access_denied_matched_policy[...]`), else null. */
  terminationDetails: string | null = null;
  /** SNI of the client's ClientHello (passthrough or terminated), '' when none. */
  sni = '';
  durationMs = 0;
  /** Bytes read from the client. */
  bytesReceived = 0;
  /** Bytes written to the client. */
  bytesSent = 0;
  /** True once `open` was reported (so `close` is reported once per opened connection too). */
  opened = false;
  /** Istio labels fixed by the connection (a sidecar's inbound side, see `RequestRecord.meshLabels`); null = the gateway's labels of `cluster`. */
  meshLabels: Readonly<Record<string, string>> | null = null;
  /** The workload Struct the server's Istio TCP metadata exchange preamble carried (a sidecar's outbound side); null = none. */
  peerMetadata: StructObject | null = null;

  constructor(
    /** The TcpListener name. */
    readonly listener: string,
    readonly downstreamLocal: string | null,
    readonly downstreamRemote: string | null,
  ) {}

  /** Sets the flag unless one is already set (the first cause wins). */
  flag(flag: string, failure: string | null = null): void {
    if (this.flags !== null) return;
    this.flags = flag;
    this.upstreamFailure = failure;
  }
}

/** `host:port`, IPv4-mapped IPv6 shown as IPv4, IPv6 bracketed (as the HTTP access log). */
export function socketAddress(host: string | undefined, port: number | undefined): string | null {
  if (host === undefined || port === undefined) return null;
  const h = host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}

/** The access-log fields of a TCP connection, with the HTTP entry's keys (Istio prints `-` for the HTTP ones and 0 for the code). */
export function tcpAccessLogEntry(rec: TcpRecord): Record<string, string | number | null> {
  return {
    start_time: new Date(rec.startWall).toISOString(),
    route_name: rec.route,
    method: null,
    path: null,
    protocol: null,
    response_code: 0,
    response_flags: rec.flags,
    response_code_details: null,
    connection_termination_details: rec.terminationDetails,
    upstream_transport_failure_reason: rec.upstreamFailure,
    bytes_received: rec.bytesReceived,
    bytes_sent: rec.bytesSent,
    duration: Math.round(rec.durationMs),
    upstream_service_time: null,
    x_forwarded_for: null,
    user_agent: null,
    request_id: null,
    authority: null,
    upstream_host: rec.upstreamHost,
    upstream_cluster: rec.cluster === '' ? null : rec.cluster,
    upstream_local_address: rec.upstreamLocal,
    downstream_local_address: rec.downstreamLocal,
    downstream_remote_address: rec.downstreamRemote,
    requested_server_name: rec.sni === '' ? null : rec.sni,
  };
}
