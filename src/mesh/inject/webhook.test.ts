import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { loadOrCreateCaDirectory, MeshCa } from '../ca/ca.js';
import { Logger } from '../../lib/log.js';
import { DEFAULT_INJECT_OPTIONS, injectManifests, INIT_CONTAINER, PROXY_CONTAINER, STATUS_ANNOTATION } from './inject.js';
import { reviewAdmission, startInjectionWebhook, WEBHOOK_PATH, type AdmissionResponse } from './webhook.js';

type Obj = Record<string, unknown>;

/** RFC 6902 `add` on object members (what the webhook emits), applied to a copy. */
function applyPatch(doc: Obj, patchB64: string): Obj {
  const out = structuredClone(doc);
  const ops = JSON.parse(Buffer.from(patchB64, 'base64').toString('utf8')) as { op: string; path: string; value: unknown }[];
  for (const op of ops) {
    assert.equal(op.op, 'add', `unexpected op ${op.op}`);
    const parts = op.path.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    let cur = out;
    for (const p of parts.slice(0, -1)) cur = (cur[p] ??= {}) as Obj;
    cur[parts[parts.length - 1]] = op.value;
  }
  return out;
}

const pod = (meta: Obj = {}, spec: Obj = {}): Obj => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { generateName: 'reviews-v1-6d8f9c-', labels: { app: 'reviews', version: 'v1' }, ...meta },
  spec: { containers: [{ name: 'app', image: 'reviews:1', ports: [{ containerPort: 9080 }] }], ...spec },
});

const review = (object: unknown, extra: Obj = {}): Obj => ({
  apiVersion: 'admission.k8s.io/v1',
  kind: 'AdmissionReview',
  request: { uid: 'u-1', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'bookinfo', object, ...extra },
});

test('a Pod CREATE is answered with a patch that makes it what `meshgate inject` makes of it', () => {
  const p = pod();
  const r = reviewAdmission(review(p), DEFAULT_INJECT_OPTIONS).response;
  assert.equal(r.uid, 'u-1');
  assert.equal(r.allowed, true);
  assert.equal(r.patchType, 'JSONPatch');
  const patched = applyPatch(p, r.patch!);
  const expected = parse(injectManifests(JSON.stringify({ ...p, metadata: { ...(p.metadata as Obj), namespace: 'bookinfo' } }), DEFAULT_INJECT_OPTIONS).output) as Obj;
  assert.deepEqual(patched.spec, expected.spec);
  assert.deepEqual((patched.metadata as Obj).labels, (expected.metadata as Obj).labels);
  const spec = patched.spec as { initContainers: { name: string }[]; containers: { name: string; args?: string[] }[] };
  assert.deepEqual(spec.initContainers.map((c) => c.name), [INIT_CONTAINER]);
  assert.deepEqual(spec.containers.map((c) => c.name), ['app', PROXY_CONTAINER]);
  assert.ok(((patched.metadata as Obj).annotations as Obj)[STATUS_ANNOTATION] !== undefined);
  assert.equal(((patched.metadata as Obj).labels as Obj)['security.istio.io/tlsMode'], 'istio');
  // The workload name comes from generateName (the Pod has no name yet at admission).
  assert.equal(((patched.metadata as Obj).labels as Obj)['service.istio.io/canonical-name'], 'reviews');
  assert.equal((patched.metadata as Obj).name, undefined, 'the patch never sets a name');
});

test('opted-out, host-network and already-injected Pods are allowed unchanged; other kinds and operations too', () => {
  const none = (o: Obj, extra: Obj = {}) => reviewAdmission(review(o, extra), DEFAULT_INJECT_OPTIONS).response;
  for (const r of [
    none(pod({ annotations: { 'sidecar.istio.io/inject': 'false' } })),
    none(pod({ labels: { app: 'x', 'sidecar.istio.io/inject': 'false' } })),
    none(pod({}, { hostNetwork: true })),
    none(pod(), { operation: 'UPDATE' }),
    none({ apiVersion: 'v1', kind: 'ConfigMap' }, { kind: { group: '', version: 'v1', kind: 'ConfigMap' } }),
  ]) {
    assert.equal(r.allowed, true);
    assert.equal(r.patch, undefined);
  }
  // Injected once: a second review of the result adds nothing.
  const first = pod();
  const injected = applyPatch(first, reviewAdmission(review(first), DEFAULT_INJECT_OPTIONS).response.patch!);
  const again = reviewAdmission(review(injected), DEFAULT_INJECT_OPTIONS).response;
  assert.equal(again.allowed, true);
  assert.equal(again.patch, undefined);
});

test('an unreadable review or Pod is refused with the reason', () => {
  assert.equal(reviewAdmission({ nope: 1 }, DEFAULT_INJECT_OPTIONS).response.allowed, false);
  const r = reviewAdmission(review('not a pod'), DEFAULT_INJECT_OPTIONS).response;
  assert.equal(r.allowed, false);
  assert.match(r.status!.message, /no Pod object/);
  const bad = reviewAdmission(review(pod({ annotations: { 'traffic.sidecar.istio.io/excludeOutboundPorts': 'eighty' } })), DEFAULT_INJECT_OPTIONS).response;
  assert.equal(bad.allowed, false);
  assert.match(bad.status!.message, /excludeOutboundPorts/);
});

test('the webhook answers over HTTPS with a mesh-CA certificate for the control Service name', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-webhook-'));
  const ca = new MeshCa(await loadOrCreateCaDirectory(dir, { trustDomain: 'cluster.local' }));
  const hook = await startInjectionWebhook({ host: '127.0.0.1', port: 0, ca: () => ca, dnsNames: ['meshgate-control.istio-system.svc'], inject: DEFAULT_INJECT_OPTIONS, log: new Logger('error') });
  try {
    const post = (pathName: string, body: string) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        const req = https.request({ host: '127.0.0.1', port: hook.port, method: 'POST', path: pathName, ca: ca.rootCertPem, servername: 'meshgate-control.istio-system.svc', headers: { 'content-type': 'application/json' } }, (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
        });
        req.on('error', reject);
        req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
        req.end(body);
      });
    const ok = await post(`${WEBHOOK_PATH}?timeout=10s`, JSON.stringify(review(pod())));
    assert.equal(ok.status, 200);
    const answer = JSON.parse(ok.body) as AdmissionResponse;
    assert.equal(answer.kind, 'AdmissionReview');
    assert.equal(answer.response.uid, 'u-1');
    assert.equal(answer.response.allowed, true);
    assert.ok(answer.response.patch);
    assert.equal((await post(WEBHOOK_PATH, '{not json')).status, 400);
    assert.equal((await post('/other', '{}')).status, 404);
  } finally {
    await hook.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
