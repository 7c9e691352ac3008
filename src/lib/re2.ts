/**
 * RE2 patterns (what Istio, Envoy and Gateway API accept) -> JavaScript regular expressions.
 *
 * The conversion is a single pass over the pattern that
 *  - rejects, with a sentence saying why, what RE2 does not support (backreferences, lookaround,
 *    atomic groups, possessive quantifiers, `\Z`, ...), so a pattern that Envoy would refuse is refused
 *    here too instead of silently meaning something else;
 *  - rewrites RE2-only syntax JavaScript lacks: `\A` and `\z`, `(?P<name>`, `[[:alpha:]]` POSIX classes,
 *    `\Q...\E` quoting, `\x{...}`, `\pL` / `\p{Greek}` Unicode classes, octal `\123`, a leading `]` in
 *    a class, and literal `{`, `}`, `]` that RE2 reads as literals;
 *  - maps leading flag groups `(?i)`, `(?s)`, `(?m)` (any combination) to JavaScript flags.
 *
 * The output always carries the `u` flag: RE2 matches code points, not UTF-16 units, and `\p{..}`
 * needs it. The converter emits only escapes that are valid under `u`, so common patterns keep working.
 *
 * Known differences that remain (none matters for paths, header or query values):
 *  - `.` in JavaScript also excludes `\r`, U+2028 and U+2029 (RE2 excludes only `\n`);
 *  - `\s` in JavaScript also matches `\v` and Unicode spaces (RE2: `[\t\n\f\r ]`).
 */
/**
 * A regular expression with RE2 full-string semantics (IR `Regex`, re-exported by ir/types.ts).
 * `source` is the JavaScript source, already anchored (`^(?:...)$`) by the translator and checked to
 * use only what RE2 supports; `flags` are JavaScript flags (`i` from a leading `(?i)`, `s`, `u`).
 */
export interface Regex {
  /** The expression as the user wrote it (for display). */
  original: string;
  source: string;
  flags: string;
}

export type Re2Result = { ok: true; regex: Regex } | { ok: false; message: string };

/** RE2 full-string match (Istio StringMatch `regex`): the result is anchored at both ends. */
export function compileRe2(pattern: string): Re2Result {
  return convert(pattern, true);
}

/** RE2 search semantics (Istio `uriRegexRewrite.match`): unanchored, the caller adds `g` when it replaces. */
export function compileRe2Unanchored(pattern: string): Re2Result {
  return convert(pattern, false);
}

/** RE2 refuses repeat counts above this (`{1001}` is a parse error). */
const MAX_REPEAT = 1000;

/** POSIX classes RE2 knows, as JavaScript class contents (all escapes valid under `u`). */
const POSIX: Readonly<Record<string, string>> = {
  alnum: '0-9A-Za-z',
  alpha: 'A-Za-z',
  ascii: '\\x00-\\x7F',
  blank: '\\t ',
  cntrl: '\\x00-\\x1F\\x7F',
  digit: '0-9',
  graph: '\\x21-\\x7E',
  lower: 'a-z',
  print: '\\x20-\\x7E',
  punct: '\\x21-\\x2F\\x3A-\\x40\\x5B-\\x60\\x7B-\\x7E',
  space: '\\t\\n\\v\\f\\r ',
  upper: 'A-Z',
  word: '0-9A-Za-z_',
  xdigit: '0-9A-Fa-f',
};

/** Characters that may be escaped with a backslash under the `u` flag (outside a class). */
const SYNTAX = new Set(['^', '$', '\\', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|', '/']);

class Re2Error extends Error {}

function fail(message: string): never {
  throw new Re2Error(message);
}

function convert(pattern: string, anchored: boolean): Re2Result {
  try {
    const { body, flags } = new Converter(pattern).run();
    let source = body;
    if (anchored) {
      // With `m`, `^`/`$` would also match at line breaks; full-string anchors need lookaround then.
      source = flags.includes('m') ? `(?<![\\s\\S])(?:${body})(?![\\s\\S])` : `^(?:${body})$`;
    }
    const allFlags = [...new Set(flags + 'u')].sort().join('');
    try {
      new RegExp(source, allFlags);
    } catch (e) {
      return { ok: false, message: `invalid regular expression ${JSON.stringify(pattern)}: ${(e as Error).message}` };
    }
    return { ok: true, regex: { original: pattern, source, flags: allFlags } };
  } catch (e) {
    if (e instanceof Re2Error) return { ok: false, message: `invalid RE2 regular expression ${JSON.stringify(pattern)}: ${e.message}` };
    throw e;
  }
}

class Converter {
  #p: string;
  #i = 0;
  #out = '';
  /** True when the last emitted item can take a quantifier. */
  #quantifiable = false;
  /** True right after a quantifier (to catch `a**`, `a*+`). */
  #afterQuantifier = false;
  /** `(?m)` given: `^`/`$` match at line breaks, so `\A`/`\z` need lookaround. */
  #multiline = false;

  constructor(pattern: string) {
    this.#p = pattern;
  }

  run(): { body: string; flags: string } {
    const flags = this.#leadingFlags();
    this.#multiline = flags.includes('m');
    while (this.#i < this.#p.length) this.#atom();
    return { body: this.#out, flags };
  }

  /** `(?i)`, `(?s)`, `(?is)`, `(?i)(?s)`, ... at the very start of the pattern. */
  #leadingFlags(): string {
    let flags = '';
    for (;;) {
      const m = /^\(\?([imsU]*)(?:-([imsU]*))?\)/.exec(this.#p.slice(this.#i));
      if (!m || (m[1] === '' && m[2] === undefined)) break;
      const on = m[1];
      const off = m[2] ?? '';
      if (on.includes('U') || off.includes('U')) fail('the U (ungreedy) flag has no JavaScript equivalent; use lazy quantifiers (*?, +?) instead');
      for (const f of on) if (!flags.includes(f)) flags += f;
      for (const f of off) flags = flags.replace(f, '');
      this.#i += m[0].length;
    }
    return flags;
  }

  #emit(s: string, quantifiable: boolean): void {
    this.#out += s;
    this.#quantifiable = quantifiable;
    this.#afterQuantifier = false;
  }

  #atom(): void {
    const c = this.#p[this.#i];
    switch (c) {
      case '\\':
        this.#escape();
        return;
      case '[':
        this.#class();
        return;
      case '(':
        this.#group();
        return;
      case ')':
        this.#i++;
        this.#emit(')', true);
        return;
      case '*':
      case '+':
      case '?':
        this.#quantifier(c);
        return;
      case '{': {
        const m = /^\{(\d+)(,(\d*))?\}/.exec(this.#p.slice(this.#i));
        if (!m) {
          // RE2 reads a `{` that does not start a repeat as a literal; `u` needs it escaped.
          this.#i++;
          this.#emit('\\{', true);
          return;
        }
        const min = Number(m[1]);
        const max = m[3] !== undefined && m[3] !== '' ? Number(m[3]) : min;
        if (min > MAX_REPEAT || max > MAX_REPEAT) fail(`repeat count ${m[0]} is above RE2's limit of ${MAX_REPEAT}`);
        if (m[3] !== undefined && m[3] !== '' && max < min) fail(`bad repeat range ${m[0]}`);
        this.#i += m[0].length;
        this.#applyQuantifier(m[0]);
        return;
      }
      case '}':
        this.#i++;
        this.#emit('\\}', true);
        return;
      case ']':
        this.#i++;
        this.#emit('\\]', true);
        return;
      case '|':
        this.#i++;
        this.#emit('|', false);
        return;
      case '^':
      case '$':
        this.#i++;
        this.#emit(c, false);
        return;
      default: {
        // One code point (keeps surrogate pairs together).
        const cp = this.#p.codePointAt(this.#i) as number;
        const ch = String.fromCodePoint(cp);
        this.#i += ch.length;
        this.#emit(ch, true);
      }
    }
  }

  #quantifier(q: string): void {
    this.#i++;
    this.#applyQuantifier(q);
  }

  #applyQuantifier(q: string): void {
    if (this.#afterQuantifier) {
      if (q === '+') fail('possessive quantifiers (*+, ++, ?+) are not supported by RE2');
      fail(`bad repetition operator: the quantifier ${q} follows another quantifier`);
    }
    if (!this.#quantifiable) fail(`missing argument to repetition operator ${q}`);
    let s = q;
    // A trailing `?` makes it lazy (RE2 supports that); `+` would be possessive.
    if (this.#p[this.#i] === '?') {
      s += '?';
      this.#i++;
    }
    this.#out += s;
    this.#quantifiable = false;
    this.#afterQuantifier = true;
  }

  #group(): void {
    const rest = this.#p.slice(this.#i);
    if (!rest.startsWith('(?')) {
      this.#i++;
      this.#emit('(', false);
      return;
    }
    if (rest.startsWith('(?:')) {
      this.#i += 3;
      this.#emit('(?:', false);
      return;
    }
    const named = /^\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>/.exec(rest);
    if (named) {
      this.#i += named[0].length;
      this.#emit(`(?<${named[1]}>`, false);
      return;
    }
    if (rest.startsWith('(?=') || rest.startsWith('(?!')) fail('lookahead assertions (?= and (?! are not supported by RE2');
    if (rest.startsWith('(?<=') || rest.startsWith('(?<!')) fail('lookbehind assertions (?<= and (?<! are not supported by RE2');
    if (rest.startsWith('(?>')) fail('atomic groups (?> are not supported by RE2');
    if (rest.startsWith('(?P=') || rest.startsWith('(?P>')) fail('named backreferences (?P=name) are not supported by RE2');
    if (/^\(\?[imsU-]+[:)]/.test(rest)) {
      fail('flags are only supported at the start of the pattern, as (?i), (?s) or (?is) (JavaScript has no inline flag groups)');
    }
    fail(`unknown group syntax ${rest.slice(0, 4)}`);
  }

  #escape(): void {
    const p = this.#p;
    const c = p[this.#i + 1];
    if (c === undefined) fail('trailing backslash at end of expression');
    // RE2: `\1`..`\7` followed by another octal digit is an octal escape; a lone digit is a backreference.
    if (c >= '1' && c <= '9' && !(c <= '7' && /[0-7]/.test(p[this.#i + 2] ?? ''))) fail(`backreferences (\\${c}) are not supported by RE2`);
    switch (c) {
      case 'A':
        this.#i += 2;
        this.#emit(this.#multiline ? '(?<![\\s\\S])' : '^', false);
        return;
      case 'z':
        this.#i += 2;
        this.#emit(this.#multiline ? '(?![\\s\\S])' : '$', false);
        return;
      case 'b':
      case 'B':
        this.#i += 2;
        this.#emit(`\\${c}`, false);
        return;
      case 'Q': {
        // Literal text up to \E (or the end).
        const end = p.indexOf('\\E', this.#i + 2);
        const text = end < 0 ? p.slice(this.#i + 2) : p.slice(this.#i + 2, end);
        this.#i = end < 0 ? p.length : end + 2;
        for (const ch of text) this.#emit(literal(ch), true);
        return;
      }
      case 'E':
        // A stray \E is ignored by RE2.
        this.#i += 2;
        return;
    }
    this.#emit(this.#commonEscape(false), true);
  }

  /** Escapes valid both outside and inside classes; returns the JavaScript text and advances. */
  #commonEscape(inClass: boolean): string {
    const p = this.#p;
    const c = p[this.#i + 1];
    if (c === undefined) fail('trailing backslash at end of expression');
    switch (c) {
      case 'd':
      case 'D':
      case 'w':
      case 'W':
      case 's':
      case 'S':
      case 'f':
      case 'n':
      case 'r':
      case 't':
      case 'v':
        this.#i += 2;
        return `\\${c}`;
      case 'a':
        this.#i += 2;
        return '\\x07';
      case '0':
      case '1':
      case '2':
      case '3':
      case '4':
      case '5':
      case '6':
      case '7': {
        // Octal \0, \01, \012, \101 (RE2 allows up to three digits; #escape has refused backreferences).
        const m = /^[0-7]{1,3}/.exec(p.slice(this.#i + 1)) as RegExpExecArray;
        this.#i += 1 + m[0].length;
        return codePointEscape(parseInt(m[0], 8));
      }
      case 'x': {
        const braced = /^\{([0-9A-Fa-f]{1,6})\}/.exec(p.slice(this.#i + 2));
        if (braced) {
          const cp = parseInt(braced[1], 16);
          if (cp > 0x10ffff) fail(`\\x{${braced[1]}} is not a valid code point`);
          this.#i += 2 + braced[0].length;
          return codePointEscape(cp);
        }
        const two = /^[0-9A-Fa-f]{2}/.exec(p.slice(this.#i + 2));
        if (!two) fail('invalid escape \\x: expected two hex digits or \\x{...}');
        this.#i += 4;
        return `\\x${two[0]}`;
      }
      case 'p':
      case 'P': {
        const m = /^\{(\^?)([A-Za-z_]+)\}|^([A-Za-z])/.exec(p.slice(this.#i + 2));
        if (!m) fail(`invalid Unicode class escape \\${c}`);
        this.#i += 2 + m[0].length;
        const negate = (c === 'P') !== (m[1] === '^');
        const name = m[2] ?? m[3];
        return `\\${negate ? 'P' : 'p'}{${unicodeClass(name)}}`;
      }
      case 'C':
        fail('\\C (any byte) is not supported');
    }
    if (/[A-Za-z0-9]/.test(c)) {
      if (inClass && c === 'b') fail('\\b is not allowed inside a character class in RE2');
      fail(`invalid or unsupported escape \\${c}`);
    }
    // An escaped punctuation or other character: a literal.
    const cp = p.codePointAt(this.#i + 1) as number;
    const ch = String.fromCodePoint(cp);
    this.#i += 1 + ch.length;
    return inClass ? classLiteral(ch) : literal(ch);
  }

  /** `[...]`: RE2 class syntax to JavaScript (`u`-valid) class syntax. */
  #class(): void {
    const p = this.#p;
    // A whole-class negated POSIX name: [[:^alpha:]] -> [^A-Za-z].
    const negPosix = /^\[\[:\^([a-z]+):\]\]/.exec(p.slice(this.#i));
    if (negPosix) {
      const body = POSIX[negPosix[1]];
      if (body === undefined) fail(`unknown POSIX class [:^${negPosix[1]}:]`);
      this.#i += negPosix[0].length;
      this.#emit(`[^${body}]`, true);
      return;
    }
    this.#i++;
    let out = '[';
    if (p[this.#i] === '^') {
      out += '^';
      this.#i++;
    }
    let first = true;
    for (;;) {
      if (this.#i >= p.length) fail('missing closing ] of a character class');
      const c = p[this.#i];
      if (c === ']' && !first) {
        this.#i++;
        break;
      }
      first = false;
      if (c === '[' && p[this.#i + 1] === ':') {
        const m = /^\[:(\^?)([a-z]+):\]/.exec(p.slice(this.#i));
        if (m) {
          const body = POSIX[m[2]];
          if (body === undefined) fail(`unknown POSIX class [:${m[1]}${m[2]}:]`);
          if (m[1] === '^') fail(`a negated POSIX class [:^${m[2]}:] can only stand alone in its brackets, as [[:^${m[2]}:]]`);
          out += body;
          this.#i += m[0].length;
          continue;
        }
      }
      if (c === '\\') {
        out += this.#commonEscape(true);
        continue;
      }
      if (c === '-') {
        // A range dash between two items stays a dash; at either end it is a literal.
        const atEnd = p[this.#i + 1] === ']';
        const atStart = out === '[' || out === '[^';
        out += atEnd || atStart ? '\\-' : '-';
        this.#i++;
        continue;
      }
      const cp = p.codePointAt(this.#i) as number;
      const ch = String.fromCodePoint(cp);
      this.#i += ch.length;
      out += classLiteral(ch);
    }
    if (out === '[' || out === '[^') fail('empty character class');
    this.#emit(out + ']', true);
  }
}

/** A literal character outside a class, escaped when `u` requires it. */
function literal(ch: string): string {
  return SYNTAX.has(ch) ? `\\${ch}` : ch;
}

/** A literal character inside a class. */
function classLiteral(ch: string): string {
  return ch === ']' || ch === '\\' || ch === '[' || ch === '^' || ch === '-' ? `\\${ch}` : ch;
}

function codePointEscape(cp: number): string {
  return cp <= 0xff ? `\\x${cp.toString(16).padStart(2, '0')}` : `\\u{${cp.toString(16)}}`;
}

/** RE2 Unicode class names: general categories (`L`, `Lu`) as is, anything else is a script. */
function unicodeClass(name: string): string {
  if (name === 'Any') return 'Any';
  if (/^[A-Z][a-z]?$/.test(name)) return name;
  return `Script=${name}`;
}
