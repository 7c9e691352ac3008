/**
 * The kinds meshgate reads, the API versions it knows for each, and the first check every object
 * passes before translation: known kind, known version, valid against the schema. What fails is
 * dropped with a diagnostic, as the API server would reject it; the rest goes on.
 */

import { compareDiagnostics } from '../lib/diagnostic.js';
import type { Diagnostic, ObjectRef } from '../lib/diagnostic.js';
import type { KubeObject } from '../resources/types.js';
import { parentPath } from './field-path.js';
import * as istio from './istio/networking.js';
import * as istioSecurity from './istio/security.js';
import * as istioTelemetry from './istio/telemetry.js';
import * as gatewayApi from './gatewayapi/schemas.js';
import * as core from './kubernetes/core.js';
import * as discovery from './kubernetes/discovery.js';
import * as networking from './kubernetes/networking.js';
import { suggest, validate } from './schema.js';
import { IGNORED_KINDS } from './ignored-kinds.js';
import type { ObjectSchema } from './schema.js';

export interface KindInfo {
  /** API group; '' for the core group (`apiVersion: v1`). */
  group: string;
  kind: string;
  /** Versions meshgate reads, newest first. */
  versions: readonly string[];
  schema: ObjectSchema;
}

const ISTIO_VERSIONS = ['v1', 'v1beta1', 'v1alpha3'] as const;

/** Istio's MeshConfig lives in this ConfigMap (`data.mesh`, YAML); it is the only ConfigMap meshgate reads. */
export const MESH_CONFIG_NAMESPACE = 'istio-system';
export const MESH_CONFIG_NAME = 'istio';

/** Every (group, kind) meshgate reads. ServiceEntry is read and validated; translation may report it unsupported. */
export const KINDS: readonly KindInfo[] = [
  { group: 'networking.k8s.io', kind: 'Ingress', versions: ['v1'], schema: networking.ingress },
  { group: 'networking.k8s.io', kind: 'IngressClass', versions: ['v1'], schema: networking.ingressClass },
  { group: '', kind: 'Service', versions: ['v1'], schema: core.service },
  { group: '', kind: 'Endpoints', versions: ['v1'], schema: core.endpoints },
  { group: '', kind: 'Pod', versions: ['v1'], schema: core.pod },
  { group: '', kind: 'Secret', versions: ['v1'], schema: core.secret },
  // Only ConfigMap istio-system/istio (Istio MeshConfig in `data.mesh`) is used (translate/mesh-config.ts).
  { group: '', kind: 'ConfigMap', versions: ['v1'], schema: core.configMap },
  { group: 'discovery.k8s.io', kind: 'EndpointSlice', versions: ['v1'], schema: discovery.endpointSlice },
  { group: 'networking.istio.io', kind: 'Gateway', versions: ISTIO_VERSIONS, schema: istio.gateway },
  { group: 'networking.istio.io', kind: 'VirtualService', versions: ISTIO_VERSIONS, schema: istio.virtualService },
  { group: 'networking.istio.io', kind: 'DestinationRule', versions: ISTIO_VERSIONS, schema: istio.destinationRule },
  { group: 'networking.istio.io', kind: 'ServiceEntry', versions: ISTIO_VERSIONS, schema: istio.serviceEntry },
  { group: 'networking.istio.io', kind: 'WorkloadEntry', versions: ISTIO_VERSIONS, schema: istio.workloadEntryKind },
  // Read by the sidecar translation only (translate/sidecar/); gateways ignore it.
  { group: 'networking.istio.io', kind: 'Sidecar', versions: ISTIO_VERSIONS, schema: istio.sidecar },
  { group: 'security.istio.io', kind: 'RequestAuthentication', versions: ['v1', 'v1beta1'], schema: istioSecurity.requestAuthentication },
  { group: 'security.istio.io', kind: 'AuthorizationPolicy', versions: ['v1', 'v1beta1'], schema: istioSecurity.authorizationPolicy },
  { group: 'security.istio.io', kind: 'PeerAuthentication', versions: ['v1', 'v1beta1'], schema: istioSecurity.peerAuthentication },
  { group: 'telemetry.istio.io', kind: 'Telemetry', versions: ['v1', 'v1alpha1'], schema: istioTelemetry.telemetry },
  // Kubernetes Gateway API (translate/gatewayapi); Namespaces for allowedRoutes `from: Selector`.
  ...GATEWAY_API_KINDS(),
];

/** gateway.networking.k8s.io kinds, with the older versions clusters still serve. */
function GATEWAY_API_KINDS(): KindInfo[] {
  const g = 'gateway.networking.k8s.io';
  return [
    { group: g, kind: 'GatewayClass', versions: ['v1', 'v1beta1'], schema: gatewayApi.gatewayClass },
    { group: g, kind: 'Gateway', versions: ['v1', 'v1beta1'], schema: gatewayApi.gateway },
    { group: g, kind: 'HTTPRoute', versions: ['v1', 'v1beta1'], schema: gatewayApi.httpRoute },
    { group: g, kind: 'GRPCRoute', versions: ['v1', 'v1alpha2'], schema: gatewayApi.grpcRoute },
    { group: g, kind: 'TLSRoute', versions: ['v1', 'v1alpha3', 'v1alpha2'], schema: gatewayApi.tlsRoute },
    { group: g, kind: 'TCPRoute', versions: ['v1', 'v1alpha2'], schema: gatewayApi.tcpRoute },
    { group: g, kind: 'UDPRoute', versions: ['v1', 'v1alpha2'], schema: gatewayApi.udpRoute },
    { group: g, kind: 'ReferenceGrant', versions: ['v1', 'v1beta1', 'v1alpha2'], schema: gatewayApi.referenceGrant },
    { group: g, kind: 'BackendTLSPolicy', versions: ['v1', 'v1alpha3'], schema: gatewayApi.backendTLSPolicy },
    { group: '', kind: 'Namespace', versions: ['v1'], schema: gatewayApi.namespace },
  ];
}

export const GATEWAY_API_GROUP = 'gateway.networking.k8s.io';

const BY_GROUP_KIND = new Map(KINDS.map((k) => [`${k.group}/${k.kind}`, k]));

/** Kinds without a namespace (their `metadata.namespace` is ''). */
const CLUSTER_SCOPED = new Set(['IngressClass', 'Namespace', 'GatewayClass', 'Node', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition']);

export function isClusterScoped(kind: string): boolean {
  return CLUSTER_SCOPED.has(kind);
}

/** `networking.k8s.io/v1` -> { group: 'networking.k8s.io', version: 'v1' }; `v1` -> { group: '', version: 'v1' }. */
export function splitApiVersion(apiVersion: string): { group: string; version: string } {
  const slash = apiVersion.lastIndexOf('/');
  return slash < 0 ? { group: '', version: apiVersion } : { group: apiVersion.slice(0, slash), version: apiVersion.slice(slash + 1) };
}

/** The KindInfo for an object's apiVersion and kind, ignoring the version; undefined when meshgate does not read it. */
export function lookupKind(apiVersion: string, kind: string): KindInfo | undefined {
  return BY_GROUP_KIND.get(`${splitApiVersion(apiVersion).group}/${kind}`);
}

export interface CheckResult {
  /** Objects that passed, in input order. */
  accepted: KubeObject[];
  /** Sorted with compareDiagnostics. */
  diagnostics: Diagnostic[];
}

/** Diagnostics of the objects already checked (weakly held: gone with the object). */
const checked = new WeakMap<KubeObject, Diagnostic[]>();

/**
 * Keep the objects meshgate reads and that are valid. Unknown kinds: MG_UNKNOWN_KIND warning (info for
 * the kinds it knowingly ignores, ignored-kinds.ts), dropped.
 * Known kind at an unknown version: MG_UNKNOWN_KIND warning, dropped. Schema violations:
 * MG_UNKNOWN_FIELD / MG_INVALID_FIELD / MG_MISSING_FIELD errors, and the object is dropped.
 */
export function checkObjects(objects: readonly KubeObject[]): CheckResult {
  const accepted: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const o of objects) {
    // KubeObjects are never changed once made: one that was checked before (a Kubernetes
    // reflector keeps the same object until its next watch event) is not checked again.
    let found = checked.get(o);
    if (found === undefined) checked.set(o, (found = checkObject(o)));
    diagnostics.push(...found);
    if (!found.some((d) => d.severity === 'error' || d.reason === 'MG_UNKNOWN_KIND')) accepted.push(o);
  }
  diagnostics.sort(compareDiagnostics);
  return { accepted, diagnostics };
}

/** Diagnostics for one object (an MG_UNKNOWN_KIND or an error means it must be dropped). */
export function checkObject(o: KubeObject): Diagnostic[] {
  const ref: ObjectRef = { kind: String(o.kind), namespace: String(o.metadata?.namespace ?? ''), name: String(o.metadata?.name ?? '') };
  const at = (field: string | null): Pick<Diagnostic, 'file' | 'line'> => ({ file: o.origin?.file ?? null, line: lineOf(o, field) });
  const apiVersion = typeof o.apiVersion === 'string' ? o.apiVersion : '';
  const info = lookupKind(apiVersion, ref.kind);
  if (!info) {
    // Nothing will be served from an unknown kind: a warning (with a did-you-mean for a typo), unless
    // it is a kind meshgate knowingly ignores (workloads, RBAC: info).
    const ignored = Object.hasOwn(IGNORED_KINDS, ref.kind) ? IGNORED_KINDS[ref.kind] : undefined;
    const sameName = KINDS.filter((k) => k.kind === ref.kind).map((k) => (k.group ? `${k.group}/${k.versions[0]}` : k.versions[0]));
    const hint = sameName.length === 0 && ignored === undefined ? suggest(ref.kind, KINDS.map((k) => k.kind)) : null;
    const why = ignored !== undefined ? `: ${ignored}` : sameName.length > 0 ? ` (it reads ${ref.kind} as ${sameName.join(', ')})` : hint ? `; did you mean \`${hint}\`?` : '';
    return [
      {
        severity: ignored !== undefined ? 'info' : 'warning',
        reason: 'MG_UNKNOWN_KIND',
        object: ref,
        field: ignored !== undefined ? null : 'kind',
        ...at(ignored !== undefined ? null : 'kind'),
        message: `meshgate does not read ${ref.kind} (${apiVersion || 'no apiVersion'})${why}; ignored`,
      },
    ];
  }
  const { version } = splitApiVersion(apiVersion);
  if (!info.versions.includes(version)) {
    const supported = info.versions.map((v) => (info.group ? `${info.group}/${v}` : v)).join(', ');
    return [
      {
        severity: 'warning',
        reason: 'MG_UNKNOWN_KIND',
        object: ref,
        field: 'apiVersion',
        ...at('apiVersion'),
        message: `${ref.kind} ${apiVersion} is not a version meshgate reads (supported: ${supported}); ignored`,
      },
    ];
  }
  return validate(o.body, info.schema).map((p) => ({
    severity: p.reason === 'MG_DEPRECATED_FIELD' ? ('warning' as const) : ('error' as const),
    reason: p.reason,
    object: ref,
    field: p.field,
    ...at(p.field),
    message: p.message,
  }));
}

/** Line of `field` in the object's file: the field's own line, else its nearest ancestor's, else the object's. */
function lineOf(o: KubeObject, field: string | null): number | null {
  const lines = o.origin?.fieldLines ?? {};
  for (let p: string | null = field; p !== null && p !== ''; p = parentPath(p)) {
    if (Object.hasOwn(lines, p)) return lines[p];
  }
  return o.origin?.line ?? null;
}
