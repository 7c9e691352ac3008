/**
 * A sidecar's view of the mesh (reference/mesh.md §0, §2.5-2.11): what one `meshgate sidecar` in one
 * pod needs to serve its outbound (15001) and inbound (15006) traffic. Plain data, like the rest of
 * the IR; keys and certificates never enter it (the workload certificate comes from the CA).
 *
 * The control plane computes it per proxy with `translateSidecar(resources, proxy, options)`
 * (translate/sidecar/), a pure function: equal inputs give a byte-identical view and version. It is
 * carried as `IRSnapshot.sidecar`, so one snapshot holds the view's clusters (`clusters`: the
 * `outbound|port|subset|fqdn` and `inbound|port||` clusters), its security (`security`: the
 * AuthorizationPolicies, RequestAuthentication rules and rate limits selecting this workload, for its
 * inbound side), its telemetry and its PeerAuthentication. A sidecar snapshot has `listeners: []` and
 * `tcpListeners: []`: the sidecar binds no per-service sockets; its two capture listeners consult
 * the tables below by original destination.
 */
import type { Listener, TcpListener } from './types.js';
import type { MtlsMode } from './mesh.js';

/** Who the proxy is: the pod it runs in. */
export interface SidecarProxy {
  namespace: string;
  serviceAccount: string;
  /** Pod name; '' when not known. */
  podName: string;
  /** Pod IPs (v4 and/or v6), as the sidecar was told (`--pod-ip`). */
  podIps: string[];
  /** The pod's labels (selectors of AuthorizationPolicy, PeerAuthentication, Sidecar, Telemetry). */
  labels: Record<string, string>;
  /** `spiffe://<trust domain>/ns/<namespace>/sa/<service account>`. */
  spiffeId: string;
  /**
   * Workload name for telemetry and peer metadata, as Istio derives it (`GetWorkloadMetaFromPod`):
   * the `service.istio.io/workload-name` label, else the controller of a pod with a generated name
   * (a ReplicaSet's Deployment, a Job's CronJob...), else the pod name. Never the `app` label.
   */
  workload: string;
}

/** Protocol of a service port, from its name or appProtocol (Istio's protocol selection). */
export type MeshPortProtocol = 'HTTP' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS' | 'UNKNOWN';

/**
 * One service port the proxy may call (after Sidecar `egress.hosts` and `exportTo` scoping): the
 * original destinations that mean it, and how its traffic is handled.
 */
export interface OutboundService {
  /** FQDN, e.g. `reviews.default.svc.cluster.local` (ServiceEntry hosts as written). */
  host: string;
  namespace: string;
  /** Service port number (what clients dial). */
  port: number;
  protocol: MeshPortProtocol;
  /**
   * Destinations meaning this service port: cluster IPs (VIP) and, for headless services and
   * ServiceEntries with endpoint addresses, endpoint IPs. Matched against the original destination
   * address with `port`. A VIP match wins over an endpoint-address match.
   */
  addresses: string[];
  /**
   * HTTP/HTTP2/GRPC ports, and UNKNOWN ports once sniffed as HTTP: the name of the entry in
   * `SidecarView.outboundHttp` (Istio's per-port route table `<port>`) that routes its requests.
   * null for TCP/TLS ports.
   */
  httpRoutes: string | null;
  /**
   * TCP/TLS ports, and UNKNOWN ports whose first bytes are not HTTP: the name of the entry in
   * `SidecarView.outboundTcp` that relays the connection (VirtualService `tcp`/`tls` routes for the
   * host, else the default route to `outbound|port||host`). null only when no relay exists.
   */
  tcpRoutes: string | null;
  /**
   * A wildcard ServiceEntry host (`*.example.com`), or an exact one with resolution NONE and no
   * endpoints, whose cluster has no endpoints of its own: where the proxy sends each connection
   * (Envoy's ORIGINAL_DST cluster / dynamic forward proxy).
   * `original-dst` (resolution NONE): the original destination; `dynamic-dns` (DYNAMIC_DNS): the
   * request's Host (HTTP) or the ClientHello's SNI (TLS), resolved when connecting, on the Host's
   * port else the service port. Absent for every other service.
   */
  forward?: 'original-dst' | 'dynamic-dns';
}

/** One inbound port of the workload: what arrives at `<pod IP>:<port>` through 15006. */
export interface InboundPort {
  /** Target (container) port. */
  port: number;
  /** From the Service port(s) targeting it; `UNKNOWN` (sniffed) when none says. */
  protocol: MeshPortProtocol;
  /** Effective PeerAuthentication mode for this port (never UNSET: nothing set at all = PERMISSIVE). */
  mtls: Exclude<MtlsMode, 'UNSET'>;
  /**
   * HTTP: name of the entry in `SidecarView.inboundHttp` (one virtual host `*` forwarding to
   * `inbound|<port>||`, with Istio's inbound defaults: no retries but reset-before-request, no
   * timeout). null for TCP ports (relayed to `inbound|<port>||`).
   */
  httpRoutes: string | null;
  /** `inbound|<port>||`: the cluster whose endpoint is the original destination, dialled from 127.0.0.6. */
  cluster: string;
}

/** A workload the proxy may see as a peer: the IP → workload lookup telemetry uses (mesh.md §4). */
export interface MeshWorkload {
  ip: string;
  namespace: string;
  /** Workload name (as `SidecarProxy.workload`; a WorkloadEntry's as Istio's `WorkloadNameFromWorkloadEntry`). */
  name: string;
  serviceAccount: string;
  /** `app` / `version` labels (the `*_app` / `*_version` metric labels); '' when absent. */
  app: string;
  version: string;
  /**
   * Istio's canonical service (`service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`,
   * else the workload name) and revision (`service.istio.io/canonical-revision`,
   * `app.kubernetes.io/version`, `version`, else `latest`).
   */
  canonicalService: string;
  canonicalRevision: string;
  /** Labelled `security.istio.io/tlsMode: istio` (has a sidecar). */
  meshed: boolean;
}

export interface SidecarView {
  proxy: SidecarProxy;
  /** MeshConfig `outboundTrafficPolicy.mode`, or the Sidecar resource's: unknown destinations pass through (ALLOW_ANY) or get 502 / are closed (REGISTRY_ONLY). */
  outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  /** Service ports the proxy may call, sorted by host then port. */
  outbound: OutboundService[];
  /**
   * Outbound HTTP route tables, one per service port number (Istio's RDS route `<port>`), named
   * `outbound_<port>` (`Listener.name`). Each has `protocol: 'HTTP'`, `port`/`externalPort` = the
   * service port, `address: '0.0.0.0'`, one filter chain without TLS whose virtual hosts have the
   * domains Istio gives a service port: `fqdn`, `fqdn:port`, the short names within the namespace
   * (`name`, `name.ns`, `name.ns.svc`, with and without `:port`) and `VIP:port`. Routes come from the
   * VirtualServices that apply to `mesh` (first VirtualService per host wins: no merging on
   * sidecars), else one default route to `outbound|port||fqdn`. Never bound as sockets.
   */
  outboundHttp: Listener[];
  /** Outbound TCP relays, named `outbound_<port>_tcp_<fqdn>` (`TcpListener.name`; protocol TCP or TLS); never bound as sockets. */
  outboundTcp: TcpListener[];
  /** Inbound ports, sorted by port. A port not listed follows `inboundDefault` and is relayed as TCP to the original destination. */
  inbound: InboundPort[];
  /** Effective mTLS mode for ports the workload does not declare. */
  inboundDefault: Exclude<MtlsMode, 'UNSET'>;
  /** Inbound HTTP route tables, named `inbound_<port>`; never bound as sockets. */
  inboundHttp: Listener[];
  /** Peers by IP, sorted by IP. */
  workloads: MeshWorkload[];
  /**
   * DNS proxying (Istio's "smart DNS proxy"): present only when the proxy's ProxyConfig turns DNS
   * capture on (`proxyMetadata.ISTIO_META_DNS_CAPTURE`), as Istio sends its name table (NDS) only
   * to such proxies.
   */
  dns?: SidecarDns;
}

/** What the sidecar's DNS proxy (127.0.0.1:15053) answers from, instead of the upstream resolvers. */
export interface SidecarDns {
  /** `ISTIO_META_DNS_CAPTURE`: the proxy serves DNS (the capture rules redirect the app's port 53 to it). */
  capture: boolean;
  /**
   * `ISTIO_META_DNS_AUTO_ALLOCATE`: ServiceEntries without `addresses` (resolution STATIC or DNS,
   * non-wildcard hosts) got a VIP from 240.240.0.0/16 (and 2001:2::/48 for an IPv6 pod); those VIPs
   * are in `outbound[].addresses` too, so a connection to one is routed to the entry.
   */
  autoAllocate: boolean;
  /** Istio's name table (BuildNameTable), sorted by host. */
  hosts: DnsHost[];
}

/** One name the DNS proxy answers for. */
export interface DnsHost {
  /** FQDN without the final dot, lowercase (`reviews.default.svc.cluster.local`, `api.example.com`), or a ServiceEntry's wildcard (`*.example.com`: every name under it). */
  host: string;
  /** IPv4 and IPv6 addresses: A and AAAA answers (VIPs; endpoint IPs for headless services). */
  addresses: string[];
  /**
   * A Kubernetes Service: its name and namespace, so the proxy also answers `name.ns`, `name.ns.svc`
   * and, in the proxy's own namespace, `name` (Istio's alternate hosts); null for ServiceEntry hosts.
   */
  kube: { name: string; namespace: string } | null;
}
