/**
 * Listeners and their sockets, kept across snapshot swaps (the way Envoy's listener manager and
 * nginx's reload keep listening sockets: only the handling changes).
 *
 * Two layers:
 * - a *socket* per bound `address:port` (`SocketTable`, shared with the TCP listeners, so a port
 *   moving between an HTTP(S) and a TCP/TLS listener keeps its socket too). It lives while some
 *   listener of the snapshot binds that address and port, whatever else changes: protocol (HTTP
 *   <-> HTTPS), TLS settings, passthrough routes, hosted listeners. Only an address:port that
 *   leaves the snapshot (or whose listener becomes hosted by a wildcard socket, or stops being so)
 *   closes a socket; a connection is never refused because of a reload that keeps its port.
 * - a *listener record* per IR listener: the compiled listener, its HTTP engines, its TLS handshake
 *   engine, its open connections. A swap points each record at its new compiled listener (one
 *   reference assignment, so requests see the old or the new snapshot, never a mix) and each socket
 *   at its record. A record whose connections cannot carry on under the new listener (its protocol
 *   changed: a plaintext keep-alive connection cannot become TLS) is replaced: new connections go to
 *   the new record while the old one drains (its in-flight requests finish on the config they
 *   started with; idle keep-alive connections close; HTTP/2 sessions get GOAWAY).
 * A bind failure is reported, never thrown, and leaves the other listeners alone.
 *
 * A listener on a specific address whose port also has a wildcard listener (0.0.0.0, ::) cannot
 * bind its own socket (the kernel refuses it next to a listening wildcard socket): it is *hosted*
 * by the wildcard listener's socket, which accepts every connection of the port and hands each one,
 * by the address it arrived at (getsockname, as nginx does for `listen 80` beside `listen
 * 10.0.0.5:80`), to the hosted listener of that address, or keeps it. Gaining the first or losing
 * the last hosted listener only switches that hand-out on or off.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import tls, { type TLSSocket } from 'node:tls';
import { selectCertificate, selectFilterChain } from '../compile/lookup.js';
import type { CompiledListener, CompiledSnapshot, CompiledTls } from '../compile/types.js';
import { handleRequest, MAX_REQUEST_HEADERS, type RequestEnv } from '../http/request-handler.js';
import { FLAGS_HEADER, SERVER_NAME } from '../http/local-reply.js';
import { acceptUpgrade, NodeDownstream } from '../http/node-downstream.js';
import { acceptH2Stream } from '../h2/h2-downstream.js';
import http2, { type ServerHttp2Stream } from 'node:http2';
import { checkClientCertificate } from './client-cert.js';
import { createEngines, DEFAULT_HTTP1_ENGINE, dispatchTls, NodeHttp1Engine, SessionTracker, sniffPlaintext, type Http1Engine, type Http1EngineKind, type HttpEngines } from './http-front.js';
import http from 'node:http';
import { H1Engine } from '../h1/engine.js';
import { internalFailure } from '../http/internal-failure.js';
import type { Downstream } from '../http/downstream.js';
import { NO_RESUMPTION, secureContextOptions, type TlsContextCache } from './tls-contexts.js';
import { SocketTable, type ConnectionHandler } from './socket-table.js';
import { peekClientHello } from '../tcp/client-hello.js';
import { plainAddress } from '../http/downstream.js';
import { listenerKey } from '../compile/compile-snapshot.js';

/** Server settings for an edge proxy (hardening.md §3). */
export const SERVER_OPTIONS = {
  /** Whole request head within 10 s (slowloris). */
  headersTimeout: 10_000,
  /** No whole-request deadline: bodies may stream for long. */
  requestTimeout: 0,
  /** Idle keep-alive connections close after 60 s (Envoy's idle timeout is 1 h; nginx 75 s). */
  keepAliveTimeout: 60_000,
  /**
   * A request in progress with no byte read from or written to its connection for this long is closed
   * (Envoy's stream_idle_timeout default, 5 min; nginx's client_body_timeout/send_timeout are 60 s):
   * a client trickling its body, or not reading its answer, cannot hold the connection forever.
   * meshgate's HTTP/1.1 engine only.
   */
  streamIdleTimeout: 300_000,
  /** Node only enforces headersTimeout at this interval; its 30 s default lets slowloris in. */
  connectionsCheckingInterval: 1000,
  /** 64 KiB of request head; more is 431 (`onClientError`). */
  maxHeaderSize: 64 * 1024,
  /** HTTP/1.1 without Host is refused by the request path (400 DPE with the gateway's headers), not by Node. */
  requireHostHeader: false,
} as const;

/** Where one listener stands after a sync. */
export interface ListenerStatus {
  /** Listener name from the IR (`<address>_<port>`). */
  name: string;
  /** `address:port` as in the IR. */
  key: string;
  address: string;
  /** Port from the IR (0 = any free port). */
  port: number;
  /** Port actually bound; null when binding failed. */
  boundPort: number | null;
  protocol: 'HTTP' | 'HTTPS';
  state: 'listening' | 'failed';
  /** Why binding failed; null when listening. */
  error: string | null;
}

/** TLS handshakes must finish within 10 s (hardening T-04; Node's default is 120 s). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

const kRecord = Symbol('meshgate.listener');
/** A listener's TLS handshake engine or one of its two HTTP engines (they never listen). */
type TaggedServer = net.Server & { [kRecord]?: ListenerRecord };

/**
 * One IR listener's handling: its compiled listener (swapped on reload), engines and connections.
 * It owns no socket: the socket of its address:port (or, hosted, of its port's wildcard) hands it
 * the connections it accepts.
 */
class ListenerRecord {
  draining = false;
  /** Draining: when whatever connections are left are closed (ms since the epoch). */
  drainDeadline = Infinity;
  /** Bound by no socket of its own: the wildcard socket of its port hands it the connections of its address. */
  hosted = false;
  /** HTTPS: the TLS handshake engine, a never-listening server the accepted sockets are handed to. */
  tlsServer: tls.Server | null = null;
  /** Key of the TLS settings the server's default (no-SNI) context was built from. */
  defaultTlsKey = '';
  /** Draining: the SecureContexts of its certificates, kept for the handshakes it still runs (the cache keeps only the current snapshot's). */
  pinned: Map<string, tls.SecureContext> | null = null;
  readonly sessions = new SessionTracker();
  /** Every socket handed to the listener and still open, whatever stage it is at (TLS handshake, protocol sniffing, engine). */
  readonly sockets = new Set<net.Socket>();
  readonly engines: HttpEngines;
  constructor(
    public compiled: CompiledListener,
    readonly env: RequestEnv,
    kind: Http1EngineKind,
  ) {
    this.engines = createEngines(kind === 'meshgate' ? this.#meshgateEngine() : this.#nodeEngine(), this.sessions);
  }

  /** Every request of meshgate's HTTP/1.1 engine, upgrades included, starts here. */
  serve(d: Downstream): void {
    // The one read of the snapshot this request will use to the end.
    const listener = this.compiled;
    if (this.draining) d.closeAfterResponse();
    try {
      handleRequest(this.env, listener, d);
    } catch (err) {
      internalFailure(d, err, 'request path');
    }
  }

  #meshgateEngine(): Http1Engine {
    return new H1Engine(
      {
        headersTimeout: SERVER_OPTIONS.headersTimeout,
        keepAliveTimeout: SERVER_OPTIONS.keepAliveTimeout,
        streamIdleTimeout: SERVER_OPTIONS.streamIdleTimeout,
        maxHeaderSize: SERVER_OPTIONS.maxHeaderSize,
        // One more than the limit, so the request path sees "too many" and answers 431.
        maxHeadersCount: MAX_REQUEST_HEADERS + 1,
      },
      (d) => this.serve(d),
    );
  }

  #nodeEngine(): Http1Engine {
    const h1 = http.createServer({ ...SERVER_OPTIONS });
    (h1 as TaggedServer)[kRecord] = this;
    // Node keeps at most maxHeadersCount headers and silently drops the rest: allow one more than
    // the limit so the request path can see "too many" and answer 431.
    h1.maxHeadersCount = MAX_REQUEST_HEADERS + 1;
    h1.on('request', onRequest);
    h1.on('upgrade', onUpgrade);
    h1.on('clientError', onClientError);
    return new NodeHttp1Engine(h1);
  }
}

/**
 * 'request' listener of node:http's HTTP/1.1 engine (`--http1-engine node`): `this` is the engine.
 */
function onRequest(this: TaggedServer, req: IncomingMessage, res: ServerResponse): void {
  const rec = this[kRecord]!;
  // The one read of the snapshot this request will use to the end.
  const listener = rec.compiled;
  if (rec.draining) res.shouldKeepAlive = false;
  const d = new NodeDownstream(req, res);
  try {
    handleRequest(rec.env, listener, d);
  } catch (err) {
    internalFailure(d, err, 'request path');
  }
}

/** 'upgrade' listener of the HTTP/1.1 engine (WebSocket): the request path decides, then splices. */
function onUpgrade(this: TaggedServer, req: IncomingMessage, socket: net.Socket, head: Buffer): void {
  const rec = this[kRecord]!;
  const listener = rec.compiled;
  try {
    acceptUpgrade(req, socket, head, (d) => {
      try {
        handleRequest(rec.env, listener, d);
      } catch (err) {
        internalFailure(d, err, 'request path (upgrade)');
      }
    });
  } catch (err) {
    internalFailure(null, err, 'upgrade');
    socket.destroy();
  }
}

/** 'stream' listener of the HTTP/2 engine: every HTTP/2 request, extended CONNECT (WebSocket) included. */
function onH2Stream(this: TaggedServer, stream: ServerHttp2Stream, _headers: unknown, _flags: number, rawHeaders: string[]): void {
  const rec = this[kRecord]!;
  try {
    acceptH2Stream(stream, rawHeaders, (d) => rec.serve(d));
  } catch (err) {
    // rec.serve catches the request path; this is the stream's own setup (or its 405).
    internalFailure(null, err, 'HTTP/2 stream');
    if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
  }
}

/**
 * Relays a connection unterminated when its SNI matches one of the listener's passthrough routes
 * (`address:port` of the listener, the connection, its SNI ('' = none), offered ALPN, the bytes read
 * so far); false when no route matches (the caller terminates TLS).
 */
export type PassthroughRelay = (key: string, socket: net.Socket, sni: string, alpn: readonly string[], head: Buffer) => boolean;

/** Time a client of a passthrough-capable HTTPS listener has to send its ClientHello (as TLS passthrough listeners). */
const PEEK_TIMEOUT_MS = 10_000;

/**
 * Front of an HTTPS listener with passthrough routes (ingress-nginx ssl-passthrough): reads the
 * ClientHello (nothing is written meanwhile); a passthrough SNI is relayed as is, anything else is
 * put back (unshift) and handed to the TLS engine, which terminates it like any HTTPS connection.
 */
function onPassthroughFront(rec: ListenerRecord, relay: PassthroughRelay | null, socket: net.Socket): void {
  socket.setNoDelay(true);
  socket.on('error', noop);
  peekClientHello(socket, PEEK_TIMEOUT_MS, (hello, seen) => {
    const sni = hello.kind === 'sni' ? hello.serverName : '';
    const alpn = hello.kind === 'sni' || hello.kind === 'no-sni' ? hello.alpn : [];
    if (hello.kind === 'sni' && relay !== null && relay(rec.compiled.key, socket, sni, alpn, seen)) return;
    const engine = rec.tlsServer;
    if (engine === null) return void socket.destroy();
    // As https.Server: a terminated connection is not half-open.
    socket.allowHalfOpen = false;
    socket.unshift(seen);
    engine.emit('connection', socket);
  });
}

/**
 * Hands an accepted connection to a listener: counted as its connection, then handled as the
 * listener's current compiled listener says (plaintext sniffing, the ClientHello front of
 * passthrough routes, or the TLS handshake).
 */
function acceptInto(rec: ListenerRecord, relay: PassthroughRelay | null, socket: net.Socket): void {
  const sockets = rec.sockets;
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
  const l = rec.compiled;
  if (l.protocol === 'HTTP') return sniffPlaintext(socket, rec.engines);
  if (l.passthrough) return onPassthroughFront(rec, relay, socket);
  const engine = rec.tlsServer;
  if (engine === null) return void socket.destroy();
  // As https.Server: a terminated connection is not half-open.
  socket.allowHalfOpen = false;
  engine.emit('connection', socket);
}

function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

/**
 * The key of the wildcard listener that hosts `l` (a specific address) among `keys`: `0.0.0.0` of
 * its port for IPv4 (else `::`, dual-stack), `::` for IPv6; null when there is none.
 */
function hostKeyOf(l: CompiledListener, keys: { has(key: string): boolean }): string | null {
  if (isWildcard(l.address)) return null;
  const candidates = l.address.includes(':') ? ['::'] : ['0.0.0.0', '::'];
  for (const w of candidates) {
    const key = listenerKey(w, l.port);
    if (keys.has(key)) return key;
  }
  return null;
}

/**
 * Listeners on a specific address whose port has a wildcard listener of the same family (hosted),
 * and the wildcard listeners that host them (dispatching).
 */
function hostingOf(listeners: readonly CompiledListener[]): { hosted: Set<string>; dispatching: Set<string> } {
  const hosted = new Set<string>();
  const dispatching = new Set<string>();
  const keys = new Set(listeners.map((l) => l.key));
  for (const l of listeners) {
    const host = hostKeyOf(l, keys);
    if (host === null) continue;
    hosted.add(l.key);
    dispatching.add(host);
  }
  return { hosted, dispatching };
}

/**
 * A socket of the table this manager serves: where its connections go. The table hands each
 * accepted connection to `handler`, which reads `target` and `dispatching` of the moment.
 */
class Acceptor {
  /** The listener of this address:port (swapped on reload). */
  target: ListenerRecord;
  /** The port has hosted listeners: each connection goes to the listener of the address it arrived at (else `target`). */
  dispatching = false;
  readonly handler: ConnectionHandler;
  constructor(
    /** The socket's key in the SocketTable. */
    readonly tableKey: string,
    target: ListenerRecord,
    dispatch: (a: Acceptor, socket: net.Socket) => void,
  ) {
    this.target = target;
    this.handler = (socket) => dispatch(this, socket);
  }
}

const NONE: ReadonlySet<string> = new Set();

export class ListenerManager {
  /** Every listener of the current snapshot, by `address:port` (hosted ones and those whose bind failed included). */
  readonly #records = new Map<string, ListenerRecord>();
  /** The sockets this manager serves, by listener key. */
  readonly #acceptors = new Map<string, Acceptor>();
  readonly #sockets: SocketTable;
  /** Records replaced or removed and not yet drained, with their drains (cut short by `close`). */
  readonly #draining = new Map<ListenerRecord, Promise<void>>();
  readonly #env: RequestEnv;
  readonly #tls: TlsContextCache;

  readonly #http1: Http1EngineKind;
  readonly #relay: PassthroughRelay | null;

  /**
   * `relay`: where HTTPS listeners with passthrough routes send the connections whose SNI is
   * passthrough (TcpListenerManager); `sockets`: the runtime's socket table, shared with its TCP listeners.
   */
  constructor(env: RequestEnv, tls: TlsContextCache, http1: Http1EngineKind = DEFAULT_HTTP1_ENGINE, relay: PassthroughRelay | null = null, sockets: SocketTable = new SocketTable()) {
    this.#sockets = sockets;
    this.#env = env;
    this.#tls = tls;
    this.#http1 = http1;
    this.#relay = relay;
  }

  /**
   * Applies the listeners of `snapshot`. Resolves when binds have been attempted (drains of
   * replaced or removed listeners go on in the background for up to `drainMs`). `tcpKeys`: the
   * socket keys the TCP listeners of the same snapshot bind (synced after this): a socket this
   * manager gives up to them stays open for them to take, one they give up is taken here.
   */
  async sync(snapshot: CompiledSnapshot, drainMs: number, tcpKeys: ReadonlySet<string> = NONE): Promise<ListenerStatus[]> {
    const { hosted, dispatching } = hostingOf(snapshot.listeners);
    const retired: ListenerRecord[] = [];
    // 1. Every listener switches to its new compiled listener, synchronously (no await before 2).
    for (const l of snapshot.listeners) {
      let rec = this.#records.get(l.key);
      // A connection cannot change protocol: a listener that does gets a new record (new
      // connections go there) while the old one drains. Anything else changes in place: TLS
      // settings (the default context here, SNI contexts per handshake), passthrough routes
      // (read per connection by acceptInto), being hosted or not.
      if (rec !== undefined && rec.compiled.protocol !== l.protocol) {
        retired.push(rec);
        rec = undefined;
      }
      if (rec === undefined) {
        rec = this.#createRecord(l);
        this.#records.set(l.key, rec);
      } else {
        rec.compiled = l;
        if (l.protocol === 'HTTPS') this.#updateDefaultContext(rec);
      }
      rec.hosted = hosted.has(l.key);
    }
    for (const [key, rec] of this.#records) {
      if (snapshot.listenersByKey.has(key)) continue;
      this.#records.delete(key);
      retired.push(rec);
    }
    // 2. Every socket that stays points at its listener; a socket whose address:port left the
    // snapshot, or whose listener is now hosted by the wildcard socket of its port, stops
    // accepting now, before any bind below (a wildcard and a specific address of one port
    // cannot both listen).
    for (const [key, a] of this.#acceptors) {
      const rec = hosted.has(key) ? undefined : this.#records.get(key);
      if (rec === undefined) {
        this.#acceptors.delete(key);
        // Taken over by a TCP listener of this snapshot: until it is, connections still reach the (draining) listener.
        this.#sockets.release(a.tableKey, 'http', tcpKeys.has(a.tableKey));
        continue;
      }
      a.target = rec;
      a.dispatching = dispatching.has(key);
    }
    for (const rec of retired) this.#drain(rec, drainMs);
    // 3. New sockets: addresses and ports this manager does not serve yet (or whose bind failed
    // before). A socket a TCP listener gives up in this snapshot is taken over (synchronously,
    // before any await); the others are bound.
    const toBind: Acceptor[] = [];
    for (const l of snapshot.listeners) {
      if (hosted.has(l.key) || this.#acceptors.has(l.key)) continue;
      const a = new Acceptor(SocketTable.key('http', l.address, l.port), this.#records.get(l.key)!, this.#dispatch);
      a.dispatching = dispatching.has(l.key);
      if (this.#sockets.take(a.tableKey, 'http', a.handler, tcpKeys)) this.#acceptors.set(l.key, a);
      else toBind.push(a);
    }
    const bindErrors = new Map<string, string>();
    await Promise.all(
      toBind.map(async (a) => {
        const l = a.target.compiled;
        const error = await this.#sockets.bind(a.tableKey, 'http', l.address, l.port, a.handler);
        if (error !== null) bindErrors.set(l.key, error);
        else this.#acceptors.set(l.key, a);
      }),
    );
    const statuses: ListenerStatus[] = [];
    for (const l of snapshot.listeners) {
      let failed = bindErrors.get(l.key) ?? null;
      let a: Acceptor | undefined;
      if (hosted.has(l.key)) {
        // Served through the wildcard socket of its port: listening when that one is.
        const hostKey = hostKeyOf(l, snapshot.listenersByKey);
        a = hostKey === null ? undefined : this.#acceptors.get(hostKey);
        if (a === undefined) failed = `the wildcard listener of port ${l.port} that hosts it is not bound`;
      } else {
        a = this.#acceptors.get(l.key);
      }
      statuses.push({
        name: l.name,
        key: l.key,
        address: l.address,
        port: l.port,
        boundPort: a === undefined ? null : this.#sockets.boundPort(a.tableKey),
        protocol: l.protocol,
        state: a !== undefined ? 'listening' : 'failed',
        error: a !== undefined ? null : failed ?? 'not bound',
      });
    }
    return statuses;
  }

  /** Open downstream connections of each listener, by listener name. */
  async connectionCounts(): Promise<{ listener: string; active: number }[]> {
    return [...this.#records.values()].map((rec) => ({ listener: rec.compiled.name, active: rec.sockets.size }));
  }

  /** Stops accepting everywhere, lets in-flight requests finish for up to `graceMs`, then closes. */
  async close(graceMs: number): Promise<void> {
    for (const a of this.#acceptors.values()) this.#sockets.release(a.tableKey, 'http');
    this.#acceptors.clear();
    const recs = [...this.#records.values()];
    this.#records.clear();
    // Drains of earlier swaps end within the same grace period.
    const deadline = Date.now() + graceMs;
    for (const rec of this.#draining.keys()) rec.drainDeadline = Math.min(rec.drainDeadline, deadline);
    for (const rec of recs) this.#drain(rec, graceMs);
    await Promise.all([...this.#draining.values()]);
  }

  /** A listener's handling: engines and, for HTTPS, its TLS handshake engine. */
  #createRecord(l: CompiledListener): ListenerRecord {
    const rec = new ListenerRecord(l, this.#env, this.#http1);
    if (l.protocol === 'HTTPS') {
      rec.tlsServer = this.#createTlsServer();
      (rec.tlsServer as TaggedServer)[kRecord] = rec;
    }
    (rec.engines.h2 as unknown as TaggedServer)[kRecord] = rec;
    // The core stream API (no 'request' listener: node:http2's compatibility layer is never set up).
    rec.engines.h2.on('stream', onH2Stream as unknown as (stream: unknown, headers: unknown, flags: unknown, rawHeaders: unknown) => void);
    if (l.protocol === 'HTTPS') this.#updateDefaultContext(rec);
    return rec;
  }

  /** Drains a listener no socket hands connections to any more (tracked, so `close` waits for it). */
  #drain(rec: ListenerRecord, graceMs: number): void {
    if (rec.tlsServer !== null) rec.pinned = this.#tls.pin(rec.compiled.chains);
    const done = drain(rec, graceMs);
    this.#draining.set(rec, done);
    void done.then(() => this.#draining.delete(rec));
  }

  /** Where a connection accepted by a dispatching wildcard socket goes: the hosted listener of the address it arrived at, else the socket's own listener. */
  #hostFor(target: ListenerRecord, socket: net.Socket): ListenerRecord {
    const local = socket.localAddress;
    if (local === undefined) return target;
    const hostedRec = this.#records.get(listenerKey(plainAddress(local), target.compiled.port));
    return hostedRec !== undefined && hostedRec.hosted ? hostedRec : target;
  }

  /** Each accepted connection: to the acceptor's listener, or (dispatching) the hosted listener of the address it arrived at. Reads the acceptor once. */
  readonly #dispatch = (a: Acceptor, socket: net.Socket): void => {
    acceptInto(a.dispatching ? this.#hostFor(a.target, socket) : a.target, this.#relay, socket);
  };

  #createTlsServer(): tls.Server {
    const tlsCache = this.#tls;
    const server: tls.Server & { [kRecord]?: ListenerRecord } = tls.createServer({
      // HTTP/2 preferred, HTTP/1.1 still offered (RFC 7301: the server picks from its own order).
      ALPNProtocols: ['h2', 'http/1.1'],
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      // Not half-open (as https.Server): a client FIN racing the end of the handshake would
      // otherwise leave the socket in CLOSE-WAIT with no engine to close it.
      allowHalfOpen: false,
      noDelay: true,
      // The chain and its certificate are chosen per handshake from the current snapshot.
      SNICallback(servername, cb) {
        const rec = server[kRecord]!;
        const sni = servername.toLowerCase();
        const chain = selectFilterChain(rec.compiled, sni);
        const cert = chain?.tls ? selectCertificate(chain.tls, sni) : null;
        const ctx = cert === null ? undefined : (rec.pinned?.get(cert.contextKey) ?? tlsCache.get(cert));
        if (ctx === undefined) return cb(new Error(`meshgate: no filter chain for server name "${servername}"`));
        cb(null, ctx);
      },
    });
    server.on('secureConnection', onSecureConnection);
    return server;
  }

  /**
   * The server's own context serves handshakes without SNI: the default chain's certificate, or
   * none (such handshakes then fail, as the IR requires when no chain has `serverNames: []`).
   * TLS versions and ciphers are negotiated on this context even when SNI switches the
   * certificate, so it carries the default (or first) chain's settings; `onSecureConnection`
   * enforces each chain's own version range.
   */
  #updateDefaultContext(rec: ListenerRecord): void {
    const l = rec.compiled;
    const chain = l.defaultChain ?? l.chains.find((c) => c.tls !== null) ?? null;
    const tls: CompiledTls | null = chain?.tls ?? null;
    if (tls === null) return;
    const cert = l.defaultChain?.tls ? selectCertificate(l.defaultChain.tls, '') : null;
    // Client certificates: asked for on every handshake of a listener where some chain wants them
    // (the chain is only known from the SNI; chains without a policy ignore what is sent), never
    // refused by OpenSSL itself (the chain's policy decides in onSecureConnection). The default
    // context trusts every client CA of the listener; each SNI context trusts its chain's.
    const clientCas = listenerClientCas(l);
    if (rec.tlsServer === null) return;
    const server = rec.tlsServer as tls.Server & { requestCert?: boolean; rejectUnauthorized?: boolean };
    server.requestCert = clientCas !== '';
    server.rejectUnauthorized = false;
    const key = `${tls.minVersion}\n${tls.maxVersion}\n${tls.ciphers}\n${cert?.contextKey ?? ''}\n${clientCas}`;
    if (key === rec.defaultTlsKey) return;
    rec.defaultTlsKey = key;
    const opts = { ...secureContextOptions(widestVersions(l, tls), cert), ...(clientCas === '' ? {} : { ca: clientCas, secureOptions: NO_RESUMPTION }) };
    try {
      server.setSecureContext(opts);
    } catch {
      // A bad default certificate: keep the previous context (the TLS cache reported the error).
    }
  }

  /** The bound port of a listener (for tests and the admin API). */
  boundPort(key: string): number | null {
    const own = this.#acceptors.get(key);
    if (own !== undefined) return this.#sockets.boundPort(own.tableKey);
    const rec = this.#records.get(key);
    if (rec === undefined || !rec.hosted) return null;
    const hostKey = hostKeyOf(rec.compiled, this.#records);
    const host = hostKey === null ? undefined : this.#acceptors.get(hostKey);
    return host === undefined ? null : this.#sockets.boundPort(host.tableKey);
  }
}

/** Every client CA of the listener's chains, one PEM bundle ('' when no chain asks for client certificates). */
function listenerClientCas(l: CompiledListener): string {
  let out = '';
  for (const c of l.chains) {
    const v = c.tls?.clientValidation ?? null;
    if (v !== null && !out.includes(v.caPem)) out += `${v.caPem}\n`;
  }
  return out;
}

/** The server context must admit every version some chain of the listener accepts. */
function widestVersions(l: CompiledListener, base: CompiledTls): CompiledTls {
  let min = base.minVersion;
  let max = base.maxVersion;
  for (const c of l.chains) {
    if (c.tls === null) continue;
    if (c.tls.minVersion < min) min = c.tls.minVersion;
    if (c.tls.maxVersion > max) max = c.tls.maxVersion;
  }
  return { ...base, minVersion: min, maxVersion: max };
}

/**
 * Refuses a connection whose negotiated version is outside its chain's range, then hands it to
 * the engine ALPN chose.
 */
function onSecureConnection(this: TaggedServer, socket: TLSSocket): void {
  const rec = this[kRecord];
  if (rec === undefined) return void socket.destroy();
  const sni = typeof socket.servername === 'string' ? socket.servername.toLowerCase() : '';
  const chain = selectFilterChain(rec.compiled, sni);
  const version = socket.getProtocol();
  if (chain === null || chain.tls === null || version === null) return void socket.destroy();
  if (version < chain.tls.minVersion || version > chain.tls.maxVersion) return void socket.destroy();
  // MUTUAL / OPTIONAL_MUTUAL: the chain's client-certificate policy, before any request is read.
  if (chain.tls.clientValidation !== null && checkClientCertificate(socket, chain.tls.clientValidation) !== null) return void socket.destroy();
  dispatchTls(socket, rec.engines);
}

/**
 * Lets a listener's connections finish: keep-alive connections close as they become idle (and
 * every response from now on says `connection: close`), HTTP/2 sessions get GOAWAY (open streams
 * finish); after `graceMs` whatever is left is closed. Resolves when every connection is gone. No
 * socket hands the listener new connections any more (its socket was closed, or now serves its
 * replacement).
 */
function drain(rec: ListenerRecord, graceMs: number): Promise<void> {
  rec.draining = true;
  const { h1 } = rec.engines;
  h1.closeIdle();
  rec.sessions.closeAll();
  rec.drainDeadline = Date.now() + graceMs;
  return new Promise((resolve) => {
    const finish = (): void => {
      h1.closeAll();
      rec.sessions.destroyAll();
      // Sockets no engine owns yet (handshake, sniffing, passthrough relays) or that an engine let linger.
      for (const s of rec.sockets) s.destroy();
      h1.close();
      resolve();
    };
    if (rec.sockets.size === 0) return finish();
    const timer = setInterval(() => {
      h1.closeIdle();
      if (rec.sockets.size > 0 && Date.now() < rec.drainDeadline) return;
      clearInterval(timer);
      finish();
    }, 50);
  });
}

function noop(): void {}

/**
 * A request head the HTTP/1.1 parser refused (malformed, head over maxHeaderSize, header timeout):
 * answered as Node's default handler does (400; 431 for a head too large; 413 for chunk extensions
 * too large; 408 for a head that did not arrive in time), then the connection is closed; but, like
 * every answer of the gateway, with `server: meshgate` and the response flag DPE (Envoy's
 * downstream protocol error). Nothing is written into a response already under way.
 */
function onClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  const code = err.code ?? '';
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  if (code !== 'ECONNRESET' && socket.writable && (inFlight === undefined || inFlight === null || inFlight.headersSent !== true)) {
    const status =
      code === 'HPE_HEADER_OVERFLOW' ? '431 Request Header Fields Too Large'
      : code === 'HPE_CHUNK_EXTENSIONS_OVERFLOW' ? '413 Payload Too Large'
      : code === 'ERR_HTTP_REQUEST_TIMEOUT' ? '408 Request Timeout'
      : '400 Bad Request';
    socket.write(`HTTP/1.1 ${status}\r\nserver: ${SERVER_NAME}\r\n${FLAGS_HEADER}: DPE\r\ncontent-length: 0\r\nconnection: close\r\n\r\n`);
  }
  socket.destroy();
}
