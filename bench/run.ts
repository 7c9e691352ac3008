/**
 * meshgate's throughput benchmark: wrk against the upstream directly, through meshgate (one
 * worker, a full routing table) and through nginx (one worker, the same table), side by side in
 * one run, interleaved repetitions, medians.
 *
 *   npm run bench -- [--duration 8] [--warmup 2] [--connections 64] [--reps 3]
 *                    [--scenario direct|meshgate|nginx[,...]] [--json] [--cpu-prof] [--node-upstream]
 *                    [--wait-quiet 30] [--meshgate-args "--metrics off"]
 *
 * Layout (2+ CPUs with taskset): the proxy under test and every process it forks on CPU1; wrk and
 * the upstream on CPU0. The upstream is nginx `return 200` (one worker), or a node:http server in
 * its own process when nginx is not installed. Keep-alive on every hop.
 *
 * Per scenario and repetition: a `--warmup` wrk run, then the measured wrk run while the proxy's
 * CPU time (utime+stime of its process tree from /proc) and RSS (VmRSS summed, sampled every
 * 250 ms, peak kept) are read. Idle RSS is read once, after start and before any traffic.
 *
 * Shared machines: before each measured run the harness waits up to `--wait-quiet` seconds for
 * other processes to use less than 15% of a CPU, and every run reports how much CPU others took.
 *
 * Every process started here is killed by PID at the end, on error, on SIGINT/SIGTERM and when
 * the overall time bound passes.
 */

import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import {
  meshgateConfig,
  nginxProxyConf,
  nginxUpstreamConf,
  TARGET_DESCRIPTION,
  TARGET_HOST,
  TARGET_PATH,
  UPSTREAM_BODY,
} from './config-gen.js';
import {
  CLOCK_TICKS,
  childrenCpuMs,
  cpuBusyMs,
  cpuMs,
  cpuMsByPid,
  freePort,
  pinSelf,
  httpGet,
  killAll,
  killAllSync,
  rssBytes,
  spawnTracked,
  stopTracked,
  tasksetAvailable,
  tcpOpen,
  trackedTree,
  waitFor,
  which,
  type Tracked,
} from './proc.js';
import { runWrk, wrkArgs, type WrkResult } from './wrk.js';
import { formatProfile, summarizeProfile, type ProfileSummary } from './profile-summary.js';

const SCENARIOS = ['direct', 'meshgate', 'nginx'] as const;
type ScenarioName = (typeof SCENARIOS)[number];

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const GATEWAY_MAIN = path.join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js');
const NODE_UPSTREAM = path.join(REPO_ROOT, 'dist', 'bench', 'upstream-node.js');

interface Options {
  duration: number;
  warmup: number;
  connections: number;
  reps: number;
  scenarios: ScenarioName[];
  json: boolean;
  cpuProf: boolean;
  nodeUpstream: boolean;
  waitQuiet: number;
  /** Extra `meshgate run` flags (e.g. `--metrics off`, `--access-log /tmp/x.log`), split on spaces. */
  meshgateArgs: string[];
}

function usage(msg: string): never {
  process.stderr.write(
    `bench: ${msg}\nusage: npm run bench -- [--duration 8] [--warmup 2] [--connections 64] [--reps 3] ` +
      `[--scenario direct|meshgate|nginx[,...]] [--json] [--cpu-prof] [--node-upstream] [--wait-quiet 30]\n`,
  );
  process.exit(2);
}

function parseOptions(argv: string[]): Options {
  let values;
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: {
        duration: { type: 'string', default: '8' },
        warmup: { type: 'string', default: '2' },
        connections: { type: 'string', default: '64' },
        reps: { type: 'string', default: '3' },
        scenario: { type: 'string' },
        json: { type: 'boolean', default: false },
        'cpu-prof': { type: 'boolean', default: false },
        'node-upstream': { type: 'boolean', default: false },
        'wait-quiet': { type: 'string', default: '30' },
        'meshgate-args': { type: 'string', default: '' },
      },
    }).values;
  } catch (e) {
    usage((e as Error).message.split('\n')[0]);
  }
  const int = (name: string, v: string, min: number, max: number) => {
    if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) usage(`--${name}: "${v}" is not a whole number in ${min}-${max}`);
    return Number(v);
  };
  let scenarios: ScenarioName[] = [...SCENARIOS];
  if (values.scenario !== undefined) {
    scenarios = [];
    for (const s of values.scenario.split(',')) {
      if (!(SCENARIOS as readonly string[]).includes(s)) usage(`--scenario: "${s}" is not one of ${SCENARIOS.join(', ')}`);
      if (!scenarios.includes(s as ScenarioName)) scenarios.push(s as ScenarioName);
    }
  }
  return {
    duration: int('duration', values.duration as string, 1, 600),
    warmup: int('warmup', values.warmup as string, 0, 120),
    connections: int('connections', values.connections as string, 1, 10000),
    reps: int('reps', values.reps as string, 1, 50),
    scenarios,
    json: values.json as boolean,
    cpuProf: values['cpu-prof'] as boolean,
    nodeUpstream: values['node-upstream'] as boolean,
    waitQuiet: int('wait-quiet', values['wait-quiet'] as string, 0, 600),
    meshgateArgs: (values['meshgate-args'] as string).split(' ').filter((a) => a !== ''),
  };
}

function log(msg: string): void {
  process.stderr.write(`[bench] ${msg}\n`);
}

function median(xs: number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function firstLine(cmd: string, args: string[]): string {
  try {
    // nginx -v and wrk -v print to stderr; wrk -v exits 1.
    return execFileSync('sh', ['-c', `${cmd} ${args.join(' ')} 2>&1 || true`], { encoding: 'utf8' }).split('\n')[0].trim();
  } catch {
    return 'unknown';
  }
}

/** One measured wrk run plus what was read from /proc meanwhile. */
interface Sample {
  wrk: WrkResult;
  /** Proxy CPU ms per 1000 requests (null for `direct`). */
  cpuMsPer1k: number | null;
  /** Peak proxy RSS during the run, bytes (null for `direct`). */
  rssLoad: number | null;
  /** CPU use during the run, % of one CPU: ours and everybody else's. */
  interference: Interference;
}

interface Interference {
  /** CPU0 (wrk + upstream) time used by other processes of this machine, % of one CPU. */
  otherLoadCpuPct: number;
  /** CPU1 (proxy under test) time used by other processes, % of one CPU; null without pinning. */
  otherProxyCpuPct: number | null;
  /** Hypervisor steal over all CPUs, % of one CPU. */
  stealPct: number;
  wrkCpuPct: number;
  upstreamCpuPct: number;
  proxyCpuPct: number | null;
  /** Proxy CPU ms per process over the run (primary first), to see who does the work. */
  proxyCpuByPid: Array<{ pid: number; ms: number }>;
}

interface Target {
  name: ScenarioName;
  label: string;
  port: number;
  /** The proxy measured (null for `direct`). */
  proxy: Tracked | null;
  rssIdle: number | null;
  samples: Sample[];
}

interface ScenarioResult {
  name: ScenarioName;
  label: string;
  status: 'ok' | 'unavailable';
  reason?: string;
  reps?: Array<{ rps: number; p50Ms: number; p99Ms: number; cpuMsPer1k: number | null; rssLoadMiB: number | null; non2xx: number; socketErrors: number; interference: Interference }>;
  /** Median CPU taken by other processes during the runs, % of one CPU, [CPU0, CPU1]. */
  otherCpuPct?: [number, number | null];
  rps?: number;
  p50Ms?: number;
  p99Ms?: number;
  cpuMsPer1k?: number | null;
  rssIdleMiB?: number | null;
  rssLoadMiB?: number | null;
  vsDirect?: number | null;
  vsNginx?: number | null;
  errors?: number;
}

let currentWrk: number | null = null;
let tmpDir: string | null = null;
let cleaning: Promise<void> | null = null;

function cleanup(): Promise<void> {
  return (cleaning ??= (async () => {
    if (currentWrk !== null) {
      try {
        process.kill(currentWrk, 'SIGKILL');
      } catch {
        // gone
      }
    }
    await killAll(6000);
    if (tmpDir !== null) rmSync(tmpDir, { recursive: true, force: true });
  })());
}

async function startUpstream(o: Options, dir: string, port: number, cpu: number | null, useNginx: boolean): Promise<{ t: Tracked; kind: string }> {
  let t: Tracked;
  let kind: string;
  if (useNginx) {
    const d = path.join(dir, 'nginx-upstream');
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'nginx.conf'), nginxUpstreamConf(d, port));
    t = spawnTracked('nginx upstream', 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-e', path.join(d, 'error.log')], { cpu });
    kind = 'nginx return 200 (1 worker)';
  } else {
    if (!existsSync(NODE_UPSTREAM)) throw new Error(`${NODE_UPSTREAM} missing: build first (npx tsc -p tsconfig.json)`);
    t = spawnTracked('node upstream', process.execPath, [NODE_UPSTREAM, String(port)], { cpu });
    kind = 'node:http server (nginx not installed' + (o.nodeUpstream ? ' or --node-upstream' : '') + ')';
  }
  await waitFor('the upstream to answer', async () => {
    const r = await httpGet(port, '/', 'upstream');
    return 'status' in r && r.status === 200;
  }, 15_000, t);
  return { t, kind };
}

/** Checks that the proxy routes the benchmarked request to the upstream, and a neighbour elsewhere. */
async function verifyRouting(label: string, port: number): Promise<void> {
  const ok = await httpGet(port, TARGET_PATH, TARGET_HOST);
  if (!('status' in ok) || ok.status !== 200 || ok.body !== UPSTREAM_BODY) {
    throw new Error(`${label}: GET ${TARGET_PATH} (Host: ${TARGET_HOST}) should answer 200 "${UPSTREAM_BODY.trim()}", got ${'status' in ok ? `${ok.status} ${JSON.stringify(ok.body.slice(0, 200))}` : ok.error}`);
  }
  // A route just after the benchmarked one goes to an endpoint where nothing listens.
  const miss = await httpGet(port, '/api/v1/items/abc', TARGET_HOST);
  if ('status' in miss && miss.status === 200) log(`warning: ${label}: GET /api/v1/items/abc should not reach the upstream but answered 200`);
}

async function startMeshgate(o: Options, dir: string, ports: { http: number; https: number; admin: number; upstream: number; decoy: number }, cpu: number | null, profDir: string | null): Promise<Tracked> {
  if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} missing: build first (npx tsc -p tsconfig.json)`);
  const cfg = path.join(dir, 'meshgate-config');
  mkdirSync(cfg, { recursive: true });
  for (const [name, text] of Object.entries(meshgateConfig(ports.upstream, ports.decoy))) writeFileSync(path.join(cfg, name), text);
  // --cpu-prof is refused in NODE_OPTIONS; as an exec argument the cluster worker inherits it
  // (cluster.settings.execArgv defaults to process.execArgv).
  const nodeArgs = profDir === null ? [] : ['--cpu-prof', `--cpu-prof-dir=${profDir}`];
  const args = [
    ...nodeArgs,
    GATEWAY_MAIN, 'run', '--config', cfg,
    '--http-port', String(ports.http), '--https-port', String(ports.https), '--admin-port', String(ports.admin), '--health-port', '0',
    '--port-map', `80=${ports.http}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn',
    ...o.meshgateArgs,
  ];
  // Started under taskset: the cluster worker forked later inherits the affinity.
  const t = spawnTracked('meshgate', process.execPath, args, { cpu, cwd: REPO_ROOT });
  await waitFor('meshgate /ready', async () => {
    const r = await httpGet(ports.admin, '/ready', 'localhost', 1000);
    return 'status' in r && r.status === 200;
  }, 60_000, t);
  await waitFor('meshgate to listen', () => tcpOpen(ports.http), 10_000, t);
  return t;
}

async function startNginxProxy(dir: string, port: number, upstream: number, decoy: number, cpu: number | null): Promise<Tracked> {
  const d = path.join(dir, 'nginx-proxy');
  mkdirSync(d, { recursive: true });
  writeFileSync(path.join(d, 'nginx.conf'), nginxProxyConf(d, port, upstream, decoy));
  const t = spawnTracked('nginx proxy', 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-e', path.join(d, 'error.log')], { cpu });
  await waitFor('the nginx proxy to listen', () => tcpOpen(port), 15_000, t);
  return t;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Waits up to `maxSec` for one second in which processes other than ours use under 15% of a CPU.
 * Returns the last measured share (% of one CPU).
 */
async function waitQuiet(maxSec: number, ours: Tracked[]): Promise<number> {
  const deadline = Date.now() + maxSec * 1000;
  let other = Number.NaN;
  do {
    const mine = () => ours.reduce((a, t) => a + cpuMs(trackedTree(t)), 0);
    const b0 = cpuBusyMs().reduce((a, c) => a + c.busy, 0);
    const m0 = mine();
    const s0 = process.cpuUsage();
    const t0 = performance.now();
    await sleep(1000);
    const self = process.cpuUsage(s0);
    const busy = cpuBusyMs().reduce((a, c) => a + c.busy, 0) - b0;
    other = (100 * (busy - (mine() - m0) - (self.user + self.system) / 1000)) / (performance.now() - t0);
    if (other < 15) return other;
  } while (Date.now() < deadline);
  return other;
}

async function idleRss(t: Tracked): Promise<number> {
  await sleep(1000);
  return rssBytes(trackedTree(t));
}

async function measure(o: Options, target: Target, upstream: Tracked, pinned: boolean): Promise<Sample> {
  const loadCpu = pinned ? 0 : null;
  const wrkOpts = { port: target.port, path: TARGET_PATH, host: TARGET_HOST, connections: o.connections, cpu: loadCpu };
  if (o.warmup > 0) await runWrk({ ...wrkOpts, durationSec: o.warmup }, (pid) => (currentWrk = pid));
  const proxy = target.proxy;
  let peak = 0;
  let timer: NodeJS.Timeout | null = null;
  const proxyPids = proxy === null ? [] : trackedTree(proxy);
  const proxyBefore = cpuMsByPid(proxyPids);
  const upstreamBefore = cpuMs(trackedTree(upstream));
  const busyBefore = cpuBusyMs();
  const waitedBefore = childrenCpuMs();
  const selfBefore = process.cpuUsage();
  const wallBefore = performance.now();
  if (proxy !== null) {
    timer = setInterval(() => {
      peak = Math.max(peak, rssBytes(trackedTree(proxy)));
    }, 250);
  }
  let wrk: WrkResult;
  try {
    wrk = await runWrk({ ...wrkOpts, durationSec: o.duration }, (pid) => (currentWrk = pid));
  } finally {
    if (timer !== null) clearInterval(timer);
  }
  const wall = performance.now() - wallBefore;
  const proxyAfter = cpuMsByPid(proxy === null ? [] : trackedTree(proxy));
  const busyAfter = cpuBusyMs();
  const self = process.cpuUsage(selfBefore);
  const wrkCpu = childrenCpuMs() - waitedBefore;
  const upstreamCpu = cpuMs(trackedTree(upstream)) - upstreamBefore;
  // Per PID, so a worker that restarted mid-run counts from zero rather than going negative.
  const byPid = [...proxyAfter].map(([pid, ms]) => ({ pid, ms: ms - (proxyBefore.get(pid) ?? 0) }));
  const proxyCpu = byPid.reduce((a, x) => a + x.ms, 0);
  const busy = busyAfter.map((b, i) => b.busy - (busyBefore[i]?.busy ?? 0));
  const steal = busyAfter.reduce((a, b, i) => a + b.steal - (busyBefore[i]?.steal ?? 0), 0);
  const harness = (self.user + self.system) / 1000;
  let otherLoad: number;
  let otherProxy: number | null = null;
  if (pinned) {
    // Whatever else ran on the two CPUs during the run: other users of this machine.
    otherLoad = (100 * (busy[0] - wrkCpu - upstreamCpu - harness)) / wall;
    otherProxy = (100 * (busy[1] - proxyCpu)) / wall;
  } else {
    otherLoad = (100 * (busy.reduce((a, b) => a + b, 0) - wrkCpu - upstreamCpu - harness - proxyCpu)) / wall;
  }
  const interference = { otherLoadCpuPct: otherLoad, otherProxyCpuPct: otherProxy, stealPct: (100 * steal) / wall, wrkCpuPct: (100 * wrkCpu) / wall, upstreamCpuPct: (100 * upstreamCpu) / wall, proxyCpuPct: proxy === null ? null : (100 * proxyCpu) / wall, proxyCpuByPid: byPid };
  if (proxy === null) return { wrk, cpuMsPer1k: null, rssLoad: null, interference };
  return { wrk, cpuMsPer1k: wrk.requests > 0 ? proxyCpu / (wrk.requests / 1000) : null, rssLoad: peak, interference };
}

const MiB = 1024 * 1024;

function fmt(n: number | null | undefined, digits = 0): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function table(results: ScenarioResult[]): string {
  const head = ['scenario', 'requests/s', '÷ direct', '÷ nginx', 'p50 / p99 ms', 'CPU ms per 1k req', 'req/s per core (from CPU)', 'RSS idle → load MiB', 'errors', 'other CPU % (CPU0/CPU1)', 'per-rep requests/s'];
  const rows: string[][] = [];
  for (const r of results) {
    if (r.status !== 'ok') {
      rows.push([r.label, `not run: ${r.reason ?? ''}`, '', '', '', '', '', '', '', '', '']);
      continue;
    }
    rows.push([
      r.label,
      fmt(r.rps),
      r.vsDirect === null || r.vsDirect === undefined ? '—' : r.vsDirect.toFixed(2),
      r.vsNginx === null || r.vsNginx === undefined ? '—' : r.vsNginx.toFixed(2),
      `${fmt(r.p50Ms, 2)} / ${fmt(r.p99Ms, 2)}`,
      fmt(r.cpuMsPer1k, 1),
      r.cpuMsPer1k ? fmt(1e6 / r.cpuMsPer1k) : '—',
      r.rssIdleMiB === null || r.rssIdleMiB === undefined ? '—' : `${fmt(r.rssIdleMiB)} → ${fmt(r.rssLoadMiB)}`,
      String(r.errors ?? 0),
      r.otherCpuPct === undefined ? '—' : `${fmt(r.otherCpuPct[0])} / ${r.otherCpuPct[1] === null ? '—' : fmt(r.otherCpuPct[1])}`,
      (r.reps ?? []).map((x) => fmt(x.rps)).join(', '),
    ]);
  }
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const row of rows) lines.push(`| ${row.join(' | ')} |`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  const o = parseOptions(process.argv.slice(2));
  if (which('wrk') === null) {
    process.stderr.write('bench: wrk is not installed. Install it with `apt-get install wrk` (Debian/Ubuntu) and run again.\n');
    return 1;
  }
  const haveNginx = which('nginx') !== null;
  const useNginxUpstream = haveNginx && !o.nodeUpstream;
  const cpus = os.availableParallelism();
  const pin = tasksetAvailable(cpus);
  if (pin) pinSelf(0);
  const proxyCpu = pin ? 1 : null;
  const loadCpu = pin ? 0 : null;
  const budgetSec = o.reps * o.scenarios.length * (o.duration + o.warmup + o.waitQuiet + 42) + 180;
  const bound = setTimeout(() => {
    log(`overall time bound of ${budgetSec} s passed; stopping everything`);
    void cleanup().finally(() => process.exit(1));
  }, budgetSec * 1000);
  bound.unref();

  tmpDir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-bench-'));
  // nginx workers run as nobody when started by root: let them traverse the directory.
  chmodSync(tmpDir, 0o755);
  const profDir = o.cpuProf && o.scenarios.includes('meshgate') ? mkdtempSync(path.join(os.tmpdir(), 'meshgate-bench-prof-')) : null;

  const machine = {
    nproc: cpus,
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 1024 ** 3),
    kernel: os.release(),
    node: process.version,
    nginx: haveNginx ? firstLine('nginx', ['-v']) : 'not installed',
    wrk: firstLine('wrk', ['-v']),
    clockTicks: CLOCK_TICKS,
    loadAverageAtStart: os.loadavg().map((x) => Number(x.toFixed(2))),
    pinning: pin ? 'proxy under test (and its children) on CPU1; wrk and upstream on CPU0 (taskset)' : 'none (taskset unavailable or 1 CPU)',
  };

  const ports = {
    upstream: await freePort(),
    decoy: await freePort(),
    http: await freePort(),
    https: await freePort(),
    admin: await freePort(),
    nginx: await freePort(),
  };

  const { t: upstream, kind: upstreamKind } = await startUpstream(o, tmpDir, ports.upstream, loadCpu, useNginxUpstream);
  log(`upstream: ${upstreamKind} on 127.0.0.1:${ports.upstream}`);

  const targets: Target[] = [];
  const unavailable = new Map<ScenarioName, string>();
  const labels: Record<ScenarioName, string> = {
    direct: 'direct (wrk → upstream)',
    meshgate: 'meshgate, 1 worker, full table',
    nginx: `nginx proxy, 1 worker, same table`,
  };
  for (const name of o.scenarios) {
    try {
      if (name === 'direct') {
        targets.push({ name, label: labels[name], port: ports.upstream, proxy: null, rssIdle: null, samples: [] });
      } else if (name === 'meshgate') {
        const t = await startMeshgate(o, tmpDir, ports, proxyCpu, profDir);
        await verifyRouting('meshgate', ports.http);
        const rss = await idleRss(t);
        log(`meshgate: ready on 127.0.0.1:${ports.http} (pids ${trackedTree(t).join(', ')}), idle RSS ${fmt(rss / MiB)} MiB`);
        targets.push({ name, label: labels[name], port: ports.http, proxy: t, rssIdle: rss, samples: [] });
      } else {
        if (!haveNginx) throw new Error('nginx is not installed (apt-get install nginx)');
        const t = await startNginxProxy(tmpDir, ports.nginx, ports.upstream, ports.decoy, proxyCpu);
        await verifyRouting('nginx proxy', ports.nginx);
        const rss = await idleRss(t);
        log(`nginx proxy: ready on 127.0.0.1:${ports.nginx} (pids ${trackedTree(t).join(', ')}), idle RSS ${fmt(rss / MiB)} MiB`);
        targets.push({ name, label: labels[name], port: ports.nginx, proxy: t, rssIdle: rss, samples: [] });
      }
    } catch (e) {
      const reason = (e as Error).message;
      unavailable.set(name, reason.split('\n')[0]);
      log(`${name}: not runnable: ${reason}`);
    }
  }
  if (targets.length === 0) throw new Error('no scenario could run');

  log(`request under test: ${TARGET_DESCRIPTION}`);
  log(`wrk ${wrkArgs({ port: 0, path: TARGET_PATH, host: TARGET_HOST, connections: o.connections, durationSec: o.duration, cpu: null }).join(' ')} (port per scenario)`);
  for (let rep = 0; rep < o.reps; rep++) {
    // Rotate the order each repetition so no scenario always runs first or last.
    for (let k = 0; k < targets.length; k++) {
      const target = targets[(k + rep) % targets.length];
      if (o.waitQuiet > 0) {
        const other = await waitQuiet(o.waitQuiet, [upstream, ...targets.flatMap((t) => (t.proxy === null ? [] : [t.proxy]))]);
        if (other >= 15) log(`machine still busy after ${o.waitQuiet} s (other processes use ${fmt(other)}% of a CPU): measuring anyway`);
      }
      const s = await measure(o, target, upstream, pin);
      target.samples.push(s);
      const bad = s.wrk.non2xx + s.wrk.socketErrors;
      log(
        `rep ${rep + 1}/${o.reps} ${target.name}: ${fmt(s.wrk.rps)} req/s, p50 ${fmt(s.wrk.p50Ms, 2)} ms, p99 ${fmt(s.wrk.p99Ms, 2)} ms` +
          (s.cpuMsPer1k !== null ? `, ${fmt(s.cpuMsPer1k, 1)} CPU ms/1k, RSS ${fmt((s.rssLoad ?? 0) / MiB)} MiB` : '') +
          `; CPU% wrk ${fmt(s.interference.wrkCpuPct)}, upstream ${fmt(s.interference.upstreamCpuPct)}` +
          (s.interference.proxyCpuPct !== null ? `, proxy ${fmt(s.interference.proxyCpuPct)} (${s.interference.proxyCpuByPid.map((x) => fmt((100 * x.ms) / 1000 / o.duration)).join('+')})` : '') +
          `, other load ${fmt(s.interference.otherLoadCpuPct)}${s.interference.otherProxyCpuPct !== null ? ` / ${fmt(s.interference.otherProxyCpuPct)}` : ''}, steal ${fmt(s.interference.stealPct)}` +
          (bad > 0 ? `, ERRORS: ${s.wrk.non2xx} non-2xx, ${s.wrk.socketErrors} socket` : ''),
      );
    }
  }

  let profile: ProfileSummary | null = null;
  const meshgate = targets.find((t) => t.name === 'meshgate');
  if (profDir !== null && meshgate?.proxy) {
    // The profile is written when the worker exits: stop meshgate gracefully first.
    await stopTracked(meshgate.proxy, 10_000);
    const files = readdirSync(profDir).filter((f) => f.endsWith('.cpuprofile')).map((f) => path.join(profDir, f));
    const summaries = files.map((f) => summarizeProfile(f, 30, REPO_ROOT)).sort((a, b) => b.busyMs - a.busyMs);
    profile = summaries[0] ?? null;
    log(`cpu profiles in ${profDir}: ${files.map((f) => `${path.basename(f)} (${fmt(statSync(f).size / 1024)} KiB)`).join(', ') || 'none written'}`);
  }

  const direct = targets.find((t) => t.name === 'direct');
  const nginx = targets.find((t) => t.name === 'nginx');
  const med = (t: Target | undefined) => (t === undefined ? null : median(t.samples.map((s) => s.wrk.rps)));
  const directRps = med(direct);
  const nginxRps = med(nginx);
  const results: ScenarioResult[] = o.scenarios.map((name) => {
    const t = targets.find((x) => x.name === name);
    if (t === undefined) return { name, label: labels[name], status: 'unavailable', reason: unavailable.get(name) ?? 'not started' };
    const rps = median(t.samples.map((s) => s.wrk.rps));
    const cpu = t.proxy === null ? null : median(t.samples.map((s) => s.cpuMsPer1k ?? Number.NaN));
    const load = t.proxy === null ? null : median(t.samples.map((s) => s.rssLoad ?? Number.NaN)) / MiB;
    return {
      name,
      label: t.label,
      status: 'ok',
      reps: t.samples.map((s) => ({
        rps: s.wrk.rps,
        p50Ms: s.wrk.p50Ms,
        p99Ms: s.wrk.p99Ms,
        cpuMsPer1k: s.cpuMsPer1k,
        rssLoadMiB: s.rssLoad === null ? null : s.rssLoad / MiB,
        non2xx: s.wrk.non2xx,
        socketErrors: s.wrk.socketErrors,
        interference: s.interference,
      })),
      otherCpuPct: [median(t.samples.map((s) => s.interference.otherLoadCpuPct)), pin ? median(t.samples.map((s) => s.interference.otherProxyCpuPct ?? 0)) : null],
      rps,
      p50Ms: median(t.samples.map((s) => s.wrk.p50Ms)),
      p99Ms: median(t.samples.map((s) => s.wrk.p99Ms)),
      cpuMsPer1k: cpu,
      rssIdleMiB: t.rssIdle === null ? null : t.rssIdle / MiB,
      rssLoadMiB: load,
      vsDirect: directRps !== null && name !== 'direct' ? rps / directRps : null,
      vsNginx: nginxRps !== null && name !== 'nginx' ? rps / nginxRps : null,
      errors: t.samples.reduce((a, s) => a + s.wrk.non2xx + s.wrk.socketErrors, 0),
    };
  });

  const settings = {
    duration: o.duration,
    warmup: o.warmup,
    connections: o.connections,
    reps: o.reps,
    wrk: `wrk ${wrkArgs({ port: 0, path: TARGET_PATH, host: TARGET_HOST, connections: o.connections, durationSec: o.duration, cpu: null }).join(' ').replace(':0/', ':PORT/')}`,
    upstream: upstreamKind,
    request: TARGET_DESCRIPTION,
  };
  if (o.json) {
    process.stdout.write(`${JSON.stringify({ machine, settings, results, profile }, null, 2)}\n`);
  } else {
    const out = [
      `machine: ${machine.nproc} CPUs (${machine.cpuModel}), ${machine.memGiB} GiB, Linux ${machine.kernel}, Node.js ${machine.node}, ${machine.nginx}, ${machine.wrk}`,
      `pinning: ${machine.pinning}; load average at start ${machine.loadAverageAtStart.join(' ')}`,
      `upstream: ${upstreamKind}; body ${JSON.stringify(UPSTREAM_BODY)}; keep-alive on every hop`,
      `request: ${TARGET_DESCRIPTION}`,
      `load: ${settings.wrk}; ${o.warmup} s warm-up before each run; ${o.reps} interleaved repetitions, medians`,
      `CPU ms per 1k req = proxy utime+stime (process + children, /proc, CLK_TCK ${CLOCK_TICKS}) over the measured run ÷ requests × 1000 (req/s per core = 1,000,000 ÷ that: the rate one fully busy core would sustain, less sensitive to other load than requests/s); RSS = VmRSS summed, idle before any traffic → median of per-run peaks`,
      '',
      table(results),
    ];
    // CPU1 only matters for the proxies: `direct` leaves it idle.
    const noisy = results.some((r) => r.otherCpuPct !== undefined && (r.otherCpuPct[0] > 10 || (r.name !== 'direct' && (r.otherCpuPct[1] ?? 0) > 10)));
    if (noisy) out.push('', 'WARNING: other processes used more than 10% of a CPU the run needed during some runs (column "other CPU"; CPU1 counts for the proxies only): figures are depressed and noisy; rerun on a quiet machine.');
    if (profile !== null) out.push('', '(figures above were taken with --cpu-prof on meshgate: its numbers are depressed by the profiler)', formatProfile(profile));
    process.stdout.write(`${out.join('\n')}\n`);
  }
  return results.some((r) => r.status === 'ok' && (r.errors ?? 0) > 0) ? 1 : 0;
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    log(`${sig}: stopping every process started`);
    void cleanup().finally(() => process.exit(sig === 'SIGINT' ? 130 : 143));
  });
}

let code = 1;
try {
  code = await main();
} catch (e) {
  // After SIGINT the killed wrk rejects too: that is not worth a stack trace.
  if (cleaning === null) log(`error: ${(e as Error).stack ?? String(e)}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
