/**
 * The lab harness itself: it builds pods that reach each other over the bridge and nothing else, it
 * leaves the root namespace untouched, close() removes every namespace and process (also when a test
 * body threw), and sweepLeftovers() removes what a dead test process left, never a live lab.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { Lab, LAB_PREFIX, labNamespacesOf, labRequired, labSkipReason, sweepLeftovers } from './lab.js';
import { CLIENT, ECHO_APP } from './lab-programs.js';

const skip = labSkipReason();
if (skip && labRequired()) {
  test('lab harness', () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

const rootState = () => ({
  links: spawnSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).stdout.replace(/\s+qlen \d+/g, '').split('\n').map((l) => l.replace(/^\d+: /, '').split(' ')[0]).sort(),
  rules: spawnSync('ip', ['rule', 'show'], { encoding: 'utf8' }).stdout,
  routes: spawnSync('ip', ['route', 'show'], { encoding: 'utf8' }).stdout,
});

describe('network-namespace lab harness', { skip: skip ? `skipped: ${skip}` : false }, () => {
  const labs: Lab[] = [];
  after(() => labs.forEach((l) => l.close()));

  test('pods reach each other over the bridge; the root namespace is untouched; close() removes everything', async () => {
    const before = rootState();
    const lab = Lab.create({ nodeIp: '10.250.0.1', prefixLength: 24, pods: [{ name: 'a', ip: '10.250.0.2' }, { name: 'b', ip: '10.250.0.3', routes: ['10.250.1.0/24'] }] });
    labs.push(lab);
    assert.deepEqual(rootState(), before, 'nothing in the root namespace');
    assert.match(lab.exec('b', 'ip', ['route', 'show']), /10\.250\.1\.0\/24 dev eth0/);
    const echo = lab.spawn('a', [process.execPath, '-e', ECHO_APP], { ECHO_NAME: 'a', ECHO_LISTEN: '8080' });
    await lab.waitForLine(echo, (l) => l.includes('listening'));
    const r = await lab.run('b', [process.execPath, '-e', CLIENT], { TARGET: '10.250.0.2:8080' });
    assert.deepEqual(JSON.parse(r.stdout), { server: 'a', local: '10.250.0.2:8080', remote: '10.250.0.3', got: 'ping\n' });
    // No default route: an address outside the lab is unreachable from a pod.
    const out = await lab.run('b', [process.execPath, '-e', CLIENT], { TARGET: '192.0.2.1:80', CLIENT_TIMEOUT_MS: '2000' });
    assert.match(out.stdout, /ENETUNREACH/);
    const pid = echo.child.pid!;
    assert.equal(labNamespacesOf(lab.id).length, 3);
    lab.close();
    assert.deepEqual(labNamespacesOf(lab.id), []);
    const gone = await Promise.race([echo.exited.then(() => 'exited'), new Promise((r) => setTimeout(() => r('still running'), 5000))]);
    assert.equal(gone, 'exited', 'the pod process is gone');
    assert.equal(existsSync(`/proc/${pid}`), false, 'the pod process is reaped');
    assert.deepEqual(rootState(), before);
    lab.close(); // twice is fine
  });

  test('a test that throws still leaves nothing once its lab is closed in finally', async () => {
    let id = '';
    await assert.rejects(async () => {
      const lab = Lab.create({ nodeIp: '10.250.0.1', prefixLength: 24, pods: [{ name: 'a', ip: '10.250.0.2' }] });
      id = lab.id;
      try {
        lab.spawn('a', ['sleep', '30']);
        throw new Error('test body failed');
      } finally {
        lab.close();
      }
    }, /test body failed/);
    assert.deepEqual(labNamespacesOf(id), []);
  });

  test('a pod that cannot be built removes what was made before it', () => {
    const names = () => spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    // Only this process's namespaces: other test files build and remove labs at the same time.
    const ours = () => names().split('\n').filter((l) => l.startsWith(`${LAB_PREFIX}${process.pid}-`)).length;
    const before = ours();
    assert.throws(() => Lab.create({ nodeIp: '10.250.0.1', prefixLength: 24, pods: [{ name: 'a', ip: '10.250.0.2' }, { name: 'b', ip: 'not-an-address' }] }), /ip -n .* addr add not-an-address/);
    assert.equal(ours(), before);
  });

  test("sweepLeftovers removes a dead process's namespaces and keeps a live lab's", () => {
    const live = Lab.create({ nodeIp: '10.250.0.1', prefixLength: 24, pods: [{ name: 'a', ip: '10.250.0.2' }] });
    labs.push(live);
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    const stale = `${LAB_PREFIX}${dead.stdout}-1-node`;
    assert.equal(spawnSync('ip', ['netns', 'add', stale]).status, 0);
    try {
      const swept = sweepLeftovers();
      assert.ok(swept.includes(stale), `swept ${JSON.stringify(swept)}`);
      assert.equal(labNamespacesOf(live.id).length, 2, 'the live lab is kept');
    } finally {
      spawnSync('ip', ['netns', 'del', stale]);
    }
  });
});
