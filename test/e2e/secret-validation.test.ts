/** A certificate Secret whose key does not match, or cannot sign for, its certificate is an error at validation (#12). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, type JsonWebKey } from 'node:crypto';
import { CLI, removeDir, serviceYaml, tempDir, writeConfig } from '../helpers/gateway.js';
import { generatePkiSync } from '../support/x509-gen.js';

function validate(dir: string) {
  const r = spawnSync(process.execPath, [CLI, 'validate', dir], { encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, out: r.stdout + r.stderr };
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

function config(cert: string, key: string): string {
  return `apiVersion: v1
kind: Secret
metadata: { name: web-tls, namespace: default }
type: kubernetes.io/tls
data: { tls.crt: ${b64(cert)}, tls.key: ${b64(key)} }
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: web, namespace: default }
spec:
  ingressClassName: meshgate
  tls: [{ hosts: [a.example.com], secretName: web-tls }]
  rules:
    - host: a.example.com
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
---
${serviceYaml('web', [9])}`;
}

test('validate: a key of another certificate, and a key whose private half is another key\'s, are MG_SECRET_INVALID errors', () => {
  const { certs } = generatePkiSync([{ name: 'a', dns: ['a.example.com'] }, { name: 'b', dns: ['a.example.com'] }]);
  // The public point of a's key with the private scalar of b's: it "matches" a's certificate
  // (checkPrivateKey compares public halves) but its signatures verify with b's key, not a's.
  const ja = createPrivateKey(certs.a.key).export({ format: 'jwk' });
  const jb = createPrivateKey(certs.b.key).export({ format: 'jwk' });
  const hybrid = createPrivateKey({ key: { ...ja, d: jb.d } as JsonWebKey, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' }).toString();
  const cases: [string, string, number, RegExp | null][] = [
    ['matching key', certs.a.key, 0, null],
    ['another certificate\'s key', certs.b.key, 1, /MG_SECRET_INVALID Ingress\/default\/web .*does not match the certificate/],
    ['a key that cannot sign for the certificate', hybrid, 1, /MG_SECRET_INVALID Ingress\/default\/web .*cannot sign for the certificate/],
  ];
  for (const [desc, key, code, want] of cases) {
    const dir = tempDir();
    try {
      writeConfig(dir, 'all.yaml', config(certs.a.cert, key));
      const r = validate(dir);
      assert.equal(r.code, code, `${desc}: expected exit ${code}, got ${r.code}\n${r.out}`);
      if (want) assert.match(r.out, want, desc);
    } finally {
      removeDir(dir);
    }
  }
});
