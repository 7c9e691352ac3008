/**
 * The request path: listener -> filter chain -> virtual host -> https redirect -> first matching
 * route -> action (forward, redirect, direct).
 *
 * The compiled listener is captured once by the caller at the start of the request; everything
 * below reads only that snapshot, so a swap never changes a request half way.
 */

import { applyHeaderOps } from '../compile/header-ops.js';
import { findRoute, normalizeHost, pickDestination, selectFilterChain, selectVirtualHost } from '../compile/lookup.js';
import type { HttpsRedirect } from '../../ir/types.js';
import type { CompiledForward, CompiledListener, CompiledMatch, CompiledRedirect, CompiledVirtualHost } from '../compile/types.js';
import { selectEndpoint } from '../upstream/load-balancer.js';
import { injectFault, startUpstreamPolicies } from '../upstream/forward-policies.js';
import { handleCors } from '../filters/cors.js';
import { admitRouteFilters } from '../filters/route-filters.js';
import { Exchange } from './exchange.js';
import { admitRateLimit, applyAuthEdits, runRequestFilters, screenRequest } from '../filters/security.js';
import type { RequestRecord } from '../../observability/record.js';
import { plainAddress, type Downstream } from './downstream.js';
import { effectiveGrpcTimeout, isGrpcRequest } from './grpc.js';
import { Base64Decoder, grpcWebMode, grpcWebRequestHeaders } from './grpc-web.js';
import { forwardUpgrade } from './websocket.js';
import { buildUpstreamRequestHeaders, settleForwardClientCert } from './forward-headers.js';
import { Errors, sendDirect, sendLocalError, sendRedirect } from './local-reply.js';
import { observeForward, type RequestObserver } from '../../observability/observer.js';
import { takePeerMetadata, type LocalPeerMetadata } from '../sidecar/peer-metadata.js';

/** What the request path needs from the runtime besides the snapshot. */
export interface RequestEnv {
  /** Uniform random numbers in [0, 1) for weights and load balancing. */
  random: () => number;
  /** Metrics, access log and tracing; null when all are off (then nothing per request). */
  observer: RequestObserver | null;
  /**
   * A sidecar's Istio metadata-exchange headers (runtime/sidecar/peer-metadata.ts), swapped with
   * each view: added to outbound requests over Istio mTLS and to inbound answers to peers that sent
   * theirs. The gateway as a mesh client has its own (`gatewayPeerMetadata`): added to its requests
   * over Istio mTLS, as Istio's gateways do. Absent or null: none.
   */
  peerMetadata?: LocalPeerMetadata | null;
}

/** Most request headers accepted; more is 431 (Envoy `max_headers_count` default 100). */
export const MAX_REQUEST_HEADERS = 100;

export function handleRequest(env: RequestEnv, listener: CompiledListener, d: Downstream): void {
  // ProxyConfig proxyHeaders (proxy-headers.ts): every answer to this request follows them, local ones included.
  if (listener.security.proxyHeaders !== null) d.proxyHeaders = listener.security.proxyHeaders;
  const raw = d.rawHeaders;
  const rec = env.observer === null ? null : env.observer.begin(listener, d);
  const h2 = d.http2;
  // Engines keep at most MAX + 1 headers (node:http's `maxHeadersCount`): more than MAX means too many.
  // (HTTP/2: the engine's maxHeaderListPairs already refused the stream.)
  if (!h2 && raw.length > MAX_REQUEST_HEADERS * 2) return sendLocalError(d, Errors.tooManyHeaders, true);

  // Node accepts two Host headers; RFC 9112 §3.2 says 400.
  let host: string | null = null;
  let xfcc = false;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n.length === 4 && (n === 'host' || n === 'Host' || n.toLowerCase() === 'host')) {
      if (host !== null) return sendLocalError(d, Errors.badRequest, true);
      host = raw[i + 1];
    } else if (n.length === 23 && n.toLowerCase() === 'x-forwarded-client-cert') xfcc = true;
  }
  // XFCC is settled before anything reads the request (Envoy: in the connection manager).
  settleForwardClientCert(d, listener.security.xfcc, xfcc, listener.security.xfccDetails);
  if (h2) {
    // `:authority` when present (RFC 9113 §8.3.1: it wins over Host).
    const a = d.header(':authority');
    if (a !== null && a !== '') host = a;
  }
  // RFC 9112 §3.2: an HTTP/1.1 request without Host is answered 400 (HTTP/1.0 may omit it).
  else if ((host === null || host === '') && d.versionMinor === 1 && d.versionMajor === 1) return sendLocalError(d, Errors.badRequest, true);

  // Request target: origin-form `/p?q` or absolute-form `http://a/p?q` (its authority wins over
  // Host, RFC 9112 §3.2.2). The asterisk-form (`OPTIONS *`) is not proxied: 400, as nginx does. A
  // fragment is never valid in a request target (hardening P-02).
  const url = d.target;
  let target = url;
  let authority = host ?? '';
  if (url.charCodeAt(0) !== 47 /* / */) {
    const abs = parseAbsoluteForm(url);
    if (abs === null) return sendLocalError(d, Errors.badRequest, true);
    authority = abs.authority;
    target = abs.target;
  }
  if (target.includes('#')) return sendLocalError(d, Errors.badRequest, true);
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  // Edge hardening (filters/security.ts): what Node's parser lets through is refused here, and the
  // path is normalized once; routing, authorization and the upstream all see the normalized path.
  const screened = screenRequest(listener.security, d, rawPath);
  if (typeof screened !== 'string') return sendLocalError(d, screened, true);
  const path = screened;
  if (path !== rawPath) target = query === '' ? path : `${path}?${query}`;

  const chain =
    listener.protocol === 'HTTPS'
      ? selectFilterChain(listener, (d.tls?.servername || '').toLowerCase())
      : listener.defaultChain;
  if (chain === null) return sendLocalError(d, Errors.noRoute);
  const hostName = normalizeHost(authority);
  // The Host belongs to another chain (listener, certificate) of this port than the SNI chose: 421,
  // so the client opens a connection for it (also what stops HTTP/2 connection coalescing from
  // reaching another listener's routes).
  if (chain.rejectMisdirected && selectFilterChain(listener, hostName) !== chain) return sendLocalError(d, Errors.misdirected);
  const vhost = selectVirtualHost(chain, hostName);
  if (vhost === null) return sendLocalError(d, Errors.noRoute);

  if (vhost.httpsRedirect !== null) {
    return sendRedirect(d, vhost.httpsRedirect.responseCode, httpsRedirectLocation(vhost.httpsRedirect, hostName, target));
  }

  const x = new Exchange(d, d.method, path, query, listener.scheme, authority, listener.externalPort);
  // JWT authentication then authorization (Envoy's filter order), before the route is chosen.
  const sec = listener.security;
  if (sec.requestFilters !== null) return runRequestFilters(sec, x, () => routeRequest(env, listener, vhost, x, rec, target, hostName, authority, query));
  routeRequest(env, listener, vhost, x, rec, target, hostName, authority, query);
}

/** Route lookup and action, once the request has passed the edge filters. */
function routeRequest(
  env: RequestEnv,
  listener: CompiledListener,
  vhost: CompiledVirtualHost,
  x: Exchange,
  rec: RequestRecord | null,
  target: string,
  hostName: string,
  authority: string,
  query: string,
): void {
  const d = x.d;
  const match = findRoute(vhost, x);
  if (match === null) return sendLocalError(d, Errors.noRoute);
  if (rec !== null) {
    rec.route = match.route;
    x.record = rec;
  }
  if (listener.security.routeLimits !== null && !admitRateLimit(listener.security, match.route, x)) return;
  if (match.route.cors !== null && handleCors(match.route.cors, x)) return;

  const action = match.route.action;
  switch (action.kind) {
    case 'forward':
      // Ingress request filters (filters/route-filters.ts): only for routes that forward.
      if (match.route.filters !== null && !admitRouteFilters(match.route.filters, x, () => forward(env, listener, x, match, action, target), listener.externalPort)) return;
      return forward(env, listener, x, match, action, target);
    case 'redirect':
      return sendRedirect(d, action.responseCode, redirectLocation(action, match, listener, x, hostName, authority, query));
    case 'direct': {
      const ops = match.route.responseHeaders;
      return sendDirect(d, action.status, action.contentType, action.body, ops === null ? null : applyHeaderOps([], ops));
    }
  }
}

function forward(env: RequestEnv, listener: CompiledListener, x: Exchange, match: CompiledMatch, action: CompiledForward, target: string, faulted = false): void {
  const d = x.d;
  // Fault injection runs before any endpoint is chosen (Envoy's fault filter precedes the router).
  if (action.fault !== null && !faulted) return injectFault(action.fault, env.random, d, () => forward(env, listener, x, match, action, target, true));
  const dest = pickDestination(action, action.destinations.length > 1 ? env.random() : 0);
  const cluster = dest?.cluster ?? null;
  if (x.record !== null) x.record.destination = dest;
  if (dest === null || cluster === null || cluster.discovery === 'missing') return sendLocalError(d, Errors.noCluster);
  const endpoint = selectEndpoint(cluster, env.random, x);
  if (endpoint === null || endpoint.handle === null) return sendLocalError(d, Errors.noHealthyUpstream);

  let upstreamTarget = target;
  if (action.rewritePath !== null) {
    const rewritten = action.rewritePath(x.path, match.path);
    upstreamTarget = x.query === '' ? rewritten : `${rewritten}?${x.query}`;
  }
  const route = match.route;
  const mode = listener.security.forwardMode ?? 'gateway';
  const built = buildUpstreamRequestHeaders(
    d.rawHeaders,
    action.rewriteAuthority ?? x.authority,
    x.authority,
    // A sidecar sets x-forwarded-proto (when the client did not) from its downstream connection, as Envoy.
    mode === 'gateway' ? listener.scheme : d.tls !== null ? 'https' : 'http',
    listener.security.appendXff === false ? null : plainAddress(d.remoteAddress),
    mode,
    d.proxyHeaders === null ? 0 : d.proxyHeaders.forwardFlags,
  );
  if (mode !== 'gateway') {
    x.sidecarMode = mode;
    // Istio's metadata exchange (sidecar/peer-metadata.ts): ours to a meshed (Istio mTLS) endpoint;
    // an inbound peer that sent its own over mTLS gets ours back (never in clear text).
    const mx = env.peerMetadata;
    if (mx != null) {
      if (mode === 'sidecar-outbound') {
        x.peerMetadata = mx;
        if (endpoint.tls?.mode === 'ISTIO_MUTUAL') for (const h of mx.request) built.headers.push(h);
      } else if (built.peer !== 0 && d.tls !== null) x.peerMetadataReply = mx.reply[built.peer];
    }
  } else if (env.peerMetadata != null) {
    // The gateway as a mesh client: Istio's gateways run the same metadata exchange as a client
    // sidecar (upstream propagation and discovery), so destination sidecars know who called.
    // A client's own values of those names never pass for the gateway's (Istio's filter replaces them).
    x.peerMetadata = env.peerMetadata;
    takePeerMetadata(built.headers);
    if (endpoint.tls?.mode === 'ISTIO_MUTUAL') for (const h of env.peerMetadata.request) built.headers.push(h);
  }
  // Envoy's router (Istio's gateways and sidecars do not suppress Envoy headers, unless ProxyConfig
  // envoyDebugHeaders is disabled: gateway.go, listener_builder.go) tells the upstream how long it
  // will wait: the per-try timeout, else the route timeout; nothing without either.
  if (mode !== 'sidecar-inbound' && (d.proxyHeaders === null || d.proxyHeaders.debugHeaders)) {
    const perTry = action.retry?.perTryTimeoutMs ?? 0;
    const expected = perTry > 0 ? perTry : (action.timeoutMs ?? 0);
    if (expected > 0) built.headers.push('x-envoy-expected-rq-timeout-ms', String(expected));
  }
  let headers = built.headers;
  if (x.authEdits !== null) headers = applyAuthEdits(headers, x.authEdits);
  // Requests: route-level edits first, then destination-level (IR HeaderOps order).
  if (route.requestHeaders !== null) headers = applyHeaderOps(headers, route.requestHeaders);
  if (dest.requestHeaders !== null) headers = applyHeaderOps(headers, dest.requestHeaders);
  if (x.record !== null) headers = observeForward(env.observer!, x.record, headers, built.requestId);
  const hasBody = d.http2 ? d.hasBody : built.hasBody;
  // gRPC-Web (browsers) goes upstream as gRPC; the answer is translated back by the Exchange.
  const web = grpcWebMode(d);
  if (web !== 0) {
    x.grpcWeb = web;
    headers = grpcWebRequestHeaders(headers, d);
    if (web === 2 && hasBody) x.requestBody = d.body.pipe(new Base64Decoder());
  }
  let timeoutMs = action.timeoutMs;
  if (isGrpcRequest(d)) {
    // A gRPC call's deadline covers the whole call (streams included), as grpc-timeout means.
    timeoutMs = effectiveGrpcTimeout(d, action.timeoutMs);
    x.grpcDeadline = timeoutMs > 0;
  }
  // WebSocket (HTTP/1.1 Upgrade or HTTP/2 extended CONNECT): spliced to the endpoint, over the
  // cluster's upstream TLS when it has one, instead of proxied as an HTTP exchange.
  if (d.upgrade !== null) return forwardUpgrade(d, cluster, endpoint, route, dest, upstreamTarget, headers);
  const call = startUpstreamPolicies(env.random, x, cluster, endpoint, action, upstreamTarget, headers, hasBody, timeoutMs);
  x.forward(endpoint.handle, route, dest, upstreamTarget, headers, hasBody, timeoutMs, call);
}

/** `https://host[:port]/path?query` (Istio `httpsRedirect`, ingress-nginx ssl-redirect). */
function httpsRedirectLocation(r: HttpsRedirect, hostName: string, target: string): string {
  const port = r.port === null || r.port === 443 ? '' : `:${r.port}`;
  return `https://${hostName}${port}${r.stripTrailingSlash === true && target.endsWith('/') ? target.slice(0, -1) : target}`;
}

/** The Location of a RedirectAction (Envoy `RedirectAction` semantics). */
function redirectLocation(
  a: CompiledRedirect,
  match: CompiledMatch,
  listener: CompiledListener,
  x: Exchange,
  hostName: string,
  authority: string,
  query: string,
): string {
  const scheme = a.scheme ?? x.scheme;
  const host = a.authority ?? (a.authorityFromHeader !== undefined ? forwardedHost(x.d.header(a.authorityFromHeader)) : null) ?? hostName;
  const sentPort = portOf(authority);
  let port: number | null;
  if (a.port === null) {
    // Keep the port as sent, unless the scheme changed and it was the old scheme's default.
    port = sentPort;
    if (port !== null && scheme !== x.scheme && port === defaultPort(x.scheme)) port = null;
  } else if (a.port === 'from-protocol') {
    port = null;
  } else if (a.port === 'from-request') {
    port = sentPort ?? listener.externalPort;
  } else {
    port = a.port;
  }
  if (port !== null && port === defaultPort(scheme) && a.keepDefaultPort !== true) port = null;
  let path = x.path;
  let q = query;
  if (a.path !== null) {
    path = a.path(x.path, match.path);
    // A replacement that carries its own query replaces the request's.
    const i = path.indexOf('?');
    if (i !== -1) {
      q = path.slice(i + 1);
      path = path.slice(0, i);
    }
  }
  const uri = `${path}${q === '' ? '' : `?${q}`}`;
  return `${scheme}://${host}${port === null ? '' : `:${port}`}${a.stripTrailingSlash === true && uri.endsWith('/') ? uri.slice(0, -1) : uri}`;
}

/**
 * The host of an X-Forwarded-Host value: its first entry without the port (lua_ingress.lua
 * parse_x_forwarded_host, redirect_host), or null when absent or not a host name or IP literal (the
 * value goes into Location, so nothing else is ever written there).
 */
function forwardedHost(v: string | null): string | null {
  if (v === null) return null;
  const first = v.split(',')[0].trim();
  const host = first.startsWith('[') ? first.slice(0, first.indexOf(']') + 1) : first.split(':')[0];
  return /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])$/.test(host) && host.length <= 253 ? host : null;
}

function defaultPort(scheme: string): number {
  return scheme === 'https' ? 443 : 80;
}

/** The port of a Host value, or null when it has none. */
function portOf(authority: string): number | null {
  const close = authority.lastIndexOf(']');
  const colon = authority.lastIndexOf(':');
  if (colon <= close) return null;
  const n = Number(authority.slice(colon + 1));
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : null;
}

/** Splits `http://authority/path?q` into authority and origin-form target; null when malformed. */
function parseAbsoluteForm(url: string): { authority: string; target: string } | null {
  const sep = url.indexOf('://');
  if (sep <= 0) return null;
  const scheme = url.slice(0, sep).toLowerCase();
  if (scheme !== 'http' && scheme !== 'https') return null;
  const start = sep + 3;
  let end = start;
  while (end < url.length) {
    const c = url.charCodeAt(end);
    if (c === 47 /* / */ || c === 63 /* ? */) break;
    end++;
  }
  const authority = url.slice(start, end);
  if (authority === '' || authority.includes('@')) return null;
  const rest = url.slice(end);
  return { authority, target: rest === '' ? '/' : rest.charCodeAt(0) === 63 ? `/${rest}` : rest };
}
