/**
 * Edge security in the IR: request hardening (path normalization, header-name policy), JWT
 * authentication (Istio RequestAuthentication), authorization (Istio AuthorizationPolicy) and local
 * rate limits. Plain data, like the rest of the IR; the runtime compiles it once per snapshot.
 *
 * Scope: everything here applies to every HTTP listener of the snapshot (Istio applies security
 * policies per workload, and one meshgate snapshot is one gateway workload). Port-specific rules use
 * the `destination.port` attribute.
 */

import type { ProxyHeaders } from './proxy-headers.js';
import type { SourceRef } from './types.js';

/**
 * Path normalization (Istio MeshConfig `pathNormalization`), applied once to every request before
 * routing and authorization; the normalized path is also what is forwarded upstream.
 * - `NONE`: the path is used as sent.
 * - `BASE`: RFC 3986 normalization: percent-decoding of unreserved characters (`%61` -> `a`),
 *   uppercase hex in the remaining escapes, `\` -> `/`, and `.`/`..` segments resolved.
 * - `MERGE_SLASHES`: `BASE`, then runs of `/` merged into one. **meshgate's default.**
 * - `DECODE_AND_MERGE_SLASHES`: `MERGE_SLASHES`, with `%2F`/`%5C` decoded first (so `/a%2Fb` is `/a/b`).
 * In every mode a path holding `%00`, a malformed escape (`%zz`), a control character or a fragment
 * is answered 400.
 */
export type PathNormalizationMode = 'NONE' | 'BASE' | 'MERGE_SLASHES' | 'DECODE_AND_MERGE_SLASHES';

/**
 * What an encoded slash or backslash (`%2F`, `%2f`, `%5C`, `%5c`) in the path does (Envoy
 * `path_with_escaped_slashes_action`). `REJECT` (default): 400, so no policy can be bypassed through
 * an encoding the upstream may decode differently. `DECODE`: decoded to `/` before normalization
 * (implied by `DECODE_AND_MERGE_SLASHES`). `KEEP`: forwarded as sent (policies then see `%2F`).
 */
export type EscapedSlashesAction = 'REJECT' | 'DECODE' | 'KEEP';

/**
 * Request header names containing `_` (Envoy `headers_with_underscores_action`). `REJECT_REQUEST`
 * (default, Envoy's edge advice): 400. `DROP_HEADER`: the header is removed before policies and the
 * upstream see it. `ALLOW`: kept.
 */
export type UnderscoreHeadersAction = 'REJECT_REQUEST' | 'DROP_HEADER' | 'ALLOW';

/**
 * What the gateway does with `x-forwarded-client-cert` (XFCC; Envoy `forward_client_cert_details`,
 * Istio ProxyConfig `gatewayTopology.forwardClientCertDetails`). "mTLS" below means a TLS connection
 * on which the client presented a certificate the listener verified (Gateway MUTUAL/OPTIONAL_MUTUAL).
 * - `SANITIZE`: the header is always removed.
 * - `FORWARD_ONLY`: kept as sent on mTLS connections, removed on others.
 * - `APPEND_FORWARD`: on mTLS connections the gateway's element is appended (`,`); removed on others.
 * - `SANITIZE_SET`: on mTLS connections replaced by the gateway's element; removed on others.
 *   **Istio's gateway default.**
 * - `ALWAYS_FORWARD_ONLY`: always kept as sent, on every connection.
 * The element is Envoy's, with the details Istio asks for (Subject, Cert, URI, DNS):
 * `By=<URI SAN of the gateway certificate>;Hash=<hex SHA-256 of the client certificate DER>;`
 * `Cert="<URL-encoded PEM>";Subject="<RFC 2253 subject>";URI=<URI SAN>;DNS=<DNS SAN>` (`By` once
 * per URI SAN of the serving certificate, omitted when it has none; `URI=` kept empty when the client
 * certificate has no URI SAN; one `URI=`/`DNS=` per SAN).
 */
export type ForwardClientCertDetails = 'SANITIZE' | 'FORWARD_ONLY' | 'APPEND_FORWARD' | 'SANITIZE_SET' | 'ALWAYS_FORWARD_ONLY';

export interface SecurityConfig {
  /** Default `MERGE_SLASHES` (Istio's own default is `BASE`; meshgate is stricter at the edge). */
  pathNormalization: PathNormalizationMode;
  /** Default `REJECT`; `DECODE_AND_MERGE_SLASHES` decodes whatever this says. */
  escapedSlashes: EscapedSlashesAction;
  /** Default `REJECT_REQUEST`. */
  headersWithUnderscores: UnderscoreHeadersAction;
  /**
   * JWT rules of every RequestAuthentication that applies to this gateway, in canonical order
   * (namespace, name, rule index). `[]` = no JWT processing. A request with no token passes
   * unauthenticated; a present but invalid token is 401.
   */
  jwtRules: JwtRule[];
  /**
   * Every AuthorizationPolicy that applies to this gateway, in canonical order. Evaluated as Istio
   * does: CUSTOM, then DENY, then ALLOW (AUDIT never changes the answer); `[]` = allow everything.
   */
  authorizationPolicies: AuthorizationPolicy[];
  /**
   * HTTP external authorization services (Istio MeshConfig `extensionProviders[].envoyExtAuthzHttp`)
   * named by the `provider` of a CUSTOM policy above, in name order; only providers some policy uses
   * are listed. `[]` = none.
   */
  extAuthzProviders: ExtAuthzHttpProvider[];
  /** Token-bucket limits on the routes of one object (annotation `meshgate.io/local-rate-limit`). */
  rateLimits: LocalRateLimit[];
  /**
   * x-forwarded-client-cert handling on every HTTP listener (MeshConfig
   * `defaultConfig.gatewayTopology.forwardClientCertDetails`). Absent = `SANITIZE_SET`, Istio's
   * gateway default (the field is written only when MeshConfig sets it).
   */
  forwardClientCertDetails?: ForwardClientCertDetails;
  /**
   * Trusted proxies in front of the gateway (MeshConfig `defaultConfig.gatewayTopology.numTrustedProxies`,
   * Envoy `xff_num_trusted_hops`). With N > 0 the client address is the Nth address from the right
   * of the request's x-forwarded-for (the connection's peer when XFF has fewer, or that one is no IP);
   * it is authorization's `remote.ip` (`remoteIpBlocks`) and the `remote-ip` key of local rate
   * limits, while `source.ip` (`ipBlocks`) stays the peer. x-forwarded-for itself is always the
   * client's list with the peer appended. Absent = 0.
   */
  numTrustedProxies?: number;
  /**
   * Istio ProxyConfig `proxyHeaders` of the proxy this snapshot serves (the gateway workload, or a
   * sidecar's pod): see `proxy-headers.ts`. Absent = every default (nothing to do per request).
   */
  proxyHeaders?: ProxyHeaders;
}

/** One `jwtRules[]` entry of a RequestAuthentication. */
export interface JwtRule {
  /** Stable name `requestauthentication/<ns>/<name>/jwt/<i>`. */
  name: string;
  source: SourceRef;
  /** Required `iss` claim. */
  issuer: string;
  /** Accepted `aud` values (any one); `[]` = the audience is not checked (Istio). */
  audiences: string[];
  /** Inline JWKS (JSON text); null when `jwksUri` is used. */
  jwks: string | null;
  /**
   * JWKS URL, fetched by each data-plane process (never by translate, which is pure): on first use,
   * every `jwksRefreshMs`, and on a token whose `kid` is unknown (at most once per cool-down). When
   * the issuer is down the last good keys stay in use. null when `jwks` is inline.
   */
  jwksUri: string | null;
  /** JWKS fetch timeout in ms (Istio `timeout`, default 5000). */
  jwksTimeoutMs: number;
  /**
   * Where tokens are looked for, all explicit: Istio's default when the rule names no location is
   * header `authorization` with prefix `Bearer ` and query parameter `access_token`.
   * Header names lowercase.
   */
  fromHeaders: { name: string; prefix: string }[];
  fromParams: string[];
  fromCookies: string[];
  /** Header that receives the base64url JSON payload of a verified token; null = none. */
  outputPayloadToHeader: string | null;
  /** Claims (string, number or boolean) copied to request headers (overwriting); header names lowercase. */
  outputClaimToHeaders: { header: string; claim: string }[];
  /** Keep the token in the request sent upstream (default false: the header carrying it is removed). */
  forwardOriginalToken: boolean;
  /** Claims split on spaces for authorization (`scope` and `permission` always are). */
  spaceDelimitedClaims: string[];
}

/**
 * An attribute condition of an authorization rule, the one shape for `from.source`, `to.operation`
 * and `when` fields. It holds when the attribute matches one of `values` (if any) and none of
 * `notValues` (if any). An absent attribute (no JWT, no client certificate) matches no value and
 * satisfies every `notValues`.
 */
export interface AuthzCondition {
  /**
   * Attribute: `source.principal`, `source.namespace`, `source.ip`, `remote.ip`,
   * `request.auth.principal`, `request.auth.audiences`, `request.auth.presenter`,
   * `request.auth.claims[a][b]`, `request.headers[name]` (lowercase name), `request.host`,
   * `request.method`, `request.path`, `destination.port`, `destination.ip`, `connection.sni`.
   */
  key: string;
  /**
   * Strings are matched as Istio does: exact, `prefix*`, `*suffix`, `*` (any non-empty value);
   * `request.host` case-insensitively; `request.path` also with URI templates `{*}` (one segment)
   * and `{**}` (the rest); IP attributes as addresses or CIDR blocks; ports as decimal numbers.
   */
  values: string[];
  notValues: string[];
}

/** A rule matches when one `from` entry, one `to` entry and every `when` condition match. */
export interface AuthzRule {
  /** Each entry is a set of conditions that must all hold; `[]` = any source. */
  from: AuthzCondition[][];
  /** Each entry is a set of conditions that must all hold; `[]` = any operation. */
  to: AuthzCondition[][];
  when: AuthzCondition[];
}

export interface AuthorizationPolicy {
  /** Stable name `authorizationpolicy/<ns>/<name>`. */
  name: string;
  source: SourceRef;
  action: 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';
  /**
   * CUSTOM: the `provider.name`, the `name` of an entry of `SecurityConfig.extAuthzProviders`; a
   * request the policy matches is checked with that service. When no such provider exists (not in
   * MeshConfig, or not an HTTP ext-authz provider) the policy denies (403) every request it matches:
   * it fails closed, never open. null for the other actions.
   */
  provider: string | null;
  /** The policy matches when any rule does; `[]` (no rules) never matches (an ALLOW then allows nothing). */
  rules: AuthzRule[];
  /** Istio annotation `istio.io/dry-run: "true"`: evaluated and logged, never enforced. */
  dryRun: boolean;
}

/**
 * An HTTP external authorization service (Envoy `ext_authz` with an HTTP service; Istio
 * `envoyExtAuthzHttp`). For each request a CUSTOM policy matches, the gateway sends a check request
 * with the original method, `pathPrefix` + the original path (query included), no body, the headers
 * listed below and `x-forwarded-for`/`-proto`/`-host`. A 200 answer allows (the request then still
 * goes through DENY and ALLOW policies); any other status denies with that status, body and headers.
 * A connection error or timeout answers `statusOnError`, or allows when `failOpen`.
 */
export interface ExtAuthzHttpProvider {
  /** The MeshConfig `extensionProviders[].name` policies refer to. */
  name: string;
  /**
   * The IR cluster the check requests go to (from `service` and `port`, resolved like a route
   * destination); a missing Service gives a `discovery: 'missing'` cluster, i.e. `statusOnError`.
   */
  cluster: string;
  /** Most time to wait for the whole answer, in ms (Istio `timeout`, default 600 000 = 600 s). */
  timeoutMs: number;
  /** Prepended to the request path in the check request (Istio `pathPrefix`); default ''. */
  pathPrefix: string;
  /** Allow the request when the service cannot be reached or times out (default false). */
  failOpen: boolean;
  /** Status answered when the service cannot be reached or times out, unless `failOpen` (default 403). */
  statusOnError: number;
  /**
   * Client request headers copied into the check request: patterns `name` (exact), `prefix*`,
   * `*suffix`, matched case-insensitively; lowercase. `host` (the original authority),
   * `authorization` and the `x-forwarded-*` headers are always sent. Default [].
   */
  includeRequestHeadersInCheck: string[];
  /** Fixed headers added to every check request (Istio `includeAdditionalHeadersInCheck`); names lowercase. */
  includeAdditionalHeadersInCheck: { name: string; value: string }[];
  /**
   * Headers of a 200 answer copied (overwriting) into the request sent upstream; patterns as
   * `includeRequestHeadersInCheck`. [] = the request goes upstream unmodified.
   */
  headersToUpstreamOnAllow: string[];
  /**
   * Headers of a denying answer copied into the response to the client; patterns as above.
   * [] = every header of the answer except hop-by-hop ones and `host`.
   */
  headersToDownstreamOnDeny: string[];
}

/**
 * A token bucket on every route made by one object: `maxTokens` requests at once, refilled with
 * `tokensPerFill` every `fillIntervalMs`. Over the limit: 429 with `retry-after` and `x-ratelimit-*`.
 */
export interface LocalRateLimit {
  /** Stable name `ratelimit/<kind>/<ns>/<name>`. */
  name: string;
  source: SourceRef;
  /** The object whose routes are limited (kind `Ingress` or `VirtualService`). */
  target: { kind: string; namespace: string; name: string };
  maxTokens: number;
  tokensPerFill: number;
  fillIntervalMs: number;
  /** One bucket per route (`route`), per client address (`remote-ip`), or per value of a header. */
  key: { kind: 'route' } | { kind: 'remote-ip' } | { kind: 'header'; name: string };
}

/** The security of a snapshot with no policies and meshgate's safe defaults. */
export function defaultSecurityConfig(): SecurityConfig {
  return {
    pathNormalization: 'MERGE_SLASHES',
    escapedSlashes: 'REJECT',
    headersWithUnderscores: 'REJECT_REQUEST',
    jwtRules: [],
    authorizationPolicies: [],
    extAuthzProviders: [],
    rateLimits: [],
  };
}
