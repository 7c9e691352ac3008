/**
 * `meshgate run --kubernetes` as a user runs it: a child process with a kubeconfig pointing at the
 * fake API server serves an Ingress and publishes its status; flag errors exit 2 with one line. Also
 * the small pure pieces: flag parsing, the default namespace, backoff, Secret references, conversion.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { CLI, freePort, tempDir } from '../helpers/gateway.js';
import { request } from '../support/http-client.js';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { defaultNamespace, parseKubernetesOptions } from '../../src/cli/kubernetes.js';
import { Backoff } from '../../src/providers/kubernetes/backoff.js';
import { referencedSecrets } from '../../src/providers/kubernetes/secret-refs.js';
import { toKubeObject } from '../../src/providers/kubernetes/kinds.js';
import { microTime } from '../../src/providers/kubernetes/leader.js';
import { FakeApiServer } from './fake-api-server.js';
import { endpointSlice, eventually, ingress, service } from './harness.js';

test('meshgate run --kubernetes --kubeconfig: serves the cluster and writes Ingress status', { timeout: 60_000 }, async () => {
  const fake = await FakeApiServer.start();
  const backend = await startEchoServer({ name: 'k8s-cli', host: '127.0.0.1', port: 0 });
  const kubeconfig = fake.writeKubeconfig(path.join(tempDir('meshgate-k8s-cli-'), 'kubeconfig'));
  fake.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'apps' } });
  fake.apply(service('apps', 'web', backend.port));
  fake.apply(endpointSlice('apps', 'web', backend.port, '127.0.0.1'));
  fake.apply(ingress('apps', 'web', 'cli.test', 'web'));
  const [httpPort, httpsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const args = [CLI, 'run', '--kubernetes', '--kubeconfig', kubeconfig, '--namespace', 'apps', '--watch-namespace', 'apps', '--publish-address', '192.0.2.7', '--workers', '0', '--bind-address', '127.0.0.1', '--http-port', String(httpPort), '--https-port', String(httpsPort), '--admin-port', String(adminPort), '--health-port', '0', '--log-level', 'warn'];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout.on('data', (c) => (output += c));
  proc.stderr.on('data', (c) => (output += c));
  try {
    const r = await eventually('a request served from the cluster config', async () => {
      const res = await request(httpPort, { host: 'cli.test', timeoutMs: 2000 });
      return res.status === 200 ? res : null;
    }, 20_000).catch((e: Error) => assert.fail(`${e.message}\n${output}`));
    assert.equal(r.json?.name, 'k8s-cli');
    await eventually('Ingress status', () => JSON.stringify((fake.get('Ingress', 'apps', 'web')?.status as { loadBalancer?: unknown })?.loadBalancer) === '{"ingress":[{"ip":"192.0.2.7"}]}', 20_000);
    assert.ok(fake.list('leases').some((l) => (l.metadata as { name: string }).name === 'meshgate-leader'));
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    await backend.close();
    await fake.close();
  }
  // The lease is released on a clean stop, so another replica takes over at once.
  const lease = fake.list('leases')[0];
  assert.equal((lease.spec as { holderIdentity: string }).holderIdentity, '');
});

test('run flags: exactly one of --config and --kubernetes; Kubernetes flags need --kubernetes', () => {
  const cases: { args: string[]; want: RegExp }[] = [
    { args: ['run'], want: /exactly one of --config DIR and --kubernetes/ },
    { args: ['run', '--config', '.', '--kubernetes'], want: /exactly one of --config DIR and --kubernetes/ },
    { args: ['run', '--config', '.', '--publish-address', '1.2.3.4'], want: /--publish-address needs --kubernetes/ },
    { args: ['run', '--kubernetes', '--publish-service', 'x'], want: /--publish-service: "x" is not NAMESPACE\/NAME/ },
    { args: ['run', '--kubernetes', '--publish-service', 'a/b', '--publish-address', '1.2.3.4'], want: /cannot be used together/ },
    { args: ['run', '--kubernetes', '--watch-namespace', 'Bad_NS'], want: /--watch-namespace: "Bad_NS"/ },
  ];
  for (const c of cases) {
    const r = spawnSync(process.execPath, [CLI, ...c.args], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 2, `${c.args.join(' ')}: exit ${r.status}, stderr ${r.stderr}`);
    assert.match(r.stderr, c.want);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  }
});

test('parseKubernetesOptions: namespaces (repeated or comma-separated), publish targets, selector', () => {
  const fail = (m: string): never => {
    throw new Error(m);
  };
  const o = parseKubernetesOptions({ 'watch-namespace': ['a,b', 'c', 'a'], namespace: 'ops', 'publish-address': '192.0.2.1, lb.example.com', 'secret-label-selector': 'meshgate.io/tls=true' }, fail);
  assert.deepEqual(o, { kubeconfig: null, watchNamespaces: ['a', 'b', 'c'], namespace: 'ops', publish: { addresses: ['192.0.2.1', 'lb.example.com'] }, secretLabelSelector: 'meshgate.io/tls=true' });
  assert.deepEqual(parseKubernetesOptions({ 'publish-service': 'meshgate-system/meshgate', namespace: 'x' }, fail).publish, { service: { namespace: 'meshgate-system', name: 'meshgate' } });
  assert.equal(parseKubernetesOptions({ namespace: 'x' }, fail).watchNamespaces, null);
});

test('defaultNamespace: POD_NAMESPACE, else the service account file, else meshgate-system', () => {
  assert.equal(defaultNamespace({ POD_NAMESPACE: 'from-env' }, () => 'from-file'), 'from-env');
  assert.equal(defaultNamespace({}, () => 'from-file\n'), 'from-file');
  assert.equal(
    defaultNamespace({}, () => {
      throw new Error('ENOENT');
    }),
    'meshgate-system',
  );
});

test('Backoff: doubles, is jittered within [d/2, d], is capped, and resets', () => {
  const lo = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0);
  const hi = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => lo.next()), [50, 100, 200, 400, 500, 500]);
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(() => hi.next()), [100, 200, 400, 800, 1000, 1000]);
  hi.reset();
  assert.equal(hi.next(), 100);
});

test('referencedSecrets: every Secret an Ingress, Gateway or DestinationRule names; Gateway credentials in the gateway workload namespace', () => {
  const ing = toKubeObject({ metadata: { name: 'i', namespace: 'a', annotations: { 'nginx.ingress.kubernetes.io/proxy-ssl-secret': 'a/backend-ca' } }, spec: { tls: [{ secretName: 's1' }, { secretName: 'Bad Name' }, {}] } }, 'networking.k8s.io/v1', 'Ingress', true)!;
  const other = toKubeObject({ metadata: { name: 'j', namespace: 'a', annotations: { 'nginx.ingress.kubernetes.io/proxy-ssl-secret': 'z/not-ours' } }, spec: {} }, 'networking.k8s.io/v1', 'Ingress', true)!;
  const gw = toKubeObject({ metadata: { name: 'g', namespace: 'b' }, spec: { servers: [{ tls: { credentialName: 'c1' } }, { tls: { credentialNames: ['c2', 'c1'] } }] } }, 'networking.istio.io/v1', 'Gateway', true)!;
  const dr = toKubeObject(
    { metadata: { name: 'd', namespace: 'c' }, spec: { host: 'x', trafficPolicy: { tls: { mode: 'MUTUAL', credentialName: 'up' }, portLevelSettings: [{ port: { number: 8443 }, tls: { credentialName: 'up-port' } }] }, subsets: [{ name: 'v1', trafficPolicy: { tls: { credentialName: 'up-v1' } } }] } },
    'networking.istio.io/v1',
    'DestinationRule',
    true,
  )!;
  // The Gateway is in "b", its pods in "istio-system": Istio reads credentialName there only (CVE-2021-34824).
  assert.deepEqual(referencedSecrets([ing, other, gw, dr], 'istio-system'), ['a/backend-ca', 'a/s1', 'c/up', 'c/up-port', 'c/up-v1', 'istio-system/c1', 'istio-system/c1-cacert', 'istio-system/c2', 'istio-system/c2-cacert']);
});

test('toKubeObject: type meta from the resource, namespace default, order from creation and uid, no managedFields', () => {
  const o = toKubeObject({ metadata: { name: 'x', uid: 'u1', creationTimestamp: '2024-01-01T00:00:00Z', labels: { a: 'b' }, managedFields: [{}] }, spec: {} }, 'v1', 'Service', true)!;
  assert.equal(o.metadata.namespace, 'default');
  assert.equal(o.origin.order, '2024-01-01T00:00:00Z/u1');
  assert.deepEqual([o.body.apiVersion, o.body.kind], ['v1', 'Service']);
  assert.equal('managedFields' in (o.body.metadata as object), false);
  assert.equal(toKubeObject({ metadata: { name: 'c', namespace: 'ignored' } }, 'networking.k8s.io/v1', 'IngressClass', false)!.metadata.namespace, '');
  assert.equal(toKubeObject({ metadata: {} }, 'v1', 'Service', true), null);
  assert.equal(microTime(Date.UTC(2024, 0, 1, 0, 0, 0, 123)), '2024-01-01T00:00:00.123000Z');
});
