import type { Regex } from './types.js';

/**
 * Per-route request filters that Istio's API has no field for, needed by Kubernetes Ingress with
 * ingress-nginx annotations: source-address ACLs, a request body limit, Basic authentication and
 * per-client request and concurrency limits. Plain data, like the rest of the IR.
 *
 * They run after the route is chosen and after CORS, only for routes that forward (a redirect route
 * never reaches them, as nginx answers `return` in its rewrite phase before access checks). Order
 * (nginx's phases): body size (by Content-Length) -> concurrency limit -> request rate -> deny/allow
 * -> Basic auth.
 */

export interface RouteFilters {
  /** Largest request body in bytes; a larger Content-Length is answered 413 before any upstream is contacted, a chunked body that grows past it is cut and answered 413 if no response started. null = no limit. */
  maxRequestBodyBytes: number | null;
  /** Per-client limits; null = none. */
  requestLimit: RequestLimit | null;
  /** Source-address ACL; null = any client. */
  sourceRanges: SourceRanges | null;
  /** HTTP Basic authentication; null = none. */
  basicAuth: BasicAuth | null;
  /** Where the client address for `requestLimit` and `sourceRanges` comes from; absent = the connection's peer. */
  clientAddress?: ClientAddress;
  /** External authentication by subrequest (ingress-nginx `auth-url`), after Basic auth; absent = none. */
  externalAuth?: ExternalAuth;
  /**
   * Client-certificate checks on HTTPS requests (ingress-nginx `auth-tls-*`), first of all filters:
   * the verdict the chain's `clientValidation` (OPTIONAL, deferFailures) kept for the connection is
   * enforced here (400, the error page, or accepted unverified). Absent = none.
   */
  clientCertificate?: ClientCertificatePolicy;
  /**
   * Custom error pages (ingress-nginx `custom-http-errors` with a default backend): an answer whose
   * status is listed (from the upstream or the gateway) is replaced by the answer of a `GET /` to
   * `cluster` carrying `x-code`, `x-format` (the request's Accept), `x-original-uri`,
   * `x-request-id` and `headers`. The client gets that answer's status, content type and body; when
   * the error backend cannot be reached the original answer's status is sent with an empty body.
   * Absent = none.
   */
  errorPages?: ErrorPages;
  /**
   * Location and Refresh headers of responses that start with `from` get `to` instead of that
   * prefix (nginx `proxy_redirect from to`, ingress-nginx `proxy-redirect-from`/`-to`). Absent = none.
   */
  locationRewrite?: { from: string; to: string };
  /**
   * `replace` (ingress-nginx `compute-full-forwarded-for: "false"`, its default): the
   * x-forwarded-for sent upstream is the client address alone (`clientAddress`'s, else the peer),
   * and the client's own x-forwarded-for goes in x-original-forwarded-for. Absent = the client's
   * list with the peer appended (Envoy).
   */
  forwardedFor?: 'replace';
  /**
   * ingress-nginx's upstream request headers (nginx.tmpl `proxy_set_header`), on every Ingress route:
   * X-Real-IP (the client address), X-Forwarded-Host (`best_http_host`), X-Forwarded-Port,
   * X-Forwarded-Proto, X-Forwarded-Scheme and X-Scheme (`pass_access_scheme`),
   * X-Original-Forwarded-Host (the client's X-Forwarded-Host), and `Proxy` removed (httpoxy).
   * `trustForwarded` (the ConfigMap's use-forwarded-headers): the scheme, port and host come from the
   * client's X-Forwarded-Proto, X-Forwarded-Port and X-Forwarded-Host (its first entry) when sent;
   * `host` then also sends that host as Host (not when upstream-vhost sets it). Absent = none.
   */
  nginxProxyHeaders?: { trustForwarded: boolean; host: boolean };
}

export interface ErrorPages {
  /** Statuses intercepted, sorted. */
  codes: number[];
  /** Name of a Cluster in `IRSnapshot.clusters`. */
  cluster: string;
  /** Fixed headers of the error request (`x-namespace`, `x-ingress-name`, `x-service-name`, `x-service-port`). */
  headers: { name: string; value: string }[];
}

export interface ClientCertificatePolicy {
  /** A request without a client certificate is answered 400 (or redirected to `errorPage`). */
  required: boolean;
  /** URL a request without a required certificate is redirected to (302); null = 400. */
  errorPage: string | null;
  /** The certificate subject (RFC 2253, e.g. `CN=client,O=Org`) must match (unanchored RE2); else 403. null = any. */
  subjectPattern: Regex | null;
  /** Send the URL-escaped PEM in `ssl-client-cert` upstream. */
  passCertificate: boolean;
  /**
   * ingress-nginx `auth-tls-verify-client: optional_no_ca`: a presented certificate is accepted
   * whether or not it verifies (`ssl-client-verify: FAILED:<reason>` upstream); absent = a presented
   * certificate must verify (else 400 or `errorPage`).
   */
  acceptUnverified?: boolean;
  /**
   * `namespace/name` of the CA Secret the certificate must have been verified against (the host's
   * client-TLS chain's `caSecret`): a connection verified by another chain's CAs counts as not
   * verified. Absent = the connection's own verification.
   */
  caSecret?: string;
}

/**
 * nginx `auth_request` (ingress-nginx `auth-url`): before proxying, a request without body goes to
 * `cluster` with the client's headers plus `x-original-url`, `x-original-method`, `x-sent-from`,
 * `x-real-ip`, `x-auth-request-redirect` and Host `authority`. A 2xx answer allows (the
 * `responseHeaders` of the answer are set on the upstream request, a missing one removed; its
 * Set-Cookie goes to the client); 401 is answered 401 (with the service's WWW-Authenticate), or a
 * 302 to `signin` when set; 403 is answered 403; anything else, a connection error or `timeoutMs`: 500.
 */
export interface ExternalAuth {
  /** Name of a Cluster in `IRSnapshot.clusters`. */
  cluster: string;
  /** Host header of the auth request (the URL's host[:port]). */
  authority: string;
  /** Path and query of the auth request (the URL's). */
  path: string;
  /** Method of the auth request; null = the client request's method. */
  method: string | null;
  /** Lowercase headers of the auth answer copied onto the upstream request. */
  responseHeaders: string[];
  /** Sign-in URL for 401 answers (`auth-signin`); null = the 401 is returned. */
  signin: string | null;
  /** Query parameter carrying the original URL on the sign-in redirect (default `rd`). */
  signinRedirectParam: string;
  /** Value of `x-auth-request-redirect`; null = the request URI. */
  requestRedirect: string | null;
  /** Copy the auth answer's Set-Cookie to the client on denials too (`auth-always-set-cookie`). */
  alwaysSetCookie: boolean;
  /** Most time for the whole auth answer, ms. */
  timeoutMs: number;
  /** Extra headers of the auth request (ingress-nginx `auth-proxy-set-headers` ConfigMap); absent = none. */
  requestHeaders?: { name: string; value: string }[];
  /** Cache of auth answers (ingress-nginx `auth-cache-key` / `auth-cache-duration`); absent = every request is checked. */
  cache?: ExternalAuthCache;
  /**
   * auth-url with nginx variables in its path or query: evaluated per request (see `UrlTemplatePart`)
   * and used instead of `path`; absent = `path` as written.
   */
  pathTemplate?: UrlTemplatePart[];
  /**
   * auth-url whose host is `$host` (or `$http_host`): one target per host of the Ingress's rules
   * (resolved when translating, as nginx resolves the name), chosen by the request's host (lowercase,
   * without port); a request for another host (a server-alias) is answered 500. `cluster` and
   * `authority` above are those of the first. Absent = `cluster` and `authority` for every request.
   */
  hosts?: { host: string; cluster: string; authority: string }[];
  /**
   * auth-signin with nginx variables: the whole Location, evaluated per request, the redirect
   * parameter already appended when ingress-nginx appends it; absent = `signin` as written.
   */
  signinTemplate?: UrlTemplatePart[];
}

/**
 * One part of a URL written with nginx variables (ingress-nginx auth-url, auth-signin). Values are
 * inserted so that they cannot change the URL's structure: `$request_uri`, `$uri` and `$args` as
 * received (they are URI text already; a byte outside printable ASCII is percent-encoded),
 * `$arg_<name>` likewise with `/` and `?` percent-encoded too, `$escaped_request_uri` with everything but `A-Za-z0-9-._~` percent-encoded (nginx
 * set_escape_uri), `$host`, `$http_host`, `$scheme`, `$pass_access_scheme`, `$request_method` and
 * `$remote_addr` as they are when they hold only host characters, and `$http_<name>`,
 * `$cookie_<name>`, `$remote_user` percent-encoded like `$escaped_request_uri` (nginx inserts them raw).
 */
export type UrlTemplatePart = AuthCacheKeyPart;

/**
 * ingress-nginx `auth-cache-key` and `auth-cache-duration` (nginx `proxy_cache` on the auth
 * subrequest): an auth answer is kept per `zone` and evaluated `key` for the lifetime of the first
 * `valid` rule that lists its status (no rule: not kept); while kept, requests with the same key get
 * that answer without an auth request. As nginx, an answer is not kept when it sets a cookie or says
 * `Cache-Control: no-store`, `no-cache` or `private`; its `Cache-Control: max-age` (or
 * `X-Accel-Expires`) replaces the rule's lifetime (0 = not kept). Counters are per process.
 */
export interface ExternalAuthCache {
  /** Answers are shared only within a zone (nginx: the server name and the auth location), e.g. the route name. */
  zone: string;
  /** The key: parts concatenated (the nginx variables of auth-cache-key). */
  key: AuthCacheKeyPart[];
  /** Lifetimes by status in order (nginx `proxy_cache_valid`); `any` = every status. */
  valid: { statuses: number[] | 'any'; seconds: number }[];
}

/** One part of an auth cache key (an nginx variable, or literal text). */
export type AuthCacheKeyPart =
  | { kind: 'literal'; value: string }
  /** `$http_<name>`: the request header (lowercase name), all values joined with `,`; '' when absent. */
  | { kind: 'header'; name: string }
  /** `$cookie_<name>`: the cookie's value; '' when absent. */
  | { kind: 'cookie'; name: string }
  /** `$arg_<name>`: the query parameter's value; '' when absent. */
  | { kind: 'query'; name: string }
  /**
   * `$host`, `$remote_addr` (the client address), `$remote_user` (Basic credentials' user), `$request_uri`, `$uri`, `$args`, `$request_method`, `$scheme`;
   * in URLs also `$escaped_request_uri` (ingress-nginx), `$pass_access_scheme` (the scheme), `$http_host` (the Host / :authority as sent).
   */
  | { kind: 'request'; name: 'host' | 'remote_addr' | 'remote_user' | 'request_uri' | 'uri' | 'args' | 'request_method' | 'scheme' | 'escaped_request_uri' | 'pass_access_scheme' | 'http_host' };

/**
 * nginx realip (ingress-nginx `use-forwarded-headers` with `forwarded-for-header` and
 * `proxy-real-ip-cidr`): when the peer is inside `trusted`, the addresses of `header` are walked from
 * the right and the first one not inside `trusted` is the client (the leftmost when all are).
 */
export interface ClientAddress {
  /** Lowercase header name, e.g. `x-forwarded-for`. */
  header: string;
  /** Trusted proxies (addresses or CIDR blocks). */
  trusted: string[];
}

/** Client addresses (the connection's peer), as addresses or CIDR blocks, IPv4 or IPv6. */
export interface SourceRanges {
  /** A client inside one of these is answered 403 (checked first). */
  deny: string[];
  /** When non-empty, a client outside all of these is answered 403. */
  allow: string[];
}

/**
 * ingress-nginx `limit-rps`/`limit-rpm`/`limit-connections`: one zone per `zone` (the Ingress),
 * keyed by client address, per gateway process (ingress-nginx: per replica).
 */
export interface RequestLimit {
  /** Zone name, e.g. `ingress/default/web`; every route with the same zone shares the counters. */
  zone: string;
  /**
   * Requests per `periodMs` (nginx `limit_req rate`) with `burst` extra requests allowed at once
   * (`burst ... nodelay`): 1 + burst back-to-back requests pass, then one more every periodMs/rate.
   * null = no rate limit.
   */
  rate: { requests: number; periodMs: number; burst: number } | null;
  /** Requests in flight at once per client (`limit_conn`); null = no limit. */
  maxConcurrent: number | null;
  /** Clients (addresses or CIDRs) the limits never apply to. */
  exempt: string[];
  /** Status of a limited request (ConfigMap `limit-req-status-code`, default 503). */
  status: number;
  /**
   * Further rates checked together with `rate` (nginx applies every `limit_req` of a location, as
   * ingress-nginx's limit-rps and limit-rpm together): a request passes only when every rate has
   * room, and then counts against each; a refused request counts against none. Absent = `rate` only.
   */
  moreRates?: { requests: number; periodMs: number; burst: number }[];
  /** Status of a request refused by `maxConcurrent` (ConfigMap `limit-conn-status-code`); absent = `status`. */
  concurrencyStatus?: number;
}

/** HTTP Basic or Digest authentication (ingress-nginx `auth-type: basic` / `digest`). */
export interface BasicAuth {
  /**
   * `basic` (absent): RFC 7617, `users[].hash` as htpasswd writes it. `digest`: RFC 7616 with MD5 and
   * qop=auth, `users[].hash` the htdigest HA1 (hex MD5 of `user:realm:password`); nonces are stateless
   * (time plus a per-process MAC), valid for 5 minutes; nonce counts are not tracked.
   */
  scheme?: 'basic' | 'digest';
  /** Realm in `WWW-Authenticate: Basic realm="..."` of the 401 answer. */
  realm: string;
  /**
   * Users and their password hashes as htpasswd writes them: `$apr1$` / `$1$` (MD5-crypt),
   * `$5$` / `$6$` (SHA-crypt), `$2a$` / `$2b$` / `$2y$` (bcrypt, cost 4-14), `{SHA}` (base64
   * SHA-1), `{PLAIN}` (clear text). Empty together with `unavailable` = every
   * request is answered 503 (the Secret is missing or unusable, as ingress-nginx denies the location).
   */
  users: { name: string; hash: string }[];
  /** true: the credentials could not be loaded; every request is answered 503. */
  unavailable: boolean;
}
