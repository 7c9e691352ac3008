/**
 * What observability costs in requests/s (docs/benchmarks.md, "Observability cost"; issue 6's 10 %
 * budget for metrics).
 *
 *   npm run bench:observability -- [--rounds 12] [--duration 3] [--connections 64]
 *
 * On a shared VM the speed of the machine drifts by 2x within minutes, so two separate benchmark runs
 * cannot settle a 10 % difference. Here the variants run side by side: one `meshgate run --workers 1`
 * per variant, all started before measuring and all pinned to CPU1 (only the one under load uses
 * it), the same 500-route table and nginx `return 200` upstream as `npm run bench`, wrk on CPU0.
 * Each round measures every variant once for `--duration` seconds, in rotating order, right after one
 * another; the figure of merit is the per-round ratio variant ÷ `off` (the variants of one round
 * share the machine's state of that minute), reported as a median with its spread.
 *
 *   off       --metrics off (no RequestRecord, no observer: the request path's null check only)
 *   metrics   the default: Istio and meshgate metrics
 *   logs      metrics + the access log in Istio's JSON format to a file
 *
 * Every process started is killed by PID at the end.
 */

import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { meshgateConfig, nginxUpstreamConf, TARGET_HOST, TARGET_PATH, UPSTREAM_BODY } from './config-gen.js';
import { cpuBusyMs, cpuMs, freePort, httpGet, killAll, spawnTracked, tcpOpen, trackedTree, waitFor, type Tracked } from './proc.js';
import { runWrk } from './wrk.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GATEWAY_MAIN = path.join(REPO_ROOT, 'dist/src/cli/main.js');

interface Variant {
  name: string;
  args: (dir: string) => string[];
}

const VARIANTS: readonly Variant[] = [
  { name: 'off', args: () => ['--metrics', 'off'] },
  { name: 'metrics', args: () => [] },
  { name: 'logs', args: (dir) => ['--access-log', path.join(dir, 'access.log'), '--access-log-format', 'json'] },
];

function log(msg: string): void {
  process.stderr.write(`[observability-cost] ${msg}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function pct(x: number): string {
  return `${x >= 0 ? '+' : ''}${(x * 100).toFixed(1)} %`;
}

async function startGateway(v: Variant, dir: string, cfg: string): Promise<{ t: Tracked; port: number }> {
  const [http, https, admin] = [await freePort(), await freePort(), await freePort()];
  const vdir = path.join(dir, v.name);
  mkdirSync(vdir, { recursive: true });
  const args = [
    GATEWAY_MAIN, 'run', '--config', cfg,
    '--http-port', String(http), '--https-port', String(https), '--admin-port', String(admin), '--health-port', '0',
    '--port-map', `80=${http}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn',
    ...v.args(vdir),
  ];
  const t = spawnTracked(`meshgate ${v.name}`, process.execPath, args, { cpu: 1, cwd: REPO_ROOT });
  await waitFor(`meshgate ${v.name} /ready`, async () => {
    const r = await httpGet(admin, '/ready', 'localhost', 1000);
    return 'status' in r && r.status === 200;
  }, 60_000, t);
  const ok = await httpGet(http, TARGET_PATH, TARGET_HOST);
  if (!('status' in ok) || ok.status !== 200 || ok.body !== UPSTREAM_BODY) throw new Error(`meshgate ${v.name}: GET ${TARGET_PATH} should answer 200 from the upstream, got ${JSON.stringify(ok)}`);
  return { t, port: http };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '12' }, duration: { type: 'string', default: '3' }, connections: { type: 'string', default: '64' } } });
  const rounds = Number(values.rounds);
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  if (!existsSync(GATEWAY_MAIN)) throw new Error(`${GATEWAY_MAIN} missing: build first (npx tsc -p tsconfig.json)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-obs-cost-'));
  const deadline = setTimeout(() => {
    log('overall time bound reached; stopping');
    void killAll(2000).then(() => process.exit(2));
  }, (rounds * VARIANTS.length * (duration + 3) + 180) * 1000);
  deadline.unref();
  try {
    const [upstream, decoy] = [await freePort(), await freePort()];
    const nd = path.join(dir, 'nginx');
    mkdirSync(nd, { recursive: true });
    writeFileSync(path.join(nd, 'nginx.conf'), nginxUpstreamConf(nd, upstream));
    spawnTracked('nginx upstream', 'nginx', ['-p', nd, '-c', path.join(nd, 'nginx.conf'), '-e', path.join(nd, 'error.log')], { cpu: 0 });
    await waitFor('nginx', () => tcpOpen(upstream), 15_000);
    const cfg = path.join(dir, 'config');
    mkdirSync(cfg, { recursive: true });
    for (const [name, text] of Object.entries(meshgateConfig(upstream, decoy))) writeFileSync(path.join(cfg, name), text);
    const gateways: { v: Variant; t: Tracked; port: number }[] = [];
    for (const v of VARIANTS) gateways.push({ v, ...(await startGateway(v, dir, cfg)) });
    // Warm every variant up (JIT, connection pools) before the first measured round.
    for (const g of gateways) await runWrk({ port: g.port, path: TARGET_PATH, host: TARGET_HOST, connections, durationSec: 2, cpu: 0 });
    const rps = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
    const cpu = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
    const ratios = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
    const cpuRatios = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
    const steal: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = gateways.map((_, i) => gateways[(i + round) % gateways.length]);
      const got = new Map<string, { rps: number; cpu: number }>();
      for (const g of order) {
        const pids = trackedTree(g.t);
        const c0 = cpuMs(pids);
        const s0 = cpuBusyMs()[1]?.steal ?? 0;
        const t0 = Date.now();
        const w = await runWrk({ port: g.port, path: TARGET_PATH, host: TARGET_HOST, connections, durationSec: duration, cpu: 0 });
        const cpuPer1k = ((cpuMs(pids) - c0) / w.requests) * 1000;
        steal.push((((cpuBusyMs()[1]?.steal ?? 0) - s0) / (Date.now() - t0)) * 100);
        if (w.non2xx + w.socketErrors > 0) log(`warning: ${g.v.name}: ${w.non2xx} non-2xx, ${w.socketErrors} socket errors`);
        got.set(g.v.name, { rps: w.rps, cpu: cpuPer1k });
        rps.get(g.v.name)!.push(w.rps);
        cpu.get(g.v.name)!.push(cpuPer1k);
      }
      const base = got.get('off')!;
      for (const v of VARIANTS) {
        ratios.get(v.name)!.push(got.get(v.name)!.rps / base.rps);
        cpuRatios.get(v.name)!.push(got.get(v.name)!.cpu / base.cpu);
      }
      log(`round ${round + 1}/${rounds}: ${VARIANTS.map((v) => `${v.name} ${Math.round(got.get(v.name)!.rps)} req/s ${got.get(v.name)!.cpu.toFixed(1)} CPU ms/1k`).join(', ')}`);
    }
    const logFile = path.join(dir, 'logs', 'access.log');
    const logBytes = existsSync(logFile) ? statSync(logFile).size : 0;
    const lines = [
      `${rounds} rounds x ${VARIANTS.length} variants x ${duration} s, wrk -t1 -c${connections}; CPU1 steal during runs: median ${median(steal).toFixed(1)} %, max ${Math.max(...steal).toFixed(1)} %`,
      '',
      '| variant | requests/s (median) | requests/s ÷ off, per round: median [min, max] | CPU ms per 1k req (median) | CPU per request ÷ off, per round: median |',
      '|---|---|---|---|---|',
    ];
    for (const v of VARIANTS) {
      const r = ratios.get(v.name)!;
      lines.push(`| ${v.name} | ${Math.round(median(rps.get(v.name)!)).toLocaleString('en-US')} | ${v.name === 'off' ? '1' : `${median(r).toFixed(3)} (${pct(median(r) - 1)}) [${Math.min(...r).toFixed(3)}, ${Math.max(...r).toFixed(3)}]`} | ${median(cpu.get(v.name)!).toFixed(1)} | ${v.name === 'off' ? '1' : `${median(cpuRatios.get(v.name)!).toFixed(3)} (${pct(median(cpuRatios.get(v.name)!) - 1)})`} |`);
    }
    lines.push('', `access log written by the logs variant: ${(logBytes / 1048576).toFixed(1)} MiB`);
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await killAll(4000);
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (e) => {
  log(String((e as Error).stack ?? e));
  await killAll(2000);
  process.exit(1);
});
