/**
 * Endpoint selection over a cluster's ready endpoints (Cluster.lbPolicy).
 */

import type { CompiledCluster, CompiledEndpoint } from '../compile/types.js';

/**
 * Chooses an endpoint; null when the cluster has no ready endpoint (503 UH). `random` returns
 * uniform numbers in [0, 1) (injected so tests can fix it).
 *
 * - ROUND_ROBIN: a cursor over the endpoints, carried across swaps.
 * - LEAST_REQUEST: Envoy's default "power of two choices": two random endpoints, the one with
 *   fewer requests in flight wins.
 * - RANDOM: uniform.
 */
export function selectEndpoint(cluster: CompiledCluster, random: () => number): CompiledEndpoint | null {
  const eps = cluster.endpoints;
  const n = eps.length;
  if (n <= 1) return n === 1 ? eps[0] : null;
  switch (cluster.lbPolicy) {
    case 'ROUND_ROBIN': {
      const i = cluster.cursor % n;
      cluster.cursor = i + 1;
      return eps[i];
    }
    case 'RANDOM':
      return eps[Math.floor(random() * n)];
    case 'LEAST_REQUEST': {
      const a = eps[Math.floor(random() * n)];
      const b = eps[Math.floor(random() * n)];
      const activeA = a.handle?.active ?? 0;
      const activeB = b.handle?.active ?? 0;
      return activeB < activeA ? b : a;
    }
  }
}
