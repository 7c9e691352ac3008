/**
 * Istio gateway topology (ProxyConfig `gatewayTopology`), read from MeshConfig
 * `defaultConfig.gatewayTopology`. PURE.
 *
 * - `forwardClientCertDetails` -> IR `SecurityConfig.forwardClientCertDetails` (x-forwarded-client-cert).
 *   `UNDEFINED` or absent keeps Istio's gateway default, `SANITIZE_SET`
 *   (pilot `buildGatewayConnectionManager`).
 * - `numTrustedProxies` (Envoy `xff_num_trusted_hops`) -> IR `SecurityConfig.numTrustedProxies`
 *   (written when non-zero): which x-forwarded-for entry is the client for `remote.ip`.
 *
 * The gateway pods' `proxy.istio.io/config` annotation (ProxyConfig YAML) overrides MeshConfig field
 * by field, as Istio merges it: the pods are the Pods of the gateway namespace that carry the gateway
 * labels (`--gateway-namespace`, `--gateway-labels`). meshgate translates once for the whole gateway
 * workload, so pods whose annotations disagree are reported and MeshConfig alone applies.
 */
import { parse } from 'yaml';
import type { ForwardClientCertDetails } from '../../ir/security.js';
import { num, obj, str, type Obj } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { matchesLabels } from '../backends.js';
import { readMeshConfig } from '../mesh-config.js';
import type { TranslateContext } from '../types.js';

/** Istio's per-pod ProxyConfig override. */
const PROXY_CONFIG_ANNOTATION = 'proxy.istio.io/config';

const MODES: readonly ForwardClientCertDetails[] = ['SANITIZE', 'FORWARD_ONLY', 'APPEND_FORWARD', 'SANITIZE_SET', 'ALWAYS_FORWARD_ONLY'];

/** The IR security fields MeshConfig's gateway topology sets; `{}` when it sets none. */
export function translateGatewayTopology(ctx: TranslateContext, resources: ResourceSet): { forwardClientCertDetails?: ForwardClientCertDetails; numTrustedProxies?: number } {
  const mesh = readMeshConfig(ctx, resources);
  const fromPods = podTopology(ctx, resources);
  if (mesh === null && fromPods === null) return {};
  const topology: Obj = { ...obj(obj(mesh?.mesh.defaultConfig).gatewayTopology), ...(fromPods?.topology ?? {}) };
  // Diagnostics name the object the value came from.
  const where = (key: string): { from: KubeObject; field: string } =>
    fromPods !== null && fromPods.topology[key] !== undefined
      ? { from: fromPods.pod, field: `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]: gatewayTopology.${key}` }
      : { from: mesh!.from, field: `data.mesh: defaultConfig.gatewayTopology.${key}` };
  const out: { forwardClientCertDetails?: ForwardClientCertDetails; numTrustedProxies?: number } = {};
  const raw = topology.forwardClientCertDetails;
  const mode = str(raw);
  if (raw !== undefined && mode !== 'UNDEFINED') {
    if (mode === undefined || !(MODES as readonly string[]).includes(mode)) {
      const w = where('forwardClientCertDetails');
      ctx.report('error', 'MG_INVALID_FIELD', w.from, w.field, `forwardClientCertDetails ${JSON.stringify(raw)} is not one of ${MODES.join(', ')}; SANITIZE_SET (the gateway default) applies`);
    } else out.forwardClientCertDetails = mode as ForwardClientCertDetails;
  }
  const trusted = topology.numTrustedProxies;
  if (trusted !== undefined) {
    const n = num(trusted);
    if (n === undefined || !Number.isInteger(n) || n < 0 || n > 64) {
      const w = where('numTrustedProxies');
      ctx.report('error', 'MG_INVALID_FIELD', w.from, w.field, `numTrustedProxies ${JSON.stringify(trusted)} is not an integer from 0 to 64; 0 applies`);
    } else if (n > 0) out.numTrustedProxies = n;
  }
  return out;
}

/**
 * `gatewayTopology` of the gateway pods' `proxy.istio.io/config` annotation; null when no pod sets
 * one, or when the pods disagree (reported).
 */
function podTopology(ctx: TranslateContext, resources: ResourceSet): { pod: KubeObject; topology: Obj } | null {
  const pods = resources
    .ofKind('Pod')
    .filter((p) => p.metadata.namespace === ctx.options.gatewayNamespace && matchesLabels(p.metadata.labels, ctx.options.gatewayLabels))
    .filter((p) => p.metadata.annotations[PROXY_CONFIG_ANNOTATION] !== undefined);
  if (pods.length === 0) return null;
  let first: { pod: KubeObject; topology: Obj; text: string } | null = null;
  for (const pod of pods) {
    let topology: Obj;
    try {
      topology = obj(obj(parse(pod.metadata.annotations[PROXY_CONFIG_ANNOTATION])).gatewayTopology);
    } catch (e) {
      ctx.report('error', 'MG_INVALID_FIELD', pod, `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]`, `not valid ProxyConfig YAML (${(e as Error).message.split('\n')[0]}); MeshConfig's gatewayTopology applies`);
      return null;
    }
    const text = JSON.stringify(topology);
    if (first === null) first = { pod, topology, text };
    else if (first.text !== text) {
      ctx.report('warning', 'MG_UNSUPPORTED', pod, `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]`, `gatewayTopology differs from pod ${first.pod.metadata.name}'s; one snapshot serves every gateway pod, so MeshConfig's gatewayTopology applies`);
      return null;
    }
  }
  return first === null || Object.keys(first.topology).length === 0 ? null : { pod: first.pod, topology: first.topology };
}
