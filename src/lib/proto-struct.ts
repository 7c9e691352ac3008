/**
 * `google.protobuf.Struct` on the wire, by hand (no protobuf library on the hot path; the shape is
 * fixed by struct.proto):
 *
 *   message Struct    { map<string, Value> fields = 1; }      // entry: { string key = 1; Value value = 2; }
 *   message Value     { oneof kind { NullValue null_value = 1;  // varint (0)
 *                                    double number_value = 2;   // fixed64, little endian
 *                                    string string_value = 3;   // length-delimited
 *                                    bool bool_value = 4;       // varint
 *                                    Struct struct_value = 5;   // length-delimited
 *                                    ListValue list_value = 6; } }
 *   message ListValue { repeated Value values = 1; }
 *
 * Encoding is deterministic as protobuf's `SetSerializationDeterministic(true)`, which Istio's
 * proxies use for their metadata exchange value: map entries sorted by key (byte order), each entry
 * with both its key and its value (C++ and Go always write both), a oneof member written even when
 * it holds its default (`""`, `0`, `false`). Decoding accepts any order, skips unknown fields, lets a
 * repeated map key keep its last value (protobuf's rule) and throws on malformed input.
 */

/** What a `Value` holds, as plain JavaScript: null, number, string, boolean, object (Struct) or array (ListValue). */
export type StructValue = null | number | string | boolean | StructObject | StructValue[];
export interface StructObject {
  [key: string]: StructValue;
}

// ---- encoding -----------------------------------------------------------------------------------

class Writer {
  #buf = Buffer.allocUnsafe(256);
  #len = 0;

  #room(n: number): void {
    if (this.#len + n <= this.#buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, this.#len + n));
    this.#buf.copy(next, 0, 0, this.#len);
    this.#buf = next;
  }

  varint(v: number): void {
    this.#room(10);
    while (v > 0x7f) {
      this.#buf[this.#len++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.#buf[this.#len++] = v;
  }

  bytes(b: Buffer): void {
    this.#room(b.length);
    b.copy(this.#buf, this.#len);
    this.#len += b.length;
  }

  double(v: number): void {
    this.#room(8);
    this.#buf.writeDoubleLE(v, this.#len);
    this.#len += 8;
  }

  result(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}

/** Length-delimited field `field` holding `body`. */
function putLen(w: Writer, field: number, body: Buffer): void {
  w.varint((field << 3) | 2);
  w.varint(body.length);
  w.bytes(body);
}

function valueBytes(v: StructValue): Buffer {
  const w = new Writer();
  if (v === null) {
    w.varint((1 << 3) | 0);
    w.varint(0);
  } else if (typeof v === 'number') {
    w.varint((2 << 3) | 1);
    w.double(v);
  } else if (typeof v === 'string') {
    putLen(w, 3, Buffer.from(v, 'utf8'));
  } else if (typeof v === 'boolean') {
    w.varint((4 << 3) | 0);
    w.varint(v ? 1 : 0);
  } else if (Array.isArray(v)) {
    const list = new Writer();
    for (const item of v) putLen(list, 1, valueBytes(item));
    putLen(w, 6, list.result());
  } else {
    putLen(w, 5, encodeStruct(v));
  }
  return w.result();
}

/** Byte order of UTF-8 keys (protobuf's deterministic map order for string keys). */
function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** A `google.protobuf.Struct`, deterministically serialized. */
export function encodeStruct(fields: StructObject): Buffer {
  const w = new Writer();
  for (const key of Object.keys(fields).sort(compareKeys)) {
    const entry = new Writer();
    putLen(entry, 1, Buffer.from(key, 'utf8'));
    putLen(entry, 2, valueBytes(fields[key]));
    putLen(w, 1, entry.result());
  }
  return w.result();
}

// ---- decoding -----------------------------------------------------------------------------------

/** Nesting deeper than this is refused (a peer's header must not recurse without bound). */
const MAX_DEPTH = 32;

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  get done(): boolean {
    return this.pos >= this.end;
  }

  varint(): number {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('truncated protobuf varint');
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) return result;
      mul *= 128;
    }
    throw new Error('protobuf varint too long');
  }

  /** A length-delimited field's bounds. */
  span(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (len > this.end - start) throw new Error('truncated protobuf field');
    this.pos = start + len;
    return [start, start + len];
  }

  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint();
        return;
      case 1:
        if (this.end - this.pos < 8) throw new Error('truncated protobuf fixed64');
        this.pos += 8;
        return;
      case 2:
        this.span();
        return;
      case 5:
        if (this.end - this.pos < 4) throw new Error('truncated protobuf fixed32');
        this.pos += 4;
        return;
      default:
        throw new Error(`unsupported protobuf wire type ${wire}`);
    }
  }
}

function decodeValue(buf: Buffer, start: number, end: number, depth: number): StructValue {
  if (depth > MAX_DEPTH) throw new Error('protobuf Struct nested too deeply');
  const r = new Reader(buf, start, end);
  // A Value with no member set is JSON null (protobuf's JSON mapping of an empty Value is an error; null is the kind closest).
  let out: StructValue = null;
  while (!r.done) {
    const key = r.varint();
    const field = Math.floor(key / 8);
    const wire = key & 7;
    if (field === 1 && wire === 0) {
      r.varint();
      out = null;
    } else if (field === 2 && wire === 1) {
      if (end - r.pos < 8) throw new Error('truncated protobuf double');
      out = buf.readDoubleLE(r.pos);
      r.pos += 8;
    } else if (field === 3 && wire === 2) {
      const [s, e] = r.span();
      out = buf.toString('utf8', s, e);
    } else if (field === 4 && wire === 0) {
      out = r.varint() !== 0;
    } else if (field === 5 && wire === 2) {
      const [s, e] = r.span();
      out = decodeStructAt(buf, s, e, depth + 1);
    } else if (field === 6 && wire === 2) {
      const [s, e] = r.span();
      const list: StructValue[] = [];
      const lr = new Reader(buf, s, e);
      while (!lr.done) {
        const lk = lr.varint();
        if (lk === ((1 << 3) | 2)) {
          const [vs, ve] = lr.span();
          list.push(decodeValue(buf, vs, ve, depth + 1));
        } else lr.skip(lk & 7);
      }
      out = list;
    } else if (field >= 1 && field <= 6) {
      throw new Error(`protobuf Value field ${field} has wire type ${wire}`);
    } else r.skip(wire);
  }
  return out;
}

function decodeStructAt(buf: Buffer, start: number, end: number, depth: number): StructObject {
  if (depth > MAX_DEPTH) throw new Error('protobuf Struct nested too deeply');
  // No prototype: a peer's key `__proto__` is a key like any other.
  const out = Object.create(null) as StructObject;
  const r = new Reader(buf, start, end);
  while (!r.done) {
    const key = r.varint();
    if (key !== ((1 << 3) | 2)) {
      if (key >>> 3 === 1) throw new Error(`protobuf Struct field 1 has wire type ${key & 7}`);
      r.skip(key & 7);
      continue;
    }
    const [es, ee] = r.span();
    const er = new Reader(buf, es, ee);
    let name = '';
    let value: StructValue = null;
    while (!er.done) {
      const ek = er.varint();
      if (ek === ((1 << 3) | 2)) {
        const [s, e] = er.span();
        name = buf.toString('utf8', s, e);
      } else if (ek === ((2 << 3) | 2)) {
        const [s, e] = er.span();
        value = decodeValue(buf, s, e, depth);
      } else er.skip(ek & 7);
    }
    out[name] = value;
  }
  return out;
}

/** A serialized `google.protobuf.Struct` as a plain object (null-prototype); throws on malformed bytes. */
export function decodeStruct(buf: Buffer): StructObject {
  return decodeStructAt(buf, 0, buf.length, 0);
}

/**
 * The length-delimited fields of a message by number (the last of a repeated one wins; other wire
 * types are skipped), for small fixed messages such as `google.protobuf.Any`; throws on malformed bytes.
 */
export function lengthDelimitedFields(buf: Buffer): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  const r = new Reader(buf, 0, buf.length);
  while (!r.done) {
    const key = r.varint();
    if ((key & 7) !== 2) {
      r.skip(key & 7);
      continue;
    }
    const [s, e] = r.span();
    out.set(Math.floor(key / 8), buf.subarray(s, e));
  }
  return out;
}
