/**
 * Durations as Istio writes them: Go `time.ParseDuration` syntax (`"1.5s"`, `"100ms"`, `"2m"`, `"1h30m"`),
 * which is what the Istio CRDs' `duration(self)` validations accept. Protobuf JSON's `"3.000s"` form is a
 * subset of it.
 */

/** Milliseconds per unit, as Go's time package names them. */
const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3, // U+00B5 micro sign
  'μs': 1e-3, // U+03BC Greek mu
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/;

/**
 * Parse a Go duration string; returns milliseconds (possibly fractional, negative if signed `-`),
 * or null when `s` is not a duration. `"0"` is accepted (Go allows a bare zero).
 */
export function parseDuration(s: string): number | null {
  if (typeof s !== 'string' || s.length === 0) return null;
  let rest = s;
  let sign = 1;
  if (rest[0] === '-' || rest[0] === '+') {
    if (rest[0] === '-') sign = -1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return null;
  let total = 0;
  while (rest.length > 0) {
    const m = PART.exec(rest);
    if (!m) return null;
    total += Number(m[1]) * UNIT_MS[m[2]];
    rest = rest.slice(m[0].length);
  }
  if (!Number.isFinite(total)) return null;
  return total === 0 ? 0 : sign * total;
}
