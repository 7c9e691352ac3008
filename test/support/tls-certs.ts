/**
 * Self-signed certificates made by `openssl req` in a temp dir, for HTTPS tests.
 */

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestCert {
  cn: string;
  certChain: string;
  privateKey: string;
}

/** One RSA-2048 self-signed certificate per name, with the CN and a DNS SAN of that name. */
export function makeCerts(names: string[]): TestCert[] {
  const dir = mkdtempSync(join(tmpdir(), 'meshgate-tls-'));
  try {
    return names.map((cn, i) => {
      const key = join(dir, `${i}.key`);
      const crt = join(dir, `${i}.crt`);
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', crt, '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=DNS:${cn}`],
        { stdio: 'ignore', timeout: 20_000 },
      );
      return { cn, certChain: readFileSync(crt, 'utf8'), privateKey: readFileSync(key, 'utf8') };
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
