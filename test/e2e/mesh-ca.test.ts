/**
 * The mesh CA and Istio's certificate API (`meshgate control`, `meshgate token`), driven over real
 * TLS gRPC with @grpc/grpc-js and Istio's proto.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CLI, freePort, tempDir, waitFor } from '../helpers/gateway.js';
import { chainsTo, loadOrCreateCaDirectory } from '../../src/mesh/ca/ca.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import { splitPemCertificates, signatureParams, toCryptoPrivateKey, toCryptoPublicKey, x509 } from '../../src/mesh/ca/keys.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { IdentityClient, renewalDelayMs } from '../../src/mesh/identity/client.js';
import { istioCertificateClient, istioCertificateService, type IstioCertificateResponse } from '../../src/mesh/grpc/istioca-proto.js';
import { caServiceHandlers } from '../../src/mesh/grpc/ca-service.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { Logger } from '../../src/lib/log.js';
import { makePlugInCa } from '../support/mesh-pki.js';

const quiet = new Logger('error');

async function control(caDir: string, certTtlSeconds = 86400): Promise<ControlPlane> {
  const configDir = tempDir('meshgate-cp-config-');
  return startControlPlane({ configDir, caDir, listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', adminPort: 0, certTtlSeconds, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: quiet });
}

/** A CSR as istio-agent sends it (RSA 2048 by default, or ECDSA P-256). */
async function csrFor(uri: string, type: 'ec' | 'rsa' = 'ec'): Promise<string> {
  const { privateKey } = type === 'rsa' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: { privateKey: await toCryptoPrivateKey(privateKey), publicKey: await toCryptoPublicKey(privateKey) },
    signingAlgorithm: signatureParams(privateKey),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true)],
  });
  return csr.toString('pem');
}

/** One raw CreateCertificate call, verifying the server as istiod.istio-system.svc while dialling 127.0.0.1. */
async function createCertificate(cp: ControlPlane, token: string | null, csr: string, ttl = 0): Promise<IstioCertificateResponse> {
  const Client = istioCertificateClient();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createSsl(Buffer.from(cp.ca.rootCertPem)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc', 'grpc.default_authority': 'istiod.istio-system.svc' }) as unknown as grpc.Client & Record<string, (...a: unknown[]) => void>;
  const md = new grpc.Metadata();
  if (token !== null) md.set('authorization', `Bearer ${token}`);
  try {
    return await new Promise((resolve, reject) => client.CreateCertificate({ csr, validity_duration: String(ttl) }, md, { deadline: Date.now() + 15_000 }, (err: Error | null, res: IstioCertificateResponse) => (err ? reject(err) : resolve(res))));
  } finally {
    client.close();
  }
}

function uriSans(pem: string): string[] {
  return (new X509Certificate(pem).subjectAltName ?? '').split(', ').filter((s) => s.startsWith('URI:')).map((s) => s.slice(4));
}

test('self-signed root: created on first start, reused afterwards, one winner when started together', async () => {
  const dir = path.join(tempDir('meshgate-ca-'), 'ca');
  const [a, b] = await Promise.all([loadOrCreateCaDirectory(dir, { trustDomain: 'cluster.local' }), loadOrCreateCaDirectory(dir, { trustDomain: 'cluster.local' })]);
  assert.equal(a.rootCertPem, b.rootCertPem, 'two concurrent starts ended with different roots');
  assert.deepEqual([a.source, b.source].sort(), ['self-signed', 'self-signed-created']);
  const root = new X509Certificate(readFileSync(path.join(dir, 'root-cert.pem')));
  assert.ok(root.ca, 'root is not a CA');
  assert.match(root.subject, /O=cluster\.local/);
  const again = await loadOrCreateCaDirectory(dir, { trustDomain: 'cluster.local' });
  assert.equal(again.source, 'self-signed');
  assert.equal(again.rootCertPem, a.rootCertPem, 'a restart made a new root');
});

test('meshgate token first, then control: the same root; the token prints alone and gets a certificate for its identity', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const out = execFileSync(process.execPath, [CLI, 'token', '--ca-dir', caDir, '--namespace', 'shop', '--service-account', 'cart', '--ttl', '10m'], { encoding: 'utf8' });
  assert.match(out, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, `stdout is not one JWT: ${out}`);
  const rootAfterToken = readFileSync(path.join(caDir, 'root-cert.pem'), 'utf8');
  const cp = await control(caDir);
  try {
    assert.equal(cp.ca.rootCertPem, rootAfterToken);
    const res = await createCertificate(cp, out.trim(), await csrFor('spiffe://cluster.local/ns/shop/sa/cart'));
    assert.deepEqual(uriSans(res.cert_chain[0]), ['spiffe://cluster.local/ns/shop/sa/cart']);
    assert.equal(res.cert_chain.at(-1), cp.ca.rootCertPem, 'root is not the last element');
  } finally {
    await cp.stop();
  }
});

test('the identity comes from the token, never from the CSR', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const cp = await control(caDir);
  try {
    const token = await issueToken(cp.ca.material.signingKey, { namespace: 'web', serviceAccount: 'frontend' }, 600);
    const res = await createCertificate(cp, token, await csrFor('spiffe://cluster.local/ns/istio-system/sa/istiod'));
    const leaf = new X509Certificate(res.cert_chain[0]);
    // istio-agent's default CSR key is RSA 2048: signed the same way.
    const rsa = await createCertificate(cp, token, await csrFor('spiffe://cluster.local/ns/web/sa/frontend', 'rsa'));
    assert.equal(new X509Certificate(rsa.cert_chain[0]).publicKey.asymmetricKeyType, 'rsa');
    assert.deepEqual(uriSans(rsa.cert_chain[0]), ['spiffe://cluster.local/ns/web/sa/frontend']);
    assert.deepEqual(uriSans(res.cert_chain[0]), ['spiffe://cluster.local/ns/web/sa/frontend'], 'the CSR chose the identity');
    // Istio's leaf profile.
    assert.equal(leaf.ca, false);
    assert.ok(!leaf.subject, `subject is ${leaf.subject}, want empty`);
    const cert = new x509.X509Certificate(res.cert_chain[0]);
    assert.equal(cert.getExtension(x509.SubjectAlternativeNameExtension)?.critical, true, 'URI SAN is not critical');
    const eku = cert.getExtension(x509.ExtendedKeyUsageExtension);
    assert.deepEqual([...(eku?.usages ?? [])].sort(), [x509.ExtendedKeyUsage.clientAuth, x509.ExtendedKeyUsage.serverAuth].sort());
    const backdate = Date.now() - new Date(leaf.validFrom).getTime();
    assert.ok(backdate > 60_000 && backdate < 180_000, `NotBefore is ${backdate} ms ago (Istio: 2 min)`);
  } finally {
    await cp.stop();
  }
});

test('missing, expired, forged or wrong-audience tokens are refused with UNAUTHENTICATED', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const cp = await control(caDir);
  try {
    const csr = await csrFor('spiffe://cluster.local/ns/a/sa/b');
    const sa = { namespace: 'a', serviceAccount: 'b' };
    const forgedKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const cases: [string, string | null][] = [
      ['no token', null],
      ['expired', await issueToken(cp.ca.material.signingKey, sa, -120)],
      ['forged (another key)', await issueToken(forgedKey, sa, 600)],
      ['wrong audience', await issueToken(cp.ca.material.signingKey, sa, 600, 'kubernetes')],
      ['garbage', 'not-a-jwt'],
    ];
    for (const [what, token] of cases) {
      await assert.rejects(createCertificate(cp, token, csr), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED && /authenticate failure/.test(e.details), `${what}: not refused as UNAUTHENTICATED`);
    }
    const good = await issueToken(cp.ca.material.signingKey, sa, 600);
    await assert.rejects(createCertificate(cp, good, csr, 91 * 24 * 3600), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT && /max allowed TTL/.test(e.details), 'a TTL over 90 d was not an error');
    await assert.rejects(createCertificate(cp, good, '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n'), (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT);
  } finally {
    await cp.stop();
  }
});

test('plug-in CA with an intermediate: the chain is served as Istio does and verifies (JS and openssl)', async () => {
  const caDir = tempDir('meshgate-plugin-ca-');
  const { root, intermediate } = await makePlugInCa(caDir);
  const cp = await control(caDir);
  try {
    assert.equal(cp.ca.material.source, 'plug-in');
    const token = await issueToken(cp.ca.material.signingKey, { namespace: 'default', serviceAccount: 'bookinfo' }, 600);
    const res = await createCertificate(cp, token, await csrFor('x'));
    // leaf, then cert-chain.pem one certificate per element, then root-cert.pem.
    assert.equal(res.cert_chain.length, 4);
    assert.equal(res.cert_chain[1], intermediate.certPem);
    assert.equal(res.cert_chain[3], root.certPem);
    const leaf = new X509Certificate(res.cert_chain[0]);
    assert.ok(chainsTo(leaf, [new X509Certificate(intermediate.certPem)], [new X509Certificate(root.certPem)]), 'JS chain verification failed');
    const hasOpenssl = spawnSync('openssl', ['version']).status === 0;
    if (!hasOpenssl) {
      console.log('# skipped openssl verify: install openssl (apt-get install openssl)');
      return;
    }
    const work = tempDir('meshgate-verify-');
    writeFileSync(path.join(work, 'leaf.pem'), res.cert_chain[0]);
    writeFileSync(path.join(work, 'chain.pem'), res.cert_chain.slice(1, -1).join(''));
    writeFileSync(path.join(work, 'root.pem'), root.certPem);
    const v = spawnSync('openssl', ['verify', '-CAfile', path.join(work, 'root.pem'), '-untrusted', path.join(work, 'chain.pem'), '-purpose', 'sslclient', path.join(work, 'leaf.pem')], { encoding: 'utf8' });
    assert.equal(v.status, 0, `openssl verify failed: ${v.stdout}${v.stderr}`);
  } finally {
    await cp.stop();
  }
});

test('short TTL: the certificate lives --cert-ttl and the client renews it at half its life', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const cp = await control(caDir, 4);
  const work = tempDir('meshgate-token-');
  const tokenFile = path.join(work, 'token');
  writeFileSync(tokenFile, await issueToken(cp.ca.material.signingKey, { namespace: 'ns1', serviceAccount: 'sa1' }, 600));
  const seen: number[] = [];
  const client = new IdentityClient({ address: `127.0.0.1:${cp.grpcPort}`, rootCertPem: cp.ca.rootCertPem, tokenFile, namespace: 'ns1', serviceAccount: 'sa1', trustDomain: 'cluster.local', ttlSeconds: 86400, log: quiet, onCertificate: (m) => seen.push(m.notAfter) });
  try {
    const first = await client.start(15_000);
    const life = first.notAfter - Date.now();
    assert.ok(life > 1000 && life <= 4000, `lifetime ${life} ms, want about 4 s (the request asked 24 h; --cert-ttl caps it)`);
    await waitFor(() => client.renewals >= 2, 15_000, 'two renewals');
    assert.ok(seen[1] > seen[0], 'the renewed certificate does not expire later');
    // Renewal happened before 90 % of the first certificate's life.
    assert.ok(seen.length >= 2);
  } finally {
    client.stop();
    await cp.stop();
  }
  assert.equal(renewalDelayMs(0, 1000, 0.5, 0), 500);
  assert.equal(renewalDelayMs(0, 1000, 0.95, 0), 900, 'never later than 90 %');
});

test('meshgate control: /ready 200 once the CA is loaded and the first snapshot translated; the serving cert names istiod.istio-system.svc', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const configDir = tempDir('meshgate-cp-config-');
  const [grpcPort, adminPort] = [await freePort(), await freePort()];
  const proc = spawn(process.execPath, [CLI, 'control', '--config', configDir, '--ca-dir', caDir, '--listen', `127.0.0.1:${grpcPort}`, '--admin-port', String(adminPort), '--cert-ttl', '1h'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stderr.on('data', (d: Buffer) => (out += d));
  try {
    await waitFor(async () => (await fetch(`http://127.0.0.1:${adminPort}/ready`)).status === 200, 20_000, `control /ready (output: ${out})`);
    const tls = await import('node:tls');
    const root = readFileSync(path.join(caDir, 'root-cert.pem'), 'utf8');
    const peer = await new Promise<X509Certificate>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: grpcPort, ca: root, servername: 'istiod.istio-system.svc', ALPNProtocols: ['h2'] }, () => {
        const c = s.getPeerX509Certificate()!;
        s.destroy();
        resolve(c);
      });
      s.once('error', reject);
    });
    assert.match(peer.subjectAltName ?? '', /DNS:istiod\.istio-system\.svc/);
    assert.ok(chainsTo(peer, [], splitPemCertificates(root).map((p) => new X509Certificate(p))));
  } finally {
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
  }
});

test('the identity client refuses a control plane that does not chain to its mesh root', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const otherDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const cp = await control(caDir);
  const other = await loadOrCreateCaDirectory(otherDir, { trustDomain: 'cluster.local' });
  const work = tempDir('meshgate-token-');
  const tokenFile = path.join(work, 'token');
  writeFileSync(tokenFile, await issueToken(cp.ca.material.signingKey, { namespace: 'ns1', serviceAccount: 'sa1' }, 600));
  const client = new IdentityClient({ address: `127.0.0.1:${cp.grpcPort}`, rootCertPem: other.rootCertPem, tokenFile, namespace: 'ns1', serviceAccount: 'sa1', trustDomain: 'cluster.local', ttlSeconds: 600, log: quiet, onCertificate: () => {}, callTimeoutMs: 5000 });
  try {
    await assert.rejects(client.fetch(), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE, 'a control plane outside the mesh root was trusted');
  } finally {
    client.stop();
    await cp.stop();
  }
});

test('the identity client refuses a control plane whose certificate does not name istiod.istio-system.svc', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const cp = await control(caDir);
  // Same CA, same API, but a serving certificate for another name.
  const impostor = new grpc.Server();
  impostor.addService(istioCertificateService(), caServiceHandlers({ ca: () => cp.ca, authenticator: { authenticate: async () => ({ namespace: 'ns1', serviceAccount: 'sa1' }) }, trustDomain: 'cluster.local', certTtlSeconds: 600, log: quiet }));
  const serving = await cp.ca.issueServing(['not-istiod.example.com'], 600);
  const port = await new Promise<number>((resolve, reject) => impostor.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(serving.certChainPem), private_key: Buffer.from(serving.keyPem) }], false), (e, p) => (e ? reject(e) : resolve(p))));
  const work = tempDir('meshgate-token-');
  const tokenFile = path.join(work, 'token');
  writeFileSync(tokenFile, 'unused');
  const client = new IdentityClient({ address: `127.0.0.1:${port}`, rootCertPem: cp.ca.rootCertPem, tokenFile, namespace: 'ns1', serviceAccount: 'sa1', trustDomain: 'cluster.local', ttlSeconds: 600, log: quiet, onCertificate: () => {}, callTimeoutMs: 5000 });
  try {
    await assert.rejects(client.fetch(), (e: grpc.ServiceError) => e.code === grpc.status.UNAVAILABLE, 'a serving certificate without istiod.istio-system.svc was accepted');
  } finally {
    client.stop();
    impostor.forceShutdown();
    await cp.stop();
  }
});

test('the control plane renews its serving certificate without rebinding', async () => {
  const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
  const cp = await startControlPlane({ configDir: tempDir('meshgate-cp-config-'), caDir, listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', adminPort: 0, certTtlSeconds: 600, servingTtlSeconds: 3, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: quiet });
  const tls = await import('node:tls');
  const serial = () =>
    new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: cp.grpcPort, ca: cp.ca.rootCertPem, servername: 'istiod.istio-system.svc', ALPNProtocols: ['h2'] }, () => {
        const c = s.getPeerX509Certificate()!;
        s.destroy();
        resolve(c.serialNumber);
      });
      s.once('error', reject);
    });
  try {
    const first = await serial();
    await waitFor(async () => (await serial()) !== first, 15_000, 'a new serving certificate');
    // Clients still get certificates after the swap.
    const token = await issueToken(cp.ca.material.signingKey, { namespace: 'a', serviceAccount: 'b' }, 600);
    const res = await createCertificate(cp, token, await csrFor('x'));
    assert.ok(res.cert_chain.length >= 2);
  } finally {
    await cp.stop();
  }
});
