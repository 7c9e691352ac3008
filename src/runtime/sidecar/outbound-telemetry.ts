/**
 * Istio's standard labels as the source (client-side) sidecar reports them (reference/mesh.md §4):
 * `reporter="source"`, this workload's `source_*`, the destination service from the cluster
 * (`outbound|port|subset|fqdn`), and the destination workload from the endpoint that served the
 * request, looked up by IP in the view's `workloads` (ztunnel does the same lookup), else from the
 * `x-envoy-peer-metadata` an Istio destination sidecar answered with (Istio's metadata exchange,
 * `peer-metadata.ts`). `destination_principal` is the SPIFFE ID the Istio mTLS connection verified
 * (the workload's service account), `unknown` in plaintext; `connection_security_policy` is always
 * `unknown` on the source side (istio_stats).
 *
 * The labels are given to the request's record as `meshLabels`, read when metrics count it (after
 * the endpoint is known); a record without an upstream (local replies) keeps the gateway's labels.
 */
import type { Cluster, IRSnapshot, MeshWorkload, SidecarProxy } from '../../ir/types.js';
import type { RequestObserver } from '../../observability/observer.js';
import type { RequestRecord } from '../../observability/record.js';
import type { TcpObserver } from '../../observability/tcp-record.js';
import { destinationLabels } from '../../observability/metrics.js';
import { canonicalServiceName, canonicalServiceRevision } from '../../lib/canonical-service.js';
import { peerMetadataOf, peerWorkloadOf, withDestinationPeer } from './peer-metadata.js';

export interface OutboundTelemetryContext {
  proxy: SidecarProxy;
  /** Trust domain (from the proxy's SPIFFE ID). */
  trustDomain: string;
  workloadsByIp: Map<string, MeshWorkload>;
  /** Cluster name → `address:port` of its endpoints reached with Istio mTLS. */
  mtlsEndpoints: Map<string, Set<string>>;
  /** Istio cluster ID for `source_cluster` / `destination_cluster`. */
  clusterId: string;
}

export function outboundTelemetryContext(ir: IRSnapshot, clusterId: string): OutboundTelemetryContext | null {
  const view = ir.sidecar;
  if (view === undefined) return null;
  const trustDomain = /^spiffe:\/\/([^/]+)\//.exec(view.proxy.spiffeId)?.[1] ?? 'cluster.local';
  const mtlsEndpoints = new Map<string, Set<string>>();
  for (const c of ir.clusters) {
    const set = mtlsOf(c);
    if (set.size > 0) mtlsEndpoints.set(c.name, set);
  }
  return { proxy: view.proxy, trustDomain, workloadsByIp: new Map(view.workloads.map((w) => [w.ip, w])), mtlsEndpoints, clusterId };
}

function mtlsOf(c: Cluster): Set<string> {
  const out = new Set<string>();
  for (const e of c.endpoints) {
    const tls = c.tls ?? (e.tlsMode === 'istio' ? c.autoMtls ?? null : null);
    if (tls !== null && tls.mode === 'ISTIO_MUTUAL') out.add(hostPort(e.address, e.port));
  }
  return out;
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Clusters Istio reports by name in `destination_service_name`, with no service. */
const SPECIAL_CLUSTERS: ReadonlySet<string> = new Set(['PassthroughCluster', 'BlackHoleCluster']);

/** `10.0.0.1:80` / `[fd00::1]:80` → the address. */
function addressOf(upstreamHost: string): string {
  const m = /^\[(.*)\]:\d+$/.exec(upstreamHost) ?? /^(.*):\d+$/.exec(upstreamHost);
  return m === null ? upstreamHost : m[1];
}

/** Every Istio label but the per-request ones, for a request that `cluster`'s endpoint `upstreamHost` served. */
export function outboundLabels(ctx: OutboundTelemetryContext, cluster: string, endpoint: string | null): Record<string, string> {
  const p = ctx.proxy;
  // The endpoint's pool key may carry its TLS identity (`10.0.0.3:9080#tls=…`).
  const hash = endpoint === null ? -1 : endpoint.indexOf('#');
  const upstreamHost = endpoint === null ? '' : hash === -1 ? endpoint : endpoint.slice(0, hash);
  const w = endpoint === null ? undefined : ctx.workloadsByIp.get(addressOf(upstreamHost));
  const mtls = ctx.mtlsEndpoints.get(cluster)?.has(upstreamHost) === true;
  // Istio's catch-all clusters carry no service: `destination_service` is unknown and
  // `destination_service_name` the cluster's name (istio_stats, client side).
  const special = SPECIAL_CLUSTERS.has(cluster);
  const d = special ? null : destinationLabels(cluster);
  const peerNamespace = w?.namespace ?? (d === null || d.destination_workload_namespace === 'unknown' ? 'unknown' : String(d.destination_workload_namespace));
  const srcCanonical = canonicalServiceName(p.labels, p.workload);
  const srcRevision = canonicalServiceRevision(p.labels);
  return {
    reporter: 'source',
    source_workload: p.workload,
    source_canonical_service: srcCanonical,
    source_canonical_revision: srcRevision,
    source_workload_namespace: p.namespace,
    source_principal: mtls ? p.spiffeId : 'unknown',
    source_app: p.labels.app ?? 'unknown',
    source_version: p.labels.version ?? 'unknown',
    source_cluster: ctx.clusterId,
    destination_workload: w?.name ?? 'unknown',
    destination_workload_namespace: peerNamespace,
    destination_principal: mtls && w !== undefined ? `spiffe://${ctx.trustDomain}/ns/${w.namespace}/sa/${w.serviceAccount}` : 'unknown',
    destination_app: w === undefined || w.app === '' ? 'unknown' : w.app,
    destination_version: w === undefined || w.version === '' ? 'unknown' : w.version,
    destination_service: d === null ? 'unknown' : String(d.destination_service),
    destination_canonical_service: w !== undefined ? w.canonicalService : d === null ? 'unknown' : String(d.destination_canonical_service),
    destination_canonical_revision: w === undefined ? 'latest' : w.canonicalRevision,
    destination_service_name: d === null ? cluster : String(d.destination_service_name),
    destination_service_namespace: d === null || d.destination_service_namespace === 'unknown' ? peerNamespace : String(d.destination_service_namespace),
    destination_cluster: w === undefined ? 'unknown' : ctx.clusterId,
    connection_security_policy: 'unknown',
  };
}

/**
 * The request observer of the outbound side: each record gets its `meshLabels` computed when the
 * metrics read them (the endpoint is known by then), cached per cluster and endpoint.
 */
export function outboundObserver(inner: RequestObserver, context: () => OutboundTelemetryContext | null): RequestObserver {
  // Catch-all requests by cluster, endpoint and Host; the others by cluster, then endpoint: both
  // strings come from the compiled destination and endpoint (hashed once), so a request joins none.
  let cache = new Map<string, Record<string, string>>();
  let byCluster = new Map<string, Map<string, Record<string, string>>>();
  let cached = 0;
  let cacheFor: OutboundTelemetryContext | null = null;
  const labelsOf = (rec: RequestRecord): Record<string, string> | null => {
    const ctx = context();
    if (ctx === null) return null;
    let cluster = rec.clusterName;
    const host = rec.upstreamHost;
    // Istio's catch-all routes (allow_any, block_all) have no service: istio_stats reports the
    // request's Host as destination_service (its host header fallback).
    const catchAll = cluster === 'PassthroughCluster' || (cluster === null && rec.route?.name === 'block_all');
    if (cluster === null && catchAll) cluster = 'BlackHoleCluster';
    if (cluster === null || (host === null && !catchAll)) return null;
    if (ctx !== cacheFor) {
      cacheFor = ctx;
      cache = new Map();
      byCluster = new Map();
      cached = 0;
    }
    let labels: Record<string, string> | undefined;
    if (catchAll) {
      const authority = (rec.d.http2 ? rec.d.header(':authority') : null) ?? rec.d.header('host') ?? '';
      const key = `${cluster}\0${host ?? ''}\0${authority}`;
      labels = cache.get(key);
      if (labels === undefined) {
        labels = outboundLabels(ctx, cluster, host);
        if (authority !== '') labels = { ...labels, destination_service: authority };
        if (cached < 10_000) {
          cache.set(key, labels);
          cached++;
        }
      }
    } else {
      let byHost = byCluster.get(cluster);
      labels = byHost?.get(host!);
      if (labels === undefined) {
        labels = outboundLabels(ctx, cluster, host);
        if (cached < 10_000) {
          if (byHost === undefined) byCluster.set(cluster, (byHost = new Map()));
          byHost.set(host!, labels);
          cached++;
        }
      }
    }
    // An endpoint the view does not know, answered by an Istio sidecar: its metadata exchange says who it is.
    const mx = rec.upstreamPeerMetadata;
    if (mx !== null && labels.destination_workload === 'unknown') {
      const peer = peerMetadataOf(mx);
      if (peer !== null) return withDestinationPeer(labels, peer);
    }
    return labels;
  };
  return {
    begin(listener, d) {
      const rec = inner.begin(listener, d);
      if (rec !== null) rec.meshLabelsOf = labelsOf;
      return rec;
    },
    upstreamTraceHeaders: (rec) => inner.upstreamTraceHeaders(rec),
  };
}

/**
 * The TCP observer of the outbound side: each connection record (relays of TCP/TLS services,
 * PassthroughCluster, BlackHoleCluster) gets the same source-side labels as HTTP requests
 * (`reporter="source"`, `destination_workload` and `destination_principal` from the endpoint that
 * was dialled), fixed when the connection is first reported so that all four istio_tcp_* series of
 * one connection share them, as istio_stats does.
 */
export function outboundTcpObserver(inner: TcpObserver, context: () => OutboundTelemetryContext | null): TcpObserver {
  return {
    observeTcp(rec, phase) {
      if (rec.meshLabels === null) {
        const ctx = context();
        if (ctx !== null && rec.cluster !== '') {
          const labels = outboundLabels(ctx, rec.cluster, rec.upstreamHost);
          // An endpoint the view does not know, whose Istio sidecar told who it is in its TCP preamble.
          rec.meshLabels = rec.peerMetadata === null ? labels : withDestinationPeer(labels, peerWorkloadOf(rec.peerMetadata));
        }
      }
      inner.observeTcp(rec, phase);
    },
  };
}
