/**
 * The Secrets the routes use, read from the objects that name them, so the source can watch exactly
 * those, each in the namespace of the object that names it (where translate looks for it):
 * - Ingress `spec.tls[].secretName` and the ingress-nginx annotations `proxy-ssl-secret` and `auth-secret`;
 * - Istio Gateway `servers[].tls.credentialName` / `credentialNames`, and for each the
 *   `<name>-cacert` Secret that may hold the client CAs (MUTUAL, OPTIONAL_MUTUAL): these in the
 *   gateway workload's namespace, not the Gateway's (Istio, since CVE-2021-34824);
 * - DestinationRule `tls.credentialName` at rule, port and subset level (upstream TLS);
 * - Gateway API Gateway `listeners[].tls.certificateRefs` (core Secrets, in their own namespace).
 */
import type { KubeObject } from '../../resources/types.js';
import { arr, obj, str } from '../../lib/unknown.js';

/**
 * `namespace/name` of every Secret referenced by these Ingresses and Gateways, sorted, no duplicates.
 * `gatewayNamespace`: where the gateway's own pods run (Gateway credentials are read there).
 */
export function referencedSecrets(objects: Iterable<KubeObject>, gatewayNamespace: string): string[] {
  const out = new Set<string>();
  for (const o of objects) {
    const ns = o.metadata.namespace;
    const spec = obj(o.body.spec);
    if (o.kind === 'Ingress') {
      for (const t of arr(spec.tls)) add(out, ns, str(obj(t).secretName));
      // proxy-ssl-secret and (basic auth) auth-secret.
      for (const key of ['proxy-ssl-secret', 'auth-secret']) {
        const ref = o.metadata.annotations[`nginx.ingress.kubernetes.io/${key}`]?.trim();
        if (!ref) continue;
        const slash = ref.indexOf('/');
        // Another namespace is refused by translate; only the Ingress's own namespace is read.
        if (slash === -1) add(out, ns, ref);
        else if (ref.slice(0, slash) === ns) add(out, ns, ref.slice(slash + 1));
      }
    } else if (o.kind === 'Gateway' && o.apiVersion.startsWith('gateway.networking.k8s.io/')) {
      // Gateway API listeners' tls.certificateRefs (another namespace: translate checks the ReferenceGrant).
      for (const l of arr(spec.listeners)) {
        for (const r of arr(obj(obj(l).tls).certificateRefs)) {
          const ref = obj(r);
          if ((str(ref.group) ?? '') !== '' || (str(ref.kind) ?? 'Secret') !== 'Secret') continue;
          add(out, str(ref.namespace) || ns, str(ref.name));
        }
      }
    } else if (o.kind === 'Gateway') {
      for (const s of arr(spec.servers)) {
        const tls = obj(obj(s).tls);
        for (const n of [tls.credentialName, ...arr(tls.credentialNames)].map(str)) {
          add(out, gatewayNamespace, n);
          if (n) add(out, gatewayNamespace, `${n}-cacert`);
        }
      }
    } else if (o.kind === 'DestinationRule') {
      const policies = [obj(spec.trafficPolicy), ...arr(spec.subsets).map((s) => obj(obj(s).trafficPolicy))];
      for (const p of policies) {
        add(out, ns, str(obj(p.tls).credentialName));
        for (const pl of arr(p.portLevelSettings)) add(out, ns, str(obj(obj(pl).tls).credentialName));
      }
    }
  }
  return [...out].sort();
}

function add(out: Set<string>, namespace: string, name: string | undefined): void {
  // A DNS-1123 subdomain: anything else cannot name a Secret (and must not reach a field selector).
  if (name && /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(name)) out.add(`${namespace}/${name}`);
}

/**
 * `namespace/name` of the ConfigMaps ingress-nginx settings name, sorted, no duplicates: an Ingress's
 * `custom-headers` and `auth-proxy-set-headers` (its own namespace only), and the controller ConfigMap's `add-headers` and
 * `proxy-set-headers` (`controller` = `namespace/name` of that ConfigMap, or null).
 */
export function referencedConfigMaps(objects: Iterable<KubeObject>, controller: string | null): string[] {
  const out = new Set<string>();
  for (const o of objects) {
    const ns = o.metadata.namespace;
    if (o.kind === 'Ingress') {
      for (const key of ['custom-headers', 'auth-proxy-set-headers']) {
        const ref = o.metadata.annotations[`nginx.ingress.kubernetes.io/${key}`]?.trim();
        if (!ref) continue;
        const slash = ref.indexOf('/');
        if (slash === -1) add(out, ns, ref);
        else if (ref.slice(0, slash) === ns) add(out, ns, ref.slice(slash + 1));
      }
    } else if (o.kind === 'ConfigMap' && controller === `${ns}/${o.metadata.name}`) {
      const data = obj(o.body.data);
      for (const key of ['add-headers', 'proxy-set-headers']) {
        const ref = str(data[key])?.trim();
        if (!ref) continue;
        const slash = ref.indexOf('/');
        if (slash === -1) add(out, ns, ref);
        else add(out, ref.slice(0, slash), ref.slice(slash + 1));
      }
    }
  }
  return [...out].sort();
}

/**
 * `namespace/name` of every ConfigMap BackendTLSPolicies name as CA certificates
 * (`spec.validation.caCertificateRefs`, core ConfigMaps in the policy's namespace), sorted.
 */
export function referencedCaConfigMaps(policies: Iterable<KubeObject>): string[] {
  const out = new Set<string>();
  for (const p of policies) {
    if (p.kind !== 'BackendTLSPolicy') continue;
    for (const r of arr(obj(obj(p.body.spec).validation).caCertificateRefs)) {
      const ref = obj(r);
      if ((str(ref.group) ?? '') === '' && str(ref.kind) === 'ConfigMap') add(out, p.metadata.namespace, str(ref.name));
    }
  }
  return [...out].sort();
}
