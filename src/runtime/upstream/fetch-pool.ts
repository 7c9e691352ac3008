/**
 * The undici pool of an endpoint's ext-authz and auth-url checks (`EndpointHandle.fetcher()`): off
 * the hot path, built on first use, so processes without such checks never load undici.
 */
import { Pool, type Dispatcher } from 'undici';
import type { EndpointPoolOptions, PoolSettings } from '../state/endpoint-pools.js';
import { upstreamProtocolOptions } from './h2-pool.js';
import { upstreamTlsOptions } from './upstream-tls.js';

/** The undici pool of an endpoint's ext-authz checks (the settings the request path had with undici). */
export function buildFetchPool(origin: string, settings: PoolSettings, defaults: EndpointPoolOptions): Pool {
  const tls = settings.tls === null ? null : upstreamTlsOptions(settings.tls, settings.protocol, settings.connectTimeoutMs);
  const options: Pool.Options = {
    connections: defaults.connections,
    connectTimeout: settings.connectTimeoutMs,
    keepAliveTimeout: settings.idleTimeoutMs > 0 ? settings.idleTimeoutMs : defaults.keepAliveTimeoutMs,
    ...(settings.maxRequestsPerConnection > 0 ? { maxRequestsPerClient: settings.maxRequestsPerConnection } : {}),
    keepAliveTimeoutThreshold: 1000,
    keepAliveMaxTimeout: settings.idleTimeoutMs > 0 ? settings.idleTimeoutMs : 60_000,
    // The check's own timeout (AbortSignal) bounds it.
    headersTimeout: 0,
    bodyTimeout: 0,
    pipelining: 1,
    ...upstreamProtocolOptions(settings.protocol, tls !== null),
    ...(tls !== null ? { connect: tls.connect } : {}),
  };
  const pool = tls === null ? new Pool(origin, options) : new SniPool(origin, options, tls.servername);
  // A pool error outside any request (e.g. after close) must not crash the process.
  pool.on('connectionError', noop);
  return pool;
}

/**
 * A pool to a TLS endpoint: every request carries the cluster's SNI. undici otherwise takes the SNI
 * from each request's Host and reconnects whenever it changes.
 */
class SniPool extends Pool {
  readonly #servername: string;
  constructor(origin: string, options: Pool.Options, servername: string) {
    super(origin, options);
    this.#servername = servername;
  }
  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    (opts as { servername?: string }).servername = this.#servername;
    return super.dispatch(opts, handler);
  }
}

function noop(): void {}
