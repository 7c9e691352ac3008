/**
 * HTTP/2 and gRPC benchmark: h2load (nghttp2-client) and a grpc-js load client, through meshgate
 * and direct, in one run.
 *
 *   node dist/bench/h2.js [--duration 8] [--warmup 2] [--clients 16] [--streams 10] [--grpc-concurrency 50]
 *
 * Scenarios (meshgate: one worker, pinned to CPU1; clients and upstreams on CPU0):
 *   h1 direct        h2load --h1 against the upstream (nginx `return 200`, HTTP/1.1)
 *   h1 meshgate      h2load --h1 through meshgate (the same client, for comparison)
 *   h2c meshgate     h2load, HTTP/2 prior knowledge, through meshgate (upstream HTTP/1.1)
 *   h2 TLS meshgate  h2load over TLS (ALPN h2) through meshgate (upstream HTTP/1.1)
 *   grpc direct      unary calls to a grpc-js server
 *   grpc meshgate    the same calls through meshgate (h2c in, h2c out: Service appProtocol grpc)
 * Each: a warm-up run, then the measured run while meshgate's CPU time is read from /proc.
 * Every process started here is killed by PID at the end or on error.
 */

import { execFile, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { nginxUpstreamConf } from './config-gen.js';
import { cpuMs, freePort, killAll, killAllSync, spawnTracked, stopTracked, tasksetAvailable, tcpOpen, trackedTree, waitFor, type Tracked } from './proc.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(HERE, '../src/cli/main.js');

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    clients: { type: 'string', default: '16' },
    streams: { type: 'string', default: '10' },
    'grpc-concurrency': { type: 'string', default: '50' },
  },
});
const duration = Number(values.duration);
const warmup = Number(values.warmup);
const clients = Number(values.clients);
const streams = Number(values.streams);
const grpcConcurrency = Number(values['grpc-concurrency']);

function log(s: string): void {
  process.stderr.write(`[h2-bench] ${s}\n`);
}

function run(cmd: string, args: string[], cpu: number | null, timeoutMs: number): Promise<string> {
  const argv = cpu === null ? [cmd, ...args] : ['taskset', '-c', String(cpu), cmd, ...args];
  return new Promise((resolve, reject) =>
    execFile(argv[0], argv.slice(1), { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => (err ? reject(new Error(`${cmd}: ${err.message}\n${stderr}`)) : resolve(stdout))),
  );
}

interface Result {
  scenario: string;
  rps: number;
  latency: string;
  failed: number;
  cpuMsPer1k: number | null;
}

function parseH2load(out: string): { rps: number; failed: number; mean: string } {
  const rps = Number(/finished in [\d.]+m?s, ([\d.]+) req\/s/.exec(out)?.[1] ?? NaN);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  // Requests still in flight when -D ends are neither succeeded nor failed: not counted here.
  const failed = req === null ? -1 : Number(req[5]) + Number(req[6]);
  const mean = /time for request:\s+\S+\s+\S+\s+(\S+)/.exec(out)?.[1] ?? '?';
  return { rps, failed, mean };
}

async function main(): Promise<void> {
  for (const tool of ['h2load', 'nginx', 'openssl']) {
    try {
      execFileSync('which', [tool], { stdio: 'ignore' });
    } catch {
      throw new Error(`${tool} is required (Debian: nghttp2-client, nginx, openssl)`);
    }
  }
  const pin = tasksetAvailable(2);
  const [cpuProxy, cpuOther] = pin ? [1, 0] : [null, null];
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-h2-bench-'));
  const results: Result[] = [];
  try {
    const upPort = await freePort();
    mkdirSync(path.join(dir, 'nginx'), { recursive: true });
    writeFileSync(path.join(dir, 'nginx', 'nginx.conf'), nginxUpstreamConf(path.join(dir, 'nginx'), upPort));
    spawnTracked('nginx upstream', 'nginx', ['-p', path.join(dir, 'nginx'), '-c', path.join(dir, 'nginx', 'nginx.conf'), '-e', path.join(dir, 'nginx', 'error.log')], { cpu: cpuOther });
    await waitFor('nginx upstream', () => tcpOpen(upPort), 10_000);

    // The gRPC upstream prints its port on stdout.
    const argv = cpuOther === null ? [process.execPath, path.join(HERE, 'grpc-upstream.js')] : ['taskset', '-c', String(cpuOther), process.execPath, path.join(HERE, 'grpc-upstream.js')];
    const grpcProc = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
    const grpcPort = await new Promise<number>((resolve, reject) => {
      grpcProc.stdout!.once('data', (d: Buffer) => resolve(Number(String(d).trim())));
      grpcProc.once('exit', () => reject(new Error('grpc upstream exited')));
    });

    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', '/CN=h2.bench', '-addext', 'subjectAltName=DNS:h2.bench', '-keyout', path.join(dir, 'tls.key'), '-out', path.join(dir, 'tls.crt')], { stdio: 'ignore' });
    const b64 = (f: string) => readFileSync(path.join(dir, f)).toString('base64');
    const cfg = path.join(dir, 'config');
    mkdirSync(cfg);
    writeFileSync(path.join(cfg, 'all.yaml'), `apiVersion: networking.istio.io/v1
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
`);
    const [httpPort, httpsPort, adminPort] = [await freePort(), await freePort(), await freePort()];
    const mg = spawnTracked('meshgate', process.execPath, [MAIN, 'run', '--config', cfg, '--http-port', String(httpPort), '--https-port', String(httpsPort), '--admin-port', String(adminPort), '--health-port', '0', '--port-map', `80=${httpPort},443=${httpsPort}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn'], { cpu: cpuProxy });
    await waitFor('meshgate', () => tcpOpen(httpPort), 20_000, mg);
    await waitFor('meshgate https', () => tcpOpen(httpsPort), 20_000, mg);
    await new Promise((r) => setTimeout(r, 1000));

    const h2 = async (scenario: string, url: string, extra: string[], measured: Tracked | null): Promise<void> => {
      const args = ['-c', String(clients), '-m', String(streams), ...extra, url];
      await run('h2load', ['-D', String(warmup), ...args], cpuOther, (warmup + 30) * 1000);
      const before = measured === null ? 0 : cpuMs(trackedTree(measured));
      const out = await run('h2load', ['-D', String(duration), ...args], cpuOther, (duration + 30) * 1000);
      const after = measured === null ? 0 : cpuMs(trackedTree(measured));
      const p = parseH2load(out);
      const total = p.rps * duration;
      results.push({ scenario, rps: p.rps, latency: `${p.mean} mean`, failed: p.failed, cpuMsPer1k: measured === null || total === 0 ? null : ((after - before) / total) * 1000 });
      log(`${scenario}: ${p.rps.toFixed(0)} req/s, failed ${p.failed}`);
    };
    await h2('h1 direct (h2load --h1 → nginx)', `http://127.0.0.1:${upPort}/`, ['--h1'], null);
    await h2('h1 meshgate (h2load --h1)', `http://127.0.0.1:${httpPort}/`, ['--h1'], mg);
    await h2('h2c meshgate (prior knowledge)', `http://127.0.0.1:${httpPort}/`, [], mg);
    await h2('h2 TLS meshgate (ALPN h2)', `https://127.0.0.1:${httpsPort}/`, [], mg);

    const grpc = async (scenario: string, port: number, measured: Tracked | null): Promise<void> => {
      const load = (ms: number) => run(process.execPath, [path.join(HERE, 'grpc-load.js'), String(port), 'grpc.bench', String(grpcConcurrency), String(ms)], cpuOther, ms + 30_000);
      await load(warmup * 1000);
      const before = measured === null ? 0 : cpuMs(trackedTree(measured));
      const r = JSON.parse(await load(duration * 1000)) as { calls: number; errors: number; seconds: number; p50Ms: number; p99Ms: number };
      const after = measured === null ? 0 : cpuMs(trackedTree(measured));
      results.push({ scenario, rps: r.calls / r.seconds, latency: `${r.p50Ms.toFixed(2)} / ${r.p99Ms.toFixed(2)} ms p50/p99`, failed: r.errors, cpuMsPer1k: measured === null || r.calls === 0 ? null : ((after - before) / r.calls) * 1000 });
      log(`${scenario}: ${(r.calls / r.seconds).toFixed(0)} calls/s, errors ${r.errors}`);
    };
    await grpc('grpc direct (grpc-js → grpc-js)', grpcPort, null);
    await grpc('grpc meshgate (h2c → meshgate → h2c)', httpPort, mg);

    await stopTracked(mg);
    grpcProc.kill('SIGTERM');
  } finally {
    await killAll(3000);
    rmSync(dir, { recursive: true, force: true });
  }
  const load = os.loadavg().map((l) => l.toFixed(2)).join(' ');
  process.stdout.write(`machine: ${os.cpus().length} CPUs, Node.js ${process.version}, pinning ${pin ? 'meshgate on CPU1, clients and upstreams on CPU0' : 'off'}, load average at end ${load}\n`);
  process.stdout.write(`h2load -c ${clients} -m ${streams} -D ${duration} (warm-up ${warmup} s); gRPC: ${grpcConcurrency} unary calls in flight on one channel for ${duration} s\n\n`);
  process.stdout.write('| scenario | requests/s | latency | failed | meshgate CPU ms per 1k req |\n|---|---|---|---|---|\n');
  for (const r of results) process.stdout.write(`| ${r.scenario} | ${Math.round(r.rps).toLocaleString('en-US')} | ${r.latency} | ${r.failed} | ${r.cpuMsPer1k === null ? '—' : r.cpuMsPer1k.toFixed(1)} |\n`);
}

process.on('exit', killAllSync);
const bound = setTimeout(() => {
  log('time bound passed: stopping');
  void killAll(2000).then(() => process.exit(2));
}, (duration + warmup + 40) * 6 * 1000 + 60_000);
bound.unref();
main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(String((err as Error).stack ?? err));
    void killAll(2000).then(() => process.exit(1));
  },
);
