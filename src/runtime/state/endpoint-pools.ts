/**
 * Long-lived per-endpoint state: one upstream client per `address:port` (meshgate's HTTP/1.1 pool,
 * `upstream/h1-client.ts`, or node:http2 sessions, `upstream/h2-client.ts`), reused across snapshot
 * swaps so a reload drops no connection. Clients whose endpoint left every cluster are closed after
 * a grace period (in-flight requests finish first: `close` waits for them).
 *
 * ext-authz checks use undici's Promise API off the hot path: each endpoint builds an undici Pool
 * for them on first use (`fetcher()`), with the same connect, TLS and protocol settings.
 *
 * Also owns the per-cluster state (circuit breakers, outlier detection: `cluster-state.ts`), bound
 * in the same step so a snapshot is complete before any request sees it.
 */

import type { Pool } from 'undici';
import type { CompiledCluster, CompiledSnapshot, EndpointHandle } from '../compile/types.js';
import type { UpstreamClient, UpstreamFetcher } from '../upstream/client.js';
import { H1Client, type H1ClientOptions } from '../upstream/h1-client.js';
import { H2Client } from '../upstream/h2-client.js';
import { ClusterStates } from './cluster-state.js';
import { upstreamProtocolOptions } from '../upstream/h2-pool.js';
import type { UpstreamProtocol, UpstreamTls } from '../../ir/types.js';
import { tlsIdentity, upstreamTlsConnect, upstreamTlsOptions } from '../upstream/upstream-tls.js';

export interface EndpointPoolOptions {
  /** Max connections per endpoint (requests queue beyond it). Default 512. */
  connections: number;
  /**
   * Idle keep-alive of upstream connections when the upstream sends no `Keep-Alive: timeout` hint,
   * in ms. Shorter than typical application server timeouts (Node 5 s, nginx 75 s) so the gateway
   * closes idle sockets before the upstream does and never races a request against its close.
   * Default 4000.
   */
  keepAliveTimeoutMs: number;
  /**
   * The same for Istio mTLS (ISTIO_MUTUAL) connections, whose peer is a sidecar: meshgate's inbound
   * side keeps an idle connection 60 s (`SERVER_OPTIONS.keepAliveTimeout`), Envoy's 1 h, and neither
   * sends a hint. Closing them after 4 s would pay a new mTLS handshake (ms of CPU at both ends) for
   * every connection that a burst opened and that the steady load then leaves idle. Default 55 000.
   */
  meshKeepAliveTimeoutMs: number;
  /** Time an unused pool lingers before it is closed, in ms. Default 10 000. */
  retireGraceMs: number;
  /** Source address of every upstream connection (a sidecar's inbound pools dial the app from 127.0.0.6); absent = the kernel's choice. */
  localAddress?: string;
}

export const DEFAULT_POOL_OPTIONS: EndpointPoolOptions = { connections: 512, keepAliveTimeoutMs: 4000, meshKeepAliveTimeoutMs: 55_000, retireGraceMs: 10_000 };

/**
 * Pool settings that come from the cluster (connect timeout, connection pool, protocol, TLS). Pools
 * are keyed by endpoint and these (`poolKey`): clusters with equal settings share an endpoint's
 * connections, and a cluster whose settings differ gets its own, as Envoy keeps a connection pool
 * per cluster (a DestinationRule's maxRequestsPerConnection, idleTimeout, connectTimeout or
 * h2UpgradePolicy holds for its cluster even when another cluster reaches the same pods).
 */
export interface PoolSettings {
  connectTimeoutMs: number;
  /** Requests per connection before it is closed; 0 = unlimited. */
  maxRequestsPerConnection: number;
  /** Idle keep-alive in ms; 0 = the pool default. */
  idleTimeoutMs: number;
  /** HTTP/1.1 or multiplexed HTTP/2 (`upstream/h2-pool.ts`). */
  protocol: UpstreamProtocol;
  /** Upstream TLS (`upstream/upstream-tls.ts`); null = plaintext. */
  tls: UpstreamTls | null;
  /** `tlsIdentity(tls)`: '' for plaintext. */
  tlsId: string;
}

/** An endpoint's pool key: its `address:port` and every pool setting (`sameSettings` in a string). */
function poolKey(endpointKey: string, s: PoolSettings): string {
  const key = `${endpointKey}#${s.protocol},${s.connectTimeoutMs},${s.maxRequestsPerConnection},${s.idleTimeoutMs}`;
  return s.tlsId === '' ? key : `${key}#tls=${s.tlsId}`;
}

function poolSettings(cluster: CompiledCluster): PoolSettings {
  const cp = cluster.connectionPool;
  return { connectTimeoutMs: cluster.connectTimeoutMs, maxRequestsPerConnection: cp?.maxRequestsPerConnection ?? 0, idleTimeoutMs: cp?.idleTimeoutMs ?? 0, protocol: cluster.protocol, tls: cluster.tls, tlsId: tlsIdentity(cluster.tls) };
}

function sameSettings(a: PoolSettings, b: PoolSettings): boolean {
  return a.connectTimeoutMs === b.connectTimeoutMs && a.maxRequestsPerConnection === b.maxRequestsPerConnection && a.idleTimeoutMs === b.idleTimeoutMs && a.protocol === b.protocol && a.tlsId === b.tlsId;
}

class EndpointState implements EndpointHandle {
  active = 0;
  retireTimer: NodeJS.Timeout | null = null;
  /** The undici pool of ext-authz checks, built on first use (undici itself is loaded then: lean processes). */
  fetchPool: Pool | null = null;
  #fetchLoading: Promise<UpstreamFetcher> | null = null;
  readonly localAddress?: string;
  constructor(
    readonly key: string,
    readonly host: string,
    readonly dispatcher: UpstreamClient,
    readonly settings: PoolSettings,
    readonly origin: string,
    readonly options: EndpointPoolOptions,
  ) {
    if (options.localAddress !== undefined) this.localAddress = options.localAddress;
  }

  fetcher(): Promise<UpstreamFetcher> {
    if (this.fetchPool !== null) return Promise.resolve(this.fetchPool);
    return (this.#fetchLoading ??= import('../upstream/fetch-pool.js').then((m) => (this.fetchPool ??= m.buildFetchPool(this.origin, this.settings, this.options))));
  }
}

export class EndpointPools {
  readonly #options: EndpointPoolOptions;
  readonly #byKey = new Map<string, EndpointState>();
  /** Clients replaced or retired, still draining, with the promise of their close. */
  readonly #closing = new Map<UpstreamClient | Pool, Promise<void>>();
  /** Per-cluster state (circuit breakers, outlier detection), by cluster name. */
  readonly clusters = new ClusterStates();

  constructor(options: Partial<EndpointPoolOptions> = {}) {
    this.#options = { ...DEFAULT_POOL_OPTIONS, ...options };
  }

  /** Number of live pools (for tests and diagnostics). */
  get size(): number {
    return this.#byKey.size;
  }

  /**
   * Attaches a pool to every endpoint of the snapshot, creating the missing ones, and schedules
   * the pools no cluster uses any more for closing. Also carries round-robin cursors over from
   * `previous` so a reload does not send the next requests to the first endpoint again.
   */
  bind(snapshot: CompiledSnapshot, previous: CompiledSnapshot | null): void {
    const used = new Set<string>();
    for (const cluster of snapshot.clusters.values()) {
      const prev = previous?.clusters.get(cluster.name);
      if (prev !== undefined) cluster.cursor = prev.cursor;
      const clusterSettings = poolSettings(cluster);
      for (const ep of cluster.endpoints) {
        // Auto mTLS: an endpoint's TLS may differ from its cluster's.
        const settings = ep.tls === cluster.tls ? clusterSettings : { ...clusterSettings, tls: ep.tls, tlsId: tlsIdentity(ep.tls) };
        // Clusters share an endpoint's pool only when their pool settings are equal.
        const key = poolKey(ep.key, settings);
        const state = used.has(key) ? this.#byKey.get(key) : undefined;
        ep.handle = state ?? this.#acquire(key, ep.key, ep.address, ep.port, settings.tls === null ? ep.origin : ep.origin.replace('http:', 'https:'), settings);
        used.add(key);
      }
    }
    this.clusters.bind(snapshot);
    for (const [key, state] of this.#byKey) {
      if (!used.has(key) && state.retireTimer === null) {
        state.retireTimer = setTimeout(retire, this.#options.retireGraceMs, this, key).unref();
      }
    }
  }

  #acquire(key: string, endpointKey: string, host: string, port: number, origin: string, settings: PoolSettings): EndpointState {
    const existing = this.#byKey.get(key);
    if (existing !== undefined) {
      if (existing.retireTimer !== null) {
        clearTimeout(existing.retireTimer);
        existing.retireTimer = null;
      }
      // One client per endpoint; changed settings need a new client (the old one drains).
      if (sameSettings(existing.settings, settings)) return existing;
      this.#close(existing);
    }
    const state = new EndpointState(key, endpointKey, buildClient(host, port, settings, this.#options), settings, origin, this.#options);
    this.#byKey.set(key, state);
    return state;
  }

  /** Called by the retire timer. */
  retire(key: string): void {
    const state = this.#byKey.get(key);
    if (state === undefined) return;
    this.#close(state);
  }

  #close(state: EndpointState): void {
    if (this.#byKey.get(state.key) === state) this.#byKey.delete(state.key);
    if (state.retireTimer !== null) clearTimeout(state.retireTimer);
    state.retireTimer = null;
    this.#closeClient(state.dispatcher);
    if (state.fetchPool !== null) this.#closeClient(state.fetchPool);
  }

  #closeClient(client: UpstreamClient | Pool): void {
    const p: Promise<void> = client.close().catch(noop);
    this.#closing.set(client, p);
    void p.then(() => this.#closing.delete(client));
  }

  /** Closes every client: waits up to `graceMs` for in-flight requests, then destroys. */
  async close(graceMs: number): Promise<void> {
    this.clusters.close();
    for (const s of [...this.#byKey.values()]) this.#close(s);
    const pools = [...this.#closing.keys()];
    const all = Promise.all([...this.#closing.values()]);
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(resolve, graceMs, 'expired')));
    const outcome = await Promise.race([all.then(() => 'done' as const), expired]);
    clearTimeout(timer);
    if (outcome === 'expired') await Promise.all(pools.map((p) => p.destroy().catch(noop)));
  }
}

/** meshgate's client for an endpoint: HTTP/1.1 pool or HTTP/2 sessions, TLS as the cluster says. */
function buildClient(host: string, port: number, settings: PoolSettings, options: EndpointPoolOptions): UpstreamClient {
  const tls = settings.tls === null ? null : upstreamTlsConnect(settings.tls, settings.protocol);
  const idle = settings.idleTimeoutMs > 0 ? settings.idleTimeoutMs : settings.tls?.mode === 'ISTIO_MUTUAL' ? options.meshKeepAliveTimeoutMs : options.keepAliveTimeoutMs;
  const h1: H1ClientOptions = {
    host,
    port,
    connections: options.connections,
    connectTimeoutMs: settings.connectTimeoutMs,
    keepAliveTimeoutMs: idle,
    // Upstream hints (`Keep-Alive: timeout=N`) are honoured minus this margin, capped below.
    keepAliveTimeoutThresholdMs: 1000,
    keepAliveMaxTimeoutMs: settings.idleTimeoutMs > 0 ? settings.idleTimeoutMs : 60_000,
    maxRequestsPerConnection: settings.maxRequestsPerConnection,
    tls,
    ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
  };
  if (settings.protocol !== 'HTTP2') return new H1Client(h1);
  return new H2Client({ host, port, connections: options.connections, connectTimeoutMs: settings.connectTimeoutMs, idleTimeoutMs: idle, tls, http1Fallback: () => new H1Client(h1), ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) });
}

function retire(pools: EndpointPools, key: string): void {
  pools.retire(key);
}

function noop(): void {}
