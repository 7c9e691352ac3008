/**
 * Istio gateway topology (ProxyConfig `gatewayTopology`), read from MeshConfig
 * `defaultConfig.gatewayTopology`. PURE.
 *
 * - `forwardClientCertDetails` -> IR `SecurityConfig.forwardClientCertDetails` (x-forwarded-client-cert).
 *   `UNDEFINED` or absent keeps Istio's gateway default, `SANITIZE_SET`
 *   (pilot `buildGatewayConnectionManager`).
 * - `numTrustedProxies` (Envoy `xff_num_trusted_hops`) -> IR `SecurityConfig.numTrustedProxies`
 *   (written when non-zero): which x-forwarded-for entry is the client for `remote.ip`.
 * - `proxyProtocol`: not honoured (a warning).
 *
 * The gateway pods' `proxy.istio.io/config` annotation (ProxyConfig YAML) overrides MeshConfig's
 * `gatewayTopology` whole when it has one, as Istio merges ProxyConfig (pkg/config/mesh
 * `MergeProxyConfig`: the annotation's YAML is applied with jsonpb, which sets every field present
 * in the overlay to the overlay's value, a nested message included: "merging is done by
 * replacement", pilot-agent `getMeshConfig`). So an annotation `gatewayTopology:
 * {forwardClientCertDetails: FORWARD_ONLY}` leaves `numTrustedProxies` at 0 whatever MeshConfig
 * says, and `gatewayTopology: {}` restores every default; an annotation without `gatewayTopology`
 * (or with `null`) keeps MeshConfig's. The pods are the Pods of the gateway namespace that carry
 * the gateway labels (`--gateway-namespace`, `--gateway-labels`). meshgate translates once for the
 * whole gateway workload, so pods whose annotations disagree are reported and MeshConfig alone
 * applies.
 */
import type { ForwardClientCertDetails } from '../../ir/security.js';
import { num, obj, str, type Obj } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { readMeshConfig } from '../mesh-config.js';
import { gatewayPods, podProxyConfigField } from './proxy-headers.js';
import type { TranslateContext } from '../types.js';

/** Istio's per-pod ProxyConfig override. */
const PROXY_CONFIG_ANNOTATION = 'proxy.istio.io/config';

const MODES: readonly ForwardClientCertDetails[] = ['SANITIZE', 'FORWARD_ONLY', 'APPEND_FORWARD', 'SANITIZE_SET', 'ALWAYS_FORWARD_ONLY'];

/** The IR security fields MeshConfig's gateway topology sets; `{}` when it sets none. */
export function translateGatewayTopology(ctx: TranslateContext, resources: ResourceSet): { forwardClientCertDetails?: ForwardClientCertDetails; numTrustedProxies?: number } {
  const mesh = readMeshConfig(ctx, resources);
  const fromPods = podProxyConfigField(ctx, gatewayPods(ctx, resources), 'gatewayTopology');
  if (mesh === null && fromPods === null) return {};
  // The annotation's gatewayTopology replaces MeshConfig's whole (Istio's ProxyConfig merge).
  const own = fromPods?.value ?? null;
  const topology: Obj = own ?? obj(obj(mesh?.mesh.defaultConfig).gatewayTopology);
  // Diagnostics name the object the value came from.
  const where = (key: string): { from: KubeObject; field: string } =>
    own !== null
      ? { from: fromPods!.pod, field: `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]: gatewayTopology.${key}` }
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
  // Istio's gateways then expect a PROXY protocol header on every connection (its listener filter);
  // meshgate reads no PROXY protocol: said, not silently ignored.
  if (topology.proxyProtocol !== undefined && topology.proxyProtocol !== null) {
    const w = where('proxyProtocol');
    ctx.report('warning', 'MG_UNSUPPORTED', w.from, w.field, 'not honoured: meshgate does not read the PROXY protocol; connections are taken as they arrive, and the client address is the peer\'s (or x-forwarded-for with numTrustedProxies)');
  }
  return out;
}

