/**
 * The controller: provider -> debounce -> pipeline (check, translate, validate) -> dedupe by version
 * -> apply to the data plane -> status (diagnostics, reload history) for the admin server and logs.
 */
import type { GatewayApiStatus } from '../translate/gatewayapi/status.js';
import { snapshotSummary } from './snapshot-summary.js';
import { busyPortHint } from './port-hint.js';
import type { Diagnostic } from '../lib/diagnostic.js';
import { formatDiagnostic } from '../lib/diagnostic.js';
import type { Logger } from '../lib/log.js';
import type { IRSnapshot } from '../ir/types.js';
import type { ApplyResult } from '../runtime/runtime.js';
import type { TranslateOptions } from '../translate/index.js';
import { ConfigPipeline, type LoadedConfig } from './pipeline.js';
import type { DataPlane } from './dataplane.js';
import type { RuntimeServing } from './dataplane-types.js';
import type { ConfigSource } from './source.js';
import type { ResourceSet } from '../resources/resource-set.js';

/** What the runtimes serve right now (`/config_dump`). */
export interface ServedState {
  /**
   * The oldest version any runtime serves (a client may still get it); the serving snapshot's
   * version on planes that do not report per runtime; null while none serves anything.
   */
  version: string | null;
  /** That version's snapshot (kept while a runtime serves it); null when none. */
  snapshot: IRSnapshot | null;
  /** Every runtime serves `version`. */
  converged: boolean;
  /** Each runtime and the version it serves (empty on planes that do not report it). */
  runtimes: RuntimeServing[];
}

export interface ReloadRecord {
  /** ISO time the reload finished. */
  time: string;
  /** Version now serving after this reload. */
  version: string | null;
  outcome: 'applied' | 'unchanged' | 'rejected';
  errors: number;
  warnings: number;
  durationMs: number;
}

export interface ControllerOptions {
  /** Where objects come from: a directory, or a Kubernetes API server. */
  source: ConfigSource;
  translate: TranslateOptions;
  dataPlane: DataPlane;
  log: Logger;
  /** Watch the source and reload on change (default true). */
  watch?: boolean;
  /** Called after every reload with its diagnostics (e.g. to write them as Kubernetes Events). */
  onDiagnostics?: (diagnostics: LoadedConfig['diagnostics']) => void;
  /** Called after every reload with its record (e.g. to count reloads in metrics). */
  onReload?: (record: ReloadRecord) => void;
  /** Called after every reload with the Gateway API status translation made (the Kubernetes status writer). */
  onGatewayApiStatus?: (status: GatewayApiStatus) => void;
  /**
   * Called after every reload with the objects that went into translation (checked, last-good
   * fallbacks applied), whatever the gateway snapshot's outcome: the control plane computes each
   * sidecar's view from them.
   */
  onResources?: (resources: ResourceSet) => void;
}

export class Controller {
  readonly #opts: ControllerOptions;
  readonly #pipeline: ConfigPipeline;
  #watcher: { close(): void } | null = null;
  #running: Promise<void> = Promise.resolve();
  #again = false;
  #busy = false;

  /**
   * The newest snapshot the runtimes were given and did not all refuse (every runtime serves it once
   * its apply settled, unless one refused it); null until the first apply.
   */
  serving: IRSnapshot | null = null;
  /** Snapshots by version while some runtime may still serve them (`servedState`); pruned after each apply. */
  readonly #retained = new Map<string, IRSnapshot>();
  /** Results of the last apply, one per runtime (bound listeners, bind errors). */
  lastApply: ApplyResult[] = [];
  diagnostics: Diagnostic[] = [];
  /** Gateway API status of the last reload (`/gateway_api_status`); null before the first. */
  gatewayApiStatus: GatewayApiStatus | null = null;
  readonly reloads: ReloadRecord[] = [];

  constructor(opts: ControllerOptions) {
    this.#opts = opts;
    this.#pipeline = new ConfigPipeline(opts.translate);
  }

  /** Ready: a snapshot is served and every one of its listeners is bound in every runtime. */
  get ready(): boolean {
    return this.serving !== null && this.notReadyReason() === null;
  }

  /** Why the gateway is not ready, or null when it is. */
  notReadyReason(): string | null {
    if (this.serving === null) return 'no snapshot served yet';
    for (const r of this.lastApply) {
      const failed = r.listeners.find((l) => l.state === 'failed');
      if (failed) return `listener ${failed.name} is not bound: ${failed.error ?? 'unknown error'}`;
      const tcp = r.tcpListeners?.find((l) => l.error !== null);
      if (tcp) return `tcp listener ${tcp.name} is not bound: ${tcp.error}`;
    }
    return null;
  }

  /** Load, translate and apply once; then watch for changes. */
  async start(): Promise<void> {
    await this.reload();
    if (this.#opts.watch !== false) this.#watcher = this.#opts.source.watch(() => this.#schedule());
  }

  #schedule(): void {
    if (this.#busy) {
      this.#again = true;
      return;
    }
    this.#running = this.reload();
  }

  /** One pass of the pipeline. Reloads never overlap: a change during one triggers another after it. */
  async reload(): Promise<void> {
    this.#busy = true;
    try {
      do {
        this.#again = false;
        await this.#reloadOnce();
      } while (this.#again);
    } finally {
      this.#busy = false;
    }
  }

  async #reloadOnce(): Promise<void> {
    const started = performance.now();
    const log = this.#opts.log;
    const loaded = await this.#opts.source.load();
    const result = this.#pipeline.run(loaded);
    this.diagnostics = result.diagnostics;
    this.#opts.onDiagnostics?.(result.diagnostics);
    this.#opts.onResources?.(result.resources);
    if (result.gatewayApiStatus) {
      this.gatewayApiStatus = result.gatewayApiStatus;
      this.#opts.onGatewayApiStatus?.(result.gatewayApiStatus);
    }
    const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
    const warnings = result.diagnostics.filter((d) => d.severity === 'warning').length;
    for (const d of result.diagnostics) if (d.severity !== 'info') log[d.severity === 'error' ? 'error' : 'warn'](formatDiagnostic(d), { reason: d.reason });
    let outcome: ReloadRecord['outcome'];
    if (!result.snapshot) {
      outcome = 'rejected';
      log.error('configuration rejected; the last good snapshot keeps serving', { version: this.serving?.version ?? null });
    } else if (this.serving && result.snapshot.version === this.serving.version) {
      outcome = 'unchanged';
      // Same content (the version ignores source positions): nothing to apply, but dumps show the new file:line.
      this.serving = result.snapshot;
      this.#retained.set(result.snapshot.version, result.snapshot);
    } else {
      const applied = await this.#opts.dataPlane.apply(result.snapshot);
      this.lastApply = applied;
      if (applied.length > 0 && !applied.some((r) => r.applied)) {
        // Every runtime refused it (Runtime.apply: it did not compile): they keep the last good one.
        outcome = 'rejected';
        log.error('snapshot refused by the data plane; the last good snapshot keeps serving', { version: result.snapshot.version, serving: this.serving?.version ?? null, errors: [...new Set(applied.flatMap((r) => r.errors))] });
      } else {
        this.serving = result.snapshot;
        this.#retained.set(result.snapshot.version, result.snapshot);
        outcome = 'applied';
        for (const r of applied) for (const e of r.errors) log.error(r.applied ? 'listener failed' : 'snapshot refused by a runtime', { error: e, ...(busyPortHint(e, this.#opts.translate) ? { hint: busyPortHint(e, this.#opts.translate) } : {}) });
        log.info('snapshot applied', { version: result.snapshot.version, ...snapshotSummary(result.snapshot), clusters: result.snapshot.clusters.length, errors, warnings });
      }
      this.#prune();
    }
    this.reloads.push({ time: new Date().toISOString(), version: this.serving?.version ?? null, outcome, errors, warnings, durationMs: Math.round(performance.now() - started) });
    if (this.reloads.length > 100) this.reloads.shift();
    this.#opts.onReload?.(this.reloads[this.reloads.length - 1]);
  }

  /**
   * What the runtimes serve now, from their own answers: each one's version and the oldest of them,
   * as Envoy's config_dump tells what a proxy has accepted. A reload in progress, a runtime that
   * refused a snapshot, or a worker restarting shows here; `serving` is the newest snapshot given.
   */
  servedState(): ServedState {
    const runtimes = this.#opts.dataPlane.served?.() ?? null;
    if (runtimes === null) return { version: this.serving?.version ?? null, snapshot: this.serving, converged: true, runtimes: [] };
    let oldest: RuntimeServing | null = null;
    for (const r of runtimes) if (r.version !== null && (oldest === null || r.seq < oldest.seq)) oldest = r;
    const version = oldest?.version ?? null;
    const snapshot = version === null ? null : version === this.serving?.version ? this.serving : (this.#retained.get(version) ?? null);
    return { version, snapshot, converged: runtimes.length > 0 && runtimes.every((r) => r.version === version), runtimes };
  }

  /** Keeps the snapshots some runtime serves, and the serving one. */
  #prune(): void {
    const keep = new Set((this.#opts.dataPlane.served?.() ?? []).map((r) => r.version));
    if (this.serving !== null) keep.add(this.serving.version);
    for (const v of this.#retained.keys()) if (!keep.has(v)) this.#retained.delete(v);
  }

  async stop(graceMs: number): Promise<void> {
    this.#watcher?.close();
    await this.#opts.source.close?.();
    await this.#running.catch(() => {});
    await this.#opts.dataPlane.close(graceMs);
  }
}
