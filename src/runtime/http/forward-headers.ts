/**
 * Header rewriting between downstream and upstream: hop-by-hop removal (RFC 9110 §7.6.1), the
 * gateway's forwarding headers, and the response side. Works on flat `[name, value, ...]` arrays
 * with lowercase names, the shape undici and `res.writeHead` take. Also x-forwarded-client-cert
 * (`settleForwardClientCert`, Envoy's XFCC). x-forwarded-for is the client's list with the
 * connection's peer appended (Envoy `use_remote_address: true`, `xff_num_trusted_hops: 0`, Istio's
 * gateway settings); with `numTrustedProxies` the client address authorization sees comes from it
 * (`trustedClientAddress`).
 */

import { createHash, type X509Certificate } from 'node:crypto';
import { uuid4 } from '../../lib/uuid.js';
import { isIP } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { ForwardClientCertDetails } from '../../ir/security.js';
import { SERVER_NAME } from './local-reply.js';
import type { Downstream } from './downstream.js';

/** `buildUpstreamRequestHeaders` flags (ProxyConfig `proxyHeaders`, proxy-headers.ts): no x-request-id is generated. */
export const NO_REQUEST_ID = 1;
/** `buildUpstreamRequestHeaders` flags: the gateway or a sidecar's outbound side neither sets nor drops x-envoy-attempt-count. */
export const NO_ATTEMPT_COUNT = 2;
/** `buildUpstreamRequestHeaders` flags: envoyDebugHeaders disabled: a sidecar's outbound side passes the app's x-envoy-expected-rq-timeout-ms (it sets none). */
export const NO_DEBUG_HEADERS = 4;

/** A client-supplied x-request-id is kept when it is this shape (Envoy keeps any; we bound it). */
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Who forwards: the gateway (Istio's gateways, ingress-nginx), or a sidecar's outbound or inbound
 * side, whose HTTP connection manager Istio configures differently (Envoy `use_remote_address:
 * false`; reference/mesh.md §2.4-2.6):
 * - x-forwarded-proto: the gateway sets its own scheme; a sidecar keeps the one the client sent and
 *   sets it only when absent (Envoy: `https` for a TLS downstream connection, else `http`);
 * - x-forwarded-host: the gateway sets the original Host (as ingress-nginx); Envoy never adds it
 *   (no route asks `append_x_forwarded_host`), so a sidecar passes the client's on unchanged;
 * - x-envoy-attempt-count: the gateway and a sidecar's outbound side set it (Istio's
 *   `include_request_attempt_count` on every gateway virtual host, gateway.go, and every outbound
 *   one, httproute.go), 1 and then the try number on retries; inbound passes it on;
 * - x-envoy-expected-rq-timeout-ms: the gateway and a sidecar's outbound side set it to the per-try
 *   timeout, else the route timeout, when there is one (Envoy's router, not suppressed by Istio
 *   unless `envoyDebugHeaders` is disabled; request-handler.ts); a sidecar's outbound side drops
 *   the app's own; the gateway drops the client's (Envoy sanitizes it on external requests:
 *   header_sanitizing.rst); inbound passes it on;
 * - x-envoy-peer-metadata / x-envoy-peer-metadata-id (Istio's HTTP metadata exchange): consumed by
 *   sidecars and never forwarded; the sidecar adds its own where Istio's would
 *   (runtime/sidecar/peer-metadata.ts).
 */
export type ForwardMode = 'gateway' | 'sidecar-outbound' | 'sidecar-inbound';

/** What the request-side pass learned besides the header list. */
export interface DownstreamHeaders {
  /** Upstream request headers (lowercase names), without host and forwarding headers yet. */
  headers: string[];
  /** Whether the request has a body (Content-Length or Transfer-Encoding present). */
  hasBody: boolean;
  /** The x-request-id sent upstream (the client's, or generated), for logs and traces; null when none (ProxyConfig `requestId.disabled`). */
  requestId: string | null;
  /**
   * Sidecars: which metadata-exchange headers the request carried (dropped from `headers`): bit 1
   * x-envoy-peer-metadata-id, bit 2 x-envoy-peer-metadata. 0 otherwise.
   */
  peer: number;
}

/**
 * One pass over the client's raw headers: drops hop-by-hop headers (plus every name the Connection
 * header lists), `expect` (Node already answered `100-continue`), `host` and the forwarding headers
 * the gateway owns, then appends host, x-forwarded-for/-proto/-host and x-request-id.
 *
 * `te` is kept only as `te: trailers` (RFC 9110 §10.1.4). Transfer-Encoding is dropped because
 * the body is re-framed (undici chunks a stream body without Content-Length). Content-Length is
 * kept as is.
 */
export function buildUpstreamRequestHeaders(
  raw: string[],
  host: string,
  originalAuthority: string,
  scheme: string,
  /** Appended to x-forwarded-for; null = the client's x-forwarded-for is passed on unchanged (Envoy's `use_remote_address: false`, Istio's sidecar inbound). */
  remoteAddress: string | null,
  mode: ForwardMode = 'gateway',
  /** ProxyConfig `proxyHeaders` (`NO_REQUEST_ID`, `NO_ATTEMPT_COUNT`, `NO_DEBUG_HEADERS`; proxy-headers.ts); 0 = the defaults. */
  flags = 0,
): DownstreamHeaders {
  const out: string[] = [];
  const sidecar = mode !== 'gateway';
  let xff: string | null = null;
  let xfp: string | null = null;
  let requestId: string | null = null;
  let connection: string | null = null;
  let hasBody = false;
  let peer = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    // HTTP/2 pseudo-headers (`:method`, `:path`, ...) are not headers; the upstream request gets its own.
    if (name.charCodeAt(0) === 58 /* : */) continue;
    switch (name) {
      case 'host':
      case 'keep-alive':
      case 'proxy-connection':
      case 'upgrade':
      case 'expect':
      case 'http2-settings':
        continue;
      case 'x-forwarded-proto':
        if (sidecar && xfp === null) xfp = value;
        continue;
      case 'x-forwarded-host':
        if (sidecar) break;
        continue;
      case 'x-envoy-peer-metadata':
      case 'x-envoy-peer-metadata-id':
        if (sidecar) {
          peer |= name.length === 21 ? 2 : 1;
          continue;
        }
        break;
      case 'x-envoy-attempt-count':
        // The proxy sets its own; with attemptCount disabled the client's passes (Envoy's router leaves it).
        if (mode !== 'sidecar-inbound' && (flags & NO_ATTEMPT_COUNT) === 0) continue;
        break;
      case 'x-envoy-expected-rq-timeout-ms':
        if (mode === 'gateway' || (mode === 'sidecar-outbound' && (flags & NO_DEBUG_HEADERS) === 0)) continue;
        break;
      case 'connection':
        connection = connection === null ? value : `${connection},${value}`;
        continue;
      case 'transfer-encoding':
        hasBody = true;
        continue;
      case 'content-length':
        hasBody = true;
        break;
      case 'te':
        if (/(?:^|,)\s*trailers\s*(?:;|,|$)/i.test(value)) out.push('te', 'trailers');
        continue;
      case 'x-forwarded-for':
        xff = xff === null ? value : `${xff}, ${value}`;
        continue;
      case 'x-request-id':
        requestId = value;
        continue;
    }
    out.push(name, value);
  }
  if (connection !== null) removeConnectionTokens(out, connection);
  out.push('host', host);
  if (remoteAddress !== null) out.push('x-forwarded-for', xff === null ? remoteAddress : `${xff}, ${remoteAddress}`);
  else if (xff !== null) out.push('x-forwarded-for', xff);
  if (flags === 0) {
    requestId = requestId !== null && REQUEST_ID.test(requestId) ? requestId : uuid4();
    if (!sidecar) out.push('x-forwarded-proto', scheme, 'x-forwarded-host', originalAuthority, 'x-request-id', requestId, 'x-envoy-attempt-count', '1');
    else {
      out.push('x-forwarded-proto', xfp ?? scheme, 'x-request-id', requestId);
      // The first try; a retry rewrites it (setAttemptCount).
      if (mode === 'sidecar-outbound') out.push('x-envoy-attempt-count', '1');
    }
    return { headers: out, hasBody, requestId, peer };
  }
  // ProxyConfig proxyHeaders: requestId disabled keeps a client's id (of the accepted shape) and
  // makes none (Envoy `generate_request_id: false`); attemptCount disabled sets no attempt count.
  requestId = requestId !== null && REQUEST_ID.test(requestId) ? requestId : (flags & NO_REQUEST_ID) !== 0 ? null : uuid4();
  if (!sidecar) out.push('x-forwarded-proto', scheme, 'x-forwarded-host', originalAuthority);
  else out.push('x-forwarded-proto', xfp ?? scheme);
  if (requestId !== null) out.push('x-request-id', requestId);
  if (mode !== 'sidecar-inbound' && (flags & NO_ATTEMPT_COUNT) === 0) out.push('x-envoy-attempt-count', '1');
  return { headers: out, hasBody, requestId, peer };
}

/** Sets x-envoy-attempt-count to `tries` where the request has one (gateway and sidecar outbound: Envoy counts every try). */
export function setAttemptCount(headers: string[], tries: number): void {
  for (let i = 0; i < headers.length; i += 2) {
    if (headers[i] === 'x-envoy-attempt-count') {
      headers[i + 1] = String(tries);
      return;
    }
  }
}

/**
 * The upstream response headers for the client: hop-by-hop removed (and every name listed in
 * Connection), `server` replaced by `server` (ours, `meshgate`, unless ProxyConfig `proxyHeaders.server`
 * names another; null: the upstream's passes through, Envoy's `PASS_THROUGH`), trailers dropped
 * (HTTP/1.1 trailers are not relayed). Values are latin1 strings (the parsers' decoding) so their bytes go
 * out unchanged (heads are written as latin1).
 */
export function buildDownstreamResponseHeaders(
  raw: string[],
  server: string | null = SERVER_NAME,
  /** Envoy's router sets its own x-envoy-upstream-service-time (exchange.ts): the upstream's is dropped. */
  ownServiceTime = false,
): string[] {
  const out: string[] = [];
  let connection: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    switch (name) {
      case 'connection': {
        const v = raw[i + 1];
        connection = connection === null ? v : `${connection},${v}`;
        continue;
      }
      case 'keep-alive':
      case 'proxy-connection':
      case 'transfer-encoding':
      case 'upgrade':
      case 'te':
      case 'trailer':
        continue;
      case 'server':
        if (server !== null) continue;
        break;
      case 'x-envoy-upstream-service-time':
        if (ownServiceTime) continue;
        break;
    }
    out.push(name, raw[i + 1]);
  }
  if (connection !== null) removeConnectionTokens(out, connection);
  if (server !== null) out.push('server', server);
  return out;
}

/** Removes from `headers` every header named in a Connection value (except `close`/`keep-alive`). */
function removeConnectionTokens(headers: string[], connection: string): void {
  // The common values name no header: skip the split.
  const lc = connection.length <= 10 ? connection.toLowerCase() : '';
  if (lc === 'keep-alive' || lc === 'close') return;
  let names: Set<string> | null = null;
  for (const token of connection.split(',')) {
    const t = token.trim().toLowerCase();
    if (t === '' || t === 'close' || t === 'keep-alive') continue;
    (names ??= new Set()).add(t);
  }
  if (names === null) return;
  let w = 0;
  for (let r = 0; r < headers.length; r += 2) {
    if (names.has(headers[r])) continue;
    headers[w] = headers[r];
    headers[w + 1] = headers[r + 1];
    w += 2;
  }
  headers.length = w;
}

/** XFCC modes, as IR `SecurityConfig.forwardClientCertDetails`. */
export type XfccMode = ForwardClientCertDetails;

/** Parts of the XFCC element (Envoy `set_current_client_cert_details`), as bits. `Hash` and `By` are always there. */
export const XFCC_SUBJECT = 1;
export const XFCC_CERT = 2;
export const XFCC_CHAIN = 4;
export const XFCC_DNS = 8;
export const XFCC_URI = 16;
/** Istio's gateways: Subject, Cert, URI, DNS. */
export const XFCC_GATEWAY = XFCC_SUBJECT | XFCC_CERT | XFCC_DNS | XFCC_URI;
/** Istio's sidecars' inbound side by default: Subject, URI, DNS. */
export const XFCC_SIDECAR = XFCC_SUBJECT | XFCC_DNS | XFCC_URI;

/** The XFCC element per mTLS connection (built once per connection, on its first request), with the parts it was built with (a reload may ask for others). */
const xfccElements = new WeakMap<object, { details: number; element: string }>();

const XFCC = 'x-forwarded-client-cert';

/**
 * Settles x-forwarded-client-cert on a request as it arrives, as Envoy's connection manager does
 * (`mutateXfccRequestHeader`, before any filter or the router runs): for `mode` (IR
 * `ForwardClientCertDetails`) the client's value is removed, kept, replaced by or appended with the
 * element describing the verified client certificate of the connection. Several client XFCC lines
 * are joined with `,` first (one header, as Envoy sees it). The request itself is edited (its
 * rawHeaders, and headers), so route matching, authorization, ext-authz, the upstream request and the
 * access log all see the one settled value. `present`: the caller's header scan saw the header.
 */
export function settleForwardClientCert(d: Downstream, mode: XfccMode, present: boolean, details = XFCC_GATEWAY): void {
  if (mode === 'ALWAYS_FORWARD_ONLY') return;
  const tls = d.tls;
  const mtls = mode !== 'SANITIZE' && tls !== null && tls.authorized === true && typeof tls.getPeerX509Certificate === 'function';
  if (!present && !mtls) return;
  let element: string | null = null;
  if (mtls && tls !== null) {
    const cached = xfccElements.get(tls);
    if (cached !== undefined && cached.details === details) element = cached.element;
    else {
      element = xfccElement(tls, details);
      if (element !== null) xfccElements.set(tls, { details, element });
    }
  }
  const raw = d.rawHeaders;
  let previous: string | null = null;
  let w = 0;
  for (let r = 0; r < raw.length; r += 2) {
    if (raw[r].length === XFCC.length && raw[r].toLowerCase() === XFCC) {
      previous = previous === null ? raw[r + 1] : `${previous},${raw[r + 1]}`;
      continue;
    }
    raw[w] = raw[r];
    raw[w + 1] = raw[r + 1];
    w += 2;
  }
  raw.length = w;
  let value: string | null = null;
  if (element !== null) {
    if (mode === 'FORWARD_ONLY') value = previous;
    else if (mode === 'APPEND_FORWARD') value = previous === null ? element : `${previous},${element}`;
    else if (mode === 'SANITIZE_SET') value = element;
  }
  if (value !== null) raw.push(XFCC, value);
}

/**
 * Envoy's XFCC element, in Envoy's order: `By=…;Hash=…;Cert="…";Chain="…";Subject="…";URI=…;DNS=…`
 * with the parts `details` asks for (`XFCC_*`; `By` and `Hash` always); null when no client
 * certificate is there. Istio's gateways ask for Subject, Cert, URI and DNS (`XFCC_GATEWAY`), its
 * sidecars' inbound side for Subject, URI and DNS (`XFCC_SIDECAR`), unless ProxyConfig
 * `proxyHeaders.setCurrentClientCertDetails` says otherwise.
 */
export function xfccElement(socket: TLSSocket, details = XFCC_GATEWAY): string | null {
  const peer = socket.getPeerX509Certificate();
  if (peer === undefined) return null;
  const parts: string[] = [];
  const local = socket.getX509Certificate();
  if (local !== undefined) for (const uri of sansOf(local.subjectAltName, 'URI:')) parts.push(`By=${uri}`);
  parts.push(`Hash=${createHash('sha256').update(peer.raw).digest('hex')}`);
  // Envoy's URL encoding of the PEM (ssl_handshaker urlEncodedPemEncodedPeerCertificate).
  if ((details & XFCC_CERT) !== 0) parts.push(`Cert="${urlEncodedPem(peer.toString())}"`);
  if ((details & XFCC_CHAIN) !== 0) parts.push(`Chain="${urlEncodedPem(peerChain(peer))}"`);
  if ((details & XFCC_SUBJECT) !== 0) parts.push(`Subject="${rfc2253(peer.subject)}"`);
  if ((details & XFCC_URI) !== 0) {
    const uris = sansOf(peer.subjectAltName, 'URI:');
    if (uris.length === 0) parts.push('URI=');
    for (const u of uris) parts.push(`URI=${u}`);
  }
  if ((details & XFCC_DNS) !== 0) for (const d of sansOf(peer.subjectAltName, 'DNS:')) parts.push(`DNS=${d}`);
  return parts.join(';');
}

function urlEncodedPem(pem: string): string {
  return pem.replace(/[\n +/=]/g, (c) => PEM_ESCAPES[c]);
}

/**
 * The client's chain, leaf first, as PEM (Envoy's `Chain`: what the client sent). Node links the
 * peer's certificates by issuer and may complete the chain with a root from the trust store, which
 * the client did not send: a self-signed last certificate is left out.
 */
function peerChain(leaf: X509Certificate): string {
  let pem = '';
  const seen = new Set<string>();
  for (let c: X509Certificate | undefined = leaf; c !== undefined && !seen.has(c.fingerprint256); c = c.issuerCertificate) {
    seen.add(c.fingerprint256);
    const selfSigned = c.subject === c.issuer && c !== leaf;
    if (selfSigned) break;
    pem += c.toString();
  }
  return pem;
}

const PEM_ESCAPES: Record<string, string> = { '\n': '%0A', ' ': '%20', '+': '%2B', '/': '%2F', '=': '%3D' };

/** SAN values of one type from Node's `subjectAltName` text (`DNS:a, URI:b`). */
function sansOf(text: string | undefined, prefix: string): string[] {
  if (text === undefined || text === '') return [];
  const out: string[] = [];
  for (const entry of text.split(', ')) if (entry.startsWith(prefix)) out.push(entry.slice(prefix.length));
  return out;
}

/**
 * Node's subject (`C=US\nO=Org\nCN=name`, certificate order, values already escaped as RFC 2253
 * wants) in RFC 2253 form, as OpenSSL's `XN_FLAG_RFC2253` prints it for Envoy: most specific
 * first, `,`-separated.
 */
/** `subject` is undefined for a certificate with an empty subject (Istio workload certificates): "". */
function rfc2253(subject: string | undefined): string {
  return (subject ?? '')
    .split('\n')
    .filter((l) => l !== '')
    .reverse()
    .join(',');
}

/**
 * Envoy's trusted client address with `xff_num_trusted_hops: hops` (> 0): the `hops`-th address
 * from the right of the client's x-forwarded-for (`lines`, joined as one list), or `peer` when the
 * list is shorter or that entry is no IP address.
 */
export function trustedClientAddress(lines: string[], hops: number, peer: string): string {
  if (lines.length === 0) return peer;
  const list = lines.join(',').split(',');
  const i = list.length - hops;
  if (i < 0) return peer;
  let a = list[i].trim();
  if (a.startsWith('::ffff:') && a.includes('.')) a = a.slice(7);
  return isIP(a) === 0 ? peer : a;
}
