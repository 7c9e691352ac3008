/**
 * SecureContexts cached by content (key pair + TLS settings) across swaps: an unchanged
 * certificate keeps its context, a replaced one gets a new context that new handshakes use.
 */

import { readFileSync } from 'node:fs';
import { constants as cryptoConstants } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { PemSource } from '../../ir/types.js';
import type { CompiledCertificate, CompiledSnapshot, CompiledTls } from '../compile/types.js';

export class TlsContextCache {
  #byKey = new Map<string, SecureContext>();
  /**
   * The contexts of the previous snapshot, until the next `prepare`: listeners that left with it
   * pin theirs (`pin`) so the handshakes they still run finish with the certificate they started with.
   */
  #previous = new Map<string, SecureContext>();

  /**
   * Builds the contexts of every certificate in the snapshot (reusing cached ones) and forgets
   * the others. Returns one message per certificate that could not be loaded; handshakes that
   * would need it fail.
   */
  prepare(snapshot: CompiledSnapshot): string[] {
    const errors: string[] = [];
    const next = new Map<string, SecureContext>();
    for (const l of snapshot.listeners) {
      for (const chain of l.chains) {
        if (chain.tls === null) continue;
        for (const cert of chain.tls.certificates) {
          if (next.has(cert.contextKey)) continue;
          const cached = this.#byKey.get(cert.contextKey);
          if (cached !== undefined) {
            next.set(cert.contextKey, cached);
            continue;
          }
          try {
            next.set(cert.contextKey, createSecureContext(secureContextOptions(chain.tls, cert)));
          } catch (err) {
            errors.push(`listener ${l.name} chain ${chain.name} certificate ${cert.secret}: ${(err as Error).message}`);
          }
        }
      }
    }
    this.#previous = this.#byKey;
    this.#byKey = next;
    return errors;
  }

  get(cert: CompiledCertificate): SecureContext | undefined {
    return this.#byKey.get(cert.contextKey);
  }

  /** The contexts of a listener's certificates as the current or the previous snapshot had them, by context key. */
  pin(chains: readonly { tls: CompiledTls | null }[]): Map<string, SecureContext> {
    const pinned = new Map<string, SecureContext>();
    for (const chain of chains) {
      for (const cert of chain.tls?.certificates ?? []) {
        const ctx = this.#byKey.get(cert.contextKey) ?? this.#previous.get(cert.contextKey);
        if (ctx !== undefined) pinned.set(cert.contextKey, ctx);
      }
    }
    return pinned;
  }
}

/**
 * No session tickets where client certificates are checked: a resumed session carries only the
 * client's leaf certificate (OpenSSL keeps no peer chain in the session), so the chain's own CAs and
 * the verify depth (client-cert.ts) could not be checked again; every such connection gets a full
 * handshake instead.
 */
export const NO_RESUMPTION = cryptoConstants.SSL_OP_NO_TICKET;

export function secureContextOptions(tls: CompiledTls, cert: CompiledCertificate | null) {
  return {
    minVersion: tls.minVersion,
    maxVersion: tls.maxVersion,
    ciphers: tls.ciphers,
    honorCipherOrder: true,
    ...(cert === null ? {} : { cert: cert.certChain, key: cert.privateKey }),
    // Client certificates are verified against these CAs (and their names sent in CertificateRequest).
    ...(tls.clientValidation === null ? {} : { ca: tls.clientValidation.caPem, secureOptions: NO_RESUMPTION }),
    // Revoked client certificates are not authorized. A CRL file is read here, when the context is
    // built; an unreadable one throws, so the chain's handshakes fail rather than skip the check.
    ...(tls.clientValidation?.crl == null ? {} : { crl: readCrl(tls.clientValidation.crl) }),
  };
}

function readCrl(src: PemSource): string {
  return src.kind === 'inline' ? src.pem : readFileSync(src.path, 'utf8');
}
