/**
 * `npm run bench:rss`: idle resident memory (VmRSS from /proc/PID/status) of `meshgate run` in the
 * configurations issue 11 sets targets for, side by side in one run:
 *
 *   --workers 0, one route                 (target <= 60 MiB)
 *   --workers 1, one route                 (primary + worker, target <= 100 MiB)
 *   --workers 1, the bench's 500-route table
 *   --workers 2, one route                 (each extra worker <= +50 MiB)
 *   --workers 1, 10,000 routes             (target <= 250 MiB)
 *
 * Each gateway is started, must answer a routed request with 200 (so the snapshot is applied in every
 * worker), then sits idle for --settle seconds; RSS is sampled every 250 ms over the last second and the
 * median is reported, per process (primary, workers) and summed. No traffic is measured here.
 *
 *   node dist/bench/rss.js [--settle 3] [--only workers0,workers1,...] [--json]
 *                          [--meshgate-args="--metrics off"]
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { meshgateConfig, TARGET_HOST, TARGET_PATH } from './config-gen.js';
import { freePort, httpGet, killAll, killAllSync, processTree, rssBytes, spawnTracked, stopTracked, trackedTree, waitFor } from './proc.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../src/cli/main.js');
const MiB = 1024 * 1024;

export interface RssCase {
  name: string;
  description: string;
  workers: number;
  routes: 'one' | 'bench' | 'tenk';
  /** Issue 11's target for the summed RSS, MiB (null: reported only). */
  targetMiB: number | null;
}

export const RSS_CASES: RssCase[] = [
  { name: 'workers0', description: '--workers 0, one route', workers: 0, routes: 'one', targetMiB: 60 },
  { name: 'workers1', description: '--workers 1, one route (primary + worker)', workers: 1, routes: 'one', targetMiB: 100 },
  { name: 'workers1-bench', description: '--workers 1, bench table (500 routes)', workers: 1, routes: 'bench', targetMiB: 100 },
  { name: 'workers2', description: '--workers 2, one route', workers: 2, routes: 'one', targetMiB: 150 },
  { name: 'workers1-10k', description: '--workers 1, 10,000 routes', workers: 1, routes: 'tenk', targetMiB: 250 },
];

export interface RssResult {
  name: string;
  description: string;
  totalMiB: number;
  /** RssAnon summed: the processes' private memory, without the pages of the node binary and libraries they share. */
  anonMiB: number;
  primaryMiB: number;
  workersMiB: number[];
  targetMiB: number | null;
  startMs: number;
}

function service(name: string, port: number): string {
  return (
    `apiVersion: v1\nkind: Service\nmetadata: { name: ${name}, namespace: bench }\n` +
    `spec:\n  selector: { app: ${name} }\n  ports: [{ name: http, port: 80, targetPort: ${port} }]\n---\n` +
    `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${name}-1\n  namespace: bench\n` +
    `  labels: { kubernetes.io/service-name: ${name} }\naddressType: IPv4\nports: [{ name: http, port: ${port} }]\n` +
    `endpoints:\n  - addresses: [127.0.0.1]\n    conditions: { ready: true }\n---\n`
  );
}

const INGRESS_CLASS = `apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: { name: meshgate }\nspec:\n  controller: meshgate.io/ingress-controller\n---\n`;

/** One Ingress with one path to the target. */
function oneRouteConfig(upstreamPort: number): Record<string, string> {
  return {
    'config.yaml':
      service('orders', upstreamPort) +
      INGRESS_CLASS +
      `apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: { name: one, namespace: bench }\n` +
      `spec:\n  ingressClassName: meshgate\n  rules:\n    - host: ${TARGET_HOST}\n      http:\n        paths:\n` +
      `          - path: /api/v1/orders\n            pathType: Prefix\n            backend: { service: { name: orders, port: { number: 80 } } }\n`,
  };
}

/**
 * 10,000 routes: 1,000 Ingresses (one host each) of 10 paths, over 100 Services; the target host is
 * the bench's, so the same request proves the table is served.
 */
function tenKConfig(upstreamPort: number, decoyPort: number): Record<string, string> {
  let services = service('orders', upstreamPort);
  for (let k = 0; k < 100; k++) services += service(`svc-${k}`, decoyPort);
  const parts: string[] = [INGRESS_CLASS];
  for (let i = 0; i < 1000; i++) {
    const host = i === 0 ? TARGET_HOST : `h-${i}.tenk.example.com`;
    let s = `apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: { name: ing-${i}, namespace: bench }\n` + `spec:\n  ingressClassName: meshgate\n  rules:\n    - host: ${host}\n      http:\n        paths:\n`;
    for (let r = 0; r < 10; r++) {
      const p = r === 0 ? '/api/v1/orders' : `/p${r}/section-${i}`;
      const svc = i === 0 && r === 0 ? 'orders' : `svc-${(i * 10 + r) % 100}`;
      s += `          - path: ${p}\n            pathType: Prefix\n            backend: { service: { name: ${svc}, port: { number: 80 } } }\n`;
    }
    parts.push(s + '---\n');
  }
  return { '00-services.yaml': services, '20-ingress.yaml': parts.join('') };
}

function writeDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-rss-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  return dir;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function procRssMiB(pid: number): number {
  return rssBytes([pid]) / MiB;
}

function procAnonMiB(pid: number): number {
  try {
    const m = /^RssAnon:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? 0 : s[Math.floor(s.length / 2)];
}

/** Starts one gateway, waits until it routes, lets it settle, samples its RSS, stops it. */
export async function measureRss(c: RssCase, opts: { upstreamPort: number; decoyPort: number; settleS: number; extraArgs: string[]; cpu: number | null }): Promise<RssResult> {
  const files = c.routes === 'one' ? oneRouteConfig(opts.upstreamPort) : c.routes === 'bench' ? meshgateConfig(opts.upstreamPort, opts.decoyPort) : tenKConfig(opts.upstreamPort, opts.decoyPort);
  const dir = writeDir(files);
  const httpPort = await freePort();
  const adminPort = await freePort();
  const t0 = Date.now();
  const gw = spawnTracked(`meshgate ${c.name}`, process.execPath, [MAIN, 'run', '--config', dir, '--workers', String(c.workers), '--http-port', String(httpPort), '--https-port', String(await freePort()), '--admin-port', String(adminPort), '--port-map', `80=${httpPort}`, '--bind-address', '127.0.0.1', '--log-level', 'warn', ...opts.extraArgs], { cpu: opts.cpu });
  try {
    await waitFor(`${c.name} to route ${TARGET_HOST}${TARGET_PATH}`, async () => {
      const r = await httpGet(httpPort, TARGET_PATH, TARGET_HOST, 1000);
      return 'status' in r && r.status === 200;
    }, 120_000, gw);
    // Every worker must serve the snapshot: the controller answers ready after all applied.
    await waitFor(`${c.name} admin /ready`, async () => {
      const r = await httpGet(adminPort, '/ready', 'localhost', 1000);
      return 'status' in r && r.status === 200;
    }, 30_000, gw);
    const startMs = Date.now() - t0;
    const expected = 1 + c.workers;
    await waitFor(`${c.name}: ${expected} processes`, async () => trackedTree(gw).length >= expected, 10_000, gw);
    await sleep(Math.max(0, opts.settleS * 1000 - 1000));
    const samples = new Map<number, number[]>();
    const anon = new Map<number, number[]>();
    for (let i = 0; i < 5; i++) {
      for (const pid of processTree(gw.pid)) {
        let list = samples.get(pid);
        if (!list) samples.set(pid, (list = []));
        list.push(procRssMiB(pid));
        let a = anon.get(pid);
        if (!a) anon.set(pid, (a = []));
        a.push(procAnonMiB(pid));
      }
      await sleep(250);
    }
    const anonMiB = [...anon.values()].reduce((sum, v) => sum + median(v), 0);
    const primaryMiB = median(samples.get(gw.pid) ?? []);
    const workersMiB = [...samples.entries()].filter(([pid]) => pid !== gw.pid).map(([, v]) => median(v));
    return { name: c.name, description: c.description, totalMiB: primaryMiB + workersMiB.reduce((a, b) => a + b, 0), anonMiB, primaryMiB, workersMiB, targetMiB: c.targetMiB, startMs };
  } finally {
    await stopTracked(gw);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A node:http upstream in this process (RSS runs send one request each; no load). */
export function startUpstream(body: string): Promise<{ port: number; close: () => Promise<void> }> {
  return new Promise((resolve) => {
    const srv = http.createServer((_req, res) => res.end(body));
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      const port = typeof a === 'object' && a !== null ? a.port : 0;
      resolve({ port, close: () => new Promise((r) => srv.close(() => r())) });
    });
  });
}

export function formatRssTable(results: RssResult[]): string {
  const lines = ['| configuration | idle VmRSS MiB (sum) | primary | workers | target (VmRSS) | private (RssAnon) MiB, sum | start → routing |', '|---|---|---|---|---|---|---|'];
  for (const r of results) {
    const verdict = r.targetMiB === null ? '—' : `≤ ${r.targetMiB} ${r.totalMiB <= r.targetMiB ? '(met)' : '(not met)'}`;
    lines.push(`| ${r.description} | ${r.totalMiB.toFixed(1)} | ${r.primaryMiB.toFixed(1)} | ${r.workersMiB.map((w) => w.toFixed(1)).join(' + ') || '—'} | ${verdict} | ${r.anonMiB.toFixed(1)} | ${(r.startMs / 1000).toFixed(1)} s |`);
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { settle: { type: 'string', default: '3' }, only: { type: 'string' }, json: { type: 'boolean' }, 'meshgate-args': { type: 'string', default: '' } },
  });
  const only = values.only ? new Set(values.only.split(',')) : null;
  const cases = RSS_CASES.filter((c) => only === null || only.has(c.name));
  if (cases.length === 0) throw new Error(`--only: none of ${values.only} (cases: ${RSS_CASES.map((c) => c.name).join(', ')})`);
  const upstream = await startUpstream('hello from upstream\n');
  const decoyPort = await freePort();
  const results: RssResult[] = [];
  try {
    for (const c of cases) {
      process.stderr.write(`rss: ${c.description}...\n`);
      results.push(await measureRss(c, { upstreamPort: upstream.port, decoyPort, settleS: Number(values.settle), extraArgs: values['meshgate-args'] ? values['meshgate-args'].split(/\s+/).filter(Boolean) : [], cpu: null }));
    }
  } finally {
    await upstream.close();
    await killAll();
  }
  if (values.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
  else process.stdout.write(`${formatRssTable(results)}\n`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.on('exit', killAllSync);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void killAll(1000).finally(() => process.exit(130)));
  main().catch((e: unknown) => {
    process.stderr.write(`bench:rss: ${(e as Error).stack ?? String(e)}\n`);
    killAllSync();
    process.exit(1);
  });
}
