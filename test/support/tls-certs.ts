/**
 * Self-signed certificates for HTTPS tests, made in JavaScript (x509-gen.ts, @peculiar/x509): no
 * openssl CLI needed.
 */
import { generatePkiSync } from './x509-gen.js';

export interface TestCert {
  cn: string;
  certChain: string;
  privateKey: string;
}

/** One RSA-2048 self-signed certificate per name, with the CN and a DNS SAN of that name. */
export function makeCerts(names: string[]): TestCert[] {
  const { certs } = generatePkiSync(names.map((cn, i) => ({ name: String(i), cn, dns: [cn], key: 'rsa' as const })));
  return names.map((cn, i) => ({ cn, certChain: certs[String(i)].cert, privateKey: certs[String(i)].key }));
}
