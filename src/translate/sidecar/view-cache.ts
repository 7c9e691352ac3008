/**
 * Sidecar views computed once per group of proxies that see the same mesh (the config push's
 * per-change cost; issue 16 "Config push").
 *
 * `translateSidecar` depends on the proxy through: its namespace and service account, its Pod's
 * labels (workload selectors, the Sidecar resource that scopes it, sourceLabels), the Pod's container
 * ports (inbound ports), its workload name and the Pod's own service account (a warning), the trust
 * domain, whether it has a pod IP and of which family, and (DNS proxying) its `proxy.istio.io/config`
 * annotation and the families of all its IPs. Pods of one Deployment agree on all of
 * that; they differ only in their pod name and IPs, which appear in the view in exactly two places:
 * `sidecar.proxy` and the endpoint address of the `inbound|<port>||` clusters. So:
 *
 * - the first proxy of a group has its view computed by `translateSidecar`; the view is made a
 *   template (those two places replaced by placeholders) and serialized once;
 * - every proxy of the group gets the template with its own `sidecar.proxy` and pod IP filled in,
 *   both as an IRSnapshot and as the JSON the push sends (string substitution in the template's
 *   JSON, not a new serialization);
 * - the version is the hash of the template (computed once per group) and of the proxy's own part:
 *   stable whichever proxy of the group came first, and unchanged when nothing the proxy sees
 *   changed, so the push sends nothing new to it;
 * - a new ResourceSet (each reload makes one) or new options start an empty cache.
 *
 * A proxy whose Pod is not found is translated directly (its view names what it claims).
 * The result equals `translateSidecar`'s but for `version` (bench/sidecar-views.ts checks it).
 */
import type { Diagnostic } from '../../lib/diagnostic.js';
import { sha256Hex } from '../../lib/hash.js';
import { arr, obj } from '../../lib/unknown.js';
import type { IRSnapshot } from '../../ir/types.js';
import type { SidecarProxy } from '../../ir/sidecar.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import type { TranslateOptions } from '../types.js';
import { versionText } from '../version.js';
import { translateSidecar, type SidecarProxyMeta } from './index.js';
import { findProxyPod, podIps, podServiceAccount, workloadName } from './workloads.js';

/** A view with its serialized form (what the push writes). */
export interface SidecarViewResult {
  ir: IRSnapshot;
  diagnostics: Diagnostic[];
  /** `JSON.stringify(ir)`, as bytes. */
  json: Buffer;
}

// Placeholders: strings no real view holds (they are replaced in the template's JSON).
const VERSION_MARK = '\u0001mg-view-version\u0001';
const PROXY_MARK = '\u0001mg-view-proxy\u0001';
const IP_MARK = '\u0001mg-view-pod-ip\u0001';
const VERSION_JSON = JSON.stringify(VERSION_MARK);
const PROXY_JSON = JSON.stringify(PROXY_MARK);
const IP_JSON = JSON.stringify(IP_MARK);

interface Group {
  /** The view with the placeholders (sidecar.proxy is PROXY_MARK, inbound endpoint addresses IP_MARK). */
  template: IRSnapshot;
  /** Its JSON (UTF-8) cut at the placeholders: what comes before the version; then the pieces between the pod IPs, the proxy, and after it. */
  json: { head: Buffer; pieces: Buffer[] };
  /** Indexes of `template.clusters` holding an IP_MARK endpoint. */
  inbound: number[];
  /** Hash of the template: the shared part of every member's version. */
  sharedVersion: string;
  labels: Record<string, string>;
  workload: string;
  /** The pod the diagnostics were made for (they are renamed for the other members). */
  podName: string;
  diagnostics: Diagnostic[];
}

export class SidecarViewCache {
  #resources: ResourceSet | null = null;
  #options: TranslateOptions | null = null;
  readonly #groups = new Map<string, Group>();
  /** Views computed by translateSidecar (groups and uncached proxies) and views served from a group. */
  readonly stats = { computed: 0, served: 0 };

  /** The proxy's view (as translateSidecar's, the version aside), with its JSON. */
  translate(resources: ResourceSet, proxy: SidecarProxyMeta, options: TranslateOptions): SidecarViewResult {
    if (resources !== this.#resources || options !== this.#options) {
      this.#resources = resources;
      this.#options = options;
      this.#groups.clear();
    }
    const pod = findProxyPod(resources, proxy.namespace, proxy.podName, proxy.podIps);
    if (pod === null) {
      this.stats.computed++;
      const out = translateSidecar(resources, proxy, options);
      return { ...out, json: Buffer.from(JSON.stringify(out.ir)) };
    }
    const podIp = proxy.podIps[0] ?? podIps(pod)[0] ?? null;
    const key = groupKey(proxy, pod, podIp);
    let group = this.#groups.get(key);
    if (group === undefined) {
      this.stats.computed++;
      const out = translateSidecar(resources, proxy, options);
      const made = makeGroup(out.ir, out.diagnostics, podIp, pod.metadata.name);
      if (made === null) return { ...out, json: Buffer.from(JSON.stringify(out.ir)) };
      this.#groups.set(key, (group = made));
    }
    this.stats.served++;
    return personalize(group, proxy, pod, podIp);
  }
}

/** What the view depends on besides the ResourceSet (see the module comment). */
function groupKey(proxy: SidecarProxyMeta, pod: KubeObject, podIp: string | null): string {
  const labels = Object.entries(pod.metadata.labels).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const ports = arr(obj(pod.body.spec).containers).map((c) => obj(c).ports ?? null);
  const family = podIp === null ? 'none' : podIp.includes(':') ? '6' : '4';
  // DNS proxying: the pod's ProxyConfig (proxyMetadata) and the families of all its IPs (auto-allocated VIPs).
  const proxyConfig = pod.metadata.annotations['proxy.istio.io/config'] ?? null;
  const families = [...new Set(proxy.podIps.map((ip) => (ip.includes(':') ? '6' : '4')))].sort().join('');
  return JSON.stringify([proxy.namespace, proxy.serviceAccount, proxy.trustDomain, labels, ports, workloadName(pod), podServiceAccount(pod), family, proxyConfig, families]);
}

/** The template of `ir`, or null when the pod IP shows up where the template does not expect it (then nothing is shared). */
function makeGroup(ir: IRSnapshot, diagnostics: Diagnostic[], podIp: string | null, podName: string): Group | null {
  const view = ir.sidecar;
  if (view === undefined) return null;
  const inbound: number[] = [];
  const clusters = ir.clusters.map((c, i) => {
    if (!c.name.startsWith('inbound|') || podIp === null || !c.endpoints.some((e) => e.address === podIp)) return c;
    inbound.push(i);
    return { ...c, endpoints: c.endpoints.map((e) => (e.address === podIp ? { ...e, address: IP_MARK } : e)) };
  });
  const template: IRSnapshot = { ...ir, version: VERSION_MARK, clusters, sidecar: { ...view, proxy: PROXY_MARK as unknown as SidecarProxy } };
  const text = JSON.stringify(template);
  const v = text.indexOf(VERSION_JSON);
  const p = text.indexOf(PROXY_JSON);
  // The template JSON is `…version…(pod IPs)…proxy…`: the translator puts version first and sidecar last.
  if (v === -1 || p === -1 || p < v || text.indexOf(VERSION_JSON, v + 1) !== -1 || text.indexOf(PROXY_JSON, p + 1) !== -1) return null;
  const middle = text.slice(v + VERSION_JSON.length, p);
  const afterProxy = text.slice(p + PROXY_JSON.length);
  if (afterProxy.includes(IP_JSON)) return null;
  const parts: Partial<IRSnapshot> = { ...template };
  delete parts.version;
  return {
    template,
    json: { head: Buffer.from(text.slice(0, v)), pieces: [...middle.split(IP_JSON), afterProxy].map((x) => Buffer.from(x)) },
    inbound,
    sharedVersion: sha256Hex(versionText(parts), 16),
    labels: view.proxy.labels,
    workload: view.proxy.workload,
    podName,
    diagnostics,
  };
}

function personalize(g: Group, proxy: SidecarProxyMeta, pod: KubeObject, podIp: string | null): SidecarViewResult {
  // The same object translateSidecar builds for the proxy, key for key.
  const me: SidecarProxy = {
    namespace: proxy.namespace,
    serviceAccount: proxy.serviceAccount,
    podName: proxy.podName !== '' ? proxy.podName : pod.metadata.name,
    podIps: [...proxy.podIps],
    labels: g.labels,
    spiffeId: `spiffe://${proxy.trustDomain}/ns/${proxy.namespace}/sa/${proxy.serviceAccount}`,
    workload: g.workload,
  };
  const meJson = JSON.stringify(me);
  const ipJson = JSON.stringify(podIp);
  const version = sha256Hex(`${g.sharedVersion}\0${meJson}\0${ipJson}`, 16);
  const t = g.template;
  const clusters = g.inbound.length === 0 ? t.clusters : t.clusters.slice();
  for (const i of g.inbound) clusters[i] = { ...clusters[i], endpoints: clusters[i].endpoints.map((e) => (e.address === IP_MARK ? { ...e, address: podIp as string } : e)) };
  const ir: IRSnapshot = { ...t, version, clusters, sidecar: { ...t.sidecar!, proxy: me } };
  // head, version, piece 0, (pod IP, piece i)..., proxy, last piece: copies of the template's bytes, no serialization.
  const pieces = g.json.pieces;
  const ipBytes = Buffer.from(ipJson);
  const parts: Buffer[] = [g.json.head, Buffer.from(JSON.stringify(version)), pieces[0]];
  for (let i = 1; i < pieces.length - 1; i++) parts.push(ipBytes, pieces[i]);
  parts.push(Buffer.from(meJson), pieces[pieces.length - 1]);
  const diagnostics = pod.metadata.name === g.podName ? g.diagnostics : g.diagnostics.map((d) => renamePod(d, pod, g.podName));
  return { ir, diagnostics, json: Buffer.concat(parts) };
}

/** A diagnostic made for another pod of the group, as it reads for `pod`. */
function renamePod(d: Diagnostic, pod: KubeObject, from: string): Diagnostic {
  const o = d.object;
  if (o === null || o.kind !== 'Pod' || o.namespace !== pod.metadata.namespace || o.name !== from) return d;
  return { ...d, object: { ...o, name: pod.metadata.name }, message: d.message.split(from).join(pod.metadata.name) };
}
