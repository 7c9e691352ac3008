/**
 * Istio's workload name of a pod, from its metadata alone (pkg/kube/util.go `GetDeployMetaFromPod`),
 * shared by the control plane's views (translate/sidecar/workloads.ts) and injection
 * (mesh/inject/inject.ts, whose template names the workload the same way):
 * - a pod with a generated name (`metadata.generateName`) is named after its controller (the owner
 *   reference with `controller: true`; no other owner counts):
 *   - a ReplicaSet whose name ends with the pod's `pod-template-hash` label: its Deployment (the
 *     name without `-<hash>`); likewise an Argo Rollout's ReplicaSet (`rollouts-pod-template-hash`);
 *   - a ReplicationController of an OpenShift DeploymentConfig: the `deploymentconfig` label;
 *   - a Job named `<name>-<8 to 10 digits>`: its CronJob `<name>`;
 *   - any other controller: its own name;
 * - otherwise (a bare pod, or no controller) the pod's name.
 * The `app` label plays no part. The `service.istio.io/workload-name` override is the caller's.
 */
import { arr, obj, str } from './unknown.js';

/** Istio's override of the derived workload name. */
export const WORKLOAD_NAME_LABEL = 'service.istio.io/workload-name';

/** A Job made by a CronJob: `<cronjob>-<8 to 10 digit schedule time>` (Istio's cronJobNameRegexp). */
const CRONJOB_JOB_NAME = /^(.+)-\d{8,10}$/;

export interface PodNaming {
  name: string;
  generateName?: string;
  labels: Readonly<Record<string, string>>;
  /** `metadata.ownerReferences` as parsed. */
  ownerReferences?: unknown;
}

/** Istio's `GetDeployMetaFromPod` name (without the workload-name override). */
export function podDeployName(pod: PodNaming): string {
  if (pod.generateName === undefined || pod.generateName === '') return pod.name;
  const controller = arr(pod.ownerReferences).map(obj).find((o) => o.controller === true);
  if (controller === undefined) return pod.name;
  const name = str(controller.name) ?? '';
  const kind = str(controller.kind) ?? '';
  const labels = pod.labels;
  let out = name;
  const hash = labels['pod-template-hash'];
  const rolloutHash = labels['rollouts-pod-template-hash'];
  if (kind === 'ReplicaSet' && hash && name.endsWith(hash)) out = trimSuffix(name, `-${hash}`);
  else if (kind === 'ReplicaSet' && rolloutHash && name.endsWith(rolloutHash)) out = trimSuffix(name, `-${rolloutHash}`);
  else if (kind === 'ReplicationController' && labels.deploymentconfig) out = labels.deploymentconfig;
  else if (kind === 'Job') out = CRONJOB_JOB_NAME.exec(name)?.[1] ?? name;
  return out !== '' ? out : pod.name;
}

/** Istio's `GetWorkloadMetaFromPod` name: the `service.istio.io/workload-name` label, else `podDeployName`. */
export function podWorkloadName(pod: PodNaming): string {
  return Object.hasOwn(pod.labels, WORKLOAD_NAME_LABEL) ? pod.labels[WORKLOAD_NAME_LABEL] : podDeployName(pod);
}

function trimSuffix(s: string, suffix: string): string {
  return s.endsWith(suffix) ? s.slice(0, -suffix.length) : s;
}
