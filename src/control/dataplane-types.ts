/** What the controller drives: one interface for the in-process and the multi-process data planes. */
import type { IRSnapshot } from '../ir/types.js';
import type { ApplyResult } from '../runtime/runtime.js';
import type { MeshIdentityMaterial } from '../runtime/upstream/mesh-identity.js';

export interface DataPlane {
  /** Serve `ir` everywhere; resolves when every runtime serves it. */
  apply(ir: IRSnapshot): Promise<ApplyResult[]>;
  /** Stop accepting connections, let in-flight requests finish (at most graceMs), then stop. */
  close(graceMs: number): Promise<void>;
  /** Data-plane metrics (every runtime's, summed) in the Prometheus text format. */
  metrics(): Promise<string>;
  /** The mesh workload identity for Istio mTLS (each new certificate); absent on planes that serve no traffic. */
  setMeshIdentity?(identity: MeshIdentityMaterial | null): void;
  /**
   * What each runtime serves right now (`/config_dump` `workers`, like `istioctl proxy-status` for
   * the worker processes): its last applied snapshot, from its own answers. Absent on planes that
   * do not track it.
   */
  served?(): RuntimeServing[];
}

/** One runtime (worker process, or the in-process one) and the snapshot it serves. */
export interface RuntimeServing {
  /** `worker <id>` (node:cluster worker id) or `in-process`. */
  runtime: string;
  pid: number | null;
  /** The version it serves; null while it serves none (a worker just started). */
  version: string | null;
  /** Order of that snapshot among those sent (higher = newer); 0 when none. */
  seq: number;
}

/** Messages between the primary and its workers. */
export type ToWorker = { type: 'snapshot'; seq: number; ir: IRSnapshot } | { type: 'shutdown'; graceMs: number } | { type: 'mesh-identity'; identity: MeshIdentityMaterial | null };
export type FromWorker = { type: 'applied'; seq: number; result: ApplyResult } | { type: 'ready' };
