/**
 * `meshgate sidecar` in a network-namespace lab: the outbound side (15001), readiness, metrics, the
 * launcher and the uid drop, with `meshgate capture` in the client pod and a hand-built view
 * (`--view-file`), the workload certificate from a real `meshgate control`.
 *
 *   node    10.250.0.1  bridge
 *   client  10.250.0.2  capture + sidecar (uid 1337) + HTTP/TCP client agents (root: captured);
 *                       route 10.250.1.0/24 (service VIPs, which exist nowhere) on-link
 *   v1      10.250.0.3  HTTP app "v1" :9080, TCP echo :9000
 *   v2      10.250.0.4  HTTP app "v2" :9080
 *   ext     10.250.0.5  HTTP app "ext" :8080 (not a service: passthrough), TCP echo :9000,
 *                       HTTPS app "secure" :8443 requiring a mesh client certificate (sa/secure's certificate)
 *   cp      10.250.0.6  meshgate control (CA on :15012), started after the sidecar (readiness 503 → 200)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createPrivateKey } from 'node:crypto';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { callFrom, ECHO_APP } from './lab-programs.js';
import { BANNER_APP, clientView, H2C_CLIENT, HOLD_CLIENT, HTTP_AGENT, HTTP_APP, TLS_CLIENT, WAIT_GREETING } from './sidecar-programs.js';
import { makePlugInCa, makeWorkloadCert } from '../support/mesh-pki.js';
import { loadOrCreateCaDirectory } from '../../src/mesh/ca/ca.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { MESHGATE } from './meshgate-bin.js';

const MAIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const skip = labSkipReason();
const ADDR = { v1: '10.250.0.3', v2: '10.250.0.4', ext: '10.250.0.5' };

interface HttpResult {
  status?: number;
  body?: string;
  flags?: string | null;
  error?: string;
  headers?: Record<string, string>;
}

if (skip && labRequired()) {
  test('sidecar lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

describe('meshgate sidecar outbound in a network-namespace lab', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let dir: string;
  let viewFile: string;
  let sidecar: LabProcess;
  let apps: Record<string, LabProcess> = {};
  const agents = new Map<string, { proc: LabProcess; next: number }>();

  /** `count` requests from `pod`'s HTTP agent (keep-alive). */
  const http = async (pod: string, host: string, port: number, p: string, opts: { headers?: Record<string, string>; count?: number; timeoutMs?: number } = {}): Promise<HttpResult[]> => {
    let agent = agents.get(pod);
    if (!agent) {
      const proc = lab.spawn(pod, [process.execPath, '-e', HTTP_AGENT], {}, { stdin: true });
      await lab.waitForLine(proc, (l) => l.includes('"agent"'));
      agents.set(pod, (agent = { proc, next: 0 }));
    }
    const id = ++agent.next;
    const count = opts.count ?? 1;
    const timeoutMs = opts.timeoutMs ?? 5000;
    agent.proc.child.stdin!.write(`${JSON.stringify({ id, host, port, path: p, headers: opts.headers ?? {}, count, timeoutMs })}\n`);
    const line = await lab.waitForLine(agent.proc, (l) => l.startsWith(`{"id":${id},`), count * (timeoutMs + 1000) + 10_000);
    return (JSON.parse(line) as { results: HttpResult[] }).results;
  };
  const one = async (host: string, port: number, p: string, headers: Record<string, string> = {}): Promise<HttpResult> => (await http('client', host, port, p, { headers }))[0];
  const body = (r: HttpResult): { server?: string; remote?: string; host?: string; peer?: string; sni?: string } => JSON.parse(r.body ?? '{}');
  const writeView = (ir: IRSnapshot): void => {
    const tmp = `${viewFile}.tmp`;
    writeFileSync(tmp, JSON.stringify(ir));
    chmodSync(tmp, 0o644);
    renameSync(tmp, viewFile);
  };
  const metrics = async (): Promise<string> => (await http('ext', '10.250.0.2', 15020, '/stats/prometheus'))[0].body ?? '';
  const ready = async (): Promise<number | undefined> => (await http('ext', '10.250.0.2', 15021, '/healthz/ready', { timeoutMs: 2000 }))[0].status;
  const seenBy = (app: string, p: string) => apps[app].stdout.filter((l) => l.includes(`"seen":"${p}"`)).map((l) => JSON.parse(l) as { seen: string; remote: string });
  const sidecarLog = () => sidecar.stderr.join('');
  /** The app's request log (its lines arrive through a pipe, maybe after the answer): waits up to 2 s for `n` entries. */
  const seen = async (app: string, p: string, n: number) => {
    const deadline = Date.now() + 2000;
    while (seenBy(app, p).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    await new Promise((r) => setTimeout(r, 100));
    return seenBy(app, p);
  };

  before(async () => {
    lab = Lab.create({
      nodeIp: '10.250.0.1',
      prefixLength: 24,
      pods: [
        { name: 'client', ip: '10.250.0.2', routes: ['10.250.1.0/24'] },
        { name: 'v1', ip: ADDR.v1 },
        { name: 'v2', ip: ADDR.v2 },
        { name: 'ext', ip: ADDR.ext },
        { name: 'cp', ip: '10.250.0.6' },
      ],
    });
    dir = mkdtempSync(path.join(os.tmpdir(), 'mg-sidecar-lab-'));
    chmodSync(dir, 0o755);
    const caDir = path.join(dir, 'ca');
    const { intermediate } = await makePlugInCa(caDir);
    const material = await loadOrCreateCaDirectory(caDir, { trustDomain: 'cluster.local' });
    writeFileSync(path.join(dir, 'token'), `${await issueToken(material.signingKey, { namespace: 'default', serviceAccount: 'client' }, 3600)}\n`);
    const secure = await makeWorkloadCert({ certPem: intermediate.certPem, key: createPrivateKey(intermediate.key.export({ type: 'pkcs8', format: 'pem' })) }, 'spiffe://cluster.local/ns/default/sa/secure');
    writeFileSync(path.join(dir, 'secure.crt'), secure.certPem + intermediate.certPem);
    writeFileSync(path.join(dir, 'secure.key'), secure.keyPem);
    for (const f of ['token', 'secure.crt', 'secure.key']) chmodSync(path.join(dir, f), 0o644);
    chmodSync(caDir, 0o755);
    chmodSync(path.join(caDir, 'root-cert.pem'), 0o644);
    mkdirSync(path.join(dir, 'config'));
    viewFile = path.join(dir, 'view.json');
    writeView(clientView(ADDR, 'ALLOW_ANY', 'view-1'));

    const app = (pod: string, name: string, port: number, env: Record<string, string> = {}) => lab.spawn(pod, [process.execPath, '-e', HTTP_APP], { APP_NAME: name, APP_PORT: String(port), ...env });
    apps = {
      v1: app('v1', 'v1', 9080),
      v2: app('v2', 'v2', 9080),
      ext: app('ext', 'ext', 8080),
      secure: app('ext', 'secure', 8443, { TLS_CERT: path.join(dir, 'secure.crt'), TLS_KEY: path.join(dir, 'secure.key'), TLS_CA: path.join(caDir, 'root-cert.pem') }),
      auto: app('v1', 'auto', 7000),
      banner: lab.spawn('v2', [process.execPath, '-e', BANNER_APP], { APP_NAME: 'v2', APP_PORT: '7001' }),
      echoV1: lab.spawn('v1', [process.execPath, '-e', ECHO_APP], { ECHO_NAME: 'v1', ECHO_LISTEN: '9000' }),
      echoExt: lab.spawn('ext', [process.execPath, '-e', ECHO_APP], { ECHO_NAME: 'ext', ECHO_LISTEN: '9000' }),
    };
    for (const a of Object.values(apps)) await lab.waitForLine(a, (l) => l.includes('listening'));
    lab.exec('client', process.execPath, [MAIN, 'capture']);
    sidecar = lab.spawn('client', [
      MESHGATE, 'sidecar',
      '--control', '10.250.0.6:15012', '--root-cert', path.join(caDir, 'root-cert.pem'), '--token-file', path.join(dir, 'token'),
      '--pod-ip', '10.250.0.2', '--namespace', 'default', '--service-account', 'client', '--pod-name', 'client-0',
      '--view-file', viewFile, '--drain', '2s', '--access-log', 'stdout',
    ]);
    const deadline = Date.now() + 20_000;
    while (!sidecarLog().includes('sidecar listening') && Date.now() < deadline && sidecar.child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.match(sidecarLog(), /sidecar listening/, sidecarLog());
  });

  after(() => {
    lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('readiness is 503 without a workload certificate, 200 once the control plane issued one', async () => {
    assert.equal(await ready(), 503);
    const cp = lab.spawn('cp', [process.execPath, MAIN, 'control', '--config', path.join(dir, 'config'), '--ca-dir', path.join(dir, 'ca'), '--listen', '10.250.0.6:15012', '--admin-port', '0']);
    const deadline = Date.now() + 30_000;
    let status: number | undefined;
    while (Date.now() < deadline && (status = await ready()) !== 200) await new Promise((r) => setTimeout(r, 200));
    assert.equal(status, 200, `sidecar: ${sidecarLog()}\ncontrol: ${cp.stderr.join('')}`);
  });

  test('the proxy runs as uid 1337 on the launcher\'s transparent sockets; 15020/15021 on the pod address', () => {
    const line = sidecarLog().split('\n').find((l) => l.includes('sidecar listening'))!;
    const info = JSON.parse(line) as { uid: number; outbound: number[]; inbound: number[]; health: number[]; status: number[] };
    assert.equal(info.uid, 1337);
    assert.deepEqual(info.outbound, [15001]);
    assert.deepEqual(info.inbound, [15006]);
    assert.deepEqual(info.health, [15021]);
    assert.deepEqual(info.status, [15020]);
  });

  test('HTTP to a service VIP goes through 15001 to the app in another pod (no capture loop)', async () => {
    const r = await one('10.250.1.10', 9080, '/hello', { 'x-canary': 'v2' });
    assert.equal(r.status, 200, JSON.stringify(r));
    const b = body(r);
    assert.equal(b.server, 'v2');
    assert.equal(b.host, '10.250.1.10:9080');
    // The app saw the request from the client pod's address, once: the proxy's own connection was not captured again.
    assert.deepEqual((await seen('v2', '/hello', 1)).map((s) => s.remote), ['10.250.0.2']);
  });

  test('header routing: x-canary: v2 always reaches v2', async () => {
    const rs = await http('client', '10.250.1.10', 9080, '/canary', { headers: { 'x-canary': 'v2' }, count: 20 });
    assert.deepEqual([...new Set(rs.map((r) => body(r).server))], ['v2']);
  });

  test('a 90/10 weighted split over 400 requests', async () => {
    const rs = await http('client', '10.250.1.10', 9080, '/split', { count: 400, timeoutMs: 5000 });
    const v2 = rs.filter((r) => body(r).server === 'v2').length;
    const v1 = rs.filter((r) => body(r).server === 'v1').length;
    assert.equal(v1 + v2, 400, JSON.stringify(rs.find((r) => r.status !== 200)));
    // Binomial(400, 0.1): mean 40, σ = 6; ±4σ.
    assert.ok(v2 >= 16 && v2 <= 64, `v2 got ${v2} of 400`);
  });

  test('retries: an app that fails the first time is retried by the client sidecar', async () => {
    const r = await one('10.250.1.10', 9080, '/retry/fail-once/a', { host: 'reviews.default.svc.cluster.local' });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal((await seen('v1', '/retry/fail-once/a', 2)).length, 2);
  });

  test('timeout: 504 UT after the route timeout', async () => {
    const t0 = Date.now();
    const r = await one('10.250.1.10', 9080, '/slow');
    assert.equal(r.status, 504, JSON.stringify(r));
    assert.match(r.flags ?? '', /UT/);
    assert.ok(Date.now() - t0 < 2500, 'answered at the timeout, not when the app answered');
  });

  test('opaque TCP to a TCP service VIP is relayed to its endpoint', async () => {
    const out = await callFrom(lab, 'client', '10.250.1.11:9000');
    const reply = JSON.parse(out.trim()) as { server?: string; got?: string; remote?: string };
    assert.equal(reply.server, 'v1', out);
    assert.equal(reply.got, 'ping\n');
    assert.equal(reply.remote, '10.250.0.2');
  });

  test('sniffing an undeclared port: HTTP/1.1 and h2c are routed as HTTP', async () => {
    const h1 = await one('10.250.1.14', 7000, '/h1');
    assert.equal(h1.status, 200, JSON.stringify(h1));
    assert.equal(body(h1).server, 'auto');
    const r = await lab.run('client', [process.execPath, '-e', H2C_CLIENT], { TARGET: '10.250.1.14:7000', AUTHORITY: 'auto.default.svc.cluster.local:7000' });
    const h2 = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; body?: string };
    assert.equal(h2.status, 200, r.stdout + r.stderr);
    // The app speaks HTTP/1.1: the sidecar took the h2c request and forwarded it (its route, its x-request-id).
    const b = JSON.parse(h2.body!) as { server: string; url: string; headers: Record<string, string> };
    assert.equal(b.server, 'auto');
    assert.equal(b.url, '/h2c');
    assert.ok(b.headers['x-request-id']);
  });

  test('sniffing an undeclared port: a server-first protocol is relayed as TCP after the detection timeout', async () => {
    const r = await lab.run('client', [process.execPath, '-e', WAIT_GREETING], { TARGET: '10.250.1.15:7001' });
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { line?: string; ms?: number; error?: string };
    assert.equal(out.line, '220 banner from v2', r.stdout + r.stderr);
    assert.ok(out.ms! >= 250, `greeting after ${out.ms} ms: the proxy waited for client bytes first`);
  });

  test('sniffing an undeclared port: a TLS ClientHello is relayed as TLS (the client\'s own TLS reaches the server)', async () => {
    const r = await lab.run('client', [process.execPath, '-e', TLS_CLIENT], { TARGET: '10.250.1.16:7443', SNI: 'tlsapp.example', CERT: path.join(dir, 'secure.crt'), KEY: path.join(dir, 'secure.key'), CA: path.join(dir, 'ca', 'root-cert.pem') });
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; body?: string };
    assert.equal(out.status, 200, r.stdout + r.stderr);
    const b = JSON.parse(out.body!) as { server: string; sni: string; url: string };
    assert.equal(b.server, 'secure');
    assert.equal(b.sni, 'tlsapp.example', 'not re-encrypted: the server saw the client\'s SNI');
    assert.equal(b.url, '/tls');
  });

  test('ALLOW_ANY: unknown destinations pass through (HTTP and TCP)', async () => {
    // Connection: close: a relayed connection outlives view changes (the REGISTRY_ONLY test needs a new one).
    const r = await one(ADDR.ext, 8080, '/outside', { connection: 'close' });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(body(r).server, 'ext');
    assert.deepEqual((await seen('ext', '/outside', 1)).map((s) => s.remote), ['10.250.0.2']);
    const out = JSON.parse((await callFrom(lab, 'client', `${ADDR.ext}:9000`)).trim()) as { server?: string; got?: string };
    assert.equal(out.server, 'ext');
    assert.equal(out.got, 'ping\n');
    // A Host no virtual host knows, on a service VIP: allow_any forwards it to the original destination (nothing there: 503).
    const unknownHost = await one('10.250.1.10', 9080, '/x', { host: 'nobody.example' });
    assert.equal(unknownHost.status, 503, JSON.stringify(unknownHost));
    assert.match(unknownHost.flags ?? '', /UF/);
  });

  test('Istio mTLS to a server requiring the mesh client certificate; a server failing verification is 503 UF', async () => {
    const r = await one('10.250.1.12', 8443, '/secret');
    assert.equal(r.status, 200, JSON.stringify(r));
    const b = body(r);
    assert.equal(b.server, 'secure');
    assert.match(b.peer ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/client/);
    assert.equal(b.sni, 'outbound_.8443_._.secure.default.svc.cluster.local');
    const bad = await one('10.250.1.13', 8443, '/secret');
    assert.equal(bad.status, 503, JSON.stringify(bad));
    assert.match(bad.flags ?? '', /UF/);
    assert.equal((await seen('secure', '/secret', 2)).length, 1, 'the server with the wrong identity got no request');
  });

  test('metrics on 15020: istio_requests_total with reporter="source" and the destination service', async () => {
    const text = await metrics();
    const line = text.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('destination_service="reviews.default.svc.cluster.local"') && l.includes('response_code="200"') && l.includes('destination_version') );
    assert.ok(line, text.slice(0, 3000));
    assert.match(line!, /reporter="source"/);
    assert.match(line!, /source_workload="client"/);
    assert.match(line!, /source_workload_namespace="default"/);
    assert.match(text, /istio_tcp_connections_opened_total\{[^}]*destination_service="echo\.default\.svc\.cluster\.local"/);
  });

  test('access log: one line per request, as at the gateway (route, cluster, upstream host, original destination)', () => {
    const line = sidecar.stdout.find((l) => l.includes('"GET /hello HTTP/1.1"'));
    assert.ok(line, sidecar.stdout.slice(0, 20).join('\n'));
    assert.match(line!, / 200 /);
    assert.match(line!, /outbound\|9080\|v2\|reviews\.default\.svc\.cluster\.local/);
    assert.match(line!, /10\.250\.0\.4:9080/);
    assert.match(line!, /10\.250\.1\.10:9080 10\.250\.0\.2:\d+/);
    assert.match(line!, /vs\/reviews\/canary/);
  });

  test('a sidecar whose --proxy-uid capture does not exempt refuses to start (its traffic would loop)', async () => {
    const r = await lab.run('client', [process.execPath, MAIN, 'sidecar', '--view-file', viewFile, '--pod-ip', '10.250.0.2', '--namespace', 'default', '--service-account', 'client', '--proxy-uid', '1338', '--outbound-port', '25001', '--inbound-port', '25006', '--status-port', '25020', '--health-port', '25021']);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /do not exempt uid 1338 \(they exempt 1337\)/);
  });

  test('a new view applies without dropping an open connection; REGISTRY_ONLY then gives 502 and closes TCP', async () => {
    const hold = lab.spawn('client', [process.execPath, '-e', HOLD_CLIENT], { TARGET: '10.250.1.11:9000' }, { stdin: true });
    await lab.waitForLine(hold, (l) => l.includes('connected'));
    writeView(clientView(ADDR, 'REGISTRY_ONLY', 'view-2'));
    const deadline = Date.now() + 10_000;
    while (!sidecarLog().includes('"version":"view-2"') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(sidecarLog(), /view applied.*view-2/);
    const r = await one(ADDR.ext, 8080, '/blocked');
    assert.equal(r.status, 502, JSON.stringify(r));
    assert.equal(seenBy('ext', '/blocked').length, 0);
    const tcp = JSON.parse((await callFrom(lab, 'client', `${ADDR.ext}:9000`)).trim()) as { error?: string; server?: string };
    assert.equal(tcp.server, undefined, JSON.stringify(tcp));
    // Known services still work, and the connection opened under view-1 finishes.
    assert.equal((await one('10.250.1.10', 9080, '/still', { 'x-canary': 'v2' })).status, 200);
    hold.child.stdin!.write('finish\n');
    const done = JSON.parse(await lab.waitForLine(hold, (l) => l.includes('"out"'))) as { out: string };
    assert.equal(JSON.parse(done.out.trim()).got, 'hello\nbye\n');
    writeView(clientView(ADDR, 'ALLOW_ANY', 'view-3'));
  });

  test('SIGTERM: the root parent passes it on, the proxy drains and exits 0; its listeners are gone', async () => {
    sidecar.child.kill('SIGTERM');
    const code = await Promise.race([sidecar.exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 15_000))]);
    assert.equal(code, 0, sidecarLog());
    assert.match(sidecarLog(), /draining/);
    const listening = lab.exec('client', 'ss', ['-Hltn']);
    assert.doesNotMatch(listening, /:1500[16]|:1502[01]/, listening);
  });
});
