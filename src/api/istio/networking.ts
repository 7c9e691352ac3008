/**
 * networking.istio.io Gateway, VirtualService, DestinationRule and ServiceEntry: every spec field.
 * Mirrors istio/api networking/v1alpha3/{gateway,virtual_service,destination_rule,service_entry}.proto
 * (the same messages are served as v1alpha3, v1beta1 and v1). Field names are the lowerCamelCase JSON
 * names the CRDs accept. `required` follows the protos' `field_behavior = REQUIRED`, `oneOf` their `oneof`s.
 * Kept loose on purpose: localityLbSetting, tunnel and proxyProtocol (`any`), and weights (any int32,
 * so negative weights reach the translator's MG_INVALID_WEIGHTS check).
 */

import {
  any,
  deprecated,
  arrayOf,
  boolean,
  duration,
  int32,
  integer,
  mapOf,
  number,
  object,
  objectMeta,
  oneOfStrings,
  portNumber,
  string,
  stringMap,
  strings,
  uint32,
  uint64,
} from '../schema.js';
import type { ObjectSchema, Schema } from '../schema.js';

/** Top-level shape shared by the four kinds. */
function istioKind(name: string, spec: ObjectSchema): ObjectSchema {
  return object({ apiVersion: string, kind: string, metadata: objectMeta(), spec, status: any }, { name });
}

// ---- shared ------------------------------------------------------------------------------------

const portSelector = object({ number: portNumber }, { name: 'PortSelector' });
const percent = object({ value: number(0, 100) }, { name: 'Percent' });
const workloadSelectorMatchLabels = object({ matchLabels: stringMap }, { name: 'WorkloadSelector' });

// ---- gateway.proto -----------------------------------------------------------------------------

const tlsProtocol = oneOfStrings('TLS_AUTO', 'TLSV1_0', 'TLSV1_1', 'TLSV1_2', 'TLSV1_3');

const serverTLSSettings = object(
  {
    httpsRedirect: boolean,
    mode: oneOfStrings('PASSTHROUGH', 'SIMPLE', 'MUTUAL', 'AUTO_PASSTHROUGH', 'ISTIO_MUTUAL', 'OPTIONAL_MUTUAL'),
    serverCertificate: string,
    privateKey: string,
    caCertificates: string,
    caCrl: string,
    credentialName: string,
    credentialNames: strings,
    caCertCredentialName: string,
    tlsCertificates: arrayOf(
      object({ serverCertificate: string, privateKey: string, caCertificates: string }, { name: 'TLSCertificate' }),
    ),
    subjectAltNames: strings,
    verifyCertificateSpki: strings,
    verifyCertificateHash: strings,
    minProtocolVersion: tlsProtocol,
    maxProtocolVersion: tlsProtocol,
    cipherSuites: strings,
    insecureSkipVerify: boolean,
  },
  { name: 'ServerTLSSettings', oneOf: [['credentialName', 'credentialNames', 'tlsCertificates']] },
);

const gatewayPort = object(
  { number: portNumber, protocol: string, name: string, targetPort: deprecated(uint32, 'nothing: a Gateway port is the port the gateway listens on (targetPort only applies to ServiceEntry)') },
  { name: 'Port', required: ['number', 'protocol', 'name'] },
);

const server = object(
  { port: gatewayPort, bind: string, hosts: strings, tls: serverTLSSettings, defaultEndpoint: string, name: string },
  { name: 'Server', required: ['port', 'hosts'] },
);

export const gateway: ObjectSchema = istioKind('Gateway', object({ servers: arrayOf(server), selector: stringMap }, { name: 'Gateway' }));

// ---- virtual_service.proto ---------------------------------------------------------------------

const stringMatch = object({ exact: string, prefix: string, regex: string }, { name: 'StringMatch', oneOf: [['exact', 'prefix', 'regex']] });

const destination = object({ host: string, subset: string, port: portSelector }, { name: 'Destination', required: ['host'] });

const headerOperations = object({ set: stringMap, add: stringMap, remove: strings }, { name: 'HeaderOperations' });
const headers = object({ request: headerOperations, response: headerOperations }, { name: 'Headers' });

const httpMatchRequest = object(
  {
    name: string,
    uri: stringMatch,
    scheme: stringMatch,
    method: stringMatch,
    authority: stringMatch,
    headers: mapOf(stringMatch),
    port: portNumber,
    sourceLabels: stringMap,
    gateways: strings,
    queryParams: mapOf(stringMatch),
    ignoreUriCase: boolean,
    withoutHeaders: mapOf(stringMatch),
    sourceNamespace: string,
    statPrefix: string,
  },
  { name: 'HTTPMatchRequest' },
);

const httpRouteDestination = object(
  { destination, weight: int32, headers },
  { name: 'HTTPRouteDestination', required: ['destination'] },
);

const routeDestination = object({ destination, weight: int32 }, { name: 'RouteDestination', required: ['destination'] });

const httpRedirect = object(
  {
    uri: string,
    authority: string,
    port: portNumber,
    derivePort: oneOfStrings('FROM_PROTOCOL_DEFAULT', 'FROM_REQUEST_PORT'),
    scheme: string,
    redirectCode: integer(300, 399),
    prefixRewrite: string,
  },
  { name: 'HTTPRedirect', oneOf: [['port', 'derivePort']] },
);

const httpDirectResponse = object(
  { status: integer(200, 599), body: object({ string, bytes: { t: 'string', format: 'base64' } }, { name: 'HTTPBody', oneOf: [['string', 'bytes']] }) },
  { name: 'HTTPDirectResponse', required: ['status'] },
);

const httpRewrite = object(
  { uri: string, authority: string, uriRegexRewrite: object({ match: string, rewrite: string }, { name: 'RegexRewrite' }) },
  { name: 'HTTPRewrite', oneOf: [['uri', 'uriRegexRewrite']] },
);

const httpRetry = object(
  {
    attempts: integer(0, 2147483647),
    perTryTimeout: duration,
    retryOn: string,
    retryRemoteLocalities: boolean,
    retryIgnorePreviousHosts: boolean,
    backoff: duration,
  },
  { name: 'HTTPRetry' },
);

const corsPolicy = object(
  {
    allowOrigin: deprecated(strings, '`allowOrigins` (string matches: `exact`, `prefix`, `regex`)'),
    allowOrigins: arrayOf(stringMatch),
    allowMethods: strings,
    allowHeaders: strings,
    exposeHeaders: strings,
    maxAge: duration,
    allowCredentials: boolean,
    unmatchedPreflights: oneOfStrings('UNSPECIFIED', 'FORWARD', 'IGNORE'),
  },
  { name: 'CorsPolicy' },
);

const httpFaultInjection = object(
  {
    delay: object(
      { percent: deprecated(integer(0, 100), '`percentage.value`'), fixedDelay: duration, exponentialDelay: duration, percentage: percent },
      { name: 'Delay', oneOf: [['fixedDelay', 'exponentialDelay']] },
    ),
    abort: object(
      { httpStatus: integer(200, 599), grpcStatus: string, http2Error: string, percentage: percent },
      { name: 'Abort', oneOf: [['httpStatus', 'grpcStatus', 'http2Error']] },
    ),
  },
  { name: 'HTTPFaultInjection' },
);

const httpMirrorPolicy = object({ destination, percentage: percent }, { name: 'HTTPMirrorPolicy', required: ['destination'] });

const httpRoute = object(
  {
    name: string,
    match: arrayOf(httpMatchRequest),
    route: arrayOf(httpRouteDestination),
    redirect: httpRedirect,
    directResponse: httpDirectResponse,
    delegate: object({ name: string, namespace: string }, { name: 'Delegate' }),
    rewrite: httpRewrite,
    timeout: duration,
    retries: httpRetry,
    fault: httpFaultInjection,
    mirror: destination,
    mirrors: arrayOf(httpMirrorPolicy),
    mirrorPercent: deprecated(uint32, '`mirrorPercentage.value` (or `mirrors[].percentage`)'),
    mirrorPercentage: percent,
    corsPolicy,
    headers,
  },
  { name: 'HTTPRoute' },
);

const tlsMatchAttributes = object(
  { sniHosts: strings, destinationSubnets: strings, port: portNumber, sourceLabels: stringMap, gateways: strings, sourceNamespace: string },
  { name: 'TLSMatchAttributes', required: ['sniHosts'] },
);

const l4MatchAttributes = object(
  { destinationSubnets: strings, port: portNumber, sourceSubnet: string, sourceLabels: stringMap, gateways: strings, sourceNamespace: string },
  { name: 'L4MatchAttributes' },
);

const tlsRoute = object({ match: arrayOf(tlsMatchAttributes), route: arrayOf(routeDestination) }, { name: 'TLSRoute', required: ['match'] });
const tcpRoute = object({ match: arrayOf(l4MatchAttributes), route: arrayOf(routeDestination) }, { name: 'TCPRoute' });

export const virtualService: ObjectSchema = istioKind(
  'VirtualService',
  object(
    { hosts: strings, gateways: strings, http: arrayOf(httpRoute), tls: arrayOf(tlsRoute), tcp: arrayOf(tcpRoute), exportTo: strings },
    { name: 'VirtualService' },
  ),
);

// ---- destination_rule.proto --------------------------------------------------------------------

const consistentHash = object(
  {
    httpHeaderName: string,
    httpCookie: object(
      {
        name: string,
        path: string,
        ttl: duration,
        attributes: arrayOf(object({ name: string, value: string }, { name: 'Attribute', required: ['name'] })),
      },
      { name: 'HTTPCookie', required: ['name'] },
    ),
    useSourceIp: boolean,
    httpQueryParameterName: string,
    ringHash: object({ minimumRingSize: uint64 }, { name: 'RingHash' }),
    maglev: object({ tableSize: uint64 }, { name: 'MagLev' }),
    minimumRingSize: deprecated(uint64, '`ringHash.minimumRingSize`'),
  },
  {
    name: 'ConsistentHashLB',
    oneOf: [
      ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'],
      ['ringHash', 'maglev'],
    ],
  },
);

const loadBalancer = object(
  {
    simple: oneOfStrings('UNSPECIFIED', 'LEAST_CONN', 'RANDOM', 'PASSTHROUGH', 'ROUND_ROBIN', 'LEAST_REQUEST'),
    consistentHash,
    localityLbSetting: any,
    zoneAwareLbSetting: any,
    warmupDurationSecs: deprecated(duration, '`warmup.duration`'),
    warmup: object(
      { duration, minimumPercent: number(0, 100), aggression: number() },
      { name: 'WarmupConfiguration', required: ['duration'] },
    ),
  },
  {
    name: 'LoadBalancerSettings',
    oneOf: [
      ['simple', 'consistentHash'],
      ['warmupDurationSecs', 'warmup'],
    ],
  },
);

const connectionPool = object(
  {
    tcp: object(
      {
        maxConnections: int32,
        connectTimeout: duration,
        tcpKeepalive: object({ probes: uint32, time: duration, interval: duration }, { name: 'TcpKeepalive' }),
        maxConnectionDuration: duration,
        idleTimeout: duration,
      },
      { name: 'TCPSettings' },
    ),
    http: object(
      {
        http1MaxPendingRequests: int32,
        http2MaxRequests: int32,
        maxRequestsPerConnection: int32,
        maxRetries: int32,
        idleTimeout: duration,
        h2UpgradePolicy: oneOfStrings('DEFAULT', 'DO_NOT_UPGRADE', 'UPGRADE'),
        useClientProtocol: boolean,
        maxConcurrentStreams: int32,
        http2KeepAlive: object({ interval: duration, timeout: duration }, { name: 'ConnectionKeepalive' }),
      },
      { name: 'HTTPSettings' },
    ),
  },
  { name: 'ConnectionPoolSettings' },
);

const outlierDetection = object(
  {
    consecutiveErrors: deprecated(int32, '`consecutiveGatewayErrors` (what Istio maps it to: 502, 503, 504 and connection failures) or `consecutive5xxErrors`'),
    splitExternalLocalOriginErrors: boolean,
    consecutiveLocalOriginFailures: uint32,
    consecutiveGatewayErrors: uint32,
    consecutive5xxErrors: uint32,
    interval: duration,
    baseEjectionTime: duration,
    maxEjectionPercent: integer(0, 100),
    minHealthPercent: integer(0, 100),
    outlierDetectionHttpErrorCodes: arrayOf(uint32),
  },
  { name: 'OutlierDetection' },
);

const clientTLSSettings = object(
  {
    mode: oneOfStrings('DISABLE', 'SIMPLE', 'MUTUAL', 'ISTIO_MUTUAL'),
    clientCertificate: string,
    privateKey: string,
    caCertificates: string,
    credentialName: string,
    subjectAltNames: strings,
    sni: string,
    insecureSkipVerify: boolean,
    caCrl: string,
  },
  { name: 'ClientTLSSettings' },
);

const portTrafficPolicy = object(
  { port: portSelector, loadBalancer, connectionPool, outlierDetection, tls: clientTLSSettings },
  { name: 'PortTrafficPolicy' },
);

const trafficPolicy = object(
  {
    loadBalancer,
    connectionPool,
    outlierDetection,
    tls: clientTLSSettings,
    portLevelSettings: arrayOf(portTrafficPolicy),
    tunnel: any,
    proxyProtocol: any,
    retryBudget: object(
      { percent: number(0, 100), minRetryConcurrency: uint32, budgetInterval: duration },
      { name: 'RetryBudget' },
    ),
  },
  { name: 'TrafficPolicy' },
);

const subset = object({ name: string, labels: stringMap, trafficPolicy }, { name: 'Subset', required: ['name'] });

export const destinationRule: ObjectSchema = istioKind(
  'DestinationRule',
  object(
    { host: string, trafficPolicy, subsets: arrayOf(subset), exportTo: strings, workloadSelector: workloadSelectorMatchLabels },
    { name: 'DestinationRule', required: ['host'] },
  ),
);

// ---- service_entry.proto (and workload_entry.proto for inline endpoints) -------------------------

const workloadEntry = object(
  {
    address: string,
    ports: mapOf(portNumber),
    labels: stringMap,
    network: string,
    locality: string,
    weight: uint32,
    serviceAccount: string,
  },
  { name: 'WorkloadEntry' },
);

/** WorkloadEntry as a kind of its own (same spec as a ServiceEntry's inline endpoint). */
export const workloadEntryKind: ObjectSchema = istioKind('WorkloadEntry', workloadEntry as ObjectSchema);

const servicePort: Schema = object(
  { number: portNumber, protocol: string, name: string, targetPort: portNumber },
  { name: 'ServicePort', required: ['number', 'name'] },
);

export const serviceEntry: ObjectSchema = istioKind(
  'ServiceEntry',
  object(
    {
      hosts: strings,
      addresses: strings,
      ports: arrayOf(servicePort),
      location: oneOfStrings('MESH_EXTERNAL', 'MESH_INTERNAL'),
      resolution: oneOfStrings('NONE', 'STATIC', 'DNS', 'DNS_ROUND_ROBIN', 'DYNAMIC_DNS'),
      endpoints: arrayOf(workloadEntry),
      workloadSelector: object({ labels: stringMap }, { name: 'WorkloadSelector' }),
      exportTo: strings,
      subjectAltNames: strings,
    },
    { name: 'ServiceEntry', required: ['hosts'], oneOf: [['workloadSelector', 'endpoints']] },
  ),
);

// ---- sidecar.proto -------------------------------------------------------------------------------

const sidecarPort = object({ number: portNumber, protocol: string, name: string, targetPort: portNumber }, { name: 'SidecarPort' });

const istioEgressListener = object(
  { port: sidecarPort, bind: string, captureMode: oneOfStrings('DEFAULT', 'IPTABLES', 'NONE'), hosts: strings },
  { name: 'IstioEgressListener', required: ['hosts'] },
);

const istioIngressListener = object(
  { port: sidecarPort, bind: string, captureMode: oneOfStrings('DEFAULT', 'IPTABLES', 'NONE'), defaultEndpoint: string, tls: any, connectionPool: any },
  { name: 'IstioIngressListener', required: ['port'] },
);

/** Sidecar (networking.istio.io): what a sidecar proxy sees (translate/sidecar/ scoping). */
export const sidecar: ObjectSchema = istioKind(
  'Sidecar',
  object(
    {
      workloadSelector: object({ labels: stringMap }, { name: 'WorkloadSelector' }),
      ingress: arrayOf(istioIngressListener),
      egress: arrayOf(istioEgressListener),
      inboundConnectionPool: any,
      outboundTrafficPolicy: object({ mode: oneOfStrings('REGISTRY_ONLY', 'ALLOW_ANY'), egressProxy: any }, { name: 'OutboundTrafficPolicy' }),
    },
    { name: 'Sidecar' },
  ),
);
