/**
 * Which capture variant gives Node the original destination (reference mesh.md §2.3), checked in the
 * lab so the answer stays true on this machine kind:
 *   - TPROXY hands nothing to a listener without IP_TRANSPARENT (the kernel drops the SYN): a plain
 *     `net.createServer().listen(15001)` never sees the connection, hence the launcher
 *     (src/mesh/capture/transparent.ts; capture-lab.test.ts proves the working path);
 *   - REDIRECT reaches a plain listener, but Node then sees 127.0.0.1:15001, not the original
 *     destination (SO_ORIGINAL_DST needs native code; /proc/net/nf_conntrack is root-only).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason } from './lab.js';
import { ECHO_APP, PLAIN_LISTENER, callFrom } from './lab-programs.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const skip = labSkipReason();

if (skip && labRequired()) {
  test('capture variants lab', () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

describe('capture variants seen from Node', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;

  before(async () => {
    lab = Lab.create({ nodeIp: '10.250.0.1', prefixLength: 24, pods: [{ name: 'app', ip: '10.250.0.2' }, { name: 'server', ip: '10.250.0.3' }] });
    const echo = lab.spawn('server', [process.execPath, '-e', ECHO_APP], { ECHO_NAME: 'server', ECHO_LISTEN: '8080' });
    await lab.waitForLine(echo, (l) => l.includes('listening'));
  });
  after(() => lab?.close());

  const plainListener = async (listen: string) => {
    const p = lab.spawn('app', ['setpriv', '--reuid', '1337', '--regid', '1337', '--clear-groups', process.execPath, '-e', PLAIN_LISTENER], { LISTEN: listen });
    await lab.waitForLine(p, (l) => l.includes('"up"'));
    return p;
  };

  test('TPROXY: a listener without IP_TRANSPARENT receives nothing; the connection fails', async () => {
    lab.exec('app', process.execPath, [MAIN, 'capture']);
    const p = await plainListener('127.0.0.1:15001');
    try {
      const out = await callFrom(lab, 'app', '10.250.0.3:8080', { timeoutMs: 1500 });
      assert.equal(out.trim(), JSON.stringify({ error: 'TIMEOUT' }));
      assert.equal(p.stdout.filter((l) => l.includes('accepted')).length, 0);
    } finally {
      p.child.kill();
      lab.exec('app', process.execPath, [MAIN, 'capture', '--clean']);
    }
  });

  test('REDIRECT: a plain listener is reached but sees 127.0.0.1:15001, not the original destination', async () => {
    lab.exec('app', 'iptables-restore', ['--noflush'], '*nat\n-A OUTPUT -p tcp -d 10.250.0.3/32 -m owner ! --uid-owner 1337 -j REDIRECT --to-ports 15001\nCOMMIT\n');
    const p = await plainListener('0.0.0.0:15001');
    try {
      const out = await callFrom(lab, 'app', '10.250.0.3:8080');
      assert.equal(out.trim(), 'plain');
      const deadline = Date.now() + 5000;
      while (!p.stdout.some((l) => l.includes('accepted')) && Date.now() < deadline) await new Promise((res) => setTimeout(res, 25));
      assert.deepEqual(p.stdout.filter((l) => l.includes('accepted')), [JSON.stringify({ accepted: '127.0.0.1:15001' })]);
    } finally {
      p.child.kill();
      lab.exec('app', 'iptables', ['-t', 'nat', '-F', 'OUTPUT']);
    }
  });
});
