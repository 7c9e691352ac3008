/**
 * Every `nginx.ingress.kubernetes.io/*` annotation meshgate knows, with what meshgate does with it.
 * PURE data. One table feeds translation (a diagnostic for everything not honoured), `meshgate
 * migrate` and docs/ingress-nginx-annotations.md (a test checks the document lists every key).
 *
 * Status:
 * - `honoured`: translated with ingress-nginx's semantics and defaults; a bad value is an error and
 *   the Ingress is not served (ingress-nginx drops such an Ingress too).
 * - `refused`: never executed, by design (nginx source text: the snippets). The Ingress is not served
 *   (see `SNIPPET_POLICY`).
 * - `unsupported`: meshgate does not implement it. A diagnostic says so. When ignoring it would open
 *   access the annotation was meant to restrict (`failClosed`), the Ingress is not served; otherwise
 *   it is served without that behaviour.
 * Keys under the prefix that are not in this table are `unknown`: a warning, the Ingress is served.
 */

export const NGINX_PREFIX = 'nginx.ingress.kubernetes.io/';

export type AnnotationStatus = 'honoured' | 'refused' | 'unsupported';

export interface AnnotationInfo {
  status: AnnotationStatus;
  /**
   * Only for `unsupported`: true when serving the Ingress without it would give access the author
   * meant to restrict (authentication, client certificates, WAF): the Ingress is then not served.
   */
  failClosed?: boolean;
  /** One sentence: what meshgate does, and how that differs from ingress-nginx. */
  note: string;
}

/**
 * Snippet policy: an Ingress carrying any `*-snippet` annotation is not served at all (error
 * MG_NGINX_SNIPPET_REFUSED), whatever `allow-snippet-annotations` says. This is ingress-nginx's own
 * default since v1.12 (`annotations-risk-level: High` rejects the Critical snippet keys), and the
 * only safe choice: a snippet often restricts access (`deny`, `return 403`, header checks), so
 * serving the rest of the Ingress without it could open what the author closed.
 */
export const SNIPPET_POLICY = 'ingress-not-served' as const;

const h = (note: string): AnnotationInfo => ({ status: 'honoured', note });
const u = (note: string, failClosed = false): AnnotationInfo => (failClosed ? { status: 'unsupported', failClosed, note } : { status: 'unsupported', note });
const snippet = (where: string): AnnotationInfo => ({ status: 'refused', note: `raw nginx directives (${where}); never executed: the Ingress is not served (CVE-2021-25742, CVE-2025-1974 class)` });

export const ANNOTATIONS: Readonly<Record<string, AnnotationInfo>> = {
  // Paths and rewrites
  'rewrite-target': h('whole path replaced by the target with $1..$n from the path regex; query kept; turns on regex mode for the host'),
  'use-regex': h('paths are case-insensitive regexes anchored at the start (RE2: lookaround and backreferences are refused); regex mode for every path of the host'),
  'app-root': h('GET of exactly / answered 302 to <scheme>://<host><app-root>'),
  'x-forwarded-prefix': h('X-Forwarded-Prefix sent upstream, only together with rewrite-target (as the nginx template)'),
  'preserve-trailing-slash': h('"true" keeps the trailing slash of the request URI in HTTPS redirects (ssl-redirect and force-ssl-redirect, per path); by default one trailing / is left out (/dir/ -> /dir), as lua_ingress.lua'),
  'upstream-vhost': h('Host sent upstream; X-Forwarded-Host keeps the client\'s'),
  // Redirects
  'ssl-redirect': h('per path, as an nginx location: plain-HTTP requests to this Ingress\'s paths of a host with a certificate (from any Ingress) answer 308 (http-redirect-code) to https://<Host without port><request URI>, unless "false"; requests matching no path follow the first Ingress of the host'),
  'force-ssl-redirect': h('as ssl-redirect, for this Ingress\'s paths even when the host has no certificate (TLS offloaded in front)'),
  'permanent-redirect': h('redirect to the URL verbatim (path and query not appended), before allowlists and auth'),
  'permanent-redirect-code': h('300-308, default 301 (an out-of-range code is an error)'),
  'temporal-redirect': h('redirect to the URL verbatim, wins over permanent-redirect'),
  'temporal-redirect-code': h('300-307, default 302 (an out-of-range code is an error)'),
  'from-to-www-redirect': h('the www. (or bare) twin of each host answers 308 (http-redirect-code) to the host, unless another rule defines it'),
  'server-alias': h('extra host names served like the Ingress host (first Ingress of the host; names defined by a rule keep their own rules)'),
  // Limits and timeouts
  'proxy-body-size': h('request bodies larger than the size answered 413 before the backend is contacted (Content-Length) or the upload is cut with 413 (chunked); 0 = no limit'),
  'client-body-buffer-size': h('validated; meshgate streams request bodies and never spills them to disk, so there is no buffer to size'),
  'proxy-connect-timeout': h('connect timeout of the Service\'s cluster (the first Ingress naming the Service decides, as the shared nginx upstream)'),
  'proxy-read-timeout': h('time to wait for the response head of each try; exceeded: 504 (retried per proxy-next-upstream)'),
  'proxy-send-timeout': h('validated; meshgate applies back-pressure instead of a per-write timeout, the read timeout bounds a stalled upload'),
  'proxy-next-upstream': h('retry conditions, default "error timeout" (the ConfigMap key, else ingress-nginx\'s default: every Ingress retries a broken or timed-out try); http_5xx/http_403/http_404/http_429 retry those answers; off = no retry; POST, LOCK and PATCH are retried only when the connection could not be made, unless non_idempotent'),
  'proxy-next-upstream-tries': h('total tries including the first (default 3, or the ConfigMap key; 0 = up to 10)'),
  'proxy-next-upstream-timeout': h('limit on the time spent on all tries, seconds (default 0 = none, or the ConfigMap key)'),
  'proxy-http-version': h('"1.1" (default) or "1.0": an HTTP/1.0 request line, no keep-alive (one connection per request), no chunked body: a body without Content-Length is read whole first (as nginx buffers it; at most proxy-body-size, else 16 MiB, more is 413) and sent with its Content-Length; ignored for HTTP/2 and gRPC backends'),
  'proxy-buffering': h('"off" (the default) is what meshgate does: responses are streamed; "on" is accepted and reported (info): responses are still streamed'),
  'proxy-request-buffering': h('"off" streams the body (meshgate always does); "on" (the nginx default) is accepted: bodies are streamed, proxy-body-size still applies'),
  // Access control
  'whitelist-source-range': h('client address outside the CIDRs: 403 (alias of allowlist-source-range)'),
  'allowlist-source-range': h('client address outside the CIDRs: 403'),
  'denylist-source-range': h('client address inside the CIDRs: 403, checked before the allowlist'),
  'auth-type': h('basic: 401 with WWW-Authenticate Basic realm; digest: RFC 7616 MD5 qop=auth with htdigest HA1 lines (stateless 5-minute nonces, nonce counts not tracked); Authorization removed before proxying'),
  'auth-secret': h('Secret in the Ingress namespace (ns/name elsewhere is refused); missing Secret or key: every request 503 as ingress-nginx'),
  'auth-secret-type': h('auth-file (htpasswd, or htdigest for digest, under key auth) or auth-map (key = user); hashes $apr1$, $1$, $5$, $6$ (SHA-crypt), $2a$/$2b$/$2y$ bcrypt (cost up to 14), {SHA}, {PLAIN}; other hashes are reported and that user never matches'),
  'auth-realm': h('realm of the Basic challenge'),
  // CORS
  'enable-cors': h('ingress-nginx\'s CORS template: an allowed request gets every CORS header on its answer (the backend\'s replaced); an allowed OPTIONS is answered 204 (text/plain, Content-Length 0) without calling the backend; with * every request is allowed and the answer says *'),
  'cors-allow-origin': h('comma list of scheme://host[:port], one *. wildcard label each, matched case-insensitively against the whole Origin; * (default) anywhere in the list allows any origin, even none'),
  'cors-allow-methods': h('Access-Control-Allow-Methods, joined with ", " (default GET, PUT, POST, DELETE, PATCH, OPTIONS)'),
  'cors-allow-headers': h('Access-Control-Allow-Headers (default DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization)'),
  'cors-expose-headers': h('Access-Control-Expose-Headers (default none)'),
  'cors-allow-credentials': h('Access-Control-Allow-Credentials (default true)'),
  'cors-max-age': h('Access-Control-Max-Age (default 1728000)'),
  // Rate limits
  'limit-rps': h('per client address and Ingress: burst rps*limit-burst-multiplier, then 503 (limit-req-status-code)'),
  'limit-rpm': h('as limit-rps, per minute (burst rpm*limit-burst-multiplier); with limit-rps both apply, as nginx\'s two limit_req zones'),
  'limit-burst-multiplier': h('burst = rate x multiplier (default 5)'),
  'limit-connections': h('concurrent requests per client address and Ingress; more: 503 (limit-conn-status-code)'),
  'limit-allowlist': h('CIDRs (or addresses) exempt from limit-rps, limit-rpm and limit-connections'),
  'limit-whitelist': h('alias of limit-allowlist (read when limit-allowlist is not set)'),
  'limit-rate': u('response bandwidth throttling is not implemented; responses go at full speed'),
  'limit-rate-after': u('response bandwidth throttling is not implemented'),
  // Canary
  'canary': h('this Ingress is the canary of the non-canary Ingress with the same host and path, attached to that path\'s Service: every path of any host proxying to that Service gets the canary rules, and only the first canary of a Service is served (as ingress-nginx\'s upstream alternatives); a lone canary is not served'),
  'canary-by-header': h('header value always -> canary, never -> main, other -> next rule'),
  'canary-by-header-value': h('exact value -> canary'),
  'canary-by-header-pattern': h('regex (RE2) on the header value -> canary; ignored when -value is set'),
  'canary-by-cookie': h('cookie value always -> canary, never -> main'),
  'canary-weight': h('share of the remaining requests sent to the canary'),
  'canary-weight-total': h('denominator of canary-weight (default 100; below 100 counts as 100)'),
  // Load balancing
  'affinity': h('cookie: sticky endpoint via a generated cookie <key>|<backend key> (HttpOnly; set only when the request has no usable cookie)'),
  'affinity-mode': h('balanced (default): a random key hashed onto the endpoint ring, so a scale-up moves about (n-c)/n clients; persistent: the cookie names the endpoint (md5 of the Service upstream and address:port), clients never move while it exists, a vanished endpoint\'s clients get a new one and a new cookie'),
  'affinity-canary-behavior': h('sticky (default): the canary Service takes the main\'s affinity settings; a cookie issued by the main keeps the client on the main and one issued by the canary on the canary, before the header, cookie and weight rules; legacy: the canary issues no cookie of its own (a main cookie still keeps the client on the main)'),
  'session-cookie-name': h('cookie name (default INGRESSCOOKIE)'),
  'session-cookie-path': h('cookie Path (default the Ingress path)'),
  'session-cookie-max-age': h('cookie Max-Age, seconds'),
  'session-cookie-expires': h('cookie lifetime, seconds (used as Max-Age when session-cookie-max-age is absent)'),
  'session-cookie-secure': h('"true": the cookie carries Secure (ingress-nginx also sets it on HTTPS by itself; meshgate only when asked)'),
  'session-cookie-domain': h('cookie Domain'),
  'session-cookie-samesite': h('cookie SameSite (None, Lax, Strict)'),
  'session-cookie-conditional-samesite-none': h('"true" with session-cookie-samesite None: SameSite=None is left out for browsers known to reject it (Chrome 40-69, iOS 12, Safari on macOS 10.14), as ingress-nginx'),
  'session-cookie-change-on-failure': h('"true": a retried request (proxy-next-upstream) goes to an endpoint not tried yet and the answer re-issues the cookie naming it; "false" (default): every try of a request carrying a valid cookie goes to the cookie\'s endpoint (up to proxy-next-upstream-tries) and the cookie is kept, as sticky.lua; a client without a cookie is retried on another endpoint and gets a cookie naming it'),
  'upstream-hash-by': h('consistent hash on $remote_addr/$binary_remote_addr, $http_<name>, $cookie_<name> or $arg_<name>; other variables are an error'),
  'upstream-hash-by-subset': h('"true": the endpoints are cut into groups of upstream-hash-by-subset-size (the last filled up from the start, as chashsubset.lua), the upstream-hash-by key picks a group on the ring and a random endpoint of it serves'),
  'upstream-hash-by-subset-size': h('size of the groups of upstream-hash-by-subset (default 3)'),
  'load-balance': h('round_robin -> ROUND_ROBIN, ewma -> LEAST_REQUEST (fewer requests in flight of two random picks)'),
  'service-upstream': h('the Service ClusterIP:port is the one endpoint (kube-proxy balances; no stickiness, no retry on another pod); headless Services are refused'),
  // Backends and TLS
  'backend-protocol': h('HTTP, HTTPS, GRPC, GRPCS; AUTO_HTTP: requests that came over HTTPS go to the backend over TLS (certificate checked as proxy-ssl-* say), the others in clear, as nginx\'s $scheme; FCGI reported, served as HTTP'),
  'proxy-ssl-secret': h('CA and client certificate for TLS to the backend (same namespace only)'),
  'proxy-ssl-verify': h('verify the backend certificate (default off)'),
  'proxy-ssl-name': h('SNI and verified name of the backend'),
  'proxy-ssl-server-name': h('meshgate always sends SNI; "off" is reported'),
  'proxy-ssl-ciphers': u('upstream cipher list not configurable; meshgate\'s defaults are used'),
  'proxy-ssl-protocols': u('upstream TLS versions not configurable; TLS 1.2 and 1.3'),
  'proxy-ssl-verify-depth': u('chain depth not limited'),
  'proxy-ssl-location-only': u('upstream TLS is per Service cluster'),
  'ssl-passthrough': h('"true": HTTPS connections whose SNI is the host are relayed unterminated (the ClientHello read, not answered) to the Service of the host\'s / path, on the same HTTPS port that terminates the other hosts, without --enable-ssl-passthrough; other paths and every other annotation of the Ingress are ignored for them; plain HTTP is still proxied'),
  'ssl-ciphers': u('per-host ciphers not configurable; meshgate\'s defaults (ECDHE AEAD) are used'),
  'ssl-prefer-server-ciphers': u('not configurable'),
  'secure-verify-ca-secret': u('legacy key, replaced by proxy-ssl-secret'),
  // Authentication and client certificates not implemented: fail closed.
  'auth-url': h('external auth by subrequest (nginx auth_request): client headers plus X-Original-URL/-Method, no body; 2xx allows, 401/403 returned, anything else 500; https auth services are not certificate-checked (nginx default); nginx variables: $host/$http_host as the host (resolved per rule host of the Ingress, never from what a client sends; wildcard-only Ingresses refused), $request_uri, $escaped_request_uri, $uri, $args, $arg_*, $http_*, $cookie_*, $host, $scheme, $pass_access_scheme, $remote_addr, $remote_user, $request_method in path and query (header and cookie values percent-encoded, $arg_* with / and ? encoded, so no value can add parameters or climb a path); any other variable is an error'),
  'auth-signin': h('401 from auth-url answered 302 to this URL with rd=$pass_access_scheme://$http_host$escaped_request_uri appended unless the URL sets rd (ingress-nginx buildAuthSignURL); the same nginx variables as auth-url, evaluated per request'),
  'auth-signin-redirect-param': h('name of the sign-in redirect parameter (default rd)'),
  'auth-method': h('method of the auth request (default: the client\'s); also sends X-Original-URI and X-Scheme'),
  'auth-response-headers': h('headers of the auth answer set on the upstream request (absent: removed)'),
  'auth-request-redirect': h('value of X-Auth-Request-Redirect (default the request URI)'),
  'auth-always-set-cookie': h('the auth answer\'s Set-Cookie also on denials'),
  'auth-cache-key': h('auth answers are cached per route and evaluated key ($http_<name>, $cookie_<name>, $arg_<name>, $host, $remote_addr, $remote_user, $request_uri, $uri, $args, $request_method, $scheme; other variables are an error); not cached when the answer sets a cookie or says Cache-Control no-store/no-cache/private; max-age and X-Accel-Expires override the duration; per gateway process'),
  'auth-cache-duration': h('comma list of [code ...] time (nginx proxy_cache_valid; default 200 202 401 5m; a time alone caches 200, 301, 302; any = every status)'),
  'auth-keepalive': h('connections to the auth service are always pooled'),
  'auth-keepalive-requests': h('connections to the auth service are always pooled'),
  'auth-keepalive-share-vars': u('no effect in meshgate'),
  'auth-keepalive-timeout': h('connections to the auth service are always pooled'),
  'auth-proxy-set-headers': h('headers of a ConfigMap (same namespace) added to the auth request (nginx variables refused)'),
  'enable-global-auth': u('there is no global auth-url in meshgate'),
  'auth-tls-secret': h('client certificates verified against ca.crt (and ca.crl) of the Secret for every HTTPS request of the host (first Ingress of the host); a presented certificate that does not verify is answered 400 after the handshake, as nginx'),
  'auth-tls-verify-client': h('on (default): no certificate is 400 "No required SSL certificate was sent", one that does not verify 400 "The SSL certificate error" (or the auth-tls-error-page redirect); optional: verified when presented; optional_no_ca: asked for and passed upstream whether or not it verifies (ssl-client-verify FAILED:<reason>); off: not asked'),
  'auth-tls-verify-depth': h('most intermediate CAs between the client certificate and the ca.crt root (nginx ssl_verify_depth, as OpenSSL counts it; default 1); a longer chain fails verification ("certificate chain too long")'),
  'auth-tls-error-page': h('a request without the required certificate, or with one that does not verify, is redirected (302) there'),
  'auth-tls-match-cn': h('RE2 regex on the subject (RFC 2253, e.g. CN=a,O=b); no match: 403'),
  'auth-tls-pass-certificate-to-upstream': h('URL-escaped PEM in ssl-client-cert; ssl-client-verify, ssl-client-subject-dn, ssl-client-issuer-dn are always set (client-sent values removed)'),
  'satisfy': u('auth and allowlist are both required (satisfy all)', true),
  'enable-modsecurity': u('no WAF in meshgate; the Ingress is not served rather than served unprotected', true),
  'enable-owasp-core-rules': u('no WAF in meshgate', true),
  'modsecurity-transaction-id': u('no WAF in meshgate'),
  // Errors and default backends
  'custom-http-errors': h('answers with a listed status are replaced by GET / to the default backend with X-Code, X-Format, X-Original-URI, X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port, X-Request-ID: the default-backend annotation\'s Service, else --default-backend-service (ingress-nginx\'s flag; without either it is reported and not applied); replaces the ConfigMap\'s custom-http-errors for this Ingress'),
  'default-backend': h('Service (same namespace, first port) that gets the requests when the path\'s Service has no ready endpoint, with X-Code 503, X-Namespace, X-Ingress-Name, X-Service-Name, X-Service-Port (not X-Original-URI, X-Format, X-Request-ID); ns/name elsewhere refused'),
  'disable-proxy-intercept-errors': h('"true": custom-http-errors is not applied'),
  // Headers
  'custom-headers': h('response headers from a ConfigMap (same namespace); with --nginx-configmap only names in global-allowed-response-headers (when that key is set); nginx variables in values are refused'),
  'connection-proxy-header': u('the Connection header sent upstream is managed by meshgate'),
  'proxy-cookie-domain': u('Set-Cookie rewriting is not implemented'),
  'proxy-cookie-path': u('Set-Cookie rewriting is not implemented'),
  'proxy-redirect-from': h('Location and Refresh headers starting with this literal prefix are rewritten (off/default: none, as ingress-nginx\'s proxy_redirect off); ~regex and variables refused'),
  'proxy-redirect-to': h('the replacement of the proxy-redirect-from prefix'),
  'use-port-in-redirects': h('"true": the HTTPS redirects of this Ingress\'s paths name meshgate\'s HTTPS port as clients reach it (--port-map aware), 443 included (https://host:443/p), as lua_ingress.lua names --https-port; "false" (default, or the ConfigMap\'s use-port-in-redirects): never, whatever the HTTPS port'),
  'relative-redirects': u('Location rewriting is not implemented'),
  // Mirroring
  'mirror-target': h('scheme://host[:port]$request_uri: every request copied there (fire and forget, answer ignored; a slow mirror never slows the original, unlike nginx); the host is a Service when it names one'),
  'mirror-host': h('Host of the copies (default the mirror-target\'s host name, as ingress-nginx; nginx variables refused)'),
  'mirror-request-body': h('"on" (default): the whole body is mirrored once it has arrived (nginx buffers it for the mirror subrequest), kept in memory up to proxy-body-size (at most 64 MiB; 8 MiB without a body limit); a larger body is proxied but not mirrored; "off": the copy goes at once without the body'),
  // nginx tuning and observability
  'proxy-buffer-size': u('nginx buffer tuning; meshgate accepts response heads up to its own limit'),
  'proxy-buffers-number': u('nginx buffer tuning; no meaning for meshgate'),
  'proxy-busy-buffers-size': u('nginx buffer tuning; no meaning for meshgate'),
  'proxy-max-temp-file-size': u('nginx buffer tuning; no meaning for meshgate'),
  'http2-push-preload': u('HTTP/2 push is not implemented (browsers dropped it)'),
  'enable-rewrite-log': u('nginx debug logging'),
  'enable-access-log': u('per-Ingress access-log opt-out is not implemented (a CEL filter on xds.route_name would also drop requests that match no route); use a Telemetry accessLogging filter'),
  'enable-opentelemetry': u('tracing is configured with --tracing-* flags or the Telemetry API'),
  'opentelemetry-trust-incoming-span': u('tracing is configured with --tracing-* flags or the Telemetry API'),
  'opentelemetry-operation-name': u('tracing is configured with --tracing-* flags or the Telemetry API'),
  'enable-opentracing': u('removed from ingress-nginx; use the Telemetry API'),
  'fastcgi-index': u('FastCGI backends are not supported'),
  'fastcgi-params-configmap': u('FastCGI backends are not supported'),
  'secure-backends': u('legacy key, replaced by backend-protocol: HTTPS'),
  // Snippets: refused.
  'configuration-snippet': snippet('location block'),
  'server-snippet': snippet('server block'),
  'auth-snippet': snippet('auth subrequest location'),
  'stream-snippet': snippet('stream block'),
  'modsecurity-snippet': snippet('ModSecurity rules'),
};

/** The controller ConfigMap keys holding nginx text: refused (the ConfigMap is still read). */
export const CONFIGMAP_SNIPPET_KEYS = ['main-snippet', 'http-snippet', 'server-snippet', 'location-snippet', 'stream-snippet'];

export type Classification = { key: string; name: string; status: AnnotationStatus | 'unknown'; info: AnnotationInfo | null };

/** Every `nginx.ingress.kubernetes.io/` annotation of an object, classified, sorted by name. */
export function classifyAnnotations(annotations: Readonly<Record<string, string>>): Classification[] {
  const out: Classification[] = [];
  for (const key of Object.keys(annotations).sort()) {
    if (!key.startsWith(NGINX_PREFIX)) continue;
    const name = key.slice(NGINX_PREFIX.length);
    // Any `*-snippet` meshgate does not list (a future or misspelt one) is nginx source text too: refused.
    const info = Object.hasOwn(ANNOTATIONS, name) ? ANNOTATIONS[name] : name.endsWith('-snippet') ? snippet('unknown snippet') : null;
    out.push({ key, name, status: info?.status ?? 'unknown', info });
  }
  return out;
}
