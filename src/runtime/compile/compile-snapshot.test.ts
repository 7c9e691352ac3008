/**
 * Decision tables for routing: hand-built IR plus a request -> the route that serves it, run
 * through the real compiled lookups (chain, virtual host, first-match route) without sockets.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { IRSnapshot, Route, StringMatch } from '../../ir/types.js';
import { chain, exact, httpListener, httpsListener, match, named, regex, snapshot, vhost } from '../../../test/support/ir-builders.js';
import { compileSnapshot } from './compile-snapshot.js';
import { findRoute, normalizeHost, selectFilterChain, selectVirtualHost } from './lookup.js';
import type { MatchInput } from './types.js';

interface Req {
  method?: string;
  host?: string;
  path?: string;
  headers?: Record<string, string | string[]>;
  scheme?: string;
  /** Listener external port; default the listener's. */
  port?: number;
  /** TLS server name (HTTPS listeners). */
  sni?: string;
}

interface Case {
  desc: string;
  ir: IRSnapshot;
  request: Req;
  want: string | null;
}

/** The route name serving `r`, through the compiled snapshot; null = 404 NR. */
function resolve(ir: IRSnapshot, r: Req): string | null {
  const compiled = compileSnapshot(ir);
  const listener = compiled.listeners[0];
  const fc = listener.protocol === 'HTTPS' ? selectFilterChain(listener, r.sni ?? '') : listener.defaultChain;
  if (fc === null) return null;
  const authority = r.host ?? 'example.com';
  const vh = selectVirtualHost(fc, normalizeHost(authority));
  if (vh === null) return null;
  const target = r.path ?? '/';
  const q = target.indexOf('?');
  const headers = r.headers ?? {};
  const input: MatchInput = {
    method: r.method ?? 'GET',
    path: q === -1 ? target : target.slice(0, q),
    scheme: r.scheme ?? listener.scheme,
    authority,
    port: r.port ?? listener.externalPort,
    header(name) {
      if (name === 'host') return authority;
      const v = headers[name];
      return v === undefined ? null : Array.isArray(v) ? v.join(',') : v;
    },
    queryParam(name) {
      if (q === -1) return null;
      for (const pair of target.slice(q + 1).split('&')) {
        const eq = pair.indexOf('=');
        if ((eq === -1 ? pair : pair.slice(0, eq)) === name) return eq === -1 ? '' : pair.slice(eq + 1);
      }
      return null;
    },
  };
  return findRoute(vh, input)?.route.name ?? null;
}

/** One virtual host for any host with these routes, on an HTTP listener at port 80. */
function routes(...rs: Route[]): IRSnapshot {
  return snapshot([httpListener(80, [vhost('any', ['*'], rs)])]);
}

const seg = (value: string, ignoreCase = false) => match({ path: { kind: 'segment-prefix', value, ignoreCase } });
const pre = (value: string, ignoreCase = false) => match({ path: { kind: 'prefix', value, ignoreCase } });
const ex = (value: string, ignoreCase = false) => match({ path: { kind: 'exact', value, ignoreCase } });
const re = (source: string, flags = '') => match({ path: regex(source, flags) });

const pathCases: Case[] = [
  { desc: 'exact path matches itself', ir: routes(named('r', [ex('/foo')])), request: { path: '/foo' }, want: 'r' },
  { desc: 'exact path ignores the query', ir: routes(named('r', [ex('/foo')])), request: { path: '/foo?x=1' }, want: 'r' },
  { desc: 'exact path does not match a trailing slash', ir: routes(named('r', [ex('/foo')])), request: { path: '/foo/' }, want: null },
  { desc: 'exact path is case-sensitive', ir: routes(named('r', [ex('/foo')])), request: { path: '/FOO' }, want: null },
  { desc: 'exact path ignoreCase', ir: routes(named('r', [ex('/Foo', true)])), request: { path: '/fOO' }, want: 'r' },
  { desc: 'prefix is a raw string prefix', ir: routes(named('r', [pre('/foo')])), request: { path: '/foobar' }, want: 'r' },
  { desc: 'prefix does not match a shorter path', ir: routes(named('r', [pre('/foo')])), request: { path: '/fo' }, want: null },
  { desc: 'prefix ignoreCase', ir: routes(named('r', [pre('/api', true)])), request: { path: '/API/x' }, want: 'r' },
  { desc: 'segment-prefix matches the path itself', ir: routes(named('r', [seg('/foo')])), request: { path: '/foo' }, want: 'r' },
  { desc: 'segment-prefix matches with trailing slash', ir: routes(named('r', [seg('/foo')])), request: { path: '/foo/' }, want: 'r' },
  { desc: 'segment-prefix matches a sub-path', ir: routes(named('r', [seg('/foo')])), request: { path: '/foo/bar' }, want: 'r' },
  { desc: 'segment-prefix never matches /foobar', ir: routes(named('r', [seg('/foo')])), request: { path: '/foobar' }, want: null },
  { desc: 'segment-prefix / matches everything', ir: routes(named('r', [seg('/')])), request: { path: '/anything/at/all' }, want: 'r' },
  { desc: 'segment-prefix ignoreCase', ir: routes(named('r', [seg('/Foo', true)])), request: { path: '/FOO/bar' }, want: 'r' },
  { desc: 'segment-prefix ignoreCase still needs a boundary', ir: routes(named('r', [seg('/foo', true)])), request: { path: '/FOOBAR' }, want: null },
  { desc: 'regex path is anchored', ir: routes(named('r', [re('/item/[0-9]+')])), request: { path: '/item/42' }, want: 'r' },
  { desc: 'regex path does not match a longer path', ir: routes(named('r', [re('/item/[0-9]+')])), request: { path: '/item/42/x' }, want: null },
  { desc: 'regex path with i flag', ir: routes(named('r', [re('/item', 'i')])), request: { path: '/ITEM' }, want: 'r' },
  { desc: 'null path matches any path', ir: routes(named('r', [match()])), request: { path: '/whatever' }, want: 'r' },
];

const hdr = (name: string, m: StringMatch | null, invert = false) =>
  match({ headers: [{ name, match: m, invert }] });

const stringMatchCases: Case[] = [
  { desc: 'header exact', ir: routes(named('r', [hdr('x-v', exact('1'))])), request: { headers: { 'x-v': '1' } }, want: 'r' },
  { desc: 'header exact is case-sensitive', ir: routes(named('r', [hdr('x-v', exact('abc'))])), request: { headers: { 'x-v': 'ABC' } }, want: null },
  { desc: 'header exact ignoreCase', ir: routes(named('r', [hdr('x-v', exact('AbC', true))])), request: { headers: { 'x-v': 'aBc' } }, want: 'r' },
  { desc: 'header prefix', ir: routes(named('r', [hdr('x-v', { kind: 'prefix', value: 'ab', ignoreCase: false })])), request: { headers: { 'x-v': 'abc' } }, want: 'r' },
  { desc: 'header prefix ignoreCase', ir: routes(named('r', [hdr('x-v', { kind: 'prefix', value: 'AB', ignoreCase: true })])), request: { headers: { 'x-v': 'abc' } }, want: 'r' },
  { desc: 'header suffix', ir: routes(named('r', [hdr('x-v', { kind: 'suffix', value: 'bc', ignoreCase: false })])), request: { headers: { 'x-v': 'abc' } }, want: 'r' },
  { desc: 'header suffix mismatch', ir: routes(named('r', [hdr('x-v', { kind: 'suffix', value: 'bc', ignoreCase: false })])), request: { headers: { 'x-v': 'abC' } }, want: null },
  { desc: 'header suffix ignoreCase', ir: routes(named('r', [hdr('x-v', { kind: 'suffix', value: 'BC', ignoreCase: true })])), request: { headers: { 'x-v': 'abc' } }, want: 'r' },
  { desc: 'header regex is full-string', ir: routes(named('r', [hdr('x-v', regex('v[0-9]'))])), request: { headers: { 'x-v': 'v1x' } }, want: null },
  { desc: 'header regex', ir: routes(named('r', [hdr('x-v', regex('v[0-9]'))])), request: { headers: { 'x-v': 'v7' } }, want: 'r' },
  { desc: 'header present', ir: routes(named('r', [hdr('x-v', null)])), request: { headers: { 'x-v': '' } }, want: 'r' },
  { desc: 'header present, absent', ir: routes(named('r', [hdr('x-v', null)])), request: {}, want: null },
  { desc: 'header absent required (invert present)', ir: routes(named('r', [hdr('x-v', null, true)])), request: {}, want: 'r' },
  { desc: 'header absent required, present', ir: routes(named('r', [hdr('x-v', null, true)])), request: { headers: { 'x-v': '1' } }, want: null },
  { desc: 'inverted exact: other value', ir: routes(named('r', [hdr('x-v', exact('1'), true)])), request: { headers: { 'x-v': '2' } }, want: 'r' },
  { desc: 'inverted exact: header absent', ir: routes(named('r', [hdr('x-v', exact('1'), true)])), request: {}, want: 'r' },
  { desc: 'inverted exact: same value', ir: routes(named('r', [hdr('x-v', exact('1'), true)])), request: { headers: { 'x-v': '1' } }, want: null },
  { desc: 'several header lines are joined with ,', ir: routes(named('r', [hdr('x-v', exact('a,b'))])), request: { headers: { 'x-v': ['a', 'b'] } }, want: 'r' },
  { desc: 'cookie matches the whole header', ir: routes(named('r', [hdr('cookie', regex('.*user=jason.*'))])), request: { headers: { cookie: 'a=1; user=jason; b=2' } }, want: 'r' },
  { desc: 'every header condition must hold', ir: routes(named('r', [match({ headers: [{ name: 'a', match: exact('1'), invert: false }, { name: 'b', match: exact('2'), invert: false }] })])), request: { headers: { a: '1', b: '3' } }, want: null },
  { desc: 'query exact', ir: routes(named('r', [match({ queryParams: [{ name: 'v', match: exact('2') }] })])), request: { path: '/?v=2' }, want: 'r' },
  { desc: 'query exact mismatch', ir: routes(named('r', [match({ queryParams: [{ name: 'v', match: exact('2') }] })])), request: { path: '/?v=3' }, want: null },
  { desc: 'query exact "" matches value-less ?k', ir: routes(named('r', [match({ queryParams: [{ name: 'debug', match: exact('') }] })])), request: { path: '/?debug' }, want: 'r' },
  { desc: 'query exact "" does not match k=1', ir: routes(named('r', [match({ queryParams: [{ name: 'debug', match: exact('') }] })])), request: { path: '/?debug=1' }, want: null },
  { desc: 'query present', ir: routes(named('r', [match({ queryParams: [{ name: 'k', match: null }] })])), request: { path: '/p?a=1&k=x' }, want: 'r' },
  { desc: 'query absent', ir: routes(named('r', [match({ queryParams: [{ name: 'k', match: null }] })])), request: { path: '/p?a=1' }, want: null },
  { desc: 'query regex', ir: routes(named('r', [match({ queryParams: [{ name: 'id', match: regex('[0-9]+') }] })])), request: { path: '/?id=123' }, want: 'r' },
  { desc: 'query prefix', ir: routes(named('r', [match({ queryParams: [{ name: 'id', match: { kind: 'prefix', value: 'ab', ignoreCase: false } }] })])), request: { path: '/?id=abc' }, want: 'r' },
  { desc: 'method exact', ir: routes(named('r', [match({ method: exact('POST') })])), request: { method: 'POST' }, want: 'r' },
  { desc: 'method is case-sensitive', ir: routes(named('r', [match({ method: exact('POST') })])), request: { method: 'GET' }, want: null },
  { desc: 'method regex', ir: routes(named('r', [match({ method: regex('GET|HEAD') })])), request: { method: 'HEAD' }, want: 'r' },
  { desc: 'scheme https on an http listener', ir: routes(named('r', [match({ scheme: exact('https') })])), request: {}, want: null },
  { desc: 'scheme http', ir: routes(named('r', [match({ scheme: exact('http') })])), request: {}, want: 'r' },
  { desc: 'authority exact includes the port as sent', ir: routes(named('r', [match({ authority: exact('a.com:8080') })])), request: { host: 'a.com:8080' }, want: 'r' },
  { desc: 'authority exact without port', ir: routes(named('r', [match({ authority: exact('a.com:8080') })])), request: { host: 'a.com' }, want: null },
  { desc: 'authority prefix', ir: routes(named('r', [match({ authority: { kind: 'prefix', value: 'api.', ignoreCase: false } })])), request: { host: 'api.a.com' }, want: 'r' },
  { desc: 'port equals the listener externalPort', ir: routes(named('r', [match({ port: 80 })])), request: {}, want: 'r' },
  { desc: 'port differs', ir: routes(named('r', [match({ port: 8080 })])), request: {}, want: null },
  { desc: 'matches are ORed', ir: routes(named('r', [ex('/a'), ex('/b')])), request: { path: '/b' }, want: 'r' },
  { desc: 'fields of one match are ANDed', ir: routes(named('r', [match({ path: { kind: 'exact', value: '/a', ignoreCase: false }, method: exact('POST') })])), request: { path: '/a' }, want: null },
  { desc: 'first matching route wins', ir: routes(named('first', [seg('/')]), named('second', [ex('/x')])), request: { path: '/x' }, want: 'first' },
  { desc: 'later route when the first does not match', ir: routes(named('first', [ex('/y')]), named('second', [ex('/x')])), request: { path: '/x' }, want: 'second' },
  { desc: 'no route: null (404 NR)', ir: routes(named('r', [ex('/y')])), request: { path: '/x' }, want: null },
];

function hosts(): IRSnapshot {
  return snapshot([
    httpListener(80, [
      vhost('exact', ['shop.example.com'], [named('exact')]),
      vhost('short-wild', [{ kind: 'suffix', suffix: '.example.com', singleLabel: false }], [named('short-wild')]),
      vhost('long-wild', [{ kind: 'suffix', suffix: '.eu.example.com', singleLabel: false }], [named('long-wild')]),
      vhost('single', [{ kind: 'suffix', suffix: '.k8s.io', singleLabel: true }], [named('single')]),
      vhost('any', [{ kind: 'any' }], [named('any')]),
    ]),
  ]);
}

function hostsNoAny(): IRSnapshot {
  return snapshot([httpListener(80, [vhost('exact', ['a.com'], [named('exact')])])]);
}

const hostCases: Case[] = [
  { desc: 'exact host wins over wildcards', ir: hosts(), request: { host: 'shop.example.com' }, want: 'exact' },
  { desc: 'host is lowercased and its port stripped', ir: hosts(), request: { host: 'SHOP.Example.com:8080' }, want: 'exact' },
  { desc: 'longest suffix wins', ir: hosts(), request: { host: 'fr.eu.example.com' }, want: 'long-wild' },
  { desc: 'shorter suffix for other hosts', ir: hosts(), request: { host: 'us.example.com' }, want: 'short-wild' },
  { desc: 'non-singleLabel wildcard covers several labels', ir: hosts(), request: { host: 'a.b.c.example.com' }, want: 'short-wild' },
  { desc: 'suffix needs a non-empty prefix', ir: hosts(), request: { host: 'example.com' }, want: 'any' },
  { desc: 'singleLabel wildcard covers one label', ir: hosts(), request: { host: 'x.k8s.io' }, want: 'single' },
  { desc: 'singleLabel wildcard does not cover two labels', ir: hosts(), request: { host: 'a.b.k8s.io' }, want: 'any' },
  { desc: 'any host last', ir: hosts(), request: { host: 'other.org' }, want: 'any' },
  { desc: 'no any host: 404', ir: hostsNoAny(), request: { host: 'b.com' }, want: null },
  { desc: 'IPv6 literal host with port', ir: snapshot([httpListener(80, [vhost('v6', ['[::1]'], [named('v6')])])]), request: { host: '[::1]:8080' }, want: 'v6' },
];

function sniListener(withDefault: boolean): IRSnapshot {
  const chains = [
    chain('a', [vhost('a', ['*'], [named('chain-a')])], ['a.example.com']),
    chain('wild', [vhost('w', ['*'], [named('chain-wild')])], ['*.example.com']),
    chain('wild-eu', [vhost('w', ['*'], [named('chain-wild-eu')])], ['*.eu.example.com']),
  ];
  if (withDefault) chains.push(chain('default', [vhost('d', ['*'], [named('chain-default')])], []));
  return snapshot([httpsListener(443, chains)]);
}

const sniCases: Case[] = [
  { desc: 'SNI exact chain', ir: sniListener(true), request: { sni: 'a.example.com' }, want: 'chain-a' },
  { desc: 'SNI longest wildcard chain', ir: sniListener(true), request: { sni: 'x.eu.example.com' }, want: 'chain-wild-eu' },
  { desc: 'SNI shorter wildcard chain', ir: sniListener(true), request: { sni: 'b.example.com' }, want: 'chain-wild' },
  { desc: 'SNI unmatched: default chain', ir: sniListener(true), request: { sni: 'other.org' }, want: 'chain-default' },
  { desc: 'no SNI: default chain', ir: sniListener(true), request: {}, want: 'chain-default' },
  { desc: 'SNI unmatched and no default chain: refused', ir: sniListener(false), request: { sni: 'other.org' }, want: null },
  { desc: 'scheme is https on an HTTPS listener', ir: snapshot([httpsListener(443, [chain('c', [vhost('v', ['*'], [named('r', [match({ scheme: exact('https') })])])])])]), request: {}, want: 'r' },
];

for (const [group, cases] of [['path', pathCases], ['string matches', stringMatchCases], ['hosts', hostCases], ['sni', sniCases]] as const) {
  describe(`route decision table: ${group}`, () => {
    for (const c of cases) {
      test(c.desc, () => {
        const got = resolve(c.ir, c.request);
        assert.equal(got, c.want, `${c.desc}: expected route ${JSON.stringify(c.want)}, got ${JSON.stringify(got)}`);
      });
    }
  });
}

test('compileSnapshot is deterministic and does not mutate its input', () => {
  const ir = hosts();
  const before = JSON.stringify(ir);
  const a = compileSnapshot(ir);
  const b = compileSnapshot(ir);
  assert.equal(JSON.stringify(ir), before);
  assert.deepEqual([...a.listenersByKey.keys()], [...b.listenersByKey.keys()]);
});

test('an invalid regex makes compileSnapshot throw (apply refuses the snapshot)', () => {
  assert.throws(() => compileSnapshot(routes(named('r', [match({ path: { kind: 'regex', regex: { original: '(', source: '^(?:()$', flags: '' } } })]))));
});
