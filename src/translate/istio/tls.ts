/**
 * Gateway `tls.mode` MUTUAL and OPTIONAL_MUTUAL: where the CA for client certificates comes from,
 * as Istio reads it for `credentialName` ("Secure Gateways", mutual TLS): the credential Secret's own
 * `ca.crt` (or `cacert` in a generic Secret), else a Secret named `<credentialName>-cacert` in the
 * same namespace: the gateway workload's (`--gateway-namespace`), never the Gateway object's with `ca.crt` (or `cacert`). Revocation: that Secret's `ca.crl`, else `tls.caCrl`
 * (a file path; translate reads no files, the runtime does).
 */

import { X509Certificate } from 'node:crypto';
import type { ClientValidation } from '../../ir/types.js';
import { arr, obj, str } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import type { TranslateContext } from '../types.js';

/** A value from `stringData` (as written) or `data` (base64). */
function secretValue(secret: KubeObject, key: string): string | undefined {
  const s = str(obj(secret.body.stringData)[key]);
  if (s) return s;
  const b64 = str(obj(secret.body.data)[key]);
  if (!b64) return undefined;
  const text = Buffer.from(b64, 'base64').toString('utf8');
  return text || undefined;
}

function caOf(secret: KubeObject | undefined): string | undefined {
  return secret === undefined ? undefined : secretValue(secret, 'ca.crt') ?? secretValue(secret, 'cacert');
}

/** A PEM CRL block (Node has no CRL parser; OpenSSL checks the content when the TLS context is built). */
const CRL_PEM = /-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/;

/** Every certificate of a PEM bundle parses; returns the count, or an error message. */
function checkBundle(pem: string): number | string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return 'no PEM certificate in it';
  for (const b of blocks) {
    try {
      const c = new X509Certificate(b);
      if (!c.ca) return `certificate "${c.subject.replace(/\n/g, ', ')}" is not a CA (basicConstraints CA:FALSE)`;
    } catch (e) {
      return (e as Error).message;
    }
  }
  return blocks.length;
}

/**
 * The client-certificate settings of a MUTUAL / OPTIONAL_MUTUAL server; null (with an error
 * diagnostic) when no usable CA is found, and then the server is not served: serving it without
 * client verification would be less strict than what was asked.
 */
export function clientValidationOf(
  ctx: TranslateContext,
  resources: ResourceSet,
  gw: KubeObject,
  tls: Record<string, unknown>,
  field: string,
  mode: 'MUTUAL' | 'OPTIONAL_MUTUAL',
): ClientValidation | null {
  // The gateway workload's namespace, as for the certificate itself (CVE-2021-34824).
  const ns = ctx.options.gatewayNamespace;
  const credential = str(tls.credentialName) ?? str(arr(tls.credentialNames)[0]);
  if (credential === undefined) return null;
  let caSecret = `${ns}/${credential}`;
  let ca = caOf(resources.get('Secret', ns, credential));
  if (ca === undefined) {
    caSecret = `${ns}/${credential}-cacert`;
    ca = caOf(resources.get('Secret', ns, `${credential}-cacert`));
  }
  if (ca === undefined) {
    ctx.report('error', 'MG_SECRET_INVALID', gw, `${field}.credentialName`, `tls.mode ${mode} needs the CA for client certificates: neither Secret ${ns}/${credential} nor ${ns}/${credential}-cacert has ca.crt (or cacert) data; the server is not served`);
    return null;
  }
  const checked = checkBundle(ca);
  if (typeof checked === 'string') {
    ctx.report('error', 'MG_SECRET_INVALID', gw, `${field}.credentialName`, `Secret ${caSecret}: the client CA bundle is unusable (${checked}); the server is not served`);
    return null;
  }
  const subjectAltNames = arr(tls.subjectAltNames).filter((s): s is string => typeof s === 'string' && s !== '');
  const out: ClientValidation = { mode: mode === 'MUTUAL' ? 'REQUIRED' : 'OPTIONAL', caCertificates: ca, caSecret, subjectAltNames };
  // Revocation: the CA Secret's `ca.crl` (Istio reads it with the CA), else the `caCrl` file.
  const [crlNs, crlName] = caSecret.split('/');
  const crlSecret = resources.get('Secret', crlNs, crlName);
  const crlPem = crlSecret === undefined ? undefined : secretValue(crlSecret, 'ca.crl');
  if (crlPem !== undefined) {
    if (!CRL_PEM.test(crlPem)) {
      ctx.report('error', 'MG_SECRET_INVALID', gw, `${field}.credentialName`, `Secret ${caSecret}: ca.crl holds no PEM "X509 CRL" block; the server is not served (serving it without revocation checks would be less strict than asked)`);
      return null;
    }
    out.caCrl = { kind: 'inline', pem: crlPem, secret: caSecret };
  } else {
    const file = str(tls.caCrl);
    if (file) out.caCrl = { kind: 'file', path: file };
  }
  return out;
}
