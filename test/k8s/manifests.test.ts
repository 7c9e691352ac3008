/**
 * deploy/ is valid and consistent: every document parses and validates against the Kubernetes API's
 * JSON schemas (kubernetes-models), has no field the API does not know (the field lists of
 * @kubernetes/client-node's models), and the pieces fit together: labels the Service, PDB and
 * anti-affinity select are on the pod template, RBAC covers every kind the source reads and every
 * write meshgate makes, the container's arguments parse, probes hit the admin port, and the CRDs
 * match what the source asks discovery for.
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import * as k8s from '@kubernetes/client-node';
import { WATCHED } from '../../src/providers/kubernetes/kinds.js';
import { KINDS, checkObject } from '../../src/api/kinds.js';
import { parseRunOptions } from '../../src/cli/main.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';

type Obj = Record<string, any>;

const DEPLOY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../deploy');
const require = createRequire(import.meta.url);

const docs: { file: string; doc: Obj }[] = readdirSync(DEPLOY)
  .filter((f) => f.endsWith('.yaml'))
  .sort()
  .flatMap((file) =>
    parseAllDocuments(readFileSync(path.join(DEPLOY, file), 'utf8')).map((d) => {
      assert.deepEqual(d.errors, [], `${file}: YAML errors`);
      return { file, doc: d.toJS() as Obj };
    }),
  );

const find = (kind: string, name?: string) => docs.map((d) => d.doc).filter((d) => d.kind === kind && (name === undefined || d.metadata.name === name));
const one = (kind: string, name?: string) => {
  const found = find(kind, name);
  assert.equal(found.length, 1, `expected one ${kind} ${name ?? ''}, found ${found.length}`);
  return found[0];
};

test('every document has apiVersion, kind and metadata.name', () => {
  assert.ok(docs.length >= 14, `only ${docs.length} documents`);
  for (const { file, doc } of docs) {
    assert.equal(typeof doc.apiVersion, 'string', `${file}: apiVersion`);
    assert.equal(typeof doc.kind, 'string', `${file}: kind`);
    assert.equal(typeof doc.metadata?.name, 'string', `${file}: metadata.name`);
  }
});

test('every document validates against the Kubernetes JSON schema (kubernetes-models)', () => {
  for (const { file, doc } of docs) {
    const [group, version] = doc.apiVersion.includes('/') ? doc.apiVersion.split('/') : ['', doc.apiVersion];
    if (group === 'gateway.networking.k8s.io') {
      // No kubernetes-models schema for Gateway API: meshgate's own (src/api/gatewayapi) checks it.
      const o = { apiVersion: doc.apiVersion, kind: doc.kind, metadata: { name: doc.metadata.name, namespace: '', labels: {}, annotations: {}, creationTimestamp: null }, body: doc, origin: { file, line: null, order: '', fieldLines: {} } };
      assert.deepEqual(checkObject(o), [], `${file}: ${doc.kind}/${doc.metadata.name} is invalid`);
      continue;
    }
    const mod = require(`kubernetes-models/${group ? `${group}/` : ''}${version}/${doc.kind}`) as Record<string, new (o: Obj) => { validate(): void }>;
    const Model = mod[doc.kind];
    assert.ok(Model, `${file}: no schema for ${doc.apiVersion} ${doc.kind}`);
    assert.doesNotThrow(() => new Model(doc).validate(), `${file}: ${doc.kind}/${doc.metadata.name} is invalid`);
  }
});

test('the schema check rejects what it should (a wrong type, a missing required field)', () => {
  const { Deployment } = require('kubernetes-models/apps/v1/Deployment') as { Deployment: new (o: Obj) => { validate(): void } };
  const good = one('Deployment', 'meshgate');
  assert.throws(() => new Deployment({ ...good, spec: { ...good.spec, replicas: 'two' } }).validate());
  assert.throws(() => new Deployment({ ...good, spec: { ...good.spec, selector: undefined } }).validate());
});

/** Field names the API does not know, found by walking @kubernetes/client-node's attributeTypeMaps. */
function unknownFields(value: unknown, type: string, at: string, out: string[]): void {
  if (value === null || value === undefined) return;
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return void (Array.isArray(value) && value.forEach((v, i) => unknownFields(v, array[1], `${at}[${i}]`, out)));
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return void Object.entries(value as Obj).forEach(([k, v]) => unknownFields(v, map[1], `${at}.${k}`, out));
  const model = (k8s as unknown as Record<string, { attributeTypeMap?: { baseName: string; type: string }[] }>)[type];
  if (!model?.attributeTypeMap || typeof value !== 'object') return;
  // JSONSchemaProps under x-kubernetes-preserve-unknown-fields is open by design.
  const fields = new Map(model.attributeTypeMap.map((a) => [a.baseName, a.type]));
  for (const [k, v] of Object.entries(value as Obj)) {
    const t = fields.get(k);
    if (t === undefined) out.push(`${at}.${k}`);
    else unknownFields(v, t, `${at}.${k}`, out);
  }
}

test('no document has a field the Kubernetes API does not know (client-node models)', () => {
  for (const { file, doc } of docs) {
    const out: string[] = [];
    const version = doc.apiVersion.split('/').at(-1) as string;
    unknownFields(doc, `${version[0].toUpperCase()}${version.slice(1)}${doc.kind}`, doc.kind, out);
    assert.deepEqual(out, [], `${file}: unknown fields`);
  }
  const probe: string[] = [];
  unknownFields({ spec: { replicas: 1, replicaz: 2 } }, 'V1Deployment', 'Deployment', probe);
  assert.deepEqual(probe, ['Deployment.spec.replicaz']);
});

test('the Deployment: 2 replicas, its ServiceAccount, probes and Prometheus on the health port, args that parse, non-root', () => {
  const dep = one('Deployment', 'meshgate');
  const pod = dep.spec.template.spec;
  const labels = dep.spec.template.metadata.labels;
  assert.equal(dep.spec.replicas, 2);
  one('ServiceAccount', pod.serviceAccountName);
  const c = pod.containers[0];
  // The admin server binds 127.0.0.1: kubelet cannot reach it; probes use the health port.
  const status = c.ports.find((p: Obj) => p.name === 'status-port');
  assert.equal(status.containerPort, 15021);
  assert.ok(!c.ports.some((p: Obj) => p.name === 'admin'), 'the admin port is loopback-only; do not publish it');
  assert.deepEqual([c.readinessProbe.httpGet.path, c.readinessProbe.httpGet.port], ['/healthz/ready', 'status-port']);
  assert.deepEqual([c.livenessProbe.httpGet.path, c.livenessProbe.httpGet.port], ['/healthz', 'status-port']);
  const ann = dep.spec.template.metadata.annotations;
  assert.deepEqual([ann['prometheus.io/port'], ann['prometheus.io/path']], ['15021', '/stats/prometheus']);
  assert.ok(c.resources.requests.cpu && c.resources.requests.memory && c.resources.limits.memory);
  assert.ok(pod.terminationGracePeriodSeconds >= 10);
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(c.securityContext.readOnlyRootFilesystem, true);
  assert.equal(c.securityContext.allowPrivilegeEscalation, false);
  assert.equal(c.args[0], 'run');
  const opts = parseRunOptions(c.args.slice(1));
  assert.deepEqual(opts.kubernetes?.publish, { service: { namespace: 'meshgate-system', name: 'meshgate' } });
  assert.equal(opts.healthPort, status.containerPort);
  assert.equal(opts.adminAddress, '127.0.0.1');
  assert.deepEqual(c.ports.filter((p: Obj) => p.name !== 'status-port').map((p: Obj) => p.containerPort), [opts.translate.httpPort, opts.translate.httpsPort]);
  for (const [what, sel] of [
    ['Deployment selector', dep.spec.selector.matchLabels],
    ['anti-affinity', pod.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.labelSelector.matchLabels],
    ['Service selector', one('Service', 'meshgate').spec.selector],
    ['PDB selector', one('PodDisruptionBudget', 'meshgate').spec.selector.matchLabels],
  ] as const) {
    for (const [k, v] of Object.entries(sel as Obj)) assert.equal(labels[k], v, `${what} selects ${k}=${String(v)}, which the pod template does not carry`);
  }
  // The Istio Gateway selector meshgate answers to by default.
  for (const [k, v] of Object.entries(DEFAULT_TRANSLATE_OPTIONS.gatewayLabels)) assert.equal(labels[k], v);
  // meshgate reads its own labels from the downward API file (src/cli/pod-labels.ts).
  const podinfo = pod.volumes.find((v: Obj) => v.downwardAPI);
  assert.ok(podinfo, 'no downward API volume for the pod labels');
  assert.deepEqual(podinfo.downwardAPI.items, [{ path: 'labels', fieldRef: { fieldPath: 'metadata.labels' } }]);
  assert.ok(c.volumeMounts.some((m: Obj) => m.name === podinfo.name && m.mountPath === '/etc/podinfo'));
});

test('the Service: LoadBalancer, 80 -> http (8080), 443 -> https (8443); the IngressClass is ours', () => {
  const svc = one('Service', 'meshgate');
  assert.equal(svc.spec.type, 'LoadBalancer');
  assert.deepEqual(svc.spec.ports.map((p: Obj) => `${p.port}->${p.targetPort}`), ['80->http', '443->https']);
  assert.equal(one('IngressClass', 'meshgate').spec.controller, DEFAULT_TRANSLATE_OPTIONS.controllerName);
  assert.equal(one('Namespace', 'meshgate-system').metadata.name, 'meshgate-system');
});

function allows(rules: Obj[], group: string, resource: string, verbs: string[]): boolean {
  return verbs.every((verb) => rules.some((r) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb)));
}

test('RBAC covers every kind the source reads and every write, and binds the ServiceAccount', () => {
  const rules = one('ClusterRole', 'meshgate').rules as Obj[];
  for (const r of WATCHED) assert.ok(allows(rules, r.group, r.resource, ['list', 'watch']), `no list/watch on ${r.group}/${r.resource}`);
  assert.ok(allows(rules, '', 'secrets', ['get', 'list', 'watch']));
  assert.ok(allows(rules, 'networking.k8s.io', 'ingresses/status', ['update']));
  assert.ok(allows(rules, 'networking.k8s.io', 'ingresses', ['get']));
  assert.ok(allows(rules, 'events.k8s.io', 'events', ['create', 'patch']));
  for (const r of WATCHED.filter((w) => w.group === 'gateway.networking.k8s.io' && w.kind !== 'ReferenceGrant')) {
    assert.ok(allows(rules, r.group, `${r.resource}/status`, ['update']), `no update on ${r.resource}/status`);
    assert.ok(allows(rules, r.group, r.resource, ['get']), `no get on ${r.resource}`);
  }
  assert.ok(!rules.some((r) => r.verbs.includes('*') || r.resources.includes('*')), 'wildcards in the ClusterRole');
  const role = one('Role', 'meshgate-leader-election');
  assert.equal(role.metadata.namespace, 'meshgate-system');
  assert.ok(allows(role.rules, 'coordination.k8s.io', 'leases', ['get', 'create', 'update']));
  for (const binding of [...find('ClusterRoleBinding'), ...find('RoleBinding')]) {
    one(binding.roleRef.kind, binding.roleRef.name);
    for (const s of binding.subjects) assert.equal(find('ServiceAccount', s.name).filter((sa) => sa.metadata.namespace === s.namespace).length, 1, `${binding.metadata.name}: no ServiceAccount ${s.namespace}/${s.name}`);
  }
});

test('the source watches every kind meshgate reads (api/kinds.ts), Secrets and ConfigMaps apart', () => {
  const watched = new Set(WATCHED.map((r) => `${r.group}/${r.kind}`));
  // ConfigMap (Istio MeshConfig) is read from directory configs only so far (issue 5).
  for (const k of KINDS) if (k.kind !== 'Secret' && k.kind !== 'ConfigMap') assert.ok(watched.has(`${k.group}/${k.kind}`), `${k.group}/${k.kind} is read but not watched (src/providers/kubernetes/kinds.ts)`);
});

test('the CRDs are the Istio kinds the source watches, with Istio\'s names and versions', () => {
  // Gateway API CRDs are not shipped: users install the upstream standard channel (README).
  const istio = WATCHED.filter((r) => !r.builtin && r.group !== 'gateway.networking.k8s.io');
  assert.deepEqual(find('CustomResourceDefinition').map((c) => c.metadata.name).sort(), istio.map((r) => `${r.resource}.${r.group}`).sort());
  for (const r of istio) {
    const crd = one('CustomResourceDefinition', `${r.resource}.${r.group}`);
    assert.equal(crd.spec.names.kind, r.kind);
    assert.equal(crd.spec.group, r.group);
    assert.equal(crd.spec.scope, 'Namespaced');
    const versions = crd.spec.versions as Obj[];
    for (const v of r.versions) assert.ok(versions.some((x) => x.name === v && x.served), `${r.kind} ${v} not served`);
    assert.deepEqual(versions.filter((x) => x.storage).map((x) => x.name), ['v1']);
  }
});

test('the Dockerfile: node:20-slim, npm ci, build, non-root', () => {
  const text = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
  assert.match(text, /^FROM node:20-slim AS build$/m);
  assert.match(text, /npm ci/);
  assert.match(text, /tsc -p tsconfig.json/);
  assert.match(text, /^USER 10001:10001$/m);
  // The capture init container of injected pods runs iptables-restore and ip from this image.
  assert.match(text, /apt-get install[^\n]*\biptables\b[^\n]*\biproute2\b/);
  assert.equal(one('Deployment', 'meshgate').spec.template.spec.securityContext.runAsUser, 10001);
});

test('the Dockerfile: bin/meshgate is the entrypoint (a sidecar container keeps one process, the proxy)', () => {
  const text = readFileSync(path.join(DEPLOY, 'Dockerfile'), 'utf8');
  assert.match(text, /^COPY bin \.\/bin$/m);
  assert.match(text, /^ENTRYPOINT \["\/app\/bin\/meshgate"\]$/m);
});
