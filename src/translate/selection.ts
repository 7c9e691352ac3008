/**
 * Does a selector that does not select this gateway select anything at all? Istio's analyzer calls a
 * selector that matches no workload a warning (IST0127 NoMatchingWorkloadsFound; for a Gateway,
 * IST0101 ReferencedResourceNotFound): the object does nothing. A selector that picks other pods in
 * the configuration (sidecars, another gateway) is someone else's business: info.
 */
import type { ResourceSet } from '../resources/resource-set.js';
import { matchesLabels } from './backends.js';

/** Whether some Pod of the configuration carries `selector`'s labels; `namespace` null: any namespace. */
export function selectsSomePod(resources: ResourceSet, selector: Record<string, string>, namespace: string | null): boolean {
  for (const p of resources.ofKind('Pod')) {
    if (namespace !== null && p.metadata.namespace !== namespace) continue;
    if (matchesLabels(p.metadata.labels, selector)) return true;
  }
  return false;
}
