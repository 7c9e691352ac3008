/**
 * @peculiar/x509 loads tsyringe, which refuses to load without the Reflect metadata API. No
 * polyfill package is installed, so this provides the few functions it calls (a WeakMap per target
 * and property). Import it before @peculiar/x509.
 */
const meta = new WeakMap<object, Map<string | symbol | undefined, Map<unknown, unknown>>>();

function table(target: object, prop: string | symbol | undefined, create: boolean): Map<unknown, unknown> | undefined {
  let byProp = meta.get(target);
  if (!byProp) {
    if (!create) return undefined;
    meta.set(target, (byProp = new Map()));
  }
  let t = byProp.get(prop);
  if (!t && create) byProp.set(prop, (t = new Map()));
  return t;
}

const api = Reflect as unknown as Record<string, unknown>;
if (typeof api.getMetadata !== 'function') {
  const own = (k: unknown, target: object, prop?: string | symbol) => table(target, prop, false)?.get(k);
  const inherited = (k: unknown, target: object, prop?: string | symbol): unknown => {
    for (let o: object | null = target; o; o = Object.getPrototypeOf(o) as object | null) {
      const t = table(o, prop, false);
      if (t?.has(k)) return t.get(k);
    }
    return undefined;
  };
  const define = (k: unknown, v: unknown, target: object, prop?: string | symbol) => {
    table(target, prop, true)?.set(k, v);
  };
  api.getOwnMetadata = own;
  api.getMetadata = inherited;
  api.defineMetadata = define;
  api.hasOwnMetadata = (k: unknown, target: object, prop?: string | symbol) => table(target, prop, false)?.has(k) ?? false;
  api.hasMetadata = (k: unknown, target: object, prop?: string | symbol) => inherited(k, target, prop) !== undefined;
  api.metadata = (k: unknown, v: unknown) => (target: object, prop?: string | symbol) => define(k, v, target, prop);
}

export {};
