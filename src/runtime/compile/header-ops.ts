/**
 * HeaderOps compiled into a drop set and a flat list to append, so that applying them to a flat
 * `[name, value, ...]` header array is one compaction pass and one push loop.
 */

import type { HeaderOps } from '../../ir/types.js';

export interface CompiledHeaderOps {
  /**
   * Lowercase names removed first: `remove` plus the names of `set` (set = remove + add). Envoy
   * likewise removes before it adds. null when nothing is removed.
   */
  drop: ReadonlySet<string> | null;
  /** Flat `[name, value, ...]` appended after dropping: `set` entries, then `add` entries. */
  append: readonly string[];
}

/** null when the ops do nothing, so the hot path skips them with one null check. */
export function compileHeaderOps(ops: HeaderOps | null): CompiledHeaderOps | null {
  if (ops === null) return null;
  if (ops.set.length === 0 && ops.add.length === 0 && ops.remove.length === 0) return null;
  const drop = new Set<string>();
  for (const name of ops.remove) drop.add(name.toLowerCase());
  const append: string[] = [];
  // A header set twice keeps its last value, as a map-shaped `set` would.
  const setByName = new Map<string, string>();
  for (const h of ops.set) setByName.set(h.name.toLowerCase(), h.value);
  for (const [name, value] of setByName) {
    drop.add(name);
    append.push(name, value);
  }
  for (const h of ops.add) append.push(h.name.toLowerCase(), h.value);
  return { drop: drop.size === 0 ? null : drop, append };
}

/**
 * Applies compiled ops to a flat header array whose names are lowercase. Mutates and returns
 * `headers`.
 */
export function applyHeaderOps(headers: string[], ops: CompiledHeaderOps): string[] {
  const drop = ops.drop;
  if (drop !== null) {
    let w = 0;
    for (let r = 0; r < headers.length; r += 2) {
      if (drop.has(headers[r])) continue;
      headers[w] = headers[r];
      headers[w + 1] = headers[r + 1];
      w += 2;
    }
    headers.length = w;
  }
  const append = ops.append;
  for (let i = 0; i < append.length; i++) headers.push(append[i]);
  return headers;
}
