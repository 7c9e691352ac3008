/**
 * A small PKI made with the openssl CLI for mutual-TLS tests: two CAs, a server certificate and
 * client certificates (good, from the other CA, without the clientAuth EKU, with a given URI SAN).
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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
  const ossl = (args: string[]) => execFileSync('openssl', args, { stdio: 'ignore', timeout: 20_000 });
  const read = (name: string): Pem => ({ cert: readFileSync(join(dir, `${name}.crt`), 'utf8'), key: readFileSync(join(dir, `${name}.key`), 'utf8') });
  const ca = (name: string) =>
    ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.crt`)]);
  const leaf = (name: string, issuer: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', join(dir, `${name}.key`), '-out', join(dir, `${name}.csr`)]);
    ossl(['x509', '-req', '-in', join(dir, `${name}.csr`), '-CA', join(dir, `${issuer}.crt`), '-CAkey', join(dir, `${issuer}.key`), '-CAcreateserial', '-days', '2', '-extfile', join(dir, `${name}.ext`), '-out', join(dir, `${name}.crt`)]);
  };
  ca('ca-a');
  ca('ca-b');
  leaf('server', 'ca-a', `subjectAltName=${serverNames.map((n) => `DNS:${n}`).join(',')}\nextendedKeyUsage=serverAuth\n`);
  leaf('client-a', 'ca-a', 'subjectAltName=URI:spiffe://test/client-a\nextendedKeyUsage=clientAuth\n');
  leaf('client-other-san', 'ca-a', 'subjectAltName=URI:spiffe://test/other\nextendedKeyUsage=clientAuth\n');
  leaf('client-b', 'ca-b', 'subjectAltName=URI:spiffe://test/client-b\nextendedKeyUsage=clientAuth\n');
  leaf('client-no-eku', 'ca-a', 'subjectAltName=URI:spiffe://test/client-a\nextendedKeyUsage=serverAuth\n');
  return {
    caA: read('ca-a'),
    caB: read('ca-b'),
    server: read('server'),
    clientA: read('client-a'),
    clientOtherSan: read('client-other-san'),
    clientB: read('client-b'),
    clientNoEku: read('client-no-eku'),
    dir,
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
