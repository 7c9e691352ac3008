/**
 * The compiled snapshot: the IR turned into lookup tables and predicates the request path reads.
 *
 * Built by `compileSnapshot` (pure). Immutable after compile, with two documented exceptions the
 * runtime owns: `CompiledCluster.cursor` (load-balancer position) and `CompiledEndpoint.handle`
 * (the long-lived pool of that endpoint, attached at apply time).
 */

import type { ConnectionPool, FaultInjection, HttpsRedirect, LbPolicy, OutlierDetection, TlsVersion, UpstreamProtocol, UpstreamTls } from '../../ir/types.js';
import type { CompiledHeaderOps } from './header-ops.js';
import type { PathRewriter } from './rewrite.js';
import type { CompiledPathMatch } from './string-match.js';

/**
 * The types of values the runtime's own modules compile or attach (edge security, CORS, retries,
 * mirrors, client-certificate checks, cluster state, load-balancer caches). This file imports nothing
 * from the runtime (issue 11, layer rules): `src/runtime/compiled-slots.ts` adds each member by
 * declaration merging, so the dependency points from the runtime to this file and never back.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface RuntimeSlots {}

/** What the matcher needs to know about a request. The runtime's request context implements it. */
export interface MatchInput {
  /** Method as sent (case-sensitive). */
  readonly method: string;
  /** Path of the request target, query excluded. */
  readonly path: string;
  /** Downstream scheme: `http` or `https`. */
  readonly scheme: string;
  /** Host/:authority as sent by the client (port included if present). */
  readonly authority: string;
  /** The listener's externalPort. */
  readonly port: number;
  /** Value of a header (lowercase name); several lines joined with `,`; null when absent. */
  header(name: string): string | null;
  /**
   * First value of a query parameter, raw (not percent-decoded, as Envoy matches it); `''` for a
   * value-less `?name`; null when absent.
   */
  queryParam(name: string): string | null;
  /** Claims of the JWT authentication verified for this request; null/absent = none (no token, or no RequestAuthentication). */
  readonly jwtClaims?: Record<string, unknown> | null;
}

export type MatchCondition = (r: MatchInput) => boolean;

export interface CompiledSnapshot {
  version: string;
  listeners: CompiledListener[];
  /** Listeners by `address:port`, the key sockets survive swaps by. */
  listenersByKey: Map<string, CompiledListener>;
  clusters: Map<string, CompiledCluster>;
}

export interface CompiledListener {
  /** `address:port`. */
  key: string;
  name: string;
  address: string;
  port: number;
  externalPort: number;
  protocol: 'HTTP' | 'HTTPS';
  /** Downstream scheme of requests on this listener. */
  scheme: 'http' | 'https';
  chains: CompiledFilterChain[];
  /** Chains by exact SNI name. */
  chainsByServerName: Map<string, CompiledFilterChain>;
  /** Wildcard chains (`*.example.com` as suffix `.example.com`), longest suffix first. */
  wildcardChains: { suffix: string; chain: CompiledFilterChain }[];
  /** The chain with `serverNames: []`, or null (then an unmatched SNI is refused). */
  defaultChain: CompiledFilterChain | null;
  /** The snapshot's edge security (shared by its listeners): normalization, JWT, authorization, rate limits. */
  security: RuntimeSlots['security'];
  /** HTTPS with IR `passthrough` routes: the ClientHello is read first and matching SNIs are relayed unterminated (tcp-listeners.ts). */
  passthrough: boolean;
}

export interface CompiledFilterChain {
  name: string;
  tls: CompiledTls | null;
  virtualHosts: CompiledVirtualHost[];
  /** Virtual hosts by exact lowercase host. */
  hostsExact: Map<string, CompiledVirtualHost>;
  /** Suffix wildcards, longest suffix first (ties keep IR order). */
  hostSuffixes: { suffix: string; singleLabel: boolean; vhost: CompiledVirtualHost }[];
  hostAny: CompiledVirtualHost | null;
  /** IR `FilterChain.rejectMisdirected`: 421 when the Host selects another chain than the SNI did. */
  rejectMisdirected: boolean;
}

export interface CompiledTls {
  minVersion: TlsVersion;
  maxVersion: TlsVersion;
  /** OpenSSL cipher string (TLS 1.2 list plus the TLS 1.3 suites). */
  ciphers: string;
  certificates: CompiledCertificate[];
  certsByName: Map<string, CompiledCertificate>;
  /** Single-label wildcard certificates by suffix (`*.example.com` as `.example.com`). */
  certsBySuffix: Map<string, CompiledCertificate>;
  /** Client certificate policy (MUTUAL / OPTIONAL_MUTUAL); null = no client certificate asked for. */
  clientValidation: RuntimeSlots['clientValidation'] | null;
}

export interface CompiledCertificate {
  secret: string;
  certChain: string;
  privateKey: string;
  /**
   * Content key of the SecureContext this certificate yields (key pair plus the chain's TLS
   * settings); the runtime caches contexts by it across swaps.
   */
  contextKey: string;
}

export interface CompiledVirtualHost {
  name: string;
  httpsRedirect: HttpsRedirect | null;
  routes: CompiledRoute[];
}

export interface CompiledRoute {
  name: string;
  matches: CompiledMatch[];
  action: CompiledAction;
  requestHeaders: CompiledHeaderOps | null;
  responseHeaders: CompiledHeaderOps | null;
  /** CORS policy (filters/cors.ts); null = none. */
  cors: RuntimeSlots['cors'] | null;
  /** Ingress request filters (filters/route-filters.ts); null = none. */
  filters: RuntimeSlots['routeFilters'] | null;
}

/** One IR RouteMatch: every condition must hold. A catch-all has no conditions. */
export interface CompiledMatch {
  route: CompiledRoute;
  /** The path match, kept for prefix rewrites; null when the match has no path condition. */
  path: CompiledPathMatch | null;
  /** Only the non-null IR fields, cheapest first (port, path, method, scheme, authority, headers, query). */
  conditions: MatchCondition[];
}

export type CompiledAction = CompiledForward | CompiledRedirect | CompiledDirect;

export interface CompiledForward {
  kind: 'forward';
  destinations: CompiledDestination[];
  /** Running sums of the weights; `cumulative[i]` = Σ weights[0..i]. */
  cumulative: number[];
  totalWeight: number;
  rewritePath: PathRewriter | null;
  rewriteAuthority: string | null;
  /** Route timeout in ms; 0 = none. */
  timeoutMs: number;
  /** Retry policy (upstream/retry-policy.ts); null = no retries. */
  retry: RuntimeSlots['retryPolicy'] | null;
  /** Fault injection as in the IR (filters/fault.ts); null = none. */
  fault: FaultInjection | null;
  /** Mirrors (upstream/mirror.ts); null = none. */
  mirrors: RuntimeSlots['mirror'][] | null;
  /** IR `httpVersion: '1.0'`: requests go to HTTP/1.x endpoints as HTTP/1.0; absent = HTTP/1.1. */
  http10?: { bodyLimit: number };
  /** IR `upstreamErrorStatuses: 'nginx'`: answers to upstream failures get nginx's statuses (local-errors.ts `nginxStatus`). */
  nginxErrors?: true;
}

export interface CompiledDestination {
  clusterName: string;
  /** null when no cluster of that name is in the snapshot (answered as 503 NC). */
  cluster: CompiledCluster | null;
  weight: number;
  requestHeaders: CompiledHeaderOps | null;
  responseHeaders: CompiledHeaderOps | null;
}

export interface CompiledRedirect {
  kind: 'redirect';
  scheme: string | null;
  authority: string | null;
  port: number | 'from-protocol' | 'from-request' | null;
  path: PathRewriter | null;
  responseCode: number;
  /** IR `stripTrailingSlash`. */
  stripTrailingSlash?: boolean;
  /** IR `keepDefaultPort`. */
  keepDefaultPort?: boolean;
  /** IR `authorityFromHeader`. */
  authorityFromHeader?: string;
}

export interface CompiledDirect {
  kind: 'direct';
  status: number;
  body: Buffer;
  contentType: string;
}

export interface CompiledCluster {
  name: string;
  /** `missing`: 503 NC. */
  discovery: 'eds' | 'missing';
  lbPolicy: LbPolicy;
  connectTimeoutMs: number;
  /** Ready endpoints only (in IR order); empty: 503 UH. */
  endpoints: CompiledEndpoint[];
  /** Round-robin position. Mutable: owned by the load balancer; carried over across swaps by name. */
  cursor: number;
  /** Circuit-breaker limits and pool settings as in the IR; null = none. */
  connectionPool: ConnectionPool | null;
  /** Outlier detection settings as in the IR; null = off. */
  outlierDetection: OutlierDetection | null;
  /** Protocol spoken to the endpoints (IR `Cluster.protocol`). */
  protocol: UpstreamProtocol;
  /** Upstream TLS (IR `Cluster.tls`); null = plaintext. Part of the endpoint pool's identity. */
  tls: UpstreamTls | null;
  /**
   * Long-lived state of the cluster (circuit-breaker counters, outlier ejections), kept by cluster
   * name across swaps; attached by the runtime at apply time like `EndpointHandle`, null before.
   */
  state: RuntimeSlots['clusterState'] | null;
  /** Derived load-balancer data (healthy subset, hash ring / Maglev table), built on first use. Mutable, owned by the load balancer. */
  lbCache: RuntimeSlots['lbCache'] | null;
}

export interface CompiledEndpoint {
  /** `address:port`, the key of the endpoint's long-lived state. */
  key: string;
  address: string;
  port: number;
  /** `http://address:port` (IPv6 in brackets). */
  origin: string;
  /** TLS towards this endpoint: the cluster's `tls`, or its auto-mTLS settings for endpoints marked `tlsMode: istio`; null = plaintext. */
  tls: UpstreamTls | null;
  /** Attached by the runtime at apply time; null in a freshly compiled snapshot. */
  handle: EndpointHandle | null;
}

/** Long-lived per-endpoint state (see `state/endpoint-pools.ts`). */
export interface EndpointHandle {
  /** The pool's key: the endpoint's `address:port` and its pool settings (state/endpoint-pools.ts). */
  readonly key: string;
  /** The endpoint's `address:port` (access logs' upstream host, telemetry). */
  readonly host: string;
  /** The endpoint's upstream client (`upstream/client.ts`): HTTP/1.1 pool or HTTP/2 sessions. */
  readonly dispatcher: RuntimeSlots['upstreamClient'];
  /** An undici dispatcher of the endpoint for Promise-style calls off the hot path (ext-authz), built on first use. */
  fetcher(): Promise<RuntimeSlots['upstreamFetcher']>;
  /** Requests in flight to this endpoint (for LEAST_REQUEST). */
  active: number;
  /** Source address of connections to the endpoint (EndpointPoolOptions.localAddress); absent = the kernel's choice. */
  readonly localAddress?: string;
}
