/**
 * `meshgate sidecar` in a dual-stack pod: `meshgate capture` adds ip6tables rules, the sidecar gets
 * transparent `[::1]:15001`/`[::1]:15006` listeners from the launcher (it has an IPv6 `--pod-ip`),
 * and IPv6 outbound traffic is routed by its original destination like IPv4.
 *
 *   client  10.250.0.2 / fd00:250::2  capture + sidecar (--view-file); route fd00:250:1::/64 (VIPs) on-link;
 *                                     TCP echo app :7070 on both families (inbound, undeclared port)
 *   v1      10.250.0.3 / fd00:250::3  HTTP app :9080 and TCP echo :9000, both on IPv6
 *
 * Inbound over both families: capture gives lo the address ::6 (as istio-iptables does), the app sees
 * the sidecar's forwarding from ::6 over IPv6 and from 127.0.0.6 over IPv4; `capture --clean` removes
 * ::6 again.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { callFrom, ECHO_APP } from './lab-programs.js';
import { HTTP_APP, ipv6ClientView } from './sidecar-programs.js';
import { MESHGATE } from './meshgate-bin.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const skip = labSkipReason(['ip6tables-save', 'ip6tables-restore']);

if (skip && labRequired()) {
  test('sidecar IPv6 lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

/** One HTTP GET from the client pod (captured): prints {status, body} or {error}. */
const GET = String.raw`
require('http').get({ host: process.env.HOST, port: Number(process.env.PORT), path: '/v6', agent: false }, (res) => {
  let body = ''; res.setEncoding('utf8'); res.on('data', (d) => (body += d)); res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
}).on('error', (e) => console.log(JSON.stringify({ error: e.code || String(e) })));
`;

describe('meshgate sidecar with IPv6', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let dir: string;
  let sidecar: LabProcess;
  let app: LabProcess;

  before(async () => {
    lab = Lab.create({
      nodeIp: '10.250.0.1',
      prefixLength: 24,
      nodeIp6: 'fd00:250::1',
      prefixLength6: 64,
      pods: [
        { name: 'client', ip: '10.250.0.2', ip6: 'fd00:250::2', routes: ['10.250.1.0/24', 'fd00:250:1::/64'] },
        { name: 'v1', ip: '10.250.0.3', ip6: 'fd00:250::3' },
      ],
    });
    dir = mkdtempSync(path.join(os.tmpdir(), 'mg-sidecar-v6-'));
    chmodSync(dir, 0o755);
    writeFileSync(path.join(dir, 'view.json'), JSON.stringify(ipv6ClientView('fd00:250::3', 'v6-1')), { mode: 0o644 });
    app = lab.spawn('v1', [process.execPath, '-e', HTTP_APP], { APP_NAME: 'v1', APP_PORT: '9080', APP_HOST: '::' });
    const echo = lab.spawn('v1', [process.execPath, '-e', ECHO_APP], { ECHO_NAME: 'v1', ECHO_LISTEN: '[::]:9000' });
    const inboundApp = lab.spawn('client', [process.execPath, '-e', ECHO_APP], { ECHO_NAME: 'client-app', ECHO_LISTEN: '7070,[::]:7070' });
    await lab.waitForLine(app, (l) => l.includes('listening'));
    await lab.waitForLine(echo, (l) => l.includes('listening'));
    await lab.waitForLine(inboundApp, (l) => l.includes('[::]:7070'));
    lab.exec('client', process.execPath, [MAIN, 'capture']);
    sidecar = lab.spawn('client', [MESHGATE, 'sidecar', '--view-file', path.join(dir, 'view.json'), '--pod-ip', '10.250.0.2', '--pod-ip', 'fd00:250::2', '--namespace', 'default', '--service-account', 'client']);
    const deadline = Date.now() + 20_000;
    while (!sidecar.stderr.join('').includes('view applied') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(sidecar.stderr.join(''), /view applied/, sidecar.stderr.join(''));
  });

  after(() => {
    lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the launcher made IPv4 and IPv6 transparent listeners', () => {
    const line = sidecar.stderr.join('').split('\n').find((l) => l.includes('sidecar listening'))!;
    const info = JSON.parse(line) as { uid: number; outbound: number[]; inbound: number[]; health: number[] };
    assert.equal(info.uid, 1337);
    assert.deepEqual(info.outbound, [15001, 15001]);
    assert.deepEqual(info.inbound, [15006, 15006]);
    assert.deepEqual(info.health, [15021, 15021], '0.0.0.0 and ::');
  });

  test('HTTP to an IPv6 service VIP is routed to its endpoint', async () => {
    const r = await lab.run('client', [process.execPath, '-e', GET], { HOST: 'fd00:250:1::10', PORT: '9080' });
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; body?: string };
    assert.equal(out.status, 200, r.stdout + r.stderr + sidecar.stderr.join(''));
    const b = JSON.parse(out.body!) as { server: string; remote: string; host: string };
    assert.equal(b.server, 'v1');
    assert.equal(b.host, '[fd00:250:1::10]:9080');
    assert.equal(b.remote, 'fd00:250::2');
  });

  test('an unknown IPv6 destination passes through (ALLOW_ANY)', async () => {
    const reply = JSON.parse((await callFrom(lab, 'client', '[fd00:250::3]:9000')).trim()) as { server?: string; got?: string; remote?: string };
    assert.equal(reply.server, 'v1', JSON.stringify(reply));
    assert.equal(reply.got, 'ping\n');
    assert.equal(reply.remote, 'fd00:250::2');
  });

  test('dual-stack outbound: IPv4 HTTP to the same pod passes through alongside IPv6', async () => {
    const r = await lab.run('client', [process.execPath, '-e', GET], { HOST: '10.250.0.3', PORT: '9080' });
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; body?: string };
    assert.equal(out.status, 200, r.stdout + r.stderr);
    const b = JSON.parse(out.body!) as { server: string; remote: string };
    assert.equal(b.server, 'v1');
    assert.match(b.remote, /^(::ffff:)?10\.250\.0\.2$/);
  });

  test('capture gave lo ::6, the source of inbound IPv6 forwarding', () => {
    assert.match(lab.exec('client', 'ip', ['-6', 'addr', 'show', 'dev', 'lo']), /inet6 ::6\/128/);
  });

  test('dual-stack inbound: IPv6 reaches the app from ::6, IPv4 from 127.0.0.6', async () => {
    const v6 = JSON.parse((await callFrom(lab, 'v1', '[fd00:250::2]:7070')).trim()) as { server?: string; got?: string; remote?: string; local?: string; error?: string };
    assert.equal(v6.server, 'client-app', `${JSON.stringify(v6)}\n${sidecar.stderr.join('').slice(-2000)}`);
    assert.equal(v6.got, 'ping\n');
    assert.equal(v6.remote, '::6');
    assert.equal(v6.local, 'fd00:250::2:7070');
    const v4 = JSON.parse((await callFrom(lab, 'v1', '10.250.0.2:7070')).trim()) as { server?: string; got?: string; remote?: string };
    assert.equal(v4.server, 'client-app', JSON.stringify(v4));
    assert.equal(v4.got, 'ping\n');
    assert.equal(v4.remote, '127.0.0.6');
  });

  test('capture --clean removes ::6 from lo with the rules', () => {
    lab.exec('client', process.execPath, [MAIN, 'capture', '--clean']);
    assert.doesNotMatch(lab.exec('client', 'ip', ['-6', 'addr', 'show', 'dev', 'lo']), /::6\/128/);
    assert.equal(lab.exec('client', 'ip6tables-save', []).includes('MESHGATE'), false);
    assert.equal(lab.exec('client', 'iptables-save', []).includes('MESHGATE'), false);
  });
});
