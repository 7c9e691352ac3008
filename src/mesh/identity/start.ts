/**
 * Wires `meshgate run --control ...`: the identity client feeds every certificate (first and
 * renewals) to the data plane, which hands it to its runtimes (workers over IPC).
 */
import { readFileSync } from 'node:fs';
import type { Logger } from '../../lib/log.js';
import type { MeshIdentityMaterial } from '../../runtime/upstream/mesh-identity.js';
import { IdentityClient } from './client.js';

/** `meshgate run --control ...` (parsed by cli/mesh-commands.ts). */
export interface MeshClientOptions {
  /** `--control HOST:PORT`. */
  address: string;
  rootCertFile: string;
  tokenFile: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  /** Requested certificate lifetime, s (`--workload-cert-ttl`, default 24h like istio-agent's SECRET_TTL). */
  ttlSeconds: number;
}

/** Where certificates go: the data plane (control/dataplane.ts), which hands them to its runtimes. */
export interface IdentitySink {
  setMeshIdentity?(identity: MeshIdentityMaterial | null): void;
}

export async function startMeshIdentity(opts: MeshClientOptions, dataPlane: IdentitySink, log: Logger): Promise<IdentityClient> {
  const client = new IdentityClient({
    address: opts.address,
    rootCertPem: readFileSync(opts.rootCertFile, 'utf8'),
    tokenFile: opts.tokenFile,
    namespace: opts.namespace,
    serviceAccount: opts.serviceAccount,
    trustDomain: opts.trustDomain,
    ttlSeconds: opts.ttlSeconds,
    log: log.child({ component: 'mesh-identity' }),
    onCertificate: (m) => dataPlane.setMeshIdentity?.(m),
  });
  try {
    await client.start(60_000);
  } catch (e) {
    // Serve anyway: Istio mTLS routes answer 503 UF (MG_MESH_NO_IDENTITY) until a certificate arrives.
    log.error('no workload certificate from the control plane; serving without one and retrying', { control: opts.address, error: (e as Error).message });
    client.keepTrying();
  }
  return client;
}
