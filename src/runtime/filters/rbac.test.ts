/**
 * Authorization engine: decision tables for Istio's documented semantics, and fast-check properties
 * against a small reference evaluator written independently from the compiled one.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { AuthorizationPolicy, AuthzCondition, AuthzRule } from '../../ir/types.js';
import { authorize, compileAuthz, pathTest, stringTest, type AuthzAttributes, type JwtIdentity } from './rbac.js';

const SRC = { kind: 'AuthorizationPolicy', namespace: 'istio-system', name: 'p', file: null, line: null };

function policy(action: AuthorizationPolicy['action'], rules: AuthzRule[], extra: Partial<AuthorizationPolicy> = {}): AuthorizationPolicy {
  return { name: `authorizationpolicy/istio-system/${action.toLowerCase()}`, source: SRC, action, provider: action === 'CUSTOM' ? 'ext' : null, rules, dryRun: false, ...extra };
}
const cond = (key: string, values: string[], notValues: string[] = []): AuthzCondition => ({ key, values, notValues });
const to = (...cs: AuthzCondition[]): AuthzRule => ({ from: [], to: [cs], when: [] });

interface Req {
  method?: string;
  path?: string;
  authority?: string;
  port?: number;
  ip?: string;
  headers?: [string, string][];
  identity?: JwtIdentity | null;
}

function attrs(r: Req): AuthzAttributes {
  const headers = r.headers ?? [];
  return {
    method: r.method ?? 'GET',
    path: r.path ?? '/',
    authority: r.authority ?? 'shop.example.com',
    port: r.port ?? 80,
    remoteIp: r.ip ?? '10.0.0.1',
    localIp: '127.0.0.1',
    sni: '',
    headerLines: (n) => headers.filter(([k]) => k === n).map(([, v]) => v),
    identity: r.identity ?? null,
    peerPrincipal: null,
  };
}

function identity(principal: string, claims: Record<string, unknown> = {}): JwtIdentity {
  return { principal, audiences: ['web'], presenter: null, claims, spaceDelimited: new Set(['scope']) };
}

function decide(policies: AuthorizationPolicy[], r: Req): boolean {
  const z = compileAuthz(policies);
  return z === null ? true : authorize(z, attrs(r)).allowed;
}

describe('authorization decisions (Istio semantics)', () => {
  const cases: { desc: string; policies: AuthorizationPolicy[]; req: Req; want: boolean }[] = [
    { desc: 'no policy: allow', policies: [], req: {}, want: true },
    { desc: 'ALLOW with no rules allows nothing', policies: [policy('ALLOW', [])], req: {}, want: false },
    { desc: 'ALLOW with an empty rule allows everything', policies: [policy('ALLOW', [{ from: [], to: [], when: [] }])], req: {}, want: true },
    { desc: 'DENY with no rules denies nothing', policies: [policy('DENY', [])], req: {}, want: true },
    { desc: 'DENY with an empty rule denies everything', policies: [policy('DENY', [{ from: [], to: [], when: [] }])], req: {}, want: false },
    { desc: 'DENY wins over ALLOW', policies: [policy('ALLOW', [{ from: [], to: [], when: [] }]), policy('DENY', [to(cond('request.path', ['/admin*']))])], req: { path: '/admin/x' }, want: false },
    { desc: 'no ALLOW matches: deny', policies: [policy('ALLOW', [to(cond('request.path', ['/public/*']))])], req: { path: '/private' }, want: false },
    { desc: 'ALLOW matches', policies: [policy('ALLOW', [to(cond('request.path', ['/public/*']))])], req: { path: '/public/a' }, want: true },
    { desc: 'AUDIT changes nothing', policies: [policy('AUDIT', [{ from: [], to: [], when: [] }])], req: {}, want: true },
    { desc: 'dry-run DENY changes nothing', policies: [policy('DENY', [{ from: [], to: [], when: [] }], { dryRun: true })], req: {}, want: true },
    { desc: 'CUSTOM without a provider fails closed on its matches', policies: [policy('CUSTOM', [to(cond('request.path', ['/ext/*']))])], req: { path: '/ext/a' }, want: false },
    { desc: 'CUSTOM does not touch what it does not match', policies: [policy('CUSTOM', [to(cond('request.path', ['/ext/*']))])], req: { path: '/other' }, want: true },
    { desc: 'notPaths in ALLOW', policies: [policy('ALLOW', [to(cond('request.path', [], ['/admin*']))])], req: { path: '/admin' }, want: false },
    { desc: 'methods', policies: [policy('ALLOW', [to(cond('request.method', ['GET', 'HEAD']))])], req: { method: 'POST' }, want: false },
    { desc: 'hosts ignore case and port', policies: [policy('ALLOW', [to(cond('request.host', ['Shop.Example.com']))])], req: { authority: 'SHOP.example.com:8080' }, want: true },
    { desc: 'ports', policies: [policy('DENY', [to(cond('destination.port', ['8443']))])], req: { port: 8443 }, want: false },
    { desc: 'ipBlocks CIDR', policies: [policy('ALLOW', [{ from: [[cond('remote.ip', ['10.0.0.0/8'])]], to: [], when: [] }])], req: { ip: '10.1.2.3' }, want: true },
    { desc: 'ipBlocks CIDR miss', policies: [policy('ALLOW', [{ from: [[cond('remote.ip', ['10.0.0.0/8'])]], to: [], when: [] }])], req: { ip: '192.168.0.1' }, want: false },
    { desc: 'IPv4-mapped IPv6 client', policies: [policy('ALLOW', [{ from: [[cond('source.ip', ['127.0.0.1'])]], to: [], when: [] }])], req: { ip: '::ffff:127.0.0.1' }, want: true },
    { desc: 'requestPrincipals "*" needs a token', policies: [policy('ALLOW', [{ from: [[cond('request.auth.principal', ['*'])]], to: [], when: [] }])], req: {}, want: false },
    { desc: 'requestPrincipals "*" with a token', policies: [policy('ALLOW', [{ from: [[cond('request.auth.principal', ['*'])]], to: [], when: [] }])], req: { identity: identity('iss/sub') }, want: true },
    { desc: 'notRequestPrincipals "*" denies anonymous', policies: [policy('DENY', [{ from: [[cond('request.auth.principal', [], ['*'])]], to: [], when: [] }])], req: {}, want: false },
    { desc: 'nested claim', policies: [policy('ALLOW', [{ from: [], to: [], when: [cond('request.auth.claims[realm][role]', ['admin'])] }])], req: { identity: identity('i/s', { realm: { role: 'admin' } }) }, want: true },
    { desc: 'list claim: any element', policies: [policy('ALLOW', [{ from: [], to: [], when: [cond('request.auth.claims[groups]', ['ops'])] }])], req: { identity: identity('i/s', { groups: ['dev', 'ops'] }) }, want: true },
    { desc: 'scope is space-delimited', policies: [policy('ALLOW', [{ from: [], to: [], when: [cond('request.auth.claims[scope]', ['write'])] }])], req: { identity: identity('i/s', { scope: 'read write' }) }, want: true },
    { desc: 'header condition', policies: [policy('ALLOW', [{ from: [], to: [], when: [cond('request.headers[x-role]', ['admin'])] }])], req: { headers: [['x-role', 'admin']] }, want: true },
    { desc: 'duplicate header cannot satisfy ALLOW', policies: [policy('ALLOW', [{ from: [], to: [], when: [cond('request.headers[x-role]', ['admin'])] }])], req: { headers: [['x-role', 'admin'], ['x-role', 'user']] }, want: false },
    { desc: 'duplicate header cannot dodge DENY', policies: [policy('DENY', [{ from: [], to: [], when: [cond('request.headers[x-role]', ['guest'])] }])], req: { headers: [['x-role', 'admin'], ['x-role', 'guest']] }, want: false },
    { desc: 'path template {*}', policies: [policy('DENY', [to(cond('request.path', ['/api/{*}/secret']))])], req: { path: '/api/v1/secret' }, want: false },
    { desc: 'path template {**}', policies: [policy('DENY', [to(cond('request.path', ['/api/{**}']))])], req: { path: '/api/a/b/c' }, want: false },
    { desc: 'from AND to AND when', policies: [policy('ALLOW', [{ from: [[cond('remote.ip', ['10.0.0.0/8'])]], to: [[cond('request.method', ['GET'])]], when: [cond('request.headers[x-a]', ['1'])] }])], req: { ip: '10.0.0.1', method: 'GET', headers: [] }, want: false },
  ];
  for (const c of cases) test(c.desc, () => assert.equal(decide(c.policies, c.req), c.want));
});

// ---- model-based property --------------------------------------------------------------------------

function refString(p: string, v: string): boolean {
  if (p === '*') return v.length > 0;
  if (p.endsWith('*')) return v.slice(0, p.length - 1) === p.slice(0, -1);
  if (p.startsWith('*')) return v.length >= p.length - 1 && v.slice(v.length - (p.length - 1)) === p.slice(1);
  return p === v;
}

/** Reference: a condition on single-valued attributes, straight from the Istio docs. */
function refCond(c: AuthzCondition, value: string | null): boolean {
  if (c.values.length > 0 && (value === null || !c.values.some((p) => refString(p, value)))) return false;
  if (c.notValues.length > 0 && value !== null && c.notValues.some((p) => refString(p, value))) return false;
  return true;
}

function refValue(key: string, r: Required<Pick<Req, 'method' | 'path'>>): string | null {
  return key === 'request.method' ? r.method : r.path;
}

function refDecide(policies: AuthorizationPolicy[], r: Required<Pick<Req, 'method' | 'path'>>): boolean {
  const ruleMatches = (rule: AuthzRule): boolean =>
    (rule.from.length === 0 || rule.from.some((s) => s.every((c) => refCond(c, refValue(c.key, r))))) &&
    (rule.to.length === 0 || rule.to.some((s) => s.every((c) => refCond(c, refValue(c.key, r))))) &&
    rule.when.every((c) => refCond(c, refValue(c.key, r)));
  const matches = (p: AuthorizationPolicy): boolean => p.rules.some(ruleMatches);
  const active = policies.filter((p) => !p.dryRun && p.action !== 'AUDIT');
  if (active.some((p) => p.action === 'CUSTOM' && matches(p))) return false;
  if (active.some((p) => p.action === 'DENY' && matches(p))) return false;
  const allows = active.filter((p) => p.action === 'ALLOW');
  return allows.length === 0 || allows.some(matches);
}

describe('authorization engine properties', () => {
  const words = ['/admin', '/admin/x', '/public', '/public/a', '/', '/api/v1'];
  const patterns = ['/admin', '/admin*', '*', '/public/*', '*/x', '/api/v1', 'GET', 'POST', 'G*'];
  const condArb = fc.record({
    key: fc.constantFrom('request.path', 'request.method'),
    values: fc.array(fc.constantFrom(...patterns), { maxLength: 2 }),
    notValues: fc.array(fc.constantFrom(...patterns), { maxLength: 2 }),
  });
  const ruleArb = fc.record({
    from: fc.array(fc.array(condArb, { maxLength: 2 }), { maxLength: 2 }),
    to: fc.array(fc.array(condArb, { maxLength: 2 }), { maxLength: 2 }),
    when: fc.array(condArb, { maxLength: 2 }),
  });
  const policyArb = fc.record({
    action: fc.constantFrom<AuthorizationPolicy['action']>('ALLOW', 'DENY', 'AUDIT', 'CUSTOM'),
    rules: fc.array(ruleArb, { maxLength: 3 }),
    dryRun: fc.boolean(),
  }).map((p) => policy(p.action, p.rules, { dryRun: p.dryRun }));
  const reqArb = fc.record({ method: fc.constantFrom('GET', 'POST', 'PUT'), path: fc.constantFrom(...words) });

  test('compiled engine equals the reference evaluator (10k cases)', () => {
    fc.assert(
      fc.property(fc.array(policyArb, { maxLength: 4 }), reqArb, (ps, r) => {
        assert.equal(decide(ps, r), refDecide(ps, r));
      }),
      { numRuns: 10_000 },
    );
  });

  test('adding a DENY policy never allows more; adding an ALLOW never denies what no ALLOW governed', () => {
    fc.assert(
      fc.property(fc.array(policyArb, { maxLength: 3 }), fc.array(ruleArb, { maxLength: 2 }), reqArb, (ps, rules, r) => {
        const before = decide(ps, r);
        if (!before) assert.equal(decide([...ps, policy('DENY', rules)], r), false);
      }),
      { numRuns: 3000 },
    );
  });

  test('string and path matchers agree with the reference on plain patterns', () => {
    fc.assert(
      fc.property(fc.constantFrom(...patterns, ...words), fc.constantFrom(...words, 'GET', 'POST', ''), (p, v) => {
        assert.equal(stringTest(p)(v), refString(p, v));
        assert.equal(pathTest(p)(v), refString(p, v));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('CUSTOM hands the request to its provider, then DENY and ALLOW apply', () => {
  const policies = [
    policy('CUSTOM', [to(cond('request.path', ['/ext/*']))]),
    policy('DENY', [to(cond('request.path', ['/ext/blocked']))]),
  ];
  const z = compileAuthz(policies)!;

  test('a CUSTOM match names its provider', () => {
    assert.deepEqual(authorize(z, attrs({ path: '/ext/a' })), { allowed: false, policy: 'authorizationpolicy/istio-system/custom', custom: 'ext' });
  });

  test('once the provider allowed (customDone), DENY still denies and the rest is allowed', () => {
    assert.deepEqual(authorize(z, attrs({ path: '/ext/blocked' }), true), { allowed: false, policy: 'authorizationpolicy/istio-system/deny', custom: null });
    assert.equal(authorize(z, attrs({ path: '/ext/a' }), true).allowed, true);
  });

  test('a request no CUSTOM rule matches never asks a provider', () => {
    assert.deepEqual(authorize(z, attrs({ path: '/other' })), { allowed: true, policy: null });
  });
});
