/**
 * Outlier detection (Istio OutlierDetection; Envoy's consecutive-5xx and consecutive-gateway-failure
 * detectors), per cluster, keyed by endpoint (`address:port`) so ejections survive snapshot swaps.
 *
 * - Every answer of an endpoint is reported: a 5xx counts for the 5xx detector, a 502/503/504 also
 *   for the gateway detector; a connection failure, reset or timeout (local origin) counts for both,
 *   as Envoy does when local-origin errors are not split. Any other answer resets both counts.
 * - Reaching a threshold ejects the endpoint at once, unless that would put more than
 *   `maxEjectionPercent` of the endpoints out (one endpoint can always be ejected, as in Envoy).
 * - An ejection lasts `baseEjectionTime` x the number of times the endpoint was ejected (at most
 *   300 s, Envoy's `max_ejection_time`); ejected endpoints come back at the first interval sweep after
 *   their time ran out. An endpoint that stays back for a whole `baseEjectionTime` has its count
 *   lowered by one at a sweep, so the multiplier decays after good behaviour.
 */

import type { OutlierDetection } from '../../ir/types.js';

/** Envoy's default `max_ejection_time`. */
const MAX_EJECTION_MS = 300_000;

interface HostStats {
  consecutive5xx: number;
  consecutiveGateway: number;
  ejected: boolean;
  /** Times ejected (the ejection time multiplier). */
  ejections: number;
  /** When the current ejection started, or when the multiplier last changed while back. */
  since: number;
  /** Times ejected since the endpoint was first seen (never lowered; for metrics and the admin API). */
  total: number;
}

/** One endpoint's ejection state, for metrics and the admin API. */
export interface OutlierEndpointState {
  /** `address:port`. */
  endpoint: string;
  ejected: boolean;
  /** When the current ejection ends at the latest (epoch ms; the sweep may return it up to one interval later); null when not ejected. */
  ejectedUntil: number | null;
  /** Times ejected since the endpoint was first seen by this process. */
  timesEjected: number;
}

/** One ejection or return, for tests and the admin API. */
export interface OutlierEvent {
  endpoint: string;
  kind: 'eject' | 'return';
  at: number;
  /** Ejection count of the endpoint after the event. */
  ejections: number;
}

export class OutlierTracker {
  config: OutlierDetection;
  /** Changes whenever the set of ejected endpoints changes (load balancers cache by it). */
  gen = 0;
  ejectedCount = 0;
  /** Ejections since this tracker started (never lowered; `meshgate_outlier_ejections_total`). */
  totalEjections = 0;
  /** The most recent events (bounded). */
  readonly events: OutlierEvent[] = [];
  readonly #hosts = new Map<string, HostStats>();
  #total = 0;
  #timer: NodeJS.Timeout | null = null;
  readonly #now: () => number;

  constructor(config: OutlierDetection, now: () => number = Date.now) {
    this.config = config;
    this.#now = now;
    this.#startTimer();
  }

  /** New snapshot: new settings and endpoint set. Endpoints gone are forgotten (their ejection ends). */
  configure(config: OutlierDetection, endpointKeys: string[]): void {
    if (config.intervalMs !== this.config.intervalMs) {
      this.config = config;
      this.#startTimer();
    }
    this.config = config;
    this.#total = endpointKeys.length;
    const keep = new Set(endpointKeys);
    for (const [key, h] of this.#hosts) {
      if (keep.has(key)) continue;
      if (h.ejected) {
        this.ejectedCount--;
        this.gen++;
      }
      this.#hosts.delete(key);
    }
  }

  isEjected(key: string): boolean {
    const h = this.#hosts.get(key);
    return h !== undefined && h.ejected;
  }

  /** Ejection count of an endpoint (0 when never ejected). */
  ejections(key: string): number {
    return this.#hosts.get(key)?.ejections ?? 0;
  }

  /** Reports an answer (`status` >= 100) or a local-origin failure (`status` 0) of endpoint `key`. */
  report(key: string, status: number): void {
    let h = this.#hosts.get(key);
    if (status !== 0 && status < 500) {
      if (h !== undefined) {
        h.consecutive5xx = 0;
        h.consecutiveGateway = 0;
      }
      return;
    }
    if (h === undefined) this.#hosts.set(key, (h = { consecutive5xx: 0, consecutiveGateway: 0, ejected: false, ejections: 0, since: this.#now(), total: 0 }));
    if (h.ejected) return;
    const c = this.config;
    h.consecutive5xx++;
    if (status === 0 || (status >= 502 && status <= 504)) h.consecutiveGateway++;
    else h.consecutiveGateway = 0;
    const hit5xx = c.consecutive5xxErrors > 0 && h.consecutive5xx >= c.consecutive5xxErrors;
    const hitGateway = c.consecutiveGatewayErrors > 0 && h.consecutiveGateway >= c.consecutiveGatewayErrors;
    if (hit5xx || hitGateway) this.#eject(key, h);
  }

  #eject(key: string, h: HostStats): void {
    const total = Math.max(this.#total, 1);
    const allowed = this.ejectedCount === 0 || ((this.ejectedCount + 1) * 100) / total <= this.config.maxEjectionPercent;
    // Counters restart either way, so one more failure does not retry the ejection at once.
    h.consecutive5xx = 0;
    h.consecutiveGateway = 0;
    if (!allowed) return;
    h.ejected = true;
    h.ejections++;
    h.total++;
    h.since = this.#now();
    this.ejectedCount++;
    this.totalEjections++;
    this.gen++;
    this.#event(key, 'eject', h);
  }

  /** Endpoints ever ejected, with their state (read at scrape time, never on the request path). */
  endpointStates(): OutlierEndpointState[] {
    const out: OutlierEndpointState[] = [];
    for (const [key, h] of this.#hosts) {
      if (h.total === 0) continue;
      out.push({ endpoint: key, ejected: h.ejected, ejectedUntil: h.ejected ? h.since + this.#ejectionMs(h) : null, timesEjected: h.total });
    }
    return out;
  }

  #ejectionMs(h: HostStats): number {
    const base = this.config.baseEjectionTimeMs;
    return Math.min(base * h.ejections, Math.max(base, MAX_EJECTION_MS));
  }

  /** The interval sweep: returns endpoints whose ejection time ran out; decays multipliers. */
  sweep(): void {
    const now = this.#now();
    const base = this.config.baseEjectionTimeMs;
    for (const [key, h] of this.#hosts) {
      if (h.ejected) {
        if (now - h.since >= this.#ejectionMs(h)) {
          h.ejected = false;
          h.since = now;
          this.ejectedCount--;
          this.gen++;
          this.#event(key, 'return', h);
        }
      } else if (h.ejections > 0 && now - h.since >= base) {
        h.ejections--;
        h.since = now;
      }
    }
  }

  #event(key: string, kind: OutlierEvent['kind'], h: HostStats): void {
    this.events.push({ endpoint: key, kind, at: this.#now(), ejections: h.ejections });
    if (this.events.length > 256) this.events.shift();
  }

  #startTimer(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = setInterval(sweepTimer, this.config.intervalMs, this).unref();
  }

  close(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}

function sweepTimer(t: OutlierTracker): void {
  t.sweep();
}
