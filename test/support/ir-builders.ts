/**
 * Hand-built IR for runtime tests. Every builder returns plain IR objects with defaults that mean
 * "no condition / no edit", so a test states only what it is about.
 */

import type {
  Cluster,
  DomainMatch,
  FilterChain,
  HeaderOps,
  IRSnapshot,
  Listener,
  Route,
  RouteAction,
  RouteDestination,
  RouteMatch,
  StringMatch,
  TlsContext,
  VirtualHost,
  SecurityConfig,
} from '../../src/ir/types.js';
import { defaultSecurityConfig } from '../../src/ir/security.js';

export function match(m: Partial<RouteMatch> = {}): RouteMatch {
  return { path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null, ...m };
}

export function exact(value: string, ignoreCase = false): StringMatch {
  return { kind: 'exact', value, ignoreCase };
}

export function regex(source: string, flags = ''): { kind: 'regex'; regex: { original: string; source: string; flags: string } } {
  return { kind: 'regex', regex: { original: source, source: `^(?:${source})$`, flags } };
}

export function forward(destinations: (string | Partial<RouteDestination> & { cluster: string })[], extra: Partial<Omit<Extract<RouteAction, { kind: 'forward' }>, 'kind' | 'destinations'>> = {}): RouteAction {
  return {
    kind: 'forward',
    destinations: destinations.map((d) =>
      typeof d === 'string'
        ? { cluster: d, weight: 1, requestHeaders: null, responseHeaders: null }
        : { weight: 1, requestHeaders: null, responseHeaders: null, ...d },
    ),
    rewrite: null,
    timeoutMs: null,
    retries: null,
    fault: null,
    mirrors: [],
    ...extra,
  };
}

export function route(name: string, action: RouteAction, matches: RouteMatch[] = [match()], extra: Partial<Route> = {}): Route {
  return {
    name,
    source: { kind: 'Test', namespace: 'default', name, file: null, line: null },
    matches,
    action,
    requestHeaders: null,
    responseHeaders: null,
    cors: null,
    ...extra,
  };
}

/** A route answering 200 with its own name as body: handy to see which route matched. */
export function named(name: string, matches: RouteMatch[] = [match()]): Route {
  return route(name, { kind: 'direct', status: 200, body: name, contentType: null }, matches);
}

export function ops(o: Partial<HeaderOps>): HeaderOps {
  return { set: [], add: [], remove: [], ...o };
}

export function vhost(name: string, domains: (string | DomainMatch)[], routes: Route[], extra: Partial<VirtualHost> = {}): VirtualHost {
  return {
    name,
    domains: domains.map((d) => {
      if (typeof d !== 'string') return d;
      if (d === '*') return { kind: 'any' };
      if (d.startsWith('*.')) return { kind: 'suffix', suffix: d.slice(1), singleLabel: false };
      return { kind: 'exact', host: d };
    }),
    httpsRedirect: null,
    routes,
    ...extra,
  };
}

export function chain(name: string, virtualHosts: VirtualHost[], serverNames: string[] = [], tls: TlsContext | null = null): FilterChain {
  return { name, serverNames, tls, virtualHosts };
}

export function httpListener(port: number, virtualHosts: VirtualHost[], extra: Partial<Listener> = {}): Listener {
  return {
    name: `127.0.0.1_${port}`,
    address: '127.0.0.1',
    port,
    externalPort: port,
    protocol: 'HTTP',
    filterChains: [chain('http', virtualHosts)],
    ...extra,
  };
}

export function httpsListener(port: number, filterChains: FilterChain[], extra: Partial<Listener> = {}): Listener {
  return { name: `127.0.0.1_${port}`, address: '127.0.0.1', port, externalPort: port, protocol: 'HTTPS', filterChains, ...extra };
}

export function tlsContext(certificates: TlsContext['certificates'], extra: Partial<TlsContext> = {}): TlsContext {
  return { certificates, minProtocolVersion: 'TLSv1.2', maxProtocolVersion: 'TLSv1.3', cipherSuites: [], clientValidation: null, ...extra };
}

export function cluster(name: string, endpoints: { port: number; address?: string; ready?: boolean }[], extra: Partial<Cluster> = {}): Cluster {
  return {
    name,
    service: { namespace: 'default', name, host: `${name}.default.svc.cluster.local`, port: 80 },
    subset: '',
    discovery: 'eds',
    lbPolicy: 'ROUND_ROBIN',
    endpoints: endpoints.map((e) => ({ address: e.address ?? '127.0.0.1', port: e.port, ready: e.ready ?? true })),
    connectTimeoutMs: 2000,
    connectionPool: null,
    outlierDetection: null,
    protocol: 'HTTP1',
    tls: null,
    ...extra,
  };
}

let versionCounter = 0;
export function snapshot(listeners: Listener[], clusters: Cluster[] = [], security: Partial<SecurityConfig> = {}): IRSnapshot {
  return { version: `test-${++versionCounter}`, listeners, clusters, security: { ...defaultSecurityConfig(), ...security }, tcpListeners: [], accessLogging: { configured: false, logs: [] }, tracing: { configured: false, provider: null, endpoint: null, samplingPercentage: null, disableSpanReporting: false, customTags: [], sources: [] } };
}
