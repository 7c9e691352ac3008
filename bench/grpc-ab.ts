/**
 * A/B of two builds of meshgate for gRPC unary calls (issue 11), interleaved in one run, with the
 * direct calls in the same repetitions:
 *
 *   npx tsc -p tsconfig.json && node dist/bench/grpc-ab.js --a /path/to/other/checkout [--reps 4] [--duration 6] [--concurrency 50]
 *
 * `--a` is the root of another checkout with its own `dist/` (e.g. main, built); B is this checkout.
 * Layout as `npm run bench:engine -- --only grpc`: both gateways (`run --workers 1`, the same small
 * Istio config, Istio's default retry policy) pinned to CPU1; the @grpc/grpc-js echo upstream and
 * the load generator (bench/grpc-load.ts, one channel, CONCURRENCY calls in flight) share CPU0.
 * Each repetition measures direct, A and B (A and B swap places every other repetition), each after
 * a 2 s warm-up. Reported per build, medians over the repetitions:
 *
 *   - calls/s and its ratio to the direct run of the same repetition;
 *   - p50 latency;
 *   - CPU µs per call of the gateway (its process tree), of the load generator and of the upstream:
 *     the load generator and the upstream share CPU0, so what a proxied call costs them bounds the
 *     ratio as much as the gateway does;
 *   - how busy CPU0 and CPU1 were (a shared machine: other engineers' builds and tests show here).
 */

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuBusyMs, cpuMs, freePort, killAll, killAllSync, spawnTracked, stopTracked, tcpOpen, trackedTree, waitFor, type Tracked } from './proc.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = path.resolve(HERE, '../..');

function log(msg: string): void {
  process.stderr.write(`[grpc-ab] ${msg}\n`);
}

function config(grpcPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: vs, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
    - route: [{ destination: { host: grpc } }]
---
apiVersion: v1
kind: Service
metadata: { name: grpc, namespace: default }
spec: { ports: [{ name: api, port: 80, appProtocol: grpc }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: grpc-0, namespace: default, labels: { kubernetes.io/service-name: grpc } }
addressType: IPv4
ports: [{ name: api, port: ${grpcPort} }]
endpoints: [{ addresses: [127.0.0.1] }]
`;
}

interface Run {
  callsPerS: number;
  p50Ms: number;
  errors: number;
  gatewayUs: number | null;
  clientUs: number;
  upstreamUs: number;
  cpu0: number;
  cpu1: number;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 === 1 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

function load(port: number, concurrency: number, ms: number): Promise<{ calls: number; errors: number; seconds: number; p50Ms: number; cpuMs: number }> {
  return new Promise((resolve, reject) => {
    const c = spawn('taskset', ['-c', '0', process.execPath, path.join(HERE, 'grpc-load.js'), String(port), 'grpc.bench', String(concurrency), String(ms)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d));
    const timer = setTimeout(() => c.kill('SIGKILL'), ms + 30_000);
    c.on('exit', (code) => {
      clearTimeout(timer);
      try {
        if (code !== 0) throw new Error(`grpc-load exited with ${code}`);
        resolve(JSON.parse(out));
      } catch (err) {
        reject(err);
      }
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { a: { type: 'string' }, reps: { type: 'string', default: '4' }, duration: { type: 'string', default: '6' }, concurrency: { type: 'string', default: '50' } } });
  if (values.a === undefined) throw new Error('--a <checkout with dist/> is required');
  const reps = Number(values.reps);
  const duration = Number(values.duration);
  const concurrency = Number(values.concurrency);
  const bound = setTimeout(() => {
    log('overall time bound reached; stopping');
    void killAll(2000).then(() => process.exit(2));
  }, (reps * 3 * (duration + 4) + 180) * 1000);
  bound.unref();
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-grpc-ab-'));
  try {
    // Spawned here, not tracked by proc.ts (which discards stdout): it prints its port. Killed by PID at the end.
    const upstream = spawn('taskset', ['-c', '0', process.execPath, path.join(HERE, 'grpc-upstream.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
    process.on('exit', () => upstream.kill('SIGKILL'));
    const grpcPort = await new Promise<number>((resolve, reject) => {
      upstream.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
      upstream.once('exit', () => reject(new Error('grpc upstream exited')));
    });
    const cfg = path.join(dir, 'config');
    mkdirSync(cfg);
    writeFileSync(path.join(cfg, 'all.yaml'), config(grpcPort));
    const gateways: { label: string; port: number; t: Tracked }[] = [];
    for (const [label, root] of [['A', path.resolve(values.a)], ['B', REPO_ROOT]] as const) {
      const [http, https, admin] = [await freePort(), await freePort(), await freePort()];
      const t = spawnTracked(`meshgate ${label}`, process.execPath, [path.join(root, 'dist/src/cli/main.js'), 'run', '--config', cfg, '--http-port', String(http), '--https-port', String(https), '--admin-port', String(admin), '--health-port', '0', '--port-map', `80=${http}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn'], { cpu: 1, cwd: root });
      await waitFor(`meshgate ${label}`, () => tcpOpen(http), 60_000, t);
      gateways.push({ label, port: http, t });
    }
    await new Promise((r) => setTimeout(r, 3000));
    const runs = new Map<string, Run[]>();
    const ratios = new Map<string, number[]>();
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 === 0 ? gateways : [...gateways].reverse();
      let direct: Run | null = null;
      for (const g of [null, ...order]) {
        const label = g === null ? 'direct' : g.label;
        const port = g === null ? grpcPort : g.port;
        await load(port, concurrency, 2000);
        const pids = g === null ? [] : trackedTree(g.t);
        const g0 = cpuMs(pids);
        const u0 = cpuMs([upstream.pid!]);
        const b0 = cpuBusyMs();
        const t0 = performance.now();
        const r = await load(port, concurrency, duration * 1000);
        const wall = performance.now() - t0;
        const b1 = cpuBusyMs();
        const run: Run = {
          callsPerS: r.calls / r.seconds,
          p50Ms: r.p50Ms,
          errors: r.errors,
          gatewayUs: g === null ? null : ((cpuMs(pids) - g0) / r.calls) * 1000,
          clientUs: (r.cpuMs / r.calls) * 1000,
          upstreamUs: ((cpuMs([upstream.pid!]) - u0) / r.calls) * 1000,
          cpu0: b0[0] && b1[0] ? ((b1[0].busy - b0[0].busy) / wall) * 100 : NaN,
          cpu1: b0[1] && b1[1] ? ((b1[1].busy - b0[1].busy) / wall) * 100 : NaN,
        };
        if (g === null) direct = run;
        else (ratios.get(label) ?? ratios.set(label, []).get(label)!).push(run.callsPerS / direct!.callsPerS);
        (runs.get(label) ?? runs.set(label, []).get(label)!).push(run);
        log(`rep ${rep + 1} ${label}: ${Math.round(run.callsPerS)} calls/s, p50 ${run.p50Ms.toFixed(2)} ms, µs/call gateway ${run.gatewayUs?.toFixed(0) ?? '-'} client ${run.clientUs.toFixed(0)} upstream ${run.upstreamUs.toFixed(0)}, CPU0 ${run.cpu0.toFixed(0)}% CPU1 ${run.cpu1.toFixed(0)}%`);
      }
    }
    const lines = [`gRPC unary, ${concurrency} in flight on one channel, ${duration} s per run after 2 s, ${reps} repetitions; medians. A = ${path.resolve(values.a)}, B = ${REPO_ROOT}. Load average at end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}.`, '', '| target | calls/s | ÷ direct (same rep) | p50 ms | gateway CPU µs/call | load generator CPU µs/call (CPU0) | upstream CPU µs/call (CPU0) | CPU0 busy % | CPU1 busy % | errors |', '|---|---|---|---|---|---|---|---|---|---|'];
    for (const label of ['direct', 'A', 'B']) {
      const rs = runs.get(label) ?? [];
      const gw = rs.map((r) => r.gatewayUs).filter((x): x is number => x !== null);
      lines.push(`| ${label} | ${Math.round(median(rs.map((r) => r.callsPerS))).toLocaleString('en-US')} | ${label === 'direct' ? '—' : median(ratios.get(label) ?? []).toFixed(2)} | ${median(rs.map((r) => r.p50Ms)).toFixed(2)} | ${gw.length === 0 ? '—' : median(gw).toFixed(0)} | ${median(rs.map((r) => r.clientUs)).toFixed(0)} | ${median(rs.map((r) => r.upstreamUs)).toFixed(0)} | ${median(rs.map((r) => r.cpu0)).toFixed(0)} | ${median(rs.map((r) => r.cpu1)).toFixed(0)} | ${rs.reduce((a, r) => a + r.errors, 0)} |`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    for (const g of gateways) await stopTracked(g.t);
    upstream.kill('SIGTERM');
  } finally {
    await killAll(3000);
    rmSync(dir, { recursive: true, force: true });
  }
}

process.on('exit', killAllSync);
main().then(
  () => process.exit(0),
  async (e: unknown) => {
    log(String((e as Error).stack ?? e));
    await killAll(2000);
    process.exit(1);
  },
);
