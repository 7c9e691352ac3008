/**
 * Which DestinationRules a sidecar uses for a host (Istio PushContext.destinationRule, for a proxy):
 *  1. those in the proxy's own namespace (when it is not the root namespace): the ones whose
 *     `workloadSelector` selects the proxy if any, else the ones without a selector;
 *  2. else those in the service's namespace exported to the proxy's;
 *  3. else those in the root namespace (`istio-system`) exported to it.
 * Within a step, rules for the exact host win over wildcard ones (`*.example.com`, `*.local`), and
 * among wildcards the most specific (longest) pattern covering the host (Istio
 * MostSpecificHostMatch). Rules of one step and host are merged as everywhere
 * (destination-rules.ts: first trafficPolicy, subsets by name). A rule with a `workloadSelector`
 * applies only to the workloads it selects in its own namespace. Rules of other namespaces never
 * apply. PURE.
 */
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { obj, str, strMap } from '../../lib/unknown.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { istioObjects } from '../istio/objects.js';
import { matchesLabels } from '../backends.js';
import { DestinationRuleIndex, isVisible, mergeDestinationRules, type MergedDestinationRule } from '../istio/destination-rules.js';
import { findServiceEntry } from '../istio/service-entry.js';
import { CLUSTER_DOMAIN } from '../backends.js';
import { hostCovers, SIDECAR_ROOT_NAMESPACE } from './scope.js';

export class MeshDestinationRuleIndex extends DestinationRuleIndex {
  readonly #cache = new Map<string, MergedDestinationRule | null>();
  /** DestinationRules with a wildcard host (lowercase pattern), in creation order. */
  readonly #wildcards: { pattern: string; dr: KubeObject }[] = [];

  constructor(
    private readonly resources: ResourceSet,
    private readonly proxyNamespace: string,
    private readonly proxyLabels: Record<string, string>,
  ) {
    super(resources);
    for (const dr of [...istioObjects(resources, 'DestinationRule')].sort(compareByCreation)) {
      const host = (str(obj(dr.body.spec).host) ?? '').toLowerCase();
      if (host.startsWith('*')) this.#wildcards.push({ pattern: host, dr });
    }
  }

  /** The rules for `fqdn` as this proxy uses them; `namespace` is ignored (always the proxy's). */
  override lookup(fqdn: string, _namespace: string): MergedDestinationRule | null {
    if (this.#cache.has(fqdn)) return this.#cache.get(fqdn) as MergedDestinationRule | null;
    const out = this.#select(fqdn);
    this.#cache.set(fqdn, out);
    return out;
  }

  #select(fqdn: string): MergedDestinationRule | null {
    const ns = this.proxyNamespace;
    const exact = this.rulesFor(fqdn);
    const wildcards = this.#wildcards.filter((w) => hostCovers(w.pattern, fqdn));
    const selector = (dr: KubeObject): Record<string, string> | null => {
      const labels = strMap(obj(obj(dr.body.spec).workloadSelector).matchLabels);
      return Object.keys(labels).length > 0 ? labels : null;
    };
    /** The rules of one step (those `keep` admits): for the exact host, else the most specific wildcard. */
    const step = (keep: (dr: KubeObject) => boolean): KubeObject[] => {
      const e = exact.filter(keep);
      if (e.length > 0) return e;
      const w = wildcards.filter((x) => keep(x.dr));
      const longest = Math.max(0, ...w.map((x) => x.pattern.length));
      return w.filter((x) => x.pattern.length === longest).map((x) => x.dr);
    };
    // 1. The proxy's namespace: rules selecting the proxy, else rules without a selector.
    if (ns !== SIDECAR_ROOT_NAMESPACE) {
      const selecting = step((dr) => {
        const sel = selector(dr);
        return dr.metadata.namespace === ns && sel !== null && matchesLabels(this.proxyLabels, sel);
      });
      if (selecting.length > 0) return mergeDestinationRules(selecting);
    }
    const local = step((dr) => dr.metadata.namespace === ns && selector(dr) === null);
    if (local.length > 0) return mergeDestinationRules(local);
    // 2. The service's namespace, exported to the proxy's.
    const serviceNs = this.#serviceNamespace(fqdn);
    if (serviceNs !== null && serviceNs !== ns) {
      const exported = step((dr) => dr.metadata.namespace === serviceNs && selector(dr) === null && isVisible(dr, ns));
      if (exported.length > 0) return mergeDestinationRules(exported);
    }
    // 3. The root namespace, exported to the proxy's.
    if (ns === SIDECAR_ROOT_NAMESPACE) return null;
    return mergeDestinationRules(step((dr) => dr.metadata.namespace === SIDECAR_ROOT_NAMESPACE && selector(dr) === null && isVisible(dr, ns)));
  }

  /** The namespace of the service `fqdn` names: a Kubernetes Service's, or the ServiceEntry's. */
  #serviceNamespace(fqdn: string): string | null {
    const suffix = `.${CLUSTER_DOMAIN}`;
    if (fqdn.endsWith(suffix)) {
      const parts = fqdn.slice(0, -suffix.length).split('.');
      if (parts.length === 2) return parts[1];
    }
    return findServiceEntry(this.resources, fqdn, this.proxyNamespace)?.se.metadata.namespace ?? null;
  }
}
