/**
 * What the mesh graph keeps of each scraped sidecar: its recent scrapes of Istio's standard metrics
 * (only those the graph reads), pruned to the window, and the increase of each series over them.
 *
 * Increases follow Prometheus's counter semantics: between two scrapes a series that went down was
 * reset (the sidecar restarted) and counts its new value; a series first seen in a scrape counts
 * from 0 (Istio's series appear at their first increment); a series that vanished and came back
 * counts from 0 again. The first scrape of a sidecar is only its baseline.
 */
import type { PromExposition } from './prom-text.js';
import { seriesKey } from './prom-text.js';

/** The metric families the graph reads (reference/mesh.md §4; Kiali's graph reads the same). */
export const GRAPH_METRICS: ReadonlySet<string> = new Set([
  'istio_requests_total',
  'istio_request_duration_milliseconds_bucket',
  'istio_request_duration_milliseconds_count',
  'istio_tcp_sent_bytes_total',
  'istio_tcp_received_bytes_total',
  'istio_tcp_connections_opened_total',
]);

/**
 * The labels the graph reads; a scrape's series that differ only in others (response_flags,
 * versions, canonical names, clusters…) are summed into one, which keeps a sidecar's history small.
 * The sum of counters is a counter: a restart resets all of a sidecar's series at once.
 */
export const GRAPH_LABELS: readonly string[] = [
  'reporter',
  'source_workload',
  'source_workload_namespace',
  'destination_workload',
  'destination_workload_namespace',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
  'destination_principal',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'connection_security_policy',
  'le',
];

export interface Series {
  key: string;
  name: string;
  labels: Readonly<Record<string, string>>;
}

export interface Scrape {
  /** When the scrape's answer arrived, ms since the epoch. */
  t: number;
  values: Map<string, number>;
}

export class TargetHistory {
  readonly scrapes: Scrape[] = [];
  /** Every series seen in the kept scrapes, by key. */
  readonly series = new Map<string, Series>();

  /** Label names and values, held once (many series share them) and as copies, not as slices of a scrape's text. */
  readonly #strings = new Map<string, string>();

  #intern(v: string): string {
    let s = this.#strings.get(v);
    if (s === undefined) {
      // A fresh flat string: a slice would keep the whole scraped text alive.
      s = (JSON.parse(JSON.stringify(v)) as string);
      this.#strings.set(s, s);
    }
    return s;
  }

  #internLabels(labels: Readonly<Record<string, string>>): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(labels)) out[this.#intern(k)] = this.#intern(v);
    return out;
  }

  /** Records one successful scrape (only the graph's metric families). */
  add(t: number, exposition: PromExposition): void {
    const values = new Map<string, number>();
    for (const s of exposition.samples) {
      if (!GRAPH_METRICS.has(s.name) || !Number.isFinite(s.value)) continue;
      const labels: Record<string, string> = {};
      for (const l of GRAPH_LABELS) {
        const v = s.labels[l];
        if (v !== undefined) labels[l] = v;
      }
      let key = seriesKey(s.name, labels);
      // Every scrape keys its values by the first scrape's string: long keys are held once, not per scrape.
      const known = this.series.get(key);
      if (known === undefined) this.series.set(key, { key, name: this.#intern(s.name), labels: this.#internLabels(labels) });
      else key = known.key;
      // Series equal on the graph's labels are summed (so is a repeated series, which a merge of workers could give).
      values.set(key, (values.get(key) ?? 0) + s.value);
    }
    this.scrapes.push({ t, values });
  }

  /**
   * Keeps the scrapes of the window ending at `now`: the last one at or before `now - windowMs`
   * (the baseline the increases start from) and every later one. Series no kept scrape has are forgotten.
   */
  prune(now: number, windowMs: number): void {
    const start = now - windowMs;
    let baseline = 0;
    for (let i = 0; i < this.scrapes.length; i++) if (this.scrapes[i].t <= start) baseline = i;
    if (baseline > 0) this.scrapes.splice(0, baseline);
    if (this.scrapes.length === 1 && this.scrapes[0].t < start) this.scrapes.length = 0;
    if (baseline > 0 || this.scrapes.length === 0) {
      const live = new Set<string>();
      for (const s of this.scrapes) for (const k of s.values.keys()) live.add(k);
      for (const k of this.series.keys()) if (!live.has(k)) this.series.delete(k);
      if (this.series.size === 0) this.#strings.clear();
    }
  }

  /** The newest scrape, or null. */
  get latest(): Scrape | null {
    return this.scrapes.length === 0 ? null : this.scrapes[this.scrapes.length - 1];
  }

  /** Seconds between the first and the last kept scrape (0 with fewer than two). */
  get spanSeconds(): number {
    return this.scrapes.length < 2 ? 0 : (this.scrapes[this.scrapes.length - 1].t - this.scrapes[0].t) / 1000;
  }

  /** The increase of every series over the kept scrapes (counter resets handled); only series that increased. */
  increases(): Map<string, number> {
    return increases(this.scrapes);
  }
}

/** Increase per series over successive scrapes, Prometheus-style (see the module comment). */
export function increases(scrapes: readonly Scrape[]): Map<string, number> {
  const out = new Map<string, number>();
  for (let i = 1; i < scrapes.length; i++) {
    const prev = scrapes[i - 1].values;
    for (const [key, v] of scrapes[i].values) {
      const before = prev.get(key);
      // New series (or back after vanishing): from 0. Lower than before: a reset, the new value is the increase.
      const d = before === undefined ? v : v >= before ? v - before : v;
      if (d > 0) out.set(key, (out.get(key) ?? 0) + d);
    }
  }
  return out;
}
