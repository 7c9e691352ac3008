/**
 * The Secrets the routes use, read from the objects that name them, so the source can watch exactly
 * those: Ingress `spec.tls[].secretName` (in the Ingress's namespace) and Istio Gateway
 * `servers[].tls.credentialName` / `credentialNames` (in the Gateway's namespace, where meshgate
 * looks for them, see translate/istio).
 */
import type { KubeObject } from '../../resources/types.js';
import { arr, obj, str } from '../../lib/unknown.js';

/** `namespace/name` of every Secret referenced by these Ingresses and Gateways, sorted, no duplicates. */
export function referencedSecrets(objects: Iterable<KubeObject>): string[] {
  const out = new Set<string>();
  for (const o of objects) {
    const ns = o.metadata.namespace;
    const spec = obj(o.body.spec);
    if (o.kind === 'Ingress') {
      for (const t of arr(spec.tls)) add(out, ns, str(obj(t).secretName));
    } else if (o.kind === 'Gateway') {
      for (const s of arr(spec.servers)) {
        const tls = obj(obj(s).tls);
        add(out, ns, str(tls.credentialName));
        for (const n of arr(tls.credentialNames)) add(out, ns, str(n));
      }
    }
  }
  return [...out].sort();
}

function add(out: Set<string>, namespace: string, name: string | undefined): void {
  // A DNS-1123 subdomain: anything else cannot name a Secret (and must not reach a field selector).
  if (name && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) out.add(`${namespace}/${name}`);
}
