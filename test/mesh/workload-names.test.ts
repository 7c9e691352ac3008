/**
 * Workload names from the pods' owners, end to end through the control plane's view (translateSidecar)
 * to what each proxy reports: `source_workload`/`destination_workload` on both sides and the peer
 * metadata's `WORKLOAD_NAME`. A pod `reviews-v1-7f9c-xk2p4` of ReplicaSet `reviews-v1-7f9c` (Deployment
 * `reviews-v1`) labelled `app: reviews` is workload `reviews-v1` (Istio's GetWorkloadMetaFromPod),
 * while `*_app` and the canonical service stay `reviews`. The mesh graph's nodes are these labels
 * (control/mesh-graph/graph.ts: `workload/<namespace>/<workload>`).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import { outboundLabels, outboundTelemetryContext } from '../../src/runtime/sidecar/outbound-telemetry.js';
import { inboundLabels } from '../../src/runtime/sidecar/inbound-telemetry.js';
import { localPeerStruct } from '../../src/runtime/sidecar/peer-metadata.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';

const YAML = `
apiVersion: v1
kind: Pod
metadata:
  name: web-5d8f-abcde
  generateName: web-5d8f-
  namespace: shop
  labels: {app: web, pod-template-hash: 5d8f, security.istio.io/tlsMode: istio}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-5d8f, uid: u1, controller: true}]
spec: {serviceAccountName: web, containers: [{name: web, image: web}]}
status: {phase: Running, podIP: 10.0.0.10}
---
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-7f9c-xk2p4
  generateName: reviews-v1-7f9c-
  namespace: shop
  labels: {app: reviews, version: v1, pod-template-hash: 7f9c, security.istio.io/tlsMode: istio}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: reviews-v1-7f9c, uid: u2, controller: true}]
spec: {serviceAccountName: reviews, containers: [{name: app, image: reviews, ports: [{name: http, containerPort: 9080}]}]}
status: {phase: Running, podIP: 10.0.0.21}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  clusterIP: 10.96.0.20
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 9080}]
`;

function views() {
  const objects: KubeObject[] = [];
  const diags: Diagnostic[] = [];
  parseFile('workloads.yaml', YAML, objects, diags);
  const rs = new ResourceSet(checkObjects(objects).accepted);
  const view = (sa: string, podName: string, ip: string) =>
    translateSidecar(rs, { namespace: 'shop', serviceAccount: sa, podName, podIps: [ip], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS).ir;
  return { client: view('web', 'web-5d8f-abcde', '10.0.0.10'), server: view('reviews', 'reviews-v1-7f9c-xk2p4', '10.0.0.21') };
}

test('source side: destination_workload is the Deployment (reviews-v1), destination_app and the canonical service stay the app label', () => {
  const { client } = views();
  const ctx = outboundTelemetryContext(client, 'Kubernetes')!;
  const l = outboundLabels(ctx, 'outbound|9080||reviews.shop.svc.cluster.local', '10.0.0.21:9080');
  assert.deepEqual(
    [l.source_workload, l.source_app, l.source_canonical_service, l.destination_workload, l.destination_app, l.destination_canonical_service, l.destination_canonical_revision],
    ['web', 'web', 'web', 'reviews-v1', 'reviews', 'reviews', 'v1'],
  );
});

test('destination side: source_workload web, destination_workload reviews-v1', () => {
  const { server } = views();
  const view = server.sidecar!;
  const ctx = { proxy: view.proxy, workloadsByIp: new Map(view.workloads.map((w) => [w.ip, w])), clusterId: 'Kubernetes' };
  const l = inboundLabels(ctx, { host: 'reviews.shop.svc.cluster.local', name: 'reviews', namespace: 'shop' }, '10.0.0.10', 'spiffe://cluster.local/ns/shop/sa/web');
  assert.deepEqual(
    [l.source_workload, l.source_canonical_service, l.destination_workload, l.destination_app, l.destination_canonical_service],
    ['web', 'web', 'reviews-v1', 'reviews', 'reviews'],
  );
});

test('peer metadata: WORKLOAD_NAME is the Deployment, the canonical-name label the app', () => {
  const { server } = views();
  const s = localPeerStruct(server.sidecar!.proxy, 'Kubernetes');
  assert.equal(s.WORKLOAD_NAME, 'reviews-v1');
  assert.equal(s.NAME, 'reviews-v1-7f9c-xk2p4');
  assert.deepEqual(s.LABELS, { 'service.istio.io/canonical-name': 'reviews', 'service.istio.io/canonical-revision': 'v1', app: 'reviews', version: 'v1' });
});
