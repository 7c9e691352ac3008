/**
 * The IR snapshot: meshgate's own, immutable description of everything the data plane serves.
 *
 * It is the contract between the control plane (translate) and the data plane (runtime). It is plain
 * data (arrays, objects, strings, numbers, booleans, null): no classes, Maps or Sets, so it dumps to
 * stable JSON for golden tests and `/config_dump`, and travels to worker processes as is.
 *
 * Order is decided by the translator: the data plane does first match over every list here.
 */

import type { Regex } from '../lib/re2.js';
import type { SecurityConfig } from './security.js';
import type { PeerAuthenticationPolicy } from './mesh.js';
import type { AccessLogging, TracingConfig } from './telemetry.js';
import type { RouteFilters } from './route-filters.js';
import type { SidecarView } from './sidecar.js';

export type * from './security.js';
export type * from './mesh.js';
export type * from './telemetry.js';
export type * from './route-filters.js';
export type * from './sidecar.js';
export type * from './proxy-headers.js';

/** Where a piece of IR came from, for diagnostics, the dashboard and `/config_dump`. */
export interface SourceRef {
  /** Kubernetes kind of the defining object, e.g. `Ingress`, `VirtualService`. */
  kind: string;
  namespace: string;
  name: string;
  /** File the object was read from, relative to the config directory; null when not from a file. */
  file: string | null;
  /** 1-based line of the defining field (or of the object) in `file`; null when unknown. */
  line: number | null;
}

export interface IRSnapshot {
  /** Content hash of everything below (hex); equal snapshots have equal versions. */
  version: string;
  /** Listeners, sorted by port. Each port appears once. */
  listeners: Listener[];
  /** Upstream clusters, sorted by name; routes refer to them by `Cluster.name`. */
  clusters: Cluster[];
  /** Edge security for every HTTP listener: path normalization, header policy, JWT, authorization, rate limits (see `security.ts`). */
  security: SecurityConfig;
  /**
   * Listeners that relay TCP connections (Istio Gateway servers with protocol TCP, TLS passthrough
   * and AUTO_PASSTHROUGH, and TLS terminated on protocol TLS servers), sorted by port. A port is
   * either here or in `listeners`, never both.
   */
  tcpListeners: TcpListener[];
  /** Access logs (MeshConfig and Telemetry API; see `telemetry.ts`), applied on every swap without a restart. */
  accessLogging: AccessLogging;
  /** Tracing from the Telemetry API (see `telemetry.ts`), on top of the `--tracing-*` flags; applied on every swap. */
  tracing: TracingConfig;
  /** PeerAuthentication policies (see `mesh.ts`), mesh then namespace then workload scope; absent when there are none. */
  peerAuthentication?: PeerAuthenticationPolicy[];
  /** Present only in a sidecar's view (translate/sidecar/, see `sidecar.ts`): its outbound and inbound tables; absent in a gateway's snapshot. */
  sidecar?: SidecarView;
}

/**
 * A listener that relays bytes: each connection is matched once, when it opens, against `routes`
 * (first match) and spliced to one endpoint of the chosen cluster; either side's FIN is passed on
 * (half-close), and either side's reset closes both. No match: the connection is closed.
 */
export interface TcpListener {
  /** Stable name, `<address>_<port>`. */
  name: string;
  address: string;
  /** Port the gateway binds (after `--port-map`). */
  port: number;
  /** Port clients use (before `--port-map`); routes' `port` conditions compare with it. */
  externalPort: number;
  /**
   * `TCP`: opaque bytes (Istio protocol TCP). `TLS`: TLS passthrough (protocol TLS or HTTPS with
   * `tls.mode: PASSTHROUGH` or `AUTO_PASSTHROUGH`): the SNI is read from the ClientHello without
   * terminating TLS, and the ClientHello is forwarded unchanged: by a gateway outside the mesh as
   * is (a cluster's upstream `tls` is not applied); a sidecar's outbound relays, and a gateway that
   * is a mesh client (`run --control`), apply the cluster's `tls` (auto mTLS per endpoint included),
   * wrapping the client's TLS in the cluster's, as Envoy's clusters do; a ClientHello without SNI
   * matches only routes with `sniHosts: []`. `TLS_TERMINATE`: protocol TLS with `tls.mode` SIMPLE, MUTUAL or
   * OPTIONAL_MUTUAL: the gateway terminates TLS with the chain `tlsChains` selects by SNI and relays
   * the decrypted bytes with that chain's routes (plaintext, or TLS originated per the cluster's `tls`).
   */
  protocol: 'TCP' | 'TLS' | 'TLS_TERMINATE';
  /** Routes in evaluation order (Gateway/VirtualService creation order, then the author's order); `[]` for `TLS_TERMINATE` (routes are per chain). */
  routes: TcpRoute[];
  /**
   * `TLS_TERMINATE` only (else `[]`): one chain per Gateway server, chosen by the handshake's SNI as
   * HTTPS filter chains are (exact name, then the longest `*.` wildcard, then a chain with
   * `serverNames: []`); a handshake matching no chain is refused.
   */
  tlsChains: TcpTlsChain[];
}

/** A TLS-terminating server of a TCP listener (Istio protocol TLS, mode SIMPLE/MUTUAL/OPTIONAL_MUTUAL). */
export interface TcpTlsChain {
  /** Stable name, e.g. `tls.9443.db.gw.istio-system`. */
  name: string;
  /** Lowercase SNI names (the server's hosts, `a.example.com` or `*.example.com`); `[]` = any. */
  serverNames: string[];
  /** Certificates, versions, ciphers and client validation, as for HTTPS listeners. */
  tls: TlsContext;
  /** The VirtualService `tcp` routes bound to this server, in evaluation order (first match). */
  routes: TcpRoute[];
}

export interface TcpRoute {
  /** Stable hierarchical name, e.g. `virtualservice/default/db/tcp/0`. */
  name: string;
  source: SourceRef;
  /** The route applies when ANY of these matches (OR); never empty (a catch-all is one match with every field empty/null). */
  matches: TcpMatch[];
  /** Weighted destinations (never empty); a connection picks one by weight/Σweights. */
  destinations: { cluster: string; weight: number }[];
}

/** One match block of a TCP or TLS route: every non-empty field must hold (AND). */
export interface TcpMatch {
  /** Lowercase SNI names, exact or `*.suffix` (any non-empty prefix); `[]` = any SNI, or none. */
  sniHosts: string[];
  /** The address the client connected to must be inside one of these CIDRs (`10.0.0.0/8`, `::1/128`); `[]` = any. */
  destinationSubnets: string[];
  /** The listener's externalPort must equal this; null = any. */
  port: number | null;
  /**
   * TLS passthrough: the ClientHello must offer one of these ALPN protocols (AUTO_PASSTHROUGH
   * routes: Istio's mTLS ALPNs `istio`, `istio-peer-exchange`, `istio-http/1.0`, `istio-http/1.1`,
   * `istio-h2`, so only mesh mTLS clients pass, as Istio's filter chain match). Absent = any.
   */
  applicationProtocols?: string[];
}

/** A socket the gateway accepts connections on. */
export interface Listener {
  /** Stable name, `<address>_<port>`, e.g. `0.0.0.0_8080`. */
  name: string;
  /** Bind address; `0.0.0.0` unless a Gateway server says otherwise. */
  address: string;
  /** Port the gateway binds (after `--port-map`). */
  port: number;
  /** Port clients use to reach this listener (before `--port-map`); used in redirects and matches on `port`. */
  externalPort: number;
  /** `HTTP`: plaintext HTTP/1.1. `HTTPS`: TLS terminated here, then HTTP. */
  protocol: 'HTTP' | 'HTTPS';
  /**
   * Filter chains. HTTP listeners have exactly one, with `serverNames: []`. HTTPS listeners pick the
   * chain by the TLS SNI: an exact server name first, then the longest wildcard (`*.example.com`),
   * then a chain with `serverNames: []`; a handshake that matches no chain is refused.
   */
  filterChains: FilterChain[];
  /**
   * HTTPS only: TLS passthrough on the same port (ingress-nginx `ssl-passthrough`). Each connection's
   * ClientHello is read first (as a `TLS` TcpListener does); when its SNI matches one of these routes
   * (first match, `sniHosts` exact or `*.` wildcard), the connection is relayed unterminated to the
   * route's cluster (the ClientHello forwarded unchanged; a cluster's upstream `tls` applied around
   * it only by a gateway that is a mesh client, as for `TcpListener.protocol` `TLS`);
   * any other connection is terminated by `filterChains` as usual. Absent or `[]` = every connection
   * is terminated (and no ClientHello is read ahead).
   */
  passthrough?: TcpRoute[];
}

export interface FilterChain {
  /** Stable name, e.g. `https.443.web.gateway.istio-system` or `ingress-https`. */
  name: string;
  /** Lowercase SNI names this chain answers (`a.example.com` or `*.example.com`); `[]` = any. */
  serverNames: string[];
  /** TLS settings; null on plaintext listeners. */
  tls: TlsContext | null;
  /** Virtual hosts, chosen by the request's Host/:authority (lowercased, port stripped). */
  virtualHosts: VirtualHost[];
  /**
   * HTTPS only: answer 421 Misdirected Request when the request's Host/:authority would select
   * (by the same `serverNames` rule as the SNI) another chain of the listener than the one the
   * connection's SNI selected: the Host belongs to another listener and certificate (Gateway API
   * GatewayHTTPSListenerDetectMisdirectedRequests; RFC 9110 §15.5.20). This also keeps an HTTP/2
   * connection coalesced by a client for a second authority from reaching another chain's routes.
   * Absent = false (Istio and Ingress chains: the SNI's chain serves whatever Host it has).
   */
  rejectMisdirected?: boolean;
}

export interface TlsContext {
  /**
   * Certificates offered; the one whose names match the SNI is chosen (exact, then wildcard), else
   * the first. Each has its own key pair.
   */
  certificates: TlsCertificate[];
  /**
   * Lowest TLS version accepted; Istio's default is TLS 1.2. Node negotiates the version before the
   * SNI-chosen chain is known, so the runtime enforces each chain's range right after the handshake.
   */
  minProtocolVersion: TlsVersion;
  /** Highest TLS version accepted. */
  maxProtocolVersion: TlsVersion;
  /**
   * OpenSSL cipher names for TLS 1.2 (TLS 1.3 suites are not configurable); `[]` = meshgate's default
   * list (ECDHE + AEAD only). Ciphers are negotiated per listener: the listener's first chain decides.
   */
  cipherSuites: string[];
  /**
   * Client certificates (Istio `tls.mode` MUTUAL / OPTIONAL_MUTUAL); null = none asked for (SIMPLE).
   * Checked for the chain the SNI selected, right after the handshake; a connection that fails the
   * check is closed before any request is read.
   */
  clientValidation: ClientValidation | null;
}

export interface ClientValidation {
  /**
   * `REQUIRED` (MUTUAL): a certificate issued by one of `caCertificates` must be presented.
   * `OPTIONAL` (OPTIONAL_MUTUAL): none is fine; one that is presented must pass the same checks.
   */
  mode: 'REQUIRED' | 'OPTIONAL';
  /** PEM bundle of the CAs client certificates must chain to (the credential's `ca.crt`/`cacert`, or the `<credentialName>-cacert` Secret). */
  caCertificates: string;
  /** `namespace/name` of the Secret the CAs came from. */
  caSecret: string;
  /** The client certificate must carry one of these SANs (DNS, URI, email or IP, as written); `[]` = any. Istio `tls.subjectAltNames`. */
  subjectAltNames: string[];
  /**
   * Certificate revocation list(s) (PEM `X509 CRL`): a client certificate they revoke is refused.
   * The CA Secret's `ca.crl` key, else Istio `tls.caCrl` (a file the runtime reads when it builds
   * the TLS context; unreadable = every handshake of the chain fails). Absent = no revocation check.
   */
  caCrl?: PemSource;
  /**
   * Most intermediate CA certificates between the client certificate and the trust anchor (OpenSSL
   * verify depth, as nginx's ssl_verify_depth / ingress-nginx auth-tls-verify-depth); a longer chain
   * fails verification ("certificate chain too long"). Absent = no limit.
   */
  verifyDepth?: number;
  /**
   * true (ingress-nginx): a presented certificate that fails verification does not close the
   * connection; the verdict is kept on the connection and the route's `clientCertificate` policy
   * answers (400, or the error page), as nginx does after the handshake. Absent = refused at once.
   */
  deferFailures?: boolean;
}

export type TlsVersion = 'TLSv1.2' | 'TLSv1.3';

export interface TlsCertificate {
  /** `namespace/name` of the Secret this came from. */
  secret: string;
  /** Lowercase DNS names this certificate is meant for (exact or `*.` wildcard); `[]` = default. */
  serverNames: string[];
  /** PEM certificate chain. */
  certChain: string;
  /** PEM private key. */
  privateKey: string;
}

/** Hostname match of a virtual host. */
export type DomainMatch =
  /** Exact lowercase host, e.g. `shop.example.com`. */
  | { kind: 'exact'; host: string }
  /**
   * Left wildcard: `suffix` is e.g. `.example.com`. With `singleLabel` (Kubernetes Ingress), the
   * wildcard covers exactly one DNS label (`a.example.com`, not `a.b.example.com`); without it
   * (Istio/Envoy), any non-empty prefix.
   */
  | { kind: 'suffix'; suffix: string; singleLabel: boolean }
  /** Any host (`*`). */
  | { kind: 'any' };

export interface VirtualHost {
  /** Stable name, e.g. `shop.example.com:80`. */
  name: string;
  /**
   * Domains served. Precedence across the virtual hosts of one chain: exact host, then the longest
   * suffix wildcard, then `any`. Two virtual hosts of one chain never share a domain.
   */
  domains: DomainMatch[];
  /**
   * When set, every request is answered with a redirect to HTTPS (Istio `tls.httpsRedirect`: 301;
   * Ingress hosts with TLS: 308, as ingress-nginx does) before any route is looked at.
   */
  httpsRedirect: HttpsRedirect | null;
  /** Routes in evaluation order; the first whose match succeeds serves the request; none: 404 `NR`. */
  routes: Route[];
}

export interface HttpsRedirect {
  responseCode: 301 | 308;
  /** Port in the Location header; null = the https default (443, omitted). */
  port: number | null;
  /**
   * ingress-nginx (lua_ingress.lua, unless preserve-trailing-slash): one trailing `/` of the request
   * URI as sent (path and query) is left out of the Location (`/dir/` -> `/dir`, `/` -> nothing).
   * Absent = the request URI as sent.
   */
  stripTrailingSlash?: boolean;
}

export interface Route {
  /** Stable hierarchical name, e.g. `ingress/default/web/rule/0/path/1` or `virtualservice/shop/reviews/http/2`. */
  name: string;
  /** The object that defined this route. */
  source: SourceRef;
  /** The route applies when ANY of these matches (OR). Never empty: a catch-all is one match with every field null/empty. */
  matches: RouteMatch[];
  action: RouteAction;
  /** Header edits on the request sent upstream (route level, applied before destination level). */
  requestHeaders: HeaderOps | null;
  /** Header edits on the response sent downstream (route level, applied after destination level). */
  responseHeaders: HeaderOps | null;
  /**
   * CORS (Istio `corsPolicy`, Envoy CORS filter); null = none. Applies whatever the action: a
   * preflight whose Origin is allowed is answered by the gateway; other requests from an allowed
   * Origin get the CORS response headers added.
   */
  cors: CorsPolicy | null;
  /** Ingress request filters (source ranges, body limit, Basic auth, per-client limits; see `route-filters.ts`); absent = none. */
  filters?: RouteFilters;
}

/** CORS policy of a route (Istio CorsPolicy). */
export interface CorsPolicy {
  /** Origins allowed; an `exact` `*` allows any. Empty = no origin is allowed (no CORS headers are ever added). */
  allowOrigins: StringMatch[];
  /** `access-control-allow-methods` on preflight answers, joined with `,`; [] = header omitted. */
  allowMethods: string[];
  /** `access-control-allow-headers` on preflight answers; [] = header omitted. */
  allowHeaders: string[];
  /** `access-control-expose-headers` on actual (non-preflight) responses; [] = omitted. */
  exposeHeaders: string[];
  /** `access-control-max-age` in seconds on preflight answers; null = omitted. */
  maxAgeSeconds: number | null;
  /** true: `access-control-allow-credentials: true` is sent; false: omitted (Istio: unset). */
  allowCredentials: boolean;
  /**
   * What to do with a preflight whose Origin is not allowed: `forward` it upstream like any request
   * (Istio's default, `UNSPECIFIED`/`FORWARD`), or `ignore`: answer 200 without CORS headers.
   */
  unmatchedPreflights: 'forward' | 'ignore';
  /**
   * `ingress-nginx`: the semantics of ingress-nginx's `enable-cors` template instead of Envoy's. With
   * an exact `*` origin every request counts as allowed (Origin or not) and the answer says
   * `access-control-allow-origin: *`; otherwise an Origin matching `allowOrigins` is echoed. Allowed
   * requests get every CORS header (allow-origin, -credentials, -methods joined with `, `, -headers,
   * -expose-headers, -max-age) on their response, replacing the backend's; an allowed `OPTIONS`
   * (with or without `Access-Control-Request-Method`) is answered 204 by the gateway
   * (`content-type: text/plain charset=UTF-8`, `content-length: 0`); requests not allowed go on
   * untouched (`unmatchedPreflights` is not read). Absent = Envoy/Istio semantics.
   * `gateway-api`: Envoy's semantics plus the Gateway API HTTPRoute CORS filter's: a preflight answer
   * also carries `access-control-expose-headers`; with `allowCredentials`, a `*` in `allowMethods` or
   * `allowHeaders` is answered with the preflight's requested method or headers (a browser ignores
   * `*` on credentialed requests).
   */
  dialect?: 'ingress-nginx' | 'gateway-api';
}

/** One match block: every non-null field must hold (AND). */
export interface RouteMatch {
  /** Path match (query string excluded); null = any path. */
  path: PathMatch | null;
  /** Method (case-sensitive); null = any. */
  method: StringMatch | null;
  /** `http` or `https` (the downstream scheme); null = any. */
  scheme: StringMatch | null;
  /** Host/:authority as sent by the client (port included if present); null = any. */
  authority: StringMatch | null;
  /** Every header condition must hold. Names lowercase. */
  headers: HeaderMatch[];
  /** Every query parameter condition must hold. */
  queryParams: QueryParamMatch[];
  /** The listener's externalPort must equal this; null = any. */
  port: number | null;
}

export type PathMatch =
  /** Whole path equals `value` (case-insensitive when `ignoreCase`). */
  | { kind: 'exact'; value: string; ignoreCase: boolean }
  /** Raw string prefix (Istio `uri.prefix`: `/foo` matches `/foobar`). */
  | { kind: 'prefix'; value: string; ignoreCase: boolean }
  /**
   * Element-wise prefix (Kubernetes Ingress `Prefix`): `/foo` matches `/foo`, `/foo/` and `/foo/bar`,
   * never `/foobar`. `value` has no trailing slash except for `/` itself.
   */
  | { kind: 'segment-prefix'; value: string; ignoreCase: boolean }
  /** Full-string regular expression (RE2 subset; see `regex`). */
  | { kind: 'regex'; regex: Regex };

/** A regular expression with RE2 semantics, as `lib/re2.ts` converts it (defined there: lib/ imports only lib/). */
export type { Regex } from '../lib/re2.js';

export type StringMatch =
  | { kind: 'exact'; value: string; ignoreCase: boolean }
  | { kind: 'prefix'; value: string; ignoreCase: boolean }
  | { kind: 'suffix'; value: string; ignoreCase: boolean }
  | { kind: 'regex'; regex: Regex };

export interface HeaderMatch {
  /**
   * Lowercase header name. `cookie` matches the whole Cookie header value. A name starting with
   * `@request.auth.claims.` (never a header: `@` is not a token character) matches a claim of the
   * JWT that RequestAuthentication verified for this request, `@request.auth.claims.a.b` the nested
   * claim `b` of `a` (names keep their case); a list claim matches when one of its strings does;
   * no verified token, or no such claim: absent (Istio "JWT claim based routing").
   */
  name: string;
  /** null = the header must be present (any value). Several values of one header are joined with `,`. */
  match: StringMatch | null;
  /** When true the condition is negated (Istio `withoutHeaders`): the request must NOT satisfy it. */
  invert: boolean;
}

export interface QueryParamMatch {
  name: string;
  /** null = present with any value. `exact: ""` matches a value-less `?name`. Matched against the raw (not percent-decoded) value of the first occurrence, as Envoy does. */
  match: StringMatch | null;
}

export type RouteAction = ForwardAction | RedirectAction | DirectResponseAction;

export interface ForwardAction {
  kind: 'forward';
  /** Weighted destinations (never empty; validateIR checks); weights are positive integers; a request picks one by weight/Σweights. */
  destinations: RouteDestination[];
  /** Rewrite applied to the request sent upstream; null = none. */
  rewrite: Rewrite | null;
  /** Time in ms from the request's arrival until the upstream response headers; null = none (Istio's default). Exceeded: 504 `UT`. */
  timeoutMs: number | null;
  /**
   * Retry policy; null = never retried (Ingress today; Istio `retries.attempts: 0`). The Istio
   * translator writes Istio's default policy when a VirtualService route has no `retries`.
   */
  retries: RetryPolicy | null;
  /** Fault injection, applied before an endpoint is chosen; null = none. */
  fault: FaultInjection | null;
  /** Traffic mirrors (Istio `mirror`/`mirrors`), fire-and-forget; [] = none. */
  mirrors: Mirror[];
  /**
   * HTTP version of the request to HTTP/1.x endpoints (ingress-nginx proxy-http-version); absent =
   * HTTP/1.1. `1.0`: an `HTTP/1.0` request line, no keep-alive, and a body of unknown length read whole
   * (at most `http10BodyLimitBytes`, default 16 MiB; more: 413) and sent with a Content-Length.
   * HTTP/2 clusters ignore it.
   */
  httpVersion?: '1.0';
  /** Body bound of `httpVersion: '1.0'`, bytes; absent = 16 MiB. */
  http10BodyLimitBytes?: number;
  /**
   * Statuses of the gateway's own answers to upstream failures. Absent: Envoy's (a refused or reset
   * connection 503 `UF`/`UC`). `nginx` (every Ingress route, as ingress-nginx answers): a refused,
   * reset or TLS-failed connection 502, a connect timeout 504; flags and details stay Envoy's.
   */
  upstreamErrorStatuses?: 'nginx';
}

/**
 * Conditions a retry happens on (Envoy `x-envoy-retry-on` / `x-envoy-retry-grpc-on` names):
 * - `5xx`: any 5xx answer, a reset or connect failure, or a per-try timeout;
 * - `gateway-error`: 502, 503, 504, a reset or connect failure, or a per-try timeout;
 * - `reset`: no answer at all (reset, disconnect, connect failure, per-try timeout);
 * - `reset-before-request` / `connect-failure`: the connection could not be made (nothing was sent);
 * - `refused-stream`: an HTTP/2 REFUSED_STREAM (never happens on HTTP/1.1);
 * - `retriable-4xx`: 409; `retriable-status-codes`: a status in `RetryPolicy.retriableStatusCodes`;
 * - `retriable-headers`: a response header named in the request's `x-envoy-retriable-header-names`;
 * - `envoy-ratelimited`: the answer carries `x-envoy-ratelimited`;
 * - `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`, `unavailable`: the gRPC
 *   status (1, 4, 13, 8, 14) in the response headers (trailers-only answers).
 */
export type RetryOn =
  | '5xx'
  | 'gateway-error'
  | 'reset'
  | 'reset-before-request'
  | 'connect-failure'
  | 'refused-stream'
  | 'retriable-4xx'
  | 'retriable-status-codes'
  | 'retriable-headers'
  | 'envoy-ratelimited'
  | 'cancelled'
  | 'deadline-exceeded'
  | 'internal'
  | 'resource-exhausted'
  | 'unavailable';

/** When and how a failed try is retried (Istio HTTPRetry, Envoy RetryPolicy). */
export interface RetryPolicy {
  /** Retries after the first try (Istio `attempts`); at least 1. */
  numRetries: number;
  /** Time in ms one try may wait for the response head; null = only the route timeout applies. Exceeded: the try counts as a timeout (retried on `5xx`, `gateway-error`, `reset`; else 504 `UT`). */
  perTryTimeoutMs: number | null;
  /** Conditions, sorted and without duplicates; never empty. */
  retryOn: RetryOn[];
  /** Statuses retried under `retriable-status-codes` (Istio: integers in `retryOn`), sorted. */
  retriableStatusCodes: number[];
  /** Base of the jittered exponential backoff in ms (Envoy/Istio default 25; the cap is 10x). */
  backoffBaseMs: number;
  /**
   * When true (Istio `retryIgnorePreviousHosts`, default true), a retry avoids endpoints already
   * tried when another endpoint is available.
   */
  ignorePreviousHosts: boolean;
  /**
   * true (ingress-nginx `proxy-next-upstream` without `non_idempotent`): a request whose method is not
   * idempotent (POST, LOCK, PATCH, as nginx) is retried only when its try could not connect (nothing
   * was sent); its answers, resets and timeouts are returned as they are. Absent/false = any method
   * is retried (Envoy/Istio).
   */
  idempotentOnly?: boolean;
}

/** Istio HTTPFaultInjection. Percentages are 0-100 (fractions allowed); absent in Istio = 0. */
export interface FaultInjection {
  /** Delay before the request goes upstream (flag `DI`); null = none. */
  delay: { fixedDelayMs: number; percentage: number } | null;
  /** Answer locally instead of going upstream (flag `FI`); null = none. Checked after the delay. */
  abort: FaultAbort | null;
}

export type FaultAbort =
  /** Answer with this HTTP status (200-599) and body `fault filter abort`. */
  | { kind: 'http'; status: number; percentage: number }
  /** Answer `200` with `content-type: application/grpc` and this `grpc-status` (trailers-only). */
  | { kind: 'grpc'; grpcStatus: number; percentage: number };

/**
 * A mirror (Envoy request_mirror_policies): a copy of the request is sent to `cluster` with the
 * Host/:authority suffixed `-shadow`; its answer is discarded and its errors and latency never reach
 * the client. Bodies are mirrored only when small (see runtime `MAX_REPLAY_BODY_BYTES`).
 */
export interface Mirror {
  /** Name of a Cluster in `IRSnapshot.clusters`. */
  cluster: string;
  /** Share of requests mirrored, 0-100 (Istio: absent = 100). */
  percentage: number;
  /** Host/:authority of the copy (ingress-nginx mirror-host, default the mirror-target's host); absent = the request's with `-shadow` appended (Envoy). */
  authority?: string;
  /** false (ingress-nginx mirror-request-body "off"): the copy is sent without the body (and without Content-Length / Transfer-Encoding), at once; absent = with the body. */
  requestBody?: boolean;
  /**
   * Bodies up to this many bytes are kept in memory and mirrored once complete (larger ones are not
   * mirrored: the request is proxied, no copy is sent); absent = 64 KiB. The same bound applies to
   * the body kept for retries of that route.
   */
  requestBodyLimitBytes?: number;
}

export interface RouteDestination {
  /** Name of a Cluster in `IRSnapshot.clusters`. */
  cluster: string;
  weight: number;
  /** Destination-level request header edits (applied after the route's). */
  requestHeaders: HeaderOps | null;
  /** Destination-level response header edits (applied before the route's). */
  responseHeaders: HeaderOps | null;
}

export interface Rewrite {
  /** How the path is rewritten; null = unchanged. */
  path: PathRewrite | null;
  /** New Host/:authority; null = unchanged. The client's Host is still sent in `x-forwarded-host`. */
  authority: string | null;
}

export type PathRewrite =
  /** Replace the part matched by the route's prefix/segment-prefix match with `value`; with an exact match (or none), the whole path. */
  | { kind: 'prefix'; value: string }
  /** Replace the whole path. */
  | { kind: 'full'; value: string }
  /** Replace every match of `regex` (unanchored, global) with `substitution`, written as in Envoy/RE2: `\1` is group 1, `\\` a backslash. */
  | { kind: 'regex'; regex: Regex; substitution: string };

export interface RedirectAction {
  kind: 'redirect';
  /** New scheme; null = keep the request's. */
  scheme: string | null;
  /** New host (without port); null = keep the request's. */
  authority: string | null;
  /**
   * Port: a number; `from-protocol` (the scheme's default, omitted); `from-request` (the port in Host,
   * else the listener's externalPort); or null = keep the port as sent (dropped when the scheme changes
   * and it was the old scheme's default). A scheme's default port is never written in Location.
   */
  port: number | 'from-protocol' | 'from-request' | null;
  /** New path; null = keep the request's path. Query string is kept unless the replacement carries one. */
  path: PathRewrite | null;
  /** 301, 302, 303, 307 or 308; Istio's default is 301. */
  responseCode: number;
  /** As `HttpsRedirect.stripTrailingSlash` (ingress-nginx force-ssl-redirect); absent = false. */
  stripTrailingSlash?: boolean;
  /**
   * A numeric `port` is written even when it is the scheme's default (ingress-nginx
   * use-port-in-redirects: `https://host:443/p`). Absent = false.
   */
  keepDefaultPort?: boolean;
  /**
   * When `authority` is null: the host is the first entry of this request header when it holds a
   * valid host (its port dropped), else the request's host. ingress-nginx with the ConfigMap's
   * use-forwarded-headers redirects to `X-Forwarded-Host` (lua_ingress.lua `best_http_host`).
   * Absent = the request's host.
   */
  authorityFromHeader?: 'x-forwarded-host';
}

export interface DirectResponseAction {
  kind: 'direct';
  status: number;
  /** Body sent as is (UTF-8); null = empty. */
  body: string | null;
  /** Content-Type of `body`; null = `text/plain`. */
  contentType: string | null;
}

/** Header edits, applied in Envoy's order: remove, then set, then add. */
export interface HeaderOps {
  /** Overwrite (or create) these headers. Names lowercase. */
  set: HeaderValue[];
  /** Append these values (a second header line). Names lowercase. */
  add: HeaderValue[];
  /** Remove these headers. Names lowercase. */
  remove: string[];
}

export interface HeaderValue {
  name: string;
  value: string;
}

/** A set of upstream endpoints the gateway balances requests over. */
export interface Cluster {
  /**
   * Istio-style name: `outbound|<port>|<subset>|<fqdn>`, e.g. `outbound|80|v1|reviews.default.svc.cluster.local`;
   * AUTO_PASSTHROUGH SNI-DNAT clusters (only the endpoints labelled `security.istio.io/tlsMode: istio`)
   * are named like their SNI, `outbound_.<port>_.<subset>_.<fqdn>`, as in Istio.
   */
  name: string;
  /** The Service or host this cluster stands for. */
  service: { namespace: string; name: string; host: string; port: number };
  /** Subset name from a DestinationRule; empty when none. */
  subset: string;
  /**
   * `eds`: endpoints from EndpointSlices/Endpoints (possibly none: 503 `UH`).
   * `missing`: the referenced Service/host does not exist (503 `NC`); a diagnostic says why.
   */
  discovery: 'eds' | 'missing';
  /** How an endpoint is chosen for each request. meshgate's default is ROUND_ROBIN. */
  lbPolicy: LbPolicy;
  /** Upstream endpoints; only `ready` ones receive new requests. Sorted by address then port. */
  endpoints: Endpoint[];
  /** Connect timeout in ms (Istio default 10 s). Endpoints are pooled by address: an endpoint shared by clusters uses the timeout of the first cluster by name. */
  connectTimeoutMs: number;
  /** Circuit-breaker limits and upstream connection settings; null = no limits (Istio's default) and meshgate's pool defaults. */
  connectionPool: ConnectionPool | null;
  /** Passive health checking; null = off (Istio's default when a DestinationRule does not set it). */
  outlierDetection: OutlierDetection | null;
  /**
   * Protocol spoken to the endpoints. `HTTP2` when the Service port says so (`appProtocol` `http2`,
   * `grpc`, `grpc-web`, `h2c`, or a port name `http2`/`grpc`/`h2c` alone or followed by `-suffix`), or
   * when the DestinationRule sets `h2UpgradePolicy: UPGRADE`; `DO_NOT_UPGRADE` keeps `HTTP1` only for
   * ports not declared HTTP/2. Default `HTTP1`. HTTP/2 connections are multiplexed (prior knowledge,
   * h2c, on plaintext endpoints).
   */
  protocol: UpstreamProtocol;
  /**
   * TLS towards the endpoints (Istio DestinationRule `trafficPolicy.tls`, after port-level and subset
   * precedence as for the other components); null = plaintext (mode DISABLE, or no `tls`). Endpoints
   * are pooled by address and TLS identity: two clusters with different TLS to one address never share
   * connections.
   */
  tls: UpstreamTls | null;
  /**
   * Auto mTLS (Istio `enableAutoMtls`): the ISTIO_MUTUAL settings used for the endpoints marked
   * `tlsMode: 'istio'` when `tls` is null (no DestinationRule `tls`). Absent when no endpoint qualifies.
   */
  autoMtls?: UpstreamTls;
}

export type UpstreamProtocol = 'HTTP1' | 'HTTP2';

/**
 * Upstream TLS origination (Istio ClientTLSSettings). A handshake or certificate check that fails is
 * an upstream connection failure: 503 `UF`, with the TLS reason in the body and in
 * `response_code_details` (`...{connection_failure,TLS_error:...CERTIFICATE_VERIFY_FAILED...}`).
 */
export interface UpstreamTls {
  /**
   * `SIMPLE`: server-authenticated TLS. `MUTUAL`: the gateway also presents `clientCertificate`.
   * `ISTIO_MUTUAL`: Istio mTLS with the gateway's mesh workload certificate (from `meshgate control`),
   * verifying the server against the mesh roots; `caCertificates` and `clientCertificate` are null,
   * `subjectAltNames` holds the SPIFFE IDs accepted (DestinationRule `subjectAltNames`, else the
   * service accounts of the destination's pods; `[]` = the mesh chain alone), `sni` is
   * `outbound_.<port>_.<subset>_.<fqdn>` unless the DestinationRule sets one, and ALPN is Istio's.
   */
  mode: 'SIMPLE' | 'MUTUAL' | 'ISTIO_MUTUAL';
  /**
   * CAs the server certificate must chain to; null = the Node.js default root store. Istio
   * `credentialName` (Secret key `ca.crt`, or `cacert`) or `caCertificates` (a file path, read by the
   * runtime when the endpoint's pool is built: translate reads no files, so directory configs supply
   * PEM through `credentialName`).
   */
  caCertificates: PemSource | null;
  /** Client certificate and key; non-null exactly when `mode` is `MUTUAL` (Secret `tls.crt`/`tls.key`, or `clientCertificate`/`privateKey` files). */
  clientCertificate: { certChain: PemSource; privateKey: PemSource } | null;
  /** SNI sent in the ClientHello: DestinationRule `sni`, else the cluster's host. */
  sni: string;
  /**
   * The server certificate must carry one of these SANs (DNS, URI or IP, as written); `[]` = the chain
   * alone is verified (no name check, as Envoy without `match_subject_alt_names`).
   */
  subjectAltNames: string[];
  /** When true (`insecureSkipVerify`), neither the chain nor the SANs are checked. Default false. */
  insecureSkipVerify: boolean;
  /**
   * Certificate revocation list(s) (PEM `X509 CRL`) the server certificate is checked against: a
   * revoked one fails the handshake (`UF`, `CERT_REVOKED`). The `credentialName` Secret's `ca.crl`,
   * else DestinationRule `tls.caCrl` (a file, read with the other files). Absent = no revocation check.
   */
  caCrl?: PemSource;
}

/** PEM material: given inline (from a Secret) or as a file the runtime reads. */
export type PemSource =
  /** PEM text; `secret` is the `namespace/name` it came from. */
  | { kind: 'inline'; pem: string; secret: string }
  /** A file path on the gateway's host (Istio's file fields); an unreadable file fails every handshake. */
  | { kind: 'file'; path: string };

/**
 * - ROUND_ROBIN: in turn; LEAST_REQUEST: fewer requests in flight of two random picks; RANDOM.
 * - `consistent-hash`: a key taken from the request picks the endpoint, so the same key keeps
 *   reaching the same endpoint while the endpoint set is unchanged; adding or removing one of N
 *   endpoints moves about 1/N of the keys. A request without the key is balanced at random.
 */
export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM' | ConsistentHashLb;

/** Istio `loadBalancer.consistentHash`. */
export interface ConsistentHashLb {
  kind: 'consistent-hash';
  hashOn: HashKey;
  /**
   * `ring-hash`: Ketama ring with at least `minimumRingSize` entries (Istio default 1024).
   * `maglev`: Maglev lookup table of `tableSize` entries, a prime (Envoy default 65537).
   */
  algorithm: { kind: 'ring-hash'; minimumRingSize: number } | { kind: 'maglev'; tableSize: number };
  /**
   * ingress-nginx upstream-hash-by-subset (balancer/chashsubset.lua): the endpoints, in order, are
   * cut into groups of this size (the last one filled up from the start), the key picks a group on
   * the ring, and a random endpoint of the group serves the request. Absent = the key picks one endpoint.
   */
  subsetSize?: number;
}

export type HashKey =
  /**
   * The value of this request header (lowercase name). With `session` (Gateway API
   * sessionPersistence type Header): a request without the header gets a new session key, returned
   * in that response header for the client to send back.
   */
  | { kind: 'header'; name: string; session?: SessionKey }
  /**
   * The value of this cookie. When it is absent and `ttlSeconds` is not null, the gateway makes up a
   * value, hashes on it, and sets the cookie on the response (`Max-Age` = ttl; 0 = session cookie).
   * `attributes`: extra attributes of that generated cookie, as written (`; Secure; SameSite=Lax`);
   * absent = none (ingress-nginx session-cookie-secure/-samesite/-domain).
   * `conditionalSameSiteNone` (ingress-nginx session-cookie-conditional-samesite-none): `; SameSite=None`
   * is left out of the attributes for user agents known to reject such cookies (ingress-nginx's list:
   * `Chrome/4`, `Chrome/5`, `Chrome/6`, `CPU iPhone OS 12`, `iPad; CPU OS 12`, and Safari on
   * `Intel Mac OS X 10_14` without Chrome); absent = always sent as written.
   */
  | { kind: 'cookie'; name: string; path: string | null; ttlSeconds: number | null; attributes?: string; conditionalSameSiteNone?: boolean; affinity?: CookieAffinity; session?: SessionKey }
  /** The client's IP address (the downstream peer). */
  | { kind: 'source-ip' }
  /** The raw value of this query parameter (first occurrence). */
  | { kind: 'query-parameter'; name: string };

/**
 * ingress-nginx session affinity on a generated cookie (annotations affinity-mode,
 * session-cookie-change-on-failure; balancer/sticky*.lua). The cookie's value is
 * `<key>|<backendKey>`; only `<key>` selects the endpoint.
 */
export interface CookieAffinity {
  /**
   * `balanced` (default): `<key>` is a random value hashed onto the ring, so after a scale-up about
   * (n-c)/n clients move to the new endpoints. `persistent`: `<key>` names one endpoint (a hash of
   * the cluster name and the endpoint's `address:port`): a client stays on it for as long as it
   * exists, whatever endpoints are added; a key naming no available endpoint picks a random one and
   * re-issues the cookie.
   */
  mode: 'balanced' | 'persistent';
  /**
   * When a try fails and the request is retried: true = the retry goes to another endpoint and the
   * cookie is re-issued to name it (ingress-nginx session-cookie-change-on-failure); false (default) =
   * a request that sent a valid cookie is retried on the cookie's endpoint, the cookie kept (sticky.lua).
   */
  changeOnFailure: boolean;
  /** Identifies the cluster in the cookie (ingress-nginx: md5(md5(backend) + backend)); canaries read it. */
  backendKey: string;
}

/**
 * Gateway API `sessionPersistence`: the gateway issues the session key (cookie or header value) as
 * `<id>.<issued>.<last>` (base-36 epoch milliseconds) and hashes on `<id>`. A key past a timeout, or
 * not in that form, starts a new session (a new id, so possibly another endpoint). With an idle
 * timeout the key is issued again (new `<last>`) on an answer at least a second after the previous one.
 */
export interface SessionKey {
  /** The session ends this many seconds after it began (`absoluteTimeout`); null = never. */
  absoluteTimeoutSeconds: number | null;
  /** The session ends after this many seconds without a request (`idleTimeout`, Gateway API up to v1.5); null = never. */
  idleTimeoutSeconds: number | null;
}

/**
 * Istio ConnectionPoolSettings. Every limit is per cluster; null = unlimited. A request over a limit
 * is answered at once with 503, flag `UO` and `x-envoy-overloaded: true`; nothing queues without bound.
 */
export interface ConnectionPool {
  /** Max requests dispatched at once (`tcp.maxConnections`: HTTP/1.1 carries one request per connection); more wait as pending. */
  maxConnections: number | null;
  /** Max requests waiting for a connection (`http.http1MaxPendingRequests`); more: 503 UO. */
  maxPendingRequests: number | null;
  /** Max requests in flight, pending included (`http.http2MaxRequests`); more: 503 UO. */
  maxRequests: number | null;
  /** Requests per upstream connection before it is closed (`http.maxRequestsPerConnection`); null = unlimited. */
  maxRequestsPerConnection: number | null;
  /** Max retries in progress at once (`http.maxRetries`); beyond it a failure is returned instead of retried. */
  maxRetries: number | null;
  /** Idle upstream connections are closed after this many ms (`http.idleTimeout`, else `tcp.idleTimeout`); null = meshgate's pool default (4 s, shorter than Istio's 1 h to avoid keep-alive races; 55 s on Istio mTLS connections, whose peer is a sidecar). */
  idleTimeoutMs: number | null;
}

/** Istio OutlierDetection (Envoy outlier detection with consecutive-error detectors). */
export interface OutlierDetection {
  /** Eject an endpoint after this many consecutive 5xx or connection failures; 0 = this detector is off (Istio default 5). */
  consecutive5xxErrors: number;
  /** Eject after this many consecutive 502/503/504 or connection failures; 0 = off (the default). */
  consecutiveGatewayErrors: number;
  /** Sweep interval in ms: ejected endpoints whose time ran out come back at a sweep (default 10 000). */
  intervalMs: number;
  /** An ejection lasts this many ms times the number of times the endpoint was ejected (default 30 000), at most 300 s. */
  baseEjectionTimeMs: number;
  /** At most this % of the endpoints is ejected at once, but at least one (Envoy) (default 10). */
  maxEjectionPercent: number;
  /** When fewer than this % of the endpoints are healthy, ejections are ignored and all are used (default 0 = never). */
  minHealthPercent: number;
}

export interface Endpoint {
  /** IP address (v4 or v6) or hostname. */
  address: string;
  port: number;
  /** EndpointSlice `conditions.ready` (absent counts as ready). */
  ready: boolean;
  /**
   * `istio`: the Pod is labelled `security.istio.io/tlsMode: istio` and its PeerAuthentication for this
   * port is not DISABLE, so auto mTLS reaches it with `Cluster.autoMtls`. Absent: plaintext (or `Cluster.tls`).
   */
  tlsMode?: 'istio';
}
