/**
 * The Kubernetes API server as a ConfigSource: one reflector (list + watch) per watched kind and
 * namespace, feeding the same pipeline as the file directory.
 *
 * - `load()` answers only once every reflector has completed its first list, so nothing is ever
 *   translated from a partial view of the cluster.
 * - Namespaced kinds are watched in `watchNamespaces` only (one reflector per namespace), or
 *   cluster-wide when that is null. IngressClass is cluster-scoped and always watched.
 * - Optional APIs (the Istio CRDs) are found by discovery; a missing one is logged once and asked for
 *   again every `rediscoverMs`, so installing Istio's CRDs later needs no restart.
 * - Secrets (see secret-refs.ts): by default only those an Ingress, a Gateway or a DestinationRule
 *   names, each watched by name with a field selector; with `secretLabelSelector`,
 *   those carrying the labels. Either way no Secret the routes do not use is read.
 * - Istio's MeshConfig: the one ConfigMap `istio-system/istio`, watched by name in every mode.
 */
import { MESH_CONFIG_NAME, MESH_CONFIG_NAMESPACE } from '../../api/kinds.js';
import type { Logger } from '../../lib/log.js';
import type { ConfigSource, LoadedConfig } from '../types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ApiClient } from './api-client.js';
import { Backoff, Sleeper, type BackoffOptions } from './backoff.js';
import { discoverVersion } from './discovery.js';
import { CONFIGMAPS, GATEWAY_API_GROUP, SECRETS, WATCHED, apiVersionOf, collectionPath, type WatchedResource } from './kinds.js';
import { Reflector } from './reflector.js';
import { referencedCaConfigMaps, referencedConfigMaps, referencedSecrets } from './secret-refs.js';

export interface KubernetesSourceOptions {
  client: ApiClient;
  log: Logger;
  /** Namespaces to watch namespaced kinds in; null: all. */
  watchNamespaces: string[] | null;
  /** Read Secrets with these labels (`a=b,c`) instead of only the referenced ones. */
  secretLabelSelector: string | null;
  /** The gateway workload's namespace: Gateway `credentialName` Secrets are read there (default istio-system). */
  gatewayNamespace?: string;
  /** Changes arriving within this window become one reload (default 50 ms). */
  debounceMs?: number;
  /** How often missing optional APIs are looked for again (default 30 s). */
  rediscoverMs?: number;
  backoff?: BackoffOptions;
  pageSize?: number;
  /** More ConfigMaps watched by name, whatever `watchNamespaces` says (the ingress-nginx controller ConfigMap). */
  configMaps?: { namespace: string; name: string }[];
}

export class KubernetesSource implements ConfigSource {
  readonly description: string;
  readonly #opts: KubernetesSourceOptions;
  /** Config reflectors by `kind|namespace` (namespace `*`: all). */
  readonly #reflectors = new Map<string, Reflector>();
  /** Referenced-Secret reflectors by `namespace/name`. */
  readonly #secretReflectors = new Map<string, Reflector>();
  /** Referenced-ConfigMap reflectors by `namespace/name` (BackendTLSPolicy CA certificates). */
  readonly #configMapReflectors = new Map<string, Reflector>();
  readonly #missing = new Set<WatchedResource>();
  readonly #listeners = new Set<() => void>();
  readonly #sleeper = new Sleeper();
  #started: Promise<void> | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #rediscover: NodeJS.Timeout | null = null;
  #closed = false;
  /** A change arrived since the last load began (so a watcher registered late still hears of it). */
  #dirty = false;

  constructor(opts: KubernetesSourceOptions) {
    this.#opts = opts;
    this.description = `kubernetes:${opts.client.server}`;
  }

  /** Discover the APIs and start every reflector (idempotent; `load` calls it). */
  start(): Promise<void> {
    this.#started ??= this.#discoverAll();
    return this.#started;
  }

  async load(): Promise<LoadedConfig> {
    await this.start();
    this.#dirty = false;
    // Referenced Secrets depend on Ingresses and Gateways: wait until a pass starts no new reflector.
    for (;;) {
      await Promise.all([...this.#allReflectors()].map((r) => r.synced));
      const secrets = this.#reconcileSecrets();
      const configMaps = this.#reconcileConfigMaps();
      if (!secrets && !configMaps) break;
    }
    const objects: KubeObject[] = [];
    for (const r of this.#allReflectors()) for (const o of r.items()) objects.push(o);
    return { objects, diagnostics: [] };
  }

  watch(onChange: () => void): { close(): void } {
    this.#listeners.add(onChange);
    if (this.#dirty) this.#changed();
    return { close: () => this.#listeners.delete(onChange) };
  }

  /** The current copy of one object (for Events: its uid), if watched. */
  lookup(kind: string, namespace: string, name: string): KubeObject | undefined {
    for (const [key, r] of this.#reflectors) if (key.startsWith(`${kind}|`) && r.get(namespace, name)) return r.get(namespace, name);
    for (const r of this.#secretReflectors.values()) if (r.get(namespace, name)?.kind === kind) return r.get(namespace, name);
    if (kind === 'ConfigMap') for (const r of this.#configMapReflectors.values()) if (r.get(namespace, name)) return r.get(namespace, name);
    return undefined;
  }

  /** The current copy of one object of `kind` from API group `group` (Gateway API and Istio share kind names). */
  lookupInGroup(group: string, kind: string, namespace: string, name: string): KubeObject | undefined {
    for (const [key, r] of this.#reflectors) {
      if (!key.startsWith(`${kind}|`)) continue;
      const o = r.get(namespace, name);
      if (o && o.apiVersion.startsWith(`${group}/`)) return o;
    }
    return undefined;
  }

  /** The current copy of every object of one kind. */
  items(kind: string): KubeObject[] {
    const out: KubeObject[] = [];
    for (const [key, r] of this.#reflectors) if (key.startsWith(`${kind}|`)) for (const o of r.items()) out.push(o);
    for (const r of this.#secretReflectors.values()) for (const o of r.items()) if (o.kind === kind) out.push(o);
    if (kind === 'ConfigMap') for (const r of this.#configMapReflectors.values()) for (const o of r.items()) out.push(o);
    return out;
  }

  /** Every reflector, for tests and the benchmark (counters, resourceVersions). */
  reflectors(): Reflector[] {
    return [...this.#allReflectors()];
  }

  close(): void {
    this.#closed = true;
    this.#sleeper.wake();
    if (this.#debounce) clearTimeout(this.#debounce);
    if (this.#rediscover) clearInterval(this.#rediscover);
    for (const r of this.#allReflectors()) r.stop();
    this.#listeners.clear();
  }

  *#allReflectors(): IterableIterator<Reflector> {
    yield* this.#reflectors.values();
    yield* this.#secretReflectors.values();
    yield* this.#configMapReflectors.values();
  }

  /** Discovery until it answers (the first load waits for it), then the reflectors. */
  async #discoverAll(): Promise<void> {
    const backoff = new Backoff(this.#opts.backoff);
    for (const r of WATCHED) {
      if (r.builtin) {
        this.#startKind(r, r.versions[0]);
        continue;
      }
      for (;;) {
        try {
          const version = await discoverVersion(this.#opts.client, r);
          if (version) this.#startKind(r, version);
          else this.#markMissing(r);
          break;
        } catch (e) {
          if (this.#closed) return;
          this.#opts.log.warn('API discovery failed; retrying', { kind: r.kind, error: (e as Error).message });
          await this.#sleeper.sleep(backoff.next());
        }
      }
    }
    if (this.#opts.secretLabelSelector !== null) this.#startKind(SECRETS, 'v1', this.#opts.secretLabelSelector);
    // Istio's MeshConfig, by name, whatever `watchNamespaces` says: it is one named object that
    // configures the whole gateway (extension providers, access logging, gateway topology).
    const mesh = this.#reflector(CONFIGMAPS, 'v1', MESH_CONFIG_NAMESPACE, { fieldSelector: `metadata.name=${MESH_CONFIG_NAME}` });
    this.#reflectors.set(`ConfigMap|${MESH_CONFIG_NAMESPACE}`, mesh);
    mesh.start();
    for (const c of this.#opts.configMaps ?? []) {
      const key = `ConfigMap|${c.namespace}/${c.name}`;
      if (this.#reflectors.has(key)) continue;
      const r = this.#reflector(CONFIGMAPS, 'v1', c.namespace, { fieldSelector: `metadata.name=${c.name}` });
      this.#reflectors.set(key, r);
      r.start();
    }
  }

  #markMissing(r: WatchedResource): void {
    this.#opts.log.warn(`${r.kind} (${r.group}) is not served by the API server; it is treated as empty and looked for again periodically`, { versions: r.versions });
    this.#missing.add(r);
    this.#rediscover ??= setInterval(() => void this.#retryMissing(), this.#opts.rediscoverMs ?? 30_000);
    this.#rediscover.unref();
  }

  #retrying = false;

  async #retryMissing(): Promise<void> {
    // One pass at a time: with many missing APIs a pass outlasts the interval, and two passes would
    // start two reflectors for one kind.
    if (this.#retrying) return;
    this.#retrying = true;
    try {
      await this.#retryMissingOnce();
    } finally {
      this.#retrying = false;
    }
  }

  async #retryMissingOnce(): Promise<void> {
    for (const r of [...this.#missing]) {
      const version = await discoverVersion(this.#opts.client, r).catch(() => null);
      if (!version || this.#closed) continue;
      this.#missing.delete(r);
      this.#opts.log.info(`${r.kind} is now served; watching it`, { apiVersion: apiVersionOf(r.group, version) });
      this.#startKind(r, version);
    }
    if (this.#missing.size === 0 && this.#rediscover) {
      clearInterval(this.#rediscover);
      this.#rediscover = null;
    }
  }

  #startKind(r: WatchedResource, version: string, labelSelector?: string): void {
    const namespaces: (string | null)[] = r.namespaced && this.#opts.watchNamespaces ? this.#opts.watchNamespaces : [null];
    for (const ns of namespaces) {
      const reflector = this.#reflector(r, version, ns, { labelSelector });
      // Gateway API's Gateway and Istio's share a kind name: keep both reflectors (lookups by kind see both).
      this.#reflectors.set(`${r.kind}|${ns ?? '*'}${r.group === GATEWAY_API_GROUP ? `|${r.group}` : ''}`, reflector);
      reflector.start();
    }
  }

  #reflector(r: WatchedResource, version: string, namespace: string | null, selectors: { fieldSelector?: string; labelSelector?: string }): Reflector {
    return new Reflector({
      client: this.#opts.client,
      path: collectionPath(r, version, namespace),
      apiVersion: apiVersionOf(r.group, version),
      kind: r.kind,
      namespaced: r.namespaced,
      ...selectors,
      pageSize: this.#opts.pageSize,
      backoff: this.#opts.backoff,
      log: this.#opts.log.child({ kind: r.kind, namespace: namespace ?? '*' }),
      onChange: () => this.#changed(),
    });
  }

  /** Start reflectors for newly referenced Secrets, stop those no longer referenced; true if any started. */
  #reconcileSecrets(): boolean {
    if (this.#opts.secretLabelSelector !== null || this.#closed) return false;
    const sources = ['Ingress', 'Gateway', 'DestinationRule'].flatMap((kind) => [...this.#reflectors].filter(([k]) => k.startsWith(`${kind}|`)).flatMap(([, r]) => [...r.items()]));
    const watched = this.#opts.watchNamespaces ? new Set(this.#opts.watchNamespaces) : null;
    const gatewayNs = this.#opts.gatewayNamespace ?? 'istio-system';
    // The gateway's own namespace is read even when not watched: its credentials live there.
    const wanted = new Set(referencedSecrets(sources, gatewayNs).filter((ref) => !watched || watched.has(ref.split('/')[0]) || ref.split('/')[0] === gatewayNs));
    // ConfigMaps ingress-nginx settings name (custom-headers; the controller ConfigMap's add-headers
    // and proxy-set-headers), keyed `ConfigMap:ns/name` in the same map of reference reflectors.
    const controller = this.#opts.configMaps?.[0];
    const cmSources = [...sources, ...[...this.#reflectors].filter(([k]) => k.startsWith('ConfigMap|')).flatMap(([, r]) => [...r.items()])];
    for (const ref of referencedConfigMaps(cmSources, controller ? `${controller.namespace}/${controller.name}` : null)) wanted.add(`ConfigMap:${ref}`);
    let started = false;
    for (const ref of wanted) {
      if (this.#secretReflectors.has(ref)) continue;
      const isConfigMap = ref.startsWith('ConfigMap:');
      const [ns, name] = (isConfigMap ? ref.slice('ConfigMap:'.length) : ref).split('/');
      const reflector = this.#reflector(isConfigMap ? CONFIGMAPS : SECRETS, 'v1', ns, { fieldSelector: `metadata.name=${name}` });
      this.#secretReflectors.set(ref, reflector);
      reflector.start();
      started = true;
    }
    for (const [ref, r] of this.#secretReflectors) {
      if (wanted.has(ref)) continue;
      r.stop();
      this.#secretReflectors.delete(ref);
    }
    return started;
  }

  /** Same for the ConfigMaps BackendTLSPolicies name (by name, in the policy's namespace); true if any started. */
  #reconcileConfigMaps(): boolean {
    if (this.#closed) return false;
    const policies = [...this.#reflectors].filter(([k]) => k.startsWith('BackendTLSPolicy|')).flatMap(([, r]) => [...r.items()]);
    const watched = this.#opts.watchNamespaces ? new Set(this.#opts.watchNamespaces) : null;
    const wanted = new Set(referencedCaConfigMaps(policies).filter((ref) => !watched || watched.has(ref.split('/')[0])));
    let started = false;
    for (const ref of wanted) {
      if (this.#configMapReflectors.has(ref)) continue;
      const [ns, name] = ref.split('/');
      const reflector = this.#reflector(CONFIGMAPS, 'v1', ns, { fieldSelector: `metadata.name=${name}` });
      this.#configMapReflectors.set(ref, reflector);
      reflector.start();
      started = true;
    }
    for (const [ref, r] of this.#configMapReflectors) {
      if (wanted.has(ref)) continue;
      r.stop();
      this.#configMapReflectors.delete(ref);
    }
    return started;
  }

  /** A reflector changed: one notification per debounce window (the first event opens it). */
  #changed(): void {
    this.#dirty = true;
    if (this.#debounce || this.#closed) return;
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      this.#reconcileSecrets();
      this.#reconcileConfigMaps();
      for (const l of this.#listeners) l();
    }, this.#opts.debounceMs ?? 50);
  }
}
