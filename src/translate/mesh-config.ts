/**
 * Istio MeshConfig, read the way Istio stores it: the ConfigMap `istio` in namespace `istio-system`,
 * whose `data.mesh` is MeshConfig YAML. PURE. Several translators read parts of it (extension
 * providers, access logging, the gateway topology); the YAML is parsed once per translation and a
 * parse error is reported once.
 */
import { parse } from 'yaml';
import { obj, str, type Obj } from '../lib/unknown.js';
import type { ResourceSet } from '../resources/resource-set.js';
import type { KubeObject } from '../resources/types.js';
import type { TranslateContext } from './types.js';

import { MESH_CONFIG_NAME, MESH_CONFIG_NAMESPACE } from '../api/kinds.js';

export { MESH_CONFIG_NAME, MESH_CONFIG_NAMESPACE };

export interface MeshConfig {
  /** The ConfigMap it came from (for diagnostics: field `data.mesh`). */
  from: KubeObject;
  /** The parsed MeshConfig (an empty object when `data.mesh` is absent). */
  mesh: Obj;
}

const cache = new WeakMap<TranslateContext, MeshConfig | null>();

/** The MeshConfig of this translation; null when the ConfigMap is absent or its YAML is broken (reported). */
export function readMeshConfig(ctx: TranslateContext, resources: ResourceSet): MeshConfig | null {
  if (cache.has(ctx)) return cache.get(ctx)!;
  const cm = resources.get('ConfigMap', MESH_CONFIG_NAMESPACE, MESH_CONFIG_NAME) ?? null;
  let out: MeshConfig | null = null;
  if (cm !== null) {
    const text = str(obj(cm.body.data).mesh);
    if (text === undefined) out = { from: cm, mesh: {} };
    else {
      try {
        out = { from: cm, mesh: obj(parse(text)) };
      } catch (e) {
        ctx.report('error', 'MG_INVALID_FIELD', cm, 'data.mesh', `MeshConfig is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
      }
    }
  }
  cache.set(ctx, out);
  return out;
}

/**
 * Istio's default root namespace (MeshConfig `rootNamespace`): its config namespace, where
 * selector-less PeerAuthentication, AuthorizationPolicy, RequestAuthentication, Telemetry and
 * Sidecar objects apply mesh-wide and DestinationRules are the last resort. Not the same thing as the
 * control plane's namespace (where the MeshConfig ConfigMap, istiod and the CA live) nor the gateway's
 * (`--gateway-namespace`): all three are `istio-system` by default, but only this one moves with
 * MeshConfig `rootNamespace`.
 */
export const DEFAULT_ROOT_NAMESPACE = 'istio-system';

const roots = new WeakMap<TranslateContext, string>();

/** A Kubernetes namespace name (RFC 1123 label). */
const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * The root namespace of this translation: MeshConfig `rootNamespace`, else `istio-system` (Istio
 * pilot: `meshConfig.rootNamespace`, defaulted to the istiod namespace's default). A value that is not
 * a namespace name is reported once and the default is used.
 */
export function rootNamespaceOf(ctx: TranslateContext, resources: ResourceSet): string {
  const hit = roots.get(ctx);
  if (hit !== undefined) return hit;
  const mc = readMeshConfig(ctx, resources);
  let root = DEFAULT_ROOT_NAMESPACE;
  const v = mc?.mesh.rootNamespace;
  if (mc !== null && v !== undefined && v !== null && v !== '') {
    const s = str(v);
    if (s !== undefined && s.length <= 63 && NAMESPACE_NAME.test(s)) root = s;
    else ctx.report('error', 'MG_INVALID_FIELD', mc.from, 'data.mesh', `MeshConfig rootNamespace ${JSON.stringify(v)} is not a namespace name (lowercase RFC 1123 label); the root namespace stays "${DEFAULT_ROOT_NAMESPACE}"`);
  }
  roots.set(ctx, root);
  return root;
}
