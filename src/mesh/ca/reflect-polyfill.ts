/**
 * The part of the Reflect metadata API that @peculiar/x509's dependency injection (tsyringe) needs
 * when it loads: `Reflect.getMetadata` and friends, kept in a WeakMap. Installed only when absent
 * (no `reflect-metadata` package is among the dependencies); must be imported before x509.
 */
type Store = Map<string | symbol | undefined, Map<unknown, unknown>>;
const stores = new WeakMap<object, Store>();

function store(target: object, property: string | symbol | undefined, create: boolean): Map<unknown, unknown> | undefined {
  let byProperty = stores.get(target);
  if (byProperty === undefined) {
    if (!create) return undefined;
    stores.set(target, (byProperty = new Map()));
  }
  let m = byProperty.get(property);
  if (m === undefined && create) byProperty.set(property, (m = new Map()));
  return m;
}

const R = Reflect as unknown as Record<string, unknown>;
if (typeof R.getMetadata !== 'function') {
  const getOwnMetadata = (key: unknown, target: object, property?: string | symbol): unknown => store(target, property, false)?.get(key);
  const getMetadata = (key: unknown, target: object, property?: string | symbol): unknown => {
    for (let t: object | null = target; t !== null; t = Object.getPrototypeOf(t) as object | null) {
      const m = store(t, property, false);
      if (m?.has(key)) return m.get(key);
    }
    return undefined;
  };
  const defineMetadata = (key: unknown, value: unknown, target: object, property?: string | symbol): void => void store(target, property, true)!.set(key, value);
  Object.assign(R, {
    getOwnMetadata,
    getMetadata,
    defineMetadata,
    hasOwnMetadata: (key: unknown, target: object, property?: string | symbol) => store(target, property, false)?.has(key) ?? false,
    hasMetadata: (key: unknown, target: object, property?: string | symbol) => getMetadata(key, target, property) !== undefined,
    metadata: (key: unknown, value: unknown) => (target: object, property?: string | symbol) => defineMetadata(key, value, target, property),
  });
}

export {};
