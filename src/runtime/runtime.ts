/**
 * Runtime: the data plane of one process. `apply` compiles an IRSnapshot and swaps it in
 * atomically; listeners, upstream pools and TLS contexts are kept by key across swaps.
 *
 * Order inside apply (each step depends on the one before):
 *   1. compile (pure; a snapshot that fails to compile is refused and the old one keeps serving),
 *   2. attach endpoint pools and TLS contexts to the new compiled snapshot (it must be complete
 *      before any request can see it),
 *   3. swap: every surviving listener points at the new snapshot in one synchronous step,
 *   4. open new listeners, drain removed ones.
 */

import type { IRSnapshot, TcpListener } from '../ir/types.js';
import { compileSnapshot } from './compile/compile-snapshot.js';
import type { CompiledSnapshot } from './compile/types.js';
import type { RequestEnv } from './http/request-handler.js';
import type { RequestObserver } from '../observability/observer.js';
import { ListenerManager, type ListenerStatus } from './listeners/listener-manager.js';
import { SocketTable } from './listeners/socket-table.js';
import { TlsContextCache } from './listeners/tls-contexts.js';
import { EndpointPools, type EndpointPoolOptions } from './state/endpoint-pools.js';
import { TcpListenerManager, type TcpListenerStatus } from './tcp/tcp-listeners.js';
import { tcpObserverOf } from '../observability/tcp-record.js';
import { loadJose } from './filters/jwt.js';
import { http1EngineFromEnv, type Http1EngineKind } from './listeners/http-front.js';
import { gatewayPeerMetadata, type LocalPeerMetadata } from './sidecar/peer-metadata.js';
import type { WorkloadIdentity } from '../observability/metrics.js';

export type { ListenerStatus } from './listeners/listener-manager.js';

export interface ApplyResult {
  /** Version of the snapshot this result is about. */
  version: string;
  /** False when the snapshot was refused (it did not compile); the previous one keeps serving. */
  applied: boolean;
  /** One line per problem: compile error, bind failure, certificate that did not load. */
  errors: string[];
  /** Every listener of the snapshot and whether it is bound. Empty when not applied. */
  listeners: ListenerStatus[];
  /** Every TCP / TLS passthrough listener and its bound port (absent when not applied). */
  tcpListeners?: TcpListenerStatus[];
}

export interface RuntimeOptions {
  /** Uniform random numbers in [0, 1) for weighted destinations and load balancing. Default Math.random. */
  random?: () => number;
  /** Upstream pool settings. */
  pools?: Partial<EndpointPoolOptions>;
  /** How long listeners removed by a swap may finish their in-flight requests, in ms. Default 30 000. */
  listenerDrainMs?: number;
  /** Metrics, access log and tracing (src/observability); null or absent = off. */
  observer?: RequestObserver | null;
  /** HTTP/1.1 server engine (`--http1-engine`); default from MESHGATE_HTTP1_ENGINE, else DEFAULT_HTTP1_ENGINE. */
  http1Engine?: Http1EngineKind;
  /** The gateway's Istio metadata-exchange headers as a mesh client (`gatewayPeerMetadataOf`); null or absent = none. */
  peerMetadata?: LocalPeerMetadata | null;
}

/** The gateway's metadata-exchange headers for its identity, encoded once; null when it is no mesh client. */
export function gatewayPeerMetadataOf(identity: WorkloadIdentity | undefined): LocalPeerMetadata | null {
  const x = identity?.exchange;
  if (identity === undefined || x === undefined) return null;
  return gatewayPeerMetadata({ podName: x.podName, podIp: x.podIp, labels: x.labels, namespace: identity.namespace, workload: identity.workload, clusterId: identity.cluster });
}

export class Runtime {
  readonly #env: RequestEnv;
  readonly #pools: EndpointPools;
  readonly #tls = new TlsContextCache();
  readonly #listeners: ListenerManager;
  readonly #tcp: TcpListenerManager;
  /** Listening sockets by address:port, shared by both listener managers (a port can move between them and keep its socket). */
  readonly #sockets = new SocketTable();
  readonly #drainMs: number;
  #current: CompiledSnapshot | null = null;
  /** Applies run one at a time, in call order. */
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(options: RuntimeOptions = {}) {
    this.#env = { random: options.random ?? Math.random, observer: options.observer ?? null, peerMetadata: options.peerMetadata ?? null };
    this.#pools = new EndpointPools(options.pools);
    this.#tcp = new TcpListenerManager(this.#env.random, tcpObserverOf(this.#env.observer), this.#sockets);
    // The gateway as a mesh client offers Istio's TCP metadata exchange to Istio mTLS endpoints, as
    // Istio's gateway clusters do (ALPN istio-peer-exchange and the `istio.metadata_exchange` cluster filter).
    this.#tcp.peerExchange = this.#env.peerMetadata ?? null;
    // ...and, like them, wraps TLS passthrough to meshed endpoints in Istio mTLS (the cluster's TLS:
    // auto mTLS per endpoint, DestinationRule ISTIO_MUTUAL/DISABLE) around the client's own TLS
    // (istio/istio#29107). A gateway outside the mesh forwards the client's TLS unwrapped.
    this.#tcp.wrapClientTls = this.#env.peerMetadata !== null;
    const tcp = this.#tcp;
    this.#listeners = new ListenerManager(this.#env, this.#tls, options.http1Engine ?? http1EngineFromEnv(), (key, socket, sni, alpn, head) => tcp.relayPassthrough(key, socket, sni, alpn, head), this.#sockets);
    this.#drainMs = options.listenerDrainMs ?? 30_000;
  }

  /** The compiled snapshot being served; null before the first successful apply. */
  get current(): CompiledSnapshot | null {
    return this.#current;
  }

  /** Open downstream connections per listener (for metrics). */
  connectionCounts(): Promise<{ listener: string; active: number }[]> {
    return this.#listeners.connectionCounts();
  }

  /** Compiles `ir` and serves it. Never rejects for bad input: problems are in the result. */
  apply(ir: IRSnapshot): Promise<ApplyResult> {
    const run = this.#queue.then(() => this.#apply(ir));
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #apply(ir: IRSnapshot): Promise<ApplyResult> {
    if (this.#closed) return { version: ir.version, applied: false, errors: ['runtime is closed'], listeners: [] };
    let compiled: CompiledSnapshot;
    try {
      compiled = compileSnapshot(ir);
    } catch (err) {
      return { version: ir.version, applied: false, errors: [`snapshot ${ir.version} does not compile: ${(err as Error).message}`], listeners: [] };
    }
    // `jose` is loaded only by processes that serve JWT rules, before the first request needs it.
    if (ir.security.jwtRules.length > 0) {
      try {
        await loadJose();
      } catch (err) {
        return { version: ir.version, applied: false, errors: [`snapshot ${ir.version}: cannot load jose: ${(err as Error).message}`], listeners: [] };
      }
    }
    this.#pools.bind(compiled, this.#current);
    const errors = this.#tls.prepare(compiled);
    this.#current = compiled;
    // Access logging of the new snapshot (files opened or closed, formats compiled); the first
    // snapshot also waits for the tracer, loaded lazily, so no request is served untraced.
    // Observability never stops a snapshot from being served: a failure here is reported, not thrown.
    try {
      await this.#env.observer?.applySnapshot?.(ir);
    } catch (err) {
      errors.push(`observability: ${(err as Error).message}`);
    }
    // TLS passthrough on HTTPS ports (ingress-nginx ssl-passthrough): the routes are in place before the listeners switch.
    this.#tcp.syncEmbedded(passthroughListeners(ir), compiled);
    // HTTP(S) listeners first, then TCP listeners: a port moving from one to the other keeps its
    // socket (the first gives it up for the second to take, or takes it from it); the sweep closes
    // a socket given up and not taken.
    const tcpKeys = new Set(ir.tcpListeners.map((l) => SocketTable.key('tcp', l.address, l.port)));
    const listeners = await this.#listeners.sync(compiled, this.#drainMs, tcpKeys);
    for (const l of listeners) if (l.error !== null) errors.push(`listener ${l.name} (${l.key}): ${l.error}`);
    const tcpListeners = await this.#tcp.sync(ir.tcpListeners, compiled, this.#drainMs);
    this.#sockets.sweep();
    for (const l of tcpListeners) if (l.error !== null) errors.push(`tcp listener ${l.name} (${l.key}): ${l.error}`);
    return { version: ir.version, applied: true, errors, listeners, tcpListeners };
  }

  /**
   * Stops accepting connections, lets in-flight requests finish for at most `graceMs`, then closes
   * every connection and upstream pool.
   */
  async close(graceMs: number): Promise<void> {
    await this.#queue;
    this.#closed = true;
    await Promise.all([this.#listeners.close(graceMs), this.#tcp.close(graceMs)]);
    await this.#pools.close(Math.max(0, Math.min(graceMs, 1000)));
  }
}

/** The passthrough routes of each HTTPS listener, as the TLS listener the TCP manager relays them with. */
function passthroughListeners(ir: IRSnapshot): TcpListener[] {
  const out: TcpListener[] = [];
  for (const l of ir.listeners) {
    if (l.protocol !== 'HTTPS' || l.passthrough === undefined || l.passthrough.length === 0) continue;
    out.push({ name: l.name, address: l.address, port: l.port, externalPort: l.externalPort, protocol: 'TLS', routes: l.passthrough, tlsChains: [] });
  }
  return out;
}
