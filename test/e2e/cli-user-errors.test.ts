/** The meshgate command on user mistakes: one clear line, exit 1, never a stack trace (#12). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chmodSync, mkdirSync } from 'node:fs';
import { CLI, freePort, removeDir, tempDir, writeConfig } from '../helpers/gateway.js';

function meshgate(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** `run` until it exits (it must, on these mistakes), at most 20 s. */
function runUntilExit(args: string[]): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, 'run', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

function oneLine(text: string, what: string): void {
  assert.equal(text.trim().split('\n').length, 1, `${what}: one line expected, got:\n${text}`);
  assert.doesNotMatch(text, /\n\s+at /, `${what}: a stack trace`);
}

test('a config path that is a file or is missing: validate, translate and run say so in one line and exit 1', async () => {
  const dir = tempDir();
  try {
    writeConfig(dir, 'ingress.yaml', 'kind: Ingress\n');
    const file = path.join(dir, 'ingress.yaml');
    const missing = path.join(dir, 'nope');
    for (const [args, want] of [
      [['validate', file], /is a file, not a directory/],
      [['validate', missing], /no such directory/],
      [['translate', file], /is a file, not a directory/],
      [['translate', missing], /no such directory/],
    ] as const) {
      const r = meshgate(...args);
      assert.equal(r.code, 1, `meshgate ${args.join(' ')}: expected exit 1, got ${r.code}\n${r.stdout}${r.stderr}`);
      assert.match(r.stderr, want);
      oneLine(r.stderr, args.join(' '));
      assert.doesNotMatch(r.stdout, /0 objects/);
    }
    for (const [config, want] of [[file, /--config .*is a file/], [missing, /--config .*no such directory/]] as const) {
      for (const workers of ['0', '1']) {
        const r = await runUntilExit(['--config', config, '--workers', workers, '--admin-port', '0', '--http-port', String(await freePort()), '--health-port', '0']);
        assert.equal(r.code, 1, `run --config ${config}: expected exit 1, got ${r.code}\n${r.out}`);
        assert.match(r.out, want);
        oneLine(r.out, `run --config ${config}`);
      }
    }
  } finally {
    removeDir(dir);
  }
});

test('an unreadable config directory is one line and exit 1', () => {
  const dir = tempDir();
  const locked = path.join(dir, 'locked');
  mkdirSync(locked);
  chmodSync(locked, 0);
  // root reads any directory: run the command as nobody then (the parent stays traversable).
  const asRoot = os.userInfo().uid === 0;
  if (asRoot) chmodSync(dir, 0o755);
  try {
    const r = spawnSync(process.execPath, [CLI, 'validate', locked], { encoding: 'utf8', timeout: 20_000, ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
    assert.equal(r.status, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /locked: (permission denied|cannot list the directory \(permission denied\))/);
    oneLine(r.stderr, 'validate locked');
  } finally {
    chmodSync(locked, 0o700);
    removeDir(dir);
  }
});

test('a busy admin port names --admin-port, in one line, exit 1', async () => {
  const dir = tempDir();
  const busy = net.createServer();
  await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
  const port = (busy.address() as net.AddressInfo).port;
  try {
    const r = await runUntilExit(['--config', dir, '--workers', '0', '--admin-port', String(port), '--http-port', String(await freePort()), '--health-port', '0']);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /admin port \d+ is in use \(EADDRINUSE\): change --admin-port/);
    oneLine(r.out, 'busy admin port');
  } finally {
    busy.close();
    removeDir(dir);
  }
});

test('meshgate --version prints the package version; COMMAND --help prints its purpose and flags, exit 0', async () => {
  const { readFileSync } = await import('node:fs');
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', '-v']) {
    const v = meshgate(flag);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.stdout.trim(), `meshgate ${pkg.version}`);
  }
  for (const cmd of ['run', 'validate', 'translate', 'routes', 'clusters', 'demo']) {
    for (const flag of ['--help', '-h']) {
      const r = meshgate(cmd, flag);
      assert.equal(r.code, 0, `${cmd} ${flag}: exit ${r.code}\n${r.stderr}`);
      assert.match(r.stdout, new RegExp(`usage:\\n  meshgate ${cmd}\\b`), `${cmd} ${flag}:\n${r.stdout}`);
      assert.equal(r.stderr, '');
    }
  }
});
