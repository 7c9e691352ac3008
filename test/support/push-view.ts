/**
 * A per-proxy view for config-push tests, standing in for translateSidecar (wired at merge): one
 * cluster per Service port, the proxy's identity in the sidecar tables, so a config change and the
 * proxy it is for are both visible in the view. A Service annotated `test.meshgate.io/poison` makes
 * an invalid view (endpoint port 0) that `validateIR` refuses on the sidecar.
 */
import { ResourceSet } from '../../src/resources/resource-set.js';
import { translate, DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { snapshotVersion } from '../../src/translate/version.js';
import type { Cluster, IRSnapshot } from '../../src/ir/types.js';
import type { SidecarView } from '../../src/ir/sidecar.js';
import type { SidecarTranslate } from '../../src/mesh/push/types.js';

const base = translate(new ResourceSet([]), DEFAULT_TRANSLATE_OPTIONS).ir;

/** The test's per-proxy view: a cluster per Service port, the proxy's identity in the sidecar tables. */
export const testTranslate: SidecarTranslate = (resources, proxy) => {
  const clusters: Cluster[] = [];
  for (const svc of resources.ofKind('Service')) {
    const spec = (svc.body.spec ?? {}) as { ports?: { port: number }[] };
    const host = `${svc.metadata.name}.${svc.metadata.namespace}.svc.cluster.local`;
    const poison = svc.metadata.annotations['test.meshgate.io/poison'] !== undefined;
    for (const p of spec.ports ?? []) {
      clusters.push({ name: `outbound|${p.port}||${host}`, service: { namespace: svc.metadata.namespace, name: svc.metadata.name, host, port: p.port }, subset: '', discovery: 'eds', endpoints: [{ address: '10.1.0.1', port: poison ? 0 : p.port }] } as unknown as Cluster);
    }
  }
  const sidecar: SidecarView = {
    proxy: { namespace: proxy.namespace, serviceAccount: proxy.serviceAccount, podName: proxy.podName, podIps: proxy.podIps, labels: {}, spiffeId: `spiffe://${proxy.trustDomain}/ns/${proxy.namespace}/sa/${proxy.serviceAccount}`, workload: proxy.podName },
    outboundTrafficPolicy: 'ALLOW_ANY',
    outbound: [],
    outboundHttp: [],
    outboundTcp: [],
    inbound: [],
    inboundDefault: 'PERMISSIVE',
    inboundHttp: [],
    workloads: [],
  };
  const ir: IRSnapshot = { ...base, listeners: [], tcpListeners: [], clusters, sidecar, version: '' };
  ir.version = snapshotVersion({ ...ir, version: undefined });
  return { ir, diagnostics: [] };
};

export function clusterNames(ir: IRSnapshot | null): string[] {
  return (ir?.clusters ?? []).map((c) => c.name).sort();
}
