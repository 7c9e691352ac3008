/** Path normalization: a vector table per mode, and properties (idempotence, no dot segments). */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { EscapedSlashesAction, PathNormalizationMode } from '../../ir/types.js';
import { compilePathNormalizer, normalizePath } from './normalize.js';

const N = (mode: PathNormalizationMode, slashes: EscapedSlashesAction = 'REJECT') => compilePathNormalizer(mode, slashes);

const table: { desc: string; mode: PathNormalizationMode; slashes?: EscapedSlashesAction; input: string; want: string | null }[] = [
  { desc: 'plain path unchanged', mode: 'MERGE_SLASHES', input: '/api/v1/orders', want: '/api/v1/orders' },
  { desc: 'root', mode: 'MERGE_SLASHES', input: '/', want: '/' },
  { desc: 'dots inside names are not segments', mode: 'MERGE_SLASHES', input: '/a.b/..c/.d/e..', want: '/a.b/..c/.d/e..' },
  { desc: 'double slash merged', mode: 'MERGE_SLASHES', input: '//admin', want: '/admin' },
  { desc: 'double slash kept in BASE', mode: 'BASE', input: '//admin', want: '//admin' },
  { desc: 'dot segment', mode: 'BASE', input: '/./admin', want: '/admin' },
  { desc: 'dot-dot segment', mode: 'BASE', input: '/public/../admin', want: '/admin' },
  { desc: 'dot-dot above root', mode: 'BASE', input: '/../../admin', want: '/admin' },
  { desc: 'trailing dot', mode: 'BASE', input: '/admin/.', want: '/admin/' },
  { desc: 'trailing dot-dot', mode: 'BASE', input: '/a/b/..', want: '/a/' },
  { desc: 'encoded unreserved decoded', mode: 'BASE', input: '/%61dmin', want: '/admin' },
  { desc: 'encoded dots resolved', mode: 'BASE', input: '/a/%2e%2e/admin', want: '/admin' },
  { desc: 'mixed-case encoded dots', mode: 'BASE', input: '/a/.%2E/admin', want: '/admin' },
  { desc: 'reserved escape kept, uppercased', mode: 'BASE', input: '/a%3fb%3F', want: '/a%3Fb%3F' },
  { desc: 'percent escape decoded once only', mode: 'BASE', input: '/%252e%252e/admin', want: '/%252e%252e/admin' },
  { desc: 'backslash is a slash', mode: 'BASE', input: '/public\\..\\admin', want: '/admin' },
  { desc: 'merge then resolve (nginx order)', mode: 'MERGE_SLASHES', input: '/public//../admin', want: '/admin' },
  { desc: 'encoded slash rejected by default', mode: 'MERGE_SLASHES', input: '/admin%2Fx', want: null },
  { desc: 'encoded slash lowercase rejected', mode: 'MERGE_SLASHES', input: '/a%2fadmin', want: null },
  { desc: 'encoded backslash rejected', mode: 'MERGE_SLASHES', input: '/a%5Cadmin', want: null },
  { desc: 'encoded slash decoded by DECODE_AND_MERGE_SLASHES', mode: 'DECODE_AND_MERGE_SLASHES', input: '/public%2F..%2Fadmin', want: '/admin' },
  { desc: 'encoded backslash decoded', mode: 'DECODE_AND_MERGE_SLASHES', input: '/a%5c%5cb', want: '/a/b' },
  { desc: 'encoded slash kept when configured', mode: 'MERGE_SLASHES', slashes: 'KEEP', input: '/a%2fb', want: '/a%2Fb' },
  { desc: 'NUL rejected', mode: 'MERGE_SLASHES', input: '/admin%00.js', want: null },
  { desc: 'NUL rejected in NONE', mode: 'NONE', input: '/admin%00', want: null },
  { desc: 'malformed escape', mode: 'MERGE_SLASHES', input: '/a%zz', want: null },
  { desc: 'truncated escape', mode: 'MERGE_SLASHES', input: '/a%4', want: null },
  { desc: 'path parameter rejected', mode: 'MERGE_SLASHES', input: '/admin;x', want: null },
  { desc: 'raw non-ASCII rejected', mode: 'MERGE_SLASHES', input: '/caf\u00e9', want: null },
  { desc: 'space rejected', mode: 'BASE', input: '/a b', want: null },
  { desc: 'encoded UTF-8 kept', mode: 'MERGE_SLASHES', input: '/caf%c3%a9', want: '/caf%C3%A9' },
  { desc: 'NONE keeps dots and slashes', mode: 'NONE', input: '//a/../b', want: '//a/../b' },
  { desc: 'NONE rejects encoded slash by default', mode: 'NONE', input: '/a%2Fb', want: null },
  { desc: 'case is kept', mode: 'MERGE_SLASHES', input: '/ADMIN', want: '/ADMIN' },
];

describe('normalizePath', () => {
  for (const t of table) {
    test(t.desc, () => {
      assert.equal(normalizePath(t.input, N(t.mode, t.slashes)), t.want, `${t.mode} ${JSON.stringify(t.input)}`);
    });
  }

  test('an already-normal path is returned as the same string (no allocation)', () => {
    const p = '/api/v1/orders/12345';
    assert.ok(Object.is(normalizePath(p, N('MERGE_SLASHES')), p));
  });

  const pieces = ['a', 'admin', '..', '.', '', '%2e', '%2E%2e', '%61', '%2f', '%5c', '\\', '//', 'x.y', '%41dmin', '%25'];
  const pathArb = fc.array(fc.constantFrom(...pieces), { maxLength: 8 }).map((xs) => `/${xs.join('/')}`);
  const modes: PathNormalizationMode[] = ['BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];
  const slashes: EscapedSlashesAction[] = ['REJECT', 'DECODE', 'KEEP'];

  test('property: idempotent, starts with /, no dot segments, merged slashes', () => {
    fc.assert(
      fc.property(pathArb, fc.constantFrom(...modes), fc.constantFrom(...slashes), (p, mode, s) => {
        const n = N(mode, s);
        const once = normalizePath(p, n);
        if (once === null) return;
        assert.equal(normalizePath(once, n), once, `not idempotent: ${p} -> ${once}`);
        assert.ok(once.startsWith('/'));
        assert.ok(!once.split('/').some((seg) => seg === '.' || seg === '..'), `dot segment left in ${once}`);
        if (mode !== 'BASE') assert.ok(!once.includes('//'), `unmerged slashes in ${once}`);
        assert.ok(!/%(2e|2E|61|41)/.test(once), `unreserved escape left in ${once}`);
      }),
      { numRuns: 3000 },
    );
  });

  test('property: never throws on any string', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 40 }), fc.constantFrom<PathNormalizationMode>('NONE', ...modes), (s, mode) => {
        const r = normalizePath(`/${s}`, N(mode));
        assert.ok(r === null || typeof r === 'string');
      }),
      { numRuns: 3000 },
    );
  });
});
