/**
 * The process's mesh workload identity (its SPIFFE certificate, key and the mesh roots), as the
 * runtime uses it for Istio mTLS (`UpstreamTls.mode` ISTIO_MUTUAL). Set by the mesh client in the
 * primary (`mesh/identity/`) and sent to workers over IPC; replaced at each renewal. Connections
 * read it when they open (one `SecureContext` per certificate, shared by every handshake), so a
 * renewal needs no pool rebuild: open connections keep the old certificate, new ones get the new.
 */
import tls from 'node:tls';

/** The material as it travels (plain data, IPC-safe). */
export interface MeshIdentityMaterial {
  /** `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`. */
  spiffeId: string;
  /** Leaf first, then intermediates (PEM). */
  certChainPem: string;
  keyPem: string;
  /** The mesh trust anchors (PEM). */
  rootsPem: string;
  /** Expiry, ms since the epoch. */
  notAfter: number;
}

export interface MeshIdentity extends MeshIdentityMaterial {
  /** Client context: this certificate and key, verifying peers against `rootsPem` only. */
  secureContext: tls.SecureContext;
}

let current: MeshIdentity | null = null;

export function setMeshIdentity(material: MeshIdentityMaterial | null): void {
  current = material === null ? null : { ...material, secureContext: tls.createSecureContext({ cert: material.certChainPem, key: material.keyPem, ca: material.rootsPem, minVersion: 'TLSv1.2' }) };
}

/** The current identity, or null when the process has none (not a mesh client, or not yet issued). */
export function meshIdentity(): MeshIdentity | null {
  return current;
}
