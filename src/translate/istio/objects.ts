/** Finding Istio objects and naming Services the way Istio configuration refers to them. */
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { CLUSTER_DOMAIN, serviceFqdn } from '../backends.js';

/** networking.istio.io, any version (v1alpha3, v1beta1, v1 have identical shapes). */
export const ISTIO_NETWORKING_GROUP = 'networking.istio.io';

export function isIstioNetworking(o: KubeObject): boolean {
  return o.apiVersion.startsWith(`${ISTIO_NETWORKING_GROUP}/`);
}

/**
 * Objects of `kind` from networking.istio.io. The kind alone is not enough: Gateway API also has a
 * `Gateway`.
 */
export function istioObjects(resources: ResourceSet, kind: string): KubeObject[] {
  return resources.ofKind(kind).filter(isIstioNetworking);
}

export function getIstioObject(resources: ResourceSet, kind: string, namespace: string, name: string): KubeObject | undefined {
  return resources.getAll(kind, namespace, name).find(isIstioNetworking);
}

export interface ServiceName {
  namespace: string;
  name: string;
  /** `name.namespace.svc.cluster.local`. */
  fqdn: string;
}

/**
 * A destination or DestinationRule host as a Kubernetes Service, or null when it does not name one.
 * Accepted: `name` (short: the namespace of the object that says it, as Istio does), `name.ns`,
 * `name.ns.svc` and `name.ns.svc.cluster.local`.
 */
export function resolveServiceHost(host: string, namespace: string): ServiceName | null {
  const h = host.toLowerCase().replace(/\.$/, '');
  if (h === '' || h.includes('*')) return null;
  const parts = h.split('.');
  let name: string;
  let ns: string;
  if (parts.length === 1) [name, ns] = [parts[0], namespace];
  else if (parts.length === 2) [name, ns] = [parts[0], parts[1]];
  else if (parts.length === 3 && parts[2] === 'svc') [name, ns] = [parts[0], parts[1]];
  else if (h === `${parts[0]}.${parts[1]}.${CLUSTER_DOMAIN}`) [name, ns] = [parts[0], parts[1]];
  else return null;
  if (name === '' || ns === '') return null;
  return { namespace: ns, name, fqdn: serviceFqdn(name, ns) };
}
