/**
 * What traffic-management features cost in requests/s (docs/benchmarks.md, "Traffic management cost").
 *
 *   npx tsc -p tsconfig.json && node dist/bench/traffic-cost.js [--reps 3] [--duration 5]
 *
 * One meshgate (`run --workers 1`, pinned to CPU1), nginx `return 200` upstreams and wrk on CPU0.
 * The same small Istio config serves every scenario, one route each, all to the same upstream:
 *
 *   no-retries   retries: { attempts: 0 }: the plain forwarding path (no UpstreamCall)
 *   default      no `retries`: Istio's default policy (2 retries on connect-failure...), never fired
 *   retry-5xx    retries: { attempts: 2, retryOn: 5xx }, never fired (the upstream answers 200)
 *   retried      retries as above to an upstream answering 503 to a random half of the tries: half
 *                the requests take 2 tries or more (1.75 tries per request on average; figures count
 *                client requests; the 1 in 8 whose 3 tries all failed show as non-2xx)
 *   breaker      a DestinationRule with connectionPool limits (never reached) and outlierDetection
 *   mirror       retries off + `mirror` (100%) to a second nginx: every request is sent twice
 *
 * Scenarios are interleaved per repetition (rotating order) and reported as medians. Every process
 * started is killed by PID at the end.
 */

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { cpuBusyMs, cpuMs, freePort, httpGet, killAll, spawnTracked, tcpOpen, trackedTree, waitFor, type Tracked } from './proc.js';
import { parseWrk, wrkArgs, type WrkResult } from './wrk.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GATEWAY_MAIN = path.join(REPO_ROOT, 'dist/src/cli/main.js');
const HOST = 'cost.example.com';

const SCENARIOS = ['no-retries', 'default', 'retry-5xx', 'retried', 'breaker', 'mirror'] as const;
type Scenario = (typeof SCENARIOS)[number];

function log(msg: string): void {
  process.stderr.write(`[traffic-cost] ${msg}\n`);
}

function nginxConf(dir: string, port: number, flaky: boolean): string {
  // `flaky`: 503 for a random half of the requests (split on the random $request_id), else 200.
  const body = flaky
    ? `    location / { default_type text/plain; if ($fail) { return 503 "no\\n"; } return 200 "hello\\n"; }\n`
    : `    location / { default_type text/plain; return 200 "hello\\n"; }\n`;
  const split = flaky ? `  split_clients "$request_id" $fail { 50% 1; * ""; }\n` : '';
  return (
    `worker_processes 1;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents { worker_connections 4096; }\n` +
    `http {\n  access_log off;\n  keepalive_timeout 75s;\n  keepalive_requests 1000000;\n` +
    `  client_body_temp_path ${dir}/cb;\n  proxy_temp_path ${dir}/p;\n  fastcgi_temp_path ${dir}/f;\n  uwsgi_temp_path ${dir}/u;\n  scgi_temp_path ${dir}/s;\n` +
    split +
    `  server {\n    listen 127.0.0.1:${port} default_server backlog=4096;\n${body}  }\n}\n`
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

function config(upstream: number, shadow: number, flaky: number): string {
  return [
    service('up', upstream),
    service('guarded', upstream),
    service('shadow', shadow),
    service('flaky', flaky),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers: [{ port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: guarded, namespace: default }
spec:
  host: guarded
  trafficPolicy:
    connectionPool: { tcp: { maxConnections: 100000 }, http: { http1MaxPendingRequests: 100000, http2MaxRequests: 100000, maxRetries: 100000 } }
    outlierDetection: { consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: cost, namespace: default }
spec:
  hosts: [${HOST}]
  gateways: [istio-system/gw]
  http:
    - match: [{ uri: { prefix: /no-retries } }]
      retries: { attempts: 0 }
      route: [{ destination: { host: up } }]
    - match: [{ uri: { prefix: /default } }]
      route: [{ destination: { host: up } }]
    - match: [{ uri: { prefix: /retry-5xx } }]
      retries: { attempts: 2, retryOn: 5xx }
      route: [{ destination: { host: up } }]
    - match: [{ uri: { prefix: /retried } }]
      retries: { attempts: 2, retryOn: 5xx }
      route: [{ destination: { host: flaky } }]
    - match: [{ uri: { prefix: /breaker } }]
      retries: { attempts: 0 }
      route: [{ destination: { host: guarded } }]
    - match: [{ uri: { prefix: /mirror } }]
      retries: { attempts: 0 }
      mirror: { host: shadow }
      route: [{ destination: { host: up } }]
`,
  ].join('---\n');
}

function runWrk(port: number, p: string, connections: number, durationSec: number): Promise<WrkResult> {
  return new Promise((resolve, reject) => {
    const args = ['-c', '0', 'wrk', ...wrkArgs({ port, path: p, host: HOST, connections, durationSec, cpu: 0 })];
    const child = spawn('taskset', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), (durationSec + 20) * 1000);
    child.on('exit', () => {
      clearTimeout(timer);
      try {
        resolve(parseWrk(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { reps: { type: 'string', default: '3' }, duration: { type: 'string', default: '5' }, connections: { type: 'string', default: '64' } } });
  const reps = Number(values.reps);
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-traffic-cost-'));
  const deadline = setTimeout(() => {
    log('overall time bound reached; stopping');
    void killAll(2000).then(() => process.exit(2));
  }, (reps * SCENARIOS.length * (duration + 10) + 120) * 1000);
  deadline.unref();
  try {
    const [upPort, shadowPort, flakyPort, http, https, admin] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()]);
    const nginx: Tracked[] = [];
    for (const [name, port, flaky] of [['up', upPort, false], ['shadow', shadowPort, false], ['flaky', flakyPort, true]] as const) {
      const d = path.join(dir, name);
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, 'nginx.conf'), nginxConf(d, port, flaky));
      nginx.push(spawnTracked(`nginx ${name}`, 'nginx', ['-p', d, '-c', path.join(d, 'nginx.conf'), '-e', path.join(d, 'error.log')], { cpu: 0 }));
      await waitFor(`nginx ${name}`, () => tcpOpen(port), 15_000);
    }
    const cfg = path.join(dir, 'config');
    mkdirSync(cfg, { recursive: true });
    writeFileSync(path.join(cfg, 'cost.yaml'), config(upPort, shadowPort, flakyPort));
    const mg = spawnTracked('meshgate', process.execPath, [
      GATEWAY_MAIN, 'run', '--config', cfg, '--http-port', String(http), '--https-port', String(https), '--admin-port', String(admin), '--health-port', '0',
      '--port-map', `80=${http}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn',
    ], { cpu: 1, cwd: REPO_ROOT });
    await waitFor('meshgate /ready', async () => {
      const r = await httpGet(admin, '/ready', 'localhost', 1000);
      return 'status' in r && r.status === 200;
    }, 60_000, mg);
    for (const s of SCENARIOS) {
      const r = await httpGet(http, `/${s}`, HOST);
      if (!('status' in r) || (r.status !== 200 && s !== 'retried')) throw new Error(`/${s}: want 200, got ${JSON.stringify(r)}`);
    }
    const results = new Map<Scenario, { rps: number[]; cpu: number[]; non2xx: number[]; other: number[] }>(SCENARIOS.map((s) => [s, { rps: [], cpu: [], non2xx: [], other: [] }]));
    for (let rep = 0; rep < reps; rep++) {
      const order = SCENARIOS.map((_, i) => SCENARIOS[(i + rep) % SCENARIOS.length]);
      for (const s of order) {
        await runWrk(http, `/${s}`, connections, 2);
        const pids = trackedTree(mg);
        const c0 = cpuMs(pids);
        const b0 = cpuBusyMs()[1]?.busy ?? 0;
        const t0 = Date.now();
        const w = await runWrk(http, `/${s}`, connections, duration);
        const c1 = cpuMs(pids);
        const b1 = cpuBusyMs()[1]?.busy ?? 0;
        // Others' share of CPU1 (the proxy's CPU) during the run, in % of that CPU.
        const other = Math.max(0, ((b1 - b0 - (c1 - c0)) / (Date.now() - t0)) * 100);
        const r = results.get(s)!;
        r.rps.push(w.rps);
        r.cpu.push(((c1 - c0) / w.requests) * 1000);
        r.non2xx.push(w.non2xx + w.socketErrors);
        r.other.push(other);
        log(`rep ${rep + 1} ${s}: ${Math.round(w.rps)} req/s, ${(((c1 - c0) / w.requests) * 1000).toFixed(1)} CPU ms/1k, non-2xx+errors ${w.non2xx + w.socketErrors}, others on CPU1 ${other.toFixed(0)}%`);
      }
    }
    const base = median(results.get('no-retries')!.rps);
    const lines = ['| scenario | requests/s (median) | vs no-retries | CPU ms per 1k req (median) | vs no-retries | non-2xx + errors | others on CPU1 % (per rep) | per-rep requests/s |', '|---|---|---|---|---|---|---|---|'];
    const baseCpu = median(results.get('no-retries')!.cpu);
    for (const s of SCENARIOS) {
      const r = results.get(s)!;
      const rps = median(r.rps);
      lines.push(`| ${s} | ${Math.round(rps).toLocaleString('en-US')} | ${((rps / base - 1) * 100).toFixed(1)}% | ${median(r.cpu).toFixed(1)} | ${((median(r.cpu) / baseCpu - 1) * 100).toFixed(1)}% | ${r.non2xx.reduce((a, b) => a + b, 0)} | ${r.other.map((x) => x.toFixed(0)).join(', ')} | ${r.rps.map((x) => Math.round(x).toLocaleString('en-US')).join(', ')} |`);
    }
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
