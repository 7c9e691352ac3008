/**
 * Metrics of the control plane (primary process): the snapshot being served, reloads by outcome
 * (rejected configs included), diagnostics by severity, data-plane workers.
 */
import { Counter, Gauge, Registry } from './prom.js';
import type { Controller, ReloadRecord } from '../control/controller.js';

export class ControlMetrics {
  readonly registry = new Registry();
  readonly #reloads: Counter<'outcome'>;
  #controller: Controller | null = null;

  constructor() {
    const self = this;
    this.#reloads = new Counter({ name: 'meshgate_config_reloads_total', help: 'Configuration reloads by outcome (applied, unchanged, rejected).', labelNames: ['outcome'], registers: [this.registry] });
    for (const o of ['applied', 'unchanged', 'rejected']) this.#reloads.inc({ outcome: o }, 0);
    new Gauge({
      name: 'meshgate_snapshot_info',
      help: 'The routing snapshot being served (value 1; its version in the label).',
      labelNames: ['version'],
      registers: [this.registry],
      collect() {
        this.reset();
        const v = self.#controller?.serving?.version;
        if (v !== undefined) this.set({ version: v }, 1);
      },
    });
    new Gauge({
      name: 'meshgate_snapshot_routes',
      help: 'Listeners, virtual hosts, routes and clusters in the snapshot being served.',
      labelNames: ['kind'],
      registers: [this.registry],
      collect() {
        const ir = self.#controller?.serving;
        if (!ir) return;
        const chains = ir.listeners.flatMap((l) => l.filterChains);
        const vhosts = chains.flatMap((c) => c.virtualHosts);
        this.set({ kind: 'listeners' }, ir.listeners.length);
        this.set({ kind: 'virtual_hosts' }, vhosts.length);
        this.set({ kind: 'routes' }, vhosts.reduce((n, v) => n + v.routes.length, 0));
        this.set({ kind: 'clusters' }, ir.clusters.length);
      },
    });
    new Gauge({
      name: 'meshgate_config_diagnostics',
      help: 'Diagnostics of the last reload by severity.',
      labelNames: ['severity'],
      registers: [this.registry],
      collect() {
        this.reset();
        const counts: Record<string, number> = { error: 0, warning: 0, info: 0 };
        for (const d of self.#controller?.diagnostics ?? []) counts[d.severity] = (counts[d.severity] ?? 0) + 1;
        for (const [severity, n] of Object.entries(counts)) this.set({ severity }, n);
      },
    });
  }

  attach(controller: Controller): void {
    this.#controller = controller;
  }

  /** ControllerOptions.onReload. */
  reloaded(r: ReloadRecord): void {
    this.#reloads.inc({ outcome: r.outcome });
  }
}
