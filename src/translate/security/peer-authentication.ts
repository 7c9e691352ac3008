/**
 * PeerAuthentication (security.istio.io v1, v1beta1) -> IR `PeerAuthenticationPolicy[]`, and the
 * effective mTLS mode of a workload port (Istio pilot/pkg/security/authn: ComposePeerAuthentication).
 * PURE.
 *
 * - Scope: mesh (root namespace: MeshConfig `rootNamespace`, default `istio-system`; no selector) < namespace (no selector) < workload
 *   (selector matching the Pod's labels, not in the root namespace: one with a selector there is
 *   ignored, as Istio does, with a warning). Among policies of one scope, the oldest wins (Istio keeps
 *   the first by creation and ignores the rest; reported).
 * - `UNSET` (or no `mtls`) inherits from the wider scope; nothing anywhere means PERMISSIVE.
 * - `portLevelMtls` is keyed by target port and only valid with a selector (Istio's validation);
 *   a port-level `UNSET` inherits the workload's effective mode.
 */
import type { MtlsMode, PeerAuthenticationPolicy } from '../../ir/mesh.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { obj, str } from '../../lib/unknown.js';
import { rootNamespaceOf } from '../mesh-config.js';
import type { TranslateContext } from '../types.js';

const MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

const cache = new WeakMap<TranslateContext, PeerAuthenticationPolicy[]>();

/** Every valid PeerAuthentication, by scope (mesh, namespace, workload) then creation. Reported once per translation. */
export function translatePeerAuthentications(ctx: TranslateContext, resources: ResourceSet): PeerAuthenticationPolicy[] {
  const hit = cache.get(ctx);
  if (hit !== undefined) return hit;
  const objects = [...resources.ofKind('PeerAuthentication')].filter((o) => o.apiVersion.startsWith('security.istio.io/')).sort(compareByCreation);
  const root = rootNamespaceOf(ctx, resources);
  const out: PeerAuthenticationPolicy[] = [];
  for (const o of objects) {
    const p = translateOne(ctx, o, root);
    if (p !== null) out.push(p);
  }
  // One mesh policy and one namespace policy count: later ones are shadowed (Istio uses the oldest).
  const seen = new Set<string>();
  const kept = out.filter((p, i) => {
    if (p.scope === 'workload') return true;
    const key = `${p.scope}/${p.namespace}`;
    if (!seen.has(key)) return seen.add(key), true;
    ctx.report('warning', 'MG_DUPLICATE_OBJECT', objects.find((o) => `peerauthentication/${o.metadata.namespace}/${o.metadata.name}` === out[i].name) ?? null, 'spec', `another ${p.scope}-wide PeerAuthentication in namespace ${p.namespace} is older; this one is ignored (Istio uses the oldest)`);
    return false;
  });
  const order = { mesh: 0, namespace: 1, workload: 2 } as const;
  const sorted = kept.map((p, i) => ({ p, i })).sort((a, b) => order[a.p.scope] - order[b.p.scope] || a.i - b.i).map((x) => x.p);
  cache.set(ctx, sorted);
  return sorted;
}

function translateOne(ctx: TranslateContext, o: KubeObject, root: string): PeerAuthenticationPolicy | null {
  const spec = obj(o.body.spec);
  const ns = o.metadata.namespace;
  const labels = obj(obj(spec.selector).matchLabels);
  const selector: Record<string, string> | null = spec.selector === undefined ? null : Object.fromEntries(Object.entries(labels).map(([k, v]) => [k, String(v)]));
  const hasSelector = selector !== null && Object.keys(selector).length > 0;
  if (hasSelector && ns === root) {
    // Istio's ComposePeerAuthentication: a workload-level policy is one with a selector *not* in the
    // root namespace; one with a selector in the root namespace is neither mesh nor workload level.
    ctx.report('warning', 'MG_NOT_BOUND', o, 'spec.selector', `a PeerAuthentication with a selector in the root namespace ("${root}") applies to no workload (Istio ignores it); put it in the workload's namespace, or drop the selector to make it mesh-wide`);
    return null;
  }
  const mode = modeOf(ctx, o, obj(spec.mtls).mode, 'spec.mtls.mode');
  const portLevelMtls: { port: number; mode: MtlsMode }[] = [];
  const pl = obj(spec.portLevelMtls);
  if (Object.keys(pl).length > 0 && !hasSelector) {
    ctx.report('error', 'MG_INVALID_FIELD', o, 'spec.portLevelMtls', 'portLevelMtls requires a workload selector (Istio validation); the port-level settings are ignored');
  } else {
    for (const [k, v] of Object.entries(pl)) {
      const port = /^\d+$/.test(k) ? Number(k) : NaN;
      if (!(port >= 1 && port <= 65535)) {
        ctx.report('error', 'MG_INVALID_FIELD', o, `spec.portLevelMtls.${k}`, `"${k}" is not a port number (1-65535); ignored`);
        continue;
      }
      portLevelMtls.push({ port, mode: modeOf(ctx, o, obj(v).mode, `spec.portLevelMtls.${k}.mode`) });
    }
  }
  portLevelMtls.sort((a, b) => a.port - b.port);
  return {
    name: `peerauthentication/${ns}/${o.metadata.name}`,
    namespace: ns,
    scope: hasSelector ? 'workload' : ns === root ? 'mesh' : 'namespace',
    selector: hasSelector ? selector : null,
    mode,
    portLevelMtls,
  };
}

function modeOf(ctx: TranslateContext, o: KubeObject, v: unknown, field: string): MtlsMode {
  if (v === undefined || v === null) return 'UNSET';
  const s = str(v);
  if (s !== undefined && (MODES as readonly string[]).includes(s)) return s as MtlsMode;
  ctx.report('error', 'MG_INVALID_FIELD', o, field, `unknown mTLS mode ${JSON.stringify(v)} (UNSET, DISABLE, PERMISSIVE, STRICT); treated as UNSET`);
  return 'UNSET';
}

/** The effective mode of `port` (a target port) of a workload with `labels` in `namespace`, from translated policies. */
export function resolvePeerAuthentication(policies: readonly PeerAuthenticationPolicy[], namespace: string, labels: Record<string, string>, port: number): Exclude<MtlsMode, 'UNSET'> {
  let mode: MtlsMode = 'UNSET';
  const mesh = policies.find((p) => p.scope === 'mesh');
  if (mesh !== undefined && mesh.mode !== 'UNSET') mode = mesh.mode;
  const nsPolicy = policies.find((p) => p.scope === 'namespace' && p.namespace === namespace);
  if (nsPolicy !== undefined && nsPolicy.mode !== 'UNSET') mode = nsPolicy.mode;
  const workload = policies.find((p) => p.scope === 'workload' && p.namespace === namespace && Object.entries(p.selector ?? {}).every(([k, v]) => labels[k] === v));
  if (workload !== undefined) {
    if (workload.mode !== 'UNSET') mode = workload.mode;
    const pl = workload.portLevelMtls.find((x) => x.port === port);
    if (pl !== undefined && pl.mode !== 'UNSET') mode = pl.mode;
  }
  return mode === 'UNSET' ? 'PERMISSIVE' : mode;
}

export function effectivePeerAuthentication(ctx: TranslateContext, resources: ResourceSet, namespace: string, labels: Record<string, string>, port: number): Exclude<MtlsMode, 'UNSET'> {
  return resolvePeerAuthentication(translatePeerAuthentications(ctx, resources), namespace, labels, port);
}
