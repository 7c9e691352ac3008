import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar, type SidecarProxyMeta } from '../../src/translate/sidecar/index.js';
import { SidecarViewCache } from '../../src/translate/sidecar/view-cache.js';

const YAML = `
apiVersion: v1
kind: Pod
metadata: {name: reviews-a, generateName: reviews-v1-7f9c-, namespace: default, labels: {app: reviews, version: v1, pod-template-hash: 7f9c, security.istio.io/tlsMode: istio}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: reviews-v1-7f9c, uid: rs-1, controller: true}]}
spec: {serviceAccountName: reviews, containers: [{name: app, image: x, ports: [{name: http, containerPort: 9080}]}]}
status: {phase: Running, podIP: 10.0.0.21}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-b, generateName: reviews-v1-7f9c-, namespace: default, labels: {app: reviews, version: v1, pod-template-hash: 7f9c, security.istio.io/tlsMode: istio}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: reviews-v1-7f9c, uid: rs-1, controller: true}]}
spec: {serviceAccountName: reviews, containers: [{name: app, image: x, ports: [{name: http, containerPort: 9080}]}]}
status: {phase: Running, podIP: 10.0.0.22}
---
apiVersion: v1
kind: Pod
metadata: {name: reviews-v2, namespace: default, labels: {app: reviews, version: v2, security.istio.io/tlsMode: istio}}
spec: {serviceAccountName: reviews, containers: [{name: app, image: x, ports: [{name: http, containerPort: 9080}]}]}
status: {phase: Running, podIP: 10.0.0.23}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.20
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: http}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {version: v2}}]
    route: [{destination: {host: reviews}}]
    timeout: 3s
  - route: [{destination: {host: reviews}}]
`;

function resources(yaml = YAML): ResourceSet {
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  parseFile('test.yaml', yaml, objects, diagnostics);
  assert.deepEqual(diagnostics.filter((d) => d.severity === 'error'), []);
  const checked = checkObjects(objects);
  assert.deepEqual(checked.diagnostics.filter((d) => d.severity === 'error'), []);
  return new ResourceSet(checked.accepted);
}

const proxy = (podName: string, ip: string): SidecarProxyMeta => ({ namespace: 'default', serviceAccount: 'reviews', podName, podIps: [ip], trustDomain: 'cluster.local' });
const A = proxy('reviews-a', '10.0.0.21');
const B = proxy('reviews-b', '10.0.0.22');
const V2 = proxy('reviews-v2', '10.0.0.23');
const options = { ...DEFAULT_TRANSLATE_OPTIONS };
const withoutVersion = (ir: IRSnapshot) => JSON.stringify({ ...ir, version: '' });

test('pods of one Deployment share one view computation; each gets its own view, equal to translateSidecar but for the version', () => {
  const rs = resources();
  const cache = new SidecarViewCache();
  const a = cache.translate(rs, A, options);
  const b = cache.translate(rs, B, options);
  assert.deepEqual(cache.stats, { computed: 1, served: 2 });
  for (const [meta, got] of [[A, a], [B, b]] as const) {
    const direct = translateSidecar(rs, meta, options);
    assert.equal(withoutVersion(got.ir), withoutVersion(direct.ir), `${meta.podName}: the view differs from translateSidecar's`);
    assert.equal(got.json.toString(), JSON.stringify(got.ir), `${meta.podName}: the JSON is not the view's`);
    assert.deepEqual(got.diagnostics, direct.diagnostics);
  }
  assert.equal(b.ir.sidecar!.proxy.podName, 'reviews-b');
  assert.deepEqual(b.ir.clusters.find((c) => c.name.startsWith('inbound|'))!.endpoints.map((e) => e.address), ['10.0.0.22']);
  assert.notEqual(a.ir.version, b.ir.version);
});

test('other labels (a sourceLabels route applies) make another group', () => {
  const rs = resources();
  const cache = new SidecarViewCache();
  cache.translate(rs, A, options);
  const v2 = cache.translate(rs, V2, options);
  assert.equal(cache.stats.computed, 2);
  assert.equal(withoutVersion(v2.ir), withoutVersion(translateSidecar(rs, V2, options).ir));
});

test('versions do not depend on which pod of the group came first, nor on a reload with the same content', () => {
  const first = new SidecarViewCache();
  const va = first.translate(resources(), A, options).ir.version;
  const vb = first.translate(resources(), B, options).ir.version;
  const second = new SidecarViewCache();
  const rs = resources();
  assert.equal(second.translate(rs, B, options).ir.version, vb);
  assert.equal(second.translate(rs, A, options).ir.version, va);
  // A change only other workloads see (the v2 pods' sourceLabels route) keeps the version: nothing to push.
  const elsewhere = resources(YAML.replace('timeout: 3s', 'timeout: 4s'));
  assert.equal(second.translate(elsewhere, A, options).ir.version, va);
  assert.notEqual(second.translate(elsewhere, V2, options).ir.version, new SidecarViewCache().translate(resources(), V2, options).ir.version);
  // A change the group sees gives new versions.
  const changed = resources(`${YAML.trimEnd()}\n    timeout: 5s\n`);
  assert.notEqual(second.translate(changed, A, options).ir.version, va);
});

test('a proxy whose Pod is unknown is translated directly', () => {
  const rs = resources();
  const cache = new SidecarViewCache();
  const ghost = proxy('ghost', '10.9.9.9');
  const out = cache.translate(rs, ghost, options);
  assert.equal(out.ir.version, translateSidecar(rs, ghost, options).ir.version);
  assert.ok(out.diagnostics.some((d) => d.reason === 'MG_NOT_BOUND'));
  assert.equal(out.json.toString(), JSON.stringify(out.ir));
});
