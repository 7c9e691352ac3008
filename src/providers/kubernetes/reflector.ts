/**
 * A reflector keeps a local copy of one API collection, the way client-go's does:
 *
 *  1. list, in pages (`limit`/`continue`), and remember the list's resourceVersion;
 *  2. watch from that resourceVersion with bookmarks on, applying ADDED/MODIFIED/DELETED and moving
 *     the resourceVersion forward on every event and BOOKMARK;
 *  3. when the watch ends (server timeout, dropped connection), watch again from the last
 *     resourceVersion, after a jittered, capped backoff if it failed;
 *  4. when the server says the resourceVersion is gone (410, as an HTTP status or an ERROR event),
 *     list again from scratch.
 *
 * `synced` resolves after the first complete list: until then the copy is not a view of the cluster.
 */
import type { Logger } from '../../lib/log.js';
import type { KubeObject } from '../../resources/types.js';
import { isObj, num, obj, str } from '../../lib/unknown.js';
import { ApiError, statusMessage, type ApiClient, type WatchEventType, type WatchHandle } from './api-client.js';
import { Backoff, Sleeper, type BackoffOptions } from './backoff.js';
import { storeKey, toKubeObject } from './kinds.js';

export interface ReflectorOptions {
  client: ApiClient;
  /** Collection path, e.g. `/apis/networking.k8s.io/v1/ingresses`. */
  path: string;
  apiVersion: string;
  kind: string;
  namespaced: boolean;
  fieldSelector?: string;
  labelSelector?: string;
  /** Items per list page (client-go: 500). */
  pageSize?: number;
  backoff?: BackoffOptions;
  log: Logger;
  /** Called after every change to the copy (an event applied, or a relist). */
  onChange: () => void;
}

/** How one watch ended. */
type WatchEnd = 'closed' | 'expired' | 'failed';

export class Reflector {
  readonly #opts: ReflectorOptions;
  readonly #backoff: Backoff;
  readonly #sleeper = new Sleeper();
  #items = new Map<string, KubeObject>();
  #resourceVersion = '';
  #watch: WatchHandle | null = null;
  #stopped = false;
  #started = false;
  #hasSynced = false;
  /** When the current watch began: one that closes at once is retried after a backoff, not in a tight loop. */
  #watchStarted = 0;
  #resolveSynced!: () => void;
  /** Resolves after the first complete list. */
  readonly synced: Promise<void>;
  /** Counters for tests and logs. */
  readonly stats = { lists: 0, watches: 0, events: 0, bookmarks: 0, expired: 0, failures: 0 };

  constructor(opts: ReflectorOptions) {
    this.#opts = opts;
    this.#backoff = new Backoff(opts.backoff);
    this.synced = new Promise((resolve) => (this.#resolveSynced = resolve));
  }

  get hasSynced(): boolean {
    return this.#hasSynced;
  }

  get resourceVersion(): string {
    return this.#resourceVersion;
  }

  /** The current copy, in no particular order. */
  items(): IterableIterator<KubeObject> {
    return this.#items.values();
  }

  get(namespace: string, name: string): KubeObject | undefined {
    return this.#items.get(`${namespace}/${name}`);
  }

  start(): void {
    if (this.#started) return;
    this.#started = true;
    void this.#run();
  }

  stop(): void {
    this.#stopped = true;
    this.#watch?.abort();
    this.#sleeper.wake();
  }

  async #run(): Promise<void> {
    let relist = true;
    while (!this.#stopped) {
      try {
        if (relist) await this.#list();
        relist = false;
        if (this.#stopped) break;
        const end = await this.#watchOnce();
        if (end === 'expired') {
          // The resourceVersion was compacted away: only a new list can say what changed.
          this.stats.expired++;
          relist = true;
          continue;
        }
        if (end === 'closed' && performance.now() - this.#watchStarted > 1000) continue;
      } catch (e) {
        if (e instanceof ApiError && e.status === 410) {
          this.stats.expired++;
          relist = true;
          continue;
        }
        this.stats.failures++;
        this.#opts.log.warn('list failed; retrying', { path: this.#opts.path, error: (e as Error).message });
        relist = true;
      }
      if (this.#stopped) break;
      await this.#sleeper.sleep(this.#backoff.next());
    }
  }

  /** A full list, page by page; the copy is replaced only when the last page is in. */
  async #list(): Promise<void> {
    const items = new Map<string, KubeObject>();
    let cont = '';
    let resourceVersion = '';
    do {
      const query = this.#query({ limit: String(this.#opts.pageSize ?? 500), ...(cont ? { continue: cont } : {}) });
      const body = await this.#opts.client.expect('GET', `${this.#opts.path}?${new URLSearchParams(query)}`);
      const list = obj(body);
      for (const raw of Array.isArray(list.items) ? list.items : []) {
        const o = toKubeObject(raw, this.#opts.apiVersion, this.#opts.kind, this.#opts.namespaced);
        if (o) items.set(storeKey(o), o);
      }
      const meta = obj(list.metadata);
      resourceVersion = str(meta.resourceVersion) ?? resourceVersion;
      cont = str(meta.continue) ?? '';
    } while (cont !== '' && !this.#stopped);
    this.stats.lists++;
    this.#items = items;
    this.#resourceVersion = resourceVersion;
    this.#backoff.reset();
    if (!this.#hasSynced) {
      this.#hasSynced = true;
      this.#resolveSynced();
    }
    this.#opts.onChange();
  }

  #query(extra: Record<string, string>): Record<string, string> {
    const q: Record<string, string> = { ...extra };
    if (this.#opts.fieldSelector) q.fieldSelector = this.#opts.fieldSelector;
    if (this.#opts.labelSelector) q.labelSelector = this.#opts.labelSelector;
    return q;
  }

  /** One watch stream from the current resourceVersion, until it ends. */
  #watchOnce(): Promise<WatchEnd> {
    this.stats.watches++;
    this.#watchStarted = performance.now();
    // client-go asks the server to end each watch after 5-10 minutes, so no stream lives forever.
    const timeoutSeconds = String(300 + Math.floor(Math.random() * 300));
    const query = this.#query({ allowWatchBookmarks: 'true', resourceVersion: this.#resourceVersion, timeoutSeconds });
    return new Promise<WatchEnd>((resolve) => {
      let end: WatchEnd | null = null;
      const settle = (e: WatchEnd) => {
        end ??= e;
      };
      this.#watch = this.#opts.client.watch(
        this.#opts.path,
        query,
        (type, object) => {
          if (end) return;
          const r = this.#apply(type, object);
          if (r) {
            settle(r);
            this.#watch?.abort();
          }
        },
        (err) => {
          this.#watch = null;
          const status = isObj(err) ? num(err.statusCode) : undefined;
          if (status === 410) settle('expired');
          else if (err && !this.#stopped) {
            this.#opts.log.debug('watch failed', { path: this.#opts.path, error: err instanceof Error ? err.message : String(err) });
            settle('failed');
          } else settle('closed');
          resolve(end ?? 'closed');
        },
      );
    });
  }

  /** Apply one watch event; returns how the watch must end, or null to go on. */
  #apply(type: WatchEventType, object: unknown): WatchEnd | null {
    if (type === 'ERROR') {
      const code = num(obj(object).code);
      if (code === 410) return 'expired';
      this.#opts.log.warn('watch error', { path: this.#opts.path, code, message: statusMessage(object) });
      return 'failed';
    }
    const rv = str(obj(obj(object).metadata).resourceVersion);
    if (rv) this.#resourceVersion = rv;
    this.#backoff.reset();
    if (type === 'BOOKMARK') {
      this.stats.bookmarks++;
      return null;
    }
    const o = toKubeObject(object, this.#opts.apiVersion, this.#opts.kind, this.#opts.namespaced);
    if (!o) return null;
    this.stats.events++;
    if (type === 'DELETED') this.#items.delete(storeKey(o));
    else this.#items.set(storeKey(o), o);
    this.#opts.onChange();
    return null;
  }
}
