/**
 * Helpers for end-to-end tests: run the real `meshgate run` command as a child process on loopback
 * against a temporary config directory, and talk to it with real HTTP clients.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatePkiSync } from '../support/x509-gen.js';

export const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

/**
 * A port free right now on 127.0.0.1, for servers a test starts by number. It is drawn from below
 * the kernel's ephemeral range (32768-60999 on Linux), so servers bound to port 0 and outgoing
 * connections, which take ephemeral ports, cannot grab it between this call and its use; and never
 * the same port twice in one process.
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 200; i++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (handedOut.has(port)) continue;
    if (await canBind(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free port found in 20000-31999');
}

const handedOut = new Set<number>();

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

export function tempDir(prefix = 'meshgate-test-'): string {
  return mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function writeConfig(dir: string, file: string, text: string): void {
  mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
  writeFileSync(path.join(dir, file), text);
}

export interface GatewayProcess {
  httpPort: number;
  httpsPort: number;
  adminPort: number;
  /** `--health-port` (/healthz/ready, /stats/prometheus on all addresses). */
  healthPort: number;
  configDir: string;
  proc: ChildProcess;
  /** Everything the process wrote to stdout and stderr so far. */
  output(): string;
  stop(): Promise<number | null>;
}

export interface StartOptions {
  configDir: string;
  workers?: number;
  /** Extra CLI flags. */
  args?: string[];
  /** Wait for /ready (default true). */
  waitReady?: boolean;
  /** Extra node flags before the CLI (e.g. `--import` a module recorder); workers inherit them. */
  nodeArgs?: string[];
  /** Extra environment variables (added to this process's). */
  env?: Record<string, string>;
}

/**
 * Start `meshgate run`; Gateway port 80 maps to the HTTP port and 443 to the HTTPS port. Ports are
 * picked free just before the start, so another process can take one in between: a start that
 * fails on a port already in use is retried with fresh ports.
 */
export async function startGateway(opts: StartOptions): Promise<GatewayProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(opts);
    } catch (e) {
      if (attempt >= 4 || !/EADDRINUSE|is not bound/.test((e as Error).message)) throw e;
    }
  }
}

/** The HTTP/1.1 engine the tests run against (MESHGATE_HTTP1_ENGINE); null = the gateway's default. */
export const HTTP1_ENGINE: 'meshgate' | 'node' | null =
  process.env.MESHGATE_HTTP1_ENGINE === 'meshgate' || process.env.MESHGATE_HTTP1_ENGINE === 'node' ? process.env.MESHGATE_HTTP1_ENGINE : null;

async function startOnce(opts: StartOptions): Promise<GatewayProcess> {
  const [httpPort, httpsPort, adminPort, healthPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const args = [
    ...(opts.nodeArgs ?? []), CLI, 'run', '--config', opts.configDir,
    '--http-port', String(httpPort), '--https-port', String(httpsPort), '--admin-port', String(adminPort), '--health-port', String(healthPort),
    '--port-map', `80=${httpPort},443=${httpsPort}`, '--workers', String(opts.workers ?? 1), '--bind-address', '127.0.0.1',
    // MESHGATE_HTTP1_ENGINE=meshgate|node runs the suites against that HTTP/1.1 engine (README).
    ...(HTTP1_ENGINE !== null && !(opts.args ?? []).includes('--http1-engine') ? ['--http1-engine', HTTP1_ENGINE] : []),
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: opts.env ? { ...process.env, ...opts.env } : process.env });
  let out = '';
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const gw: GatewayProcess = {
    httpPort,
    httpsPort,
    adminPort,
    healthPort,
    configDir: opts.configDir,
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  if (opts.waitReady !== false) {
    try {
      const quietLogs = (opts.args ?? []).includes('--log-level');
      const deadline = Date.now() + 20_000;
      for (;;) {
        // A port taken by someone else fails the start at once (the caller retries with new ports).
        if (proc.exitCode !== null || /EADDRINUSE/.test(out)) throw new Error('gateway exited or could not bind');
        const r = await get(`http://127.0.0.1:${adminPort}/ready`).catch(() => null);
        // The 200 must come from this gateway: another test process may have drawn the same admin
        // port and answer before this one fails to bind it (its "meshgate started" line names the port).
        const ours = quietLogs || out.includes(`"admin":${adminPort},`) || new RegExp(`"admin":"[^"]*:${adminPort}"`).test(out);
        if (r?.status === 200 && ours) break;
        if (r !== null && /is not bound/.test(r.body)) throw new Error(r.body.trim());
        if (Date.now() > deadline) throw new Error(`timed out after 20000 ms waiting for gateway /ready${r ? ` (${r.status} ${r.body.trim()})` : ''}`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    } catch (e) {
      await gw.stop();
      throw new Error(`${(e as Error).message}\n--- gateway output ---\n${out}`);
    }
  }
  return gw;
}

/** Poll `check` every 50 ms until it returns true; fail after `timeoutMs` naming `what`. */
export async function waitFor(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      if (await check()) return;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`);
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The echo backend's JSON report, when the body is one. */
  json: EchoReport | null;
}

/** What the echo backend reports about the request it received. */
export interface EchoReport {
  name: string;
  method: string;
  url: string;
  path: string;
  headers: Record<string, string | string[]>;
  body: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One HTTP/1.1 request with node:http; `host` sets the Host header. */
export function get(url: string, opts: { host?: string; headers?: Record<string, string>; method?: string; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.host) headers.host = opts.host;
    const req = http.request({ hostname: u.hostname, port: u.port, path: `${u.pathname}${u.search}`, method: opts.method ?? 'GET', headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(reply(res.statusCode ?? 0, res.headers, Buffer.concat(chunks).toString('utf8'))));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`request to ${url} timed out`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** One HTTPS request with SNI `servername` (default: the host), certificate checks off (test certs). */
export function getTls(port: number, pathName: string, opts: { host: string; servername?: string; headers?: Record<string, string> }): Promise<Reply & { peerCN: string | null }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      { hostname: '127.0.0.1', port, path: pathName, method: 'GET', headers: { host: opts.host, ...(opts.headers ?? {}) }, servername: opts.servername ?? opts.host, rejectUnauthorized: false, agent: false },
      (res) => {
        const cert = (res.socket as import('node:tls').TLSSocket).getPeerCertificate();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ ...reply(res.statusCode ?? 0, res.headers, Buffer.concat(chunks).toString('utf8')), peerCN: (Array.isArray(cert?.subject?.CN) ? cert.subject.CN[0] : cert?.subject?.CN) ?? null }));
      },
    );
    req.setTimeout(10_000, () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end();
  });
}

function reply(status: number, headers: http.IncomingHttpHeaders, body: string): Reply {
  let json: EchoReport | null = null;
  if (String(headers['content-type'] ?? '').startsWith('application/json')) {
    try {
      json = JSON.parse(body) as EchoReport;
    } catch {
      json = null;
    }
  }
  return { status, headers, body, json };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/** A self-signed certificate for `cn` (and SAN DNS names), made in JavaScript (support/x509-gen.ts). `dir` is unused (kept for callers). */
export function makeCert(_dir: string, cn: string, sans: string[] = [cn]): { cert: string; key: string } {
  return generatePkiSync([{ name: 'cert', cn, dns: sans }]).certs.cert;
}

/** A kubernetes.io/tls Secret manifest. */
export function tlsSecret(name: string, namespace: string, pair: { cert: string; key: string }): string {
  return `apiVersion: v1
kind: Secret
metadata: { name: ${name}, namespace: ${namespace} }
type: kubernetes.io/tls
data:
  tls.crt: ${Buffer.from(pair.cert).toString('base64')}
  tls.key: ${Buffer.from(pair.key).toString('base64')}
`;
}

/** A Service with one port plus an EndpointSlice pointing at 127.0.0.1 ports (ready unless listed in notReady). */
export function serviceYaml(name: string, ports: number[], opts: { namespace?: string; servicePort?: number; portName?: string; notReady?: number[]; podLabels?: Record<string, string>[] } = {}): string {
  const ns = opts.namespace ?? 'default';
  const portName = opts.portName ?? 'http';
  const servicePort = opts.servicePort ?? 80;
  const pods = opts.podLabels
    ? opts.podLabels
        .map(
          (labels, i) => `---
apiVersion: v1
kind: Pod
metadata: { name: ${name}-${i}, namespace: ${ns}, labels: ${JSON.stringify(labels)} }
status: { phase: Running, podIP: 127.0.0.1 }
`,
        )
        .join('')
    : '';
  const slices = ports
    .map(
      (p, i) => `---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-${i}, namespace: ${ns}, labels: { kubernetes.io/service-name: ${name} } }
addressType: IPv4
ports: [{ name: ${portName}, port: ${p} }]
endpoints:
  - addresses: [127.0.0.1]
    conditions: { ready: ${!(opts.notReady ?? []).includes(p)} }
${opts.podLabels ? `    targetRef: { kind: Pod, name: ${name}-${i}, namespace: ${ns} }\n` : ''}`,
    )
    .join('');
  return `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: ${ns} }
spec:
  ports: [{ name: ${portName}, port: ${servicePort} }]
${slices}${pods}`;
}
