/**
 * The API resources the Kubernetes source lists and watches, and the conversion of an API object to
 * the KubeObject the pipeline reads (the same shape the file provider produces).
 */
import type { KubeObject } from '../../resources/types.js';
import { isObj, obj, str, strMap } from '../../lib/unknown.js';

export interface WatchedResource {
  /** API group; '' for core. */
  group: string;
  /** Versions to try, preferred first (Istio: v1 since 1.22, v1beta1 before). */
  versions: readonly string[];
  /** Plural resource name in URLs. */
  resource: string;
  kind: string;
  namespaced: boolean;
  /** Served by every API server (no discovery needed); false for CRDs that may be missing. */
  builtin: boolean;
}

const ISTIO = ['v1', 'v1beta1'] as const;
const istio = (resource: string, kind: string, group = 'networking.istio.io'): WatchedResource => ({ group, versions: ISTIO, resource, kind, namespaced: true, builtin: false });

export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';
const gatewayApi = (resource: string, kind: string, versions: readonly string[], namespaced = true): WatchedResource => ({ group: GATEWAY_API_GROUP, versions, resource, kind, namespaced, builtin: false });
const GATEWAY_API: readonly WatchedResource[] = [
  gatewayApi('gatewayclasses', 'GatewayClass', ['v1', 'v1beta1'], false),
  gatewayApi('gateways', 'Gateway', ['v1', 'v1beta1']),
  gatewayApi('httproutes', 'HTTPRoute', ['v1', 'v1beta1']),
  gatewayApi('grpcroutes', 'GRPCRoute', ['v1', 'v1alpha2']),
  gatewayApi('tlsroutes', 'TLSRoute', ['v1', 'v1alpha3', 'v1alpha2']),
  gatewayApi('tcproutes', 'TCPRoute', ['v1', 'v1alpha2']),
  gatewayApi('udproutes', 'UDPRoute', ['v1', 'v1alpha2']),
  gatewayApi('referencegrants', 'ReferenceGrant', ['v1', 'v1beta1']),
  gatewayApi('backendtlspolicies', 'BackendTLSPolicy', ['v1', 'v1alpha3']),
];

/** Every kind meshgate reads except Secret, which is watched by reference or label (see source.ts). */
export const WATCHED: readonly WatchedResource[] = [
  { group: 'networking.k8s.io', versions: ['v1'], resource: 'ingresses', kind: 'Ingress', namespaced: true, builtin: true },
  { group: 'networking.k8s.io', versions: ['v1'], resource: 'ingressclasses', kind: 'IngressClass', namespaced: false, builtin: true },
  { group: '', versions: ['v1'], resource: 'services', kind: 'Service', namespaced: true, builtin: true },
  { group: 'discovery.k8s.io', versions: ['v1'], resource: 'endpointslices', kind: 'EndpointSlice', namespaced: true, builtin: true },
  { group: '', versions: ['v1'], resource: 'endpoints', kind: 'Endpoints', namespaced: true, builtin: true },
  { group: '', versions: ['v1'], resource: 'pods', kind: 'Pod', namespaced: true, builtin: true },
  istio('gateways', 'Gateway'),
  istio('virtualservices', 'VirtualService'),
  istio('destinationrules', 'DestinationRule'),
  istio('serviceentries', 'ServiceEntry'),
  istio('workloadentries', 'WorkloadEntry'),
  // Read by the per-sidecar translation (translate/sidecar/).
  istio('sidecars', 'Sidecar'),
  istio('requestauthentications', 'RequestAuthentication', 'security.istio.io'),
  istio('authorizationpolicies', 'AuthorizationPolicy', 'security.istio.io'),
  istio('peerauthentications', 'PeerAuthentication', 'security.istio.io'),
  { group: 'telemetry.istio.io', versions: ['v1', 'v1alpha1'], resource: 'telemetries', kind: 'Telemetry', namespaced: true, builtin: false },
  // Kubernetes Gateway API (CRDs: a missing one is looked for again, as Istio's are), and Namespaces
  // for listeners' `allowedRoutes.namespaces.from: Selector`.
  ...GATEWAY_API,
  { group: '', versions: ['v1'], resource: 'namespaces', kind: 'Namespace', namespaced: false, builtin: true },
];

/** ConfigMaps: only Istio's MeshConfig (`MESH_CONFIG_NAMESPACE/MESH_CONFIG_NAME`) is watched, by name. */
export const CONFIGMAPS: WatchedResource = { group: '', versions: ['v1'], resource: 'configmaps', kind: 'ConfigMap', namespaced: true, builtin: true };

export const SECRETS: WatchedResource = { group: '', versions: ['v1'], resource: 'secrets', kind: 'Secret', namespaced: true, builtin: true };

export function apiVersionOf(group: string, version: string): string {
  return group === '' ? version : `${group}/${version}`;
}

/** `/api/v1` or `/apis/<group>/<version>`. */
export function groupVersionPath(group: string, version: string): string {
  return group === '' ? `/api/${version}` : `/apis/${group}/${version}`;
}

/** The collection URL: all namespaces, or one. */
export function collectionPath(r: WatchedResource, version: string, namespace: string | null): string {
  const ns = r.namespaced && namespace !== null ? `/namespaces/${encodeURIComponent(namespace)}` : '';
  return `${groupVersionPath(r.group, version)}${ns}/${r.resource}`;
}

/**
 * An API object as the pipeline's KubeObject. List items carry no apiVersion/kind, so both come from
 * the resource. Origin: no file or line; order = creationTimestamp then uid (see ObjectOrigin).
 * managedFields are dropped: nobody reads them and they are often the largest part of an object.
 */
export function toKubeObject(item: unknown, apiVersion: string, kind: string, namespaced: boolean): KubeObject | null {
  if (!isObj(item)) return null;
  const meta = obj(item.metadata);
  const name = str(meta.name);
  if (!name) return null;
  const { managedFields: _dropped, ...metadata } = meta;
  const body: Record<string, unknown> = { ...item, apiVersion, kind, metadata };
  const creationTimestamp = str(meta.creationTimestamp) ?? null;
  return {
    apiVersion,
    kind,
    metadata: {
      name,
      namespace: namespaced ? str(meta.namespace) || 'default' : '',
      labels: strMap(meta.labels),
      annotations: strMap(meta.annotations),
      creationTimestamp,
    },
    body,
    origin: { file: null, line: null, order: `${creationTimestamp ?? ''}/${str(meta.uid) ?? ''}`, fieldLines: {} },
  };
}

/** `namespace/name` (cluster-scoped: `/name`): the key of an object in a reflector's store. */
export function storeKey(o: KubeObject): string {
  return `${o.metadata.namespace}/${o.metadata.name}`;
}
