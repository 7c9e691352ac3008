/**
 * The headers a proxy adds, replaces or passes on by itself (Istio ProxyConfig `proxyHeaders`, read
 * from MeshConfig `defaultConfig.proxyHeaders` and the pod's `proxy.istio.io/config` annotation;
 * translate/istio/proxy-headers.ts). Every field is optional and written only when it differs from
 * meshgate's default, so a snapshot without ProxyConfig has no `proxyHeaders` at all and the data
 * plane does nothing for it per request.
 *
 * Istio 1.2x (`pilot/pkg/networking/util/proxy_headers.go`) applies these to the gateway's listeners
 * and to a sidecar's inbound and outbound listeners; where a field applies to some of them only, its
 * comment says so.
 */
import type { ForwardClientCertDetails } from './security.js';

export interface ProxyHeaders {
  /**
   * The `server` response header (Envoy `server_name` and `server_header_transformation`).
   * Absent: `OVERWRITE` with `meshgate` (meshgate's default: docs/sidecar.md, "The server header").
   * `overwrite`: with `name` (`proxyHeaders.server.value`), on relayed and local answers.
   * `pass-through` (`proxyHeaders.server.disabled: true`, Envoy `PASS_THROUGH`): the upstream's own
   * `server` header is relayed unchanged (none when it sent none) and local answers carry none.
   */
  server?: { mode: 'overwrite'; name: string } | { mode: 'pass-through' };
  /**
   * false: no `x-request-id` is generated (`proxyHeaders.requestId.disabled: true`, Envoy
   * `generate_request_id: false`); a client's own is still passed on. Absent = true.
   */
  requestId?: false;
  /**
   * false: the gateway and the sidecar's outbound side no longer set `x-envoy-attempt-count` on
   * upstream requests (`proxyHeaders.attemptCount.disabled: true`, Envoy
   * `include_request_attempt_count: false`); a client's own header is then passed on unchanged.
   * Absent = true.
   */
  attemptCount?: false;
  /**
   * false: the router's `x-envoy-*` headers are not added (`proxyHeaders.envoyDebugHeaders.disabled:
   * true`, Envoy router `suppress_envoy_headers`): `x-envoy-expected-rq-timeout-ms` on the gateway's
   * and a sidecar's outbound requests, `x-envoy-upstream-service-time` on relayed
   * answers, `x-envoy-overloaded` on circuit-breaker answers, and meshgate's own
   * `x-meshgate-flags` on local answers. Absent = true.
   */
  envoyDebugHeaders?: false;
  /**
   * `IN_MESH` (`proxyHeaders.metadataExchangeHeaders.mode`): `x-envoy-peer-metadata` and
   * `x-envoy-peer-metadata-id` only to Istio mTLS upstreams. meshgate already sends them only
   * there, so this changes nothing at run time; it is kept so dumps show what was asked.
   */
  metadataExchange?: 'IN_MESH';
  /**
   * A sidecar's inbound side only (`proxyHeaders.forwardedClientCert`): what it does with
   * `x-forwarded-client-cert`. Absent = `APPEND_FORWARD` (Istio's sidecar default). The gateway takes
   * this from `gatewayTopology.forwardClientCertDetails` (`SecurityConfig.forwardClientCertDetails`)
   * instead, as Istio's does.
   */
  forwardClientCertDetails?: ForwardClientCertDetails;
  /**
   * A sidecar's inbound side only (`proxyHeaders.setCurrentClientCertDetails`): the parts of the
   * client certificate its XFCC element carries, with `APPEND_FORWARD` or `SANITIZE_SET`. `Hash` is
   * always there and `By` whenever the sidecar's certificate has a URI SAN. Absent = Istio's sidecar
   * default: Subject, URI and DNS, without Cert and Chain.
   */
  clientCertDetails?: ClientCertDetails;
}

/** Envoy `set_current_client_cert_details`. */
export interface ClientCertDetails {
  subject: boolean;
  /** The client certificate, URL-encoded PEM (`Cert="…"`). */
  cert: boolean;
  /** The client's certificate chain, leaf first, URL-encoded PEM (`Chain="…"`). */
  chain: boolean;
  dns: boolean;
  uri: boolean;
}
