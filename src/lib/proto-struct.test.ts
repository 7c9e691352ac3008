import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decodeStruct, encodeStruct, type StructObject, type StructValue } from './proto-struct.js';

/** Hex with spaces and line breaks for reading; compared without them. */
function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ''), 'hex');
}

/** Plain objects (the decoder's are null-prototype), for deep comparison. */
function plain(v: unknown): unknown {
  return JSON.parse(JSON.stringify(v)) as unknown;
}

/** A deep copy into ordinary objects (numbers kept exactly: -0, Infinity), for strict comparison. */
function copy(v: StructValue): StructValue {
  if (Array.isArray(v)) return v.map(copy);
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, copy(x)])) as StructObject;
  return v;
}

/** Vectors worked out by hand from the protobuf encoding spec and struct.proto (see proto-struct.ts). */
const VECTORS: { desc: string; input: StructObject; want: Buffer }[] = [
  { desc: 'empty Struct: no bytes', input: {}, want: hex('') },
  {
    // fields(1, LEN) { key(1, LEN) "NAME", value(2, LEN) Value{ string_value(3, LEN) "a" } }
    desc: 'one string field',
    input: { NAME: 'a' },
    want: hex('0a0b 0a04 4e414d45 1203 1a01 61'),
  },
  {
    desc: 'every Value kind, entries sorted by key',
    input: { x: null, n: 1.5, l: ['s', {}], b: true },
    want: hex(`
      0a07 0a0162 1202 2001
      0a10 0a016c 120b 3209 0a03 1a0173 0a02 2a00
      0a0e 0a016e 1209 11 000000000000f83f
      0a07 0a0178 1202 0800`),
  },
  {
    // A oneof member holding its default is still written (proto3 oneof presence).
    desc: 'empty string, false and zero are written',
    input: { s: '', f: false, z: 0 },
    want: hex(`
      0a07 0a0166 1202 2000
      0a07 0a0173 1202 1a00
      0a0e 0a017a 1209 11 0000000000000000`),
  },
  {
    desc: 'nested Struct; keys in UTF-8 byte order (uppercase before lowercase)',
    input: { labels: { app: 'x' }, LABELS: {} },
    want: hex(`
      0a0c 0a064c4142454c53 1202 2a00
      0a18 0a066c6162656c73 120e 2a0c 0a0a 0a03617070 1203 1a0178`),
  },
];

describe('google.protobuf.Struct codec', () => {
  for (const v of VECTORS) {
    test(`encode: ${v.desc}`, () => {
      assert.equal(encodeStruct(v.input).toString('hex'), v.want.toString('hex'));
    });
    test(`decode: ${v.desc}`, () => {
      assert.deepEqual(plain(decodeStruct(v.want)), plain(v.input));
    });
  }

  test('decode takes entries in any order, and a repeated key keeps its last value', () => {
    const b = hex('0a0b 0a04 4e414d45 1203 1a01 62   0a07 0a0162 1202 2001   0a0b 0a04 4e414d45 1203 1a01 61');
    assert.deepEqual({ ...decodeStruct(b) }, { NAME: 'a', b: true });
  });

  test('decode skips unknown fields of Struct, entry and Value', () => {
    // Struct field 7 (varint), entry field 3 (LEN), Value field 9 (fixed32).
    const b = hex('3801   0a12 0a04 4e414d45 1a00 1208 1a01 61 4d01020304');
    assert.deepEqual({ ...decodeStruct(b) }, { NAME: 'a' });
  });

  test('a key named __proto__ is an ordinary key', () => {
    const s = decodeStruct(encodeStruct(JSON.parse('{"__proto__": "x"}') as StructObject));
    assert.equal(Object.getPrototypeOf(s), null);
    assert.equal(s.__proto__, 'x');
  });

  const bad: { desc: string; input: Buffer }[] = [
    { desc: 'truncated length', input: hex('0a0b 0a04 4e414d45 1203 1a01') },
    { desc: 'truncated varint', input: hex('0a') },
    { desc: 'fields with a varint wire type', input: hex('0801') },
    { desc: 'string_value with a varint wire type', input: hex('0a09 0a04 4e414d45 1201 18') },
    { desc: 'truncated double', input: hex('0a0a 0a01 6e 1205 11 00000000') },
    { desc: 'wire type 3 (groups are not supported)', input: hex('0a07 0a0162 1202 2b01') },
  ];
  for (const b of bad) {
    test(`decode refuses: ${b.desc}`, () => {
      assert.throws(() => decodeStruct(b.input));
    });
  }

  test('nesting is bounded', () => {
    let s: StructObject = { leaf: 'x' };
    for (let i = 0; i < 40; i++) s = { n: s };
    assert.throws(() => decodeStruct(encodeStruct(s)), /nested too deeply/);
  });

  test('round trip of non-ASCII text and large lists', () => {
    const input: StructObject = { 'clé': 'välue ✓', list: Array.from({ length: 300 }, (_, i) => `item-${i}`), big: 1e300, neg: -2 };
    assert.deepEqual({ ...decodeStruct(encodeStruct(input)) }, input);
  });

  // Values as a Struct holds them (doubles without NaN, which equality cannot compare; -0 and infinities included).
  const value: fc.Arbitrary<StructValue> = fc.letrec<{ v: StructValue }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant(null),
      fc.boolean(),
      fc.double({ noNaN: true }),
      fc.string({ unit: 'grapheme' }),
      fc.array(tie('v'), { maxLength: 4 }),
      fc.dictionary(fc.string(), tie('v'), { maxKeys: 4 }),
    ),
  })).v;

  test('property: decode(encode(s)) is s, and encoding is deterministic whatever the key order', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string(), value, { maxKeys: 6 }), (s) => {
        const bytes = encodeStruct(s);
        assert.deepStrictEqual(copy(decodeStruct(bytes)), copy(s));
        const reversed = Object.fromEntries(Object.entries(s).reverse()) as StructObject;
        assert.equal(encodeStruct(reversed).toString('hex'), bytes.toString('hex'));
      }),
      { numRuns: 300 },
    );
  });

  test('property: any bytes decode to a Struct or throw an Error, never anything else', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
        try {
          decodeStruct(Buffer.from(b));
        } catch (e) {
          assert.ok(e instanceof Error);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
