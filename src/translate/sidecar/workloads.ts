/**
 * Pods as mesh workloads (reference/mesh.md §4): the IP -> workload table a sidecar's telemetry
 * uses for its peers, and the proxy's own pod. PURE.
 *
 * Workload names and canonical services as Istio derives them (`workloadName`, `workloadEntryName`,
 * lib/canonical-service.ts).
 */
import type { MeshWorkload } from '../../ir/sidecar.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { arr, obj, str, strMap } from '../../lib/unknown.js';
import { isIpAddress } from '../istio/hosts.js';
import { istioObjects } from '../istio/objects.js';
import { TLS_MODE_LABEL } from '../istio/mesh-tls.js';
import { canonicalServiceName, canonicalServiceRevision } from '../../lib/canonical-service.js';
import { podWorkloadName, WORKLOAD_NAME_LABEL } from '../../lib/workload-name.js';

/** The pod's service account (`spec.serviceAccountName`, default `default`). */
export function podServiceAccount(pod: KubeObject): string {
  const spec = obj(pod.body.spec);
  return str(spec.serviceAccountName) || str(spec.serviceAccount) || 'default';
}

/** WorkloadEntries registered from a WorkloadGroup name it here (annotation.IoIstioAutoRegistrationGroup). */
const AUTO_REGISTRATION_GROUP = 'istio.io/autoRegistrationGroup';

/**
 * The pod's workload name, as Istio names it in telemetry (`source_workload`/`destination_workload`),
 * peer metadata (`WORKLOAD_NAME`) and endpoint metadata: pkg/kube/util.go `GetWorkloadMetaFromPod`
 * (lib/workload-name.ts): the `service.istio.io/workload-name` label, else the controller of a pod
 * with a generated name (a ReplicaSet's Deployment, a Job's CronJob...), else the pod's name. The
 * `app` label plays no part (it feeds `*_app` and the canonical service).
 */
export function workloadName(pod: KubeObject): string {
  const meta = obj(pod.body.metadata);
  return podWorkloadName({ name: pod.metadata.name, generateName: str(meta.generateName), labels: pod.metadata.labels, ownerReferences: meta.ownerReferences });
}

/**
 * A WorkloadEntry's workload name (Istio's pkg/kube/labels `WorkloadNameFromWorkloadEntry`): its
 * WorkloadGroup when auto-registered (annotation `istio.io/autoRegistrationGroup`), else the label
 * `service.istio.io/workload-name`, else the entry's name.
 */
export function workloadEntryName(we: KubeObject): string {
  const annotations = we.metadata.annotations;
  if (Object.hasOwn(annotations, AUTO_REGISTRATION_GROUP)) return annotations[AUTO_REGISTRATION_GROUP];
  if (Object.hasOwn(we.metadata.labels, WORKLOAD_NAME_LABEL)) return we.metadata.labels[WORKLOAD_NAME_LABEL];
  return we.metadata.name;
}

/** The pod's IPs: `status.podIPs[].ip`, else `status.podIP`. */
export function podIps(pod: KubeObject): string[] {
  const status = obj(pod.body.status);
  const list = arr(status.podIPs).map((x) => str(obj(x).ip)).filter((x): x is string => x !== undefined && x !== '');
  if (list.length > 0) return [...new Set(list)];
  const one = str(status.podIP);
  return one ? [one] : [];
}

/**
 * One entry per pod IP, then per WorkloadEntry IP address (labels from metadata and spec, name as
 * `workloadEntryName`), sorted by IP; a reused IP keeps the first by
 * namespace/name, pods before WorkloadEntries.
 */
export function meshWorkloads(resources: ResourceSet): MeshWorkload[] {
  const byIp = new Map<string, MeshWorkload>();
  const pods = [...resources.ofKind('Pod')].sort((a, b) => cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name));
  for (const pod of pods) {
    const phase = str(obj(pod.body.status).phase);
    if (phase === 'Succeeded' || phase === 'Failed') continue;
    for (const ip of podIps(pod)) {
      if (byIp.has(ip)) continue;
      const labels = pod.metadata.labels;
      const name = workloadName(pod);
      byIp.set(ip, {
        ip,
        namespace: pod.metadata.namespace,
        name,
        serviceAccount: podServiceAccount(pod),
        app: labels.app ?? '',
        version: labels.version ?? '',
        canonicalService: canonicalServiceName(labels, name),
        canonicalRevision: canonicalServiceRevision(labels),
        meshed: labels[TLS_MODE_LABEL] === 'istio',
      });
    }
  }
  // WorkloadEntries (VMs and other non-Kubernetes workloads) whose address is an IP; a pod's IP wins.
  const entries = [...istioObjects(resources, 'WorkloadEntry')].sort((a, b) => cmp(a.metadata.namespace, b.metadata.namespace) || cmp(a.metadata.name, b.metadata.name));
  for (const we of entries) {
    const spec = obj(we.body.spec);
    const ip = str(spec.address);
    if (!ip || !isIpAddress(ip) || byIp.has(ip)) continue;
    const labels = { ...we.metadata.labels, ...strMap(spec.labels) };
    const name = workloadEntryName(we);
    byIp.set(ip, {
      ip,
      namespace: we.metadata.namespace,
      name,
      serviceAccount: str(spec.serviceAccount) || 'default',
      app: labels.app ?? '',
      version: labels.version ?? '',
      canonicalService: canonicalServiceName(labels, name),
      canonicalRevision: canonicalServiceRevision(labels),
      meshed: labels[TLS_MODE_LABEL] === 'istio',
    });
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
