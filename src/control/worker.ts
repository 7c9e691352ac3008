/**
 * The worker side of the multi-process data plane: run a Runtime and obey the primary. Loaded only in
 * worker processes (from `src/cli/worker.ts`).
 */
import { gatewayPeerMetadataOf, Runtime, type ApplyResult } from '../runtime/runtime.js';
import { setMeshIdentity } from '../runtime/upstream/mesh-identity.js';
import { destinationPeerLabels } from '../runtime/sidecar/peer-metadata.js';
import { workerObservability } from '../observability/worker.js';
import { compactHeapSoon } from '../lib/heap.js';
import type { FromWorker, ToWorker } from './dataplane-types.js';

/** Run a Runtime and obey the primary. Called from `src/cli/worker.ts` (or the CLI entry, for a worker forked on it). */
export function runWorker(): void {
  const obs = workerObservability();
  const peerMetadata = gatewayPeerMetadataOf(obs.options.identity);
  const runtime = new Runtime({ observer: obs.active ? obs : null, peerMetadata });
  obs.metrics?.attach(runtime);
  // The gateway as a mesh client names the destinations that told who they are (Istio's metadata exchange).
  if (peerMetadata !== null && obs.metrics) obs.metrics.destinationPeer = destinationPeerLabels;
  let chain: Promise<unknown> = Promise.resolve();
  process.on('message', (msg: ToWorker) => {
    if (msg.type === 'snapshot') {
      // Apply in arrival order; a later snapshot never overtakes an earlier one.
      chain = chain.then(async () => {
        let result: ApplyResult;
        try {
          result = await runtime.apply(msg.ir);
        } catch (err) {
          // Runtime.apply reports failures in its result; should one escape, the worker says so and lives on.
          result = { version: msg.ir.version, applied: false, errors: [`worker: ${(err as Error).message}`], listeners: [] };
        }
        process.send?.({ type: 'applied', seq: msg.seq, result } satisfies FromWorker);
        // The IR is dropped once compiled; give its memory (and the compiler's garbage) back. Plain
        // collections only: a worker serves traffic, the memory-reducing one pauses 4-5x longer.
        if (result.applied) compactHeapSoon(2000, 'never');
      });
    } else if (msg.type === 'mesh-identity') {
      setMeshIdentity(msg.identity);
    } else if (msg.type === 'shutdown') {
      chain = chain.then(async () => {
        await runtime.close(msg.graceMs);
        await obs.close();
        process.exit(0);
      });
    }
  });
  // The primary handles signals; a worker ignores SIGINT/SIGTERM sent to the whole process group.
  process.on('SIGINT', () => {});
  process.on('SIGTERM', () => {});
  // Without a primary there is no one to serve snapshots or to stop us: leave.
  process.on('disconnect', () => {
    void runtime.close(1000).finally(() => process.exit(0));
  });
  process.send?.({ type: 'ready' } satisfies FromWorker);
}
