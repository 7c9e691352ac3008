/**
 * meshgate's HTTP/1.1 upstream client: a keep-alive pool of raw `net`/`tls` sockets to one
 * endpoint, driven through the `UpstreamClient` protocol (`client.ts`).
 *
 * - At most `connections` sockets; requests beyond wait in a FIFO queue (a retried request goes
 *   first). An idle socket is reused last-in first-out (the warmest one).
 * - One request per socket at a time (no pipelining: it measured slower and worsens p99,
 *   reference/performance.md). The request head and the first body bytes go out in one write
 *   (cork/uncork); a streamed body is framed as the downstream framed it (Content-Length, else
 *   chunked) and read only as fast as the socket drains.
 * - The response is parsed by `h1-response-parser.ts` and delivered through onHeaders / onData
 *   (a `false` pauses the socket until `resume()`) / onComplete.
 * - Reuse: a socket is kept when the answer allowed it (no `Connection: close`, not close-delimited,
 *   HTTP/1.0 only with keep-alive), the request body was sent whole and `maxRequestsPerConnection`
 *   is not reached. Idle sockets close after `keepAliveTimeoutMs`, or after the upstream's
 *   `Keep-Alive: timeout=N` hint minus `keepAliveTimeoutThresholdMs` (capped by
 *   `keepAliveMaxTimeoutMs`), so the gateway closes first and never races a request against the
 *   upstream's own close.
 * - Bytes after the end of an answer in the same read (a body on HEAD, 204 or 304, more than the
 *   Content-Length, a second answer): the answer is delivered, then the socket is closed; it is never
 *   handed to the next request. A socket is handed on only after the whole read was parsed.
 * - Stale connections: when a reused socket closes before any byte of the answer arrived, the
 *   request is sent once more on another socket only when that cannot repeat an action: the method
 *   is idempotent (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or the request carries
 *   an `Idempotency-Key`, and nothing of its body was consumed (no body, a Buffer body, or a stream
 *   not read yet). The upstream may have acted on a POST before closing, so otherwise the failure
 *   is the socket's (`UND_ERR_SOCKET` or the reset, 503 `UC`) and the route's retry policy decides,
 *   as with Envoy (which retries only under a retry policy). Go's net/http is stricter still (GET,
 *   HEAD, OPTIONS, TRACE, or an `Idempotency-Key`).
 * - Timeouts: `connectTimeoutMs` covers TCP connect and TLS handshake (`UND_ERR_CONNECT_TIMEOUT`,
 *   503 `UF`). Request and response timing is the caller's (route timeout, per-try timeout), which
 *   aborts through the `abort` handed to onConnect.
 * - TLS: `tls.connect` with the cluster's options (`upstream-tls.ts`), ALPN `http/1.1`, and the last
 *   TLS session of the endpoint offered for resumption.
 */

import net from 'node:net';
import tls from 'node:tls';
import type { Readable } from 'node:stream';
import { expectsPayload, upstreamError, type UpstreamClient, type UpstreamClientStats, type UpstreamHandler, type UpstreamRequest, type UpstreamTrailers } from './client.js';
import { H1ResponseParser, type ResponseSink } from './h1-response-parser.js';
import type { UpstreamTlsConnect } from './upstream-tls.js';

export interface H1ClientOptions {
  host: string;
  port: number;
  /** Max sockets to the endpoint. */
  connections: number;
  /** TCP connect + TLS handshake limit, ms; 0 = none. */
  connectTimeoutMs: number;
  /** Idle keep-alive when the upstream sends no hint, ms. */
  keepAliveTimeoutMs: number;
  /** Upper bound of a hinted keep-alive, ms. */
  keepAliveMaxTimeoutMs: number;
  /** Subtracted from a hinted keep-alive, ms. */
  keepAliveTimeoutThresholdMs: number;
  /** Requests per socket before it is closed; 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** TLS origination; null = plaintext. */
  tls: UpstreamTlsConnect | null;
  /** Source address of upstream connections (the sidecar's inbound side dials its app from 127.0.0.6); absent = the kernel's choice. */
  localAddress?: string;
}

const ABORTED = 'UND_ERR_ABORTED';
/** Most bytes of a body of unknown length read into memory to send it as HTTP/1.0 (see `UpstreamRequest.http10BodyLimit`). */
export const HTTP10_BODY_LIMIT = 16 * 1024 * 1024;
const HEADER_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
/** A request target may not carry spaces or control characters (it would split the request line). */
const INVALID_PATH = /[^\u0021-\u00ff]/;

/** RFC 9110 §9.2.2 idempotent methods. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

function hasContentLength(headers: string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) if (headers[i] === 'content-length') return true;
  return false;
}

function hasIdempotencyKey(headers: string[]): boolean {
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i];
    if (name.length === 15 && name.toLowerCase() === 'idempotency-key') return true;
  }
  return false;
}

const enum ReqState {
  Queued,
  Active,
  Done,
}

/** One dispatched request (the only per-request allocation of the client besides its head string). */
class H1Request {
  state = ReqState.Queued;
  conn: H1Connection | null = null;
  /** Body bytes read from the request stream so far. */
  bodyBytes = 0;
  /** The body was sent whole (or there was none). */
  bodySent = false;
  /** Declared Content-Length of a streamed body; -1 = chunked. */
  bodyLength = -1;
  /** Already sent once more after a stale connection. */
  retried = false;
  /** The body to send: the request's, or the whole of it read into memory (HTTP/1.0 without Content-Length). */
  body: Readable | Buffer | null;
  readonly abort: (err?: Error) => void;

  constructor(
    readonly client: H1Client,
    readonly opts: UpstreamRequest,
    readonly handler: UpstreamHandler,
  ) {
    // The one function handed out per request: it must stay bound to this request, never to
    // whatever the socket carries later.
    this.abort = (err?: Error): void => client.abortRequest(this, err ?? upstreamError(ABORTED, 'Request aborted'));
    this.body = opts.body;
  }

  /** Whether sending it again cannot repeat an action or duplicate or lose body bytes. */
  get replayable(): boolean {
    const body = this.body;
    return !this.retried && (body === null || Buffer.isBuffer(body) || this.bodyBytes === 0) && (IDEMPOTENT.has(this.opts.method) || hasIdempotencyKey(this.opts.headers));
  }
}

class H1Connection implements ResponseSink {
  readonly socket: net.Socket;
  readonly parser: H1ResponseParser;
  request: H1Request | null = null;
  connecting = true;
  /** Requests answered on this socket. */
  served = 0;
  reusable = true;
  idleMs: number;
  /** The socket keeps the event loop alive (it carries a request). */
  refed = true;
  /** The socket timeout currently set (ms). */
  armedMs = -1;
  closed = false;
  /** Error seen on the socket before it closed. */
  error: Error | null = null;
  /** The parser is running over a read (the answer callbacks run inside it). */
  executing = false;
  /** The answer ended during the current read: the socket is handed on once the read is parsed. */
  releasePending = false;
  readonly resume: () => void;
  readonly #client: H1Client;
  /** Body of the request in flight while it is being streamed. */
  #body: Readable | null = null;

  constructor(client: H1Client, socket: net.Socket, idleMs: number) {
    this.#client = client;
    this.socket = socket;
    this.idleMs = idleMs;
    this.parser = new H1ResponseParser(this);
    this.resume = () => {
      if (!this.closed) this.socket.resume();
    };
    this.onBodyData = this.onBodyData.bind(this);
    this.onBodyEnd = this.onBodyEnd.bind(this);
    this.onBodyError = this.onBodyError.bind(this);
    this.onDrain = this.onDrain.bind(this);
  }

  // --- response (H1ResponseParser sink) ---

  onResponseHead(status: number, rawHeaders: string[], keepAliveMs: number): void {
    const r = this.request!;
    if (keepAliveMs >= 0) {
      const o = this.#client.options;
      const t = Math.min(keepAliveMs - o.keepAliveTimeoutThresholdMs, o.keepAliveMaxTimeoutMs);
      if (t <= 0) this.reusable = false;
      else this.idleMs = t;
    }
    if (r.handler.onHeaders(status, rawHeaders, this.resume) === false && r.state === ReqState.Active) this.socket.pause();
  }

  onResponseData(chunk: Buffer): void {
    const r = this.request!;
    if (r.handler.onData(chunk) === false && r.state === ReqState.Active) this.socket.pause();
  }

  onResponseEnd(trailers: Buffer[] | null): void {
    this.#client.completeRequest(this, trailers);
  }

  // --- request body ---

  attachBody(body: Readable): void {
    this.#body = body;
    body.on('data', this.onBodyData);
    body.on('end', this.onBodyEnd);
    body.on('error', this.onBodyError);
    this.socket.on('drain', this.onDrain);
  }

  /**
   * Stops sending the body. `keep`: it will be sent again (a stale-connection retry), so it stays
   * paused; otherwise what is left is read and dropped, so the downstream connection is not stuck
   * on an unread request body.
   */
  detachBody(keep = false): void {
    const body = this.#body;
    if (body === null) return;
    this.#body = null;
    body.off('data', this.onBodyData);
    body.off('end', this.onBodyEnd);
    body.off('error', this.onBodyError);
    this.socket.off('drain', this.onDrain);
    if (body.readableEnded) return;
    if (keep) body.pause();
    else body.resume();
  }

  /** Writes one body chunk with its framing; false when the socket is full. */
  writeBodyChunk(chunk: Buffer): boolean {
    const r = this.request!;
    r.bodyBytes += chunk.length;
    if (r.bodyLength >= 0) {
      if (r.bodyBytes > r.bodyLength) {
        this.#client.abortRequest(r, upstreamError('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'Request body longer than its Content-Length'));
        return true;
      }
      return this.socket.write(chunk);
    }
    if (chunk.length === 0) return true;
    const s = this.socket;
    s.cork();
    s.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
    s.write(chunk);
    const ok = s.write('\r\n', 'latin1');
    s.uncork();
    return ok;
  }

  onBodyData(chunk: Buffer | string): void {
    const r = this.request;
    if (r === null || this.#body === null) return;
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
    if (!this.writeBodyChunk(buf) && this.#body !== null) this.#body.pause();
  }

  onDrain(): void {
    if (this.#body !== null) this.#body.resume();
  }

  onBodyEnd(): void {
    const r = this.request;
    if (r === null) return;
    this.detachBody();
    if (r.bodyLength >= 0 && r.bodyBytes !== r.bodyLength) {
      this.#client.abortRequest(r, upstreamError('UND_ERR_REQ_CONTENT_LENGTH_MISMATCH', 'Request body shorter than its Content-Length'));
      return;
    }
    if (r.bodyLength < 0) this.socket.write('0\r\n\r\n', 'latin1');
    r.bodySent = true;
  }

  onBodyError(err: Error): void {
    const r = this.request;
    if (r !== null) this.#client.abortRequest(r, err);
  }
}

/** The pool of one endpoint (see the file comment). */
export class H1Client implements UpstreamClient {
  readonly options: H1ClientOptions;
  readonly stats: UpstreamClientStats = { connected: 0, pending: 0, running: 0 };
  #closed = false;
  #destroyed = false;
  readonly #idle: H1Connection[] = [];
  readonly #all = new Set<H1Connection>();
  /** Waiting requests (FIFO from `#queueHead`; entries of aborted requests are skipped). */
  #queue: (H1Request | null)[] = [];
  #queueHead = 0;
  #connecting = 0;
  /** Sockets whose answer ended in the read being parsed: free soon (no new socket for them). */
  #releasing = 0;
  #session: Buffer | undefined = undefined;
  #onClosed: (() => void) | null = null;
  #closePromise: Promise<void> | null = null;
  readonly #onConnectionClose: (conn: H1Connection) => void;

  constructor(options: H1ClientOptions) {
    this.options = options;
    this.#onConnectionClose = (conn) => this.#connectionClosed(conn);
  }

  get closed(): boolean {
    return this.#closed;
  }

  dispatch(opts: UpstreamRequest, handler: UpstreamHandler): boolean {
    if (this.#closed) {
      handler.onError(upstreamError(this.#destroyed ? 'UND_ERR_DESTROYED' : 'UND_ERR_CLOSED', 'The client is closed'));
      return false;
    }
    const r = new H1Request(this, opts, handler);
    this.stats.pending++;
    handler.onConnect(r.abort);
    if (r.state === ReqState.Done) return true;
    if (opts.http10 === true && opts.body !== null && !Buffer.isBuffer(opts.body) && !hasContentLength(opts.headers)) {
      this.#readWhole(r, opts.body, opts.http10BodyLimit ?? HTTP10_BODY_LIMIT);
      return true;
    }
    this.#enqueue(r, false);
    return true;
  }

  /**
   * HTTP/1.0 has no chunked coding: a body of unknown length is read whole (at most `limit` bytes),
   * before a socket is taken, and sent with a Content-Length, as nginx buffers it for
   * `proxy_http_version 1.0`. Over the limit: `MG_ERR_BODY_TOO_LARGE` (413).
   */
  #readWhole(r: H1Request, body: Readable, limit: number): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (): void => {
      body.off('data', onData);
      body.off('end', onEnd);
      body.off('error', onError);
    };
    const onData = (chunk: Buffer | string): void => {
      if (r.state !== ReqState.Queued) {
        done();
        body.resume();
        return;
      }
      const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'latin1') : chunk;
      size += buf.length;
      if (size > limit) {
        done();
        body.resume();
        this.abortRequest(r, upstreamError('MG_ERR_BODY_TOO_LARGE', `request body over ${limit} bytes cannot be sent as HTTP/1.0`));
        return;
      }
      chunks.push(buf);
    };
    const onEnd = (): void => {
      done();
      if (r.state !== ReqState.Queued) return;
      r.body = Buffer.concat(chunks, size);
      this.#enqueue(r, false);
    };
    const onError = (err: Error): void => {
      done();
      this.abortRequest(r, err);
    };
    body.on('data', onData);
    body.on('end', onEnd);
    body.on('error', onError);
    body.resume();
  }

  /** Sends `r` on an idle socket, or queues it (opening a socket when the limit allows). */
  #enqueue(r: H1Request, first: boolean): void {
    while (this.#idle.length > 0) {
      const conn = this.#idle.pop()!;
      if (conn.closed) continue;
      this.#send(conn, r);
      return;
    }
    if (first) {
      if (this.#queueHead > 0) this.#queue[--this.#queueHead] = r;
      else this.#queue.unshift(r);
    } else {
      this.#queue.push(r);
    }
    this.#maybeConnect();
  }

  /** Opens sockets while waiting requests outnumber the sockets being opened. */
  #maybeConnect(): void {
    while (this.stats.pending > this.#connecting + this.#releasing && this.#all.size < this.options.connections) this.#connect();
  }

  #connect(): void {
    const o = this.options;
    let socket: net.Socket;
    const t = o.tls;
    // Reads land in one shared buffer and are copied out (see `READ_BUFFER`).
    const link: ReadLink = { conn: null };
    const onread: net.OnReadOpts = { buffer: READ_BUFFER, callback: onSocketRead.bind(link) };
    if (t === null) {
      socket = net.connect({ host: o.host, port: o.port, onread, ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }) });
    } else if (t.failure !== null) {
      // Unreadable TLS files: never fall back to plaintext; every connection fails.
      socket = new net.Socket();
      process.nextTick(destroyWith, socket, t.failure);
    } else {
      try {
        // ISTIO_MUTUAL: the workload certificate current now (or why there is none).
        const options = t.perConnection === null ? t.options : t.perConnection();
        if (options instanceof Error) throw options;
        socket = tls.connect({ ...options, host: o.host, port: o.port, ALPNProtocols: t.alpn ?? ['http/1.1'], session: this.#session, onread, ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }) } as tls.ConnectionOptions);
      } catch (err) {
        // Options OpenSSL refuses (a malformed PEM): the connection fails with that error.
        socket = new net.Socket();
        process.nextTick(destroyWith, socket, err as Error);
      }
    }
    link.conn = this.#adopt(socket, true, true);
  }

  /**
   * Takes over `socket` (connecting, or already connected, e.g. a TLS socket whose ALPN chose
   * HTTP/1.1 for an HTTP/2 client).
   */
  adopt(socket: net.Socket): void {
    this.#adopt(socket, false, false);
  }

  /** `userBuffer`: the socket reads through `onSocketRead` (`onread`), not 'data' events. */
  #adopt(socket: net.Socket, connecting: boolean, userBuffer: boolean): H1Connection {
    const conn = new H1Connection(this, socket, this.options.keepAliveTimeoutMs);
    this.#all.add(conn);
    this.stats.connected++;
    if (!userBuffer) socket.on('data', onSocketData.bind(conn));
    socket.on('end', onSocketEnd.bind(conn));
    socket.on('error', onSocketError.bind(conn));
    socket.on('close', onSocketClose.bind(conn, this.#onConnectionClose));
    socket.on('timeout', onSocketTimeout.bind(conn));
    const isTls = socket instanceof tls.TLSSocket;
    if (isTls) socket.on('session', (s: Buffer) => (this.#session = s));
    if (!connecting) {
      this.#connected(conn);
      return conn;
    }
    this.#connecting++;
    if (this.options.connectTimeoutMs > 0) socket.setTimeout(this.options.connectTimeoutMs);
    socket.once(isTls ? 'secureConnect' : 'connect', () => {
      this.#connecting--;
      this.#connected(conn);
    });
    return conn;
  }

  #connected(conn: H1Connection): void {
    if (conn.closed) return;
    conn.connecting = false;
    conn.socket.setNoDelay(true);
    this.#release(conn);
  }

  /** A free socket: takes the next waiting request, or becomes idle. */
  #release(conn: H1Connection): void {
    if (this.#destroyed) {
      conn.socket.destroy();
      return;
    }
    const r = this.#shift();
    if (r !== null) {
      this.#send(conn, r);
      return;
    }
    if (this.#closed) {
      conn.socket.destroy();
      this.#checkClosed();
      return;
    }
    if (conn.armedMs !== conn.idleMs) {
      conn.armedMs = conn.idleMs;
      conn.socket.setTimeout(conn.idleMs);
    }
    // An idle socket does not keep the process alive (as undici's).
    if (conn.refed) {
      conn.refed = false;
      conn.socket.unref();
    }
    this.#idle.push(conn);
  }

  #shift(): H1Request | null {
    const q = this.#queue;
    while (this.#queueHead < q.length) {
      const r = q[this.#queueHead];
      q[this.#queueHead++] = null;
      if (r !== null && r.state === ReqState.Queued) {
        if (this.#queueHead > 1024 && this.#queueHead * 2 > q.length) {
          this.#queue = q.slice(this.#queueHead);
          this.#queueHead = 0;
        }
        return r;
      }
    }
    this.#queue.length = 0;
    this.#queueHead = 0;
    return null;
  }

  /** Writes `r` on `conn`: the head (with the first body bytes) in one write, then the body. */
  #send(conn: H1Connection, r: H1Request): void {
    if (!conn.refed) {
      conn.refed = true;
      conn.socket.ref();
    }
    r.state = ReqState.Active;
    r.conn = conn;
    conn.request = r;
    this.stats.pending--;
    this.stats.running++;
    const opts = r.opts;
    conn.parser.start(opts.method === 'HEAD');
    const body = r.body;
    const http10 = opts.http10 === true;
    const o = this.options;
    if (!HEADER_NAME.test(opts.method) || INVALID_PATH.test(opts.path)) {
      this.abortRequest(r, upstreamError('UND_ERR_INVALID_ARG', 'invalid request method or path'));
      return;
    }
    let head = http10 ? `${opts.method} ${opts.path} HTTP/1.0\r\n` : `${opts.method} ${opts.path} HTTP/1.1\r\n`;
    const h = opts.headers;
    let contentLength = -1;
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i];
      const value = h[i + 1];
      if (!HEADER_NAME.test(name) || HEADER_VALUE.test(value)) {
        this.abortRequest(r, upstreamError('UND_ERR_INVALID_ARG', `invalid request header ${JSON.stringify(name)}`));
        return;
      }
      if (name.length === 14 && name === 'content-length') contentLength = Number(value);
      // HTTP/1.0: no connection options (the connection closes after the answer).
      if (http10 && (name === 'connection' || name === 'keep-alive')) continue;
      head += `${name}: ${value}\r\n`;
    }
    if (http10) {
      // nginx's proxy_http_version 1.0: no keep-alive, one request per connection (ingress-nginx
      // sends no Connection header: HTTP/1.0 closes by default).
      conn.reusable = false;
    } else if (o.maxRequestsPerConnection > 0 && conn.served + 1 >= o.maxRequestsPerConnection) {
      conn.reusable = false;
      head += 'connection: close\r\n';
    }
    const s = conn.socket;
    if (body === null) {
      if (contentLength < 0 && expectsPayload(opts.method)) head += 'content-length: 0\r\n';
      r.bodySent = true;
      s.write(`${head}\r\n`, 'latin1');
      return;
    }
    if (Buffer.isBuffer(body)) {
      if (contentLength < 0) head += `content-length: ${body.length}\r\n`;
      r.bodySent = true;
      r.bodyBytes = body.length;
      s.cork();
      s.write(`${head}\r\n`, 'latin1');
      s.write(body);
      s.uncork();
      return;
    }
    r.bodyLength = contentLength;
    if (contentLength < 0) head += 'transfer-encoding: chunked\r\n';
    s.cork();
    s.write(`${head}\r\n`, 'latin1');
    // The first body bytes already buffered go out in the same write as the head.
    const first = body.readableLength > 0 ? (body.read() as Buffer | string | null) : null;
    if (first !== null) conn.writeBodyChunk(typeof first === 'string' ? Buffer.from(first, 'latin1') : first);
    if (r.state === ReqState.Active) {
      if (body.readableEnded || (body.readableLength === 0 && (body as { _readableState?: { ended?: boolean } })._readableState?.ended === true)) {
        s.uncork();
        conn.onBodyEnd();
        return;
      }
      conn.attachBody(body);
    }
    s.uncork();
  }

  /** The answer ended: hand the socket on (or close it), then tell the handler. */
  completeRequest(conn: H1Connection, trailers: UpstreamTrailers): void {
    const r = conn.request;
    if (r === null || r.state !== ReqState.Active) return;
    if (!r.bodySent) {
      // An answer before the whole body was sent: the socket cannot carry another request.
      conn.reusable = false;
      conn.detachBody();
    }
    r.state = ReqState.Done;
    conn.request = null;
    conn.served++;
    this.stats.running--;
    const keep = conn.reusable && conn.parser.keepAlive && !conn.closed;
    if (keep) {
      // The answer may have paused the socket; an idle socket must read (to see its close).
      conn.socket.resume();
      // Inside a read, the rest of it must be parsed first: bytes after the end of the answer
      // make the socket unusable, and must never be read as the next request's answer.
      if (conn.executing) {
        conn.releasePending = true;
        this.#releasing++;
      } else {
        this.#release(conn);
      }
    } else {
      conn.socket.destroy();
    }
    r.handler.onComplete(trailers);
    this.#checkClosed();
  }

  /**
   * The read in which the answer on `conn` ended is parsed: `clean` when nothing followed the
   * answer, and the socket is handed on; otherwise it is closed (its waiting requests get new ones).
   */
  afterRead(conn: H1Connection, clean: boolean): void {
    this.#releasing--;
    if (conn.closed || conn.socket.destroyed) {
      if (!this.#destroyed) this.#maybeConnect();
      return;
    }
    if (clean) this.#release(conn);
    else conn.socket.destroy();
  }

  /** Ends `r` with `err` (abort from the handler, a body error, a bad header). */
  abortRequest(r: H1Request, err: Error): void {
    if (r.state === ReqState.Done) return;
    const conn = r.conn;
    if (r.state === ReqState.Queued) {
      this.stats.pending--;
    } else {
      this.stats.running--;
    }
    r.state = ReqState.Done;
    if (conn !== null && conn.request === r) {
      conn.request = null;
      conn.parser.halted = true;
      conn.detachBody();
      conn.socket.destroy();
    }
    r.handler.onError(err);
    this.#checkClosed();
  }

  /** The socket of `conn` failed, ended or closed while `conn.request` was in flight. */
  connectionFailed(conn: H1Connection): void {
    const r = conn.request;
    if (r === null) return;
    // A clean close ends a close-delimited answer (finish() completes it); a reset never does.
    const parseEnd = conn.error === null ? conn.parser.finish() : null;
    if (conn.request === null) return;
    const err = conn.error ?? parseEnd ?? upstreamError('UND_ERR_SOCKET', 'other side closed');
    conn.request = null;
    this.stats.running--;
    const retry = conn.served > 0 && !conn.parser.started && r.replayable;
    conn.detachBody(retry);
    if (retry) {
      // A kept-alive socket the upstream had closed: send the request once more elsewhere.
      r.retried = true;
      r.state = ReqState.Queued;
      r.conn = null;
      r.bodyBytes = 0;
      r.bodySent = false;
      this.stats.pending++;
      this.#enqueue(r, true);
      return;
    }
    r.state = ReqState.Done;
    r.handler.onError(err);
    this.#checkClosed();
  }

  /** A socket could not be opened: the first waiting request gets the error. */
  connectFailed(conn: H1Connection, err: Error): void {
    if (!conn.connecting) return;
    conn.connecting = false;
    this.#connecting--;
    const r = this.#shift();
    if (r !== null) {
      this.stats.pending--;
      r.state = ReqState.Done;
      r.handler.onError(err);
    }
    this.#checkClosed();
  }

  #connectionClosed(conn: H1Connection): void {
    conn.closed = true;
    if (!this.#all.delete(conn)) return;
    this.stats.connected--;
    if (conn.connecting) this.connectFailed(conn, conn.error ?? upstreamError('ECONNRESET', 'socket closed before connecting'));
    else if (conn.request !== null) this.connectionFailed(conn);
    const i = this.#idle.indexOf(conn);
    if (i !== -1) this.#idle.splice(i, 1);
    // Waiting requests may need a new socket now.
    if (!this.#destroyed) this.#maybeConnect();
    this.#checkClosed();
  }

  #checkClosed(): void {
    if (!this.#closed || this.#onClosed === null) return;
    if (this.stats.running > 0 || this.stats.pending > 0) return;
    for (const c of this.#idle) c.socket.destroy();
    this.#idle.length = 0;
    const done = this.#onClosed;
    this.#onClosed = null;
    done();
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
    for (let r = this.#shift(); r !== null; r = this.#shift()) {
      this.stats.pending--;
      r.state = ReqState.Done;
      r.handler.onError(err);
    }
    for (const conn of [...this.#all]) {
      const r = conn.request;
      if (r !== null) this.abortRequest(r, err);
      conn.socket.destroy();
    }
    this.#idle.length = 0;
    const p = this.close();
    this.#checkClosed();
    return p;
  }
}

function destroyWith(socket: net.Socket, err: Error): void {
  socket.destroy(err);
}

/**
 * Where the client's own sockets read (`onread`): Node reads into this one buffer instead of a new
 * allocation per read, and hands it over without the Readable stream's push/'data'/read-more steps
 * (a response is usually one read). Each read is copied out at once into a pooled Buffer (what the
 * parser and the handlers get may outlive the read: a body chunk queued on a slow downstream), so
 * one buffer serves every socket of the process.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

interface ReadLink {
  conn: H1Connection | null;
}

/** Always true: backpressure pauses the socket itself (`socket.pause()`, which stops `onread` reads too). */
function onSocketRead(this: ReadLink, n: number, buf: Uint8Array): boolean {
  const conn = this.conn;
  if (conn === null) return true;
  const chunk = Buffer.allocUnsafe(n);
  chunk.set(buf.subarray(0, n));
  onSocketData.call(conn, chunk);
  return true;
}

// Socket listeners, bound once per connection (`this` is the H1Connection).

function onSocketData(this: H1Connection, chunk: Buffer): void {
  if (this.request === null) {
    // Bytes with no request in flight: the upstream broke the protocol; drop the socket.
    this.socket.destroy();
    return;
  }
  const client = this.request.client;
  let err: Error | null = null;
  let parsed = false;
  this.executing = true;
  try {
    err = this.parser.execute(chunk);
    parsed = true;
  } finally {
    this.executing = false;
    // Hand the socket on now that the whole read is parsed (never if a callback threw).
    if (this.releasePending) {
      this.releasePending = false;
      client.afterRead(this, parsed && err === null);
    }
  }
  if (err === null) return;
  const r = this.request;
  // Bytes after a complete answer (already delivered) leave the socket unusable: it is closed,
  // and the waiting requests go to other (new) sockets.
  if (r !== null) r.client.abortRequest(r, err);
  else this.socket.destroy();
}

function onSocketEnd(this: H1Connection): void {
  // The upstream half-closed: whatever was in flight is over (a close-delimited answer ended).
  this.socket.destroy();
}

function onSocketError(this: H1Connection, err: Error): void {
  this.error ??= err;
}

function onSocketClose(this: H1Connection, closed: (conn: H1Connection) => void): void {
  closed(this);
}

function onSocketTimeout(this: H1Connection): void {
  if (this.connecting) {
    this.error = upstreamError('UND_ERR_CONNECT_TIMEOUT', `Connect Timeout Error (timeout: ${this.socket.timeout ?? 0} ms)`);
    this.socket.destroy();
    return;
  }
  // Idle for longer than the keep-alive: close. A request in flight is timed by its caller.
  if (this.request === null) this.socket.destroy();
}
