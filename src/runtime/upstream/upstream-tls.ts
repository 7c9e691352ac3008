/**
 * Upstream TLS origination (IR `Cluster.tls`): the `tls.connect` options of an endpoint's upstream
 * client (`upstreamTlsConnect`; `upstreamTlsOptions` for the undici pool of ext-authz checks), and the
 * pool's TLS identity (endpoints are pooled by address and identity, so two clusters with different
 * TLS to one address never share a connection).
 *
 * Files named by the IR (Istio `caCertificates`, `clientCertificate`, `privateKey`) are read here, when
 * the pool is built, because translate reads no files. A file that cannot be read leaves the pool
 * with a connector that fails every connection (503 `UF`, reason `MG_TLS_FILE_UNREADABLE`), never a
 * plaintext one; the file is read again when the pool is next rebuilt (a snapshot that changes it).
 *
 * Revocation: with `caCrl` (a Secret's `ca.crl` or the DestinationRule's `caCrl` file), a revoked
 * server certificate fails the handshake like any verification failure (`CERT_REVOKED`).
 *
 * Names: `sni` is sent in every ClientHello of the pool (the request's Host never replaces it, unlike
 * undici's default). With `subjectAltNames`, the server certificate must carry one of them; without,
 * the chain alone is verified (Envoy without `match_subject_alt_names`).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import type { ConnectionOptions, PeerCertificate } from 'node:tls';
import type { Pool } from 'undici';
import type { PemSource, UpstreamTls } from '../../ir/types.js';

/** Error code of a server certificate whose SANs match none of `subjectAltNames` (Node's own code for name mismatches). */
const ALTNAME_INVALID = 'ERR_TLS_CERT_ALTNAME_INVALID';

/** `''` for plaintext; otherwise a short hash of the TLS settings, part of the pool key. */
export function tlsIdentity(tls: UpstreamTls | null): string {
  if (tls === null) return '';
  return createHash('sha256').update(JSON.stringify(tls)).digest('hex').slice(0, 16);
}

/** What the pool needs for `tls`: undici `connect` options (spread into `tls.connect`) and the SNI. */
export interface UpstreamTlsOptions {
  connect: NonNullable<Pool.Options['connect']>;
  servername: string;
}

export function upstreamTlsOptions(tls: UpstreamTls): UpstreamTlsOptions {
  const c = upstreamTlsConnect(tls);
  if (c.failure !== null) {
    const failure = c.failure;
    const failing: Pool.Options['connect'] = (_opts, callback) => callback(failure, null);
    return { connect: failing!, servername: tls.sni };
  }
  return { connect: c.options as Record<string, unknown>, servername: tls.sni };
}

/**
 * What meshgate's own upstream clients (`h1-client.ts`, `h2-client.ts`) pass to `tls.connect` for
 * `tls` (without host, port and ALPN), or the error every connection fails with when a file named by
 * the IR cannot be read.
 */
export interface UpstreamTlsConnect {
  options: ConnectionOptions;
  failure: Error | null;
  servername: string;
}

export function upstreamTlsConnect(tls: UpstreamTls): UpstreamTlsConnect {
  const options: ConnectionOptions = { rejectUnauthorized: !tls.insecureSkipVerify };
  // Node refuses an IP address as SNI (RFC 6066 §3); the ClientHello then carries none.
  if (tls.sni !== '' && isIP(tls.sni) === 0) options.servername = tls.sni;
  try {
    if (tls.caCertificates !== null) options.ca = readPem(tls.caCertificates);
    // A CRL makes OpenSSL check revocation of the server certificate's chain (CERT_REVOKED).
    if (tls.caCrl !== undefined) options.crl = readPem(tls.caCrl);
    if (tls.clientCertificate !== null) {
      options.cert = readPem(tls.clientCertificate.certChain);
      options.key = readPem(tls.clientCertificate.privateKey);
    }
  } catch (err) {
    const failure = Object.assign(new Error(`MG_TLS_FILE_UNREADABLE: ${(err as Error).message}`), { code: 'MG_TLS_FILE_UNREADABLE' });
    return { options, failure, servername: tls.sni };
  }
  if (!tls.insecureSkipVerify) {
    const wanted = tls.subjectAltNames;
    options.checkServerIdentity = wanted.length === 0 ? chainOnly : (_host: string, cert: PeerCertificate): Error | undefined => checkSans(wanted, cert);
  }
  return { options, failure: null, servername: tls.sni };
}

function readPem(src: PemSource): string {
  return src.kind === 'inline' ? src.pem : readFileSync(src.path, 'utf8');
}

function chainOnly(): undefined {
  return undefined;
}

/** The certificate's SANs (`DNS:`, `URI:`, `IP Address:`) must include one of `wanted` (DNS case-insensitive; a `*.` SAN covers one label). */
function checkSans(wanted: string[], cert: PeerCertificate): Error | undefined {
  const sans = (cert.subjectaltname ?? '').split(', ').filter((s) => s !== '').map((s) => s.slice(s.indexOf(':') + 1));
  for (const w of wanted) {
    const lw = w.toLowerCase();
    for (const san of sans) {
      const ls = san.toLowerCase();
      if (ls === lw) return undefined;
      if (ls.startsWith('*.') && lw.endsWith(ls.slice(1)) && !lw.slice(0, lw.length - ls.length + 1).includes('.')) return undefined;
    }
  }
  return Object.assign(new Error(`server certificate SANs [${sans.join(', ')}] match none of subjectAltNames [${wanted.join(', ')}]`), { code: ALTNAME_INVALID });
}
