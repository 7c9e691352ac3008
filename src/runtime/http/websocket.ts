/**
 * WebSocket through the gateway, from HTTP/1.1 Upgrade (RFC 6455 §4) and from HTTP/2 extended
 * CONNECT (RFC 8441). The upgrade request goes through the whole request path like any other
 * request (edge checks, authentication and authorization, route matching, weighted destination,
 * endpoint choice, header edits), so a route that would answer 404, 403 or 503 answers the upgrade
 * the same way. Only the hand-off differs: instead of an upstream HTTP exchange, a connection to the
 * endpoint carries an HTTP/1.1 Upgrade request, and when the endpoint answers
 * `101 Switching Protocols` the client and the endpoint are spliced byte for byte, with back-pressure
 * both ways (Envoy's `upgrade_configs: websocket`, which Istio enables on every gateway route).
 *
 * - HTTP/2 downstream (RFC 8441): the HTTP/2 engine advertises SETTINGS_ENABLE_CONNECT_PROTOCOL; a
 *   stream `:method CONNECT` + `:protocol websocket` is routed as `GET` with the `:path` and
 *   `:authority` it carries (Envoy turns it into the HTTP/1.1 form before the router), goes to the
 *   endpoint as an HTTP/1.1 Upgrade (with a generated Sec-WebSocket-Key, which RFC 8441 clients do not
 *   send), and a 101 becomes a `200` on the stream; the stream's DATA frames then carry the WebSocket
 *   bytes. A CONNECT without `:protocol`, or with another protocol, is 405 (no CONNECT proxying).
 * - Upstream TLS (IR `Cluster.tls`, DestinationRule SIMPLE/MUTUAL): the connection to the endpoint
 *   is made with the same TLS options and identity as HTTP requests (`upstream/upstream-tls.ts`),
 *   ALPN `http/1.1`; a failed handshake or verification is 503 `UF` with the TLS reason, as for HTTP.
 * - Clusters that speak HTTP/2 to their endpoints (IR `Cluster.protocol: HTTP2`) still get the
 *   upgrade as HTTP/1.1 on a connection of its own (Envoy's default without
 *   `allow_extended_connect` upstream); WebSocket over HTTP/2 to the endpoint is not offered.
 * - Observability: the request's record describes the tunnel. It finishes when the tunnel closes,
 *   with status 101 (200 for HTTP/2, as Envoy logs it), the tunnel's lifetime as duration, the bytes
 *   relayed each way, and a flag when it ended badly: `UC` upstream reset, `DC` client reset, `SI`
 *   idle timeout.
 *
 * Only `Upgrade: websocket` is tunnelled; other Upgrade values (h2c, TLS/1.0) are ignored and the
 * request is served as plain HTTP/1.1 on a connection that then closes, as Envoy does.
 * A tunnel closes when either side closes, or after `WEBSOCKET_IDLE_TIMEOUT_MS` without a byte in
 * either direction.
 */

import { randomBytes } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { UpstreamTls } from '../../ir/types.js';
import { applyHeaderOps } from '../compile/header-ops.js';
import type { CompiledCluster, CompiledDestination, CompiledEndpoint, CompiledRoute } from '../compile/types.js';
import { upstreamTlsOptions, type UpstreamTlsOptions } from '../upstream/upstream-tls.js';
import { classifyUpstreamError, Errors, sendLocalError, SERVER_NAME } from './local-reply.js';
import type { Downstream } from './downstream.js';
import { isHeaderField, isHeaderName, isHeaderValue } from '../../lib/header-chars.js';

/** Idle time after which a tunnel is closed, in ms (Envoy's default stream idle timeout: 5 min). */
export let WEBSOCKET_IDLE_TIMEOUT_MS = 300_000;

/** For tests: a shorter idle timeout. */
export function setWebSocketIdleTimeout(ms: number): void {
  WEBSOCKET_IDLE_TIMEOUT_MS = ms;
}

/** Largest upstream response head read before the splice; more is 502. */
const MAX_RESPONSE_HEAD = 64 * 1024;

/** HTTP/2 error code CONNECT_ERROR (RFC 9113 §7): the tunnel's TCP connection was reset or failed. */
const H2_CONNECT_ERROR = 0xa;

const NO_BYTES = Buffer.alloc(0);

/** TLS options per IR `UpstreamTls` object (one per cluster and snapshot), built on first use. */
const tlsOptionsCache = new WeakMap<UpstreamTls, UpstreamTlsOptions>();

/** Opens the connection to the endpoint: TCP, or TLS with the cluster's upstream TLS settings. */
function connectUpstream(cluster: CompiledCluster, endpoint: CompiledEndpoint): { socket: net.Socket; ready: 'connect' | 'secureConnect' } | Error {
  const upstreamTls = endpoint.tls;
  const localAddress = endpoint.handle?.localAddress;
  if (upstreamTls === null) return { socket: net.connect({ host: endpoint.address, port: endpoint.port, ...(localAddress === undefined ? {} : { localAddress }) }), ready: 'connect' };
  let opts = tlsOptionsCache.get(upstreamTls);
  if (opts === undefined) tlsOptionsCache.set(upstreamTls, (opts = upstreamTlsOptions(upstreamTls, 'HTTP1')));
  // ISTIO_MUTUAL: options from the current workload certificate (Istio's HTTP/1.1 ALPN), or why there are none.
  const dynamic = opts.istio?.();
  if (dynamic instanceof Error) return dynamic;
  if (dynamic !== undefined) return { socket: tls.connect({ ...dynamic, host: endpoint.address, port: endpoint.port }), ready: 'secureConnect' };
  if (typeof opts.connect === 'function') {
    // The failing connector of a cluster whose TLS files could not be read.
    let failure: Error = Object.assign(new Error('upstream TLS unavailable'), { code: 'MG_TLS_FILE_UNREADABLE' });
    (opts.connect as (o: unknown, cb: (err: Error | null, s: unknown) => void) => void)({}, (err) => {
      if (err !== null) failure = err;
    });
    return failure;
  }
  const socket = tls.connect({ ...(opts.connect as tls.ConnectionOptions), host: endpoint.address, port: endpoint.port, servername: opts.servername, ALPNProtocols: ['http/1.1'] });
  return { socket, ready: 'secureConnect' };
}

/**
 * Opens the tunnel to `endpoint`: sends the request head (`headers` are the final upstream request
 * headers, hop-by-hop already removed), relays the answer, and splices on 101.
 */
export function forwardUpgrade(
  d: Downstream,
  cluster: CompiledCluster,
  endpoint: CompiledEndpoint,
  route: CompiledRoute,
  destination: CompiledDestination,
  target: string,
  headers: string[],
): void {
  const up = d.upgrade;
  if (up === null) return sendLocalError(d, Errors.badRequest, true);
  // The request line goes to the upstream as written: a (rewritten) target with a space or a
  // control character would split it.
  if (BAD_TARGET.test(target)) return sendLocalError(d, Errors.badRequest, true);
  d.upgrade = null;
  const rec = d.record;
  const client = up.socket;
  const stream = up.stream;
  // A tunnel holds one of the cluster's connections for its lifetime, so it takes a slot of the
  // cluster's circuit breaker (as Envoy counts an upgrade as a request) until it closes; it never
  // waits as pending: at the cluster's limits the upgrade is answered 503 UO at once.
  const breaker = cluster.state !== null && cluster.state.breaker.limits !== null ? cluster.state.breaker : null;
  if (breaker !== null && !breaker.tryTake()) return sendLocalError(d, Errors.overflow, true);
  const handle = endpoint.handle;
  if (handle !== null) handle.active++;
  let released = false;
  const release = (): void => {
    if (released) return;
    released = true;
    if (handle !== null) handle.active--;
    if (breaker !== null) breaker.release();
  };
  if (rec !== null) {
    rec.upstreamHost = endpoint.key;
    rec.attempts = 1;
  }

  const opened = connectUpstream(cluster, endpoint);
  if (opened instanceof Error) {
    release();
    return sendLocalError(d, classifyUpstreamError(opened), true);
  }
  const upstream = opened.socket;

  // An HTTP/2 extended CONNECT was turned into GET by acceptExtendedConnect.
  let head = `${d.method} ${target} HTTP/1.1\r\n`;
  let hasKey = false;
  for (let i = 0; i < headers.length; i += 2) {
    // Same rules as every head writer: a name that is not a token, or a value with CR, LF, NUL or
    // another CTL (a route's header ops, a rewritten authority), never reaches the upstream.
    if (!isHeaderField(headers[i], headers[i + 1])) continue;
    if (headers[i] === 'sec-websocket-key') hasKey = true;
    head += `${headers[i]}: ${headers[i + 1]}\r\n`;
  }
  // RFC 8441 §5: an HTTP/2 client sends no Sec-WebSocket-Key; the HTTP/1.1 endpoint needs one.
  if (!hasKey && client === null) head += `sec-websocket-key: ${randomBytes(16).toString('base64')}\r\n`;
  head += `connection: upgrade\r\nupgrade: websocket\r\n\r\n`;

  const started = performance.now();
  const connectTimer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timeout'), { code: 'UND_ERR_CONNECT_TIMEOUT' })), cluster.connectTimeoutMs);
  let spliced = false;
  let answered = false;
  let closed = false;
  /** Ends the tunnel; `flag` (UC, DC, SI) goes to the record unless one is already there. */
  const closeBoth = (flag: string | null): void => {
    if (closed) return;
    closed = true;
    if (flag !== null && rec !== null && rec.flags === '-') rec.flags = flag;
    upstream.destroy();
    if (client !== null) client.destroy();
    else if (!stream!.destroyed) {
      if (flag === 'UC') stream!.close(H2_CONNECT_ERROR);
      else stream!.destroy();
    }
    release();
  };
  upstream.on('error', (err) => {
    clearTimeout(connectTimer);
    if (!answered && !d.headersSent) {
      answered = true;
      release();
      sendLocalError(d, classifyUpstreamError(err), true);
      return;
    }
    closeBoth('UC');
  });
  const onClientGone = (): void => {
    if (!spliced) {
      upstream.destroy();
      release();
    }
  };
  if (client !== null) client.on('close', onClientGone);
  else stream!.on('close', onClientGone);
  // The endpoint closed before its answer's head: 503 UC, as Envoy answers a reset before headers.
  upstream.on('close', () => {
    clearTimeout(connectTimer);
    if (answered || d.headersSent) return;
    answered = true;
    release();
    if (!(client === null ? stream!.destroyed : client.destroyed)) sendLocalError(d, Errors.connectionTermination, true);
  });
  upstream.on(opened.ready, () => {
    clearTimeout(connectTimer);
    upstream.setNoDelay(true);
    upstream.write(head);
    if (up.head.length > 0) upstream.write(up.head);
  });

  let buffered: Buffer = NO_BYTES;
  const onHead = (chunk: Buffer): void => {
    buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
    const end = buffered.indexOf('\r\n\r\n');
    if (end === -1) {
      if (buffered.length > MAX_RESPONSE_HEAD) {
        upstream.removeListener('data', onHead);
        upstream.destroy();
        answered = true;
        release();
        sendLocalError(d, Errors.protocolError, true);
      }
      return;
    }
    upstream.removeListener('data', onHead);
    upstream.pause();
    answered = true;
    if (rec !== null) rec.upstreamServiceTime = performance.now() - started;
    const parsed = parseHead(buffered.subarray(0, end).toString('latin1'), d.proxyHeaders === null ? SERVER_NAME : d.proxyHeaders.server);
    const rest = buffered.subarray(end + 4);
    if (parsed === null) {
      upstream.destroy();
      release();
      return sendLocalError(d, Errors.protocolError, true);
    }
    let out = parsed.headers;
    // Responses: destination-level edits first, then route-level (IR HeaderOps order).
    if (destination.responseHeaders !== null) out = applyHeaderOps(out, destination.responseHeaders);
    if (route.responseHeaders !== null) out = applyHeaderOps(out, route.responseHeaders);
    if (client === null) return relayH2(parsed, out, rest);
    let text = `HTTP/1.1 ${parsed.status} ${parsed.reason}\r\n`;
    for (let i = 0; i < out.length; i += 2) if (isHeaderField(out[i], out[i + 1])) text += `${out[i]}: ${out[i + 1]}\r\n`;
    client.write(`${text}\r\n`);
    if (rec !== null) rec.upgradeStatus = parsed.status;
    if (parsed.status === 101) {
      if (rest.length > 0) client.write(rest);
      return splice(client, client, rest.length);
    }
    // Not upgraded: relay the answer as framed (Content-Length, chunked, or up to the upstream's
    // close); the connection closes after it.
    let remaining = parsed.contentLength ?? (parsed.status === 204 || parsed.status === 304 ? 0 : -1);
    let ended = false;
    const done = (): void => {
      if (ended) return;
      ended = true;
      closeAfterFlush(client, upstream, release);
    };
    const chunks = parsed.chunked ? new ChunkedDecoder(noop, done) : null;
    const feed = (c: Buffer): void => {
      if (ended || c.length === 0) return;
      if (remaining >= 0) c = c.subarray(0, remaining);
      client.write(c);
      if (rec !== null) rec.bytesSent += c.length;
      if (chunks !== null) chunks.push(c);
      else if (remaining > 0 && (remaining -= c.length) === 0) done();
    };
    if (rec !== null) rec.bytesSent = 0;
    if (remaining === 0 && chunks === null) return done();
    feed(rest);
    upstream.on('data', feed);
    upstream.on('end', done);
    upstream.resume();
  };

  /** The endpoint's answer on the HTTP/2 stream: 101 becomes 200 and the splice; others are relayed and end the stream. */
  const relayH2 = (parsed: ParsedHead, list: string[], rest: Buffer): void => {
    const h = h2ResponseHeaders(list);
    if (parsed.status === 101) {
      d.writeHead(200, h);
      if (rec !== null) rec.upgradeStatus = 200;
      if (rest.length > 0) d.write(rest);
      return splice(d.body, stream!, rest.length);
    }
    // Not upgraded: the answer and its body (Content-Length, chunked framing removed, or up to the
    // upstream's close) end the stream; the upstream connection is not reused.
    d.writeHead(parsed.status, h);
    let ended = false;
    const done = (): void => {
      if (ended) return;
      ended = true;
      upstream.destroy();
      d.end();
      release();
    };
    const relay = (c: Buffer): void => {
      if (ended || c.length === 0) return;
      if (rec !== null) rec.bytesSent += c.length;
      d.write(c);
    };
    let remaining = parsed.contentLength ?? (parsed.status === 204 || parsed.status === 304 ? 0 : -1);
    let feed: (c: Buffer) => void;
    if (parsed.chunked) {
      const d = new ChunkedDecoder(relay, done);
      feed = (c) => d.push(c);
    } else {
      feed = (c) => {
        if (remaining < 0) return relay(c);
        const take = c.subarray(0, remaining);
        remaining -= take.length;
        relay(take);
        if (remaining === 0) done();
      };
    }
    if (remaining === 0 && !parsed.chunked) return done();
    feed(rest);
    upstream.on('data', (c: Buffer) => feed(c));
    upstream.on('end', done);
    upstream.resume();
  };

  /**
   * One byte stream from here on: `from` is what the client sends (its socket, or the HTTP/2 request
   * body), `to` where the endpoint's bytes go; either end closing closes the other.
   */
  const splice = (from: NodeJS.ReadableStream, to: NodeJS.WritableStream, alreadySent: number): void => {
    spliced = true;
    let sent = alreadySent;
    let received = 0;
    if (rec !== null) {
      rec.bytesSent = sent;
      rec.tunnelBytesReceived = up.head.length;
      received = up.head.length;
    }
    const idle = (): void => closeBoth('SI');
    if (client !== null) {
      client.setTimeout(WEBSOCKET_IDLE_TIMEOUT_MS, idle);
      client.on('end', () => upstream.end());
      client.on('close', (hadError: boolean) => closeBoth(hadError ? 'DC' : null));
      upstream.on('end', () => client.end());
    } else {
      const s = stream!;
      s.setTimeout(WEBSOCKET_IDLE_TIMEOUT_MS, idle);
      from.on('end', () => upstream.end());
      s.on('close', () => closeBoth(s.rstCode !== 0 && s.rstCode !== undefined ? 'DC' : null));
      upstream.on('end', () => d.end());
    }
    upstream.on('close', () => closeBoth(null));
    if (rec !== null) {
      from.on('data', (c: Buffer) => (rec.tunnelBytesReceived = received += c.length));
      upstream.on('data', (c: Buffer) => (rec.bytesSent = sent += c.length));
    }
    from.pipe(upstream, { end: false });
    upstream.pipe(to, { end: false });
    upstream.resume();
  };
  upstream.on('data', onHead);
}

function closeAfterFlush(client: net.Socket, upstream: net.Socket, release: () => void): void {
  upstream.destroy();
  client.end();
  release();
}

/** Headers HTTP/2 forbids (RFC 9113 §8.2.2) or that belong to the HTTP/1.1 handshake only. */
const NOT_ON_H2 = new Set(['connection', 'upgrade', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'sec-websocket-accept']);

function h2ResponseHeaders(list: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < list.length; i += 2) if (!NOT_ON_H2.has(list[i])) out.push(list[i], list[i + 1]);
  return out;
}

/** A request target that would split the request line (SP, CTL, DEL). */
const BAD_TARGET = /[\x00-\x20\x7f]/;
/** Optional whitespace around a field value (SP and HTAB only, RFC 9110 §5.6.3). */
const OWS_EDGES = /^[ \t]+|[ \t]+$/g;

interface ParsedHead {
  status: number;
  reason: string;
  headers: string[];
  contentLength: number | null;
  /** `Transfer-Encoding: chunked` body (kept as is for an HTTP/1.1 client, decoded for HTTP/2). */
  chunked: boolean;
}

/**
 * Status line and headers of an HTTP/1.1 response head; hop-by-hop kept only for 101 (and
 * Transfer-Encoding, whose framing the relayed bytes still carry); `server` replaced by `server` (kept
 * when null: ProxyConfig `proxyHeaders.server.disabled`). As the
 * upstream client's response parser: a bare LF, a NUL or another CTL anywhere, a name that is not
 * a token (or with whitespace before the colon), a non-digit or conflicting Content-Length make the
 * head invalid (null: 502), so nothing a client could read as another line is relayed.
 */
function parseHead(text: string, server: string | null): ParsedHead | null {
  const lines = text.split('\r\n');
  const m = /^HTTP\/1\.[01] ([1-9]\d{2})(?: (.*))?$/.exec(lines[0]);
  if (m === null || !isHeaderValue(m[2] ?? '')) return null;
  const status = Number(m[1]);
  const headers: string[] = [];
  let contentLength: number | null = null;
  let chunked = false;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(':');
    if (colon <= 0) return null;
    const rawName = line.slice(0, colon);
    if (!isHeaderName(rawName)) return null;
    const name = rawName.toLowerCase();
    const value = line.slice(colon + 1).replace(OWS_EDGES, '');
    if (!isHeaderValue(value)) return null;
    // `server` is ours, unless ProxyConfig proxyHeaders.server is disabled (null: the upstream's passes).
    if (name === 'server' && server !== null) continue;
    // Istio's metadata exchange stops at the proxy (sidecar/peer-metadata.ts): a destination
    // sidecar's answer to the upgrade never reaches the client.
    if (name.length >= 21 && (name === 'x-envoy-peer-metadata' || name === 'x-envoy-peer-metadata-id')) continue;
    if (status !== 101 && (name === 'connection' || name === 'upgrade' || name === 'keep-alive')) continue;
    if (name === 'content-length') {
      if (!/^[0-9]{1,15}$/.test(value)) return null;
      const n = Number(value);
      if (contentLength !== null && contentLength !== n) return null;
      if (contentLength !== null) continue; // an identical repeat: relayed once
      contentLength = n;
    }
    if (name === 'transfer-encoding' && /(?:^|,)\s*chunked\s*$/i.test(value)) chunked = true;
    headers.push(name, value);
  }
  if (server !== null) headers.push('server', server);
  if (status !== 101) headers.push('connection', 'close');
  // RFC 9112 §6.3: chunked framing wins over Content-Length.
  return { status, reason: m[2] ?? '', headers, contentLength: chunked ? null : contentLength, chunked };
}

/**
 * Removes HTTP/1.1 chunked framing (RFC 9112 §7.1) from a relayed body: `data` gets the payload,
 * `end` is called after the last chunk and its trailers (dropped). Malformed framing ends it too.
 */
class ChunkedDecoder {
  /** 0 size line, 1 data, 2 CRLF after data, 3 trailer section, 4 done. */
  #state = 0;
  #remaining = 0;
  #line = '';
  readonly #data: (c: Buffer) => void;
  readonly #end: () => void;

  constructor(data: (c: Buffer) => void, end: () => void) {
    this.#data = data;
    this.#end = end;
  }

  push(c: Buffer): void {
    let i = 0;
    while (i < c.length && this.#state !== 4) {
      if (this.#state === 1) {
        const n = Math.min(this.#remaining, c.length - i);
        this.#data(c.subarray(i, i + n));
        i += n;
        if ((this.#remaining -= n) === 0) this.#state = 2;
        continue;
      }
      const nl = c.indexOf(10, i);
      const end = nl === -1 ? c.length : nl;
      this.#line += c.toString('latin1', i, end);
      i = end;
      if (nl === -1) {
        if (this.#line.length > 4096) this.#finish();
        break;
      }
      i++;
      const line = this.#line.trim();
      this.#line = '';
      if (this.#state === 0) {
        const size = parseInt(line.split(';')[0], 16);
        if (!Number.isFinite(size) || size < 0) return this.#finish();
        if (size === 0) this.#state = 3;
        else {
          this.#remaining = size;
          this.#state = 1;
        }
      } else if (this.#state === 2) {
        this.#state = 0;
      } else if (line === '') {
        this.#finish();
      }
    }
  }

  #finish(): void {
    this.#state = 4;
    this.#end();
  }
}

function noop(): void {}

