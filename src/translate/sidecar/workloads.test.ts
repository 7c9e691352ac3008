/**
 * Workload names and canonical services as Istio derives them: pkg/kube/util.go
 * `GetWorkloadMetaFromPod` / `GetDeployMetaFromPod`, pkg/kube/labels `WorkloadNameFromWorkloadEntry`
 * and `CanonicalService`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../resources/types.js';
import { ResourceSet } from '../../resources/resource-set.js';
import { meshWorkloads, workloadName } from './workloads.js';

interface PodInput {
  name: string;
  generateName?: string;
  labels?: Record<string, string>;
  owners?: { kind: string; name: string; controller?: boolean }[];
  ip?: string;
}

function pod(p: PodInput): KubeObject {
  const labels = p.labels ?? {};
  const metadata: Record<string, unknown> = { name: p.name, namespace: 'shop', labels };
  if (p.generateName !== undefined) metadata.generateName = p.generateName;
  if (p.owners !== undefined) metadata.ownerReferences = p.owners.map((o) => ({ apiVersion: 'apps/v1', uid: 'u', ...o }));
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: p.name, namespace: 'shop', labels, annotations: {}, creationTimestamp: null },
    body: { apiVersion: 'v1', kind: 'Pod', metadata, spec: { serviceAccountName: 'sa' }, status: { phase: 'Running', podIP: p.ip ?? '10.0.0.9' } },
    origin: { file: null, line: null, order: p.name, fieldLines: {} },
  };
}

const cases: { desc: string; input: PodInput; want: string }[] = [
  {
    desc: 'a Deployment pod: the Deployment, not the app label',
    input: { name: 'reviews-v1-7f9c-abcde', generateName: 'reviews-v1-7f9c-', labels: { app: 'reviews', version: 'v1', 'pod-template-hash': '7f9c' }, owners: [{ kind: 'ReplicaSet', name: 'reviews-v1-7f9c', controller: true }] },
    want: 'reviews-v1',
  },
  {
    desc: 'a ReplicaSet whose name does not end with the pod-template-hash: the ReplicaSet',
    input: { name: 'rs-abcde', generateName: 'rs-', labels: { app: 'x', 'pod-template-hash': '7f9c' }, owners: [{ kind: 'ReplicaSet', name: 'standalone-rs', controller: true }] },
    want: 'standalone-rs',
  },
  {
    desc: 'a ReplicaSet without a pod-template-hash label: the ReplicaSet',
    input: { name: 'rs-abcde', generateName: 'rs-', owners: [{ kind: 'ReplicaSet', name: 'web-7f9c', controller: true }] },
    want: 'web-7f9c',
  },
  {
    desc: 'an Argo Rollout pod: the Rollout (rollouts-pod-template-hash)',
    input: { name: 'canary-5d8f-xyz12', generateName: 'canary-5d8f-', labels: { 'rollouts-pod-template-hash': '5d8f' }, owners: [{ kind: 'ReplicaSet', name: 'canary-5d8f', controller: true }] },
    want: 'canary',
  },
  {
    desc: 'an OpenShift DeploymentConfig pod: the deploymentconfig label',
    input: { name: 'frontend-1-abcde', generateName: 'frontend-1-', labels: { deploymentconfig: 'frontend' }, owners: [{ kind: 'ReplicationController', name: 'frontend-1', controller: true }] },
    want: 'frontend',
  },
  {
    desc: 'a CronJob\'s Job (name-<8 to 10 digits>): the CronJob',
    input: { name: 'backup-28123456-q7x2z', generateName: 'backup-28123456-', labels: { app: 'backup' }, owners: [{ kind: 'Job', name: 'backup-28123456', controller: true }] },
    want: 'backup',
  },
  {
    desc: 'a Job whose suffix is not a CronJob schedule time: the Job',
    input: { name: 'migrate-1234-q7x2z', generateName: 'migrate-1234-', owners: [{ kind: 'Job', name: 'migrate-1234', controller: true }] },
    want: 'migrate-1234',
  },
  {
    desc: 'a StatefulSet pod: the StatefulSet',
    input: { name: 'db-0', generateName: 'db-', labels: { app: 'db' }, owners: [{ kind: 'StatefulSet', name: 'db', controller: true }] },
    want: 'db',
  },
  {
    desc: 'a bare pod with an app label: the pod name',
    input: { name: 'sleep', labels: { app: 'curl' } },
    want: 'sleep',
  },
  {
    desc: 'owners but no generated name: the pod name (Istio looks at owners only for generated names)',
    input: { name: 'manual', owners: [{ kind: 'ReplicaSet', name: 'web-7f9c', controller: true }], labels: { 'pod-template-hash': '7f9c' } },
    want: 'manual',
  },
  {
    desc: 'a generated name with an owner that is not the controller: the pod name',
    input: { name: 'web-7f9c-abcde', generateName: 'web-7f9c-', owners: [{ kind: 'ReplicaSet', name: 'web-7f9c' }], labels: { 'pod-template-hash': '7f9c' } },
    want: 'web-7f9c-abcde',
  },
  {
    desc: 'the service.istio.io/workload-name label overrides everything',
    input: { name: 'reviews-v1-7f9c-abcde', generateName: 'reviews-v1-7f9c-', labels: { app: 'reviews', 'pod-template-hash': '7f9c', 'service.istio.io/workload-name': 'reviews-blue' }, owners: [{ kind: 'ReplicaSet', name: 'reviews-v1-7f9c', controller: true }] },
    want: 'reviews-blue',
  },
];

for (const c of cases) {
  test(`workloadName: ${c.desc}`, () => {
    assert.equal(workloadName(pod(c.input)), c.want);
  });
}

test('meshWorkloads: the workload name from the owner; app/version as labelled; canonical service by Istio\'s label order, else the workload name', () => {
  const rs = new ResourceSet([
    pod({ name: 'reviews-v1-7f9c-abcde', generateName: 'reviews-v1-7f9c-', ip: '10.0.0.1', labels: { app: 'reviews', version: 'v1', 'pod-template-hash': '7f9c' }, owners: [{ kind: 'ReplicaSet', name: 'reviews-v1-7f9c', controller: true }] }),
    pod({ name: 'web-0', generateName: 'web-', ip: '10.0.0.2', labels: { app: 'web', 'app.kubernetes.io/name': 'storefront', 'app.kubernetes.io/version': '2.1' }, owners: [{ kind: 'StatefulSet', name: 'web', controller: true }] }),
    pod({ name: 'tool', ip: '10.0.0.3' }),
    pod({ name: 'pinned', ip: '10.0.0.4', labels: { app: 'pinned', 'service.istio.io/canonical-name': 'pin', 'service.istio.io/canonical-revision': 'r7', version: 'v9' } }),
  ]);
  const byIp = Object.fromEntries(meshWorkloads(rs).map((w) => [w.ip, [w.name, w.app, w.version, w.canonicalService, w.canonicalRevision]]));
  assert.deepEqual(byIp, {
    '10.0.0.1': ['reviews-v1', 'reviews', 'v1', 'reviews', 'v1'],
    '10.0.0.2': ['web', 'web', '', 'storefront', '2.1'],
    '10.0.0.3': ['tool', '', '', 'tool', 'latest'],
    '10.0.0.4': ['pinned', 'pinned', 'v9', 'pin', 'r7'],
  });
});

test('meshWorkloads: a WorkloadEntry is named by its auto-registration group, else the workload-name label, else its name (never app)', () => {
  const we = (name: string, ip: string, labels: Record<string, string>, annotations: Record<string, string> = {}): KubeObject => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'WorkloadEntry',
    metadata: { name, namespace: 'vm', labels, annotations, creationTimestamp: null },
    body: { apiVersion: 'networking.istio.io/v1', kind: 'WorkloadEntry', metadata: { name, namespace: 'vm', labels, annotations }, spec: { address: ip, labels: { app: 'legacy' } } },
    origin: { file: null, line: null, order: name, fieldLines: {} },
  });
  const rs = new ResourceSet([
    we('vm-1', '10.1.0.1', {}),
    we('vm-2', '10.1.0.2', { 'service.istio.io/workload-name': 'billing' }),
    we('vm-3', '10.1.0.3', { 'service.istio.io/workload-name': 'billing' }, { 'istio.io/autoRegistrationGroup': 'billing-group' }),
  ]);
  const byIp = Object.fromEntries(meshWorkloads(rs).map((w) => [w.ip, [w.name, w.app, w.canonicalService]]));
  assert.deepEqual(byIp, {
    '10.1.0.1': ['vm-1', 'legacy', 'legacy'],
    '10.1.0.2': ['billing', 'legacy', 'legacy'],
    '10.1.0.3': ['billing-group', 'legacy', 'legacy'],
  });
});
