/**
 * Gateway API backendRefs -> IR clusters, and the reasons a reference does not resolve
 * (route `ResolvedRefs=False`: InvalidKind, RefNotPermitted, BackendNotFound). BackendTLSPolicy
 * (v1, v1alpha3) gives a Service's cluster upstream TLS, the same `UpstreamTls` DestinationRules build.
 *
 * DestinationRules apply to a backend Service exactly as to a VirtualService destination without a
 * subset (Istio turns Gateway API routes into VirtualServices; their clusters are the same
 * `outbound|<port>||<fqdn>`): the rule the gateway uses for the Service's host (the one lookup,
 * istio/destination-rules.ts `destinationRulesFor`), resolved for the backend's port
 * (istio/traffic-policy.ts: load balancer incl. consistent hash, connection pool, outlier detection,
 * `tls` incl. ISTIO_MUTUAL, port-level settings), and its `h2UpgradePolicy` (GRPCRoute backends are
 * HTTP/2 whatever it says).
 *
 * DestinationRule `tls` and BackendTLSPolicy for the same backend: the DestinationRule's wins when it
 * sets `tls` for the backend's port (DISABLE included), and the BackendTLSPolicy gives the TLS
 * otherwise, as Istio merges them (istio/istio#60432, "a DestinationRule and a Gateway API backend
 * policy targeting the same host: the DestinationRule fields take precedence and the backend policy
 * only fills in fields the DestinationRule leaves unset, regardless of which was created first").
 * The overridden policy gets a warning naming the rule. BackendTLSPolicy applies to Gateway API
 * routes only (Istio applies it to every client of the Service); when an Ingress or Istio route made
 * the Service port's cluster without the policy's TLS, the Gateway API route gets a twin cluster
 * (subset `backendtlspolicy`) with it.
 */
import type { UpstreamTls, PemSource } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { arr, num, obj, str, type Obj } from '../../lib/unknown.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, clusterName, resolveCluster, serviceFqdn, servicePorts } from '../backends.js';
import { destinationRulesFor } from '../istio/destination-rules.js';
import { h2UpgradePolicyOf } from '../istio/protocol.js';
import { resolveTrafficPolicy } from '../istio/traffic-policy.js';
import type { TranslateContext } from '../types.js';
import { GATEWAY_GROUP, type ReferenceGrants } from './refs.js';
import { StatusRecorder, statusKey, type PolicyStatusOut } from './status.js';

/** Subset name of the twin cluster a BackendTLSPolicy gets when another API made the Service port's cluster without its TLS. */
export const BACKEND_TLS_SUBSET = 'backendtlspolicy';

export type BackendProblem = { reason: 'InvalidKind' | 'RefNotPermitted' | 'BackendNotFound' | 'UnsupportedProtocol'; field: string; message: string };

export type ResolvedBackend = { ok: true; cluster: string } | { ok: false; problem: BackendProblem };

export interface BackendEnv {
  ctx: TranslateContext;
  resources: ResourceSet;
  grants: ReferenceGrants;
  tlsPolicies: BackendTlsPolicies;
}

/**
 * Resolve `ref` (a BackendObjectReference at `field` of `route`). Only core Services are backends
 * (other kinds are implementation-specific: InvalidKind). `http2` asks for HTTP/2 upstream (GRPCRoute).
 */
export function resolveBackend(env: BackendEnv, route: KubeObject, ref: Obj, field: string, http2: boolean): ResolvedBackend {
  const group = str(ref.group) ?? '';
  const kind = str(ref.kind) ?? 'Service';
  const name = str(ref.name) ?? '';
  const namespace = str(ref.namespace) || route.metadata.namespace;
  if (group !== '' || kind !== 'Service') {
    return { ok: false, problem: { reason: 'InvalidKind', field, message: `${field}: backend kind ${group ? `${group}/` : ''}${kind} is not supported (only core Services)` } };
  }
  if (!env.grants.permits({ group: GATEWAY_GROUP, kind: route.kind, namespace: route.metadata.namespace }, { group: '', kind: 'Service', namespace, name })) {
    return { ok: false, problem: { reason: 'RefNotPermitted', field, message: `${field}: Service ${namespace}/${name} is in another namespace and no ReferenceGrant there allows ${route.kind}s from ${route.metadata.namespace}` } };
  }
  const svc = env.resources.get('Service', namespace, name);
  if (!svc) return { ok: false, problem: { reason: 'BackendNotFound', field, message: `${field}: Service ${namespace}/${name} does not exist` } };
  const port = num(ref.port);
  if (port === undefined) return { ok: false, problem: { reason: 'BackendNotFound', field, message: `${field}: port is required for a Service backend` } };
  const sp = servicePorts(svc).find((p) => p.port === port);
  if (!sp) return { ok: false, problem: { reason: 'BackendNotFound', field, message: `${field}: Service ${namespace}/${name} has no port ${port}` } };
  const fqdn = serviceFqdn(name, namespace);
  const dr = destinationRulesFor(env.ctx, env.resources).lookup(fqdn, namespace);
  const policy = resolveTrafficPolicy(env.ctx, dr, null, port, { resources: env.resources, host: fqdn });
  let tls = policy.tls;
  let fromPolicy = false;
  const btp = env.tlsPolicies.policyFor(namespace, name, sp.name);
  if (btp !== null) {
    if (policy.tlsSet === true) env.tlsPolicies.overridden(env.ctx, btp.policy, dr?.rules[0] ?? null, fqdn, port);
    else {
      tls = btp.tls;
      fromPolicy = true;
    }
  }
  // A cluster is shared by Service port across APIs, and Ingress and Istio routes (translated
  // first) do not read BackendTLSPolicy: when one of them already made this cluster without the
  // policy's TLS, the route gets a twin with it, never the plaintext one.
  const shared = fromPolicy ? env.ctx.getCluster(clusterName(port, '', fqdn)) : undefined;
  if (shared !== undefined && shared.discovery === 'eds' && JSON.stringify(shared.tls) !== JSON.stringify(tls)) {
    const twin = clusterName(port, BACKEND_TLS_SUBSET, fqdn);
    if (env.ctx.getCluster(twin) === undefined) {
      const { autoMtls: _auto, ...rest } = shared;
      env.ctx.addCluster({ ...rest, name: twin, subset: BACKEND_TLS_SUBSET, tls, endpoints: shared.endpoints.map(({ tlsMode: _m, ...e }) => e) });
    }
    return { ok: true, cluster: twin };
  }
  const cluster = resolveCluster(env.ctx, env.resources, {
    service: { namespace, name, port: { number: port } },
    subset: null,
    lbPolicy: policy.lbPolicy,
    connectTimeoutMs: policy.connectTimeoutMs,
    connectionPool: policy.connectionPool,
    outlierDetection: policy.outlierDetection,
    h2UpgradePolicy: http2 ? 'UPGRADE' : h2UpgradePolicyOf(dr, null, port),
    tls,
    tlsSet: policy.tlsSet,
    from: route,
    field,
  });
  return { ok: true, cluster };
}

/** A cluster that no endpoint will ever be in: L4 routes send an invalid backend's share of connections here (closed at once). */
export function invalidBackendCluster(env: BackendEnv, route: KubeObject, field: string): string {
  const name = `gatewayapi-invalid|${route.kind.toLowerCase()}|${route.metadata.namespace}|${route.metadata.name}|${field}`;
  env.ctx.addCluster({
    name,
    service: { namespace: route.metadata.namespace, name: route.metadata.name, host: name, port: 0 },
    subset: '',
    discovery: 'missing',
    lbPolicy: 'ROUND_ROBIN',
    endpoints: [],
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    connectionPool: null,
    outlierDetection: null,
    protocol: 'HTTP1',
    tls: null,
  });
  return name;
}

/**
 * BackendTLSPolicy index: Service (and optional port name) -> UpstreamTls. Of two policies on one
 * target the older wins; the other gets `Accepted=False Conflicted`. CA certificates come from
 * ConfigMaps (`ca.crt`) in the policy's namespace, or `wellKnownCACertificates: System` (Node's roots).
 */
export class BackendTlsPolicies {
  readonly #byTarget = new Map<string, { policy: KubeObject; tls: UpstreamTls | null }>();
  /** `policy|host|port` already reported as overridden by a DestinationRule. */
  readonly #overridden = new Set<string>();
  readonly #conditions: { policy: KubeObject; conditions: PolicyStatusOut['ancestors'][number]['conditions'] }[] = [];

  constructor(resources: ResourceSet, rec: StatusRecorder) {
    const policies = resources.ofKind('BackendTLSPolicy').filter((p) => p.apiVersion.startsWith(`${GATEWAY_GROUP}/`));
    for (const p of [...policies].sort(compareByCreation)) {
      const spec = obj(p.body.spec);
      const validation = obj(spec.validation);
      const conditions: PolicyStatusOut['ancestors'][number]['conditions'] = [];
      const tls = policyTls(resources, rec, p, validation, conditions);
      let conflicted = false;
      arr(spec.targetRefs).forEach((t, i) => {
        const to = obj(t);
        if ((str(to.group) ?? '') !== '' || str(to.kind) !== 'Service') {
          rec.set(conditions, p, 'Accepted', 'False', 'Invalid', `targetRefs[${i}]: only core Services can be targeted`, { code: 'MG_UNSUPPORTED', field: `spec.targetRefs[${i}]`, severity: 'warning' });
          return;
        }
        const key = `${p.metadata.namespace}/${str(to.name) ?? ''}/${str(to.sectionName) ?? ''}`;
        if (this.#byTarget.has(key)) {
          conflicted = true;
          return;
        }
        this.#byTarget.set(key, { policy: p, tls });
      });
      if (conflicted) rec.set(conditions, p, 'Accepted', 'False', 'Conflicted', 'an older BackendTLSPolicy already targets this Service', { code: 'MG_UNSUPPORTED', field: 'spec.targetRefs', severity: 'warning' });
      if (!conditions.some((c) => c.type === 'Accepted')) rec.set(conditions, p, 'Accepted', 'True', 'Accepted', 'policy applies to the targeted Services');
      if (!conditions.some((c) => c.type === 'ResolvedRefs')) rec.set(conditions, p, 'ResolvedRefs', 'True', 'ResolvedRefs', 'CA certificates resolved');
      this.#conditions.push({ policy: p, conditions });
    }
  }

  /**
   * Policy status, reported per ancestor: the Gateways of meshgate's class (at most 16, the API's
   * limit), each with the same conditions. No Gateway of ours: nothing to report.
   */
  statuses(gateways: KubeObject[], controllerName: string): PolicyStatusOut[] {
    if (gateways.length === 0) return [];
    const ancestors = gateways.slice(0, 16).map((g) => ({ group: GATEWAY_GROUP, kind: 'Gateway', namespace: g.metadata.namespace, name: g.metadata.name }));
    return this.#conditions.map(({ policy, conditions }) => ({ ...statusKey(policy), ancestors: ancestors.map((ancestorRef) => ({ ancestorRef, controllerName, conditions })) }));
  }

  /** TLS for Service `namespace/name` port `portName`: a policy naming the port wins over one for the whole Service. */
  tlsFor(namespace: string, name: string, portName: string): UpstreamTls | null {
    return this.policyFor(namespace, name, portName)?.tls ?? null;
  }

  /** The policy for Service `namespace/name` port `portName` and its TLS (null TLS: the policy is unusable); null when none targets it. */
  policyFor(namespace: string, name: string, portName: string): { policy: KubeObject; tls: UpstreamTls | null } | null {
    if (portName !== '') {
      const byPort = this.#byTarget.get(`${namespace}/${name}/${portName}`);
      if (byPort !== undefined) return byPort;
    }
    return this.#byTarget.get(`${namespace}/${name}/`) ?? null;
  }

  /** Reports (once per policy, host and port) that DestinationRule `rule` sets `tls` for the backend, so the policy's TLS is not used. */
  overridden(ctx: TranslateContext, policy: KubeObject, rule: KubeObject | null, host: string, port: number): void {
    const key = `${policy.metadata.namespace}/${policy.metadata.name}|${host}|${port}`;
    if (this.#overridden.has(key)) return;
    this.#overridden.add(key);
    const by = rule !== null ? `DestinationRule ${rule.metadata.namespace}/${rule.metadata.name}` : 'a DestinationRule';
    ctx.report('warning', 'MG_POLICY_OVERRIDDEN', policy, 'spec.targetRefs', `${by} sets tls for ${host} port ${port}, and a DestinationRule's fields take precedence over a BackendTLSPolicy's (Istio): this policy's TLS settings are not used for that backend`);
  }
}

function policyTls(resources: ResourceSet, rec: StatusRecorder, p: KubeObject, validation: Obj, conditions: PolicyStatusOut['ancestors'][number]['conditions']): UpstreamTls | null {
  const hostname = (str(validation.hostname) ?? '').toLowerCase();
  let ca: PemSource | null = null;
  const refs = arr(validation.caCertificateRefs).map(obj);
  const wellKnown = str(validation.wellKnownCACertificates);
  if (refs.length > 0) {
    const pems: string[] = [];
    refs.forEach((r, i) => {
      const field = `spec.validation.caCertificateRefs[${i}]`;
      if ((str(r.group) ?? '') !== '' || str(r.kind) !== 'ConfigMap') {
        rec.set(conditions, p, 'ResolvedRefs', 'False', 'InvalidKind', `${field}: only ConfigMaps hold CA certificates`, { code: 'MG_UNSUPPORTED', field });
        return;
      }
      const cm = resources.get('ConfigMap', p.metadata.namespace, str(r.name) ?? '');
      const pem = cm ? str(obj(cm.body.data)['ca.crt']) : undefined;
      if (!pem || !pem.includes('-----BEGIN CERTIFICATE-----')) {
        rec.set(conditions, p, 'ResolvedRefs', 'False', 'InvalidCACertificateRef', `${field}: ConfigMap ${p.metadata.namespace}/${str(r.name) ?? ''} ${cm ? 'has no PEM ca.crt' : 'does not exist'}`, { code: 'MG_SECRET_NOT_FOUND', field });
        return;
      }
      pems.push(pem);
    });
    if (pems.length === 0) {
      rec.set(conditions, p, 'Accepted', 'False', 'NoValidCACertificate', 'no CA certificate could be read; connections to the targeted Services fail', { code: 'MG_SECRET_INVALID', field: 'spec.validation' });
      // No usable CA: verification against an empty trust store fails every handshake (a 5xx), as the spec asks.
      ca = { kind: 'inline', pem: '', secret: `${p.metadata.namespace}/${p.metadata.name}` };
    } else ca = { kind: 'inline', pem: pems.join('\n'), secret: `configmap:${p.metadata.namespace}/${p.metadata.name}` };
  } else if (wellKnown !== 'System') {
    rec.set(conditions, p, 'Accepted', 'False', 'Invalid', 'validation needs caCertificateRefs or wellKnownCACertificates: System', { code: 'MG_MISSING_FIELD', field: 'spec.validation' });
  }
  const sans = arr(validation.subjectAltNames)
    .map(obj)
    .map((s) => (str(s.type) === 'URI' ? str(s.uri) : str(s.hostname)))
    .filter((s): s is string => s !== undefined && s !== '');
  return { mode: 'SIMPLE', caCertificates: ca, clientCertificate: null, sni: hostname, subjectAltNames: sans.length > 0 ? sans : hostname ? [hostname] : [], insecureSkipVerify: false };
}
