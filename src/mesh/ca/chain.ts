/**
 * Certificate chains with node:crypto only (no @peculiar/x509): what a workload needs to check the
 * certificate it was issued, so the sidecar's proxy process does not load the ASN.1 stack.
 */
import type { X509Certificate } from 'node:crypto';

/** Every `CERTIFICATE` PEM block of `text`, each normalised to end with one newline. */
export function splitPemCertificates(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g)].map((m) => `${m[0]}\n`);
}

/** True when `leaf` verifies up to one of `roots`, using `intermediates` as needed. */
export function chainsTo(leaf: X509Certificate, intermediates: X509Certificate[], roots: X509Certificate[]): boolean {
  let current = leaf;
  for (let hops = 0; hops <= intermediates.length + 1; hops++) {
    if (roots.some((r) => current.checkIssued(r) && current.verify(r.publicKey))) return true;
    const next = intermediates.find((c) => c !== current && c.ca && current.checkIssued(c) && current.verify(c.publicKey));
    if (next === undefined) return false;
    current = next;
  }
  return false;
}
