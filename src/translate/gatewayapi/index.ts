/**
 * Kubernetes Gateway API (gateway.networking.k8s.io) -> listener drafts, TCP listeners and status.
 *
 * Steps, each ordering rule stated where it is applied:
 *  1. GatewayClasses whose `controllerName` is meshgate's (`--gateway-controller-name`) are served;
 *     Gateways of other classes are ignored.
 *  2. Every listener of those Gateways is checked (protocol, hostname, TLS and its certificateRefs
 *     with ReferenceGrants, allowedRoutes kinds) and placed on its bind port (`--port-map`, as
 *     Istio Gateway servers). All Gateways of the class merge per port; listeners that are not
 *     distinct across the merged set (same protocol and hostname; a second protocol on a port; two
 *     TCP listeners) are Conflicted and none of them is served. A port Istio or Ingress already
 *     serves is refused (`PortUnavailable`, MG_PORT_CONFLICT): never silently shared.
 *  3. Routes (HTTPRoute, GRPCRoute, TLSRoute, TCPRoute; UDPRoute is refused) attach through
 *     `parentRefs` (sectionName, port) to listeners whose allowedRoutes admit their namespace and
 *     kind and whose hostname intersects theirs. Creation order, then namespace/name, is the tie-break.
 *  4. HTTP(S): per listener, one virtual host per intersected hostname plus one for the listener's
 *     own hostname (so a request is served only by the most specific listener's routes: listener
 *     isolation); a virtual host a more specific listener of the port covers is dropped. Routes in a
 *     virtual host follow the spec's precedence (http-routes.ts keys). HTTPS listeners are one chain
 *     each, chosen by SNI. TLS/TCP listeners become TCP listeners (TLS passthrough by SNI, TLS
 *     terminate per listener chain, TCP: the oldest route gets the connections).
 *  5. Status (status.ts) is made alongside, from the same findings as the diagnostics.
 */
import type { TcpListener, TcpRoute, TlsCertificate, TlsContext } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { arr, num, obj, str, type Obj } from '../../lib/unknown.js';
import { loadTlsCertificate } from '../secrets.js';
import { ipFamily } from '../../lib/ip.js';
import { isWildcardAddress } from '../../ir/validate.js';
import { addressInCidr, sameAddress } from './addresses.js';
import { sourceOf, type FilterChainDraft, type ListenerDraft, type TranslateContext, type VirtualHostDraft } from '../types.js';
import { BackendTlsPolicies, invalidBackendCluster, resolveBackend, type BackendEnv, type BackendProblem } from './backends.js';
import { hostnameProblem, hostnameSpecificity, hostnameWithin, intersectHostnames, normalizeHostname } from './hostnames.js';
import { buildHttpRoute, type BuiltRoute, type RankedRoute } from './http-routes.js';
import { GATEWAY_GROUP, ReferenceGrants, namespaceLabels, selectorMatches } from './refs.js';
import {
  StatusRecorder,
  emptyStatus,
  sortStatus,
  statusKey,
  type GatewayApiCondition,
  type GatewayApiStatus,
  type GatewayStatusOut,
  type ListenerStatusOut,
  type ParentRefOut,
  type RouteGroupKind,
  type RouteParentStatusOut,
  type RouteStatusOut,
} from './status.js';

export const DEFAULT_GATEWAY_CONTROLLER_NAME = 'meshgate.io/gateway-controller';

export interface GatewayApiResult {
  drafts: ListenerDraft[];
  tcpListeners: TcpListener[];
  status: GatewayApiStatus;
}

type ListenerKind = 'HTTP' | 'HTTPS' | 'TLS' | 'TCP';

interface Attachment {
  route: RouteInfo;
  /** Intersected hostnames (`*` = any) the route serves on this listener. */
  hostnames: string[];
}

interface PlannedListener {
  gateway: KubeObject;
  field: string;
  name: string;
  /** Normalized; `*` when absent. */
  hostname: string;
  port: number;
  bindPort: number;
  /**
   * Addresses the listener is bound at: the Gateway's own bindable `spec.addresses`, else
   * `[bindAddress]`, shared with every Gateway of the class.
   */
  addresses: string[];
  /** The Gateway has addresses of its own (its listeners have their own sockets). */
  ownAddress: boolean;
  /**
   * Identical listeners of other Gateways on the same address and port are served as one: the
   * oldest Gateway's listener leads and serves the union of the routes of all of them (`members`).
   */
  leader: PlannedListener | null;
  members: PlannedListener[];
  /** null: the protocol is not supported (listener Accepted=False). */
  kind: ListenerKind | null;
  tlsMode: 'Terminate' | 'Passthrough' | null;
  tls: TlsContext | null;
  supportedKinds: RouteGroupKind[];
  allowed: Obj;
  status: ListenerStatusOut;
  accepted: boolean;
  conflicted: boolean;
  /** TLS material resolved (or not needed). */
  refsOk: boolean;
  attached: Attachment[];
  /** The routes in `attached` (translation-time index only). */
  attachedSet: Set<RouteInfo>;
}

interface RouteInfo {
  obj: KubeObject;
  /** Place in creation-then-namespace/name order (the spec's tie-break). */
  ordinal: number;
  status: RouteStatusOut;
}

const KINDS_BY_PROTOCOL: Readonly<Record<ListenerKind, readonly string[]>> = {
  HTTP: ['HTTPRoute', 'GRPCRoute'],
  HTTPS: ['HTTPRoute', 'GRPCRoute'],
  TLS: ['TLSRoute'],
  TCP: ['TCPRoute'],
};

const ROUTE_KINDS = ['HTTPRoute', 'GRPCRoute', 'TLSRoute', 'TCPRoute', 'UDPRoute'] as const;

function isGatewayApi(o: KubeObject): boolean {
  return o.apiVersion.startsWith(`${GATEWAY_GROUP}/`);
}

/** The spec's order for routes and Gateways: oldest creationTimestamp, then `namespace/name`. */
function compareCreation(a: KubeObject, b: KubeObject): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = `${a.metadata.namespace}/${a.metadata.name}`;
  const kb = `${b.metadata.namespace}/${b.metadata.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/**
 * What Istio servers and Ingress already serve on a bind port: `HTTP`/`HTTPS` with every host name
 * (virtual-host domains and SNI names, `*` = any), or `TCP` (any relayed port; never shared).
 */
export interface PortUse {
  address: string;
  port: number;
  protocol: 'HTTP' | 'HTTPS' | 'TCP';
  hosts: string[];
}

/** What each bind address and port already serves (keyed `address|port`), for the Gateway API translator. */
export function portUses(drafts: ListenerDraft[], tcp: TcpListener[]): Map<string, PortUse> {
  const out = new Map<string, PortUse>();
  for (const d of drafts) {
    const key = `${d.address}|${d.port}`;
    const use = out.get(key) ?? { address: d.address, port: d.port, protocol: d.protocol, hosts: [] };
    for (const c of d.chains) {
      use.hosts.push(...(d.protocol === 'HTTPS' && c.serverNames.length === 0 ? ['*'] : c.serverNames));
      for (const vh of c.virtualHosts) use.hosts.push(vh.domain);
    }
    out.set(key, use);
  }
  for (const l of tcp) out.set(`${l.address}|${l.port}`, { address: l.address, port: l.port, protocol: 'TCP', hosts: ['*'] });
  return out;
}

/**
 * `otherPorts`: bind ports Istio servers or Ingress already serve. A Gateway API listener shares
 * such a port only when the protocol is the same and its hostname overlaps none of theirs (so every
 * host is served by exactly one API); otherwise it is refused (PortUnavailable), never merged into
 * another API's virtual hosts.
 */
export function translateGatewayApi(ctx: TranslateContext, resources: ResourceSet, otherPorts: ReadonlyMap<string, PortUse>): GatewayApiResult {
  const controllerName = ctx.options.gatewayControllerName ?? DEFAULT_GATEWAY_CONTROLLER_NAME;
  const status = emptyStatus(controllerName);
  const rec = new StatusRecorder(ctx);
  const grants = new ReferenceGrants(resources);
  const tlsPolicies = new BackendTlsPolicies(resources, rec);
  const env: BackendEnv = { ctx, resources, grants, tlsPolicies };

  // 1. classes
  const served = new Set<string>();
  for (const gc of resources.ofKind('GatewayClass').filter(isGatewayApi)) {
    if (str(obj(gc.body.spec).controllerName) !== controllerName) continue;
    served.add(gc.metadata.name);
    const conditions: GatewayApiCondition[] = [];
    if (obj(gc.body.spec).parametersRef !== undefined) ctx.report('warning', 'MG_UNSUPPORTED', gc, 'spec.parametersRef', 'meshgate takes no GatewayClass parameters; parametersRef is ignored');
    rec.set(conditions, gc, 'Accepted', 'True', 'Accepted', `handled by ${controllerName}`);
    status.gatewayClasses.push({ ...statusKey(gc), conditions });
  }

  // 2. gateways and listeners
  const gateways = resources
    .ofKind('Gateway')
    .filter(isGatewayApi)
    .filter((g) => served.has(str(obj(g.body.spec).gatewayClassName) ?? ''))
    .sort(compareCreation);
  const listenersByGateway = new Map<string, PlannedListener[]>();
  const gatewayStatus = new Map<string, GatewayStatusOut>();
  for (const gw of gateways) {
    const key = `${gw.metadata.namespace}/${gw.metadata.name}`;
    const own = unsupportedAddressTypes(gw).length > 0 ? [] : ownAddresses(ctx, gw);
    const planned = arr(obj(gw.body.spec).listeners).map((l, i) => planListener(ctx, resources, rec, grants, gw, obj(l), i, own));
    listenersByGateway.set(key, planned);
    // An address type meshgate does not know: the Gateway is not accepted, none of its listeners served.
    const badTypes = unsupportedAddressTypes(gw);
    if (badTypes.length > 0) {
      for (const p of planned) {
        if (p.kind === null || !p.accepted) continue;
        p.accepted = false;
        rec.set(p.status.conditions, gw, 'Accepted', 'False', 'UnsupportedValue', `the Gateway is not accepted: spec.addresses type ${badTypes.join(', ')} is not supported`);
      }
    }
    const addresses =
      own.length > 0
        ? own.map((a) => ({ type: 'IPAddress', value: a }))
        : (ctx.options.gatewayAddresses ?? []).map((a) => ({ type: /^[\d.]+$|:/.test(a) ? 'IPAddress' : 'Hostname', value: a }));
    const gs: GatewayStatusOut = { ...statusKey(gw), addresses, conditions: [], listeners: planned.map((p) => p.status) };
    gatewayStatus.set(key, gs);
    status.gateways.push(gs);
  }
  const all = [...listenersByGateway.values()].flat();
  resolvePorts(ctx, rec, all, otherPorts);

  // 3. routes
  const routes: RouteInfo[] = ROUTE_KINDS.flatMap((k) => resources.ofKind(k).filter(isGatewayApi))
    .sort(compareCreation)
    .map((o, ordinal) => ({ obj: o, ordinal, status: { ...statusKey(o), parents: [] } }));
  for (const r of routes) {
    attachRoute(env, rec, r, listenersByGateway, controllerName);
    if (r.status.parents.length > 0) status.routes.push(r.status);
  }

  // Listener and Gateway conditions, now that attachedRoutes are known.
  for (const gw of gateways) {
    const key = `${gw.metadata.namespace}/${gw.metadata.name}`;
    const planned = listenersByGateway.get(key) ?? [];
    for (const l of planned) finishListener(rec, l);
    finishGateway(rec, gw, planned, gatewayStatus.get(key) as GatewayStatusOut);
  }

  // 4. IR
  const servedListeners = all.filter(isServed);
  const drafts = httpDrafts(ctx, env, servedListeners);
  const tcpListeners = tcpListenersOf(env, servedListeners);
  status.policies.push(...tlsPolicies.statuses(gateways, controllerName));
  return { drafts, tcpListeners, status: sortStatus(status) };
}

function isServed(l: PlannedListener): boolean {
  return l.kind !== null && l.accepted && !l.conflicted && l.refsOk;
}

/**
 * `spec.addresses` of type IPAddress (the default) that this machine can bind
 * (`gatewayBindableAddresses`) and that are not the shared bind address: the Gateway gets its own
 * sockets there. Other addresses are reported in finishGateway (AddressNotUsable).
 */
function ownAddresses(ctx: TranslateContext, gw: KubeObject): string[] {
  const bindable = ctx.options.gatewayBindableAddresses ?? [];
  const out: string[] = [];
  for (const a of arr(obj(gw.body.spec).addresses).map(obj)) {
    const type = str(a.type) ?? 'IPAddress';
    const value = str(a.value) ?? '';
    if (type !== 'IPAddress' || ipFamily(value) === 0) continue;
    if (sameAddress(value, ctx.options.bindAddress) || (ctx.options.gatewayAddresses ?? []).some((m) => sameAddress(m, value))) continue;
    if (bindable.some((c) => addressInCidr(value, c)) && !out.some((o) => sameAddress(o, value))) out.push(value);
  }
  return out;
}

// ---- listeners ----------------------------------------------------------------------------------

function planListener(ctx: TranslateContext, resources: ResourceSet, rec: StatusRecorder, grants: ReferenceGrants, gw: KubeObject, l: Obj, i: number, own: string[]): PlannedListener {
  const field = `spec.listeners[${i}]`;
  const protocol = str(l.protocol) ?? '';
  const port = num(l.port) ?? 0;
  const status: ListenerStatusOut = { name: str(l.name) ?? String(i), supportedKinds: [], attachedRoutes: 0, conditions: [] };
  const p: PlannedListener = {
    gateway: gw,
    field,
    name: status.name,
    hostname: normalizeHostname(str(l.hostname)),
    port,
    bindPort: ctx.options.portMap[String(port)] ?? port,
    addresses: own.length > 0 ? own : [ctx.options.bindAddress],
    ownAddress: own.length > 0,
    leader: null,
    members: [],
    kind: null,
    tlsMode: null,
    tls: null,
    supportedKinds: [],
    allowed: obj(l.allowedRoutes),
    status,
    accepted: true,
    conflicted: false,
    refsOk: true,
    attached: [],
    attachedSet: new Set(),
  };
  const cond = status.conditions;
  if (protocol === 'HTTP' || protocol === 'HTTPS' || protocol === 'TLS' || protocol === 'TCP') p.kind = protocol;
  else {
    p.accepted = false;
    const why = protocol === 'UDP' ? 'UDP listeners are not supported by meshgate' : `protocol ${JSON.stringify(protocol)} is not supported (HTTP, HTTPS, TLS, TCP are)`;
    rec.set(cond, gw, 'Accepted', 'False', 'UnsupportedProtocol', why, { code: 'MG_UNSUPPORTED', field: `${field}.protocol`, severity: 'warning' });
    return p;
  }
  if (p.hostname !== '*' && p.kind !== 'TCP') {
    const problem = hostnameProblem(p.hostname);
    if (problem !== null) {
      p.accepted = false;
      rec.set(cond, gw, 'Accepted', 'False', 'UnsupportedValue', `hostname ${JSON.stringify(p.hostname)}: ${problem}`, { code: 'MG_INVALID_FIELD', field: `${field}.hostname` });
    }
  }
  if (p.kind === 'TCP') p.hostname = '*';
  // allowedRoutes.kinds: the kinds this listener takes (empty = the protocol's kinds).
  const possible = KINDS_BY_PROTOCOL[p.kind];
  const kinds = arr(p.allowed.kinds).map(obj);
  if (kinds.length === 0) p.supportedKinds = possible.map((k) => ({ group: GATEWAY_GROUP, kind: k }));
  else {
    const bad: string[] = [];
    for (const k of kinds) {
      const group = str(k.group) ?? GATEWAY_GROUP;
      const kind = str(k.kind) ?? '';
      if (group === GATEWAY_GROUP && possible.includes(kind)) {
        if (!p.supportedKinds.some((s) => s.kind === kind)) p.supportedKinds.push({ group, kind });
      } else bad.push(`${group}/${kind}`);
    }
    if (bad.length > 0) {
      p.refsOk = p.supportedKinds.length > 0;
      rec.set(cond, gw, 'ResolvedRefs', 'False', 'InvalidRouteKinds', `route kinds ${bad.join(', ')} cannot attach to a ${p.kind} listener`, { code: 'MG_INVALID_FIELD', field: `${field}.allowedRoutes.kinds` });
    }
  }
  status.supportedKinds = p.supportedKinds;

  const tls = obj(l.tls);
  const hasTls = l.tls !== undefined && l.tls !== null;
  if (p.kind === 'HTTP' || p.kind === 'TCP') {
    if (hasTls) ctx.report('warning', 'MG_INVALID_FIELD', gw, `${field}.tls`, `tls is not allowed on a ${p.kind} listener; it is ignored`);
    return p;
  }
  const mode = str(tls.mode) ?? 'Terminate';
  if (!hasTls) {
    p.accepted = false;
    p.supportedKinds = status.supportedKinds = [];
    rec.set(cond, gw, 'Accepted', 'False', 'UnsupportedValue', `a ${p.kind} listener needs tls`, { code: 'MG_MISSING_FIELD', field: `${field}.tls` });
    return p;
  }
  if (mode !== 'Terminate' && mode !== 'Passthrough') {
    p.accepted = false;
    p.supportedKinds = status.supportedKinds = [];
    rec.set(cond, gw, 'Accepted', 'False', 'UnsupportedValue', `tls.mode ${JSON.stringify(mode)} is not Terminate or Passthrough`, { code: 'MG_INVALID_FIELD', field: `${field}.tls.mode` });
    return p;
  }
  if (p.kind === 'HTTPS' && mode === 'Passthrough') {
    p.accepted = false;
    p.supportedKinds = status.supportedKinds = [];
    rec.set(cond, gw, 'Accepted', 'False', 'UnsupportedValue', 'an HTTPS listener terminates TLS (use protocol TLS for passthrough)', { code: 'MG_INVALID_FIELD', field: `${field}.tls.mode` });
    return p;
  }
  p.tlsMode = mode;
  if (mode === 'Passthrough') return p;
  p.tls = listenerTls(ctx, resources, rec, grants, p, arr(tls.certificateRefs).map(obj));
  if (p.tls === null) p.refsOk = false;
  return p;
}

/** certificateRefs -> TLS context: core Secrets only; another namespace needs a ReferenceGrant from Gateways. */
function listenerTls(ctx: TranslateContext, resources: ResourceSet, rec: StatusRecorder, grants: ReferenceGrants, p: PlannedListener, refs: Obj[]): TlsContext | null {
  const gw = p.gateway;
  const cond = p.status.conditions;
  if (refs.length === 0) {
    rec.set(cond, gw, 'ResolvedRefs', 'False', 'InvalidCertificateRef', 'tls.certificateRefs is empty', { code: 'MG_MISSING_FIELD', field: `${p.field}.tls.certificateRefs` });
    return null;
  }
  const certificates: TlsCertificate[] = [];
  refs.forEach((r, k) => {
    const field = `${p.field}.tls.certificateRefs[${k}]`;
    const group = str(r.group) ?? '';
    const kind = str(r.kind) ?? 'Secret';
    const name = str(r.name) ?? '';
    const namespace = str(r.namespace) || gw.metadata.namespace;
    if (group !== '' || kind !== 'Secret') {
      rec.set(cond, gw, 'ResolvedRefs', 'False', 'InvalidCertificateRef', `${field}: ${group ? `${group}/` : ''}${kind} is not a Secret`, { code: 'MG_INVALID_FIELD', field });
      return;
    }
    if (!grants.permits({ group: GATEWAY_GROUP, kind: 'Gateway', namespace: gw.metadata.namespace }, { group: '', kind: 'Secret', namespace, name })) {
      rec.set(cond, gw, 'ResolvedRefs', 'False', 'RefNotPermitted', `${field}: Secret ${namespace}/${name} is in another namespace and no ReferenceGrant there allows Gateways from ${gw.metadata.namespace}`, { code: 'MG_REF_NOT_PERMITTED', field });
      return;
    }
    const serverNames = p.hostname === '*' ? [] : [p.hostname];
    const cert = loadTlsCertificate(ctx, resources, { namespace, name, serverNames, from: gw, field });
    if (cert === null) {
      const exists = resources.get('Secret', namespace, name) !== undefined;
      rec.set(cond, gw, 'ResolvedRefs', 'False', 'InvalidCertificateRef', `${field}: Secret ${namespace}/${name} ${exists ? 'holds no valid tls.crt/tls.key pair' : 'does not exist'}`);
      return;
    }
    certificates.push(cert);
  });
  if (certificates.length === 0) return null;
  return { certificates, minProtocolVersion: 'TLSv1.2', maxProtocolVersion: 'TLSv1.3', cipherSuites: [], clientValidation: null };
}

/**
 * Listeners of every Gateway placed on their sockets (bind address and port). Gateways without an
 * address of their own share `bindAddress`; one with its own address has its own sockets, and
 * cannot have them on a port something else holds on every address (a wildcard bind address).
 *
 * On one socket, listeners that are not distinct (Gateway API "Conflicted": a second protocol on
 * the socket (HTTP, HTTPS, TLS-passthrough, TLS-terminate, TCP are each one kind of socket here), or
 * the same hostname twice for one protocol, or two TCP listeners) are not served, with one
 * exception: identical listeners of *different* Gateways (same port, protocol, hostname and
 * certificates) are compatible, as in Envoy Gateway's merged gateways; the oldest Gateway's listener
 * serves the union of their routes (MG_LISTENERS_MERGED), and each keeps its own status.
 */
function resolvePorts(ctx: TranslateContext, rec: StatusRecorder, all: PlannedListener[], otherPorts: ReadonlyMap<string, PortUse>): void {
  const live = all.filter((l) => l.kind !== null && l.accepted);
  // Ports some shared listener takes on every address (a wildcard bind address): HTTP(S) ones hand
  // the connections that arrive at a Gateway's own address to its HTTP(S) listeners (the runtime
  // dispatches by local address); relayed (TLS/TCP) ones hand nothing over.
  const wildcardHttp = new Set<number>();
  const wildcardRelay = new Set<number>();
  for (const l of live) if (!l.ownAddress && l.addresses.some(isWildcardAddress)) (l.kind === 'HTTP' || l.kind === 'HTTPS' ? wildcardHttp : wildcardRelay).add(l.bindPort);
  for (const u of otherPorts.values()) if (isWildcardAddress(u.address)) (u.protocol === 'TCP' ? wildcardRelay : wildcardHttp).add(u.port);
  const bySocket = new Map<string, PlannedListener[]>();
  for (const l of live) {
    const http = l.kind === 'HTTP' || l.kind === 'HTTPS';
    if (l.ownAddress && (wildcardRelay.has(l.bindPort) || (!http && wildcardHttp.has(l.bindPort)))) {
      l.accepted = false;
      const by = wildcardRelay.has(l.bindPort) ? 'TCP/TLS listeners, which relay every connection of the port' : 'HTTP listeners, which can hand on HTTP connections only';
      rec.set(l.status.conditions, l.gateway, 'Accepted', 'False', 'PortUnavailable', `port ${l.port} (bound as ${l.bindPort}) is taken on every address (bind address ${ctx.options.bindAddress}) by ${by}, so the Gateway's own address ${l.addresses.join(', ')} cannot have this ${l.kind} listener there; map the port elsewhere (--port-map) or bind a specific address (--bind-address)`, { code: 'MG_PORT_CONFLICT', field: `${l.field}.port` });
      continue;
    }
    let refused = false;
    for (const address of l.addresses) {
      const other = usesAt(otherPorts, address, l.bindPort);
      // An HTTP(S) listener on a Gateway's own address beside another API's HTTP(S) listener on every
      // address is a listener of its own (served through that socket, by local address).
      const beside = other !== null && l.ownAddress && http && other.protocol !== 'TCP' && isWildcardAddress(other.address) && other.address !== address;
      const why = other === null || beside ? null : l.ownAddress ? 'a Gateway with its own address does not share its sockets with another API' : sharingProblem(l, other);
      if (why !== null) {
        l.accepted = false;
        refused = true;
        rec.set(l.status.conditions, l.gateway, 'Accepted', 'False', 'PortUnavailable', `port ${l.port} (bound as ${l.bindPort}) is already served by Istio Gateway servers or Ingress and ${why}`, { code: 'MG_PORT_CONFLICT', field: `${l.field}.port` });
        break;
      }
    }
    if (refused) continue;
    for (const address of l.addresses) {
      const key = `${address}|${l.bindPort}`;
      const list = bySocket.get(key) ?? [];
      list.push(l);
      bySocket.set(key, list);
    }
  }
  const socketKind = (l: PlannedListener): string => (l.kind === 'TLS' ? `TLS-${l.tlsMode}` : (l.kind as string));
  const describe = (l: PlannedListener): string => `${l.gateway.metadata.namespace}/${l.gateway.metadata.name}/${l.name}`;
  for (const list of bySocket.values()) {
    const kinds = new Set(list.map(socketKind));
    if (kinds.size > 1) {
      for (const l of list) {
        l.conflicted = true;
        rec.set(l.status.conditions, l.gateway, 'Accepted', 'False', 'ProtocolConflict', 'listener conflicts with another listener of the port');
        rec.set(l.status.conditions, l.gateway, 'Conflicted', 'True', 'ProtocolConflict', `port ${l.port} is wanted with different protocols (${[...kinds].sort().join(', ')}) by listeners of Gateways of this class; none of them is served`, { code: 'MG_PORT_CONFLICT', field: `${l.field}.protocol` });
      }
      continue;
    }
    const byHost = new Map<string, PlannedListener[]>();
    for (const l of list) {
      const h = l.kind === 'TCP' ? '' : l.hostname;
      byHost.set(h, [...(byHost.get(h) ?? []), l]);
    }
    for (const [h, same] of byHost) {
      if (same.length < 2) continue;
      // Listeners whose certificates do not resolve are not served anyway: they neither conflict
      // with nor join the others.
      const ready = same.filter((l) => l.refsOk);
      if (ready.length < 2) continue;
      const lead = ready[0];
      const compatible = ready.every((l) => l.port === lead.port && tlsSignature(l) === tlsSignature(lead)) && new Set(ready.map((l) => l.gateway)).size === ready.length;
      if (compatible) {
        if (lead.leader !== null) continue; // merged on another of its addresses already
        for (const l of ready.slice(1)) {
          l.leader = lead;
          lead.members.push(l);
        }
        const names = ready.map(describe).join(', ');
        for (const l of ready) {
          ctx.report('info', 'MG_LISTENERS_MERGED', l.gateway, l.field, `listeners ${names} are identical (port ${l.port}${h ? `, hostname ${h}` : ', no hostname'}, protocol ${l.kind}) on the shared address ${l.addresses.join(', ')}: they are served together, each request by the union of their routes in the Gateway API's precedence order; give a Gateway an address of its own (spec.addresses) to keep its routes apart`);
        }
        continue;
      }
      const names = ready.map(describe).join(', ');
      const ports = [...new Set(ready.map((l) => l.port))];
      const where = ports.length > 1 ? `Gateway ports ${ports.join(', ')} (all bound as ${ready[0].bindPort} by --port-map)` : `port ${ready[0].port}`;
      const sameGateway = new Set(ready.map((l) => l.gateway)).size < ready.length;
      const why = ports.length > 1 || sameGateway ? '' : ' with different certificates';
      for (const l of ready) {
        l.conflicted = true;
        rec.set(l.status.conditions, l.gateway, 'Accepted', 'False', 'HostnameConflict', 'listener conflicts with another listener of the port');
        rec.set(l.status.conditions, l.gateway, 'Conflicted', 'True', 'HostnameConflict', `listeners ${names} share ${where}${h ? ` and hostname ${h}` : ''}${why}; none of them is served`, { code: 'MG_PORT_CONFLICT', field: `${l.field}.hostname` });
      }
    }
    // HTTPS listeners of one port whose hostnames overlap (`*.example.com` and `a.example.com`).
    const https = list.filter((l) => l.kind === 'HTTPS' && !l.conflicted && l.leader === null);
    for (const l of https) {
      const other = https.find((o) => o !== l && (hostnameWithin(o.hostname, l.hostname) || hostnameWithin(l.hostname, o.hostname)));
      if (other) rec.set(l.status.conditions, l.gateway, 'OverlappingTLSConfig', 'True', 'OverlappingHostnames', `hostname ${l.hostname} overlaps ${other.hostname} of listener ${other.gateway.metadata.name}/${other.name} on port ${l.port}; the certificate is chosen by SNI`);
    }
  }
}

/** What must be equal for two listeners' TLS to be one: the certificates' Secrets (and the mode). */
function tlsSignature(l: PlannedListener): string {
  return `${l.tlsMode ?? ''}|${(l.tls?.certificates ?? []).map((c) => c.secret).sort().join(',')}`;
}

/** What other APIs serve on the socket `address:port` (or on a wildcard address of that port). */
function usesAt(uses: ReadonlyMap<string, PortUse>, address: string, port: number): PortUse | null {
  for (const u of uses.values()) if (u.port === port && (u.address === address || isWildcardAddress(u.address) || isWildcardAddress(address))) return u;
  return null;
}

/** Why `l` cannot share a port with Istio/Ingress, or null when it can (same protocol, no host in common). */
function sharingProblem(l: PlannedListener, other: PortUse): string | null {
  if (other.protocol === 'TCP' || (l.kind !== 'HTTP' && l.kind !== 'HTTPS')) return 'a relayed (TCP/TLS) port is never shared between APIs';
  if (other.protocol !== l.kind) return `it is served there as ${other.protocol}, not ${l.kind}`;
  if (l.hostname === '*') return 'a listener without hostname would take their hosts; give the listener a hostname they do not serve';
  const overlap = other.hosts.find((h) => hostnameWithin(h, l.hostname) || hostnameWithin(l.hostname, h));
  return overlap === undefined ? null : `host ${overlap} there overlaps the listener hostname ${l.hostname}: one API would shadow the other`;
}

function finishListener(rec: StatusRecorder, l: PlannedListener): void {
  const c = l.status.conditions;
  const gw = l.gateway;
  if (!c.some((x) => x.type === 'Accepted')) rec.set(c, gw, 'Accepted', 'True', 'Accepted', 'listener accepted');
  if (!c.some((x) => x.type === 'ResolvedRefs')) rec.set(c, gw, 'ResolvedRefs', 'True', 'ResolvedRefs', 'all references resolved');
  if (!c.some((x) => x.type === 'Conflicted')) rec.set(c, gw, 'Conflicted', 'False', 'NoConflicts', 'no conflicts');
  if (isServed(l)) {
    const lead = l.leader ?? l;
    const together = [lead, ...lead.members].filter((o) => o !== l && isServed(o)).map((o) => `${o.gateway.metadata.namespace}/${o.gateway.metadata.name}/${o.name}`);
    const at = l.ownAddress ? ` at ${l.addresses.join(', ')}` : '';
    rec.set(c, gw, 'Programmed', 'True', 'Programmed', `served on port ${l.bindPort}${at}${together.length > 0 ? ` together with the identical listener(s) ${together.join(', ')}` : ''}`);
  }
  else rec.set(c, gw, 'Programmed', 'False', 'Invalid', 'listener is not served (see its other conditions)');
  l.status.attachedRoutes = l.attached.length;
}

/** `spec.addresses` types other than IPAddress (the default) and Hostname. */
function unsupportedAddressTypes(gw: KubeObject): string[] {
  return arr(obj(gw.body.spec).addresses)
    .map((a) => str(obj(a).type) ?? 'IPAddress')
    .filter((t) => t !== 'IPAddress' && t !== 'Hostname');
}

function finishGateway(rec: StatusRecorder, gw: KubeObject, planned: PlannedListener[], gs: GatewayStatusOut): void {
  const valid = planned.filter(isServed).length;
  const badTypes = unsupportedAddressTypes(gw);
  if (badTypes.length > 0) {
    rec.set(gs.conditions, gw, 'Accepted', 'False', 'UnsupportedAddress', `spec.addresses type ${badTypes.map((t) => JSON.stringify(t)).join(', ')} is not supported (IPAddress and Hostname are); the Gateway is not served`, { code: 'MG_UNSUPPORTED', field: 'spec.addresses', severity: 'warning' });
    rec.set(gs.conditions, gw, 'Programmed', 'False', 'Invalid', 'the Gateway is not accepted');
    return;
  }
  if (planned.length > 0 && valid === planned.length) rec.set(gs.conditions, gw, 'Accepted', 'True', 'Accepted', 'all listeners are valid');
  else if (valid > 0) rec.set(gs.conditions, gw, 'Accepted', 'True', 'ListenersNotValid', `${planned.length - valid} of ${planned.length} listeners are not valid`);
  else rec.set(gs.conditions, gw, 'Accepted', 'False', 'ListenersNotValid', 'no listener is valid', { code: 'MG_UNSUPPORTED', field: 'spec.listeners', severity: 'warning' });
  const requested = arr(obj(gw.body.spec).addresses).map((a) => str(obj(a).value) ?? '');
  const mine = new Set(gs.addresses.map((a) => a.value));
  const unusable = requested.filter((a) => a !== '' && !mine.has(a));
  if (unusable.length > 0) {
    rec.set(gs.conditions, gw, 'Programmed', 'False', 'AddressNotUsable', `meshgate cannot take the addresses ${unusable.join(', ')} (it serves ${[...mine].join(', ') || 'its own address'})`, { code: 'MG_UNSUPPORTED', field: 'spec.addresses', severity: 'warning' });
  } else if (valid > 0) rec.set(gs.conditions, gw, 'Programmed', 'True', 'Programmed', `${valid} listener(s) served`);
  else rec.set(gs.conditions, gw, 'Programmed', 'False', 'Invalid', 'no listener is served');
}

// ---- route attachment ---------------------------------------------------------------------------

function attachRoute(env: BackendEnv, rec: StatusRecorder, r: RouteInfo, listenersByGateway: Map<string, PlannedListener[]>, controllerName: string): void {
  const route = r.obj;
  const spec = obj(route.body.spec);
  const routeHostnames = arr(spec.hostnames)
    .filter((h): h is string => typeof h === 'string')
    .map(normalizeHostname);
  // Backends are resolved once; every parent gets the same ResolvedRefs.
  const problems = route.kind === 'UDPRoute' ? [] : backendProblems(env, route);
  arr(spec.parentRefs).forEach((pr, pi) => {
    const ref = obj(pr);
    const field = `spec.parentRefs[${pi}]`;
    const group = str(ref.group) ?? GATEWAY_GROUP;
    const kind = str(ref.kind) ?? 'Gateway';
    if (group !== GATEWAY_GROUP || kind !== 'Gateway') return; // a mesh Service or ListenerSet: not a parent meshgate manages
    const namespace = str(ref.namespace) || route.metadata.namespace;
    const name = str(ref.name) ?? '';
    const listeners = listenersByGateway.get(`${namespace}/${name}`);
    if (listeners === undefined) return; // not a Gateway of meshgate's class (or none at all)
    const parentRef: ParentRefOut = { group, kind, namespace, name };
    const sectionName = str(ref.sectionName);
    const port = num(ref.port);
    if (sectionName !== undefined) parentRef.sectionName = sectionName;
    if (port !== undefined) parentRef.port = port;
    const parent: RouteParentStatusOut = { parentRef, controllerName, conditions: [] };
    r.status.parents.push(parent);
    const c = parent.conditions;

    if (route.kind === 'UDPRoute') {
      rec.set(c, route, 'Accepted', 'False', 'UnsupportedValue', 'UDPRoute is not supported by meshgate', { code: 'MG_UNSUPPORTED', field, severity: 'warning' });
      return;
    }
    const candidates = listeners.filter((l) => (sectionName === undefined || l.name === sectionName) && (port === undefined || l.port === port));
    if (candidates.length === 0) {
      const what = [sectionName !== undefined ? `sectionName ${sectionName}` : '', port !== undefined ? `port ${port}` : ''].filter(Boolean).join(' and ');
      rec.set(c, route, 'Accepted', 'False', 'NoMatchingParent', `Gateway ${namespace}/${name} has no listener with ${what}`, { code: 'MG_ROUTE_NOT_ACCEPTED', field });
      return;
    }
    const allowed = candidates.filter((l) => l.supportedKinds.some((k) => k.kind === route.kind) && namespaceAllowed(env, l, route));
    if (allowed.length === 0) {
      rec.set(c, route, 'Accepted', 'False', 'NotAllowedByListeners', `no listener of Gateway ${namespace}/${name}${sectionName ? ` (${sectionName})` : ''} admits ${route.kind}s from namespace ${route.metadata.namespace}`, { code: 'MG_ROUTE_NOT_ACCEPTED', field });
      return;
    }
    let attachedAny = false;
    let rival: RouteInfo | null = null;
    for (const l of allowed) {
      const hostnames = route.kind === 'TCPRoute' ? ['*'] : intersectHostnames(l.hostname, routeHostnames);
      if (hostnames.length === 0) continue;
      // An HTTPRoute and a GRPCRoute with intersecting hostnames on one listener: only the older one
      // (routes come in creation then namespace/name order) is served there (the spec's GRPCRoute rule).
      const other = route.kind === 'HTTPRoute' ? 'GRPCRoute' : route.kind === 'GRPCRoute' ? 'HTTPRoute' : null;
      const clash = other === null ? undefined : l.attached.find((a) => a.route.obj.kind === other && a.hostnames.some((h) => hostnames.some((x) => hostnameWithin(h, x) || hostnameWithin(x, h))));
      if (clash !== undefined) {
        rival = clash.route;
        continue;
      }
      // Two parentRefs of one route can select the same listener: it counts once.
      if (!l.attachedSet.has(r)) {
        l.attachedSet.add(r);
        l.attached.push({ route: r, hostnames });
      }
      attachedAny = true;
    }
    if (!attachedAny && rival !== null) {
      const o = rival.obj;
      rec.set(c, route, 'Accepted', 'False', 'NotAllowedByListeners', `its hostnames are already served by the older ${o.kind} ${o.metadata.namespace}/${o.metadata.name} on the listeners of Gateway ${namespace}/${name}; an HTTPRoute and a GRPCRoute cannot share a hostname on one listener`, { code: 'MG_ROUTE_NOT_ACCEPTED', field: 'spec.hostnames' });
      return;
    }
    if (!attachedAny) {
      rec.set(c, route, 'Accepted', 'False', 'NoMatchingListenerHostname', `hostnames ${routeHostnames.join(', ')} intersect no listener hostname of Gateway ${namespace}/${name}`, { code: 'MG_ROUTE_NOT_ACCEPTED', field: 'spec.hostnames' });
      return;
    }
    rec.set(c, route, 'Accepted', 'True', 'Accepted', `attached to Gateway ${namespace}/${name}`);
    if (problems.length > 0) {
      const first = problems[0];
      rec.set(c, route, 'ResolvedRefs', 'False', first.reason, problems.map((p) => p.message).join('; '));
      // One diagnostic per reference, at its own field (identical ones from other parents are merged by translate).
      for (const p of problems) env.ctx.report('error', p.reason === 'RefNotPermitted' ? 'MG_REF_NOT_PERMITTED' : 'MG_BACKEND_NOT_RESOLVED', route, p.field, `ResolvedRefs=False ${p.reason}: ${p.message}`);
    } else rec.set(c, route, 'ResolvedRefs', 'True', 'ResolvedRefs', 'all backend references resolved');
  });
}

function namespaceAllowed(env: BackendEnv, l: PlannedListener, route: KubeObject): boolean {
  const ns = obj(l.allowed.namespaces);
  const from = str(ns.from) ?? 'Same';
  if (from === 'All') return true;
  if (from === 'Same') return route.metadata.namespace === l.gateway.metadata.namespace;
  if (from === 'Selector') return selectorMatches(obj(ns.selector), namespaceLabels(env.resources, route.metadata.namespace)) === true;
  return false;
}

/** Unresolved references of a route's backendRefs and mirror backendRefs (without building anything). */
function backendProblems(env: BackendEnv, route: KubeObject): BackendProblem[] {
  const out: BackendProblem[] = [];
  const probe: BackendEnv = { ...env, ctx: env.ctx };
  arr(obj(route.body.spec).rules).forEach((r, ri) => {
    const rule = obj(r);
    arr(rule.backendRefs).forEach((b, bi) => {
      const res = checkRef(probe, route, obj(b), `spec.rules[${ri}].backendRefs[${bi}]`);
      if (res) out.push(res);
    });
    arr(rule.filters).forEach((f, fi) => {
      const m = obj(obj(f).requestMirror);
      if (m.backendRef === undefined) return;
      const res = checkRef(probe, route, obj(m.backendRef), `spec.rules[${ri}].filters[${fi}].requestMirror.backendRef`);
      if (res) out.push(res);
    });
  });
  return out;
}

function checkRef(env: BackendEnv, route: KubeObject, ref: Obj, field: string): BackendProblem | null {
  const group = str(ref.group) ?? '';
  const kind = str(ref.kind) ?? 'Service';
  const name = str(ref.name) ?? '';
  const namespace = str(ref.namespace) || route.metadata.namespace;
  if (group !== '' || kind !== 'Service') return { reason: 'InvalidKind', field, message: `${field}: backend kind ${group ? `${group}/` : ''}${kind} is not supported (only core Services)` };
  if (!env.grants.permits({ group: GATEWAY_GROUP, kind: route.kind, namespace: route.metadata.namespace }, { group: '', kind: 'Service', namespace, name })) {
    return { reason: 'RefNotPermitted', field, message: `${field}: Service ${namespace}/${name} is in another namespace and no ReferenceGrant there allows ${route.kind}s from ${route.metadata.namespace}` };
  }
  const svc = env.resources.get('Service', namespace, name);
  if (!svc) return { reason: 'BackendNotFound', field, message: `${field}: Service ${namespace}/${name} does not exist` };
  const port = num(ref.port);
  if (port === undefined) return { reason: 'BackendNotFound', field, message: `${field}: port is required for a Service backend` };
  if (!arr(obj(svc.body.spec).ports).some((p) => num(obj(p).port) === port)) return { reason: 'BackendNotFound', field, message: `${field}: Service ${namespace}/${name} has no port ${port}` };
  return null;
}

// ---- HTTP and HTTPS listeners -------------------------------------------------------------------

/**
 * The served listeners by socket (`address|bindPort`), leaders only (a merged listener's routes are
 * served by its leader), most specific hostname first.
 */
function bySocket(listeners: PlannedListener[], kinds: readonly ListenerKind[]): { address: string; bindPort: number; list: PlannedListener[] }[] {
  const out = new Map<string, { address: string; bindPort: number; list: PlannedListener[] }>();
  for (const l of listeners) {
    if (l.kind === null || !kinds.includes(l.kind) || l.leader !== null) continue;
    for (const address of l.addresses) {
      const key = `${address}|${l.bindPort}`;
      let entry = out.get(key);
      if (entry === undefined) out.set(key, (entry = { address, bindPort: l.bindPort, list: [] }));
      entry.list.push(l);
    }
  }
  return [...out.values()].sort((a, b) => a.bindPort - b.bindPort || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
}

/** A leader and the served listeners merged into it. */
function groupOf(l: PlannedListener): PlannedListener[] {
  return [l, ...l.members.filter(isServed)];
}

function httpDrafts(ctx: TranslateContext, env: BackendEnv, listeners: PlannedListener[]): ListenerDraft[] {
  const cache = new Map<string, BuiltRoute>();
  const build = (r: RouteInfo, port: number): BuiltRoute => {
    const key = `${r.ordinal}|${port}`;
    let b = cache.get(key);
    if (!b) cache.set(key, (b = buildHttpRoute(env, r.obj, port, r.ordinal)));
    return b;
  };
  const drafts: ListenerDraft[] = [];
  for (const { address, bindPort, list } of bySocket(listeners, ['HTTP', 'HTTPS'])) {
    // Most specific listener first (exact hostnames, then longer wildcards, then none).
    const specificity = new Map(list.map((l) => [l, hostnameSpecificity(l.hostname)]));
    list.sort((a, b) => (specificity.get(b) ?? 0) - (specificity.get(a) ?? 0) || (a.hostname < b.hostname ? -1 : a.hostname > b.hostname ? 1 : 0));
    const first = list[0];
    const chains: FilterChainDraft[] = [];
    const httpVhosts: VirtualHostDraft[] = [];
    for (const l of list) {
      const vhosts = listenerVirtualHosts(groupOf(l), build);
      if (l.kind === 'HTTPS') {
        // Gateway API chains answer 421 to a request whose Host belongs to another chain of the
        // port than its SNI chose (GatewayHTTPSListenerDetectMisdirectedRequests).
        chains.push({ name: `gatewayapi.https.${l.port}.${l.name}.${l.gateway.metadata.name}.${l.gateway.metadata.namespace}`, serverNames: l.hostname === '*' ? [] : [l.hostname], tls: l.tls, virtualHosts: vhosts, rejectMisdirected: true });
        continue;
      }
      // Plain HTTP: every listener of the port shares one chain; a virtual host that lies inside a
      // more specific listener's hostname belongs to that listener (listener isolation).
      const mine = specificity.get(l) ?? 0;
      const moreSpecific = list.filter((o) => (specificity.get(o) ?? 0) > mine);
      for (const vh of vhosts) {
        const owner = moreSpecific.find((o) => hostnameWithin(vh.domain, o.hostname));
        if (owner !== undefined) continue;
        httpVhosts.push(vh);
      }
    }
    if (first.kind === 'HTTP') chains.push({ name: `http.${first.port}`, serverNames: [], tls: null, virtualHosts: httpVhosts });
    drafts.push({ address, port: bindPort, externalPort: first.port, protocol: first.kind === 'HTTPS' ? 'HTTPS' : 'HTTP', chains, source: sourceOf(first.gateway, first.field) });
  }
  return drafts;
}

/**
 * The virtual hosts of a listener (with the identical listeners merged into it): one per intersected
 * hostname, plus the listener's own (possibly without routes: 404). A route attached to several of
 * the merged listeners counts once; the routes of all of them are ordered together by the spec's
 * precedence.
 */
function listenerVirtualHosts(group: PlannedListener[], build: (r: RouteInfo, port: number) => BuiltRoute): VirtualHostDraft[] {
  const l = group[0];
  const byDomain = new Map<string, RankedRoute[]>([[l.hostname, []]]);
  const seen = new Set<string>();
  for (const m of group) {
    for (const a of m.attached) {
      if (a.route.obj.kind !== 'HTTPRoute' && a.route.obj.kind !== 'GRPCRoute') continue;
      const built = build(a.route, l.port);
      for (const h of a.hostnames) {
        if (seen.has(`${a.route.ordinal}|${h}`)) continue;
        seen.add(`${a.route.ordinal}|${h}`);
        let list = byDomain.get(h);
        if (list === undefined) byDomain.set(h, (list = []));
        for (const r of built.ranked) list.push(r);
      }
    }
  }
  const source = sourceOf(l.gateway, l.field);
  return [...byDomain].map(([domain, ranked]) => ({
    domain,
    singleLabelWildcard: false,
    httpsRedirect: null,
    routes: [...ranked].sort((a, b) => compareKeys(a.key, b.key)).map((r) => r.route),
    source,
  }));
}

function compareKeys(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

// ---- TLS and TCP listeners ----------------------------------------------------------------------

function tcpListenersOf(env: BackendEnv, listeners: PlannedListener[]): TcpListener[] {
  const out: TcpListener[] = [];
  for (const { address, bindPort, list } of bySocket(listeners, ['TLS', 'TCP'])) {
    list.sort((a, b) => hostnameSpecificity(b.hostname) - hostnameSpecificity(a.hostname));
    const first = list[0];
    const base = { name: `${address}_${bindPort}`, address, port: bindPort, externalPort: first.port };
    if (first.kind === 'TCP') {
      // Two TCPRoutes on one listener (or on identical listeners of several Gateways): all are
      // accepted, the oldest gets the connections.
      const oldest = groupOf(first).flatMap((m) => m.attached).sort((a, b) => a.route.ordinal - b.route.ordinal)[0];
      const routes = oldest ? [l4Route(env, oldest.route, null)] : [];
      out.push({ ...base, protocol: 'TCP', routes, tlsChains: [] });
      continue;
    }
    if (first.tlsMode === 'Passthrough') {
      // Listener isolation by SNI, as for HTTP hosts: a route hostname inside a more specific
      // listener's hostname belongs to that listener; and an SNI a listener's hostname matches but
      // none of its routes does is refused, not passed to a less specific listener's routes.
      const spec = new Map(list.map((l) => [l, hostnameSpecificity(l.hostname)]));
      const routes: SniRoute[] = [];
      for (const l of list) {
        const moreSpecific = list.filter((o) => (spec.get(o) ?? 0) > (spec.get(l) ?? 0));
        for (const r of tlsRoutes(env, l)) if (!moreSpecific.some((o) => hostnameWithin(r.host, o.hostname))) routes.push(r);
        if (l.hostname !== '*' && list.some((o) => (spec.get(o) ?? 0) < (spec.get(l) ?? 0))) {
          const gw = l.gateway;
          routes.push({
            route: { name: `gateway/${gw.metadata.namespace}/${gw.metadata.name}/listener/${l.name}/no-route`, source: sourceOf(gw, l.field), matches: [{ sniHosts: [l.hostname], destinationSubnets: [], port: null }], destinations: [{ cluster: invalidBackendCluster(env, gw, `${l.field}.no-route`), weight: 1 }] },
            host: l.hostname,
            ordinal: Number.MAX_SAFE_INTEGER,
          });
        }
      }
      out.push({ ...base, protocol: 'TLS', routes: sortBySni(routes), tlsChains: [] });
      continue;
    }
    const tlsChains = list.map((l) => ({
      name: `gatewayapi.tls.${l.port}.${l.name}.${l.gateway.metadata.name}.${l.gateway.metadata.namespace}`,
      serverNames: l.hostname === '*' ? [] : [l.hostname],
      tls: l.tls as TlsContext,
      routes: sortBySni(tlsRoutes(env, l)),
    }));
    out.push({ ...base, protocol: 'TLS_TERMINATE', routes: [], tlsChains });
  }
  return out;
}

interface SniRoute {
  route: TcpRoute;
  host: string;
  ordinal: number;
}

/** The SNI routes of a listener and of the identical listeners merged into it (a route attached to several counts once). */
function tlsRoutes(env: BackendEnv, l: PlannedListener): SniRoute[] {
  const out: SniRoute[] = [];
  const seen = new Set<string>();
  for (const m of groupOf(l)) {
    for (const a of m.attached) {
      if (a.route.obj.kind !== 'TLSRoute') continue;
      for (const h of a.hostnames) {
        if (seen.has(`${a.route.ordinal}|${h}`)) continue;
        seen.add(`${a.route.ordinal}|${h}`);
        out.push({ route: l4Route(env, a.route, h), host: h, ordinal: a.route.ordinal });
      }
    }
  }
  return out;
}

/** Exact SNI names before wildcards, longer wildcards first, then the oldest route. */
function sortBySni(list: SniRoute[]): TcpRoute[] {
  return [...list].sort((a, b) => hostnameSpecificity(b.host) - hostnameSpecificity(a.host) || b.host.length - a.host.length || a.ordinal - b.ordinal).map((r) => r.route);
}

/** A TLSRoute (for `host`) or TCPRoute: its one rule's backendRefs by weight; invalid ones get a share of closed connections. */
function l4Route(env: BackendEnv, r: RouteInfo, host: string | null): TcpRoute {
  const route = r.obj;
  const rules = arr(obj(route.body.spec).rules);
  if (rules.length > 1) env.ctx.report('warning', 'MG_UNSUPPORTED', route, 'spec.rules[1]', `a ${route.kind} has exactly one rule; rules after the first are ignored`);
  const destinations: { cluster: string; weight: number }[] = [];
  arr(obj(rules[0]).backendRefs).forEach((b, i) => {
    const bo = obj(b);
    const field = `spec.rules[0].backendRefs[${i}]`;
    const weight = num(bo.weight) ?? 1;
    if (weight === 0) return;
    const res = resolveBackend(env, route, bo, field, false);
    destinations.push({ cluster: res.ok ? res.cluster : invalidBackendCluster(env, route, field), weight });
  });
  if (destinations.length === 0) destinations.push({ cluster: invalidBackendCluster(env, route, 'spec.rules[0]'), weight: 1 });
  const sniHosts = host === null || host === '*' ? [] : [host];
  const name = `${route.kind.toLowerCase()}/${route.metadata.namespace}/${route.metadata.name}${host !== null ? `/sni/${host}` : ''}`;
  return { name, source: sourceOf(route, 'spec.rules[0]'), matches: [{ sniHosts, destinationSubnets: [], port: null }], destinations };
}

export type { GatewayApiStatus } from './status.js';
