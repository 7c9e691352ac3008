import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { fieldIndex, fieldKey, parentPath } from './field-path.js';
import { arrayOf, boolean, duration, integer, intOrString, mapOf, object, oneOfStrings, string, suggest, validate } from './schema.js';

describe('field paths', () => {
  test('keys and indices', () => {
    assert.equal(fieldKey('', 'spec'), 'spec');
    assert.equal(fieldIndex(fieldKey(fieldKey('', 'spec'), 'rules'), 0), 'spec.rules[0]');
    assert.equal(fieldKey('metadata.labels', 'app.kubernetes.io/name'), 'metadata.labels["app.kubernetes.io/name"]');
    assert.equal(fieldKey('h', 'x-user'), 'h.x-user');
  });

  const parents: { desc: string; input: string; want: string | null }[] = [
    { desc: 'root', input: '', want: null },
    { desc: 'top key', input: 'spec', want: '' },
    { desc: 'nested key', input: 'spec.rules', want: 'spec' },
    { desc: 'index', input: 'spec.rules[0]', want: 'spec.rules' },
    { desc: 'key after index', input: 'spec.rules[0].host', want: 'spec.rules[0]' },
    { desc: 'quoted key', input: 'metadata.labels["a.b/c"]', want: 'metadata.labels' },
    { desc: 'quoted key with quote and bracket', input: 'a["x\\"[y"]', want: 'a' },
    { desc: 'key after quoted key', input: 'a["x.y"].b', want: 'a["x.y"]' },
  ];
  for (const c of parents) test(`parentPath: ${c.desc}`, () => assert.equal(parentPath(c.input), c.want));

  test('parentPath undoes fieldKey and fieldIndex', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.nat(20)), { minLength: 1, maxLength: 6 }), (steps) => {
        let p = '';
        const seen: string[] = [];
        for (const s of steps) {
          seen.push(p);
          p = typeof s === 'number' ? fieldIndex(p, s) : fieldKey(p, s);
        }
        for (let i = seen.length - 1; i >= 0; i--) {
          const up = parentPath(p);
          assert.equal(up, seen[i]);
          p = up as string;
        }
      }),
    );
  });
});

describe('suggest', () => {
  const known = ['pathType', 'path', 'backend', 'timeout', 'http1MaxPendingRequests'];
  const cases: { desc: string; input: string; want: string | null }[] = [
    { desc: 'case', input: 'pathtype', want: 'pathType' },
    { desc: 'snake_case', input: 'path_type', want: 'pathType' },
    { desc: 'one letter missing', input: 'backed', want: 'backend' },
    { desc: 'transposition', input: 'timoeut', want: 'timeout' },
    { desc: 'nothing close', input: 'zebra', want: null },
    { desc: 'short and far', input: 'xy', want: null },
  ];
  for (const c of cases) test(c.desc, () => assert.equal(suggest(c.input, known), c.want));
});

describe('validate', () => {
  const schema = object(
    {
      name: string,
      count: integer(0, 10),
      on: boolean,
      mode: oneOfStrings('A', 'B'),
      port: intOrString,
      wait: duration,
      tags: arrayOf(string),
      labels: mapOf(string),
      inner: object({ x: string }, { name: 'Inner', required: ['x'], oneOf: [['x', 'y']], open: true }),
    },
    { name: 'Thing' },
  );
  const cases: { desc: string; input: unknown; want: string[] }[] = [
    { desc: 'valid', input: { name: 'a', count: 3, on: true, mode: 'A', port: 'http', wait: '1s', tags: ['x'], labels: { a: 'b' }, inner: { x: 'y', extra: 1 } }, want: [] },
    { desc: 'nulls are absent', input: { name: null, inner: null, tags: null }, want: [] },
    { desc: 'not an object', input: [1], want: ['MG_INVALID_FIELD :expected an object, got a list'] },
    { desc: 'integer range', input: { count: 11 }, want: ['MG_INVALID_FIELD count:expected an integer between 0 and 10, got number 11'] },
    { desc: 'integer, not a float', input: { count: 1.5 }, want: ['MG_INVALID_FIELD count:expected an integer between 0 and 10, got number 1.5'] },
    { desc: 'int-or-string', input: { port: true }, want: ['MG_INVALID_FIELD port:expected an integer or a string, got boolean true'] },
    { desc: 'negative duration', input: { wait: '-1s' }, want: ['MG_INVALID_FIELD wait:expected a duration that is not negative, got "-1s"'] },
    { desc: 'array item', input: { tags: ['a', 2] }, want: ['MG_INVALID_FIELD tags[1]:expected a string, got number 2'] },
    { desc: 'map value', input: { labels: { 'a.b': 1 } }, want: ['MG_INVALID_FIELD labels["a.b"]:expected a string, got number 1'] },
    { desc: 'required', input: { inner: {} }, want: ['MG_MISSING_FIELD inner.x:`x` is required in Inner'] },
    { desc: 'oneOf', input: { inner: { x: 'a', y: 'b' } }, want: ['MG_INVALID_FIELD inner.y:only one of `x`, `y` may be set; found `x` and `y`'] },
    { desc: 'prototype keys are unknown fields', input: JSON.parse('{"__proto__": 1, "constructor": 2}'), want: ['MG_UNKNOWN_FIELD __proto__:unknown field `__proto__` in Thing', 'MG_UNKNOWN_FIELD constructor:unknown field `constructor` in Thing'] },
  ];
  for (const c of cases) {
    test(c.desc, () => assert.deepEqual(validate(c.input, schema).map((p) => `${p.reason} ${p.field}:${p.message}`), c.want));
  }
});
