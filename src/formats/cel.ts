/**
 * The part of CEL (https://github.com/google/cel-spec) that Istio Telemetry access-log filters
 * (`accessLogging[].filter.expression`) are written in, over Envoy's attributes
 * (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/attributes).
 *
 * A small hand parser rather than a general CEL library: filters are short and fixed, and compiling
 * them to closures over the finished record means nothing is built per request (no activation map
 * of every header). PURE parsing: `compileCel` runs once per snapshot (translate calls it to report
 * errors with the field); evaluation reads the record.
 *
 * Supported: literals (int, double, string, bool, null, lists), `&&`, `||`, `!`, `==`, `!=`, `<`,
 * `<=`, `>`, `>=`, `in` (list, or header map key), `? :`, parentheses, `size()`, the string methods
 * `startsWith`, `endsWith`, `contains`, `matches` (RE2 subset, literal pattern), `has()` on header
 * maps, and the attributes listed in ATTRIBUTES. As in Envoy, a filter whose evaluation fails (a
 * missing header, an HTTP attribute on a TCP connection) does not match; CEL's error absorption
 * applies to `&&` and `||` (`false && error` is false, `true || error` is true).
 */
import { compileRe2Unanchored } from '../lib/re2.js';
import type { LogSubject } from './log-format.js';

type Kind = 'int' | 'double' | 'string' | 'bool' | 'null' | 'map' | 'list' | 'dyn';

/** An evaluation error (CEL's error value): absorbed by `&&`/`||`, else the filter does not match. */
const ERR: unique symbol = Symbol('cel-error');
type Val = string | number | boolean | null | readonly Val[] | HeaderMap | typeof ERR;

/** A header map attribute (`request.headers`): looked up by lowercase key. */
class HeaderMap {
  constructor(
    readonly get: (name: string) => string | null,
    readonly which: 'request' | 'response',
  ) {}
}

/** What a filter reads: the log subject, and whether it is an HTTP request (false: a TCP connection). */
export interface CelSubject extends LogSubject {
  readonly http: boolean;
  /** Whether the client presented a certificate the gateway verified (mutual TLS). */
  readonly mtls: boolean;
}

type Eval = (s: CelSubject) => Val;
interface Node {
  kind: Kind;
  ev: Eval;
}

export class CelError extends Error {}

const httpOnly =
  (get: (s: CelSubject) => Val): Eval =>
  (s) => {
    if (!s.http) return ERR;
    const v = get(s);
    return v === null ? ERR : v;
  };

function port(addr: string | number | null): Val {
  if (typeof addr !== 'string') return ERR;
  const i = addr.lastIndexOf(':');
  return i < 0 ? ERR : Number(addr.slice(i + 1));
}
function host(addr: string | number | null): Val {
  if (typeof addr !== 'string') return ERR;
  const i = addr.lastIndexOf(':');
  const h = i < 0 ? addr : addr.slice(0, i);
  return h.startsWith('[') ? h.slice(1, -1) : h;
}
const entryStr =
  (key: string): Eval =>
  (s) => {
    const v = s.entry[key];
    return v === null || v === undefined ? ERR : String(v);
  };
const entryNum =
  (key: string): Eval =>
  (s) => {
    const v = s.entry[key];
    return typeof v === 'number' ? v : ERR;
  };

/** Envoy attributes by path, with their CEL type. */
const ATTRIBUTES: Record<string, Node> = {
  'request.path': { kind: 'string', ev: httpOnly((s) => s.entry.path as string | null) },
  'request.url_path': { kind: 'string', ev: httpOnly((s) => (typeof s.entry.path === 'string' ? s.entry.path.split('?')[0] : null)) },
  'request.query': { kind: 'string', ev: httpOnly((s) => (typeof s.entry.path === 'string' ? (s.entry.path.includes('?') ? s.entry.path.slice(s.entry.path.indexOf('?') + 1) : '') : null)) },
  'request.host': { kind: 'string', ev: httpOnly((s) => s.entry.authority as string | null) },
  'request.method': { kind: 'string', ev: httpOnly((s) => s.entry.method as string | null) },
  'request.scheme': { kind: 'string', ev: httpOnly((s) => s.requestHeader(':scheme')) },
  'request.referer': { kind: 'string', ev: httpOnly((s) => s.requestHeader('referer')) },
  'request.useragent': { kind: 'string', ev: httpOnly((s) => s.requestHeader('user-agent')) },
  'request.id': { kind: 'string', ev: httpOnly((s) => s.entry.request_id as string | null) },
  'request.protocol': { kind: 'string', ev: httpOnly((s) => s.entry.protocol as string | null) },
  'request.size': { kind: 'int', ev: httpOnly((s) => s.entry.bytes_received as number) },
  'request.total_size': { kind: 'int', ev: httpOnly((s) => s.entry.bytes_received as number) },
  'request.headers': { kind: 'map', ev: (s) => (s.http ? new HeaderMap((n) => s.requestHeader(n), 'request') : ERR) },
  'response.code': { kind: 'int', ev: httpOnly((s) => s.entry.response_code as number) },
  'response.code_details': { kind: 'string', ev: httpOnly((s) => s.entry.response_code_details as string | null) },
  'response.grpc_status': { kind: 'int', ev: httpOnly((s) => (s.grpcStatus === '' ? null : Number(s.grpcStatus))) },
  'response.size': { kind: 'int', ev: httpOnly((s) => s.entry.bytes_sent as number) },
  'response.total_size': { kind: 'int', ev: httpOnly((s) => s.entry.bytes_sent as number) },
  'response.headers': { kind: 'map', ev: (s) => (s.http ? new HeaderMap((n) => s.responseHeader(n), 'response') : ERR) },
  'connection.mtls': { kind: 'bool', ev: (s) => s.mtls },
  'connection.requested_server_name': { kind: 'string', ev: (s) => (s.entry.requested_server_name as string | null) ?? '' },
  'source.address': { kind: 'string', ev: (s) => host(s.entry.downstream_remote_address) },
  'source.port': { kind: 'int', ev: (s) => port(s.entry.downstream_remote_address) },
  'destination.address': { kind: 'string', ev: (s) => host(s.entry.downstream_local_address) },
  'destination.port': { kind: 'int', ev: (s) => port(s.entry.downstream_local_address) },
  'upstream.address': { kind: 'string', ev: (s) => host(s.entry.upstream_host) },
  'upstream.port': { kind: 'int', ev: (s) => port(s.entry.upstream_host) },
  'xds.route_name': { kind: 'string', ev: entryStr('route_name') },
  'xds.cluster_name': { kind: 'string', ev: entryStr('upstream_cluster') },
  'duration.ms': { kind: 'int', ev: entryNum('duration') },
};

export const CEL_ATTRIBUTES: readonly string[] = Object.keys(ATTRIBUTES);

// ---- lexer ------------------------------------------------------------------------------------

type Tok = { t: 'num'; v: number; int: boolean; at: number } | { t: 'str'; v: string; at: number } | { t: 'id'; v: string; at: number } | { t: 'op'; v: string; at: number } | { t: 'end'; at: number };

const OPS = ['&&', '||', '==', '!=', '<=', '>=', '<', '>', '!', '(', ')', '[', ']', '.', ',', '?', ':', '-'];

function lex(src: string): Tok[] {
  const out: Tok[] = [];
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const at = i;
    if (/[0-9]/.test(c)) {
      const m = /^(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)u?/.exec(src.slice(i))!;
      const text = m[0].replace(/u$/, '');
      out.push({ t: 'num', v: Number(text), int: !/[.eE]/.test(text) || text.startsWith('0x'), at });
      i += m[0].length;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      let v = '';
      while (j < src.length && src[j] !== c) {
        if (src[j] === '\\' && j + 1 < src.length) {
          const e = src[j + 1];
          v += e === 'n' ? '\n' : e === 't' ? '\t' : e === 'r' ? '\r' : e;
          j += 2;
        } else v += src[j++];
      }
      if (j >= src.length) throw new CelError(`unterminated string at offset ${at}`);
      out.push({ t: 'str', v, at });
      i = j + 1;
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(src.slice(i))!;
      out.push({ t: 'id', v: m[0], at });
      i += m[0].length;
      continue;
    }
    const op = OPS.find((o) => src.startsWith(o, i));
    if (op === undefined) throw new CelError(`unexpected "${c}" at offset ${at}`);
    out.push({ t: 'op', v: op, at });
    i += op.length;
  }
  out.push({ t: 'end', at: src.length });
  return out;
}

// ---- parser: recursive descent, building closures -------------------------------------------

class Parser {
  #i = 0;
  constructor(readonly toks: Tok[]) {}

  get peek(): Tok {
    return this.toks[this.#i];
  }
  next(): Tok {
    return this.toks[this.#i++];
  }
  isOp(v: string): boolean {
    const t = this.peek;
    return t.t === 'op' && t.v === v;
  }
  expectOp(v: string): void {
    const t = this.next();
    if (t.t !== 'op' || t.v !== v) throw new CelError(`expected "${v}" at offset ${t.at}, found ${describe(t)}`);
  }

  expr(): Node {
    const cond = this.or();
    if (!this.isOp('?')) return cond;
    this.next();
    const a = this.expr();
    this.expectOp(':');
    const b = this.expr();
    want(cond, 'bool', '?:');
    return { kind: a.kind === b.kind ? a.kind : 'dyn', ev: (s) => { const c = cond.ev(s); return c === ERR || typeof c !== 'boolean' ? ERR : c ? a.ev(s) : b.ev(s); } };
  }

  or(): Node {
    let left = this.and();
    while (this.isOp('||')) {
      this.next();
      const l = want(left, 'bool', '||');
      const r = want(this.and(), 'bool', '||');
      left = { kind: 'bool', ev: (s) => { const a = l.ev(s); if (a === true) return true; const b = r.ev(s); if (b === true) return true; return a === ERR || b === ERR ? ERR : false; } };
    }
    return left;
  }

  and(): Node {
    let left = this.rel();
    while (this.isOp('&&')) {
      this.next();
      const l = want(left, 'bool', '&&');
      const r = want(this.rel(), 'bool', '&&');
      left = { kind: 'bool', ev: (s) => { const a = l.ev(s); if (a === false) return false; const b = r.ev(s); if (b === false) return false; return a === ERR || b === ERR ? ERR : true; } };
    }
    return left;
  }

  rel(): Node {
    const left = this.unary();
    const t = this.peek;
    const op = t.t === 'op' && ['==', '!=', '<', '<=', '>', '>='].includes(t.v) ? t.v : t.t === 'id' && t.v === 'in' ? 'in' : null;
    if (op === null) return left;
    this.next();
    const right = this.unary();
    if (op === 'in') return inOp(left, right);
    return compare(op, left, right);
  }

  unary(): Node {
    if (this.isOp('!')) {
      this.next();
      const n = want(this.unary(), 'bool', '!');
      return { kind: 'bool', ev: (s) => { const v = n.ev(s); return v === ERR ? ERR : !v; } };
    }
    if (this.isOp('-')) {
      this.next();
      const t = this.next();
      if (t.t !== 'num') throw new CelError(`expected a number after "-" at offset ${t.at}`);
      return lit(-t.v, t.int ? 'int' : 'double');
    }
    return this.member();
  }

  member(): Node {
    const start = this.peek;
    // Attribute paths (`request.headers`) are resolved as a whole.
    if (start.t === 'id' && !['true', 'false', 'null', 'size', 'has', 'in'].includes(start.v)) {
      this.next();
      let path = start.v;
      while (this.isOp('.') && this.toks[this.#i + 1]?.t === 'id' && this.toks[this.#i + 2] !== undefined && !(this.toks[this.#i + 2].t === 'op' && (this.toks[this.#i + 2] as { v: string }).v === '(')) {
        this.next();
        path += `.${(this.next() as { v: string }).v}`;
      }
      const field = /^(request|response)\.headers\.(.+)$/.exec(path);
      if (field !== null) return this.postfix(index(ATTRIBUTES[`${field[1]}.headers`], lit(field[2], 'string')));
      const attr = ATTRIBUTES[path];
      if (attr === undefined) throw new CelError(`unknown attribute "${path}" at offset ${start.at} (supported: ${CEL_ATTRIBUTES.join(', ')})`);
      return this.postfix(attr);
    }
    return this.postfix(this.primary());
  }

  postfix(node: Node): Node {
    for (;;) {
      if (this.isOp('[')) {
        const at = this.next().at;
        const key = this.expr();
        this.expectOp(']');
        if (node.kind !== 'map' && node.kind !== 'list') throw new CelError(`cannot index a ${node.kind} at offset ${at}`);
        node = index(node, key);
      } else if (this.isOp('.')) {
        this.next();
        const name = this.next();
        if (name.t !== 'id') throw new CelError(`expected a method name at offset ${name.at}`);
        this.expectOp('(');
        const args = this.args();
        node = method(name.v, node, args, name.at);
      } else return node;
    }
  }

  args(): Node[] {
    const out: Node[] = [];
    if (this.isOp(')')) {
      this.next();
      return out;
    }
    for (;;) {
      out.push(this.expr());
      if (this.isOp(',')) {
        this.next();
        continue;
      }
      this.expectOp(')');
      return out;
    }
  }

  primary(): Node {
    const t = this.next();
    switch (t.t) {
      case 'num':
        return lit(t.v, t.int ? 'int' : 'double');
      case 'str':
        return lit(t.v, 'string');
      case 'id':
        if (t.v === 'true' || t.v === 'false') return lit(t.v === 'true', 'bool');
        if (t.v === 'null') return lit(null, 'null');
        if (t.v === 'size') {
          this.expectOp('(');
          const [a] = this.args();
          if (a === undefined) throw new CelError(`size() needs an argument at offset ${t.at}`);
          return sizeOf(a);
        }
        if (t.v === 'has') {
          this.expectOp('(');
          const a = this.hasArg(t.at);
          this.expectOp(')');
          return a;
        }
        throw new CelError(`unexpected "${t.v}" at offset ${t.at}`);
      case 'op':
        if (t.v === '(') {
          const e = this.expr();
          this.expectOp(')');
          return e;
        }
        if (t.v === '[') {
          const items = this.isOp(']') ? (this.next(), []) : this.args2(']');
          return { kind: 'list', ev: (s) => { const out: Val[] = []; for (const i of items) { const v = i.ev(s); if (v === ERR) return ERR; out.push(v); } return out; } };
        }
        throw new CelError(`unexpected "${t.v}" at offset ${t.at}`);
      case 'end':
        throw new CelError('unexpected end of expression');
    }
  }

  args2(close: string): Node[] {
    const out: Node[] = [];
    for (;;) {
      out.push(this.expr());
      if (this.isOp(',')) {
        this.next();
        continue;
      }
      this.expectOp(close);
      return out;
    }
  }

  /** `has(request.headers.x_name)` / `has(request.headers['x'])`: the header is present. */
  hasArg(at: number): Node {
    const first = this.next();
    let path = first.t === 'id' ? first.v : '';
    while (this.isOp('.')) {
      this.next();
      const n = this.next();
      if (n.t !== 'id') throw new CelError(`expected a field name at offset ${n.at}`);
      path += `.${n.v}`;
    }
    let key: string | null = null;
    const m = /^(request|response)\.headers\.(.+)$/.exec(path);
    if (m !== null) key = m[2];
    else if ((path === 'request.headers' || path === 'response.headers') && this.isOp('[')) {
      this.next();
      const k = this.next();
      if (k.t !== 'str') throw new CelError(`has(): expected a string key at offset ${k.at}`);
      this.expectOp(']');
      key = k.v;
    }
    if (key === null) throw new CelError(`has() at offset ${at}: only request.headers and response.headers fields are supported`);
    const map = ATTRIBUTES[m !== null ? `${m[1]}.headers` : path];
    const name = key.toLowerCase();
    return { kind: 'bool', ev: (s) => { const h = map.ev(s); return h instanceof HeaderMap ? h.get(name) !== null : ERR; } };
  }
}

function describe(t: Tok): string {
  return t.t === 'end' ? 'the end' : `"${String(t.v)}"`;
}

function lit(v: Val, kind: Kind): Node {
  return { kind, ev: () => v };
}

function want(n: Node, kind: Kind, op: string): Node {
  if (n.kind !== kind && n.kind !== 'dyn') throw new CelError(`no matching overload for ${op} on ${n.kind} (want ${kind})`);
  return n;
}

const numeric = (k: Kind) => k === 'int' || k === 'double';

function compare(op: string, l: Node, r: Node): Node {
  const ok = l.kind === 'dyn' || r.kind === 'dyn' || l.kind === r.kind || (numeric(l.kind) && numeric(r.kind)) || ((op === '==' || op === '!=') && (l.kind === 'null' || r.kind === 'null'));
  if (!ok) throw new CelError(`no matching overload for ${op} (${l.kind}, ${r.kind})`);
  if (op !== '==' && op !== '!=' && !(numeric(l.kind) || l.kind === 'string' || l.kind === 'dyn')) throw new CelError(`no matching overload for ${op} on ${l.kind}`);
  const test = cmpFn(op);
  return {
    kind: 'bool',
    ev: (s) => {
      const a = l.ev(s);
      if (a === ERR) return ERR;
      const b = r.ev(s);
      if (b === ERR) return ERR;
      return test(a, b);
    },
  };
}

function cmpFn(op: string): (a: Val, b: Val) => Val {
  switch (op) {
    case '==':
      return (a, b) => a === b;
    case '!=':
      return (a, b) => a !== b;
    case '<':
      return (a, b) => (typeof a === typeof b && (typeof a === 'number' || typeof a === 'string') ? (a as number) < (b as number) : ERR);
    case '<=':
      return (a, b) => (typeof a === typeof b && (typeof a === 'number' || typeof a === 'string') ? (a as number) <= (b as number) : ERR);
    case '>':
      return (a, b) => (typeof a === typeof b && (typeof a === 'number' || typeof a === 'string') ? (a as number) > (b as number) : ERR);
    default:
      return (a, b) => (typeof a === typeof b && (typeof a === 'number' || typeof a === 'string') ? (a as number) >= (b as number) : ERR);
  }
}

function inOp(l: Node, r: Node): Node {
  if (r.kind !== 'list' && r.kind !== 'map' && r.kind !== 'dyn') throw new CelError(`no matching overload for in (${l.kind}, ${r.kind})`);
  return {
    kind: 'bool',
    ev: (s) => {
      const a = l.ev(s);
      if (a === ERR) return ERR;
      const b = r.ev(s);
      if (b === ERR) return ERR;
      if (b instanceof HeaderMap) return typeof a === 'string' ? b.get(a.toLowerCase()) !== null : ERR;
      return Array.isArray(b) ? b.includes(a) : ERR;
    },
  };
}

function index(n: Node, key: Node): Node {
  if (n.kind === 'map' && key.kind !== 'string' && key.kind !== 'dyn') throw new CelError(`header maps are indexed by string, not ${key.kind}`);
  return {
    kind: n.kind === 'map' ? 'string' : 'dyn',
    ev: (s) => {
      const m = n.ev(s);
      const k = key.ev(s);
      if (m === ERR || k === ERR) return ERR;
      if (m instanceof HeaderMap) return typeof k === 'string' ? (m.get(k.toLowerCase()) ?? ERR) : ERR;
      if (Array.isArray(m) && typeof k === 'number') return k >= 0 && k < m.length ? (m[k] as Val) : ERR;
      return ERR;
    },
  };
}

function sizeOf(a: Node): Node {
  if (a.kind !== 'string' && a.kind !== 'list' && a.kind !== 'dyn') throw new CelError(`no matching overload for size(${a.kind})`);
  return { kind: 'int', ev: (s) => { const v = a.ev(s); return typeof v === 'string' || Array.isArray(v) ? v.length : ERR; } };
}

function method(name: string, target: Node, args: Node[], at: number): Node {
  if (name === 'size' && args.length === 0) return sizeOf(target);
  if (!['startsWith', 'endsWith', 'contains', 'matches'].includes(name)) throw new CelError(`unknown method ${name}() at offset ${at} (supported: startsWith, endsWith, contains, matches, size)`);
  if (target.kind !== 'string' && target.kind !== 'dyn') throw new CelError(`no matching overload for ${target.kind}.${name}()`);
  if (args.length !== 1 || (args[0].kind !== 'string' && args[0].kind !== 'dyn')) throw new CelError(`${name}() takes one string argument (offset ${at})`);
  const arg = args[0];
  let test: (a: string, b: string) => boolean;
  if (name === 'matches') {
    // The pattern is compiled once, at parse time (a literal pattern is required).
    let pattern: Val = ERR;
    try {
      pattern = arg.ev({ entry: {} } as unknown as CelSubject);
    } catch {
      pattern = ERR;
    }
    if (typeof pattern !== 'string') throw new CelError(`matches() needs a literal string pattern (offset ${at})`);
    // CEL's matches() is RE2 (search semantics): the project's RE2 converter refuses what RE2 does
    // not support (backreferences, lookaround) instead of letting JavaScript read it differently.
    const converted = compileRe2Unanchored(pattern);
    if (!converted.ok) throw new CelError(`matches(): invalid RE2 pattern ${JSON.stringify(pattern)}: ${converted.message}`);
    const re = new RegExp(converted.regex.source, converted.regex.flags);
    test = (a) => re.test(a);
  } else test = name === 'startsWith' ? (a, b) => a.startsWith(b) : name === 'endsWith' ? (a, b) => a.endsWith(b) : (a, b) => a.includes(b);
  return {
    kind: 'bool',
    ev: (s) => {
      const a = target.ev(s);
      const b = arg.ev(s);
      return typeof a === 'string' && typeof b === 'string' ? test(a, b) : ERR;
    },
  };
}

/** A compiled filter: true when the record is to be logged (an evaluation error is false). */
export type CelFilter = (s: CelSubject) => boolean;

/** Compiles a boolean CEL expression; throws CelError with what is wrong and where. */
export function compileCel(src: string): CelFilter {
  if (src.trim() === '') throw new CelError('empty expression');
  const p = new Parser(lex(src));
  const node = p.expr();
  if (p.peek.t !== 'end') throw new CelError(`unexpected ${describe(p.peek)} at offset ${p.peek.at}`);
  if (node.kind !== 'bool' && node.kind !== 'dyn') throw new CelError(`the expression is a ${node.kind}, not a bool`);
  return (s) => node.ev(s) === true;
}
