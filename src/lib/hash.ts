import { createHash } from 'node:crypto';

/** JSON with object keys sorted, so equal values give equal strings whatever the key order. */
export function stableStringify(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const obj = value as Record<string, unknown>;
  const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${stableStringify(obj[k])}`).join(',')}}`;
}

/** Hex SHA-256 of a string, cut to `length` characters. */
export function sha256Hex(text: string, length = 64): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}
