/**
 * StringMatch and PathMatch compiled into predicates, once per snapshot.
 *
 * Every predicate is built at compile time: values lowercased ahead, regexes constructed once, and
 * the case-insensitive variants kept apart from the case-sensitive ones so the hot path never
 * branches on `ignoreCase`.
 */

import type { PathMatch, Regex, StringMatch } from '../../ir/types.js';

/** A compiled test on one string value. */
export type StringPredicate = (value: string) => boolean;

/** Builds the RegExp of an IR Regex. Regexes are only ever built here, at compile time. */
export function compileRegex(regex: Regex, extraFlags = ''): RegExp {
  let flags = regex.flags;
  for (const f of extraFlags) if (!flags.includes(f)) flags += f;
  return new RegExp(regex.source, flags);
}

export function compileStringMatch(m: StringMatch): StringPredicate {
  switch (m.kind) {
    case 'exact': {
      const want = m.ignoreCase ? m.value.toLowerCase() : m.value;
      return m.ignoreCase ? (v) => v.length === want.length && v.toLowerCase() === want : (v) => v === want;
    }
    case 'prefix': {
      const want = m.ignoreCase ? m.value.toLowerCase() : m.value;
      return m.ignoreCase
        ? (v) => v.length >= want.length && v.slice(0, want.length).toLowerCase() === want
        : (v) => v.startsWith(want);
    }
    case 'suffix': {
      const want = m.ignoreCase ? m.value.toLowerCase() : m.value;
      return m.ignoreCase
        ? (v) => v.length >= want.length && v.slice(v.length - want.length).toLowerCase() === want
        : (v) => v.endsWith(want);
    }
    case 'regex': {
      const re = compileRegex(m.regex);
      return (v) => re.test(v);
    }
  }
}

/**
 * A compiled path match. `prefixLength` is the number of leading characters of the path the match
 * consumed (prefix and segment-prefix matches), used by prefix rewrites; -1 for exact and regex.
 */
export interface CompiledPathMatch {
  test: StringPredicate;
  kind: PathMatch['kind'];
  prefixLength: number;
}

export function compilePathMatch(m: PathMatch): CompiledPathMatch {
  switch (m.kind) {
    case 'exact':
      return { kind: m.kind, prefixLength: -1, test: compileStringMatch(m) };
    case 'prefix':
      return { kind: m.kind, prefixLength: m.value.length, test: compileStringMatch(m) };
    case 'segment-prefix':
      return { kind: m.kind, prefixLength: m.value === '/' ? 0 : m.value.length, test: compileSegmentPrefix(m.value, m.ignoreCase) };
    case 'regex': {
      const re = compileRegex(m.regex);
      return { kind: m.kind, prefixLength: -1, test: (v) => re.test(v) };
    }
  }
}

/**
 * Kubernetes Ingress `Prefix`: element-wise. `/foo` matches `/foo`, `/foo/` and `/foo/bar`, never
 * `/foobar`; `/` matches every path. The IR value has no trailing slash except for `/` itself.
 */
function compileSegmentPrefix(value: string, ignoreCase: boolean): StringPredicate {
  if (value === '/' || value === '') return () => true;
  const want = ignoreCase ? value.toLowerCase() : value;
  const n = want.length;
  if (ignoreCase) {
    return (v) => {
      if (v.length < n || v.slice(0, n).toLowerCase() !== want) return false;
      return v.length === n || v.charCodeAt(n) === 47; /* '/' */
    };
  }
  return (v) => v.startsWith(want) && (v.length === n || v.charCodeAt(n) === 47);
}
