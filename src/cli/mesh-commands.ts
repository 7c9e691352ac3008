/**
 * The mesh commands:
 *
 *   meshgate control (--config DIR --ca-dir DIR | --kubernetes [--kubeconfig PATH] [--watch-namespace NS]... [--ca-dir DIR])
 *                    [--listen 0.0.0.0:15012] [--trust-domain cluster.local] [--admin-port 15014] [--cert-ttl 24h] [--log-level info]
 *                    [--webhook-port 15017] [--webhook-config meshgate-sidecar-injector] [--inject-image IMAGE] [--inject-control HOST:PORT]
 *                    [--mesh-graph-interval 10s] [--mesh-graph-window 1m] [--mesh-graph-port 15020]
 *                    [--token-audiences istio-ca]
 *   meshgate token --ca-dir DIR --namespace NS --service-account SA [--ttl 1h] [--trust-domain cluster.local]
 *
 * `token` prints the token alone on stdout; it creates the self-signed root exactly as `control`
 * would when the directory holds no CA, so either may run first.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseTtl, trustDomain } from './mesh-client-options.js';
import { parseDuration } from '../api/duration.js';
import { Logger, type LogLevel } from '../lib/log.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../translate/index.js';
import { loadOrCreateCaDirectory, MAX_WORKLOAD_CERT_TTL_S } from '../mesh/ca/ca.js';
import { checkServiceAccount, issueToken, serviceAccountOfUsername } from '../mesh/ca/token.js';
import { existsSync, readFileSync } from 'node:fs';
import type { ControlPlaneOptions } from '../control/control-plane.js';
import { DEFAULT_INJECT_OPTIONS, type InjectOptions } from '../mesh/inject/inject.js';

import { INJECTOR_WEBHOOK_CONFIG, startInjectionWebhook } from '../mesh/inject/webhook.js';

type Fail = (message: string) => never;

function parse<T extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], options: T, fail: Fail) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return fail((e as Error).message.split('\n')[0]);
  }
}



export interface ControlCommandOptions extends ControlPlaneOptions {
  logLevel: LogLevel;
  /** `--kubernetes [--kubeconfig PATH] [--watch-namespace NS]...`; null in directory mode. */
  kubernetesFlags: { kubeconfig: string | null; watchNamespaces: string[] | null } | null;
  /**
   * The sidecar injection webhook (mesh/inject/webhook.ts): port (default 15017 with --kubernetes,
   * off in directory mode unless given; 0 = off), the MutatingWebhookConfiguration whose caBundle
   * control keeps, and what injected pods run.
   */
  webhook: { port: number; config: string; inject: InjectOptions } | null;
}

export function parseControlOptions(args: string[], fail: Fail): ControlCommandOptions {
  let v: Record<string, string | boolean | string[] | undefined>;
  try {
    v = parseArgs({ args, options: { config: { type: 'string' }, 'ca-dir': { type: 'string' }, listen: { type: 'string' }, 'trust-domain': { type: 'string' }, 'admin-port': { type: 'string' }, 'cert-ttl': { type: 'string' }, 'log-level': { type: 'string' }, kubernetes: { type: 'boolean' }, kubeconfig: { type: 'string' }, 'watch-namespace': { type: 'string', multiple: true }, 'webhook-port': { type: 'string' }, 'webhook-config': { type: 'string' }, 'inject-image': { type: 'string' }, 'inject-control': { type: 'string' }, 'mesh-graph-interval': { type: 'string' }, 'mesh-graph-window': { type: 'string' }, 'mesh-graph-port': { type: 'string' }, 'token-audiences': { type: 'string' } }, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return fail((e as Error).message.split('\n')[0]);
  }
  const k8s = v.kubernetes === true;
  if (!k8s && (v.kubeconfig !== undefined || v['watch-namespace'] !== undefined)) fail('--kubeconfig and --watch-namespace need --kubernetes');
  if (k8s === (v.config !== undefined)) fail('control: exactly one of --config DIR and --kubernetes is required');
  // With --kubernetes the CA comes from the cacerts / istio-ca-secret Secrets unless --ca-dir is given.
  if (!k8s && !v['ca-dir']) fail('control: --ca-dir DIR is required (or --kubernetes)');
  const listen = (v.listen as string | undefined) ?? '0.0.0.0:15012';
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(listen);
  if (m === null || Number(m[3]) > 65535) fail(`--listen: "${listen}" is not HOST:PORT (e.g. 0.0.0.0:15012)`);
  const adminPort = (v['admin-port'] as string | undefined) ?? '15014';
  if (!/^\d+$/.test(adminPort) || Number(adminPort) > 65535) fail(`--admin-port: "${adminPort}" is not a port number (0-65535)`);
  const certTtl = parseTtl('cert-ttl', (v['cert-ttl'] as string | undefined) ?? '24h', fail);
  if (certTtl > MAX_WORKLOAD_CERT_TTL_S) fail(`--cert-ttl: ${String(v['cert-ttl'])} is longer than the maximum workload certificate TTL (90d)`);
  const level = (v['log-level'] as string | undefined) ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) fail(`--log-level: "${level}" is not one of debug, info, warn, error`);
  const webhookPort = (v['webhook-port'] as string | undefined) ?? (k8s ? '15017' : '0');
  if (!/^\d+$/.test(webhookPort) || Number(webhookPort) > 65535) fail(`--webhook-port: "${webhookPort}" is not a port number (0-65535; 0 = no injection webhook)`);
  const injectControl = (v['inject-control'] as string | undefined) ?? DEFAULT_INJECT_OPTIONS.control;
  if (!/^(?:[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):\d{1,5}$/.test(injectControl)) fail(`--inject-control: "${injectControl}" is not HOST:PORT`);
  const webhook = Number(webhookPort) === 0 ? null : { port: Number(webhookPort), config: (v['webhook-config'] as string | undefined) ?? INJECTOR_WEBHOOK_CONFIG, inject: { ...DEFAULT_INJECT_OPTIONS, image: (v['inject-image'] as string | undefined) ?? DEFAULT_INJECT_OPTIONS.image, control: injectControl } };
  const meshGraph = parseMeshGraphFlags(v, fail);
  const tokenAudiences = parseTokenAudiences(v['token-audiences'] as string | undefined, fail);
  return {
    tokenAudiences,
    webhook,
    meshGraph,
    configDir: k8s ? '' : path.resolve(v.config as string),
    caDir: typeof v['ca-dir'] === 'string' ? path.resolve(v['ca-dir']) : '',
    kubernetesFlags: k8s ? { kubeconfig: (v.kubeconfig as string | undefined) ?? null, watchNamespaces: (v['watch-namespace'] as string[] | undefined) ?? null } : null,
    listenHost: m![1] ?? m![2],
    listenPort: Number(m![3]),
    trustDomain: trustDomain(v['trust-domain'] as string | undefined, fail),
    adminPort: Number(adminPort),
    certTtlSeconds: certTtl,
    translate: { ...DEFAULT_TRANSLATE_OPTIONS },
    log: new Logger(level as LogLevel, { component: 'meshgate-control' }),
    logLevel: level as LogLevel,
  };
}

/**
 * `--token-audiences a,b` (istiod's TOKEN_AUDIENCES, read when the flag is absent): the audiences a
 * caller's token must be for; default `istio-ca`.
 */
export function parseTokenAudiences(flag: string | undefined, fail: Fail, env: NodeJS.ProcessEnv = process.env): string[] {
  const raw = flag ?? env.TOKEN_AUDIENCES ?? 'istio-ca';
  const from = flag !== undefined ? '--token-audiences' : env.TOKEN_AUDIENCES !== undefined ? 'TOKEN_AUDIENCES' : 'default';
  const list = raw.split(',').map((a) => a.trim());
  if (list.some((a) => a === '')) fail(`${from}: "${raw}" is not a comma-separated list of audiences (an empty entry)`);
  return [...new Set(list)];
}

/**
 * `--mesh-graph-interval 10s` (0 = no mesh graph), `--mesh-graph-window 1m` (at least one
 * interval), `--mesh-graph-port 15020` (the sidecars' metrics port): the dashboard's Mesh view.
 */
function parseMeshGraphFlags(v: Record<string, string | boolean | string[] | undefined>, fail: Fail): ControlPlaneOptions['meshGraph'] {
  const interval = parseDuration((v['mesh-graph-interval'] as string | undefined) ?? '10s');
  if (interval === null || interval < 0) fail(`--mesh-graph-interval: "${String(v['mesh-graph-interval'])}" is not a duration like 10s (0 = no mesh graph)`);
  if (interval === 0) return null;
  if (interval < 100) fail(`--mesh-graph-interval: ${String(v['mesh-graph-interval'])} is shorter than 100ms`);
  const window = parseDuration((v['mesh-graph-window'] as string | undefined) ?? '1m');
  if (window === null || window <= 0) fail(`--mesh-graph-window: "${String(v['mesh-graph-window'])}" is not a duration like 1m`);
  if (window < interval) fail(`--mesh-graph-window: ${String(v['mesh-graph-window'] ?? '1m')} is shorter than --mesh-graph-interval (a rate needs two scrapes in the window)`);
  const port = (v['mesh-graph-port'] as string | undefined) ?? '15020';
  if (!/^\d+$/.test(port) || Number(port) < 1 || Number(port) > 65535) fail(`--mesh-graph-port: "${port}" is not a port number (1-65535)`);
  return { intervalMs: interval, windowMs: window, port: Number(port) };
}

export async function tokenCommand(args: string[], fail: Fail): Promise<number> {
  const v = parse(args, { 'ca-dir': { type: 'string' }, namespace: { type: 'string' }, 'service-account': { type: 'string' }, ttl: { type: 'string' }, 'trust-domain': { type: 'string' } }, fail);
  if (!v['ca-dir']) fail('token: --ca-dir DIR is required');
  if (!v.namespace) fail('token: --namespace NS is required');
  if (!v['service-account']) fail('token: --service-account SA is required');
  const sa = { namespace: v.namespace!, serviceAccount: v['service-account']! };
  const bad = checkServiceAccount(sa);
  if (bad !== null) fail(`token: ${bad}`);
  const ttl = parseTtl('ttl', v.ttl ?? '1h', fail);
  const material = await loadOrCreateCaDirectory(path.resolve(v['ca-dir']!), { trustDomain: trustDomain(v['trust-domain'], fail) });
  process.stdout.write(`${await issueToken(material.signingKey, sa, ttl)}\n`);
  return 0;
}

export async function controlCommand(args: string[], fail: Fail, waitForSignal: () => Promise<void>): Promise<number> {
  const opts = parseControlOptions(args, fail);
  const { startControlPlane, ISTIOD_SAN } = await import('../control/control-plane.js');
  // The Kubernetes client is loaded only with --kubernetes.
  const kubernetes = opts.kubernetesFlags === null ? null : { client: (await import('../providers/kubernetes/api-client.js')).ApiClient.load(opts.kubernetesFlags.kubeconfig), watchNamespaces: opts.kubernetesFlags.watchNamespaces };
  // Each sidecar's view (config push): the real per-proxy translation, loaded with the control plane,
  // computed once per group of proxies that see the same mesh (translate/sidecar/view-cache.ts).
  const { SidecarViewCache } = await import('../translate/sidecar/view-cache.js');
  const views = new SidecarViewCache();
  const cp = await startControlPlane({ ...opts, kubernetes, sidecarTranslate: (resources, proxy, options) => views.translate(resources, proxy, options) });
  let webhook: { close(): Promise<void> } | null = null;
  let caBundle: { stop(): void } | null = null;
  try {
    if (opts.webhook !== null) {
      // DNS capture set mesh-wide (MeshConfig proxyMetadata) gives injected pods `capture --redirect-dns`.
      const { meshDnsCapture } = await import('../translate/sidecar/dns.js');
      const inject = opts.webhook.inject;
      webhook = await startInjectionWebhook({ host: opts.listenHost, port: opts.webhook.port, ca: () => cp.ca, dnsNames: [ISTIOD_SAN], inject: () => { const r = cp.resources(); return r === null ? inject : { ...inject, dnsCapture: meshDnsCapture(r) }; }, log: opts.log.child({ component: 'injection-webhook' }) });
      opts.log.info('sidecar injection webhook started', { port: opts.webhook.port, path: '/inject' });
      if (kubernetes !== null) caBundle = (await import('../control/mesh-kubernetes.js')).keepWebhookCaBundle(kubernetes.client, opts.webhook.config, cp.ca.rootCertPem, opts.log.child({ component: 'injection-webhook' }));
    }
    await waitForSignal();
  } finally {
    caBundle?.stop();
    await webhook?.close();
    await cp.stop();
  }
  return 0;
}

export { ISTIO_ROOT_CERT_FILE, ISTIO_TOKEN_FILE, MESH_CLIENT_FLAGS, parseMeshClientOptions } from './mesh-client-options.js';
export type { MeshClientOptions } from '../mesh/identity/options.js';
