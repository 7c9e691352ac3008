/**
 * The full mesh in a network-namespace lab, as a user runs it (reference mesh.md §6), shared by the
 * end-to-end test (mesh-e2e-lab.test.ts) and the README demo (lab-demo.ts, `npm run lab`). Nothing is
 * hand-written as a view: every sidecar's config is computed by `meshgate control` from real
 * Kubernetes and Istio objects in a YAML directory and pushed to it.
 *
 *   node      10.252.0.1  bridge
 *   client    10.252.0.2  frontend/client    meshed: capture + sidecar + HTTP agent; VIP route 10.252.1.0/24
 *   v1        10.252.0.3  bookinfo/reviews   meshed: reviews v1 (HTTP :9080, TCP echo :9000, HTTPS :9443)
 *   v2        10.252.0.4  bookinfo/reviews   meshed: reviews v2 (same apps)
 *   other     10.252.0.5  other/intruder     meshed, another service account (denied by policy)
 *   outside   10.252.0.6  not meshed: plaintext caller, and an HTTP app :8080 outside the registry
 *   cp        10.252.0.9  meshgate control --config DIR --ca-dir DIR (gRPC :15012, admin :15014)
 *
 * Services (VIPs on 10.252.1.0/24): reviews.bookinfo:9080 (10.252.1.10, HTTP), echo.bookinfo:9000
 * (10.252.1.11, opaque TCP), secure.bookinfo:9443 (10.252.1.13, `https`: the app's own TLS, relayed
 * by SNI), all over the reviews pods, with EndpointSlices. Istio: a mesh
 * VirtualService (`/fail-once/` retried on 5xx, `/slow` with a 500 ms timeout, header `x-canary: v2`
 * -> v2, else 90 % v1 / 10 % v2), its DestinationRule subsets,
 * PeerAuthentication STRICT in bookinfo, an AuthorizationPolicy on reviews allowing only
 * frontend/client, and the MeshConfig (istio-system/istio) whose outboundTrafficPolicy the test flips.
 * Tokens come from `meshgate token`, which also creates the self-signed CA `control` then loads.
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, type LabProcess } from './lab.js';
import { ECHO_APP } from './lab-programs.js';
import { HTTP_AGENT, HTTP_APP } from './sidecar-programs.js';
import { parseAllDocuments } from 'yaml';
import { MESHGATE } from './meshgate-bin.js';
import { makeCerts } from '../support/tls-certs.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const MAIN = path.resolve(here, '../../src/cli/main.js');

export const CP_IP = '10.252.0.9';
export const REVIEWS_VIP = '10.252.1.10';
export const ECHO_VIP = '10.252.1.11';
export const GRPC_VIP = '10.252.1.12';
export const SECURE_VIP = '10.252.1.13';
/** The name the HTTPS app's certificate is for (its clients' SNI). */
export const SECURE_HOST = 'secure.bookinfo.svc.cluster.local';
export const TD = 'cluster.local';

export interface PodInfo {
  name: string;
  ip: string;
  namespace: string;
  serviceAccount: string;
  meshed: boolean;
  labels: Record<string, string>;
}

export const PODS: PodInfo[] = [
  { name: 'client', ip: '10.252.0.2', namespace: 'frontend', serviceAccount: 'client', meshed: true, labels: { app: 'client', version: 'v1' } },
  { name: 'v1', ip: '10.252.0.3', namespace: 'bookinfo', serviceAccount: 'reviews', meshed: true, labels: { app: 'reviews', version: 'v1' } },
  { name: 'v2', ip: '10.252.0.4', namespace: 'bookinfo', serviceAccount: 'reviews', meshed: true, labels: { app: 'reviews', version: 'v2' } },
  { name: 'other', ip: '10.252.0.5', namespace: 'other', serviceAccount: 'intruder', meshed: true, labels: { app: 'intruder', version: 'v1' } },
  { name: 'outside', ip: '10.252.0.6', namespace: 'legacy', serviceAccount: 'default', meshed: false, labels: { app: 'legacy' } },
];

export const pod = (name: string): PodInfo => PODS.find((p) => p.name === name)!;
/** Each pod is the first of a StatefulSet (`<set>-0`): Istio names its workload after the set. */
const setName = (p: PodInfo) => (p.labels.app === 'reviews' ? `reviews-${p.name}` : p.name);
const podName = (p: PodInfo) => `${setName(p)}-0`;

const yamlLabels = (l: Record<string, string>) => `{${Object.entries(l).map(([k, v]) => `${k}: ${v}`).join(', ')}}`;

/** The objects `meshgate control` reads; `options` are the parts the test changes. */
export function meshConfigYaml(options: { registryOnly?: boolean; teapotHeader?: boolean; v2Weight?: number } = {}): Record<string, string> {
  const v2Weight = options.v2Weight ?? 10;
  const pods = PODS.map((p) => {
    const labels = { ...p.labels, ...(p.meshed ? { 'security.istio.io/tlsMode': 'istio' } : {}) };
    const ports = p.labels.app === 'reviews' ? ', ports: [{name: http, containerPort: 9080}, {name: tcp-echo, containerPort: 9000}, {name: https, containerPort: 9443}]' : '';
    return `apiVersion: v1
kind: Pod
metadata:
  name: ${podName(p)}
  generateName: ${setName(p)}-
  namespace: ${p.namespace}
  labels: ${yamlLabels(labels)}
  ownerReferences: [{apiVersion: apps/v1, kind: StatefulSet, name: ${setName(p)}, uid: ${setName(p)}-uid, controller: true}]
spec: {serviceAccountName: ${p.serviceAccount}, containers: [{name: app, image: app${ports}}]}
status: {phase: Running, podIP: ${p.ip}, podIPs: [{ip: ${p.ip}}]}
`;
  }).join('---\n');
  const reviewsPods = PODS.filter((p) => p.labels.app === 'reviews');
  const slice = (svc: string, portName: string, port: number) => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ${svc}-e2e01, namespace: bookinfo, labels: {kubernetes.io/service-name: ${svc}}}
addressType: IPv4
ports: [{name: ${portName}, port: ${port}, protocol: TCP}]
endpoints:
${reviewsPods.map((p) => `- addresses: [${p.ip}]\n  conditions: {ready: true}\n  targetRef: {kind: Pod, name: ${podName(p)}, namespace: bookinfo}`).join('\n')}
`;
  const teapot = options.teapotHeader
    ? `  - match:
    - headers:
        x-e2e-change: {exact: "1"}
    fault:
      abort: {httpStatus: 418, percentage: {value: 100}}
    route:
    - destination: {host: reviews, subset: v1}
`
    : '';
  return {
    'namespaces.yaml': ['frontend', 'bookinfo', 'other', 'legacy', 'istio-system']
      .map((n) => `apiVersion: v1\nkind: Namespace\nmetadata: {name: ${n}${n === 'istio-system' || n === 'legacy' ? '' : ', labels: {istio-injection: enabled}'}}\n`)
      .join('---\n'),
    'pods.yaml': pods,
    'services.yaml': `apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: bookinfo}
spec:
  clusterIP: ${REVIEWS_VIP}
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: bookinfo}
spec:
  clusterIP: ${ECHO_VIP}
  selector: {app: reviews}
  ports: [{name: tcp-echo, port: 9000, targetPort: 9000}]
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: bookinfo}
spec:
  clusterIP: ${GRPC_VIP}
  selector: {app: reviews}
  ports: [{name: grpc, port: 9090, targetPort: 9090}]
---
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: bookinfo}
spec:
  clusterIP: ${SECURE_VIP}
  selector: {app: reviews}
  ports: [{name: https, port: 9443, targetPort: 9443}]
---
${slice('secure', 'https', 9443)}---
${slice('ratings', 'grpc', 9090)}---
${slice('reviews', 'http', 9080)}---
${slice('echo', 'tcp-echo', 9000)}`,
    'routing.yaml': `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: bookinfo}
spec:
  hosts: [reviews]
  http:
${teapot}  - match:
    - uri: {prefix: /fail-once/}
    route:
    - destination: {host: reviews, subset: v1}
    retries: {attempts: 3, retryOn: 5xx}
  - match:
    - uri: {exact: /slow}
    route:
    - destination: {host: reviews, subset: v1}
    timeout: 500ms
  - match:
    - headers:
        x-canary: {exact: v2}
    route:
    - destination: {host: reviews, subset: v2}
  - route:
    - destination: {host: reviews, subset: v1}
      weight: ${100 - v2Weight}
    - destination: {host: reviews, subset: v2}
      weight: ${v2Weight}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`,
    'security.yaml': `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-callers, namespace: bookinfo}
spec:
  selector:
    matchLabels: {app: reviews}
  action: ALLOW
  rules:
  - from:
    - source:
        principals: [${TD}/ns/frontend/sa/client]
`,
    'mesh.yaml': `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy:
      mode: ${options.registryOnly ? 'REGISTRY_ONLY' : 'ALLOW_ANY'}
`,
  };
}

export interface MeshLab {
  lab: Lab;
  dir: string;
  configDir: string;
  cp: LabProcess;
  sidecars: Map<string, LabProcess>;
  apps: Map<string, LabProcess>;
  /** One HTTP request from a pod (its long-lived agent); bounded. */
  get(from: string, host: string, port: number, p: string, headers?: Record<string, string>, timeoutMs?: number): Promise<HttpResult>;
  /** `count` requests in turn on kept-alive connections. */
  getMany(from: string, host: string, port: number, p: string, count: number, headers?: Record<string, string>, timeoutMs?: number): Promise<HttpResult[]>;
  /** Starts `meshgate control` again (after the test killed it), with the same flags; sets `cp`. */
  restartControl(): LabProcess;
  /** Writes config files by rename (as a ConfigMap update or an editor does). */
  writeConfig(files: Record<string, string>): void;
  /** The reviews pods' probes as `meshgate inject` rewrote them (path on 15020 per probe kind), and the env it gave the sidecar. */
  probes: { readiness: string; liveness: string; env: string };
  /** What went to a sidecar's stderr (its log), for failure messages. */
  log(pod: string): string;
  close(): void;
}

export interface HttpResult {
  status?: number;
  body?: string;
  error?: string;
  headers?: Record<string, string>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Builds the lab and starts everything; resolves when every sidecar is ready (certificate and
 * pushed view). On failure everything it made is removed before the error is thrown.
 */
export async function startMeshLab(opts: { pods?: string[]; say?: (line: string) => void; certTtl?: string } = {}): Promise<MeshLab> {
  const say = opts.say ?? (() => undefined);
  const pods = PODS.filter((p) => opts.pods === undefined || opts.pods.includes(p.name));
  const lab = Lab.create({
    nodeIp: '10.252.0.1',
    prefixLength: 24,
    pods: [...pods.map((p) => ({ name: p.name, ip: p.ip, routes: ['10.252.1.0/24'] })), { name: 'cp', ip: CP_IP }],
  });
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-mesh-e2e-'));
  const sidecars = new Map<string, LabProcess>();
  const apps = new Map<string, LabProcess>();
  const agents = new Map<string, { proc: LabProcess; next: number }>();
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    lab.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const configDir = path.join(dir, 'config');
  const writeConfig = (files: Record<string, string>) => {
    for (const [name, text] of Object.entries(files)) {
      writeFileSync(path.join(configDir, `.${name}.tmp`), text);
      renameSync(path.join(configDir, `.${name}.tmp`), path.join(configDir, name));
    }
  };
  const agentOf = async (from: string) => {
    let agent = agents.get(from);
    if (!agent) {
      const proc = lab.spawn(from, [process.execPath, '-e', HTTP_AGENT], {}, { stdin: true });
      await lab.waitForLine(proc, (l) => l.includes('"agent"'));
      agents.set(from, (agent = { proc, next: 0 }));
    }
    return agent;
  };
  const getMany = async (from: string, host: string, port: number, p: string, count: number, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<HttpResult[]> => {
    const agent = await agentOf(from);
    const id = ++agent.next;
    agent.proc.child.stdin!.write(`${JSON.stringify({ id, host, port, path: p, headers, count, timeoutMs })}\n`);
    const line = await lab.waitForLine(agent.proc, (l) => l.startsWith(`{"id":${id},`), timeoutMs * Math.min(count, 4) + 30_000);
    return (JSON.parse(line) as { results: HttpResult[] }).results;
  };
  const get = async (from: string, host: string, port: number, p: string, headers: Record<string, string> = {}, timeoutMs = 5000) =>
    (await getMany(from, host, port, p, 1, { connection: 'close', ...headers }, timeoutMs))[0];
  try {
    chmodSync(dir, 0o755);
    mkdirSync(configDir);
    // The HTTPS app's own certificate (self-signed, for SECURE_HOST): its clients trust it, the mesh knows nothing of it.
    const [appCert] = makeCerts([SECURE_HOST]);
    writeFileSync(path.join(dir, 'secure.crt'), appCert.certChain, { mode: 0o644 });
    writeFileSync(path.join(dir, 'secure.key'), appCert.privateKey, { mode: 0o600 });
    writeConfig(meshConfigYaml());
    // `meshgate token` creates the CA (self-signed root) on first use, as `control` would.
    const caDir = path.join(dir, 'ca');
    for (const p of pods.filter((x) => x.meshed)) {
      const r = await lab.run('cp', [process.execPath, MAIN, 'token', '--ca-dir', caDir, '--namespace', p.namespace, '--service-account', p.serviceAccount, '--ttl', '2h'], {}, 30_000);
      if (r.status !== 0) throw new Error(`meshgate token failed: ${r.stderr}`);
      writeFileSync(path.join(dir, `${p.name}.token`), r.stdout.trim() + '\n', { mode: 0o644 });
    }
    // The root certificate (public) where the sidecars, which drop to uid 1337, can read it.
    copyFileSync(path.join(caDir, 'root-cert.pem'), path.join(dir, 'root-cert.pem'));
    chmodSync(path.join(dir, 'root-cert.pem'), 0o644);
    // The reviews Pod as a user writes it, injected by `meshgate inject`: its sidecars get the env
    // (ISTIO_KUBE_APP_PROBERS) inject wrote, so the rewritten probes can be asked on 15020.
    const probes = injectedProbes(lab);
    say(`control plane: meshgate control --config ${configDir} --ca-dir ${caDir} --listen ${CP_IP}:15012`);
    const startControl = () => lab.spawn('cp', [process.execPath, MAIN, 'control', '--config', configDir, '--ca-dir', caDir, '--listen', `${CP_IP}:15012`, '--admin-port', '15014', '--log-level', 'warn', '--mesh-graph-interval', '1s', '--mesh-graph-window', '20s', ...(opts.certTtl ? ['--cert-ttl', opts.certTtl] : [])]);
    const cp = startControl();
    for (const p of pods.filter((x) => x.labels.app === 'reviews')) {
      const app = lab.spawn(p.name, [process.execPath, '-e', HTTP_APP], { APP_NAME: `reviews-${p.name}`, APP_PORT: '9080' });
      const echo = lab.spawn(p.name, [process.execPath, '-e', ECHO_APP], { ECHO_NAME: `echo-${p.name}`, ECHO_LISTEN: '9000' });
      const h2 = lab.spawn(p.name, [process.execPath, '-e', H2C_APP], { APP_NAME: `ratings-${p.name}`, APP_PORT: '9090' });
      const secure = lab.spawn(p.name, [process.execPath, '-e', HTTPS_APP], { APP_NAME: `secure-${p.name}`, APP_PORT: '9443', TLS_CERT: path.join(dir, 'secure.crt'), TLS_KEY: path.join(dir, 'secure.key') });
      apps.set(p.name, app);
      await lab.waitForLine(app, (l) => l.includes('listening'));
      await lab.waitForLine(echo, (l) => l.includes('listening'));
      await lab.waitForLine(h2, (l) => l.includes('listening'));
      await lab.waitForLine(secure, (l) => l.includes('listening'));
    }
    if (pods.some((p) => p.name === 'outside')) {
      const app = lab.spawn('outside', [process.execPath, '-e', HTTP_APP], { APP_NAME: 'legacy', APP_PORT: '8080' });
      apps.set('outside', app);
      await lab.waitForLine(app, (l) => l.includes('listening'));
    }
    for (const p of pods.filter((x) => x.meshed)) {
      const c = lab.tryExec(p.name, process.execPath, [MAIN, 'capture']);
      if (c.status !== 0) throw new Error(`meshgate capture in ${p.name} failed: ${c.stderr}`);
      say(`pod ${p.name} (${p.ip}, ${p.namespace}/${p.serviceAccount}): meshgate capture; meshgate sidecar --control ${CP_IP}:15012 ...`);
      sidecars.set(
        p.name,
        lab.spawn(p.name, [
          MESHGATE, 'sidecar', '--control', `${CP_IP}:15012`, '--root-cert', path.join(dir, 'root-cert.pem'), '--token-file', path.join(dir, `${p.name}.token`),
          '--pod-ip', p.ip, '--namespace', p.namespace, '--service-account', p.serviceAccount, '--pod-name', podName(p), '--drain', '1s', '--log-level', 'warn',
        ], p.labels.app === 'reviews' ? { ISTIO_KUBE_APP_PROBERS: probes.env } : {}),
      );
    }
    // Ready = certificate + pushed view, asked by pod IP from the non-meshed pod, as a kubelet would.
    const asker = pods.some((p) => p.name === 'outside') ? 'outside' : 'cp';
    for (const p of pods.filter((x) => x.meshed)) {
      const deadline = Date.now() + 45_000;
      let status: number | undefined;
      while (Date.now() < deadline && (status = (await get(asker, p.ip, 15021, '/healthz/ready', {}, 2000)).status) !== 200) await sleep(200);
      if (status !== 200) throw new Error(`sidecar in ${p.name} not ready (${status}): ${sidecars.get(p.name)!.stderr.join('')}\ncontrol: ${cp.stderr.join('')}`);
    }
    const restartControl = () => {
      result.cp = startControl();
      return result.cp;
    };
    const result: MeshLab = { lab, dir, configDir, cp, sidecars, apps, probes, get, getMany, writeConfig, restartControl, log: (name) => sidecars.get(name)?.stderr.join('') ?? '', close };
    return result;
  } catch (e) {
    close();
    throw e;
  }
}

/** The packet counters of the wire rules below, in order (raw PREROUTING sees each packet arriving on eth0). */
export const WIRE_RULES = [
  { name: 'plaintext request line', text: 'HTTP/1.1' },
  { name: 'Istio ALPN istio-http/1.1', text: 'istio-http/1.1' },
  { name: 'Istio SNI outbound_.9080_.v1_.reviews', text: 'outbound_.9080_.v1_.reviews.bookinfo.svc.cluster.local' },
];

/** Installs string-match counters (no target: counting only) for TCP to `port` arriving in `podName`. */
export function installWireCounters(lab: Lab, podName: string, port: number): void {
  lab.exec(podName, 'iptables-restore', ['--noflush'], ['*raw', ...WIRE_RULES.map((w) => `-A PREROUTING -i eth0 -p tcp --dport ${port} -m string --string "${w.text}" --algo bm`), 'COMMIT', ''].join('\n'));
}

export function wireCounters(lab: Lab, podName: string): number[] {
  return lab
    .exec(podName, 'iptables', ['-t', 'raw', '-L', 'PREROUTING', '-v', '-x', '-n'])
    .split('\n')
    .filter((l) => l.includes('STRING match'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}

/** The `istio_*` sample lines of a Prometheus text matching every part. */
export function metricLines(text: string, ...parts: string[]): string[] {
  return text.split('\n').filter((l) => parts.every((p) => l.includes(p)));
}

/** A reviews Deployment with an httpGet readiness probe (named port) and a tcpSocket liveness probe, through `meshgate inject`. */
function injectedProbes(lab: Lab): { readiness: string; liveness: string; env: string } {
  const input = `apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v1, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  template:
    metadata: {labels: {app: reviews, version: v1}}
    spec:
      serviceAccountName: reviews
      containers:
      - name: reviews
        image: reviews
        ports: [{name: http, containerPort: 9080}, {name: tcp-echo, containerPort: 9000}]
        readinessProbe: {httpGet: {path: /ready, port: http}, timeoutSeconds: 2}
        livenessProbe: {tcpSocket: {port: 9000}}
`;
  const out = lab.exec('cp', process.execPath, [MAIN, 'inject', '-f', '-'], input);
  const doc = parseAllDocuments(out)[0].toJSON() as { spec: { template: { spec: { containers: { name: string; env?: { name: string; value?: string }[]; readinessProbe?: { httpGet: { path: string; port: number } }; livenessProbe?: { httpGet: { path: string; port: number } } }[] } } } };
  const containers = doc.spec.template.spec.containers;
  const app = containers.find((c) => c.name === 'reviews')!;
  const env = containers.find((c) => c.name === 'istio-proxy')?.env?.find((e) => e.name === 'ISTIO_KUBE_APP_PROBERS')?.value;
  if (env === undefined || app.readinessProbe?.httpGet.port !== 15020 || app.livenessProbe?.httpGet.port !== 15020) throw new Error(`meshgate inject did not rewrite the probes as expected:\n${out}`);
  return { readiness: app.readinessProbe.httpGet.path, liveness: app.livenessProbe.httpGet.path, env };
}

/** An h2c (prior knowledge) app, as a gRPC server is on the wire: answers JSON with its name, the protocol and the peer, and a trailer. */
export const H2C_APP = String.raw`
const http2 = require('http2');
http2.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    res.addTrailers({ 'x-trailer': 'yes' });
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ server: process.env.APP_NAME, version: req.httpVersion, remote: req.socket.remoteAddress, body, path: req.url }));
  });
}).listen(Number(process.env.APP_PORT), '0.0.0.0', () => console.log(JSON.stringify({ listening: Number(process.env.APP_PORT) })));
`;

/** One h2c request (prior knowledge) to TARGET with BODY; prints {status, body, trailers} or {error}. */
export const H2C_CLIENT = String.raw`
const http2 = require('http2');
const done = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); process.exit(0); };
setTimeout(() => done({ error: 'TIMEOUT' }), 8000).unref();
const s = http2.connect('http://' + process.env.TARGET);
s.on('error', (e) => done({ error: e.code || e.message }));
const req = s.request({ ':method': 'POST', ':path': '/ratings.Ratings/Get', 'content-type': 'application/json' });
let status = 0, body = '', trailers = null;
req.on('response', (h) => (status = h[':status']));
req.on('trailers', (t) => (trailers = t));
req.setEncoding('utf8');
req.on('data', (d) => (body += d));
req.on('end', () => done({ status, body, trailers }));
req.on('error', (e) => done({ error: e.code || e.message }));
req.end(process.env.BODY || '');
`;

/** A TLS handshake with TARGET as an Istio client would start it (SNI, ALPN; no client certificate): prints the server certificate's serial, SAN and validity. */
export const TLS_PEEK = String.raw`
const tls = require('tls');
const [host, port] = process.env.TARGET.split(':');
const done = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); process.exit(0); };
setTimeout(() => done({ error: 'TIMEOUT' }), 5000).unref();
const s = tls.connect({ host, port: Number(port), servername: process.env.SNI, ALPNProtocols: ['istio-http/1.1', 'istio'], rejectUnauthorized: false });
s.on('secureConnect', () => { const c = s.getPeerCertificate(); done({ serial: c.serialNumber, san: c.subjectaltname, validFrom: c.valid_from, validTo: c.valid_to, alpn: s.alpnProtocol }); });
s.on('error', (e) => done({ error: e.code || e.message }));
`;

/** An HTTPS app with its own certificate (TLS_CERT, TLS_KEY): answers JSON with its name, the SNI it got and the peer. */
export const HTTPS_APP = String.raw`
const https = require('https');
const fs = require('fs');
https.createServer({ cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY) }, (req, res) => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ server: process.env.APP_NAME, sni: req.socket.servername || null, remote: req.socket.remoteAddress, path: req.url }));
}).listen(Number(process.env.APP_PORT), '0.0.0.0', () => console.log(JSON.stringify({ listening: Number(process.env.APP_PORT) })));
`;

/** One HTTPS GET to TARGET with SNI, trusting only CA (the app's certificate): prints {status, body} or {error}. */
export const HTTPS_CLIENT = String.raw`
const https = require('https');
const fs = require('fs');
const [host, port] = process.env.TARGET.split(':');
const done = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); process.exit(0); };
setTimeout(() => done({ error: 'TIMEOUT' }), 8000).unref();
const req = https.request({ host, port: Number(port), path: '/tls-marker', servername: process.env.SNI, ca: fs.readFileSync(process.env.CA), agent: false }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => (body += d));
  res.on('end', () => done({ status: res.statusCode, body }));
});
req.on('error', (e) => done({ error: e.code || e.message }));
req.end();
`;

/** Counters (raw table, chain MG_TLS_WIRE, apart from WIRE_RULES) of Istio's SNI and ALPN for `host`:`port` arriving in `podName`. */
export function installTlsWireCounters(lab: Lab, podName: string, port: number, host: string): void {
  const texts = [`outbound_.${port}_._.${host}`, 'istio-peer-exchange'];
  lab.exec(podName, 'iptables-restore', ['--noflush'], ['*raw', ':MG_TLS_WIRE - [0:0]', `-A PREROUTING -i eth0 -p tcp --dport ${port} -j MG_TLS_WIRE`, ...texts.map((t) => `-A MG_TLS_WIRE -m string --string "${t}" --algo bm`), 'COMMIT', ''].join('\n'));
}

export function tlsWireCounters(lab: Lab, podName: string): number[] {
  return lab
    .exec(podName, 'iptables', ['-t', 'raw', '-L', 'MG_TLS_WIRE', '-v', '-x', '-n'])
    .split('\n')
    .filter((l) => l.includes('STRING match'))
    .map((l) => Number(l.trim().split(/\s+/)[0]));
}
