import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import '../ca/reflect-polyfill.js';
import * as x509 from '@peculiar/x509';
import { loadOrCreateCaDirectory, MeshCa } from '../ca/ca.js';
import { workloadCsrPem } from './csr.js';

const ID = 'spiffe://cluster.local/ns/default/sa/reviews';

for (const [kind, key] of [
  ['EC P-256', generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey],
  ['RSA 2048', generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey],
] as const) {
  test(`workloadCsrPem (${kind}): a PKCS #10 request that an independent parser reads and verifies, with the SPIFFE ID as a critical URI SAN`, async () => {
    const pem = workloadCsrPem(key, ID);
    assert.match(pem, /^-----BEGIN CERTIFICATE REQUEST-----\n([A-Za-z0-9+/=]{1,64}\n)+-----END CERTIFICATE REQUEST-----\n$/);
    const csr = new x509.Pkcs10CertificateRequest(pem);
    assert.equal(await csr.verify(), true, 'the signature verifies with the public key it carries');
    assert.equal(csr.subject, '', 'empty subject, as istio-agent sends');
    const san = csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension | null;
    assert.ok(san, 'subjectAltName requested');
    assert.equal(san.critical, true);
    assert.deepEqual(san.names.items.map((n: x509.GeneralName) => [n.type, n.value]), [['url', ID]]);
    assert.ok(san instanceof x509.SubjectAlternativeNameExtension, 'read as a subjectAltName');
  });
}

test('workloadCsrPem: a long URI (DER long-form lengths) still parses', async () => {
  const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const long = `spiffe://cluster.local/ns/${'n'.repeat(63)}/sa/${'s'.repeat(200)}`;
  const csr = new x509.Pkcs10CertificateRequest(workloadCsrPem(key, long));
  assert.equal(await csr.verify(), true);
  assert.deepEqual((csr.getExtension('2.5.29.17') as x509.SubjectAlternativeNameExtension).names.items.map((n: x509.GeneralName) => n.value), [long]);
});

test('workloadCsrPem: the mesh CA signs it for the key it carries', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'mg-csr-'));
  try {
    const ca = new MeshCa(await loadOrCreateCaDirectory(path.join(dir, 'ca'), { trustDomain: 'cluster.local' }));
    const key = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const chain = await ca.signCsr(workloadCsrPem(key, ID), [ID], 3600);
    const leaf = new X509Certificate(chain[0]);
    assert.equal(leaf.checkPrivateKey(key), true);
    assert.match(leaf.subjectAltName ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/default\/sa\/reviews/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('workloadCsrPem: refuses a key it cannot sign a request with', () => {
  const key = generateKeyPairSync('ed25519').privateKey;
  assert.throws(() => workloadCsrPem(key, ID), /EC or RSA key, not ed25519/);
});
