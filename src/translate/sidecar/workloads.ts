/**
 * Pods as mesh workloads (reference/mesh.md §4): the IP -> workload table a sidecar's telemetry
 * uses for its peers, and the proxy's own pod. PURE.
 *
 * Workload name, as the contract (ir/sidecar.ts) asks: the `app` label, else the controlling
 * owner's name (a ReplicaSet's Deployment, the pod-template-hash suffix cut, as Istio's telemetry
 * names workloads), else the pod's name.
 */
import type { MeshWorkload } from '../../ir/sidecar.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { arr, obj, str } from '../../lib/unknown.js';
import { TLS_MODE_LABEL } from '../istio/mesh-tls.js';

/** The pod's service account (`spec.serviceAccountName`, default `default`). */
export function podServiceAccount(pod: KubeObject): string {
  const spec = obj(pod.body.spec);
  return str(spec.serviceAccountName) || str(spec.serviceAccount) || 'default';
}

/** `app` label, else the controlling owner's name (a ReplicaSet's hash suffix cut), else the pod's name. */
export function workloadName(pod: KubeObject): string {
  const app = pod.metadata.labels.app;
  if (app) return app;
  const owners = arr(obj(pod.body.metadata).ownerReferences).map(obj);
  const owner = owners.find((o) => o.controller === true) ?? owners[0];
  const name = owner ? str(owner.name) : undefined;
  if (name) {
    const hash = pod.metadata.labels['pod-template-hash'];
    if (str(owner?.kind) === 'ReplicaSet' && hash && name.endsWith(`-${hash}`)) return name.slice(0, -hash.length - 1);
    return name;
  }
  return pod.metadata.name;
}

/** The pod's IPs: `status.podIPs[].ip`, else `status.podIP`. */
export function podIps(pod: KubeObject): string[] {
  const status = obj(pod.body.status);
  const list = arr(status.podIPs).map((x) => str(obj(x).ip)).filter((x): x is string => x !== undefined && x !== '');
  if (list.length > 0) return [...new Set(list)];
  const one = str(status.podIP);
  return one ? [one] : [];
}

/** One entry per pod IP, sorted by IP (a reused IP keeps the pod that comes first by namespace/name). */
export function meshWorkloads(resources: ResourceSet): MeshWorkload[] {
  const byIp = new Map<string, MeshWorkload>();
  const pods = [...resources.ofKind('Pod')].sort((a, b) => cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name));
  for (const pod of pods) {
    const phase = str(obj(pod.body.status).phase);
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    for (const ip of podIps(pod)) {
      if (byIp.has(ip)) continue;
      byIp.set(ip, {
        ip,
        namespace: pod.metadata.namespace,
        name: workloadName(pod),
        serviceAccount: podServiceAccount(pod),
        app: pod.metadata.labels.app ?? '',
        version: pod.metadata.labels.version ?? '',
        meshed: pod.metadata.labels[TLS_MODE_LABEL] === 'istio',
      });
    }
  }
  return [...byIp.values()].sort((a, b) => cmp(a.ip, b.ip));
}

/** The proxy's pod: by name in its namespace, else by one of its IPs. */
export function findProxyPod(resources: ResourceSet, namespace: string, podName: string, ips: string[]): KubeObject | null {
  if (podName !== '') {
    const p = resources.get('Pod', namespace, podName);
    if (p !== undefined) return p;
  }
  for (const ip of ips) {
    const p = resources.podByIp(namespace, ip);
    if (p !== undefined) return p;
  }
  return null;
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
