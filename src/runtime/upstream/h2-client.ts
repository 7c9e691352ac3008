/**
 * meshgate's HTTP/2 upstream client on node:http2 sessions, driven through the `UpstreamClient`
 * protocol (`client.ts`). Used for clusters whose protocol is HTTP2 (gRPC, `h2UpgradePolicy:
 * UPGRADE`, `http2`/`grpc` Service ports; translate decides, the runtime sees `protocol`).
 *
 * - Plaintext endpoints are reached with prior knowledge (h2c), as Envoy does; over TLS, `h2` and
 *   `http/1.1` are offered by ALPN and a server that picks HTTP/1.1 is served by an HTTP/1.1 pool
 *   (`h1-client.ts`) from then on.
 * - Each session carries up to `maxConcurrentStreams` streams (100, or less when the server's
 *   SETTINGS say so); beyond, another session opens, up to `connections` sessions; then requests
 *   wait in a FIFO queue.
 * - Trailers (gRPC's `grpc-status`) go to onComplete as the headers object node:http2 gives.
 * - Request bodies are relayed into the stream (back-pressure by the stream's window), not piped:
 *   the last chunk is held until the body ends or the event loop's check phase (setImmediate, one
 *   for all requests), so a body that is complete when it arrives (a gRPC unary message: one DATA
 *   frame with END_STREAM, whose data and end node:http2 delivers in two callbacks) goes out as one
 *   DATA frame carrying END_STREAM instead of a DATA frame and an empty one in a second write.
 *   Response data goes through onData, a `false` pauses the stream until `resume()`.
 * - A request body that fails (its client reset the stream) resets the upstream stream (CANCEL):
 *   the upstream never sees END_STREAM after a truncated body.
 * - GOAWAY: the session takes no new stream. A stream the server refused before processing it
 *   (RST_STREAM REFUSED_STREAM, or an id above GOAWAY's last stream id) and with no body consumed is
 *   sent once more on another session. Other stream failures end the request (503 `UC`).
 * - A session idle (no stream, no frame) for `idleTimeoutMs` is closed.
 */

import http2, { type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Readable } from 'node:stream';
import { upstreamError, type UpstreamClient, type UpstreamClientStats, type UpstreamHandler, type UpstreamRequest } from './client.js';
import type { H1Client } from './h1-client.js';
import type { UpstreamTlsConnect } from './upstream-tls.js';

/** Streams per upstream HTTP/2 connection (Envoy's default is unlimited; gRPC servers commonly allow 100). */
export const H2_MAX_CONCURRENT_STREAMS = 100;

export interface H2ClientOptions {
  host: string;
  port: number;
  /** Max sessions to the endpoint. */
  connections: number;
  /** TCP connect (+ TLS handshake) + HTTP/2 preface limit, ms; 0 = none. */
  connectTimeoutMs: number;
  /** A session with no stream is closed after this long without frames, ms. */
  idleTimeoutMs: number;
  tls: UpstreamTlsConnect | null;
  /** Builds the HTTP/1.1 pool used when a TLS server chooses `http/1.1` by ALPN. */
  http1Fallback: () => H1Client;
  /** Source address of upstream connections (as `H1ClientOptions.localAddress`); absent = the kernel's choice. */
  localAddress?: string;
}

const { NGHTTP2_CANCEL, NGHTTP2_REFUSED_STREAM } = http2.constants;
const kRequest = Symbol('meshgate.h2request');
const kRelay = Symbol('meshgate.h2relay');
const SESSION_OPTIONS = { settings: { enablePush: false } };
type TaggedStream = ClientHttp2Stream & { [kRequest]?: H2Request };
type TaggedBody = Readable & { [kRelay]?: H2Request };

const enum ReqState {
  Queued,
  Active,
  Done,
}

class H2Session {
  /** null while the TLS handshake (and ALPN) is under way. */
  session: ClientHttp2Session | null = null;
  /** The session's socket (TLS: before the session exists too). */
  socket: net.Socket | null = null;
  /** Streams open. */
  active = 0;
  max = H2_MAX_CONCURRENT_STREAMS;
  connecting = true;
  /** GOAWAY received or closing: no new stream. */
  draining = false;
  /** Last stream id GOAWAY said the server processes; -1 = no GOAWAY. */
  goawayLastId = -1;
  error: Error | null = null;
  timer: NodeJS.Timeout | null = null;

  get available(): boolean {
    return !this.connecting && !this.draining && this.session !== null && !this.session.destroyed && this.active < this.max;
  }

  destroy(): void {
    this.session?.destroy();
    this.socket?.destroy();
  }

  close(): void {
    if (this.session !== null) this.session.close();
    else this.socket?.destroy();
  }
}

class H2Request {
  state = ReqState.Queued;
  session: H2Session | null = null;
  stream: ClientHttp2Stream | null = null;
  responded = false;
  retried = false;
  trailers: IncomingHttpHeaders | null = null;
  error: Error | null = null;
  /** The request body being relayed into `stream` (a Readable body), its chunk not yet written. */
  body: Readable | null = null;
  held: Buffer | null = null;
  flushQueued = false;
  waitingDrain = false;
  readonly abort: (err?: Error) => void;
  readonly resume: () => void;

  constructor(
    readonly client: H2Client,
    readonly opts: UpstreamRequest,
    readonly handler: UpstreamHandler,
  ) {
    this.abort = (err?: Error): void => client.abortRequest(this, err ?? upstreamError('UND_ERR_ABORTED', 'Request aborted'));
    this.resume = (): void => {
      if (this.state === ReqState.Active) this.stream?.resume();
    };
  }

  get replayable(): boolean {
    return !this.retried && (this.opts.body === null || Buffer.isBuffer(this.opts.body));
  }
}

export class H2Client implements UpstreamClient {
  readonly options: H2ClientOptions;
  readonly #stats: UpstreamClientStats = { connected: 0, pending: 0, running: 0 };
  readonly #sessions = new Set<H2Session>();
  #queue: H2Request[] = [];
  #closed = false;
  #destroyed = false;
  #onClosed: (() => void) | null = null;
  #closePromise: Promise<void> | null = null;
  #tlsSession: Buffer | undefined = undefined;
  /** Set once a TLS server chose HTTP/1.1 by ALPN: every request goes there. */
  #h1: H1Client | null = null;
  readonly #origin: string;
  readonly #scheme: string;

  constructor(options: H2ClientOptions) {
    this.options = options;
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    this.#scheme = options.tls === null ? 'http' : 'https';
    this.#origin = `${this.#scheme}://${host}:${options.port}`;
  }

  get stats(): UpstreamClientStats {
    const h1 = this.#h1;
    if (h1 === null) return this.#stats;
    const a = this.#stats;
    const b = h1.stats;
    return { connected: a.connected + b.connected, pending: a.pending + b.pending, running: a.running + b.running };
  }

  get closed(): boolean {
    return this.#closed;
  }

  dispatch(opts: UpstreamRequest, handler: UpstreamHandler): boolean {
    if (this.#h1 !== null) return this.#h1.dispatch(opts, handler);
    if (this.#closed) {
      handler.onError(upstreamError(this.#destroyed ? 'UND_ERR_DESTROYED' : 'UND_ERR_CLOSED', 'The client is closed'));
      return false;
    }
    const r = new H2Request(this, opts, handler);
    this.#stats.pending++;
    handler.onConnect(r.abort);
    if (r.state === ReqState.Done) return true;
    const failure = this.options.tls?.failure ?? null;
    if (failure !== null) {
      // TLS files that could not be read: every request fails, never in plaintext.
      r.state = ReqState.Done;
      this.#stats.pending--;
      handler.onError(failure);
      return true;
    }
    this.#enqueue(r, false);
    return true;
  }

  #enqueue(r: H2Request, first: boolean): void {
    for (const s of this.#sessions) {
      if (s.available) {
        this.#start(r, s);
        return;
      }
    }
    if (first) this.#queue.unshift(r);
    else this.#queue.push(r);
    this.#maybeConnect();
  }

  #maybeConnect(): void {
    let capacity = 0;
    for (const s of this.#sessions) if (s.connecting) capacity += s.max;
    while (this.#stats.pending > capacity && this.#sessions.size < this.options.connections && !this.#closed && this.#h1 === null) {
      this.#connect();
      capacity += H2_MAX_CONCURRENT_STREAMS;
    }
  }

  #connect(): void {
    const o = this.options;
    const s = new H2Session();
    this.#sessions.add(s);
    this.#stats.connected++;
    if (o.connectTimeoutMs > 0) s.timer = setTimeout(onConnectTimeout, o.connectTimeoutMs, s, o.connectTimeoutMs);
    const t = o.tls;
    if (t === null) {
      // The socket is ours (not node:http2's) so that destroying the session always closes it,
      // even when a GOAWAY left node:http2 waiting for the server to close first.
      const plain = net.connect({ host: o.host, port: o.port, ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }) });
      s.socket = plain;
      plain.on('error', (err: Error) => {
        s.error ??= err;
      });
      this.#attach(s, http2.connect(this.#origin, { ...SESSION_OPTIONS, createConnection: () => plain }));
      return;
    }
    // TLS first, HTTP/2 only once ALPN chose h2 (a server choosing http/1.1 gets an HTTP/1.1 pool).
    let socket: TLSSocket;
    try {
      // ISTIO_MUTUAL: the workload certificate current now (or why there is none).
      const options = t.perConnection === null ? t.options : t.perConnection();
      if (options instanceof Error) throw options;
      socket = tls.connect({ ...options, host: o.host, port: o.port, ALPNProtocols: t.alpn ?? ['h2', 'http/1.1'], session: this.#tlsSession, ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }) });
    } catch (err) {
      // Options OpenSSL refuses (a malformed PEM): the connection fails with that error.
      s.error = err as Error;
      this.#sessionClosed(s);
      return;
    }
    s.socket = socket;
    socket.on('session', (ticket: Buffer) => (this.#tlsSession = ticket));
    socket.on('error', (err: Error) => {
      s.error ??= err;
    });
    socket.once('close', () => {
      if (s.session === null) this.#sessionClosed(s);
    });
    socket.once('secureConnect', () => {
      // Istio sidecars answer `h2` to `istio-h2`; a peer echoing `istio-h2` speaks HTTP/2 too.
      if (socket.alpnProtocol !== 'h2' && socket.alpnProtocol !== 'istio-h2') this.#fallBackToHttp1(socket, s);
      else this.#attach(s, http2.connect(this.#origin, { ...SESSION_OPTIONS, createConnection: () => socket }));
    });
  }

  #attach(s: H2Session, session: ClientHttp2Session): void {
    s.session = session;
    // Ready once the server's SETTINGS arrived (its first frame): streams then respect its limit.
    session.on('remoteSettings', (rs) => {
      if (rs.maxConcurrentStreams !== undefined) s.max = Math.max(1, Math.min(H2_MAX_CONCURRENT_STREAMS, rs.maxConcurrentStreams));
      if (s.connecting) {
        this.#connected(s);
        return;
      }
      this.#drainQueue();
      this.#maybeConnect();
    });
    session.on('goaway', (_code: number, lastStreamId: number) => {
      s.draining = true;
      s.goawayLastId = lastStreamId;
      if (s.active === 0) s.destroy();
      this.#maybeConnect();
    });
    session.on('error', (err: Error) => {
      s.error ??= err;
    });
    session.on('close', () => this.#sessionClosed(s));
    session.setTimeout(this.options.idleTimeoutMs, () => {
      if (s.active === 0) session.close();
    });
  }

  /** A TLS server chose HTTP/1.1: this socket and every later request go to an HTTP/1.1 pool. */
  #fallBackToHttp1(socket: TLSSocket, s: H2Session): void {
    const h1 = (this.#h1 ??= this.options.http1Fallback());
    if (s.timer !== null) clearTimeout(s.timer);
    s.timer = null;
    s.socket = null;
    this.#sessions.delete(s);
    this.#stats.connected--;
    socket.removeAllListeners('close');
    h1.adopt(socket);
    const queued = this.#queue;
    this.#queue = [];
    for (const r of queued) {
      if (r.state !== ReqState.Queued) continue;
      r.state = ReqState.Done;
      this.#stats.pending--;
      h1.dispatch(r.opts, r.handler);
    }
    for (const other of this.#sessions) other.destroy();
    this.#checkClosed();
  }

  #connected(s: H2Session): void {
    s.connecting = false;
    if (s.timer !== null) {
      clearTimeout(s.timer);
      s.timer = null;
    }
    this.#drainQueue();
    // The server may allow fewer streams than assumed: open more sessions for the rest.
    this.#maybeConnect();
  }

  #drainQueue(): void {
    while (this.#queue.length > 0) {
      let target: H2Session | null = null;
      for (const s of this.#sessions) {
        if (s.available) {
          target = s;
          break;
        }
      }
      if (target === null) return;
      const r = this.#queue.shift()!;
      if (r.state === ReqState.Queued) this.#start(r, target);
    }
  }

  #start(r: H2Request, s: H2Session): void {
    const opts = r.opts;
    const body = opts.body;
    const headers = this.#headers(opts);
    let stream: ClientHttp2Stream;
    try {
      stream = s.session!.request(headers, { endStream: body === null || (Buffer.isBuffer(body) && body.length === 0) });
    } catch (err) {
      this.#stats.pending--;
      r.state = ReqState.Done;
      r.handler.onError(err as Error);
      this.#checkClosed();
      return;
    }
    this.#stats.pending--;
    this.#stats.running++;
    if (s.active++ === 0) s.session!.ref();
    r.state = ReqState.Active;
    r.session = s;
    r.stream = stream;
    (stream as TaggedStream)[kRequest] = r;
    stream.on('response', onStreamResponse);
    stream.on('data', onStreamData);
    stream.on('trailers', onStreamTrailers);
    stream.on('end', onStreamEnd);
    stream.on('error', onStreamError);
    stream.on('close', onStreamClose);
    if (body !== null && !(Buffer.isBuffer(body) && body.length === 0)) {
      if (Buffer.isBuffer(body)) stream.end(body);
      else startRelay(r, body as Readable);
    }
  }

  /** node:http2 request headers from the flat list: host becomes :authority, hop-by-hop fields go. */
  #headers(opts: UpstreamRequest): OutgoingHttpHeaders {
    const out: OutgoingHttpHeaders = { ':method': opts.method, ':scheme': this.#scheme, ':path': opts.path };
    const h = opts.headers;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i];
      const value = h[i + 1];
      switch (name) {
        case 'host':
          out[':authority'] = value;
          continue;
        case 'connection':
        case 'keep-alive':
        case 'proxy-connection':
        case 'transfer-encoding':
        case 'upgrade':
        case 'http2-settings':
          continue;
        case 'te':
          if (value.trim().toLowerCase() !== 'trailers') continue;
          break;
      }
      const prev = out[name];
      if (prev === undefined) out[name] = value;
      else if (Array.isArray(prev)) prev.push(value);
      else if (name === 'set-cookie') out[name] = [String(prev), value];
      else out[name] = `${String(prev)}${name === 'cookie' ? '; ' : ', '}${value}`;
    }
    return out;
  }

  // --- stream events (called by the module listeners) ---

  streamResponse(r: H2Request, headers: IncomingHttpHeaders): void {
    if (r.state !== ReqState.Active) return;
    r.responded = true;
    const raw: string[] = [];
    for (const name in headers) {
      if (name.charCodeAt(0) === 58) continue;
      const v = headers[name];
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const one of v) raw.push(name, one);
      else raw.push(name, String(v));
    }
    const status = Number(headers[':status']);
    if (r.handler.onHeaders(status, raw, r.resume) === false && r.state === ReqState.Active) r.stream!.pause();
  }

  streamData(r: H2Request, chunk: Buffer): void {
    if (r.state !== ReqState.Active) return;
    if (r.handler.onData(chunk) === false && r.state === ReqState.Active) r.stream!.pause();
  }

  streamEnd(r: H2Request): void {
    if (r.state !== ReqState.Active || !r.responded) return;
    this.#endStream(r);
    r.handler.onComplete(r.trailers);
    this.#checkClosed();
  }

  streamClose(r: H2Request): void {
    if (r.state !== ReqState.Active) return;
    const stream = r.stream!;
    const s = r.session!;
    this.#endStream(r);
    const refused = !r.responded && (stream.rstCode === NGHTTP2_REFUSED_STREAM || (s.goawayLastId >= 0 && (stream.id === undefined || stream.id > s.goawayLastId)));
    if (refused && r.replayable && !this.#closed) {
      // Never processed by the server: safe to send again, once.
      r.retried = true;
      r.state = ReqState.Queued;
      r.responded = false;
      r.stream = null;
      r.session = null;
      this.#stats.pending++;
      this.#enqueue(r, true);
      return;
    }
    const err = r.error ?? s.error ?? upstreamError('UND_ERR_SOCKET', stream.rstCode !== undefined && stream.rstCode !== 0 ? `stream reset (HTTP/2 error code ${stream.rstCode})` : 'other side closed');
    r.handler.onError(err);
    this.#checkClosed();
  }

  #endStream(r: H2Request): void {
    r.state = ReqState.Done;
    const s = r.session!;
    // A session without streams does not keep the process alive (as undici's).
    if (--s.active === 0 && !s.session!.destroyed) s.session!.unref();
    this.#stats.running--;
    const stream = r.stream!;
    (stream as TaggedStream)[kRequest] = undefined;
    if (r.body !== null) stopRelay(r);
    if (!s.draining && s.active < s.max) this.#drainQueue();
    // A session the server sent GOAWAY on is dropped once our last stream on it is over.
    if (s.draining && s.active === 0) s.destroy();
  }

  abortRequest(r: H2Request, err: Error): void {
    if (r.state === ReqState.Done) return;
    if (r.state === ReqState.Queued) {
      r.state = ReqState.Done;
      this.#stats.pending--;
      const i = this.#queue.indexOf(r);
      if (i !== -1) this.#queue.splice(i, 1);
    } else {
      const stream = r.stream!;
      this.#endStream(r);
      if (!stream.destroyed) stream.close(NGHTTP2_CANCEL);
    }
    r.handler.onError(err);
    this.#checkClosed();
  }

  #sessionClosed(s: H2Session): void {
    if (s.timer !== null) clearTimeout(s.timer);
    if (!this.#sessions.delete(s)) return;
    this.#stats.connected--;
    if (s.connecting) {
      s.connecting = false;
      const err = s.error ?? upstreamError('UND_ERR_SOCKET', 'other side closed');
      // Requests waiting for this session fail with its connect error (as undici's pool does);
      // with another session still open or opening, only the first.
      const others = this.#sessions.size > 0;
      const n = others ? Math.min(1, this.#queue.length) : Math.min(this.#queue.length, s.max);
      const failed = this.#queue.splice(0, n);
      for (const r of failed) {
        if (r.state !== ReqState.Queued) continue;
        r.state = ReqState.Done;
        this.#stats.pending--;
        r.handler.onError(err);
      }
    }
    if (!this.#destroyed) this.#maybeConnect();
    this.#checkClosed();
  }

  #checkClosed(): void {
    if (!this.#closed || this.#onClosed === null) return;
    if (this.#stats.running > 0 || this.#stats.pending > 0) return;
    for (const s of this.#sessions) s.close();
    const done = this.#onClosed;
    this.#onClosed = null;
    const h1 = this.#h1;
    if (h1 !== null) void h1.close().then(done);
    else done();
  }

  close(): Promise<void> {
    if (this.#closePromise !== null) return this.#closePromise;
    this.#closed = true;
    this.#closePromise = new Promise<void>((resolve) => {
      this.#onClosed = resolve;
    });
    this.#checkClosed();
    return this.#closePromise;
  }

  destroy(): Promise<void> {
    this.#closed = true;
    this.#destroyed = true;
    const err = upstreamError('UND_ERR_DESTROYED', 'The client is destroyed');
    const queued = this.#queue;
    this.#queue = [];
    for (const r of queued) {
      if (r.state !== ReqState.Queued) continue;
      r.state = ReqState.Done;
      this.#stats.pending--;
      r.handler.onError(err);
    }
    for (const s of [...this.#sessions]) s.destroy();
    const p = this.close();
    if (this.#h1 !== null) void this.#h1.destroy();
    this.#checkClosed();
    return p;
  }
}

function onConnectTimeout(s: H2Session, ms: number): void {
  s.timer = null;
  if (!s.connecting) return;
  s.error = upstreamError('UND_ERR_CONNECT_TIMEOUT', `Connect Timeout Error (timeout: ${ms} ms)`);
  s.destroy();
}

// Request body relay (`this` is the body; its request hangs off kRelay).

function startRelay(r: H2Request, body: Readable): void {
  r.body = body;
  (body as TaggedBody)[kRelay] = r;
  body.on('data', onBodyData);
  body.on('end', onBodyEnd);
  body.on('error', onBodyError);
  body.resume();
}

/** The request is over: the body is no longer relayed (and paused, as unpipe leaves a source). */
function stopRelay(r: H2Request): void {
  const body = r.body!;
  r.body = null;
  r.held = null;
  (body as TaggedBody)[kRelay] = undefined;
  body.removeListener('data', onBodyData);
  body.removeListener('end', onBodyEnd);
  body.removeListener('error', onBodyError);
  if (r.waitingDrain) {
    r.waitingDrain = false;
    r.stream?.removeListener('drain', onStreamDrain);
  }
  if (!body.readableEnded) body.pause();
}

function relayWrite(r: H2Request, chunk: Buffer): void {
  const stream = r.stream!;
  if (stream.destroyed || stream.writableEnded) return;
  if (!stream.write(chunk) && !r.waitingDrain) {
    r.waitingDrain = true;
    r.body!.pause();
    stream.once('drain', onStreamDrain);
  }
}

function onBodyData(this: TaggedBody, chunk: Buffer): void {
  const r = this[kRelay];
  if (r === undefined || r.state !== ReqState.Active) return;
  const prev = r.held;
  r.held = chunk;
  if (prev !== null) relayWrite(r, prev);
  if (!r.flushQueued) {
    r.flushQueued = true;
    if (toFlush.push(r) === 1) setImmediate(flushHeld);
  }
}

/** Requests holding a chunk, flushed together in the next check phase. */
let toFlush: H2Request[] = [];

/** The body did not end in the I/O callbacks that brought the chunk: it goes out on its own. */
function flushHeld(): void {
  const list = toFlush;
  toFlush = [];
  for (const r of list) {
    r.flushQueued = false;
    const held = r.held;
    if (held === null || r.state !== ReqState.Active || r.body === null) continue;
    r.held = null;
    relayWrite(r, held);
  }
}

function onBodyEnd(this: TaggedBody): void {
  const r = this[kRelay];
  if (r === undefined || r.state !== ReqState.Active) return;
  const stream = r.stream!;
  const held = r.held;
  r.held = null;
  if (stream.destroyed || stream.writableEnded) return;
  // Written and ended in one go: node:http2 puts END_STREAM on that DATA frame.
  if (held !== null) stream.end(held);
  else stream.end();
}

/** The body failed (its client reset the stream): the upstream stream is reset too (CANCEL), never ended. */
function onBodyError(this: TaggedBody, err: Error): void {
  const r = this[kRelay];
  if (r !== undefined && r.state === ReqState.Active) r.client.abortRequest(r, err);
}

function onStreamDrain(this: TaggedStream): void {
  const r = this[kRequest];
  if (r === undefined || !r.waitingDrain) return;
  r.waitingDrain = false;
  r.body?.resume();
}

// Stream listeners (`this` is the stream; its request hangs off kRequest).

function onStreamResponse(this: TaggedStream, headers: IncomingHttpHeaders): void {
  const r = this[kRequest];
  if (r !== undefined) r.client.streamResponse(r, headers);
}

function onStreamData(this: TaggedStream, chunk: Buffer): void {
  const r = this[kRequest];
  if (r !== undefined) r.client.streamData(r, chunk);
}

function onStreamTrailers(this: TaggedStream, trailers: IncomingHttpHeaders): void {
  const r = this[kRequest];
  if (r !== undefined) r.trailers = trailers;
}

function onStreamEnd(this: TaggedStream): void {
  const r = this[kRequest];
  if (r !== undefined) r.client.streamEnd(r);
}

function onStreamError(this: TaggedStream, err: Error): void {
  const r = this[kRequest];
  if (r !== undefined) r.error ??= err;
}

function onStreamClose(this: TaggedStream): void {
  const r = this[kRequest];
  if (r !== undefined) r.client.streamClose(r);
}
