/**
 * Test PKI for the mesh: an Istio plug-in CA layout (root -> intermediate) written to a directory,
 * and workload certificates for arbitrary SPIFFE IDs signed by a given CA (to build meshed test
 * backends, including ones with the wrong identity). Made with @peculiar/x509, never by hand.
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { privateKeyPem, signatureParams, toCryptoPrivateKey, x509 } from '../../src/mesh/ca/keys.js';

export interface TestCa {
  certPem: string;
  key: KeyObject;
}

async function issue(subject: string, issuer: TestCa | null, key: KeyObject, ca: boolean, extra: x509.Extension[] = [], ttlMs = 24 * 3600_000): Promise<string> {
  const signer = issuer?.key ?? key;
  const pub = new x509.PublicKey(key.type === 'private' ? (await import('node:crypto')).createPublicKey(key).export({ type: 'spki', format: 'der' }) : key.export({ type: 'spki', format: 'der' }));
  const issuerName = issuer ? new x509.X509Certificate(issuer.certPem).subject : subject;
  const cert = await x509.X509CertificateGenerator.create({
    subject,
    issuer: issuerName,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + ttlMs),
    publicKey: pub,
    signingKey: await toCryptoPrivateKey(signer),
    signingAlgorithm: signatureParams(signer),
    extensions: [
      new x509.BasicConstraintsExtension(ca, undefined, true),
      new x509.KeyUsagesExtension(ca ? x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign | x509.KeyUsageFlags.digitalSignature : x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
      await x509.SubjectKeyIdentifierExtension.create(pub),
      ...extra,
    ],
  });
  return `${cert.toString('pem')}\n`;
}

/** Root (RSA 2048, like Istio's tools/certs) and an intermediate (ECDSA P-256). */
export async function makePlugInCa(dir: string): Promise<{ root: TestCa; intermediate: TestCa }> {
  const rootKey = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  const root = { certPem: await issue('O=Istio, CN=Root CA', null, rootKey, true), key: rootKey };
  const intKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const intermediate = { certPem: await issue('O=Istio, CN=Intermediate CA, L=cluster1', root, intKey, true), key: intKey };
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'root-cert.pem'), root.certPem);
  writeFileSync(path.join(dir, 'ca-cert.pem'), intermediate.certPem);
  // The intermediate's key in SEC1 ("EC PRIVATE KEY"), as openssl writes EC keys.
  writeFileSync(path.join(dir, 'ca-key.pem'), intKey.export({ type: 'sec1', format: 'pem' }) as string);
  writeFileSync(path.join(dir, 'cert-chain.pem'), intermediate.certPem + root.certPem);
  return { root, intermediate };
}

/** A self-contained CA (for a foreign mesh or a forged identity). */
export async function makeCa(name = 'O=Other Mesh'): Promise<TestCa> {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  return { certPem: await issue(name, null, key, true), key };
}

/** A workload certificate for `uri` (a SPIFFE ID) signed by `ca`: server and client auth. */
export async function makeWorkloadCert(ca: TestCa, uri: string): Promise<{ certPem: string; keyPem: string }> {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const certPem = await issue('', ca, key, false, [
    new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true),
    new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
  ]);
  return { certPem, keyPem: privateKeyPem(key) };
}
