/**
 * JWT at the edge, end to end: the runtime on loopback, a JWKS server we run (and rotate, stop,
 * flood), tokens made with `jose`, a recording upstream. Forged, expired, not-yet-valid, `alg: none`,
 * HS/RS confusion, wrong issuer or audience: 401 and nothing reaches the upstream.
 */

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type CryptoKey } from 'jose';
import type { AuthorizationPolicy, JwtRule } from '../../src/ir/types.js';
import { JWKS_SETTINGS, remoteJwks, resetJwksCache } from '../../src/runtime/filters/jwt.js';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { request } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { startRecordingUpstream, type RecordingUpstream } from '../security/harness.js';

const ISS = 'https://issuer.test';
const SRC = { kind: 'RequestAuthentication', namespace: 'istio-system', name: 'jwt', file: null, line: null };

interface Jwks {
  url: string;
  keys: JWK[];
  fetches: number;
  /** 'ok' | 'down' (500) | 'slow' (never answers) | 'huge' */
  mode: string;
  close(): Promise<void>;
}

async function startJwks(): Promise<Jwks> {
  const state = { keys: [] as JWK[], fetches: 0, mode: 'ok' };
  const server = http.createServer((req, res) => {
    state.fetches++;
    if (state.mode === 'down') return void res.writeHead(500).end();
    if (state.mode === 'slow') return;
    if (state.mode === 'huge') return void res.writeHead(200, { 'content-type': 'application/json' }).end(`{"keys":[],"pad":"${'x'.repeat(2 * 1024 * 1024)}"}`);
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: state.keys }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const j: Jwks = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`,
    get keys() {
      return state.keys;
    },
    set keys(k) {
      state.keys = k;
    },
    get fetches() {
      return state.fetches;
    },
    set fetches(n) {
      state.fetches = n;
    },
    get mode() {
      return state.mode;
    },
    set mode(m) {
      state.mode = m;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
  return j;
}

function rule(jwksUri: string, extra: Partial<JwtRule> = {}): JwtRule {
  return {
    name: 'requestauthentication/istio-system/jwt/jwt/0',
    source: SRC,
    issuer: ISS,
    audiences: ['web'],
    jwks: null,
    jwksUri,
    jwksTimeoutMs: 1000,
    fromHeaders: [{ name: 'authorization', prefix: 'Bearer ' }],
    fromParams: ['access_token'],
    fromCookies: ['session'],
    outputPayloadToHeader: 'x-jwt-payload',
    outputClaimToHeaders: [{ header: 'x-user', claim: 'sub' }],
    forwardOriginalToken: false,
    spaceDelimitedClaims: [],
    ...extra,
  };
}

const REQUIRE_TOKEN_ON_SECURE: AuthorizationPolicy = {
  name: 'authorizationpolicy/istio-system/require-jwt',
  source: { ...SRC, kind: 'AuthorizationPolicy', name: 'require-jwt' },
  action: 'DENY',
  provider: null,
  dryRun: false,
  rules: [{ from: [[{ key: 'request.auth.principal', values: [], notValues: ['*'] }]], to: [[{ key: 'request.path', values: ['/secure/*'], notValues: [] }]], when: [] }],
};

describe('JWT authentication (RequestAuthentication) end to end', { timeout: 60_000 }, () => {
  let up: RecordingUpstream;
  let jwks: Jwks;
  let gw: RuntimeHarness;
  let port: number;
  let key: { privateKey: CryptoKey; publicKey: CryptoKey };
  let publicJwk: JWK;
  const saved = { ...JWKS_SETTINGS };

  async function sign(claims: Record<string, unknown> = {}, opts: { kid?: string; key?: CryptoKey; exp?: string | number; nbf?: number; iss?: string; aud?: string | string[] } = {}): Promise<string> {
    let b = new SignJWT({ sub: 'alice', ...claims })
      .setProtectedHeader({ alg: 'RS256', kid: opts.kid ?? 'k1' })
      .setIssuer(opts.iss ?? ISS)
      .setAudience(opts.aud ?? 'web')
      .setIssuedAt()
      .setExpirationTime(opts.exp ?? '5m');
    if (opts.nbf !== undefined) b = b.setNotBefore(opts.nbf);
    return b.sign(opts.key ?? key.privateKey);
  }

  const get = (path: string, headers: Record<string, string> | string[] = {}) => request(port, { path, host: 'api.test', headers });

  before(async () => {
    Object.assign(JWKS_SETTINGS, { unknownKidCooldownMs: 300, failureBackoffMs: 100, attempts: 1 });
    resetJwksCache();
    up = await startRecordingUpstream();
    jwks = await startJwks();
    key = await generateKeyPair('RS256');
    publicJwk = { ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    jwks.keys = [publicJwk];
    gw = await startRuntime(
      snapshot([httpListener(0, [vhost('api', ['api.test'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])], {
        jwtRules: [rule(jwks.url)],
        authorizationPolicies: [REQUIRE_TOKEN_ON_SECURE],
      }),
    );
    port = gw.port();
  });
  after(async () => {
    Object.assign(JWKS_SETTINGS, saved);
    await gw?.close();
    await up?.close();
    await jwks?.close();
  });

  test('no token: passes unauthenticated; a client copy of the output headers is removed', async () => {
    up.reset();
    const r = await get('/open', { 'x-jwt-payload': 'forged', 'x-user': 'root' });
    assert.equal(r.status, 200);
    assert.equal(up.requests[0].headers['x-jwt-payload'], undefined);
    assert.equal(up.requests[0].headers['x-user'], undefined);
  });

  test('no token on a path an AuthorizationPolicy protects: 403', async () => {
    const r = await get('/secure/x');
    assert.equal(r.status, 403);
    assert.equal(r.body, 'RBAC: access denied');
  });

  test('valid token: 200, claims to headers, token removed, payload forwarded', async () => {
    up.reset();
    const token = await sign({ sub: 'alice' });
    const r = await get('/secure/x', { authorization: `Bearer ${token}` });
    assert.equal(r.status, 200, r.body);
    const h = up.requests[0].headers;
    assert.equal(h.authorization, undefined, 'the token is not forwarded by default');
    assert.equal(h['x-user'], 'alice');
    const payload = JSON.parse(Buffer.from(String(h['x-jwt-payload']), 'base64url').toString()) as { iss: string };
    assert.equal(payload.iss, ISS);
  });

  test('token in a query parameter and in a cookie', async () => {
    const token = await sign();
    assert.equal((await get(`/secure/q?access_token=${token}`)).status, 200);
    assert.equal((await get('/secure/c', { cookie: `a=b; session=${token}` })).status, 200);
  });

  const bad: [string, () => Promise<string>][] = [
    ['expired', () => sign({}, { exp: Math.floor(Date.now() / 1000) - 3600 })],
    ['not yet valid', () => sign({}, { nbf: Math.floor(Date.now() / 1000) + 3600 })],
    ['wrong audience', () => sign({}, { aud: 'other' })],
    ['unknown issuer', () => sign({}, { iss: 'https://evil.test' })],
    ['signed by another key with the same kid', async () => sign({}, { key: (await generateKeyPair('RS256')).privateKey })],
    ['payload altered after signing', async () => {
      const [h, , s] = (await sign()).split('.');
      return `${h}.${Buffer.from(JSON.stringify({ iss: ISS, sub: 'admin', aud: 'web', exp: 9e9 })).toString('base64url')}.${s}`;
    }],
    ['alg none', async () => `${Buffer.from('{"alg":"none","kid":"k1"}').toString('base64url')}.${Buffer.from(JSON.stringify({ iss: ISS, sub: 'a', aud: 'web', exp: 9e9 })).toString('base64url')}.`],
    ['HS256 signed with the RSA public key (algorithm confusion)', async () => {
      const h = Buffer.from('{"alg":"HS256","kid":"k1"}').toString('base64url');
      const p = Buffer.from(JSON.stringify({ iss: ISS, sub: 'a', aud: 'web', exp: 9e9 })).toString('base64url');
      const secret = JSON.stringify(publicJwk);
      return `${h}.${p}.${createHmac('sha256', secret).update(`${h}.${p}`).digest('base64url')}`;
    }],
    ['jku pointing elsewhere is never fetched', async () => {
      const h = Buffer.from(JSON.stringify({ alg: 'RS256', kid: 'zz', jku: 'http://127.0.0.1:1/evil' })).toString('base64url');
      return `${h}.${Buffer.from(JSON.stringify({ iss: ISS, sub: 'a', aud: 'web', exp: 9e9 })).toString('base64url')}.AAAA`;
    }],
    ['garbage', async () => 'not.a.jwt'],
  ];
  for (const [name, make] of bad) {
    test(`${name}: 401 and nothing reaches the upstream`, async () => {
      up.reset();
      const r = await get('/open', { authorization: `Bearer ${await make()}` });
      assert.equal(r.status, 401, `${name}: ${r.body}`);
      assert.match(String(r.headers['www-authenticate']), /Bearer/);
      assert.equal(up.requests.length, 0);
    });
  }

  test('two Authorization headers, or two different tokens: 401', async () => {
    const a = await sign();
    const b = await sign({ sub: 'bob' });
    assert.equal((await get('/open', ['authorization', `Bearer ${a}`, 'authorization', `Bearer ${a}`])).status, 401);
    assert.equal((await get(`/open?access_token=${b}`, { authorization: `Bearer ${a}` })).status, 401);
  });

  test('key rotation: an unknown kid refetches the JWKS once', async () => {
    const k2 = await generateKeyPair('RS256');
    jwks.keys = [publicJwk, { ...(await exportJWK(k2.publicKey)), kid: 'k2', alg: 'RS256' }];
    await new Promise((r) => setTimeout(r, 350)); // past the unknown-kid cool-down
    const before = jwks.fetches;
    const r = await get('/secure/r', { authorization: `Bearer ${await sign({}, { kid: 'k2', key: k2.privateKey })}` });
    assert.equal(r.status, 200, r.body);
    assert.equal(jwks.fetches - before, 1);
  });

  test('random unknown kids do not amplify into JWKS fetches', async () => {
    await new Promise((r) => setTimeout(r, 350));
    const before = jwks.fetches;
    const tokens = await Promise.all(Array.from({ length: 40 }, (_, i) => sign({}, { kid: `random-${i}` })));
    const t0 = Date.now();
    const replies = await Promise.all(tokens.map((t) => get('/open', { authorization: `Bearer ${t}` })));
    const elapsed = Date.now() - t0;
    assert.ok(replies.every((r) => r.status === 401));
    // At most one fetch per cooldown (300 ms here) while the 40 requests ran, however slow the machine.
    const allowed = 2 + Math.floor(elapsed / 300);
    assert.ok(jwks.fetches - before <= Math.min(allowed, 10), `fetches: ${jwks.fetches - before} in ${elapsed} ms (at most ${allowed})`);
  });

  test('issuer down: the last good keys keep serving', async () => {
    jwks.mode = 'down';
    try {
      const rj = remoteJwks(jwks.url, 1000);
      const before = rj.fetches;
      Object.assign(JWKS_SETTINGS, { refreshMs: 0 }); // every request wants a refresh now
      const r = await get('/secure/down', { authorization: `Bearer ${await sign()}` });
      assert.equal(r.status, 200, r.body);
      await new Promise((res) => setTimeout(res, 100));
      assert.ok(rj.fetches > before, 'a refresh was attempted');
      assert.equal((await get('/secure/down', { authorization: `Bearer ${await sign()}` })).status, 200);
    } finally {
      Object.assign(JWKS_SETTINGS, { refreshMs: saved.refreshMs });
      jwks.mode = 'ok';
    }
  });

  test('a JWKS over the size limit is refused (and the old keys kept)', async () => {
    resetJwksCache();
    jwks.mode = 'huge';
    try {
      const fresh = await startRuntime(
        snapshot([httpListener(0, [vhost('api', ['api.test'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])], { jwtRules: [rule(jwks.url)] }),
      );
      try {
        const r = await request(fresh.port(), { path: '/x', host: 'api.test', headers: { authorization: `Bearer ${await sign()}` } });
        assert.equal(r.status, 401, 'no usable keys: tokens are rejected');
      } finally {
        await fresh.close();
      }
    } finally {
      jwks.mode = 'ok';
      resetJwksCache();
    }
  });
});
