/**
 * Istio MeshConfig `extensionProviders[].envoyExtAuthzHttp` -> the IR's ExtAuthzHttpProvider. PURE.
 *
 * MeshConfig is read the way Istio stores it: the ConfigMap `istio` in namespace `istio-system`,
 * whose `data.mesh` is MeshConfig YAML. Only that ConfigMap is read; only the providers some CUSTOM
 * policy names are translated (and their service resolved to a cluster, like a route destination).
 */
import type { AuthorizationPolicy, ExtAuthzHttpProvider } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { parseDuration } from '../../api/duration.js';
import { arr, bool, isObj, num, obj, str } from '../../lib/unknown.js';
import { CLUSTER_DOMAIN, DEFAULT_CONNECT_TIMEOUT_MS, resolveCluster } from '../backends.js';
import { MESH_CONFIG_NAME, MESH_CONFIG_NAMESPACE, readMeshConfig } from '../mesh-config.js';
import type { TranslateContext } from '../types.js';


/** Istio `envoyExtAuthzHttp.timeout` default (600 s). */
export const DEFAULT_EXT_AUTHZ_TIMEOUT_MS = 600_000;

/**
 * The providers the CUSTOM policies of `policies` name, in name order. A policy naming a provider
 * that is missing or not an HTTP ext-authz one is reported; at run time it denies what it matches.
 */
export function translateExtAuthzProviders(ctx: TranslateContext, resources: ResourceSet, policies: readonly AuthorizationPolicy[]): ExtAuthzHttpProvider[] {
  const wanted = new Map<string, AuthorizationPolicy>();
  for (const p of policies) if (p.action === 'CUSTOM' && p.provider !== null && !wanted.has(p.provider)) wanted.set(p.provider, p);
  if (wanted.size === 0) return [];
  const meshConfig = readMeshConfig(ctx, resources);
  const providers = meshConfig === null ? new Map<string, Record<string, unknown>>() : extensionProviders(meshConfig.mesh);
  const out: ExtAuthzHttpProvider[] = [];
  for (const name of [...wanted.keys()].sort()) {
    const policy = wanted.get(name)!;
    const raw = providers.get(name);
    const from = policyObject(resources, policy);
    if (raw === undefined) {
      ctx.report('error', 'MG_INVALID_FIELD', from, 'spec.provider.name', `extension provider "${name}" is not defined in MeshConfig (ConfigMap ${MESH_CONFIG_NAMESPACE}/${MESH_CONFIG_NAME}, data.mesh extensionProviders); requests this CUSTOM policy matches are denied (403)`);
      continue;
    }
    if (!isObj(raw.envoyExtAuthzHttp)) {
      const kind = Object.keys(raw).find((k) => k !== 'name') ?? '(none)';
      ctx.report('warning', 'MG_UNSUPPORTED', from, 'spec.provider.name', `extension provider "${name}" is ${kind}; meshgate supports envoyExtAuthzHttp only; requests this CUSTOM policy matches are denied (403)`);
      continue;
    }
    const p = translateProvider(ctx, resources, meshConfig!.from, name, obj(raw.envoyExtAuthzHttp));
    if (p !== null) out.push(p);
  }
  return out;
}

/** The AuthorizationPolicy object a translated policy came from (for diagnostics). */
function policyObject(resources: ResourceSet, p: AuthorizationPolicy): KubeObject | null {
  return resources.get('AuthorizationPolicy', p.source.namespace, p.source.name) ?? null;
}

function extensionProviders(mesh: Record<string, unknown>): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  arr(mesh.extensionProviders).forEach((raw) => {
    const p = obj(raw);
    const name = str(p.name);
    if (name !== undefined && !out.has(name)) out.set(name, p);
  });
  return out;
}

function translateProvider(ctx: TranslateContext, resources: ResourceSet, cm: KubeObject, name: string, h: Record<string, unknown>): ExtAuthzHttpProvider | null {
  const field = 'data.mesh';
  const service = str(h.service) ?? '';
  const port = num(h.port);
  const ref = serviceRef(service);
  if (ref === null || port === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    ctx.report('error', 'MG_INVALID_FIELD', cm, field, `extension provider "${name}": envoyExtAuthzHttp needs service "<name>.<namespace>.svc.cluster.local" (or "<namespace>/<host>") and a port; got "${service}" port ${String(h.port)}; requests its CUSTOM policies match are denied (403)`);
    return null;
  }
  const cluster = resolveCluster(ctx, resources, {
    service: { namespace: ref.namespace, name: ref.name, port: { number: port } },
    subset: null,
    lbPolicy: 'ROUND_ROBIN',
    connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
    connectionPool: null,
    outlierDetection: null,
    from: cm,
    field,
  });
  let timeoutMs = DEFAULT_EXT_AUTHZ_TIMEOUT_MS;
  const timeout = str(h.timeout);
  if (timeout !== undefined) {
    const ms = parseDuration(timeout);
    if (ms === null || ms <= 0) ctx.report('warning', 'MG_INVALID_FIELD', cm, field, `extension provider "${name}": timeout "${timeout}" is not a positive duration; using 600s`);
    else timeoutMs = Math.max(1, Math.round(ms));
  }
  let statusOnError = 403;
  if (h.statusOnError !== undefined) {
    const n = Number(h.statusOnError);
    if (Number.isInteger(n) && n >= 200 && n <= 599) statusOnError = n;
    else ctx.report('warning', 'MG_INVALID_FIELD', cm, field, `extension provider "${name}": statusOnError "${String(h.statusOnError)}" is not an HTTP status; using 403`);
  }
  const additional = obj(h.includeAdditionalHeadersInCheck);
  return {
    name,
    cluster,
    timeoutMs,
    pathPrefix: str(h.pathPrefix) ?? '',
    failOpen: bool(h.failOpen) ?? false,
    statusOnError,
    includeRequestHeadersInCheck: lowerStrings(h.includeRequestHeadersInCheck),
    includeAdditionalHeadersInCheck: Object.keys(additional)
      .sort()
      .filter((k) => typeof additional[k] === 'string')
      .map((k) => ({ name: k.toLowerCase(), value: additional[k] as string })),
    headersToUpstreamOnAllow: lowerStrings(h.headersToUpstreamOnAllow),
    headersToDownstreamOnDeny: lowerStrings(h.headersToDownstreamOnDeny),
  };
}

/** `name.ns.svc.cluster.local`, `name.ns`, or Istio's `ns/host` form -> a Service; null otherwise. */
function serviceRef(service: string): { namespace: string; name: string } | null {
  let host = service;
  const slash = host.indexOf('/');
  if (slash !== -1) host = host.slice(slash + 1);
  if (host.endsWith(`.${CLUSTER_DOMAIN}`)) host = host.slice(0, -(CLUSTER_DOMAIN.length + 1));
  const parts = host.split('.');
  if (parts.length === 2 && parts[0] !== '' && parts[1] !== '') return { name: parts[0], namespace: parts[1] };
  return null;
}

function lowerStrings(v: unknown): string[] {
  return arr(v).filter((s): s is string => typeof s === 'string').map((s) => s.toLowerCase());
}
