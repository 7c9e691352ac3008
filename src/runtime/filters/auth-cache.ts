/**
 * The auth answer cache of ingress-nginx `auth-cache-key` (IR `ExternalAuthCache`): nginx's
 * `proxy_cache` on the auth subrequest, in memory. Entries are kept per zone and evaluated key, at
 * most `MAX_ENTRIES` per process (the least recently stored goes first), and survive snapshot swaps
 * (nginx's cache survives reloads) while the zone keeps its name.
 */

import type { AuthCacheKeyPart, ExternalAuthCache, UrlTemplatePart } from '../../ir/types.js';
import type { Downstream } from '../http/downstream.js';

/** Bound of the whole cache (nginx: keys_zone 10m, about 80 000 keys; max_size 128m). */
export const MAX_ENTRIES = 20_000;

/** What an auth answer leaves for the requests that reuse it. */
export interface CachedAuthAnswer {
  status: number;
  /** Lowercase names; the values undici gave (string or list). */
  headers: Record<string, string | string[] | undefined>;
  /** Date.now() after which the entry is stale. */
  expiresAt: number;
}

const entries = new Map<string, CachedAuthAnswer>();

/** What the key reads from the request. */
export interface AuthCacheKeyInput {
  readonly d: Downstream;
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly scheme: string;
  readonly authority: string;
}

/** The request's cache key (zone included). */
export function authCacheKey(c: ExternalAuthCache, x: AuthCacheKeyInput, clientIp: string): string {
  let k = `${c.zone}\u0000`;
  for (const p of c.key) k += part(p, x, clientIp);
  return k;
}

function part(p: AuthCacheKeyPart, x: AuthCacheKeyInput, clientIp: string): string {
  switch (p.kind) {
    case 'literal':
      return p.value;
    case 'header':
      return header(x.d.rawHeaders, p.name) ?? '';
    case 'cookie': {
      const cookies = header(x.d.rawHeaders, 'cookie');
      if (cookies === null) return '';
      for (const c of cookies.split(/;\s*/)) {
        const eq = c.indexOf('=');
        if (eq > 0 && c.slice(0, eq).trim() === p.name) return c.slice(eq + 1);
      }
      return '';
    }
    case 'query':
      for (const kv of x.query.split('&')) {
        const eq = kv.indexOf('=');
        if ((eq === -1 ? kv : kv.slice(0, eq)) === p.name) return eq === -1 ? '' : kv.slice(eq + 1);
      }
      return '';
    case 'request':
      switch (p.name) {
        case 'host':
          return x.authority.replace(/:\d+$/, '').toLowerCase();
        case 'remote_addr':
          return clientIp;
        case 'remote_user':
          return basicUser(header(x.d.rawHeaders, 'authorization'));
        case 'request_uri':
          return x.query === '' ? x.path : `${x.path}?${x.query}`;
        case 'uri':
          return x.path;
        case 'args':
          return x.query;
        case 'request_method':
          return x.method;
        case 'scheme':
        case 'pass_access_scheme':
          return x.scheme;
        case 'http_host':
          return x.authority;
        case 'escaped_request_uri':
          return escapeUri(x.query === '' ? x.path : `${x.path}?${x.query}`);
      }
  }
}

/**
 * A URL written with nginx variables, evaluated for this request (IR `UrlTemplatePart`): request text
 * that is URI text already goes in as received, host-like values as they are, anything else
 * percent-encoded, so no value can add a query parameter, a fragment, a path segment or a header line.
 */
export function evaluateUrlTemplate(parts: readonly UrlTemplatePart[], x: AuthCacheKeyInput, clientIp: string): string {
  let out = '';
  for (const p of parts) {
    const v = part(p, x, clientIp);
    switch (p.kind) {
      case 'literal':
        out += v;
        break;
      case 'query':
        // Already URI text; `/` and `?` encoded too, so a value cannot climb or split a path it is put in.
        out += escapeUnsafe(v).replace(/[/?]/g, (c) => (c === '/' ? '%2F' : '%3F'));
        break;
      case 'request':
        if (p.name === 'request_uri' || p.name === 'uri' || p.name === 'args') out += escapeUnsafe(v);
        else if (p.name === 'escaped_request_uri') out += v;
        else if (p.name === 'remote_user') out += escapeUri(v);
        else out += HOST_LIKE.test(v) ? v : escapeUri(v);
        break;
      default:
        out += escapeUri(v);
    }
  }
  return out;
}

/** Characters of host names, addresses (IPv6 in brackets), ports, schemes and methods. */
const HOST_LIKE = /^[A-Za-z0-9.:_[\]-]*$/;

/** nginx set_escape_uri: every byte but `A-Za-z0-9-._~` percent-encoded (UTF-8). */
export function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** URI text as received: bytes outside printable ASCII (and `#`, which would start a fragment) percent-encoded. */
function escapeUnsafe(s: string): string {
  return /^[\x21-\x22\x24-\x7e]*$/.test(s) ? s : s.replace(/[^\x21-\x22\x24-\x7e]+/g, (m) => escapeUri(m));
}

/** All values of a request header joined with `,` (nginx `$http_*` gives the first; joining keeps distinct requests apart), or null. */
function header(raw: string[], name: string): string | null {
  let out: string | null = null;
  for (let i = 0; i < raw.length; i += 2) if (raw[i].length === name.length && raw[i].toLowerCase() === name) out = out === null ? raw[i + 1] : `${out},${raw[i + 1]}`;
  return out;
}

/** nginx `$remote_user`: the user of Basic credentials, '' otherwise. */
function basicUser(authorization: string | null): string {
  if (authorization === null || !/^basic\s/i.test(authorization)) return '';
  const decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  return colon === -1 ? '' : decoded.slice(0, colon);
}

/** A fresh cached answer for `key`, or null. */
export function lookupAuthAnswer(key: string, now: number): CachedAuthAnswer | null {
  const e = entries.get(key);
  if (e === undefined) return null;
  if (e.expiresAt <= now) {
    entries.delete(key);
    return null;
  }
  return e;
}

/**
 * Keeps an answer when nginx would: a `valid` rule lists its status, it sets no cookie, and its
 * Cache-Control / X-Accel-Expires allow it (their lifetime wins over the rule's).
 */
export function storeAuthAnswer(c: ExternalAuthCache, key: string, status: number, headers: Record<string, string | string[] | undefined>, now: number): void {
  const rule = c.valid.find((r) => r.statuses === 'any' || r.statuses.includes(status));
  if (rule === undefined) return;
  if (headers['set-cookie'] !== undefined) return;
  let seconds = rule.seconds;
  const accel = first(headers['x-accel-expires']);
  const cc = first(headers['cache-control'])?.toLowerCase() ?? null;
  if (accel !== null && /^\d+$/.test(accel.trim())) seconds = Number(accel.trim());
  else if (cc !== null) {
    if (/(^|[\s,])(no-store|no-cache|private)([\s,=]|$)/.test(cc)) return;
    const m = /(?:^|[\s,])max-age\s*=\s*(\d+)/.exec(cc);
    if (m !== null) seconds = Number(m[1]);
  }
  if (seconds <= 0) return;
  entries.delete(key);
  entries.set(key, { status, headers, expiresAt: now + seconds * 1000 });
  if (entries.size > MAX_ENTRIES) entries.delete(entries.keys().next().value as string);
}

function first(v: string | string[] | undefined): string | null {
  return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
}
