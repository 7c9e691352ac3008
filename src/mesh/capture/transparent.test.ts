/**
 * The transparent-listener launcher's argument building and the inherited-socket parsing (no root
 * needed). That the launched sockets really receive TPROXY connections, IPv4 and IPv6, is proved in
 * test/mesh/capture-lab.test.ts and capture-ipv6-lab.test.ts, whose test proxy uses listenTransparent.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import { TRANSPARENT_FDS_ENV, inheritedTransparentFds, listenTransparent, transparentLauncherArgv } from './transparent.js';

test('launcher argv: perl -e PROGRAM -- uid gid listeners -- command', () => {
  const argv = transparentLauncherArgv({ listeners: ['127.0.0.1:15001', '[::1]:15006'], uid: 1337, gid: 1337, command: ['node', 'x.js'] });
  assert.equal(argv[0], 'perl');
  assert.equal(argv[1], '-e');
  assert.deepEqual(argv.slice(3), ['--', '1337', '1337', '127.0.0.1:15001', '[::1]:15006', '--', 'node', 'x.js']);
  for (const bad of ['localhost:15001', '127.0.0.1', '::1:15001', '127.0.0.1:15001; rm -rf /']) {
    assert.throws(() => transparentLauncherArgv({ listeners: [bad], uid: -1, gid: -1, command: ['true'] }), /is not ADDRESS:PORT/, bad);
  }
});

test('inheritedTransparentFds reads MESHGATE_TRANSPARENT_FDS', () => {
  const fds = inheritedTransparentFds({ [TRANSPARENT_FDS_ENV]: '127.0.0.1:15001=3,[::1]:15001=4, junk' });
  assert.deepEqual([...fds], [
    ['127.0.0.1:15001', 3],
    ['[::1]:15001', 4],
  ]);
  assert.equal(inheritedTransparentFds({}).size, 0);
});

test('listenTransparent names the missing socket', async () => {
  await assert.rejects(listenTransparent(net.createServer(), '127.0.0.1:15006', { [TRANSPARENT_FDS_ENV]: '127.0.0.1:15001=3' }), /no inherited transparent socket for 127\.0\.0\.1:15006/);
});

test('the launcher program is valid Perl with only perl-base modules', { skip: spawnSync('sh', ['-c', 'command -v perl']).status !== 0 ? 'perl not installed' : false }, () => {
  const argv = transparentLauncherArgv({ listeners: [], uid: -1, gid: -1, command: ['true'] });
  const r = spawnSync('perl', ['-c', '-e', argv[2]], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stderr, /syntax OK/);
});
