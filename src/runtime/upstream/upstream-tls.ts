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
 * it must name the SNI (Istio's automatic SAN validation, VERIFY_CERTIFICATE_AT_CLIENT); only an
 * IP-address SNI (never sent) leaves the chain alone.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import tls, { checkServerIdentity, type ConnectionOptions, type PeerCertificate } from 'node:tls';
import type { Pool } from 'undici';
import type { PemSource, UpstreamProtocol, UpstreamTls } from '../../ir/types.js';
import { meshIdentity } from './mesh-identity.js';

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
  /**
   * ISTIO_MUTUAL only: the `tls.connect` options of one new connection, built when it opens from the
   * current workload identity (so a renewed certificate needs no pool rebuild), or the Error that
   * fails it (no identity yet: `MG_MESH_NO_IDENTITY`). `connect` is then an undici connector using it.
   */
  istio?: () => ConnectionOptions | Error;
}

/**
 * `protocol` picks Istio's ALPN for ISTIO_MUTUAL (`TCP` for raw TCP proxying); `connectTimeoutMs`
 * bounds the handshake of the ISTIO_MUTUAL connector. Both are ignored for the other modes.
 */
export function upstreamTlsOptions(tls: UpstreamTls, protocol: UpstreamProtocol | 'TCP' = 'TCP', connectTimeoutMs = 10_000): UpstreamTlsOptions {
  if (tls.mode === 'ISTIO_MUTUAL') return istioMutualOptions(tls, protocol, connectTimeoutMs);
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
  /**
   * ISTIO_MUTUAL: the options of each new connection, from the workload certificate current when it
   * opens (a renewal needs no client rebuild), or the Error that fails it; null = `options` as they are.
   */
  perConnection: (() => ConnectionOptions | Error) | null;
  /** The ALPN list to offer instead of the client's own (Istio's `istio-*` entries); null = the client's. */
  alpn: string[] | null;
}

export function upstreamTlsConnect(tls: UpstreamTls, protocol: UpstreamProtocol = 'HTTP1'): UpstreamTlsConnect {
  if (tls.mode === 'ISTIO_MUTUAL') {
    const istio = istioConnectionOptions(tls, protocol);
    return { options: {}, failure: null, servername: tls.sni, perConnection: istio.build, alpn: istio.alpn };
  }
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
    return { options, failure, servername: tls.sni, perConnection: null, alpn: null };
  }
  if (!tls.insecureSkipVerify) {
    const wanted = tls.subjectAltNames;
    // Without subjectAltNames the certificate must name the SNI (Istio's auto SAN validation with
    // VERIFY_CERTIFICATE_AT_CLIENT; ingress-nginx proxy_ssl_name): a trusted chain alone would accept
    // any certificate of the CA, for any name. An IP-address SNI is not sent, and the chain alone counts.
    const sni = tls.sni;
    options.checkServerIdentity =
      wanted.length > 0 ? (_host: string, cert: PeerCertificate): Error | undefined => checkSans(wanted, cert) : sni !== '' && isIP(sni) === 0 ? (_host: string, cert: PeerCertificate): Error | undefined => checkServerIdentity(sni, cert) : chainOnly;
  }
  return { options, failure: null, servername: tls.sni, perConnection: null, alpn: null };
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

/**
 * Istio's client ALPN per upstream protocol (Envoy's istio.alpn filter; reference/mesh.md §2.5):
 * a sidecar selects its chain on the `istio*` entries and answers `h2` / `http/1.1`. TCP offers
 * `istio` alone here (`istio-peer-exchange` announces the metadata-exchange preamble): a sidecar's
 * TCP relays, which do the exchange, offer it themselves (tcp/tcp-listeners.ts, tcp/peer-exchange.ts).
 */
export const ISTIO_ALPN: Readonly<Record<UpstreamProtocol | 'TCP', readonly string[]>> = {
  HTTP1: ['istio-http/1.1', 'istio', 'http/1.1'],
  HTTP2: ['istio-h2', 'istio', 'h2'],
  TCP: ['istio'],
};

/** Error code of a server whose SPIFFE ID is not among the expected ones. */
export const SPIFFE_MISMATCH = 'MG_TLS_SPIFFE_MISMATCH';
/** Error code of an ISTIO_MUTUAL connection attempted before the process has a workload certificate. */
export const NO_MESH_IDENTITY = 'MG_MESH_NO_IDENTITY';

/** The per-connection options of ISTIO_MUTUAL (current workload certificate, Istio ALPN, SPIFFE check). */
function istioConnectionOptions(ir: UpstreamTls, protocol: UpstreamProtocol | 'TCP'): { build: () => ConnectionOptions | Error; alpn: string[] } {
  const wanted = ir.subjectAltNames;
  const checkServerIdentity = (_host: string, cert: PeerCertificate): Error | undefined => checkSpiffe(wanted, cert);
  const ALPNProtocols = [...ISTIO_ALPN[protocol]];
  // Node refuses an IP address as SNI; Istio's SNI is always `outbound_.<port>_.<subset>_.<fqdn>`.
  const servername = ir.sni !== '' && isIP(ir.sni) === 0 ? ir.sni : undefined;
  const build = (): ConnectionOptions | Error => {
    const id = meshIdentity();
    if (id === null) return Object.assign(new Error(`${NO_MESH_IDENTITY}: no workload certificate (yet) for Istio mTLS`), { code: NO_MESH_IDENTITY });
    return { secureContext: id.secureContext, servername, ALPNProtocols, rejectUnauthorized: true, checkServerIdentity };
  };
  return { build, alpn: ALPNProtocols };
}

/** ISTIO_MUTUAL for the WebSocket and TCP paths (`istio`) and for undici (`connect`, ext-authz). */
function istioMutualOptions(ir: UpstreamTls, protocol: UpstreamProtocol | 'TCP', connectTimeoutMs: number): UpstreamTlsOptions {
  const { build } = istioConnectionOptions(ir, protocol);
  const connect = (opts: { hostname: string; port: string | number }, callback: (err: Error | null, socket: tls.TLSSocket | null) => void): void => {
    const o = build();
    if (o instanceof Error) return void callback(o, null);
    const socket = tls.connect({ ...o, host: opts.hostname, port: Number(opts.port) });
    socket.setNoDelay(true);
    let settled = false;
    const finish = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.off('error', finish);
      if (err !== null) {
        socket.destroy();
        return void callback(err, null);
      }
      socket.setKeepAlive(true, 60_000);
      callback(null, socket);
    };
    const timer = setTimeout(() => finish(Object.assign(new Error('Connect Timeout Error'), { code: 'UND_ERR_CONNECT_TIMEOUT' })), connectTimeoutMs);
    socket.once('secureConnect', () => finish(null));
    socket.once('error', finish);
  };
  return { connect: connect as unknown as NonNullable<Pool.Options['connect']>, servername: ir.sni, istio: build };
}

/**
 * Istio's server identity check: the certificate's URI SANs must include one of `wanted` (exact,
 * case-sensitive as SPIFFE IDs are); `[]` = the mesh chain alone (a service without known accounts).
 */
function checkSpiffe(wanted: string[], cert: PeerCertificate): Error | undefined {
  if (wanted.length === 0) return undefined;
  const uris = (cert.subjectaltname ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
  if (uris.some((u) => wanted.includes(u))) return undefined;
  return Object.assign(new Error(`${SPIFFE_MISMATCH}: server SPIFFE ID [${uris.join(', ')}] is none of [${wanted.join(', ')}]`), { code: SPIFFE_MISMATCH });
}
