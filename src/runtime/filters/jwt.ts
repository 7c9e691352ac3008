/**
 * JWT authentication (Istio RequestAuthentication, Envoy jwt_authn with `allow_missing`), verified
 * with `jose` (never hand-written crypto).
 *
 * - A request with no token passes unauthenticated (authorization decides what that may do).
 * - A present token that fails (malformed, `alg: none`, bad signature, expired or not yet valid
 *   beyond 60 s of skew, unknown issuer, wrong audience, no key for its `kid`) is 401. So is a request
 *   that carries two different tokens, or one token header line twice (ambiguous identity).
 * - Key selection follows the JWK's `kty`/`alg`, so an HS256 token can never be checked against an
 *   RSA public key (algorithm confusion); `jku`/`x5u` headers are never fetched.
 *
 * JWKS (`jwksUri`) are fetched by the data plane, not by translate (which is pure) nor by the
 * control plane: keys rotate on the issuer's schedule, not on config changes, and a snapshot stays a
 * pure function of the config (same config, same version). Each process keeps one cache per URI,
 * outside snapshots (a reload does not refetch): fetched on first use (bounded retries), refreshed
 * every `refreshMs` in the background, refetched at once for an unknown `kid` (at most once per
 * `unknownKidCooldownMs`, so random `kid`s cannot amplify into fetches). When the issuer is down, the
 * last good keys keep serving. A JWKS body larger than `maxBytes` is refused.
 *
 * `jose` is imported on first use (`loadJose`; the Runtime preloads it when a snapshot has JWT rules),
 * so a process serving no RequestAuthentication never loads it (issue 11, lean processes).
 */

import type { JSONWebKeySet, JWTPayload, JWTVerifyGetKey } from 'jose';
import type { JwtRule } from '../../ir/types.js';
import type { JwtIdentity } from './rbac.js';

/** Cache behaviour; tests may shorten the intervals. */
export const JWKS_SETTINGS = {
  /** Background refresh interval (Envoy caches remote JWKS for 10 min by default). */
  refreshMs: 10 * 60_000,
  /** Least time between two fetches triggered by unknown `kid`s. */
  unknownKidCooldownMs: 30_000,
  /** After a failed fetch with no keys at all, no new attempt for this long (doubling, capped at 30 s). */
  failureBackoffMs: 1000,
  /** Attempts per fetch (the first plus retries), 200 ms apart then 400 ms. */
  attempts: 3,
  /** Largest JWKS body accepted. */
  maxBytes: 512 * 1024,
};

/** Clock skew accepted on `exp`/`nbf` (Envoy's default), seconds. */
export const CLOCK_SKEW_S = 60;

type Jose = typeof import('jose');
let jose: Jose | null = null;
let joseLoading: Promise<Jose> | null = null;

/** Imports `jose` once per process; the Runtime awaits it before serving a snapshot with JWT rules. */
export function loadJose(): Promise<Jose> {
  if (jose !== null) return Promise.resolve(jose);
  return (joseLoading ??= import('jose').then((m) => (jose = m)));
}

const ALWAYS_SPACE_DELIMITED = ['scope', 'permission'];

export interface CompiledJwtRule {
  name: string;
  issuer: string;
  audiences: string[] | undefined;
  keys: JWTVerifyGetKey;
  fromHeaders: { name: string; prefix: string }[];
  fromParams: string[];
  fromCookies: string[];
  outputPayloadToHeader: string | null;
  outputClaimToHeaders: { header: string; claim: string }[];
  forwardOriginalToken: boolean;
  spaceDelimited: ReadonlySet<string>;
}

export interface CompiledJwt {
  rules: CompiledJwtRule[];
  /** Output headers of every rule: a client's own copies are always removed (no spoofing). */
  outputHeaders: string[];
}

/** What a request looks like to token extraction. */
export interface JwtRequest {
  headerLines(name: string): string[];
  queryParam(name: string): string | null;
}

/** Where a token was found. */
export interface FoundToken {
  token: string;
  /** Rules that look in a location where this token was found. */
  rules: CompiledJwtRule[];
  /** Header lines carrying the token (lowercase names), removed upstream unless forwarded. */
  headers: string[];
}

/** Upstream header edits after authentication. */
export interface AuthHeaderEdits {
  remove: string[];
  set: [string, string][];
}

export type JwtResult = { ok: true; identity: JwtIdentity; edits: AuthHeaderEdits } | { ok: false; reason: string };

export function compileJwt(rules: readonly JwtRule[]): CompiledJwt | null {
  if (rules.length === 0) return null;
  const compiled = rules.map(compileRule);
  const outputHeaders = new Set<string>();
  for (const r of compiled) {
    if (r.outputPayloadToHeader !== null) outputHeaders.add(r.outputPayloadToHeader);
    for (const c of r.outputClaimToHeaders) outputHeaders.add(c.header);
  }
  return { rules: compiled, outputHeaders: [...outputHeaders] };
}

function compileRule(r: JwtRule): CompiledJwtRule {
  let keys: JWTVerifyGetKey;
  if (r.jwks !== null) keys = inlineKeys(r.jwks);
  else if (r.jwksUri !== null) keys = remoteJwks(r.jwksUri, r.jwksTimeoutMs).getKey;
  else keys = inlineKeys('{"keys":[]}');
  return {
    name: r.name,
    issuer: r.issuer,
    audiences: r.audiences.length > 0 ? r.audiences : undefined,
    keys,
    fromHeaders: r.fromHeaders,
    fromParams: r.fromParams,
    fromCookies: r.fromCookies,
    outputPayloadToHeader: r.outputPayloadToHeader,
    outputClaimToHeaders: r.outputClaimToHeaders,
    forwardOriginalToken: r.forwardOriginalToken,
    spaceDelimited: new Set([...ALWAYS_SPACE_DELIMITED, ...r.spaceDelimitedClaims]),
  };
}

function inlineKeys(text: string): JWTVerifyGetKey {
  let set: JSONWebKeySet = { keys: [] };
  try {
    set = JSON.parse(text) as JSONWebKeySet;
  } catch {
    // translate reported it; no key verifies anything
  }
  // The key set is built on the first verification (after `jose` is loaded), then kept.
  let local: JWTVerifyGetKey | null = null;
  return async (header, token) => {
    local ??= (await loadJose()).createLocalJWKSet(set);
    return local(header, token);
  };
}

/**
 * The token of a request: null when there is none, 'ambiguous' when there are several different
 * tokens or a token header appears twice.
 */
export function extractToken(jwt: CompiledJwt, req: JwtRequest): FoundToken | null | 'ambiguous' {
  let found: FoundToken | null = null;
  const note = (token: string, rule: CompiledJwtRule, header: string | null): boolean => {
    if (found === null) found = { token, rules: [], headers: [] };
    else if (found.token !== token) return false;
    if (!found.rules.includes(rule)) found.rules.push(rule);
    if (header !== null && !found.headers.includes(header)) found.headers.push(header);
    return true;
  };
  for (const rule of jwt.rules) {
    for (const h of rule.fromHeaders) {
      const lines = req.headerLines(h.name);
      let tokens = 0;
      for (const line of lines) {
        const token = tokenIn(line, h.prefix);
        if (token === null) continue;
        if (++tokens > 1 || !note(token, rule, h.name)) return 'ambiguous';
      }
    }
    for (const p of rule.fromParams) {
      const v = req.queryParam(p);
      if (v !== null && v !== '' && !note(decodeParam(v), rule, null)) return 'ambiguous';
    }
    if (rule.fromCookies.length > 0) {
      for (const line of req.headerLines('cookie')) {
        for (const part of line.split(';')) {
          const eq = part.indexOf('=');
          if (eq === -1) continue;
          const name = part.slice(0, eq).trim();
          if (rule.fromCookies.includes(name) && !note(part.slice(eq + 1).trim(), rule, null)) return 'ambiguous';
        }
      }
    }
  }
  return found;
}

function tokenIn(line: string, prefix: string): string | null {
  if (prefix === '') return line.trim() === '' ? null : line.trim();
  if (line.length < prefix.length || line.slice(0, prefix.length).toLowerCase() !== prefix.toLowerCase()) return null;
  const t = line.slice(prefix.length).trim();
  return t === '' ? null : t;
}

function decodeParam(v: string): string {
  try {
    return decodeURIComponent(v.replace(/\+/g, ' '));
  } catch {
    return v;
  }
}

/** Verifies a found token against the rules whose issuer it names. Never rejects. */
export async function verifyToken(jwt: CompiledJwt, found: FoundToken): Promise<JwtResult> {
  const { decodeJwt, jwtVerify } = jose ?? (await loadJose());
  let iss: string | undefined;
  try {
    iss = decodeJwt(found.token).iss;
  } catch {
    return { ok: false, reason: 'Jwt is not in the form of Header.Payload.Signature' };
  }
  const rule = found.rules.find((r) => r.issuer === iss);
  if (rule === undefined) return { ok: false, reason: 'Jwt issuer is not configured' };
  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(found.token, rule.keys, { issuer: rule.issuer, audience: rule.audiences, clockTolerance: CLOCK_SKEW_S }));
  } catch (err) {
    const code = typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
    return { ok: false, reason: code === 'ERR_JWT_EXPIRED' ? 'Jwt is expired' : code === 'ERR_JWT_CLAIM_VALIDATION_FAILED' ? 'Jwt claim validation failed' : 'Jwt verification fails' };
  }
  const identity: JwtIdentity = {
    principal: `${payload.iss ?? ''}/${payload.sub ?? ''}`,
    audiences: payload.aud === undefined ? [] : Array.isArray(payload.aud) ? payload.aud : [payload.aud],
    presenter: typeof payload.azp === 'string' ? payload.azp : null,
    claims: payload as Record<string, unknown>,
    spaceDelimited: rule.spaceDelimited,
  };
  const edits: AuthHeaderEdits = { remove: [...jwt.outputHeaders], set: [] };
  if (!rule.forwardOriginalToken) for (const h of found.headers) edits.remove.push(h);
  if (rule.outputPayloadToHeader !== null) edits.set.push([rule.outputPayloadToHeader, found.token.split('.')[1] ?? '']);
  for (const c of rule.outputClaimToHeaders) {
    const v = claimAt(payload, c.claim);
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') edits.set.push([c.header, String(v)]);
  }
  return { ok: true, identity, edits };
}

function claimAt(payload: JWTPayload, claim: string): unknown {
  if (Object.hasOwn(payload, claim)) return payload[claim];
  let v: unknown = payload;
  for (const k of claim.split('.')) {
    if (typeof v !== 'object' || v === null || !Object.hasOwn(v, k)) return undefined;
    v = (v as Record<string, unknown>)[k];
  }
  return v;
}

// ---- remote JWKS cache (per process, outside snapshots) -------------------------------------------

const remotes = new Map<string, RemoteJwks>();

/** The cache of one JWKS URL (shared by every rule and snapshot naming it). */
export function remoteJwks(uri: string, timeoutMs: number): RemoteJwks {
  let r = remotes.get(uri);
  if (r === undefined) {
    r = new RemoteJwks(uri, timeoutMs);
    remotes.set(uri, r);
  }
  r.timeoutMs = timeoutMs;
  return r;
}

/** Forgets every cached JWKS (tests). */
export function resetJwksCache(): void {
  remotes.clear();
}

export class RemoteJwks {
  readonly uri: string;
  timeoutMs: number;
  /** Fetches performed (tests assert there is no amplification). */
  fetches = 0;
  #set: JWTVerifyGetKey | null = null;
  #fetchedAt = 0;
  #inflight: Promise<void> | null = null;
  #lastKidRefresh = -Infinity;
  #retryAt = 0;
  #backoff = 0;

  constructor(uri: string, timeoutMs: number) {
    this.uri = uri;
    this.timeoutMs = timeoutMs;
  }

  /** The `jose` key resolver: current keys, a refetch on an unknown `kid`. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const now = Date.now();
    if (this.#set === null) {
      if (now >= this.#retryAt) await this.#refresh();
    } else if (now - this.#fetchedAt > JWKS_SETTINGS.refreshMs) {
      void this.#refresh();
    }
    const set = this.#set;
    if (set === null) throw Object.assign(new Error('no JWKS available'), { code: 'ERR_JWKS_NO_MATCHING_KEY' });
    try {
      return await set(header, token);
    } catch (err) {
      const code = typeof err === 'object' && err !== null && 'code' in err ? (err as { code: unknown }).code : '';
      if (code !== 'ERR_JWKS_NO_MATCHING_KEY' || Date.now() - this.#lastKidRefresh < JWKS_SETTINGS.unknownKidCooldownMs) throw err;
      this.#lastKidRefresh = Date.now();
      await this.#refresh();
      return await (this.#set ?? set)(header, token);
    }
  };

  #refresh(): Promise<void> {
    this.#inflight ??= this.#fetchWithRetries().finally(() => {
      this.#inflight = null;
    });
    return this.#inflight;
  }

  async #fetchWithRetries(): Promise<void> {
    for (let attempt = 0; attempt < JWKS_SETTINGS.attempts; attempt++) {
      if (attempt > 0) await new Promise((r) => setTimeout(r, 200 * attempt));
      const set = await this.#fetchOnce();
      if (set !== null) {
        this.#set = (await loadJose()).createLocalJWKSet(set);
        this.#fetchedAt = Date.now();
        this.#backoff = 0;
        return;
      }
    }
    // Keep the last good keys; with none, wait before trying again (doubling, capped at 30 s).
    this.#backoff = Math.min(this.#backoff === 0 ? JWKS_SETTINGS.failureBackoffMs : this.#backoff * 2, 30_000);
    this.#retryAt = Date.now() + this.#backoff;
    if (this.#set !== null) this.#fetchedAt = Date.now() - JWKS_SETTINGS.refreshMs + this.#backoff;
  }

  async #fetchOnce(): Promise<JSONWebKeySet | null> {
    this.fetches++;
    try {
      const res = await fetch(this.uri, { signal: AbortSignal.timeout(this.timeoutMs), redirect: 'error', headers: { accept: 'application/json' } });
      if (res.status !== 200 || res.body === null) return null;
      const declared = Number(res.headers.get('content-length') ?? '0');
      if (declared > JWKS_SETTINGS.maxBytes) {
        await res.body.cancel();
        return null;
      }
      const chunks: Uint8Array[] = [];
      let size = 0;
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        size += chunk.length;
        if (size > JWKS_SETTINGS.maxBytes) return null;
        chunks.push(chunk);
      }
      const v: unknown = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      if (typeof v !== 'object' || v === null || !Array.isArray((v as { keys?: unknown }).keys)) return null;
      return v as JSONWebKeySet;
    } catch {
      return null;
    }
  }
}
