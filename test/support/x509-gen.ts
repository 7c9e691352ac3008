/**
 * Test certificates made in JavaScript with @peculiar/x509 (the library the mesh CA uses), so no
 * test needs the openssl CLI. The library is asynchronous (WebCrypto) and the suites' helpers are
 * synchronous, so `generatePkiSync` runs this module in a child Node process and reads its answer:
 * Node itself is the only program needed.
 */
import { execFileSync } from 'node:child_process';
import { webcrypto } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import './reflect-shim.js';
import * as x509 from '@peculiar/x509';

export interface CertSpec {
  /** Name of the result (and CN unless `cn` is given). */
  name: string;
  cn?: string;
  /** The whole subject, in encoding order (e.g. `[{ C: 'US' }, { O: 'Acme, Inc.' }, { CN: 'x' }]`); overrides `cn`. */
  subject?: Record<string, string>[];
  /** A CA (basicConstraints CA:TRUE, keyCertSign) when true. */
  ca?: boolean;
  /** Name of an earlier CA spec that signs it; self-signed when absent. */
  issuer?: string;
  dns?: string[];
  uris?: string[];
  ips?: string[];
  eku?: ('serverAuth' | 'clientAuth')[];
  /** Default 'ec' (P-256). */
  key?: 'ec' | 'rsa';
  /** Validity in days from now (default 2); negative: already expired. */
  days?: number;
}

export interface CrlSpec {
  /** The CA spec (or external) name that signs it. */
  issuer: string;
  /** Names of certificates (specs or externals) it revokes. */
  revoked: string[];
}

/** Certificates made elsewhere, usable as issuers (with their key) and as revoked certificates. */
export type External = Record<string, { cert: string; key?: string }>;

export interface Pem {
  cert: string;
  key: string;
}

export interface GeneratedPki {
  certs: Record<string, Pem>;
  crls: Record<string, string>;
}

const EKU: Record<string, string> = { serverAuth: x509.ExtendedKeyUsage.serverAuth, clientAuth: x509.ExtendedKeyUsage.clientAuth };

async function generate(specs: CertSpec[], crlSpecs: CrlSpec[], external: External = {}): Promise<GeneratedPki> {
  x509.cryptoProvider.set(webcrypto as unknown as Crypto);
  const subtle = webcrypto.subtle;
  const made = new Map<string, { keys: CryptoKeyPair; cert: x509.X509Certificate; alg: Algorithm | EcdsaParams }>();
  for (const [name, e] of Object.entries(external)) {
    const cert = new x509.X509Certificate(e.cert);
    const pub = cert.publicKey.algorithm as Algorithm & { namedCurve?: string };
    const rsa = pub.name !== 'ECDSA' && pub.name !== 'EC';
    const importAlg = rsa ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : { name: 'ECDSA', namedCurve: pub.namedCurve ?? 'P-256' };
    const privateKey = e.key === undefined ? (undefined as unknown as CryptoKey) : ((await subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(e.key), importAlg, true, ['sign'])) as unknown as CryptoKey);
    const alg = rsa ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : { name: 'ECDSA', hash: 'SHA-256' };
    made.set(name, { keys: { privateKey, publicKey: (await cert.publicKey.export(importAlg, ['verify'])) as CryptoKey }, cert, alg });
  }
  const certs: Record<string, Pem> = {};
  let serial = 1;
  for (const s of specs) {
    const rsa = s.key === 'rsa';
    const keyAlg = rsa ? { name: 'RSASSA-PKCS1-v1_5', modulusLength: 2048, publicExponent: new Uint8Array([1, 0, 1]), hash: 'SHA-256' } : { name: 'ECDSA', namedCurve: 'P-256' };
    const keys = (await subtle.generateKey(keyAlg, true, ['sign', 'verify'])) as CryptoKeyPair;
    const days = s.days ?? 2;
    const now = Date.now();
    const notBefore = new Date(days < 0 ? now + (days - 1) * 86_400_000 : now - 3_600_000);
    const notAfter = new Date(now + days * 86_400_000);
    const extensions: x509.Extension[] = [];
    if (s.ca) {
      extensions.push(new x509.BasicConstraintsExtension(true, undefined, true));
      extensions.push(new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true));
    } else {
      extensions.push(new x509.BasicConstraintsExtension(false, undefined, false));
      extensions.push(new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true));
    }
    const names: x509.JsonGeneralName[] = [...(s.dns ?? []).map((v) => ({ type: 'dns' as const, value: v })), ...(s.uris ?? []).map((v) => ({ type: 'url' as const, value: v })), ...(s.ips ?? []).map((v) => ({ type: 'ip' as const, value: v }))];
    if (names.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(names));
    if (s.eku && s.eku.length > 0) extensions.push(new x509.ExtendedKeyUsageExtension(s.eku.map((e) => EKU[e])));
    extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
    const subject: x509.X509CertificateCreateParamsName = s.subject !== undefined ? s.subject.map((rdn) => Object.fromEntries(Object.entries(rdn).map(([k, v]) => [k, [v]]))) : `CN=${s.cn ?? s.name}`;
    const signingAlgorithm = rsa ? { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } : { name: 'ECDSA', hash: 'SHA-256' };
    const serialNumber = (serial++).toString(16).padStart(2, '0') + Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex');
    let cert: x509.X509Certificate;
    if (s.issuer === undefined) {
      cert = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: `7f${serialNumber}`, name: subject, notBefore, notAfter, keys, extensions, signingAlgorithm });
    } else {
      const issuer = made.get(s.issuer);
      if (!issuer) throw new Error(`issuer ${s.issuer} of ${s.name} is not defined before it`);
      extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, false));
      cert = await x509.X509CertificateGenerator.create({ serialNumber: `7f${serialNumber}`, subject, issuer: issuer.cert.subject, notBefore, notAfter, publicKey: keys.publicKey, signingKey: issuer.keys.privateKey, extensions, signingAlgorithm: issuer.alg });
    }
    made.set(s.name, { keys, cert, alg: signingAlgorithm });
    const pkcs8 = await subtle.exportKey('pkcs8', keys.privateKey);
    certs[s.name] = { cert: `${cert.toString('pem')}\n`, key: `${x509.PemConverter.encode(pkcs8, 'PRIVATE KEY')}\n` };
  }
  const crls: Record<string, string> = {};
  for (const c of crlSpecs) {
    const issuer = made.get(c.issuer);
    if (!issuer) throw new Error(`CRL issuer ${c.issuer} is not defined`);
    const entries = c.revoked.map((n) => {
      const revoked = made.get(n);
      if (!revoked) throw new Error(`revoked certificate ${n} is not defined`);
      return { serialNumber: revoked.cert.serialNumber, revocationDate: new Date(Date.now() - 60_000) };
    });
    const crl = await x509.X509CrlGenerator.create({
      issuer: issuer.cert.subject,
      thisUpdate: new Date(Date.now() - 60_000),
      nextUpdate: new Date(Date.now() + 2 * 86_400_000),
      entries,
      signingKey: issuer.keys.privateKey,
      signingAlgorithm: issuer.alg,
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(issuer.cert, false)],
    });
    // OpenSSL (and Istio's ca.crl) read the "X509 CRL" PEM label.
    crls[c.issuer] = `${x509.PemConverter.encode(crl.rawData, 'X509 CRL')}\n`;
  }
  return { certs, crls };
}

/** Certificates (and CRLs) for `specs`, made synchronously (in a child Node process). */
export function generatePkiSync(specs: CertSpec[], crls: CrlSpec[] = [], external: External = {}): GeneratedPki {
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url)], { input: JSON.stringify({ specs, crls, external }), encoding: 'utf8', timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
  return JSON.parse(out) as GeneratedPki;
}

export { generate as generatePki };

// Child mode: a JSON request on stdin, the PEMs as JSON on stdout.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const chunks: Buffer[] = [];
  process.stdin.on('data', (c: Buffer) => chunks.push(c));
  process.stdin.on('end', () => {
    const req = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { specs: CertSpec[]; crls: CrlSpec[]; external?: External };
    generate(req.specs, req.crls ?? [], req.external ?? {}).then(
      (r) => process.stdout.write(JSON.stringify(r)),
      (e: unknown) => {
        process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
        process.exit(1);
      },
    );
  });
}
