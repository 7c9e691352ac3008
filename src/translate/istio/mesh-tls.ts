/**
 * Istio mTLS towards meshed workloads (reference/mesh.md §2.5, §2.7; Istio
 * pilot/pkg/networking/core/cluster_tls.go): completes a DestinationRule `ISTIO_MUTUAL` for its
 * cluster, and decides auto mTLS per endpoint. PURE.
 *
 * - SNI: the rule's `sni`, else `outbound_.<port>_.<subset>_.<fqdn>` (empty subset: `outbound_.80_._.…`).
 * - Server identity: the rule's `subjectAltNames`, else the SPIFFE IDs of the service accounts of the
 *   Service's endpoint Pods (all subsets) (`spiffe://<trust-domain>/ns/<ns>/sa/<sa>`, trust domain from MeshConfig
 *   `trustDomain`, default cluster.local), sorted.
 * - Auto mTLS (MeshConfig `enableAutoMtls`, default true) applies when no DestinationRule sets `tls`
 *   for the cluster: each endpoint whose Pod is labelled `security.istio.io/tlsMode: istio` is reached
 *   with Istio mTLS, unless the effective PeerAuthentication of that Pod and target port is DISABLE;
 *   the others stay plaintext.
 */
import type { UpstreamTls } from '../../ir/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { str } from '../../lib/unknown.js';
import type { TranslateContext } from '../types.js';
import { readMeshConfig } from '../mesh-config.js';
import { effectivePeerAuthentication } from '../security/peer-authentication.js';

export const TLS_MODE_LABEL = 'security.istio.io/tlsMode';

/** An endpoint as resolveCluster sees it: address, target port and its Pod's labels (null: unknown Pod). */
export interface MeshEndpoint {
  address: string;
  port: number;
  labels: Record<string, string> | null;
  /** The Pod's service account; null/absent when the Pod is unknown. */
  serviceAccount?: string | null;
}

export interface MeshTlsResult {
  /** The cluster's TLS (an ISTIO_MUTUAL one completed). */
  tls: UpstreamTls | null;
  /** Auto mTLS settings for the endpoints in `meshEndpoints`; null when none qualifies. */
  autoMtls: UpstreamTls | null;
  /** `address:port` of the endpoints reached with auto mTLS. */
  meshEndpoints: Set<string>;
}

export function trustDomainOf(ctx: TranslateContext, resources: ResourceSet): string {
  return str(readMeshConfig(ctx, resources)?.mesh.trustDomain) || 'cluster.local';
}

function autoMtlsEnabled(ctx: TranslateContext, resources: ResourceSet): boolean {
  return readMeshConfig(ctx, resources)?.mesh.enableAutoMtls !== false;
}

/** Sorted SPIFFE IDs of the service accounts of `endpoints`' Pods (Istio: the service's accounts). */
export function serviceSpiffeIds(ctx: TranslateContext, resources: ResourceSet, namespace: string, endpoints: MeshEndpoint[]): string[] {
  const td = trustDomainOf(ctx, resources);
  const out = new Set<string>();
  for (const e of endpoints) if (e.serviceAccount) out.add(`spiffe://${td}/ns/${namespace}/sa/${e.serviceAccount}`);
  return [...out].sort();
}

export function istioSni(port: number, subset: string, fqdn: string): string {
  return `outbound_.${port}_.${subset}_.${fqdn}`;
}

/**
 * The TLS of a Service cluster: `tls` from the DestinationRule (`tlsSet` when the rule set any `tls`,
 * DISABLE included), completed when ISTIO_MUTUAL; else auto mTLS per endpoint.
 */
export function meshTls(ctx: TranslateContext, resources: ResourceSet, svc: KubeObject, port: number, subset: string, fqdn: string, tls: UpstreamTls | null, tlsSet: boolean, endpoints: MeshEndpoint[], serviceEndpoints: MeshEndpoint[] = endpoints): MeshTlsResult {
  const complete = (t: UpstreamTls): UpstreamTls => ({
    ...t,
    sni: t.sni !== '' ? t.sni : istioSni(port, subset, fqdn),
    subjectAltNames: t.subjectAltNames.length > 0 ? t.subjectAltNames : serviceSpiffeIds(ctx, resources, svc.metadata.namespace, serviceEndpoints),
  });
  if (tls !== null && tls.mode === 'ISTIO_MUTUAL') return { tls: complete(tls), autoMtls: null, meshEndpoints: new Set() };
  if (tls !== null || tlsSet || !autoMtlsEnabled(ctx, resources)) return { tls, autoMtls: null, meshEndpoints: new Set() };
  const meshEndpoints = new Set<string>();
  for (const e of endpoints) {
    if (e.labels === null || e.labels[TLS_MODE_LABEL] !== 'istio') continue;
    const pa = effectivePeerAuthentication(ctx, resources, svc.metadata.namespace, e.labels, e.port);
    if (pa === 'DISABLE') continue;
    meshEndpoints.add(`${e.address}:${e.port}`);
  }
  if (meshEndpoints.size === 0) return { tls: null, autoMtls: null, meshEndpoints };
  const autoMtls = complete({ mode: 'ISTIO_MUTUAL', caCertificates: null, clientCertificate: null, sni: '', subjectAltNames: [], insecureSkipVerify: false });
  return { tls: null, autoMtls, meshEndpoints };
}

/**
 * The TLS of a ServiceEntry cluster: ISTIO_MUTUAL completed (SANs: the rule's, else the entry's
 * `subjectAltNames`); auto mTLS only for MESH_INTERNAL entries (a mesh-external service never gets
 * Istio mTLS by default), per endpoint labelled tlsMode=istio whose PeerAuthentication is not DISABLE.
 */
export function serviceEntryMeshTls(ctx: TranslateContext, resources: ResourceSet, namespace: string, meshInternal: boolean, port: number, subset: string, fqdn: string, tls: UpstreamTls | null, tlsSet: boolean, entrySans: string[], endpoints: { address: string; port: number; labels: Record<string, string> }[]): MeshTlsResult {
  const complete = (t: UpstreamTls): UpstreamTls => ({ ...t, sni: t.sni !== '' ? t.sni : istioSni(port, subset, fqdn), subjectAltNames: t.subjectAltNames.length > 0 ? t.subjectAltNames : [...entrySans].sort() });
  if (tls !== null && tls.mode === 'ISTIO_MUTUAL') return { tls: complete(tls), autoMtls: null, meshEndpoints: new Set() };
  if (tls !== null || tlsSet || !meshInternal || !autoMtlsEnabled(ctx, resources)) return { tls, autoMtls: null, meshEndpoints: new Set() };
  const meshEndpoints = new Set<string>();
  for (const e of endpoints) {
    if (e.labels[TLS_MODE_LABEL] !== 'istio') continue;
    if (effectivePeerAuthentication(ctx, resources, namespace, e.labels, e.port) === 'DISABLE') continue;
    meshEndpoints.add(`${e.address}:${e.port}`);
  }
  if (meshEndpoints.size === 0) return { tls: null, autoMtls: null, meshEndpoints };
  return { tls: null, autoMtls: complete({ mode: 'ISTIO_MUTUAL', caCertificates: null, clientCertificate: null, sni: '', subjectAltNames: [], insecureSkipVerify: false }), meshEndpoints };
}
