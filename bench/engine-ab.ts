/**
 * A/B of two builds of meshgate's data plane on the same upstreams, interleaved in one run
 * (issue 11: the upstream engine before and after).
 *
 *   npx tsc -p tsconfig.json && node dist/bench/engine-ab.js --a /path/to/other/checkout [--reps 3] [--duration 5]
 *
 * `--a` is the root of another checkout with its own `dist/` (e.g. a copy of main, built); B is this
 * checkout. Both run `meshgate run --workers 1` pinned to CPU1 with one small Istio config; nginx
 * upstreams and wrk (64 connections) share CPU0. Scenarios:
 *
 *   h1   HTTP/1.1 upstream (nginx `return 200`), retries off: the plain forwarding path
 *   h2   the same through an HTTP/2 (h2c) upstream (DestinationRule h2UpgradePolicy UPGRADE, nginx
 *        `listen ... http2`)
 *
 * Each repetition runs A then B (then B then A on the next) per scenario. Reported: medians of
 * requests/s and of the gateway's CPU ms per 1000 requests (utime+stime of its process tree), and
 * how busy CPU1 was with other processes (a shared machine: compare CPU per request first).
 */

import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuBusyMs, cpuMs, freePort, httpGet, killAll, spawnTracked, stopTracked, tcpOpen, trackedTree, waitFor, type Tracked } from './proc.js';
import { runWrk } from './wrk.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const HOST = 'ab.example.com';
const SCENARIOS = ['h1', 'h2'] as const;

function log(msg: string): void {
  process.stderr.write(`[engine-ab] ${msg}\n`);
}

function nginxConf(dir: string, port: number, h2c: boolean): string {
  return (
    `worker_processes 1;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents { worker_connections 4096; }\n` +
    `http {\n  access_log off;\n  keepalive_timeout 75s;\n  keepalive_requests 1000000;\n  http2_max_requests 1000000;\n` +
    `  client_body_temp_path ${dir}/cb;\n  proxy_temp_path ${dir}/p;\n  fastcgi_temp_path ${dir}/f;\n  uwsgi_temp_path ${dir}/u;\n  scgi_temp_path ${dir}/s;\n` +
    `  server {\n    listen 127.0.0.1:${port}${h2c ? ' http2' : ''} default_server backlog=4096;\n    location / { default_type text/plain; return 200 "hello\\n"; }\n  }\n}\n`
  );
}

function service(name: string, port: number): string {
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec: { ports: [{ name: http, port: 80 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-1, namespace: default, labels: { kubernetes.io/service-name: ${name} } }
addressType: IPv4
ports: [{ name: http, port: ${port} }]
endpoints: [{ addresses: [127.0.0.1], conditions: { ready: true } }]
`;
}

function config(h1: number, h2: number): string {
  return [
    service('up', h1),
    service('up2', h2),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: up2, namespace: default }
spec:
  host: up2
  trafficPolicy: { connectionPool: { http: { h2UpgradePolicy: UPGRADE } } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ab, namespace: default }
spec:
  hosts: [${HOST}]
  gateways: [istio-system/gw]
  http:
    - match: [{ uri: { prefix: /h1 } }]
      retries: { attempts: 0 }
      route: [{ destination: { host: up } }]
    - match: [{ uri: { prefix: /h2 } }]
      retries: { attempts: 0 }
      route: [{ destination: { host: up2 } }]
`,
  ].join('---\n');
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

interface Gateway {
  label: string;
  http: number;
  t: Tracked;
}

async function startGateway(label: string, root: string, cfg: string): Promise<Gateway> {
  const [http, https, admin] = await Promise.all([freePort(), freePort(), freePort()]);
  const t = spawnTracked(`meshgate ${label}`, process.execPath, [
    path.join(root, 'dist/src/cli/main.js'), 'run', '--config', cfg, '--http-port', String(http), '--https-port', String(https), '--admin-port', String(admin),
    '--port-map', `80=${http}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn', '--health-port', '0',
  ], { cpu: 1, cwd: root });
  await waitFor(`meshgate ${label} /ready`, async () => {
    const r = await httpGet(admin, '/ready', 'localhost', 1000);
    return 'status' in r && r.status === 200;
  }, 60_000, t);
  for (const s of SCENARIOS) {
    const r = await httpGet(http, `/${s}`, HOST);
    if (!('status' in r) || r.status !== 200) throw new Error(`${label} /${s}: want 200, got ${JSON.stringify(r)}`);
  }
  return { label, http, t };
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { a: { type: 'string' }, reps: { type: 'string', default: '3' }, duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '64' } } });
  if (values.a === undefined) throw new Error('--a <checkout with dist/> is required');
  const reps = Number(values.reps);
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-engine-ab-'));
  const deadline = setTimeout(() => {
    log('overall time bound reached; stopping');
    void killAll(2000).then(() => process.exit(2));
  }, (reps * SCENARIOS.length * 2 * (duration + 6) + 180) * 1000);
  deadline.unref();
  try {
    const [h1Port, h2Port] = await Promise.all([freePort(), freePort()]);
    for (const [name, port, h2c] of [['h1', h1Port, false], ['h2', h2Port, true]] as const) {
      const d = path.join(dir, name);
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, 'nginx.conf'), nginxConf(d, port, h2c));
      spawnTracked(`nginx ${name}`, 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-e', path.join(d, 'error.log')], { cpu: 0 });
      await waitFor(`nginx ${name}`, () => tcpOpen(port), 15_000);
    }
    const cfg = path.join(dir, 'config');
    mkdirSync(cfg, { recursive: true });
    writeFileSync(path.join(cfg, 'ab.yaml'), config(h1Port, h2Port));
    const gws = [await startGateway('A', path.resolve(values.a), cfg), await startGateway('B', REPO_ROOT, cfg)];
    const results = new Map<string, { rps: number[]; cpu: number[]; errors: number; other: number[] }>();
    for (let rep = 0; rep < reps; rep++) {
      for (const s of SCENARIOS) {
        const order = rep % 2 === 0 ? gws : [...gws].reverse();
        for (const g of order) {
          const key = `${s} ${g.label}`;
          const r = results.get(key) ?? { rps: [], cpu: [], errors: 0, other: [] };
          results.set(key, r);
          await runWrk({ port: g.http, path: `/${s}`, host: HOST, connections, durationSec: 2, cpu: 0 });
          const pids = trackedTree(g.t);
          const c0 = cpuMs(pids);
          const b0 = cpuBusyMs()[1]?.busy ?? 0;
          const t0 = Date.now();
          const w = await runWrk({ port: g.http, path: `/${s}`, host: HOST, connections, durationSec: duration, cpu: 0 });
          const c1 = cpuMs(pids);
          const b1 = cpuBusyMs()[1]?.busy ?? 0;
          const other = Math.max(0, ((b1 - b0 - (c1 - c0)) / (Date.now() - t0)) * 100);
          const cpu = ((c1 - c0) / Math.max(1, w.requests)) * 1000;
          r.rps.push(w.rps);
          r.cpu.push(cpu);
          r.errors += w.non2xx + w.socketErrors;
          r.other.push(other);
          log(`rep ${rep + 1} ${key}: ${Math.round(w.rps)} req/s, ${cpu.toFixed(1)} CPU ms/1k, errors ${w.non2xx + w.socketErrors}, others on CPU1 ${other.toFixed(0)}%`);
        }
      }
    }
    const lines = ['| scenario | build | requests/s (median) | CPU ms per 1k req (median) | non-2xx + errors | others on CPU1 % (per rep) |', '|---|---|---|---|---|---|'];
    for (const s of SCENARIOS) {
      for (const g of gws) {
        const r = results.get(`${s} ${g.label}`)!;
        lines.push(`| ${s} | ${g.label} | ${Math.round(median(r.rps)).toLocaleString('en-US')} | ${median(r.cpu).toFixed(1)} | ${r.errors} | ${r.other.map((x) => x.toFixed(0)).join(', ')} |`);
      }
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    for (const g of gws) await stopTracked(g.t);
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
