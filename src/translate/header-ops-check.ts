/**
 * Translate-time check of the header names and values config asks a route to write (Istio
 * VirtualService `headers.request/response` set/add/remove, Gateway API Request/ResponseHeaderModifier):
 * a name that is not an RFC 9110 token, or a value with a control character (only HTAB, SP,
 * visible characters and obs-text are allowed; `\r\n` would split the head), is an error
 * diagnostic naming the object, the field and file:line, and that one operation is dropped; the
 * rest of the route is kept. The engines check again when writing (lib/header-chars.ts), so what
 * slips past here (a value built at run time) is still never written.
 */

import type { HeaderOps, HeaderValue } from '../ir/types.js';
import { headerFieldProblem } from '../lib/header-chars.js';
import type { KubeObject } from '../resources/types.js';
import type { TranslateContext } from './types.js';

/** Where each operation of `ops` sits in the source: `(list, index, name)` -> field path. */
export type HeaderOpField = (list: 'set' | 'add' | 'remove', index: number, name: string) => string;

/** `ops` without the operations whose name or value cannot go on the wire (each reported); null stays null. */
export function checkHeaderOps(ctx: TranslateContext, obj: KubeObject, ops: HeaderOps | null, fieldOf: HeaderOpField): HeaderOps | null {
  if (ops === null) return null;
  let changed = false;
  const values = (list: 'set' | 'add', hs: HeaderValue[]): HeaderValue[] =>
    hs.filter((h, i) => {
      const problem = headerFieldProblem(h.name, h.value);
      if (problem === null) return true;
      changed = true;
      ctx.report('error', 'MG_INVALID_FIELD', obj, fieldOf(list, i, h.name), `${problem}; this header operation is dropped`);
      return false;
    });
  const set = values('set', ops.set);
  const add = values('add', ops.add);
  const remove = ops.remove.filter((name, i) => {
    const problem = headerFieldProblem(name, null);
    if (problem === null) return true;
    changed = true;
    ctx.report('error', 'MG_INVALID_FIELD', obj, fieldOf('remove', i, name), `${problem}; this header operation is dropped`);
    return false;
  });
  return changed ? { set, add, remove } : ops;
}
