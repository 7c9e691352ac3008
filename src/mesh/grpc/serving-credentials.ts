/**
 * The control plane's serving credentials, renewable without rebinding: a grpc-js certificate
 * provider held in memory. New handshakes use the latest certificate; open connections keep theirs.
 * (grpc-js `experimental.createCertificateProviderServerCredentials`; the provider serves both the
 * identity and the CA, so client certificates from the mesh are asked for but never required.)
 */
import * as grpc from '@grpc/grpc-js';

type Listener<T> = (update: T | null) => void;
type CaUpdate = { caCertificate: Buffer };
type IdentityUpdate = { certificate: Buffer; privateKey: Buffer };

export class MemoryCertificateProvider {
  #ca: CaUpdate | null = null;
  #identity: IdentityUpdate | null = null;
  readonly #caListeners = new Set<Listener<CaUpdate>>();
  readonly #identityListeners = new Set<Listener<IdentityUpdate>>();

  set(certChainPem: string, keyPem: string, caPem: string): void {
    this.#ca = { caCertificate: Buffer.from(caPem) };
    this.#identity = { certificate: Buffer.from(certChainPem), privateKey: Buffer.from(keyPem) };
    for (const l of this.#caListeners) l(this.#ca);
    for (const l of this.#identityListeners) l(this.#identity);
  }

  // A new listener hears the current value on the next tick: grpc-js registers its own watcher
  // only after adding the listeners, and a synchronous call would reach nobody.
  addCaCertificateListener(l: Listener<CaUpdate>): void {
    this.#caListeners.add(l);
    queueMicrotask(() => this.#caListeners.has(l) && this.#ca !== null && l(this.#ca));
  }
  removeCaCertificateListener(l: Listener<CaUpdate>): void {
    this.#caListeners.delete(l);
  }
  addIdentityCertificateListener(l: Listener<IdentityUpdate>): void {
    this.#identityListeners.add(l);
    queueMicrotask(() => this.#identityListeners.has(l) && this.#identity !== null && l(this.#identity));
  }
  removeIdentityCertificateListener(l: Listener<IdentityUpdate>): void {
    this.#identityListeners.delete(l);
  }

  credentials(): grpc.ServerCredentials {
    return grpc.experimental.createCertificateProviderServerCredentials(this, this, false);
  }
}
