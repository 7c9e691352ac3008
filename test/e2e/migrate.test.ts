/**
 * `meshgate migrate`: the per-Ingress, per-annotation report an operator reads before switching from
 * ingress-nginx (text and JSON), exit 1 when behaviour would change, 0 when it would not; and the
 * docs table lists every annotation of the registry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CLI, removeDir, serviceYaml, tempDir, writeConfig } from '../helpers/gateway.js';
import { ANNOTATIONS } from '../../src/translate/ingress/nginx/registry.js';

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

const ingress = (name: string, annotations: Record<string, string>) => `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [`nginx.ingress.kubernetes.io/${k}`, v])))} }
spec:
  ingressClassName: nginx
  rules: [{ host: ${name}.example.com, http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }] } }]
`;
const nginxClass = `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: { name: nginx }
spec: { controller: k8s.io/ingress-nginx }
`;

test('migrate: a typical Ingress with honoured annotations reports the same behaviour and exits 0', async () => {
  const dir = tempDir();
  try {
    writeConfig(dir, 'all.yaml', [nginxClass, serviceYaml('web', [1]), ingress('shop', { 'rewrite-target': '/', 'ssl-redirect': 'false', 'proxy-body-size': '10m', 'limit-rps': '10' })].join('---\n'));
    const r = await run(['migrate', dir]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /Ingress default\/shop \(all\.yaml\): served, same behaviour/);
    assert.match(r.stdout, /honoured +proxy-body-size: "10m"/);
    assert.match(r.stdout, /1 Ingresses \(class "nginx", controller "k8s.io\/ingress-nginx"\), 0 would behave differently/);
  } finally {
    removeDir(dir);
  }
});

test('migrate: snippets, unsupported, unknown and bad values change behaviour (exit 1); JSON output', async () => {
  const dir = tempDir();
  try {
    writeConfig(dir, 'all.yaml', [nginxClass, serviceYaml('web', [1]), ingress('snip', { 'configuration-snippet': 'deny all;' }), ingress('tune', { 'proxy-buffer-size': '8k', 'made-up': 'x' }), ingress('bad', { 'limit-rps': 'ten' }), ingress('fine', { 'enable-cors': 'true' })].join('---\n'));
    const text = await run(['migrate', dir]);
    assert.equal(text.code, 1);
    assert.match(text.stdout, /Ingress default\/snip \(all\.yaml\): NOT SERVED, behaviour changes\n +refused +configuration-snippet/);
    assert.match(text.stdout, /unknown +made-up/);
    // The refusal is the same diagnostic `meshgate validate` prints (and /diagnostics, Kubernetes Events).
    const validate = await run(['validate', dir, '--watch-ingress-nginx-class']);
    assert.match(validate.stdout, /error MG_NGINX_SNIPPET_REFUSED Ingress\/default\/snip metadata\.annotations\["nginx\.ingress\.kubernetes\.io\/configuration-snippet"\] \(all\.yaml:\d+\)/);
    const json = await run(['migrate', dir, '--output', 'json']);
    assert.equal(json.code, 1);
    const report = JSON.parse(json.stdout) as { changesBehaviour: boolean; ingresses: { name: string; served: boolean; changesBehaviour: boolean; annotations: { annotation: string; status: string }[]; diagnostics: { reason: string; line: number | null }[] }[] };
    assert.equal(report.changesBehaviour, true);
    const by = Object.fromEntries(report.ingresses.map((i) => [i.name, i]));
    assert.equal(by.snip.served, false);
    assert.equal(by.tune.served, true);
    assert.deepEqual(by.tune.annotations.map((a) => [a.annotation, a.status]), [['made-up', 'unknown'], ['proxy-buffer-size', 'unsupported']]);
    assert.equal(by.bad.served, false);
    assert.ok(by.bad.diagnostics.some((d) => d.reason === 'MG_INVALID_FIELD' && d.line !== null));
    assert.equal(by.fine.changesBehaviour, false);
  } finally {
    removeDir(dir);
  }
});

test('docs/ingress-nginx-annotations.md lists every annotation of the registry with its status', () => {
  const doc = readFileSync(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../docs/ingress-nginx-annotations.md'), 'utf8');
  for (const [name, info] of Object.entries(ANNOTATIONS)) {
    assert.match(doc, new RegExp(`\\| \`${name.replace(/[-]/g, '\\-')}\` \\| ${info.status} `), `${name} (${info.status}) missing from the docs table`);
  }
});
