/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4, what every sidecar's
 * `/stats/prometheus` serves and what Prometheus's own text parser accepts):
 *
 *   # HELP name text          (text escapes: `\\` and `\n`)
 *   # TYPE name counter|gauge|histogram|summary|untyped
 *   # any other comment
 *   name{label="value",...} value [timestamp_ms]
 *
 * Label values escape `\\`, `\"` and `\n`; any other escape, an unterminated value, a repeated label
 * name, a bad metric or label name, or a value that is not a float (`NaN`, `+Inf`, `-Inf` allowed)
 * is an error naming the line, and the whole exposition is refused, as Prometheus refuses a scrape
 * it cannot parse (a half-read scrape would make counters look reset).
 */

export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
  /** The optional timestamp, ms since the epoch; null when absent. */
  timestampMs: number | null;
}

export interface PromExposition {
  samples: PromSample[];
  /** `# TYPE` lines: family name → type. */
  types: Map<string, string>;
}

export class PromParseError extends Error {
  constructor(
    readonly line: number,
    message: string,
  ) {
    super(`line ${line}: ${message}`);
  }
}

const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
/** [a-zA-Z_] */
function isLabelStart(c: number): boolean {
  return (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f;
}
/** [a-zA-Z0-9_] */
function isLabelChar(c: number): boolean {
  return isLabelStart(c) || (c >= 0x30 && c <= 0x39);
}
/** [a-zA-Z_:] */
function isNameStart(c: number): boolean {
  return isLabelStart(c) || c === 0x3a;
}
/** [a-zA-Z0-9_:] */
function isNameChar(c: number): boolean {
  return isLabelChar(c) || c === 0x3a;
}
const FLOAT = /^[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)$/;
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** Parses a whole exposition; throws PromParseError on the first malformed line. */
export function parsePromText(text: string): PromExposition {
  const samples: PromSample[] = [];
  const types = new Map<string, string>();
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i];
    if (line.endsWith('\r')) line = line.slice(0, -1);
    const n = i + 1;
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
      if (m === null) continue; // a plain comment
      if (!METRIC_NAME.test(m[2])) throw new PromParseError(n, `invalid metric name "${m[2]}" in # ${m[1]}`);
      if (m[1] === 'TYPE') {
        const t = (m[3] ?? '').trim();
        if (!TYPES.has(t)) throw new PromParseError(n, `unknown metric type "${t}" for ${m[2]}`);
        if (types.has(m[2])) throw new PromParseError(n, `second # TYPE line for ${m[2]}`);
        types.set(m[2], t);
      } else if (m[3] !== undefined && /\\[^\\n]|\\$/.test(m[3].replace(/\\\\/g, ''))) {
        throw new PromParseError(n, `invalid escape in # HELP text of ${m[2]}`);
      }
      continue;
    }
    samples.push(parseSampleLine(line, n));
  }
  return { samples, types };
}

function parseSampleLine(line: string, n: number): PromSample {
  let p = 0;
  const len = line.length;
  const skipBlanks = () => {
    while (p < len && (line[p] === ' ' || line[p] === '\t')) p++;
  };
  skipBlanks();
  const nameStart = p;
  if (p >= len || !isNameStart(line.charCodeAt(p))) throw new PromParseError(n, `expected a metric name, got "${line.slice(p, p + 20)}"`);
  while (p < len && isNameChar(line.charCodeAt(p))) p++;
  const name = line.slice(nameStart, p);
  const labels: Record<string, string> = {};
  const afterName = p;
  skipBlanks();
  let blankBeforeValue = p > afterName;
  if (line[p] === '{') {
    blankBeforeValue = false;
    p++;
    for (;;) {
      skipBlanks();
      if (line[p] === '}') {
        p++;
        break;
      }
      const ls = p;
      if (p >= len || !isLabelStart(line.charCodeAt(p))) throw new PromParseError(n, `expected a label name in ${name}{…}, got "${line.slice(p, p + 20)}"`);
      while (p < len && isLabelChar(line.charCodeAt(p))) p++;
      const label = line.slice(ls, p);
      skipBlanks();
      if (line[p] !== '=') throw new PromParseError(n, `expected "=" after label ${label} of ${name}`);
      p++;
      skipBlanks();
      if (line[p] !== '"') throw new PromParseError(n, `expected a quoted value for label ${label} of ${name}`);
      p++;
      let value = '';
      let closed = false;
      // Runs without escapes are sliced whole (label values rarely have any).
      let run = p;
      while (p < len) {
        const c = line.charCodeAt(p);
        if (c === 0x22 /* " */) {
          value += line.slice(run, p);
          p++;
          closed = true;
          break;
        }
        if (c === 0x5c /* \\ */) {
          value += line.slice(run, p);
          const e = line[p + 1];
          if (e === '\\') value += '\\';
          else if (e === '"') value += '"';
          else if (e === 'n') value += '\n';
          else throw new PromParseError(n, `invalid escape "\\${e ?? ''}" in the value of label ${label} of ${name}`);
          p += 2;
          run = p;
          continue;
        }
        p++;
      }
      if (!closed) throw new PromParseError(n, `unterminated value of label ${label} of ${name}`);
      if (Object.hasOwn(labels, label)) throw new PromParseError(n, `label ${label} repeated in ${name}`);
      labels[label] = value;
      skipBlanks();
      if (line[p] === ',') {
        p++;
        continue;
      }
      if (line[p] === '}') {
        p++;
        break;
      }
      throw new PromParseError(n, `expected "," or "}" after label ${label} of ${name}`);
    }
  }
  // At least one blank between the name (or labels) and the value.
  if (!blankBeforeValue && p < len && line[p] !== ' ' && line[p] !== '\t') throw new PromParseError(n, `expected a blank before the value of ${name}, got "${line[p]}"`);
  const rest = line.slice(p).trim().split(/[ \t]+/);
  if (rest.length === 0 || rest[0] === '') throw new PromParseError(n, `missing value for ${name}`);
  if (rest.length > 2) throw new PromParseError(n, `unexpected text after the value of ${name}: "${rest.slice(2).join(' ')}"`);
  const value = parseFloatToken(rest[0]);
  if (value === null) throw new PromParseError(n, `value "${rest[0]}" of ${name} is not a number`);
  let timestampMs: number | null = null;
  if (rest.length === 2) {
    if (!/^-?\d+$/.test(rest[1])) throw new PromParseError(n, `timestamp "${rest[1]}" of ${name} is not an integer`);
    timestampMs = Number(rest[1]);
  }
  return { name, labels, value, timestampMs };
}

function parseFloatToken(s: string): number | null {
  // Go's strconv.ParseFloat (Prometheus's parser) takes NaN and Inf in any case, Inf signed or not.
  const lower = s.toLowerCase();
  if (lower === 'nan') return NaN;
  if (lower === 'inf' || lower === '+inf' || lower === 'infinity' || lower === '+infinity') return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  if (!FLOAT.test(s)) return null;
  return Number(s);
}

/** A canonical key of a label set (sorted by name), for identifying a series across scrapes. */
export function seriesKey(name: string, labels: Record<string, string>): string {
  const names = Object.keys(labels).sort();
  let k = name;
  for (const l of names) k += `\u0000${l}\u0001${labels[l]}`;
  return k;
}
