/**
 * The IR snapshot: meshgate's own, immutable description of everything the data plane serves.
 *
 * It is the contract between the control plane (translate) and the data plane (runtime). It is plain
 * data (arrays, objects, strings, numbers, booleans, null): no classes, Maps or Sets, so it dumps to
 * stable JSON for golden tests and `/config_dump`, and travels to worker processes as is.
 *
 * Order is decided by the translator: the data plane does first match over every list here.
 */

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

/**
 * A regular expression with RE2 full-string semantics. `source` is the JavaScript source, already
 * anchored (`^(?:...)$`) by the translator and checked to use only what RE2 supports; `flags` are
 * JavaScript flags (`i` from a leading `(?i)`, `s`, `u`).
 */
export interface Regex {
  /** The expression as the user wrote it (for display). */
  original: string;
  source: string;
  flags: string;
}

export type StringMatch =
  | { kind: 'exact'; value: string; ignoreCase: boolean }
  | { kind: 'prefix'; value: string; ignoreCase: boolean }
  | { kind: 'suffix'; value: string; ignoreCase: boolean }
  | { kind: 'regex'; regex: Regex };

export interface HeaderMatch {
  /** Lowercase header name. `cookie` matches the whole Cookie header value. */
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
  /** Istio-style name: `outbound|<port>|<subset>|<fqdn>`, e.g. `outbound|80|v1|reviews.default.svc.cluster.local`. */
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
  /** How an endpoint is chosen for each request. */
  lbPolicy: LbPolicy;
  /** Upstream endpoints; only `ready` ones receive new requests. Sorted by address then port. */
  endpoints: Endpoint[];
  /** Connect timeout in ms (Istio default 10 s). Endpoints are pooled by address: an endpoint shared by clusters uses the timeout of the first cluster by name. */
  connectTimeoutMs: number;
}

export type LbPolicy = 'ROUND_ROBIN' | 'LEAST_REQUEST' | 'RANDOM';

export interface Endpoint {
  /** IP address (v4 or v6) or hostname. */
  address: string;
  port: number;
  /** EndpointSlice `conditions.ready` (absent counts as ready). */
  ready: boolean;
}
