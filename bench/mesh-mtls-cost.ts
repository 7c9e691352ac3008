/**
 * What Istio mTLS to the upstream costs the gateway (docs/benchmarks.md, "Mesh mTLS cost"):
 * requests/s and gateway CPU per request with ISTIO_MUTUAL against plaintext, in the same run.
 *
 *   node dist/bench/mesh-mtls-cost.js [--rounds 8] [--duration 3] [--connections 64]
 *
 * One `meshgate control` (in this process, CA in a temp dir) and one `meshgate run --workers 1
 * --control ...` pinned to CPU1, with two routes: `/plain` to an nginx `return 200` server in
 * plaintext, and `/mtls` to an nginx server on another port that terminates TLS with a workload
 * certificate from the mesh CA and requires the gateway's client certificate (auto mTLS: its Pod is
 * labelled security.istio.io/tlsMode: istio). nginx and wrk share CPU0. Each round measures both
 * routes for `--duration` seconds, in alternating order; the figure of merit is the per-round ratio
 * mtls ÷ plain (both variants of one round share the machine's state of that minute).
 *
 * Every process started is killed by PID at the end.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { generateKeyPairSync } from 'node:crypto';
import { cpuBusyMs, cpuMs, freePort, httpGet, killAll, spawnTracked, tcpOpen, trackedTree, waitFor } from './proc.js';
import { runWrk } from './wrk.js';
import { startControlPlane } from '../src/control/control-plane.js';
import { issueToken } from '../src/mesh/ca/token.js';
import { privateKeyPem, signatureParams, toCryptoPrivateKey, toCryptoPublicKey, x509 } from '../src/mesh/ca/keys.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../src/translate/index.js';
import { Logger } from '../src/lib/log.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const GATEWAY_MAIN = path.join(REPO_ROOT, 'dist/src/cli/main.js');
const BODY = 'hello from upstream\n';

function log(msg: string): void {
  process.stderr.write(`[mesh-mtls-cost] ${msg}\n`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function nginxConf(dir: string, plainPort: number, tlsPort: number): string {
  return `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
  access_log off; keepalive_timeout 75s; keepalive_requests 1000000;
  client_body_temp_path ${dir}/cb; proxy_temp_path ${dir}/px; fastcgi_temp_path ${dir}/fc; uwsgi_temp_path ${dir}/uw; scgi_temp_path ${dir}/sc;
  server { listen 127.0.0.1:${plainPort} backlog=4096; location / { default_type text/plain; return 200 ${JSON.stringify(BODY)}; } }
  server {
    listen 127.0.0.1:${tlsPort} ssl backlog=4096;
    ssl_certificate ${dir}/server.pem; ssl_certificate_key ${dir}/server.key;
    ssl_client_certificate ${dir}/root.pem; ssl_verify_client on; ssl_verify_depth 3;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { default_type text/plain; return 200 ${JSON.stringify(BODY)}; }
  }
}
`;
}

function config(plainPort: number, tlsPort: number): string {
  const svc = (name: string, port: number, labels: string) => `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec: { selector: { app: ${name} }, ports: [{ name: http, port: 80, targetPort: ${port} }] }
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}-0, namespace: default, labels: { app: ${name}${labels} } }
spec: { serviceAccountName: ${name} }
status: { phase: Running, podIP: 127.0.0.1 }
`;
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
    - match: [{ uri: { prefix: /plain } }]
      route: [{ destination: { host: plain, port: { number: 80 } } }]
    - match: [{ uri: { prefix: /mtls } }]
      route: [{ destination: { host: mtls, port: { number: 80 } } }]
${svc('plain', plainPort, '')}${svc('mtls', tlsPort, ', security.istio.io/tlsMode: istio')}`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { rounds: { type: 'string', default: '8' }, duration: { type: 'string', default: '3' }, connections: { type: 'string', default: '64' } } });
  const rounds = Number(values.rounds);
  const duration = Number(values.duration);
  const connections = Number(values.connections);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-mtls-cost-'));
  const deadline = setTimeout(() => {
    log('overall time bound reached; stopping');
    void killAll(2000).then(() => process.exit(2));
  }, (rounds * 2 * (duration + 3) + 180) * 1000);
  deadline.unref();
  mkdirSync(path.join(dir, 'cp-config'));
  const cp = await startControlPlane({ configDir: path.join(dir, 'cp-config'), caDir: path.join(dir, 'ca'), listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', adminPort: 0, certTtlSeconds: 86400, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: new Logger('warn') });
  try {
    // nginx's serving certificate: a workload certificate for default/mtls, through the CA's CSR path.
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys: { privateKey: await toCryptoPrivateKey(privateKey), publicKey: await toCryptoPublicKey(privateKey) }, signingAlgorithm: signatureParams(privateKey) });
    const chain = await cp.ca.signCsr(csr.toString('pem'), ['spiffe://cluster.local/ns/default/sa/mtls'], 86400);
    const nd = path.join(dir, 'nginx');
    mkdirSync(nd, { recursive: true });
    writeFileSync(path.join(nd, 'server.pem'), chain.slice(0, -1).join(''));
    writeFileSync(path.join(nd, 'server.key'), privateKeyPem(privateKey));
    writeFileSync(path.join(nd, 'root.pem'), cp.ca.rootCertPem);
    const [plainPort, tlsPort] = [await freePort(), await freePort()];
    writeFileSync(path.join(nd, 'nginx.conf'), nginxConf(nd, plainPort, tlsPort));
    spawnTracked('nginx', 'nginx', ['-p', nd, '-c', path.join(nd, 'nginx.conf'), '-e', path.join(nd, 'error.log')], { cpu: 0 });
    await waitFor('nginx', async () => (await tcpOpen(plainPort)) && (await tcpOpen(tlsPort)), 15_000);
    const cfg = path.join(dir, 'config');
    mkdirSync(cfg, { recursive: true });
    writeFileSync(path.join(cfg, 'mesh.yaml'), config(plainPort, tlsPort));
    writeFileSync(path.join(dir, 'token'), await issueToken(cp.ca.material.signingKey, { namespace: 'istio-system', serviceAccount: 'istio-ingressgateway' }, 86400));
    writeFileSync(path.join(dir, 'root.pem'), cp.ca.rootCertPem);
    const [http, https, admin] = [await freePort(), await freePort(), await freePort()];
    const gw = spawnTracked('meshgate', process.execPath, [GATEWAY_MAIN, 'run', '--config', cfg, '--http-port', String(http), '--https-port', String(https), '--admin-port', String(admin), '--port-map', `80=${http}`, '--workers', '1', '--bind-address', '127.0.0.1', '--log-level', 'warn', '--control', `127.0.0.1:${cp.grpcPort}`, '--root-cert', path.join(dir, 'root.pem'), '--token-file', path.join(dir, 'token')], { cpu: 1, cwd: REPO_ROOT });
    await waitFor('meshgate /ready', async () => {
      const r = await httpGet(admin, '/ready', 'localhost', 1000);
      return 'status' in r && r.status === 200;
    }, 60_000, gw);
    for (const p of ['/plain', '/mtls']) {
      const r = await httpGet(http, p, 'bench.example.com');
      if (!('status' in r) || r.status !== 200 || r.body !== BODY) throw new Error(`GET ${p} should answer 200 from nginx, got ${JSON.stringify(r)}`);
    }
    for (const p of ['/plain', '/mtls']) await runWrk({ port: http, path: p, host: 'bench.example.com', connections, durationSec: 2, cpu: 0 });
    const res = { plain: { rps: [] as number[], cpu: [] as number[] }, mtls: { rps: [] as number[], cpu: [] as number[] } };
    const rpsRatio: number[] = [];
    const cpuRatio: number[] = [];
    const steal: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const got: Record<string, { rps: number; cpu: number }> = {};
      for (const v of round % 2 === 0 ? (['plain', 'mtls'] as const) : (['mtls', 'plain'] as const)) {
        const pids = trackedTree(gw);
        const c0 = cpuMs(pids);
        const s0 = cpuBusyMs()[1]?.steal ?? 0;
        const t0 = Date.now();
        const w = await runWrk({ port: http, path: `/${v}`, host: 'bench.example.com', connections, durationSec: duration, cpu: 0 });
        steal.push((((cpuBusyMs()[1]?.steal ?? 0) - s0) / (Date.now() - t0)) * 100);
        if (w.non2xx + w.socketErrors > 0) log(`warning: ${v}: ${w.non2xx} non-2xx, ${w.socketErrors} socket errors`);
        got[v] = { rps: w.rps, cpu: ((cpuMs(pids) - c0) / w.requests) * 1000 };
        res[v].rps.push(got[v].rps);
        res[v].cpu.push(got[v].cpu);
      }
      rpsRatio.push(got.mtls.rps / got.plain.rps);
      cpuRatio.push(got.mtls.cpu / got.plain.cpu);
      log(`round ${round + 1}/${rounds}: plain ${Math.round(got.plain.rps)} req/s ${got.plain.cpu.toFixed(1)} CPU ms/1k, mtls ${Math.round(got.mtls.rps)} req/s ${got.mtls.cpu.toFixed(1)} CPU ms/1k`);
    }
    const lines = [
      `${rounds} rounds x 2 variants x ${duration} s, wrk -t1 -c${connections} (CPU0, with nginx), meshgate --workers 1 on CPU1; CPU1 steal during runs: median ${median(steal).toFixed(1)} %`,
      '',
      '| upstream | requests/s (median) | gateway CPU ms per 1k req (median) |',
      '|---|---|---|',
      `| plaintext | ${Math.round(median(res.plain.rps)).toLocaleString('en-US')} | ${median(res.plain.cpu).toFixed(1)} |`,
      `| ISTIO_MUTUAL (auto mTLS) | ${Math.round(median(res.mtls.rps)).toLocaleString('en-US')} | ${median(res.mtls.cpu).toFixed(1)} |`,
      '',
      `per round, mtls ÷ plain: requests/s median ${median(rpsRatio).toFixed(3)} [${Math.min(...rpsRatio).toFixed(3)}, ${Math.max(...rpsRatio).toFixed(3)}], CPU per request median ${median(cpuRatio).toFixed(3)} [${Math.min(...cpuRatio).toFixed(3)}, ${Math.max(...cpuRatio).toFixed(3)}]`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    await killAll(4000);
    await cp.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch(async (e) => {
  log(String((e as Error).stack ?? e));
  await killAll(2000);
  process.exit(1);
});
