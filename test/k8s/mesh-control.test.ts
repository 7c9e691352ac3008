/**
 * `meshgate control --kubernetes` against the fake API server: the CA from `cacerts`, else
 * `istio-ca-secret`, else a new root stored as `istio-ca-secret` (one winner when two replicas
 * start together); callers authenticated by TokenReview with audience istio-ca.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { startCluster } from './harness.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { Logger } from '../../src/lib/log.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { istioCertificateClient, type IstioCertificateResponse } from '../../src/mesh/grpc/istioca-proto.js';
import { signatureParams, toCryptoPrivateKey, toCryptoPublicKey, x509 } from '../../src/mesh/ca/keys.js';
import type { ApiClient } from '../../src/providers/kubernetes/api-client.js';
import { makePlugInCa } from '../support/mesh-pki.js';
import { tempDir } from '../helpers/gateway.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';

const quiet = new Logger('error');

function start(client: ApiClient): Promise<ControlPlane> {
  return startControlPlane({ configDir: '', caDir: '', kubernetes: { client, watchNamespaces: null }, listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', adminPort: 0, certTtlSeconds: 3600, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: quiet });
}

async function call(cp: ControlPlane, token: string): Promise<IstioCertificateResponse> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys: { privateKey: await toCryptoPrivateKey(privateKey), publicKey: await toCryptoPublicKey(privateKey) }, signingAlgorithm: signatureParams(privateKey) });
  const Client = istioCertificateClient();
  const client = new Client(`127.0.0.1:${cp.grpcPort}`, grpc.credentials.createSsl(Buffer.from(cp.ca.rootCertPem)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' }) as unknown as grpc.Client & Record<string, (...a: unknown[]) => void>;
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  try {
    return await new Promise((resolve, reject) => client.CreateCertificate({ csr: csr.toString('pem'), validity_duration: '0' }, md, { deadline: Date.now() + 15_000 }, (err: Error | null, res: IstioCertificateResponse) => (err ? reject(err) : resolve(res))));
  } finally {
    client.close();
  }
}

/** Tokens the fake API server accepts, as a TokenReview would report them. */
const TOKENS: Record<string, Record<string, unknown>> = {
  'tok-reviews': { authenticated: true, audiences: ['istio-ca'], user: { username: 'system:serviceaccount:bookinfo:reviews', groups: ['system:serviceaccounts', 'system:serviceaccounts:bookinfo', 'system:authenticated'] } },
  'tok-user': { authenticated: true, audiences: ['istio-ca'], user: { username: 'alice', groups: ['system:authenticated'] } },
  'tok-other-audience': { authenticated: true, audiences: ['kubernetes'], user: { username: 'system:serviceaccount:bookinfo:reviews', groups: ['system:serviceaccounts'] } },
};

test('Kubernetes mode: istio-ca-secret created once and reused; TokenReview decides the identity', async () => {
  const reviews: { token?: string; audiences?: string[] }[] = [];
  const cluster = await startCluster({ tokenReview: (spec) => (reviews.push(spec), TOKENS[spec.token ?? ''] ?? { authenticated: false, error: 'invalid bearer token' }) });
  const [a, b] = await Promise.all([start(cluster.client), start(cluster.client)]);
  try {
    assert.equal(a.ca.rootCertPem, b.ca.rootCertPem, 'two replicas ended with different roots');
    const secret = await cluster.get({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'istio-ca-secret', namespace: 'istio-system' } });
    assert.ok(secret, 'istio-ca-secret was not created');
    assert.equal((secret as { type?: string }).type, 'istio.io/ca-root');
    // The trust bundle lands in every namespace (the test namespace included).
    await a.rootCertPublished;
    const cm = (await cluster.get({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio-ca-root-cert', namespace: cluster.namespace } })) as { data?: Record<string, string> } | null;
    assert.equal(cm?.data?.['root-cert.pem'], a.ca.rootCertPem, 'istio-ca-root-cert not published');
    const res = await call(a, 'tok-reviews');
    assert.match(new X509Certificate(res.cert_chain[0]).subjectAltName ?? '', /URI:spiffe:\/\/cluster\.local\/ns\/bookinfo\/sa\/reviews/);
    assert.deepEqual(reviews.at(-1)?.audiences, ['istio-ca']);
    for (const bad of ['tok-user', 'tok-other-audience', 'nope']) {
      await assert.rejects(call(a, bad), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED, `${bad} was not refused`);
    }
  } finally {
    await a.stop();
    await b.stop();
  }
  // A restart reuses the stored root.
  const c = await start(cluster.client);
  try {
    assert.equal(c.ca.material.source, 'self-signed');
  } finally {
    await c.stop();
    await cluster.close();
  }
});

test('Kubernetes mode: the cacerts Secret (plug-in CA) wins over istio-ca-secret', async () => {
  const cluster = await startCluster();
  const dir = tempDir('meshgate-cacerts-');
  await makePlugInCa(dir);
  const file = (n: string) => Buffer.from(readFileSync(path.join(dir, n))).toString('base64');
  await cluster.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } });
  await cluster.apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'cacerts', namespace: 'istio-system' }, data: { 'ca-cert.pem': file('ca-cert.pem'), 'ca-key.pem': file('ca-key.pem'), 'cert-chain.pem': file('cert-chain.pem'), 'root-cert.pem': file('root-cert.pem') } });
  const cp = await start(cluster.client);
  try {
    assert.equal(cp.ca.material.source, 'plug-in');
    assert.equal(cp.ca.rootCertPem, readFileSync(path.join(dir, 'root-cert.pem'), 'utf8'));
  } finally {
    await cp.stop();
    await cluster.close();
  }
});
