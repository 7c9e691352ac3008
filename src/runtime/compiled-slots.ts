/**
 * The runtime's types held by compiled snapshots, declared into `compile/types.ts` by declaration
 * merging (see `RuntimeSlots` there), so that compile/types.ts depends on nothing in the runtime.
 * Type-only: this module has no run-time content.
 */
import type { CompiledSecurity } from './filters/security.js';
import type { CompiledCors } from './filters/cors.js';
import type { CompiledRouteFilters } from './filters/route-filters.js';
import type { CompiledClientValidation } from './listeners/client-cert.js';
import type { ClusterState } from './state/cluster-state.js';
import type { CompiledMirror } from './upstream/mirror.js';
import type { CompiledRetryPolicy } from './upstream/retry-policy.js';
import type { LbCache } from './upstream/load-balancer.js';
import type { UpstreamClient, UpstreamFetcher } from './upstream/client.js';

declare module './compile/types.js' {
  interface RuntimeSlots {
    security: CompiledSecurity;
    cors: CompiledCors;
    routeFilters: CompiledRouteFilters;
    clientValidation: CompiledClientValidation;
    clusterState: ClusterState;
    mirror: CompiledMirror;
    retryPolicy: CompiledRetryPolicy;
    lbCache: LbCache;
    upstreamClient: UpstreamClient;
    upstreamFetcher: UpstreamFetcher;
  }
}

export {};
