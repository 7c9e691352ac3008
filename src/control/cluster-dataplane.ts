/**
 * The multi-process data plane: N worker processes (node:cluster) that each run a Runtime and receive
 * every snapshot as plain data over IPC. The primary never loads the runtime: workers start from
 * their own entry module (`src/cli/worker.ts`, given as `workerEntry`), not from the CLI's.
 */
import type { MeshIdentityMaterial } from '../runtime/upstream/mesh-identity.js';
import cluster, { type Worker } from 'node:cluster';
import type { IRSnapshot } from '../ir/types.js';
import type { ApplyResult } from '../runtime/runtime.js';
import type { Logger } from '../lib/log.js';
import type { ObservabilityOptions } from '../observability/observer.js';
import { clusterMetrics, observabilityEnv } from '../observability/process.js';
import type { DataPlane, FromWorker, RuntimeServing, ToWorker } from './dataplane-types.js';

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
  /** By worker id: the snapshot it last applied (its own `applied` answers); a worker that exits leaves. */
  readonly #served = new Map<number, { version: string; seq: number }>();
  #closing = false;
  readonly #observability: ObservabilityOptions;

  /**
   * `workerEntry`: the module a worker process runs (absolute path); it must call `runWorker()`.
   * Without it, workers run the primary's own entry (`process.argv[1]`), as node:cluster does.
   */
  constructor(count: number, log: Logger, observability: ObservabilityOptions, workerEntry?: string) {
    this.#log = log;
    this.#observability = observability;
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    if (workerEntry !== undefined) cluster.setupPrimary({ exec: workerEntry });
    for (let i = 0; i < count; i++) this.#fork();
  }

  #fork(): void {
    const worker = cluster.fork({ MESHGATE_WORKER: '1', ...observabilityEnv(this.#observability) });
    this.#workers.push(worker);
    worker.on('message', (msg: FromWorker) => this.#onMessage(worker, msg));
    worker.on('exit', (code, signal) => {
      const idx = this.#workers.indexOf(worker);
      if (idx >= 0) this.#workers.splice(idx, 1);
      this.#served.delete(worker.id);
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
      // A refused snapshot leaves the worker on its previous one (Runtime.apply).
      const was = this.#served.get(worker.id);
      if (msg.result.applied && (was === undefined || was.seq <= msg.seq)) this.#served.set(worker.id, { version: msg.result.version, seq: msg.seq });
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

  served(): RuntimeServing[] {
    return this.#workers.map((w) => {
      const s = this.#served.get(w.id);
      return { runtime: `worker ${w.id}`, pid: w.process.pid ?? null, version: s?.version ?? null, seq: s?.seq ?? 0 };
    });
  }

  apply(ir: IRSnapshot): Promise<ApplyResult[]> {
    const seq = ++this.#seq;
    const previous = this.#latest;
    this.#latest = { seq, ir };
    return new Promise((resolve) => {
      const waiting = new Set(this.#workers.filter((w) => w.isConnected()).map((w) => w.id));
      const done = (results: ApplyResult[]): void => {
        // Refused by every worker: a worker started later gets the snapshot they all still serve.
        if (results.length > 0 && !results.some((r) => r.applied) && this.#latest?.seq === seq) this.#latest = previous;
        resolve(results);
      };
      this.#pending.set(seq, { waiting, results: [], resolve: done });
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

