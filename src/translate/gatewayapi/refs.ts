/**
 * Cross-namespace references (ReferenceGrant, gateway.networking.k8s.io v1 and v1beta1) and the
 * Namespace labels `allowedRoutes.namespaces.from: Selector` is evaluated against.
 */
import type { ResourceSet } from '../../resources/resource-set.js';
import { arr, obj, str, strMap, type Obj } from '../../lib/unknown.js';

export const GATEWAY_GROUP = 'gateway.networking.k8s.io';

/** `from` (group, kind, namespace) -> may it refer to `to` (group, kind, namespace, name)? */
export class ReferenceGrants {
  readonly #byNamespace = new Map<string, Obj[]>();

  constructor(resources: ResourceSet) {
    for (const g of resources.ofKind('ReferenceGrant')) {
      if (!g.apiVersion.startsWith(`${GATEWAY_GROUP}/`)) continue;
      const list = this.#byNamespace.get(g.metadata.namespace) ?? [];
      list.push(obj(g.body.spec));
      this.#byNamespace.set(g.metadata.namespace, list);
    }
  }

  /**
   * A grant lives in the namespace of the target: a grant in the referring namespace grants nothing
   * (conformance HTTPRouteInvalidReferenceGrant). `group: ""` is the core group.
   */
  permits(from: { group: string; kind: string; namespace: string }, to: { group: string; kind: string; namespace: string; name: string }): boolean {
    if (from.namespace === to.namespace) return true;
    for (const spec of this.#byNamespace.get(to.namespace) ?? []) {
      const fromOk = arr(spec.from).some((f) => {
        const fo = obj(f);
        return (str(fo.group) ?? '') === from.group && str(fo.kind) === from.kind && str(fo.namespace) === from.namespace;
      });
      if (!fromOk) continue;
      const toOk = arr(spec.to).some((t) => {
        const tobj = obj(t);
        const name = str(tobj.name);
        return (str(tobj.group) ?? '') === to.group && str(tobj.kind) === to.kind && (name === undefined || name === '' || name === to.name);
      });
      if (toOk) return true;
    }
    return false;
  }
}

/** Labels of a namespace: its Namespace object's, plus `kubernetes.io/metadata.name`, which every namespace carries. */
export function namespaceLabels(resources: ResourceSet, namespace: string): Record<string, string> {
  const ns = resources.get('Namespace', '', namespace);
  return { ...(ns ? ns.metadata.labels : {}), 'kubernetes.io/metadata.name': namespace };
}

/** A Kubernetes LabelSelector (matchLabels AND matchExpressions In/NotIn/Exists/DoesNotExist); null when malformed. */
export function selectorMatches(selector: Obj, labels: Record<string, string>): boolean | null {
  for (const [k, v] of Object.entries(strMap(selector.matchLabels))) if (labels[k] !== v) return false;
  for (const e of arr(selector.matchExpressions)) {
    const eo = obj(e);
    const key = str(eo.key) ?? '';
    const values = arr(eo.values).filter((v): v is string => typeof v === 'string');
    const has = Object.hasOwn(labels, key);
    switch (str(eo.operator)) {
      case 'In':
        if (!has || !values.includes(labels[key])) return false;
        break;
      case 'NotIn':
        if (has && values.includes(labels[key])) return false;
        break;
      case 'Exists':
        if (!has) return false;
        break;
      case 'DoesNotExist':
        if (has) return false;
        break;
      default:
        return null;
    }
  }
  return true;
}
