/**
 * Diagnostics as Kubernetes Events (events.k8s.io/v1) on the object they are about, so
 * `kubectl describe ingress web` shows why a path is not served. Like client-go's event recorder:
 *
 * - deduplicated: the same (object, reason, field, message) is written once per `dedupeMs` (the
 *   translator reports it again on every reload; the Event would only repeat it);
 * - rate-limited: a token bucket (`burst`, refilled at `perSecond`) caps writes when a bad rollout
 *   breaks many objects at once; what is dropped is counted and logged, and comes back on a later reload;
 * - only errors and warnings, only for objects that exist in the cluster (an Event needs the uid),
 *   and only by the leader (the caller decides).
 */
import { randomBytes } from 'node:crypto';
import type { Diagnostic } from '../../lib/diagnostic.js';
import type { Logger } from '../../lib/log.js';
import type { KubeObject } from '../../resources/types.js';
import { obj, str } from '../../lib/unknown.js';
import type { ApiClient } from './api-client.js';
import { microTime } from './leader.js';

export const REPORTING_CONTROLLER = 'meshgate.io/ingress-controller';

export interface EventRecorderOptions {
  client: ApiClient;
  log: Logger;
  /** This replica (the Event's reportingInstance). */
  identity: string;
  /** The object a diagnostic is about, as the source sees it now. */
  lookup: (kind: string, namespace: string, name: string) => KubeObject | undefined;
  dedupeMs?: number;
  burst?: number;
  perSecond?: number;
  now?: () => number;
}

export class EventRecorder {
  readonly #opts: EventRecorderOptions;
  /** Dedupe key -> when it was last written. */
  readonly #sent = new Map<string, number>();
  #tokens: number;
  #refilledAt: number;
  #dropped = 0;
  /** Events written (tests and logs). */
  written = 0;

  constructor(opts: EventRecorderOptions) {
    this.#opts = opts;
    this.#tokens = opts.burst ?? 25;
    this.#refilledAt = this.#now();
  }

  /** Write an Event for each new error or warning; resolves when the writes are done. */
  async record(diagnostics: readonly Diagnostic[]): Promise<void> {
    const now = this.#now();
    this.#forgetOld(now);
    for (const d of diagnostics) {
      if (d.severity === 'info' || !d.object) continue;
      const key = JSON.stringify([d.object.kind, d.object.namespace, d.object.name, d.reason, d.field, d.message]);
      if (this.#sent.has(key)) continue;
      const target = this.#opts.lookup(d.object.kind, d.object.namespace, d.object.name);
      if (!target) continue;
      if (!this.#take(now)) {
        this.#dropped++;
        continue;
      }
      this.#sent.set(key, now);
      await this.#write(d, target).catch((e: Error) => {
        this.#sent.delete(key);
        this.#opts.log.warn('event write failed', { error: e.message });
      });
    }
    if (this.#dropped > 0) {
      this.#opts.log.warn('events dropped by the rate limit; they are written on a later reload', { dropped: this.#dropped });
      this.#dropped = 0;
    }
  }

  async #write(d: Diagnostic, target: KubeObject): Promise<void> {
    const meta = obj(target.body.metadata);
    // Cluster-scoped objects (IngressClass) get their Events in `default`, as kubectl looks for them.
    const namespace = target.metadata.namespace || 'default';
    const event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: `${target.metadata.name}.${randomBytes(8).toString('hex')}`, namespace },
      eventTime: microTime(this.#now()),
      reportingController: REPORTING_CONTROLLER,
      reportingInstance: this.#opts.identity.slice(0, 128),
      action: 'Translate',
      reason: d.reason,
      type: 'Warning',
      regarding: { apiVersion: target.apiVersion, kind: target.kind, namespace: target.metadata.namespace || undefined, name: target.metadata.name, uid: str(meta.uid), resourceVersion: str(meta.resourceVersion) },
      note: truncate(d.field ? `${d.field}: ${d.message}` : d.message, 1024),
    };
    await this.#opts.client.expect('POST', `/apis/events.k8s.io/v1/namespaces/${encodeURIComponent(namespace)}/events`, event);
    this.written++;
  }

  #take(now: number): boolean {
    const burst = this.#opts.burst ?? 25;
    this.#tokens = Math.min(burst, this.#tokens + ((now - this.#refilledAt) / 1000) * (this.#opts.perSecond ?? 1));
    this.#refilledAt = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  #forgetOld(now: number): void {
    const ttl = this.#opts.dedupeMs ?? 10 * 60_000;
    for (const [key, at] of this.#sent) if (now - at >= ttl) this.#sent.delete(key);
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }
}

function truncate(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max - 3)}...`;
}
