/**
 * security.istio.io RequestAuthentication and AuthorizationPolicy (v1, v1beta1), the
 * `meshgate.io/local-rate-limit` annotation, and the edge options -> the IR's SecurityConfig. PURE.
 *
 * Scoping (Istio): a policy applies to this gateway when it is in the root namespace (MeshConfig
 * `rootNamespace`, default `istio-system`: mesh-wide) or in the gateway's own namespace (`gatewayNamespace`), and its `selector.matchLabels`
 * (none = every workload) is a subset of `--gateway-labels`. `targetRef(s)` name Gateway API
 * Gateways or Services (waypoints); meshgate serves Istio Gateways, so such policies do not apply
 * here and say so with a warning.
 *
 * Policies are listed in canonical order (namespace, then name), so the snapshot does not depend on
 * the order objects arrived in; evaluation order is decided by `action`, not by list position.
 */
import type { AuthorizationPolicy, JwtRule, LocalRateLimit, SecurityConfig } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { obj, strMap } from '../../lib/unknown.js';
import { matchesLabels } from '../backends.js';
import { rootNamespaceOf } from '../mesh-config.js';
import { selectsSomePod } from '../selection.js';
import type { TranslateContext } from '../types.js';
import { translateAuthorizationPolicy } from './authorization-policy.js';
import { translateExtAuthzProviders } from './ext-authz.js';
import { rateLimitAnnotationsOf } from './rate-limit.js';
import { translateRequestAuthentication } from './request-authentication.js';

export const SECURITY_GROUP = 'security.istio.io';

export function translateSecurity(ctx: TranslateContext, resources: ResourceSet): SecurityConfig {
  const jwtRules: JwtRule[] = [];
  for (const o of policies(ctx, resources, 'RequestAuthentication')) jwtRules.push(...translateRequestAuthentication(ctx, o));
  const authorizationPolicies: AuthorizationPolicy[] = [];
  for (const o of policies(ctx, resources, 'AuthorizationPolicy')) authorizationPolicies.push(translateAuthorizationPolicy(ctx, o));
  const extAuthzProviders = translateExtAuthzProviders(ctx, resources, authorizationPolicies);
  const rateLimits: LocalRateLimit[] = rateLimitAnnotationsOf(ctx, resources);
  return {
    pathNormalization: ctx.options.pathNormalization,
    escapedSlashes: ctx.options.escapedSlashes,
    headersWithUnderscores: ctx.options.headersWithUnderscores,
    jwtRules,
    authorizationPolicies,
    extAuthzProviders,
    rateLimits,
  };
}

/** The objects of `kind` (security.istio.io) that apply to this gateway, in canonical order. */
function policies(ctx: TranslateContext, resources: ResourceSet, kind: string): KubeObject[] {
  const out: KubeObject[] = [];
  for (const o of resources.ofKind(kind)) {
    if (!o.apiVersion.startsWith(`${SECURITY_GROUP}/`)) continue;
    if (appliesHere(ctx, resources, o)) out.push(o);
  }
  return out.sort((a, b) => cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name));
}

function appliesHere(ctx: TranslateContext, resources: ResourceSet, o: KubeObject): boolean {
  const spec = obj(o.body.spec);
  const ns = o.metadata.namespace;
  if (spec.targetRef !== undefined || spec.targetRefs !== undefined) {
    ctx.report('warning', 'MG_UNSUPPORTED', o, spec.targetRef !== undefined ? 'spec.targetRef' : 'spec.targetRefs', `${o.kind} with targetRef applies to Gateway API gateways and waypoints, not to this Istio gateway; use spec.selector`);
    return false;
  }
  const root = rootNamespaceOf(ctx, resources);
  if (ns !== root && ns !== ctx.options.gatewayNamespace) {
    ctx.report('info', 'MG_NOT_BOUND', o, null, `${o.kind} in namespace "${ns}" does not apply to the gateway (namespace "${ctx.options.gatewayNamespace}", root namespace "${root}")`);
    return false;
  }
  const selector = strMap(obj(spec.selector).matchLabels);
  if (!matchesLabels(ctx.options.gatewayLabels, selector)) {
    // A selector picks workloads of the policy's namespace (every namespace from the root one).
    const elsewhere = selectsSomePod(resources, selector, ns === root ? null : ns);
    ctx.report(elsewhere ? 'info' : 'warning', 'MG_NOT_BOUND', o, 'spec.selector', `${o.kind} selector does not select this gateway (labels ${labelsText(ctx.options.gatewayLabels)})${elsewhere ? '' : ' nor any Pod: it applies to nothing'}`);
    return false;
  }
  return true;
}

function labelsText(labels: Record<string, string>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',') || '(none)';
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
