/**
 * `meshgate control --kubernetes` as the sidecar injector, against the fake API server: the
 * MutatingWebhookConfiguration of deploy/mesh-control.yaml gets the mesh root as its caBundle, and
 * the webhook, verified with that caBundle as the API server would, answers a Pod's AdmissionReview
 * with the injection patch.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { DEFAULT_RESOURCES } from './fake-api-server.js';
import { REAL, startCluster } from './harness.js';
import { CLI, freePort } from '../helpers/gateway.js';

const DEPLOY = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../deploy/mesh-control.yaml');

test('control keeps the injector caBundle and serves the injection webhook', { skip: REAL ? 'needs the fake API server (it writes a cluster-scoped webhook configuration)' : false, timeout: 60_000 }, async () => {
  const cluster = await startCluster({
    resources: [...DEFAULT_RESOURCES, { group: 'admissionregistration.k8s.io', versions: ['v1'], resource: 'mutatingwebhookconfigurations', kind: 'MutatingWebhookConfiguration', namespaced: false }],
    tokenReview: () => ({ authenticated: false, error: 'no tokens in this test' }),
  });
  const config = parseAllDocuments(readFileSync(DEPLOY, 'utf8'))
    .map((d) => d.toJS() as Record<string, unknown>)
    .find((d) => d.kind === 'MutatingWebhookConfiguration')!;
  await cluster.apply(config);
  const [grpcPort, adminPort, webhookPort] = [await freePort(), await freePort(), await freePort()];
  const proc = spawn(process.execPath, [CLI, 'control', '--kubernetes', '--kubeconfig', cluster.kubeconfig, '--listen', `127.0.0.1:${grpcPort}`, '--admin-port', String(adminPort), '--webhook-port', String(webhookPort), '--inject-image', 'registry.example/meshgate:9', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  try {
    // The caBundle of every webhook becomes the mesh root (istio-ca-secret, created by control).
    let bundle = '';
    const deadline = Date.now() + 30_000;
    for (;;) {
      const cur = (await cluster.get({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'meshgate-sidecar-injector' } })) as { webhooks: { clientConfig: { caBundle?: string } }[] } | null;
      const bundles = new Set((cur?.webhooks ?? []).map((w) => w.clientConfig.caBundle ?? ''));
      if (bundles.size === 1 && !bundles.has('')) {
        bundle = [...bundles][0];
        break;
      }
      assert.ok(Date.now() < deadline, `caBundle never set; control output:\n${out}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const root = Buffer.from(bundle, 'base64').toString('utf8');
    const secret = (await cluster.get({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'istio-ca-secret', namespace: 'istio-system' } })) as { data: Record<string, string> };
    assert.equal(root, Buffer.from(secret.data['ca-cert.pem'], 'base64').toString('utf8'), 'the caBundle is the mesh root');
    // The API server's call: the Service name, verified against the caBundle.
    const review = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: 'r-7', kind: { group: '', version: 'v1', kind: 'Pod' }, operation: 'CREATE', namespace: 'shop', object: { apiVersion: 'v1', kind: 'Pod', metadata: { generateName: 'cart-5f6d-', labels: { app: 'cart' } }, spec: { containers: [{ name: 'cart', image: 'cart:1' }] } } } };
    const answer = await new Promise<{ response: { uid: string; allowed: boolean; patch?: string } }>((resolve, reject) => {
      const req = https.request({ host: '127.0.0.1', port: webhookPort, method: 'POST', path: '/inject?timeout=10s', ca: root, servername: 'istiod.istio-system.svc', headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => (res.statusCode === 200 ? resolve(JSON.parse(text)) : reject(new Error(`HTTP ${res.statusCode}: ${text}`))));
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.end(JSON.stringify(review));
    });
    assert.equal(answer.response.uid, 'r-7');
    assert.equal(answer.response.allowed, true);
    const ops = JSON.parse(Buffer.from(answer.response.patch!, 'base64').toString('utf8')) as { path: string; value: { containers?: { name: string; image: string }[]; initContainers?: { name: string }[] } }[];
    const spec = ops.find((o) => o.path === '/spec')!.value;
    assert.deepEqual(spec.containers!.map((c) => c.name), ['cart', 'istio-proxy']);
    assert.equal(spec.containers![1].image, 'registry.example/meshgate:9');
    assert.deepEqual(spec.initContainers!.map((c) => c.name), ['istio-init']);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
    await cluster.close();
  }
});
