/**
 * A small PKI for mutual-TLS tests, made in JavaScript (x509-gen.ts, @peculiar/x509; no openssl
 * CLI): two CAs, a server certificate and client certificates (good, from the other CA, without the
 * clientAuth EKU, with a given URI SAN). Each is also written to a temp dir (for curl).
 */

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generatePkiSync } from './x509-gen.js';

export interface Pem {
  cert: string;
  key: string;
}

export interface Pki {
  caA: Pem;
  caB: Pem;
  server: Pem;
  /** Issued by CA A, clientAuth, SAN URI spiffe://test/client-a. */
  clientA: Pem;
  /** Issued by CA A, clientAuth, SAN URI spiffe://test/other. */
  clientOtherSan: Pem;
  /** Issued by CA B. */
  clientB: Pem;
  /** Issued by CA A with only the serverAuth EKU. */
  clientNoEku: Pem;
  /** Files of every item, for curl (`<name>.crt`, `<name>.key`); removed by `cleanup`. */
  dir: string;
  cleanup(): void;
}

export function makePki(serverNames: string[]): Pki {
  const dir = mkdtempSync(join(tmpdir(), 'meshgate-pki-'));
  const { certs } = generatePkiSync([
    { name: 'ca-a', ca: true },
    { name: 'ca-b', ca: true },
    { name: 'server', issuer: 'ca-a', dns: serverNames, eku: ['serverAuth'] },
    { name: 'client-a', issuer: 'ca-a', uris: ['spiffe://test/client-a'], eku: ['clientAuth'] },
    { name: 'client-other-san', issuer: 'ca-a', uris: ['spiffe://test/other'], eku: ['clientAuth'] },
    { name: 'client-b', issuer: 'ca-b', uris: ['spiffe://test/client-b'], eku: ['clientAuth'] },
    { name: 'client-no-eku', issuer: 'ca-a', uris: ['spiffe://test/client-a'], eku: ['serverAuth'] },
  ]);
  for (const [name, p] of Object.entries(certs)) {
    writeFileSync(join(dir, `${name}.crt`), p.cert);
    writeFileSync(join(dir, `${name}.key`), p.key);
  }
  return {
    caA: certs['ca-a'],
    caB: certs['ca-b'],
    server: certs.server,
    clientA: certs['client-a'],
    clientOtherSan: certs['client-other-san'],
    clientB: certs['client-b'],
    clientNoEku: certs['client-no-eku'],
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
