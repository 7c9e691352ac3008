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
}

export function compileClientValidation(v: ClientValidation | null): CompiledClientValidation | null {
  if (v === null) return null;
  const blocks = v.caCertificates.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return { required: v.mode === 'REQUIRED', caPem: v.caCertificates, cas: blocks.map((b) => new X509Certificate(b)), subjectAltNames: new Set(v.subjectAltNames), crl: v.caCrl ?? null };
}

/** SAN entries of a certificate, as `DNS:a`, `URI:b`… split into their values. */
function sans(cert: X509Certificate): string[] {
  const raw = cert.subjectAltName;
  if (raw === undefined) return [];
  return raw.split(', ').map((e) => e.slice(e.indexOf(':') + 1));
}

/** Whether `leaf` (with the intermediates the client sent) chains to one of `cas`. */
function chainsTo(socket: TLSSocket, cas: X509Certificate[]): boolean {
  const chain: X509Certificate[] = [];
  let p: PeerCertificate & { issuerCertificate?: PeerCertificate } = socket.getPeerCertificate(true);
  const seen = new Set<string>();
  while (p !== undefined && p.raw !== undefined && !seen.has(p.fingerprint256)) {
    seen.add(p.fingerprint256);
    chain.push(new X509Certificate(p.raw));
    p = p.issuerCertificate as PeerCertificate & { issuerCertificate?: PeerCertificate };
  }
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
  const leaf = socket.getPeerX509Certificate();
  if (leaf === undefined) return v.required ? 'no client certificate' : null;
  if (!socket.authorized) return `client certificate not verified: ${String(socket.authorizationError)}`;
  if (!chainsTo(socket, v.cas)) return 'client certificate not issued by this server\'s CA';
  if (v.subjectAltNames.size > 0 && !sans(leaf).some((s) => v.subjectAltNames.has(s))) return 'client certificate SAN not allowed';
  return null;
}
