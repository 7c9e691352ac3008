/**
 * Field paths name a node inside an object the way diagnostics print it:
 * `spec.rules[0].http.paths[1].backend.service.port.number`. Keys that are not plain words
 * (label keys such as `app.kubernetes.io/name`) are quoted: `metadata.labels["app.kubernetes.io/name"]`.
 * The file loader records `origin.fieldLines` with these same strings, so a schema error can find its line.
 */

const PLAIN_KEY = /^[A-Za-z0-9_$-]+$/;

/** The path of key `key` inside the object at `parent` ('' for the root). */
export function fieldKey(parent: string, key: string): string {
  if (PLAIN_KEY.test(key)) return parent === '' ? key : `${parent}.${key}`;
  return `${parent}[${JSON.stringify(key)}]`;
}

/** The path of item `index` of the sequence at `parent`. */
export function fieldIndex(parent: string, index: number): string {
  return `${parent}[${index}]`;
}

/**
 * The enclosing path of `path` (`a.b[2]` -> `a.b`, `a.b` -> `a`, `a` -> ''), or null for ''.
 * Used to fall back to the nearest known line when a field itself has none (e.g. a missing field).
 */
export function parentPath(path: string): string | null {
  if (path === '') return null;
  if (path.endsWith('"]')) {
    // A quoted key: find its opening quote, the first one going back that no odd run of `\\` escapes.
    for (let i = path.length - 3; i > 0; i--) {
      if (path[i] !== '"') continue;
      let slashes = 0;
      while (path[i - 1 - slashes] === '\\') slashes++;
      if (slashes % 2 === 0 && path[i - 1] === '[') return path.slice(0, i - 1);
    }
    return '';
  }
  if (path.endsWith(']')) return path.slice(0, path.lastIndexOf('['));
  const dot = path.lastIndexOf('.');
  const bracket = path.lastIndexOf(']');
  if (dot > bracket) return path.slice(0, dot);
  if (bracket >= 0) return path.slice(0, bracket + 1);
  return '';
}
