/**
 * Table tests for the compiled pieces of actions: path rewrites, substitutions, header ops,
 * weighted destination choice, certificate choice, load balancing.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { PathMatch, PathRewrite } from '../../ir/types.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../../../test/support/ir-builders.js';
import { selectEndpoint } from '../upstream/load-balancer.js';
import { compileSnapshot } from './compile-snapshot.js';
import { applyHeaderOps, compileHeaderOps } from './header-ops.js';
import { pickDestination, selectCertificate } from './lookup.js';
import { compilePathRewrite, convertSubstitution } from './rewrite.js';
import { compilePathMatch } from './string-match.js';
import type { CompiledForward, CompiledTls } from './types.js';

const rewriteCases: { desc: string; match: PathMatch | null; rewrite: PathRewrite; path: string; want: string }[] = [
  { desc: 'segment-prefix /foo -> / on /foo/bar', match: { kind: 'segment-prefix', value: '/foo', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/' }, path: '/foo/bar', want: '/bar' },
  { desc: 'segment-prefix /foo -> / on /foo', match: { kind: 'segment-prefix', value: '/foo', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/' }, path: '/foo', want: '/' },
  { desc: 'segment-prefix /foo -> / on /foo/', match: { kind: 'segment-prefix', value: '/foo', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/' }, path: '/foo/', want: '/' },
  { desc: 'segment-prefix /foo -> /xyz on /foo/bar', match: { kind: 'segment-prefix', value: '/foo', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/xyz' }, path: '/foo/bar', want: '/xyz/bar' },
  { desc: 'segment-prefix /foo -> /xyz/ on /foo/bar', match: { kind: 'segment-prefix', value: '/foo', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/xyz/' }, path: '/foo/bar', want: '/xyz/bar' },
  { desc: 'segment-prefix / -> /api on /x', match: { kind: 'segment-prefix', value: '/', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/api' }, path: '/x', want: '/api/x' },
  { desc: 'segment-prefix ignoreCase keeps the rest as sent', match: { kind: 'segment-prefix', value: '/foo', ignoreCase: true }, rewrite: { kind: 'prefix', value: '/v2' }, path: '/FOO/Bar', want: '/v2/Bar' },
  { desc: 'raw prefix is replaced literally', match: { kind: 'prefix', value: '/foo', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/bar' }, path: '/foobaz', want: '/barbaz' },
  { desc: 'raw prefix /foo -> / on /foo/x gives //x (Envoy prefix_rewrite)', match: { kind: 'prefix', value: '/foo', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/' }, path: '/foo/x', want: '//x' },
  { desc: 'raw prefix /foo/ -> / on /foo/x', match: { kind: 'prefix', value: '/foo/', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/' }, path: '/foo/x', want: '/x' },
  { desc: 'prefix rewrite with exact match replaces the whole path', match: { kind: 'exact', value: '/old', ignoreCase: false }, rewrite: { kind: 'prefix', value: '/new' }, path: '/old', want: '/new' },
  { desc: 'prefix rewrite without path match replaces the whole path', match: null, rewrite: { kind: 'prefix', value: '/new' }, path: '/any/thing', want: '/new' },
  { desc: 'full rewrite', match: { kind: 'segment-prefix', value: '/a', ignoreCase: false }, rewrite: { kind: 'full', value: '/b/c' }, path: '/a/x', want: '/b/c' },
  {
    desc: 'regex rewrite with groups',
    match: null,
    rewrite: { kind: 'regex', regex: { original: '^/service/([^/]+)(/.*)$', source: '^/service/([^/]+)(/.*)$', flags: '' }, substitution: '\\2/instance/\\1' },
    path: '/service/foo/v1/api',
    want: '/v1/api/instance/foo',
  },
  { desc: 'regex rewrite replaces every match', match: null, rewrite: { kind: 'regex', regex: { original: 'o', source: 'o', flags: '' }, substitution: '0' }, path: '/foo/boo', want: '/f00/b00' },
];

describe('path rewrite', () => {
  for (const c of rewriteCases) {
    test(c.desc, () => {
      const got = compilePathRewrite(c.rewrite)(c.path, c.match === null ? null : compilePathMatch(c.match));
      assert.equal(got, c.want, `expected ${c.want}, got ${got}`);
    });
  }
});

describe('convertSubstitution', () => {
  for (const [input, want] of [
    ['\\1', '$1'],
    ['/x/\\2/\\1', '/x/$2/$1'],
    ['$1', '$$1'],
    ['\\0', '$&'],
    ['\\\\', '\\'],
    ['plain', 'plain'],
  ] as const) {
    test(`${input} -> ${want}`, () => assert.equal(convertSubstitution(input), want));
  }
});

describe('header ops', () => {
  test('remove, then set (replacing), then add', () => {
    const ops = compileHeaderOps({ set: [{ name: 'X-A', value: 'new' }], add: [{ name: 'x-b', value: '2' }], remove: ['x-c'] })!;
    const got = applyHeaderOps(['x-a', 'old', 'x-b', '1', 'x-c', 'gone', 'x-a', 'old2', 'keep', 'y'], ops);
    assert.deepEqual(got, ['x-b', '1', 'keep', 'y', 'x-a', 'new', 'x-b', '2']);
  });
  test('empty ops compile to null', () => {
    assert.equal(compileHeaderOps({ set: [], add: [], remove: [] }), null);
    assert.equal(compileHeaderOps(null), null);
  });
});

function forwardAction(weights: number[]): CompiledForward {
  const ir = snapshot(
    [httpListener(80, [vhost('v', ['*'], [route('r', forward(weights.map((w, i) => ({ cluster: `c${i}`, weight: w }))), [match()])])])],
    weights.map((_, i) => cluster(`c${i}`, [{ port: 1000 + i }])),
  );
  return compileSnapshot(ir).listeners[0].chains[0].virtualHosts[0].routes[0].action as CompiledForward;
}

describe('pickDestination', () => {
  test('boundaries of cumulative weights', () => {
    const a = forwardAction([1, 3]);
    assert.equal(pickDestination(a, 0)?.clusterName, 'c0');
    assert.equal(pickDestination(a, 0.2499)?.clusterName, 'c0');
    assert.equal(pickDestination(a, 0.25)?.clusterName, 'c1');
    assert.equal(pickDestination(a, 0.9999)?.clusterName, 'c1');
  });
  test('property: the share of each destination equals its weight share over a uniform grid', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 20 }), { minLength: 1, maxLength: 6 }), (weights) => {
        const a = forwardAction(weights);
        const total = weights.reduce((x, y) => x + y, 0);
        const counts = new Map<string, number>();
        const steps = total * 10;
        for (let i = 0; i < steps; i++) {
          // Mid-cell points: exact cell boundaries would test floating-point rounding, not weights.
          const name = pickDestination(a, (i + 0.5) / steps)!.clusterName;
          counts.set(name, (counts.get(name) ?? 0) + 1);
        }
        weights.forEach((w, i) => assert.equal(counts.get(`c${i}`) ?? 0, w * 10, `weight ${w} of ${weights}`));
      }),
    );
  });
});

describe('selectCertificate', () => {
  const cert = (secret: string) => ({ secret, certChain: secret, privateKey: secret, contextKey: secret });
  const tls: CompiledTls = {
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.3',
    ciphers: '',
    certificates: [cert('first'), cert('exact'), cert('wild')],
    certsByName: new Map([['a.example.com', cert('exact')]]),
    certsBySuffix: new Map([['.example.com', cert('wild')]]),
    clientValidation: null,
  };
  for (const [sni, want] of [
    ['a.example.com', 'exact'],
    ['b.example.com', 'wild'],
    ['x.b.example.com', 'first'],
    ['other.org', 'first'],
    ['', 'first'],
  ] as const) {
    test(`${sni || '(no SNI)'} -> ${want}`, () => assert.equal(selectCertificate(tls, sni)?.secret, want));
  }
});

describe('selectEndpoint', () => {
  const compiled = (policy: 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM', ready = [true, true, true]) =>
    compileSnapshot(snapshot([], [cluster('c', ready.map((r, i) => ({ port: 2000 + i, ready: r })), { lbPolicy: policy })])).clusters.get('c')!;
  test('round robin cycles over ready endpoints only', () => {
    const c = compiled('ROUND_ROBIN', [true, false, true]);
    const got = [0, 1, 2, 3].map(() => selectEndpoint(c, Math.random)!.port);
    assert.deepEqual(got, [2000, 2002, 2000, 2002]);
  });
  test('no ready endpoint: null (503 UH)', () => {
    assert.equal(selectEndpoint(compiled('ROUND_ROBIN', [false]), Math.random), null);
  });
  test('least request prefers the endpoint with fewer requests in flight', () => {
    const c = compiled('LEAST_REQUEST', [true, true]);
    c.endpoints[0].handle = { key: 'a', host: 'a', active: 5, dispatcher: null as never, fetcher: null as never };
    c.endpoints[1].handle = { key: 'b', host: 'b', active: 1, dispatcher: null as never, fetcher: null as never };
    const seq = [0, 0.9];
    let i = 0;
    assert.equal(selectEndpoint(c, () => seq[i++ % 2])!.port, 2001);
  });
  test('random uses the injected source', () => {
    const c = compiled('RANDOM');
    assert.equal(selectEndpoint(c, () => 0.99)!.port, 2002);
  });
  test('a Gateway API session is issued with one endpoint too (cookie and header), so it holds through a scale-up', () => {
    const session = { absoluteTimeoutSeconds: null, idleTimeoutSeconds: null };
    const algorithm = { kind: 'ring-hash' as const, minimumRingSize: 1024 };
    for (const hashOn of [{ kind: 'header' as const, name: 'x-s', session }, { kind: 'cookie' as const, name: 's', path: '/', ttlSeconds: 0, session }]) {
      const c = compileSnapshot(snapshot([], [cluster('c', [{ port: 2000 }], { lbPolicy: { kind: 'consistent-hash', hashOn, algorithm } })])).clusters.get('c')!;
      const issued: string[] = [];
      const input = {
        header: () => null,
        queryParam: () => null,
        clientAddress: '127.0.0.1',
        setResponseCookie: (_line: string, name: string) => void issued.push(name),
        stickyCookie: () => null,
        setResponseSession: (name: string) => void issued.push(name),
      };
      assert.equal(selectEndpoint(c, Math.random, input)!.port, 2000);
      assert.deepEqual(issued, [hashOn.name], hashOn.kind);
    }
  });
});
