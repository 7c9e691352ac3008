/**
 * Workload names of the mesh (namespace, service account), checked as Kubernetes checks them. Light
 * on purpose: `meshgate run` parses its mesh-client flags with it and never loads the CA or jose.
 */

export interface ServiceAccount {
  namespace: string;
  serviceAccount: string;
}

const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const SA_RE = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function checkServiceAccount(sa: ServiceAccount): string | null {
  if (!NAMESPACE_RE.test(sa.namespace)) return `namespace "${sa.namespace}" is not a DNS-1123 label`;
  if (!SA_RE.test(sa.serviceAccount)) return `service account "${sa.serviceAccount}" is not a DNS-1123 subdomain`;
  return null;
}

/** `system:serviceaccount:<ns>:<sa>` (a TokenReview username, a token's `sub`), or null. */
export function serviceAccountOfUsername(username: string): ServiceAccount | null {
  const parts = username.split(':');
  if (parts.length !== 4 || parts[0] !== 'system' || parts[1] !== 'serviceaccount' || parts[2] === '' || parts[3] === '') return null;
  return { namespace: parts[2], serviceAccount: parts[3] };
}

/** Longest workload certificate lifetime (Istio's max-workload-cert-ttl, 90 d), s. */
export const MAX_WORKLOAD_CERT_TTL_S = 90 * 24 * 3600;

/** The SPIFFE ID of a service account: `spiffe://TRUST_DOMAIN/ns/NS/sa/SA`. */
export function spiffeId(trustDomain: string, sa: ServiceAccount): string {
  return `spiffe://${trustDomain}/ns/${sa.namespace}/sa/${sa.serviceAccount}`;
}
