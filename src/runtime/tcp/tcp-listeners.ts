/**
 * TCP listeners: Istio protocol TCP servers, TLS passthrough (PASSTHROUGH, AUTO_PASSTHROUGH) and
 * TLS termination (protocol TLS with SIMPLE / MUTUAL / OPTIONAL_MUTUAL). Sockets are kept by
 * `address:port` across swaps like HTTP listeners; each connection reads the current compiled
 * routes once, when it is matched, and keeps its upstream to the end.
 *
 * Per connection: (TLS) read the ClientHello until the SNI (and offered ALPN) is known (at most `PEEK_TIMEOUT_MS`,
 * at most 16 KiB); (TLS_TERMINATE) the handshake, by a never-listening `tls.Server` the accepted
 * socket is handed to: the chain and certificate are chosen by SNI from the current snapshot in
 * `SNICallback` (a Secret replaced at run time gives new handshakes the new certificate), then the
 * chain's TLS versions and client-certificate policy are checked as on HTTPS listeners. Then the
 * first matching route, weighted destination, endpoint by the cluster's load balancer, connect (the
 * cluster's connect timeout; with TLS when the cluster has upstream `tls`, except on passthrough
 * listeners, which forward the client's own TLS, unless `wrapClientTls` (a sidecar, a mesh-client
 * gateway) wraps it in the cluster's), write what was read, then splice both ways.
 * A FIN from one side is passed to the other (half-close) and the socket stays open for the
 * other direction; an error or reset on either side destroys both. No route, no endpoint, a
 * failed connect or upstream TLS handshake: the client connection is closed (as Envoy's tcp_proxy
 * does). With observability on, each connection fills a TcpRecord (istio_tcp_* metrics, access log).
 */

import net from 'node:net';
import tls from 'node:tls';
import type { TcpListener, TcpRoute, UpstreamTls } from '../../ir/types.js';
import { socketAddress, TcpRecord, type TcpObserver } from '../../observability/tcp-record.js';
import { compileTls } from '../compile/compile-snapshot.js';
import { selectCertificate } from '../compile/lookup.js';
import type { CompiledCluster, CompiledSnapshot, CompiledTls } from '../compile/types.js';
import { TLS_VERIFY_CODES } from '../http/local-reply.js';
import { checkClientCertificate } from '../listeners/client-cert.js';
import { NO_RESUMPTION, secureContextOptions } from '../listeners/tls-contexts.js';
import { SocketTable } from '../listeners/socket-table.js';
import { selectEndpoint } from '../upstream/load-balancer.js';
import { upstreamTlsOptions } from '../upstream/upstream-tls.js';
import { peekClientHello } from './client-hello.js';
import { PEER_EXCHANGE_ALPN, PEER_EXCHANGE_OFFER, readPeerPreamble, type TcpPeerExchange } from './peer-exchange.js';

/** Time a TLS passthrough connection has to send its ClientHello (Envoy's listener filter timeout is 15 s). */
export const PEEK_TIMEOUT_MS = 10_000;

/** Time a terminated-TLS client has to finish its handshake (as HTTPS listeners). */
export const HANDSHAKE_TIMEOUT_MS = 10_000;

const NO_ALPN: readonly string[] = [];

interface CompiledTcpRoute {
  name: string;
  matches: { exact: Set<string>; suffixes: string[]; anySni: boolean; subnets: net.BlockList | null; port: number | null; alpn: Set<string> | null }[];
  clusters: (CompiledCluster | null)[];
  cumulative: number[];
  total: number;
}

interface CompiledTcpChain {
  name: string;
  tls: CompiledTls;
  routes: CompiledTcpRoute[];
}

interface CompiledTcpListener {
  key: string;
  ir: TcpListener;
  routes: CompiledTcpRoute[];
  /** TLS_TERMINATE: chains by exact server name, by `*.` suffix (longest first), and the one with `serverNames: []`. */
  chainsByName: Map<string, CompiledTcpChain>;
  wildcardChains: { suffix: string; chain: CompiledTcpChain }[];
  defaultChain: CompiledTcpChain | null;
  chains: CompiledTcpChain[];
}

export interface TcpListenerStatus {
  name: string;
  key: string;
  boundPort: number | null;
  error: string | null;
}

function compileTcpListener(l: TcpListener, clusters: Map<string, CompiledCluster>): CompiledTcpListener {
  const chains: CompiledTcpChain[] = [];
  const chainsByName = new Map<string, CompiledTcpChain>();
  const wildcardChains: { suffix: string; chain: CompiledTcpChain }[] = [];
  let defaultChain: CompiledTcpChain | null = null;
  for (const c of l.tlsChains ?? []) {
    const chain: CompiledTcpChain = { name: c.name, tls: compileTls(c.tls), routes: compileTcpRoutes(c.routes, clusters) };
    chains.push(chain);
    if (c.serverNames.length === 0) defaultChain ??= chain;
    for (const n of c.serverNames) {
      if (n.startsWith('*.')) wildcardChains.push({ suffix: n.slice(1), chain });
      else if (!chainsByName.has(n)) chainsByName.set(n, chain);
    }
  }
  wildcardChains.sort((a, b) => b.suffix.length - a.suffix.length);
  return { key: `${l.address}:${l.port}`, ir: l, routes: compileTcpRoutes(l.routes, clusters), chainsByName, wildcardChains, defaultChain, chains };
}

/** The chain for a server name: exact, then the longest wildcard, then the default (as HTTPS filter chains). */
function selectTcpChain(l: CompiledTcpListener, sni: string): CompiledTcpChain | null {
  if (sni !== '') {
    const exact = l.chainsByName.get(sni);
    if (exact !== undefined) return exact;
    for (const w of l.wildcardChains) if (sni.length > w.suffix.length && sni.endsWith(w.suffix)) return w.chain;
  }
  return l.defaultChain;
}

/**
 * Index of a route list by exact SNI: routes whose every match names only exact SNIs are listed
 * under each of them; the others (wildcard or any SNI) are tried for every connection. Candidates
 * are still tried in list order, so first match is kept; an AUTO_PASSTHROUGH listener (one exact
 * SNI per route, thousands of routes) costs one Map lookup per connection instead of a scan.
 */
interface TcpRouteIndex {
  bySni: Map<string, number[]>;
  general: number[];
}
const routeIndexes = new WeakMap<CompiledTcpRoute[], TcpRouteIndex>();

function indexTcpRoutes(routes: CompiledTcpRoute[]): TcpRouteIndex {
  const bySni = new Map<string, number[]>();
  const general: number[] = [];
  routes.forEach((r, i) => {
    if (!r.matches.every((m) => !m.anySni && m.suffixes.length === 0)) return void general.push(i);
    const names = new Set<string>();
    for (const m of r.matches) for (const n of m.exact) names.add(n);
    for (const n of names) {
      let list = bySni.get(n);
      if (list === undefined) bySni.set(n, (list = []));
      list.push(i);
    }
  });
  return { bySni, general };
}

export function compileTcpRoutes(irRoutes: TcpRoute[], clusters: Map<string, CompiledCluster>): CompiledTcpRoute[] {
  const compiled = irRoutes.map((r): CompiledTcpRoute => {
    let sum = 0;
    const cumulative = r.destinations.map((d) => (sum += d.weight));
    return {
      name: r.name,
      matches: r.matches.map((m) => {
        let subnets: net.BlockList | null = null;
        if (m.destinationSubnets.length > 0) {
          subnets = new net.BlockList();
          for (const c of m.destinationSubnets) {
            const [addr, len] = c.split('/');
            const type = net.isIPv6(addr) ? 'ipv6' : 'ipv4';
            subnets.addSubnet(addr, len === undefined ? (type === 'ipv6' ? 128 : 32) : Number(len), type);
          }
        }
        return {
          exact: new Set(m.sniHosts.filter((h) => !h.startsWith('*.'))),
          suffixes: m.sniHosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
          anySni: m.sniHosts.length === 0,
          subnets,
          port: m.port,
          alpn: m.applicationProtocols === undefined ? null : new Set(m.applicationProtocols),
        };
      }),
      clusters: r.destinations.map((d) => clusters.get(d.cluster) ?? null),
      cumulative,
      total: sum,
    };
  });
  routeIndexes.set(compiled, indexTcpRoutes(compiled));
  return compiled;
}

/** First route whose match holds for this connection (`sni` '' = none). */
export function findTcpRoute(l: CompiledTcpListener, routes: CompiledTcpRoute[], sni: string, alpn: readonly string[], localAddress: string): CompiledTcpRoute | null {
  const index = routeIndexes.get(routes);
  if (index === undefined) return firstMatch(l, routes, routes.keys(), sni, alpn, localAddress);
  const named = sni === '' ? undefined : index.bySni.get(sni);
  return firstMatch(l, routes, named === undefined ? index.general.values() : mergeAscending(named, index.general), sni, alpn, localAddress);
}

/** Both ascending index lists, merged in ascending order. */
function* mergeAscending(a: number[], b: number[]): IterableIterator<number> {
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) yield j >= b.length || (i < a.length && a[i] < b[j]) ? a[i++] : b[j++];
}

function firstMatch(l: CompiledTcpListener, routes: CompiledTcpRoute[], candidates: Iterable<number>, sni: string, alpn: readonly string[], localAddress: string): CompiledTcpRoute | null {
  for (const k of candidates) {
    const r = routes[k];
    for (const m of r.matches) {
      if (m.port !== null && m.port !== l.ir.externalPort) continue;
      if (m.alpn !== null && !alpn.some((p) => m.alpn!.has(p))) continue;
      if (!m.anySni) {
        if (sni === '') continue;
        if (!m.exact.has(sni) && !m.suffixes.some((s) => sni.length > s.length && sni.endsWith(s))) continue;
      }
      if (m.subnets !== null) {
        const a = localAddress.startsWith('::ffff:') && localAddress.includes('.') ? localAddress.slice(7) : localAddress;
        if (!m.subnets.check(a, net.isIPv6(a) ? 'ipv6' : 'ipv4')) continue;
      }
      return r;
    }
  }
  return null;
}

class ListenerRecord {
  /** Its socket's key in the SocketTable ('' for records that never listen). */
  tableKey = '';
  readonly sockets = new Set<net.Socket>();
  /** TLS_TERMINATE: the handshake engine (never listens; accepted sockets are handed to it). */
  tlsServer: tls.Server | null = null;
  /** Settings of the tlsServer's own (no-SNI) context, to rebuild it only when they change. */
  defaultTlsKey = '';
  /** Removed: the SecureContexts it had, for the handshakes it still runs. */
  pinned: Map<string, tls.SecureContext> | null = null;
  constructor(public compiled: CompiledTcpListener) {}
}

/** Node's options for the upstream TLS of a cluster, built once per compiled cluster (files read then). */
const upstreamTlsByCluster = new WeakMap<UpstreamTls, ReturnType<typeof upstreamTlsOptions>>();

export class TcpListenerManager {
  readonly #records = new Map<string, ListenerRecord>();
  /** Never-bound relays by listener name (`syncUnbound`). */
  readonly #unbound = new Map<string, ListenerRecord>();
  readonly #random: () => number;
  readonly #observer: TcpObserver | null;
  /** SecureContexts of terminating chains by content (certificate + settings), kept across swaps while used. */
  #contexts = new Map<string, tls.SecureContext>();
  /**
   * Passthrough routes of HTTPS listeners (IR `Listener.passthrough`), as TLS listeners by
   * `address:port`: the HTTPS listener owns the socket and hands over the connections whose SNI
   * matches (`relayPassthrough`); their records never listen.
   */
  #embedded = new Map<string, ListenerRecord>();

  readonly #sockets: SocketTable;

  /**
   * A sidecar's side of Istio's TCP metadata exchange (peer-exchange.ts), set per view: relays to
   * Istio mTLS endpoints offer ALPN `istio-peer-exchange` and exchange preambles when the server
   * takes it. null (the gateway): never offered.
   */
  peerExchange: TcpPeerExchange | null = null;

  /**
   * A sidecar's clusters whose endpoint is decided per connection (wildcard ServiceEntry hosts:
   * Envoy's ORIGINAL_DST cluster for resolution NONE, its SNI dynamic forward proxy for DYNAMIC_DNS;
   * runtime/sidecar/wildcard-hosts.ts). Asked only when a chosen cluster has no endpoint at all:
   * the connection's endpoint, or null when there is none (the connection is closed, UH). null
   * (the gateway): never asked.
   */
  perConnectionEndpoint: ((cluster: string, client: net.Socket, sni: string) => { address: string; port: number } | null) | null = null;

  /**
   * A sidecar's relays, and the gateway's when it is a mesh client (`run --control`): Envoy applies
   * a cluster's transport socket whatever its listener sniffed, so a `TLS` relay originates the
   * cluster's upstream TLS (DestinationRule `tls`, auto mTLS per endpoint; with Istio's metadata
   * exchange) around the client's own TLS, as a `TCP` relay does (Istio pilot cluster_tls.go,
   * istio/istio#29107). false (a gateway outside the mesh): `TLS` listeners forward the client's TLS
   * unwrapped (IR `TcpListener.protocol`).
   */
  wrapClientTls = false;

  /** `sockets`: the runtime's socket table, shared with its HTTP(S) listeners. */
  constructor(random: () => number, observer: TcpObserver | null = null, sockets: SocketTable = new SocketTable()) {
    this.#random = random;
    this.#observer = observer;
    this.#sockets = sockets;
  }

  /**
   * Applies the TCP listeners of a snapshot; `compiled` supplies the clusters (with their pools'
   * endpoints). Runs after the HTTP(S) listeners of the same snapshot are synced: a socket they
   * gave up is taken over, one they took from a removed TCP listener stays theirs.
   */
  async sync(listeners: TcpListener[], compiled: CompiledSnapshot, drainMs: number): Promise<TcpListenerStatus[]> {
    const next = listeners.map((l) => compileTcpListener(l, compiled.clusters));
    const previousContexts = this.#contexts;
    const contextErrors = this.#prepareContexts(next);
    const keep = new Set(next.map((l) => l.key));
    for (const [key, rec] of this.#records) {
      if (keep.has(key)) continue;
      this.#records.delete(key);
      // Stops accepting now, unless an HTTP(S) listener took the socket over.
      this.#sockets.release(rec.tableKey, 'tcp');
      if (rec.tlsServer !== null) rec.pinned = previousContexts;
      void drainTcp(rec, drainMs);
    }
    const statuses: TcpListenerStatus[] = [];
    const toBind: ListenerRecord[] = [];
    for (const l of next) {
      let rec = this.#records.get(l.key);
      if (rec !== undefined) {
        rec.compiled = l;
        this.#updateTls(rec);
        continue;
      }
      rec = new ListenerRecord(l);
      rec.tableKey = SocketTable.key('tcp', l.ir.address, l.ir.port);
      this.#updateTls(rec);
      // A socket an HTTP(S) listener gave up in this snapshot: taken over at once.
      if (this.#sockets.take(rec.tableKey, 'tcp', this.#handler(rec), ALL)) this.#records.set(l.key, rec);
      else toBind.push(rec);
    }
    const bindErrors = new Map<string, string>();
    await Promise.all(
      toBind.map(async (rec) => {
        const l = rec.compiled;
        const error = await this.#sockets.bind(rec.tableKey, 'tcp', l.ir.address, l.ir.port, this.#handler(rec));
        if (error !== null) bindErrors.set(l.key, error);
        else this.#records.set(l.key, rec);
      }),
    );
    for (const l of next) {
      const rec = this.#records.get(l.key);
      const boundPort = rec === undefined ? null : this.#sockets.boundPort(rec.tableKey);
      statuses.push({ name: l.ir.name, key: l.key, boundPort, error: bindErrors.get(l.key) ?? contextErrors.get(l.key) ?? null });
    }
    return statuses;
  }

  /** The connection handler of a record's socket. */
  #handler(rec: ListenerRecord): (socket: net.Socket) => void {
    return (socket) => this.#onConnection(rec, socket);
  }

  /** Builds (or reuses) the SecureContext of every certificate of every terminating chain; errors by listener key. */
  #prepareContexts(listeners: CompiledTcpListener[]): Map<string, string> {
    const errors = new Map<string, string>();
    const next = new Map<string, tls.SecureContext>();
    for (const l of listeners) {
      for (const chain of l.chains) {
        for (const cert of chain.tls.certificates) {
          if (next.has(cert.contextKey)) continue;
          const cached = this.#contexts.get(cert.contextKey);
          if (cached !== undefined) {
            next.set(cert.contextKey, cached);
            continue;
          }
          try {
            next.set(cert.contextKey, tls.createSecureContext(secureContextOptions(chain.tls, cert)));
          } catch (e) {
            errors.set(l.key, `chain ${chain.name} certificate ${cert.secret}: ${(e as Error).message}`);
          }
        }
      }
    }
    this.#contexts = next;
    return errors;
  }

  /**
   * TLS_TERMINATE: the handshake engine and its own context (handshakes without SNI: the default
   * chain's certificate; versions and ciphers admitting every chain's; the client CAs of every chain
   * that asks for client certificates, never refused by OpenSSL itself: the chain's policy decides).
   */
  #updateTls(rec: ListenerRecord): void {
    const l = rec.compiled;
    if (l.ir.protocol !== 'TLS_TERMINATE' || l.chains.length === 0) return;
    if (rec.tlsServer === null) {
      const contexts = (): Map<string, tls.SecureContext> => this.#contexts;
      const server = tls.createServer({
        allowHalfOpen: true,
        handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
        SNICallback(servername, cb) {
          const sni = servername.toLowerCase();
          const chain = selectTcpChain(rec.compiled, sni);
          const cert = chain === null ? null : selectCertificate(chain.tls, sni);
          const ctx = cert === null ? undefined : (rec.pinned ?? contexts()).get(cert.contextKey);
          if (ctx === undefined) return cb(new Error(`meshgate: no TLS chain for server name "${servername}"`));
          cb(null, ctx);
        },
      });
      server.on('secureConnection', (socket: tls.TLSSocket) => this.#onSecure(rec, socket));
      server.on('tlsClientError', (_err, socket) => socket.destroy());
      rec.tlsServer = server;
    }
    const base = (l.defaultChain ?? l.chains[0]).tls;
    const cert = l.defaultChain === null ? null : selectCertificate(l.defaultChain.tls, '');
    let min = base.minVersion;
    let max = base.maxVersion;
    let cas = '';
    for (const c of l.chains) {
      if (c.tls.minVersion < min) min = c.tls.minVersion;
      if (c.tls.maxVersion > max) max = c.tls.maxVersion;
      const v = c.tls.clientValidation;
      if (v !== null && !cas.includes(v.caPem)) cas += `${v.caPem}\n`;
    }
    const server = rec.tlsServer as tls.Server & { requestCert?: boolean; rejectUnauthorized?: boolean };
    server.requestCert = cas !== '';
    server.rejectUnauthorized = false;
    const key = `${min}\n${max}\n${base.ciphers}\n${cert?.contextKey ?? ''}\n${cas}`;
    if (key === rec.defaultTlsKey) return;
    rec.defaultTlsKey = key;
    try {
      server.setSecureContext({ ...secureContextOptions({ ...base, minVersion: min, maxVersion: max }, cert), ...(cas === '' ? {} : { ca: cas, secureOptions: NO_RESUMPTION }) });
    } catch {
      // A bad default certificate: keep the previous context (prepare reported the error).
    }
  }

  /**
   * Applies the passthrough routes of the snapshot's HTTPS listeners (`listeners`: one `TLS`
   * TcpListener per such HTTPS listener, same address and port). Call before the HTTPS listeners
   * switch to the snapshot. Relayed connections keep their upstream to the end.
   */
  syncEmbedded(listeners: TcpListener[], compiled: CompiledSnapshot): void {
    const next = new Map<string, ListenerRecord>();
    for (const ir of listeners) {
      const l = compileTcpListener(ir, compiled.clusters);
      const rec = this.#embedded.get(l.key) ?? new ListenerRecord(l);
      rec.compiled = l;
      next.set(l.key, rec);
    }
    this.#embedded = next;
  }

  /**
   * An HTTPS listener's connection whose ClientHello was read (`head`): relayed unterminated when a
   * passthrough route of that listener (`key` = `address:port`) matches its SNI; false otherwise
   * (nothing done: the caller terminates TLS).
   */
  relayPassthrough(key: string, client: net.Socket, sni: string, alpn: readonly string[], head: Buffer): boolean {
    const rec = this.#embedded.get(key);
    if (rec === undefined || sni === '') return false;
    const routes = rec.compiled.routes;
    if (findTcpRoute(rec.compiled, routes, sni, alpn, client.localAddress ?? '') === null) return false;
    rec.sockets.add(client);
    client.once('close', () => rec.sockets.delete(client));
    client.on('error', noop);
    const obs = this.#observer === null ? null : new TcpRecord(rec.compiled.ir.name, socketAddress(client.localAddress, client.localPort), socketAddress(client.remoteAddress, client.remotePort));
    this.#route(rec, routes, client, sni, alpn, head, obs);
    return true;
  }

  async close(graceMs: number): Promise<void> {
    for (const rec of this.#embedded.values()) for (const s of rec.sockets) s.destroy();
    this.#embedded.clear();
    const recs = [...this.#records.values()];
    this.#records.clear();
    for (const r of recs) this.#sockets.release(r.tableKey, 'tcp');
    const unbound = [...this.#unbound.values()];
    this.#unbound.clear();
    await Promise.all([...recs.map((r) => drainTcp(r, graceMs)), ...unbound.map((r) => drainUnbound(r, graceMs))]);
  }

  /**
   * TCP relays that are never bound (a sidecar's `outboundTcp`, runtime/sidecar/): compiled and kept
   * by name, swapped like bound listeners (a connection keeps the routes it was matched with); the
   * sidecar hands each connection to `relay` after reading its first bytes. Plain TCP relays only
   * (protocol TCP, or TLS passthrough by the SNI the caller read).
   */
  syncUnbound(listeners: TcpListener[], compiled: CompiledSnapshot, drainMs: number): void {
    const keep = new Set<string>();
    for (const l of listeners) {
      keep.add(l.name);
      const c = compileTcpListener(l, compiled.clusters);
      const rec = this.#unbound.get(l.name);
      if (rec !== undefined) rec.compiled = c;
      else this.#unbound.set(l.name, new ListenerRecord(c));
    }
    for (const [name, rec] of this.#unbound) {
      if (keep.has(name)) continue;
      this.#unbound.delete(name);
      void drainUnbound(rec, drainMs);
    }
  }

  /**
   * Whether the unbound relay `name` has a route for a connection with this SNI and ALPN to
   * `localAddress` (a sidecar tries the next relay by SNI when not, as Envoy's filter chains).
   */
  hasRoute(name: string, sni: string, alpn: readonly string[], localAddress: string): boolean {
    const rec = this.#unbound.get(name);
    return rec !== undefined && findTcpRoute(rec.compiled, rec.compiled.routes, sni, alpn, localAddress) !== null;
  }

  /**
   * Relays `client` with the unbound listener `name`: `head` (bytes already read) is written upstream
   * first; `sni`/`alpn` from the ClientHello the caller parsed ('' / [] when not TLS). False when no
   * such listener exists (the caller decides what to do with the connection).
   */
  relay(name: string, client: net.Socket, sni: string, alpn: readonly string[], head: Buffer): boolean {
    const rec = this.#unbound.get(name);
    if (rec === undefined) return false;
    rec.sockets.add(client);
    client.once('close', () => rec.sockets.delete(client));
    client.on('error', noop);
    client.setNoDelay(true);
    client.pause();
    const obs = this.#observer === null ? null : new TcpRecord(rec.compiled.ir.name, socketAddress(client.localAddress, client.localPort), socketAddress(client.remoteAddress, client.remotePort));
    this.#route(rec, rec.compiled.routes, client, sni, alpn, head, obs);
    return true;
  }

  #onConnection(rec: ListenerRecord, client: net.Socket): void {
    rec.sockets.add(client);
    client.once('close', () => rec.sockets.delete(client));
    client.on('error', noop);
    client.setNoDelay(true);
    const obs = this.#observer === null ? null : new TcpRecord(rec.compiled.ir.name, socketAddress(client.localAddress, client.localPort), socketAddress(client.remoteAddress, client.remotePort));
    const protocol = rec.compiled.ir.protocol;
    if (protocol === 'TCP') return this.#route(rec, rec.compiled.routes, client, '', NO_ALPN, Buffer.alloc(0), obs);
    if (protocol === 'TLS_TERMINATE') {
      if (rec.tlsServer === null) return void client.destroy();
      // The handshake engine takes the socket over; routing continues in #onSecure.
      rec.tlsServer.emit('connection', client);
      return;
    }
    // TLS passthrough: read until the SNI is known; nothing is written to the client meanwhile.
    peekClientHello(client, PEEK_TIMEOUT_MS, (r, seen) => {
      if (r.kind === 'not-tls') return void client.destroy();
      this.#route(rec, rec.compiled.routes, client, r.kind === 'sni' ? r.serverName : '', r.alpn, seen, obs);
    });
  }

  /** A terminated handshake: the chain's version range and client-certificate policy, then its routes. */
  #onSecure(rec: ListenerRecord, socket: tls.TLSSocket): void {
    const sni = typeof socket.servername === 'string' ? socket.servername.toLowerCase() : '';
    const chain = selectTcpChain(rec.compiled, sni);
    const version = socket.getProtocol();
    socket.on('error', noop);
    if (chain === null || version === null) return void socket.destroy();
    if (version < chain.tls.minVersion || version > chain.tls.maxVersion) return void socket.destroy();
    if (chain.tls.clientValidation !== null && checkClientCertificate(socket, chain.tls.clientValidation) !== null) return void socket.destroy();
    socket.setNoDelay(true);
    const obs = this.#observer === null ? null : new TcpRecord(rec.compiled.ir.name, socketAddress(socket.localAddress, socket.localPort), socketAddress(socket.remoteAddress, socket.remotePort));
    rec.sockets.add(socket);
    socket.once('close', () => rec.sockets.delete(socket));
    socket.pause();
    this.#route(rec, chain.routes, socket, sni, NO_ALPN, Buffer.alloc(0), obs);
  }

  #route(rec: ListenerRecord, routes: CompiledTcpRoute[], client: net.Socket, sni: string, alpn: readonly string[], head: Buffer, obs: TcpRecord | null): void {
    const l = rec.compiled;
    const observer = this.#observer;
    if (obs !== null) {
      obs.sni = sni;
      client.once('close', () => {
        obs.durationMs = performance.now() - obs.start;
        obs.bytesReceived = client.bytesRead;
        obs.bytesSent = client.bytesWritten;
        if (!obs.opened) observer!.observeTcp(obs, 'open');
        observer!.observeTcp(obs, 'close');
      });
    }
    const route = findTcpRoute(l, routes, sni, alpn, client.localAddress ?? '');
    // Unknown SNI (or no route): closed cleanly, nothing sent (the client sees its handshake end).
    if (route === null) {
      obs?.flag('NR');
      return void client.end();
    }
    const x = route.total * this.#random();
    let i = 0;
    while (i < route.cumulative.length - 1 && x >= route.cumulative[i]) i++;
    const cluster = route.clusters[i];
    if (obs !== null) {
      obs.route = route.name;
      obs.cluster = cluster?.name ?? '';
    }
    if (cluster === null || cluster.discovery === 'missing') {
      obs?.flag('NC');
      return void client.destroy();
    }
    let endpoint = selectEndpoint(cluster, this.#random);
    if (endpoint === null && cluster.endpoints.length === 0 && this.perConnectionEndpoint !== null) {
      const t = this.perConnectionEndpoint(cluster.name, client, sni);
      if (t !== null) endpoint = { key: `${t.address}:${t.port}`, address: t.address, port: t.port, origin: '', tls: cluster.tls, handle: null };
    }
    if (endpoint === null) {
      obs?.flag('UH');
      return void client.destroy();
    }
    // Reported open once the endpoint is chosen (a sidecar labels the connection with its workload);
    // with Istio's metadata exchange offered, once the server's preamble says who it is (istio_stats);
    // NC/UH connections are reported open at close.
    const reportOpen = (): void => {
      if (obs === null || obs.opened) return;
      obs.opened = true;
      observer!.observeTcp(obs, 'open');
    };
    if (obs !== null) obs.upstreamHost = socketAddress(endpoint.address, endpoint.port);
    // Upstream TLS (DestinationRule tls, auto mTLS) is originated unless the listener forwards the client's own TLS as is.
    const originate = endpoint.tls !== null && (l.ir.protocol !== 'TLS' || this.wrapClientTls);
    const offerExchange = originate && this.peerExchange !== null && endpoint.tls!.mode === 'ISTIO_MUTUAL';
    if (!offerExchange) reportOpen();
    const handle = endpoint.handle;
    if (handle !== null) handle.active++;
    let upstream: net.Socket;
    let exchange: TcpPeerExchange | null = null;
    if (originate) {
      let options = upstreamTlsByCluster.get(endpoint.tls!);
      if (options === undefined) upstreamTlsByCluster.set(endpoint.tls!, (options = upstreamTlsOptions(endpoint.tls!)));
      const connect = options.connect;
      // ISTIO_MUTUAL: options from the current workload certificate, or the reason there is none.
      const dynamic = options.istio?.();
      if (dynamic instanceof Error || (dynamic === undefined && typeof connect === 'function')) {
        // A TLS file that could not be read, or no mesh identity: never fall back to plaintext.
        obs?.flag('UF', `TLS_error:CERTIFICATE_VERIFY_FAILED:${dynamic instanceof Error ? (dynamic as Error & { code: string }).code : 'MG_TLS_FILE_UNREADABLE'}`);
        if (handle !== null) handle.active--;
        return void client.destroy();
      }
      // allowHalfOpen is honoured by tls.connect (it builds the TLSSocket with it) though not typed.
      const opts: tls.ConnectionOptions & { allowHalfOpen: boolean } = { ...((dynamic ?? connect) as tls.ConnectionOptions), host: endpoint.address, port: endpoint.port, allowHalfOpen: true };
      // A sidecar offers Istio's TCP metadata exchange to mesh peers (peer-exchange.ts).
      if (offerExchange) {
        exchange = this.peerExchange;
        opts.ALPNProtocols = PEER_EXCHANGE_OFFER as string[];
      }
      upstream = tls.connect(opts);
    } else {
      upstream = net.connect({ host: endpoint.address, port: endpoint.port, allowHalfOpen: true });
    }
    rec.sockets.add(upstream);
    let released = false;
    let connected = false;
    const release = (): void => {
      if (released) return;
      released = true;
      if (handle !== null) handle.active--;
    };
    const connectTimer = setTimeout(() => {
      obs?.flag('UF');
      upstream.destroy();
    }, cluster.connectTimeoutMs);
    upstream.setNoDelay(true);
    upstream.on(originate ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer);
      connected = true;
      // The server chose the exchange: this side's preamble goes first, the server's is read off
      // before its bytes reach the client.
      const mx = exchange !== null && (upstream as tls.TLSSocket).alpnProtocol === PEER_EXCHANGE_ALPN ? exchange : null;
      if (mx !== null) upstream.write(mx.preamble);
      else reportOpen();
      if (head.length > 0) upstream.write(head);
      // Bytes both ways with back-pressure; a FIN is relayed as a FIN (end: true), never as a close.
      client.pipe(upstream);
      if (mx === null) upstream.pipe(client);
      else {
        readPeerPreamble(upstream, (r) => {
          if (r.kind === 'peer' && obs !== null) obs.peerMetadata = r.peer.metadata;
          reportOpen();
          if (r.kind === 'error') {
            obs?.flag('UPE', 'metadata_exchange_error');
            return destroyBoth();
          }
          if (r.kind === 'ended') return void client.end(r.rest);
          upstream.pipe(client);
        });
      }
      client.resume();
    });
    const destroyBoth = (): void => {
      clearTimeout(connectTimer);
      client.destroy();
      upstream.destroy();
      release();
    };
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      if (obs !== null) {
        const code = err.code ?? '';
        if (connected) obs.flag('UC');
        else if (TLS_VERIFY_CODES.has(code)) obs.flag('UF', `TLS_error:CERTIFICATE_VERIFY_FAILED:${code}`);
        else if (code.startsWith('ERR_SSL_')) obs.flag('UF', `TLS_error:${code.slice('ERR_SSL_'.length)}`);
        else obs.flag('UF', code === '' ? null : code);
      }
      destroyBoth();
    });
    client.on('error', () => {
      obs?.flag('DC');
      destroyBoth();
    });
    upstream.on('close', () => {
      rec.sockets.delete(upstream);
      if (!connected) obs?.flag('UF');
      // Closed after both FINs: the client closes too once its own writes are flushed.
      if (!client.destroyed && client.writableFinished) client.destroy();
      else if (!client.writableEnded) client.destroy();
      release();
    });
    client.on('close', () => {
      if (!upstream.destroyed && !upstream.writableEnded) upstream.destroy();
      release();
    });
  }

  boundPort(key: string): number | null {
    const rec = this.#records.get(key);
    return rec === undefined ? null : this.#sockets.boundPort(rec.tableKey);
  }
}

function drainTcp(rec: ListenerRecord, graceMs: number): Promise<void> {
  if (rec.sockets.size === 0) return Promise.resolve();
  const deadline = Date.now() + graceMs;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (rec.sockets.size > 0 && Date.now() < deadline) return;
      clearInterval(timer);
      for (const s of rec.sockets) s.destroy();
      resolve();
    }, 50);
  });
}

/** A never-bound relay left the snapshot: its connections may finish for `graceMs`, then are closed. */
function drainUnbound(rec: ListenerRecord, graceMs: number): Promise<void> {
  if (rec.sockets.size === 0) return Promise.resolve();
  // No grace: closed now (the timer below is unref'd, so a process with nothing else to do would never settle it).
  if (graceMs <= 0) {
    for (const s of rec.sockets) s.destroy();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      for (const s of rec.sockets) s.destroy();
      resolve();
    }, graceMs);
    t.unref();
  });
}

function noop(): void {}

/** The HTTP(S) listeners, synced first, keep every socket they still own. */
const ALL: ReadonlySet<string> = { has: () => true } as unknown as ReadonlySet<string>;
