/**
 * The sidecar's outbound side (reference/mesh.md §0, §2.3-2.4, §2.7-2.8): every connection the pod's
 * apps open is captured (TPROXY) to one transparent listener (15001) and handed to `handle`, whose
 * `socket.localAddress:localPort` is the original destination.
 *
 *   1. The destination is looked up in the view's `outbound` services: cluster IP (VIP) and port
 *      first, then endpoint address and port (headless services, ServiceEntry addresses), then the
 *      longest ServiceEntry address range (CIDR) covering it (address-ranges.ts).
 *   2. The protocol: a declared HTTP/HTTP2/GRPC port goes to the HTTP engines (h2c by its preface,
 *      else HTTP/1.1), a TCP port is relayed at once (server-first protocols work), a TLS port is
 *      relayed by the SNI of its ClientHello. An undeclared (`UNKNOWN`) port is sniffed: `0x16 0x03`
 *      → TLS; the h2c preface or `METHOD ` → HTTP; anything else, or nothing within the detection
 *      timeout (a server-first protocol), → opaque TCP.
 *   3. HTTP requests are served by the gateway's request path (routes, retries, timeouts, faults,
 *      circuit breakers, outlier detection, Istio mTLS by the clusters' `tls`/`autoMtls` and the
 *      process's workload certificate, Istio's metadata exchange headers to mTLS endpoints:
 *      `peer-metadata.ts`) with the port's route table (`outboundHttp`), compiled like a
 *      gateway listener but never bound. A Host no virtual host of the table knows is Istio's
 *      `allow_any` (forwarded as is to the original destination: PassthroughCluster) or `block_all`
 *      (502, REGISTRY_ONLY).
 *   4. TCP and TLS are relayed by the runtime's TCP proxy (`outboundTcp`, runtime/tcp/), with the
 *      cluster's TLS per endpoint (Istio mTLS to meshed endpoints, TCP metadata exchange,
 *      DestinationRule `tls`): a TLS relay wraps the app's own TLS in it, as Envoy's clusters do.
 *      Services without an address are found by name (wildcard-hosts.ts): a virtual host routing to a
 *      wildcard ServiceEntry host with resolution NONE / DYNAMIC_DNS is served with its destination
 *      (original destination / the Host) as the endpoint; TLS to an unknown destination whose SNI an
 *      address-less host of the port names or covers is relayed by that host's relay (its
 *      VirtualService's `tls` routes, when one matches); other bytes on the port of an address-less
 *      TCP service (ExternalName, DNS ServiceEntry, wildcard host) go to its relay (Istio's
 *      `0.0.0.0_<port>` TCP listener). A relay's cluster of a wildcard host has no endpoints: each
 *      connection's is its original destination (NONE) or its SNI name (DYNAMIC_DNS). TLS and TCP to
 *      a service's own address (a wildcard host's `addresses` included) go through its relay too,
 *      and what no route of it matches follows the outbound traffic policy (`#byAddress`).
 *   5. A destination no service means: ALLOW_ANY relays the bytes to it (PassthroughCluster, as Envoy's
 *      virtualOutbound does), except HTTP on a port that has a route table, which that table serves
 *      (Istio's `0.0.0.0_<port>` listener); REGISTRY_ONLY answers HTTP with 502 (BlackHoleCluster)
 *      and closes anything else.
 *
 * `apply` swaps a new view in without dropping a connection: HTTP connections keep their table
 * object and see the new routes at their next request; TCP connections keep the routes they were
 * matched with; upstream pools are kept by endpoint across views (runtime/state/endpoint-pools.ts).
 */
import net from 'node:net';
import http2, { type ServerHttp2Stream } from 'node:http2';
import type { Cluster, DomainMatch, IRSnapshot, Listener, OutboundService, Route, SidecarView } from '../../ir/types.js';
import { defaultSecurityConfig } from '../../ir/security.js';
import { compileSnapshot } from '../compile/compile-snapshot.js';
import { compileProxyHeaders } from '../http/proxy-headers.js';
import { normalizeHost, selectVirtualHost } from '../compile/lookup.js';
import type { CompiledListener, CompiledSnapshot } from '../compile/types.js';
import { handleRequest, MAX_REQUEST_HEADERS, type RequestEnv } from '../http/request-handler.js';
import { internalFailure } from '../http/internal-failure.js';
import { plainAddress, type Downstream } from '../http/downstream.js';
import { acceptH2Stream } from '../h2/h2-downstream.js';
import { H1Engine } from '../h1/engine.js';
import { createEngines, SessionTracker, sniffPlaintext, type HttpEngines } from '../listeners/http-front.js';
import { SERVER_OPTIONS } from '../listeners/listener-manager.js';
import { EndpointPools, type EndpointPoolOptions } from '../state/endpoint-pools.js';
import { TcpListenerManager } from '../tcp/tcp-listeners.js';
import { parseClientHello } from '../tcp/client-hello.js';
import { sniffKind } from './protocol-sniff.js';
import { socketAddress, TcpRecord, type TcpObserver } from '../../observability/tcp-record.js';
import { outboundObserver, outboundTcpObserver, outboundTelemetryContext, type OutboundTelemetryContext } from './outbound-telemetry.js';
import { localPeerMetadata } from './peer-metadata.js';
import { addressRanges, hostAddress, matchAddressRange, type AddressRange } from './address-ranges.js';
import { forwardTarget, hostOnlyServices, matchWildcards, perConnectionClusters, wildcardSnapshot, wildcardTarget, type PerConnectionCluster } from './wildcard-hosts.js';

/** Default protocol detection timeout for undeclared ports (a server-first protocol is TCP after it). */
export const DEFAULT_DETECTION_TIMEOUT_MS = 300;

/** Most bytes read while sniffing (Linkerd reads up to 1 KiB for HTTP; a ClientHello may need 16 KiB). */
const SNIFF_LIMIT = 16 * 1024;

/** Original destinations remembered for HTTP passthrough (allow_any), oldest forgotten first. */
const PASSTHROUGH_LIMIT = 256;

/** Connect timeout of PassthroughCluster (MeshConfig connectTimeout default 10 s). */
const PASSTHROUGH_CONNECT_TIMEOUT_MS = 10_000;

export interface OutboundOptions {
  env: RequestEnv;
  /** TCP connection records (istio_tcp_*, access log); null = off. */
  tcpObserver: TcpObserver | null;
  /** Undeclared ports: time to wait for the client's first bytes before relaying as TCP. */
  detectionTimeoutMs?: number;
  /** Connections of a route table removed by a new view may finish for this long. */
  drainMs?: number;
  pools?: Partial<EndpointPoolOptions>;
  /**
   * The sidecar's own listening ports on loopback and the pod addresses: a connection whose
   * original destination is one of them is not relayed (it would loop back to the proxy).
   */
  isSelf?: (address: string, port: number) => boolean;
  /** Istio cluster ID for `source_cluster` / `destination_cluster` (default `Kubernetes`, Istio's). */
  clusterId?: string;
}

/** Counters for tests and the admin view. */
export interface OutboundCounters {
  http: number;
  tcp: number;
  tls: number;
  passthrough: number;
  blackhole: number;
}

/** One outbound route table (or passthrough listener) and the engines serving its connections. */
class Front {
  readonly sessions = new SessionTracker();
  readonly sockets = new Set<net.Socket>();
  readonly engines: HttpEngines;
  draining = false;
  constructor(
    public compiled: CompiledListener,
    readonly serve: (front: Front, d: Downstream) => void,
  ) {
    const h1 = new H1Engine(
      {
        headersTimeout: SERVER_OPTIONS.headersTimeout,
        keepAliveTimeout: SERVER_OPTIONS.keepAliveTimeout,
        streamIdleTimeout: SERVER_OPTIONS.streamIdleTimeout,
        maxHeaderSize: SERVER_OPTIONS.maxHeaderSize,
        maxHeadersCount: MAX_REQUEST_HEADERS + 1,
      },
      (d) => this.serve(this, d),
    );
    this.engines = createEngines(h1, this.sessions);
    this.engines.h2.on('stream', (stream: ServerHttp2Stream, _h: unknown, _f: unknown, rawHeaders: string[]) => {
      try {
        acceptH2Stream(stream, rawHeaders, (d) => this.serve(this, d));
      } catch (err) {
        internalFailure(null, err, 'HTTP/2 stream');
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
  }

  /** A plaintext connection (its first bytes, if already read, pushed back first). */
  accept(socket: net.Socket, head: Buffer): void {
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    if (head.length > 0) socket.unshift(head);
    sniffPlaintext(socket, this.engines);
    socket.resume();
  }

  /** Lets in-flight requests finish for `graceMs`, then closes what is left. */
  drain(graceMs: number): void {
    this.draining = true;
    this.engines.h1.closeIdle();
    this.sessions.closeAll();
    const idle = setInterval(() => {
      this.engines.h1.closeIdle();
      if (this.sockets.size === 0) finish();
    }, 100);
    const hard = setTimeout(() => finish(), graceMs);
    const finish = (): void => {
      clearInterval(idle);
      clearTimeout(hard);
      this.engines.h1.closeAll();
      this.sessions.destroyAll();
      for (const s of this.sockets) s.destroy();
      this.engines.h1.close();
    };
    idle.unref();
    hard.unref();
  }
}

/** What one applied view is served with. */
interface State {
  view: SidecarView;
  ir: IRSnapshot;
  compiled: CompiledSnapshot;
  /** `address|port` → service (VIP entries first, then endpoint addresses). */
  services: Map<string, OutboundService>;
  /** ServiceEntry address ranges (CIDRs) by port, longest first: tried when no address matches (address-ranges.ts). */
  ranges: Map<number, AddressRange[]>;
  /** Ports that have a route table (`0.0.0.0_<port>`), for unknown destinations. */
  tablesByPort: Map<number, string>;
  /** Virtual hosts routing to a wildcard host served per connection (`forward`), by name (wildcard-hosts.ts). */
  wildcardVhosts: Map<string, OutboundService>;
  /** Address-less hosts with a relay (wildcards, exact TLS hosts), by port, most specific first: TLS to an unknown destination is matched by SNI. */
  wildcardTls: Map<number, OutboundService[]>;
  /** Non-HTTP services without any address (ExternalName, wildcard hosts): Istio's `0.0.0.0_<port>` TCP listener, first by host. */
  addresslessTcp: Map<number, OutboundService>;
  /** Clusters of wildcard hosts whose endpoint is decided per connection (ORIGINAL_DST, SNI dynamic forward proxy), by name. */
  perConnection: Map<string, PerConnectionCluster>;
}

export class OutboundHandler {
  readonly #env: RequestEnv;
  readonly #tcpObserver: TcpObserver | null;
  readonly #pools: EndpointPools;
  readonly #tcp: TcpListenerManager;
  readonly #detectMs: number;
  readonly #drainMs: number;
  readonly #isSelf: (address: string, port: number) => boolean;
  readonly #poolOptions: Partial<EndpointPoolOptions> | undefined;
  readonly #fronts = new Map<string, Front>();
  /** allow_any: one never-bound listener and pool set per original destination (`ip:port`), in use order. */
  readonly #passthrough = new Map<string, { front: Front; pools: EndpointPools; compiled: CompiledSnapshot }>();
  readonly #blackhole: Front;
  /** Wildcard hosts: one never-bound table and pool set per virtual host and destination, in use order (wildcard-hosts.ts). */
  readonly #wildcard = new Map<string, { compiled: CompiledSnapshot; pools: EndpointPools }>();
  /** Sockets being sniffed or relayed by passthrough (closed at close()). */
  readonly #loose = new Set<net.Socket>();
  #state: State | null = null;
  #telemetry: OutboundTelemetryContext | null = null;
  readonly #clusterId: string;
  #closed = false;
  readonly counters: OutboundCounters = { http: 0, tcp: 0, tls: 0, passthrough: 0, blackhole: 0 };

  constructor(opts: OutboundOptions) {
    const observer = opts.env.observer;
    // Requests are counted under Istio's source-side labels (outbound-telemetry.ts).
    this.#env = { random: opts.env.random, observer: observer === null ? null : outboundObserver(observer, () => this.#telemetry), peerMetadata: null };
    this.#clusterId = opts.clusterId ?? 'Kubernetes';
    // TCP connections too (relays, PassthroughCluster, BlackHoleCluster).
    this.#tcpObserver = opts.tcpObserver === null ? null : outboundTcpObserver(opts.tcpObserver, () => this.#telemetry);
    this.#poolOptions = opts.pools;
    this.#pools = new EndpointPools(opts.pools);
    this.#tcp = new TcpListenerManager(opts.env.random, this.#tcpObserver);
    // Relays to a wildcard host's clusters (tls/tcp routes, default routes): the endpoint per connection.
    this.#tcp.perConnectionEndpoint = (cluster, client, sni) => this.#perConnectionEndpoint(cluster, client, sni);
    // TLS relays wrap the app's TLS in the cluster's TLS (auto mTLS per endpoint, DestinationRule), as Envoy's clusters do.
    this.#tcp.wrapClientTls = true;
    this.#detectMs = opts.detectionTimeoutMs ?? DEFAULT_DETECTION_TIMEOUT_MS;
    this.#drainMs = opts.drainMs ?? 30_000;
    this.#isSelf = opts.isSelf ?? (() => false);
    const blackhole = compileSnapshot(miniSnapshot('blackhole', [blackholeListener()], []));
    this.#blackhole = new Front(blackhole.listeners[0], (front, d) => this.#serveFront(front, d));
  }

  /** The view being served; null before the first apply. */
  get view(): SidecarView | null {
    return this.#state?.view ?? null;
  }

  /** The compiled outbound tables (for metrics gauges: upstream pools). */
  get current(): CompiledSnapshot | null {
    return this.#state?.compiled ?? null;
  }

  /**
   * Serves `ir` (a sidecar snapshot) from now on. Throws, leaving the previous view serving, when the
   * view has no `sidecar` part or its outbound tables do not compile.
   */
  apply(ir: IRSnapshot): void {
    if (this.#closed) throw new Error('outbound side is closed');
    const view = ir.sidecar;
    if (view === undefined) throw new Error(`snapshot ${ir.version} is not a sidecar view (no "sidecar")`);
    const outIr: IRSnapshot = {
      ...ir,
      listeners: view.outboundHttp.map((l) => withCatchAll(withPortlessDomains(l), view.outboundTrafficPolicy)),
      tcpListeners: [],
      // The view's security is for the inbound side (policies selecting this workload): never on outbound.
      security: { ...ir.security, jwtRules: [], authorizationPolicies: [], extAuthzProviders: [], rateLimits: [] },
    };
    let compiled: CompiledSnapshot;
    try {
      compiled = compileSnapshot(outIr);
    } catch (err) {
      throw new Error(`outbound tables of ${ir.version} do not compile: ${(err as Error).message}`);
    }
    // Envoy's sidecar outbound (`use_remote_address: false`): the app's own address is not appended
    // to x-forwarded-for, as the gateway does for its clients.
    for (const l of compiled.listeners) asSidecarOutbound(l);
    const services = new Map<string, OutboundService>();
    for (const s of view.outbound) for (const a of s.addresses) if (isVip(s, a)) setOnce(services, key(hostAddress(a) ?? a, s.port), s);
    for (const s of view.outbound) for (const a of s.addresses) setOnce(services, key(hostAddress(a) ?? a, s.port), s);
    const tablesByPort = new Map<number, string>();
    for (const l of view.outboundHttp) tablesByPort.set(l.port, l.name);
    const { wildcardVhosts, wildcardTls, addresslessTcp } = hostOnlyServices(view.outbound, view.outboundHttp, ir.clusters);
    this.#pools.bind(compiled, this.#state?.compiled ?? null);
    this.#tcp.syncUnbound(view.outboundTcp, compiled, this.#drainMs);
    const byName = new Map(compiled.listeners.map((l) => [l.name, l]));
    for (const [name, front] of this.#fronts) {
      const next = byName.get(name);
      if (next !== undefined) front.compiled = next;
      else {
        this.#fronts.delete(name);
        front.drain(this.#drainMs);
      }
    }
    for (const l of compiled.listeners) if (!this.#fronts.has(l.name)) this.#fronts.set(l.name, new Front(l, (front, d) => this.#serveFront(front, d)));
    this.#state = { view, ir: outIr, compiled, services, ranges: addressRanges(view.outbound), tablesByPort, wildcardVhosts, wildcardTls, addresslessTcp, perConnection: perConnectionClusters(view.outbound, ir.clusters) };
    this.#telemetry = outboundTelemetryContext(ir, this.#clusterId);
    // REGISTRY_ONLY's 502 follows the view's ProxyConfig proxyHeaders too (server, debug headers).
    this.#blackhole.compiled.security.proxyHeaders = compileProxyHeaders(ir.security.proxyHeaders);
    // Istio's metadata exchange (HTTP headers, TCP preamble) of this proxy, encoded once per view (peer-metadata.ts).
    this.#env.peerMetadata = localPeerMetadata(view.proxy, this.#clusterId);
    this.#tcp.peerExchange = this.#env.peerMetadata;
    // Passthrough listeners carry the view's access-log and tracing settings: rebuilt on demand.
    for (const [k, p] of this.#passthrough) {
      this.#passthrough.delete(k);
      p.front.drain(this.#drainMs);
      void p.pools.close(this.#drainMs);
    }
    // Per-destination tables of wildcard hosts are rebuilt from the new view on demand.
    for (const w of this.#wildcard.values()) void w.pools.close(this.#drainMs);
    this.#wildcard.clear();
  }

  /** A connection accepted on the outbound listener. */
  handle(socket: net.Socket): void {
    socket.on('error', noop);
    if (this.#closed) return void socket.destroy();
    const state = this.#state;
    const address = plainAddress(socket.localAddress ?? '');
    const port = socket.localPort ?? 0;
    // No view yet: nothing can be routed (readiness is 503 meanwhile).
    if (state === null || address === '' || this.#isSelf(address, port)) return void socket.destroy();
    const svc = state.services.get(key(address, port)) ?? (state.ranges.size === 0 ? undefined : matchAddressRange(state.ranges, address, port));
    if (svc !== undefined) {
      switch (svc.protocol) {
        case 'HTTP':
        case 'HTTP2':
        case 'GRPC':
          if (svc.httpRoutes !== null) return this.#http(svc.httpRoutes, socket, EMPTY);
          break;
        case 'TCP':
          // No protocol detection (server-first protocols work): Istio's TCP listener has no inspector.
          if (svc.tcpRoutes !== null) return this.#byAddress(state, svc.tcpRoutes, socket, 'tcp', EMPTY, '', NO_ALPN, address, port);
          break;
        default:
          break;
      }
    }
    this.#sniff(socket, (kind, head, sni, alpn) => this.#route(state, svc, socket, kind, head, sni, alpn, address, port));
  }

  #route(state: State, svc: OutboundService | undefined, socket: net.Socket, kind: Sniffed, head: Buffer, sni: string, alpn: readonly string[], address: string, port: number): void {
    if (svc !== undefined) {
      if (kind === 'http' && svc.httpRoutes !== null) return this.#http(svc.httpRoutes, socket, head);
      if (svc.tcpRoutes !== null) return this.#byAddress(state, svc.tcpRoutes, socket, kind, head, sni, alpn, address, port);
      if (svc.httpRoutes !== null) return this.#http(svc.httpRoutes, socket, head);
      return void socket.destroy();
    }
    // Not a known service: Istio's `0.0.0.0_<port>` HTTP listener still serves HTTP by Host.
    const table = state.tablesByPort.get(port);
    if (kind === 'http' && table !== undefined) return this.#http(table, socket, head);
    // TLS by SNI to an address-less host of this port (exact, then the longest wildcard) whose relay
    // has a route for it (its VirtualService's tls matches: SNI, port, destination subnets); other
    // bytes to an address-less TCP service's relay.
    if (kind === 'tls' && sni !== '') {
      for (const w of matchWildcards(state.wildcardTls.get(port), sni)) {
        if (this.#tcp.hasRoute(w.tcpRoutes!, sni, alpn, address)) return this.#relay(w.tcpRoutes!, socket, sni, alpn, head, 'tls');
      }
    }
    if (kind !== 'http') {
      const t = state.addresslessTcp.get(port);
      if (t !== undefined && t.tcpRoutes !== null) return this.#relay(t.tcpRoutes, socket, sni, alpn, head, kind === 'tls' ? 'tls' : 'tcp');
    }
    if (state.view.outboundTrafficPolicy === 'REGISTRY_ONLY') {
      this.counters.blackhole++;
      if (kind === 'http') return this.#blackhole.accept(socket, head);
      this.#observeBlackholeTcp(socket);
      return void socket.destroy();
    }
    this.#passthroughRelay(socket, address, port, head);
  }

  /**
   * TLS or TCP to a service's own address (Istio's listener `<address>_<port>`): its relay's routes
   * (VirtualService `tls`/`tcp` routes, then the default route, wildcard hosts included: a wildcard
   * host's cluster reaches the original destination (NONE) or the SNI name (DYNAMIC_DNS) per
   * connection, `#perConnectionEndpoint`). A connection no route matches takes the listener's default
   * filter chain, Istio's PassthroughFilterChain: ALLOW_ANY relays it to its original destination,
   * REGISTRY_ONLY closes it (listener.go buildListenerFromEntry, listener_builder.go
   * buildOutboundCatchAllNetworkFiltersOnly). That happens on a TLS port whose `tls` routes replace
   * the default chain, and for a DYNAMIC_DNS wildcard host's TLS port, whose default chain matches
   * the SNIs the host covers only (tls.go buildSidecarOutboundTLSFilterChainOpts).
   */
  #byAddress(state: State, relay: string, socket: net.Socket, kind: Sniffed, head: Buffer, sni: string, alpn: readonly string[], address: string, port: number): void {
    if (this.#tcp.hasRoute(relay, sni, alpn, address)) return this.#relay(relay, socket, sni, alpn, head, kind === 'tls' ? 'tls' : 'tcp');
    if (state.view.outboundTrafficPolicy === 'REGISTRY_ONLY') {
      this.counters.blackhole++;
      this.#observeBlackholeTcp(socket);
      return void socket.destroy();
    }
    this.#passthroughRelay(socket, address, port, head);
  }

  #http(table: string, socket: net.Socket, head: Buffer): void {
    const front = this.#fronts.get(table);
    if (front === undefined) return void socket.destroy();
    this.counters.http++;
    front.accept(socket, head);
  }

  #relay(name: string, socket: net.Socket, sni: string, alpn: readonly string[], head: Buffer, what: 'tcp' | 'tls'): void {
    this.counters[what]++;
    if (!this.#tcp.relay(name, socket, sni, alpn, head)) socket.destroy();
  }

  /** Every request of an outbound table: a Host no virtual host knows is allow_any / block_all. */
  #serveFront(front: Front, d: Downstream): void {
    const listener = front.compiled;
    if (front.draining) d.closeAfterResponse();
    try {
      const state = this.#state;
      if (listener.name !== BLACKHOLE && !listener.name.startsWith(PASSTHROUGH) && state !== null && (state.view.outboundTrafficPolicy === 'ALLOW_ANY' || state.wildcardVhosts.size > 0)) {
        const chain = listener.defaultChain;
        const authority = d.http2 ? d.header(':authority') ?? d.header('host') : d.header('host');
        const vhost = chain !== null && authority !== null ? selectVirtualHost(chain, normalizeHost(authority)) : undefined;
        if (vhost === null && state.view.outboundTrafficPolicy === 'ALLOW_ANY') {
          const pt = this.#passthroughFront(plainAddress(d.localAddress), d.localPort);
          if (pt !== null) {
            this.counters.passthrough++;
            return handleRequest(this.#env, pt.compiled, d);
          }
        }
        // A wildcard host: its routes with the destination of this request (wildcard-hosts.ts).
        const w = vhost != null && state.wildcardVhosts.size > 0 ? state.wildcardVhosts.get(vhost.name) : undefined;
        if (w !== undefined) {
          // Nothing to reach (no Host name, the proxy itself): the table's own cluster has no endpoints, 503 UH.
          const l = this.#wildcardListener(state, vhost!.name, w, authority!, d);
          if (l !== null) return handleRequest(this.#env, l, d);
        }
      }
      handleRequest(this.#env, listener, d);
    } catch (err) {
      internalFailure(d, err, 'request path');
    }
  }

  /** The endpoint of one relayed connection to a wildcard host's cluster (wildcard-hosts.ts `forwardTarget`); null: nothing to reach (closed, UH). */
  #perConnectionEndpoint(cluster: string, client: net.Socket, sni: string): { address: string; port: number } | null {
    const c = this.#state?.perConnection.get(cluster);
    if (c === undefined) return null;
    const t = forwardTarget(c, plainAddress(client.localAddress ?? ''), client.localPort ?? 0, sni);
    return t === null || (c.forward === 'original-dst' && this.#isSelf(t.address, t.port)) ? null : t;
  }

  /** The table of wildcard host `svc` for this request's destination (original or the Host asked for); null when there is none to reach. */
  #wildcardListener(state: State, vhostName: string, svc: OutboundService, authority: string, d: Downstream): CompiledListener | null {
    const target = wildcardTarget(svc, authority, plainAddress(d.localAddress), d.localPort);
    if (target === null || (svc.forward === 'original-dst' && this.#isSelf(target.address, target.port))) return null;
    const k = `${vhostName}|${target.address}|${target.port}`;
    let hit = this.#wildcard.get(k);
    if (hit !== undefined) {
      this.#wildcard.delete(k);
      this.#wildcard.set(k, hit);
      return hit.compiled.listeners[0] ?? null;
    }
    const ir = wildcardSnapshot(state.ir, vhostName, svc, target);
    if (ir === null) return null;
    const compiled = compileSnapshot(ir);
    asSidecarOutbound(compiled.listeners[0]);
    const pools = new EndpointPools(this.#poolOptions);
    pools.bind(compiled, null);
    hit = { compiled, pools };
    this.#wildcard.set(k, hit);
    if (this.#wildcard.size > PASSTHROUGH_LIMIT) {
      const [oldKey, old] = this.#wildcard.entries().next().value as [string, { pools: EndpointPools }];
      this.#wildcard.delete(oldKey);
      void old.pools.close(this.#drainMs);
    }
    return compiled.listeners[0];
  }

  /** allow_any for HTTP: a never-bound listener forwarding every request to `address:port` (PassthroughCluster). */
  #passthroughFront(address: string, port: number): Front | null {
    const state = this.#state;
    if (state === null || address === '' || port === 0 || this.#isSelf(address, port)) return null;
    const k = key(address, port);
    const hit = this.#passthrough.get(k);
    if (hit !== undefined) {
      // Most recently used last.
      this.#passthrough.delete(k);
      this.#passthrough.set(k, hit);
      return hit.front;
    }
    const ir = miniSnapshot(`passthrough-${k}`, [passthroughListener(address, port)], [passthroughCluster(address, port)], state.ir);
    const compiled = compileSnapshot(ir);
    asSidecarOutbound(compiled.listeners[0]);
    const pools = new EndpointPools(this.#poolOptions);
    pools.bind(compiled, null);
    const front = new Front(compiled.listeners[0], (f, d) => this.#serveFront(f, d));
    this.#passthrough.set(k, { front, pools, compiled });
    if (this.#passthrough.size > PASSTHROUGH_LIMIT) {
      const [oldKey, old] = this.#passthrough.entries().next().value as [string, { front: Front; pools: EndpointPools }];
      this.#passthrough.delete(oldKey);
      old.front.drain(this.#drainMs);
      void old.pools.close(this.#drainMs);
    }
    return front;
  }

  /** ALLOW_ANY for anything but HTTP on a known port: the bytes are relayed to the original destination. */
  #passthroughRelay(client: net.Socket, address: string, port: number, head: Buffer, cluster?: string): void {
    if (cluster === undefined) this.counters.passthrough++;
    const obs = this.#tcpObserver === null ? null : new TcpRecord('virtualOutbound', socketAddress(client.localAddress, client.localPort), socketAddress(client.remoteAddress, client.remotePort));
    if (obs !== null) {
      obs.route = cluster ?? 'PassthroughCluster';
      obs.cluster = cluster ?? 'PassthroughCluster';
      obs.upstreamHost = socketAddress(address, port);
      obs.opened = true;
      this.#tcpObserver!.observeTcp(obs, 'open');
      client.once('close', () => {
        obs.durationMs = performance.now() - obs.start;
        obs.bytesReceived = client.bytesRead;
        obs.bytesSent = client.bytesWritten;
        this.#tcpObserver!.observeTcp(obs, 'close');
      });
    }
    client.pause();
    client.setNoDelay(true);
    const upstream = net.connect({ host: address, port, allowHalfOpen: true });
    this.#loose.add(client);
    this.#loose.add(upstream);
    client.once('close', () => this.#loose.delete(client));
    upstream.once('close', () => this.#loose.delete(upstream));
    let connected = false;
    const timer = setTimeout(() => {
      obs?.flag('UF');
      upstream.destroy();
      client.destroy();
    }, PASSTHROUGH_CONNECT_TIMEOUT_MS);
    upstream.setNoDelay(true);
    upstream.once('connect', () => {
      clearTimeout(timer);
      connected = true;
      if (head.length > 0) upstream.write(head);
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.on('error', () => {
      obs?.flag(connected ? 'UC' : 'UF');
      clearTimeout(timer);
      client.destroy();
      upstream.destroy();
    });
    client.on('error', () => {
      obs?.flag('DC');
      upstream.destroy();
    });
    upstream.on('close', () => {
      clearTimeout(timer);
      if (!client.destroyed && (client.writableFinished || !client.writableEnded)) client.destroy();
    });
    client.on('close', () => {
      if (!upstream.destroyed && !upstream.writableEnded) upstream.destroy();
    });
  }

  /** REGISTRY_ONLY, not HTTP: closed, counted as BlackHoleCluster. */
  #observeBlackholeTcp(client: net.Socket): void {
    const o = this.#tcpObserver;
    if (o === null) return;
    const obs = new TcpRecord('virtualOutbound', socketAddress(client.localAddress, client.localPort), socketAddress(client.remoteAddress, client.remotePort));
    obs.route = 'BlackHoleCluster';
    obs.cluster = 'BlackHoleCluster';
    obs.opened = true;
    o.observeTcp(obs, 'open');
    o.observeTcp(obs, 'close');
  }

  /**
   * Reads the first bytes (bounded in size and time) and says what they are; the socket is paused
   * when `done` runs and the bytes read are in `head`.
   */
  #sniff(socket: net.Socket, done: (kind: Sniffed, head: Buffer, sni: string, alpn: readonly string[]) => void): void {
    this.#loose.add(socket);
    let seen: Buffer = EMPTY;
    let finished = false;
    const finish = (kind: Sniffed, sni = '', alpn: readonly string[] = NO_ALPN): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.pause();
      this.#loose.delete(socket);
      done(kind, seen, sni, alpn);
    };
    // Nothing within the detection timeout: a server-first protocol, relayed as TCP.
    const timer = setTimeout(() => finish(classify(seen) === 'http' ? 'http' : 'tcp'), this.#detectMs);
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const k = classify(seen);
      if (k === 'tls') {
        const hello = parseClientHello(seen);
        if (hello.kind === 'need-more' && seen.length < SNIFF_LIMIT) return;
        return finish('tls', hello.kind === 'sni' ? hello.serverName : '', hello.kind === 'sni' || hello.kind === 'no-sni' ? hello.alpn : NO_ALPN);
      }
      if (k === 'need-more' && seen.length < SNIFF_LIMIT) return;
      finish(k === 'http' ? 'http' : 'tcp');
    };
    // The client half-closed before saying enough: what it said is relayed as TCP.
    const onEnd = (): void => finish(classify(seen) === 'http' ? 'http' : 'tcp');
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', () => {
      clearTimeout(timer);
      this.#loose.delete(socket);
    });
  }

  /** Stops serving: in-flight requests may finish for `graceMs`, then every connection and pool is closed. */
  async close(graceMs: number): Promise<void> {
    this.#closed = true;
    for (const f of this.#fronts.values()) f.drain(graceMs);
    this.#blackhole.drain(graceMs);
    for (const p of this.#passthrough.values()) p.front.drain(graceMs);
    for (const s of this.#loose) s.destroy();
    await this.#tcp.close(graceMs);
    await Promise.all([this.#pools.close(Math.min(graceMs, 1000)), ...[...this.#passthrough.values(), ...this.#wildcard.values()].map((p) => p.pools.close(Math.min(graceMs, 1000)))]);
    this.#passthrough.clear();
    this.#wildcard.clear();
  }
}

type Sniffed = 'http' | 'tls' | 'tcp';

const EMPTY = Buffer.alloc(0);
const NO_ALPN: readonly string[] = [];
const BLACKHOLE = 'block_all';
const PASSTHROUGH = 'allow_any_';

/** What the first bytes of a connection say (protocol-sniff.ts, the rule the inbound side uses too). */
export function classify(b: Buffer): 'http' | 'tls' | 'tcp' | 'need-more' {
  const k = sniffKind(b);
  return k === 'h2' || k === 'http1' ? 'http' : k === 'opaque' ? 'tcp' : k;
}

/** Forwarding headers as Envoy's sidecar outbound connection manager sets them (forward-headers.ts `ForwardMode`). */
function asSidecarOutbound(l: CompiledListener): void {
  l.security.appendXff = false;
  l.security.forwardMode = 'sidecar-outbound';
}

function key(address: string, port: number): string {
  return `${address}|${port}`;
}

function setOnce<K, V>(m: Map<K, V>, k: K, v: V): void {
  if (!m.has(k)) m.set(k, v);
}

/** The first address of a service is its VIP when the service has one; endpoint addresses follow (sidecar.ts). */
function isVip(s: OutboundService, a: string): boolean {
  return s.addresses[0] === a;
}


/**
 * Istio lists each service domain with and without `:<port>` (`reviews`, `reviews:9080`,
 * `10.0.0.1:9080`); the request path matches the Host without its port (compile/lookup.ts), so each
 * `host:<port of the table>` domain also stands for `host` (when no other virtual host of the chain
 * claims it). Another port in a domain never matches this table's requests, as in Envoy.
 */
export function withPortlessDomains(l: Listener): Listener {
  return {
    ...l,
    filterChains: l.filterChains.map((c) => {
      const claimed = new Set<string>();
      for (const v of c.virtualHosts) for (const d of v.domains) if (d.kind === 'exact') claimed.add(d.host.toLowerCase());
      const suffix = `:${l.externalPort}`;
      return {
        ...c,
        virtualHosts: c.virtualHosts.map((v) => {
          const extra: DomainMatch[] = [];
          for (const d of v.domains) {
            if (d.kind !== 'exact' || !d.host.endsWith(suffix)) continue;
            const bare = d.host.slice(0, -suffix.length).toLowerCase();
            if (bare === '' || claimed.has(bare)) continue;
            claimed.add(bare);
            extra.push({ kind: 'exact', host: bare });
          }
          return extra.length === 0 ? v : { ...v, domains: [...v.domains, ...extra] };
        }),
      };
    }),
  };
}

/**
 * The table with Istio's catch-all virtual host when it has none: `block_all` (REGISTRY_ONLY: 502)
 * as a route; `allow_any` is served by `#serveFront` (the original destination is per connection).
 */
function withCatchAll(l: Listener, policy: SidecarView['outboundTrafficPolicy']): Listener {
  if (policy !== 'REGISTRY_ONLY') return l;
  if (l.filterChains.some((c) => c.virtualHosts.some((v) => v.domains.some((d) => d.kind === 'any')))) return l;
  return { ...l, filterChains: l.filterChains.map((c) => ({ ...c, virtualHosts: [...c.virtualHosts, { name: 'block_all', domains: [{ kind: 'any' }], httpsRedirect: null, routes: [blackholeRoute()] }] })) };
}

const MESH_SOURCE = { kind: 'MeshConfig', namespace: '', name: 'outboundTrafficPolicy', file: null, line: null };

function catchAllMatch(): Route['matches'][number] {
  return { path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null };
}

function blackholeRoute(): Route {
  return { name: 'block_all', source: MESH_SOURCE, matches: [catchAllMatch()], action: { kind: 'direct', status: 502, body: null, contentType: null }, requestHeaders: null, responseHeaders: null, cors: null };
}

function blackholeListener(): Listener {
  return {
    name: BLACKHOLE,
    address: '0.0.0.0',
    port: 0,
    externalPort: 0,
    protocol: 'HTTP',
    filterChains: [{ name: BLACKHOLE, serverNames: [], tls: null, virtualHosts: [{ name: 'block_all', domains: [{ kind: 'any' }], httpsRedirect: null, routes: [blackholeRoute()] }] }],
  };
}

function passthroughListener(address: string, port: number): Listener {
  const route: Route = {
    name: 'allow_any',
    source: MESH_SOURCE,
    matches: [catchAllMatch()],
    action: { kind: 'forward', destinations: [{ cluster: 'PassthroughCluster', weight: 1, requestHeaders: null, responseHeaders: null }], rewrite: null, timeoutMs: null, retries: null, fault: null, mirrors: [] },
    requestHeaders: null,
    responseHeaders: null,
    cors: null,
  };
  return {
    name: `${PASSTHROUGH}${address}_${port}`,
    address,
    port,
    externalPort: port,
    protocol: 'HTTP',
    filterChains: [{ name: 'allow_any', serverNames: [], tls: null, virtualHosts: [{ name: 'allow_any', domains: [{ kind: 'any' }], httpsRedirect: null, routes: [route] }] }],
  };
}

function passthroughCluster(address: string, port: number): Cluster {
  return {
    name: 'PassthroughCluster',
    service: { namespace: '', name: 'PassthroughCluster', host: 'PassthroughCluster', port },
    subset: '',
    discovery: 'eds',
    lbPolicy: 'ROUND_ROBIN',
    endpoints: [{ address, port, ready: true }],
    connectTimeoutMs: PASSTHROUGH_CONNECT_TIMEOUT_MS,
    connectionPool: null,
    outlierDetection: null,
    protocol: 'HTTP1',
    tls: null,
  };
}

/** A snapshot of a few synthetic listeners (blackhole, passthrough) with the view's telemetry settings. */
function miniSnapshot(version: string, listeners: Listener[], clusters: Cluster[], base?: IRSnapshot): IRSnapshot {
  return {
    version,
    listeners,
    clusters,
    tcpListeners: [],
    security: base?.security ?? defaultSecurityConfig(),
    accessLogging: base?.accessLogging ?? { configured: false, logs: [] },
    tracing: base?.tracing ?? { configured: false, provider: null, endpoint: null, samplingPercentage: null, disableSpanReporting: false, customTags: [], sources: [] },
  };
}

function noop(): void {}
