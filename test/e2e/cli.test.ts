/** The meshgate command: usage errors, validate and translate, as other tooling drives them. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI, removeDir, serviceYaml, tempDir, writeConfig } from '../helpers/gateway.js';

function meshgate(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const GOOD = `
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: web, namespace: default }
spec:
  rules:
    - host: a.example.com
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
`;

test('unknown flags and bad values: one line on stderr, exit 2', () => {
  const cases: [string[], RegExp][] = [
    [['run', '--config', '.', '--bogus'], /bogus/],
    [['run', '--config', '.', '--http-port', 'eighty'], /--http-port/],
    [['run', '--config', '.', '--http-port', '70000'], /--http-port/],
    [['run', '--config', '.', '--port-map', '80:8080'], /--port-map/],
    [['run', '--config', '.', '--workers', '-1'], /workers/],
    [['run', '--config', '.', '--gateway-labels', 'istio'], /--gateway-labels/],
    [['run'], /--config/],
    [['frobnicate'], /unknown command/],
    [['validate'], /DIR/],
  ];
  for (const [args, want] of cases) {
    const r = meshgate(...args);
    assert.equal(r.code, 2, `meshgate ${args.join(' ')}: expected exit 2, got ${r.code} (${r.stderr})`);
    assert.match(r.stderr, want);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line expected, got: ${r.stderr}`);
  }
});

test('validate: exit 0 on a clean directory, 1 with the object, field and file:line of each error', () => {
  const good = tempDir();
  const bad = tempDir();
  try {
    writeConfig(good, 'web.yaml', GOOD + '---\n' + serviceYaml('web', [9]));
    const ok = meshgate('validate', good);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /0 errors/);

    writeConfig(bad, 'web.yaml', GOOD.replace('pathType: Prefix', 'pathTyp: Prefix') + '---\n' + serviceYaml('web', [9]));
    writeConfig(bad, 'broken.yaml', 'kind: [unclosed\n');
    const r = meshgate('validate', bad);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /error MG_UNKNOWN_FIELD Ingress\/default\/web spec\.rules\[0\]\.http\.paths\[0\]\.pathTyp \(web\.yaml:\d+\)/);
    assert.match(r.stdout, /error MG_PARSE_ERROR \(broken\.yaml:\d+\): YAML syntax error/);
  } finally {
    removeDir(good);
    removeDir(bad);
  }
});

test('translate prints the IR snapshot as JSON', () => {
  const dir = tempDir();
  try {
    writeConfig(dir, 'web.yaml', GOOD + '---\n' + serviceYaml('web', [9101]));
    const r = meshgate('translate', dir, '--http-port', '9999');
    assert.equal(r.code, 0, r.stderr);
    const ir = JSON.parse(r.stdout) as { version: string; listeners: { port: number }[]; clusters: { name: string; endpoints: { port: number }[] }[] };
    assert.match(ir.version, /^[0-9a-f]{16}$/);
    assert.deepEqual(ir.listeners.map((l) => l.port), [9999]);
    assert.deepEqual(ir.clusters.map((c) => [c.name, c.endpoints.map((e) => e.port)]), [['outbound|80||web.default.svc.cluster.local', [9101]]]);
  } finally {
    removeDir(dir);
  }
});
