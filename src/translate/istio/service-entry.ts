/**
 * ServiceEntry (+ WorkloadEntry) -> IR clusters: hosts outside the Kubernetes Service registry that
 * routes may target like Services (Istio networking/v1 ServiceEntry).
 *
 * - `hosts`: a destination host equal to one of them (case-insensitive), or matching a `*.suffix`
 *   one, is served by the entry; a VirtualService's short name (`name`) is also tried as
 *   `name.<ns>.svc.cluster.local`. Entries are seen from their own namespace and from those their
 *   `exportTo` allows (default: all). When several entries claim a host, the oldest wins.
 * - `ports`: the destination's port picks one (required when there are several); an endpoint's
 *   `ports[<port name>]` gives its target port, else the port's `targetPort`, else its number.
 * - `resolution`:
 *    STATIC: the `endpoints` (IP addresses), or WorkloadEntries of the entry's namespace selected by
 *            `workloadSelector.labels`;
 *    DNS / DNS_ROUND_ROBIN: the `endpoints` as names, or the host itself when none is listed (for a
 *            wildcard entry, the host the route names, as Istio's DYNAMIC_DNS); names are resolved
 *            when connecting;
 *    NONE:   Istio forwards to the original destination; a gateway has none, so the host itself is
 *            used as with DNS (info diagnostic).
 * - Subsets of a DestinationRule for the host select endpoints by their `labels`; the rule's traffic
 *   policy applies as for Services (traffic-policy.ts).
 * - `location` (MESH_EXTERNAL/MESH_INTERNAL) changes nothing at the gateway (it matters for mTLS and
 *   telemetry in a mesh).
 */
import type { Endpoint } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { arr, num, obj, str, strMap, type Obj } from '../../lib/unknown.js';
import { clusterName, matchesLabels, serviceFqdn } from '../backends.js';
import type { TranslateContext } from '../types.js';
import type { DestinationRuleIndex } from './destination-rules.js';
import { istioObjects } from './objects.js';
import { resolveTrafficPolicy } from './traffic-policy.js';
import { serviceEntryMeshTls } from './mesh-tls.js';

interface EntryPort {
  number: number;
  name: string;
  protocol: string;
  targetPort: number | null;
}

interface IndexedEntry {
  se: KubeObject;
  /** Lowercase host as written (may be `*.suffix`). */
  host: string;
}

const indexes = new WeakMap<ResourceSet, IndexedEntry[]>();

function entries(resources: ResourceSet): IndexedEntry[] {
  let list = indexes.get(resources);
  if (list === undefined) {
    list = [];
    for (const se of [...istioObjects(resources, 'ServiceEntry')].sort(compareByCreation)) {
      for (const h of arr(obj(se.body.spec).hosts)) {
        const host = str(h);
        if (host) list.push({ se, host: host.toLowerCase().replace(/\.$/, '') });
      }
    }
    indexes.set(resources, list);
  }
  return list;
}

function visible(se: KubeObject, namespace: string): boolean {
  if (se.metadata.namespace === namespace) return true;
  const exportTo = arr(obj(se.body.spec).exportTo).map(str);
  if (exportTo.length === 0) return true;
  return exportTo.includes('*') || exportTo.includes(namespace);
}

/** The ServiceEntry serving `host` as seen from `namespace` (exact host first, then the longest wildcard). */
export function findServiceEntry(resources: ResourceSet, host: string, namespace: string): { se: KubeObject; host: string } | null {
  const h = host.toLowerCase().replace(/\.$/, '');
  const candidates = h.includes('.') ? [h] : [h, serviceFqdn(h, namespace)];
  const list = entries(resources).filter((e) => visible(e.se, namespace));
  for (const c of candidates) {
    const exact = list.find((e) => e.host === c);
    if (exact) return { se: exact.se, host: c };
  }
  let best: IndexedEntry | null = null;
  for (const e of list) {
    if (!e.host.startsWith('*')) continue;
    const suffix = e.host.slice(1);
    if (candidates.some((c) => c.endsWith(suffix) && c.length > suffix.length) && (best === null || e.host.length > best.host.length)) best = e;
  }
  return best ? { se: best.se, host: candidates[0] } : null;
}

export interface ServiceEntryEnv {
  ctx: TranslateContext;
  resources: ResourceSet;
  drs: DestinationRuleIndex;
  /** The object that names the destination, and its namespace. */
  from: KubeObject;
  /**
   * Sidecar translation: entries and DestinationRules are the ones visible from the proxy's
   * namespace, and a destination without a port on an entry with several uses `listenerPort`.
   */
  mesh?: { namespace: string; listenerPort: number };
}

/**
 * The cluster for a destination `host`/`port`/`subset` served by a ServiceEntry, registered in the
 * context; null when no ServiceEntry has the host (the caller then looks for a Service).
 */
export function serviceEntryCluster(env: ServiceEntryEnv, host: string, portNumber: number | undefined, subsetName: string, field: string): string | null {
  const { ctx, resources, from } = env;
  const found = findServiceEntry(resources, host, from.metadata.namespace);
  if (found === null) return null;
  const { se } = found;
  const spec = obj(se.body.spec);
  const fqdn = found.host;
  const ports: EntryPort[] = arr(spec.ports).map((p) => {
    const po = obj(p);
    return { number: num(po.number) ?? 0, name: str(po.name) ?? '', protocol: (str(po.protocol) ?? 'HTTP').toUpperCase(), targetPort: num(po.targetPort) ?? null };
  });
  const service = { namespace: se.metadata.namespace, name: se.metadata.name };
  const meshPort = env.mesh !== undefined && ports.length > 1 ? ports.find((p) => p.number === env.mesh?.listenerPort) : undefined;
  const port = portNumber !== undefined ? ports.find((p) => p.number === portNumber) : ports.length === 1 ? ports[0] : meshPort;
  // The proxy's rule for the entry's host; the entry's namespace is the service's (Istio).
  const dr = env.drs.lookup(fqdn, se.metadata.namespace);
  const missing = (message: string, reason: 'MG_SERVICE_PORT_NOT_FOUND' | 'MG_SUBSET_NOT_FOUND' | 'MG_MISSING_FIELD' | 'MG_UNSUPPORTED', portNo: number): string => {
    ctx.report('error', reason, from, field, `${message}; requests to it get 503 (NC)`);
    const name = clusterName(portNo, subsetName, fqdn);
    ctx.addCluster({ name, service: { ...service, host: fqdn, port: portNo }, subset: subsetName, discovery: 'missing', lbPolicy: 'ROUND_ROBIN', endpoints: [], connectTimeoutMs: resolveTrafficPolicy(ctx, null, null, portNo).connectTimeoutMs, connectionPool: null, outlierDetection: null, protocol: 'HTTP1', tls: null });
    return name;
  };
  if (port === undefined) {
    const have = ports.map((p) => `${p.number} (${p.name})`).join(', ') || 'none';
    if (portNumber === undefined) return missing(`ServiceEntry ${se.metadata.namespace}/${se.metadata.name} has several ports (${have}): destination.port.number is required`, 'MG_MISSING_FIELD', 0);
    return missing(`ServiceEntry ${se.metadata.namespace}/${se.metadata.name} has no port ${portNumber}; it has ${have}`, 'MG_SERVICE_PORT_NOT_FOUND', portNumber);
  }
  const resolution = str(spec.resolution) ?? 'NONE';
  const hasEndpoints = arr(spec.endpoints).length > 0 || (spec.workloadSelector !== undefined && spec.workloadSelector !== null);
  // Istio builds no subset clusters for a DYNAMIC_DNS wildcard host (its dynamic forward proxy
  // cluster, cluster_builder.go): a route to one reaches nothing.
  if (env.mesh !== undefined && subsetName !== '' && fqdn.startsWith('*') && resolution === 'DYNAMIC_DNS' && !hasEndpoints) {
    return missing(`subset "${subsetName}" of wildcard host ${fqdn}: a DYNAMIC_DNS wildcard host has no subsets on sidecars (Istio builds no subset clusters for its dynamic forward proxy; route to the host without a subset)`, 'MG_UNSUPPORTED', port.number);
  }
  let subsetLabels: Record<string, string> | null = null;
  const subset = subsetName === '' ? null : (dr?.subsets.get(subsetName) ?? null);
  if (subsetName !== '') {
    if (subset === null) return missing(`subset "${subsetName}" does not exist in the DestinationRules for ${fqdn}`, 'MG_SUBSET_NOT_FOUND', port.number);
    subsetLabels = subset.labels;
  }
  const name = clusterName(port.number, subsetName, fqdn);
  if (ctx.getCluster(name)) return name;
  // (Sidecars relay TLS ports by SNI: no TLS origination is implied there.)
  if (env.mesh === undefined && (port.protocol === 'HTTPS' || port.protocol === 'TLS')) {
    ctx.report('info', 'MG_UNSUPPORTED', se, 'spec.ports', `port ${port.number} is ${port.protocol}: the gateway originates TLS to it only when a DestinationRule for ${fqdn} sets trafficPolicy.tls; otherwise it sends plaintext HTTP`);
  }

  const found2: { address: string; port: number; labels: Record<string, string> }[] = [];
  const targetOf = (eo: Obj): number => num(obj(eo.ports)[port.name]) ?? port.targetPort ?? port.number;
  const inline = arr(spec.endpoints).map(obj);
  if (inline.length > 0) {
    for (const eo of inline) {
      const address = str(eo.address);
      if (address) found2.push({ address, port: targetOf(eo), labels: strMap(eo.labels) });
    }
  } else if (spec.workloadSelector !== undefined && spec.workloadSelector !== null) {
    const selector = strMap(obj(spec.workloadSelector).labels);
    for (const we of istioObjects(resources, 'WorkloadEntry')) {
      if (we.metadata.namespace !== se.metadata.namespace) continue;
      const weSpec = obj(we.body.spec);
      // A WorkloadEntry's labels are in its spec (metadata labels also count, as Istio merges them).
      const labels = { ...we.metadata.labels, ...strMap(weSpec.labels) };
      if (!matchesLabels(labels, selector)) continue;
      const address = str(weSpec.address);
      if (address) found2.push({ address, port: targetOf(weSpec), labels });
    }
  } else if (env.mesh !== undefined && (resolution === 'NONE' || (fqdn.startsWith('*') && resolution === 'DYNAMIC_DNS'))) {
    // A sidecar sends a wildcard host's connections to their original destination (NONE) or to the
    // name asked for (DYNAMIC_DNS) per connection (runtime/sidecar/outbound.ts): no endpoints here.
    // So does an exact host with resolution NONE and no endpoints (Istio's ORIGINAL_DST cluster).
  } else if (resolution !== 'STATIC') {
    if (resolution === 'NONE') ctx.report('info', 'MG_UNSUPPORTED', se, 'spec.resolution', `resolution NONE forwards to the original destination, which a gateway does not have; ${fqdn} is resolved by DNS instead`);
    found2.push({ address: fqdn, port: port.targetPort ?? port.number, labels: {} });
  }
  const policy = resolveTrafficPolicy(ctx, dr, subset, port.number, { resources, host: fqdn });
  const selected = found2.filter((e) => subsetLabels === null || matchesLabels(e.labels, subsetLabels));
  // Istio mTLS: ISTIO_MUTUAL completed, or auto mTLS for MESH_INTERNAL entries (istio/mesh-tls.ts).
  const entrySans = arr(spec.subjectAltNames).map(str).filter((x): x is string => x !== undefined && x !== '');
  const mesh = serviceEntryMeshTls(ctx, resources, se.metadata.namespace, str(spec.location) === 'MESH_INTERNAL', port.number, subsetName, fqdn, policy.tls, policy.tlsSet === true, entrySans, selected);
  const endpoints: Endpoint[] = dedupe(selected.map((e) => ({ address: e.address, port: e.port, ready: true, ...(mesh.meshEndpoints.has(`${e.address}:${e.port}`) ? { tlsMode: 'istio' as const } : {}) })));
  ctx.addCluster({
    name,
    service: { ...service, host: fqdn, port: port.number },
    subset: subsetName,
    discovery: 'eds',
    lbPolicy: policy.lbPolicy,
    endpoints,
    connectTimeoutMs: policy.connectTimeoutMs,
    connectionPool: policy.connectionPool,
    outlierDetection: policy.outlierDetection,
    protocol: port.protocol === 'HTTP2' || port.protocol === 'GRPC' ? 'HTTP2' : 'HTTP1',
    tls: mesh.tls,
    ...(mesh.autoMtls !== null ? { autoMtls: mesh.autoMtls } : {}),
  });
  return name;
}

function dedupe(eps: Endpoint[]): Endpoint[] {
  const m = new Map<string, Endpoint>();
  for (const e of eps) m.set(`${e.address}|${e.port}`, e);
  return [...m.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : a.port - b.port));
}
