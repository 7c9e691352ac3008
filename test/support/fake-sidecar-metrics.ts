/**
 * A sidecar's metrics endpoint stand-in for the mesh graph's tests: a real HTTP server on a
 * loopback address serving `/stats/prometheus` from a real prom-client registry with Istio's metric
 * names, labels and Envoy's default duration buckets, whose counters the test moves forward
 * (`request`, `tcp`) or resets as a restarted sidecar would (`restart`).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Histogram, Registry } from 'prom-client';

/** Envoy's default histogram buckets (Istio's duration histogram), ms. */
const BUCKETS = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];
const LABELS = [
  'reporter', 'source_workload', 'source_workload_namespace', 'source_principal', 'source_canonical_service', 'source_app',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_service', 'destination_service_name',
  'destination_service_namespace', 'destination_canonical_service', 'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
] as const;
type Labels = Record<(typeof LABELS)[number], string>;

export interface Flow {
  reporter: 'source' | 'destination';
  /** [namespace, workload]; null = a caller without a sidecar. */
  src: [string, string] | null;
  /** [namespace, workload]; null = no workload known (PassthroughCluster, an unmeshed service). */
  dst: [string, string] | null;
  /** destination_service (FQDN, or PassthroughCluster / BlackHoleCluster). */
  svc: string;
  /** Whether the connection was Istio mTLS. */
  mtls: boolean;
  protocol?: 'http' | 'grpc';
}

const TD = 'cluster.local';

export function istioLabels(f: Flow, code: string, grpcStatus = ''): Labels {
  const svcName = f.svc.split('.')[0];
  const svcNs = f.svc.endsWith('.svc.cluster.local') ? f.svc.split('.')[1] : 'unknown';
  return {
    reporter: f.reporter,
    source_workload: f.src?.[1] ?? 'unknown',
    source_workload_namespace: f.src?.[0] ?? 'unknown',
    source_principal: f.src !== null && f.mtls ? `spiffe://${TD}/ns/${f.src[0]}/sa/${f.src[1]}` : 'unknown',
    source_canonical_service: f.src?.[1] ?? 'unknown',
    source_app: f.src?.[1] ?? 'unknown',
    destination_workload: f.dst?.[1] ?? 'unknown',
    destination_workload_namespace: f.dst?.[0] ?? svcNs,
    destination_principal: f.dst !== null && f.mtls ? `spiffe://${TD}/ns/${f.dst[0]}/sa/${f.dst[1]}` : 'unknown',
    destination_service: f.svc,
    destination_service_name: svcName,
    destination_service_namespace: svcNs,
    destination_canonical_service: f.dst?.[1] ?? svcName,
    request_protocol: f.protocol ?? 'http',
    response_code: code,
    grpc_response_status: grpcStatus,
    response_flags: code === '503' ? 'UF' : '-',
    // istio_stats: only the destination computes it.
    connection_security_policy: f.reporter === 'source' ? 'unknown' : f.mtls ? 'mutual_tls' : 'none',
  };
}

export class FakeSidecarMetrics {
  #registry!: Registry;
  #requests!: Counter<(typeof LABELS)[number]>;
  #duration!: Histogram<(typeof LABELS)[number]>;
  #sent!: Counter<(typeof LABELS)[number]>;
  #received!: Counter<(typeof LABELS)[number]>;
  #opened!: Counter<(typeof LABELS)[number]>;
  #server: http.Server | null = null;
  /** Answer this instead of the metrics (a broken endpoint). */
  broken: string | null = null;
  scrapes = 0;

  constructor() {
    this.restart();
  }

  /** Fresh counters, as after a sidecar restart (Prometheus sees a counter reset). */
  restart(): void {
    this.#registry = new Registry();
    const r = [this.#registry];
    this.#requests = new Counter({ name: 'istio_requests_total', help: 'Requests (Istio standard metric).', labelNames: LABELS, registers: r });
    this.#duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration in ms (Istio standard metric).', labelNames: LABELS, buckets: BUCKETS, registers: r });
    this.#sent = new Counter({ name: 'istio_tcp_sent_bytes_total', help: 'Bytes sent.', labelNames: LABELS, registers: r });
    this.#received = new Counter({ name: 'istio_tcp_received_bytes_total', help: 'Bytes received.', labelNames: LABELS, registers: r });
    this.#opened = new Counter({ name: 'istio_tcp_connections_opened_total', help: 'Connections opened.', labelNames: LABELS, registers: r });
  }

  /** `n` requests of `flow` answered `code`, each taking `ms`. */
  request(flow: Flow, code: string, ms: number, n = 1, grpcStatus = ''): void {
    const l = istioLabels(flow, code, grpcStatus);
    this.#requests.inc(l, n);
    for (let i = 0; i < n; i++) this.#duration.observe(l, ms);
  }

  tcp(flow: Flow, sent: number, received: number, opened = 0): void {
    const l = istioLabels({ ...flow, protocol: undefined }, '0');
    l.request_protocol = 'tcp';
    this.#sent.inc(l, sent);
    this.#received.inc(l, received);
    if (opened > 0) this.#opened.inc(l, opened);
  }

  async listen(host: string, port: number): Promise<number> {
    this.#server = http.createServer((req, res) => {
      if (req.url !== '/stats/prometheus') {
        res.writeHead(404).end();
        return;
      }
      this.scrapes++;
      if (this.broken !== null) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end(this.broken);
        return;
      }
      void this.#registry.metrics().then((text) => res.writeHead(200, { 'content-type': this.#registry.contentType }).end(text));
    });
    await new Promise<void>((resolve, reject) => {
      this.#server!.once('error', reject);
      this.#server!.listen(port, host, () => resolve());
    });
    return (this.#server.address() as AddressInfo).port;
  }

  close(): Promise<void> {
    const s = this.#server;
    this.#server = null;
    if (s === null) return Promise.resolve();
    return new Promise((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  }
}
