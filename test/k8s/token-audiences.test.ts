/**
 * TokenReview audiences, as istiod checks them (security/pkg/k8s/tokenreview, TOKEN_AUDIENCES):
 * the control plane sends the expected audiences in `spec.audiences` and accepts a caller only when
 * the API server's `status.audiences` intersects them. A review that comes back authenticated but
 * without an audience (a token for the API server only, or a server that ignores audiences) is
 * refused. `--token-audiences` sets the list (default `istio-ca`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import { startCluster } from './harness.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { TokenReviewAuthenticator } from '../../src/control/mesh-kubernetes.js';
import { parseControlOptions, parseTokenAudiences } from '../../src/cli/mesh-commands.js';
import { Logger } from '../../src/lib/log.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { istioCertificateClient, type IstioCertificateResponse } from '../../src/mesh/grpc/istioca-proto.js';
import { signatureParams, toCryptoPrivateKey, toCryptoPublicKey, x509 } from '../../src/mesh/ca/keys.js';
import type { ApiClient } from '../../src/providers/kubernetes/api-client.js';
import { issueToken, TokenError, TokenVerifier } from '../../src/mesh/ca/token.js';

const quiet = new Logger('error');
const SA = { username: 'system:serviceaccount:bookinfo:reviews', groups: ['system:serviceaccounts', 'system:serviceaccounts:bookinfo', 'system:authenticated'] };

function start(client: ApiClient, tokenAudiences?: string[]): Promise<ControlPlane> {
  return startControlPlane({ configDir: '', caDir: '', kubernetes: { client, watchNamespaces: null }, listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', ...(tokenAudiences ? { tokenAudiences } : {}), adminPort: 0, certTtlSeconds: 3600, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: quiet });
}

/** A CreateCertificate call with `token` over the control plane's real gRPC port. */
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

/**
 * A fake API server that reviews tokens as a real one does: a token has audiences, and the review
 * is authenticated only when they intersect `spec.audiences` (or, with none requested, the API
 * server's own `https://kubernetes.default.svc`), returning the intersection in `status.audiences`.
 * `legacy-*` tokens come back from a server that is not audience-aware: no `status.audiences`.
 */
const TOKEN_AUDIENCES: Record<string, string[]> = {
  'tok-istio-ca': ['istio-ca'],
  'tok-mesh-example': ['mesh.example'],
  'tok-api-server': ['https://kubernetes.default.svc'],
};
function review(spec: { token?: string; audiences?: string[] }): Record<string, unknown> {
  const token = spec.token ?? '';
  if (token.startsWith('legacy-')) return { authenticated: true, user: SA };
  const has = TOKEN_AUDIENCES[token];
  if (has === undefined) return { authenticated: false, error: 'invalid bearer token' };
  const wanted = spec.audiences && spec.audiences.length > 0 ? spec.audiences : ['https://kubernetes.default.svc'];
  const both = has.filter((a) => wanted.includes(a));
  if (both.length === 0) return { authenticated: false, error: 'token audiences ["' + has.join('","') + '"] is invalid for the target audiences ["' + wanted.join('","') + '"]' };
  return { authenticated: true, audiences: both, user: SA };
}

test('TokenReview: the default audience istio-ca is requested and required; a review without audiences is refused', async () => {
  const reviews: { token?: string; audiences?: string[] }[] = [];
  const cluster = await startCluster({ tokenReview: (spec) => (reviews.push(spec), review(spec)) });
  const cp = await start(cluster.client);
  try {
    await call(cp, 'tok-istio-ca');
    assert.deepEqual(reviews.at(-1)?.audiences, ['istio-ca'], 'the TokenReview did not ask for istio-ca');
    for (const bad of ['tok-mesh-example', 'tok-api-server', 'legacy-token', 'nope']) {
      await assert.rejects(call(cp, bad), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED, `token ${bad} was not refused`);
    }
  } finally {
    await cp.stop();
    await cluster.close();
  }
});

test('TokenReview: --token-audiences replaces the list; a token for any one of them is accepted', async () => {
  const reviews: { token?: string; audiences?: string[] }[] = [];
  const cluster = await startCluster({ tokenReview: (spec) => (reviews.push(spec), review(spec)) });
  const cp = await start(cluster.client, ['mesh.example', 'istio-ca']);
  try {
    await call(cp, 'tok-mesh-example');
    assert.deepEqual(reviews.at(-1)?.audiences, ['mesh.example', 'istio-ca']);
    await call(cp, 'tok-istio-ca');
    for (const bad of ['tok-api-server', 'legacy-token']) {
      await assert.rejects(call(cp, bad), (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED, `token ${bad} was not refused`);
    }
  } finally {
    await cp.stop();
    await cluster.close();
  }
});

test('TokenReview: status.audiences must intersect the requested ones (a server answering for other audiences is refused)', async () => {
  // A misbehaving (or compromised) reviewer that authenticates with audiences the control plane did not ask for.
  const answers: Record<string, Record<string, unknown>> = {
    other: { authenticated: true, audiences: ['kubernetes'], user: SA },
    empty: { authenticated: true, audiences: [], user: SA },
    absent: { authenticated: true, user: SA },
    ok: { authenticated: true, audiences: ['kubernetes', 'istio-ca'], user: SA },
  };
  const cluster = await startCluster({ tokenReview: (spec) => answers[spec.token ?? ''] ?? { authenticated: false } });
  try {
    const auth = new TokenReviewAuthenticator(cluster.client);
    assert.deepEqual(await auth.authenticate('ok'), { namespace: 'bookinfo', serviceAccount: 'reviews' });
    for (const bad of ['other', 'empty', 'absent']) {
      await assert.rejects(auth.authenticate(bad), (e: unknown) => e instanceof TokenError && /audience/.test(e.message), `review "${bad}" was accepted`);
    }
  } finally {
    await cluster.close();
  }
});

test('--token-audiences: parsed from the flag, else TOKEN_AUDIENCES, else istio-ca', () => {
  const fail = (m: string): never => {
    throw new Error(m);
  };
  const cases: { desc: string; flag: string | undefined; env: NodeJS.ProcessEnv; want: string[] | RegExp }[] = [
    { desc: 'default', flag: undefined, env: {}, want: ['istio-ca'] },
    { desc: 'env', flag: undefined, env: { TOKEN_AUDIENCES: 'a,b' }, want: ['a', 'b'] },
    { desc: 'flag wins over env', flag: 'x, y,x', env: { TOKEN_AUDIENCES: 'a' }, want: ['x', 'y'] },
    { desc: 'empty entry', flag: 'a,,b', env: {}, want: /--token-audiences: "a,,b" is not a comma-separated list/ },
    { desc: 'empty flag', flag: '', env: {}, want: /--token-audiences/ },
  ];
  for (const c of cases) {
    if (c.want instanceof RegExp) assert.throws(() => parseTokenAudiences(c.flag, fail, c.env), c.want, c.desc);
    else assert.deepEqual(parseTokenAudiences(c.flag, fail, c.env), c.want, c.desc);
  }
  assert.deepEqual(parseControlOptions(['--kubernetes', '--token-audiences', 'istio-ca,mesh.example'], fail).tokenAudiences, ['istio-ca', 'mesh.example']);
});

test('directory mode: the JWT aud must be one of the configured audiences', async () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const sa = { namespace: 'bookinfo', serviceAccount: 'reviews' };
  const forMesh = await issueToken(privateKey, sa, 600, 'mesh.example');
  const forCa = await issueToken(privateKey, sa, 600);
  await assert.rejects(new TokenVerifier(privateKey).verify(forMesh), TokenError, 'a token for mesh.example passed the default istio-ca check');
  assert.deepEqual(await new TokenVerifier(privateKey).verify(forCa), sa);
  assert.deepEqual(await new TokenVerifier(privateKey, ['istio-ca', 'mesh.example']).verify(forMesh), sa);
});
