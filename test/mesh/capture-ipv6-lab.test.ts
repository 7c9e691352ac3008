/**
 * IPv6 capture in a dual-stack lab: with `--ipv6 auto` (the default) a pod with a global IPv6 address
 * gets ip6tables rules too, so its IPv6 traffic cannot bypass the proxy; the test proxy receives IPv6
 * connections on transparent [::1]:15001 and [::1]:15006 with the original destination as the local
 * address. `--clean` leaves ip6tables-save and `ip -6 rule` as before.
 *
 *   node    10.250.0.1  fd00:250::1
 *   app     10.250.0.2  fd00:250::2  capture + test proxy; echo on [::]:7070; VIP ranges on-link
 *   server  10.250.0.3  fd00:250::3  echo on 8080 and [::]:8080
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { ECHO_APP, callFrom, testProxyArgv } from './lab-programs.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const skip = labSkipReason(['ip6tables-save', 'ip6tables-restore']);

interface EchoReply {
  server?: string;
  got?: string;
  remote?: string;
  error?: string;
}

const rulesOnly = (save: string) =>
  save
    .split('\n')
    .filter((l) => l.startsWith('-A ') || (l.startsWith(':') && !/^:[A-Z]+ ACCEPT /.test(l)))
    .sort();

if (skip && labRequired()) {
  test('capture IPv6 lab', () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

describe('meshgate capture over IPv6 (dual stack)', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let proxy: LabProcess;
  let save6Before: string[];
  let rules6Before: string;

  const capture = (args: string[]) => lab.exec('app', process.execPath, [MAIN, 'capture', ...args]);
  const call = async (pod: string, target: string, asUid?: number): Promise<EchoReply> => {
    const out = await callFrom(lab, pod, target, { asUid });
    await new Promise((resolve) => setTimeout(resolve, 100));
    return JSON.parse(out.trim() || '{}') as EchoReply;
  };
  const proxied = () => proxy.stdout.map((l) => JSON.parse(l) as { kind?: string; orig?: string; peer?: string }).filter((e) => e.kind);

  before(async () => {
    lab = Lab.create({
      nodeIp: '10.250.0.1',
      prefixLength: 24,
      nodeIp6: 'fd00:250::1',
      prefixLength6: 64,
      pods: [
        { name: 'app', ip: '10.250.0.2', ip6: 'fd00:250::2', routes: ['10.250.1.0/24', 'fd00:250:1::/64'] },
        { name: 'server', ip: '10.250.0.3', ip6: 'fd00:250::3' },
      ],
    });
    const echo = (pod: string, listen: string) => lab.spawn(pod, [process.execPath, '-e', ECHO_APP], { ECHO_NAME: pod, ECHO_LISTEN: listen });
    for (const a of [echo('server', '8080,[::]:8080,[::]:9090'), echo('app', '[::]:7070')]) {
      await lab.waitForLine(a, (l) => l.includes('listening'));
      await lab.waitForLine(a, (l) => l.includes('[::]'));
    }
    save6Before = rulesOnly(lab.exec('app', 'ip6tables-save', []));
    rules6Before = lab.exec('app', 'ip', ['-6', 'rule', 'show']);
    capture(['--exclude-outbound-ports', '9090']);
    proxy = lab.spawn('app', testProxyArgv(1337, true), { VIPS: JSON.stringify({ '[fd00:250:1::10]:80': '[fd00:250::3]:8080' }) });
    for (const spec of ['127.0.0.1:15001', '127.0.0.1:15006', '[::1]:15001', '[::1]:15006']) await lab.waitForLine(proxy, (l) => l.includes(spec));
  });

  after(() => lab?.close());

  test('auto detected the global IPv6 address: ip6tables rules and the ip -6 policy rule exist', () => {
    assert.match(lab.exec('app', 'ip6tables-save', ['-t', 'mangle']), /-A MESHGATE_PREROUTING -i lo -p tcp -m mark --mark 0x539 -j TPROXY --on-port 15001 --on-ip ::1/);
    assert.match(lab.exec('app', 'ip', ['-6', 'rule', 'show']), /fwmark 0x539 lookup 133/);
    assert.match(lab.exec('app', 'ip', ['-6', 'route', 'show', 'table', '133']), /^local default dev lo/m);
  });

  test('IPv6 outbound to a pod and to a VIP that exists nowhere reach [::1]:15001 with the original destination', async () => {
    const n = proxied().length;
    const pod = await call('app', '[fd00:250::3]:8080');
    assert.equal(pod.server, 'server', JSON.stringify(pod));
    assert.equal(pod.got, 'via outbound [fd00:250::3]:8080\nping\n');
    const vip = await call('app', '[fd00:250:1::10]:80');
    assert.equal(vip.got, 'via outbound [fd00:250:1::10]:80\nping\n', JSON.stringify(vip));
    const seen = proxied().slice(n);
    assert.deepEqual(seen.map((e) => e.orig), ['[fd00:250::3]:8080', '[fd00:250:1::10]:80']);
    assert.match(seen[0].peer!, /^\[fd00:250::2\]:\d+$/);
  });

  test('IPv6 inbound reaches [::1]:15006 with the original destination', async () => {
    const n = proxied().length;
    const reply = await call('server', '[fd00:250::2]:7070');
    assert.equal(reply.server, 'app', JSON.stringify(reply));
    assert.equal(reply.got, 'via inbound [fd00:250::2]:7070\nping\n');
    assert.deepEqual(proxied().slice(n).map((e) => [e.kind, e.orig]), [['inbound', '[fd00:250::2]:7070']]);
  });

  test('over IPv6 the proxy uid is not captured, nor an excluded port; IPv4 is captured alongside', async () => {
    const n = proxied().length;
    assert.equal((await call('app', '[fd00:250::3]:8080', 1337)).got, 'ping\n');
    assert.equal((await call('app', '[fd00:250::3]:9090')).got, 'ping\n');
    assert.equal(proxied().length, n);
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'via outbound 10.250.0.3:8080\nping\n');
  });

  test('over IPv6 the proxy calling its own pod address goes to the inbound listener (hairpin)', async () => {
    const n = proxied().length;
    const reply = await call('app', '[fd00:250::2]:7070', 1337);
    assert.equal(reply.got, 'via inbound [fd00:250::2]:7070\nping\n', JSON.stringify(reply));
    assert.deepEqual(proxied().slice(n).map((e) => [e.kind, e.orig]), [['inbound', '[fd00:250::2]:7070']]);
  });

  test('--ipv6 off: IPv6 rules are not installed by that run, and --clean removes both families', async () => {
    capture(['--clean']);
    capture(['--ipv6', 'off']);
    assert.deepEqual(rulesOnly(lab.exec('app', 'ip6tables-save', [])), save6Before);
    assert.equal((await call('app', '[fd00:250::3]:8080')).got, 'ping\n', 'IPv6 not captured');
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'via outbound 10.250.0.3:8080\nping\n');
    capture(['--ipv6', 'on']);
    assert.equal((await call('app', '[fd00:250::3]:8080')).got, 'via outbound [fd00:250::3]:8080\nping\n');
    capture(['--clean']);
    assert.deepEqual(rulesOnly(lab.exec('app', 'ip6tables-save', [])), save6Before);
    assert.equal(lab.exec('app', 'ip', ['-6', 'rule', 'show']), rules6Before);
    assert.equal(lab.exec('app', 'iptables-save', []).includes('MESHGATE'), false);
    assert.equal((await call('app', '[fd00:250::3]:8080')).got, 'ping\n');
  });
});
