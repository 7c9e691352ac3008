/**
 * The mesh CA (istiod's role): loads Istio's CA material, signs workload CSRs with SPIFFE identities
 * taken from the authenticated caller, and issues the control plane's own serving certificate.
 *
 * Material (reference/mesh.md §1.2, Istio security/pkg/pki/ca):
 * - plug-in CA: `ca-cert.pem` (the signing certificate, must be a CA), `ca-key.pem`, `root-cert.pem`
 *   and `cert-chain.pem` (signing certificate up to the root). Takes precedence.
 * - self-signed: `root-cert.pem` + `ca-key.pem`; created on first start when the directory holds no
 *   CA (ECDSA P-256, 10 years, Organisation = trust domain) and reused afterwards. Creation is atomic
 *   across processes (`meshgate control` and `meshgate token` may start together): the key is linked
 *   into place with O_EXCL semantics, the loser waits for the winner's certificate.
 *
 * Leaf profile (Istio's): empty subject, critical URI SAN, KeyUsage digitalSignature+keyEncipherment,
 * EKU serverAuth+clientAuth, CA:false, random serial, NotBefore = now - 2 min, NotAfter = now + TTL
 * clamped to the signer's NotAfter. Only the CSR's signature and public key are used.
 */
import { X509Certificate, createPrivateKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { privateKeyPem, signatureParams, splitPemCertificates, toCryptoPrivateKey, x509 } from './keys.js';

/** Istio MAX_WORKLOAD_CERT_TTL: a longer request is an error, never clamped. */
import { MAX_WORKLOAD_CERT_TTL_S } from '../identity/names.js';
import { chainsTo } from './chain.js';

export { chainsTo };

export { MAX_WORKLOAD_CERT_TTL_S };
/** Istio DEFAULT_WORKLOAD_CERT_TTL. */
export const DEFAULT_WORKLOAD_CERT_TTL_S = 24 * 3600;
/** Istio CITADEL_SELF_SIGNED_CA_CERT_TTL (3650 d). */
const ROOT_TTL_MS = 3650 * 24 * 3600 * 1000;
/** Istio backdates leaves by 2 minutes against clock skew. */
const BACKDATE_MS = 2 * 60 * 1000;

export const CA_FILES = { cert: 'ca-cert.pem', key: 'ca-key.pem', chain: 'cert-chain.pem', root: 'root-cert.pem' } as const;

/** Stable reasons of CA failures; the gRPC layer maps them to status codes. */
export type CaErrorCode = 'MG_CA_CSR_INVALID' | 'MG_CA_TTL_INVALID' | 'MG_CA_MATERIAL_INVALID' | 'MG_CA_SIGN_FAILED';

export class CaError extends Error {
  constructor(
    readonly code: CaErrorCode,
    message: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export interface CaMaterial {
  /** `plug-in` (cacerts layout), `self-signed` (found) or `self-signed-created` (made by this call). */
  source: 'plug-in' | 'self-signed' | 'self-signed-created';
  /** The certificate that signs workload certificates (the root itself when self-signed). */
  signingCertPem: string;
  signingKey: KeyObject;
  /** `cert-chain.pem` as written (signing certificate up to the root); '' when self-signed, as in Istio. */
  certChainPem: string;
  /** The trust anchor(s) (`root-cert.pem`). */
  rootCertPem: string;
}

export interface LoadCaOptions {
  trustDomain: string;
  /** Longest wait for another process creating the self-signed root, in ms (default 15 000). */
  creationWaitMs?: number;
}

/**
 * Reads the CA in `dir`, creating a self-signed root when the directory holds none. A directory with
 * part of a layout (e.g. `ca-cert.pem` without `ca-key.pem`) is an error: nothing is overwritten.
 */
export async function loadOrCreateCaDirectory(dir: string, opts: LoadCaOptions): Promise<CaMaterial> {
  const f = (name: string) => path.join(dir, name);
  if (existsSync(f(CA_FILES.cert))) return loadPlugIn(dir);
  if (existsSync(f(CA_FILES.key)) || existsSync(f(CA_FILES.root))) return waitForSelfSigned(dir, opts.creationWaitMs ?? 15_000);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const { certPem, keyPem } = await createSelfSignedRoot(opts.trustDomain);
  const tmp = `.meshgate-ca-${process.pid}-${randomBytes(4).toString('hex')}`;
  writeFileSync(f(`${tmp}.key`), keyPem, { mode: 0o600 });
  writeFileSync(f(`${tmp}.crt`), certPem, { mode: 0o644 });
  try {
    // link() fails with EEXIST when another process got there first: its root wins.
    linkSync(f(`${tmp}.key`), f(CA_FILES.key));
  } catch (e) {
    rmSync(f(`${tmp}.key`), { force: true });
    rmSync(f(`${tmp}.crt`), { force: true });
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    return waitForSelfSigned(dir, opts.creationWaitMs ?? 15_000);
  }
  rmSync(f(`${tmp}.key`), { force: true });
  renameSync(f(`${tmp}.crt`), f(CA_FILES.root));
  return { ...selfSigned(certPem, keyPem), source: 'self-signed-created' };
}

/** CA material from Istio's Secret data (`cacerts` or `istio-ca-secret`), already decoded. */
export function caFromSecretData(data: Record<string, string>): CaMaterial {
  if (data[CA_FILES.cert] !== undefined && data[CA_FILES.key] !== undefined && data[CA_FILES.root] !== undefined) {
    return checkPlugIn(data[CA_FILES.cert], data[CA_FILES.key], data[CA_FILES.chain] ?? '', data[CA_FILES.root], 'Secret');
  }
  // istio-ca-secret: ca-cert.pem is the self-signed root itself.
  if (data[CA_FILES.cert] !== undefined && data[CA_FILES.key] !== undefined) return selfSigned(data[CA_FILES.cert], data[CA_FILES.key]);
  throw new CaError('MG_CA_MATERIAL_INVALID', `the Secret holds neither ${CA_FILES.cert}+${CA_FILES.key}+${CA_FILES.root} nor ${CA_FILES.cert}+${CA_FILES.key}`);
}

function loadPlugIn(dir: string): CaMaterial {
  const read = (name: string, required: boolean): string => {
    const p = path.join(dir, name);
    if (!existsSync(p)) {
      if (required) throw new CaError('MG_CA_MATERIAL_INVALID', `${p} is missing (the plug-in CA layout needs ${CA_FILES.cert}, ${CA_FILES.key}, ${CA_FILES.root} and ${CA_FILES.chain})`);
      return '';
    }
    return readFileSync(p, 'utf8');
  };
  return checkPlugIn(read(CA_FILES.cert, true), read(CA_FILES.key, true), read(CA_FILES.chain, false), read(CA_FILES.root, true), dir);
}

function checkPlugIn(certPem: string, keyPem: string, chainPem: string, rootPem: string, where: string): CaMaterial {
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certPem);
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new CaError('MG_CA_MATERIAL_INVALID', `${where}: cannot parse ${CA_FILES.cert}/${CA_FILES.key}: ${(e as Error).message}`);
  }
  if (!cert.ca) throw new CaError('MG_CA_MATERIAL_INVALID', `${where}: ${CA_FILES.cert} is not a CA certificate (basicConstraints CA:true)`);
  if (!cert.checkPrivateKey(key)) throw new CaError('MG_CA_MATERIAL_INVALID', `${where}: ${CA_FILES.key} does not belong to ${CA_FILES.cert}`);
  const roots = splitPemCertificates(rootPem).map((p) => new X509Certificate(p));
  if (roots.length === 0) throw new CaError('MG_CA_MATERIAL_INVALID', `${where}: ${CA_FILES.root} holds no certificate`);
  // The signing certificate must chain to a root through cert-chain.pem (Istio VerifyCertChain).
  const chain = splitPemCertificates(chainPem).map((p) => new X509Certificate(p));
  if (!chainsTo(cert, chain, roots)) throw new CaError('MG_CA_MATERIAL_INVALID', `${where}: ${CA_FILES.cert} does not chain to ${CA_FILES.root} through ${CA_FILES.chain}`);
  return { source: 'plug-in', signingCertPem: certPem, signingKey: key, certChainPem: chainPem, rootCertPem: rootPem };
}

async function waitForSelfSigned(dir: string, waitMs: number): Promise<CaMaterial> {
  const deadline = Date.now() + waitMs;
  const keyPath = path.join(dir, CA_FILES.key);
  const rootPath = path.join(dir, CA_FILES.root);
  for (;;) {
    if (existsSync(keyPath) && existsSync(rootPath)) return selfSigned(readFileSync(rootPath, 'utf8'), readFileSync(keyPath, 'utf8'));
    if (Date.now() > deadline) {
      throw new CaError('MG_CA_MATERIAL_INVALID', `${dir} holds ${existsSync(keyPath) ? CA_FILES.key : CA_FILES.root} without ${existsSync(keyPath) ? CA_FILES.root : CA_FILES.key}; remove it or complete the layout`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

function selfSigned(certPem: string, keyPem: string): CaMaterial {
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certPem);
    key = createPrivateKey(keyPem);
  } catch (e) {
    throw new CaError('MG_CA_MATERIAL_INVALID', `cannot parse the self-signed root or its key: ${(e as Error).message}`);
  }
  if (!cert.ca || !cert.checkPrivateKey(key)) throw new CaError('MG_CA_MATERIAL_INVALID', 'the self-signed root is not a CA or its key does not match');
  return { source: 'self-signed', signingCertPem: certPem, signingKey: key, certChainPem: '', rootCertPem: certPem };
}

/** A new self-signed root (ECDSA P-256, 10 years, O=trust domain), PEM. */
export async function createSelfSignedRoot(trustDomain: string): Promise<{ certPem: string; keyPem: string }> {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signingKey = await toCryptoPrivateKey(privateKey);
  const now = Date.now();
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const pub = new x509.PublicKey(spki);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: `O=${escapeDn(trustDomain)}`,
    issuer: `O=${escapeDn(trustDomain)}`,
    notBefore: new Date(now - BACKDATE_MS),
    notAfter: new Date(now + ROOT_TTL_MS),
    publicKey: pub,
    signingKey,
    signingAlgorithm: signatureParams(privateKey),
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature, true),
      await x509.SubjectKeyIdentifierExtension.create(pub),
    ],
  });
  return { certPem: `${cert.toString('pem')}\n`, keyPem: privateKeyPem(privateKey) };
}

/** A certificate and key issued by the CA, PEM. */
export interface IssuedCertificate {
  /** Leaf first, then the intermediates of `cert-chain.pem` (as a TLS peer sends them). */
  certChainPem: string;
  keyPem: string;
  notAfter: Date;
}

export class MeshCa {
  readonly material: CaMaterial;
  readonly #signingCert: X509Certificate;
  readonly #x509Signing: x509.X509Certificate;
  #cryptoKey: Promise<CryptoKey> | null = null;

  constructor(material: CaMaterial) {
    this.material = material;
    this.#signingCert = new X509Certificate(material.signingCertPem);
    this.#x509Signing = new x509.X509Certificate(material.signingCertPem);
  }

  /** `root-cert.pem`: what every mesh member trusts. */
  get rootCertPem(): string {
    return this.material.rootCertPem;
  }

  get signingNotAfter(): Date {
    return new Date(this.#signingCert.validTo);
  }

  /**
   * Signs `csrPem` for `uris` (the caller's SPIFFE IDs; the CSR's own SANs are ignored), valid
   * `ttlSeconds`. Returns Istio's `cert_chain`: the leaf, each certificate of `cert-chain.pem` (one
   * per element, each ending with a newline), and `root-cert.pem` last, as written.
   */
  async signCsr(csrPem: string, uris: string[], ttlSeconds: number): Promise<string[]> {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(csrPem);
    } catch (e) {
      throw new CaError('MG_CA_CSR_INVALID', `cannot parse the CSR: ${(e as Error).message}`);
    }
    let valid = false;
    try {
      valid = await csr.verify();
    } catch (e) {
      throw new CaError('MG_CA_CSR_INVALID', `cannot verify the CSR signature: ${(e as Error).message}`);
    }
    if (!valid) throw new CaError('MG_CA_CSR_INVALID', 'the CSR signature does not verify');
    const leaf = await this.#issue(csr.publicKey, { uris, dnsNames: [] }, ttlSeconds);
    const chain = splitPemCertificates(this.material.certChainPem);
    return [leaf.toString('pem') + '\n', ...chain, this.material.rootCertPem];
  }

  /** A key and certificate for the control plane's own listener (DNS SANs, e.g. istiod.istio-system.svc). */
  async issueServing(dnsNames: string[], ttlSeconds: number): Promise<IssuedCertificate> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const pub = new x509.PublicKey(publicKey.export({ type: 'spki', format: 'der' }));
    const leaf = await this.#issue(pub, { uris: [], dnsNames }, ttlSeconds);
    const intermediates = splitPemCertificates(this.material.certChainPem).filter((p) => !new X509Certificate(p).checkIssued(new X509Certificate(p)));
    const own = this.material.source === 'plug-in' && !intermediates.some((p) => new X509Certificate(p).fingerprint256 === this.#signingCert.fingerprint256) ? [this.material.signingCertPem] : [];
    return { certChainPem: [leaf.toString('pem') + '\n', ...own, ...intermediates].join(''), keyPem: privateKeyPem(privateKey), notAfter: leaf.notAfter };
  }

  async #issue(publicKey: x509.PublicKey, names: { uris: string[]; dnsNames: string[] }, ttlSeconds: number): Promise<x509.X509Certificate> {
    if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new CaError('MG_CA_TTL_INVALID', `TTL ${ttlSeconds}s is not positive`);
    if (names.uris.length > 0 && ttlSeconds > MAX_WORKLOAD_CERT_TTL_S) throw new CaError('MG_CA_TTL_INVALID', `requested TTL ${ttlSeconds}s is greater than the max allowed TTL ${MAX_WORKLOAD_CERT_TTL_S}s`);
    if (names.uris.length === 0 && names.dnsNames.length === 0) throw new CaError('MG_CA_SIGN_FAILED', 'no identity to put in the certificate');
    const now = Date.now();
    const notAfter = Math.min(now + ttlSeconds * 1000, this.signingNotAfter.getTime());
    this.#cryptoKey ??= toCryptoPrivateKey(this.material.signingKey);
    const signingKey = await this.#cryptoKey;
    const san = new x509.SubjectAlternativeNameExtension([...names.uris.map((value) => ({ type: 'url' as const, value })), ...names.dnsNames.map((value) => ({ type: 'dns' as const, value }))], true);
    try {
      return await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: '',
        issuer: this.#x509Signing.subjectName,
        notBefore: new Date(now - BACKDATE_MS),
        notAfter: new Date(notAfter),
        publicKey,
        signingKey,
        signingAlgorithm: signatureParams(this.material.signingKey),
        extensions: [
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
          new x509.BasicConstraintsExtension(false, undefined, true),
          await x509.AuthorityKeyIdentifierExtension.create(this.#x509Signing.publicKey),
          san,
        ],
      });
    } catch (e) {
      throw new CaError('MG_CA_SIGN_FAILED', (e as Error).message);
    }
  }
}

/** 128 random bits, positive (top bit clear), as hex: RFC 5280 serials are at most 20 octets. */
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] &= 0x7f;
  b[0] |= 0x01;
  return b.toString('hex');
}

function escapeDn(v: string): string {
  return v.replace(/([,+"\\<>;=])/g, '\\$1');
}
