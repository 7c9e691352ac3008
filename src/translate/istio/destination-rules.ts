/**
 * DestinationRules: the one rule a proxy (the gateway, or a sidecar) uses for a host, as Istio picks
 * it (pilot/pkg/model/push_context.go `setDestinationRules` / `destinationRule`, sidecar.go
 * `SidecarScope.DestinationRule`, destination_rule.go `mergeDestinationRule`). PURE.
 *
 * Index (per translation). Rules are ordered as Istio orders them: those with a `workloadSelector`
 * first, then by creation time, name, namespace. A rule with a `workloadSelector` is private to its
 * namespace whatever its `exportTo` says. Each rule goes into
 *  - its namespace's local pool when `exportTo` is empty, or has `*`, `.` or its own namespace;
 *  - its namespace's exported pool unless it is private only (`exportTo` exactly `.` or its own
 *    namespace, or empty while MeshConfig `defaultDestinationRuleExportTo` is `["."]`);
 *  - a private root-namespace rule (`istio-system`, MeshConfig `rootNamespace`) also into the root's
 *    private pool.
 * Within a pool, rules for one host are merged in that order (Istio's enhanced merge, the default):
 * a rule joins an earlier entry whose `exportTo` is the same set (or a superset of a non-empty one)
 * and whose selector agrees (both none, or equal labels); joining adds its subsets whose names are
 * new and its top-level `trafficPolicy` when the entry has none (no deep merge: the earlier rule's
 * policy wins whole); otherwise it starts an entry of its own.
 *
 * Lookup for a proxy in namespace P, of a service of namespace S, for host H:
 *  1. P's local pool (the root's private pool when P is the root namespace);
 *  2. else S's exported pool, entries whose `exportTo` is empty, `*` or names P;
 *  3. else the root namespace's exported pool, the same way.
 * In each pool the exact host wins, else the most specific wildcard covering H (`*.shop.svc.cluster.local`
 * before `*.local` before `*`). The first pool with rules for H decides, even when none of them then
 * applies. Among its entries: the first whose selector (in P) selects the proxy's labels, else the last
 * without a selector.
 *
 * A rule for a host a proxy looks up but not used for it gets a diagnostic naming why (`#explain`). The policy itself (load balancer, connection pool, outlier detection, port-level
 * settings) is resolved per cluster by `traffic-policy.ts`.
 */
import type { LbPolicy } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { arr, isObj, obj, str, strMap, type Obj } from '../../lib/unknown.js';
import { matchesLabels } from '../backends.js';
import { readMeshConfig, rootNamespaceOf } from '../mesh-config.js';
import type { TranslateContext } from '../types.js';
import { istioObjects, resolveServiceHost } from './objects.js';

export interface Subset {
  name: string;
  labels: Record<string, string>;
  trafficPolicy: Obj | null;
}

export interface MergedDestinationRule {
  /** The DestinationRules merged, in Istio's order (the first one's top-level policy wins). */
  rules: KubeObject[];
  trafficPolicy: Obj | null;
  subsets: Map<string, Subset>;
}

/**
 * meshgate's default when no DestinationRule says otherwise. Istio's own default is LEAST_REQUEST;
 * meshgate uses ROUND_ROBIN for every API (the same Service reached through an Ingress and a
 * VirtualService is one cluster, and must not change balancing with who registered it first).
 */
export const DEFAULT_LB_POLICY: LbPolicy = 'ROUND_ROBIN';

export { DEFAULT_ROOT_NAMESPACE } from '../mesh-config.js';

/** The proxy a lookup is for: its namespace (Istio's ConfigNamespace) and its workload labels. */
export interface DestinationRuleProxy {
  namespace: string;
  labels: Record<string, string>;
  /** Who asks, for diagnostics (sidecar views report info only); default `gateway`. */
  kind?: 'gateway' | 'sidecar';
}

/** One consolidated rule of a pool (Istio ConsolidatedDestRule). */
interface Entry {
  /** The rules merged into it, the first one the entry's own. */
  rules: KubeObject[];
  exportTo: Set<string>;
  /** `workloadSelector.matchLabels` of the entry's own rule; null without a selector. */
  selector: Record<string, string> | null;
  trafficPolicy: Obj | null;
  subsets: Map<string, Subset>;
}

/** Rules of one pool by host: exact hosts, and wildcard patterns (`*`, `*.suffix`). */
interface Pool {
  specific: Map<string, Entry[]>;
  wildcard: Map<string, Entry[]>;
}

function newPool(): Pool {
  return { specific: new Map(), wildcard: new Map() };
}

/** Istio's order: rules with a workloadSelector first, then creation time, name, namespace. */
function compareRules(a: KubeObject, b: KubeObject): number {
  const sa = selectorOf(a) !== null ? 0 : 1;
  const sb = selectorOf(b) !== null ? 0 : 1;
  if (sa !== sb) return sa - sb;
  const cmp = (x: string | number, y: string | number): number => (x < y ? -1 : x > y ? 1 : 0);
  return cmp(a.metadata.creationTimestamp ?? '', b.metadata.creationTimestamp ?? '') || cmp(a.origin.order, b.origin.order) || cmp(a.metadata.name, b.metadata.name) || cmp(a.metadata.namespace, b.metadata.namespace);
}

/** `workloadSelector.matchLabels`, or null when the rule has no `workloadSelector` (an empty one selects every workload). */
function selectorOf(dr: KubeObject): Record<string, string> | null {
  const ws = obj(dr.body.spec).workloadSelector;
  return isObj(ws) ? strMap(ws.matchLabels) : null;
}

function sameLabels(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a);
  return ka.length === Object.keys(b).length && ka.every((k) => b[k] === a[k]);
}

function setEquals(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

function supersetOf(a: Set<string>, b: Set<string>): boolean {
  return [...b].every((x) => a.has(x));
}

function subsetsOf(dr: KubeObject): Subset[] {
  const out: Subset[] = [];
  for (const s of arr(obj(dr.body.spec).subsets)) {
    const so = obj(s);
    const name = str(so.name);
    if (!name) continue;
    out.push({ name, labels: strMap(so.labels), trafficPolicy: isObj(so.trafficPolicy) ? so.trafficPolicy : null });
  }
  return out;
}

function newEntry(dr: KubeObject, exportTo: Set<string>): Entry {
  const subsets = new Map<string, Subset>();
  for (const s of subsetsOf(dr)) if (!subsets.has(s.name)) subsets.set(s.name, s);
  const tp = obj(dr.body.spec).trafficPolicy;
  return { rules: [dr], exportTo, selector: selectorOf(dr), trafficPolicy: isObj(tp) ? tp : null, subsets };
}

/** Istio's mergeDestinationRule (enhanced merge, the default) into `pool` under `key`. */
function mergeInto(pool: Pool, key: string, dr: KubeObject, exportTo: Set<string>): void {
  const byHost = key.startsWith('*') ? pool.wildcard : pool.specific;
  const list = byHost.get(key);
  if (list === undefined) return void byHost.set(key, [newEntry(dr, exportTo)]);
  const selector = selectorOf(dr);
  let appendSeparately = true;
  for (const e of list) {
    if (setEquals(exportTo, e.exportTo)) appendSeparately = false;
    else if (e.exportTo.size > 0 && supersetOf(exportTo, e.exportTo)) appendSeparately = true;
    else {
      appendSeparately = true;
      continue;
    }
    const bothWith = selector !== null && e.selector !== null;
    if (bothWith && !sameLabels(selector, e.selector!)) {
      appendSeparately = true;
      continue;
    }
    if ((selector === null && e.selector === null) || bothWith) appendSeparately = false;
    // Joining: new subsets are added, the top-level policy only fills an entry that has none.
    e.rules = [...e.rules, dr];
    const merged = new Map(e.subsets);
    for (const s of subsetsOf(dr)) if (!merged.has(s.name)) merged.set(s.name, s);
    e.subsets = merged;
    const tp = obj(dr.body.spec).trafficPolicy;
    if (e.trafficPolicy === null && isObj(tp)) e.trafficPolicy = tp;
  }
  if (appendSeparately) list.push(newEntry(dr, exportTo));
}

/** Istio host.MoreSpecific between two wildcard patterns: longer first, then alphabetical. */
function moreSpecific(a: string, b: string): boolean {
  return a.length === b.length ? a < b : a.length > b.length;
}

/** Istio MostSpecificHostMatch: the pool's entries for `host` (exact, else the most specific wildcard). */
function mostSpecific(pool: Pool | undefined, host: string): { key: string; entries: Entry[] } | null {
  if (pool === undefined) return null;
  if (host.startsWith('*')) {
    const own = pool.wildcard.get(host);
    if (own !== undefined) return { key: host, entries: own };
  } else {
    const exact = pool.specific.get(host);
    if (exact !== undefined) return { key: host, entries: exact };
  }
  const needle = host.startsWith('*') ? host.slice(1) : host;
  let best: string | null = null;
  for (const pattern of pool.wildcard.keys()) {
    if (!needle.endsWith(pattern.slice(1))) continue;
    if (best === null || moreSpecific(pattern, best)) best = pattern;
  }
  return best === null ? null : { key: best, entries: pool.wildcard.get(best)! };
}

/** Where the winning entry was found, for diagnostics. */
type Step = 'proxy' | 'service' | 'root';

interface Choice {
  entry: Entry | null;
  step: Step;
  namespace: string;
  key: string;
}

/** Diagnostics already reported per translation. */
const reported = new WeakMap<TranslateContext, Set<string>>();

const indexes = new WeakMap<TranslateContext, DestinationRuleIndex>();

/**
 * The index for this translation's proxy: the gateway (`gatewayNamespace`, `gatewayLabels`), or the
 * sidecar the context stands for (translate/sidecar/ sets both to the proxy's). One per translation.
 */
export function destinationRulesFor(ctx: TranslateContext, resources: ResourceSet, kind: 'gateway' | 'sidecar' = 'gateway'): DestinationRuleIndex {
  let index = indexes.get(ctx);
  if (index === undefined) indexes.set(ctx, (index = new DestinationRuleIndex(ctx, resources, { namespace: ctx.options.gatewayNamespace, labels: ctx.options.gatewayLabels, kind })));
  return index;
}

export class DestinationRuleIndex {
  readonly rootNamespace: string;
  readonly #local = new Map<string, Pool>();
  readonly #exported = new Map<string, Pool>();
  readonly #rootPrivate = newPool();
  /** Every rule by each exact host key it is indexed under, for diagnostics. */
  readonly #rulesByHost = new Map<string, { dr: KubeObject; exportTo: Set<string>; local: boolean; exported: boolean }[]>();
  readonly #cache = new Map<string, MergedDestinationRule | null>();

  constructor(
    private readonly ctx: TranslateContext,
    resources: ResourceSet,
    readonly proxy: DestinationRuleProxy,
  ) {
    const mesh = readMeshConfig(ctx, resources)?.mesh ?? {};
    this.rootNamespace = rootNamespaceOf(ctx, resources);
    // MeshConfig defaultDestinationRuleExportTo: only `.` and `*` are honoured (Istio).
    const defaultPrivate = arr(mesh.defaultDestinationRuleExportTo).map(str).includes('.');
    for (const dr of [...istioObjects(resources, 'DestinationRule')].sort(compareRules)) {
      const host = (str(obj(dr.body.spec).host) ?? '').toLowerCase().replace(/\.$/, '');
      if (host === '') continue;
      const ns = dr.metadata.namespace;
      const keys = [host];
      // A Service named short (`reviews`, `reviews.shop`, `reviews.shop.svc`) is its FQDN too.
      const svc = host.includes('*') ? null : resolveServiceHost(host, ns);
      if (svc !== null && svc.fqdn !== host) keys.unshift(svc.fqdn);
      const exportTo = selectorOf(dr) !== null ? new Set(['.']) : new Set(arr(obj(dr.body.spec).exportTo).map((x) => str(x) ?? ''));
      const local = exportTo.size === 0 || exportTo.has('*') || exportTo.has('.') || exportTo.has(ns);
      const privateOnly = (exportTo.size === 0 && defaultPrivate) || (exportTo.size === 1 && (exportTo.has('.') || exportTo.has(ns)));
      for (const key of keys) {
        if (local) mergeInto(this.#pool(this.#local, ns), key, dr, exportTo);
        if (!privateOnly) mergeInto(this.#pool(this.#exported, ns), key, dr, exportTo);
        else if (ns === this.rootNamespace) mergeInto(this.#rootPrivate, key, dr, exportTo);
      }
      for (const key of keys) {
        if (key.includes('*')) continue;
        let list = this.#rulesByHost.get(key);
        if (list === undefined) this.#rulesByHost.set(key, (list = []));
        list.push({ dr, exportTo, local, exported: !privateOnly });
      }
    }
  }

  #pool(pools: Map<string, Pool>, ns: string): Pool {
    let p = pools.get(ns);
    if (p === undefined) pools.set(ns, (p = newPool()));
    return p;
  }

  /**
   * The merged DestinationRule this proxy uses for `fqdn` (a Service's FQDN or a ServiceEntry host),
   * a service of `serviceNamespace` (null when unknown), or null when none applies.
   */
  lookup(fqdn: string, serviceNamespace: string | null): MergedDestinationRule | null {
    const host = fqdn.toLowerCase();
    const cacheKey = `${host}|${serviceNamespace ?? ''}`;
    const cached = this.#cache.get(cacheKey);
    if (cached !== undefined) return cached;
    const choice = this.#choose(host, serviceNamespace);
    const out = choice?.entry ? { rules: choice.entry.rules, trafficPolicy: choice.entry.trafficPolicy, subsets: choice.entry.subsets } : null;
    this.#cache.set(cacheKey, out);
    this.#explain(host, serviceNamespace, choice);
    return out;
  }

  #choose(host: string, serviceNamespace: string | null): Choice | null {
    const p = this.proxy.namespace;
    // 1. The proxy's own namespace (for the root namespace: its private rules only, so that public
    //    catch-all rules there do not hide the service namespace's).
    const own = mostSpecific(p === this.rootNamespace ? this.#rootPrivate : this.#local.get(p), host);
    if (own !== null) return { entry: this.#select(own.entries), step: 'proxy', namespace: p, key: own.key };
    // 2. The service's namespace, 3. the root namespace: rules exported to the proxy's namespace.
    const exported = (ns: string, step: Step): Choice | null => {
      const m = mostSpecific(this.#exported.get(ns), host);
      if (m === null) return null;
      const visible = m.entries.filter((e) => e.exportTo.size === 0 || e.exportTo.has('*') || e.exportTo.has(p));
      return visible.length > 0 ? { entry: this.#select(visible), step, namespace: ns, key: m.key } : null;
    };
    return (serviceNamespace !== null && serviceNamespace !== '' ? exported(serviceNamespace, 'service') : null) ?? exported(this.rootNamespace, 'root');
  }

  /** SidecarScope.DestinationRule: the first entry whose selector selects the proxy, else the last without one. */
  #select(entries: Entry[]): Entry | null {
    let catchAll: Entry | null = null;
    for (const e of entries) {
      if (e.selector === null) catchAll = e;
      else if (e.rules[0].metadata.namespace === this.proxy.namespace && matchesLabels(this.proxy.labels, e.selector)) return e;
    }
    return catchAll;
  }

  /**
   * Explains each rule for exactly `host` that this proxy does not use for it (wildcard rules are
   * catch-alls meant to be overridden, and a workloadSelector not selecting the proxy is meant for
   * other workloads: neither is reported). A warning where the rule looks meant for this proxy but is
   * hidden from it (exportTo, a workloadSelector selecting it from another namespace, rules of one
   * host that Istio keeps apart); info where Istio's precedence puts another rule first or the rule's
   * namespace is off the lookup path. Sidecars get info only (their views report counts).
   */
  #explain(host: string, serviceNamespace: string | null, choice: Choice | null): void {
    let seen = reported.get(this.ctx);
    if (seen === undefined) reported.set(this.ctx, (seen = new Set()));
    const used = new Set(choice?.entry?.rules ?? []);
    const p = this.proxy.namespace;
    const who = `the ${this.proxy.kind ?? 'gateway'} in namespace "${p}"`;
    for (const r of this.#rulesByHost.get(host) ?? []) {
      if (used.has(r.dr)) continue;
      const id = `${r.dr.metadata.namespace}/${r.dr.metadata.name}|${host}`;
      if (seen.has(id)) continue;
      const ns = r.dr.metadata.namespace;
      const sel = selectorOf(r.dr);
      const exportedToProxy = r.exported && (r.exportTo.size === 0 || r.exportTo.has('*') || r.exportTo.has(p));
      let severity: 'warning' | 'info' = 'warning';
      let field = 'spec.host';
      let why: string;
      if (sel !== null) {
        if (ns === p || !matchesLabels(this.proxy.labels, sel)) continue;
        field = 'spec.workloadSelector';
        why = `its workloadSelector selects ${who}, but a DestinationRule with a workloadSelector applies only to workloads of its own namespace ("${ns}")`;
      } else if (ns === p && !r.local) {
        field = 'spec.exportTo';
        why = `its exportTo ${JSON.stringify([...r.exportTo])} leaves out its own namespace, where ${who} runs`;
      } else if (ns !== p && ns !== serviceNamespace && ns !== this.rootNamespace) {
        severity = 'info';
        why = `Istio looks in the proxy's namespace ("${p}"), then the service's (${serviceNamespace ? `"${serviceNamespace}"` : 'unknown'}), then the root namespace ("${this.rootNamespace}"); a rule in "${ns}" applies to proxies of "${ns}" only`;
      } else if (ns !== p && !exportedToProxy) {
        field = 'spec.exportTo';
        why = r.exportTo.size === 0 ? `it is private to namespace "${ns}" (MeshConfig defaultDestinationRuleExportTo)` : `its exportTo ${JSON.stringify([...r.exportTo])} does not export it to namespace "${p}"`;
      } else if (choice?.entry && choice.namespace === ns && choice.key === host && choice.entry.selector !== null) {
        severity = 'info';
        why = `DestinationRule ${this.#name(choice.entry)}, whose workloadSelector selects ${who}, is used instead`;
      } else if (choice?.entry && choice.namespace === ns && choice.key === host) {
        why = `DestinationRule ${this.#name(choice.entry)} of the same namespace and host is used instead: Istio merges rules of one host only when their exportTo sets match, and otherwise uses the last one`;
      } else if (choice !== null) {
        severity = 'info';
        why = choice.entry === null ? `${this.#describe(choice)} decides for this host, and none of its rules selects ${who}` : `${this.#describe(choice)} comes first`;
        if (ns === p && p === this.rootNamespace && choice.step !== 'proxy') why += ` (a proxy in the root namespace uses the root's exported rules after the service namespace's)`;
      } else continue;
      seen.add(id);
      if (this.proxy.kind === 'sidecar') severity = 'info';
      this.ctx.report(severity, 'MG_DESTINATION_RULE_IGNORED', r.dr, field, `not used for ${host} by ${who}: ${why} (Istio's DestinationRule lookup)`);
    }
  }

  #name(e: Entry): string {
    return `${e.rules[0].metadata.namespace}/${e.rules[0].metadata.name}`;
  }

  #describe(c: Choice): string {
    const where = c.step === 'proxy' ? "the proxy's namespace" : c.step === 'service' ? "the service's namespace" : 'the root namespace';
    return c.entry ? `DestinationRule ${this.#name(c.entry)} (${where}, host "${c.key}")` : `${where} ("${c.namespace}", host "${c.key}")`;
  }
}
