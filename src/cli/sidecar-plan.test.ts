/**
 * How `meshgate sidecar` starts (sidecar.ts launchPlan, bin/meshgate): the plan's shell words
 * survive `eval` exactly, the plan is the lean entry itself when no launcher is needed, the
 * readability check follows the permission bits the proxy uid would meet, and bin/meshgate runs the
 * other commands through main.js and refuses a bad sidecar command line with exit 2.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { launchPlan, parseSidecarOptions, SIDECAR_ENTRY, shellQuote, unreadableBy } from './sidecar.js';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../bin/meshgate');
const fail = (m: string): never => {
  throw new Error(m);
};

test('shellQuote: sh reads back exactly the words, whatever they hold', () => {
  const words = ['perl', '-e', "it's $HOME `x` \"q\" \\ \n; echo no", '', 'a b', "'", "''", '$(id)', '*'];
  const r = spawnSync('sh', ['-c', `eval "set -- ${shellQuote(words).replace(/[\\"$`]/g, '\\$&')}"; printf '%s\\0' "$@"`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(r.stdout.split('\0').slice(0, -1), words);
});

test('launchPlan: --proxy-uid 0 (or not root) runs the lean entry directly, with the same arguments', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-plan-'));
  try {
    writeFileSync(path.join(dir, 'view.json'), '{}');
    const args = ['--view-file', path.join(dir, 'view.json'), '--pod-ip', '10.0.0.2', '--namespace', 'default', '--service-account', 'web', '--proxy-uid', '0'];
    const plan = launchPlan(parseSidecarOptions(args, fail), args, fail);
    assert.equal(plan.launcher, false);
    assert.deepEqual(plan.argv, [process.execPath, ...process.execArgv, SIDECAR_ENTRY, 'sidecar', ...args]);
    assert.match(SIDECAR_ENTRY, /sidecar-main\.js$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unreadableBy: the owner, group and other bits the proxy uid/gid meet, and search permission on the directories', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-perm-'));
  try {
    chmodSync(dir, 0o755);
    const file = path.join(dir, 'token');
    writeFileSync(file, 'x');
    const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
    const other = { uid: me.uid + 4242, gid: me.gid + 4242 };
    chmodSync(file, 0o644);
    assert.equal(unreadableBy(file, other.uid, other.gid), null, 'world-readable');
    chmodSync(file, 0o640);
    assert.match(unreadableBy(file, other.uid, other.gid) ?? '', /^mode 0640, owner \d+:\d+$/);
    assert.equal(unreadableBy(file, other.uid, me.gid), null, 'group-readable, and the proxy gid is the group');
    chmodSync(file, 0o600);
    assert.equal(unreadableBy(file, me.uid, other.gid), null, 'owner-readable, the proxy uid is the owner');
    assert.match(unreadableBy(file, other.uid, me.gid) ?? '', /mode 0600/);
    chmodSync(file, 0o644);
    const inner = path.join(dir, 'private');
    mkdirSync(inner);
    writeFileSync(path.join(inner, 'cert.pem'), 'x', { mode: 0o644 });
    chmodSync(inner, 0o700);
    assert.equal(unreadableBy(path.join(inner, 'cert.pem'), other.uid, other.gid), `no search permission on ${inner}`);
    // A Kubernetes-style mount: the file is a symlink into a directory the proxy cannot search.
    symlinkSync(path.join(inner, 'cert.pem'), path.join(dir, 'link.pem'));
    assert.equal(unreadableBy(path.join(dir, 'link.pem'), other.uid, other.gid), `no search permission on ${inner}`);
    chmodSync(inner, 0o755);
    assert.equal(unreadableBy(path.join(dir, 'link.pem'), other.uid, other.gid), null);
    assert.match(unreadableBy(path.join(dir, 'missing'), other.uid, other.gid) ?? '', /ENOENT/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('bin/meshgate: other commands run main.js; a bad sidecar command line exits 2 with the reason', () => {
  const env = { ...process.env, MESHGATE_NODE: process.execPath };
  const help = spawnSync(BIN, ['help'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(help.status, 0, help.stderr);
  assert.match(help.stdout, /meshgate sidecar --control HOST:15012/);
  const usage = spawnSync(BIN, ['sidecar', '--help'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(usage.status, 0, usage.stderr);
  assert.match(usage.stdout, /^usage: meshgate sidecar --control HOST:15012 --root-cert FILE --token-file FILE --pod-ip IP/);
  const bad = spawnSync(BIN, ['sidecar', '--pod-ip', '10.0.0.2', '--namespace', 'default'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(bad.status, 2, bad.stderr);
  assert.match(bad.stderr, /^meshgate: sidecar: --control HOST:PORT is required/);
  const missing = spawnSync(BIN, ['sidecar', '--view-file', '/nonexistent/view.json', '--pod-ip', '10.0.0.2', '--namespace', 'default', '--service-account', 'web'], { encoding: 'utf8', env, timeout: 60_000 });
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--view-file: \/nonexistent\/view.json does not exist/);
});
