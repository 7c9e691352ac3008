/**
 * The sidecar's proxy process loads only what it runs (the lean-process rules of issue 11, for the
 * process every meshed pod keeps for its whole life): started as bin/meshgate starts it (the lean
 * entry dist/src/cli/sidecar-main.js), with a certificate client and a view, it never loads main.ts's
 * other commands (translate/, providers/, api/, resources/, admin/, control/), YAML, the Kubernetes
 * client, OpenTelemetry (tracing off), jose (no RequestAuthentication in the view), the ASN.1 stack
 * of @peculiar/x509 (the CSR is built with node:crypto), grpc-js or protobufjs: with `--view-file`, and
 * with the view pushed by a real control plane (the production mode: the certificate call and the
 * config push stream are gRPC over node:http2, mesh/grpc/h2-unary.ts and h2-stream.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, tempDir, writeConfig } from '../helpers/gateway.js';
import { meshServerView } from '../mesh/sidecar-programs.js';
import { startControlPlane } from '../../src/control/control-plane.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { Logger } from '../../src/lib/log.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const RECORDER = path.resolve(here, '../support/module-recorder.js');
const BIN = path.resolve(here, '../../../bin/meshgate');

const FORBIDDEN: Record<string, RegExp> = {
  translate: /\/dist\/src\/translate\//,
  providers: /\/dist\/src\/providers\//,
  api: /\/dist\/src\/api\/(?!duration\.js$)/,
  resources: /\/dist\/src\/resources\//,
  admin: /\/dist\/src\/admin\//,
  control: /\/dist\/src\/control\//,
  'main.ts': /\/dist\/src\/cli\/main\.js$/,
  yaml: /\/node_modules\/yaml\//,
  kubernetes: /\/node_modules\/@kubernetes\//,
  opentelemetry: /\/node_modules\/@opentelemetry\//,
  jose: /\/node_modules\/jose\//,
  peculiar: /\/node_modules\/@peculiar\//,
  tsyringe: /\/node_modules\/tsyringe\//,
  // The certificate client and the config push stream speak gRPC over node:http2
  // (mesh/grpc/h2-unary.ts, h2-stream.ts; messages encoded by mesh/grpc/istioca-wire.ts, mesh/push/wire.ts).
  'grpc-js': /\/node_modules\/@grpc\//,
  protobufjs: /\/node_modules\/protobufjs\//,
};

/**
 * Starts the sidecar through bin/meshgate with the module recorder, waits for its view, stops it, and
 * checks the proxy process loaded none of FORBIDDEN. `control`: the control plane's address, root
 * and token (push mode); null: `--view-file`, with nothing answering on `--control`.
 */
async function checkProxyModules(control: { address: string; rootCertPem: string; token: string } | null): Promise<void> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-lean-sidecar-'));
  const logs = mkdtempSync(path.join(os.tmpdir(), 'mg-lean-sidecar-modules-'));
  chmodSync(logs, 0o777);
  try {
    writeFileSync(path.join(dir, 'view.json'), JSON.stringify(meshServerView('127.0.0.1', '127.0.0.2', 'lean-1')));
    writeFileSync(path.join(dir, 'root-cert.pem'), control?.rootCertPem ?? 'not used: nothing answers on --control\n');
    writeFileSync(path.join(dir, 'token'), `${control?.token ?? 'token'}\n`);
    const ports = [await freePort(), await freePort(), await freePort(), await freePort()];
    // --proxy-uid 0: no launcher, so this runs unprivileged too; the proxy entry is the same.
    const args = ['sidecar', '--control', control?.address ?? '127.0.0.1:9', '--root-cert', path.join(dir, 'root-cert.pem'), '--token-file', path.join(dir, 'token'), ...(control === null ? ['--view-file', path.join(dir, 'view.json')] : []),
      '--pod-ip', '127.0.0.1', '--namespace', 'default', '--service-account', 'reviews', '--pod-name', 'reviews-lean', '--proxy-uid', '0',
      '--outbound-port', String(ports[0]), '--inbound-port', String(ports[1]), '--status-port', String(ports[2]), '--health-port', String(ports[3]), '--drain', '0s'];
    const child = spawn(BIN, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MESHGATE_NODE: process.execPath, NODE_OPTIONS: `--import ${RECORDER}`, MESHGATE_MODULE_LOG_DIR: logs } });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
    const deadline = Date.now() + 60_000;
    while (!stderr.includes('view applied') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.match(stderr, /view applied/, stderr);
    if (control !== null) assert.match(stderr, /connected to the control plane/, stderr);
    // With --view-file the view is applied just before the proxy installs its SIGTERM handler
    // (cli/sidecar.ts waits for the signal after loading the view): a SIGTERM in between kills it
    // without a drain (exit null). Give it a moment.
    await new Promise((r) => setTimeout(r, 500));
    child.kill('SIGTERM');
    assert.equal(await exited, 0, stderr);
    // The proxy is the process with the sidecar's inbound side loaded (the plan process is the other one).
    const byPid = readdirSync(logs).map((f) => readFileSync(path.join(logs, f), 'utf8').split('\n').filter(Boolean));
    const proxy = byPid.find((mods) => mods.some((m) => m.includes('/dist/src/runtime/sidecar/sidecar.js')));
    assert.ok(proxy, `a recorded process ran the sidecar runtime (${byPid.length} recorded)`);
    assert.ok(proxy.some((m) => m.endsWith('/dist/src/cli/sidecar-main.js')), 'started on the lean entry');
    assert.ok(proxy.some((m) => /\/node_modules\/prom-client\//.test(m)), 'the recorder sees the packages the proxy does load (prom-client, for /stats/prometheus)');
    if (control !== null) assert.ok(proxy.some((m) => m.endsWith('/dist/src/mesh/push/client.js')), 'push mode ran the config push client');
    for (const [what, re] of Object.entries(FORBIDDEN)) {
      const hit: string | undefined = proxy.find((m: string) => re.test(m));
      assert.equal(hit, undefined, `the sidecar proxy must not load ${what}, but loaded ${hit}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
    rmSync(logs, { recursive: true, force: true });
  }
}

test('the sidecar proxy process (bin/meshgate, lean entry, --view-file): none of the other commands\' modules, no jose, no @peculiar/x509, no grpc-js', { timeout: 120_000 }, async () => {
  await checkProxyModules(null);
});

test('the sidecar proxy process with its certificate and view from a real control plane (push mode): no grpc-js, no protobufjs either', { timeout: 120_000 }, async () => {
  const configDir = tempDir('mg-lean-sidecar-config-');
  writeConfig(configDir, 'svc.yaml', 'apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n  namespace: default\nspec:\n  ports:\n  - name: http\n    port: 9080\n');
  const cp = await startControlPlane({
    configDir,
    caDir: path.join(tempDir('mg-lean-sidecar-ca-'), 'ca'),
    listenHost: '127.0.0.1',
    listenPort: 0,
    trustDomain: 'cluster.local',
    adminPort: 0,
    certTtlSeconds: 3600,
    translate: { ...DEFAULT_TRANSLATE_OPTIONS },
    log: new Logger('error'),
    sidecarTranslate: () => ({ ir: meshServerView('127.0.0.1', '127.0.0.2', 'lean-push-1'), diagnostics: [] }),
  });
  try {
    const token = await issueToken(cp.ca.material.signingKey, { namespace: 'default', serviceAccount: 'reviews' }, 600);
    await checkProxyModules({ address: `127.0.0.1:${cp.grpcPort}`, rootCertPem: cp.ca.rootCertPem, token });
  } finally {
    await cp.stop();
  }
});
