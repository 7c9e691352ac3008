/**
 * What one sidecar sees (reference/mesh.md §2.10): the Sidecar resource that applies to it, its
 * `egress[].hosts`, and `exportTo` of Services, ServiceEntries and VirtualServices. PURE.
 *
 * - The Sidecar that applies: in the proxy's namespace, the oldest one whose
 *   `workloadSelector.labels` is a non-empty subset of the pod's labels; else the oldest one of that
 *   namespace without a selector; else the oldest selector-less one in the root namespace
 *   (MeshConfig `rootNamespace`, default `istio-system`: the mesh default). None: the proxy sees everything exported to it.
 * - `egress[].hosts` entries are `namespace/dnsName`: namespace `*` (any), `.` (the proxy's namespace:
 *   the Sidecar's own, or the proxy's when the root namespace's default applies, as Istio resolves it
 *   against the config namespace in sidecar.go convertIstioListenerToWrapper) or a name, `~` meaning none; dnsName `*`, `*.suffix` or an exact FQDN. An entry with a
 *   `port` admits only that service port.
 * - exportTo: Service annotation `networking.istio.io/exportTo` (comma-separated), `spec.exportTo`
 *   of the Istio kinds: `*` (default: everywhere), `.` (own namespace), `~` (nowhere), or names.
 */
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { arr, num, obj, str, strMap } from '../../lib/unknown.js';
import { matchesLabels } from '../backends.js';
import type { TranslateContext } from '../types.js';
import { istioObjects } from '../istio/objects.js';
import { rootNamespaceOf } from '../mesh-config.js';

export const EXPORT_TO_ANNOTATION = 'networking.istio.io/exportTo';

/** One `egress[].hosts` entry. */
export interface EgressHost {
  /** `*`, `~` or a namespace (`.` resolved). */
  namespace: string;
  /** Lowercase `*`, `*.suffix` or exact name. */
  dnsName: string;
  /** The egress listener's port; null = every port. */
  port: number | null;
}

export interface SidecarScope {
  /** The Sidecar resource applying to the proxy; null: none (everything exported is visible). */
  sidecar: KubeObject | null;
  /** null: no egress restriction. */
  egress: EgressHost[] | null;
  /** The Sidecar's `outboundTrafficPolicy.mode`, when it sets one. */
  outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY' | null;
}

/** The Sidecar resource applying to a proxy in `namespace` with `labels`, and what it admits. */
export function sidecarScope(ctx: TranslateContext, resources: ResourceSet, namespace: string, labels: Record<string, string>): SidecarScope {
  const all = [...istioObjects(resources, 'Sidecar')].sort(compareByCreation);
  const selectorOf = (o: KubeObject): Record<string, string> | null => {
    const ws = obj(obj(o.body.spec).workloadSelector);
    const l = strMap(ws.labels);
    return Object.keys(l).length > 0 ? l : null;
  };
  const own = all.filter((o) => o.metadata.namespace === namespace);
  const selecting = own.filter((o) => {
    const sel = selectorOf(o);
    return sel !== null && matchesLabels(labels, sel);
  });
  const defaults = own.filter((o) => selectorOf(o) === null);
  const root = rootNamespaceOf(ctx, resources);
  const rootDefaults = namespace === root ? [] : all.filter((o) => o.metadata.namespace === root && selectorOf(o) === null);
  for (const list of [selecting, defaults, rootDefaults]) {
    for (const extra of list.slice(1)) {
      ctx.report('warning', 'MG_DUPLICATE_OBJECT', extra, extra === list[0] ? null : 'spec.workloadSelector', `Sidecar ${list[0].metadata.namespace}/${list[0].metadata.name} is older and also applies to this proxy; this one is ignored for it (Istio uses the oldest)`);
    }
  }
  const sidecar = selecting[0] ?? defaults[0] ?? rootDefaults[0] ?? null;
  if (sidecar === null) return { sidecar: null, egress: null, outboundTrafficPolicy: null };
  const spec = obj(sidecar.body.spec);
  if (arr(spec.ingress).length > 0) {
    ctx.report('info', 'MG_UNSUPPORTED', sidecar, 'spec.ingress', 'Sidecar ingress listeners are not supported yet: inbound ports come from the Services selecting the pod');
  }
  let egress: EgressHost[] | null = null;
  const listeners = arr(spec.egress);
  if (listeners.length > 0) {
    egress = [];
    listeners.forEach((l, i) => {
      const lo = obj(l);
      const port = num(obj(lo.port).number) ?? null;
      arr(lo.hosts).forEach((h, k) => {
        const parsed = parseEgressHost(str(h) ?? '', namespace);
        if (parsed === null) {
          ctx.report('warning', 'MG_INVALID_FIELD', sidecar, `spec.egress[${i}].hosts[${k}]`, `${JSON.stringify(h)} is not namespace/dnsName (namespace *, ., ~ or a name; dnsName *, *.suffix or a name); ignored`);
          return;
        }
        egress?.push({ ...parsed, port });
      });
    });
  }
  const mode = str(obj(spec.outboundTrafficPolicy).mode);
  return { sidecar, egress, outboundTrafficPolicy: mode === 'REGISTRY_ONLY' || mode === 'ALLOW_ANY' ? mode : null };
}

/** `ns/dnsName`; a bare dnsName is read with namespace `*`. */
export function parseEgressHost(entry: string, proxyNamespace: string): { namespace: string; dnsName: string } | null {
  const e = entry.trim();
  if (e === '') return null;
  const slash = e.indexOf('/');
  const ns = slash < 0 ? '*' : e.slice(0, slash);
  const dnsName = (slash < 0 ? e : e.slice(slash + 1)).toLowerCase();
  if (ns === '' || dnsName === '' || dnsName.includes('/')) return null;
  if (dnsName.includes('*') && dnsName !== '*' && !(dnsName.startsWith('*.') && !dnsName.slice(2).includes('*'))) return null;
  return { namespace: ns === '.' ? proxyNamespace : ns, dnsName };
}

/** Does a host pattern (`*`, `*.suffix`, exact) cover `host` (exact or `*.suffix`)? */
export function hostCovers(pattern: string, host: string): boolean {
  const p = pattern.toLowerCase();
  const h = host.toLowerCase();
  if (p === '*' || p === h) return true;
  if (!p.startsWith('*.')) return false;
  const suffix = p.slice(1);
  if (h.startsWith('*.')) return h.slice(1).endsWith(suffix);
  return h.length > suffix.length && h.endsWith(suffix);
}

/** Does the scope admit `host` of `namespace` (on `port`, when given)? */
export function egressAdmits(scope: SidecarScope, namespace: string, host: string, port: number | null): boolean {
  if (scope.egress === null) return true;
  return scope.egress.some((e) => e.namespace !== '~' && (e.namespace === '*' || e.namespace === namespace) && (e.port === null || port === null || e.port === port) && hostCovers(e.dnsName, host));
}

/** exportTo values (`*`, `.`, `~`, names) admit `viewer` for an object in `owner`. Empty = everywhere. */
export function exportedTo(values: string[], owner: string, viewer: string): boolean {
  const v = values.map((x) => x.trim()).filter((x) => x !== '');
  if (v.length === 0) return true;
  if (v.includes('~')) return false;
  if (v.includes('*')) return true;
  if (v.includes('.') && owner === viewer) return true;
  return v.includes(viewer);
}

/**
 * exportTo of an object: the Service annotation, or `spec.exportTo` of an Istio kind; when it sets
 * none, MeshConfig's default for the kind (`defaultServiceExportTo` for Services and
 * ServiceEntries, `defaultVirtualServiceExportTo`; unset = everywhere).
 */
export function exportToOf(o: KubeObject, defaults: ExportToDefaults = NO_DEFAULTS): string[] {
  let own: string[];
  if (o.kind === 'Service' && o.apiVersion === 'v1') {
    const a = o.metadata.annotations[EXPORT_TO_ANNOTATION];
    own = a === undefined ? [] : a.split(',');
  } else own = arr(obj(o.body.spec).exportTo).map((x) => str(x) ?? '');
  if (own.some((x) => x.trim() !== '')) return own;
  return o.kind === 'VirtualService' ? defaults.virtualService : defaults.service;
}

export interface ExportToDefaults {
  service: string[];
  virtualService: string[];
}

const NO_DEFAULTS: ExportToDefaults = { service: [], virtualService: [] };

/** MeshConfig `defaultServiceExportTo` and `defaultVirtualServiceExportTo` (absent: everywhere). */
export function exportToDefaults(mesh: Record<string, unknown> | null): ExportToDefaults {
  const list = (v: unknown): string[] => arr(v).map((x) => str(x) ?? '').filter((x) => x !== '');
  return { service: list(mesh?.defaultServiceExportTo), virtualService: list(mesh?.defaultVirtualServiceExportTo) };
}
