/**
 * ingress-nginx `auth-cache-key` and `auth-cache-duration` -> IR `ExternalAuthCache`. PURE.
 *
 * ingress-nginx (internal/ingress/annotations/authreq, the auth location of nginx.tmpl): with a cache
 * key the auth subrequest is cached (`proxy_cache`, key = server name + auth location + the evaluated
 * key) for the durations of `auth-cache-duration`: a comma list of nginx `proxy_cache_valid`
 * values, `[code ...] time`, default `200 202 401 5m`. A time alone caches 200, 301 and 302 (nginx);
 * `any` matches every status. Times are one or more `<n>(ms|s|m|h|d|w|M|y)` (a unit is required, as
 * ingress-nginx's validator), added up. The key may use the nginx variables meshgate can evaluate (see
 * `AuthCacheKeyPart`); any other variable is an error, as is a bad duration (ingress-nginx denies the
 * location then).
 */

import type { AuthCacheKeyPart, ExternalAuthCache, UrlTemplatePart } from '../../../ir/types.js';

export const DEFAULT_AUTH_CACHE_DURATION = '200 202 401 5m';

const REQUEST_VARS = new Set(['host', 'remote_addr', 'remote_user', 'request_uri', 'uri', 'args', 'request_method', 'scheme']);
const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, M: 2592000, y: 31536000 };

/** The key's parts, or an error sentence. */
export function parseAuthCacheKey(raw: string): AuthCacheKeyPart[] | string {
  const parts: AuthCacheKeyPart[] = [];
  const re = /\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g;
  let last = 0;
  for (let m = re.exec(raw); m !== null; m = re.exec(raw)) {
    if (m.index > last) parts.push({ kind: 'literal', value: raw.slice(last, m.index) });
    last = m.index + m[0].length;
    const name = (m[1] ?? m[2]).toLowerCase();
    if (name.startsWith('http_') && name.length > 5) parts.push({ kind: 'header', name: name.slice(5).replace(/_/g, '-') });
    else if (name.startsWith('cookie_') && name.length > 7) parts.push({ kind: 'cookie', name: (m[1] ?? m[2]).slice(7) });
    else if (name.startsWith('arg_') && name.length > 4) parts.push({ kind: 'query', name: (m[1] ?? m[2]).slice(4) });
    else if (name === 'http_host') parts.push({ kind: 'header', name: 'host' });
    else if (REQUEST_VARS.has(name)) parts.push({ kind: 'request', name: name as Extract<AuthCacheKeyPart, { kind: 'request' }>['name'] });
    else return `the nginx variable $${m[1] ?? m[2]} is not one meshgate evaluates ($http_<name>, $cookie_<name>, $arg_<name>, $host, $remote_addr, $remote_user, $request_uri, $uri, $args, $request_method, $scheme)`;
  }
  if (last < raw.length) parts.push({ kind: 'literal', value: raw.slice(last) });
  if (raw.includes('$') && parts.some((p) => p.kind === 'literal' && p.value.includes('$'))) return 'a "$" that does not start a variable name';
  if (/[\s"'`\\{};]/.test(parts.filter((p) => p.kind === 'literal').map((p) => (p as { value: string }).value).join(''))) return 'spaces, quotes, braces and ";" are not allowed';
  return parts;
}

const URL_VARS = new Set([...REQUEST_VARS, 'escaped_request_uri', 'pass_access_scheme', 'http_host']);

/**
 * The parts of URL text written with nginx variables (auth-url's path and query, auth-signin), or an
 * error sentence. Variables: $http_<name>, $cookie_<name>, $arg_<name>, $host, $http_host, $scheme,
 * $pass_access_scheme, $request_uri, $escaped_request_uri, $uri, $args, $request_method, $remote_addr,
 * $remote_user (also as ${name}); any other is an error (meshgate never evaluates a variable it does
 * not know). The literal text may hold URL characters only.
 */
export function parseUrlTemplate(raw: string): UrlTemplatePart[] | string {
  const parts: UrlTemplatePart[] = [];
  const re = /\$(?:\{([A-Za-z0-9_]+)\}|([A-Za-z0-9_]+))/g;
  let last = 0;
  for (let m = re.exec(raw); m !== null; m = re.exec(raw)) {
    if (m.index > last) parts.push({ kind: 'literal', value: raw.slice(last, m.index) });
    last = m.index + m[0].length;
    const written = m[1] ?? m[2];
    const name = written.toLowerCase();
    if (URL_VARS.has(name)) parts.push({ kind: 'request', name: name as Extract<UrlTemplatePart, { kind: 'request' }>['name'] });
    else if (name.startsWith('http_') && name.length > 5) parts.push({ kind: 'header', name: name.slice(5).replace(/_/g, '-') });
    else if (name.startsWith('cookie_') && name.length > 7) parts.push({ kind: 'cookie', name: written.slice(7) });
    else if (name.startsWith('arg_') && name.length > 4) parts.push({ kind: 'query', name: written.slice(4) });
    else return `the nginx variable $${written} is not one meshgate evaluates in URLs ($host, $http_host, $scheme, $pass_access_scheme, $request_uri, $escaped_request_uri, $uri, $args, $arg_<name>, $http_<name>, $cookie_<name>, $remote_addr, $remote_user, $request_method)`;
  }
  if (last < raw.length) parts.push({ kind: 'literal', value: raw.slice(last) });
  const literal = parts.filter((p): p is Extract<UrlTemplatePart, { kind: 'literal' }> => p.kind === 'literal').map((p) => p.value).join('');
  if (literal.includes('$')) return 'a "$" that does not start a variable name';
  if (!/^[A-Za-z0-9\-._~:/?#[\]@!&'()*+,=%]*$/.test(literal)) return 'only URL characters are allowed (no spaces, quotes, braces, backslashes or ";")';
  return parts;
}

/** The `valid` rules of a duration list, or an error sentence. */
export function parseAuthCacheDuration(raw: string): ExternalAuthCache['valid'] | string {
  const rules: ExternalAuthCache['valid'] = [];
  for (const item of raw.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const codes: number[] = [];
    let any = false;
    let seconds = 0;
    let seenTime = false;
    for (const w of item.split(/\s+/)) {
      // ingress-nginx's validator: three digits are a status, and come before the time.
      if (/^\d{3}$/.test(w)) {
        if (seenTime) return `${JSON.stringify(item)}: the status ${w} comes after the time`;
        if (Number(w) < 100 || Number(w) > 599) return `${JSON.stringify(item)}: ${w} is not an HTTP status`;
        codes.push(Number(w));
      } else if (w === 'any' && !seenTime) any = true;
      else {
        const t = /^(\d+)(ms|s|m|h|d|w|M|y)$/.exec(w);
        if (t === null) return `${JSON.stringify(item)}: ${JSON.stringify(w)} is neither a status code (before the time) nor an nginx time such as 5m`;
        seconds += Number(t[1]) * UNIT_SECONDS[t[2]];
        seenTime = true;
      }
    }
    if (!seenTime) return `${JSON.stringify(item)} has no time (e.g. "200 202 401 5m")`;
    // nginx proxy_cache_valid: a time alone caches 200, 301 and 302.
    rules.push({ statuses: any ? 'any' : codes.length > 0 ? codes : [200, 301, 302], seconds });
  }
  if (rules.length === 0) return parseAuthCacheDuration(DEFAULT_AUTH_CACHE_DURATION);
  return rules;
}
