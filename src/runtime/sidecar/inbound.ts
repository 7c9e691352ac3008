/**
 * The sidecar's inbound side (Istio's `virtualInbound` listener on 15006; reference/mesh.md §2.4-2.6,
 * §2.9, §4). `meshgate sidecar` accepts every captured inbound connection and hands it to
 * `InboundHandler.handle`; the socket's local address and port are the original destination (the pod
 * IP and the app's port: TPROXY keeps them).
 *
 * Per connection:
 *  1. The port's effective PeerAuthentication mode (`SidecarView.inbound[].mtls`, else
 *     `inboundDefault`) and protocol (declared HTTP, declared TCP, or UNKNOWN: sniffed).
 *  2. The first bytes (`inbound-sniff.ts`), as Envoy's TLS and HTTP inspectors:
 *     | mode \ arrives | TLS offering Istio ALPN | other TLS            | plaintext     |
 *     | STRICT         | mTLS                   | mTLS (needs a mesh certificate) | closed, nothing sent |
 *     | PERMISSIVE     | mTLS                   | relayed as TCP (app's TLS); declared HTTP port: closed | HTTP or TCP |
 *     | DISABLE        | relayed as TCP; declared HTTP port: closed | the same | HTTP or TCP |
 *     mTLS: the handshake uses the workload certificate current at that moment (`identity()`; a
 *     renewed certificate serves new handshakes), requires a client certificate chaining to the mesh
 *     roots, and answers ALPN `h2`/`http/1.1`/`istio` from the client's offer. Inside, declared HTTP
 *     ports speak HTTP; UNKNOWN ports speak HTTP when the offer has `istio-http/*` or `istio-h2`, else TCP.
 *  3. HTTP goes through the gateway's engines (meshgate's HTTP/1.1 engine, node:http2) and request
 *     path (`handleRequest`) with the port's `inbound_<port>` route table: AuthorizationPolicy and
 *     RequestAuthentication of the workload (the peer certificate's SPIFFE ID is `source.principal`),
 *     x-forwarded-client-cert as Istio's sidecars set it (APPEND_FORWARD, `By`, `Hash`, `Subject`,
 *     `URI`, `DNS`), x-forwarded-for left as the peer sent it (Envoy's `use_remote_address: false`),
 *     then the `inbound|<port>||` cluster, whose endpoint is the pod IP the connection was sent to
 *     (of its family: a dual-stack pod has one compiled table per family) and the target port,
 *     dialled from 127.0.0.6 (::6 for IPv6), so the app sees the proxy and capture lets the
 *     connection through.
 *  4. TCP: the connection-level AuthorizationPolicy (`inbound-authz.ts`; a denial closes the
 *     connection), then a relay to the original destination from 127.0.0.6, half-close preserved.
 *     Ports not in the view are relayed so too, under `inboundDefault` (InboundPassthroughCluster).
 *     A plaintext client that says nothing (a server-first protocol) is relayed after the peek
 *     timeout where plaintext is allowed, once the app speaks first (`#awaitFirstSpeaker`: a client
 *     that speaks first, even late, is classified by its bytes, so a slow TLS client still gets
 *     mTLS); on a DISABLE TCP port at once (nothing to look at). The app is never dialled for a
 *     connection the TCP AuthorizationPolicy denies: a plaintext connection's attributes (addresses,
 *     port; no principal, no SNI) are all known at accept, so the policy is checked before any dial,
 *     and a silent plaintext client it denies waits like one on a STRICT port (a late ClientHello may
 *     still bring a principal the policy allows) and is then closed as a denial. Envoy's network RBAC
 *     filter decides on the first downstream bytes while tcp_proxy dials at once (envoyproxy/envoy
 *     #9023; its `upstream_connect_mode` opt-in waits): meshgate always waits.
 * Telemetry: `reporter="destination"` labels per connection (`inbound-telemetry.ts`) on every HTTP
 * request record and TCP record, the caller's workload taken from Istio's metadata exchange when the
 * view does not know it (`peer-metadata.ts`, which also answers such a peer with this proxy's);
 * access logs and traces as at the gateway.
 */
import http2, { type ServerHttp2Stream } from 'node:http2';
import net from 'node:net';
import tls, { type TLSSocket } from 'node:tls';
import type { Logger } from '../../lib/log.js';
import type { Cluster, IRSnapshot, Listener } from '../../ir/types.js';
import type { InboundPort, MeshWorkload, SidecarView } from '../../ir/sidecar.js';
import type { MeshIdentityMaterial } from '../upstream/mesh-identity.js';
import { compileSnapshot } from '../compile/compile-snapshot.js';
import type { CompiledListener, CompiledSnapshot } from '../compile/types.js';
import { handleRequest, MAX_REQUEST_HEADERS, type RequestEnv } from '../http/request-handler.js';
import { internalFailure } from '../http/internal-failure.js';
import type { Downstream } from '../http/downstream.js';
import { acceptH2Stream } from '../h2/h2-downstream.js';
import { H1Engine } from '../h1/engine.js';
import { createEngines, dispatchTls, SessionTracker, sniffPlaintext, type HttpEngines } from '../listeners/http-front.js';
import { SERVER_OPTIONS } from '../listeners/listener-manager.js';
import { EndpointPools, type EndpointPoolOptions } from '../state/endpoint-pools.js';
import { loadJose } from '../filters/jwt.js';
import { plainIp, type CompiledAuthz } from '../filters/rbac.js';
import type { RequestObserver } from '../../observability/observer.js';
import type { RequestRecord } from '../../observability/record.js';
import { socketAddress, TcpRecord, tcpObserverOf, type TcpObserver } from '../../observability/tcp-record.js';
import { classify, ISTIO_ALPN, ISTIO_HTTP_ALPN, selectAlpn, type FirstBytes } from './inbound-sniff.js';
import { authorizeTcp, compileTcpAuthz } from './inbound-authz.js';
import { inboundLabels, type InboundTelemetryContext, type PortService } from './inbound-telemetry.js';
import { localPeerMetadata, PEER_METADATA, peerHeaderBits, peerMetadataOf, peerWorkloadOf, withSourcePeer } from './peer-metadata.js';
import { addLocalReplyHeaders } from '../http/local-reply.js';
import { xfccDetailsOf } from '../http/proxy-headers.js';
import { PEER_EXCHANGE_ALPN, readPeerPreamble } from '../tcp/peer-exchange.js';

/** Istio's inbound source address: the app sees connections from it, and capture never redirects its traffic. */
export const INBOUND_SOURCE_ADDRESS = '127.0.0.6';

/** The same for IPv6 original destinations (Istio's `::6`; it must be an address of `lo` in the pod). */
export const INBOUND_SOURCE_ADDRESS6 = '::6';

/** A connection must show what it is (ClientHello, HTTP, or other bytes) within this long (Envoy's listener filter timeout is 15 s). */
export const DEFAULT_PEEK_TIMEOUT_MS = 10_000;

/** mTLS handshakes must finish within 10 s (as the gateway's TLS listeners). */
const HANDSHAKE_TIMEOUT_MS = 10_000;

/** How long connections of a port removed from the view may finish (as the gateway's listener drain). */
const DRAIN_MS = 30_000;

/** Connect timeout of relays to the app when the view's cluster does not say (Istio's `connectTimeout` default). */
const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** Istio's mTLS cipher suites for TLS 1.2 (TLS 1.3 keeps OpenSSL's). */
const MESH_CIPHERS = 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:AES256-GCM-SHA384:AES128-GCM-SHA256';

type Mode = InboundPort['mtls'];
type Family = 4 | 6;
/** How a port's traffic is handled: declared HTTP, declared TCP, or sniffed. */
type PortKind = 'HTTP' | 'TCP' | 'AUTO';

/** One inbound port as served: its view entry, compiled route table and engines. */
interface ServedPort {
  port: number;
  mode: Mode;
  kind: PortKind;
  /** `inbound|<port>||` cluster's Service, for `destination_service*`; null when none. */
  service: PortService | null;
  connectTimeoutMs: number;
  /** HTTP (declared or sniffed): served through the `inbound_<port>` table. */
  http: boolean;
  /**
   * The compiled `inbound_<port>` table per address family of the pod IPs (HTTP ports; empty for
   * TCP), swapped by `apply`: its cluster's endpoint is the pod IP of that family, so a request is
   * forwarded to the address it was sent to, as Istio's ORIGINAL_DST inbound clusters do.
   */
  listeners: Map<Family, CompiledListener>;
}

/** What a view compiles to; swapped whole by `apply`. */
interface ServedView {
  version: string;
  view: SidecarView;
  ports: Map<number, ServedPort>;
  defaultMode: Mode;
  /** Per address family of the pod IPs. */
  snapshots: Map<Family, CompiledSnapshot>;
  tcpAuthz: CompiledAuthz | null;
  telemetry: InboundTelemetryContext;
}

/** The HTTP engines of one inbound port (kept across applies, like the gateway's listeners). */
class PortEngines {
  readonly sessions = new SessionTracker();
  readonly engines: HttpEngines;
  readonly h1: H1Engine;
  constructor(
    readonly port: number,
    serve: (port: number, d: Downstream) => void,
  ) {
    this.h1 = new H1Engine(
      {
        headersTimeout: SERVER_OPTIONS.headersTimeout,
        keepAliveTimeout: SERVER_OPTIONS.keepAliveTimeout,
        streamIdleTimeout: SERVER_OPTIONS.streamIdleTimeout,
        maxHeaderSize: SERVER_OPTIONS.maxHeaderSize,
        maxHeadersCount: MAX_REQUEST_HEADERS + 1,
      },
      (d) => serve(port, d),
    );
    this.engines = createEngines(this.h1, this.sessions);
    this.engines.h2.on('stream', (stream: ServerHttp2Stream, _headers: unknown, _flags: number, rawHeaders: string[]) => {
      try {
        acceptH2Stream(stream, rawHeaders, (d) => serve(port, d));
      } catch (err) {
        internalFailure(null, err, 'HTTP/2 stream');
        if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
      }
    });
  }

  close(): void {
    this.h1.closeAll();
    this.h1.close();
    this.sessions.destroyAll();
  }

  /** Idle connections close now (HTTP/2: GOAWAY), the rest after `graceMs`. */
  drain(graceMs: number): void {
    this.h1.closeIdle();
    this.sessions.closeAll();
    setTimeout(() => this.close(), graceMs).unref();
  }
}

export interface InboundHandlerOptions {
  /** The workload certificate now (renewals replace it); null while the proxy has none (mTLS connections are then closed). */
  identity: () => MeshIdentityMaterial | null;
  log: Logger;
  /** Metrics, access logs and tracing of the process (observability/observer.ts); null or absent = off. */
  observer?: RequestObserver | null;
  /** Same as `observer` (the name SIDECAR.md uses); `observer` wins when both are given. */
  metrics?: RequestObserver | null;
  /** Source address of connections to the app. Default 127.0.0.6 (Istio). */
  sourceAddress?: string;
  /** Source address of connections to the app at an IPv6 address. Default ::6 (Istio). */
  sourceAddress6?: string;
  /**
   * Where the app is dialled for an original destination; default: the original destination itself
   * (Istio's ORIGINAL_DST inbound clusters). Tests and apps bound to a fixed address use it.
   */
  forwardTo?: (address: string, port: number) => { address: string; port: number };
  /** Uniform random numbers in [0, 1) (load balancing, fault injection). Default Math.random. */
  random?: () => number;
  /** Pool settings of the HTTP clients towards the app. */
  pools?: Partial<EndpointPoolOptions>;
  /**
   * Protocol detection timeout, ms (Istio's `protocolDetectionTimeout`): where plaintext TCP is
   * allowed, a client silent this long is relayed as TCP (a server-first protocol). Default 10 000.
   * Where it is not (STRICT, declared HTTP ports), a client gets at least 10 s to start.
   */
  peekTimeoutMs?: number;
  /** Same as `peekTimeoutMs` (the name of `meshgate sidecar --protocol-detection-timeout`'s option); `peekTimeoutMs` wins. */
  detectionTimeoutMs?: number;
  /** Istio cluster ID for `source_cluster`/`destination_cluster`. Default `unknown` (as the gateway's). */
  clusterId?: string;
}

/** Counters for tests and the admin page. */
export interface InboundStats {
  accepted: number;
  mtls: number;
  plaintext: number;
  /** Plaintext refused under STRICT. */
  refusedPlaintext: number;
  /** TLS closed on a declared HTTP port: without Istio's ALPN under PERMISSIVE, any under DISABLE (no filter chain of Istio's relays it). */
  refusedTls: number;
  /** mTLS handshakes that failed (no or untrusted client certificate, no workload certificate). */
  handshakeFailures: number;
  /** TCP connections refused by AuthorizationPolicy. */
  tcpDenied: number;
  tcpRelayed: number;
  http: number;
}

export class InboundHandler {
  readonly #opts: InboundHandlerOptions;
  readonly #log: Logger;
  readonly #env: RequestEnv;
  readonly #tcpObserver: TcpObserver | null;
  readonly #observer: RequestObserver | null;
  /** Pools of HTTP clients towards the app, from the source address of the pod IP's family. */
  readonly #pools = new Map<Family, EndpointPools>();
  readonly #sourceAddress: string;
  readonly #sourceAddress6: string;
  readonly #peekTimeoutMs: number;
  /** TLS servers that never listen: one for HTTP inside (no half-open), one for TCP relays (half-open). */
  readonly #tlsHttp: tls.Server;
  readonly #tlsTcp: tls.Server;
  /** The material the servers' contexts were built from. */
  #material: MeshIdentityMaterial | null = null;
  readonly #engines = new Map<number, PortEngines>();
  readonly #sockets = new Set<net.Socket>();
  /** Per-connection labels, by the connection's TLS socket or plain socket. */
  readonly #labels = new WeakMap<object, Record<string, string>>();
  /** Per-connection handling decided before a TLS handshake, by the raw socket's 4-tuple. */
  readonly #pendingTls = new Map<string, { port: ServedPort; served: ServedView; inner: 'HTTP' | 'TCP'; sni: string }>();
  #served: ServedView | null = null;
  #closed = false;
  readonly stats: InboundStats = { accepted: 0, mtls: 0, plaintext: 0, refusedPlaintext: 0, refusedTls: 0, handshakeFailures: 0, tcpDenied: 0, tcpRelayed: 0, http: 0 };

  constructor(opts: InboundHandlerOptions) {
    this.#opts = opts;
    this.#log = opts.log;
    this.#sourceAddress = opts.sourceAddress ?? INBOUND_SOURCE_ADDRESS;
    this.#sourceAddress6 = opts.sourceAddress6 ?? INBOUND_SOURCE_ADDRESS6;
    this.#peekTimeoutMs = opts.peekTimeoutMs ?? opts.detectionTimeoutMs ?? DEFAULT_PEEK_TIMEOUT_MS;
    const inner = opts.observer ?? opts.metrics ?? null;
    this.#observer = inner === null ? null : this.#wrapObserver(inner);
    this.#tcpObserver = tcpObserverOf(inner);
    this.#env = { random: opts.random ?? Math.random, observer: this.#observer, peerMetadata: null };
    this.#tlsHttp = this.#createTlsServer(false);
    this.#tlsTcp = this.#createTlsServer(true);
  }

  /** Version of the view being served; null before the first successful apply. */
  get version(): string | null {
    return this.#served?.version ?? null;
  }

  /**
   * Serves `ir.sidecar`'s inbound side from now on (connections already open keep their handling;
   * HTTP requests read the new route tables). Throws, serving the previous view, when the view
   * cannot be served.
   */
  apply(ir: IRSnapshot): void {
    if (this.#closed) throw new Error('inbound handler is closed');
    const view = ir.sidecar;
    if (view === undefined) throw new Error(`snapshot ${ir.version} has no sidecar view`);
    if (view.proxy.podIps.length === 0) throw new Error(`snapshot ${ir.version}: the sidecar view has no pod IP`);
    const clustersByName = new Map(ir.clusters.map((c) => [c.name, c]));
    const tablesByName = new Map(view.inboundHttp.map((l) => [l.name, l]));
    const listeners: Listener[] = [];
    // Only what the inbound side calls: its `inbound|` clusters (rebuilt below) and the clusters of
    // ext-authz providers. Outbound clusters belong to 15001 and are never dialled from here (every
    // pool of this side binds 127.0.0.6, which cannot leave the pod).
    const authzClusters = new Set((ir.security.extAuthzProviders ?? []).map((p) => p.cluster));
    const baseClusters = ir.clusters.filter((c) => authzClusters.has(c.name) && !c.name.startsWith('inbound|'));
    /** The `inbound|<port>||` cluster of each listed port, by target port. */
    const inboundClusters = new Map<number, Cluster>();
    const ports = new Map<number, ServedPort>();
    // The first pod IP of each family: HTTP requests go to the one their connection was sent to.
    const podIps = new Map<Family, string>();
    for (const ip of view.proxy.podIps) {
      const f: Family = net.isIPv6(ip) ? 6 : 4;
      if (!podIps.has(f)) podIps.set(f, ip);
    }
    for (const p of view.inbound) {
      if (ports.has(p.port)) throw new Error(`snapshot ${ir.version}: inbound port ${p.port} is listed twice`);
      const cluster = clustersByName.get(p.cluster);
      if (cluster === undefined) throw new Error(`snapshot ${ir.version}: inbound port ${p.port}: cluster ${p.cluster} is not in the snapshot`);
      const kind: PortKind = p.protocol === 'TCP' || p.protocol === 'TLS' ? 'TCP' : p.protocol === 'UNKNOWN' ? (p.httpRoutes === null ? 'TCP' : 'AUTO') : 'HTTP';
      if (kind === 'HTTP' && p.httpRoutes === null) throw new Error(`snapshot ${ir.version}: inbound port ${p.port} is ${p.protocol} but has no route table`);
      if (p.httpRoutes !== null) {
        const table = tablesByName.get(p.httpRoutes);
        if (table === undefined) throw new Error(`snapshot ${ir.version}: inbound port ${p.port}: route table ${p.httpRoutes} is not in the view`);
        if (table.protocol !== 'HTTP') throw new Error(`snapshot ${ir.version}: inbound route table ${table.name} is ${table.protocol}, not HTTP`);
        // Compiled under a per-port key; `destination.port` of authorization is the target port.
        listeners.push({ ...table, address: 'inbound', port: p.port, externalPort: p.port });
      }
      inboundClusters.set(p.port, cluster);
      const svc = cluster.service;
      ports.set(p.port, {
        port: p.port,
        mode: p.mtls,
        kind,
        service: svc !== undefined && svc.host !== '' ? { host: svc.host, name: svc.name, namespace: svc.namespace } : null,
        connectTimeoutMs: cluster.connectTimeoutMs > 0 ? cluster.connectTimeoutMs : DEFAULT_CONNECT_TIMEOUT_MS,
        http: p.httpRoutes !== null,
        listeners: new Map(),
      });
    }
    const snapshots = new Map<Family, CompiledSnapshot>();
    for (const [family, podIp] of podIps) {
      // ORIGINAL_DST in Istio: the endpoint is the pod's own address (of this family) and the target port.
      const clusters = [...baseClusters];
      for (const [port, c] of inboundClusters) {
        if (clusters.some((x) => x.name === c.name)) continue;
        const target = this.#forwardTarget(podIp, port);
        clusters.push({ ...c, discovery: 'eds', endpoints: [{ address: target.address, port: target.port, ready: true }], tls: null, autoMtls: undefined });
      }
      clusters.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      const inboundIr: IRSnapshot = {
        ...ir,
        listeners,
        tcpListeners: [],
        clusters,
        // Istio's sidecars append their element to what the peer sent (APPEND_FORWARD), unless the
        // proxy's ProxyConfig proxyHeaders.forwardedClientCert says otherwise.
        security: { ...ir.security, forwardClientCertDetails: ir.security.proxyHeaders?.forwardClientCertDetails ?? 'APPEND_FORWARD' },
      };
      let snapshot: CompiledSnapshot;
      try {
        snapshot = compileSnapshot(inboundIr);
      } catch (err) {
        throw new Error(`snapshot ${ir.version}: inbound side does not compile: ${(err as Error).message}`);
      }
      snapshot.listeners.forEach((l, i) => {
        // Istio's inbound element: Subject, URI, DNS, or ProxyConfig setCurrentClientCertDetails.
        l.security.xfccDetails = xfccDetailsOf(ir.security.proxyHeaders);
        // Envoy's sidecar inbound (`use_remote_address: false`): the peer is not appended to x-forwarded-for.
        l.security.appendXff = false;
        l.security.forwardMode = 'sidecar-inbound';
        ports.get(listeners[i].port)?.listeners.set(family, l);
      });
      snapshots.set(family, snapshot);
    }
    const tcpAuthz = compileTcpAuthz(ir.security.authorizationPolicies);
    if (ir.security.jwtRules.length > 0) void loadJose().catch((err: unknown) => this.#log.error('inbound: cannot load jose', { error: (err as Error).message }));
    const workloadsByIp = new Map<string, MeshWorkload>();
    for (const w of view.workloads) workloadsByIp.set(w.ip, w);
    // One pool set per family, dialling from that family's source address (127.0.0.6 or ::6).
    for (const [family, snapshot] of snapshots) {
      let pools = this.#pools.get(family);
      if (pools === undefined) this.#pools.set(family, (pools = new EndpointPools({ ...this.#opts.pools, localAddress: family === 6 ? this.#sourceAddress6 : this.#sourceAddress })));
      pools.bind(snapshot, this.#served?.snapshots.get(family) ?? null);
    }
    for (const [family, pools] of this.#pools) {
      if (snapshots.has(family)) continue;
      this.#pools.delete(family);
      void pools.close(DRAIN_MS);
    }
    this.#served = {
      version: ir.version,
      view,
      ports,
      defaultMode: view.inboundDefault,
      snapshots,
      tcpAuthz,
      telemetry: { proxy: view.proxy, workloadsByIp, clusterId: this.#opts.clusterId ?? 'unknown' },
    };
    // Istio's metadata exchange: this proxy's answer to peers that send theirs (peer-metadata.ts), encoded once per view.
    this.#env.peerMetadata = localPeerMetadata(view.proxy, this.#opts.clusterId ?? 'unknown');
    for (const p of ports.values()) if (p.http && !this.#engines.has(p.port)) this.#engines.set(p.port, new PortEngines(p.port, (port, d) => this.#serve(port, d)));
    // Ports no longer served over HTTP: their connections finish what they are doing, then close.
    for (const [n, e] of this.#engines) {
      if (ports.get(n)?.http === true) continue;
      this.#engines.delete(n);
      e.drain(DRAIN_MS);
    }
    this.#log.debug('inbound: view applied', { version: ir.version, ports: [...ports.keys()] });
  }

  /** A connection accepted on 15006: its local address and port are the original destination. */
  handle(socket: net.Socket): void {
    if (this.#closed) return void socket.destroy();
    const served = this.#served;
    if (served === null) return void socket.destroy();
    this.stats.accepted++;
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    socket.on('error', noop);
    socket.setNoDelay(true);
    // A client's FIN is relayed as a FIN (half-close), whatever the accepting server was told.
    socket.allowHalfOpen = true;
    const dstPort = socket.localPort ?? 0;
    const port = served.ports.get(dstPort) ?? this.#passthroughPort(served, dstPort);
    // Plaintext-only TCP: nothing to look at (server-first protocols work).
    if (port.mode === 'DISABLE' && port.kind === 'TCP') {
      this.stats.plaintext++;
      return this.#relay(served, port, socket, null, '', Buffer.alloc(0));
    }
    // A silent client can only be relayed where plaintext TCP is allowed (by the port's mode and by
    // AuthorizationPolicy); elsewhere it gets longer to start.
    const relaySilent = port.mode !== 'STRICT' && port.kind !== 'HTTP' && this.#plaintextDecision(served, port, socket).allowed;
    const peekMs = relaySilent ? this.#peekTimeoutMs : Math.max(this.#peekTimeoutMs, DEFAULT_PEEK_TIMEOUT_MS);
    this.#peek(socket, peekMs, (head, first, ended) => this.#peeked(served, port, socket, peekMs, head, first, ended));
  }

  #peeked(served: ServedView, port: ServedPort, socket: net.Socket, peekMs: number, head: Buffer, first: FirstBytes | null, ended: boolean): void {
    if (!ended) return this.#dispatch(served, port, socket, head, first, peekMs);
    // Bytes then FIN before anything could be decided: opaque TCP where plaintext is allowed.
    if (port.mode === 'STRICT' || port.kind === 'HTTP') {
      if (port.mode === 'STRICT') this.stats.refusedPlaintext++;
      return void socket.destroy();
    }
    this.stats.plaintext++;
    this.#relay(served, port, socket, null, '', head, true);
  }

  /**
   * A client silent past the detection timeout where plaintext TCP is allowed. Envoy then takes the
   * plaintext TCP chain (`continue_on_listener_filters_timeout`), so server-first protocols (MySQL,
   * SMTP...) work: the app is dialled and its greeting relayed. But a timeout alone does not make the
   * client plaintext: until the app has said something, the client's first bytes are still looked
   * at, and a late ClientHello (mTLS) or HTTP request is handled as if it had come in time (the app
   * connection opened meanwhile is closed unused, before any byte of the client reached it).
   */
  #awaitFirstSpeaker(served: ServedView, port: ServedPort, socket: net.Socket, peekMs: number): void {
    const dstAddress = plainIp(socket.localAddress ?? '');
    const target = this.#forwardTarget(dstAddress, port.port);
    const upstream = net.connect({ host: target.address, port: target.port, localAddress: this.#sourceFor(target.address), allowHalfOpen: true });
    this.#sockets.add(upstream);
    upstream.setNoDelay(true);
    let settled = false;
    upstream.on('error', noop);
    // The app never answered the connect: the relay path reports it (its own connect fails the same way).
    const timer = setTimeout(() => onAppGone(), port.connectTimeoutMs);
    const settle = (then: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('data', onClient);
      socket.removeListener('end', onClientEnd);
      socket.removeListener('close', onClientGone);
      upstream.removeListener('data', onApp);
      upstream.removeListener('error', onAppGone);
      upstream.removeListener('close', onAppGone);
      socket.pause();
      upstream.pause();
      then();
    };
    // The app spoke first: a server-first protocol, relayed over this connection.
    const onApp = (chunk: Buffer): void => {
      settle(() => {
        upstream.unshift(chunk);
        this.stats.plaintext++;
        this.#relay(served, port, socket, null, '', EMPTY, false, upstream);
      });
    };
    // The client spoke first: its bytes decide, as if they had come before the timeout.
    const onClient = (chunk: Buffer): void => {
      settle(() => {
        this.#sockets.delete(upstream);
        upstream.destroy();
        socket.unshift(chunk);
        this.#peek(socket, peekMs, (head, first, ended) => this.#peeked(served, port, socket, peekMs, head, first, ended));
        socket.resume();
      });
    };
    // The client half-closed having said nothing: relayed (the app may still answer).
    const onClientEnd = (): void =>
      settle(() => {
        this.stats.plaintext++;
        this.#relay(served, port, socket, null, '', EMPTY, true, upstream);
      });
    // The client went away having said nothing (reset, or closed both ways): so does the app connection.
    const onClientGone = (): void =>
      settle(() => {
        this.#sockets.delete(upstream);
        upstream.destroy();
      });
    // The app refused or closed before a word: the relay path reports it (connect failure, UF).
    const onAppGone = (): void =>
      settle(() => {
        this.#sockets.delete(upstream);
        upstream.destroy();
        this.stats.plaintext++;
        this.#relay(served, port, socket, null, '', EMPTY);
      });
    // Connected: both may now stay quiet as long as they like (a relayed idle connection, as in Envoy).
    upstream.once('connect', () => clearTimeout(timer));
    upstream.on('data', onApp);
    upstream.once('error', onAppGone);
    upstream.once('close', onAppGone);
    socket.on('data', onClient);
    socket.once('end', onClientEnd);
    socket.once('close', onClientGone);
    socket.resume();
  }

  /**
   * Stops handling: new connections are closed at once; HTTP connections close when idle (HTTP/2:
   * GOAWAY) and every connection still open after `graceMs` (default 0) is closed; then the app pools.
   */
  async close(graceMs = 0): Promise<void> {
    this.#closed = true;
    if (graceMs > 0 && this.#sockets.size > 0) {
      for (const e of this.#engines.values()) {
        e.h1.closeIdle();
        e.sessions.closeAll();
      }
      const deadline = Date.now() + graceMs;
      while (this.#sockets.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, Math.min(50, Math.max(1, deadline - Date.now()))));
        for (const e of this.#engines.values()) e.h1.closeIdle();
      }
    }
    for (const s of this.#sockets) s.destroy();
    for (const e of this.#engines.values()) e.close();
    this.#engines.clear();
    this.#pendingTls.clear();
    await Promise.all([...this.#pools.values()].map((p) => p.close(1000)));
    this.#pools.clear();
  }

  // ---- per connection ------------------------------------------------------------------------

  /** An undeclared port: relayed as TCP to the original destination (Istio's InboundPassthroughCluster), mTLS as `inboundDefault`. */
  #passthroughPort(served: ServedView, port: number): ServedPort {
    return { port, mode: served.defaultMode, kind: 'TCP', service: null, connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS, http: false, listeners: new Map() };
  }

  /** The source address for a connection to `address`: 127.0.0.6, or ::6 for IPv6. */
  #sourceFor(address: string): string {
    return net.isIPv6(address) ? this.#sourceAddress6 : this.#sourceAddress;
  }

  #forwardTarget(address: string, port: number): { address: string; port: number } {
    return this.#opts.forwardTo?.(address, port) ?? { address, port };
  }

  /**
   * Reads until the first bytes say what the connection is; `first` null = nothing within the peek
   * timeout. A client that half-closes after a few undecided bytes is opaque (`ended`: its FIN was read).
   */
  #peek(socket: net.Socket, timeoutMs: number, done: (head: Buffer, first: FirstBytes | null, ended: boolean) => void): void {
    let buffered: Buffer = Buffer.alloc(0);
    let finished = false;
    const finish = (first: FirstBytes | null, ended = false): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.removeListener('data', onData);
      socket.removeListener('end', onEnd);
      socket.pause();
      done(buffered, first, ended);
    };
    const onData = (chunk: Buffer): void => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const first = classify(buffered);
      if (first.kind !== 'need-more') finish(first);
    };
    const onEnd = (): void => {
      if (buffered.length > 0) return finish({ kind: 'opaque' }, true);
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
    };
    const timer = setTimeout(() => finish(buffered.length === 0 ? null : { kind: 'opaque' }), timeoutMs);
    socket.on('data', onData);
    socket.on('end', onEnd);
  }

  #dispatch(served: ServedView, port: ServedPort, socket: net.Socket, head: Buffer, first: FirstBytes | null, peekMs: number): void {
    if (socket.destroyed) return;
    if (first !== null && first.kind === 'tls') {
      const istio = first.alpn.some((p) => ISTIO_ALPN.has(p));
      // A declared HTTP port has HTTP filter chains only (filterchain_options.go
      // inboundPermissiveHTTPFilterChainMatchWithMxcOptions, inboundPlainTextHTTPFilterChainMatchOptions):
      // under PERMISSIVE, mTLS with Istio's ALPN and plaintext HTTP, so other TLS matches no chain and
      // is closed; under DISABLE, plaintext HTTP only with the TLS inspector off for the port
      // (listener_inbound.go populateListenerFilters), so Envoy's HTTP codec reads the ClientHello,
      // answers 400 and closes. Neither relays it to the app; here both are closed.
      if (port.kind === 'HTTP' && (port.mode === 'DISABLE' || (port.mode === 'PERMISSIVE' && !istio))) {
        this.stats.refusedTls++;
        return void socket.destroy();
      }
      if (port.mode === 'DISABLE' || (port.mode === 'PERMISSIVE' && !istio)) {
        // Not ours to terminate: the app's own TLS, or mTLS sent to a DISABLE port (Envoy relays it as bytes).
        this.stats.plaintext++;
        return this.#relay(served, port, socket, null, first.sni, head);
      }
      const inner: 'HTTP' | 'TCP' = port.kind === 'HTTP' || (port.kind === 'AUTO' && first.alpn.some((p) => ISTIO_HTTP_ALPN.has(p))) ? 'HTTP' : 'TCP';
      return this.#terminate(served, port, socket, head, inner, first.sni);
    }
    if (port.mode === 'STRICT') {
      // STRICT: plaintext is refused with no answer at all.
      this.stats.refusedPlaintext++;
      return void socket.destroy();
    }
    if (first === null) {
      // Nothing said within the peek timeout: maybe a server-first protocol on a TCP port, else closed.
      if (port.kind === 'HTTP') return void socket.destroy();
      // A plaintext connection the policy denies is closed as a denial, the app never dialled.
      const decision = this.#plaintextDecision(served, port, socket);
      if (!decision.allowed) return this.#deny(served, port, socket, '', null, decision.policy);
      return this.#awaitFirstSpeaker(served, port, socket, peekMs);
    }
    this.stats.plaintext++;
    const http = port.kind === 'HTTP' || (port.kind === 'AUTO' && (first.kind === 'h2' || first.kind === 'http1'));
    if (!http) return this.#relay(served, port, socket, null, '', head);
    this.stats.http++;
    const engines = this.#engines.get(port.port);
    if (engines === undefined) return void socket.destroy();
    socket.unshift(head);
    sniffPlaintext(socket, engines.engines);
    socket.resume();
  }

  #terminate(served: ServedView, port: ServedPort, socket: net.Socket, head: Buffer, inner: 'HTTP' | 'TCP', sni: string): void {
    const material = this.#opts.identity();
    if (material === null) {
      this.stats.handshakeFailures++;
      this.#log.warn('inbound: mTLS connection closed: the proxy has no workload certificate yet', { port: port.port });
      return void socket.destroy();
    }
    if (material !== this.#material) {
      const ctx = { cert: material.certChainPem, key: material.keyPem, ca: material.rootsPem, minVersion: 'TLSv1.2' as const, ciphers: MESH_CIPHERS };
      try {
        this.#tlsHttp.setSecureContext(ctx);
        this.#tlsTcp.setSecureContext(ctx);
        this.#material = material;
      } catch (err) {
        this.stats.handshakeFailures++;
        this.#log.error('inbound: the workload certificate does not load', { error: (err as Error).message });
        return void socket.destroy();
      }
    }
    this.stats.mtls++;
    const key = tupleKey(socket);
    this.#pendingTls.set(key, { port, served, inner, sni });
    socket.once('close', () => this.#pendingTls.delete(key));
    socket.unshift(head);
    if (inner === 'HTTP') socket.allowHalfOpen = false;
    (inner === 'HTTP' ? this.#tlsHttp : this.#tlsTcp).emit('connection', socket);
  }

  #createTlsServer(halfOpen: boolean): tls.Server {
    const server = tls.createServer({
      requestCert: true,
      rejectUnauthorized: true,
      handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
      allowHalfOpen: halfOpen,
      noDelay: true,
      minVersion: 'TLSv1.2',
      // Istio's TCP chains answer `istio-peer-exchange` first (the metadata exchange preamble follows); HTTP chains never.
      ALPNCallback: ({ protocols }) => (halfOpen && protocols.includes(PEER_EXCHANGE_ALPN) ? PEER_EXCHANGE_ALPN : selectAlpn(protocols)),
    });
    server.on('secureConnection', (tlsSocket: TLSSocket) => this.#secured(tlsSocket));
    server.on('tlsClientError', (err: Error, tlsSocket: TLSSocket) => {
      this.stats.handshakeFailures++;
      this.#log.debug('inbound: mTLS handshake failed', { error: err.message, peer: tlsSocket.remoteAddress });
      tlsSocket.destroy();
    });
    return server;
  }

  #secured(tlsSocket: TLSSocket): void {
    const key = tupleKey(tlsSocket);
    const pending = this.#pendingTls.get(key);
    this.#pendingTls.delete(key);
    tlsSocket.on('error', noop);
    if (pending === undefined || tlsSocket.authorized !== true) return void tlsSocket.destroy();
    const { port, served, inner, sni } = pending;
    if (inner === 'TCP') return this.#relay(served, port, tlsSocket, tlsSocket, sni, Buffer.alloc(0));
    const engines = this.#engines.get(port.port);
    if (engines === undefined) return void tlsSocket.destroy();
    this.stats.http++;
    const alpn = tlsSocket.alpnProtocol;
    if (alpn === 'h2' || alpn === 'http/1.1' || alpn === 'http/1.0') return dispatchTls(tlsSocket, engines.engines);
    // A peer that offered only Istio's values got one of them back (the first it offered).
    if (alpn === 'istio-h2') return void engines.engines.h2.emit('connection', tlsSocket);
    if (alpn === 'istio-http/1.1' || alpn === 'istio-http/1.0') return engines.engines.h1.accept(tlsSocket, null);
    // ALPN `istio` (or none) on an HTTP port: the bytes inside say HTTP/1.1 or h2c.
    sniffPlaintext(tlsSocket, engines.engines);
  }

  /** Every HTTP request on an inbound port starts here. */
  #serve(portNumber: number, d: Downstream): void {
    const served = this.#served;
    const listeners = served?.ports.get(portNumber)?.listeners;
    // A local address is an IP (the socket's): a colon after plainIp means IPv6 (no regex per request).
    const family: Family = plainIp(d.localAddress).includes(':') ? 6 : 4;
    const listener = listeners?.get(family) ?? listeners?.get(family === 6 ? 4 : 6) ?? null;
    if (listener === null) return void d.reset(new Error(`inbound port ${portNumber} is no longer served`));
    // A peer that sent metadata-exchange headers over mTLS gets this proxy's on local replies too
    // (403, 503...), as Envoy's filter encodes every answer; forwarded answers get them from the
    // Exchange. Never in clear text.
    const mx = this.#env.peerMetadata;
    if (mx != null && d.tls !== null) {
      const bits = peerHeaderBits(d.rawHeaders);
      if (bits !== 0) addLocalReplyHeaders(d, mx.reply[bits].slice());
    }
    try {
      handleRequest(this.#env, listener, d);
    } catch (err) {
      internalFailure(d, err, 'request path');
    }
  }

  /** The connection-fixed telemetry labels of a request (cached per connection). */
  #labelsFor(d: Downstream): Record<string, string> | null {
    const served = this.#served;
    if (served === null) return null;
    const conn: object | null = d.tls;
    if (conn !== null) {
      const cached = this.#labels.get(conn);
      if (cached !== undefined) return cached;
    }
    const port = served.ports.get(d.localPort) ?? this.#passthroughPort(served, d.localPort);
    const labels = inboundLabels(served.telemetry, port.service, plainIp(d.remoteAddress), d.tls === null ? null : peerSpiffe(d.tls));
    if (conn !== null) this.#labels.set(conn, labels);
    return labels;
  }

  #wrapObserver(inner: RequestObserver): RequestObserver {
    const wrapped: RequestObserver = {
      begin: (listener, d) => {
        const rec: RequestRecord | null = inner.begin(listener, d);
        if (rec !== null) {
          let labels = this.#labelsFor(d);
          // A caller the view does not know: an Istio client sidecar says who it is (metadata exchange).
          if (labels !== null && labels.source_workload === 'unknown') {
            const mx = d.header(PEER_METADATA);
            const peer = mx === null ? null : peerMetadataOf(mx);
            if (peer !== null) labels = withSourcePeer(labels, peer);
          }
          rec.meshLabels = labels;
        }
        return rec;
      },
      upstreamTraceHeaders: (rec) => inner.upstreamTraceHeaders(rec),
    };
    return wrapped;
  }

  /**
   * Whether the TCP AuthorizationPolicy admits `socket` as a plaintext connection (no principal, no
   * SNI): every attribute it has is known at accept, so this is the answer the relay would give.
   */
  #plaintextDecision(served: ServedView, port: ServedPort, socket: net.Socket): { allowed: boolean; policy: string | null } {
    if (served.tcpAuthz === null) return ALLOWED;
    return authorizeTcp(served.tcpAuthz, { peerIp: plainIp(socket.remoteAddress ?? ''), localIp: plainIp(socket.localAddress ?? ''), port: port.port, sni: '', peerPrincipal: null });
  }

  /**
   * Closes a TCP connection AuthorizationPolicy denied (`policy`: the deciding policy), before any
   * connection to the app. Envoy's network RBAC filter closes it with these termination details; it
   * is still counted (istio_tcp_connections_opened/closed_total) and logged.
   */
  #deny(served: ServedView, port: ServedPort, client: net.Socket, sni: string, spiffe: string | null, policy: string | null): void {
    this.stats.tcpDenied++;
    const dstAddress = plainIp(client.localAddress ?? '');
    const peerIp = plainIp(client.remoteAddress ?? '');
    const details = `rbac_access_denied_matched_policy[${policy ?? 'none'}]`;
    this.#log.debug('inbound: TCP connection denied by AuthorizationPolicy', { port: port.port, peer: peerIp, policy });
    const observer = this.#tcpObserver;
    if (observer !== null) {
      const obs = new TcpRecord('virtualInbound', socketAddress(client.localAddress, client.localPort), socketAddress(client.remoteAddress, client.remotePort));
      obs.sni = sni;
      obs.route = inboundCluster(port, dstAddress);
      obs.cluster = obs.route;
      obs.terminationDetails = details;
      obs.meshLabels = inboundLabels(served.telemetry, port.service, peerIp, spiffe);
      obs.opened = true;
      observer.observeTcp(obs, 'open');
      client.once('close', () => {
        obs.durationMs = performance.now() - obs.start;
        obs.bytesReceived = client.bytesRead;
        obs.bytesSent = client.bytesWritten;
        observer.observeTcp(obs, 'close');
      });
    }
    client.destroy();
  }

  /**
   * Relays `client` (plain or the mTLS socket) to the original destination from the source address,
   * after the connection-level AuthorizationPolicy. `head`: bytes already read from a plain socket.
   */
  #relay(served: ServedView, port: ServedPort, client: net.Socket, mtls: TLSSocket | null, sni: string, head: Buffer, clientEnded = false, connected: net.Socket | null = null): void {
    const dstAddress = plainIp(client.localAddress ?? '');
    const peerIp = plainIp(client.remoteAddress ?? '');
    const spiffe = mtls === null ? null : peerSpiffe(mtls);
    if (served.tcpAuthz !== null) {
      const decision = authorizeTcp(served.tcpAuthz, {
        peerIp,
        localIp: dstAddress,
        port: port.port,
        sni,
        peerPrincipal: spiffe === null ? null : spiffe.slice('spiffe://'.length),
      });
      if (!decision.allowed) {
        connected?.destroy();
        return this.#deny(served, port, client, sni, spiffe, decision.policy);
      }
    }
    this.stats.tcpRelayed++;
    const target = this.#forwardTarget(dstAddress, port.port);
    const observer = this.#tcpObserver;
    const cluster = inboundCluster(port, dstAddress);
    // Istio's TCP metadata exchange, when the peer's sidecar chose it by ALPN (runtime/tcp/peer-exchange.ts).
    const exchange = mtls !== null && mtls.alpnProtocol === PEER_EXCHANGE_ALPN ? this.#env.peerMetadata ?? null : null;
    const obs = observer === null ? null : new TcpRecord('virtualInbound', socketAddress(client.localAddress, client.localPort), socketAddress(client.remoteAddress, client.remotePort));
    const reportOpen = (): void => {
      if (obs === null || obs.opened) return;
      obs.opened = true;
      observer!.observeTcp(obs, 'open');
    };
    if (obs !== null) {
      obs.sni = sni;
      obs.route = cluster;
      obs.cluster = cluster;
      obs.upstreamHost = socketAddress(target.address, target.port);
      obs.meshLabels = inboundLabels(served.telemetry, port.service, peerIp, spiffe);
      // With the exchange, the connection is reported open once the peer said who it is (istio_stats).
      if (exchange === null) reportOpen();
      client.once('close', () => {
        obs.durationMs = performance.now() - obs.start;
        obs.bytesReceived = client.bytesRead;
        obs.bytesSent = client.bytesWritten;
        reportOpen();
        observer!.observeTcp(obs, 'close');
      });
    }
    client.pause();
    /** The client's bytes may go to the app: no exchange, or the peer's preamble read. */
    let clientReady = exchange === null;
    let appConnected = false;
    const startClient = (): void => {
      if (!clientReady || !appConnected) return;
      if (clientEnded) upstream.end();
      else client.pipe(upstream);
      client.resume();
    };
    if (exchange !== null) {
      // This side's preamble goes first; the peer's is read off its first bytes.
      client.write(exchange.preamble);
      readPeerPreamble(client, (r) => {
        if (r.kind === 'error') {
          obs?.flag('DPE', 'metadata_exchange_error');
          reportOpen();
          upstream.destroy();
          return void client.destroy();
        }
        if (r.kind === 'peer' && r.peer.metadata !== null && obs !== null && obs.meshLabels !== null) obs.meshLabels = withSourcePeer(obs.meshLabels, peerWorkloadOf(r.peer.metadata));
        reportOpen();
        if (r.kind === 'ended') {
          // The peer half-closed before a whole preamble: what it sent goes on, then its FIN.
          if (r.rest.length > 0) head = head.length === 0 ? r.rest : Buffer.concat([head, r.rest]);
          clientEnded = true;
          if (appConnected && r.rest.length > 0) upstream.write(r.rest);
        }
        clientReady = true;
        startClient();
      });
    }
    // `connected`: the app was already dialled (a server-first protocol's greeting is waiting in it).
    const upstream = connected ?? net.connect({ host: target.address, port: target.port, localAddress: this.#sourceFor(target.address), allowHalfOpen: true });
    this.#sockets.add(upstream);
    upstream.setNoDelay(true);
    let isConnected = false;
    const connectTimer = setTimeout(() => {
      obs?.flag('UF');
      upstream.destroy();
    }, port.connectTimeoutMs);
    const onConnect = (): void => {
      clearTimeout(connectTimer);
      isConnected = true;
      if (obs !== null) obs.upstreamLocal = socketAddress(upstream.localAddress, upstream.localPort);
      if (head.length > 0) upstream.write(head);
      // Both ways with back-pressure; a FIN is relayed as a FIN (half-close), never as a close.
      upstream.pipe(client);
      upstream.resume();
      appConnected = true;
      startClient();
    };
    if (connected !== null) onConnect();
    else upstream.once('connect', onConnect);
    upstream.on('error', (err: NodeJS.ErrnoException) => {
      obs?.flag(isConnected ? 'UC' : 'UF', isConnected ? null : (err.code ?? null));
      clearTimeout(connectTimer);
      client.destroy();
      upstream.destroy();
    });
    client.on('error', () => {
      obs?.flag('DC');
      clearTimeout(connectTimer);
      upstream.destroy();
      client.destroy();
    });
    upstream.on('close', () => {
      this.#sockets.delete(upstream);
      clearTimeout(connectTimer);
      if (!isConnected) obs?.flag('UF');
      if (!client.destroyed && client.writableFinished) client.destroy();
      else if (!client.writableEnded) client.destroy();
    });
    client.on('close', () => {
      if (!upstream.destroyed && !upstream.writableEnded) upstream.destroy();
    });
  }
}

/** The cluster a TCP connection of `port` goes to: `inbound|<port>||`, or InboundPassthroughCluster of the address's family. */
function inboundCluster(port: ServedPort, dstAddress: string): string {
  if (port.service !== null) return `inbound|${port.port}||`;
  return dstAddress.includes(':') ? 'InboundPassthroughClusterIpv6' : 'InboundPassthroughClusterIpv4';
}

/** `remote|port|local|port` of a connection (a TLS socket reports its transport's). */
function tupleKey(s: net.Socket): string {
  return `${s.remoteAddress}|${s.remotePort}|${s.localAddress}|${s.localPort}`;
}

/** The verified peer certificate's first SPIFFE URI SAN (`spiffe://…`), or null. */
function peerSpiffe(s: TLSSocket): string | null {
  if (s.authorized !== true || typeof s.getPeerCertificate !== 'function') return null;
  const san = s.getPeerCertificate().subjectaltname ?? '';
  for (const part of san.split(', ')) if (part.startsWith('URI:spiffe://')) return part.slice(4);
  return null;
}

const EMPTY = Buffer.alloc(0);

const ALLOWED: { allowed: boolean; policy: string | null } = { allowed: true, policy: null };

function noop(): void {}
