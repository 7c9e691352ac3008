/**
 * Path rewrites (forward `Rewrite.path` and redirect `RedirectAction.path`), compiled once.
 */

import type { PathRewrite } from '../../ir/types.js';
import { compileRegex, type CompiledPathMatch } from './string-match.js';

/**
 * Rewrites a path (query excluded). `match` is the path match of the route match that selected the
 * route (null when that match had no path condition).
 */
export type PathRewriter = (path: string, match: CompiledPathMatch | null) => string;

export function compilePathRewrite(rw: PathRewrite): PathRewriter {
  switch (rw.kind) {
    case 'full': {
      const value = rw.value === '' ? '/' : rw.value;
      return () => value;
    }
    case 'prefix':
      return compilePrefixRewrite(rw.value);
    case 'regex': {
      const re = compileRegex(rw.regex, 'g');
      const substitution = convertSubstitution(rw.substitution);
      return (path) => path.replace(re, substitution);
    }
  }
}

/**
 * Replaces the matched prefix with `value`; with an exact, regex or no path match the whole path.
 * Segment-prefix matches join on a segment boundary, as Gateway API `ReplacePrefixMatch` and
 * ingress-nginx do: `/foo` -> `/` on `/foo/bar` gives `/bar`, not `//bar`. Raw (Istio) prefixes are
 * replaced literally, as Envoy's `prefix_rewrite` does.
 */
function compilePrefixRewrite(value: string): PathRewriter {
  const endsWithSlash = value.endsWith('/');
  return (path, match) => {
    if (match === null || match.prefixLength < 0) return value === '' ? '/' : value;
    const rest = path.slice(match.prefixLength);
    if (match.kind === 'segment-prefix') {
      if (rest === '') return value === '' ? '/' : value;
      if (value === '') return rest;
      if (endsWithSlash && rest.charCodeAt(0) === 47) return value + rest.slice(1);
      return value + rest;
    }
    const out = value + rest;
    return out === '' ? '/' : out;
  };
}

/**
 * RE2/Envoy substitutions use `\1` for groups; JavaScript uses `$1`. A literal `$` must become `$$`
 * so it is not read as a JavaScript group reference.
 */
export function convertSubstitution(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === '$') {
      out += '$$';
    } else if (c === '\\' && i + 1 < s.length && s[i + 1] >= '0' && s[i + 1] <= '9') {
      // `\0` is the whole match: JavaScript spells it `$&`.
      out += s[i + 1] === '0' ? '$&' : '$' + s[i + 1];
      i++;
    } else if (c === '\\' && s[i + 1] === '\\') {
      out += '\\';
      i++;
    } else {
      out += c;
    }
  }
  return out;
}
