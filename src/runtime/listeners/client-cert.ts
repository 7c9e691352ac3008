/**
 * Client certificates at the gateway (Istio MUTUAL / OPTIONAL_MUTUAL). OpenSSL verifies the chain
 * during the handshake (dates, signatures, the `sslclient` purpose, so a certificate without the
 * clientAuth EKU fails) against the CAs of the listener; the server never rejects at handshake
 * level because the chain (and so the policy) is only known from the SNI. Right after the
 * handshake, `checkClientCertificate` applies the selected chain's policy: a certificate is required
 * or optional, it must chain to one of *that chain's* CAs (another chain's CA on the same port is
 * not enough) and carry one of the required SANs.
 */

import { X509Certificate } from 'node:crypto';
import type { PeerCertificate, TLSSocket } from 'node:tls';
import type { ClientValidation, PemSource } from '../../ir/types.js';

export interface CompiledClientValidation {
  required: boolean;
  /** PEM bundle handed to OpenSSL. */
  caPem: string;
  cas: X509Certificate[];
  subjectAltNames: Set<string>;
  /** Revocation list(s) handed to OpenSSL with the CAs (read by `secureContextOptions`); null = none. */
  crl: PemSource | null;
  /** Most intermediates between the certificate and the trust anchor; null = no limit. */
  verifyDepth: number | null;
  /** Failures are kept as the connection's verdict for the route policy instead of closing it. */
  deferFailures: boolean;
  caSecret: string;
}

/** The outcome of client-certificate verification on a connection whose chain defers failures (nginx `$ssl_client_verify`). */
export interface ClientCertificateVerdict {
  status: 'SUCCESS' | 'FAILED' | 'NONE';
  /** Why verification failed ('' unless FAILED). */
  reason: string;
  /** The CA Secret of the chain that verified it. */
  caSecret: string;
}

/**
 * The verdict rides on the socket itself (a symbol property): node:http2 hands out a Proxy of the
 * session's socket that forwards property reads, so a WeakMap keyed by the socket would miss.
 */
const kVerdict = Symbol('meshgate.clientCertificateVerdict');
type WithVerdict = TLSSocket & { [kVerdict]?: ClientCertificateVerdict };

/** The verdict kept for a connection (chains with `deferFailures`); null = none kept. */
export function clientCertificateVerdict(socket: TLSSocket): ClientCertificateVerdict | null {
  return (socket as WithVerdict)[kVerdict] ?? null;
}

function keepVerdict(socket: TLSSocket, v: ClientCertificateVerdict): void {
  (socket as WithVerdict)[kVerdict] = v;
}

export function compileClientValidation(v: ClientValidation | null): CompiledClientValidation | null {
  if (v === null) return null;
  const blocks = v.caCertificates.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return { required: v.mode === 'REQUIRED', caPem: v.caCertificates, cas: blocks.map((b) => new X509Certificate(b)), subjectAltNames: new Set(v.subjectAltNames), crl: v.caCrl ?? null, verifyDepth: v.verifyDepth ?? null, deferFailures: v.deferFailures === true, caSecret: v.caSecret };
}

/** SAN entries of a certificate, as `DNS:a`, `URI:b`… split into their values. */
function sans(cert: X509Certificate): string[] {
  const raw = cert.subjectAltName;
  if (raw === undefined) return [];
  return raw.split(', ').map((e) => e.slice(e.indexOf(':') + 1));
}

/** The verified chain: the leaf, the intermediates, and the trust anchor when Node found it. */
function peerChain(socket: TLSSocket): X509Certificate[] {
  const chain: X509Certificate[] = [];
  let p: PeerCertificate & { issuerCertificate?: PeerCertificate } = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (p !== undefined && p.raw !== undefined && !seen.has(p.fingerprint256)) {
    seen.add(p.fingerprint256);
    chain.push(new X509Certificate(p.raw));
    p = p.issuerCertificate as PeerCertificate & { issuerCertificate?: PeerCertificate };
  }
  return chain;
}

/**
 * Intermediate CA certificates between the leaf and the trust anchor, as OpenSSL's verify depth
 * counts them (neither the leaf nor the self-signed anchor counts).
 */
function intermediates(chain: X509Certificate[]): number {
  const n = chain.length;
  if (n <= 1) return 0;
  const last = chain[n - 1];
  return last.subject === last.issuer && last.checkIssued(last) ? n - 2 : n - 1;
}

/** Whether `leaf` (with the intermediates the client sent) chains to one of `cas`. */
function chainsTo(chain: X509Certificate[], cas: X509Certificate[]): boolean {
  for (const cert of chain) {
    for (const ca of cas) {
      if (cert.fingerprint256 === ca.fingerprint256) return true;
      if (cert.checkIssued(ca) && cert.verify(ca.publicKey)) return true;
    }
  }
  return false;
}

/**
 * The chain's client-certificate policy for a finished handshake: null when the connection may
 * proceed, else why it is refused.
 */
export function checkClientCertificate(socket: TLSSocket, v: CompiledClientValidation): string | null {
  // The chain is read before anything calls getPeerX509Certificate(): on a server socket, Node 20's
  // getPeerX509Certificate() drops the intermediates from what getPeerCertificate(true) returns next.
  const chain = peerChain(socket);
  const leaf = chain.length > 0 ? chain[0] : undefined;
  if (leaf === undefined) {
    if (v.deferFailures) keepVerdict(socket, { status: 'NONE', reason: '', caSecret: v.caSecret });
    return v.required && !v.deferFailures ? 'no client certificate' : null;
  }
  const problem = certificateProblem(socket, chain, v);
  if (!v.deferFailures) return problem;
  // ingress-nginx: the connection goes on; the route's policy answers 400 (or the error page).
  keepVerdict(socket, { status: problem === null ? 'SUCCESS' : 'FAILED', reason: problem ?? '', caSecret: v.caSecret });
  return null;
}

function certificateProblem(socket: TLSSocket, chain: X509Certificate[], v: CompiledClientValidation): string | null {
  const leaf = chain[0];
  if (!socket.authorized) return `client certificate not verified: ${String(socket.authorizationError)}`;
  if (!chainsTo(chain, v.cas)) return 'client certificate not issued by this server\'s CA';
  // OpenSSL's X509_V_ERR_CERT_CHAIN_TOO_LONG, as nginx's ssl_verify_depth reports it.
  if (v.verifyDepth !== null && intermediates(chain) > v.verifyDepth) return 'certificate chain too long';
  if (v.subjectAltNames.size > 0 && !sans(leaf).some((s) => v.subjectAltNames.has(s))) return 'client certificate SAN not allowed';
  return null;
}
