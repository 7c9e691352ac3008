/**
 * ingress-nginx backend annotations -> the upstream protocol and TLS of an Ingress backend's cluster.
 * PURE.
 *
 * - `nginx.ingress.kubernetes.io/backend-protocol` (case-insensitive, ingress-nginx's values):
 *   `HTTP` (default) HTTP/1.1 in clear; `HTTPS` HTTP/1.1 over TLS; `GRPC` HTTP/2 in clear (h2c);
 *   `GRPCS` HTTP/2 over TLS; `AUTO_HTTP` the client's scheme (HTTPS requests over TLS to a twin
 *   cluster, the others in clear). `FCGI` is not supported (warning; HTTP is used), nor is any other
 *   value (error; HTTP).
 * - Backend TLS ("Backend Certificate Authentication"), read only for HTTPS/GRPCS:
 *   - `proxy-ssl-verify: "on"` verifies the backend certificate against `ca.crt` of
 *     `proxy-ssl-secret`; ingress-nginx's default `off` does not verify (`insecureSkipVerify`).
 *   - `proxy-ssl-secret: "namespace/name"`: `ca.crt` (trusted CAs), and `tls.crt` + `tls.key` (the
 *     client certificate presented: TLS mode MUTUAL).
 *   - `proxy-ssl-name`: the name sent in SNI and, with verification on, required in the backend
 *     certificate's SANs. Without it the SNI is the Service's cluster-local name and, with
 *     verification, only the chain is checked (nginx would check its upstream name).
 *   - `proxy-ssl-server-name`: nginx sends no SNI unless `"on"`; meshgate always sends one (the IR has
 *     no SNI-less TLS), so `"off"` is reported (info).
 */
import type { PemSource, UpstreamTls } from '../../ir/types.js';
import { obj, str } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import type { TranslateContext } from '../types.js';

const PREFIX = 'nginx.ingress.kubernetes.io/';
export const BACKEND_PROTOCOL_ANNOTATION = `${PREFIX}backend-protocol`;

/** What the cluster of an Ingress backend is asked for; `{}` = plain HTTP/1.1. */
export interface BackendSettings {
  /** `UPGRADE` for GRPC/GRPCS: the cluster speaks HTTP/2. */
  h2UpgradePolicy?: 'UPGRADE';
  tls?: UpstreamTls;
  /**
   * AUTO_HTTP (nginx `proxy_pass $scheme://...`): requests that reached the gateway over HTTPS go to
   * the backend over TLS with these settings (a twin cluster), the others in clear.
   */
  autoHttps?: UpstreamTls;
}

/** The backend settings of `ing`'s annotations; `host` is the Service's FQDN (default SNI). */
export function backendSettings(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject, host: string): BackendSettings {
  const a = ing.metadata.annotations;
  const field = (name: string) => `metadata.annotations["${PREFIX}${name}"]`;
  const raw = a[BACKEND_PROTOCOL_ANNOTATION];
  if (raw === undefined) return {};
  const proto = raw.trim().toUpperCase();
  switch (proto) {
    case 'HTTP':
      return {};
    case 'GRPC':
      return { h2UpgradePolicy: 'UPGRADE' };
    case 'HTTPS':
    case 'GRPCS': {
      const tls = backendTls(ctx, resources, ing, host, field);
      return proto === 'GRPCS' ? { h2UpgradePolicy: 'UPGRADE', tls } : { tls };
    }
    case 'AUTO_HTTP':
      return { autoHttps: backendTls(ctx, resources, ing, host, field) };
    case 'FCGI':
      ctx.report('warning', 'MG_UNSUPPORTED', ing, field('backend-protocol'), `backend-protocol ${proto} is not supported; the backend is reached over HTTP/1.1 in clear`);
      return {};
    default:
      ctx.report('error', 'MG_INVALID_FIELD', ing, field('backend-protocol'), `backend-protocol ${JSON.stringify(raw)} is not one of HTTP, HTTPS, GRPC, GRPCS (AUTO_HTTP, FCGI); HTTP is used`);
      return {};
  }
}

function backendTls(ctx: TranslateContext, resources: ResourceSet, ing: KubeObject, host: string, field: (name: string) => string): UpstreamTls {
  const a = ing.metadata.annotations;
  const verify = (a[`${PREFIX}proxy-ssl-verify`] ?? 'off').trim().toLowerCase() === 'on';
  const name = a[`${PREFIX}proxy-ssl-name`]?.trim() || null;
  if ((a[`${PREFIX}proxy-ssl-server-name`] ?? 'off').trim().toLowerCase() !== 'on' && a[`${PREFIX}proxy-ssl-server-name`] !== undefined) {
    ctx.report('info', 'MG_UNSUPPORTED', ing, field('proxy-ssl-server-name'), `meshgate always sends SNI to TLS backends (${name ?? host}); proxy-ssl-server-name "off" is not applied`);
  }
  let ca: PemSource | null = null;
  let client: UpstreamTls['clientCertificate'] = null;
  const secretRef = a[`${PREFIX}proxy-ssl-secret`]?.trim();
  if (secretRef) {
    const slash = secretRef.indexOf('/');
    const ns = slash === -1 ? ing.metadata.namespace : secretRef.slice(0, slash);
    const secretName = slash === -1 ? secretRef : secretRef.slice(slash + 1);
    const ref = `${ns}/${secretName}`;
    // Like every other Secret an Ingress names, only from its own namespace: an Ingress author must
    // not be able to present another tenant's client key (ingress-nginx: allow-cross-namespace-resources).
    const secret = ns === ing.metadata.namespace ? resources.get('Secret', ns, secretName) : undefined;
    if (ns !== ing.metadata.namespace) {
      ctx.report('error', 'MG_INVALID_FIELD', ing, field('proxy-ssl-secret'), `Secret ${ref} is in another namespace than the Ingress (${ing.metadata.namespace}); cross-namespace Secrets are not read: the backend gets no client certificate${verify ? ' and is verified against the default CAs' : ''}`);
    } else if (secret === undefined) {
      ctx.report('error', 'MG_SECRET_NOT_FOUND', ing, field('proxy-ssl-secret'), `Secret ${ref} does not exist; the backend gets no client certificate${verify ? ' and is verified against the default CAs' : ''}`);
    } else {
      const v = (k: string): PemSource | null => {
        const pem = secretValue(secret, k);
        return pem ? { kind: 'inline', pem, secret: ref } : null;
      };
      ca = v('ca.crt');
      const cert = v('tls.crt');
      const key = v('tls.key');
      if (cert !== null && key !== null) client = { certChain: cert, privateKey: key };
      else if (cert !== null || key !== null) ctx.report('error', 'MG_SECRET_INVALID', ing, field('proxy-ssl-secret'), `Secret ${ref} has only one of tls.crt and tls.key; no client certificate is presented`);
      if (verify && ca === null) ctx.report('warning', 'MG_SECRET_INVALID', ing, field('proxy-ssl-secret'), `Secret ${ref} has no ca.crt; the backend certificate is verified against the default CAs`);
    }
  }
  return {
    mode: client === null ? 'SIMPLE' : 'MUTUAL',
    caCertificates: verify ? ca : null,
    clientCertificate: client,
    sni: name ?? host,
    subjectAltNames: verify && name !== null ? [name] : [],
    insecureSkipVerify: !verify,
  };
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
