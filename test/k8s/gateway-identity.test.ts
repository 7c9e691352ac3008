/**
 * `meshgate run --kubernetes` is the gateway workload (#12): its own Pod's labels (GET of
 * POD_NAMESPACE/POD_NAME, no downward API file here) decide which Istio Gateways apply, and Gateway
 * `credentialName` Secrets are read from its own namespace, never the Gateway's.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import { CLI, freePort, tempDir } from '../helpers/gateway.js';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { generatePkiSync } from '../support/x509-gen.js';
import { FakeApiServer } from './fake-api-server.js';
import { endpointSlice, eventually, service } from './harness.js';

const b64 = (s: string) => Buffer.from(s).toString('base64');

test('run --kubernetes: the Helm chart labels of its own Pod select the Gateway; credentials come from the pod namespace', { timeout: 90_000 }, async () => {
  const fake = await FakeApiServer.start();
  const backend = await startEchoServer({ name: 'k8s-identity', host: '127.0.0.1', port: 0 });
  const kubeconfig = fake.writeKubeconfig(path.join(tempDir('meshgate-k8s-identity-'), 'kubeconfig'));
  const { certs } = generatePkiSync([
    { name: 'ca', ca: true },
    { name: 'good', issuer: 'ca', dns: ['id.example.com'], eku: ['serverAuth'] },
    { name: 'decoy-ca', ca: true },
    { name: 'decoy', issuer: 'decoy-ca', dns: ['id.example.com'], eku: ['serverAuth'] },
  ]);
  const secret = (ns: string, p: { cert: string; key: string }) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'id-cred', namespace: ns }, type: 'kubernetes.io/tls', data: { 'tls.crt': b64(p.cert), 'tls.key': b64(p.key) } });
  for (const ns of ['apps', 'gw-ns']) fake.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } });
  // This pod, as the Helm gateway chart labels it (not Istio's default ingress labels).
  fake.apply({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'meshgate-0', namespace: 'gw-ns', labels: { app: 'istio-ingress', istio: 'ingress' } }, spec: { containers: [{ name: 'meshgate' }] }, status: { phase: 'Running', podIP: '10.9.9.9' } });
  fake.apply(secret('gw-ns', certs.good));
  fake.apply(secret('apps', certs.decoy));
  fake.apply(service('apps', 'web', backend.port));
  fake.apply(endpointSlice('apps', 'web', backend.port, '127.0.0.1'));
  fake.apply({
    apiVersion: 'networking.istio.io/v1',
    kind: 'Gateway',
    metadata: { name: 'gw', namespace: 'apps' },
    spec: { selector: { istio: 'ingress' }, servers: [{ port: { number: 443, name: 'https', protocol: 'HTTPS' }, hosts: ['id.example.com'], tls: { mode: 'SIMPLE', credentialName: 'id-cred' } }] },
  });
  fake.apply({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'web', namespace: 'apps' }, spec: { hosts: ['id.example.com'], gateways: ['gw'], http: [{ route: [{ destination: { host: 'web', port: { number: 80 } } }] }] } });
  const [httpPort, httpsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const args = [CLI, 'run', '--kubernetes', '--kubeconfig', kubeconfig, '--namespace', 'gw-ns', '--workers', '0', '--bind-address', '127.0.0.1', '--http-port', String(httpPort), '--https-port', String(httpsPort), '--port-map', `443=${httpsPort}`, '--admin-port', String(adminPort), '--health-port', '0'];
  const env = { ...process.env, POD_NAME: 'meshgate-0', POD_NAMESPACE: 'gw-ns', MESHGATE_POD_LABELS_FILE: path.join(tempDir('meshgate-no-podinfo-'), 'labels') };
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
  let output = '';
  proc.stdout.on('data', (c) => (output += c));
  proc.stderr.on('data', (c) => (output += c));
  const get = () =>
    new Promise<number>((resolve) => {
      const req = https.request({ host: '127.0.0.1', port: httpsPort, servername: 'id.example.com', path: '/', headers: { host: 'id.example.com' }, ca: certs.ca.cert, agent: false, timeout: 2000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(0));
      req.end();
    });
  try {
    await eventually('HTTPS served with the pod-namespace certificate', async () => ((await get()) === 200 ? true : null), 30_000).catch((e: Error) => assert.fail(`${e.message}\n${output}`));
    assert.match(output, /"gateway labels".*"istio":"ingress".*"from":"pod gw-ns\/meshgate-0"/);
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    await backend.close();
    await fake.close();
  }
});
