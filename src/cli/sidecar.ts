/**
 * `meshgate sidecar`: the proxy next to every meshed pod (reference/mesh.md §0, §2).
 *
 *   meshgate sidecar --control HOST:15012 --root-cert FILE --token-file FILE --pod-ip IP
 *                    --namespace NS --service-account SA [--pod-name NAME] [--proxy-uid 1337]
 *                    [--proxy-gid GID] [--trust-domain cluster.local] [--workload-cert-ttl 24h]
 *                    [--view-file FILE] [--outbound-port 15001] [--inbound-port 15006]
 *                    [--status-port 15020] [--health-port 15021] [--protocol-detection-timeout 300ms]
 *                    [--access-log stdout|FILE] [--access-log-format text|json] [--drain 5s]
 *                    [--cluster-id Kubernetes] [--log-level info]
 *
 * Runs as root in the pod's network namespace after `meshgate capture`. As root, it runs the proxy
 * through the transparent-socket launcher (mesh/capture/transparent.ts): the launcher makes the
 * IP_TRANSPARENT capture listeners (127.0.0.1:15001 and :15006, and [::1] with an IPv6 pod address),
 * drops to `--proxy-uid`/`--proxy-gid` and execs the proxy (`node sidecar-main.js sidecar ...`, the
 * lean entry), which finds the sockets in MESHGATE_TRANSPARENT_FDS. Before that, it checks that the
 * capture rules in the namespace exempt the proxy's uid (else every upstream connection of the proxy
 * would be captured again: a loop) and that the proxy uid can read --root-cert and --token-file, and
 * refuses to start when not.
 *
 * Process model (`launchPlan`): the `meshgate` command (bin/meshgate, the image's entrypoint) asks
 * `node sidecar-main.js plan-sidecar ARGS` for the command line and execs it, so the launcher and then
 * the proxy replace the entry process: after startup one process remains, the proxy (uid 1337), with
 * the container's PID, its signals (SIGTERM: drain) and its exit code. Node.js 20 cannot exec, so
 * `node dist/src/cli/main.js sidecar` as root still works but keeps a root Node.js process that waits
 * for the proxy and passes signals on (`relaunch`).
 *
 * Identity: the workload certificate from `--control` (mesh/identity/client.ts), renewed at half its
 * life. Config: the view pushed by the control plane (mesh/push/client.ts, `ConfigPushClient`), or
 * with `--view-file`, a fixed JSON IRSnapshot with a `sidecar` part, re-read when the file changes
 * (tests and debugging without a control plane; with `--view-file` and no `--control`, no certificate
 * is needed for readiness, and Istio mTLS upstreams answer 503 UF).
 */
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync, readFileSync, realpathSync, statSync, unwatchFile, watchFile } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import net from 'node:net';
import { parseDuration } from '../api/duration.js';
import { Logger, type LogLevel } from '../lib/log.js';
import { checkServiceAccount } from '../mesh/identity/names.js';
import { parseTtl, trustDomain } from './mesh-client-options.js';
import { TRANSPARENT_FDS_ENV, transparentLauncherArgv } from '../mesh/capture/transparent.js';
import type { IRSnapshot } from '../ir/types.js';
import { validateIR } from '../ir/validate.js';
import { compactHeapSoon } from '../lib/heap.js';

type Fail = (message: string) => never;

export const SIDECAR_USAGE = `meshgate sidecar --control HOST:15012 --root-cert FILE --token-file FILE --pod-ip IP
                 --namespace NS --service-account SA [--pod-name NAME] [--proxy-uid 1337] [--proxy-gid GID]
                 [--trust-domain cluster.local] [--workload-cert-ttl 24h] [--view-file FILE]
                 [--outbound-port 15001] [--inbound-port 15006] [--status-port 15020] [--health-port 15021]
                 [--protocol-detection-timeout 300ms] [--access-log stdout|FILE] [--access-log-format text|json]
                 [--drain 5s] [--cluster-id Kubernetes] [--log-level info]
                 [--dns-capture] [--dns-port 15053] [--resolv-conf /etc/resolv.conf]`;

const FLAGS = {
  control: { type: 'string' },
  'root-cert': { type: 'string' },
  'token-file': { type: 'string' },
  'pod-ip': { type: 'string', multiple: true },
  namespace: { type: 'string' },
  'service-account': { type: 'string' },
  'pod-name': { type: 'string' },
  'proxy-uid': { type: 'string' },
  'proxy-gid': { type: 'string' },
  'trust-domain': { type: 'string' },
  'workload-cert-ttl': { type: 'string' },
  'view-file': { type: 'string' },
  'outbound-port': { type: 'string' },
  'inbound-port': { type: 'string' },
  'status-port': { type: 'string' },
  'health-port': { type: 'string' },
  'protocol-detection-timeout': { type: 'string' },
  'access-log': { type: 'string' },
  'access-log-format': { type: 'string' },
  drain: { type: 'string' },
  'log-level': { type: 'string' },
  'cluster-id': { type: 'string' },
  'dns-capture': { type: 'boolean' },
  'dns-port': { type: 'string' },
  'resolv-conf': { type: 'string' },
} as const;

export interface SidecarOptions {
  control: string | null;
  rootCertFile: string | null;
  tokenFile: string | null;
  podIps: string[];
  namespace: string;
  serviceAccount: string;
  podName: string;
  proxyUid: number;
  proxyGid: number;
  trustDomain: string;
  ttlSeconds: number;
  viewFile: string | null;
  outboundPort: number;
  inboundPort: number;
  statusPort: number;
  healthPort: number;
  detectionTimeoutMs: number;
  accessLog: { path: string; format: 'text' | 'json' } | null;
  drainMs: number;
  logLevel: LogLevel;
  /** Istio cluster ID (`--cluster-id`, Istio's default `Kubernetes`). */
  clusterId: string;
  /** DNS proxying (sidecar-dns.ts): `--dns-capture` serves from the start (else when the view turns it on), on `--dns-port`, forwarding to `--resolv-conf`'s servers. */
  dns: { always: boolean; port: number; resolvConf: string };
}

function port(flag: string, v: string | undefined, dflt: number, fail: Fail): number {
  const s = v ?? String(dflt);
  if (!/^\d{1,5}$/.test(s) || Number(s) > 65535) fail(`--${flag}: "${s}" is not a port number (0-65535)`);
  return Number(s);
}

export function parseSidecarOptions(args: string[], fail: Fail): SidecarOptions {
  let v: Record<string, string | string[] | boolean | undefined>;
  try {
    v = parseArgs({ args, options: FLAGS, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return fail((e as Error).message.split('\n')[0]);
  }
  const s = (k: keyof typeof FLAGS): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const control = s('control') ?? null;
  const viewFile = s('view-file') ?? null;
  if (control === null && viewFile === null) fail('sidecar: --control HOST:PORT is required (or --view-file FILE to serve a fixed view)');
  if (control !== null) {
    if (!/^(?:\[[0-9a-fA-F:.]+\]|[^:\s/]+):\d{1,5}$/.test(control)) fail(`--control: "${control}" is not HOST:PORT (e.g. istiod.istio-system.svc:15012)`);
    if (!s('root-cert')) fail('sidecar: --root-cert FILE is required with --control');
    if (!s('token-file')) fail('sidecar: --token-file FILE is required with --control');
    if (!existsSync(s('root-cert')!)) fail(`--root-cert: ${s('root-cert')} does not exist`);
    if (!existsSync(s('token-file')!)) fail(`--token-file: ${s('token-file')} does not exist`);
  }
  if (viewFile !== null && !existsSync(viewFile)) fail(`--view-file: ${viewFile} does not exist`);
  const podIps = (v['pod-ip'] as string[] | undefined) ?? [];
  if (podIps.length === 0) fail('sidecar: --pod-ip IP is required');
  for (const ip of podIps) if (net.isIP(ip) === 0) fail(`--pod-ip: "${ip}" is not an IP address`);
  const namespace = s('namespace');
  const serviceAccount = s('service-account');
  if (!namespace) fail('sidecar: --namespace NS is required');
  if (!serviceAccount) fail('sidecar: --service-account SA is required');
  const bad = checkServiceAccount({ namespace: namespace!, serviceAccount: serviceAccount! });
  if (bad !== null) fail(`sidecar: ${bad}`);
  const uid = s('proxy-uid') ?? '1337';
  if (!/^\d+$/.test(uid)) fail(`--proxy-uid: "${uid}" is not a user id`);
  const gid = s('proxy-gid') ?? uid;
  if (!/^\d+$/.test(gid)) fail(`--proxy-gid: "${gid}" is not a group id`);
  const detect = parseDuration(s('protocol-detection-timeout') ?? '300ms');
  if (detect === null || detect < 0) fail(`--protocol-detection-timeout: "${s('protocol-detection-timeout')}" is not a duration (e.g. 300ms)`);
  const drain = parseDuration(s('drain') ?? '5s');
  if (drain === null || drain < 0) fail(`--drain: "${s('drain')}" is not a duration (e.g. 5s)`);
  const level = s('log-level') ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) fail(`--log-level: "${level}" is not one of debug, info, warn, error`);
  const fmt = s('access-log-format') ?? 'text';
  if (fmt !== 'text' && fmt !== 'json') fail(`--access-log-format: "${fmt}" is not text or json`);
  return {
    control,
    rootCertFile: s('root-cert') ? path.resolve(s('root-cert')!) : null,
    tokenFile: s('token-file') ? path.resolve(s('token-file')!) : null,
    podIps,
    namespace: namespace!,
    serviceAccount: serviceAccount!,
    podName: s('pod-name') ?? '',
    proxyUid: Number(uid),
    proxyGid: Number(gid),
    trustDomain: trustDomain(s('trust-domain'), fail),
    ttlSeconds: parseTtl('workload-cert-ttl', s('workload-cert-ttl') ?? '24h', fail),
    viewFile: viewFile === null ? null : path.resolve(viewFile),
    outboundPort: port('outbound-port', s('outbound-port'), 15001, fail),
    inboundPort: port('inbound-port', s('inbound-port'), 15006, fail),
    statusPort: port('status-port', s('status-port'), 15020, fail),
    healthPort: port('health-port', s('health-port'), 15021, fail),
    detectionTimeoutMs: detect!,
    accessLog: s('access-log') ? { path: s('access-log')!, format: fmt as 'text' | 'json' } : null,
    drainMs: drain!,
    logLevel: level as LogLevel,
    clusterId: s('cluster-id') ?? 'Kubernetes',
    dns: { always: v['dns-capture'] === true, port: port('dns-port', s('dns-port'), 15053, fail), resolvConf: path.resolve(s('resolv-conf') ?? '/etc/resolv.conf') },
  };
}

/** The capture listeners: loopback v4, and v6 when the pod has an IPv6 address (capture's TPROXY `--on-ip`). */
function captureListeners(o: SidecarOptions): { outbound: string[]; inbound: string[] } {
  const v6 = o.podIps.some((ip) => net.isIPv6(ip));
  return {
    outbound: [`127.0.0.1:${o.outboundPort}`, ...(v6 ? [`[::1]:${o.outboundPort}`] : [])],
    inbound: [`127.0.0.1:${o.inboundPort}`, ...(v6 ? [`[::1]:${o.inboundPort}`] : [])],
  };
}

/**
 * Why the capture rules would loop the proxy's own traffic, or null: when `meshgate capture` rules
 * are installed (MESHGATE_OUTPUT), they must return the proxy's uid.
 */
export function captureLoopProblem(uid: number): string | null {
  const r = spawnSync('iptables-save', ['-t', 'mangle'], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) return null; // No iptables here: nothing is captured, nothing can loop.
  const rules = r.stdout.split('\n').filter((l) => l.startsWith('-A MESHGATE_OUTPUT '));
  if (rules.length === 0) return null;
  if (rules.some((l) => l.includes(`--uid-owner ${uid} `) && l.endsWith('-j RETURN'))) return null;
  const other = /--uid-owner (\d+) -j RETURN/.exec(rules.join('\n'))?.[1];
  return `the capture rules in this network namespace do not exempt uid ${uid} (they exempt ${other ?? 'no uid'}): the proxy's own connections would be captured again; run meshgate capture --proxy-uid ${uid}, or give the sidecar --proxy-uid ${other ?? 'UID'}`;
}

export async function sidecarCommand(args: string[], fail: Fail, waitForSignal: () => Promise<void>): Promise<number> {
  const o = parseSidecarOptions(args, fail);
  const log = new Logger(o.logLevel, { component: 'meshgate-sidecar' });
  const plan = launchPlan(o, args, fail);
  if (plan.launcher) {
    log.info('started by node as root: this process stays as a root waiter next to the proxy; start the sidecar with the meshgate command (bin/meshgate) to have only the proxy process', { proxyUid: o.proxyUid });
    return relaunch(plan.argv, log);
  }
  return serve(o, captureListeners(o), log, waitForSignal);
}

/** The lean proxy entry (sidecar-main.ts): loads the sidecar only, not every command of main.ts. */
export const SIDECAR_ENTRY = fileURLToPath(new URL('./sidecar-main.js', import.meta.url));

/**
 * How to start the proxy for these arguments: as root (and not already the launched proxy, and a
 * proxy uid other than 0), the transparent-socket launcher running the lean entry as the proxy uid;
 * else the lean entry itself. Checks first what would make the proxy fail after the drop (a capture
 * loop, unreadable files) and fails with the reason.
 */
export function launchPlan(o: SidecarOptions, args: string[], fail: Fail): { launcher: boolean; argv: string[] } {
  const proxy = [process.execPath, ...proxyNodeFlags(), SIDECAR_ENTRY, 'sidecar', ...args];
  const root = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!root || process.env[TRANSPARENT_FDS_ENV] !== undefined || o.proxyUid === 0) return { launcher: false, argv: proxy };
  const loop = captureLoopProblem(o.proxyUid);
  if (loop !== null) fail(`sidecar: ${loop}`);
  for (const [flag, file] of [['--root-cert', o.rootCertFile], ['--token-file', o.tokenFile], ['--view-file', o.viewFile]] as const) {
    if (file === null) continue;
    const why = unreadableBy(file, o.proxyUid, o.proxyGid);
    if (why !== null) fail(`sidecar: ${flag} ${file}: the proxy runs as uid ${o.proxyUid} gid ${o.proxyGid} after binding its listeners and could not read it (${why})`);
  }
  const listeners = captureListeners(o);
  return { launcher: true, argv: transparentLauncherArgv({ listeners: [...listeners.outbound, ...listeners.inbound], uid: o.proxyUid, gid: o.proxyGid, command: proxy }) };
}

/** The proxy's node flags: the ones this process was started with (an operator's `--max-old-space-size`, a `--import`). */
function proxyNodeFlags(): string[] {
  return process.execArgv;
}

/**
 * Why `uid`/`gid` (and no supplementary group: the launcher sets only `gid`) cannot read `file`, or
 * null: read permission on the file and search permission on every directory above it, by the
 * owner, group or other bits that apply. Root's own access is checked too (a missing file).
 */
export function unreadableBy(file: string, uid: number, gid: number): string | null {
  try {
    accessSync(file, fsConstants.R_OK);
  } catch (e) {
    return (e as Error).message;
  }
  const allowed = (p: string, bit: number): boolean => {
    const st = statSync(p);
    const cls = st.uid === uid ? 6 : st.gid === gid ? 3 : 0;
    return ((st.mode >> cls) & bit) !== 0;
  };
  const abs = path.resolve(file);
  // The directories of the path as given and of the file it resolves to (Kubernetes mounts Secret,
  // ConfigMap and projected files as symlinks into a `..data` directory).
  for (const p of new Set([abs, realpathSync(abs)])) {
    for (let dir = path.dirname(p); ; dir = path.dirname(dir)) {
      if (!allowed(dir, 1)) return `no search permission on ${dir}`;
      if (dir === path.dirname(dir)) break;
    }
  }
  if (!allowed(abs, 4)) {
    const st = statSync(abs);
    return `mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}, owner ${st.uid}:${st.gid}`;
  }
  return null;
}

/** Shell words (POSIX single quotes), for the meshgate command to `eval exec` the plan. */
export function shellQuote(argv: string[]): string {
  return argv.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
}

/** Started by node as root: the launcher makes the transparent sockets, drops to the proxy uid and runs the proxy; this process waits. */
async function relaunch(argv: string[], log: Logger): Promise<number> {
  const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit', env: { ...process.env, MESHGATE_SIDECAR_PARENT: String(process.pid) } });
  log.debug('launched the proxy process', { pid: child.pid });
  const forward = (sig: NodeJS.Signals) => () => child.kill(sig);
  const onTerm = forward('SIGTERM');
  const onInt = forward('SIGINT');
  process.on('SIGTERM', onTerm);
  process.on('SIGINT', onInt);
  const code = await new Promise<number>((resolve) => {
    child.once('exit', (c, sig) => resolve(c ?? (sig === 'SIGTERM' || sig === 'SIGINT' ? 0 : 1)));
    child.once('error', (e) => {
      log.error('cannot start the transparent-socket launcher (perl)', { error: e.message });
      resolve(1);
    });
  });
  process.off('SIGTERM', onTerm);
  process.off('SIGINT', onInt);
  return code;
}

async function serve(o: SidecarOptions, listeners: { outbound: string[]; inbound: string[] }, log: Logger, waitForSignal: () => Promise<void>): Promise<number> {
  // The signal handlers first: a SIGTERM while the proxy starts (the pod deleted at once) is a
  // graceful stop once started, never the default action (killed, exit by signal).
  const signalled = waitForSignal();
  // The DNS proxy's metrics join /stats/prometheus once it exists.
  let dnsMetrics = (): string => '';
  const { SidecarRuntime } = await import('../runtime/sidecar/sidecar.js');
  const rt = new SidecarRuntime({
    log,
    observability: { metrics: true, accessLog: o.accessLog, tracing: null },
    outboundListen: listeners.outbound,
    inboundListen: listeners.inbound,
    healthPort: o.healthPort,
    statusPort: o.statusPort,
    ipv6: o.podIps.some((ip) => net.isIPv6(ip)),
    podIps: o.podIps,
    needsIdentity: o.control !== null,
    detectionTimeoutMs: o.detectionTimeoutMs,
    drainMs: o.drainMs,
    clusterId: o.clusterId,
    extraMetrics: () => dnsMetrics(),
  });
  try {
    await rt.start();
  } catch (e) {
    log.error('cannot listen', { error: (e as Error).message });
    await rt.close(0);
    return 1;
  }
  log.info('sidecar listening', { uid: process.getuid?.(), outbound: rt.bound.outbound, inbound: rt.bound.inbound, health: rt.bound.health, status: rt.bound.status });
  const stops: (() => Promise<void> | void)[] = [];
  // Memory back once the view and the certificate settle (start-up, a push, a renewal): parsing and
  // compiling a view leaves garbage and a grown young generation that V8 would keep committed while
  // the proxy idles. lib/heap.ts: one memory-reducing collection 2 s after the last change, while the
  // live heap is small (a sidecar's is: a few MiB), else plain full collections; never per request.
  const settled = () => compactHeapSoon(2000, 'small-heap');
  // And after a burst of traffic, once the proxy is idle again (runtime/sidecar/idle-memory.ts):
  // plain full collections. The memory-reducing one also drops compiled code, and the next burst
  // then cost 10-40 % more CPU until it was compiled again (bench:sidecar, round 2 after an idle
  // period, 7 of 7 runs; plain collections: +5 % on average, 3 runs); they keep 1-5 MiB more after a
  // burst (65-69 MiB 3 s after 500 req/s, docs/benchmarks.md). Even plain ones let V8 drop optimized
  // code, so they wait for 60 s of quiet: pauses between bursts keep their compiled code.
  const { compactAfterTraffic } = await import('../runtime/sidecar/idle-memory.js');
  stops.push(compactAfterTraffic({ compact: () => compactHeapSoon(0, 'never') }));
  // The workload certificate now: also the config push's client certificate (an alternative to the token).
  let workloadCert: { certChainPem: string; keyPem: string } | null = null;
  // Identity first (in the background: readiness says 503 meanwhile).
  if (o.control !== null) {
    const { IdentityClient } = await import('../mesh/identity/client.js');
    const identity = new IdentityClient({
      address: o.control,
      rootCertPem: readFileSync(o.rootCertFile!, 'utf8'),
      tokenFile: o.tokenFile!,
      namespace: o.namespace,
      serviceAccount: o.serviceAccount,
      trustDomain: o.trustDomain,
      ttlSeconds: o.ttlSeconds,
      log: log.child({ component: 'mesh-identity' }),
      onCertificate: (m) => {
        workloadCert = m;
        rt.setIdentity(m);
        settled();
      },
    });
    stops.push(() => identity.stop());
    identity.start(365 * 86_400_000).catch((e: unknown) => log.error('no workload certificate', { error: (e as Error).message }));
  }
  // DNS proxying: with --dns-capture now, else when a view turns it on.
  const { startSidecarDns } = await import('./sidecar-dns.js');
  const dns = await startSidecarDns({ ...o.dns, namespace: o.namespace, ipv6: o.podIps.some((ip) => net.isIPv6(ip)), log: log.child({ component: 'dns-proxy' }) }).catch((e: Error) => {
    log.error('cannot start the DNS proxy', { port: o.dns.port, error: e.message });
    return null;
  });
  if (o.dns.always && dns === null) {
    for (const stop of stops) await stop();
    await rt.close(0);
    return 1;
  }
  if (dns !== null) {
    stops.push(() => dns.stop());
    dnsMetrics = () => dns.metrics();
  }
  const apply = async (ir: IRSnapshot, from: string): Promise<void> => {
    try {
      await rt.apply(ir);
      await dns?.onView(ir);
      log.info('view applied', { version: ir.version, from });
      settled();
    } catch (e) {
      log.warn('view refused; the last good one keeps serving', { version: ir.version, from, error: (e as Error).message });
      throw e;
    }
  };
  if (o.viewFile !== null) {
    const file = o.viewFile;
    let last = '';
    const load = async (): Promise<void> => {
      let text: string;
      try {
        text = readFileSync(file, 'utf8');
      } catch (e) {
        return log.warn('cannot read the view file', { file, error: (e as Error).message });
      }
      if (text === last) return;
      last = text;
      let ir: IRSnapshot;
      try {
        ir = JSON.parse(text) as IRSnapshot;
      } catch (e) {
        return log.warn('the view file is not JSON', { file, error: (e as Error).message });
      }
      const problems = validateIR(ir);
      if (problems.length > 0) return log.warn('the view file is not a valid snapshot; the last good view keeps serving', { file, problems: problems.slice(0, 10) });
      await apply(ir, file).catch(() => undefined);
    };
    await load();
    // Stat polling sees in-place writes and replacement by rename alike.
    watchFile(file, { interval: 200 }, () => void load());
    stops.push(() => unwatchFile(file));
  } else if (o.control !== null) {
    stops.push(await startConfigPush(o, (ir) => apply(ir, 'control plane'), log, () => workloadCert));
  }
  // Started by the root launcher parent: when that parent is gone, so is this process.
  const parent = Number(process.env.MESHGATE_SIDECAR_PARENT ?? 0);
  let parentGone: (() => void) | null = null;
  const orphaned = new Promise<void>((resolve) => (parentGone = resolve));
  const watch = parent > 0 ? setInterval(() => process.ppid !== parent && parentGone!(), 1000) : null;
  watch?.unref();
  await Promise.race([signalled, orphaned]);
  if (watch !== null) clearInterval(watch);
  log.info('draining');
  for (const stop of stops) await stop();
  await rt.close(o.drainMs);
  return 0;
}

/**
 * The config push client (sc-push's `src/mesh/push/client.ts`), loaded by URL so this file builds
 * with or without it. Without it, `--control` alone gives a certificate but no view: say so.
 */
async function startConfigPush(o: SidecarOptions, apply: (ir: IRSnapshot) => Promise<void>, log: Logger, clientCertificate: () => { certChainPem: string; keyPem: string } | null): Promise<() => Promise<void>> {
  let mod: { ConfigPushClient?: new (opts: unknown) => { start(): void; stop(): Promise<void> } };
  try {
    mod = (await import(new URL('../mesh/push/client.js', import.meta.url).href)) as typeof mod;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
    mod = {};
  }
  if (typeof mod.ConfigPushClient !== 'function') {
    log.error('this build has no config push client (src/mesh/push): no view will arrive; use --view-file FILE');
    return async () => undefined;
  }
  const client = new mod.ConfigPushClient({
    address: o.control!,
    rootCertPem: readFileSync(o.rootCertFile!, 'utf8'),
    tokenFile: o.tokenFile!,
    proxy: { namespace: o.namespace, serviceAccount: o.serviceAccount, podName: o.podName, podIps: o.podIps, trustDomain: o.trustDomain },
    log: log.child({ component: 'config-push' }),
    apply,
    clientCertificate,
  });
  client.start();
  return () => client.stop();
}
