/**
 * TLS Secrets -> IR certificates. Accepts what Kubernetes Ingress and Istio accept: type
 * `kubernetes.io/tls` with `tls.crt`/`tls.key`, and (Istio `credentialName`) generic Secrets with
 * `cert`/`key`. Certificate and key are parsed and checked to belong together here, so a broken
 * Secret is a diagnostic on the object that uses it, never a handshake failure at run time.
 */
import { X509Certificate, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import type { TlsCertificate } from '../ir/types.js';
import type { KubeObject } from '../resources/types.js';
import type { ResourceSet } from '../resources/resource-set.js';
import { obj, str } from '../lib/unknown.js';
import type { TranslateContext } from './types.js';

export interface SecretRequest {
  namespace: string;
  name: string;
  /** Server names the certificate is used for (from Ingress `tls.hosts` or the Gateway server's hosts). */
  serverNames: string[];
  from: KubeObject;
  field: string;
}

export function loadTlsCertificate(ctx: TranslateContext, resources: ResourceSet, req: SecretRequest): TlsCertificate | null {
  const secret = resources.get('Secret', req.namespace, req.name);
  const ref = `${req.namespace}/${req.name}`;
  if (!secret) {
    ctx.report('error', 'MG_SECRET_NOT_FOUND', req.from, req.field, `TLS Secret ${ref} does not exist`);
    return null;
  }
  const certChain = secretValue(secret, 'tls.crt') ?? secretValue(secret, 'cert');
  const privateKey = secretValue(secret, 'tls.key') ?? secretValue(secret, 'key');
  if (!certChain || !privateKey) {
    ctx.report('error', 'MG_SECRET_INVALID', req.from, req.field, `Secret ${ref} has no tls.crt/tls.key (or cert/key) data`);
    return null;
  }
  try {
    const cert = new X509Certificate(certChain);
    const key = createPrivateKey(privateKey);
    if (!cert.checkPrivateKey(key)) {
      ctx.report('error', 'MG_SECRET_INVALID', req.from, req.field, `Secret ${ref}: tls.key does not match the certificate in tls.crt`);
      return null;
    }
    // checkPrivateKey compares only the public half a key file carries: a key whose private part
    // is another key's still passes, and then every handshake fails with "bad signature".
    if (!signsForCertificate(key, cert)) {
      ctx.report('error', 'MG_SECRET_INVALID', req.from, req.field, `Secret ${ref}: tls.key cannot sign for the certificate in tls.crt (a signature made with it does not verify with the certificate's public key); every TLS handshake would fail`);
      return null;
    }
  } catch (e) {
    ctx.report('error', 'MG_SECRET_INVALID', req.from, req.field, `Secret ${ref}: cannot parse certificate or key (${(e as Error).message})`);
    return null;
  }
  return { secret: ref, serverNames: [...new Set(req.serverNames.map((s) => s.toLowerCase()))].sort(), certChain, privateKey };
}

/** Answers per certificate+key text: a signature costs ~1 ms (RSA), and translation runs on every change. */
const signChecks = new Map<string, boolean>();
const PROBE = Buffer.from('meshgate: does this key sign for this certificate?');

/** Whether a signature made with `key` verifies with the certificate's public key. */
function signsForCertificate(key: KeyObject, cert: X509Certificate): boolean {
  const id = `${cert.fingerprint256}|${key.export({ format: 'jwk' }).d ?? ''}`;
  const known = signChecks.get(id);
  if (known !== undefined) return known;
  let ok: boolean;
  try {
    const type = key.asymmetricKeyType;
    const digest = type === 'ed25519' || type === 'ed448' ? null : 'sha256';
    ok = verify(digest, PROBE, cert.publicKey, sign(digest, PROBE, key));
  } catch {
    ok = false;
  }
  if (signChecks.size > 1000) signChecks.clear();
  signChecks.set(id, ok);
  return ok;
}

/** A value from `stringData` (as written) or `data` (base64). */
function secretValue(secret: KubeObject, key: string): string | undefined {
  const s = str(obj(secret.body.stringData)[key]);
  if (s) return s;
  const b64 = str(obj(secret.body.data)[key]);
  if (!b64) return undefined;
  const text = Buffer.from(b64, 'base64').toString('utf8');
  return text || undefined;
}
