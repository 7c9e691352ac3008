/**
 * Long-lived per-cluster state, kept by cluster name across snapshot swaps (so a reload resets no
 * circuit breaker and forgets no ejection): circuit-breaker counters and outlier detection.
 */

import type { CompiledSnapshot } from '../compile/types.js';
import { CircuitBreaker } from '../upstream/circuit-breaker.js';
import { OutlierTracker } from '../upstream/outlier-detection.js';

export class ClusterState {
  readonly breaker = new CircuitBreaker();
  /** null when the cluster has no outlier detection. */
  outlier: OutlierTracker | null = null;
  constructor(readonly name: string) {}
}

export class ClusterStates {
  readonly #byName = new Map<string, ClusterState>();

  get(name: string): ClusterState | undefined {
    return this.#byName.get(name);
  }

  /** Attaches state to every cluster of `snapshot` (creating what is missing) and drops the rest. */
  bind(snapshot: CompiledSnapshot): void {
    for (const cluster of snapshot.clusters.values()) {
      let state = this.#byName.get(cluster.name);
      if (state === undefined) this.#byName.set(cluster.name, (state = new ClusterState(cluster.name)));
      const cp = cluster.connectionPool;
      state.breaker.limits = cp !== null && (cp.maxConnections !== null || cp.maxPendingRequests !== null || cp.maxRequests !== null || cp.maxRetries !== null) ? cp : null;
      const od = cluster.outlierDetection;
      if (od === null) {
        state.outlier?.close();
        state.outlier = null;
      } else {
        state.outlier ??= new OutlierTracker(od);
        state.outlier.configure(od, cluster.endpoints.map((e) => e.key));
      }
      cluster.state = state;
    }
    // Requests of older snapshots keep their (now detached) state objects until they finish.
    for (const [name, state] of this.#byName) {
      if (snapshot.clusters.has(name)) continue;
      state.outlier?.close();
      this.#byName.delete(name);
    }
  }

  close(): void {
    for (const s of this.#byName.values()) s.outlier?.close();
    this.#byName.clear();
  }
}
