import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileRe2, compileRe2Unanchored } from './re2.js';

interface Case {
  desc: string;
  input: string;
  /** Expected JavaScript source (anchored) and flags, when checked literally. */
  source?: string;
  flags?: string;
  /** Strings the regex must match in full, and strings it must not. */
  matches?: string[];
  rejects?: string[];
  /** Substring of the error message; when set the pattern must be refused. */
  error?: string;
}

const cases: Case[] = [
  { desc: 'plain literal is anchored', input: '/api', source: '^(?:/api)$', flags: 'u', matches: ['/api'], rejects: ['/api/x', 'x/api'] },
  { desc: 'dot star', input: '/api/.*', matches: ['/api/', '/api/a/b'], rejects: ['/ap'] },
  { desc: 'alternation stays inside the anchors', input: 'a|b', source: '^(?:a|b)$', matches: ['a', 'b'], rejects: ['ab'] },
  { desc: 'leading (?i)', input: '(?i)/API', flags: 'iu', matches: ['/api', '/Api'] },
  { desc: 'leading (?s)', input: '(?s)a.b', flags: 'su', matches: ['a\nb'] },
  { desc: 'leading (?is)', input: '(?is)a.b', flags: 'isu', matches: ['A\nB'] },
  { desc: 'two leading flag groups', input: '(?i)(?s)a.b', flags: 'isu', matches: ['A\nb'] },
  { desc: 'leading (?m) keeps full-string anchoring', input: '(?m)^a$', flags: 'mu', matches: ['a'], rejects: ['a\nb'] },
  { desc: '\\A and \\z', input: '\\Aabc\\z', matches: ['abc'], rejects: ['abcd'] },
  { desc: '(?P<name>) becomes (?<name>)', input: '/(?P<id>[0-9]+)', source: '^(?:/(?<id>[0-9]+))$', matches: ['/12'] },
  { desc: '(?<name>) kept', input: '(?<x>a)', matches: ['a'] },
  { desc: 'POSIX class', input: '[[:alpha:]]+', source: '^(?:[A-Za-z]+)$', matches: ['abcXYZ'], rejects: ['ab1'] },
  { desc: 'POSIX class with other items', input: '[[:digit:]_-]+', matches: ['1_-2'], rejects: ['a'] },
  { desc: 'negated POSIX class standing alone', input: '[[:^digit:]]+', matches: ['abc'], rejects: ['a1'] },
  { desc: 'POSIX punct', input: '[[:punct:]]', matches: ['!', '`', '~', '/'], rejects: ['a', ' '] },
  { desc: 'escaped punctuation RE2 allows', input: '\\-\\#\\:\\@', matches: ['-#:@'] },
  { desc: 'escaped slash and dot', input: '\\/a\\.b', matches: ['/a.b'], rejects: ['/axb'] },
  { desc: 'literal { } ] are literals', input: 'a{b}]', matches: ['a{b}]'] },
  { desc: 'repeat counts', input: 'a{2,3}', matches: ['aa', 'aaa'], rejects: ['a', 'aaaa'] },
  { desc: 'open repeat', input: 'a{2,}', matches: ['aaaaa'], rejects: ['a'] },
  { desc: 'lazy quantifiers', input: 'a+?b*?c??', matches: ['aab'] },
  { desc: 'leading ] in a class is a literal', input: '[]a]+', matches: [']a]'] },
  { desc: 'negated class with leading ]', input: '[^]a]', matches: ['b'], rejects: [']', 'a'] },
  { desc: 'dash at class ends', input: '[-a-c-]+', matches: ['-abc-'], rejects: ['d'] },
  { desc: 'class escapes', input: '[\\w\\-.]+', matches: ['a-b.c_'] },
  { desc: '\\Q...\\E quoting', input: '\\Qa.b*\\E+', matches: ['a.b**'], rejects: ['axb*'] },
  { desc: '\\x{...} and \\xHH', input: '\\x{41}\\x42', matches: ['AB'] },
  { desc: '\\x{...} above latin1', input: '\\x{263a}', matches: ['\u263a'] },
  { desc: 'octal escape', input: '\\101', matches: ['A'] },
  { desc: '\\pL and \\p{Greek}', input: '\\pL\\p{Greek}', matches: ['aα'], rejects: ['1α', 'ab'] },
  { desc: '\\PN and \\p{^L}', input: '\\PN\\p{^L}', matches: ['a1'], rejects: ['1a'] },
  { desc: 'dot matches one code point', input: '^.$', matches: ['😀'] },
  { desc: 'word boundary', input: '.*\\bfoo\\b.*', matches: ['a foo b'], rejects: ['afoob'] },
  { desc: 'common path regex', input: '/v[0-9]+/users/[^/]+', matches: ['/v1/users/bob'], rejects: ['/v1/users/bob/x'] },
  { desc: 'header-ish regex', input: '.*(Chrome|Firefox)/[0-9.]+.*', matches: ['Mozilla Chrome/120.0 x'] },
  { desc: 'empty pattern matches the empty string', input: '', matches: [''], rejects: ['a'] },
  { desc: 'backreference', input: '(a)\\1', error: 'backreferences' },
  { desc: 'named backreference', input: '(?P<x>a)(?P=x)', error: 'backreferences' },
  { desc: 'lookahead', input: 'a(?=b)', error: 'lookahead' },
  { desc: 'negative lookahead', input: 'a(?!b)', error: 'lookahead' },
  { desc: 'lookbehind', input: '(?<=a)b', error: 'lookbehind' },
  { desc: 'negative lookbehind', input: '(?<!a)b', error: 'lookbehind' },
  { desc: 'atomic group', input: '(?>a)', error: 'atomic' },
  { desc: 'possessive', input: 'a*+', error: 'possessive' },
  { desc: 'possessive plus', input: 'a++', error: 'possessive' },
  { desc: 'double quantifier', input: 'a**', error: 'repetition' },
  { desc: 'nothing to repeat', input: '*a', error: 'repetition' },
  { desc: 'inline flags in the middle', input: 'a(?i)b', error: 'flags are only supported at the start' },
  { desc: 'flag group', input: '(?i:a)b', error: 'flags are only supported at the start' },
  { desc: 'ungreedy flag', input: '(?U)a*', error: 'ungreedy' },
  { desc: '\\Z', input: 'a\\Z', error: '\\Z' },
  { desc: '\\C', input: 'a\\C', error: '\\C' },
  { desc: 'unknown escape', input: '\\k<x>', error: '\\k' },
  { desc: 'repeat above 1000', input: 'a{1001}', error: 'limit' },
  { desc: 'unbalanced parenthesis', input: '(a', error: 'invalid regular expression' },
  { desc: 'unterminated class', input: '[a', error: 'missing closing ]' },
  { desc: 'trailing backslash', input: 'a\\', error: 'trailing backslash' },
  { desc: 'unknown POSIX class', input: '[[:foo:]]', error: 'unknown POSIX class' },
  { desc: 'negated POSIX inside a larger class', input: '[a[:^digit:]]', error: 'negated POSIX' },
];

for (const c of cases) {
  test(`compileRe2: ${c.desc}`, () => {
    const r = compileRe2(c.input);
    if (c.error !== undefined) {
      assert.equal(r.ok, false, `expected ${JSON.stringify(c.input)} to be refused, got ${JSON.stringify(r)}`);
      if (!r.ok) assert.ok(r.message.includes(c.error), `message ${JSON.stringify(r.message)} should mention ${JSON.stringify(c.error)}`);
      return;
    }
    assert.equal(r.ok, true, `expected ${JSON.stringify(c.input)} to compile, got ${JSON.stringify(r)}`);
    if (!r.ok) return;
    assert.equal(r.regex.original, c.input);
    if (c.source !== undefined) assert.equal(r.regex.source, c.source);
    if (c.flags !== undefined) assert.equal(r.regex.flags, c.flags);
    const re = new RegExp(r.regex.source, r.regex.flags);
    for (const s of c.matches ?? []) assert.ok(re.test(s), `${c.input} (${re}) should match ${JSON.stringify(s)}`);
    for (const s of c.rejects ?? []) assert.ok(!re.test(s), `${c.input} (${re}) should not match ${JSON.stringify(s)}`);
  });
}

test('compileRe2Unanchored: finds matches inside the string', () => {
  const r = compileRe2Unanchored('/v1/([^/]+)');
  assert.ok(r.ok);
  if (!r.ok) return;
  assert.equal(r.regex.source, '/v1/([^/]+)');
  assert.equal('/api/v1/users/x'.replace(new RegExp(r.regex.source, r.regex.flags + 'g'), '/v2/$1'), '/api/v2/users/x');
});

test('compileRe2Unanchored: flags and rejections', () => {
  const r = compileRe2Unanchored('(?i)abc');
  assert.ok(r.ok && r.regex.flags === 'iu');
  assert.equal(compileRe2Unanchored('a(?=b)').ok, false);
});
