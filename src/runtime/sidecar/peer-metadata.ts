/**
 * Istio's HTTP metadata exchange (the `istio.metadata_exchange` HTTP filter of Istio's sidecars,
 * type `io.istio.http.peer_metadata.Config` with `istio_headers` discovery and propagation), so that
 * a mesh mixing meshgate and Envoy sidecars reports the peer's workload labels at both ends
 * (docs/sidecar.md, "Peer metadata exchange").
 *
 * The two headers:
 * - `x-envoy-peer-metadata-id`: the proxy's node ID, `sidecar~<pod IP>~<pod>.<namespace>~<namespace>.svc.cluster.local`;
 * - `x-envoy-peer-metadata`: base64 (standard alphabet, padded, as Envoy's `Base64::encode`; the
 *   decoder also takes it unpadded, as Envoy's `decodeWithoutPadding`) of a deterministically
 *   serialized `google.protobuf.Struct` describing the workload: `NAME` (pod), `NAMESPACE`,
 *   `WORKLOAD_NAME`, `CLUSTER_ID`, `LABELS` (`app`, `version`,
 *   `service.istio.io/canonical-name`, `service.istio.io/canonical-revision`), as Istio 1.18+ sends it
 *   (`OWNER` aside).
 *
 * When (Istio's filter, `filter.cc`):
 * - a client sidecar adds both headers to every request it sends upstream and reads (then removes)
 *   them from the response; meshgate adds them only to requests sent over Istio mTLS (never to
 *   plaintext or external destinations: stricter than Istio's default, which sends them everywhere
 *   unless ProxyConfig `metadataExchangeHeaders: IN_MESH`);
 * - a server sidecar reads (then removes) them from the request and answers with its own, each
 *   header only when the request carried that header (a request with neither gets neither).
 * Neither header ever reaches an app, in either direction.
 *
 * Pay once: the local value is encoded once per view (`localPeerMetadata`, memoized on the view's
 * proxy object); a peer's value is decoded once and remembered (bounded, like Envoy's per-worker
 * peer cache).
 */
import type { SidecarProxy } from '../../ir/sidecar.js';
import type { MeshLabels } from '../../observability/record.js';
import { decodeStruct, encodeStruct, type StructObject, type StructValue } from '../../lib/proto-struct.js';
import { encodePeerPreamble } from '../tcp/peer-exchange.js';
import { CANONICAL_NAME_LABEL, CANONICAL_REVISION_LABEL, canonicalServiceName, canonicalServiceRevision } from '../../lib/canonical-service.js';

export const PEER_METADATA = 'x-envoy-peer-metadata';
export const PEER_METADATA_ID = 'x-envoy-peer-metadata-id';

/** Istio's canonical-service labels (set on every injected pod by Istio's injector). */
const CANONICAL_NAME = CANONICAL_NAME_LABEL;
const CANONICAL_REVISION = CANONICAL_REVISION_LABEL;

/** This proxy's two header values, computed once per view. */
export interface LocalPeerMetadata {
  /** `x-envoy-peer-metadata-id`. */
  readonly id: string;
  /** `x-envoy-peer-metadata`. */
  readonly value: string;
  /** Header lines a client sidecar adds to an upstream request over Istio mTLS. */
  readonly request: readonly string[];
  /**
   * Header lines a server sidecar answers with, by what the request carried (bit 1: the id
   * header, bit 2: the metadata header): Istio sends each only when the peer sent it.
   */
  readonly reply: readonly (readonly string[])[];
  /** The TCP metadata exchange preamble (`runtime/tcp/peer-exchange.ts`) with the same metadata and ID. */
  readonly preamble: Buffer;
}

/** What a peer's `x-envoy-peer-metadata` says, as Istio's `WorkloadMetadataObject` reads it ('' = absent). */
export interface PeerWorkload {
  /** `NAME`: the pod. */
  instance: string;
  namespace: string;
  /** `WORKLOAD_NAME`. */
  workload: string;
  /** `CLUSTER_ID`. */
  clusterId: string;
  /** `LABELS["service.istio.io/canonical-name"]` / `["service.istio.io/canonical-revision"]`. */
  canonicalService: string;
  canonicalRevision: string;
  /** `LABELS.app` / `LABELS.version`. */
  app: string;
  version: string;
  /** Older Istio (≤ 1.17) only: `SERVICE_ACCOUNT`, `MESH_ID`. */
  serviceAccount: string;
  meshId: string;
}

// ---- this proxy -------------------------------------------------------------------------------

/**
 * Istio's node types (pilot `model.NodeType`): `sidecar` for a sidecar, `router` for a gateway
 * (Istio's ingress and egress gateways run `proxy router`).
 */
export type ProxyNodeType = 'sidecar' | 'router';

/** Istio's node ID of a proxy (pilot `model.ServiceNode`): `<type>~IP~POD.NS~NS.svc.<domain>`. */
export function proxyNodeId(proxy: SidecarProxy, domain = 'cluster.local', type: ProxyNodeType = 'sidecar'): string {
  const pod = proxy.podName !== '' ? proxy.podName : proxy.workload;
  return `${type}~${proxy.podIps[0] ?? ''}~${pod}.${proxy.namespace}~${proxy.namespace}.svc.${domain}`;
}

/**
 * The Struct this proxy sends: what Istio 1.18+ proxies send (`convertWorkloadMetadataToStruct`).
 * `OWNER` is left out: the sidecar does not know the kind of the pod's controller (Istio reads it
 * only for baggage, not for metrics). The other keys older Istio proxies sent (`MESH_ID`,
 * `SERVICE_ACCOUNT`, `INSTANCE_IPS`, every pod label...) feed no metric in any version: left out,
 * so every request carries fewer bytes.
 */
export function localPeerStruct(proxy: SidecarProxy, clusterId: string): StructObject {
  const l = proxy.labels;
  const labels: StructObject = {
    // Istio's fallbacks (canonical-name, app.kubernetes.io/name, app, then the workload).
    [CANONICAL_NAME]: canonicalServiceName(l, proxy.workload),
    [CANONICAL_REVISION]: canonicalServiceRevision(l),
  };
  if (l.app !== undefined) labels.app = l.app;
  if (l.version !== undefined) labels.version = l.version;
  const out: StructObject = { NAMESPACE: proxy.namespace, WORKLOAD_NAME: proxy.workload, CLUSTER_ID: clusterId, LABELS: labels };
  if (proxy.podName !== '') out.NAME = proxy.podName;
  return out;
}

const localMemo = new WeakMap<SidecarProxy, Map<string, LocalPeerMetadata>>();

/**
 * This proxy's headers for a view (`proxy` is the view's object): encoded once, then remembered.
 * `type` is `router` for the gateway (`gatewayPeerMetadata`).
 */
export function localPeerMetadata(proxy: SidecarProxy, clusterId: string, type: ProxyNodeType = 'sidecar'): LocalPeerMetadata {
  let byCluster = localMemo.get(proxy);
  if (byCluster === undefined) localMemo.set(proxy, (byCluster = new Map()));
  const key = type === 'sidecar' ? clusterId : `${type}\0${clusterId}`;
  let m = byCluster.get(key);
  if (m === undefined) {
    const id = proxyNodeId(proxy, 'cluster.local', type);
    const struct = localPeerStruct(proxy, clusterId);
    const value = encodeStruct(struct).toString('base64');
    m = {
      id,
      value,
      request: [PEER_METADATA_ID, id, PEER_METADATA, value],
      reply: [[], [PEER_METADATA_ID, id], [PEER_METADATA, value], [PEER_METADATA_ID, id, PEER_METADATA, value]],
      preamble: encodePeerPreamble(struct, id),
    };
    byCluster.set(key, m);
  }
  return m;
}

/** What the gateway (`meshgate run` as a mesh client) knows of its own workload (plain data). */
export interface GatewayPeerInfo {
  /** Pod name (`--pod-name`, `$POD_NAME`, else the host name). */
  podName: string;
  /** Pod IP (`--pod-ip`, `$INSTANCE_IP`/`$POD_IP`); '' when not known. */
  podIp: string;
  namespace: string;
  /** `WORKLOAD_NAME`: the gateway's workload (`--workload-name`). */
  workload: string;
  /** The gateway pod's labels (`--gateway-labels`, or the pod's own in Kubernetes mode). */
  labels: Record<string, string>;
  /** `CLUSTER_ID` (`--cluster-id`). */
  clusterId: string;
}

/**
 * The gateway's headers, as Istio's gateways send them (node ID `router~IP~POD.NS~NS.svc.cluster.local`,
 * the same Struct as a sidecar's): built once per data plane, never per request.
 */
export function gatewayPeerMetadata(info: GatewayPeerInfo): LocalPeerMetadata {
  const proxy: SidecarProxy = {
    namespace: info.namespace,
    serviceAccount: '',
    podName: info.podName,
    podIps: info.podIp === '' ? [] : [info.podIp],
    labels: info.labels,
    spiffeId: '',
    workload: info.workload,
  };
  return localPeerMetadata(proxy, info.clusterId, 'router');
}

// ---- peers --------------------------------------------------------------------------------------

/** Standard base64, padded or not (Envoy's decoder takes both). */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}(?:==)?|[A-Za-z0-9+/]{3}=?)?$/;

/** Longer values are not decoded (Envoy's default request headers limit is 60 KiB in all). */
const MAX_VALUE_LENGTH = 16 * 1024;

function str(v: StructValue | undefined): string {
  return typeof v === 'string' ? v : '';
}

/** A decoded Struct as Istio's proxies read it (`convertStructToWorkloadMetadata`). */
export function peerWorkloadOf(s: StructObject): PeerWorkload {
  const labelsValue = s.LABELS;
  const labels: StructObject = labelsValue !== null && typeof labelsValue === 'object' && !Array.isArray(labelsValue) ? labelsValue : {};
  return {
    instance: str(s.NAME),
    namespace: str(s.NAMESPACE),
    workload: str(s.WORKLOAD_NAME),
    clusterId: str(s.CLUSTER_ID),
    canonicalService: str(labels[CANONICAL_NAME]),
    canonicalRevision: str(labels[CANONICAL_REVISION]),
    app: str(labels.app),
    version: str(labels.version),
    serviceAccount: str(s.SERVICE_ACCOUNT),
    meshId: str(s.MESH_ID),
  };
}

/** Decodes one `x-envoy-peer-metadata` value; null when it is not base64 of a Struct. */
export function parsePeerMetadata(value: string): PeerWorkload | null {
  const v = value.trim();
  if (v === '' || v.length > MAX_VALUE_LENGTH || !BASE64.test(v)) return null;
  try {
    return peerWorkloadOf(decodeStruct(Buffer.from(v, 'base64')));
  } catch {
    return null;
  }
}

/** Peers remembered by header value (Envoy keeps a per-worker cache keyed by the peer's id). */
const PEER_CACHE_LIMIT = 1000;
const peerCache = new Map<string, PeerWorkload | null>();

/** `parsePeerMetadata`, remembered: a peer sends the same value on every request. */
export function peerMetadataOf(value: string): PeerWorkload | null {
  const hit = peerCache.get(value);
  if (hit !== undefined) return hit;
  const p = parsePeerMetadata(value);
  if (peerCache.size >= PEER_CACHE_LIMIT) {
    // As Envoy: the oldest quarter goes.
    let n = PEER_CACHE_LIMIT / 4;
    for (const k of peerCache.keys()) {
      peerCache.delete(k);
      if (--n === 0) break;
    }
  }
  peerCache.set(value, p);
  return p;
}

/**
 * Removes both headers from `headers` (flat name/value pairs, lowercase names) in place; returns
 * the `x-envoy-peer-metadata` value found, or null.
 */
export function takePeerMetadata(headers: string[]): string | null {
  let value: string | null = null;
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    const n = headers[r];
    if (n.length >= 21 && n.charCodeAt(0) === 120 /* x */ && (n === PEER_METADATA || n === PEER_METADATA_ID)) {
      if (n === PEER_METADATA && value === null) value = headers[r + 1];
      continue;
    }
    if (w !== r) {
      headers[w] = n;
      headers[w + 1] = headers[r + 1];
    }
    w += 2;
  }
  headers.length = w;
  return value;
}

/**
 * Which metadata-exchange headers a request carries (raw name/value pairs, any case): bit 1 the id,
 * bit 2 the metadata (the index of `LocalPeerMetadata.reply`).
 */
export function peerHeaderBits(raw: readonly string[]): number {
  let bits = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    // Only the two lengths can match: no lowercasing of other names.
    if (n.length !== 21 && n.length !== 24) continue;
    const lc = n.toLowerCase();
    if (lc === PEER_METADATA) bits |= 2;
    else if (lc === PEER_METADATA_ID) bits |= 1;
  }
  return bits;
}

/** Adds or removes this proxy's request headers (a retry to an endpoint of another TLS mode). */
export function syncRequestPeerMetadata(headers: string[], mx: LocalPeerMetadata, on: boolean): void {
  const has = headers.includes(PEER_METADATA_ID);
  if (has === on) return;
  if (on) headers.push(...mx.request);
  else takePeerMetadata(headers);
}

// ---- labels -------------------------------------------------------------------------------------

const mergedMemo = new WeakMap<MeshLabels, WeakMap<PeerWorkload, MeshLabels>>();

function memo(base: MeshLabels, peer: PeerWorkload, make: () => MeshLabels): MeshLabels {
  let byPeer = mergedMemo.get(base);
  if (byPeer === undefined) mergedMemo.set(base, (byPeer = new WeakMap()));
  let out = byPeer.get(peer);
  if (out === undefined) byPeer.set(peer, (out = make()));
  return out;
}

/**
 * A client sidecar's labels (`reporter="source"`) with the destination workload a destination
 * sidecar told in its answer, as istio_stats fills them from the upstream peer; for requests whose
 * endpoint the view does not know (`destination_workload` unknown).
 */
export function withDestinationPeer(base: MeshLabels, peer: PeerWorkload): MeshLabels {
  if (base.destination_workload !== 'unknown' || peer.workload === '') return base;
  return memo(base, peer, () => ({
    ...base,
    destination_workload: peer.workload,
    destination_workload_namespace: base.destination_workload_namespace !== 'unknown' ? base.destination_workload_namespace : peer.namespace !== '' ? peer.namespace : 'unknown',
    destination_app: peer.app !== '' ? peer.app : 'unknown',
    destination_version: peer.version !== '' ? peer.version : 'unknown',
    destination_canonical_service: peer.canonicalService !== '' ? peer.canonicalService : 'unknown',
    destination_canonical_revision: peer.canonicalRevision !== '' ? peer.canonicalRevision : 'latest',
    destination_cluster: peer.clusterId !== '' ? peer.clusterId : 'unknown',
  }));
}

/**
 * A server sidecar's labels (`reporter="destination"`) with the source workload the client sidecar
 * told in its request; for callers the view does not know (`source_workload` unknown). Over mTLS the
 * peer certificate's namespace is the truth (istio_stats takes the namespace from the SAN first): a
 * value claiming another namespace is ignored.
 */
export function withSourcePeer(base: MeshLabels, peer: PeerWorkload): MeshLabels {
  if (base.source_workload !== 'unknown' || peer.workload === '') return base;
  const certNs = base.source_principal === 'unknown' ? null : (/\/ns\/([^/]+)\/sa\//.exec(base.source_principal)?.[1] ?? null);
  if (certNs !== null && peer.namespace !== '' && peer.namespace !== certNs) return base;
  return memo(base, peer, () => ({
    ...base,
    source_workload: peer.workload,
    source_canonical_service: peer.canonicalService !== '' ? peer.canonicalService : 'unknown',
    source_canonical_revision: peer.canonicalRevision !== '' ? peer.canonicalRevision : 'latest',
    source_workload_namespace: certNs ?? (peer.namespace !== '' ? peer.namespace : 'unknown'),
    source_app: peer.app !== '' ? peer.app : 'unknown',
    source_version: peer.version !== '' ? peer.version : 'unknown',
    source_cluster: peer.clusterId !== '' ? peer.clusterId : 'unknown',
  }));
}

/**
 * The gateway's metrics (observability/metrics.ts `DestinationPeerLabels`): `base` with the
 * destination workload a peer told, from an `x-envoy-peer-metadata` value (decoded once) or a TCP
 * preamble's Struct; `base` when the value says nothing usable.
 */
export function destinationPeerLabels(base: MeshLabels, peer: string | StructObject): MeshLabels {
  const p = typeof peer === 'string' ? peerMetadataOf(peer) : peerWorkloadOf(peer);
  return p === null ? base : withDestinationPeer(base, p);
}
