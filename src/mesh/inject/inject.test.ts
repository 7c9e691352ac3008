/**
 * `meshgate inject`:
 *   - goldens: `testdata/<case>.in.yaml` (leading comment: what it proves; an optional
 *     `# options: --flag ...` line) must inject to `<case>.out.yaml`, with the diagnostics appended as
 *     comments; `UPDATE_GOLDEN=1` rewrites them;
 *   - properties over every golden: injecting twice changes nothing, documents not injected come out
 *     byte for byte, and every init container's arguments are accepted by `meshgate capture`'s parser;
 *   - the command itself (-f, -o, standard input, exit codes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments } from 'yaml';
import { formatDiagnostic } from '../../lib/diagnostic.js';
import { parseCaptureArgs } from '../capture/apply.js';
import { DEFAULT_INJECT_OPTIONS, injectManifests, type InjectOptions } from './inject.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const dir = path.resolve(here, '../../../../src/mesh/inject/testdata');
const MAIN = path.resolve(here, '../../cli/main.js');
const update = process.env.UPDATE_GOLDEN === '1';

function optionsOf(text: string): InjectOptions {
  const line = /^# options: (.*)$/m.exec(text)?.[1] ?? '';
  return { ...DEFAULT_INJECT_OPTIONS, nativeSidecar: line.includes('--native-sidecar'), dnsCapture: line.includes('--dns-capture') };
}

const cases = readdirSync(dir)
  .filter((f) => f.endsWith('.in.yaml'))
  .sort()
  .map((f) => f.slice(0, -'.in.yaml'.length));

for (const name of cases) {
  test(`inject golden ${name}`, () => {
    const input = readFileSync(path.join(dir, `${name}.in.yaml`), 'utf8');
    assert.ok(input.startsWith('# '), `${name}.in.yaml: the first line must be a comment saying what the case proves`);
    const r = injectManifests(input, optionsOf(input), `${name}.in.yaml`);
    const actual = r.output + (r.diagnostics.length > 0 ? `# diagnostics:\n${r.diagnostics.map((d) => `#   ${formatDiagnostic(d)}`).join('\n')}\n` : '');
    const outFile = path.join(dir, `${name}.out.yaml`);
    if (update || !existsSync(outFile)) {
      writeFileSync(outFile, actual);
      if (!update) assert.fail(`${name}.out.yaml did not exist; written now: review it and run again`);
      return;
    }
    assert.equal(actual, readFileSync(outFile, 'utf8'), `${name}: injection differs from ${name}.out.yaml (UPDATE_GOLDEN=1 to accept)`);
  });
}

test('injecting twice changes nothing (every golden)', () => {
  for (const name of cases) {
    const input = readFileSync(path.join(dir, `${name}.in.yaml`), 'utf8');
    const once = injectManifests(input, optionsOf(input));
    const twice = injectManifests(once.output, optionsOf(input));
    assert.equal(twice.output, once.output, name);
    assert.equal(twice.outcomes.filter((o) => o.result === 'injected').length, 0, `${name}: ${JSON.stringify(twice.outcomes)}`);
  }
});

test('documents not injected come out byte for byte', () => {
  const input = readFileSync(path.join(dir, 'disabled.in.yaml'), 'utf8');
  const r = injectManifests(input);
  assert.equal(r.output, input);
  assert.deepEqual(
    r.outcomes.map((o) => `${o.kind}/${o.name}: ${o.result}`),
    ['Deployment/opted-out: disabled', 'Pod/opted-out-label: disabled', 'DaemonSet/node-exporter: host-network', 'Pod/empty: no-containers', 'Pod/injected-before: already-injected'],
  );
  const mixed = readFileSync(path.join(dir, 'deployment.in.yaml'), 'utf8');
  const out = injectManifests(mixed).output;
  const service = mixed.slice(0, mixed.indexOf('---'));
  const configMap = mixed.slice(mixed.lastIndexOf('---'));
  assert.ok(out.startsWith(service), 'the Service document is unchanged');
  assert.ok(out.endsWith(configMap), 'the ConfigMap document is unchanged');
});

interface Container {
  name: string;
  args?: string[];
  restartPolicy?: string;
  securityContext?: { runAsUser?: number; runAsGroup?: number; capabilities?: { add?: string[] } };
  readinessProbe?: { httpGet?: { path?: string; port?: number } };
  ports?: { containerPort: number }[];
  env?: { name: string; valueFrom?: { fieldRef?: { fieldPath?: string } } }[];
  volumeMounts?: { name: string; mountPath: string }[];
}
interface PodSpec {
  initContainers?: Container[];
  containers: Container[];
  volumes?: { name: string; projected?: { sources: { serviceAccountToken?: { audience?: string; path?: string } }[] }; configMap?: { name: string } }[];
}

function podSpecs(text: string): { kind: string; name: string; metadata: { labels?: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec }[] {
  const out = [];
  for (const doc of parseAllDocuments(text)) {
    const o = doc.toJS() as { kind?: string; metadata?: { name?: string }; spec?: { template?: { metadata: never; spec: PodSpec } } } & { spec?: PodSpec };
    if (o?.kind === 'Deployment' && o.spec?.template) out.push({ kind: o.kind, name: o.metadata!.name!, metadata: o.spec.template.metadata, spec: o.spec.template.spec });
  }
  return out;
}

test('the injected pod: capture init container, sidecar with downward-API values, probe, token and root cert', () => {
  const r = injectManifests(readFileSync(path.join(dir, 'deployment.in.yaml'), 'utf8'));
  const [pod] = podSpecs(r.output);
  const init = pod.spec.initContainers![0];
  assert.equal(init.name, 'istio-init');
  assert.deepEqual(init.args, ['capture', '--proxy-uid', '1337', '--inbound-ports', '*', '--exclude-inbound-ports', '15090,15021,15020']);
  assert.deepEqual(init.securityContext?.capabilities?.add, ['NET_ADMIN', 'NET_RAW']);
  assert.equal(init.securityContext?.runAsUser, 0);
  const proxy = pod.spec.containers.find((c) => c.name === 'istio-proxy')!;
  assert.deepEqual(proxy.args, [
    'sidecar', '--control', 'istiod.istio-system.svc:15012', '--root-cert', '/var/run/secrets/istio/root-cert.pem',
    '--token-file', '/var/run/secrets/tokens/istio-token', '--pod-ip', '$(POD_IP)', '--namespace', '$(POD_NAMESPACE)',
    '--service-account', '$(SERVICE_ACCOUNT)', '--pod-name', '$(POD_NAME)', '--proxy-uid', '1337',
  ]);
  const env = Object.fromEntries(proxy.env!.map((e) => [e.name, e.valueFrom?.fieldRef?.fieldPath]));
  assert.equal(env.POD_IP, 'status.podIP');
  assert.equal(env.POD_NAMESPACE, 'metadata.namespace');
  assert.equal(env.SERVICE_ACCOUNT, 'spec.serviceAccountName');
  assert.equal(env.POD_NAME, 'metadata.name');
  assert.deepEqual(proxy.readinessProbe?.httpGet, { path: '/healthz/ready', port: 15021, scheme: 'HTTP' });
  assert.deepEqual(proxy.ports!.map((p) => p.containerPort), [15020, 15021]);
  assert.equal(proxy.securityContext?.runAsGroup, 1337);
  const token = pod.spec.volumes!.find((v) => v.name === 'istio-token')!;
  assert.deepEqual(token.projected!.sources[0].serviceAccountToken, { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' });
  assert.equal(pod.spec.volumes!.find((v) => v.name === 'istiod-ca-cert')!.configMap!.name, 'istio-ca-root-cert');
  assert.equal(pod.metadata.labels!['security.istio.io/tlsMode'], 'istio');
  assert.equal(pod.metadata.labels!['service.istio.io/canonical-name'], 'reviews');
  assert.equal(pod.metadata.labels!['service.istio.io/canonical-revision'], 'v1');
  assert.equal(pod.metadata.annotations!['kubectl.kubernetes.io/default-container'], 'reviews');
  assert.deepEqual(r.outcomes.map((o) => o.result), ['injected']);
});

test("every injected init container's arguments are accepted by meshgate capture", () => {
  let seen = 0;
  for (const name of cases) {
    const input = readFileSync(path.join(dir, `${name}.in.yaml`), 'utf8');
    for (const doc of parseAllDocuments(injectManifests(input, optionsOf(input)).output)) {
      const walk = (v: unknown): void => {
        if (Array.isArray(v)) return v.forEach(walk);
        if (v && typeof v === 'object') {
          const c = v as { name?: unknown; args?: string[] };
          if (c.name === 'istio-init' && Array.isArray(c.args)) {
            assert.equal(c.args[0], 'capture');
            assert.doesNotThrow(() => parseCaptureArgs(c.args!.slice(1)), `${name}: ${c.args.join(' ')}`);
            seen++;
          }
          Object.values(v).forEach(walk);
        }
      };
      walk(doc.toJS());
    }
  }
  assert.ok(seen >= 12, `only ${seen} init containers checked`);
});

test('meshgate inject: -f FILE to stdout, -o FILE, -f - from stdin, exit 1 on an invalid annotation, 2 on bad usage', () => {
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'mg-inject-'));
  try {
    const input = path.join(dir, 'deployment.in.yaml');
    const want = injectManifests(readFileSync(input, 'utf8'), DEFAULT_INJECT_OPTIONS, input).output;
    const run = (args: string[], stdin?: string) => spawnSync(process.execPath, [MAIN, 'inject', ...args], { encoding: 'utf8', input: stdin, timeout: 30_000 });
    const a = run(['-f', input]);
    assert.equal(a.status, 0, a.stderr);
    assert.equal(a.stdout, want);
    const outFile = path.join(tmp, 'out.yaml');
    const b = run(['-f', input, '-o', outFile]);
    assert.equal(b.status, 0, b.stderr);
    assert.equal(b.stdout, '');
    assert.equal(readFileSync(outFile, 'utf8'), want);
    const c = run(['-f', '-'], readFileSync(input, 'utf8'));
    assert.equal(c.stdout, injectManifests(readFileSync(input, 'utf8'), DEFAULT_INJECT_OPTIONS, '-').output);
    const d = run(['--filename', path.join(dir, 'invalid-annotation.in.yaml')]);
    assert.equal(d.status, 1);
    assert.match(d.stderr, /error MG_INVALID_FIELD Deployment\/default\/broken spec\.template\.metadata\.annotations\[traffic\.sidecar\.istio\.io\/excludeOutboundPorts\] \(.*invalid-annotation\.in\.yaml:\d+\)/);
    assert.match(d.stdout, /name: fine[\s\S]*istio-proxy/);
    const e = run(['-f', input, '--control', 'not a host']);
    assert.equal(e.status, 2);
    assert.match(e.stderr, /--control "not a host" is not HOST:PORT/);
    assert.equal(run([]).status, 2);
    const f = run(['-f', input, '--native-sidecar', '--image', 'reg/mg:1', '--control', 'meshgate.mesh.svc:15012']);
    assert.equal(f.status, 0, f.stderr);
    assert.match(f.stdout, /image: reg\/mg:1/);
    assert.match(f.stdout, /restartPolicy: Always/);
    assert.match(f.stdout, /meshgate\.mesh\.svc:15012/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test("a Pod's canonical-name label falls back to its workload as Istio names it (a ReplicaSet's Deployment, a Job's CronJob), not its generated name", () => {
  const podYaml = (generateName: string, ownerKind: string, owner: string, labels: string) => `apiVersion: v1
kind: Pod
metadata:
  generateName: ${generateName}
  namespace: shop
  labels: {${labels}}
  ownerReferences: [{apiVersion: apps/v1, kind: ${ownerKind}, name: ${owner}, uid: u1, controller: true}]
spec:
  containers: [{name: app, image: app}]
`;
  const labelsOf = (text: string) => (parseAllDocuments(injectManifests(text).output)[0].toJS() as { metadata: { labels: Record<string, string> } }).metadata.labels;
  const rs = labelsOf(podYaml('reviews-v1-7f9c-', 'ReplicaSet', 'reviews-v1-7f9c', 'pod-template-hash: "7f9c"'));
  assert.equal(rs['service.istio.io/canonical-name'], 'reviews-v1');
  assert.equal(rs['service.istio.io/canonical-revision'], 'latest');
  const job = labelsOf(podYaml('backup-28123456-', 'Job', 'backup-28123456', 'version: ""'));
  assert.equal(job['service.istio.io/canonical-name'], 'backup');
  // An empty label counts as absent (the template's `default`).
  const empty = labelsOf(podYaml('web-5d8f-', 'ReplicaSet', 'web-5d8f', 'app: "", app.kubernetes.io/name: "", pod-template-hash: "5d8f"'));
  assert.equal(empty['service.istio.io/canonical-name'], 'web');
});
