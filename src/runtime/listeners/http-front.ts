/**
 * The front end of an HTTP(S) listener: one accepting socket server and two protocol engines that
 * never listen themselves: an HTTP/1.1 engine (meshgate's own, runtime/h1/, or node:http's
 * `http.Server`: `--http1-engine`) and an HTTP/2 `http2.Http2Server`.
 *
 * - TLS listeners offer ALPN `h2` and `http/1.1` (RFC 7301); the negotiated protocol picks the
 *   engine once the handshake is done. A client that offers no ALPN speaks HTTP/1.1.
 * - Plaintext listeners accept HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3): the first bytes are
 *   compared with the connection preface; anything else is HTTP/1.1. The h2c `Upgrade` dance of
 *   RFC 7540 §3.2 is not offered (RFC 9113 deprecates it; Envoy does not accept it either).
 *
 * Handing a socket to an engine is a `connection` event, which is exactly what `http.Server` and
 * `https.Server` do internally, so the HTTP/1.1 path keeps Node's native parser (`parser.consume`).
 */

import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { guardSession } from './h2-guard.js';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** HTTP/2 server settings for an edge proxy (hardening.md §4.3). */
export const H2_OPTIONS: http2.ServerOptions = {
  settings: {
    /** H2-01: at most 100 concurrent streams per connection (Envoy's edge recommendation). */
    maxConcurrentStreams: 100,
    /** H2-02: header block limit, as the 64 KiB of HTTP/1.1 request head. */
    maxHeaderListSize: 64 * 1024,
    /** Extended CONNECT (RFC 8441): WebSocket over HTTP/2 (http/websocket.ts); plain CONNECT stays 405. */
    enableConnectProtocol: true,
  },
  /** Header fields per block, pseudo-headers included (MAX_REQUEST_HEADERS + the four request pseudo-headers). */
  maxHeaderListPairs: 104,
  /** H2-03: bound the outbound control-frame queue of a peer that does not read. */
  maxOutstandingPings: 10,
  /** Per-session memory cap in MB (Node default 10); over it new streams are refused. */
  maxSessionMemory: 10,
};

/** Idle HTTP/2 connections (no open stream) are closed with GOAWAY after this long, as HTTP/1.1 keep-alive. */
export const H2_IDLE_TIMEOUT_MS = 60_000;

/** A plaintext connection must send its first bytes within this long (as the HTTP/1.1 head timeout). */
const SNIFF_TIMEOUT_MS = 10_000;

/** An HTTP/1.1 engine: it serves the sockets the listener hands it. */
export interface Http1Engine {
  /** Serve `socket`; `head`: bytes already read from it (protocol sniffing), or null. */
  accept(socket: net.Socket, head: Buffer | null): void;
  /** Close connections with no request in progress (drain). */
  closeIdle(): void;
  /** Close every connection. */
  closeAll(): void;
  /** The listener is gone: stop the engine's timers. */
  close(): void;
}

/** The HTTP/1.1 engines: `meshgate` (runtime/h1/) or `node` (node:http's server). */
export type Http1EngineKind = 'meshgate' | 'node';

/** The engine used when neither `--http1-engine` nor MESHGATE_HTTP1_ENGINE says. */
export const DEFAULT_HTTP1_ENGINE: Http1EngineKind = 'meshgate';

/**
 * The engine MESHGATE_HTTP1_ENGINE names (`meshgate run --http1-engine` sets it, so worker
 * processes inherit the choice), else the default. An unknown value is the default.
 */
export function http1EngineFromEnv(): Http1EngineKind {
  const v = process.env.MESHGATE_HTTP1_ENGINE;
  return v === 'meshgate' || v === 'node' ? v : DEFAULT_HTTP1_ENGINE;
}

/** node:http's server as an Http1Engine (`--http1-engine node`). */
export class NodeHttp1Engine implements Http1Engine {
  readonly server: http.Server;
  constructor(server: http.Server) {
    this.server = server;
    // A server that never listens never starts the head-timeout checker; start it (slowloris).
    server.emit('listening');
  }
  accept(socket: net.Socket, head: Buffer | null): void {
    // Handing a socket to http.Server is a `connection` event, as `net.Server` does internally; the
    // bytes read so far go to its parser first, synchronously, so nothing can overtake them.
    this.server.emit('connection', socket);
    if (head !== null) socket.emit('data', head);
  }
  closeIdle(): void {
    this.server.closeIdleConnections();
  }
  closeAll(): void {
    this.server.closeAllConnections();
  }
  close(): void {
    // Stops the engine's head-timeout checker (it never listened, so close() reports that).
    this.server.close(noop);
  }
}

/** The two engines behind one listener. */
export interface HttpEngines {
  h1: Http1Engine;
  h2: http2.Http2Server;
}

/**
 * Session bookkeeping for drains and idle timeouts: Node's http2 server does not track its
 * sessions, and its own session timeout would also close a quiet long-lived stream (gRPC, SSE).
 */
export class SessionTracker {
  readonly sessions = new Set<http2.ServerHttp2Session>();
  #closing = false;

  attach(h2: http2.Http2Server): void {
    h2.on('session', (session: http2.ServerHttp2Session) => {
      this.sessions.add(session);
      let open = 0;
      session.on('stream', (stream: http2.ServerHttp2Stream) => {
        open++;
        stream.once('close', () => open--);
      });
      session.setTimeout(H2_IDLE_TIMEOUT_MS, () => {
        if (open === 0) session.close();
      });
      session.once('close', () => this.sessions.delete(session));
      session.on('error', noop);
      if (this.#closing) closeAfterFirstStreams(session);
      lastSession = session;
    });
  }

  /** GOAWAY to every session: in-flight streams finish, no new ones start. */
  closeAll(): void {
    this.#closing = true;
    for (const s of this.sessions) s.close();
  }

  destroyAll(): void {
    for (const s of this.sessions) s.destroy();
  }
}

/**
 * A session that starts on a draining listener (its connection was accepted before the swap): the
 * requests the client sent with its preface are served, then GOAWAY. A GOAWAY before any stream
 * would fail the request the client already sent (a client refuses its own pending streams on
 * GOAWAY); one that sends nothing is closed after the sniffing timeout (or at the end of the drain).
 */
function closeAfterFirstStreams(session: http2.ServerHttp2Session): void {
  const timer = setTimeout(() => session.close(), SNIFF_TIMEOUT_MS);
  timer.unref();
  session.once('close', () => clearTimeout(timer));
  session.once('stream', () => {
    clearTimeout(timer);
    // After the other streams of the same read: close() answers what was received.
    setImmediate(() => session.close());
  });
}

/** Set synchronously by the `session` listener while `connection` is being emitted. */
let lastSession: http2.ServerHttp2Session | null = null;
let handleSymbol: symbol | null | undefined;

/**
 * Gives bytes already read from `socket` to the HTTP/2 session that now owns it. Node 20's
 * `Http2Session` reads the socket's native handle directly and would never see bytes that went
 * through JavaScript; its native handle accepts them through `receive` (used by Node itself for
 * the same purpose in later versions).
 */
function feedSession(session: http2.ServerHttp2Session, bytes: Buffer): boolean {
  if (handleSymbol === undefined) {
    handleSymbol = Object.getOwnPropertySymbols(session).find((s) => s.description === 'kHandle') ?? null;
  }
  if (handleSymbol === null) return false;
  const handle = (session as unknown as Record<symbol, { receive?: (b: Buffer) => void } | undefined>)[handleSymbol];
  if (handle === undefined || typeof handle.receive !== 'function') return false;
  handle.receive(bytes);
  return true;
}

/** Hands a plaintext socket to the engine its first bytes ask for. */
export function sniffPlaintext(socket: net.Socket, engines: HttpEngines): void {
  let buffered: Buffer | null = null;
  socket.setTimeout(SNIFF_TIMEOUT_MS, () => socket.destroy());
  const onData = (chunk: Buffer): void => {
    const data = buffered === null ? chunk : Buffer.concat([buffered, chunk]);
    const n = Math.min(data.length, PREFACE.length);
    const prefaceSoFar = data.compare(PREFACE, 0, n, 0, n) === 0;
    if (prefaceSoFar && data.length < PREFACE.length) {
      buffered = data;
      return;
    }
    socket.removeListener('data', onData);
    socket.removeListener('error', onEarlyError);
    socket.removeListener('end', onEarlyEnd);
    socket.setTimeout(0);
    if (prefaceSoFar) {
      // HTTP/2 has no use for half-open sockets (GOAWAY ends a session); Node's own h2 server
      // sockets are not half-open either, and the session would leave a FIN'd socket in CLOSE-WAIT.
      socket.allowHalfOpen = false;
      lastSession = null;
      engines.h2.emit('connection', socket);
      const session = lastSession as http2.ServerHttp2Session | null;
      lastSession = null;
      if (session === null || !feedSession(session, data)) socket.destroy();
      return;
    }
    engines.h1.accept(socket, data);
  };
  socket.on('data', onData);
  socket.on('error', onEarlyError);
  // Half-open sockets (as http.Server makes them): a client that closes before saying anything is closed.
  socket.on('end', onEarlyEnd);
}

/** Hands a TLS socket to the engine ALPN chose. */
export function dispatchTls(socket: tls.TLSSocket, engines: HttpEngines): void {
  if (socket.alpnProtocol === 'h2') engines.h2.emit('connection', socket);
  else engines.h1.accept(socket, null);
}

/** The engines of one listener. */
export function createEngines(h1: Http1Engine, tracker: SessionTracker): HttpEngines {
  const h2 = http2.createServer(H2_OPTIONS);
  tracker.attach(h2);
  h2.on('session', guardSession); // rapid reset and window guards (h2-guard.ts)
  return { h1, h2 };
}

function onEarlyError(): void {}
function onEarlyEnd(this: net.Socket): void {
  this.destroy();
}
function noop(): void {}
