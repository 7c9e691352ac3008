/**
 * Repeatable fuzzing of the request path and the translator (issue 5, hardening F-14), built on
 * fast-check (Jazzer.js cannot load here, see hardening.md §2). Three targets:
 *
 *  1. `normalize`  normalizePath + the DENY /admin policy on arbitrary paths: never throws, the result
 *                  is idempotent, and any accepted path that ANY common upstream reading maps into
 *                  /admin is denied (the no-bypass property on random input).
 *  2. `wire`       raw HTTP/1.1 requests (grammar + byte mutations: CL/TE variants, duplicates,
 *                  underscores, control bytes, odd versions, path tricks) through the real runtime
 *                  to a recording upstream: nothing smuggled, nothing under /admin reaches the
 *                  upstream, and the gateway keeps answering.
 *  3. `translate`  AuthorizationPolicy / RequestAuthentication / annotated VirtualService objects
 *                  with arbitrary field values: schema check + translate never throw, and translate
 *                  is deterministic.
 *  4. `h1diff`     meshgate's HTTP/1.1 request parser against llhttp (h1-diff.ts) on generated and
 *                  mutated requests, fed in random chunks: when both accept, method, target, version,
 *                  headers and body agree; meshgate never accepts what llhttp refuses.
 *
 * The `wire` target runs against the HTTP/1.1 engine MESHGATE_HTTP1_ENGINE names (meshgate or node).
 *
 * Run:   node dist/test/security/fuzz.js [--seed N] [--seconds S] [--target normalize|wire|translate|h1diff|all]
 * A failure prints the seed and the shrunk counterexample; rerun with the same seed to reproduce.
 * CI runs each target for a few seconds with a fixed seed (fuzz.test.ts).
 */

import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { checkObject } from '../../src/api/kinds.js';
import type { KubeObject } from '../../src/resources/types.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { compilePathNormalizer, normalizePath } from '../../src/runtime/http/normalize.js';
import { authorize, compileAuthz } from '../../src/runtime/filters/rbac.js';
import { DEFAULT_TRANSLATE_OPTIONS, translate } from '../../src/translate/index.js';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime } from '../support/runtime-harness.js';
import { DENY_ADMIN, isAdmin, upstreamReadings } from './corpus-policy.js';
import { sendRaw, startRecordingUpstream } from './harness.js';
import { checkDifferential, parseWithLlhttp, parseWithMeshgate } from './h1-diff.js';

export interface FuzzOptions {
  seed: number;
  seconds: number;
  target: 'normalize' | 'wire' | 'translate' | 'h1diff' | 'all';
}

const PIECES = ['admin', 'ADMIN', 'a', '.', '..', '', '%2e', '%2E%2e', '%61', '%41', '%2f', '%5C', '\\', '%00', '%25', '%252e', ';x', '%3F', '#', '?q', '%zz', '\u00e9', ' ', '%c3%a9', '{*}', 'public'];

const pathArb = fc.oneof(
  fc.array(fc.constantFrom(...PIECES), { maxLength: 7 }).map((xs) => `/${xs.join('/')}`),
  fc.array(fc.constantFrom(...PIECES, '/', '//'), { maxLength: 10 }).map((xs) => `/${xs.join('')}`),
  fc.string({ unit: 'binary-ascii', maxLength: 30 }).map((s) => `/${s}`),
);

function attrs(p: string) {
  return { method: 'GET', path: p, authority: 'gw.test', port: 80, remoteIp: '127.0.0.1', localIp: '127.0.0.1', sni: '', headerLines: () => [], identity: null, peerPrincipal: null };
}

function normalizeTarget(runs: number, seed: number): void {
  const authz = compileAuthz([DENY_ADMIN])!;
  const modes = ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'] as const;
  fc.assert(
    fc.property(pathArb, fc.constantFrom(...modes), (target, mode) => {
      // As the request handler does: a fragment is refused, the query is split off first.
      if (target.includes('#')) return;
      const p = target.split('?')[0];
      const n = compilePathNormalizer(mode, 'REJECT');
      const out = normalizePath(p, n);
      if (out === null) return;
      assert.equal(normalizePath(out, n), out, 'idempotent');
      const denied = !authorize(authz, attrs(out)).allowed;
      // BASE keeps `//`, which an upstream merging slashes reads as `/` (Istio's CVE-2021-31920, the
      // reason meshgate's default is MERGE_SLASHES): the no-bypass property is for the merging modes.
      if (mode !== 'BASE' && upstreamReadings(out).some(isAdmin)) assert.ok(denied, `bypass: ${JSON.stringify(p)} -> ${out} reads as /admin but is allowed`);
    }),
    { numRuns: runs, seed },
  );
}

const HEADER_ARB = fc.oneof(
  fc.constantFrom(
    'Content-Length: 5', 'Content-Length: 0', 'Content-Length: 5, 5', 'Content-Length: +5', 'Content-Length: 0x5', 'Content-Length: -1',
    'Transfer-Encoding: chunked', 'Transfer-Encoding: Chunked', 'Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: chunked, identity',
    'Transfer-Encoding:\tchunked', 'Transfer-Encoding : chunked', ' Transfer-Encoding: chunked', 'Host: other.test', 'X_Under: 1',
    'Connection: close', 'Connection: keep-alive, transfer-encoding', 'Expect: 100-continue', 'X-A: b\r\n c',
  ),
  fc.tuple(fc.constantFrom('X-F', 'Transfer-Encoding', 'Content-Length'), fc.string({ unit: 'binary-ascii', maxLength: 12 })).map(([n, v]) => `${n}: ${v}`),
);

const wireArb = fc.record({
  method: fc.constantFrom('GET', 'POST', 'get', 'PUT', 'OPTIONS', 'G\u00c9T', 'CONNECT'),
  target: fc.oneof(pathArb, fc.constantFrom('*', 'http://gw.test/admin', 'http://gw.test//admin', 'gw.test:80')),
  version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', ''),
  headers: fc.array(HEADER_ARB, { maxLength: 4 }),
  eol: fc.constantFrom('\r\n', '\r\n', '\n'),
  body: fc.constantFrom('', 'hello', '5\r\nhello\r\n0\r\n\r\n', `0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: gw.test\r\n\r\n`, 'x'.repeat(40)),
});

async function wireTarget(runs: number, seed: number, deadline: number): Promise<void> {
  const up = await startRecordingUpstream();
  const gw = await startRuntime(snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])], { authorizationPolicies: [DENY_ADMIN] }));
  const port = gw.port();
  try {
    await fc.assert(
      fc.asyncProperty(wireArb, async (w) => {
        if (Date.now() > deadline) return;
        up.reset();
        const head = `${w.method} ${w.target}${w.version === '' ? '' : ` ${w.version}`}${w.eol}Host: gw.test${w.eol}${w.headers.map((h) => h + w.eol).join('')}${w.eol}`;
        const r = await sendRaw(port, head + w.body, 300);
        for (const q of up.requests) {
          // A request pipelined behind an ACCEPTED one is the client's own; behind a rejected one it
          // must never be served.
          if (q.url === '/smuggled') assert.ok(r.statuses.length > 0 && r.statuses[0] < 400, `smuggled after a ${r.statuses[0]}: ${JSON.stringify(head + w.body)}`);
          assert.deepEqual(upstreamReadings(q.url).filter(isAdmin), [], `bypass: ${JSON.stringify(head)} reached the upstream as ${q.url}`);
        }
        const alive = await sendRaw(port, 'GET /alive HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n', 2000);
        assert.equal(alive.statuses[0], 200, `gateway stopped answering after ${JSON.stringify(head)}`);
      }),
      { numRuns: runs, seed },
    );
  } finally {
    await gw.close();
    await up.close();
  }
}

// ---- h1diff: the request parser against llhttp ----

const DIFF_METHODS = ['GET', 'POST', 'PUT', 'HEAD', 'OPTIONS', 'DELETE', 'PATCH', 'CONNECT', 'get', 'G\u00c9T', 'FOO', 'M-SEARCH', 'PURGE', 'QUERY', ''];
const DIFF_TARGETS = ['/', '/a?b=c', '*', 'http://gw.test/x', 'gw.test:443', '/a b', '/\x80', '/%00', '/a#f', '/\x7f', '/\t', '', '//x', '/?', "/!$&'()*+,;=:@"];
const DIFF_VERSIONS = ['HTTP/1.1', 'HTTP/1.0', 'HTTP/1.2', 'HTTP/2.0', 'HTTP/0.9', 'http/1.1', 'HTTP/1.1 ', 'HTTP/11', ''];
const DIFF_HEADERS = [
  'Host: gw.test', 'Host:gw.test', 'Host:  gw.test  ', 'Host: gw.test\t', 'X-E:', 'X-E: ', 'X-A: a b', 'X-A: \x80\xff', 'X-A: a\x00b', 'X-A: a\x7fb', 'X-A: a\x01b',
  'Content-Length: 5', 'Content-Length: 0', 'Content-Length: 05', 'Content-Length: 5 ', 'Content-Length:5', 'Content-Length: 5, 5', 'Content-Length: +5', 'Content-Length: 1e1', 'Content-Length: 99999999999999999999',
  'Transfer-Encoding: chunked', 'Transfer-Encoding: Chunked', 'Transfer-Encoding: chunked ', 'Transfer-Encoding: gzip, chunked', 'Transfer-Encoding: chunked, gzip', 'Transfer-Encoding: xchunked', 'Transfer-Encoding: identity', 'Transfer-Encoding: ',
  'Connection: close', 'Connection: keep-alive', 'Connection: upgrade', 'Connection: Upgrade, keep-alive', 'Upgrade: websocket', 'Upgrade: h2c', 'Expect: 100-continue',
  'Transfer-Encoding : chunked', ' X-Fold: 1', '\tX-Fold: 1', ': empty', 'X\x80: v', 'X-\x22: v', 'X Y: v', 'X-A\r: v', 'Cookie: a=b; c=d', 'X-Long: ' + 'v'.repeat(300),
];
const DIFF_BODIES = [
  '', 'hello', '5\r\nhello\r\n0\r\n\r\n', '5;ext=1\r\nhello\r\n0\r\n\r\n', '5;ext="q x"\r\nhello\r\n0\r\n\r\n', '5 ;x\r\nhello\r\n0\r\n\r\n', '5; x\r\nhello\r\n0\r\n\r\n',
  '0\r\nTrailer: v\r\n\r\n', '0\r\n\r\n', '00005\r\nhello\r\n0\r\n\r\n', 'A\r\n0123456789\r\n0\r\n\r\n', 'a\r\n0123456789\r\n0\r\n\r\n', '5\r\nhelloX\r\n0\r\n\r\n', '5\nhello\n0\n\n',
  '0x5\r\nhello\r\n0\r\n\r\n', '-1\r\nx\r\n', 'FFFFFFFFFFFFFFFFF\r\nx\r\n', '5\r\nhello\r\n0\r\nX: a\x00b\r\n\r\n', '5\r\nhello\r\n0\r\n bad\r\n\r\n',
];

const hostileMessage = fc.record({
  method: fc.constantFrom(...DIFF_METHODS),
  target: fc.constantFrom(...DIFF_TARGETS),
  version: fc.constantFrom(...DIFF_VERSIONS),
  headers: fc.array(fc.constantFrom(...DIFF_HEADERS), { maxLength: 5 }),
  eol: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r'),
  sp: fc.constantFrom(' ', ' ', ' ', '  ', '\t'),
  body: fc.constantFrom(...DIFF_BODIES),
  lead: fc.constantFrom('', '', '\r\n', '\n'),
});

const VALID_HEADERS = ['Accept: */*', 'User-Agent: fuzz/1.0', 'X-A: a b\tc', 'X-Empty:', 'Cookie: a=b; c=d', 'Connection: keep-alive', 'Connection: close', 'X-Obs: \xe9t\xe9', 'x-lower: v', 'X-Sp:   padded   ', 'Expect: 100-continue', 'Upgrade: websocket', 'Connection: Upgrade'];

/** A well-formed request with a real body framing (Content-Length or chunked, extensions, trailers). */
const validMessage = fc
  .record({
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'QUERY'),
    target: fc.constantFrom('/', '/a/b?c=d&e', '/x%20y', 'http://gw.test/p?q', 'http://gw.test', '*', "/!$&'()*+,;=:@~", '/a#frag'),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0'),
    headers: fc.array(fc.constantFrom(...VALID_HEADERS), { maxLength: 4 }),
    body: fc.string({ unit: 'binary-ascii', maxLength: 40 }),
    framing: fc.constantFrom('none', 'length', 'chunked', 'chunked'),
    chunks: fc.array(fc.integer({ min: 1, max: 20 }), { maxLength: 3 }),
    ext: fc.constantFrom('', '', ';a', ';a=b', ';a="q x"', ';a=1;b'),
    trailer: fc.constantFrom('', '', 'X-T: v\r\n', 'X-T: v\r\nX-U: w\r\n'),
    hexCase: fc.boolean(),
  })
  .map((v) => {
    const headers = ['Host: gw.test', ...v.headers];
    let body = '';
    if (v.framing === 'length') {
      headers.push(`Content-Length: ${v.body.length}`);
      body = v.body;
    } else if (v.framing === 'chunked') {
      headers.push('Transfer-Encoding: chunked');
      let rest = v.body;
      for (const n of v.chunks) {
        if (rest === '') break;
        const piece = rest.slice(0, n);
        rest = rest.slice(n);
        const size = piece.length.toString(16);
        body += `${v.hexCase ? size.toUpperCase() : size}${v.ext}\r\n${piece}\r\n`;
      }
      body += `0\r\n${v.trailer}\r\n`;
    }
    return { method: v.method, target: v.target, version: v.version, headers, eol: '\r\n', sp: ' ', body, lead: '' };
  });

const diffMessage = fc.oneof({ weight: 3, arbitrary: validMessage }, { weight: 1, arbitrary: hostileMessage });

/** A byte-level mutation: replace, insert or delete at a position (a fraction of the length). */
const diffMutation = fc.record({ at: fc.double({ min: 0, max: 1, noNaN: true }), op: fc.constantFrom('replace', 'insert', 'delete'), byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(9, 10, 13, 32, 58, 59, 44)) });

const diffInput = fc.record({
  messages: fc.array(diffMessage, { minLength: 1, maxLength: 3 }),
  mutations: fc.oneof({ weight: 2, arbitrary: fc.constant<{ at: number; op: 'replace' | 'insert' | 'delete'; byte: number }[]>([]) }, { weight: 1, arbitrary: fc.array(diffMutation, { minLength: 1, maxLength: 2 }) }),
  splits: fc.array(fc.integer({ min: 1, max: 400 }), { maxLength: 6 }),
});

/** The bytes of a generated input. */
export function diffBytes(d: { messages: { method: string; target: string; version: string; headers: string[]; eol: string; sp: string; body: string; lead: string }[]; mutations: { at: number; op: string; byte: number }[] }): Buffer {
  let text = '';
  for (const m of d.messages) {
    text += `${m.lead}${m.method}${m.sp}${m.target}${m.version === '' ? '' : `${m.sp}${m.version}`}${m.eol}`;
    for (const h of m.headers) text += `${h}${m.eol}`;
    text += `${m.eol}${m.body}`;
  }
  const bytes = [...Buffer.from(text, 'latin1')];
  for (const mu of d.mutations) {
    const at = Math.min(bytes.length, Math.floor(mu.at * bytes.length));
    if (mu.op === 'insert') bytes.splice(at, 0, mu.byte);
    else if (at < bytes.length) {
      if (mu.op === 'replace') bytes[at] = mu.byte;
      else bytes.splice(at, 1);
    }
  }
  return Buffer.from(bytes);
}

/** What a differential run compared: inputs where both parsers completed a message, and where only one did. */
export interface DiffStats {
  runs: number;
  /** Both completed at least one message (and agreed on them). */
  bothAccepted: number;
  /** ...of which with a non-empty body. */
  withBody: number;
  /** llhttp completed a message meshgate refused (meshgate is stricter). */
  stricter: number;
  /** Neither completed a message. */
  neither: number;
}

/** Runs the differential property `runs` times from `seed`. */
export function h1DiffTarget(runs: number, seed: number): DiffStats {
  const stats: DiffStats = { runs: 0, bothAccepted: 0, withBody: 0, stricter: 0, neither: 0 };
  fc.assert(
    fc.property(diffInput, (d) => {
      const input = diffBytes(d);
      const violation = checkDifferential(input, d.splits);
      assert.equal(violation, null, violation ?? '');
      stats.runs++;
      const a = parseWithLlhttp(input).messages.filter((m) => m.complete || m.upgrade);
      const b = parseWithMeshgate(input, d.splits).messages.filter((m) => m.complete || m.upgrade);
      if (b.length > 0) {
        stats.bothAccepted++;
        if (b.some((m) => m.body !== '')) stats.withBody++;
      } else if (a.length > 0) stats.stricter++;
      else stats.neither++;
    }),
    { numRuns: runs, seed },
  );
  return stats;
}

function obj(body: Record<string, unknown>): KubeObject {
  const meta = body.metadata as Record<string, unknown>;
  return {
    apiVersion: String(body.apiVersion),
    kind: String(body.kind),
    metadata: { name: String(meta.name), namespace: String(meta.namespace), labels: {}, annotations: (meta.annotations as Record<string, string>) ?? {}, creationTimestamp: null },
    body,
    origin: { file: null, line: null, order: String(meta.name), fieldLines: {} },
  };
}

function translateTarget(runs: number, seed: number): void {
  const value = fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom('*', '/admin*', '10.0.0.0/8', '::1/200', '{**}', 'request.headers[x]'), fc.integer(), fc.constant(null));
  const strs = fc.array(value, { maxLength: 3 });
  const policy = fc.record({
    kind: fc.constantFrom('AuthorizationPolicy', 'RequestAuthentication', 'VirtualService'),
    version: fc.constantFrom('v1', 'v1beta1'),
    ns: fc.constantFrom('istio-system', 'default'),
    name: fc.constantFrom('a', 'b'),
    action: fc.oneof(fc.constantFrom('ALLOW', 'DENY', 'AUDIT', 'CUSTOM'), value),
    paths: strs,
    ips: strs,
    key: value,
    issuer: value,
    jwks: fc.oneof(value, fc.constant('{"keys":[{"kty":"RSA"}]}')),
    annotation: fc.oneof(fc.string({ maxLength: 12 }), fc.constantFrom('10/s', '1/m burst=2 key=remote-ip')),
  });
  fc.assert(
    fc.property(fc.array(policy, { maxLength: 4 }), (ps) => {
      const objects = ps.map((p) => {
        const group = p.kind === 'VirtualService' ? 'networking.istio.io' : 'security.istio.io';
        const spec =
          p.kind === 'AuthorizationPolicy'
            ? { action: p.action, rules: [{ from: [{ source: { ipBlocks: p.ips } }], to: [{ operation: { paths: p.paths } }], when: [{ key: p.key, values: p.paths }] }] }
            : p.kind === 'RequestAuthentication'
              ? { jwtRules: [{ issuer: p.issuer, jwks: p.jwks, fromHeaders: [{ name: p.key }] }] }
              : { hosts: ['a.test'], http: [{ route: [{ destination: { host: 'web' } }] }] };
        return obj({ apiVersion: `${group}/${p.version}`, kind: p.kind, metadata: { name: p.name, namespace: p.ns, annotations: { 'meshgate.io/local-rate-limit': p.annotation } }, spec });
      });
      const seen = new Set<string>();
      const accepted = objects.filter((o) => {
        const key = `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
        if (seen.has(key)) return false;
        seen.add(key);
        return !checkObject(o).some((d) => d.severity === 'error');
      });
      const a = translate(new ResourceSet(accepted), DEFAULT_TRANSLATE_OPTIONS);
      const b = translate(new ResourceSet([...accepted].reverse()), DEFAULT_TRANSLATE_OPTIONS);
      assert.equal(a.ir.version, b.ir.version);
      compileAuthz(a.ir.security.authorizationPolicies);
    }),
    { numRuns: runs, seed },
  );
}

/** Runs the chosen targets until each has had its share of `seconds`. */
export async function runFuzz(o: FuzzOptions): Promise<{ target: string; runs: number }[]> {
  const targets = o.target === 'all' ? (['normalize', 'translate', 'wire', 'h1diff'] as const) : [o.target];
  const share = (o.seconds * 1000) / targets.length;
  const report: { target: string; runs: number }[] = [];
  for (const t of targets) {
    const until = Date.now() + share;
    let runs = 0;
    let round = 0;
    while (Date.now() < until) {
      const seed = o.seed + round++;
      if (t === 'normalize') {
        normalizeTarget(2000, seed);
        runs += 2000;
      } else if (t === 'translate') {
        translateTarget(100, seed);
        runs += 100;
      } else if (t === 'h1diff') {
        h1DiffTarget(2000, seed);
        runs += 2000;
      } else {
        await wireTarget(50, seed, until);
        runs += 50;
      }
    }
    report.push({ target: t, runs });
  }
  return report;
}

// `node --test dist/test/` imports every file under test/: run only when started as a script.
if (process.argv[1] === fileURLToPath(import.meta.url) && process.env.NODE_TEST_CONTEXT === undefined) {
  const arg = (name: string, dflt: string) => {
    const i = process.argv.indexOf(`--${name}`);
    return i === -1 ? dflt : process.argv[i + 1];
  };
  const opts: FuzzOptions = { seed: Number(arg('seed', String(Date.now() % 1_000_000))), seconds: Number(arg('seconds', '60')), target: arg('target', 'all') as FuzzOptions['target'] };
  console.log(`fuzz: seed ${opts.seed}, ${opts.seconds} s, target ${opts.target}`);
  runFuzz(opts).then(
    (r) => console.log(`fuzz: ok ${JSON.stringify(r)}`),
    (err: unknown) => {
      console.error(`fuzz: FAILED with seed ${opts.seed} (rerun with --seed ${opts.seed})\n${(err as Error).message}`);
      process.exitCode = 1;
    },
  );
}
