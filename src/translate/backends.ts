/**
 * Backends: Service (or ServiceEntry later) + port (+ subset) -> an IR Cluster with its endpoints.
 *
 * Endpoint sources, in the order Kubernetes itself would produce them:
 *  1. EndpointSlices labelled `kubernetes.io/service-name: <service>` (discovery.k8s.io/v1);
 *  2. else the legacy Endpoints object of the same name (v1);
 *  3. else, for a directory config with no controller to write either, Pods matched by the Service's
 *     selector, with their `status.podIP` and the Service's targetPort (what the EndpointSlice
 *     controller would have written; only Running pods, Ready condition honoured when present).
 */
import type { Cluster, ConnectionPool, Endpoint, LbPolicy, OutlierDetection, UpstreamTls } from '../ir/types.js';
import type { KubeObject } from '../resources/types.js';
import type { ResourceSet } from '../resources/resource-set.js';
import { arr, num, obj, str, strMap } from '../lib/unknown.js';
import type { TranslateContext } from './types.js';
import { upstreamProtocol, type H2UpgradePolicy } from './protocol.js';
import { meshTls } from './istio/mesh-tls.js';

export const CLUSTER_DOMAIN = 'svc.cluster.local';
/** Istio's default connect timeout (mesh `connectTimeout`). */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;

/** A backend reference: a Service in a namespace and one of its ports. */
export interface ServiceRef {
  namespace: string;
  name: string;
  /** Service port by number or by name; null: the Service must have exactly one port. */
  port: { number: number } | { name: string } | null;
}

export interface SubsetRef {
  name: string;
  /** Pod labels an endpoint must carry. */
  labels: Record<string, string>;
}

export interface ClusterRequest {
  service: ServiceRef;
  subset: SubsetRef | null;
  lbPolicy: LbPolicy;
  connectTimeoutMs: number;
  connectionPool: ConnectionPool | null;
  outlierDetection: OutlierDetection | null;
  /** DestinationRule `connectionPool.http.h2UpgradePolicy`; absent = `DEFAULT` (see `upstreamProtocol`). */
  h2UpgradePolicy?: H2UpgradePolicy;
  /** Upstream TLS (DestinationRule `tls`); absent = plaintext. */
  tls?: UpstreamTls | null;
  /** The DestinationRule set `tls` (DISABLE included): no auto mTLS (`istio/mesh-tls.ts`). */
  tlsSet?: boolean;
  /** The object and field that refer to this backend, for diagnostics. */
  from: KubeObject;
  field: string;
}

/** The Service port a reference resolves to. */
interface ServicePort {
  name: string;
  port: number;
  /** `appProtocol` of the port; '' when not set. */
  appProtocol: string;
  /** Number, or a container port name. */
  targetPort: number | string;
}

export function clusterName(port: number, subset: string, host: string): string {
  return `outbound|${port}|${subset}|${host}`;
}

export function serviceFqdn(name: string, namespace: string): string {
  return `${name}.${namespace}.${CLUSTER_DOMAIN}`;
}

/**
 * Resolve a backend to a cluster name, registering the cluster in `ctx`. A missing Service or port is
 * reported and yields a cluster with `discovery: 'missing'` (503 `NC` at run time), so one bad
 * reference never takes the rest of the config down.
 */
export function resolveCluster(ctx: TranslateContext, resources: ResourceSet, req: ClusterRequest): string {
  const { service, subset } = req;
  const host = serviceFqdn(service.name, service.namespace);
  const svc = resources.get('Service', service.namespace, service.name);
  const subsetName = subset?.name ?? '';
  if (!svc) {
    const port = service.port && 'number' in service.port ? service.port.number : 0;
    ctx.report('error', 'MG_SERVICE_NOT_FOUND', req.from, req.field, `Service ${service.namespace}/${service.name} does not exist; requests to this backend get 503 (NC)`);
    return register(ctx, { name: clusterName(port, subsetName, host), service: { namespace: service.namespace, name: service.name, host, port }, subset: subsetName, discovery: 'missing', lbPolicy: req.lbPolicy, endpoints: [], connectTimeoutMs: req.connectTimeoutMs, connectionPool: req.connectionPool, outlierDetection: req.outlierDetection, protocol: 'HTTP1', tls: req.tls ?? null });
  }
  const ports = servicePorts(svc);
  const sp = findPort(ports, service.port);
  if (!sp) {
    const wanted = service.port === null ? '(none given, and the Service has several)' : 'number' in service.port ? String(service.port.number) : `"${service.port.name}"`;
    const have = ports.map((p) => (p.name ? `${p.port} (${p.name})` : String(p.port))).join(', ') || 'none';
    ctx.report('error', 'MG_SERVICE_PORT_NOT_FOUND', req.from, req.field, `Service ${service.namespace}/${service.name} has no port ${wanted}; it has ${have}`);
    const port = service.port && 'number' in service.port ? service.port.number : 0;
    return register(ctx, { name: clusterName(port, subsetName, host), service: { namespace: service.namespace, name: service.name, host, port }, subset: subsetName, discovery: 'missing', lbPolicy: req.lbPolicy, endpoints: [], connectTimeoutMs: req.connectTimeoutMs, connectionPool: req.connectionPool, outlierDetection: req.outlierDetection, protocol: 'HTTP1', tls: req.tls ?? null });
  }
  const name = clusterName(sp.port, subsetName, host);
  const existing = ctx.getCluster(name);
  if (existing) return existing.name;
  const all = serviceEndpoints(resources, svc, sp);
  const endpoints = subset ? all.filter((e) => e.labels !== null && matchesLabels(e.labels, subset.labels)) : all;
  // Istio mTLS: ISTIO_MUTUAL completed, or auto mTLS per endpoint (Pods labelled tlsMode=istio);
  // the server identities are the service accounts of all the Service's Pods.
  const mesh = meshTls(ctx, resources, svc, sp.port, subsetName, host, req.tls ?? null, req.tlsSet === true, endpoints, all);
  const ir: Endpoint[] = dedupeEndpoints(endpoints.map((e) => ({ address: e.address, port: e.port, ready: e.ready, ...(mesh.meshEndpoints.has(`${e.address}:${e.port}`) ? { tlsMode: 'istio' as const } : {}) })));
  return register(ctx, { name, service: { namespace: service.namespace, name: service.name, host, port: sp.port }, subset: subsetName, discovery: 'eds', lbPolicy: req.lbPolicy, endpoints: ir, connectTimeoutMs: req.connectTimeoutMs, connectionPool: req.connectionPool, outlierDetection: req.outlierDetection, protocol: upstreamProtocol(sp, req.h2UpgradePolicy ?? 'DEFAULT'), tls: mesh.tls, ...(mesh.autoMtls !== null ? { autoMtls: mesh.autoMtls } : {}) });
}

function register(ctx: TranslateContext, cluster: Cluster): string {
  ctx.addCluster(cluster);
  return cluster.name;
}

export function servicePorts(svc: KubeObject): ServicePort[] {
  const spec = obj(svc.body.spec);
  const out: ServicePort[] = [];
  for (const p of arr(spec.ports)) {
    const po = obj(p);
    const port = num(po.port);
    if (port === undefined) continue;
    const tp = po.targetPort;
    out.push({ name: str(po.name) ?? '', port, appProtocol: str(po.appProtocol) ?? '', targetPort: typeof tp === 'number' || typeof tp === 'string' ? tp : port });
  }
  return out;
}

function findPort(ports: ServicePort[], ref: ServiceRef['port']): ServicePort | undefined {
  if (ref === null) return ports.length === 1 ? ports[0] : undefined;
  if ('number' in ref) return ports.find((p) => p.port === ref.number);
  return ports.find((p) => p.name === ref.name);
}

/**
 * `address:port` of the endpoints of Service `namespace/name` port `port` whose Pod carries every
 * label of `labels` (e.g. Istio's `security.istio.io/tlsMode: istio`); endpoints whose Pod is
 * unknown never qualify.
 */
export function labelledServiceEndpoints(resources: ResourceSet, namespace: string, name: string, port: number, labels: Record<string, string>): Set<string> {
  const out = new Set<string>();
  const svc = resources.get('Service', namespace, name);
  if (svc === undefined) return out;
  const sp = findPort(servicePorts(svc), { number: port });
  if (sp === undefined) return out;
  for (const e of serviceEndpoints(resources, svc, sp)) if (e.labels !== null && matchesLabels(e.labels, labels)) out.add(`${e.address}:${e.port}`);
  return out;
}

export function matchesLabels(labels: Record<string, string>, selector: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(selector)) if (labels[k] !== v) return false;
  return true;
}

/** The `spec.externalName` of a Service of type ExternalName (lowercase, no trailing dot); null for other Services. */
export function externalNameOf(svc: KubeObject): string | null {
  const spec = obj(svc.body.spec);
  if (str(spec.type) !== 'ExternalName') return null;
  const name = (str(spec.externalName) ?? '').trim().toLowerCase().replace(/\.$/, '');
  return name === '' ? null : name;
}

interface FoundEndpoint {
  address: string;
  port: number;
  ready: boolean;
  /** Labels of the Pod behind the endpoint, when known (needed for subsets). */
  labels: Record<string, string> | null;
  /** The Pod's service account (`spec.serviceAccountName`, default `default`), when the Pod is known. */
  serviceAccount?: string | null;
}

function podServiceAccount(pod: KubeObject | undefined): string | null {
  if (pod === undefined) return null;
  const spec = obj(pod.body.spec);
  return str(spec.serviceAccountName) || str(spec.serviceAccount) || 'default';
}

function serviceEndpoints(resources: ResourceSet, svc: KubeObject, sp: ServicePort): FoundEndpoint[] {
  const ns = svc.metadata.namespace;
  // An ExternalName Service is DNS-resolved (Istio's kube registry): its one endpoint is the
  // external name on the service port, resolved when connecting.
  const externalName = externalNameOf(svc);
  if (externalName !== null) return [{ address: externalName, port: sp.port, ready: true, labels: null }];
  const podsByIp = { get: (ip: string) => resources.podByIp(ns, ip) };
  const slices = resources.endpointSlicesOf(ns, svc.metadata.name);
  if (slices.length > 0) {
    const out: FoundEndpoint[] = [];
    for (const slice of slices) {
      const body = slice.body;
      // The slice port whose name equals the Service port's name carries the target port.
      const port = arr(body.ports).map(obj).find((p) => (str(p.name) ?? '') === sp.name);
      const portNumber = port ? num(port.port) : undefined;
      if (portNumber === undefined) continue;
      for (const e of arr(body.endpoints)) {
        const eo = obj(e);
        const cond = obj(eo.conditions);
        // discovery.k8s.io/v1: a nil `ready` is to be read as ready.
        const ready = cond.ready !== false;
        const ref = obj(eo.targetRef);
        for (const a of arr(eo.addresses)) {
          const address = str(a);
          if (!address) continue;
          const pod = str(ref.kind) === 'Pod' && str(ref.name) ? resources.get('Pod', str(ref.namespace) ?? ns, str(ref.name) as string) : podsByIp.get(address);
          out.push({ address, port: portNumber, ready, labels: pod ? pod.metadata.labels : null, serviceAccount: podServiceAccount(pod) });
        }
      }
    }
    return out;
  }
  const legacy = resources.get('Endpoints', ns, svc.metadata.name);
  if (legacy) {
    const out: FoundEndpoint[] = [];
    for (const s of arr(legacy.body.subsets)) {
      const so = obj(s);
      const port = arr(so.ports).map(obj).find((p) => (str(p.name) ?? '') === sp.name) ?? (arr(so.ports).length === 1 ? obj(arr(so.ports)[0]) : undefined);
      const portNumber = port ? num(port.port) : undefined;
      if (portNumber === undefined) continue;
      for (const [list, ready] of [[so.addresses, true], [so.notReadyAddresses, false]] as const) {
        for (const a of arr(list)) {
          const ao = obj(a);
          const address = str(ao.ip) ?? str(ao.hostname);
          if (!address) continue;
          const ref = obj(ao.targetRef);
          const pod = str(ref.kind) === 'Pod' && str(ref.name) ? resources.get('Pod', str(ref.namespace) ?? ns, str(ref.name) as string) : podsByIp.get(address);
          out.push({ address, port: portNumber, ready, labels: pod ? pod.metadata.labels : null, serviceAccount: podServiceAccount(pod) });
        }
      }
    }
    return out;
  }
  // No endpoint objects: derive from the selector, as the EndpointSlice controller would.
  const selector = strMap(obj(svc.body.spec).selector);
  if (Object.keys(selector).length === 0) return [];
  const out: FoundEndpoint[] = [];
  for (const pod of resources.podsIn(ns)) {
    if (!matchesLabels(pod.metadata.labels, selector)) continue;
    const status = obj(pod.body.status);
    const ip = str(status.podIP);
    if (!ip) continue;
    const phase = str(status.phase);
    if (phase !== undefined && phase !== 'Running') continue;
    const port = typeof sp.targetPort === 'number' ? sp.targetPort : containerPort(pod, sp.targetPort);
    if (port === undefined) continue;
    const readyCond = arr(status.conditions).map(obj).find((c) => c.type === 'Ready');
    out.push({ address: ip, port, ready: readyCond ? readyCond.status === 'True' : true, labels: pod.metadata.labels, serviceAccount: podServiceAccount(pod) });
  }
  return out;
}

function containerPort(pod: KubeObject, name: string): number | undefined {
  for (const c of arr(obj(pod.body.spec).containers)) {
    for (const p of arr(obj(c).ports)) {
      const po = obj(p);
      if (str(po.name) === name) return num(po.containerPort);
    }
  }
  return undefined;
}

function dedupeEndpoints(eps: Endpoint[]): Endpoint[] {
  const m = new Map<string, Endpoint>();
  for (const e of eps) {
    const key = `${e.address}|${e.port}`;
    const prev = m.get(key);
    // An address listed twice (two slices during a rollout) is ready if either says so.
    if (!prev || (!prev.ready && e.ready)) m.set(key, e);
  }
  return [...m.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
}
