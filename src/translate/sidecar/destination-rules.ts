/**
 * Which DestinationRules a sidecar uses for a host (Istio PushContext.destinationRule, for a proxy):
 *  1. those in the proxy's own namespace (when it is not the root namespace): the ones whose
 *     `workloadSelector` selects the proxy if any, else the ones without a selector;
 *  2. else those in the service's namespace exported to the proxy's;
 *  3. else those in the root namespace (`istio-system`) exported to it.
 * Rules of one step are merged as everywhere (destination-rules.ts: first trafficPolicy, subsets by
 * name). A rule with a `workloadSelector` applies only to the workloads it selects in its own
 * namespace. Rules of other namespaces never apply. PURE.
 */
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { obj, strMap } from '../../lib/unknown.js';
import { matchesLabels } from '../backends.js';
import { DestinationRuleIndex, isVisible, mergeDestinationRules, type MergedDestinationRule } from '../istio/destination-rules.js';
import { findServiceEntry } from '../istio/service-entry.js';
import { CLUSTER_DOMAIN } from '../backends.js';
import { SIDECAR_ROOT_NAMESPACE } from './scope.js';

export class MeshDestinationRuleIndex extends DestinationRuleIndex {
  readonly #cache = new Map<string, MergedDestinationRule | null>();

  constructor(
    private readonly resources: ResourceSet,
    private readonly proxyNamespace: string,
    private readonly proxyLabels: Record<string, string>,
  ) {
    super(resources);
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
    const all = this.rulesFor(fqdn);
    const selector = (dr: KubeObject): Record<string, string> | null => {
      const labels = strMap(obj(obj(dr.body.spec).workloadSelector).matchLabels);
      return Object.keys(labels).length > 0 ? labels : null;
    };
    const local = all.filter((dr) => dr.metadata.namespace === ns);
    const selecting = local.filter((dr) => {
      const sel = selector(dr);
      return sel !== null && matchesLabels(this.proxyLabels, sel);
    });
    if (selecting.length > 0) return mergeDestinationRules(selecting);
    const plain = (list: readonly KubeObject[]): KubeObject[] => list.filter((dr) => selector(dr) === null);
    if (plain(local).length > 0) return mergeDestinationRules(plain(local));
    const serviceNs = this.#serviceNamespace(fqdn);
    if (serviceNs !== null && serviceNs !== ns) {
      const exported = plain(all).filter((dr) => dr.metadata.namespace === serviceNs && isVisible(dr, ns));
      if (exported.length > 0) return mergeDestinationRules(exported);
    }
    if (ns === SIDECAR_ROOT_NAMESPACE) return null;
    return mergeDestinationRules(plain(all).filter((dr) => dr.metadata.namespace === SIDECAR_ROOT_NAMESPACE && isVisible(dr, ns)));
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
