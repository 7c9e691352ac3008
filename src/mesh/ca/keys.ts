/**
 * Key handling shared by the CA and the workload-identity client: node:crypto KeyObjects converted
 * to WebCrypto CryptoKeys for @peculiar/x509 (which signs certificates and CSRs), and back to PEM.
 * Node 20 has no `KeyObject.toCryptoKey`, so the conversion goes through PKCS#8 / SPKI DER.
 */
import { createPrivateKey, webcrypto, type KeyObject } from 'node:crypto';
import './reflect-polyfill.js';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };

/** The WebCrypto signing algorithm for a key: ECDSA with SHA-256/384, or RSASSA-PKCS1-v1_5 with SHA-256. */
export function signingAlgorithm(key: KeyObject): RsaHashedImportParams | EcKeyImportParams {
  const type = key.asymmetricKeyType;
  if (type === 'rsa') return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' };
  if (type === 'ec') {
    const curve = key.asymmetricKeyDetails?.namedCurve;
    const namedCurve = curve === 'prime256v1' ? 'P-256' : curve === 'secp384r1' ? 'P-384' : curve === 'secp521r1' ? 'P-521' : '';
    if (namedCurve === '') throw new Error(`unsupported EC curve ${curve ?? 'unknown'} (P-256, P-384 and P-521 are)`);
    return { name: 'ECDSA', namedCurve };
  }
  throw new Error(`unsupported key type ${type ?? 'unknown'} (RSA and EC are)`);
}

/** Hash of the ECDSA signature for a key (x509 takes it apart from the import algorithm). */
export function signatureParams(key: KeyObject): Algorithm | EcdsaParams {
  const alg = signingAlgorithm(key);
  if (alg.name === 'ECDSA') return { name: 'ECDSA', hash: (alg as EcKeyImportParams).namedCurve === 'P-256' ? 'SHA-256' : 'SHA-384' } as EcdsaParams;
  return alg;
}

/** A private KeyObject (any PEM form: PKCS#1, SEC1, PKCS#8) as a WebCrypto signing key. */
export async function toCryptoPrivateKey(key: KeyObject): Promise<CryptoKey> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return (await webcrypto.subtle.importKey('pkcs8', der, signingAlgorithm(key), true, ['sign'])) as unknown as CryptoKey;
}

/** The public half of a private KeyObject as a WebCrypto key. */
export async function toCryptoPublicKey(key: KeyObject): Promise<CryptoKey> {
  const pub = key.type === 'public' ? key : (await import('node:crypto')).createPublicKey(key);
  const der = pub.export({ type: 'spki', format: 'der' });
  return (await webcrypto.subtle.importKey('spki', der, signingAlgorithm(key), true, ['verify'])) as unknown as CryptoKey;
}

export function privateKeyPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }) as string;
}

export function parsePrivateKey(pem: string): KeyObject {
  return createPrivateKey(pem);
}

export { splitPemCertificates } from './chain.js';
