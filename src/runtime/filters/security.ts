/**
 * The edge security of a snapshot, compiled once (`compileSecurity`), and the three points where
 * the request path consults it:
 *
 *  1. `screenRequest`, before routing: the HTTP/1 head guard (h1-guard.ts) and path normalization
 *     (normalize.ts). The normalized path is what routing, authorization and the upstream see.
 *  2. `runRequestFilters`, after the virtual host is chosen and before the route: JWT
 *     authentication (jwt.ts), then authorization (rbac.ts, with the external authorization service
 *     of a matching CUSTOM policy: ext-authz.ts), in Envoy's filter order. Synchronous unless a
 *     token must be verified or an external authorization service asked.
 *  3. `admitRateLimit`, once the route is known: local rate limits (rate-limit.ts).
 *
 * With no policies, (2) and (3) are null and cost one comparison per request.
 */

import type { ForwardMode } from '../http/forward-headers.js';
import type { TLSSocket } from 'node:tls';
import type { IRSnapshot, SecurityConfig, UnderscoreHeadersAction } from '../../ir/types.js';
import type { ForwardClientCertDetails } from '../../ir/security.js';
import type { CompiledCluster, CompiledListener, CompiledRoute } from '../compile/types.js';
import { checkRequestHead, DROP_UNDERSCORES, dropUnderscoreHeaders } from '../http/h1-guard.js';
import { sendLocalError } from '../http/local-reply.js';
import { Errors, extAuthzDenied, jwtDenied, rateLimited, rbacDenied, type LocalError } from '../http/local-errors.js';
import { internalFailure } from '../http/internal-failure.js';
import { headerLines, type Downstream } from '../http/downstream.js';
import { compilePathNormalizer, normalizePath, type PathNormalizer } from '../http/normalize.js';
import { compileJwt, extractToken, verifyToken, type AuthHeaderEdits, type CompiledJwt } from './jwt.js';
import { checkExtAuthz, compileExtAuthz, type CompiledExtAuthz } from './ext-authz.js';
import { trustedClientAddress, XFCC_GATEWAY } from '../http/forward-headers.js';
import { compileProxyHeaders, type CompiledProxyHeaders } from '../http/proxy-headers.js';
import { authorize, compileAuthz, plainIp, type AuthzAttributes, type CompiledAuthz, type JwtIdentity } from './rbac.js';
import { isOverloaded } from './overload.js';
import { compileRateLimit, rateLimitKey, type CompiledRateLimit } from './rate-limit.js';

export interface CompiledSecurity {
  normalizer: PathNormalizer;
  underscores: UnderscoreHeadersAction;
  /** JWT and authorization; null when the snapshot has neither. */
  requestFilters: { jwt: CompiledJwt | null; authz: CompiledAuthz | null } | null;
  /** External authorization providers of CUSTOM policies, by name (empty when none). */
  extAuthz: Map<string, CompiledExtAuthz>;
  /** Rate limit of each limited route; null when no route is limited. */
  routeLimits: Map<CompiledRoute, CompiledRateLimit> | null;
  /** x-forwarded-client-cert handling (IR `forwardClientCertDetails`, default `SANITIZE_SET`). */
  xfcc: ForwardClientCertDetails;
  /** Parts of the XFCC element (http/forward-headers.ts `XFCC_*`): the gateway's (Subject, Cert, URI, DNS); a sidecar's inbound side sets its own (Istio: Subject, URI, DNS). */
  xfccDetails: number;
  /** ProxyConfig `proxyHeaders` (http/proxy-headers.ts); null = the defaults. */
  proxyHeaders: CompiledProxyHeaders | null;
  /** The peer address is appended to x-forwarded-for (the gateway); false on a sidecar's inbound side (Envoy `use_remote_address: false`). Absent = true. */
  appendXff?: boolean;
  /** IR `numTrustedProxies` (0 = the peer is the client). */
  trustedHops: number;
  /** Forwarding headers as a gateway or as a sidecar's outbound/inbound side (http/forward-headers.ts `ForwardMode`). Absent = gateway. */
  forwardMode?: ForwardMode;
}

/** `clusters`: the snapshot's compiled clusters (ext-authz providers call theirs). */
export function compileSecurity(s: SecurityConfig, clusters: ReadonlyMap<string, CompiledCluster> = new Map()): CompiledSecurity {
  const jwt = compileJwt(s.jwtRules);
  const authz = compileAuthz(s.authorizationPolicies);
  const extAuthz = new Map<string, CompiledExtAuthz>();
  for (const p of s.extAuthzProviders ?? []) extAuthz.set(p.name, compileExtAuthz(p, clusters));
  return {
    normalizer: compilePathNormalizer(s.pathNormalization, s.escapedSlashes),
    underscores: s.headersWithUnderscores,
    requestFilters: jwt === null && authz === null ? null : { jwt, authz },
    extAuthz,
    routeLimits: null,
    xfcc: s.forwardClientCertDetails ?? 'SANITIZE_SET',
    xfccDetails: XFCC_GATEWAY,
    proxyHeaders: compileProxyHeaders(s.proxyHeaders),
    trustedHops: s.numTrustedProxies ?? 0,
  };
}

/**
 * Attaches rate limits to the compiled routes of the objects they target. `listeners` are the
 * compiled listeners of `ir`, in the same order (compileSnapshot keeps IR order at every level).
 */
export function attachRateLimits(sec: CompiledSecurity, ir: IRSnapshot, listeners: readonly CompiledListener[]): void {
  if (ir.security.rateLimits.length === 0) return;
  const byTarget = new Map<string, CompiledRateLimit>();
  for (const l of ir.security.rateLimits) {
    const k = `${l.target.kind}/${l.target.namespace}/${l.target.name}`;
    if (!byTarget.has(k)) byTarget.set(k, compileRateLimit(l));
  }
  const limits = new Map<CompiledRoute, CompiledRateLimit>();
  ir.listeners.forEach((l, li) =>
    l.filterChains.forEach((fc, ci) =>
      fc.virtualHosts.forEach((vh, vi) =>
        vh.routes.forEach((r, ri) => {
          const limit = byTarget.get(`${r.source.kind}/${r.source.namespace}/${r.source.name}`);
          const compiled = listeners[li]?.chains[ci]?.virtualHosts[vi]?.routes[ri];
          if (limit !== undefined && compiled !== undefined) limits.set(compiled, limit);
        }),
      ),
    ),
  );
  sec.routeLimits = limits.size === 0 ? null : limits;
}

// ---- 1. before routing ---------------------------------------------------------------------------

/** The normalized path of the request, or the error to answer (and close the connection). */
export function screenRequest(sec: CompiledSecurity, d: Downstream, path: string): string | LocalError {
  if (d.connectionRejected) return Errors.badPath;
  if (isOverloaded()) return Errors.overloaded;
  const head = checkRequestHead(d, sec.underscores);
  if (head !== null) {
    if (head !== DROP_UNDERSCORES) return head;
    // Dropped before anything (policies, forwarding) reads the headers.
    d.rawHeaders = dropUnderscoreHeaders(d.rawHeaders);
  }
  const normalized = normalizePath(path, sec.normalizer);
  return normalized === null ? Errors.badPath : normalized;
}

// ---- 2. authentication and authorization ---------------------------------------------------------

/** The request as the filters see it (the Exchange implements it). */
export interface FilterRequest {
  readonly d: Downstream;
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly port: number;
  /** Downstream scheme (`http` or `https`). */
  readonly scheme: string;
  /** Raw query (after `?`), '' when none. */
  readonly query: string;
  queryParam(name: string): string | null;
  /** Upstream header edits decided by authentication; applied when the request is forwarded. */
  authEdits: AuthHeaderEdits | null;
  /** Claims of the verified token, for routes matching `@request.auth.claims.*`; set by authentication. */
  jwtClaims?: Record<string, unknown> | null;
}

/**
 * Runs JWT authentication and authorization. Calls `next` (synchronously when no token needs
 * verifying) when the request may proceed; otherwise answers 401 or 403 itself.
 */
export function runRequestFilters(sec: CompiledSecurity, x: FilterRequest, next: () => void): void {
  const f = sec.requestFilters!;
  if (f.jwt === null) return authorizeThen(sec, f.authz, x, null, next);
  const jwt = f.jwt;
  const found = extractToken(jwt, { headerLines: (n) => headerLines(x.d, n), queryParam: (n) => x.queryParam(n) });
  if (found === 'ambiguous') return sendLocalError(x.d, jwtDenied('Jwt is ambiguous (more than one token)'));
  if (found === null) {
    // No token: unauthenticated, but a client never sets the headers authentication writes.
    if (jwt.outputHeaders.length > 0) x.authEdits = { remove: jwt.outputHeaders, set: [] };
    return authorizeThen(sec, f.authz, x, null, next);
  }
  void verifyToken(jwt, found).then((r) => {
    if (x.d.destroyed || x.d.headersSent) return;
    if (!r.ok) return sendLocalError(x.d, jwtDenied(r.reason));
    x.authEdits = r.edits;
    x.jwtClaims = r.identity.claims;
    authorizeThen(sec, f.authz, x, r.identity, next);
  }).catch((err: unknown) => internalFailure(x.d, err, 'JWT authentication'));
}

function authorizeThen(sec: CompiledSecurity, authz: CompiledAuthz | null, x: FilterRequest, identity: JwtIdentity | null, next: () => void): void {
  if (authz === null) return next();
  const attrs = attributesOf(x, identity, sec.trustedHops);
  const d = authorize(authz, attrs);
  if (d.allowed) return next();
  if (d.custom === null) return sendLocalError(x.d, d.policy === null ? Errors.forbidden : rbacDenied(d.policy));
  // CUSTOM (Istio): the provider decides first; when it allows, DENY and ALLOW policies still apply.
  // A provider missing from the snapshot (translate reported it) fails closed.
  const provider = sec.extAuthz.get(d.custom);
  if (provider === undefined) return sendLocalError(x.d, rbacDenied(d.policy));
  void checkExtAuthz(provider, {
    method: x.method,
    target: x.query === '' ? x.path : `${x.path}?${x.query}`,
    authority: x.authority,
    scheme: x.scheme,
    rawHeaders: x.d.rawHeaders,
    remoteAddress: attrs.remoteIp,
  }).then((r) => {
    if (x.d.destroyed || x.d.headersSent) return;
    if (!r.allowed) return sendLocalError(x.d, extAuthzDenied(r.status, r.headers, r.body));
    const again = authorize(authz, attrs, true);
    if (!again.allowed) return sendLocalError(x.d, again.policy === null ? Errors.forbidden : rbacDenied(again.policy));
    if (r.upstreamHeaders.length > 0) {
      const prev = x.authEdits;
      x.authEdits = { remove: prev?.remove ?? [], set: [...(prev?.set.filter((s) => !r.upstreamHeaders.some((u) => u[0] === s[0])) ?? []), ...r.upstreamHeaders] };
    }
    next();
  }).catch((err: unknown) => internalFailure(x.d, err, 'external authorization'));
}

function attributesOf(x: FilterRequest, identity: JwtIdentity | null, trustedHops: number): AuthzAttributes {
  const ds = x.d;
  const tls = ds.tls;
  const peer = plainIp(ds.remoteAddress);
  return {
    method: x.method,
    path: x.path,
    authority: x.authority,
    port: x.port,
    remoteIp: trustedHops === 0 ? peer : trustedClientAddress(headerLines(ds, 'x-forwarded-for'), trustedHops, peer),
    sourceIp: peer,
    localIp: plainIp(ds.localAddress),
    sni: tls !== null && typeof tls.servername === 'string' ? tls.servername : '',
    headerLines: (n) => headerLines(ds, n),
    identity,
    peerPrincipal: tls === null ? null : peerPrincipalOf(tls),
  };
}

/**
 * The SPIFFE identity of a verified client certificate, without `spiffe://` (Istio `principals`:
 * `cluster.local/ns/x/sa/y`); null without mutual TLS or without a SPIFFE URI SAN.
 */
function peerPrincipalOf(socket: TLSSocket): string | null {
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return null;
  const san = socket.getPeerCertificate().subjectaltname ?? '';
  for (const part of san.split(', ')) if (part.startsWith('URI:spiffe://')) return part.slice('URI:spiffe://'.length);
  return null;
}

/** Applies authentication's edits to the upstream request headers (flat `[name, value, ...]`). */
export function applyAuthEdits(headers: string[], e: AuthHeaderEdits): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i].toLowerCase();
    if (e.remove.includes(n) || e.set.some((s) => s[0] === n)) continue;
    out.push(headers[i], headers[i + 1]);
  }
  for (const [n, v] of e.set) out.push(n, v);
  return out;
}

// ---- 3. rate limits --------------------------------------------------------------------------------

/** True when the request may go on; otherwise it has been answered 429. */
export function admitRateLimit(sec: CompiledSecurity, route: CompiledRoute, x: FilterRequest): boolean {
  const limit = sec.routeLimits!.get(route);
  if (limit === undefined) return true;
  const peer = plainIp(x.d.remoteAddress);
  // The client address as authorization's remote.ip (Envoy's rate-limit `remote_address`).
  const client = sec.trustedHops === 0 ? peer : trustedClientAddress(headerLines(x.d, 'x-forwarded-for'), sec.trustedHops, peer);
  const key = rateLimitKey(limit, route.name, client, (n) => {
    const lines = headerLines(x.d, n);
    return lines.length === 0 ? null : lines.join(',');
  });
  const wait = limit.take(key, Date.now());
  if (wait < 0) return true;
  sendLocalError(x.d, rateLimited(limit.maxTokens, wait));
  return false;
}
