/**
 * `npm run bench:sidecar` (issue 16, "Bench, in the lab"): two pods talking directly against the same
 * traffic through two `meshgate sidecar`s, in the network-namespace lab (test/mesh/lab.ts), same run.
 *
 *   node dist/bench/sidecar.js [--rate 500] [--connections 16] [--duration 10] [--warmup 10]
 *                              [--rounds 1] [--idle 5] [--body 1024] [--pin] [--timeout SECONDS] [--json]
 *                              [--sidecar-node-args='--cpu-prof --cpu-prof-dir=DIR'] [--floor] [--floor-http]
 *
 * Lab (root, iproute2, iptables, perl, setpriv; reference/mesh.md §6):
 *   client   10.250.0.2  meshgate capture + sidecar (default/client, view meshClientView) + the load
 *   server   10.250.0.3  meshgate capture + sidecar (default/reviews, view meshServerView, STRICT) + app :9080
 *   cp       10.250.0.5  meshgate control (CA: the sidecars' workload certificates)
 *   dclient  10.250.0.6  load only, no capture, no sidecar
 *   dserver  10.250.0.7  the same app :9080, no capture, no sidecar
 *
 *   direct  dclient → 10.250.0.7:9080 (the app)
 *   mesh    client → 10.250.1.10:9080 (Service VIP of reviews) → captured to the client sidecar's
 *           outbound 15001 → Istio mTLS (auto mTLS, SNI outbound_.9080_._.reviews..., ALPN istio-http/1.1)
 *           → captured to the server sidecar's inbound 15006 (STRICT) → the app from 127.0.0.6
 *
 * Load: bench/fixed-rate-load.ts (RATE req/s over CONNECTIONS HTTP/1.1 keep-alive connections, one in
 * flight per connection, latency from when each request was due) in the client pod (`ip netns exec`),
 * after WARMUP seconds, for DURATION seconds; it dials 127.0.0.1, so bench/sidecar-connect.ts (a
 * `node --import` preload) points its connections at the target. Each round runs direct and mesh
 * back to back (order alternating between rounds); summaries are medians over rounds.
 *
 * CPU: utime+stime (/proc/PID/stat) of both sidecars' process trees (the proxy; the launcher and the
 * entry exec into it, so after startup the tree is that one process)
 * over a window inside the measured part, divided by the requests the server app counted in that same
 * window; vCPU per 1000 req/s = CPU ms per 1k requests ÷ 1000. The warm-up (WARMUP seconds, 10 by
 * default: V8 compiles the request path, the pools connect, and after an idle pause the idle-memory
 * compaction has dropped compiled code that the next burst compiles again) is measured the same way
 * and reported on its own ("in the warm-up"), never in the medians: the medians are the steady
 * state, as a fixed-rate load test of Envoy measures it. RSS: VmRSS and RssAnon
 * (/proc/PID/status) of each sidecar process after IDLE seconds idle, holding its certificate and view,
 * right after the load, and after the load and IDLE more seconds idle (what the proxy gives back).
 * Pinning (--pin, with taskset and 2+ CPUs): both sidecars on CPU1; the load, apps, control plane and
 * this harness on CPU0, as bench/engine.ts does. Off by default: on a shared, busy 2-core machine two
 * sidecars pinned to one contended core got too little of it and the mesh path fell to 200 req/s (a
 * queue growing for seconds), while unpinned it kept 500 req/s in the same minutes. The output gives
 * the load average and the CPU that processes outside this bench used during each measured window.
 * A run whose load saw errors or fell behind is reported but left out of the medians.
 *
 * Floor (--floor): a third path in each round, dclient → two bare Node.js relays (mutual TLS between
 * them, no HTTP; see RELAY) → the dserver app, measured like the sidecars: what Node.js's own socket
 * and TLS path costs between the same pods, so the sidecars' figure can be read against it.
 *
 * Profiling: --sidecar-node-args gives Node options to both sidecars through a MESHGATE_NODE wrapper
 * (bin/meshgate runs the launcher with them, which passes its execArgv on to the proxy; NODE_OPTIONS
 * would refuse --cpu-prof); the sidecars then get SIGTERM after the last run and are
 * waited for (drain, exit), so a `--cpu-prof` profile is written. With --floor the relays get them too. DIR must be writable by the proxy
 * uid (1337).
 *
 * Every process started here is killed by PID, and the lab's namespaces deleted, at the end, on error,
 * on SIGINT/SIGTERM and when the overall time bound passes. Exit 1 when a run saw errors or failed,
 * 2 when the lab cannot run here.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { spawnSync } from 'node:child_process';
import { Lab, labSkipReason, type LabProcess } from '../test/mesh/lab.js';
import { HTTP_AGENT, meshClientView, meshServerView } from '../test/mesh/sidecar-programs.js';
import { makePlugInCa } from '../test/support/mesh-pki.js';
import { loadOrCreateCaDirectory } from '../src/mesh/ca/ca.js';
import { issueToken } from '../src/mesh/ca/token.js';
import { cpuBusyMs, cpuMs, pinSelf, processTree, tasksetAvailable } from './proc.js';
import { MESHGATE } from '../test/mesh/meshgate-bin.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));

/**
 * A node that runs with `args` first, for bin/meshgate's MESHGATE_NODE: the launcher passes its own
 * execArgv on to the proxy it execs, so options Node refuses in NODE_OPTIONS (--cpu-prof) reach it.
 */
function nodeWrapper(dir: string, args: string[]): string {
  const file = path.join(dir, 'node-with-args.sh');
  const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
  writeFileSync(file, `#!/bin/sh\nexec ${[process.execPath, ...args].map(q).join(' ')} "$@"\n`);
  chmodSync(file, 0o755);
  return file;
}
const MAIN = path.resolve(HERE, '../src/cli/main.js');
const LOAD = path.join(HERE, 'fixed-rate-load.js');
const CONNECT_SHIM = pathToFileURL(path.join(HERE, 'sidecar-connect.js')).href;

const { values } = parseArgs({
  options: {
    rate: { type: 'string', default: '500' },
    connections: { type: 'string', default: '16' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '1' },
    idle: { type: 'string', default: '5' },
    body: { type: 'string', default: '1024' },
    pin: { type: 'boolean', default: false },
    timeout: { type: 'string' },
    json: { type: 'boolean', default: false },
    'sidecar-node-args': { type: 'string', default: '' },
    floor: { type: 'boolean', default: false },
    'floor-http': { type: 'boolean', default: false },
  },
});
const floorHttp = values['floor-http'];
const floor = values.floor || floorHttp;
const rate = Number(values.rate);
const connections = Number(values.connections);
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const rounds = Number(values.rounds);
const idleSeconds = Number(values.idle);
const sidecarNodeArgs = values['sidecar-node-args'].split(' ').filter((a) => a !== '');
const bodyBytes = Number(values.body);
for (const [name, v, min] of [['rate', rate, 1], ['connections', connections, 1], ['duration', duration, 2], ['warmup', warmup, 1], ['rounds', rounds, 1], ['idle', idleSeconds, 0], ['body', bodyBytes, 0]] as const) {
  if (!Number.isFinite(v) || v < min) {
    process.stderr.write(`bench:sidecar: --${name} must be a number >= ${min} (got ${String(v)})\n`);
    process.exit(2);
  }
}
const perRunSeconds = warmup + duration + 20;
const timeoutSeconds = values.timeout !== undefined ? Number(values.timeout) : 150 + 2 * idleSeconds + rounds * 2 * perRunSeconds;

const TARGETS = { addedP99Ms: 2, pairVcpuPer1000Rps: 0.25, idleRssMiB: 70 };
const HOST = 'reviews.default.svc.cluster.local';
const IPS = { node: '10.250.0.1', client: '10.250.0.2', server: '10.250.0.3', cp: '10.250.0.5', dclient: '10.250.0.6', dserver: '10.250.0.7', vip: '10.250.1.10' };

function log(s: string): void {
  process.stderr.write(`[sidecar-bench] ${s}\n`);
}
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * The app in both server pods: 200 with BODY_BYTES bytes to every request. On a stdin line "<id>" it
 * prints {"id","total","inbound","xfcc"}: requests so far, those from 127.0.0.6 (the inbound sidecar)
 * and those carrying x-forwarded-client-cert (they came over Istio mTLS).
 */
const BENCH_APP = String.raw`
const http = require('http');
const body = Buffer.alloc(Number(process.env.BODY_BYTES), 'x');
let total = 0, inbound = 0, xfcc = 0;
const server = http.createServer((req, res) => {
  total++;
  if (req.socket.remoteAddress === '127.0.0.6') inbound++;
  if (req.headers['x-forwarded-client-cert']) xfcc++;
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
});
server.keepAliveTimeout = 120000;
server.headersTimeout = 121000;
server.listen(Number(process.env.APP_PORT), '0.0.0.0', () => console.log(JSON.stringify({ listening: Number(process.env.APP_PORT) })));
let buf = '';
process.stdin.setEncoding('utf8').on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const id = buf.slice(0, i).trim();
    buf = buf.slice(i + 1);
    console.log(JSON.stringify({ id, total, inbound, xfcc }));
  }
});
`;

/**
 * `--floor`: the cost of Node.js's own socket and TLS path between the same pods, with no HTTP at
 * all. RELAY_MODE=out (in dclient) listens on 127.0.0.1:9080 and opens one mutual-TLS connection
 * (TLS 1.3, P-256 workload certificates, ALPN istio-http/1.1, as the sidecars use) to dserver:15006
 * per client connection; RELAY_MODE=in (in dserver) terminates it and opens one plaintext connection
 * to the app from 127.0.0.6. Each relays bytes both ways as they come (a read, then a write), which
 * is the least any Node.js proxy does per request: 2 reads and 2 writes, one side TLS.
 * `--floor-http` (implies --floor): the relays also parse each message head into lines and write it
 * again with one header added (names lowercased, Connection and Keep-Alive dropped, bodies framed by
 * Content-Length): about the least an HTTP-aware Node.js proxy does, without routing, policy or telemetry.
 */
const RELAY = String.raw`
const net = require('net'), tls = require('tls'), fs = require('fs');
const e = process.env;
const creds = { cert: fs.readFileSync(e.CERT), key: fs.readFileSync(e.KEY), ca: fs.readFileSync(e.CA) };
// RELAY_HTTP=1: each message head is parsed into lines, its names lowercased, Connection and
// Keep-Alive dropped, one header added, and written again with the body's first bytes; bodies are
// framed by Content-Length (anything else is relayed as bytes from then on).
const CRLF2 = Buffer.from('\r\n\r\n');
const framer = (extra) => {
  let remaining = 0;
  let bytes = false;
  return (d) => {
    if (bytes) return d;
    if (remaining >= d.length) { remaining -= d.length; return d; }
    if (remaining > 0) { bytes = true; return d; } // a head after body bytes in one read: not in this bench
    const end = d.indexOf(CRLF2);
    if (end < 0) { bytes = true; return d; }
    const lines = d.latin1Slice(0, end).split('\r\n');
    let head = lines[0] + '\r\n';
    let length = 0;
    for (let i = 1; i < lines.length; i++) {
      const l = lines[i];
      const c = l.indexOf(':');
      const name = l.slice(0, c).toLowerCase();
      const value = l.slice(c + 1).trim();
      if (name === 'connection' || name === 'keep-alive') continue;
      if (name === 'content-length') length = Number(value);
      else if (name === 'transfer-encoding') bytes = true;
      head += name + ': ' + value + '\r\n';
    }
    head += extra + '\r\n\r\n';
    const body = d.subarray(end + 4);
    remaining = Math.max(0, length - body.length);
    const out = Buffer.allocUnsafe(head.length + body.length);
    out.latin1Write(head, 0);
    body.copy(out, head.length);
    return out;
  };
};
const join = (a, b) => {
  a.setNoDelay(true);
  b.setNoDelay(true);
  const http = e.RELAY_HTTP === '1';
  const relay = (from, to) => {
    const f = http ? framer(from === a ? 'x-floor-request: 1' : 'x-floor-response: 1') : (d) => d;
    from.on('data', (d) => { if (!to.write(f(d))) { from.pause(); to.once('drain', () => from.resume()); } });
  };
  relay(a, b);
  relay(b, a);
  const close = () => { a.destroy(); b.destroy(); };
  for (const s of [a, b]) { s.on('error', close); s.on('close', close); }
};
const ready = (port) => console.log(JSON.stringify({ listening: port }));
process.on('SIGTERM', () => process.exit(0));
if (e.RELAY_MODE === 'out') {
  net.createServer((down) => join(down, tls.connect({ host: e.UP_HOST, port: 15006, ...creds, rejectUnauthorized: false, ALPNProtocols: ['istio-http/1.1'], minVersion: 'TLSv1.3' }))).listen(9080, '127.0.0.1', () => ready(9080));
} else {
  tls.createServer({ ...creds, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['istio-http/1.1'], minVersion: 'TLSv1.3' }, (down) => join(down, net.connect({ host: '127.0.0.1', port: 9080, localAddress: '127.0.0.6' }))).listen(15006, '0.0.0.0', () => ready(15006));
}
`;

interface LoadResult {
  sent: number;
  completed: number;
  errors: number;
  seconds: number;
  achievedRate: number;
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
}

type Path = 'direct' | 'mesh' | 'relay';

interface RunResult {
  round: number;
  path: Path;
  load: LoadResult;
  /** The CPU window inside the measured part. */
  windowSeconds: number;
  windowRequests: number;
  /** Both sidecars' CPU ms in the window (mesh; relay: both relays). */
  sidecarCpuMs: { client: number; server: number } | null;
  sidecarCpuMsPer1k: number | null;
  /** The same over the warm-up (from the load's start to the window); null for direct. */
  warmupCpuMsPer1k: number | null;
  appCpuMsPer1k: number;
  loadCpuMsPer1k: number;
  /** CPU (ms, per second of the window) of processes outside this bench, per CPU, and the machine's busy CPUs. */
  othersCpuPercent: number;
  machineBusyPercent: number[];
  /** TCP counters of the client pod and the server pod over the whole run (warm-up included). */
  tcp: { client: TcpCounters; server: TcpCounters };
}

interface TcpCounters {
  activeOpens: number;
  passiveOpens: number;
  retransSegs: number;
  listenOverflows: number;
  listenDrops: number;
}

/** TCP counters of a network namespace (its /proc/net/snmp and /proc/net/netstat). */
function tcpCounters(ns: string): TcpCounters {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp', '/proc/net/netstat'], { encoding: 'utf8', timeout: 10_000 });
  const text = r.stdout ?? '';
  const table = (prefix: string): Map<string, number> => {
    const out = new Map<string, number>();
    const lines = text.split('\n').filter((l) => l.startsWith(`${prefix}:`));
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const k = lines[i].split(/\s+/).slice(1);
      const v = lines[i + 1].split(/\s+/).slice(1);
      k.forEach((name, j) => out.set(name, Number(v[j])));
    }
    return out;
  };
  const tcp = table('Tcp');
  const ext = table('TcpExt');
  return { activeOpens: tcp.get('ActiveOpens') ?? 0, passiveOpens: tcp.get('PassiveOpens') ?? 0, retransSegs: tcp.get('RetransSegs') ?? 0, listenOverflows: ext.get('ListenOverflows') ?? 0, listenDrops: ext.get('ListenDrops') ?? 0 };
}

function tcpDelta(a: TcpCounters, b: TcpCounters): TcpCounters {
  return { activeOpens: b.activeOpens - a.activeOpens, passiveOpens: b.passiveOpens - a.passiveOpens, retransSegs: b.retransSegs - a.retransSegs, listenOverflows: b.listenOverflows - a.listenOverflows, listenDrops: b.listenDrops - a.listenDrops };
}

interface ProcMem {
  pid: number;
  uid: number;
  command: string;
  vmRssKiB: number;
  rssAnonKiB: number;
  /** File-backed resident pages (the node binary and libraries, shared with every other Node process). */
  rssFileKiB: number;
  /** Proportional set size (/proc/PID/smaps_rollup): shared pages divided among the processes sharing them. */
  pssKiB: number;
}

function readMem(pid: number): ProcMem | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const kib = (k: string, text = status) => Number(new RegExp(`^${k}:\\s+(\\d+) kB$`, 'm').exec(text)?.[1] ?? 0);
    let rollup = '';
    try {
      rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    } catch {
      // kernels without smaps_rollup: Pss reads 0
    }
    return { pid, uid: Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1), command: cmd.map((a) => path.basename(a)).slice(0, 3).join(' '), vmRssKiB: kib('VmRSS'), rssAnonKiB: kib('RssAnon'), rssFileKiB: kib('RssFile'), pssKiB: kib('Pss', rollup) };
  } catch {
    return null;
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const mib = (kib: number) => kib / 1024;
const f = (x: number | null, d = 2) => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(d));

// ---- lifetime: everything is torn down synchronously, whatever ends the run ----
let lab: Lab | null = null;
let dir: string | null = null;
function teardown(): void {
  if (lab !== null) {
    lab.close(); // SIGKILL by PID to every process it started, then deletes the namespaces (and whatever ran in them)
    lab = null;
  }
  if (dir !== null) {
    rmSync(dir, { recursive: true, force: true });
    dir = null;
  }
}
// Registered before Lab.create installs its own handlers, so these run first.
for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
  process.once(signal, () => {
    log(`${signal}: tearing the lab down`);
    teardown();
    process.exit(code);
  });
}
process.on('exit', teardown);
const bound = setTimeout(() => {
  log(`overall time bound of ${timeoutSeconds} s passed: tearing the lab down`);
  teardown();
  process.exit(1);
}, timeoutSeconds * 1000);
bound.unref();

async function main(): Promise<number> {
  const skip = labSkipReason();
  if (skip) {
    log(`cannot run: ${skip}`);
    return 2;
  }
  const cpus = os.cpus().length;
  const pin = values.pin && tasksetAvailable(cpus);
  const onCpu = (cpu: number, argv: string[]) => (pin ? ['taskset', '-c', String(cpu), ...argv] : argv);
  if (pin) pinSelf(0);
  const loadAvgStart = os.loadavg();
  const startedAt = new Date();

  lab = Lab.create({
    nodeIp: IPS.node,
    prefixLength: 24,
    pods: [
      { name: 'client', ip: IPS.client, routes: ['10.250.1.0/24'] },
      { name: 'server', ip: IPS.server },
      { name: 'cp', ip: IPS.cp },
      { name: 'dclient', ip: IPS.dclient },
      { name: 'dserver', ip: IPS.dserver },
    ],
  });
  const L = lab;
  log(`lab ${L.id} built`);
  dir = mkdtempSync(path.join(os.tmpdir(), 'mg-sidecar-bench-'));
  chmodSync(dir, 0o755);
  const caDir = path.join(dir, 'ca');
  await makePlugInCa(caDir);
  chmodSync(caDir, 0o755);
  chmodSync(path.join(caDir, 'root-cert.pem'), 0o644);
  const material = await loadOrCreateCaDirectory(caDir, { trustDomain: 'cluster.local' });
  mkdirSync(path.join(dir, 'config'));
  for (const [pod, sa, view] of [
    ['client', 'client', meshClientView(IPS.server, 'bench-client-1')],
    ['server', 'reviews', meshServerView(IPS.server, IPS.client, 'bench-server-1')],
  ] as const) {
    writeFileSync(path.join(dir, `${pod}.token`), `${await issueToken(material.signingKey, { namespace: 'default', serviceAccount: sa }, 3600)}\n`, { mode: 0o644 });
    writeFileSync(path.join(dir, `${pod}.json`), JSON.stringify(view), { mode: 0o644 });
  }

  const cp = L.spawn('cp', onCpu(0, [process.execPath, MAIN, 'control', '--config', path.join(dir, 'config'), '--ca-dir', caDir, '--listen', `${IPS.cp}:15012`, '--admin-port', '0']));
  const apps: Record<'server' | 'dserver', LabProcess> = {
    server: L.spawn('server', onCpu(0, [process.execPath, '-e', BENCH_APP]), { APP_PORT: '9080', BODY_BYTES: String(bodyBytes) }, { stdin: true }),
    dserver: L.spawn('dserver', onCpu(0, [process.execPath, '-e', BENCH_APP]), { APP_PORT: '9080', BODY_BYTES: String(bodyBytes) }, { stdin: true }),
  };
  for (const a of Object.values(apps)) await L.waitForLine(a, (l) => l.includes('listening'), 60_000);
  const sidecars: Record<'client' | 'server', LabProcess> = {} as Record<'client' | 'server', LabProcess>;
  for (const [pod, ip, sa] of [
    ['client', IPS.client, 'client'],
    ['server', IPS.server, 'reviews'],
  ] as const) {
    L.exec(pod, process.execPath, [MAIN, 'capture']);
    sidecars[pod] = L.spawn(pod, onCpu(1, [
      ...(sidecarNodeArgs.length > 0 ? ['env', `MESHGATE_NODE=${nodeWrapper(dir, sidecarNodeArgs)}`] : []), MESHGATE, 'sidecar', '--control', `${IPS.cp}:15012`, '--root-cert', path.join(caDir, 'root-cert.pem'), '--token-file', path.join(dir, `${pod}.token`),
      '--pod-ip', ip, '--namespace', 'default', '--service-account', sa, '--pod-name', `${pod}-0`, '--view-file', path.join(dir, `${pod}.json`), '--drain', '1s',
    ]));
  }
  const sidecarLog = () => `client sidecar: ${sidecars.client.stderr.join('').slice(-2000)}\nserver sidecar: ${sidecars.server.stderr.join('').slice(-2000)}\ncontrol: ${cp.stderr.join('').slice(-1000)}`;

  // An HTTP agent per pod, for readiness (as a kubelet would ask, from another pod) and one check request per path.
  const agents = new Map<string, { proc: LabProcess; next: number }>();
  const get = async (pod: string, host: string, port: number, p: string, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<{ status?: number; body?: string; error?: string }> => {
    let agent = agents.get(pod);
    if (!agent) {
      const proc = L.spawn(pod, onCpu(0, [process.execPath, '-e', HTTP_AGENT]), {}, { stdin: true });
      await L.waitForLine(proc, (l) => l.includes('"agent"'), 60_000);
      agents.set(pod, (agent = { proc, next: 0 }));
    }
    const id = ++agent.next;
    agent.proc.child.stdin!.write(`${JSON.stringify({ id, host, port, path: p, headers, count: 1, timeoutMs })}\n`);
    const line = await L.waitForLine(agent.proc, (l) => l.startsWith(`{"id":${id},`), timeoutMs + 10_000);
    return (JSON.parse(line) as { results: { status?: number; body?: string; error?: string }[] }).results[0];
  };
  for (const ip of [IPS.client, IPS.server]) {
    const deadline = Date.now() + 60_000;
    let status: number | undefined;
    while (Date.now() < deadline && (status = (await get('dclient', ip, 15021, '/healthz/ready', {}, 2000)).status) !== 200) await sleep(250);
    if (status !== 200) throw new Error(`sidecar ${ip} not ready (certificate + view) within 60 s\n${sidecarLog()}`);
  }
  log('both sidecars ready (workload certificate and view)');

  let relays: Record<'client' | 'server', LabProcess> | null = null;
  if (floor) {
    const { makeWorkloadCert } = await import('../test/support/mesh-pki.js');
    const pki = await makePlugInCa(path.join(dir, 'relay-ca'));
    const files: Record<string, string> = {};
    for (const side of ['out', 'in'] as const) {
      const w = await makeWorkloadCert(pki.intermediate, `spiffe://cluster.local/ns/default/sa/relay-${side}`);
      files[`${side}.crt`] = path.join(dir, `relay-${side}.crt`);
      files[`${side}.key`] = path.join(dir, `relay-${side}.key`);
      writeFileSync(files[`${side}.crt`], w.certPem + pki.intermediate.certPem);
      writeFileSync(files[`${side}.key`], w.keyPem, { mode: 0o600 });
    }
    const ca = path.join(dir, 'relay-ca', 'root-cert.pem');
    relays = {
      server: L.spawn('dserver', onCpu(1, [process.execPath, ...sidecarNodeArgs, '-e', RELAY]), { RELAY_MODE: 'in', RELAY_HTTP: floorHttp ? '1' : '0', CERT: files['in.crt'], KEY: files['in.key'], CA: ca }),
      client: L.spawn('dclient', onCpu(1, [process.execPath, ...sidecarNodeArgs, '-e', RELAY]), { RELAY_MODE: 'out', RELAY_HTTP: floorHttp ? '1' : '0', UP_HOST: IPS.dserver, CERT: files['out.crt'], KEY: files['out.key'], CA: ca }),
    };
    for (const r of Object.values(relays)) await L.waitForLine(r, (l) => l.includes('listening'), 60_000);
    log('floor relays ready (dclient 127.0.0.1:9080 → mutual TLS → dserver:15006 → app from 127.0.0.6)');
  }

  let appQuery = 0;
  const appCounts = async (pod: 'server' | 'dserver'): Promise<{ total: number; inbound: number; xfcc: number }> => {
    const id = `q${++appQuery}`;
    apps[pod].child.stdin!.write(`${id}\n`);
    const line = await L.waitForLine(apps[pod], (l) => l.startsWith(`{"id":"${id}"`), 10_000);
    return JSON.parse(line) as { total: number; inbound: number; xfcc: number };
  };
  // Each path answers before anything is measured, and the mesh path really is the mesh path.
  const direct = await get('dclient', IPS.dserver, 9080, '/check', { host: HOST });
  if (direct.status !== 200) throw new Error(`direct check request: ${JSON.stringify(direct)}`);
  const meshBefore = await appCounts('server');
  if (floor) {
    const before = await appCounts('dserver');
    const relayed = await get('dclient', '127.0.0.1', 9080, '/check', { host: HOST });
    const after = await appCounts('dserver');
    if (relayed.status !== 200 || after.inbound - before.inbound !== 1) throw new Error(`floor relay check request: ${JSON.stringify({ relayed, before, after })}`);
  }
  const mesh = await get('client', IPS.vip, 9080, '/check', { host: HOST });
  if (mesh.status !== 200) throw new Error(`mesh check request: ${JSON.stringify(mesh)}\n${sidecarLog()}`);
  const meshAfter = await appCounts('server');
  if (meshAfter.inbound - meshBefore.inbound !== 1 || meshAfter.xfcc - meshBefore.xfcc !== 1) {
    throw new Error(`the mesh check request did not reach the app from the inbound sidecar with x-forwarded-client-cert: ${JSON.stringify({ meshBefore, meshAfter })}`);
  }
  for (const a of agents.values()) a.proc.child.kill('SIGKILL');
  for (const a of agents.values()) await a.proc.exited;
  agents.clear();
  log('check requests answered: direct 200; mesh 200 from 127.0.0.6 with x-forwarded-client-cert');

  // Idle RSS: certificate and view held, a check request served, then IDLE seconds of nothing.
  const idleTrees = [...processTree(sidecars.client.child.pid!), ...processTree(sidecars.server.child.pid!)];
  const idleCpu0 = { t: performance.now(), ms: cpuMs(idleTrees) };
  await sleep(idleSeconds * 1000);
  const idleCpuMsPerSecond = idleSeconds > 0 ? ((cpuMs(idleTrees) - idleCpu0.ms) * 1000) / (performance.now() - idleCpu0.t) : NaN;
  const memOf = (pod: 'client' | 'server') => processTree(sidecars[pod].child.pid!).map(readMem).filter((m): m is ProcMem => m !== null);
  const idleMem = { client: memOf('client'), server: memOf('server') };

  // Processes of this bench, for "CPU used by others": everything in the lab's namespaces, and this process.
  const selfCpuMs = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const benchPids = (): number[] => {
    const pids = new Set<number>();
    for (const ns of [L.nodeNs, ...[...L.pods.values()].map((p) => p.ns)]) {
      const r = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' });
      for (const p of (r.stdout ?? '').split('\n')) if (/^\d+$/.test(p.trim())) pids.add(Number(p));
    }
    return [...pids];
  };

  const runs: RunResult[] = [];
  let failed = false;
  for (let round = 1; round <= rounds; round++) {
    const paths: Path[] = floor ? ['direct', 'mesh', 'relay'] : ['direct', 'mesh'];
    const order = round % 2 === 1 ? paths : [...paths].reverse();
    for (const which of order) {
      const pod = which === 'mesh' ? 'client' : 'dclient';
      const appPod = which === 'mesh' ? 'server' : 'dserver';
      const target = which === 'direct' ? IPS.dserver : which === 'relay' ? '127.0.0.1' : IPS.vip;
      log(`round ${round}/${rounds}: ${which} (${rate} req/s, ${connections} connections, ${warmup} s warm-up + ${duration} s)`);
      const t0 = performance.now();
      const tcpBefore = { client: tcpCounters(L.ns(pod)), server: tcpCounters(L.ns(appPod)) };
      const load = L.spawn(pod, onCpu(0, [process.execPath, '--import', CONNECT_SHIM, LOAD, '9080', HOST, '/', String(rate), String(connections), String(duration), String(warmup)]), { LOAD_CONNECT_HOST: target });
      const proxies = which === 'relay' && relays !== null ? relays : sidecars;
      const sidecarTrees = () => ({ client: processTree(proxies.client.child.pid!), server: processTree(proxies.server.child.pid!) });
      // The warm-up is measured too (its own figure, never in the medians): JIT compilation, pools
      // connecting, and after an idle pause the recompilation the next burst pays.
      const w0Trees = which === 'direct' ? null : sidecarTrees();
      const w0 = w0Trees === null ? null : { app: await appCounts(appPod), client: cpuMs(w0Trees.client), server: cpuMs(w0Trees.server) };
      // The window: from the end of the warm-up (counted from the spawn, so it starts inside the
      // sending period even if Node starts slowly) for DURATION - 1 s, which ends before sending does.
      await sleep(Math.max(0, 200 + warmup * 1000 - (performance.now() - t0)));
      const trees = sidecarTrees();
      const ours = benchPids();
      const loadTree = processTree(load.child.pid!);
      const appTree = processTree(apps[appPod].child.pid!);
      const a = {
        t: performance.now(),
        app: await appCounts(appPod),
        client: cpuMs(trees.client),
        server: cpuMs(trees.server),
        appCpu: cpuMs(appTree),
        loadCpu: cpuMs(loadTree),
        ours: cpuMs(ours) + selfCpuMs(),
        busy: cpuBusyMs(),
      };
      await sleep((duration - 1) * 1000);
      const b = {
        t: performance.now(),
        app: await appCounts(appPod),
        client: cpuMs(trees.client),
        server: cpuMs(trees.server),
        appCpu: cpuMs(appTree),
        loadCpu: cpuMs(loadTree),
        ours: cpuMs(ours) + selfCpuMs(),
        busy: cpuBusyMs(),
      };
      const timer = setTimeout(() => load.child.kill('SIGKILL'), (perRunSeconds + 10) * 1000 - (performance.now() - t0));
      const code = await load.exited;
      const tcp = { client: tcpDelta(tcpBefore.client, tcpCounters(L.ns(pod))), server: tcpDelta(tcpBefore.server, tcpCounters(L.ns(appPod))) };
      clearTimeout(timer);
      await new Promise<void>((resolve) => (load.child.stdout!.readableEnded ? resolve() : load.child.stdout!.once('close', () => resolve())));
      const line = load.stdout.find((l) => l.startsWith('{"sent"'));
      if (code !== 0 || line === undefined) {
        log(`${which}: the load generator failed (exit ${code}): ${load.stderr.join('').slice(-1500)}`);
        failed = true;
        continue;
      }
      const result = JSON.parse(line) as LoadResult;
      const windowSeconds = (b.t - a.t) / 1000;
      const windowRequests = b.app.total - a.app.total;
      const per1k = (ms: number) => (windowRequests > 0 ? (ms * 1000) / windowRequests : NaN);
      const sc = which !== 'direct' ? { client: b.client - a.client, server: b.server - a.server } : null;
      const busyPercent = b.busy.map((x, i) => ((x.busy - (a.busy[i]?.busy ?? 0)) / (windowSeconds * 1000)) * 100);
      const machineBusyMs = b.busy.reduce((s, x, i) => s + x.busy - (a.busy[i]?.busy ?? 0), 0);
      runs.push({
        round,
        path: which,
        load: result,
        windowSeconds,
        windowRequests,
        sidecarCpuMs: sc,
        sidecarCpuMsPer1k: sc === null ? null : per1k(sc.client + sc.server),
        warmupCpuMsPer1k: w0 === null || a.app.total - w0.app.total <= 0 ? null : ((a.client + a.server - w0.client - w0.server) * 1000) / (a.app.total - w0.app.total),
        appCpuMsPer1k: per1k(b.appCpu - a.appCpu),
        loadCpuMsPer1k: per1k(b.loadCpu - a.loadCpu),
        othersCpuPercent: Math.max(0, ((machineBusyMs - (b.ours - a.ours)) / (windowSeconds * 1000)) * 100),
        machineBusyPercent: busyPercent,
        tcp,
      });
      if (result.errors > 0 || result.completed === 0) failed = true;
      if (which === 'mesh' && b.app.xfcc - a.app.xfcc !== windowRequests) {
        log(`warning: ${windowRequests - (b.app.xfcc - a.app.xfcc)} requests in the mesh window reached the app without x-forwarded-client-cert`);
        failed = true;
      }
      log(`${which}: ${JSON.stringify(result)}`);
    }
  }
  const loadMem = { client: memOf('client'), server: memOf('server') };
  // And once more after IDLE seconds without traffic: what the proxy gives back by itself.
  await sleep(idleSeconds * 1000);
  const settledMem = { client: memOf('client'), server: memOf('server') };
  // What the sidecars logged at warn or error level over the whole bench (deduplicated by message).
  const sidecarWarnings = (pod: 'client' | 'server'): { count: number; messages: string[] } => {
    const lines = [...sidecars[pod].stdout, ...sidecars[pod].stderr.join('').split('\n')].filter((l) => /"level":"(warn|error)"|\b(WARN|ERROR)\b/.test(l));
    const messages = new Map<string, number>();
    for (const l of lines) {
      let key = l.slice(0, 200);
      try {
        const j = JSON.parse(l) as { msg?: string; message?: string; error?: string };
        key = `${j.msg ?? j.message ?? ''}${j.error ? `: ${j.error}` : ''}`.slice(0, 200);
      } catch {
        // not JSON: the line itself
      }
      messages.set(key, (messages.get(key) ?? 0) + 1);
    }
    return { count: lines.length, messages: [...messages].slice(0, 8).map(([m, n]) => `${n}× ${m}`) };
  };
  const warnings = { client: sidecarWarnings('client'), server: sidecarWarnings('server') };
  if (sidecarNodeArgs.length > 0) {
    // A clean exit, so what the extra options write at exit (--cpu-prof) is written.
    const all = [...Object.values(sidecars), ...(relays === null ? [] : Object.values(relays))];
    for (const s of all) s.child.kill('SIGTERM');
    await Promise.race([Promise.all(all.map((s) => s.exited)), sleep(20_000)]);
    log(`sidecars stopped (node args: ${sidecarNodeArgs.join(' ')})`);
  }
  const loadAvgEnd = os.loadavg();

  // ---- summary ----
  const valid = (r: RunResult) => r.load.errors === 0 && r.load.completed > 0 && r.load.achievedRate >= rate * 0.98;
  const of = (p: Path) => runs.filter((r) => r.path === p && valid(r));
  const med = (p: Path, k: keyof LoadResult) => median(of(p).map((r) => r.load[k]));
  const addedPerRound = (k: 'p50Ms' | 'p99Ms' | 'p999Ms') => {
    const out: number[] = [];
    for (let r = 1; r <= rounds; r++) {
      const d = runs.find((x) => x.round === r && x.path === 'direct' && valid(x));
      const m = runs.find((x) => x.round === r && x.path === 'mesh' && valid(x));
      if (d && m) out.push(m.load[k] - d.load[k]);
    }
    return out;
  };
  const added = { p50Ms: median(addedPerRound('p50Ms')), p99Ms: median(addedPerRound('p99Ms')), p999Ms: median(addedPerRound('p999Ms')) };
  const pairCpuMsPer1k = median(of('mesh').map((r) => r.sidecarCpuMsPer1k ?? NaN));
  const pairWarmupCpuMsPer1k = median(of('mesh').map((r) => r.warmupCpuMsPer1k ?? NaN));
  const pairVcpuPer1000Rps = pairCpuMsPer1k / 1000;
  const relayCpuMsPer1k = floor ? median(of('relay').map((r) => r.sidecarCpuMsPer1k ?? NaN)) : null;
  // Per round, so both figures saw the same minutes of the shared machine.
  const meshOverRelay = floor ? median(Array.from({ length: rounds }, (_, i) => {
    const m = runs.find((x) => x.round === i + 1 && x.path === 'mesh' && valid(x));
    const r = runs.find((x) => x.round === i + 1 && x.path === 'relay' && valid(x));
    return m && r && r.sidecarCpuMsPer1k ? (m.sidecarCpuMsPer1k ?? NaN) / r.sidecarCpuMsPer1k : NaN;
  }).filter(Number.isFinite)) : null;
  const memSummary = (mems: ProcMem[]) => {
    const proxy = mems.find((m) => m.uid !== 0) ?? null;
    return {
      processes: mems,
      proxy: proxy === null ? null : { vmRssMiB: mib(proxy.vmRssKiB), rssAnonMiB: mib(proxy.rssAnonKiB), rssFileMiB: mib(proxy.rssFileKiB), pssMiB: mib(proxy.pssKiB) },
      total: { vmRssMiB: mib(mems.reduce((s, m) => s + m.vmRssKiB, 0)), rssAnonMiB: mib(mems.reduce((s, m) => s + m.rssAnonKiB, 0)), rssFileMiB: mib(mems.reduce((s, m) => s + m.rssFileKiB, 0)), pssMiB: mib(mems.reduce((s, m) => s + m.pssKiB, 0)) },
    };
  };
  const idle = { client: memSummary(idleMem.client), server: memSummary(idleMem.server) };
  const afterLoad = { client: memSummary(loadMem.client), server: memSummary(loadMem.server) };
  const afterLoadIdle = { client: memSummary(settledMem.client), server: memSummary(settledMem.server) };
  const idleProxyMax = Math.max(idle.client.proxy?.vmRssMiB ?? NaN, idle.server.proxy?.vmRssMiB ?? NaN);
  const idleTotalMax = Math.max(idle.client.total.vmRssMiB, idle.server.total.vmRssMiB);
  const othersMax = Math.max(...runs.map((r) => r.othersCpuPercent));

  const report = {
    bench: 'sidecar',
    startedAt: startedAt.toISOString(),
    command: `node dist/bench/sidecar.js ${process.argv.slice(2).join(' ')}`.trim(),
    machine: { cpus, model: os.cpus()[0]?.model ?? '?', node: process.version, loadAverageStart: loadAvgStart.map((x) => Number(x.toFixed(2))), loadAverageEnd: loadAvgEnd.map((x) => Number(x.toFixed(2))) },
    pinning: pin ? 'both sidecars on CPU1; load generator, apps, control plane and harness on CPU0 (taskset)' : 'none',
    settings: { rate, connections, durationSeconds: duration, warmupSeconds: warmup, rounds, idleSeconds, bodyBytes, http: 'HTTP/1.1 keep-alive', meshPath: 'client → VIP 10.250.1.10:9080 → outbound 15001 → Istio mTLS → inbound 15006 (STRICT) → app from 127.0.0.6' },
    runs,
    summary: {
      direct: { p50Ms: med('direct', 'p50Ms'), p99Ms: med('direct', 'p99Ms'), p999Ms: med('direct', 'p999Ms'), achievedRate: med('direct', 'achievedRate') },
      mesh: { p50Ms: med('mesh', 'p50Ms'), p99Ms: med('mesh', 'p99Ms'), p999Ms: med('mesh', 'p999Ms'), achievedRate: med('mesh', 'achievedRate') },
      added,
      pairCpuMsPer1kRequests: pairCpuMsPer1k,
      pairVcpuPer1000Rps,
      pairIdleCpuMsPerSecond: idleCpuMsPerSecond,
      pairWarmupCpuMsPer1kRequests: pairWarmupCpuMsPer1k,
      floor: floor ? { relayPairCpuMsPer1kRequests: relayCpuMsPer1k, relay: { p50Ms: med('relay', 'p50Ms'), p99Ms: med('relay', 'p99Ms') }, meshOverRelayCpu: meshOverRelay } : null,
      idleRssMiB: idle,
      afterLoadRssMiB: afterLoad,
      afterLoadIdleRssMiB: afterLoadIdle,
      othersCpuPercentMax: othersMax,
      sidecarWarnings: warnings,
      runsLeftOut: runs.filter((r) => !valid(r)).map((r) => `round ${r.round} ${r.path}`),
    },
    targets: {
      addedP99Ms: { target: TARGETS.addedP99Ms, measured: added.p99Ms, met: added.p99Ms <= TARGETS.addedP99Ms },
      pairVcpuPer1000Rps: { target: TARGETS.pairVcpuPer1000Rps, measured: pairVcpuPer1000Rps, met: pairVcpuPer1000Rps <= TARGETS.pairVcpuPer1000Rps },
      idleRssMiBProxyProcess: { target: TARGETS.idleRssMiB, measured: idleProxyMax, met: idleProxyMax <= TARGETS.idleRssMiB },
      idleRssMiBWholeSidecar: { target: TARGETS.idleRssMiB, measured: idleTotalMax, met: idleTotalMax <= TARGETS.idleRssMiB },
    },
    failed,
  };

  if (values.json) {
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  } else {
    const out: string[] = [];
    out.push(`bench:sidecar  ${report.startedAt}  ${report.command}`);
    out.push(`machine: ${cpus} CPUs (${report.machine.model}), Node.js ${process.version}; pinning: ${report.pinning}`);
    out.push(`load average: start ${loadAvgStart.map((x) => x.toFixed(2)).join(' ')}, end ${loadAvgEnd.map((x) => x.toFixed(2)).join(' ')}; CPU used by processes outside this bench during the measured windows: ${runs.map((r) => `${r.path} ${r.othersCpuPercent.toFixed(0)}%`).join(', ')} (of ${cpus * 100}%)${othersMax > 20 ? '  ** shared machine busy: figures are indicative **' : ''}`);
    out.push(`${rate} req/s fixed rate, ${connections} HTTP/1.1 keep-alive connections, ${warmup} s warm-up + ${duration} s measured, ${rounds} round(s), ${bodyBytes}-byte responses; latency from when each request was due`);
    out.push('');
    out.push('| round | path | achieved req/s | errors | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | sidecar (relay) pair CPU ms / 1k req | in the warm-up | app CPU ms / 1k | load CPU ms / 1k | others\' CPU |');
    out.push('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|');
    for (const r of runs) {
      out.push(`| ${r.round} | ${r.path} | ${f(r.load.achievedRate, 1)} | ${r.load.errors} | ${f(r.load.p50Ms)} | ${f(r.load.p90Ms)} | ${f(r.load.p99Ms)} | ${f(r.load.p999Ms)} | ${f(r.load.maxMs)} | ${r.sidecarCpuMs === null ? '—' : `${f(r.sidecarCpuMsPer1k, 1)} (client ${f((r.sidecarCpuMs.client * 1000) / r.windowRequests, 1)} + server ${f((r.sidecarCpuMs.server * 1000) / r.windowRequests, 1)})`} | ${r.warmupCpuMsPer1k === null ? '—' : f(r.warmupCpuMsPer1k, 1)} | ${f(r.appCpuMsPer1k, 1)} | ${f(r.loadCpuMsPer1k, 1)} | ${r.othersCpuPercent.toFixed(0)}% |`);
    }
    out.push('');
    const tcpText = (c: TcpCounters) => `${c.activeOpens} connects, ${c.passiveOpens} accepts, ${c.retransSegs} retransmitted segments, ${c.listenOverflows} listen overflows`;
    for (const r of runs) out.push(`TCP, round ${r.round} ${r.path} (whole run): client pod ${tcpText(r.tcp.client)}; server pod ${tcpText(r.tcp.server)}`);
    out.push('');
    const s = report.summary;
    if (s.runsLeftOut.length > 0) out.push(`left out of the medians (errors, or below ${rate * 0.98} req/s): ${s.runsLeftOut.join(', ')}`);
    out.push(`direct: p50 ${f(s.direct.p50Ms)} ms, p99 ${f(s.direct.p99Ms)} ms, p99.9 ${f(s.direct.p999Ms)} ms`);
    out.push(`mesh:   p50 ${f(s.mesh.p50Ms)} ms, p99 ${f(s.mesh.p99Ms)} ms, p99.9 ${f(s.mesh.p999Ms)} ms`);
    out.push(`added by the two sidecars: p50 ${f(added.p50Ms)} ms, p99 ${f(added.p99Ms)} ms, p99.9 ${f(added.p999Ms)} ms`);
    out.push(`sidecar pair CPU: ${f(pairCpuMsPer1k, 1)} ms per 1k requests = ${f(pairVcpuPer1000Rps, 3)} vCPU per 1000 req/s (idle, before the load: ${f(idleCpuMsPerSecond, 1)} ms per second for the pair; in the ${warmup} s warm-ups: ${f(pairWarmupCpuMsPer1k, 1)} ms per 1k requests, median of rounds)`);
    if (floor) out.push(`floor (two bare Node.js relays, mutual TLS between them, ${floorHttp ? 'each message head parsed and rewritten' : 'no HTTP'}): ${f(relayCpuMsPer1k, 1)} ms per 1k requests = ${f((relayCpuMsPer1k ?? NaN) / 1000, 3)} vCPU per 1000 req/s; p50 ${f(med('relay', 'p50Ms'))} ms, p99 ${f(med('relay', 'p99Ms'))} ms; sidecars ÷ relays, median of rounds: ${f(meshOverRelay, 2)}x`);
    for (const pod of ['client', 'server'] as const) {
      const m = idle[pod];
      const l = afterLoad[pod];
      out.push(`${pod} sidecar RSS idle (${idleSeconds} s, certificate + view): proxy process VmRSS ${f(m.proxy?.vmRssMiB ?? NaN, 1)} MiB (RssAnon ${f(m.proxy?.rssAnonMiB ?? NaN, 1)}, RssFile ${f(m.proxy?.rssFileMiB ?? NaN, 1)}, Pss ${f(m.proxy?.pssMiB ?? NaN, 1)}); whole sidecar (${m.processes.map((p) => `${p.command} uid ${p.uid}`).join(', ')}) VmRSS ${f(m.total.vmRssMiB, 1)} MiB (RssAnon ${f(m.total.rssAnonMiB, 1)}, Pss ${f(m.total.pssMiB, 1)}); after the load: proxy ${f(l.proxy?.vmRssMiB ?? NaN, 1)} MiB, whole ${f(l.total.vmRssMiB, 1)} MiB; after the load and ${idleSeconds} s idle: proxy ${f(afterLoadIdle[pod].proxy?.vmRssMiB ?? NaN, 1)} MiB (RssAnon ${f(afterLoadIdle[pod].proxy?.rssAnonMiB ?? NaN, 1)})`);
    }
    for (const pod of ['client', 'server'] as const) {
      if (warnings[pod].count > 0) out.push(`${pod} sidecar logged ${warnings[pod].count} warn/error lines: ${warnings[pod].messages.join('; ')}`);
    }
    out.push('');
    out.push('targets (issue 16):');
    const t = report.targets;
    const mark = (met: boolean) => (met ? 'met' : 'NOT met');
    out.push(`  added p99 <= ${TARGETS.addedP99Ms} ms at 500 req/s: ${f(t.addedP99Ms.measured)} ms (${mark(t.addedP99Ms.met)})${rate !== 500 ? ` [this run: ${rate} req/s]` : ''}`);
    out.push(`  pair CPU <= ${TARGETS.pairVcpuPer1000Rps} vCPU per 1000 req/s: ${f(t.pairVcpuPer1000Rps.measured, 3)} (${mark(t.pairVcpuPer1000Rps.met)})`);
    out.push(`  sidecar idle RSS <= ${TARGETS.idleRssMiB} MiB: proxy process ${f(t.idleRssMiBProxyProcess.measured, 1)} MiB (${mark(t.idleRssMiBProxyProcess.met)}); whole sidecar (every process of its tree) ${f(t.idleRssMiBWholeSidecar.measured, 1)} MiB (${mark(t.idleRssMiBWholeSidecar.met)})`);
    if (failed) out.push('a run had errors or failed (see above): exit 1');
    process.stdout.write(`${out.join('\n')}\n`);
  }
  return failed ? 1 : 0;
}

main()
  .then((code) => {
    teardown();
    process.exit(code);
  })
  .catch((e: unknown) => {
    log(`failed: ${(e as Error).stack ?? String(e)}`);
    teardown();
    process.exit(1);
  });
