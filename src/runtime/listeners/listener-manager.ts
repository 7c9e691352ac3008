/**
 * Sockets keyed by `address:port`, kept across snapshot swaps. A swap points each surviving
 * listener at its new compiled listener (one reference assignment, so requests see the old or the
 * new snapshot, never a mix); listeners that left the IR drain and close; new ones bind. A bind
 * failure is reported, never thrown, and leaves the other listeners alone.
 *
 * A listener on a specific address whose port also has a wildcard listener (0.0.0.0, ::) cannot
 * bind its own socket (the kernel refuses it next to a listening wildcard socket): it is *hosted*
 * by the wildcard listener, which accepts every connection of the port and hands each one, by the
 * address it arrived at (getsockname, as nginx does for `listen 80` beside `listen 10.0.0.5:80`),
 * to the hosted listener of that address, or keeps it.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import net, { type AddressInfo } from 'node:net';
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
import { EDGE_LIMITS } from './edge-limits.js';
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
/** The accepting server (`net` for plaintext, `tls` for HTTPS) or one of the two engines. */
type TaggedServer = net.Server & { [kRecord]?: ListenerRecord };

class ListenerRecord {
  draining = false;
  /** Bound by no socket of its own: the wildcard listener of its port hands it its connections. */
  hosted = false;
  /** A wildcard listener that hosts others: its accepting server hands connections out by local address. */
  dispatching = false;
  /** The TLS handshake engine of an HTTPS listener: the accepting server itself, or (passthrough listeners) a never-listening one the front hands sockets to. */
  tlsServer: tls.Server | null = null;
  boundPort: number | null = null;
  /** Key of the TLS settings the server's default (no-SNI) context was built from. */
  defaultTlsKey = '';
  readonly sessions = new SessionTracker();
  /** Every socket the listener accepted and that is still open, whatever stage it is at (TLS handshake, protocol sniffing, engine). */
  readonly sockets = new Set<net.Socket>();
  readonly engines: HttpEngines;
  constructor(
    public compiled: CompiledListener,
    readonly server: TaggedServer,
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

/** 'connection' listener of every accepting server (for TLS, the TCP socket under the handshake). */
function trackSocket(this: TaggedServer, socket: net.Socket): void {
  const sockets = this[kRecord]!.sockets;
  sockets.add(socket);
  socket.once('close', () => sockets.delete(socket));
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

function onPlainConnection(this: TaggedServer, socket: net.Socket): void {
  sniffPlaintext(socket, this[kRecord]!.engines);
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

/** Hands an accepted connection to a listener's own handling (what its accepting server would do). */
function acceptInto(rec: ListenerRecord, relay: PassthroughRelay | null, socket: net.Socket): void {
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

export class ListenerManager {
  readonly #records = new Map<string, ListenerRecord>();
  readonly #env: RequestEnv;
  readonly #tls: TlsContextCache;

  readonly #http1: Http1EngineKind;
  readonly #relay: PassthroughRelay | null;

  /** `relay`: where HTTPS listeners with passthrough routes send the connections whose SNI is passthrough (TcpListenerManager). */
  constructor(env: RequestEnv, tls: TlsContextCache, http1: Http1EngineKind = DEFAULT_HTTP1_ENGINE, relay: PassthroughRelay | null = null) {
    this.#env = env;
    this.#tls = tls;
    this.#http1 = http1;
    this.#relay = relay;
  }

  /** Applies the listeners of `snapshot`. Resolves when binds and unbinds have been attempted. */
  async sync(snapshot: CompiledSnapshot, drainMs: number): Promise<ListenerStatus[]> {
    const statuses: ListenerStatus[] = [];
    const toOpen: CompiledListener[] = [];
    const toClose: ListenerRecord[] = [];
    const { hosted, dispatching } = hostingOf(snapshot.listeners);
    // First every surviving listener switches to the new snapshot, synchronously.
    for (const l of snapshot.listeners) {
      const rec = this.#records.get(l.key);
      // A listener that gains or loses passthrough routes changes its accepting server: reopened.
      if (rec !== undefined && rec.compiled.protocol === l.protocol && rec.compiled.passthrough === l.passthrough && rec.hosted === hosted.has(l.key) && rec.dispatching === dispatching.has(l.key)) {
        rec.compiled = l;
        if (l.protocol === 'HTTPS') this.#updateDefaultContext(rec);
      } else {
        if (rec !== undefined) toClose.push(rec);
        toOpen.push(l);
      }
    }
    for (const [key, rec] of this.#records) if (!snapshot.listenersByKey.has(key)) toClose.push(rec);
    for (const rec of toClose) this.#records.delete(rec.compiled.key);
    // Stop listening on replaced ports before binding them again; connections drain meanwhile.
    const drains = toClose.map((rec) => drain(rec, drainMs));
    // Hosted listeners first: the wildcard listener that hands them connections may accept at once.
    const opened = [
      ...toOpen.filter((l) => hosted.has(l.key)).map((l) => this.#openHosted(l)),
      ...(await Promise.all(toOpen.filter((l) => !hosted.has(l.key)).map((l) => this.#open(l, dispatching.has(l.key))))),
    ];
    void Promise.all(drains);
    for (const l of snapshot.listeners) {
      let rec = this.#records.get(l.key);
      let failed = opened.find((o) => o.key === l.key && o.error !== null)?.error;
      if (rec !== undefined && rec.hosted) {
        // Served through the wildcard listener of its port: listening when that one is.
        const hostKey = hostKeyOf(l, this.#records);
        const host = hostKey === null ? undefined : this.#records.get(hostKey);
        rec.boundPort = host?.boundPort ?? null;
        if (host === undefined) {
          failed = `the wildcard listener of port ${l.port} that hosts it is not bound`;
          rec = undefined;
        }
      }
      statuses.push({
        name: l.name,
        key: l.key,
        address: l.address,
        port: l.port,
        boundPort: rec?.boundPort ?? null,
        protocol: l.protocol,
        state: rec !== undefined ? 'listening' : 'failed',
        error: rec !== undefined ? null : failed ?? 'not bound',
      });
    }
    return statuses;
  }

  /** Open downstream connections of each bound listener, by listener name. */
  async connectionCounts(): Promise<{ listener: string; active: number }[]> {
    const recs = [...this.#records.values()];
    const counts = await Promise.all(recs.map((rec) => new Promise<number>((resolve) => rec.server.getConnections((err, n) => resolve(err ? 0 : n)))));
    return recs.map((rec, i) => ({ listener: rec.compiled.name, active: counts[i] }));
  }

  /** Stops accepting everywhere, lets in-flight requests finish for up to `graceMs`, then closes. */
  async close(graceMs: number): Promise<void> {
    const recs = [...this.#records.values()];
    this.#records.clear();
    await Promise.all(recs.map((rec) => drain(rec, graceMs)));
  }

  /** A listener hosted by the wildcard listener of its port: engines and TLS, no socket of its own. */
  #openHosted(l: CompiledListener): { key: string; error: string | null } {
    const tlsServer = l.protocol === 'HTTPS' ? this.#createTlsServer() : null;
    const rec = new ListenerRecord(l, net.createServer(), this.#env, this.#http1);
    rec.hosted = true;
    rec.tlsServer = tlsServer;
    rec.server[kRecord] = rec;
    if (tlsServer !== null) (tlsServer as TaggedServer)[kRecord] = rec;
    (rec.engines.h2 as unknown as TaggedServer)[kRecord] = rec;
    if (l.protocol === 'HTTPS') this.#updateDefaultContext(rec);
    rec.engines.h2.on('stream', onH2Stream as unknown as (stream: unknown, headers: unknown, flags: unknown, rawHeaders: unknown) => void);
    this.#records.set(l.key, rec);
    return { key: l.key, error: null };
  }

  /** Where a connection accepted by a dispatching wildcard listener goes: the hosted listener of the address it arrived at, else that listener. */
  #hostFor(rec: ListenerRecord, socket: net.Socket): ListenerRecord {
    const local = socket.localAddress;
    if (local === undefined) return rec;
    const target = this.#records.get(listenerKey(plainAddress(local), rec.compiled.port));
    return target !== undefined && target.hosted && !target.draining ? target : rec;
  }

  async #open(l: CompiledListener, dispatching = false): Promise<{ key: string; error: string | null }> {
    // Sockets are half-open capable and unbuffered, as `http.Server` makes them.
    const front = (l.protocol === 'HTTPS' && l.passthrough) || dispatching;
    const tlsServer = l.protocol === 'HTTPS' ? this.#createTlsServer() : null;
    const server: TaggedServer =
      front ? net.createServer({ allowHalfOpen: true, noDelay: true }) : tlsServer ?? net.createServer({ allowHalfOpen: true, noDelay: true }, onPlainConnection);
    const rec = new ListenerRecord(l, server, this.#env, this.#http1);
    rec.dispatching = dispatching;
    rec.tlsServer = tlsServer;
    server[kRecord] = rec;
    if (tlsServer !== null) (tlsServer as TaggedServer)[kRecord] = rec;
    const relay = this.#relay;
    if (dispatching) {
      server.on('connection', (socket: net.Socket) => {
        const target = this.#hostFor(rec, socket);
        if (target !== rec) {
          target.sockets.add(socket);
          socket.once('close', () => target.sockets.delete(socket));
        }
        acceptInto(target, relay, socket);
      });
    } else if (front) {
      server.on('connection', (socket: net.Socket) => onPassthroughFront(rec, relay, socket));
    }
    server.prependListener('connection', trackSocket);
    server.maxConnections = EDGE_LIMITS.maxConnectionsPerListener; // edge-limits.ts
    const { h2 } = rec.engines;
    (h2 as unknown as TaggedServer)[kRecord] = rec;
    if (l.protocol === 'HTTPS') this.#updateDefaultContext(rec);
    // The core stream API (no 'request' listener: node:http2's compatibility layer is never set up).
    h2.on('stream', onH2Stream as unknown as (stream: unknown, headers: unknown, flags: unknown, rawHeaders: unknown) => void);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: l.address, port: l.port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      server.close();
      return { key: l.key, error: (err as Error).message };
    }
    // After listening, an error on the server must not crash the process.
    server.on('error', noop);
    rec.boundPort = (server.address() as AddressInfo).port;
    this.#records.set(l.key, rec);
    return { key: l.key, error: null };
  }

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
        const ctx = cert === null ? undefined : tlsCache.get(cert);
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
    return this.#records.get(key)?.boundPort ?? null;
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
 * Stops accepting now (the port is free for a new bind at once), closes keep-alive connections as
 * they become idle, and after `graceMs` closes whatever is left. Resolves when every connection is
 * gone.
 */
function drain(rec: ListenerRecord, graceMs: number): Promise<void> {
  rec.draining = true;
  if (rec.hosted) return drainHosted(rec, graceMs);
  const server = rec.server;
  const { h1 } = rec.engines;
  return new Promise((resolve) => {
    const idle = setInterval(() => h1.closeIdle(), 50);
    const hard = setTimeout(() => {
      h1.closeAll();
      rec.sessions.destroyAll();
      // Sockets no engine owns yet (handshake, sniffing) or that an engine let linger.
      for (const s of rec.sockets) s.destroy();
    }, graceMs);
    // The callback runs once the last accepted connection has closed (or at once if none is open).
    server.close(() => {
      clearInterval(idle);
      clearTimeout(hard);
      h1.close();
      resolve();
    });
    h1.closeIdle();
    rec.sessions.closeAll();
  });
}

/** A hosted listener has no server to close: its connections are let finish, then closed after `graceMs`. */
function drainHosted(rec: ListenerRecord, graceMs: number): Promise<void> {
  const { h1 } = rec.engines;
  h1.closeIdle();
  rec.sessions.closeAll();
  const deadline = Date.now() + graceMs;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      h1.closeIdle();
      if (rec.sockets.size > 0 && Date.now() < deadline) return;
      clearInterval(timer);
      h1.closeAll();
      rec.sessions.destroyAll();
      for (const s of rec.sockets) s.destroy();
      h1.close();
      resolve();
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
