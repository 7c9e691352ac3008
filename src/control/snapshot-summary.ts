/**
 * What the "snapshot applied" log line says about a snapshot: every listener (HTTP, HTTPS, and the
 * TCP/TLS relays), how many HTTP and TCP/TLS routes, and how many routes inject faults or mirror.
 */
import type { IRSnapshot } from '../ir/types.js';

export function snapshotSummary(ir: IRSnapshot): { listeners: string[]; routes: number; tcpRoutes: number; faults: number; mirrors: number } {
  let routes = 0;
  let faults = 0;
  let mirrors = 0;
  for (const l of ir.listeners) {
    for (const c of l.filterChains) {
      for (const vh of c.virtualHosts) {
        for (const r of vh.routes) {
          routes++;
          if (r.action.kind === 'forward') {
            if (r.action.fault !== null) faults++;
            if (r.action.mirrors.length > 0) mirrors++;
          }
        }
      }
    }
  }
  let tcpRoutes = 0;
  for (const l of ir.tcpListeners) tcpRoutes += l.routes.length + l.tlsChains.reduce((n, c) => n + c.routes.length, 0);
  const listeners = [...ir.listeners.map((l) => `${l.protocol} ${l.address}:${l.port}`), ...ir.tcpListeners.map((l) => `${l.protocol} ${l.address}:${l.port}`)];
  return { listeners, routes, tcpRoutes, faults, mirrors };
}
