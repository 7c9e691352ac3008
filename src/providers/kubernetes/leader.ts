/**
 * Leader election through a coordination.k8s.io/v1 Lease, as client-go's leaderelection does:
 *
 * - every `retryPeriodMs` a candidate reads the Lease; it takes it when it does not exist, is its own,
 *   or has not been renewed for `leaseDurationMs` as measured on this candidate's clock (the time it
 *   last saw the record change, never the holder's timestamps, so clock skew cannot steal a lease);
 * - writes carry the resourceVersion read, so two candidates cannot both win (409 Conflict);
 * - the leader renews every `retryPeriodMs` and steps down when it has not managed to renew for
 *   `renewDeadlineMs`; on a clean stop it releases the Lease so another replica takes over at once.
 *
 * Only the leader writes status and Events; every replica serves traffic.
 */
import type { Logger } from '../../lib/log.js';
import { obj, num, str } from '../../lib/unknown.js';
import type { ApiClient } from './api-client.js';

export interface LeaderElectionOptions {
  client: ApiClient;
  namespace: string;
  /** Lease name (`meshgate-leader`). */
  name: string;
  /** This replica: pod name plus a random suffix. */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  log: Logger;
  onChange: (leading: boolean) => void;
}

/** client-go's defaults, used by ingress-nginx and most controllers. */
export const LEASE_DURATION_MS = 15_000;
export const RENEW_DEADLINE_MS = 10_000;
export const RETRY_PERIOD_MS = 2_000;

interface LeaseRecord {
  holder: string;
  renewTime: string;
  transitions: number;
}

export class LeaderElector {
  readonly #opts: LeaderElectionOptions;
  #timer: NodeJS.Timeout | null = null;
  #leading = false;
  #stopped = false;
  /** The record last seen, and when (this clock) it was first seen. */
  #observed: { key: string; at: number } | null = null;
  #lastRenew = 0;
  #busy: Promise<void> = Promise.resolve();

  constructor(opts: LeaderElectionOptions) {
    this.#opts = opts;
  }

  get leading(): boolean {
    return this.#leading;
  }

  get identity(): string {
    return this.#opts.identity;
  }

  start(): void {
    this.#tick();
  }

  /** Stop campaigning; with `release`, hand the Lease back so another replica takes it at once. */
  async stop(release: boolean): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#busy;
    if (release && this.#leading) await this.#release().catch((e: Error) => this.#opts.log.warn('lease release failed', { error: e.message }));
    this.#setLeading(false);
  }

  #tick(): void {
    if (this.#stopped) return;
    this.#busy = this.#tryAcquireOrRenew()
      .catch((e: Error) => this.#opts.log.warn('lease update failed', { error: e.message }))
      .then(() => this.#checkDeadline());
    void this.#busy.then(() => {
      if (!this.#stopped) this.#timer = setTimeout(() => this.#tick(), this.#opts.retryPeriodMs ?? RETRY_PERIOD_MS);
    });
  }

  get #path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.#opts.namespace)}/leases`;
  }

  async #tryAcquireOrRenew(): Promise<void> {
    const { client } = this.#opts;
    const now = Date.now();
    const got = await client.request('GET', `${this.#path}/${this.#opts.name}`);
    if (got.status === 404) {
      const created = await client.request('POST', this.#path, this.#lease(null, 0, now));
      if (created.status === 201 || created.status === 200) this.#won(now);
      return;
    }
    if (got.status !== 200) throw new Error(`GET lease: ${got.status}`);
    const current = obj(got.body);
    const record = readRecord(current);
    const key = `${record.holder}|${record.renewTime}`;
    if (this.#observed?.key !== key) this.#observed = { key, at: now };
    const mine = record.holder === this.#opts.identity;
    const expired = record.holder === '' || now - this.#observed.at >= (this.#opts.leaseDurationMs ?? LEASE_DURATION_MS);
    if (!mine && !expired) {
      this.#setLeading(false);
      return;
    }
    const transitions = mine ? record.transitions : record.transitions + 1;
    const updated = await client.request('PUT', `${this.#path}/${this.#opts.name}`, this.#lease(current, transitions, now));
    if (updated.status === 200) this.#won(now);
    else if (updated.status !== 409) throw new Error(`PUT lease: ${updated.status}`);
  }

  #won(now: number): void {
    this.#lastRenew = now;
    this.#observed = null;
    this.#setLeading(true);
  }

  /** A leader that could not renew within the deadline must assume another has taken over. */
  #checkDeadline(): void {
    if (this.#leading && Date.now() - this.#lastRenew > (this.#opts.renewDeadlineMs ?? RENEW_DEADLINE_MS)) {
      this.#opts.log.warn('could not renew the lease in time; no longer the leader');
      this.#setLeading(false);
    }
  }

  #lease(current: Record<string, unknown> | null, transitions: number, now: number): Record<string, unknown> {
    const previous = obj(current?.spec);
    const keepAcquire = current !== null && str(previous.holderIdentity) === this.#opts.identity;
    const time = microTime(now);
    return {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: current ? obj(current.metadata) : { name: this.#opts.name, namespace: this.#opts.namespace },
      spec: {
        holderIdentity: this.#opts.identity,
        leaseDurationSeconds: Math.ceil((this.#opts.leaseDurationMs ?? LEASE_DURATION_MS) / 1000),
        acquireTime: keepAcquire ? previous.acquireTime : time,
        renewTime: time,
        leaseTransitions: transitions,
      },
    };
  }

  async #release(): Promise<void> {
    const got = await this.#opts.client.request('GET', `${this.#path}/${this.#opts.name}`);
    const current = obj(got.body);
    if (got.status !== 200 || readRecord(current).holder !== this.#opts.identity) return;
    const spec = obj(current.spec);
    await this.#opts.client.request('PUT', `${this.#path}/${this.#opts.name}`, { ...current, spec: { ...spec, holderIdentity: '', leaseDurationSeconds: 1 } });
  }

  #setLeading(leading: boolean): void {
    if (leading === this.#leading) return;
    this.#leading = leading;
    this.#opts.log.info(leading ? 'became the leader' : 'stopped leading', { lease: `${this.#opts.namespace}/${this.#opts.name}`, identity: this.#opts.identity });
    this.#opts.onChange(leading);
  }
}

function readRecord(lease: Record<string, unknown>): LeaseRecord {
  const spec = obj(lease.spec);
  return { holder: str(spec.holderIdentity) ?? '', renewTime: str(spec.renewTime) ?? '', transitions: num(spec.leaseTransitions) ?? 0 };
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
