/**
 * The sidecar's process model in a network-namespace pod: `meshgate sidecar` (bin/meshgate, the
 * image's entrypoint) leaves exactly one process once it has started, the proxy, as the proxy uid,
 * with the PID the container runtime started (the launcher and the proxy replaced the entry by
 * exec), holding the transparent capture listeners; SIGTERM drains it and its exit code is the
 * command's. Mistakes are refused before anything binds, with exit 2. `node dist/src/cli/main.js
 * sidecar` as root still works, with a root waiter next to the proxy.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { meshClientView } from './sidecar-programs.js';
import { MESHGATE } from './meshgate-bin.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const skip = labSkipReason();

if (skip && labRequired()) {
  test('sidecar process lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

interface Proc {
  pid: number;
  ppid: number;
  uid: number;
  cmdline: string[];
}

function proc(pid: number): Proc | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    return {
      pid,
      ppid: Number(/^PPid:\s+(\d+)/m.exec(status)![1]),
      uid: Number(/^Uid:\s+(\d+)/m.exec(status)![1]),
      cmdline: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean),
    };
  } catch {
    return null;
  }
}

/** `pid` and all its descendants. */
function tree(pid: number): Proc[] {
  const all = readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map((n) => proc(Number(n))).filter((p): p is Proc => p !== null);
  const out = all.filter((p) => p.pid === pid);
  for (let i = 0; i < out.length; i++) out.push(...all.filter((p) => p.ppid === out[i].pid));
  return out;
}

/** Socket inodes of the TCP listeners on 127.0.0.1:`port` in the pod (its /proc/net/tcp). */
function listenerInodes(lab: Lab, pod: string, port: number): string[] {
  const text = lab.exec(pod, 'cat', ['/proc/net/tcp']);
  const want = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  return text.split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f[1] === want && f[3] === '0A').map((f) => f[9]);
}

function socketInodes(pid: number): string[] {
  const out: string[] = [];
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) out.push(m[1]);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

describe('meshgate sidecar: one proxy process, signals and exit codes', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let dir: string;
  const ARGS = () => ['--view-file', path.join(dir, 'view.json'), '--pod-ip', '10.250.0.2', '--namespace', 'default', '--service-account', 'client', '--drain', '1s'];

  const waitListening = async (p: LabProcess): Promise<void> => {
    const deadline = Date.now() + 30_000;
    while (!p.stderr.join('').includes('view applied') && Date.now() < deadline && p.child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.match(p.stderr.join(''), /view applied/, p.stderr.join(''));
  };
  const exitWithin = async (p: LabProcess, ms: number): Promise<number | null> => {
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([p.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), ms)))]);
    clearTimeout(timer);
    assert.notEqual(code, 'timeout', `the sidecar did not exit within ${ms} ms: ${p.stderr.join('').slice(-1500)}`);
    return code as number | null;
  };

  before(() => {
    lab = Lab.create({ nodeIp: '10.250.0.1', prefixLength: 24, pods: [{ name: 'client', ip: '10.250.0.2' }] });
    dir = mkdtempSync(path.join(os.tmpdir(), 'mg-sidecar-proc-'));
    chmodSync(dir, 0o755);
    writeFileSync(path.join(dir, 'view.json'), JSON.stringify(meshClientView('10.250.0.3', 'proc-1')), { mode: 0o644 });
  });

  after(() => {
    lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('bin/meshgate: only the proxy remains, uid 1337, with the started PID, holding the capture listeners; SIGTERM drains and exits 0', async () => {
    const sidecar = lab.spawn('client', [MESHGATE, 'sidecar', ...ARGS()]);
    await waitListening(sidecar);
    const procs = tree(sidecar.child.pid!);
    assert.equal(procs.length, 1, `one process, not ${procs.length}: ${JSON.stringify(procs)}`);
    const [p] = procs;
    assert.equal(p.pid, sidecar.child.pid, 'the proxy has the PID the runtime started (exec all the way)');
    assert.equal(p.uid, 1337);
    assert.match(p.cmdline.join(' '), /sidecar-main\.js sidecar --view-file/);
    assert.equal(readFileSync(`/proc/${p.pid}/status`, 'utf8').match(/^Gid:\s+(\d+)/m)?.[1], '1337');
    const held = new Set(socketInodes(p.pid));
    for (const port of [15001, 15006]) {
      const inodes = listenerInodes(lab, 'client', port);
      assert.equal(inodes.length, 1, `one listener on 127.0.0.1:${port}`);
      assert.ok(held.has(inodes[0]), `the proxy holds the 127.0.0.1:${port} listener`);
    }
    sidecar.child.kill('SIGTERM');
    assert.equal(await exitWithin(sidecar, 15_000), 0);
    assert.match(sidecar.stderr.join(''), /"msg":"draining"/);
    assert.deepEqual(listenerInodes(lab, 'client', 15001), [], 'the listener is gone with the proxy');
  });

  test('bin/meshgate: a usage error exits 2 before anything binds', async () => {
    const r = await lab.run('client', [MESHGATE, 'sidecar', '--view-file', path.join(dir, 'view.json'), '--pod-ip', 'not-an-ip', '--namespace', 'default', '--service-account', 'client']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--pod-ip: "not-an-ip" is not an IP address/);
    assert.deepEqual(listenerInodes(lab, 'client', 15001), []);
  });

  test('bin/meshgate: a token file the proxy uid cannot read is refused as root, naming the file and the uid (exit 2)', async () => {
    const token = path.join(dir, 'private.token');
    writeFileSync(token, 'x\n', { mode: 0o600 });
    writeFileSync(path.join(dir, 'root-cert.pem'), 'x\n', { mode: 0o644 });
    const r = await lab.run('client', [MESHGATE, 'sidecar', '--control', '10.250.0.9:15012', '--root-cert', path.join(dir, 'root-cert.pem'), '--token-file', token, '--pod-ip', '10.250.0.2', '--namespace', 'default', '--service-account', 'client']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /--token-file .*private\.token: the proxy runs as uid 1337 gid 1337 .* could not read it \(mode 0600, owner 0:0\)/);
  });

  test('bin/meshgate: the listeners cannot be made (port taken): the launcher fails and so does the command', async () => {
    const holder = lab.spawn('client', [process.execPath, '-e', "require('net').createServer().listen(15001, '127.0.0.1', () => console.log('holding'))"]);
    await lab.waitForLine(holder, (l) => l.includes('holding'));
    try {
      const r = await lab.run('client', [MESHGATE, 'sidecar', ...ARGS()]);
      assert.notEqual(r.status, 0);
      assert.match(r.stderr, /launcher: bind 127\.0\.0\.1:15001: Address already in use/);
    } finally {
      holder.child.kill('SIGKILL');
      await holder.exited;
    }
  });

  test('node dist/src/cli/main.js sidecar as root still works: a root waiter and the proxy; SIGTERM reaches the proxy, exit 0', async () => {
    const sidecar = lab.spawn('client', [process.execPath, MAIN, 'sidecar', ...ARGS(), '--log-level', 'debug']);
    await waitListening(sidecar);
    const procs = tree(sidecar.child.pid!);
    const proxy = procs.find((p) => p.uid === 1337);
    assert.ok(proxy, JSON.stringify(procs));
    assert.equal(procs.find((p) => p.pid === sidecar.child.pid)?.uid, 0, 'the process node started stays, as root');
    assert.match(proxy.cmdline.join(' '), /sidecar-main\.js sidecar/);
    assert.match(sidecar.stderr.join(''), /root waiter/);
    sidecar.child.kill('SIGTERM');
    assert.equal(await exitWithin(sidecar, 15_000), 0);
    assert.equal(proc(proxy.pid), null, 'the proxy is gone too');
  });
});
