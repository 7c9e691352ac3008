/**
 * Per-route request filters (IR `Route.filters`, ir/route-filters.ts), with ingress-nginx's
 * semantics: body size (413), per-client concurrency and request-rate limits (503 by default, nginx
 * `limit_conn` / `limit_req ... burst nodelay`), source-address deny/allow (403) and HTTP Basic
 * authentication (401 with `WWW-Authenticate`, 503 when the credentials are unavailable). Run once a
 * forwarding route is chosen, in nginx's phase order.
 *
 * Limit counters are per process and survive snapshot swaps while a zone's settings are unchanged;
 * keyed state is bounded (least recently used clients are forgotten first).
 */

import { createHash, createHmac, randomBytes, timingSafeEqual, X509Certificate } from 'node:crypto';
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import type { BasicAuth, ClientCertificatePolicy, RequestLimit, RouteFilters } from '../../ir/types.js';
import { bcryptCrypt, isCryptHash, shaCrypt } from './password-hashes.js';
import { compileRegex } from '../compile/string-match.js';
import { addLocalReplyHeaders, sendLocalError, sendRedirect, type LocalError, type ResponseFlag } from '../http/local-reply.js';
import { onDownstreamClose, plainAddress, type Downstream } from '../http/downstream.js';
import type { CompiledCluster } from '../compile/types.js';
import { compileExternalAuth, runExternalAuth, type CompiledExternalAuth, type ExternalAuthInput } from './external-auth.js';
import { compileErrorPages, interceptErrors, type CompiledErrorPages } from './error-pages.js';
import { rewriteLocations } from './location-rewrite.js';
import { clientCertificateVerdict } from '../listeners/client-cert.js';
import type { TLSSocket } from 'node:tls';

/** Keyed entries kept per zone. */
const MAX_KEYS = 10_000;

export interface CompiledRouteFilters {
  maxBody: number | null;
  limit: ZoneState | null;
  deny: BlockList | null;
  allow: BlockList | null;
  auth: CompiledBasicAuth | null;
  /** nginx realip: the client address from a header when the peer is trusted; null = the peer. */
  realIp: { header: string; trusted: BlockList } | null;
  /** auth-url; null = none. */
  external: CompiledExternalAuth | null;
  /** proxy-redirect-from/-to; null = none. */
  locationRewrite: { from: string; to: string } | null;
  /** custom-http-errors; null = none. */
  errorPages: CompiledErrorPages | null;
  /** auth-tls-*; null = none. */
  clientCert: { policy: ClientCertificatePolicy; subject: RegExp | null } | null;
  /** compute-full-forwarded-for "false": x-forwarded-for is the client address alone. */
  replaceForwardedFor: boolean;
  /** IR `nginxProxyHeaders`; null = none. */
  nginxProxyHeaders: { trustForwarded: boolean; host: boolean } | null;
}

/** What the filters need from the request (the Exchange). */
export interface RouteFilterInput extends ExternalAuthInput {
  readonly method: string;
  requestBody: Readable | null;
  header(name: string): string | null;
}

function reply(status: number, flag: string, code: string, body: string): LocalError {
  // Flags outside Envoy's upstream set (RL, UAEX-like) are carried as written.
  return { status, flag: flag as ResponseFlag, code, body: Buffer.from(body) };
}

const Replies = {
  tooLarge: reply(413, 'DPE', 'MG_ERR_BODY_TOO_LARGE', 'request entity too large'),
  forbidden: reply(403, 'RBAC', 'MG_ERR_SOURCE_DENIED', 'access denied'),
  unauthorized: reply(401, 'UAEX', 'MG_ERR_UNAUTHORIZED', 'authorization required'),
  authUnavailable: reply(503, 'UAEX', 'MG_ERR_AUTH_UNAVAILABLE', 'authentication is not available'),
  noCertificate: reply(400, 'UAEX', 'MG_ERR_NO_CLIENT_CERTIFICATE', 'No required SSL certificate was sent'),
  /** nginx's answer to its internal 495 (a presented certificate failed verification). */
  certificateError: reply(400, 'UAEX', 'MG_ERR_CLIENT_CERTIFICATE_ERROR', 'The SSL certificate error'),
  subjectDenied: reply(403, 'RBAC', 'MG_ERR_CLIENT_CERTIFICATE_DENIED', 'client certificate subject not allowed'),
};

const CERT_HEADERS = ['ssl-client-verify', 'ssl-client-subject-dn', 'ssl-client-issuer-dn', 'ssl-client-cert'];

/** RFC 2253 form of Node's `CN=a\nO=b` distinguished names (most specific first). */
function rfc2253(dn: string | undefined): string {
  return dn === undefined ? '' : dn.split('\n').reverse().join(',');
}

/**
 * auth-tls-*: a presented certificate was verified by the handshake (OPTIONAL client validation of
 * the host's chain); here a missing one is refused when required, the subject checked, and the
 * ssl-client-* headers set upstream (client-sent copies always removed).
 */
function admitClientCertificate(c: { policy: ClientCertificatePolicy; subject: RegExp | null }, x: RouteFilterInput): boolean {
  const sock = x.d.tls;
  let peer: ReturnType<TLSSocket['getPeerCertificate']> | null = null;
  let failure: string | null = null;
  if (c.policy.caSecret !== undefined) {
    // The verdict of the host's own client-TLS chain (nginx $ssl_client_verify); a connection made
    // through another chain (another SNI, other CAs) counts as without certificate.
    const v = sock === null ? null : clientCertificateVerdict(sock);
    if (v !== null && v.caSecret === c.policy.caSecret && v.status !== 'NONE') {
      peer = sock!.getPeerCertificate();
      if (v.status === 'FAILED') failure = v.reason;
    }
  } else if (sock !== null && sock.authorized === true) {
    // Only a certificate the handshake verified counts (another chain on the port may not ask for one).
    peer = sock.getPeerCertificate();
  }
  if (peer !== null && peer.raw === undefined) peer = null;
  if (failure !== null && c.policy.acceptUnverified !== true) {
    // nginx 495 -> 400 "The SSL certificate error", or auth-tls-error-page.
    if (c.policy.errorPage !== null) sendRedirect(x.d, 302, c.policy.errorPage);
    else sendLocalError(x.d, Replies.certificateError);
    return false;
  }
  const has = peer !== null;
  if (!has && c.policy.required) {
    if (c.policy.errorPage !== null) {
      sendRedirect(x.d, 302, c.policy.errorPage);
    } else {
      sendLocalError(x.d, Replies.noCertificate);
    }
    return false;
  }
  const set: [string, string][] = [];
  if (has) {
    const x509 = new X509Certificate(peer!.raw);
    const subject = rfc2253(x509.subject);
    if (c.subject !== null && !c.subject.test(subject)) {
      sendLocalError(x.d, Replies.subjectDenied);
      return false;
    }
    set.push(['ssl-client-verify', failure === null ? 'SUCCESS' : `FAILED:${failure}`], ['ssl-client-subject-dn', subject], ['ssl-client-issuer-dn', rfc2253(x509.issuer)]);
    if (c.policy.passCertificate) set.push(['ssl-client-cert', encodeURIComponent(x509.toString())]);
  } else {
    set.push(['ssl-client-verify', 'NONE']);
  }
  const remove = CERT_HEADERS.filter((h) => !set.some(([n]) => n === h));
  x.authEdits = x.authEdits === null ? { set, remove } : { set: [...x.authEdits.set, ...set], remove: [...x.authEdits.remove, ...remove] };
  return true;
}
const limited = new Map<number, LocalError>();
function limitedReply(status: number): LocalError {
  let r = limited.get(status);
  if (r === undefined) limited.set(status, (r = reply(status, 'RL', 'MG_ERR_RATE_LIMITED', 'rate limited')));
  return r;
}

export function compileRouteFilters(f: RouteFilters, clusters: ReadonlyMap<string, CompiledCluster>): CompiledRouteFilters {
  return {
    maxBody: f.maxRequestBodyBytes,
    limit: f.requestLimit === null ? null : zoneFor(f.requestLimit),
    deny: f.sourceRanges === null || f.sourceRanges.deny.length === 0 ? null : blockList(f.sourceRanges.deny),
    allow: f.sourceRanges === null || f.sourceRanges.allow.length === 0 ? null : blockList(f.sourceRanges.allow),
    auth: f.basicAuth === null ? null : compileBasicAuth(f.basicAuth),
    realIp: f.clientAddress === undefined ? null : { header: f.clientAddress.header, trusted: blockList(f.clientAddress.trusted) },
    external: f.externalAuth === undefined ? null : compileExternalAuth(f.externalAuth, clusters),
    errorPages: f.errorPages === undefined ? null : compileErrorPages(f.errorPages, clusters),
    locationRewrite: f.locationRewrite ?? null,
    clientCert: f.clientCertificate === undefined ? null : { policy: f.clientCertificate, subject: f.clientCertificate.subjectPattern === null ? null : compileRegex(f.clientCertificate.subjectPattern) },
    replaceForwardedFor: f.forwardedFor === 'replace',
    nginxProxyHeaders: f.nginxProxyHeaders ?? null,
  };
}

/**
 * Runs the filters; true when the request goes on now, false when it was answered here or waits for
 * the external auth service (then `next` is called if it allows). May set `x.requestBody` (a chunked
 * body counted against the size limit).
 */
export function admitRouteFilters(c: CompiledRouteFilters, x: RouteFilterInput, next: () => void, listenerPort = 0): boolean {
  const d = x.d;
  // First, so the filters' own answers (401, 403, 413, 503) get error pages too, as nginx's error_page.
  if (c.errorPages !== null) interceptErrors(c.errorPages, x);
  if (c.locationRewrite !== null) rewriteLocations(d, c.locationRewrite.from, c.locationRewrite.to);
  if (c.clientCert !== null && !admitClientCertificate(c.clientCert, x)) return false;
  if (c.maxBody !== null) {
    const cl = x.header('content-length');
    if (cl !== null) {
      if (Number(cl) > c.maxBody) {
        sendTooLarge(d);
        return false;
      }
    } else if (x.header('transfer-encoding') !== null || (d.http2 && d.hasBody)) {
      x.requestBody = (x.requestBody ?? d.body).pipe(new BodyLimit(c.maxBody, d));
    }
  }
  let ip = plainAddress(d.remoteAddress);
  if (c.realIp !== null) ip = realClientIp(ip, x.header(c.realIp.header), c.realIp.trusted);
  if (c.replaceForwardedFor) {
    // ingress-nginx: proxy_set_header X-Forwarded-For $remote_addr; X-Original-Forwarded-For $http_x_forwarded_for.
    const original = x.header('x-forwarded-for');
    const set: [string, string][] = original === null ? [['x-forwarded-for', ip]] : [['x-forwarded-for', ip], ['x-original-forwarded-for', original]];
    const remove = original === null ? ['x-original-forwarded-for'] : [];
    x.authEdits = x.authEdits === null ? { set, remove } : { set: [...x.authEdits.set, ...set], remove: [...x.authEdits.remove, ...remove] };
  }
  if (c.nginxProxyHeaders !== null) nginxProxyHeaders(c.nginxProxyHeaders, x, ip, listenerPort);
  if (c.limit !== null && !admitLimit(c.limit, ip, d)) return false;
  if ((c.deny !== null && inBlocks(c.deny, ip)) || (c.allow !== null && !inBlocks(c.allow, ip))) {
    sendLocalError(d, Replies.forbidden);
    return false;
  }
  if (c.auth !== null) {
    if (c.auth.unavailable) {
      sendLocalError(d, Replies.authUnavailable);
      return false;
    }
    if (c.auth.digest ? !checkDigest(c.auth, x.method, x.query === '' ? x.path : `${x.path}?${x.query}`, x.header('authorization')) : !checkBasic(c.auth, x.header('authorization'))) {
      addLocalReplyHeaders(d, ['www-authenticate', c.auth.digest ? digestChallenge(c.auth) : c.auth.challenge]);
      sendLocalError(d, Replies.unauthorized);
      return false;
    }
  }
  if (c.external !== null) {
    runExternalAuth(c.external, x, ip, next);
    return false;
  }
  return true;
}

/**
 * ingress-nginx's `proxy_set_header` list (nginx.tmpl; lua_ingress.lua `pass_access_scheme`,
 * `pass_port`, `best_http_host`), as edits of the upstream request: they replace what the client
 * sent under those names.
 */
function nginxProxyHeaders(h: { trustForwarded: boolean; host: boolean }, x: RouteFilterInput, ip: string, listenerPort: number): void {
  const forwardedHost = x.header('x-forwarded-host');
  const proto = h.trustForwarded ? x.header('x-forwarded-proto') : null;
  const scheme = proto !== null && proto !== '' ? proto : x.scheme;
  const fport = h.trustForwarded ? x.header('x-forwarded-port') : null;
  const port = fport !== null && fport !== '' ? fport : String(listenerPort);
  const fhost = h.trustForwarded && forwardedHost !== null ? forwardedHost.split(',')[0] : '';
  const best = fhost !== '' ? fhost : x.authority;
  const set: [string, string][] = [
    ['x-real-ip', ip],
    ['x-forwarded-host', best],
    ['x-forwarded-port', port],
    ['x-forwarded-proto', scheme],
    ['x-forwarded-scheme', scheme],
    ['x-scheme', scheme],
  ];
  const remove = ['proxy'];
  if (forwardedHost !== null && forwardedHost !== '') set.push(['x-original-forwarded-host', forwardedHost]);
  else remove.push('x-original-forwarded-host');
  if (h.host && fhost !== '') set.push(['host', fhost]);
  x.authEdits = x.authEdits === null ? { set, remove } : { set: [...x.authEdits.set.filter((s) => !set.some((n) => n[0] === s[0])), ...set], remove: [...x.authEdits.remove, ...remove] };
}

/** Most time a refused upload is read and discarded after the 413 before the connection is closed. */
const LINGER_MS = 5000;

/**
 * 413 without closing at once: the server reads and discards the rest of the upload (so the client,
 * still sending, gets to read the answer instead of a reset), for at most LINGER_MS (nginx's
 * lingering close).
 */
function sendTooLarge(d: Downstream): void {
  sendLocalError(d, Replies.tooLarge);
  // HTTP/2: the stream is reset by the engine once answered; only HTTP/1.1 connections linger.
  if (d.http2) return;
  const body = d.body;
  if (body.readableEnded || body.destroyed) return;
  body.resume();
  const t = setTimeout(() => d.reset(), LINGER_MS);
  t.unref();
  const clear = (): void => clearTimeout(t);
  body.once('end', clear);
  body.once('close', clear);
}

/**
 * Counts a streamed body. Past the limit nothing more goes upstream (the body is never ended, so the
 * backend cannot take the truncated upload for a whole one) and 413 is answered on a kept-alive
 * connection: the server then reads and discards the rest of the upload, so the client sees the 413
 * instead of a reset while it is still sending (nginx's lingering close); the answer's end aborts the
 * upstream request. If the backend already answered, its answer stands and the upload is cut.
 */
class BodyLimit extends Transform {
  #seen = 0;
  #over = false;
  constructor(readonly limit: number, readonly d: Downstream) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.#over) return cb();
    this.#seen += chunk.length;
    if (this.#seen > this.limit) {
      this.#over = true;
      // The rest of the upload is read and discarded here, whatever happens to the upstream side.
      const body = this.d.body;
      body.unpipe(this);
      body.resume();
      if (!this.d.headersSent) sendTooLarge(this.d);
      else this.d.reset();
      return cb();
    }
    cb(null, chunk);
  }
  override _flush(cb: TransformCallback): void {
    // Past the limit the upstream body is never completed.
    if (!this.#over) cb();
  }
}

// --- per-client limits (nginx limit_conn, limit_req with burst and nodelay) ---

interface ZoneState {
  settings: RequestLimit;
  exempt: BlockList | null;
  reply: LocalError;
  /** Answer of a request over `maxConcurrent`. */
  connReply: LocalError;
  /** `rate` then `moreRates`, each with its per-client state: nginx's `excess` in thousandths of a request, and when it was last updated (ms). */
  rates: { requests: number; periodMs: number; burst: number; clients: Map<string, { excess: number; at: number }> }[];
  inFlight: Map<string, number>;
}

const zones = new Map<string, ZoneState>();

function zoneFor(l: RequestLimit): ZoneState {
  const id = JSON.stringify(l);
  let z = zones.get(id);
  if (z === undefined) {
    const rates = [...(l.rate === null ? [] : [l.rate]), ...(l.moreRates ?? [])].map((r) => ({ ...r, clients: new Map<string, { excess: number; at: number }>() }));
    z = { settings: l, exempt: l.exempt.length === 0 ? null : blockList(l.exempt), reply: limitedReply(l.status), connReply: limitedReply(l.concurrencyStatus ?? l.status), rates, inFlight: new Map() };
    zones.set(id, z);
    if (zones.size > 1000) zones.delete(zones.keys().next().value as string);
  }
  return z;
}

function admitLimit(z: ZoneState, ip: string, d: Downstream): boolean {
  if (z.exempt !== null && inBlocks(z.exempt, ip)) return true;
  const s = z.settings;
  // nginx applies limit_conn before limit_req (preaccess phase order in the template).
  if (s.maxConcurrent !== null) {
    const n = z.inFlight.get(ip) ?? 0;
    if (n >= s.maxConcurrent) {
      sendLocalError(d, z.connReply);
      return false;
    }
  }
  if (z.rates.length > 0) {
    // nginx limit_req: every zone is looked up first; the request is counted in all only when all have room.
    const now = Date.now();
    let next: number[] | null = null;
    for (let i = 0; i < z.rates.length; i++) {
      const r = z.rates[i];
      const perMs = (r.requests * 1000) / r.periodMs; // thousandths of a request drained per ms
      const st = r.clients.get(ip);
      const excess = st === undefined ? 0 : Math.max(0, st.excess - perMs * Math.max(0, now - st.at)) + 1000;
      if (excess > r.burst * 1000) {
        sendLocalError(d, z.reply);
        return false;
      }
      (next ??= []).push(excess);
    }
    for (let i = 0; i < z.rates.length; i++) {
      const clients = z.rates[i].clients;
      // Re-inserted so the Map's order is least recently used first (the oldest is evicted).
      clients.delete(ip);
      clients.set(ip, { excess: next![i], at: now });
      if (clients.size > MAX_KEYS) clients.delete(clients.keys().next().value as string);
    }
  }
  if (s.maxConcurrent !== null) {
    z.inFlight.set(ip, (z.inFlight.get(ip) ?? 0) + 1);
    onDownstreamClose(d, () => {
      const n = (z.inFlight.get(ip) ?? 1) - 1;
      if (n <= 0) z.inFlight.delete(ip);
      else z.inFlight.set(ip, n);
    });
  }
  return true;
}

// --- source addresses ---

function blockList(values: string[]): BlockList {
  const list = new BlockList();
  for (const v of values) {
    const slash = v.indexOf('/');
    const addr = slash === -1 ? v : v.slice(0, slash);
    const type = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : null;
    if (type === null) continue;
    if (slash === -1) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(v.slice(slash + 1)), type);
  }
  return list;
}

function inBlocks(list: BlockList, ip: string): boolean {
  if (isIPv4(ip)) return list.check(ip, 'ipv4');
  if (isIPv6(ip)) return list.check(ip, 'ipv6');
  return false;
}

/** nginx `real_ip_recursive on`: from the right, the first address not trusted (the leftmost when all are). */
export function realClientIp(peer: string, header: string | null, trusted: BlockList): string {
  if (header === null || !inBlocks(trusted, peer)) return peer;
  const list = header.split(',').map((s) => plainIp(s.trim())).filter((s) => isIPv4(s) || isIPv6(s));
  if (list.length === 0) return peer;
  for (let i = list.length - 1; i >= 0; i--) if (!inBlocks(trusted, list[i])) return list[i];
  return list[0];
}

function plainIp(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

// --- Basic authentication ---

interface CompiledBasicAuth {
  digest: boolean;
  realm: string;
  challenge: string;
  unavailable: boolean;
  users: Map<string, string>;
  /** Authorization values already verified (bounded): MD5-crypt costs 1000 rounds. */
  verified: Set<string>;
}

function compileBasicAuth(a: BasicAuth): CompiledBasicAuth {
  const users = new Map<string, string>();
  for (const u of a.users) if (!users.has(u.name)) users.set(u.name, u.hash);
  return { digest: a.scheme === 'digest', realm: a.realm, challenge: `Basic realm="${a.realm}"`, unavailable: a.unavailable, users, verified: new Set() };
}

function checkBasic(a: CompiledBasicAuth, header: string | null): boolean {
  if (header === null || header.length < 7 || header.slice(0, 6).toLowerCase() !== 'basic ') return false;
  if (a.verified.has(header)) return true;
  const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return false;
  const hash = a.users.get(decoded.slice(0, colon));
  if (hash === undefined || !verifyPassword(decoded.slice(colon + 1), hash)) return false;
  if (a.verified.size >= 1000) a.verified.delete(a.verified.values().next().value as string);
  a.verified.add(header);
  return true;
}

// --- Digest authentication (RFC 7616, MD5, qop=auth) ---

/** Per-process key of the stateless nonces. */
const NONCE_KEY = randomBytes(32);
const NONCE_TTL_MS = 5 * 60_000;

function makeNonce(now: number): string {
  const t = now.toString(16);
  return `${t}.${createHmac('sha256', NONCE_KEY).update(t).digest('base64url').slice(0, 22)}`;
}

function nonceValid(nonce: string, now: number): boolean {
  const dot = nonce.indexOf('.');
  if (dot <= 0) return false;
  const t = nonce.slice(0, dot);
  const at = parseInt(t, 16);
  if (!Number.isFinite(at) || now - at > NONCE_TTL_MS || at - now > 1000) return false;
  const want = Buffer.from(makeNonce(at));
  const got = Buffer.from(nonce);
  return want.length === got.length && timingSafeEqual(want, got);
}

function digestChallenge(a: CompiledBasicAuth): string {
  return `Digest algorithm="MD5", qop="auth", realm="${a.realm}", nonce="${makeNonce(Date.now())}"`;
}

/** `k=v, k="v"` parameters of a Digest Authorization header. */
function digestParams(header: string): Map<string, string> {
  const out = new Map<string, string>();
  const re = /([a-zA-Z]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(header)) !== null) out.set(m[1].toLowerCase(), m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]);
  return out;
}

const md5hex = (s: string) => createHash('md5').update(s).digest('hex');

export function checkDigest(a: CompiledBasicAuth, method: string, requestUri: string, header: string | null): boolean {
  if (header === null || header.slice(0, 7).toLowerCase() !== 'digest ') return false;
  const p = digestParams(header.slice(7));
  const user = p.get('username');
  const nonce = p.get('nonce');
  const uri = p.get('uri');
  const response = p.get('response');
  if (user === undefined || nonce === undefined || uri === undefined || response === undefined) return false;
  // The digest covers the URI it names: it must be this request's (RFC 7616 §3.4.6).
  if (p.get('realm') !== a.realm || uri !== requestUri || !nonceValid(nonce, Date.now())) return false;
  const ha1 = a.users.get(user);
  if (ha1 === undefined) return false;
  const ha2 = md5hex(`${method}:${uri}`);
  const qop = p.get('qop');
  const want = qop === 'auth' ? md5hex(`${ha1}:${nonce}:${p.get('nc') ?? ''}:${p.get('cnonce') ?? ''}:auth:${ha2}`) : qop === undefined ? md5hex(`${ha1}:${nonce}:${ha2}`) : '';
  const w = Buffer.from(want);
  const g = Buffer.from(response.toLowerCase());
  return want !== '' && w.length === g.length && timingSafeEqual(w, g);
}

/** Successful checks of the slow hashes (bcrypt, SHA-crypt), by SHA-256 of hash and password: a client sending the same credentials again is not hashed again. */
const verifiedSlow = new Map<string, true>();
const MAX_VERIFIED_SLOW = 1000;

/**
 * htpasswd hashes: `$apr1$`/`$1$` MD5-crypt, `{SHA}`, `{PLAIN}`, and what nginx accepts through
 * crypt(3): `$5$`/`$6$` SHA-crypt and `$2a$`/`$2b$`/`$2y$` bcrypt (password-hashes.ts). Anything
 * else never matches.
 */
export function verifyPassword(password: string, hash: string): boolean {
  let expected: string;
  if (isCryptHash(hash)) {
    const id = createHash('sha256').update(hash).update('\u0000').update(password).digest('base64');
    if (verifiedSlow.has(id)) return true;
    const computed = hash.startsWith('$2') ? bcryptCrypt(password, hash) : shaCrypt(password, hash);
    if (computed === null) return false;
    const a = Buffer.from(computed);
    const b = Buffer.from(hash);
    const ok = a.length === b.length && timingSafeEqual(a, b);
    if (ok) {
      verifiedSlow.set(id, true);
      if (verifiedSlow.size > MAX_VERIFIED_SLOW) verifiedSlow.delete(verifiedSlow.keys().next().value as string);
    }
    return ok;
  }
  if (hash.startsWith('{PLAIN}')) expected = `{PLAIN}${password}`;
  else if (hash.startsWith('{SHA}')) expected = `{SHA}${createHash('sha1').update(password).digest('base64')}`;
  else if (hash.startsWith('$apr1$') || hash.startsWith('$1$')) {
    const magic = hash.startsWith('$apr1$') ? '$apr1$' : '$1$';
    const salt = hash.slice(magic.length).split('$')[0];
    expected = md5Crypt(password, salt, magic);
  } else return false;
  const a = Buffer.from(expected);
  const b = Buffer.from(hash);
  return a.length === b.length && timingSafeEqual(a, b);
}

const ITOA64 = './0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz';

/** MD5-crypt (Poul-Henning Kamp's algorithm; `$apr1$` is Apache's variant with another magic). */
export function md5Crypt(password: string, rawSalt: string, magic: string): string {
  const pw = Buffer.from(password, 'utf8');
  const salt = Buffer.from(rawSalt.slice(0, 8), 'utf8');
  const md5 = () => createHash('md5');
  const alt = md5().update(pw).update(salt).update(pw).digest();
  const ctx = md5().update(pw).update(magic).update(salt);
  for (let pl = pw.length; pl > 0; pl -= 16) ctx.update(alt.subarray(0, Math.min(pl, 16)));
  for (let i = pw.length; i > 0; i >>= 1) ctx.update(i & 1 ? Buffer.from([0]) : pw.subarray(0, 1));
  let fin = ctx.digest();
  for (let i = 0; i < 1000; i++) {
    const c = md5();
    c.update(i & 1 ? pw : fin);
    if (i % 3) c.update(salt);
    if (i % 7) c.update(pw);
    c.update(i & 1 ? fin : pw);
    fin = c.digest();
  }
  let out = '';
  const to64 = (v: number, n: number) => {
    for (let k = 0; k < n; k++) {
      out += ITOA64[v & 0x3f];
      v >>= 6;
    }
  };
  to64((fin[0] << 16) | (fin[6] << 8) | fin[12], 4);
  to64((fin[1] << 16) | (fin[7] << 8) | fin[13], 4);
  to64((fin[2] << 16) | (fin[8] << 8) | fin[14], 4);
  to64((fin[3] << 16) | (fin[9] << 8) | fin[15], 4);
  to64((fin[4] << 16) | (fin[10] << 8) | fin[5], 4);
  to64(fin[11], 2);
  return `${magic}${salt.toString('utf8')}$${out}`;
}
