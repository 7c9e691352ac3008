/**
 * The mesh-client flags of `meshgate run` (`--control` and its companions), parsed without loading
 * the CA, jose or the gRPC client: a gateway that is no mesh client pays nothing for them.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseDuration } from '../api/duration.js';
import { checkServiceAccount, MAX_WORKLOAD_CERT_TTL_S, serviceAccountOfUsername } from '../mesh/identity/names.js';
import type { MeshClientOptions } from '../mesh/identity/options.js';

type Fail = (message: string) => never;

/** A Go duration (`24h`, `90m`, `1h30m`) or whole days (`90d`), in whole seconds. */
export function parseTtl(flag: string, value: string, fail: Fail): number {
  const days = /^(\d+)d$/.exec(value);
  const ms = days !== null ? Number(days[1]) * 86_400_000 : parseDuration(value);
  if (ms === null || !(ms >= 1000)) return fail(`--${flag}: "${value}" is not a duration of at least 1s (e.g. 24h, 90m, 30d)`);
  return Math.floor(ms / 1000);
}

const TRUST_DOMAIN_RE = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/;

export function trustDomain(value: string | undefined, fail: Fail): string {
  const td = value ?? 'cluster.local';
  if (!TRUST_DOMAIN_RE.test(td)) return fail(`--trust-domain: "${td}" is not a valid trust domain (lowercase letters, digits, '-', '.')`);
  return td;
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


/** istiod's certificate and discovery address, as Istio's gateways and sidecars reach it by default. */
export const ISTIOD_ADDRESS = 'istiod.istio-system.svc:15012';

/**
 * The mesh-client flags of `run`, or null when the gateway is no mesh client. `namespace` is
 * `run`'s own `--namespace`. With `--kubernetes` and no `--control`, a pod that has Istio's mounts
 * (the mesh root from ConfigMap istio-ca-root-cert and the istio-ca token, `mounts`) is a mesh client
 * of istiod's Service, `$CA_ADDR` when set (as istio-agent), as Istio's gateways are;
 * `--control none` turns that off.
 */
export function parseMeshClientOptions(v: Record<string, unknown>, fail: Fail, mounts: { rootCert: string; token: string } = { rootCert: ISTIO_ROOT_CERT_FILE, token: ISTIO_TOKEN_FILE }): MeshClientOptions | null {
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  let control = s('control');
  if (control === 'none') control = undefined;
  else if (control === undefined && v.kubernetes === true && existsSync(mounts.rootCert) && existsSync(mounts.token)) control = process.env.CA_ADDR || ISTIOD_ADDRESS;
  if (control === undefined) {
    for (const k of ['root-cert', 'token-file', 'service-account', 'trust-domain', 'workload-cert-ttl']) if (s(k) !== undefined) fail(`--${k} needs --control HOST:PORT`);
    return null;
  }
  if (!/^(?:\[[0-9a-fA-F:.]+\]|[^:\s/]+):\d{1,5}$/.test(control)) fail(`--control: "${control}" is not HOST:PORT (e.g. istiod.istio-system.svc:15012)`);
  // Istio's pod defaults (istio-agent): the trust bundle from ConfigMap istio-ca-root-cert and the
  // projected token with audience istio-ca, at their usual mount paths.
  const rootCert = s('root-cert') ?? mounts.rootCert;
  const tokenFile = s('token-file') ?? mounts.token;
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
