import type { KubeObject } from './types.js';

/**
 * An immutable, indexed bag of input objects in canonical order (kind, namespace, name), so that
 * whatever order a provider delivered them in, translation sees the same sequence.
 */
export class ResourceSet {
  readonly #all: readonly KubeObject[];
  readonly #byKind = new Map<string, KubeObject[]>();
  readonly #byKey = new Map<string, KubeObject>();
  /** kind/namespace/name -> the objects of every API group with that name (Istio's and Gateway API's `Gateway`). */
  readonly #byName = new Map<string, KubeObject[]>();

  /**
   * Objects with the same API group, kind, namespace and name: the one with the smallest
   * origin.order is kept. The group is part of an object's identity: an Istio `Gateway` and a
   * Gateway API `Gateway` may share a namespace and name.
   */
  constructor(objects: Iterable<KubeObject>) {
    const sorted = [...objects].sort(compareObjects);
    const kept: KubeObject[] = [];
    for (const o of sorted) {
      const key = objectIdentity(o);
      if (this.#byKey.has(key)) continue;
      this.#byKey.set(key, o);
      const nameKey = objectKey(o.kind, o.metadata.namespace, o.metadata.name);
      const same = this.#byName.get(nameKey);
      if (same) same.push(o);
      else this.#byName.set(nameKey, [o]);
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

  /** The object of `kind` with that namespace and name (the first API group in canonical order when several groups have the kind). */
  get(kind: string, namespace: string, name: string): KubeObject | undefined {
    return this.#byName.get(objectKey(kind, namespace, name))?.[0];
  }

  /** Every object of `kind` with that namespace and name, one per API group, in canonical order. */
  getAll(kind: string, namespace: string, name: string): readonly KubeObject[] {
    return this.#byName.get(objectKey(kind, namespace, name)) ?? [];
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

/** API group of an `apiVersion` (`networking.istio.io/v1` -> `networking.istio.io`, `v1` -> ``). */
export function apiGroupOf(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash === -1 ? '' : apiVersion.slice(0, slash);
}

/** What makes an object unique: API group, kind, namespace, name (`group|kind/namespace/name`). */
export function objectIdentity(o: { apiVersion: string; kind: string; metadata: { namespace: string; name: string } }): string {
  return `${apiGroupOf(o.apiVersion)}|${objectKey(o.kind, o.metadata.namespace, o.metadata.name)}`;
}

function compareObjects(a: KubeObject, b: KubeObject): number {
  return (
    cmp(a.kind, b.kind) ||
    cmp(a.metadata.namespace, b.metadata.namespace) ||
    cmp(a.metadata.name, b.metadata.name) ||
    cmp(apiGroupOf(a.apiVersion), apiGroupOf(b.apiVersion)) ||
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
