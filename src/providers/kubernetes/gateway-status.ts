/**
 * Gateway API status writer: the conditions translation made (GatewayClass, Gateway with listeners
 * and addresses, route parents, BackendTLSPolicy ancestors) are written through each object's
 * `/status` subresource by the leader only.
 *
 * Read-modify-write, as the spec's status rules ask: one condition per type; conditions of other
 * types and route parents / policy ancestors of other controllers are left as they are; a condition
 * keeps its lastTransitionTime while its status is unchanged; nothing is written when the result
 * equals what the object already has (a steady state costs no writes); an object whose status
 * carries a newer observedGeneration than ours (another replica saw a newer spec) is skipped. A PUT
 * that conflicts is retried once on the object read again.
 *
 * It takes plain status data (no translate types: providers never import translate).
 */
import type { Logger } from '../../lib/log.js';
import type { KubeObject } from '../../resources/types.js';
import { arr, isObj, num, obj, str, type Obj } from '../../lib/unknown.js';
import type { ApiClient } from './api-client.js';
import { GATEWAY_API_GROUP, WATCHED, collectionPath } from './kinds.js';

export interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  observedGeneration: number;
}

interface Keyed {
  kind: string;
  namespace: string;
  name: string;
  generation: number;
}

/** The shape of translate's GatewayApiStatus, as far as the writer reads it. */
export interface GatewayApiStatusInput {
  controllerName: string;
  gatewayClasses: (Keyed & { conditions: Condition[] })[];
  gateways: (Keyed & { addresses: { type: string; value: string }[]; conditions: Condition[]; listeners: { name: string; supportedKinds: { group: string; kind: string }[]; attachedRoutes: number; conditions: Condition[] }[] })[];
  routes: (Keyed & { parents: { parentRef: object; controllerName: string; conditions: Condition[] }[] })[];
  policies: (Keyed & { ancestors: { ancestorRef: object; controllerName: string; conditions: Condition[] }[] })[];
}

export interface GatewayStatusWriterOptions {
  client: ApiClient;
  log: Logger;
  /** The current copy of a Gateway API object (from the source's reflectors), if known. */
  lookup(kind: string, namespace: string, name: string): KubeObject | undefined;
  /** Where Gateways are reachable (the publish Service or addresses); null: leave translation's. */
  addresses(): { type: string; value: string }[] | null;
  /** Clock for lastTransitionTime (tests). */
  now?: () => string;
}

export class GatewayStatusWriter {
  readonly #opts: GatewayStatusWriterOptions;
  #leading = false;
  #status: GatewayApiStatusInput | null = null;
  #syncing: Promise<void> = Promise.resolve();
  #running = false;
  #again = false;
  /** Routes this writer gave parent entries to (`kind/namespace/name`): when one drops out, its entries are removed. */
  #routesWritten = new Map<string, Keyed>();
  /** Status writes done (tests, logs). */
  writes = 0;

  constructor(opts: GatewayStatusWriterOptions) {
    this.#opts = opts;
  }

  setLeading(leading: boolean): void {
    this.#leading = leading;
    this.#schedule();
  }

  setStatus(status: GatewayApiStatusInput): void {
    this.#status = status;
    this.#schedule();
  }

  /** Something the status depends on changed (the publish Service). */
  refresh(): void {
    this.#schedule();
  }

  async idle(): Promise<void> {
    while (this.#running) await this.#syncing;
  }

  #schedule(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    this.#syncing = (async () => {
      do {
        this.#again = false;
        await this.#sync().catch((e: Error) => this.#opts.log.warn('Gateway API status update failed', { error: e.message }));
      } while (this.#again);
      this.#running = false;
    })();
  }

  async #sync(): Promise<void> {
    const s = this.#status;
    if (!this.#leading || s === null) return;
    const controller = s.controllerName;
    const addresses = this.#opts.addresses();
    const ownTypes = (mine: Condition[]) => (cur: Obj) => arr(cur.conditions).filter((c) => mine.some((m) => m.type === obj(c).type));
    const ownEntries = (key: 'parents' | 'ancestors') => (cur: Obj) => arr(cur[key]).filter((e) => obj(e).controllerName === controller);
    for (const c of s.gatewayClasses) await this.#write(c, ownTypes(c.conditions), (cur) => ({ ...cur, conditions: mergeConditions(arr(cur.conditions), c.conditions, this.#now()) }));
    for (const g of s.gateways) {
      await this.#write(g, (cur) => [ownTypes(g.conditions)(cur), cur.listeners], (cur) => ({
        ...cur,
        addresses: addresses ?? g.addresses,
        conditions: mergeConditions(arr(cur.conditions), g.conditions, this.#now()),
        listeners: g.listeners.map((l) => {
          const before = arr(cur.listeners).map(obj).find((x) => x.name === l.name);
          return { name: l.name, supportedKinds: l.supportedKinds, attachedRoutes: l.attachedRoutes, conditions: mergeConditions(arr(before?.conditions), l.conditions, this.#now()) };
        }),
      }));
    }
    for (const r of s.routes) await this.#write(r, ownEntries('parents'), (cur) => ({ ...cur, parents: mergeEntries(arr(cur.parents), r.parents.map((p) => ({ ref: p.parentRef, controllerName: p.controllerName, conditions: p.conditions })), 'parentRef', controller, this.#now()) }));
    // Routes that no longer name a Gateway of ours: our (now stale) parent entries are removed.
    const current = new Set(s.routes.map((r) => `${r.kind}/${r.namespace}/${r.name}`));
    for (const [key, r] of this.#routesWritten) {
      if (current.has(key)) continue;
      const o = this.#opts.lookup(r.kind, r.namespace, r.name);
      const generation = num(obj(o?.body.metadata).generation) ?? r.generation;
      await this.#write({ ...r, generation }, () => [], (cur) => ({ ...cur, parents: arr(cur.parents).filter((p) => obj(p).controllerName !== controller) }));
      this.#routesWritten.delete(key);
    }
    for (const r of s.routes) this.#routesWritten.set(`${r.kind}/${r.namespace}/${r.name}`, r);
    for (const p of s.policies) await this.#write(p, ownEntries('ancestors'), (cur) => ({ ...cur, ancestors: mergeEntries(arr(cur.ancestors), p.ancestors.map((a) => ({ ref: a.ancestorRef, controllerName: a.controllerName, conditions: a.conditions })), 'ancestorRef', controller, this.#now()) }));
  }

  #now(): string {
    return this.#opts.now?.() ?? new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  }

  /** PUT `/status` when `build(current status)` differs from it; on a conflict, read again and retry once. */
  async #write(target: Keyed, owned: (current: Obj) => unknown, build: (current: Obj) => Obj): Promise<void> {
    let o: Obj | null = this.#opts.lookup(target.kind, target.namespace, target.name)?.body ?? null;
    const resource = WATCHED.find((w) => w.group === GATEWAY_API_GROUP && w.kind === target.kind);
    if (o === null || resource === undefined) return;
    const version = (str(o.apiVersion) ?? '').split('/')[1] ?? resource.versions[0];
    const path = `${collectionPath(resource, version, resource.namespaced ? target.namespace : null)}/${encodeURIComponent(target.name)}`;
    for (let attempt = 0; attempt < 2 && o !== null; attempt++) {
      if (!this.#leading) return;
      const current = obj(o.status);
      // The object changed since this status was made, or another replica already wrote for a newer
      // generation: leave it (the reload that follows writes the current one).
      if ((num(obj(o.metadata).generation) ?? 0) > target.generation || newestGeneration(owned(current)) > target.generation) return;
      const next = build(current);
      if (sameStatus(current, next)) return;
      const res = await this.#opts.client.request('PUT', `${path}/status`, { ...o, status: next });
      if (res.status === 200) {
        this.writes++;
        return;
      }
      if (res.status === 404) return;
      if (res.status !== 409) throw new Error(`PUT ${path}/status: ${res.status}`);
      const fresh = await this.#opts.client.request('GET', path);
      o = fresh.status === 200 && isObj(fresh.body) ? fresh.body : null;
    }
  }
}

/** Ours replace theirs by type; other types stay; lastTransitionTime kept while the status is the same. */
function mergeConditions(current: unknown[], ours: Condition[], now: string): Obj[] {
  const cur = current.map(obj);
  const out: Obj[] = [];
  for (const c of cur) if (!ours.some((o) => o.type === c.type)) out.push(c);
  for (const c of ours) {
    const before = cur.find((x) => x.type === c.type);
    const lastTransitionTime = before && before.status === c.status && typeof before.lastTransitionTime === 'string' ? before.lastTransitionTime : now;
    out.push({ type: c.type, status: c.status, reason: c.reason, message: c.message, observedGeneration: c.observedGeneration, lastTransitionTime });
  }
  // Keep the order the object had; new types at the end.
  return out.sort((a, b) => orderOf(cur, a) - orderOf(cur, b));
}

function orderOf(list: Obj[], c: Obj): number {
  const i = list.findIndex((x) => x.type === c.type);
  return i < 0 ? Number.MAX_SAFE_INTEGER : i;
}

/** Route parents / policy ancestors: entries of other controllers kept as they are; ours replaced. */
function mergeEntries(current: unknown[], ours: { ref: object; controllerName: string; conditions: Condition[] }[], refKey: 'parentRef' | 'ancestorRef', controller: string, now: string): Obj[] {
  const cur = current.map(obj);
  const theirs = cur.filter((e) => e.controllerName !== controller);
  const mine = ours.map((e) => {
    const before = cur.find((x) => x.controllerName === controller && refKeyOf(obj(x[refKey])) === refKeyOf(obj(e.ref)));
    return { [refKey]: e.ref, controllerName: e.controllerName, conditions: mergeConditions(arr(before?.conditions), e.conditions, now) };
  });
  return [...theirs, ...mine];
}

function refKeyOf(r: Obj): string {
  return [str(r.group) ?? GATEWAY_API_GROUP, str(r.kind) ?? 'Gateway', str(r.namespace) ?? '', str(r.name) ?? '', str(r.sectionName) ?? '', String(num(r.port) ?? '')].join('|');
}

/** The highest observedGeneration among the conditions under `status` (the parts this controller owns). */
function newestGeneration(status: unknown): number {
  let max = 0;
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) v.forEach(visit);
    else if (isObj(v)) {
      const g = num(v.observedGeneration);
      if (g !== undefined && typeof v.type === 'string' && g > max) max = g;
      for (const x of Object.values(v)) if (typeof x === 'object') visit(x);
    }
  };
  visit(status);
  return max;
}

/** Equal apart from lastTransitionTime (which merge keeps when nothing else changed). */
function sameStatus(a: Obj, b: Obj): boolean {
  const strip = (v: unknown): unknown => (Array.isArray(v) ? v.map(strip) : isObj(v) ? Object.fromEntries(Object.entries(v).filter(([k]) => k !== 'lastTransitionTime').sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)).map(([k, x]) => [k, strip(x)])) : v);
  return JSON.stringify(strip(a)) === JSON.stringify(strip(b));
}
