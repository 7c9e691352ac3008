/**
 * meshgate's HTTP/1.1 server engine on `net`/`tls` sockets (`--http1-engine meshgate`): the
 * listeners (listeners/http-front.ts) hand it accepted sockets; it parses requests (parser.ts),
 * hands each to the request path as a `Downstream` (h1-downstream.ts) and writes the responses.
 *
 * - keep-alive; pipelined requests are answered in order: the next request is not parsed before
 *   the response to the previous one is complete (its bytes wait, the socket is paused);
 * - `Expect: 100-continue` is answered at once (as node:http does); another expectation is 417;
 * - `Upgrade` requests: what follows the head is handed with the socket to the WebSocket code
 *   (`Downstream.upgrade`); CONNECT is closed without an answer, as node:http does with no
 *   `connect` listener;
 * - refusals of the parser are answered (400, 408, 413, 431, 501, `server: meshgate`, flag DPE)
 *   and close the connection; a request whose body turns out malformed is aborted upstream;
 * - one coarse timer per engine (once a second) enforces the head timeout (408, slowloris) and
 *   the keep-alive idle timeout: nothing per request.
 */

import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { closeDownstream, type Downstream } from '../http/downstream.js';
import { H1Downstream, RequestBody, type H1Link } from './h1-downstream.js';
import { Framing, H1Parser, ParseError, type ParserHandler, type RequestHead } from './parser.js';

export interface H1EngineOptions {
  /** The whole request head must arrive within this long (ms) of the connection or of its previous response. */
  headersTimeout: number;
  /** An idle keep-alive connection closes after this long (ms). */
  keepAliveTimeout: number;
  /** A request in progress whose connection reads and writes nothing for this long (ms) is closed (Envoy's stream idle timeout); 0 = never. */
  streamIdleTimeout: number;
  /** Largest request head (bytes); more is 431. */
  maxHeaderSize: number;
  /** Header lines kept per request (more are dropped; the request path answers 431 above its limit). */
  maxHeadersCount: number;
}

const REASONS: Record<number, string> = { 400: 'Bad Request', 408: 'Request Timeout', 413: 'Payload Too Large', 417: 'Expectation Failed', 431: 'Request Header Fields Too Large', 501: 'Not Implemented' };

/** The answer to a refused request head: as node:http's default, but with the gateway's headers. */
function refusal(status: number): string {
  return `HTTP/1.1 ${status} ${REASONS[status] ?? 'Bad Request'}\r\nserver: meshgate\r\nx-meshgate-flags: DPE\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`;
}

const CONTINUE = Buffer.from('HTTP/1.1 100 Continue\r\n\r\n', 'latin1');

const enum Phase {
  /** Waiting for (the rest of) a request head. */
  Head,
  /** A request is being served. */
  Active,
  /** Between requests, nothing of the next one read. */
  Idle,
  /** Closing or handed over (upgrade): the engine no longer reads. */
  Gone,
}

export class H1Engine {
  readonly #options: H1EngineOptions;
  readonly #serve: (d: Downstream) => void;
  readonly connections = new Set<H1Connection>();
  #timer: NodeJS.Timeout | null = null;
  #date = '';
  #dateAt = 0;

  constructor(options: H1EngineOptions, serve: (d: Downstream) => void) {
    this.#options = options;
    this.#serve = serve;
  }

  get options(): H1EngineOptions {
    return this.#options;
  }

  /** A socket to serve; `head`: bytes already read from it (protocol sniffing). */
  accept(socket: Socket, head: Buffer | null): void {
    const c = new H1Connection(this, socket);
    this.connections.add(c);
    if (this.#timer === null) {
      this.#timer = setInterval(tick, 1000, this);
      this.#timer.unref();
    }
    if (head !== null && head.length > 0) c.onData(head);
  }

  serve(d: Downstream): void {
    this.#serve(d);
  }

  date(): string {
    const now = Date.now();
    if (now - this.#dateAt >= 1000) {
      this.#dateAt = now - (now % 1000);
      this.#date = new Date(now).toUTCString();
    }
    return this.#date;
  }

  forget(c: H1Connection): void {
    this.connections.delete(c);
  }

  /** Closes connections with no request in progress (drain). */
  closeIdle(): void {
    for (const c of this.connections) c.closeIfIdle();
  }

  /** Closes every connection. */
  closeAll(): void {
    for (const c of this.connections) c.socket.destroy();
  }

  /** Stops the timer (the listener is gone). */
  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }

  check(now: number): void {
    for (const c of this.connections) c.check(now, this.#options);
  }
}

function tick(e: H1Engine): void {
  e.check(Date.now());
}

export class H1Connection implements H1Link, ParserHandler {
  readonly socket: Socket;
  readonly #engine: H1Engine;
  readonly #parser: H1Parser;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly tls: TLSSocket | null;
  rejected = false;
  #phase = Phase.Head;
  /** When the current phase started (head timeout, idle timeout). */
  #since = Date.now();
  /** Bytes read + written when the tick last saw progress of the request in progress. */
  #progress = -1;
  #current: H1Downstream | null = null;
  /** Bytes read past a complete request whose response is still under way. */
  #stash: Buffer | null = null;
  /** Inside `#consume` (a response completing synchronously must not re-enter the parser). */
  #consuming = false;
  /** The client half-closed: close once the current response is done. */
  #peerEnded = false;

  constructor(engine: H1Engine, socket: Socket) {
    this.#engine = engine;
    this.socket = socket;
    const o = engine.options;
    this.#parser = new H1Parser(this, o.maxHeaderSize, o.maxHeadersCount);
    this.remoteAddress = socket.remoteAddress ?? '';
    this.remotePort = socket.remotePort ?? 0;
    this.localAddress = socket.localAddress ?? '';
    this.localPort = socket.localPort ?? 0;
    this.tls = (socket as TLSSocket).encrypted === true ? (socket as TLSSocket) : null;
    socket.setNoDelay(true);
    (socket as Socket & { [kConn]?: H1Connection })[kConn] = this;
    socket.on('data', onSocketData);
    socket.on('drain', onSocketDrain);
    socket.on('end', onSocketEnd);
    socket.on('close', onSocketClose);
    socket.on('error', noop);
  }

  date(): string {
    return this.#engine.date();
  }

  // ---- input ----

  onData(chunk: Buffer): void {
    if (this.#phase === Phase.Gone) return;
    if (this.#stash !== null) {
      this.#stash = Buffer.concat([this.#stash, chunk]);
      this.socket.pause();
      return;
    }
    if (this.#phase === Phase.Idle) {
      this.#phase = Phase.Head;
      this.#since = Date.now();
    }
    this.#consume(chunk, 0);
  }

  #consume(buf: Buffer, offset: number): void {
    const parser = this.#parser;
    this.#consuming = true;
    try {
      let i = offset;
      while (i < buf.length || (this.#current !== null && this.#current.requestComplete && this.#current.responseOver)) {
        const cur = this.#current;
        if (cur !== null && cur.requestComplete) {
          if (!cur.responseOver) {
            // Pipelined bytes wait for the response in progress.
            if (i < buf.length) {
              this.#stash = buf.subarray(i);
              this.socket.pause();
            }
            return;
          }
          this.#current = null;
          parser.next();
          if (!this.#afterResponse(cur)) return;
          if (i < buf.length) {
            this.#phase = Phase.Head;
            this.#since = Date.now();
          }
          continue;
        }
        i = parser.execute(buf, i);
        const h = this.#current;
        if (h !== null && h.upgrade !== null && h.upgrade.socket === this.socket && h.upgrade.head.length === 0 && i < buf.length) {
          h.upgrade.head = buf.subarray(i);
          return;
        }
        if (this.#phase === Phase.Gone) return;
      }
    } catch (err) {
      if (err instanceof ParseError) this.#refuse(err.status);
      else throw err;
    } finally {
      this.#consuming = false;
    }
  }

  onHead(head: RequestHead): void {
    this.#phase = Phase.Active;
    this.#progress = -1;
    if (head.method === 'CONNECT') {
      // As node:http with no `connect` listener: the connection is closed without an answer.
      this.#phase = Phase.Gone;
      this.socket.destroy();
      return;
    }
    const hasBody = head.framing === Framing.Chunked || (head.framing === Framing.Length && head.contentLength > 0);
    const body = hasBody && !head.upgrade ? new RequestBody(this.socket) : null;
    const d = new H1Downstream(this, head, body);
    this.#current = d;
    if (head.expectOther) {
      d.rejectConnection();
      this.#phase = Phase.Gone;
      this.socket.end(refusal(417));
      return;
    }
    if (head.upgrade) {
      // The parser stops after the head: the rest of the bytes is the tunnel's (set by #consume).
      d.requestComplete = true;
      d.keepAlive = false;
      this.#phase = Phase.Gone;
      // The parser flags only upgrades meshgate tunnels (WebSocket); others are plain requests.
      d.upgrade = { socket: this.socket, head: NO_BYTES, stream: null };
      // The tunnel's owner (websocket.ts) reads, writes and half-closes the socket from now on.
      this.socket.removeListener('data', onSocketData);
      this.socket.removeListener('drain', onSocketDrain);
      this.socket.removeListener('end', onSocketEnd);
    } else if (head.expectContinue && hasBody) this.socket.write(CONTINUE);
    this.#engine.serve(d);
  }

  onBody(chunk: Buffer): void {
    const d = this.#current;
    if (d === null || d.responseOver) return; // answered already: the rest of the body is read and dropped
    const body = d.requestBody;
    if (body !== null && !body.destroyed && !body.push(chunk)) this.socket.pause();
  }

  onMessageComplete(): void {
    const d = this.#current;
    if (d === null) return;
    d.requestComplete = true;
    const body = d.requestBody;
    if (body !== null && !body.destroyed) body.push(null);
  }

  // ---- output ----

  /** H1Link: the response of `d` is complete or abandoned. */
  responseDone(d: H1Downstream): void {
    if (d !== this.#current) return;
    // As node:http's 'close' event, on a later tick: the code that ended the response may still
    // add to its record (a retry's URX flag after the local reply).
    process.nextTick(closeDownstream, d);
    if (this.#phase === Phase.Gone && d.upgrade === null) {
      // An upgrade request answered locally: the connection ends with the answer.
      this.#closeAfterWrite();
      return;
    }
    if (!d.requestComplete) {
      if (!d.keepAlive) this.#closeAfterWrite();
      // Else the rest of the request body is read and dropped (reading resumes if the body's
      // reader had paused it); then the next request.
      else if (this.socket.isPaused() && this.#stash === null) this.socket.resume();
      return;
    }
    if (this.#consuming) return; // #consume goes on with the next request
    this.#current = null;
    this.#parser.next();
    if (!this.#afterResponse(d)) return;
    const stash = this.#stash;
    if (stash !== null) {
      this.#stash = null;
      this.socket.resume();
      // Not from inside the upstream's callback: the next pipelined request starts on its own tick.
      setImmediate(consumeStash, this, stash);
    }
  }

  /** Keep-alive or close after a response; false when the connection is closing. */
  #afterResponse(d: H1Downstream): boolean {
    if (!d.keepAlive || this.#peerEnded || d.destroyed) {
      this.#closeAfterWrite();
      return false;
    }
    this.#phase = Phase.Idle;
    this.#since = Date.now();
    if (this.socket.isPaused() && this.#stash === null) this.socket.resume();
    return true;
  }

  resumeStash(stash: Buffer): void {
    if (this.#phase === Phase.Gone) return;
    if (this.#phase === Phase.Idle) {
      this.#phase = Phase.Head;
      this.#since = Date.now();
    }
    this.#consume(stash, 0);
  }

  drained(): void {
    const d = this.#current;
    if (d !== null && d.owner !== null) d.owner.drained();
  }

  /**
   * The client half-closed. As node:http's server (no `httpAllowHalfOpen`): the request in
   * progress is abandoned (its upstream request aborted) and the connection closes.
   */
  peerEnded(): void {
    this.#peerEnded = true;
    this.socket.destroy();
  }

  closed(): void {
    this.#phase = Phase.Gone;
    this.#engine.forget(this);
    const d = this.#current;
    if (d !== null) {
      this.#current = null;
      d.connectionClosed();
      closeDownstream(d);
    }
  }

  /**
   * Drain: close a keep-alive connection waiting between requests; a request in progress closes
   * the connection after its response. A connection that has not sent its first request yet (a
   * TLS connection just past its handshake) is left to send it (its answer closes the connection):
   * closing it would fail a request the client already sent. The head timeout, or the end of the
   * drain, closes one that sends nothing.
   */
  closeIfIdle(): void {
    if (this.#phase === Phase.Idle) this.socket.destroy();
    else if (this.#current !== null) this.#current.closeAfterResponse();
  }

  /** The engine's tick: head timeout (408) and keep-alive idle timeout. */
  check(now: number, o: H1EngineOptions): void {
    if (this.#phase === Phase.Head && now - this.#since > o.headersTimeout) this.#refuse(408);
    else if (this.#phase === Phase.Idle && now - this.#since > o.keepAliveTimeout) this.socket.destroy();
    else if (this.#phase === Phase.Active && o.streamIdleTimeout > 0) {
      // Progress is any byte read or handed to the socket; the first tick of a request only marks it.
      const progress = this.socket.bytesRead + this.socket.bytesWritten;
      if (progress !== this.#progress) {
        this.#progress = progress;
        this.#since = now;
      } else if (now - this.#since > o.streamIdleTimeout) {
        this.socket.destroy();
      }
    }
  }

  /** A refused request: answered (unless a response is already under way), then the connection closes. */
  #refuse(status: number): void {
    const d = this.#current;
    this.#phase = Phase.Gone;
    this.#stash = null;
    if (d !== null) {
      // A request under way whose body turned out malformed: its upstream request is aborted.
      const body = d.requestBody;
      if (body !== null && !body.destroyed) body.destroy(Object.assign(new Error('meshgate: malformed request body'), { code: 'HPE_INVALID_CHUNK_SIZE' }));
    }
    if (d === null || !d.headersSent) {
      if (d !== null) {
        d.rejectConnection();
        // The refusal is the answer: nothing the request path still sends reaches the socket.
        d.connectionClosed();
      }
      this.socket.end(refusal(status));
      this.socket.once('finish', destroySocket);
      setTimeout(destroySocket.bind(this.socket), 2000).unref();
    } else {
      this.socket.destroy();
    }
  }

  #closeAfterWrite(): void {
    this.#phase = Phase.Gone;
    this.#stash = null;
    const s = this.socket;
    if (s.destroyed) return;
    s.end();
    // Half-open sockets: close once what was written has gone out (the client may not close).
    if (s.writableFinished) s.destroy();
    else s.once('finish', destroySocket);
  }
}

const kConn = Symbol('meshgate.h1');
const NO_BYTES = Buffer.alloc(0);
type TaggedSocket = Socket & { [kConn]?: H1Connection };

function onSocketData(this: TaggedSocket, chunk: Buffer): void {
  this[kConn]?.onData(chunk);
}
function onSocketDrain(this: TaggedSocket): void {
  this[kConn]?.drained();
}
function onSocketEnd(this: TaggedSocket): void {
  this[kConn]?.peerEnded();
}
function onSocketClose(this: TaggedSocket): void {
  this[kConn]?.closed();
}
function consumeStash(c: H1Connection, stash: Buffer): void {
  c.resumeStash(stash);
}
function destroySocket(this: Socket): void {
  this.destroy();
}
function noop(): void {}

