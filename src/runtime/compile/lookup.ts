/**
 * Lookups over a compiled snapshot: SNI -> filter chain -> certificate, host -> virtual host,
 * request -> first matching route, random number -> weighted destination. Pure and allocation-free;
 * these run per connection or per request.
 */

import type {
  CompiledCertificate,
  CompiledDestination,
  CompiledFilterChain,
  CompiledForward,
  CompiledListener,
  CompiledMatch,
  CompiledTls,
  CompiledVirtualHost,
  MatchInput,
} from './types.js';

/**
 * The filter chain for a TLS server name: exact name, then the longest wildcard, then the chain
 * with `serverNames: []`. null = refuse the handshake. `sni` is lowercase, or empty when absent.
 */
export function selectFilterChain(listener: CompiledListener, sni: string): CompiledFilterChain | null {
  if (sni !== '') {
    const exact = listener.chainsByServerName.get(sni);
    if (exact !== undefined) return exact;
    const wild = listener.wildcardChains;
    for (let i = 0; i < wild.length; i++) {
      const suffix = wild[i].suffix;
      if (sni.length > suffix.length && sni.endsWith(suffix)) return wild[i].chain;
    }
  }
  return listener.defaultChain;
}

/**
 * The certificate for a server name: exact name, then a one-label wildcard (RFC 6125 §6.4.3),
 * then the first certificate.
 */
export function selectCertificate(tls: CompiledTls, sni: string): CompiledCertificate | null {
  if (sni !== '') {
    const exact = tls.certsByName.get(sni);
    if (exact !== undefined) return exact;
    const dot = sni.indexOf('.');
    if (dot > 0) {
      const wild = tls.certsBySuffix.get(sni.slice(dot));
      if (wild !== undefined) return wild;
    }
  }
  return tls.certificates.length > 0 ? tls.certificates[0] : null;
}

/**
 * Lowercase host without port from a Host/:authority value (`Example.com:8080` -> `example.com`,
 * `[::1]:80` -> `[::1]`).
 */
export function normalizeHost(authority: string): string {
  let end = authority.length;
  if (authority.charCodeAt(0) === 91 /* [ */) {
    const close = authority.indexOf(']');
    if (close > 0) end = close + 1;
  } else {
    const colon = authority.indexOf(':');
    if (colon >= 0) end = colon;
  }
  const host = end === authority.length ? authority : authority.slice(0, end);
  return host.toLowerCase();
}

/**
 * The virtual host for a normalized host: exact, then the longest suffix wildcard (one label only
 * when `singleLabel`), then `any`. null = no virtual host (404 NR).
 */
export function selectVirtualHost(chain: CompiledFilterChain, host: string): CompiledVirtualHost | null {
  const exact = chain.hostsExact.get(host);
  if (exact !== undefined) return exact;
  const suffixes = chain.hostSuffixes;
  for (let i = 0; i < suffixes.length; i++) {
    const s = suffixes[i];
    const prefixLength = host.length - s.suffix.length;
    if (prefixLength <= 0 || !host.endsWith(s.suffix)) continue;
    if (s.singleLabel && host.lastIndexOf('.', prefixLength - 1) !== -1) continue;
    return s.vhost;
  }
  return chain.hostAny;
}

/** First match over the virtual host's routes, in order. null = no route (404 NR). */
export function findRoute(vhost: CompiledVirtualHost, r: MatchInput): CompiledMatch | null {
  const routes = vhost.routes;
  for (let i = 0; i < routes.length; i++) {
    const matches = routes[i].matches;
    for (let j = 0; j < matches.length; j++) {
      const conds = matches[j].conditions;
      let ok = true;
      for (let k = 0; k < conds.length; k++) {
        if (!conds[k](r)) {
          ok = false;
          break;
        }
      }
      if (ok) return matches[j];
    }
  }
  return null;
}

/** Picks a destination by weight. `random` is uniform in [0, 1); supplied by the caller. */
export function pickDestination(action: CompiledForward, random: number): CompiledDestination | null {
  const d = action.destinations;
  if (d.length <= 1) return d.length === 1 ? d[0] : null;
  const x = random * action.totalWeight;
  const cum = action.cumulative;
  for (let i = 0; i < cum.length; i++) if (x < cum[i]) return d[i];
  return d[d.length - 1];
}
