/**
 * Path normalization: one canonical path per request, computed once before routing and
 * authorization, and forwarded upstream, so the gateway's decisions and the upstream's view of the
 * path never differ (Istio CVE-2021-31920 / Envoy CVE-2021-29492: `//admin`, `%2F`, `%5C` bypassing
 * path rules).
 *
 * Modes (IR `SecurityConfig.pathNormalization`, Istio MeshConfig `pathNormalization`):
 * - NONE: the path is used as sent (still validated, below).
 * - BASE: one pass of percent-decoding for unreserved characters (`%61` -> `a`, `%2e` -> `.`),
 *   remaining escapes in uppercase hex, `\` -> `/`, then RFC 3986 §5.2.4 dot-segment removal.
 * - MERGE_SLASHES: as BASE, with runs of `/` merged first (as nginx does: `/a//../b` is `/b`).
 * - DECODE_AND_MERGE_SLASHES: as MERGE_SLASHES, with `%2F`/`%5C` (any case) decoded to `/`.
 *
 * Always rejected (400), in every mode: `%00`, a malformed escape (`%zz`, `%4`), control characters,
 * space, DEL and raw bytes above 0x7E (RFC 3986 allows none of them in a path). Besides, in every
 * mode but NONE, `;` (path parameters, which Tomcat-like upstreams strip: `/admin;x` reaching
 * `/admin`) and, unless `escapedSlashes` says otherwise, `%2F`/`%5C`.
 *
 * Hot path: a path that needs nothing (the common case) costs one scan and allocates nothing: the
 * same string is returned.
 */

import type { EscapedSlashesAction, PathNormalizationMode } from '../../ir/types.js';

/** Compiled options; one object per snapshot. */
export interface PathNormalizer {
  readonly mode: PathNormalizationMode;
  readonly escapedSlashes: EscapedSlashesAction;
}

export function compilePathNormalizer(mode: PathNormalizationMode, escapedSlashes: EscapedSlashesAction): PathNormalizer {
  // DECODE_AND_MERGE_SLASHES is defined as decoding escaped slashes.
  return { mode, escapedSlashes: mode === 'DECODE_AND_MERGE_SLASHES' ? 'DECODE' : escapedSlashes };
}

const HEX = '0123456789ABCDEF';

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 65 && c <= 70) return c - 55;
  if (c >= 97 && c <= 102) return c - 87;
  return -1;
}

/** RFC 3986 unreserved: ALPHA / DIGIT / "-" / "." / "_" / "~". */
function isUnreserved(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 45 || c === 46 || c === 95 || c === 126;
}

/**
 * The normalized path, or null when the path must be answered 400. `path` is the request target's
 * path (query excluded) and starts with `/`.
 */
export function normalizePath(path: string, n: PathNormalizer): string | null {
  if (n.mode === 'NONE') return validateOnly(path, n.escapedSlashes);
  if (!needsWork(path)) return path;
  return slowNormalize(path, n);
}

/**
 * True when the path has anything normalization would change or reject: `%`, `\`, `;`, a
 * character outside visible ASCII, `//`, or a `.`/`..` segment.
 */
function needsWork(p: string): boolean {
  const len = p.length;
  for (let i = 0; i < len; i++) {
    const c = p.charCodeAt(i);
    if (c === 47 /* / */) {
      if (i + 1 >= len) continue;
      const d = p.charCodeAt(i + 1);
      if (d === 47) return true;
      if (d === 46 /* . */) {
        // `/.` then end or `/`, or `/..` then end or `/`.
        const e = i + 2 < len ? p.charCodeAt(i + 2) : 47;
        if (e === 47) return true;
        if (e === 46 && (i + 3 >= len || p.charCodeAt(i + 3) === 47)) return true;
      }
      continue;
    }
    if (c <= 32 || c >= 127 || c === 37 /* % */ || c === 92 /* \ */ || c === 59 /* ; */) return true;
  }
  return false;
}

/** NONE: the path is kept as sent, but what no mode accepts is still rejected. */
function validateOnly(p: string, escapedSlashes: EscapedSlashesAction): string | null {
  const len = p.length;
  for (let i = 0; i < len; i++) {
    const c = p.charCodeAt(i);
    if (c <= 32 || c >= 127) return null;
    if (c === 37) {
      if (i + 2 >= len) return null;
      const hi = hexValue(p.charCodeAt(i + 1));
      const lo = hexValue(p.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return null;
      const v = hi * 16 + lo;
      if (v === 0) return null;
      if ((v === 0x2f || v === 0x5c) && escapedSlashes === 'REJECT') return null;
      i += 2;
    }
  }
  return p;
}

function slowNormalize(p: string, n: PathNormalizer): string | null {
  const merge = n.mode !== 'BASE';
  const len = p.length;
  // 1. Decode and validate, into `out`; `\` and (when decoding) %2F/%5C become `/`.
  let out = '';
  for (let i = 0; i < len; i++) {
    const c = p.charCodeAt(i);
    if (c <= 32 || c >= 127 || c === 59 /* ; */) return null;
    if (c === 92 /* \ */) {
      out += '/';
      continue;
    }
    if (c !== 37 /* % */) {
      out += p[i];
      continue;
    }
    if (i + 2 >= len) return null;
    const hi = hexValue(p.charCodeAt(i + 1));
    const lo = hexValue(p.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return null;
    i += 2;
    const v = hi * 16 + lo;
    if (v === 0) return null;
    if (v === 0x2f || v === 0x5c) {
      if (n.escapedSlashes === 'REJECT') return null;
      out += n.escapedSlashes === 'DECODE' ? '/' : `%${HEX[hi]}${HEX[lo]}`;
    } else if (isUnreserved(v)) {
      out += String.fromCharCode(v);
    } else {
      out += `%${HEX[hi]}${HEX[lo]}`;
    }
  }
  // 2. Merge slashes, then 3. remove dot segments (RFC 3986 §5.2.4) over the segments.
  const segs = out.split('/');
  const stack: string[] = [];
  // segs[0] is '' (the path starts with `/`); every later entry is one segment.
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i];
    const last = i === segs.length - 1;
    if (s === '' && merge && !last) continue;
    if (s === '.') {
      if (last) stack.push('');
      continue;
    }
    if (s === '..') {
      stack.pop();
      if (last) stack.push('');
      continue;
    }
    stack.push(s);
  }
  return `/${stack.join('/')}`;
}
