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
import * as core from './kubernetes/core.js';
import * as discovery from './kubernetes/discovery.js';
import * as networking from './kubernetes/networking.js';
import { validate } from './schema.js';
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
  { group: 'security.istio.io', kind: 'RequestAuthentication', versions: ['v1', 'v1beta1'], schema: istioSecurity.requestAuthentication },
  { group: 'security.istio.io', kind: 'AuthorizationPolicy', versions: ['v1', 'v1beta1'], schema: istioSecurity.authorizationPolicy },
  { group: 'security.istio.io', kind: 'PeerAuthentication', versions: ['v1', 'v1beta1'], schema: istioSecurity.peerAuthentication },
  { group: 'telemetry.istio.io', kind: 'Telemetry', versions: ['v1', 'v1alpha1'], schema: istioTelemetry.telemetry },
];

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
 * Keep the objects meshgate reads and that are valid. Unknown kinds: MG_UNKNOWN_KIND info, dropped.
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
    return [
      {
        severity: 'info',
        reason: 'MG_UNKNOWN_KIND',
        object: ref,
        field: null,
        ...at(null),
        message: `meshgate does not read ${ref.kind} (${apiVersion || 'no apiVersion'}); ignored`,
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
    severity: 'error' as const,
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
