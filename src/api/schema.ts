/**
 * A small declarative schema language for the objects meshgate reads, and its validator.
 *
 * It says as much as a CRD's structural schema says (plus Istio's field-level rules that are cheap to
 * state): which fields an object has, their types, ranges, enums, required fields and mutually
 * exclusive groups (protobuf `oneof`). Unknown fields are errors unless the object is `open`, which is
 * how the big core kinds (Service, Pod, ...) are declared: clusters add many fields we never read.
 * `null` is treated as absent everywhere, as the API server does for optional fields.
 */

import { parseDuration } from './duration.js';
import { fieldIndex, fieldKey } from './field-path.js';

export type Schema =
  | ObjectSchema
  | { readonly t: 'array'; readonly of: Schema }
  | { readonly t: 'map'; readonly of: Schema }
  | { readonly t: 'string'; readonly format?: 'duration' | 'base64' }
  | { readonly t: 'integer' | 'number'; readonly min?: number; readonly max?: number }
  | { readonly t: 'boolean' }
  | { readonly t: 'enum'; readonly values: readonly string[] }
  | { readonly t: 'int-or-string' }
  | { readonly t: 'any' }
  /** A field the API deprecates: still read, with a warning naming `use`, its replacement. */
  | { readonly t: 'deprecated'; readonly of: Schema; readonly use: string };

export interface ObjectSchema {
  readonly t: 'object';
  /** Type name for messages (`HTTPIngressPath`). */
  readonly name?: string;
  readonly fields: Readonly<Record<string, Schema>>;
  readonly required?: readonly string[];
  /** Groups of fields of which at most one may be set (protobuf `oneof`). */
  readonly oneOf?: readonly (readonly string[])[];
  /** Unknown fields allowed (and not checked). */
  readonly open?: boolean;
}

// ---- constructors: keep the definitions short -------------------------------------------------

export function object(
  fields: Record<string, Schema>,
  opts: { name?: string; required?: string[]; oneOf?: string[][]; open?: boolean } = {},
): ObjectSchema {
  return { t: 'object', fields, ...opts };
}
export const arrayOf = (of: Schema): Schema => ({ t: 'array', of });
export const mapOf = (of: Schema): Schema => ({ t: 'map', of });
export const string: Schema = { t: 'string' };
export const duration: Schema = { t: 'string', format: 'duration' };
export const base64: Schema = { t: 'string', format: 'base64' };
export const boolean: Schema = { t: 'boolean' };
export const number = (min?: number, max?: number): Schema => ({ t: 'number', min, max });
export const integer = (min?: number, max?: number): Schema => ({ t: 'integer', min, max });
export const oneOfStrings = (...values: string[]): Schema => ({ t: 'enum', values });
export const intOrString: Schema = { t: 'int-or-string' };
export const any: Schema = { t: 'any' };
export const strings: Schema = arrayOf(string);
export const stringMap: Schema = mapOf(string);
// Protobuf / Kubernetes integer widths.
export const int32 = integer(-2147483648, 2147483647);
export const uint32 = integer(0, 4294967295);
export const uint64 = integer(0, Number.MAX_SAFE_INTEGER);
export const portNumber = integer(1, 65535);
/** `of`, deprecated in favour of `use` (a field name, or a short phrase). */
export const deprecated = (of: Schema, use: string): Schema => ({ t: 'deprecated', of, use });

/** Standard Kubernetes ObjectMeta fields (k8s.io/apimachinery/pkg/apis/meta/v1 ObjectMeta). */
export const objectMeta = (open = false): ObjectSchema =>
  object(
    {
      name: string,
      generateName: string,
      namespace: string,
      selfLink: string,
      uid: string,
      resourceVersion: string,
      generation: integer(),
      creationTimestamp: string,
      deletionTimestamp: string,
      deletionGracePeriodSeconds: integer(),
      labels: stringMap,
      annotations: stringMap,
      ownerReferences: arrayOf(any),
      finalizers: strings,
      managedFields: arrayOf(any),
    },
    { name: 'ObjectMeta', open },
  );

// ---- validation --------------------------------------------------------------------------------

export interface SchemaProblem {
  /** MG_DEPRECATED_FIELD is a warning (the field is still read); the others are errors. */
  reason: 'MG_UNKNOWN_FIELD' | 'MG_INVALID_FIELD' | 'MG_MISSING_FIELD' | 'MG_DEPRECATED_FIELD';
  /** Field path (`spec.rules[0].http`). */
  field: string;
  message: string;
}

/** Check `value` against `schema`; problems in document order. Never throws on any JSON-like input. */
export function validate(value: unknown, schema: Schema, path = ''): SchemaProblem[] {
  const out: SchemaProblem[] = [];
  check(value, schema, path, out);
  return out;
}

function check(v: unknown, s: Schema, path: string, out: SchemaProblem[]): void {
  if (v === null || v === undefined || s.t === 'any') return;
  switch (s.t) {
    case 'object': {
      if (!isPlainObject(v)) return bad(out, path, 'an object', v);
      for (const key of s.required ?? []) {
        if (!Object.hasOwn(v, key) || v[key] === null || v[key] === undefined) {
          out.push({
            reason: 'MG_MISSING_FIELD',
            field: fieldKey(path, key),
            message: `\`${key}\` is required${s.name ? ` in ${s.name}` : ''}`,
          });
        }
      }
      for (const group of s.oneOf ?? []) {
        const set = group.filter((k) => Object.hasOwn(v, k) && v[k] !== null && v[k] !== undefined);
        if (set.length > 1) {
          out.push({
            reason: 'MG_INVALID_FIELD',
            field: fieldKey(path, set[1]),
            message: `only one of ${group.map((k) => `\`${k}\``).join(', ')} may be set; found ${set.map((k) => `\`${k}\``).join(' and ')}`,
          });
        }
      }
      for (const key of Object.keys(v)) {
        const child = fieldKey(path, key);
        if (Object.hasOwn(s.fields, key)) {
          check(v[key], s.fields[key], child, out);
        } else if (!s.open) {
          const hint = suggest(key, Object.keys(s.fields));
          out.push({
            reason: 'MG_UNKNOWN_FIELD',
            field: child,
            message: `unknown field \`${key}\`${s.name ? ` in ${s.name}` : ''}${hint ? `; did you mean \`${hint}\`?` : ''}`,
          });
        }
      }
      return;
    }
    case 'array':
      if (!Array.isArray(v)) return bad(out, path, 'a list', v);
      v.forEach((item, i) => check(item, s.of, fieldIndex(path, i), out));
      return;
    case 'map':
      if (!isPlainObject(v)) return bad(out, path, 'a map', v);
      for (const key of Object.keys(v)) check(v[key], s.of, fieldKey(path, key), out);
      return;
    case 'string':
      if (typeof v !== 'string') return bad(out, path, 'a string', v);
      if (s.format === 'duration') {
        const ms = parseDuration(v);
        if (ms === null) return bad(out, path, 'a duration such as "1.5s", "100ms", "2m" or "1h"', v);
        if (ms < 0) return bad(out, path, 'a duration that is not negative', v);
      } else if (s.format === 'base64' && !isBase64(v)) {
        return bad(out, path, 'base64 data', v);
      }
      return;
    case 'integer':
    case 'number': {
      const range =
        s.min !== undefined && s.max !== undefined ? ` between ${s.min} and ${s.max}` : s.min !== undefined ? ` at least ${s.min}` : s.max !== undefined ? ` at most ${s.max}` : '';
      const expected = `${s.t === 'integer' ? 'an integer' : 'a number'}${range}`;
      if (typeof v !== 'number' || !Number.isFinite(v) || (s.t === 'integer' && !Number.isInteger(v))) return bad(out, path, expected, v);
      if ((s.min !== undefined && v < s.min) || (s.max !== undefined && v > s.max)) return bad(out, path, expected, v);
      return;
    }
    case 'boolean':
      if (typeof v !== 'boolean') return bad(out, path, 'true or false', v);
      return;
    case 'enum':
      if (typeof v !== 'string' || !s.values.includes(v)) {
        const hint = typeof v === 'string' ? suggest(v, s.values) : null;
        out.push({
          reason: 'MG_INVALID_FIELD',
          field: path,
          message: `${describe(v)} is not one of ${s.values.map((x) => `\`${x}\``).join(', ')}${hint ? `; did you mean \`${hint}\`?` : ''}`,
        });
      }
      return;
    case 'deprecated': {
      const name = path.slice(Math.max(path.lastIndexOf('.'), 0)).replace(/^\./, '');
      out.push({ reason: 'MG_DEPRECATED_FIELD', field: path, message: `\`${name}\` is deprecated; use ${s.use}` });
      return check(v, s.of, path, out);
    }
    case 'int-or-string':
      if (typeof v === 'string') return;
      if (typeof v !== 'number' || !Number.isInteger(v)) return bad(out, path, 'an integer or a string', v);
      return;
  }
}

function bad(out: SchemaProblem[], path: string, expected: string, got: unknown): void {
  out.push({ reason: 'MG_INVALID_FIELD', field: path, message: `expected ${expected}, got ${describe(got)}` });
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isPlainObject(v)) return 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  return `${typeof v} ${String(v)}`;
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
function isBase64(s: string): boolean {
  return BASE64.test(s.replace(/\s+/g, ''));
}

/**
 * The known name closest to `name`, or null when none is close: same letters ignoring case, `_` and
 * `-` (`path_type` -> `pathType`), or a small edit distance (`pathTyp`, `hots`).
 */
export function suggest(name: string, known: readonly string[]): string | null {
  const norm = (x: string): string => x.toLowerCase().replace(/[_-]/g, '');
  const n = norm(name);
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const k of known) {
    if (norm(k) === n) return k;
    const d = editDistance(n, norm(k));
    if (d < bestDistance) {
      bestDistance = d;
      best = k;
    }
  }
  const limit = Math.max(1, Math.min(3, Math.floor(n.length / 3)));
  return bestDistance <= limit ? best : null;
}

/** Levenshtein distance with transpositions counted as one edit (optimal string alignment). */
function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 3) return Infinity;
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) d.push([i]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}
