/**
 * `npm run bench:engine`: issue 11's engine benchmarks side by side in one run, reported as ratios
 * (never asserted in a test). Everything a run compares is measured in the same minutes, so only the
 * ratios within one run mean anything on a shared machine.
 *
 *   node dist/bench/engine.js [--duration 6] [--warmup 2] [--rate 1000] [--connections 16]
 *                             [--clients 16] [--streams 10] [--grpc-concurrency 50]
 *                             [--only fixed,h2,grpc,rss] [--json]
 *
 * Layout: the proxy under test (meshgate `run --workers 1`, or nginx with one worker) on CPU1; load
 * generators and upstreams on CPU0 (taskset; off on a 1-CPU machine). Upstreams: nginx `return 200`
 * (HTTP/1.1) and a @grpc/grpc-js echo server.
 *
 *   fixed  fixed-rate HTTP/1.1 (bench/fixed-rate-load.ts, a Node wrk2 stand-in in its own process):
 *          RATE req/s over CONNECTIONS keep-alive connections to direct / meshgate / nginx; p50, p99,
 *          p99.9 from the time each request was due; added latency = proxy minus direct; proxy CPU ms
 *          per 1k requests (at 1000 req/s: vCPU per 1000 rps, the unit Istio publishes).
 *   h2     h2load -c CLIENTS -m STREAMS, HTTP/2 over TLS (ALPN h2) and h2c, meshgate vs nginx's http2
 *          listener; requests/s, CPU per 1k requests, requests/s per core (from CPU) and their ratio.
 *   grpc   unary calls (bench/grpc-load.ts, one channel, GRPC_CONCURRENCY in flight) direct vs
 *          through meshgate: calls/s, ratio, meshgate CPU ms per call.
 *   rss    idle VmRSS of `meshgate run` (bench/rss.ts): --workers 0, primary + 1 worker (one route and
 *          the 500-route table), --workers 2, 10,000 routes; nginx (master + 1 worker) beside them.
 *
 * Needs nginx (Debian nginx-light or nginx), h2load (nghttp2-client) and openssl; a missing tool
 * skips the scenarios that need it, saying what to install. Every process started here is killed by
 * PID at the end, on error, on SIGINT/SIGTERM and when the overall time bound passes.
 */
import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nginxUpstreamConf } from './config-gen.js';
import { cpuBusyMs, cpuMs, freePort, killAll, killAllSync, rssBytes, spawnTracked, stopTracked, tasksetAvailable, tcpOpen, trackedTree, waitFor, which, type Tracked } from './proc.js';
import { formatRssTable, measureRss, RSS_CASES, type RssResult } from './rss.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(HERE, '../src/cli/main.js');

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '6' },
    warmup: { type: 'string', default: '2' },
    rate: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '16' },
    clients: { type: 'string', default: '16' },
    streams: { type: 'string', default: '10' },
    'grpc-concurrency': { type: 'string', default: '50' },
    only: { type: 'string', default: 'fixed,h2,grpc,rss' },
    json: { type: 'boolean', default: false },
  },
});
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const rate = Number(values.rate);
const connections = Number(values.connections);
const only = new Set(values.only.split(','));

function log(s: string): void {
  process.stderr.write(`[engine-bench] ${s}\n`);
}

function run(cmd: string, args: string[], cpu: number | null, timeoutMs: number): Promise<string> {
  const argv = cpu === null ? [cmd, ...args] : ['taskset', '-c', String(cpu), cmd, ...args];
  return new Promise((resolve, reject) =>
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${err.message}\n${stderr}`)) : resolve(stdout))),
  );
}

function nginxProxy(dir: string, ports: { http: number; h2c: number; h2tls: number }, upstreamPort: number): string {
  return (
    `worker_processes 1;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\n` +
    `events { worker_connections 4096; multi_accept on; }\n` +
    `http {\n  access_log off;\n  keepalive_timeout 75s;\n  keepalive_requests 1000000;\n` +
    `  client_body_temp_path ${dir}/client_body;\n  proxy_temp_path ${dir}/proxy;\n  fastcgi_temp_path ${dir}/fastcgi;\n  uwsgi_temp_path ${dir}/uwsgi;\n  scgi_temp_path ${dir}/scgi;\n` +
    `  upstream web { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }\n` +
    `  proxy_http_version 1.1;\n  proxy_set_header Connection "";\n  proxy_set_header Host $host;\n` +
    `  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n  proxy_set_header X-Forwarded-Proto $scheme;\n  proxy_set_header X-Request-ID $request_id;\n` +
    `  server {\n    listen 127.0.0.1:${ports.http} backlog=4096;\n    listen 127.0.0.1:${ports.h2c} http2;\n` +
    `    listen 127.0.0.1:${ports.h2tls} ssl http2;\n    ssl_certificate ${dir}/../tls.crt;\n    ssl_certificate_key ${dir}/../tls.key;\n` +
    `    location / { proxy_pass http://web; }\n  }\n}\n`
  );
}

function meshgateConfig(b64: (f: string) => string, upPort: number, grpcPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*"]
    - port: { number: 443, name: https, protocol: HTTPS }
      hosts: ["*"]
      tls: { mode: SIMPLE, credentialName: bench-cert }
---
apiVersion: v1
kind: Secret
metadata: { name: bench-cert, namespace: istio-system }
type: kubernetes.io/tls
data: { tls.crt: ${b64('tls.crt')}, tls.key: ${b64('tls.key')} }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: vs, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
    - match: [{ uri: { prefix: /meshgate.test.Echo/ } }]
      route: [{ destination: { host: grpc } }]
    - route: [{ destination: { host: web } }]
---
apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec: { ports: [{ name: http, port: 80 }] }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-0, namespace: default, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, port: ${upPort} }]
endpoints: [{ addresses: [127.0.0.1] }]
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

interface FixedRow {
  target: string;
  achievedRate: number;
  p50Ms: number;
  p99Ms: number;
  p999Ms: number;
  errors: number;
  cpuMsPer1k: number | null;
  /** % of CPU1 (the proxy's) that other processes used during the run; null without pinning. */
  othersCpu1: number | null;
}
interface H2Row {
  scenario: string;
  proxy: 'meshgate' | 'nginx';
  rps: number;
  failed: number;
  cpuMsPer1k: number;
  othersCpu1: number | null;
}
interface GrpcRow {
  target: string;
  callsPerS: number;
  p50Ms: number;
  p99Ms: number;
  errors: number;
  cpuMsPerCall: number | null;
  /** CPU µs per call of the load generator and of the gRPC upstream (both on CPU0). */
  clientUsPerCall: number | null;
  upstreamUsPerCall: number | null;
}

function parseH2load(out: string): { rps: number; failed: number } {
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  return { rps, failed: req === null ? -1 : Number(req[5]) + Number(req[6]) };
}

/** % of CPU1 busy with other processes since `busy0` (its busy time minus the proxy's own CPU); null unpinned. */
let pinned = false;
function othersOnProxyCpu(busy0: Array<{ busy: number }>, wall0: number, proxyMs: number): number | null {
  if (!pinned) return null;
  const busy1 = cpuBusyMs();
  const wall = performance.now() - wall0;
  if (!busy0[1] || !busy1[1] || wall <= 0) return null;
  return Math.max(0, ((busy1[1].busy - busy0[1].busy - proxyMs) / wall) * 100);
}

const f1 = (x: number) => x.toFixed(1);
const f2 = (x: number) => x.toFixed(2);
const int = (x: number) => Math.round(x).toLocaleString('en-US');

async function main(): Promise<void> {
  const missing: string[] = [];
  const nginx = which('nginx');
  const h2load = which('h2load');
  const openssl = which('openssl');
  if (!nginx) missing.push('nginx (Debian: apt-get install nginx-light or nginx): nginx upstream and nginx comparisons skipped; the upstream is node:http');
  if (!h2load) missing.push('h2load (Debian: apt-get install nghttp2-client): the HTTP/2 scenarios are skipped');
  if (!openssl) missing.push('openssl (Debian: apt-get install openssl): the TLS scenarios are skipped');
  for (const m of missing) log(`missing ${m}`);

  const pin = tasksetAvailable(os.cpus().length);
  const [cpuProxy, cpuOther] = pin ? [1, 0] : [null, null];
  pinned = pin;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-engine-bench-'));
  const fixed: FixedRow[] = [];
  const h2: H2Row[] = [];
  const grpc: GrpcRow[] = [];
  let rss: RssResult[] = [];
  let nginxIdleMiB: number | null = null;
  try {
    // Upstreams on CPU0.
    const upPort = await freePort();
    if (nginx) {
      mkdirSync(path.join(dir, 'up'), { recursive: true });
      writeFileSync(path.join(dir, 'up', 'nginx.conf'), nginxUpstreamConf(path.join(dir, 'up'), upPort));
      spawnTracked('nginx upstream', nginx, ['-p', path.join(dir, 'up'), '-c', path.join(dir, 'up', 'nginx.conf'), '-e', path.join(dir, 'up', 'error.log')], { cpu: cpuOther });
    } else {
      spawnTracked('node upstream', process.execPath, [path.join(HERE, 'upstream-node.js'), String(upPort)], { cpu: cpuOther });
    }
    await waitFor('upstream', () => tcpOpen(upPort), 10_000);
    const argv = cpuOther === null ? [process.execPath, path.join(HERE, 'grpc-upstream.js')] : ['taskset', '-c', String(cpuOther), process.execPath, path.join(HERE, 'grpc-upstream.js')];
    const grpcProc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    const grpcPort = await new Promise<number>((resolve, reject) => {
      grpcProc.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
      grpcProc.once('exit', () => reject(new Error('grpc upstream exited')));
    });

    // A self-signed certificate for both proxies' TLS listeners.
    let b64: (f: string) => string = () => '';
    if (openssl) {
      execFileSync(openssl, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=h2.bench', '-addext', 'subjectAltName=DNS:h2.bench', '-keyout', path.join(dir, 'tls.key'), '-out', path.join(dir, 'tls.crt')], { stdio: 'ignore' });
      b64 = (f: string) => readFileSync(path.join(dir, f)).toString('base64');
    }

    // meshgate, one worker, on CPU1.
    const cfg = path.join(dir, 'config');
    mkdirSync(cfg);
    let config = meshgateConfig(b64, upPort, grpcPort);
    if (!openssl) config = config.replace(/    - port: \{ number: 443[\s\S]*?credentialName: bench-cert \}\n/, '').replace(/---\napiVersion: v1\nkind: Secret[\s\S]*?\n---\n/, '---\n');
    writeFileSync(path.join(cfg, 'all.yaml'), config);
    const mp = { http: await freePort(), https: await freePort(), admin: await freePort() };
    const mg = spawnTracked('meshgate', process.execPath, [MAIN, 'run', '--config', cfg, '--http-port', String(mp.http), '--https-port', String(mp.https), '--admin-port', String(mp.admin), '--port-map', `80=${mp.http},443=${mp.https}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn'], { cpu: cpuProxy });
    await waitFor('meshgate', () => tcpOpen(mp.http), 30_000, mg);
    if (openssl) await waitFor('meshgate https', () => tcpOpen(mp.https), 30_000, mg);

    // nginx proxy, one worker, on CPU1.
    const np = { http: await freePort(), h2c: await freePort(), h2tls: await freePort() };
    let ngx: Tracked | null = null;
    if (nginx && openssl) {
      const nd = path.join(dir, 'proxy');
      mkdirSync(nd);
      writeFileSync(path.join(nd, 'nginx.conf'), nginxProxy(nd, np, upPort));
      ngx = spawnTracked('nginx proxy', nginx, ['-p', nd, '-c', path.join(nd, 'nginx.conf'), '-e', path.join(nd, 'error.log')], { cpu: cpuProxy });
      await waitFor('nginx proxy', () => tcpOpen(np.http), 10_000, ngx);
      await new Promise((r) => setTimeout(r, 500));
      nginxIdleMiB = rssBytes(trackedTree(ngx)) / 1048576;
    }
    await new Promise((r) => setTimeout(r, 1000));

    if (only.has('fixed')) {
      const loadgen = path.join(HERE, 'fixed-rate-load.js');
      const targets: { name: string; port: number; proc: Tracked | null }[] = [
        { name: 'direct (→ upstream)', port: upPort, proc: null },
        { name: 'meshgate, 1 worker', port: mp.http, proc: mg },
      ];
      if (ngx) targets.push({ name: 'nginx, 1 worker', port: np.http, proc: ngx });
      for (const t of targets) {
        log(`fixed rate ${rate} req/s over ${connections} connections: ${t.name}`);
        const before = t.proc ? cpuMs(trackedTree(t.proc)) : 0;
        const busy0 = cpuBusyMs();
        const wall0 = performance.now();
        const out = await run(process.execPath, [loadgen, String(t.port), 'bench.example.com', '/', String(rate), String(connections), String(duration), String(warmup)], cpuOther, (duration + warmup + 30) * 1000);
        const after = t.proc ? cpuMs(trackedTree(t.proc)) : 0;
        const othersCpu1 = othersOnProxyCpu(busy0, wall0, after - before);
        const r = JSON.parse(out) as { completed: number; errors: number; achievedRate: number; p50Ms: number; p99Ms: number; p999Ms: number };
        // CPU over warm-up + measured run, divided by the requests of both (the rate is fixed).
        const requests = rate * (duration + warmup);
        fixed.push({ target: t.name, achievedRate: r.achievedRate, p50Ms: r.p50Ms, p99Ms: r.p99Ms, p999Ms: r.p999Ms, errors: r.errors, cpuMsPer1k: t.proc ? ((after - before) / requests) * 1000 : null, othersCpu1 });
      }
    }

    if (only.has('h2') && h2load && openssl) {
      const scenarios: { scenario: string; proxy: 'meshgate' | 'nginx'; url: string; proc: Tracked }[] = [
        { scenario: 'h2 TLS (ALPN h2)', proxy: 'meshgate', url: `https://127.0.0.1:${mp.https}/`, proc: mg },
        { scenario: 'h2c (prior knowledge)', proxy: 'meshgate', url: `http://127.0.0.1:${mp.http}/`, proc: mg },
      ];
      if (ngx) {
        scenarios.splice(1, 0, { scenario: 'h2 TLS (ALPN h2)', proxy: 'nginx', url: `https://127.0.0.1:${np.h2tls}/`, proc: ngx });
        scenarios.push({ scenario: 'h2c (prior knowledge)', proxy: 'nginx', url: `http://127.0.0.1:${np.h2c}/`, proc: ngx });
      }
      for (const s of scenarios) {
        log(`h2load ${s.scenario} → ${s.proxy}`);
        const args = ['-c', values.clients, '-m', values.streams, s.url];
        await run(h2load, ['-D', String(warmup), ...args], cpuOther, (warmup + 30) * 1000);
        const before = cpuMs(trackedTree(s.proc));
        const busy0 = cpuBusyMs();
        const wall0 = performance.now();
        const p = parseH2load(await run(h2load, ['-D', String(duration), ...args], cpuOther, (duration + 30) * 1000));
        const after = cpuMs(trackedTree(s.proc));
        h2.push({ scenario: s.scenario, proxy: s.proxy, rps: p.rps, failed: p.failed, cpuMsPer1k: ((after - before) / (p.rps * duration)) * 1000, othersCpu1: othersOnProxyCpu(busy0, wall0, after - before) });
      }
    }

    if (only.has('grpc')) {
      for (const t of [
        { target: 'direct (grpc-js → grpc-js)', port: grpcPort, proc: null as Tracked | null },
        { target: 'meshgate (h2c → meshgate → h2c)', port: mp.http, proc: mg },
      ]) {
        log(`gRPC unary: ${t.target}`);
        const load = (ms: number) => run(process.execPath, [path.join(HERE, 'grpc-load.js'), String(t.port), 'grpc.bench', values['grpc-concurrency'], String(ms)], cpuOther, ms + 30_000);
        await load(warmup * 1000);
        const before = t.proc ? cpuMs(trackedTree(t.proc)) : 0;
        const up0 = grpcProc.pid === undefined ? 0 : cpuMs([grpcProc.pid]);
        const r = JSON.parse(await load(duration * 1000)) as { calls: number; errors: number; seconds: number; p50Ms: number; p99Ms: number; cpuMs?: number };
        const after = t.proc ? cpuMs(trackedTree(t.proc)) : 0;
        const up1 = grpcProc.pid === undefined ? 0 : cpuMs([grpcProc.pid]);
        grpc.push({ target: t.target, callsPerS: r.calls / r.seconds, p50Ms: r.p50Ms, p99Ms: r.p99Ms, errors: r.errors, cpuMsPerCall: t.proc && r.calls > 0 ? (after - before) / r.calls : null, clientUsPerCall: r.cpuMs !== undefined && r.calls > 0 ? (r.cpuMs / r.calls) * 1000 : null, upstreamUsPerCall: grpcProc.pid !== undefined && r.calls > 0 ? ((up1 - up0) / r.calls) * 1000 : null });
      }
    }

    await stopTracked(mg);
    if (ngx) await stopTracked(ngx);
    grpcProc.kill('SIGTERM');

    if (only.has('rss')) {
      const decoy = await freePort();
      for (const c of RSS_CASES) {
        log(`idle RSS: ${c.description}`);
        rss.push(await measureRss(c, { upstreamPort: upPort, decoyPort: decoy, settleS: 3, extraArgs: [], cpu: cpuProxy }));
      }
    }
  } finally {
    await killAll(3000);
    rmSync(dir, { recursive: true, force: true });
  }

  if (values.json) {
    process.stdout.write(`${JSON.stringify({ fixed, h2, grpc, rss, nginxIdleMiB, missing }, null, 2)}\n`);
    return;
  }
  const out: string[] = [];
  out.push(`machine: ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), Node.js ${process.version}, pinning ${pin ? 'proxy on CPU1, load and upstreams on CPU0' : 'off'}, load average at end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  for (const m of missing) out.push(`missing: ${m}`);
  if (fixed.length > 0) {
    const direct = fixed[0];
    const ngxRow = fixed.find((r) => r.target.startsWith('nginx'));
    out.push('', `### Fixed rate: ${rate} req/s over ${connections} connections, ${duration} s measured after ${warmup} s (latency from the time each request was due)`, '');
    out.push('| target | achieved req/s | p50 ms | p99 ms | p99.9 ms | added p50 / p99 vs direct ms | added p99 − nginx added p99 ms | CPU ms per 1k req | errors | others on CPU1 % |', '|---|---|---|---|---|---|---|---|---|---|');
    for (const r of fixed) {
      const added = r === direct ? '—' : `${f2(r.p50Ms - direct.p50Ms)} / ${f2(r.p99Ms - direct.p99Ms)}`;
      const vsNginx = r === direct || !ngxRow || r === ngxRow ? '—' : f2(r.p99Ms - direct.p99Ms - (ngxRow.p99Ms - direct.p99Ms));
      out.push(`| ${r.target} | ${int(r.achievedRate)} | ${f2(r.p50Ms)} | ${f2(r.p99Ms)} | ${f2(r.p999Ms)} | ${added} | ${vsNginx} | ${r.cpuMsPer1k === null ? '—' : f1(r.cpuMsPer1k)} | ${r.errors} | ${r.othersCpu1 === null ? '—' : r.othersCpu1.toFixed(0)} |`);
    }
  }
  if (h2.length > 0) {
    out.push('', `### HTTP/2 front end: h2load -c ${values.clients} -m ${values.streams}, ${duration} s after ${warmup} s, HTTP/1.1 upstream`, '');
    out.push('| scenario | proxy | requests/s | CPU ms per 1k req | req/s per core (from CPU) | meshgate ÷ nginx (per core) | failed | others on CPU1 % |', '|---|---|---|---|---|---|---|---|');
    for (const r of h2) {
      const n = h2.find((x) => x.scenario === r.scenario && x.proxy === 'nginx');
      const ratio = r.proxy === 'meshgate' && n ? f2(n.cpuMsPer1k / r.cpuMsPer1k) : '—';
      out.push(`| ${r.scenario} | ${r.proxy} | ${int(r.rps)} | ${f1(r.cpuMsPer1k)} | ${int(1e6 / r.cpuMsPer1k)} | ${ratio} | ${r.failed} | ${r.othersCpu1 === null ? '—' : r.othersCpu1.toFixed(0)} |`);
    }
  }
  if (grpc.length > 0) {
    const d = grpc[0];
    out.push('', `### gRPC unary: ${values['grpc-concurrency']} calls in flight on one channel, ${duration} s after ${warmup} s`, '');
    out.push('| target | calls/s | ÷ direct | p50 / p99 ms | meshgate CPU ms per call | load generator / upstream CPU µs per call (CPU0) | errors |', '|---|---|---|---|---|---|---|');
    for (const r of grpc) out.push(`| ${r.target} | ${int(r.callsPerS)} | ${r === d ? '—' : f2(r.callsPerS / d.callsPerS)} | ${f2(r.p50Ms)} / ${f2(r.p99Ms)} | ${r.cpuMsPerCall === null ? '—' : f2(r.cpuMsPerCall)} | ${r.clientUsPerCall === null ? '—' : r.clientUsPerCall.toFixed(0)} / ${r.upstreamUsPerCall === null ? '—' : r.upstreamUsPerCall.toFixed(0)} | ${r.errors} |`);
  }
  if (rss.length > 0) {
    out.push('', '### Idle RSS (VmRSS, summed over the process tree; median of 5 samples after 3 s idle)', '', formatRssTable(rss));
    if (nginxIdleMiB !== null) out.push(`| nginx proxy (master + 1 worker), for reference | ${f1(nginxIdleMiB)} | | | | | |`);
  }
  process.stdout.write(`${out.join('\n')}\n`);
}

process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void killAll(1000).finally(() => process.exit(130)));
// Bound: every scenario is bounded; this is the backstop (about 5x the expected run time).
const bound = setTimeout(() => {
  log('time bound passed: stopping');
  void killAll(2000).then(() => process.exit(2));
}, ((duration + warmup + 10) * 12 + 120) * 5 * 1000);
bound.unref();
main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(String((err as Error).stack ?? err));
    void killAll(2000).then(() => process.exit(1));
  },
);
