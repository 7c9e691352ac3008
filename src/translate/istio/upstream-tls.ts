/**
 * DestinationRule `tls` (Istio ClientTLSSettings) -> IR `UpstreamTls`.
 *
 * Modes: DISABLE (plaintext, null), SIMPLE, MUTUAL, ISTIO_MUTUAL (the gateway's mesh workload
 * certificate; SNI and server SPIFFE IDs are completed per cluster by `mesh-tls.ts`).
 * Material comes, as in Istio, from `credentialName` (a Secret in the DestinationRule's namespace with
 * `ca.crt`, `tls.crt`, `tls.key`, or the generic `cacert`, `cert`, `key`) or from the file fields
 * (`caCertificates`, `clientCertificate`, `privateKey`), which translate keeps as paths: it reads no
 * files, the runtime does when it builds the endpoint's pool. `credentialName` wins over files.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import type { PemSource, UpstreamTls } from '../../ir/types.js';
import type { DiagnosticReason } from '../../lib/diagnostic.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { arr, bool, obj, str, type Obj } from '../../lib/unknown.js';

type Report = (field: string, message: string, severity?: 'warning' | 'error', reason?: DiagnosticReason) => void;

/** The upstream TLS of `tls` (at `field` of `rule`); `host` is the cluster's host (default SNI). */
export function upstreamTls(resources: ResourceSet, rule: KubeObject | null, tls: Obj, field: string, host: string, report: Report): UpstreamTls | null {
  const mode = str(tls.mode) ?? 'DISABLE';
  if (mode === 'DISABLE') return null;
  if (mode === 'ISTIO_MUTUAL') {
    // Completed per cluster (SNI, the destination's SPIFFE IDs) by mesh-tls.ts; the material is the
    // gateway's workload certificate (`meshgate run --control`), never files.
    const sans = arr(tls.subjectAltNames).map(str).filter((s): s is string => typeof s === 'string' && s !== '');
    return { mode: 'ISTIO_MUTUAL', caCertificates: null, clientCertificate: null, sni: str(tls.sni) ?? '', subjectAltNames: sans, insecureSkipVerify: false };
  }
  if (mode !== 'SIMPLE' && mode !== 'MUTUAL') {
    report(`${field}.mode`, `unknown TLS mode ${JSON.stringify(mode)}; the cluster is reached in plaintext`);
    return null;
  }
  let ca: PemSource | null = null;
  let cert: PemSource | null = null;
  let key: PemSource | null = null;
  let crl: PemSource | null = null;
  const credentialName = str(tls.credentialName);
  if (credentialName && rule !== null) {
    const ns = rule.metadata.namespace;
    const secret = resources.get('Secret', ns, credentialName);
    const ref = `${ns}/${credentialName}`;
    if (!secret) report(`${field}.credentialName`, `Secret ${ref} does not exist; handshakes use the default CAs${mode === 'MUTUAL' ? ' and no client certificate' : ''}`, 'error', 'MG_SECRET_NOT_FOUND');
    else {
      const v = (k: string): PemSource | null => {
        const pem = secretValue(secret, k);
        return pem ? { kind: 'inline', pem, secret: ref } : null;
      };
      ca = v('ca.crt') ?? v('cacert');
      cert = v('tls.crt') ?? v('cert');
      key = v('tls.key') ?? v('key');
      crl = v('ca.crl');
      if (crl !== null && crl.kind === 'inline' && !/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/.test(crl.pem)) {
        report(`${field}.credentialName`, `Secret ${ref}: ca.crl holds no PEM "X509 CRL" block; the cluster is reached in plaintext`, 'error', 'MG_SECRET_INVALID');
        return null;
      }
      // Broken material is a diagnostic here, never a handshake failure to puzzle over at run time.
      const bad = checkPem(ca, cert, key);
      if (bad !== null) {
        report(`${field}.credentialName`, `Secret ${ref}: ${bad}; the cluster is reached in plaintext`, 'error', 'MG_SECRET_INVALID');
        return null;
      }
    }
  }
  const file = (k: string): PemSource | null => {
    const p = str(tls[k]);
    return p ? { kind: 'file', path: p } : null;
  };
  ca ??= file('caCertificates');
  cert ??= file('clientCertificate');
  key ??= file('privateKey');
  crl ??= file('caCrl');
  let clientCertificate: UpstreamTls['clientCertificate'] = null;
  if (mode === 'MUTUAL') {
    if (cert === null || key === null) report(field, 'MUTUAL needs a client certificate and key (credentialName with tls.crt/tls.key, or clientCertificate/privateKey); SIMPLE is used, without a client certificate', 'error');
    else clientCertificate = { certChain: cert, privateKey: key };
  }
  return {
    mode: clientCertificate !== null ? 'MUTUAL' : 'SIMPLE',
    caCertificates: ca,
    clientCertificate,
    sni: str(tls.sni) || host,
    subjectAltNames: arr(tls.subjectAltNames).map(str).filter((s): s is string => typeof s === 'string' && s !== ''),
    insecureSkipVerify: bool(isBoolValue(tls.insecureSkipVerify)) === true,
    // Absent unless set, so clusters without a CRL keep their pool identity.
    ...(crl !== null ? { caCrl: crl } : {}),
  };
}

/** BoolValue: `{ value: b }` in protobuf JSON, a bare boolean in YAML. */
function isBoolValue(v: unknown): unknown {
  return typeof v === 'object' && v !== null && 'value' in v ? (v as { value: unknown }).value : v;
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

/** Why inline PEM material is unusable, or null when it parses (and the key belongs to the certificate). */
function checkPem(ca: PemSource | null, cert: PemSource | null, key: PemSource | null): string | null {
  try {
    if (ca?.kind === 'inline') new X509Certificate(ca.pem);
  } catch (e) {
    return `cannot parse ca.crt (${(e as Error).message})`;
  }
  if (cert?.kind !== 'inline' || key?.kind !== 'inline') return null;
  try {
    if (!new X509Certificate(cert.pem).checkPrivateKey(createPrivateKey(key.pem))) return 'tls.key does not match the certificate in tls.crt';
  } catch (e) {
    return `cannot parse tls.crt/tls.key (${(e as Error).message})`;
  }
  return null;
}
