/**
 * The workload side of the CSR flow (istio-agent's citadel client, reference/mesh.md §1.3): makes
 * its own key and a CSR for its SPIFFE ID, calls `CreateCertificate` on the control plane with its
 * bearer token, and renews at half the certificate's life (± 1 % jitter, Istio's
 * SECRET_GRACE_PERIOD_RATIO), never later than 90 %. A failed renewal is retried with backoff
 * while the current certificate is still valid.
 *
 * The control plane is verified by the mesh root and the name `istiod.istio-system.svc` whatever
 * address is dialled (gRPC `ssl_target_name_override`), as sidecars given an IP do.
 */
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Logger } from '../../lib/log.js';
import { chainsTo, splitPemCertificates } from '../ca/chain.js';
import { spiffeId } from './names.js';
import { workloadCsrPem } from './csr.js';
import { GrpcH2Client } from '../grpc/h2-unary.js';
import { CREATE_CERTIFICATE_PATH, decodeCertificateResponse, encodeCertificateRequest } from '../grpc/istioca-wire.js';
import type { MeshIdentityMaterial } from '../../runtime/upstream/mesh-identity.js';

export const ISTIOD_NAME = 'istiod.istio-system.svc';

export interface IdentityClientOptions {
  /** `HOST:PORT` of the control plane (e.g. `istiod.istio-system.svc:15012`, or an IP). */
  address: string;
  /** PEM of the mesh root(s): the trust anchor for the control plane and the peers. */
  rootCertPem: string;
  /** Where the bearer token is read before each request (projected tokens rotate). */
  tokenFile: string;
  namespace: string;
  serviceAccount: string;
  trustDomain: string;
  /** Requested lifetime in seconds; 0 = the control plane's default. */
  ttlSeconds: number;
  log: Logger;
  /** Called with each new certificate (the first and every renewal). */
  onCertificate: (m: MeshIdentityMaterial) => void;
  /** Renewal point as a fraction of the life (default 0.5, jittered by up to +1 %; at most 0.9). */
  renewRatio?: number;
  /** Deadline of one CreateCertificate call, ms (default 10 000). */
  callTimeoutMs?: number;
}

/** When, in ms from `receivedAt`, a certificate valid until `notAfter` is renewed. */
export function renewalDelayMs(receivedAt: number, notAfter: number, ratio = 0.5, jitter = Math.random() * 0.01): number {
  const life = Math.max(0, notAfter - receivedAt);
  const r = Math.min(0.9, ratio + jitter);
  return Math.floor(life * r);
}

export class IdentityClient {
  readonly #opts: IdentityClientOptions;
  readonly #client: GrpcH2Client;
  #timer: NodeJS.Timeout | null = null;
  #current: MeshIdentityMaterial | null = null;
  #stopped = false;
  /** Renewals done (tests, logs). */
  renewals = 0;

  constructor(opts: IdentityClientOptions) {
    this.#opts = opts;
    // gRPC over node:http2 (grpc/h2-unary.ts), not grpc-js: the proxy process keeps what it loads.
    this.#client = new GrpcH2Client({ address: opts.address, rootCertPem: opts.rootCertPem, servername: ISTIOD_NAME });
  }

  get spiffeId(): string {
    return spiffeId(this.#opts.trustDomain, { namespace: this.#opts.namespace, serviceAccount: this.#opts.serviceAccount });
  }

  get current(): MeshIdentityMaterial | null {
    return this.#current;
  }

  /** Gets the first certificate (retrying up to `deadlineMs`), then keeps renewing it. */
  async start(deadlineMs = 60_000): Promise<MeshIdentityMaterial> {
    const until = Date.now() + deadlineMs;
    let backoff = 500;
    for (;;) {
      try {
        const m = await this.fetch();
        this.#install(m);
        return m;
      } catch (e) {
        if (this.#stopped || Date.now() + backoff > until) throw e;
        this.#opts.log.warn('workload certificate request failed; retrying', { error: (e as Error).message, retryInMs: backoff });
        await new Promise((r) => setTimeout(r, backoff));
        backoff = Math.min(backoff * 2, 10_000);
      }
    }
  }

  /** After a failed `start`: keep asking in the background; the first success installs the certificate. */
  keepTrying(): void {
    this.#schedule(5_000);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#client.close();
  }

  #install(m: MeshIdentityMaterial): void {
    this.#current = m;
    this.#opts.onCertificate(m);
    const delay = renewalDelayMs(Date.now(), m.notAfter, this.#opts.renewRatio ?? 0.5);
    this.#opts.log.info('workload certificate installed', { spiffeId: m.spiffeId, notAfter: new Date(m.notAfter).toISOString(), renewInMs: delay });
    this.#schedule(delay);
  }

  #schedule(delay: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => void this.#renew(), delay);
    this.#timer.unref();
  }

  async #renew(): Promise<void> {
    try {
      const m = await this.fetch();
      this.renewals++;
      this.#install(m);
    } catch (e) {
      // While a certificate is valid, retry often enough to renew it in time; without one, every 5 s.
      const left = this.#current === null ? 50_000 : this.#current.notAfter - Date.now();
      const retry = Math.max(200, Math.min(10_000, Math.floor(left / 10)));
      this.#opts.log.warn('workload certificate renewal failed; retrying', { error: (e as Error).message, validForMs: left, retryInMs: retry });
      this.#schedule(retry);
    }
  }

  /** One CreateCertificate round: new key, CSR, call, checks. */
  async fetch(): Promise<MeshIdentityMaterial> {
    const token = readFileSync(this.#opts.tokenFile, 'utf8').trim();
    const id = this.spiffeId;
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const csr = workloadCsrPem(privateKey, id);
    const res = decodeCertificateResponse(await this.#client.unary(CREATE_CERTIFICATE_PATH, encodeCertificateRequest(csr, this.#opts.ttlSeconds), { authorization: `Bearer ${token}` }, this.#opts.callTimeoutMs ?? 10_000));
    const chain = res.cert_chain ?? [];
    if (chain.length < 2) throw new Error(`CreateCertificate returned ${chain.length} certificates (want leaf ... root)`);
    const certs = chain.flatMap((p) => splitPemCertificates(p));
    const leaf = new X509Certificate(certs[0]);
    if (!leaf.checkPrivateKey(privateKey)) throw new Error('the issued certificate is not for the requested key');
    const roots = splitPemCertificates(this.#opts.rootCertPem).map((p) => new X509Certificate(p));
    if (!chainsTo(leaf, certs.slice(1).map((p) => new X509Certificate(p)), roots)) throw new Error('the issued certificate does not chain to the mesh root');
    // Leaf and intermediates are sent to peers; the root (last element) is not.
    const rootFingerprints = new Set(roots.map((r) => r.fingerprint256));
    const intermediates = certs.slice(1).filter((p) => !rootFingerprints.has(new X509Certificate(p).fingerprint256));
    return { spiffeId: id, certChainPem: [certs[0], ...intermediates].join(''), keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, rootsPem: this.#opts.rootCertPem, notAfter: new Date(leaf.validTo).getTime() };
  }
}
