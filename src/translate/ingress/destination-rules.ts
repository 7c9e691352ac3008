/**
 * DestinationRules for Ingress backends. PURE.
 *
 * Istio serves Kubernetes Ingress by turning each one into a VirtualService on its ingress gateway,
 * so the DestinationRule the gateway uses for a backend Service's host applies to it as to any
 * VirtualService destination without a subset (Istio pilot/pkg/config/kube/ingress conversion.go;
 * the cluster `outbound|<port>||<fqdn>` is one cluster whoever routes to it). meshgate does the same
 * with the gateway's one lookup (istio/destination-rules.ts `destinationRulesFor`): load balancer,
 * connection pool, outlier detection, `tls`, `h2UpgradePolicy`, port-level settings.
 *
 * An Ingress says more about its backend than Istio's Ingress support reads: ingress-nginx
 * annotations (and its ConfigMap) that set a component win over the rule's for that component
 * (`load-balance`/`upstream-hash-by`/affinity over `loadBalancer`, `proxy-connect-timeout` over
 * `connectionPool.tcp.connectTimeout`, `backend-protocol` HTTPS/GRPCS/GRPC over `tls` and
 * `h2UpgradePolicy`); the rule gives the rest. Without a DestinationRule nothing changes.
 */
import type { ResourceSet } from '../../resources/resource-set.js';
import type { TranslateContext } from '../types.js';
import { servicePorts, serviceFqdn } from '../backends.js';
import { destinationRulesFor, type MergedDestinationRule } from '../istio/destination-rules.js';
import { h2UpgradePolicyOf } from '../istio/protocol.js';
import { resolveTrafficPolicy, type TrafficPolicy } from '../istio/traffic-policy.js';
import type { H2UpgradePolicy } from '../protocol.js';

export interface IngressBackendPolicy {
  /** The rule's policy for the backend's port; null when no DestinationRule applies (or the port is unknown). */
  policy: TrafficPolicy | null;
  /** The rule's `h2UpgradePolicy` for the port (`DEFAULT` without a rule). */
  h2UpgradePolicy: H2UpgradePolicy;
  rule: MergedDestinationRule | null;
}

/** The DestinationRule policy of Service `namespace/name` at `port` (number, name, or the only port) for this gateway. */
export function ingressBackendPolicy(ctx: TranslateContext, resources: ResourceSet, namespace: string, name: string, port: { number: number } | { name: string } | null): IngressBackendPolicy {
  const svc = resources.get('Service', namespace, name);
  // A missing Service or port is reported by resolveCluster; no rule is looked up for it.
  if (svc === undefined) return { policy: null, h2UpgradePolicy: 'DEFAULT', rule: null };
  const ports = servicePorts(svc);
  const sp = port === null ? (ports.length === 1 ? ports[0] : undefined) : 'number' in port ? ports.find((p) => p.port === port.number) : ports.find((p) => p.name === port.name);
  if (sp === undefined) return { policy: null, h2UpgradePolicy: 'DEFAULT', rule: null };
  const fqdn = serviceFqdn(name, namespace);
  const rule = destinationRulesFor(ctx, resources).lookup(fqdn, namespace);
  if (rule === null) return { policy: null, h2UpgradePolicy: 'DEFAULT', rule: null };
  return { policy: resolveTrafficPolicy(ctx, rule, null, sp.port, { resources, host: fqdn }), h2UpgradePolicy: h2UpgradePolicyOf(rule, null, sp.port), rule };
}
