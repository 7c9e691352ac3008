/**
 * Istio's standard labels as the destination (server-side) sidecar reports them (reference/mesh.md
 * §4; Istio's istio_stats filter with `reporter="destination"`):
 * - `source_principal`: the peer certificate's SPIFFE URI (full `spiffe://…`), else `unknown`;
 * - `source_*` workload labels: the workload whose pod IP is the peer address (`SidecarView.workloads`),
 *   accepted only when its namespace and service account are the certificate's (an IP alone proves
 *   nothing), else `unknown`; the namespace falls back to the one in the principal;
 * - `destination_*`: this workload (its SPIFFE ID as `destination_principal` on mTLS), and the
 *   Service of the inbound port (`inbound|<port>||` cluster's service) as `destination_service*`;
 * - `connection_security_policy`: `mutual_tls` when both ends presented a SPIFFE certificate, else `none`.
 * The per-request labels (`request_protocol`, `response_code`, `grpc_response_status`,
 * `response_flags`) are added by the metrics (observability/metrics.ts).
 */
import type { MeshWorkload, SidecarProxy } from '../../ir/sidecar.js';
import { canonicalServiceName, canonicalServiceRevision } from '../../lib/canonical-service.js';

export interface PortService {
  host: string;
  name: string;
  namespace: string;
}

export interface InboundTelemetryContext {
  proxy: SidecarProxy;
  workloadsByIp: ReadonlyMap<string, MeshWorkload>;
  /** `source_cluster` / `destination_cluster` (Istio's cluster ID). */
  clusterId: string;
}

/** The connection-fixed labels of one inbound connection. */
export function inboundLabels(
  ctx: InboundTelemetryContext,
  service: PortService | null,
  peerIp: string,
  /** Full `spiffe://…` URI of the verified peer certificate, or null (plaintext). */
  peerSpiffe: string | null,
): Record<string, string> {
  const p = ctx.proxy;
  const parsed = peerSpiffe === null ? null : /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(peerSpiffe);
  const w = ctx.workloadsByIp.get(peerIp);
  const peer = w !== undefined && parsed !== null && w.namespace === parsed[1] && w.serviceAccount === parsed[2] ? w : undefined;
  const labels = p.labels;
  const dstCanonical = canonicalServiceName(labels, p.workload);
  const dstRevision = canonicalServiceRevision(labels);
  const mtls = peerSpiffe !== null;
  return {
    reporter: 'destination',
    source_workload: peer?.name ?? 'unknown',
    source_canonical_service: peer === undefined ? 'unknown' : peer.canonicalService,
    source_canonical_revision: peer === undefined ? 'latest' : peer.canonicalRevision,
    source_workload_namespace: peer?.namespace ?? parsed?.[1] ?? 'unknown',
    source_principal: peerSpiffe ?? 'unknown',
    source_app: peer === undefined || peer.app === '' ? 'unknown' : peer.app,
    source_version: peer === undefined || peer.version === '' ? 'unknown' : peer.version,
    source_cluster: peer === undefined ? 'unknown' : ctx.clusterId,
    destination_workload: p.workload,
    destination_workload_namespace: p.namespace,
    destination_principal: mtls ? p.spiffeId : 'unknown',
    destination_app: labels.app ?? 'unknown',
    destination_version: labels.version ?? 'unknown',
    // No Service on the port (InboundPassthroughCluster): istio_stats reports the canonical name.
    destination_service: service?.host ?? dstCanonical,
    destination_canonical_service: dstCanonical,
    destination_canonical_revision: dstRevision,
    destination_service_name: service?.name ?? (peerIp.includes(':') ? 'InboundPassthroughClusterIpv6' : 'InboundPassthroughClusterIpv4'),
    destination_service_namespace: service?.namespace ?? p.namespace,
    destination_cluster: ctx.clusterId,
    connection_security_policy: mtls ? 'mutual_tls' : 'none',
  };
}
