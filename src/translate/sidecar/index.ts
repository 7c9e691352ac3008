/**
 * translateSidecar(resources, proxy, options) -> { ir, diagnostics }: one sidecar's view of the mesh
 * (ir/sidecar.ts, reference/mesh.md §2.5-2.10). PURE: equal inputs give a byte-identical view and
 * version, whatever order the objects arrived in.
 *
 * The snapshot is an ordinary IRSnapshot with `listeners: []` and `tcpListeners: []`, and:
 *  - `sidecar`: who the proxy is, its outbound service ports and their route tables and relays
 *    (outbound.ts), its inbound ports (inbound.ts), the workload table (workloads.ts), and the
 *    outbound traffic policy (MeshConfig `outboundTrafficPolicy.mode`, overridden by the Sidecar's);
 *  - `clusters`: `outbound|<port>|<subset>|<host>` for what its routes use (with the DestinationRules
 *    a sidecar uses (destination-rules.ts: proxy namespace, then the service's, then the root
 *    namespace), and Istio mTLS / auto mTLS per endpoint, as at the gateway) and `inbound|<port>||`;
 *  - `security`, `accessLogging`, `tracing`: the policies selecting this workload (its namespace and
 *    the root namespace, selector a subset of the pod's labels), for its inbound side;
 *  - `peerAuthentication`: every PeerAuthentication (present only when there are some).
 *
 * The existing Istio translators are reused with the proxy standing where the gateway stands:
 * `gatewayLabels` = the pod's labels and `gatewayNamespace` = the proxy's namespace, so selection by
 * workload labels and namespace, sourceLabels and RequestAuthentication scoping follow the proxy.
 */
import type { Diagnostic } from '../../lib/diagnostic.js';
import { compareDiagnostics } from '../../lib/diagnostic.js';
import type { IRSnapshot } from '../../ir/types.js';
import type { SidecarProxy, SidecarView } from '../../ir/sidecar.js';
import { validateIR } from '../../ir/validate.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { obj, str } from '../../lib/unknown.js';
import { readMeshConfig } from '../mesh-config.js';
import { translateRetries } from '../istio/route-policies.js';
import { translateSecurity } from '../security/index.js';
import { translatePeerAuthentications } from '../security/peer-authentication.js';
import { translateAccessLogging } from '../telemetry/access-logging.js';
import { translateTracing } from '../telemetry/tracing.js';
import { TranslateContext, type TranslateOptions } from '../types.js';
import { snapshotVersion } from '../version.js';
import { destinationRulesFor } from '../istio/destination-rules.js';
import { INBOUND_RETRY_POLICY, translateInbound } from './inbound.js';
import { translateOutbound } from './outbound.js';
import { exportToDefaults, sidecarScope } from './scope.js';
import { dnsProxyConfig } from './dns.js';
import { translateProxyHeaders } from '../istio/proxy-headers.js';
import { findProxyPod, meshWorkloads, podIps, workloadName } from './workloads.js';

/** Who asks: what `meshgate sidecar` knows of itself (its flags), as the config push carries it. */
export interface SidecarProxyMeta {
  namespace: string;
  serviceAccount: string;
  /** '' when not known: the Pod is then found by IP. */
  podName: string;
  podIps: string[];
  /** SPIFFE trust domain (MeshConfig `trustDomain`, `cluster.local` by default). */
  trustDomain: string;
}

export interface SidecarTranslateResult {
  ir: IRSnapshot;
  diagnostics: Diagnostic[];
}

export function translateSidecar(resources: ResourceSet, proxy: SidecarProxyMeta, options: TranslateOptions): SidecarTranslateResult {
  const pod = findProxyPod(resources, proxy.namespace, proxy.podName, proxy.podIps);
  const labels = pod !== null ? { ...pod.metadata.labels } : {};
  // The proxy stands where the gateway stands in the shared translators (selection by labels and namespace).
  const ctx = new TranslateContext({ ...options, gatewayLabels: labels, gatewayNamespace: proxy.namespace });
  if (pod === null) {
    const by = [proxy.podName !== '' ? `name ${proxy.podName}` : null, proxy.podIps.length > 0 ? `IP ${proxy.podIps.join(', ')}` : null].filter((x) => x !== null).join(' or ') || 'no name or IP given';
    ctx.diagnostics.push({ severity: 'warning', reason: 'MG_NOT_BOUND', object: { kind: 'Pod', namespace: proxy.namespace, name: proxy.podName }, field: null, file: null, line: null, message: `no Pod in namespace ${proxy.namespace} matches the proxy (${by}): its labels are taken as {} (workload-selected policies, Sidecar and sourceLabels do not apply) and it has no inbound ports` });
  }
  const scope = sidecarScope(ctx, resources, proxy.namespace, labels);
  // The same lookup as the gateway's, for this proxy (ctx stands for it: its namespace and labels).
  const drs = destinationRulesFor(ctx, resources, 'sidecar');
  const peerAuthentication = translatePeerAuthentications(ctx, resources);

  const mc = readMeshConfig(ctx, resources);
  const meshConfig = mc?.mesh ?? null;
  // DNS proxying (dns.ts): the pod's ProxyConfig says; its VIPs feed routing and the name table alike.
  const dnsConfig = dnsProxyConfig(ctx, resources, pod);
  const dnsEnv = dnsConfig.capture ? { autoAllocate: dnsConfig.autoAllocate, podIps: proxy.podIps.length > 0 ? proxy.podIps : pod !== null ? podIps(pod) : [] } : null;
  const out = translateOutbound({ ctx, resources, drs, namespace: proxy.namespace, scope, exportTo: exportToDefaults(meshConfig), dns: dnsEnv });
  const podIp = proxy.podIps[0] ?? (pod !== null ? (podIps(pod)[0] ?? null) : null);
  const inboundRetryField = meshConfig?.defaultInboundHttpRetryPolicy;
  const inboundRetries = mc !== null && inboundRetryField !== undefined && inboundRetryField !== null ? translateRetries(ctx, mc.from, inboundRetryField, 'data.mesh.defaultInboundHttpRetryPolicy') : INBOUND_RETRY_POLICY;
  const inb = translateInbound(ctx, resources, pod, proxy.namespace, labels, podIp, peerAuthentication, inboundRetries);
  for (const c of inb.clusters) ctx.addCluster(c);

  const meshMode = str(obj(meshConfig?.outboundTrafficPolicy).mode);
  const outboundTrafficPolicy = scope.outboundTrafficPolicy ?? (meshMode === 'REGISTRY_ONLY' ? 'REGISTRY_ONLY' : 'ALLOW_ANY');

  const me: SidecarProxy = {
    namespace: proxy.namespace,
    serviceAccount: proxy.serviceAccount,
    podName: proxy.podName !== '' ? proxy.podName : (pod?.metadata.name ?? ''),
    podIps: [...proxy.podIps],
    labels: sortKeys(labels),
    spiffeId: `spiffe://${proxy.trustDomain}/ns/${proxy.namespace}/sa/${proxy.serviceAccount}`,
    workload: pod !== null ? workloadName(pod) : proxy.podName,
  };
  if (pod !== null) {
    const sa = str(obj(pod.body.spec).serviceAccountName) || str(obj(pod.body.spec).serviceAccount) || 'default';
    if (sa !== proxy.serviceAccount) ctx.report('warning', 'MG_INVALID_FIELD', pod, 'spec.serviceAccountName', `the proxy says service account ${proxy.serviceAccount} but Pod ${pod.metadata.namespace}/${pod.metadata.name} runs as ${sa}`);
  }
  const sidecar: SidecarView = {
    proxy: me,
    outboundTrafficPolicy,
    outbound: out.outbound,
    outboundHttp: out.outboundHttp,
    outboundTcp: out.outboundTcp,
    inbound: inb.inbound,
    inboundDefault: inb.inboundDefault,
    inboundHttp: inb.inboundHttp,
    workloads: meshWorkloads(resources),
    ...(dnsConfig.capture ? { dns: { capture: true, autoAllocate: dnsConfig.autoAllocate, hosts: out.dnsHosts } } : {}),
  };
  // ProxyConfig `proxyHeaders` of MeshConfig and the pod's annotation (istio/proxy-headers.ts).
  const security = { ...translateSecurity(ctx, resources), ...translateProxyHeaders(ctx, resources, 'sidecar', pod !== null ? [pod] : []) };
  const accessLogging = translateAccessLogging(ctx, resources);
  const tracing = translateTracing(ctx, resources);
  const clusters = ctx.clusters();
  const listeners: IRSnapshot['listeners'] = [];
  const tcpListeners: IRSnapshot['tcpListeners'] = [];
  const mesh = peerAuthentication.length > 0 ? { peerAuthentication } : {};
  const version = snapshotVersion({ listeners, clusters, security, tcpListeners, accessLogging, tracing, ...mesh, sidecar });
  const ir: IRSnapshot = { version, listeners, clusters, security, tcpListeners, accessLogging, tracing, ...mesh, sidecar };
  for (const problem of validateIR(ir)) {
    ctx.diagnostics.push({ severity: 'error', reason: 'MG_INVALID_IR', object: null, field: null, file: null, line: null, message: `internal: ${problem}` });
  }
  // The shared translators speak of the proxy they translate for as "the gateway".
  const diagnostics = ctx.diagnostics.map((d) => (/\b(this|the) gateway\b/.test(d.message) ? { ...d, message: d.message.replace(/\b(this|the) gateway\b/g, '$1 sidecar') } : d));
  return { ir, diagnostics: dedupe(diagnostics).sort(compareDiagnostics) };
}

function sortKeys(m: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(m).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)));
}

function dedupe(list: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const k = JSON.stringify(d);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
