/**
 * `meshgate capture` in a network-namespace lab (reference mesh.md §2.3 and §6), with a test proxy
 * that receives the captured connections on transparent listeners (TPROXY), as the sidecar will.
 *
 * Topology (all inside lab namespaces; nothing in the root namespace):
 *   node    10.250.0.1  bridge
 *   app     10.250.0.2  capture + test proxy (uid 1337) + echo app on 7070, 7071, 15021;
 *                       route 10.250.1.0/24 (service VIPs) on-link
 *   server  10.250.0.3  echo on 8080, 9090 (no capture)
 *   other   10.250.0.4  echo on 8080 (no capture)
 * The VIP 10.250.1.10:80 exists nowhere: only a proxy that reads the original destination can serve
 * it (the test proxy maps it to server:8080).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { ECHO_APP, callFrom, testProxyArgv } from './lab-programs.js';
import { parseDocument } from 'yaml';
import { injectManifests } from '../../src/mesh/inject/inject.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const skip = labSkipReason();

interface EchoReply {
  server?: string;
  local?: string;
  remote?: string;
  got?: string;
  error?: string;
}

/** Normalised `iptables-save`: rules and non-builtin chains per table (comments and counters dropped). */
function normaliseSave(text: string): string[] {
  const out: string[] = [];
  let table = '';
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) table = line.slice(1);
    else if (line.startsWith('-A ')) out.push(`${table} ${line}`);
    else if (line.startsWith(':')) {
      const [name, policy] = line.slice(1).split(' ');
      // nft-backed iptables cannot drop a table once created: an empty builtin chain with the default
      // policy says nothing, a changed policy or a user chain does.
      if (name.toUpperCase() !== name || policy === '-' || policy !== 'ACCEPT') out.push(`${table} :${name} ${policy}`);
    }
  }
  return out.sort();
}

if (skip && labRequired()) {
  test('capture lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

describe('meshgate capture in a network-namespace lab', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let proxy: LabProcess;
  let foreignSave: string[];
  let foreignRules: string;

  const capture = (args: string[]) => lab.exec('app', process.execPath, [MAIN, 'capture', ...args]);
  /** One client connection from `pod` to `target`; then a short settle so the proxy's log lines are read. */
  const call = async (pod: string, target: string, asUid?: number): Promise<EchoReply> => {
    const out = await callFrom(lab, pod, target, { asUid });
    await new Promise((resolve) => setTimeout(resolve, 100));
    return JSON.parse(out.trim() || '{}') as EchoReply;
  };
  const proxied = () => proxy.stdout.map((l) => JSON.parse(l) as { kind?: string; orig?: string; peer?: string; uid?: number }).filter((e) => e.kind);

  before(async () => {
    lab = Lab.create({
      nodeIp: '10.250.0.1',
      prefixLength: 24,
      pods: [
        { name: 'app', ip: '10.250.0.2', routes: ['10.250.1.0/24'] },
        { name: 'server', ip: '10.250.0.3' },
        { name: 'other', ip: '10.250.0.4' },
      ],
    });
    const echo = (pod: string, listen: string) => lab.spawn(pod, [process.execPath, '-e', ECHO_APP], { ECHO_NAME: pod, ECHO_LISTEN: listen });
    const apps = [echo('server', '8080,9090'), echo('other', '8080'), echo('app', '7070,7071,15021')];
    for (const a of apps) await lab.waitForLine(a, (l) => l.includes('listening'));
    // Someone else's rules in the pod: capture must not touch them, --clean must leave them.
    lab.exec('app', 'iptables-restore', ['--noflush'], '*filter\n-A INPUT -p tcp --dport 9999 -j ACCEPT\nCOMMIT\n*mangle\n-A OUTPUT -p udp -j RETURN\nCOMMIT\n');
    lab.exec('app', 'ip', ['rule', 'add', 'fwmark', '0x99', 'lookup', '99']);
    foreignSave = normaliseSave(lab.exec('app', 'iptables-save', []));
    foreignRules = lab.exec('app', 'ip', ['rule', 'show']);
    capture(['--exclude-outbound-ports', '9090', '--exclude-outbound-cidrs', '10.250.0.4/32']);
    proxy = lab.spawn('app', testProxyArgv(1337), { VIPS: JSON.stringify({ '10.250.1.10:80': '10.250.0.3:8080' }) });
    await lab.waitForLine(proxy, (l) => l.includes('15006'));
    await lab.waitForLine(proxy, (l) => l.includes('15001'));
  });

  after(() => lab?.close());

  test('the test proxy runs as uid 1337 on transparent listeners passed by the launcher', async () => {
    const ready = proxy.stdout.map((l) => JSON.parse(l) as { ready?: string; uid?: number }).filter((e) => e.ready);
    assert.deepEqual(ready.map((e) => [e.ready, e.uid]).sort(), [
      ['127.0.0.1:15001', 1337],
      ['127.0.0.1:15006', 1337],
    ]);
  });

  test('outbound to a pod address reaches 15001 with the original destination as localAddress', async () => {
    const before = proxied().length;
    const reply = await call('app', '10.250.0.3:8080');
    assert.equal(reply.server, 'server', JSON.stringify(reply));
    assert.equal(reply.got, 'via outbound 10.250.0.3:8080\nping\n');
    const seen = proxied().slice(before);
    assert.equal(seen.length, 1, JSON.stringify(seen));
    assert.equal(seen[0].kind, 'outbound');
    assert.equal(seen[0].orig, '10.250.0.3:8080');
    assert.match(seen[0].peer!, /^10\.250\.0\.2:\d+$/, 'the app connected from its pod address');
    // The proxy's own connection to the server (uid 1337) was not captured again: one entry, no loop.
    assert.equal(reply.remote, '10.250.0.2');
  });

  test('outbound to a service VIP that exists nowhere is served by the proxy from the original destination', async () => {
    const before = proxied().length;
    const reply = await call('app', '10.250.1.10:80');
    assert.equal(reply.server, 'server', JSON.stringify(reply));
    assert.equal(reply.got, 'via outbound 10.250.1.10:80\nping\n');
    assert.deepEqual(
      proxied().slice(before).map((e) => e.orig),
      ['10.250.1.10:80'],
    );
  });

  test('inbound to the pod reaches 15006 with the original destination; the app sees 127.0.0.6', async () => {
    const before = proxied().length;
    const reply = await call('server', '10.250.0.2:7070');
    assert.equal(reply.server, 'app', JSON.stringify(reply));
    assert.equal(reply.got, 'via inbound 10.250.0.2:7070\nping\n');
    assert.equal(reply.remote, '127.0.0.6');
    const seen = proxied().slice(before);
    assert.equal(seen.length, 1, JSON.stringify(seen));
    assert.equal(seen[0].kind, 'inbound');
    assert.equal(seen[0].orig, '10.250.0.2:7070');
    assert.match(seen[0].peer!, /^10\.250\.0\.3:\d+$/);
  });

  test("the proxy uid's own outbound traffic is not captured", async () => {
    const before = proxied().length;
    const reply = await call('app', '10.250.0.3:8080', 1337);
    assert.equal(reply.server, 'server', JSON.stringify(reply));
    assert.equal(reply.got, 'ping\n', 'straight to the server, not through the proxy');
    assert.equal(proxied().length, before);
  });

  test("the proxy's connections it has closed end cleanly: their last ACK and RST leave the pod (no peer stuck in LAST-ACK)", async () => {
    // A closed socket's last packets (the ACK of the peer's FIN, an RST for data after the close) have
    // no owner uid, so only the connection's first packet can say it is the proxy's (connmark): before,
    // they were captured to 15001 and dropped, and the server pod retransmitted its FIN for minutes.
    const CLOSE_EARLY = String.raw`
const net = require('net');
process.setgid(1337); process.setuid(1337);
const s = net.connect(8080, '10.250.0.3', () => { const port = s.localPort; s.end('ping\n'); s.destroy(); console.log(JSON.stringify({ port })); });
s.on('error', () => {});
`;
    const ports: number[] = [];
    for (let i = 0; i < 3; i++) {
      const p = lab.spawn('app', [process.execPath, '-e', CLOSE_EARLY]);
      ports.push((JSON.parse(await lab.waitForLine(p, (l) => l.includes('"port"'))) as { port: number }).port);
      await p.exited;
    }
    const stuck = () => lab.exec('server', 'ss', ['-Htn', 'state', 'last-ack', 'dst', '10.250.0.2']).split('\n').filter((l) => ports.some((port) => l.includes(`10.250.0.2:${port}`)));
    // The echo server answers after the client's FIN; the client, closed, answers that with an RST.
    const deadline = Date.now() + 5000;
    while (stuck().length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(stuck(), [], 'connections of the proxy uid left in LAST-ACK on the server');
  });

  test('the proxy uid calling its own pod address goes to the inbound listener (hairpin), except excluded ports', async () => {
    const before = proxied().length;
    const reply = await call('app', '10.250.0.2:7070', 1337);
    assert.equal(reply.server, 'app', JSON.stringify(reply));
    assert.equal(reply.got, 'via inbound 10.250.0.2:7070\nping\n');
    assert.equal(reply.remote, '127.0.0.6', 'forwarded by the inbound side, not looped');
    const seen = proxied().slice(before);
    assert.deepEqual(seen.map((e) => [e.kind, e.orig]), [['inbound', '10.250.0.2:7070']]);
    assert.match(seen[0].peer!, /^10\.250\.0\.2:\d+$/);
    assert.equal((await call('app', '10.250.0.2:15021', 1337)).got, 'ping\n', '15021 is excluded from inbound capture');
    assert.equal((await call('app', '127.0.0.1:7070', 1337)).got, 'ping\n', '127.0.0.1 is never hairpinned');
    assert.equal(proxied().length, before + 1);
  });

  test('an excluded outbound port and an excluded CIDR are not captured; other ports of the same hosts are', async () => {
    const before = proxied().length;
    const port = await call('app', '10.250.0.3:9090');
    assert.equal(port.server, 'server', JSON.stringify(port));
    assert.equal(port.got, 'ping\n');
    const cidr = await call('app', '10.250.0.4:8080');
    assert.equal(cidr.server, 'other', JSON.stringify(cidr));
    assert.equal(cidr.got, 'ping\n');
    assert.equal(proxied().length, before, 'nothing went through the proxy');
    // The control: the same server's other port is captured.
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'via outbound 10.250.0.3:8080\nping\n');
  });

  test('loopback and the pod calling its own address are not captured; excluded inbound 15021 is not captured', async () => {
    const before = proxied().length;
    assert.equal((await call('app', '127.0.0.1:7070')).got, 'ping\n');
    assert.equal((await call('app', '10.250.0.2:7070')).got, 'ping\n');
    const health = await call('server', '10.250.0.2:15021');
    assert.equal(health.got, 'ping\n', JSON.stringify(health));
    assert.equal(health.remote, '10.250.0.3', 'kubelet-style probe reaches the port directly');
    assert.equal(proxied().length, before);
  });

  test('capture is idempotent: a second run gives the same rules and one policy rule', async () => {
    const once = lab.exec('app', 'iptables-save', []);
    capture(['--exclude-outbound-ports', '9090', '--exclude-outbound-cidrs', '10.250.0.4/32']);
    assert.deepEqual(normaliseSave(lab.exec('app', 'iptables-save', [])), normaliseSave(once));
    assert.equal(lab.exec('app', 'ip', ['rule', 'show']).split('\n').filter((l) => l.includes('fwmark 0x539 lookup 133')).length, 1);
    assert.equal(lab.exec('app', 'ip', ['route', 'show', 'table', '133']).trim().split('\n').length, 1);
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'via outbound 10.250.0.3:8080\nping\n', 'still capturing');
  });

  test('the init container meshgate inject writes, run as is, captures what its annotations say', async () => {
    const pod = [
      'apiVersion: v1',
      'kind: Pod',
      'metadata:',
      '  name: app',
      '  annotations:',
      '    traffic.sidecar.istio.io/excludeOutboundPorts: "8080"',
      '    traffic.sidecar.istio.io/includeInboundPorts: "7071"',
      'spec: {containers: [{name: app, image: app}]}',
      '',
    ].join('\n');
    const doc = parseDocument(injectManifests(pod).output).toJS() as { spec: { initContainers: { name: string; args: string[] }[] } };
    const init = doc.spec.initContainers.find((c) => c.name === 'istio-init')!;
    lab.exec('app', process.execPath, [MAIN, ...init.args]);
    const before = proxied().length;
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'ping\n', 'excludeOutboundPorts 8080');
    assert.equal((await call('app', '10.250.0.3:9090')).got, 'via outbound 10.250.0.3:9090\nping\n');
    assert.equal((await call('server', '10.250.0.2:7070')).got, 'ping\n', 'includeInboundPorts has only 7071');
    assert.equal((await call('server', '10.250.0.2:7071')).got, 'via inbound 10.250.0.2:7071\nping\n');
    assert.deepEqual(proxied().slice(before).map((e) => e.orig), ['10.250.0.3:9090', '10.250.0.2:7071']);
  });

  test('--inbound-ports with a list captures only those ports', async () => {
    capture(['--inbound-ports', '7071']);
    const before = proxied().length;
    assert.equal((await call('server', '10.250.0.2:7070')).got, 'ping\n', '7070 not listed');
    assert.equal((await call('server', '10.250.0.2:7071')).got, 'via inbound 10.250.0.2:7071\nping\n');
    assert.deepEqual(
      proxied().slice(before).map((e) => e.orig),
      ['10.250.0.2:7071'],
    );
    // No --exclude-outbound-*: the previously excluded port is captured now (the re-run replaced the rules).
    assert.equal((await call('app', '10.250.0.3:9090')).got, 'via outbound 10.250.0.3:9090\nping\n');
  });

  test('--include-outbound-cidrs limits outbound capture to those destinations', async () => {
    capture(['--include-outbound-cidrs', '10.250.1.0/24']);
    const before = proxied().length;
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'ping\n', 'pod range not included');
    assert.equal((await call('app', '10.250.1.10:80')).got, 'via outbound 10.250.1.10:80\nping\n');
    assert.equal(proxied().length, before + 1);
  });

  test('capture works under strict reverse-path filtering (rp_filter=1, as some CNIs set in pods)', async () => {
    capture([]);
    for (const k of ['all', 'default', 'lo', 'eth0']) lab.exec('app', 'sysctl', ['-qw', `net.ipv4.conf.${k}.rp_filter=1`]);
    assert.match(lab.exec('app', 'sysctl', ['net.ipv4.conf.eth0.rp_filter']), /= 1/);
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'via outbound 10.250.0.3:8080\nping\n');
    assert.equal((await call('app', '10.250.1.10:80')).got, 'via outbound 10.250.1.10:80\nping\n');
    assert.equal((await call('server', '10.250.0.2:7070')).got, 'via inbound 10.250.0.2:7070\nping\n');
    assert.equal((await call('app', '10.250.0.2:7070', 1337)).got, 'via inbound 10.250.0.2:7070\nping\n', 'hairpin');
  });

  test('capture --clean leaves iptables-save and ip rule as before capture, and nothing is captured', async () => {
    capture(['--clean']);
    assert.deepEqual(normaliseSave(lab.exec('app', 'iptables-save', [])), foreignSave);
    assert.equal(lab.exec('app', 'ip', ['rule', 'show']), foreignRules);
    assert.equal(lab.exec('app', 'ip', ['route', 'show', 'table', 'all']).includes('table 133'), false);
    const before = proxied().length;
    assert.equal((await call('server', '10.250.0.2:7070')).got, 'ping\n');
    assert.equal((await call('app', '10.250.0.3:8080')).got, 'ping\n');
    assert.equal(proxied().length, before);
    // A second --clean has nothing to do and succeeds.
    capture(['--clean']);
    assert.deepEqual(normaliseSave(lab.exec('app', 'iptables-save', [])), foreignSave);
  });
});
