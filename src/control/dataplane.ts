/**
 * Data planes the controller drives: the runtime in this process (tests, `--workers 0`), or N worker
 * processes (node:cluster) that each run a Runtime and receive every snapshot as plain data over IPC.
 */
import cluster, { type Worker } from 'node:cluster';
import type { IRSnapshot } from '../ir/types.js';
import { Runtime, type ApplyResult } from '../runtime/runtime.js';
import type { Logger } from '../lib/log.js';
import { setMeshIdentity, type MeshIdentityMaterial } from '../runtime/upstream/mesh-identity.js';
import { createObservability, DEFAULT_OBSERVABILITY, type Observability, type ObservabilityOptions } from '../observability/observer.js';
import { clusterMetrics, observabilityEnv, workerObservability } from '../observability/process.js';

export interface DataPlane {
  /** Serve `ir` everywhere; resolves when every runtime serves it. */
  apply(ir: IRSnapshot): Promise<ApplyResult[]>;
  /** Stop accepting connections, let in-flight requests finish (at most graceMs), then stop. */
  close(graceMs: number): Promise<void>;
  /** Data-plane metrics (every runtime's, summed) in the Prometheus text format. */
  metrics(): Promise<string>;
  /** The mesh workload identity for Istio mTLS (each new certificate); absent on planes that serve no traffic. */
  setMeshIdentity?(identity: MeshIdentityMaterial | null): void;
}

export class InProcessDataPlane implements DataPlane {
  readonly #obs: Observability;
  readonly #runtime: Runtime;

  constructor(observability: ObservabilityOptions = DEFAULT_OBSERVABILITY) {
    this.#obs = createObservability(observability);
    this.#runtime = new Runtime({ observer: this.#obs.active ? this.#obs : null });
    this.#obs.metrics?.attach(this.#runtime);
  }

  metrics(): Promise<string> {
    return this.#obs.registry.metrics();
  }

  setMeshIdentity(identity: MeshIdentityMaterial | null): void {
    setMeshIdentity(identity);
  }

  async apply(ir: IRSnapshot): Promise<ApplyResult[]> {
    return [await this.#runtime.apply(ir)];
  }

  async close(graceMs: number): Promise<void> {
    await this.#runtime.close(graceMs);
    await this.#obs.close();
  }
}

/** Messages between the primary and its workers. */
type ToWorker = { type: 'snapshot'; seq: number; ir: IRSnapshot } | { type: 'shutdown'; graceMs: number } | { type: 'mesh-identity'; identity: MeshIdentityMaterial | null };
type FromWorker = { type: 'applied'; seq: number; result: ApplyResult } | { type: 'ready' };

/**
 * Worker processes sharing the listening sockets. Connections are spread by the kernel
 * (SCHED_NONE: every worker accepts on the shared socket), which costs the primary nothing per
 * connection, unlike round-robin hand-off through the primary.
 */
export class ClusterDataPlane implements DataPlane {
  readonly #workers: Worker[] = [];
  readonly #log: Logger;
  #seq = 0;
  #latest: { seq: number; ir: IRSnapshot } | null = null;
  #identity: MeshIdentityMaterial | null = null;
  readonly #pending = new Map<number, { waiting: Set<number>; results: ApplyResult[]; resolve: (r: ApplyResult[]) => void }>();
  #closing = false;
  readonly #observability: ObservabilityOptions;

  constructor(count: number, log: Logger, observability: ObservabilityOptions = DEFAULT_OBSERVABILITY) {
    this.#log = log;
    this.#observability = observability;
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    for (let i = 0; i < count; i++) this.#fork();
  }

  #fork(): void {
    const worker = cluster.fork({ MESHGATE_WORKER: '1', ...observabilityEnv(this.#observability) });
    this.#workers.push(worker);
    worker.on('message', (msg: FromWorker) => this.#onMessage(worker, msg));
    worker.on('exit', (code, signal) => {
      const idx = this.#workers.indexOf(worker);
      if (idx >= 0) this.#workers.splice(idx, 1);
      for (const [, p] of this.#pending) {
        p.waiting.delete(worker.id);
        this.#settle();
      }
      if (this.#closing) return;
      this.#log.error('worker exited; starting a new one', { worker: worker.id, code, signal });
      this.#fork();
    });
  }

  #onMessage(worker: Worker, msg: FromWorker): void {
    if (msg.type === 'ready') {
      // A new (or restarted) worker gets the mesh identity and the current snapshot at once.
      if (this.#identity !== null) this.#send(worker, { type: 'mesh-identity', identity: this.#identity });
      if (this.#latest) this.#send(worker, { type: 'snapshot', seq: this.#latest.seq, ir: this.#latest.ir });
      return;
    }
    if (msg.type === 'applied') {
      const p = this.#pending.get(msg.seq);
      if (p && p.waiting.delete(worker.id)) p.results.push(msg.result);
      this.#settle();
    }
  }

  #settle(): void {
    for (const [seq, p] of this.#pending) {
      if (p.waiting.size === 0) {
        this.#pending.delete(seq);
        p.resolve(p.results);
      }
    }
  }

  #send(worker: Worker, msg: ToWorker): void {
    if (worker.isConnected()) worker.send(msg);
  }

  metrics(): Promise<string> {
    return clusterMetrics();
  }

  setMeshIdentity(identity: MeshIdentityMaterial | null): void {
    this.#identity = identity;
    for (const w of this.#workers) this.#send(w, { type: 'mesh-identity', identity });
  }

  apply(ir: IRSnapshot): Promise<ApplyResult[]> {
    const seq = ++this.#seq;
    this.#latest = { seq, ir };
    return new Promise((resolve) => {
      const waiting = new Set(this.#workers.filter((w) => w.isConnected()).map((w) => w.id));
      this.#pending.set(seq, { waiting, results: [], resolve });
      for (const w of this.#workers) this.#send(w, { type: 'snapshot', seq, ir });
      this.#settle();
    });
  }

  async close(graceMs: number): Promise<void> {
    this.#closing = true;
    await Promise.all(
      this.#workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              w.process.kill('SIGKILL');
              resolve();
            }, graceMs + 2000);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
            this.#send(w, { type: 'shutdown', graceMs });
          }),
      ),
    );
  }
}

/** The worker side: run a Runtime and obey the primary. Called from the CLI entry in a worker process. */
export function runWorker(): void {
  const obs = workerObservability();
  const runtime = new Runtime({ observer: obs.active ? obs : null });
  obs.metrics?.attach(runtime);
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
