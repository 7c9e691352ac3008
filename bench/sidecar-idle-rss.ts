/**
 * `node dist/bench/sidecar-idle-rss.js`: the idle memory of one `meshgate sidecar` and of its
 * whole process tree, quickly and without the network-namespace lab, to compare process models and
 * builds in the same minutes (bench/sidecar.ts gives the lab figure of record).
 *
 *   node dist/bench/sidecar-idle-rss.js [--rounds 3] [--idle 8] [--mode view|push]
 *        [--tree DIR]... [--start bin|node]
 *
 * Per round and per tree (`--tree`: repository roots with a built dist/, default this one; pass an
 * older checkout to compare builds, e.g. `git archive COMMIT | tar -x -C /tmp/old`, node_modules
 * linked, `npx tsc -p tsconfig.json`), in turn: a `meshgate control` on 127.0.0.1 (the CA, and in
 * `push` mode the view), then the sidecar as root with `--proxy-uid 1337` (`view` mode: the bench
 * view of test/mesh/sidecar-programs.ts with `--view-file`, as bench/sidecar.ts; `push`: the view the
 * control plane pushes, as in a pod), started as a container starts it (`bin`: bin/meshgate; a tree
 * without it, or `--start node`: `node dist/src/cli/main.js sidecar`). Once /healthz/ready answers
 * 200 (certificate and view held) and after IDLE seconds: VmRSS, RssAnon, RssFile and Pss of every
 * process of the sidecar's tree. Then SIGTERM, and the exit code. The capture listeners are
 * transparent sockets on loopback ports (nothing is captured: no iptables rules are made).
 *
 * Root needed (the launcher's setuid and IP_TRANSPARENT). Every process is killed by PID at the end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { freePort, httpGet, processTree } from './proc.js';
import { makePlugInCa } from '../test/support/mesh-pki.js';
import { loadOrCreateCaDirectory } from '../src/mesh/ca/ca.js';
import { issueToken } from '../src/mesh/ca/token.js';
import { meshServerView } from '../test/mesh/sidecar-programs.js';

const HERE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, idle: { type: 'string', default: '8' }, mode: { type: 'string', default: 'view' }, tree: { type: 'string', multiple: true }, start: { type: 'string', default: 'bin' } } });
const rounds = Number(values.rounds);
const idle = Number(values.idle);
const mode = values.mode;
const trees = (values.tree ?? [HERE]).map((t) => path.resolve(t));
if (!(rounds >= 1) || !(idle >= 0) || (mode !== 'view' && mode !== 'push') || (values.start !== 'bin' && values.start !== 'node')) {
  process.stderr.write('usage: sidecar-idle-rss.js [--rounds N>=1] [--idle S] [--mode view|push] [--tree DIR]... [--start bin|node]\n');
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  process.stderr.write('sidecar-idle-rss: needs root (the sidecar binds transparent listeners and drops to uid 1337)\n');
  process.exit(2);
}
for (const t of trees) if (!existsSync(path.join(t, 'dist/src/cli/main.js'))) throw new Error(`${t}: no dist/src/cli/main.js (build it)`);

const live = new Set<ChildProcess>();
const killAll = () => {
  for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
};
process.on('exit', killAll);
for (const s of ['SIGINT', 'SIGTERM'] as const) process.once(s, () => process.exit(130));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const kib = (text: string, key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? 0);

interface Mem {
  pid: number;
  uid: number;
  command: string;
  vmRss: number;
  rssAnon: number;
  rssFile: number;
  pss: number;
}

function mem(pid: number): Mem | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).slice(0, 3).map((a) => path.basename(a)).join(' ');
    return { pid, uid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1), command, vmRss: kib(status, 'VmRSS') / 1024, rssAnon: kib(status, 'RssAnon') / 1024, rssFile: kib(status, 'RssFile') / 1024, pss: kib(rollup, 'Pss') / 1024 };
  } catch {
    return null;
  }
}

const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-idle-rss-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
chmodSync(dir, 0o755);
const caDir = path.join(dir, 'ca');
await makePlugInCa(caDir);
chmodSync(caDir, 0o755);
chmodSync(path.join(caDir, 'root-cert.pem'), 0o644);
const material = await loadOrCreateCaDirectory(caDir, { trustDomain: 'cluster.local' });
mkdirSync(path.join(dir, 'config'));
writeFileSync(path.join(dir, 'token'), `${await issueToken(material.signingKey, { namespace: 'default', serviceAccount: 'reviews' }, 3600)}\n`, { mode: 0o644 });
writeFileSync(path.join(dir, 'view.json'), JSON.stringify(meshServerView('127.0.0.1', '127.0.0.2', 'idle-rss-1')), { mode: 0o644 });

const f = (x: number) => x.toFixed(1);
const results: { tree: string; round: number; procs: Mem[]; exit: number | null }[] = [];
process.stdout.write(`sidecar-idle-rss  ${new Date().toISOString()}  mode ${mode}, ${idle} s idle, ${rounds} round(s); load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
for (let round = 1; round <= rounds; round++) {
  for (const tree of trees) {
    const grpc = await freePort();
    const cp = spawn(process.execPath, [path.join(tree, 'dist/src/cli/main.js'), 'control', '--config', path.join(dir, 'config'), '--ca-dir', caDir, '--listen', `127.0.0.1:${grpc}`, '--admin-port', '0', '--log-level', 'warn'], { stdio: 'ignore' });
    live.add(cp);
    const ports = { out: await freePort(), in: await freePort(), status: await freePort(), health: await freePort() };
    const args = ['sidecar', '--control', `127.0.0.1:${grpc}`, '--root-cert', path.join(caDir, 'root-cert.pem'), '--token-file', path.join(dir, 'token'), '--pod-ip', '127.0.0.1', '--namespace', 'default', '--service-account', 'reviews', '--pod-name', 'reviews-0',
      ...(mode === 'view' ? ['--view-file', path.join(dir, 'view.json')] : []), '--outbound-port', String(ports.out), '--inbound-port', String(ports.in), '--status-port', String(ports.status), '--health-port', String(ports.health), '--drain', '1s', '--log-level', 'warn'];
    const bin = path.join(tree, 'bin/meshgate');
    const viaBin = values.start === 'bin' && existsSync(bin);
    const sc = spawn(viaBin ? bin : process.execPath, viaBin ? args : [path.join(tree, 'dist/src/cli/main.js'), ...args], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MESHGATE_NODE: process.execPath } });
    live.add(sc);
    let stderr = '';
    sc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => sc.once('exit', (c) => r(c)));
    const deadline = Date.now() + 60_000;
    let ready = false;
    while (!ready && Date.now() < deadline && sc.exitCode === null) {
      const r = await httpGet(ports.health, '/healthz/ready', 'localhost', 2000);
      ready = 'status' in r && r.status === 200;
      if (!ready) await sleep(100);
    }
    if (!ready) throw new Error(`${tree}: the sidecar was not ready within 60 s:\n${stderr.slice(-2000)}`);
    await sleep(idle * 1000);
    const procs = processTree(sc.pid!).map(mem).filter((m): m is Mem => m !== null);
    sc.kill('SIGTERM');
    const exit = await Promise.race([exited, sleep(15_000).then(() => 'timeout' as const)]);
    cp.kill('SIGTERM');
    await new Promise((r) => (cp.exitCode !== null ? r(null) : cp.once('exit', r)));
    live.delete(cp);
    live.delete(sc);
    if (exit === 'timeout') throw new Error(`${tree}: the sidecar did not exit within 15 s of SIGTERM`);
    results.push({ tree, round, procs, exit });
    const total = procs.reduce((s, p) => s + p.vmRss, 0);
    process.stdout.write(`round ${round} ${tree} (${viaBin ? 'bin/meshgate' : 'node main.js'}): ${procs.map((p) => `[${p.command} uid ${p.uid}: VmRSS ${f(p.vmRss)} MiB, RssAnon ${f(p.rssAnon)}, RssFile ${f(p.rssFile)}, Pss ${f(p.pss)}]`).join(' + ')} = VmRSS ${f(total)} MiB; exit ${exit} after SIGTERM\n`);
  }
}
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
for (const tree of trees) {
  const mine = results.filter((r) => r.tree === tree);
  const proxy = mine.map((r) => r.procs.find((p) => p.uid !== 0)?.vmRss ?? NaN);
  const whole = mine.map((r) => r.procs.reduce((s, p) => s + p.vmRss, 0));
  process.stdout.write(`median ${tree}: proxy process VmRSS ${f(median(proxy))} MiB; whole sidecar VmRSS ${f(median(whole))} MiB over ${mine.length} round(s) (processes: ${mine[0]?.procs.length ?? 0})\n`);
}
process.exit(0);
