/**
 * Istio Gateway + VirtualService + DestinationRule (networking.istio.io v1alpha3, v1beta1, v1) ->
 * listener drafts.
 *
 * Steps, each ordering rule stated where it is applied:
 *  1. Gateways whose `selector` is a subset of this proxy's labels apply (empty selector: all), in
 *     creation order; their servers become listener plans (HTTP, or HTTPS terminated with SIMPLE).
 *  2. VirtualServices bind to Gateways through `spec.gateways` (`[ns/]name`, unqualified = the VS's
 *     namespace; `mesh` is for sidecars), if exported to the Gateway's namespace.
 *  3. For every server, each bound VirtualService host meets each server host (namespace part
 *     honoured); the more specific name is the virtual host's domain.
 *  4. Per filter chain (all HTTP servers of a port share one, as Istio's `http.<port>` route config;
 *     each HTTPS server has its own), routes for one domain are concatenated: servers in Gateway
 *     creation then list order, VirtualServices in creation order, each VS's own order kept. Then the
 *     catch-all routes move after all others (Istio SortVHostRoutes); a catch-all after the first one
 *     can never match (MG_UNREACHABLE_ROUTE).
 *  5. `tls.httpsRedirect` on an HTTP server: each of its virtual hosts redirects (301), and a virtual
 *     host is synthesized for every server host even when no VirtualService binds (as Istio does).
 */
import type { HttpsRedirect, TlsCertificate, TlsContext, TlsVersion } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { compareByCreation } from '../../resources/resource-set.js';
import { arr, isObj, num, obj, str, strMap } from '../../lib/unknown.js';
import { matchesLabels } from '../backends.js';
import { loadTlsCertificate } from '../secrets.js';
import { selectsSomePod } from '../selection.js';
import { sourceOf, type FilterChainDraft, type ListenerDraft, type TranslateContext, type VirtualHostDraft } from '../types.js';
import { destinationRulesFor, type DestinationRuleIndex } from './destination-rules.js';
import { intersectHosts, isIpAddress, namespaceAdmits, parseServerHost, type ServerHost } from './hosts.js';
import { getIstioObject, istioObjects } from './objects.js';
import { qualifyGateway, translateVirtualServiceRoutes, type TranslatedRoute } from './routes.js';
import { clientValidationOf } from './tls.js';

/** A selected Gateway. */
export interface GatewayInfo {
  obj: KubeObject;
  /** `namespace/name`. */
  key: string;
  /** Hosts of every server, served or not (a VS host admitted by a TLS passthrough server is not "not in gateway"). */
  allHosts: ServerHost[];
}

/** A server meshgate serves. */
interface ServerPlan {
  gateway: GatewayInfo;
  index: number;
  field: string;
  protocol: 'HTTP' | 'HTTPS';
  /** `port.number`: what clients use; the listener's externalPort. */
  port: number;
  /** After `--port-map`. */
  bindPort: number;
  address: string;
  hosts: ServerHost[];
  httpsRedirect: boolean;
  tls: TlsContext | null;
  /** HTTPS: SNI names of the chain (`[]` = any). */
  serverNames: string[];
  chainName: string;
}

const HTTP_PROTOCOLS = new Set(['HTTP', 'HTTP2', 'GRPC', 'GRPC-WEB']);

export function translateIstio(ctx: TranslateContext, resources: ResourceSet): ListenerDraft[] {
  const gateways = selectGateways(ctx, resources);
  const servers = gateways.flatMap((g) => planServers(ctx, resources, g));
  const bound = bindVirtualServices(ctx, resources, gateways);
  const drs = destinationRulesFor(ctx, resources);
  return buildDrafts(ctx, resources, drs, servers, bound);
}

// ---- 1. gateways and servers -----------------------------------------------------------------

export function selectGateways(ctx: TranslateContext, resources: ResourceSet): GatewayInfo[] {
  const out: GatewayInfo[] = [];
  // Istio merges Gateways in creation order; servers on one port are taken in that order.
  for (const gw of [...istioObjects(resources, 'Gateway')].sort(compareByCreation)) {
    const spec = obj(gw.body.spec);
    const selector = strMap(spec.selector);
    if (!matchesLabels(ctx.options.gatewayLabels, selector)) {
      const want = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(',');
      const have = Object.entries(ctx.options.gatewayLabels).map(([k, v]) => `${k}=${v}`).join(',') || '(none)';
      // Istio searches every namespace for the selected pods (PILOT_SCOPE_GATEWAY_TO_NAMESPACE off).
      const elsewhere = selectsSomePod(resources, selector, null);
      ctx.report(elsewhere ? 'info' : 'warning', 'MG_GATEWAY_NOT_SELECTED', gw, 'spec.selector', `selector ${want} does not select this gateway (labels ${have})${elsewhere ? '' : ' nor any Pod'}; its servers are not served here`);
      continue;
    }
    const allHosts: ServerHost[] = [];
    for (const s of arr(spec.servers)) for (const h of arr(obj(s).hosts)) if (typeof h === 'string') allHosts.push(parseServerHost(h, gw.metadata.namespace));
    out.push({ obj: gw, key: `${gw.metadata.namespace}/${gw.metadata.name}`, allHosts });
  }
  return out;
}

function planServers(ctx: TranslateContext, resources: ResourceSet, g: GatewayInfo): ServerPlan[] {
  const gw = g.obj;
  const plans: ServerPlan[] = [];
  const servers = arr(obj(gw.body.spec).servers);
  for (let i = 0; i < servers.length; i++) {
    const field = `spec.servers[${i}]`;
    const server = obj(servers[i]);
    const port = obj(server.port);
    const number = num(port.number);
    const protocol = (str(port.protocol) ?? '').toUpperCase();
    if (number === undefined || !Number.isInteger(number) || number < 1 || number > 65535) {
      ctx.report('error', 'MG_MISSING_FIELD', gw, `${field}.port.number`, 'server has no valid port.number; it is not served');
      continue;
    }
    const hosts = arr(server.hosts)
      .map(str)
      .filter((h): h is string => h !== undefined && h !== '')
      .map((h) => parseServerHost(h, gw.metadata.namespace));
    if (hosts.length === 0) {
      ctx.report('error', 'MG_MISSING_FIELD', gw, `${field}.hosts`, 'server has no hosts; it is not served');
      continue;
    }
    let address = ctx.options.bindAddress;
    const bind = str(server.bind);
    if (bind !== undefined && bind !== '') {
      if (!isIpAddress(bind)) {
        const why = bind.startsWith('unix://') ? 'unix domain sockets are not supported yet' : 'it is not an IP address';
        ctx.report('warning', 'MG_UNSUPPORTED', gw, `${field}.bind`, `bind ${JSON.stringify(bind)}: ${why}; the server is not served`);
        continue;
      }
      address = bind;
    }
    const tls = isObj(server.tls) ? server.tls : null;
    const base = {
      gateway: g,
      index: i,
      field,
      port: number,
      bindPort: ctx.options.portMap[String(number)] ?? number,
      address,
      hosts,
    };
    if (HTTP_PROTOCOLS.has(protocol)) {
      // HTTP, HTTP2 and GRPC servers are one kind of listener: every plaintext HTTP listener accepts
      // HTTP/1.1 and HTTP/2 with prior knowledge (h2c), as Envoy's codec AUTO does.
      plans.push({ ...base, protocol: 'HTTP', httpsRedirect: tls?.httpsRedirect === true, tls: null, serverNames: [], chainName: `http.${number}` });
      continue;
    }
    // TCP and TLS servers are relayed (istio/tcp.ts).
    if (protocol === 'TCP' || protocol === 'TLS') continue;
    if (protocol !== 'HTTPS') {
      ctx.report('warning', 'MG_UNSUPPORTED', gw, `${field}.port.protocol`, `protocol ${protocol || '(none)'} is not supported (MONGO, MYSQL, REDIS and UDP servers are not served)`);
      continue;
    }
    if (!tls) {
      ctx.report('error', 'MG_MISSING_FIELD', gw, `${field}.tls`, 'an HTTPS server needs tls settings; the server is not served');
      continue;
    }
    // The enum's zero value is PASSTHROUGH: an absent mode does not terminate TLS in Istio.
    const mode = str(tls.mode) ?? 'PASSTHROUGH';
    // TLS passthrough: relayed by SNI without terminating (istio/tcp.ts).
    if (mode === 'PASSTHROUGH') continue;
    if (mode !== 'SIMPLE' && mode !== 'MUTUAL' && mode !== 'OPTIONAL_MUTUAL') {
      const absent = tls.mode === undefined || tls.mode === null ? ' (tls.mode is not set, which Istio reads as PASSTHROUGH; set mode: SIMPLE to terminate TLS with credentialName)' : '';
      ctx.report('warning', 'MG_UNSUPPORTED', gw, `${field}.tls.mode`, `tls.mode ${mode} is not supported yet${absent}; the server is not served`);
      continue;
    }
    const serverNames = hosts.some((h) => h.dnsName === '*') ? [] : [...new Set(hosts.map((h) => h.dnsName))].sort();
    const context = tlsContext(ctx, resources, gw, tls, `${field}.tls`, serverNames);
    if (!context) continue;
    if (mode === 'MUTUAL' || mode === 'OPTIONAL_MUTUAL') {
      context.clientValidation = clientValidationOf(ctx, resources, gw, tls, `${field}.tls`, mode);
      if (context.clientValidation === null) continue;
    }
    const label = str(server.name) || String(i);
    plans.push({ ...base, protocol: 'HTTPS', httpsRedirect: false, tls: context, serverNames, chainName: `https.${number}.${label}.${gw.metadata.name}.${gw.metadata.namespace}` });
  }
  return plans;
}

const TLS_VERSIONS: Readonly<Record<string, TlsVersion | 'old' | 'auto'>> = {
  TLS_AUTO: 'auto',
  TLSV1_0: 'old',
  TLSV1_1: 'old',
  TLSV1_2: 'TLSv1.2',
  TLSV1_3: 'TLSv1.3',
};

/** A Gateway server's TLS settings (credentialName(s), versions, ciphers); shared with TLS-terminating TCP servers (tcp.ts). */
export function tlsContext(ctx: TranslateContext, resources: ResourceSet, gw: KubeObject, tls: Record<string, unknown>, field: string, serverNames: string[]): TlsContext | null {
  const names: { name: string; field: string }[] = [];
  const single = str(tls.credentialName);
  if (single) names.push({ name: single, field: `${field}.credentialName` });
  arr(tls.credentialNames).forEach((n, k) => {
    if (typeof n === 'string' && n !== '') names.push({ name: n, field: `${field}.credentialNames[${k}]` });
  });
  if (names.length === 0) {
    if (str(tls.serverCertificate)) ctx.report('warning', 'MG_UNSUPPORTED', gw, `${field}.serverCertificate`, 'file-mounted certificates (serverCertificate/privateKey) are not supported; use credentialName; the server is not served');
    else ctx.report('error', 'MG_MISSING_FIELD', gw, `${field}.credentialName`, `tls.mode SIMPLE needs credentialName (a Secret in the gateway workload's namespace "${ctx.options.gatewayNamespace}"); the server is not served`);
    return null;
  }
  const certificates: TlsCertificate[] = [];
  for (const n of names) {
    // Istio reads credentialName from the namespace of the gateway workload (its pods), never from
    // the Gateway object's: since CVE-2021-34824 a Gateway cannot reach Secrets of other namespaces.
    const cert = loadTlsCertificate(ctx, resources, { namespace: ctx.options.gatewayNamespace, name: n.name, serverNames, from: gw, field: n.field });
    if (cert) certificates.push(cert);
  }
  if (certificates.length === 0) return null;

  const version = (key: 'minProtocolVersion' | 'maxProtocolVersion', dflt: TlsVersion): TlsVersion => {
    const raw = str(tls[key]);
    if (raw === undefined) return dflt;
    const v = TLS_VERSIONS[raw];
    if (v === undefined || v === 'auto') return dflt;
    if (v === 'old') {
      ctx.report('warning', 'MG_UNSUPPORTED', gw, `${field}.${key}`, `${raw} is not supported (TLS below 1.2 is insecure); TLSv1.2 is used instead`);
      return 'TLSv1.2';
    }
    return v;
  };
  const minProtocolVersion = version('minProtocolVersion', 'TLSv1.2');
  let maxProtocolVersion = version('maxProtocolVersion', 'TLSv1.3');
  if (minProtocolVersion === 'TLSv1.3' && maxProtocolVersion === 'TLSv1.2') {
    ctx.report('warning', 'MG_INVALID_FIELD', gw, `${field}.maxProtocolVersion`, 'maxProtocolVersion is below minProtocolVersion; TLSv1.3 is used for both');
    maxProtocolVersion = 'TLSv1.3';
  }
  const cipherSuites = arr(tls.cipherSuites).filter((c): c is string => typeof c === 'string' && c !== '');
  return { certificates, minProtocolVersion, maxProtocolVersion, cipherSuites, clientValidation: null };
}

// ---- 2. binding ------------------------------------------------------------------------------

/** Gateway key -> VirtualServices bound to it, in creation order. */
export type Bindings = Map<string, KubeObject[]>;

export function bindVirtualServices(ctx: TranslateContext, resources: ResourceSet, gateways: GatewayInfo[]): Bindings {
  const selected = new Map(gateways.map((g) => [g.key, g]));
  const bound: Bindings = new Map();
  // Istio merges VirtualServices of one host in creation order.
  for (const vs of [...istioObjects(resources, 'VirtualService')].sort(compareByCreation)) {
    const spec = obj(vs.body.spec);
    const ns = vs.metadata.namespace;
    const refs = arr(spec.gateways);
    const names = refs.map(str).filter((g): g is string => g !== undefined && g !== '' && g !== 'mesh');
    if (names.length === 0) {
      ctx.report('info', 'MG_NOT_BOUND', vs, refs.length === 0 ? null : 'spec.gateways', 'this VirtualService names no Gateway: it applies to sidecars (mesh) only and is not served by this gateway');
      continue;
    }
    const mine: GatewayInfo[] = [];
    refs.forEach((r, j) => {
      if (typeof r !== 'string' || r === 'mesh' || r === '') return;
      const field = `spec.gateways[${j}]`;
      const key = resolveGatewayRef(resources, r, ns);
      const g = selected.get(key);
      if (!g) {
        const [gns, gname] = splitKey(key);
        if (getIstioObject(resources, 'Gateway', gns, gname)) {
          // Normal with several gateway deployments: the Gateway is for other proxies.
          ctx.report('info', 'MG_GATEWAY_NOT_FOUND', vs, field, `Gateway ${key} does not select this gateway; it is not served here`);
        } else {
          ctx.report('warning', 'MG_GATEWAY_NOT_FOUND', vs, field, `Gateway ${key} does not exist; this VirtualService is not served through it`);
        }
        return;
      }
      if (!isExportedTo(vs, g.obj.metadata.namespace)) {
        ctx.report('info', 'MG_NOT_BOUND', vs, 'spec.exportTo', `not exported to namespace ${g.obj.metadata.namespace}, so Gateway ${key} does not see this VirtualService`);
        return;
      }
      if (mine.includes(g)) return;
      mine.push(g);
      let list = bound.get(g.key);
      if (!list) bound.set(g.key, (list = []));
      list.push(vs);
    });
    if (mine.length === 0) continue;
    reportUnsupported(ctx, vs);
    // Hosts that no server of the bound gateways admits (Istio IST0132).
    arr(spec.hosts).forEach((h, k) => {
      if (typeof h !== 'string') return;
      const admitted = mine.some((g) => g.allHosts.some((sh) => namespaceAdmits(sh, ns) && intersectHosts(sh.dnsName, h) !== null));
      if (!admitted) {
        const list = mine.map((g) => g.key).join(', ');
        ctx.report('warning', 'MG_HOST_NOT_IN_GATEWAY', vs, `spec.hosts[${k}]`, `host ${JSON.stringify(h)} is not admitted by any server of Gateway ${list} (server hosts and their namespace parts decide); it is not served`);
      }
    });
  }
  return bound;
}

/** `ns/name`, `name` (the VS's namespace), or the legacy `name.ns[.svc.cluster.local]` form. */
function resolveGatewayRef(resources: ResourceSet, ref: string, namespace: string): string {
  const key = qualifyGateway(ref, namespace);
  if (ref.includes('/') || !ref.includes('.')) return key;
  if (getIstioObject(resources, 'Gateway', namespace, ref)) return key;
  const [name, ns] = ref.split('.');
  return `${ns}/${name}`;
}

function splitKey(key: string): [string, string] {
  const slash = key.indexOf('/');
  return [key.slice(0, slash), key.slice(slash + 1)];
}

function isExportedTo(vs: KubeObject, namespace: string): boolean {
  const exportTo = arr(obj(vs.body.spec).exportTo).map(str);
  if (exportTo.length === 0 || exportTo.includes('*')) return true;
  if (exportTo.includes('.') && vs.metadata.namespace === namespace) return true;
  return exportTo.includes(namespace);
}

/** Fields read but not implemented yet: one info per field name per VirtualService. */
const UNSUPPORTED_HTTP_FIELDS: string[] = [];

function reportUnsupported(ctx: TranslateContext, vs: KubeObject): void {
  const spec = obj(vs.body.spec);
  const http = arr(spec.http);
  for (const f of UNSUPPORTED_HTTP_FIELDS) {
    const i = http.findIndex((r) => obj(r)[f] !== undefined && obj(r)[f] !== null);
    if (i >= 0) ctx.report('info', 'MG_UNSUPPORTED', vs, `spec.http[${i}].${f}`, `${f} is not implemented yet and is ignored (on every route of this VirtualService)`);
  }
}

// ---- 3-5. virtual hosts and drafts -----------------------------------------------------------

interface VhostAcc {
  domain: string;
  source: KubeObject;
  sourceField: string | null;
  httpsRedirect: HttpsRedirect | null;
  /** VirtualServices bound to this domain, in binding order, each once with every Gateway binding it here. */
  bindings: { vs: KubeObject; key: string; gateways: string[]; port: number }[];
  /** Filled by finishVhost. */
  entries: { vs: KubeObject; r: TranslatedRoute }[];
  /** `namespace/name` of the VirtualServices merged in. */
  vsKeys: string[];
}

interface ChainAcc {
  draft: Omit<FilterChainDraft, 'virtualHosts'>;
  vhosts: Map<string, VhostAcc>;
}

const HTTPS_REDIRECT: HttpsRedirect = { responseCode: 301, port: null };

function buildDrafts(ctx: TranslateContext, resources: ResourceSet, drs: DestinationRuleIndex, servers: ServerPlan[], bound: Bindings): ListenerDraft[] {
  // Listener drafts by bind port and protocol, in order of the first server asking for them; a port
  // wanted as HTTP and HTTPS gives two drafts and the merge step reports MG_PORT_CONFLICT.
  const listeners = new Map<string, { draft: Omit<ListenerDraft, 'chains'>; chains: Map<string, ChainAcc> }>();
  const routeCache = new Map<string, TranslatedRoute[]>();

  for (const s of servers) {
    const lkey = `${s.bindPort}|${s.protocol}`;
    let l = listeners.get(lkey);
    if (!l) {
      l = { draft: { address: s.address, port: s.bindPort, externalPort: s.port, protocol: s.protocol, source: sourceOf(s.gateway.obj, s.field) }, chains: new Map() };
      listeners.set(lkey, l);
    }
    // All HTTP servers of a port share one chain; each HTTPS server has its own.
    const ckey = s.protocol === 'HTTP' ? 'http' : `${s.gateway.key}|${s.index}`;
    let chain = l.chains.get(ckey);
    if (!chain) {
      chain = { draft: { name: s.chainName, serverNames: s.serverNames, tls: s.tls }, vhosts: new Map() };
      l.chains.set(ckey, chain);
    }

    const touched = new Set<string>();
    for (const vs of bound.get(s.gateway.key) ?? []) {
      const vsKey = `${vs.metadata.namespace}/${vs.metadata.name}`;
      for (const domain of serverDomains(s, vs)) {
        let vh = chain.vhosts.get(domain);
        if (!vh) {
          vh = { domain, source: vs, sourceField: 'spec.hosts', httpsRedirect: null, bindings: [], entries: [], vsKeys: [] };
          chain.vhosts.set(domain, vh);
        }
        touched.add(domain);
        const b = vh.bindings.find((x) => x.key === vsKey);
        if (!b) vh.bindings.push({ vs, key: vsKey, gateways: [s.gateway.key], port: s.port });
        else if (!b.gateways.includes(s.gateway.key)) b.gateways.push(s.gateway.key);
      }
    }
    if (s.httpsRedirect) {
      for (const h of s.hosts) {
        if (!chain.vhosts.has(h.dnsName)) chain.vhosts.set(h.dnsName, { domain: h.dnsName, source: s.gateway.obj, sourceField: s.field, httpsRedirect: null, bindings: [], entries: [], vsKeys: [] });
        touched.add(h.dnsName);
      }
      for (const d of touched) (chain.vhosts.get(d) as VhostAcc).httpsRedirect = HTTPS_REDIRECT;
    }
  }

  const drafts: ListenerDraft[] = [];
  for (const { draft, chains } of listeners.values()) {
    const out: FilterChainDraft[] = [];
    for (const c of chains.values()) {
      // Routes are built once every server of the chain has bound its VirtualServices: a VS bound
      // through several Gateways on this port sees all of them in its match-level `gateways`.
      for (const vh of c.vhosts.values()) {
        for (const b of vh.bindings) {
          const gateways = [...b.gateways].sort();
          const cacheKey = `${b.key}|${gateways.join(',')}|${b.port}`;
          let routes = routeCache.get(cacheKey);
          if (!routes) {
            routes = translateVirtualServiceRoutes({ ctx, resources, drs, vs: b.vs, gateways, port: b.port });
            routeCache.set(cacheKey, routes);
          }
          vh.vsKeys.push(b.key);
          for (const r of routes) vh.entries.push({ vs: b.vs, r });
        }
      }
      out.push({ ...c.draft, virtualHosts: [...c.vhosts.values()].map((vh) => finishVhost(ctx, vh, draft.externalPort)) });
    }
    drafts.push({ ...draft, chains: out });
  }
  return drafts;
}

/** Domains a VirtualService gets on a server: each VS host met with each server host that admits its namespace. */
function serverDomains(s: ServerPlan, vs: KubeObject): string[] {
  const out: string[] = [];
  for (const h of arr(obj(vs.body.spec).hosts)) {
    if (typeof h !== 'string' || h === '') continue;
    for (const sh of s.hosts) {
      if (!namespaceAdmits(sh, vs.metadata.namespace)) continue;
      const d = intersectHosts(sh.dnsName, h);
      if (d !== null && !out.includes(d)) out.push(d);
    }
  }
  return out;
}

/**
 * Istio SortVHostRoutes: catch-all routes after all others, each group in merge order. Only the
 * first catch-all can ever match; the others are reported and left out.
 */
function finishVhost(ctx: TranslateContext, vh: VhostAcc, port: number): VirtualHostDraft {
  const specific = vh.entries.filter((e) => !e.r.catchAll);
  const catchAll = vh.entries.filter((e) => e.r.catchAll);
  for (const e of catchAll.slice(1)) {
    const first = catchAll[0].r.route.name;
    ctx.report('warning', 'MG_UNREACHABLE_ROUTE', e.vs, e.r.field, `route ${e.r.route.name} can never match on host "${vh.domain}" port ${port}: catch-all route ${first} (merged earlier, by creation order) matches every request`);
  }
  if (vh.vsKeys.length > 1) {
    const later = vh.entries.length > 0 ? vh.vsKeys.slice(1) : [];
    for (const key of later) {
      const e = vh.entries.find((x) => `${x.vs.metadata.namespace}/${x.vs.metadata.name}` === key);
      if (!e) continue;
      ctx.report('info', 'MG_DUPLICATE_HOST', e.vs, 'spec.hosts', `host "${vh.domain}" on port ${port} is also defined by VirtualService ${vh.vsKeys[0]}: routes are merged in creation order (${vh.vsKeys.join(', ')}), catch-all routes last`);
    }
  }
  const routes = [...specific, ...catchAll.slice(0, 1)].map((e) => e.r.route);
  return { domain: vh.domain, singleLabelWildcard: false, httpsRedirect: vh.httpsRedirect, routes, source: sourceOf(vh.source, vh.sourceField ?? undefined) };
}
