/**
 * Exchange: one downstream request and, when it is forwarded, its upstream request.
 *
 * One object per request plays three parts so nothing else is allocated for them: the route
 * matcher's `MatchInput`, the state of the proxied request, and the undici dispatch handler. It
 * uses undici's native handler callbacks (`onConnect`/`onHeaders`/`onData`/`onComplete`/`onError`):
 * the newer controller API wraps them in an adapter that parses every response head into an
 * object, which costs a per-request allocation and a header parse we would then undo.
 */

import type { Readable } from 'node:stream';
import { applyHeaderOps } from '../compile/header-ops.js';
import type { CompiledDestination, CompiledEndpoint, CompiledRoute, EndpointHandle, MatchInput } from '../compile/types.js';
import type { UpstreamRequest } from '../upstream/client.js';
import { ResponseVerdict, type CallOwner, type UpstreamCall } from '../upstream/upstream-call.js';
import { buildDownstreamResponseHeaders, setAttemptCount, type ForwardMode } from './forward-headers.js';
import { syncRequestPeerMetadata, takePeerMetadata, type LocalPeerMetadata } from '../sidecar/peer-metadata.js';
import { classifyUpstreamError, Errors, nginxStatus, sendLocalError, type LocalError } from './local-reply.js';
import { endGrpcCallDeadline, grpcStatusIn, isTrailersOnly, trailerPairs } from './grpc.js';
import { plainAddress, type Downstream, type DownstreamOwner } from './downstream.js';
import { Base64Encoder, grpcWebResponseHeaders, grpcWebTrailerFrame, type GrpcWebMode } from './grpc-web.js';
import type { RequestRecord } from '../../observability/record.js';
import type { AuthHeaderEdits } from '../filters/jwt.js';
import { internalFailure } from './internal-failure.js';

/** Reasons passed to undici's abort; preallocated (no stack trace per request). */
const TIMEOUT = Object.assign(new Error('meshgate: route timeout'), { code: 'MG_ERR_UPSTREAM_TIMEOUT' });
const DOWNSTREAM_GONE = Object.assign(new Error('meshgate: downstream closed'), { code: 'MG_ERR_DOWNSTREAM_CLOSED' });

const enum Phase {
  /** Routing / waiting for the upstream response head. */
  Waiting,
  /** Response head written downstream; body streaming. */
  Streaming,
  /** Finished: completed, failed, timed out or the client went away. Later callbacks are ignored. */
  Done,
}

export class Exchange implements MatchInput, CallOwner, DownstreamOwner {
  // --- MatchInput ---
  readonly method: string;
  readonly path: string;
  readonly scheme: string;
  readonly authority: string;
  readonly port: number;
  /** Raw query (after `?`), '' when none. */
  readonly query: string;
  #params: Map<string, string> | null = null;

  /** The downstream request and its response (whatever engine carries them). */
  readonly d: Downstream;

  // --- proxy state ---
  #phase = Phase.Waiting;
  #abort: ((err?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  #timer: NodeJS.Timeout | null = null;
  #endpoint: EndpointHandle | null = null;
  #route: CompiledRoute | null = null;
  #destination: CompiledDestination | null = null;
  /**
   * The timeout is a gRPC deadline (`grpc-timeout`): it covers the whole call, not only the wait for
   * the response head.
   */
  grpcDeadline = false;
  /** gRPC-Web request translated to gRPC (`grpc-web.ts`): 0 no, 1 binary, 2 base64 text. Set before `forward`. */
  grpcWeb: GrpcWebMode = 0;
  /** Body sent upstream when not the request's own (a decoded gRPC-Web text body); null = `d.body`. */
  requestBody: Readable | null = null;
  #b64: Base64Encoder | null = null;
  /** What metrics, access log and tracing will read; null when observability is off. */
  record: RequestRecord | null = null;
  /** Upstream header edits decided by JWT authentication (filters/security.ts); null = none. */
  authEdits: AuthHeaderEdits | null = null;
  /** Claims of the JWT verified for this request (filters/security.ts), for claim matches; null = none. */
  jwtClaims: Record<string, unknown> | null = null;
  /** performance.now() when the upstream request was dispatched (for upstream service time). */
  #sentAt = 0;
  /**
   * Envoy's debug headers on: performance.now() when the downstream request was complete (its end
   * received), for x-envoy-upstream-service-time; 0 = not complete (yet), -1 = no header to set
   * (ProxyConfig envoyDebugHeaders disabled).
   */
  #requestDoneAt = -1;
  /** Retries, circuit breaking, outlier reporting (upstream/upstream-call.ts); null when the route and cluster use none. */
  #call: UpstreamCall | null = null;
  /** Response headers added by the gateway (CORS, a generated sticky cookie), as name/value pairs; null = none. */
  extraResponseHeaders: string[] | null = null;
  /** Lowercase names of upstream response headers dropped before `extraResponseHeaders` are added (ingress-nginx CORS replaces the backend's); null = none. */
  replacedResponseHeaders: string[] | null = null;
  /** Set on a sidecar's requests (forward-headers.ts `ForwardMode`): attempt counting, metadata-exchange headers dropped from answers. */
  sidecarMode: ForwardMode | null = null;
  /** A sidecar's outbound request, or the gateway's as a mesh client: the proxy's metadata-exchange headers, sent to Istio mTLS endpoints only (kept right across retries). */
  peerMetadata: LocalPeerMetadata | null = null;
  /** A sidecar's inbound request from a peer that sent metadata-exchange headers: the proxy's own to answer with. */
  peerMetadataReply: readonly string[] | null = null;
  /** Reading and dropping the body of an answer that is being retried. */
  #draining = false;
  /** A sticky cookie generated for this request (consistent hash by cookie): name and value. */
  #sticky: [string, string] | null = null;

  constructor(d: Downstream, method: string, path: string, query: string, scheme: string, authority: string, port: number) {
    this.d = d;
    this.method = method;
    this.path = path;
    this.query = query;
    this.scheme = scheme;
    this.authority = authority;
    this.port = port;
  }

  header(name: string): string | null {
    const raw = this.d.rawHeaders;
    let out: string | null = null;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i];
      if (n.length === name.length && n.toLowerCase() === name) out = out === null ? raw[i + 1] : `${out},${raw[i + 1]}`;
    }
    return out;
  }

  queryParam(name: string): string | null {
    if (this.query === '') return null;
    const params = (this.#params ??= parseQuery(this.query));
    return params.get(name) ?? null;
  }

  // --- HashInput / CallOwner (upstream/load-balancer.ts, upstream/upstream-call.ts) ---

  get clientAddress(): string {
    return plainAddress(this.d.remoteAddress);
  }

  setResponseCookie(setCookie: string, name: string, value: string): void {
    const extra = (this.extraResponseHeaders ??= []);
    // A cookie re-issued by a retry (session-cookie-change-on-failure) replaces the one of the failed try.
    const previous = this.#sticky !== null && this.#sticky[0] === name ? extra.findIndex((v, i) => i % 2 === 1 && extra[i - 1] === 'set-cookie' && v.startsWith(`${name}=`)) : -1;
    if (previous !== -1) extra[previous] = setCookie;
    else extra.push('set-cookie', setCookie);
    this.#sticky = [name, value];
  }

  setResponseSession(name: string, value: string): void {
    (this.extraResponseHeaders ??= []).push(name, value);
    this.#sticky = [name, value];
  }

  stickyCookie(name: string): string | null {
    return this.#sticky !== null && this.#sticky[0] === name ? this.#sticky[1] : null;
  }

  get waiting(): boolean {
    return this.#phase === Phase.Waiting;
  }

  /** Sends one try of the request (UpstreamCall); the previous try, if any, is over. */
  dispatchTo(endpoint: CompiledEndpoint, opts: UpstreamRequest): void {
    const handle = endpoint.handle!;
    if (this.#endpoint !== handle) {
      if (this.#endpoint !== null) this.#endpoint.active--;
      this.#endpoint = handle;
      handle.active++;
    }
    this.#abort = null;
    if (this.record !== null) {
      this.record.upstreamHost = endpoint.key;
      if (this.#call!.tries > 1) this.record.attempts++;
    }
    // The gateway (sidecarMode null) and a sidecar's outbound side count tries.
    if (this.#call!.tries > 1 && this.sidecarMode !== 'sidecar-inbound') {
      // With ProxyConfig attemptCount disabled the header is the client's own, passed on unchanged.
      if (this.d.proxyHeaders === null || this.d.proxyHeaders.attemptCount) setAttemptCount(opts.headers, this.#call!.tries);
      // A retry may go to an endpoint of another TLS mode (auto mTLS is per endpoint).
      if (this.peerMetadata !== null) syncRequestPeerMetadata(opts.headers, this.peerMetadata, endpoint.tls?.mode === 'ISTIO_MUTUAL');
    }
    handle.dispatcher.dispatch(opts, this);
  }

  /** Ends the request with a local answer (circuit-breaker overflow, no endpoint left for a retry). */
  fail(e: LocalError): void {
    if (this.#phase !== Phase.Waiting) return;
    this.#finish();
    sendLocalError(this.d, e);
  }

  /**
   * Sends the request to `endpoint`. `headers` are the final upstream request headers; `target`
   * is the (possibly rewritten) path and query. With `call`, the call dispatches (and retries).
   */
  forward(endpoint: EndpointHandle, route: CompiledRoute, destination: CompiledDestination, target: string, headers: string[], hasBody: boolean, timeoutMs: number, call: UpstreamCall | null = null): void {
    this.#endpoint = endpoint;
    this.#route = route;
    this.#destination = destination;
    endpoint.active++;
    if (this.record !== null) {
      this.record.upstreamHost = endpoint.host;
      this.record.attempts++;
      this.#sentAt = performance.now();
    }
    this.d.owner = this;
    // Envoy's router on Istio's gateways and sidecars, both sides (not suppressed unless ProxyConfig
    // envoyDebugHeaders is disabled: gateway.go, listener.go, listener_inbound.go) answers with
    // x-envoy-upstream-service-time, measured from the moment the downstream request was complete.
    if (this.d.proxyHeaders === null || this.d.proxyHeaders.debugHeaders) this.#watchRequestEnd(hasBody);
    if (timeoutMs > 0) this.#timer = setTimeout(onTimeout, timeoutMs, this);
    const opts: UpstreamRequest = {
      path: target,
      method: this.method,
      headers,
      body: hasBody ? (this.requestBody ?? this.d.body) : null,
    };
    const http10 = route.action.kind === 'forward' ? route.action.http10 : undefined;
    if (http10 !== undefined) {
      opts.http10 = true;
      opts.http10BodyLimit = http10.bodyLimit;
    }
    this.#call = call;
    if (call === null) endpoint.dispatcher.dispatch(opts, this);
    else call.begin(opts);
  }

  #watchRequestEnd(hasBody: boolean): void {
    const body = hasBody ? this.d.body : null;
    if (body === null || body.readableEnded) {
      this.#requestDoneAt = performance.now();
      return;
    }
    this.#requestDoneAt = 0;
    body.once('end', () => {
      this.#requestDoneAt = performance.now();
    });
  }

  // --- undici handler ---
  // Each callback runs inside the upstream client's socket handlers: a throw from the request
  // path (a head the engine refuses, a filter) must not leave them (it would end the worker).

  onConnect(abort: (err?: Error) => void): void {
    try {
      this.#onConnect(abort);
    } catch (err) {
      this.#internalFailure(err);
    }
  }

  onHeaders(statusCode: number, rawHeaders: string[], resume: () => void): boolean {
    try {
      return this.#onHeaders(statusCode, rawHeaders, resume);
    } catch (err) {
      this.#internalFailure(err);
      return false;
    }
  }

  onData(chunk: Buffer): boolean {
    try {
      return this.#onData(chunk);
    } catch (err) {
      this.#internalFailure(err);
      return false;
    }
  }

  onComplete(trailers?: unknown): void {
    try {
      this.#onComplete(trailers);
    } catch (err) {
      this.#internalFailure(err);
    }
  }

  onError(err: Error): void {
    try {
      this.#onError(err);
    } catch (e) {
      this.#internalFailure(e);
    }
  }

  /** A callback threw: the upstream request is aborted, the client answered 500 or reset. */
  #internalFailure(err: unknown): void {
    const abort = this.#abort;
    this.#abort = null;
    try {
      if (this.#phase !== Phase.Done) this.#finish();
    } catch {
      // keep going: the client must still get an answer
    }
    internalFailure(this.d, err, 'upstream response handling');
    if (abort !== null) {
      try {
        abort(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // the upstream connection is closed by its client either way
      }
    }
  }

  #onConnect(abort: (err?: Error) => void): void {
    this.#abort = abort;
    if (this.#call !== null) this.#call.connected(abort);
    // The request may have timed out or lost its client while it waited for a connection.
    if (this.#phase === Phase.Done) abort(DOWNSTREAM_GONE);
  }

  #onHeaders(statusCode: number, rawHeaders: string[], resume: () => void): boolean {
    if (this.#phase !== Phase.Waiting) return false;
    // 1xx interim responses are not relayed (Node answers `Expect: 100-continue` itself).
    if (statusCode < 200) return true;
    // A retriable answer is dropped (read to its end, or the try aborted) and retried.
    if (this.#call !== null) {
      const verdict = this.#call.onResponse(statusCode, rawHeaders);
      if (verdict !== ResponseVerdict.Relay) return (this.#draining = verdict === ResponseVerdict.DrainThenRetry);
    }
    if (!this.grpcDeadline) this.#clearTimer();
    this.#phase = Phase.Streaming;
    // Envoy sets x-envoy-upstream-service-time (whole ms) only when the request was complete before
    // the answer came (router.cc onUpstreamHeaders); the upstream's own is replaced. One clock read
    // serves it and the record.
    const doneAt = this.#requestDoneAt;
    const now = doneAt > 0 || this.record !== null ? performance.now() : 0;
    if (this.record !== null) this.record.upstreamServiceTime = now - this.#sentAt;
    this.#resume = resume;
    const ph = this.d.proxyHeaders;
    let headers = buildDownstreamResponseHeaders(rawHeaders, ph === null ? undefined : ph.server, doneAt > 0);
    if (doneAt > 0) headers.push('x-envoy-upstream-service-time', String(Math.floor(now - doneAt)));
    // Responses: destination-level edits first, then route-level (IR HeaderOps order).
    const destOps = this.#destination!.responseHeaders;
    if (destOps !== null) headers = applyHeaderOps(headers, destOps);
    const routeOps = this.#route!.responseHeaders;
    if (routeOps !== null) headers = applyHeaderOps(headers, routeOps);
    if (this.replacedResponseHeaders !== null) headers = dropHeaders(headers, this.replacedResponseHeaders);
    // Istio's metadata exchange (x-envoy-peer-metadata*) stops at the sidecar, as Envoy's filter
    // consumes it: a destination sidecar's answer says who served (outbound telemetry); an inbound
    // peer that sent its own gets this proxy's (the app's own are never relayed).
    if (this.sidecarMode !== null) {
      const peer = takePeerMetadata(headers);
      if (peer !== null && this.record !== null && this.sidecarMode === 'sidecar-outbound') this.record.upstreamPeerMetadata = peer;
      if (this.peerMetadataReply !== null) for (const h of this.peerMetadataReply) headers.push(h);
    } else if (this.peerMetadata !== null) {
      // The gateway as a mesh client reads and strips them as Istio's gateways do (their filter has
      // upstream discovery): the destination's workload for reporter="source"; never to the client.
      const peer = takePeerMetadata(headers);
      if (peer !== null && this.record !== null) this.record.upstreamPeerMetadata = peer;
    }
    if (this.extraResponseHeaders !== null) for (const h of this.extraResponseHeaders) headers.push(h);
    const d = this.d;
    if (this.grpcWeb !== 0) {
      headers = grpcWebResponseHeaders(headers, d);
      // A trailers-only answer keeps grpc-status in the headers (PROTOCOL-WEB.md allows it).
      if (isTrailersOnly(headers)) {
        this.#finish();
        d.respond(statusCode, headers, null);
        return true;
      }
      if (this.grpcWeb === 2) this.#b64 = new Base64Encoder();
    }
    // gRPC trailers-only answer to an HTTP/2 client: one HEADERS frame that ends the stream.
    if (d.http2 && isTrailersOnly(headers) && !d.headersSent && !d.destroyed) {
      this.#finish();
      d.respond(statusCode, headers, null);
      return true;
    }
    d.writeHead(statusCode, headers);
    return true;
  }

  #onData(chunk: Buffer): boolean {
    if (this.#draining) return true;
    if (this.#phase !== Phase.Streaming) return false;
    if (this.#b64 !== null) chunk = this.#b64.encode(chunk);
    if (this.record !== null) this.record.bytesSent += chunk.length;
    // false pauses undici's socket until 'drain' calls resume: back-pressure towards the upstream.
    return this.d.write(chunk);
  }

  #onComplete(trailers?: unknown): void {
    if (this.#draining) return this.#retryAfterDrain();
    if (this.#phase !== Phase.Streaming) return;
    this.#finish();
    if (this.record !== null && trailers != null) this.record.trailerGrpcStatus = grpcStatusIn(trailers);
    if (this.grpcWeb !== 0) {
      // gRPC-Web: the trailers travel as the body's last frame.
      const frame = grpcWebTrailerFrame(trailers);
      const tail = this.#b64 !== null ? this.#b64.finish(frame) : frame;
      if (this.record !== null) this.record.bytesSent += tail.length;
      this.d.end(tail);
      return;
    }
    // Trailers (gRPC's grpc-status) reach HTTP/2 clients; HTTP/1.1 responses are not re-chunked for them.
    this.d.end(null, this.d.http2 ? trailerPairs(trailers) : null);
  }

  #onError(err: Error): void {
    const phase = this.#phase;
    if (phase === Phase.Done) return;
    if (this.#draining && err !== TIMEOUT) return this.#retryAfterDrain();
    this.#draining = false;
    if (phase === Phase.Waiting && this.#call !== null && this.#call.onTryError(err)) {
      this.#abort = null; // that try is over; a retry is scheduled
      return;
    }
    const retried = this.#call !== null && this.#call.tries > 1;
    this.#finish();
    if (phase === Phase.Streaming || this.d.headersSent) {
      // Never present a truncated body as complete: reset the downstream connection.
      if (this.record !== null && this.record.flags === '-') this.record.flags = 'UC';
      this.d.reset(err);
      return;
    }
    const envoy = err === TIMEOUT ? Errors.timeout : classifyUpstreamError(err);
    const e = this.#route?.action.kind === 'forward' && this.#route.action.nginxErrors === true ? nginxStatus(envoy) : envoy;
    sendLocalError(this.d, e, e === Errors.badRequest);
    // Envoy `URX` (after the failure's own flag, as Envoy orders them: `UF,URX`): retries were spent.
    if (retried && this.record !== null) this.record.flags = this.record.flags === '-' ? 'URX' : `${this.record.flags},URX`;
  }

  // --- events ---

  /** Route timeout (ForwardAction.timeoutMs) before the response head arrived: 504 UT. */
  timedOut(): void {
    this.#timer = null;
    if (this.#phase === Phase.Streaming && this.grpcDeadline) {
      // The gRPC deadline passed mid-response: DEADLINE_EXCEEDED in the trailers, upstream cancelled.
      const abort = this.#abort;
      this.#finish();
      if (abort !== null) abort(TIMEOUT);
      if (this.record !== null) this.record.trailerGrpcStatus = '4'; // DEADLINE_EXCEEDED
      endGrpcCallDeadline(this.d);
      return;
    }
    if (this.#phase !== Phase.Waiting) return;
    if (this.#abort !== null) {
      this.#abort(TIMEOUT); // undici calls onError(TIMEOUT) -> 504
      return;
    }
    // Still queued for a connection: answer now; onConnect aborts later.
    this.#finish();
    sendLocalError(this.d, Errors.timeout);
  }

  /** The downstream response closed: finished normally, or the client went away. */
  responseClosed(): void {
    if (this.#phase === Phase.Done) return;
    this.#finish();
    if (this.#abort !== null) this.#abort(DOWNSTREAM_GONE);
  }

  drained(): void {
    if (this.#phase === Phase.Streaming && this.#resume !== null) this.#resume();
  }

  #retryAfterDrain(): void {
    this.#draining = false;
    this.#abort = null;
    if (this.#phase === Phase.Waiting) this.#call!.drained();
  }

  #finish(): void {
    this.#phase = Phase.Done;
    this.#clearTimer();
    if (this.#call !== null) this.#call.finish();
    if (this.#endpoint !== null) {
      this.#endpoint.active--;
      this.#endpoint = null;
    }
  }

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }
}

function onTimeout(x: Exchange): void {
  x.timedOut();
}

/** Raw query parameters: first value wins; `?k` has value ''. Not percent-decoded (as Envoy). */
function parseQuery(query: string): Map<string, string> {
  const params = new Map<string, string>();
  let start = 0;
  while (start <= query.length) {
    let end = query.indexOf('&', start);
    if (end === -1) end = query.length;
    if (end > start) {
      const pair = query.slice(start, end);
      const eq = pair.indexOf('=');
      const name = eq === -1 ? pair : pair.slice(0, eq);
      if (!params.has(name)) params.set(name, eq === -1 ? '' : pair.slice(eq + 1));
    }
    start = end + 1;
  }
  return params;
}

/** `headers` (name/value pairs) without the pairs whose lowercase name is in `names`. */
function dropHeaders(headers: string[], names: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (!names.includes(headers[i].toLowerCase())) out.push(headers[i], headers[i + 1]);
  return out;
}
