import type { KubeObject } from './types.js';

/**
 * An immutable, indexed bag of input objects in canonical order (kind, namespace, name), so that
 * whatever order a provider delivered them in, translation sees the same sequence.
 */
export class ResourceSet {
  readonly #all: readonly KubeObject[];
  readonly #byKind = new Map<string, KubeObject[]>();
  readonly #byKey = new Map<string, KubeObject>();

  /** Objects with the same kind/namespace/name: the one with the smallest origin.order is kept. */
  constructor(objects: Iterable<KubeObject>) {
    const sorted = [...objects].sort(compareObjects);
    const kept: KubeObject[] = [];
    for (const o of sorted) {
      const key = objectKey(o.kind, o.metadata.namespace, o.metadata.name);
      if (this.#byKey.has(key)) continue;
      this.#byKey.set(key, o);
      kept.push(o);
      let list = this.#byKind.get(o.kind);
      if (!list) this.#byKind.set(o.kind, (list = []));
      list.push(o);
    }
    this.#all = kept;
  }

  get all(): readonly KubeObject[] {
    return this.#all;
  }

  /** Objects of one kind, in canonical order. */
  ofKind(kind: string): readonly KubeObject[] {
    return this.#byKind.get(kind) ?? [];
  }

  get(kind: string, namespace: string, name: string): KubeObject | undefined {
    return this.#byKey.get(objectKey(kind, namespace, name));
  }

  // Read-only indexes, built on first use (the set never changes), so translation stays linear in the
  // number of objects: 5,000 Services must not each scan every EndpointSlice and Pod.
  #slicesByService: Map<string, KubeObject[]> | null = null;
  #podsByNamespace: Map<string, KubeObject[]> | null = null;
  #podsByIp: Map<string, KubeObject> | null = null;

  /** EndpointSlices labelled `kubernetes.io/service-name: <service>` in `namespace`, in canonical order. */
  endpointSlicesOf(namespace: string, service: string): readonly KubeObject[] {
    this.#slicesByService ??= groupBy(this.ofKind('EndpointSlice'), (s) => {
      const svc = s.metadata.labels['kubernetes.io/service-name'];
      return svc === undefined ? null : `${s.metadata.namespace}/${svc}`;
    });
    return this.#slicesByService.get(`${namespace}/${service}`) ?? [];
  }

  /** Pods in `namespace`, in canonical order. */
  podsIn(namespace: string): readonly KubeObject[] {
    this.#podsByNamespace ??= groupBy(this.ofKind('Pod'), (p) => p.metadata.namespace);
    return this.#podsByNamespace.get(namespace) ?? [];
  }

  /** The first Pod (canonical order) in `namespace` whose `status.podIP` is `ip`. */
  podByIp(namespace: string, ip: string): KubeObject | undefined {
    if (!this.#podsByIp) {
      this.#podsByIp = new Map();
      for (const pod of this.ofKind('Pod')) {
        const status = pod.body.status;
        const podIP = typeof status === 'object' && status !== null ? (status as Record<string, unknown>).podIP : undefined;
        if (typeof podIP !== 'string' || podIP === '') continue;
        const key = `${pod.metadata.namespace}/${podIP}`;
        if (!this.#podsByIp.has(key)) this.#podsByIp.set(key, pod);
      }
    }
    return this.#podsByIp.get(`${namespace}/${ip}`);
  }
}

function groupBy(objects: readonly KubeObject[], keyOf: (o: KubeObject) => string | null): Map<string, KubeObject[]> {
  const m = new Map<string, KubeObject[]>();
  for (const o of objects) {
    const key = keyOf(o);
    if (key === null) continue;
    let list = m.get(key);
    if (!list) m.set(key, (list = []));
    list.push(o);
  }
  return m;
}

export function objectKey(kind: string, namespace: string, name: string): string {
  return `${kind}/${namespace}/${name}`;
}

function compareObjects(a: KubeObject, b: KubeObject): number {
  return (
    cmp(a.kind, b.kind) ||
    cmp(a.metadata.namespace, b.metadata.namespace) ||
    cmp(a.metadata.name, b.metadata.name) ||
    cmp(a.origin.order, b.origin.order)
  );
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * Creation order as Kubernetes APIs use it (Istio merges VirtualServices in this order):
 * creationTimestamp, then origin order (file position) for objects without one, then name, namespace.
 */
export function compareByCreation(a: KubeObject, b: KubeObject): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  return cmp(ta, tb) || cmp(a.origin.order, b.origin.order) || cmp(a.metadata.name, b.metadata.name) || cmp(a.metadata.namespace, b.metadata.namespace);
}
