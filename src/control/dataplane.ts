/**
 * Data planes the controller drives: the runtime in this process (tests, `--workers 0`; this file), or
 * N worker processes (node:cluster, `cluster-dataplane.ts`) that each run a Runtime (`worker.ts`) and
 * receive every snapshot as plain data over IPC.
 *
 * Lean processes (issue 11): the CLI imports this file only for `--workers 0`, so a primary with
 * workers never loads the runtime (nor undici, nor the request path), and workers start from
 * `src/cli/worker.ts`, which never loads translate, providers, YAML or the admin server.
 */
import type { IRSnapshot } from '../ir/types.js';
import { gatewayPeerMetadataOf, Runtime, type ApplyResult } from '../runtime/runtime.js';
import { setMeshIdentity, type MeshIdentityMaterial } from '../runtime/upstream/mesh-identity.js';
import { destinationPeerLabels } from '../runtime/sidecar/peer-metadata.js';
import { createObservability, DEFAULT_OBSERVABILITY, type Observability, type ObservabilityOptions } from '../observability/observer.js';
import type { DataPlane, RuntimeServing } from './dataplane-types.js';

export type { DataPlane } from './dataplane-types.js';

export class InProcessDataPlane implements DataPlane {
  readonly #obs: Observability;
  readonly #runtime: Runtime;
  /** The snapshot the runtime last applied (a refused one leaves the previous serving). */
  #served: { version: string; seq: number } | null = null;
  #seq = 0;

  constructor(observability: ObservabilityOptions = DEFAULT_OBSERVABILITY) {
    this.#obs = createObservability(observability);
    const peerMetadata = gatewayPeerMetadataOf(observability.identity);
    this.#runtime = new Runtime({ observer: this.#obs.active ? this.#obs : null, peerMetadata });
    this.#obs.metrics?.attach(this.#runtime);
    // The gateway as a mesh client names the destinations that told who they are (Istio's metadata exchange).
    if (peerMetadata !== null && this.#obs.metrics) this.#obs.metrics.destinationPeer = destinationPeerLabels;
  }

  metrics(): Promise<string> {
    return this.#obs.registry.metrics();
  }

  setMeshIdentity(identity: MeshIdentityMaterial | null): void {
    setMeshIdentity(identity);
  }

  async apply(ir: IRSnapshot): Promise<ApplyResult[]> {
    const seq = ++this.#seq;
    const result = await this.#runtime.apply(ir);
    if (result.applied) this.#served = { version: result.version, seq };
    return [result];
  }

  served(): RuntimeServing[] {
    return [{ runtime: 'in-process', pid: process.pid, version: this.#served?.version ?? null, seq: this.#served?.seq ?? 0 }];
  }

  async close(graceMs: number): Promise<void> {
    await this.#runtime.close(graceMs);
    await this.#obs.close();
  }
}

