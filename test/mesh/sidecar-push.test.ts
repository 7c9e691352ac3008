/**
 * `meshgate sidecar --control` with no view file: the certificate and the view both come from the
 * control plane (config push, branch sc-push), in a network-namespace lab. A new view arrives and is
 * served without a restart; with the control plane gone, the last good view keeps serving.
 * Skipped, saying so, in a build without the push client (src/mesh/push/client.ts).
 *
 *   client  10.250.0.2  capture + sidecar + HTTP agent; route 10.250.1.0/24 (VIPs) on-link
 *   v1, v2  10.250.0.3, .4  HTTP apps :9080
 *   cp      10.250.0.6  the control plane (push-control-program.ts), its view from a file
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { clientView, HTTP_AGENT, HTTP_APP } from './sidecar-programs.js';
import { makePlugInCa } from '../support/mesh-pki.js';
import { loadOrCreateCaDirectory } from '../../src/mesh/ca/ca.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { MESHGATE } from './meshgate-bin.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../../src/cli/main.js');
const CONTROL = path.resolve(here, 'push-control-program.js');
const PUSH = path.resolve(here, '../../src/mesh/push/client.js');
const labSkip = labSkipReason();
const skip = labSkip ?? (existsSync(PUSH) ? undefined : 'this build has no config push (src/mesh/push/client.ts, branch sc-push)');
const ADDR = { v1: '10.250.0.3', v2: '10.250.0.4', ext: '10.250.0.5' };

if (labSkip && labRequired()) {
  test('sidecar push lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${labSkip}`));
}

/** The client view with every reviews request sent to `subset` (v1 or v2). */
function viewTo(subset: 'v1' | 'v2', version: string): IRSnapshot {
  const ir = clientView(ADDR, 'ALLOW_ANY', version);
  const table = ir.sidecar!.outboundHttp.find((l) => l.name === 'outbound_9080')!;
  const vh = table.filterChains[0].virtualHosts[0];
  const last = vh.routes[vh.routes.length - 1];
  if (last.action.kind === 'forward') last.action = { ...last.action, destinations: [{ cluster: `outbound|9080|${subset}|reviews.default.svc.cluster.local`, weight: 1, requestHeaders: null, responseHeaders: null }] };
  return ir;
}

describe('meshgate sidecar with its view pushed by the control plane', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let dir: string;
  let cp: LabProcess;
  let sidecar: LabProcess;
  let agent: LabProcess;
  let next = 0;

  const get = async (host: string, port: number, p: string, timeoutMs = 3000): Promise<{ status?: number; body?: string; error?: string }> => {
    const id = ++next;
    agent.child.stdin!.write(`${JSON.stringify({ id, host, port, path: p, headers: { connection: 'close' }, count: 1, timeoutMs })}\n`);
    const line = await lab.waitForLine(agent, (l) => l.startsWith(`{"id":${id},`), timeoutMs + 10_000);
    return (JSON.parse(line) as { results: { status?: number; body?: string; error?: string }[] }).results[0];
  };
  const server = async (): Promise<string | undefined> => {
    const r = await get('10.250.1.10', 9080, '/who');
    return r.status === 200 ? (JSON.parse(r.body!) as { server: string }).server : `${r.status ?? r.error}`;
  };
  const ready = async () => (await get('10.250.0.2', 15021, '/healthz/ready', 2000)).status;
  const writeView = (ir: IRSnapshot) => {
    writeFileSync(path.join(dir, 'view.tmp'), JSON.stringify(ir), { mode: 0o644 });
    renameSync(path.join(dir, 'view.tmp'), path.join(dir, 'view.json'));
  };
  const touchConfig = (n: number) => writeFileSync(path.join(dir, 'config', 'svc.yaml'), `apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\n  namespace: default\n  annotations:\n    n: "${n}"\nspec:\n  ports:\n  - name: http\n    port: 9080\n`);

  before(async () => {
    lab = Lab.create({
      nodeIp: '10.250.0.1',
      prefixLength: 24,
      pods: [
        { name: 'client', ip: '10.250.0.2', routes: ['10.250.1.0/24'] },
        { name: 'v1', ip: ADDR.v1 },
        { name: 'v2', ip: ADDR.v2 },
        { name: 'cp', ip: '10.250.0.6' },
      ],
    });
    dir = mkdtempSync(path.join(os.tmpdir(), 'mg-sidecar-push-'));
    chmodSync(dir, 0o755);
    const caDir = path.join(dir, 'ca');
    await makePlugInCa(caDir);
    chmodSync(caDir, 0o755);
    chmodSync(path.join(caDir, 'root-cert.pem'), 0o644);
    const material = await loadOrCreateCaDirectory(caDir, { trustDomain: 'cluster.local' });
    writeFileSync(path.join(dir, 'token'), `${await issueToken(material.signingKey, { namespace: 'default', serviceAccount: 'client' }, 3600)}\n`, { mode: 0o644 });
    mkdirSync(path.join(dir, 'config'));
    touchConfig(0);
    writeView(viewTo('v1', 'push-1'));
    for (const [pod, name] of [['v1', 'v1'], ['v2', 'v2']] as const) {
      const app = lab.spawn(pod, [process.execPath, '-e', HTTP_APP], { APP_NAME: name, APP_PORT: '9080' });
      await lab.waitForLine(app, (l) => l.includes('listening'));
    }
    cp = lab.spawn('cp', [process.execPath, CONTROL], { LISTEN: '10.250.0.6:15012', CONFIG_DIR: path.join(dir, 'config'), CA_DIR: caDir, VIEW_FILE: path.join(dir, 'view.json') });
    await lab.waitForLine(cp, (l) => l.includes('"up"'), 20_000);
    lab.exec('client', process.execPath, [MAIN, 'capture']);
    sidecar = lab.spawn('client', [
      MESHGATE, 'sidecar', '--control', '10.250.0.6:15012', '--root-cert', path.join(caDir, 'root-cert.pem'), '--token-file', path.join(dir, 'token'),
      '--pod-ip', '10.250.0.2', '--namespace', 'default', '--service-account', 'client', '--pod-name', 'client-0', '--drain', '1s',
    ]);
    agent = lab.spawn('client', [process.execPath, '-e', HTTP_AGENT], {}, { stdin: true });
    await lab.waitForLine(agent, (l) => l.includes('"agent"'));
  });

  after(() => {
    lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('ready once the certificate and the pushed view are there; the pushed routes serve', async () => {
    const deadline = Date.now() + 30_000;
    let status: number | undefined;
    while (Date.now() < deadline && (status = await ready()) !== 200) await new Promise((r) => setTimeout(r, 200));
    assert.equal(status, 200, `sidecar: ${sidecar.stderr.join('')}\ncontrol: ${cp.stderr.join('')}`);
    assert.equal(await server(), 'v1');
  });

  test('a new view reaches the sidecar and is served (measured from the config change)', async (t) => {
    writeView(viewTo('v2', 'push-2'));
    const t0 = Date.now();
    touchConfig(1);
    let who: string | undefined;
    while (Date.now() - t0 < 10_000 && (who = await server()) !== 'v2') await new Promise((r) => setTimeout(r, 20));
    const ms = Date.now() - t0;
    assert.equal(who, 'v2', sidecar.stderr.join(''));
    t.diagnostic(`config change to served by the sidecar: ${ms} ms`);
    assert.ok(ms < 5000, `${ms} ms`);
  });

  test('with the control plane down, the last good view keeps serving and the pod stays ready', async () => {
    cp.child.kill('SIGKILL');
    await cp.exited;
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await server(), 'v2');
    assert.equal(await ready(), 200);
  });
});
