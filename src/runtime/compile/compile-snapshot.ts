/**
 * compileSnapshot: IRSnapshot -> CompiledSnapshot. Pure: no I/O, clock, randomness or environment.
 *
 * Everything a request would otherwise compute is done here once: host and SNI tables, route
 * predicates, regexes, lowercased values, header ops, cumulative weights, cluster references.
 */

import type {
  Cluster,
  DomainMatch,
  FilterChain,
  HeaderMatch,
  IRSnapshot,
  Listener,
  Route,
  RouteAction,
  RouteMatch,
  TlsContext,
  VirtualHost,
} from '../../ir/types.js';
import { compileCors } from '../filters/cors.js';
import { compileRouteFilters } from '../filters/route-filters.js';
import { attachRateLimits, compileSecurity, type CompiledSecurity } from '../filters/security.js';
import { compileMirrors } from '../upstream/mirror.js';
import { compileRetryPolicy } from '../upstream/retry-policy.js';
import { compileHeaderOps } from './header-ops.js';
import { compilePathRewrite } from './rewrite.js';
import { compilePathMatch, compileStringMatch } from './string-match.js';
import { compileClientValidation } from '../listeners/client-cert.js';
import type {
  CompiledAction,
  CompiledCertificate,
  CompiledCluster,
  CompiledFilterChain,
  CompiledListener,
  CompiledMatch,
  CompiledRoute,
  CompiledSnapshot,
  CompiledTls,
  CompiledVirtualHost,
  MatchCondition,
} from './types.js';

/**
 * meshgate's default TLS 1.2 cipher list: ECDHE key exchange with AEAD ciphers only (no static
 * RSA, no CBC), as Mozilla's "intermediate" profile. Node's default list also accepts non-PFS
 * static-RSA suites (hardening.md §3).
 */
export const DEFAULT_TLS12_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
];

/** TLS 1.3 suites (not configurable in the IR); listed so Node keeps TLS 1.3 enabled. */
export const TLS13_SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

/** The key listeners are kept by across swaps. */
export function listenerKey(address: string, port: number): string {
  return `${address}:${port}`;
}

export function compileSnapshot(ir: IRSnapshot): CompiledSnapshot {
  const clusters = new Map<string, CompiledCluster>();
  for (const c of ir.clusters) clusters.set(c.name, compileCluster(c));
  const security = compileSecurity(ir.security, clusters);
  const listeners = ir.listeners.map((l) => compileListener(l, clusters, security));
  attachRateLimits(security, ir, listeners);
  const listenersByKey = new Map<string, CompiledListener>();
  for (const l of listeners) listenersByKey.set(l.key, l);
  return { version: ir.version, listeners, listenersByKey, clusters };
}

function compileCluster(c: Cluster): CompiledCluster {
  const endpoints = c.endpoints
    .filter((e) => e.ready)
    .map((e) => {
      const host = e.address.includes(':') ? `[${e.address}]` : e.address;
      const tls = c.tls ?? (e.tlsMode === 'istio' && c.autoMtls !== undefined ? c.autoMtls : null);
      return { key: listenerKey(e.address, e.port), address: e.address, port: e.port, origin: `http://${host}:${e.port}`, tls, handle: null };
    });
  return {
    name: c.name,
    discovery: c.discovery,
    lbPolicy: c.lbPolicy,
    connectTimeoutMs: c.connectTimeoutMs,
    endpoints,
    cursor: 0,
    connectionPool: c.connectionPool,
    outlierDetection: c.outlierDetection,
    protocol: c.protocol,
    tls: c.tls,
    state: null,
    lbCache: null,
  };
}

function compileListener(l: Listener, clusters: Map<string, CompiledCluster>, security: CompiledSecurity): CompiledListener {
  const chains = l.filterChains.map((fc) => compileFilterChain(fc, clusters));
  const chainsByServerName = new Map<string, CompiledFilterChain>();
  const wildcardChains: { suffix: string; chain: CompiledFilterChain }[] = [];
  let defaultChain: CompiledFilterChain | null = null;
  l.filterChains.forEach((fc, i) => {
    const chain = chains[i];
    if (fc.serverNames.length === 0) {
      defaultChain ??= chain;
      return;
    }
    for (const raw of fc.serverNames) {
      const name = raw.toLowerCase();
      if (name.startsWith('*.')) {
        if (!wildcardChains.some((w) => w.suffix === name.slice(1))) wildcardChains.push({ suffix: name.slice(1), chain });
      } else if (!chainsByServerName.has(name)) {
        chainsByServerName.set(name, chain);
      }
    }
  });
  // Longest wildcard first; Array.prototype.sort is stable, so ties keep IR order.
  wildcardChains.sort((a, b) => b.suffix.length - a.suffix.length);
  // A plaintext listener has one chain; whatever its serverNames say, it serves every request.
  if (l.protocol === 'HTTP' && defaultChain === null && chains.length > 0) defaultChain = chains[0];
  return {
    key: listenerKey(l.address, l.port),
    name: l.name,
    address: l.address,
    port: l.port,
    externalPort: l.externalPort,
    protocol: l.protocol,
    scheme: l.protocol === 'HTTPS' ? 'https' : 'http',
    chains,
    chainsByServerName,
    wildcardChains,
    defaultChain,
    security,
    passthrough: l.protocol === 'HTTPS' && (l.passthrough?.length ?? 0) > 0,
  };
}

function compileFilterChain(fc: FilterChain, clusters: Map<string, CompiledCluster>): CompiledFilterChain {
  const virtualHosts: CompiledVirtualHost[] = [];
  const hostsExact = new Map<string, CompiledVirtualHost>();
  const hostSuffixes: CompiledFilterChain['hostSuffixes'] = [];
  let hostAny: CompiledVirtualHost | null = null;
  for (const vh of fc.virtualHosts) {
    const compiled = compileVirtualHost(vh, clusters);
    virtualHosts.push(compiled);
    for (const d of vh.domains) addDomain(d, compiled);
  }
  function addDomain(d: DomainMatch, vhost: CompiledVirtualHost): void {
    // The IR promises no domain is shared; should it happen anyway, the first virtual host keeps it.
    switch (d.kind) {
      case 'exact': {
        const host = d.host.toLowerCase();
        if (!hostsExact.has(host)) hostsExact.set(host, vhost);
        return;
      }
      case 'suffix':
        hostSuffixes.push({ suffix: d.suffix.toLowerCase(), singleLabel: d.singleLabel, vhost });
        return;
      case 'any':
        hostAny ??= vhost;
        return;
    }
  }
  hostSuffixes.sort((a, b) => b.suffix.length - a.suffix.length);
  return { name: fc.name, tls: fc.tls === null ? null : compileTls(fc.tls), virtualHosts, hostsExact, hostSuffixes, hostAny, rejectMisdirected: fc.rejectMisdirected === true };
}

/** Also used for the TLS-terminating chains of TCP listeners (runtime/tcp). */
export function compileTls(tls: TlsContext): CompiledTls {
  const tls12 = tls.cipherSuites.length > 0 ? tls.cipherSuites : DEFAULT_TLS12_CIPHERS;
  const ciphers = [...TLS13_SUITES, ...tls12].join(':');
  // The CRL is part of the context: a changed one gives new handshakes a new context.
  const settings = `${tls.minProtocolVersion}\n${tls.maxProtocolVersion}\n${ciphers}\n${tls.clientValidation?.caCertificates ?? ''}\n${JSON.stringify(tls.clientValidation?.caCrl ?? null)}`;
  const certificates: CompiledCertificate[] = [];
  const certsByName = new Map<string, CompiledCertificate>();
  const certsBySuffix = new Map<string, CompiledCertificate>();
  for (const c of tls.certificates) {
    const cert: CompiledCertificate = {
      secret: c.secret,
      certChain: c.certChain,
      privateKey: c.privateKey,
      contextKey: `${settings}\n${c.certChain}\n${c.privateKey}`,
    };
    certificates.push(cert);
    for (const raw of c.serverNames) {
      const name = raw.toLowerCase();
      if (name.startsWith('*.')) {
        if (!certsBySuffix.has(name.slice(1))) certsBySuffix.set(name.slice(1), cert);
      } else if (!certsByName.has(name)) {
        certsByName.set(name, cert);
      }
    }
  }
  return { minVersion: tls.minProtocolVersion, maxVersion: tls.maxProtocolVersion, ciphers, certificates, certsByName, certsBySuffix, clientValidation: compileClientValidation(tls.clientValidation) };
}

function compileVirtualHost(vh: VirtualHost, clusters: Map<string, CompiledCluster>): CompiledVirtualHost {
  return { name: vh.name, httpsRedirect: vh.httpsRedirect, routes: vh.routes.map((r) => compileRoute(r, clusters)) };
}

function compileRoute(r: Route, clusters: Map<string, CompiledCluster>): CompiledRoute {
  const route: CompiledRoute = {
    name: r.name,
    matches: [],
    action: compileAction(r.action, clusters),
    requestHeaders: compileHeaderOps(r.requestHeaders),
    responseHeaders: compileHeaderOps(r.responseHeaders),
    cors: r.cors === null ? null : compileCors(r.cors),
    filters: r.filters === undefined ? null : compileRouteFilters(r.filters, clusters),
  };
  route.matches = r.matches.map((m) => compileMatch(m, route));
  return route;
}

function compileMatch(m: RouteMatch, route: CompiledRoute): CompiledMatch {
  const conditions: MatchCondition[] = [];
  if (m.port !== null) {
    const port = m.port;
    conditions.push((r) => r.port === port);
  }
  const path = m.path === null ? null : compilePathMatch(m.path);
  if (path !== null) {
    const test = path.test;
    conditions.push((r) => test(r.path));
  }
  if (m.method !== null) {
    const test = compileStringMatch(m.method);
    conditions.push((r) => test(r.method));
  }
  if (m.scheme !== null) {
    const test = compileStringMatch(m.scheme);
    conditions.push((r) => test(r.scheme));
  }
  if (m.authority !== null) {
    const test = compileStringMatch(m.authority);
    conditions.push((r) => test(r.authority));
  }
  for (const h of m.headers) {
    if (h.name.startsWith(CLAIM_PREFIX)) {
      conditions.push(compileClaimMatch(h));
      continue;
    }
    const name = h.name.toLowerCase();
    const invert = h.invert;
    if (h.match === null) {
      conditions.push((r) => (r.header(name) !== null) !== invert);
    } else {
      const test = compileStringMatch(h.match);
      conditions.push((r) => {
        const v = r.header(name);
        return (v !== null && test(v)) !== invert;
      });
    }
  }
  for (const q of m.queryParams) {
    const name = q.name;
    if (q.match === null) {
      conditions.push((r) => r.queryParam(name) !== null);
    } else {
      const test = compileStringMatch(q.match);
      conditions.push((r) => {
        const v = r.queryParam(name);
        return v !== null && test(v);
      });
    }
  }
  return { route, path, conditions };
}

/** HeaderMatch names with this prefix match a verified JWT claim (ir/types.ts HeaderMatch). */
const CLAIM_PREFIX = '@request.auth.claims.';

/**
 * A condition on a claim of the verified JWT (Istio "JWT claim based routing"): the claim at the
 * `.`-separated path; a string claim is its value, a list claim matches when one of its strings
 * does (Envoy's metadata list match); other types and missing claims are absent.
 */
function compileClaimMatch(h: HeaderMatch): MatchCondition {
  const path = h.name.slice(CLAIM_PREFIX.length).split('.');
  const invert = h.invert;
  const test = h.match === null ? null : compileStringMatch(h.match);
  return (r) => {
    let v: unknown = r.jwtClaims ?? null;
    for (const p of path) v = v !== null && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>)[p] : undefined;
    const values = typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
    const hit = test === null ? v !== undefined && v !== null : values.some(test);
    return hit !== invert;
  };
}

function compileAction(a: RouteAction, clusters: Map<string, CompiledCluster>): CompiledAction {
  switch (a.kind) {
    case 'forward': {
      const cumulative: number[] = [];
      let total = 0;
      const destinations = a.destinations.map((d) => {
        total += d.weight;
        cumulative.push(total);
        return {
          clusterName: d.cluster,
          cluster: clusters.get(d.cluster) ?? null,
          weight: d.weight,
          requestHeaders: compileHeaderOps(d.requestHeaders),
          responseHeaders: compileHeaderOps(d.responseHeaders),
        };
      });
      return {
        kind: 'forward',
        destinations,
        cumulative,
        totalWeight: total,
        rewritePath: a.rewrite?.path ? compilePathRewrite(a.rewrite.path) : null,
        rewriteAuthority: a.rewrite?.authority ?? null,
        timeoutMs: a.timeoutMs !== null && a.timeoutMs > 0 ? a.timeoutMs : 0,
        retry: a.retries === null ? null : compileRetryPolicy(a.retries),
        fault: a.fault,
        mirrors: a.mirrors.length === 0 ? null : compileMirrors(a.mirrors, clusters),
        ...(a.httpVersion === '1.0' ? { http10: { bodyLimit: a.http10BodyLimitBytes ?? 16 * 1024 * 1024 } } : {}),
        ...(a.upstreamErrorStatuses === 'nginx' ? { nginxErrors: true as const } : {}),
      };
    }
    case 'redirect':
      return {
        kind: 'redirect',
        scheme: a.scheme,
        authority: a.authority,
        port: a.port,
        path: a.path === null ? null : compilePathRewrite(a.path),
        responseCode: a.responseCode,
        ...(a.stripTrailingSlash === true ? { stripTrailingSlash: true } : {}),
        ...(a.keepDefaultPort === true ? { keepDefaultPort: true } : {}),
        ...(a.authorityFromHeader !== undefined ? { authorityFromHeader: a.authorityFromHeader } : {}),
      };
    case 'direct':
      return {
        kind: 'direct',
        status: a.status,
        body: Buffer.from(a.body ?? '', 'utf8'),
        contentType: a.contentType ?? 'text/plain',
      };
  }
}
