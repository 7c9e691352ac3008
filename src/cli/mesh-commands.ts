/**
 * The mesh commands:
 *
 *   meshgate control (--config DIR --ca-dir DIR | --kubernetes [--kubeconfig PATH] [--watch-namespace NS]... [--ca-dir DIR])
 *                    [--listen 0.0.0.0:15012] [--trust-domain cluster.local] [--admin-port 15014] [--cert-ttl 24h] [--log-level info]
 *   meshgate token --ca-dir DIR --namespace NS --service-account SA [--ttl 1h] [--trust-domain cluster.local]
 *
 * `token` prints the token alone on stdout; it creates the self-signed root exactly as `control`
 * would when the directory holds no CA, so either may run first.
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { parseDuration } from '../api/duration.js';
import { Logger, type LogLevel } from '../lib/log.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../translate/index.js';
import { loadOrCreateCaDirectory, MAX_WORKLOAD_CERT_TTL_S } from '../mesh/ca/ca.js';
import { checkServiceAccount, issueToken, serviceAccountOfUsername } from '../mesh/ca/token.js';
import { existsSync, readFileSync } from 'node:fs';
import type { ControlPlaneOptions } from '../control/control-plane.js';
import type { MeshClientOptions } from '../mesh/identity/start.js';

type Fail = (message: string) => never;

function parse<T extends Record<string, { type: 'string' | 'boolean' }>>(args: string[], options: T, fail: Fail) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return fail((e as Error).message.split('\n')[0]);
  }
}

/** A Go duration (`24h`, `90m`, `1h30m`) or whole days (`90d`), in whole seconds. */
export function parseTtl(flag: string, value: string, fail: Fail): number {
  const days = /^(\d+)d$/.exec(value);
  const ms = days !== null ? Number(days[1]) * 86_400_000 : parseDuration(value);
  if (ms === null || !(ms >= 1000)) return fail(`--${flag}: "${value}" is not a duration of at least 1s (e.g. 24h, 90m, 30d)`);
  return Math.floor(ms / 1000);
}

const TRUST_DOMAIN_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

function trustDomain(value: string | undefined, fail: Fail): string {
  const td = value ?? 'cluster.local';
  if (!TRUST_DOMAIN_RE.test(td)) return fail(`--trust-domain: "${td}" is not a valid trust domain (lowercase letters, digits, '-', '.')`);
  return td;
}

export interface ControlCommandOptions extends ControlPlaneOptions {
  logLevel: LogLevel;
  /** `--kubernetes [--kubeconfig PATH] [--watch-namespace NS]...`; null in directory mode. */
  kubernetesFlags: { kubeconfig: string | null; watchNamespaces: string[] | null } | null;
}

export function parseControlOptions(args: string[], fail: Fail): ControlCommandOptions {
  let v: Record<string, string | boolean | string[] | undefined>;
  try {
    v = parseArgs({ args, options: { config: { type: 'string' }, 'ca-dir': { type: 'string' }, listen: { type: 'string' }, 'trust-domain': { type: 'string' }, 'admin-port': { type: 'string' }, 'cert-ttl': { type: 'string' }, 'log-level': { type: 'string' }, kubernetes: { type: 'boolean' }, kubeconfig: { type: 'string' }, 'watch-namespace': { type: 'string', multiple: true } }, strict: true, allowPositionals: false }).values;
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
  return {
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
  const { startControlPlane } = await import('../control/control-plane.js');
  // The Kubernetes client is loaded only with --kubernetes.
  const kubernetes = opts.kubernetesFlags === null ? null : { client: (await import('../providers/kubernetes/api-client.js')).ApiClient.load(opts.kubernetesFlags.kubeconfig), watchNamespaces: opts.kubernetesFlags.watchNamespaces };
  const cp = await startControlPlane({ ...opts, kubernetes });
  await waitForSignal();
  await cp.stop();
  return 0;
}

/** Where Istio mounts the mesh root (ConfigMap istio-ca-root-cert) and the istio-ca token in a pod. */
export const ISTIO_ROOT_CERT_FILE = '/var/run/secrets/istio/root-cert.pem';
export const ISTIO_TOKEN_FILE = '/var/run/secrets/tokens/istio-token';

/** The service account a JWT's `sub` names (read, not verified: the CA verifies the token). */
function subjectOfToken(token: string): { namespace: string; serviceAccount: string } | null {
  try {
    const payload = JSON.parse(Buffer.from(token.trim().split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown };
    return typeof payload.sub === 'string' ? serviceAccountOfUsername(payload.sub) : null;
  } catch {
    return null;
  }
}

/** `meshgate run` as a mesh client of `meshgate control` (Istio mTLS to meshed workloads). */
export const MESH_CLIENT_FLAGS = {
  control: { type: 'string' },
  'root-cert': { type: 'string' },
  'token-file': { type: 'string' },
  'service-account': { type: 'string' },
  'trust-domain': { type: 'string' },
  'workload-cert-ttl': { type: 'string' },
} as const;

export type { MeshClientOptions } from '../mesh/identity/start.js';

/** The mesh-client flags of `run`, or null without `--control`. `namespace` is `run`'s own `--namespace`. */
export function parseMeshClientOptions(v: Record<string, unknown>, fail: Fail): MeshClientOptions | null {
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const control = s('control');
  if (control === undefined) {
    for (const k of ['root-cert', 'token-file', 'service-account', 'trust-domain', 'workload-cert-ttl']) if (s(k) !== undefined) fail(`--${k} needs --control HOST:PORT`);
    return null;
  }
  if (!/^(?:\[[0-9a-fA-F:.]+\]|[^:\s/]+):\d{1,5}$/.test(control)) fail(`--control: "${control}" is not HOST:PORT (e.g. istiod.istio-system.svc:15012)`);
  // Istio's pod defaults (istio-agent): the trust bundle from ConfigMap istio-ca-root-cert and the
  // projected token with audience istio-ca, at their usual mount paths.
  const rootCert = s('root-cert') ?? ISTIO_ROOT_CERT_FILE;
  const tokenFile = s('token-file') ?? ISTIO_TOKEN_FILE;
  if (!existsSync(rootCert)) fail(`--control: the mesh root ${rootCert} does not exist (--root-cert FILE)`);
  if (!existsSync(tokenFile)) fail(`--control: the token ${tokenFile} does not exist (--token-file FILE)`);
  // Namespace and service account default to the token's subject (system:serviceaccount:<ns>:<sa>).
  const fromToken = subjectOfToken(readFileSync(tokenFile, 'utf8'));
  const namespace = s('namespace') ?? fromToken?.namespace;
  const serviceAccount = s('service-account') ?? fromToken?.serviceAccount;
  if (!namespace || !serviceAccount) fail('--control needs --namespace NS and --service-account SA (the gateway\'s identity) when the token does not name them');
  const bad = checkServiceAccount({ namespace: namespace!, serviceAccount: serviceAccount! });
  if (bad !== null) fail(`--control: ${bad}`);
  const ttl = parseTtl('workload-cert-ttl', s('workload-cert-ttl') ?? '24h', fail);
  if (ttl > MAX_WORKLOAD_CERT_TTL_S) fail('--workload-cert-ttl: longer than 90d');
  return { address: control, rootCertFile: path.resolve(rootCert), tokenFile: path.resolve(tokenFile), namespace: namespace!, serviceAccount: serviceAccount!, trustDomain: trustDomain(s('trust-domain'), fail), ttlSeconds: ttl };
}
