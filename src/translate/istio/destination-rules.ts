/**
 * DestinationRules: which ones a VirtualService sees for a host, merged as Istio merges them.
 *
 * Istio (pilot/pkg/model/destination_rule.go): several DestinationRules for one host are merged; the
 * first (by creation) top-level `trafficPolicy` wins, subsets merge by name with the first definition
 * winning, no deep merge. Visibility: a DestinationRule is seen from its own namespace, and from others
 * when `exportTo` is absent, has `*`, or names that namespace.
 *
 * The policy itself (load balancer, connection pool, outlier detection, port-level settings) is
 * resolved per cluster by `traffic-policy.ts`.
 */
import type { LbPolicy } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { arr, obj, str, strMap, type Obj } from '../../lib/unknown.js';
import { istioObjects, resolveServiceHost } from './objects.js';

export interface Subset {
  name: string;
  labels: Record<string, string>;
  trafficPolicy: Obj | null;
}

export interface MergedDestinationRule {
  /** The DestinationRules merged, in creation order. */
  rules: KubeObject[];
  trafficPolicy: Obj | null;
  subsets: Map<string, Subset>;
}

/**
 * meshgate's default when no DestinationRule says otherwise. Istio's own default is LEAST_REQUEST;
 * meshgate uses ROUND_ROBIN for every API (the same Service reached through an Ingress and a
 * VirtualService is one cluster, and must not change balancing with who registered it first).
 */
export const DEFAULT_LB_POLICY: LbPolicy = 'ROUND_ROBIN';

export class DestinationRuleIndex {
  /** FQDN -> DestinationRules for it, in creation order. */
  readonly #byHost = new Map<string, KubeObject[]>();

  constructor(resources: ResourceSet) {
    const rules = [...istioObjects(resources, 'DestinationRule')].sort(compareByCreation);
    for (const dr of rules) {
      const host = str(obj(dr.body.spec).host);
      if (!host) continue;
      const svc = resolveServiceHost(host, dr.metadata.namespace);
      const key = svc ? svc.fqdn : host.toLowerCase();
      let list = this.#byHost.get(key);
      if (!list) this.#byHost.set(key, (list = []));
      list.push(dr);
    }
  }

  /** The merged DestinationRule for `fqdn` as seen from `namespace`, or null when none applies. */
  lookup(fqdn: string, namespace: string): MergedDestinationRule | null {
    return mergeDestinationRules((this.#byHost.get(fqdn) ?? []).filter((dr) => isVisible(dr, namespace)));
  }

  /** Every DestinationRule for `fqdn` (any namespace, visible or not), in creation order. */
  rulesFor(fqdn: string): readonly KubeObject[] {
    return this.#byHost.get(fqdn) ?? [];
  }
}

/** DestinationRules merged as Istio merges them (see the file comment); null for none. */
export function mergeDestinationRules(visible: KubeObject[]): MergedDestinationRule | null {
  if (visible.length === 0) return null;
  let trafficPolicy: Obj | null = null;
  const subsets = new Map<string, Subset>();
  for (const dr of visible) {
    const spec = obj(dr.body.spec);
    if (trafficPolicy === null && spec.trafficPolicy !== undefined && spec.trafficPolicy !== null) trafficPolicy = obj(spec.trafficPolicy);
    for (const s of arr(spec.subsets)) {
      const so = obj(s);
      const name = str(so.name);
      if (!name || subsets.has(name)) continue;
      subsets.set(name, { name, labels: strMap(so.labels), trafficPolicy: so.trafficPolicy === undefined || so.trafficPolicy === null ? null : obj(so.trafficPolicy) });
    }
  }
  return { rules: visible, trafficPolicy, subsets };
}

/** Is a DestinationRule seen from `namespace` (its own, or exportTo absent, `*` or naming it)? */
export function isVisible(dr: KubeObject, namespace: string): boolean {
  if (dr.metadata.namespace === namespace) return true;
  const exportTo = arr(obj(dr.body.spec).exportTo).map(str);
  if (exportTo.length === 0) return true;
  return exportTo.includes('*') || exportTo.includes(namespace);
}
