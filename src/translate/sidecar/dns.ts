/**
 * DNS proxying for sidecars (Istio's "smart DNS proxy"): whether a proxy has it, the VIPs
 * auto-allocated to ServiceEntries without addresses, and the name table it answers from. PURE.
 *
 * - **On or off, per proxy.** ProxyConfig `proxyMetadata` (MeshConfig `defaultConfig.proxyMetadata`,
 *   overridden key by key by the pod's `proxy.istio.io/config` annotation, as Istio merges them):
 *   `ISTIO_META_DNS_CAPTURE` turns DNS capture on, `ISTIO_META_DNS_AUTO_ALLOCATE` auto-allocation.
 *   Values are Go booleans (`true`, `1`, `t`, `TRUE` ...). Auto-allocated VIPs are used only by a
 *   proxy with both (Istio's nodeUsesAutoallocatedIPs).
 * - **Auto-allocation** (Istio's autoAllocateIPs in pilot/pkg/serviceregistry/serviceentry): every
 *   ServiceEntry host of the mesh that has no `addresses`, is not a wildcard and whose resolution is
 *   not NONE gets one slot of 65024 by FNV-1a (32 bit) of `namespace/host`, collisions resolved by
 *   double hashing; slot order numbers the addresses `240.240.<x/255>.<x%255>`, skipping `.0`. The
 *   same over all ServiceEntries of the mesh, in key order, whichever proxy asks: a host's VIP is
 *   identical in every proxy's view (routing) and in its DNS answers. The IPv6 address is
 *   `2001:2::f0f0:<third><fourth>` with the fourth octet as two hex digits (Istio writes it without
 *   padding, so two VIPs can collide there; the padded form equals Istio's whenever the fourth octet
 *   is 16 or more). A proxy gets the IPv4 VIP when it has an IPv4 pod address (or none is known), the
 *   IPv6 one when it has an IPv6 pod address.
 * - **Name table** (Istio's BuildNameTable, pkg/dns/server): built in outbound.ts from the service
 *   ports the proxy sees; see `NameTableBuilder`.
 */
import { parse } from 'yaml';
import type { DnsHost } from '../../ir/sidecar.js';
import { arr, obj, str, type Obj } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { istioObjects } from '../istio/objects.js';
import { isIpAddress } from '../istio/hosts.js';
import { readMeshConfig } from '../mesh-config.js';
import { DEFAULT_TRANSLATE_OPTIONS, TranslateContext } from '../types.js';

const PROXY_CONFIG_ANNOTATION = 'proxy.istio.io/config';
export const DNS_CAPTURE_META = 'ISTIO_META_DNS_CAPTURE';
export const DNS_AUTO_ALLOCATE_META = 'ISTIO_META_DNS_AUTO_ALLOCATE';

export interface DnsProxyConfig {
  capture: boolean;
  autoAllocate: boolean;
}

/** Go's strconv.ParseBool, which Istio's StringBool metadata uses; null when not a boolean. */
function goBool(v: unknown): boolean | null {
  const s = typeof v === 'boolean' ? String(v) : str(v);
  if (s === undefined) return null;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(s)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(s)) return false;
  return null;
}

/** The proxy's DNS settings from MeshConfig and its pod's `proxy.istio.io/config` annotation. */
export function dnsProxyConfig(ctx: TranslateContext, resources: ResourceSet, pod: KubeObject | null): DnsProxyConfig {
  const mesh = readMeshConfig(ctx, resources);
  const sources: { meta: Obj; from: KubeObject; field: string }[] = [];
  if (mesh !== null) sources.push({ meta: obj(obj(mesh.mesh.defaultConfig).proxyMetadata), from: mesh.from, field: 'data.mesh: defaultConfig.proxyMetadata' });
  const annotation = pod?.metadata.annotations[PROXY_CONFIG_ANNOTATION];
  if (pod !== null && annotation !== undefined) {
    try {
      sources.push({ meta: obj(obj(parse(annotation)).proxyMetadata), from: pod, field: `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]: proxyMetadata` });
    } catch (e) {
      ctx.report('error', 'MG_INVALID_FIELD', pod, `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]`, `not valid ProxyConfig YAML (${(e as Error).message.split('\n')[0]}); MeshConfig's proxyMetadata applies`);
    }
  }
  const read = (key: string): boolean => {
    let value = false;
    for (const s of sources) {
      const raw = s.meta[key];
      if (raw === undefined || raw === null) continue;
      const b = goBool(raw);
      if (b === null) ctx.report('error', 'MG_INVALID_FIELD', s.from, `${s.field}.${key}`, `${JSON.stringify(raw)} is not a boolean (true or false); it is ignored`);
      else value = b;
    }
    return value;
  };
  return { capture: read(DNS_CAPTURE_META), autoAllocate: read(DNS_AUTO_ALLOCATE_META) };
}

/** MeshConfig's own `ISTIO_META_DNS_CAPTURE` (no pod): what injection gives pods without a `proxy.istio.io/config` override. */
export function meshDnsCapture(resources: ResourceSet): boolean {
  return dnsProxyConfig(new TranslateContext({ ...DEFAULT_TRANSLATE_OPTIONS }), resources, null).capture;
}

/** Slots of the allocation (Istio's maxIPs, 256*254) and the prime of its second hash. */
const MAX_IPS = 256 * 254;
const PRIME = 65011;

function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (const b of Buffer.from(text, 'utf8')) {
    h ^= b;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** ServiceEntry hosts eligible for a VIP, as `namespace/host` keys. */
function eligibleKeys(resources: ResourceSet): string[] {
  const keys = new Set<string>();
  for (const se of istioObjects(resources, 'ServiceEntry')) {
    const spec = obj(se.body.spec);
    if (arr(spec.addresses).some((a) => (str(a) ?? '') !== '')) continue;
    // The default resolution is NONE: the original destination is kept, no VIP can stand for it.
    const resolution = str(spec.resolution) ?? 'NONE';
    if (resolution === 'NONE') continue;
    for (const h of arr(spec.hosts)) {
      const host = (str(h) ?? '').toLowerCase().replace(/\.$/, '');
      if (host === '' || host.includes('*')) continue;
      keys.add(`${se.metadata.namespace}/${host}`);
    }
  }
  return [...keys].sort();
}

export interface AutoAllocated {
  v4: string;
  v6: string;
}

const allocationCache = new WeakMap<ResourceSet, Map<string, AutoAllocated>>();

/** `namespace/host` → its auto-allocated VIPs, over every ServiceEntry of the mesh (cached per ResourceSet). */
export function autoAllocatedAddresses(resources: ResourceSet): Map<string, AutoAllocated> {
  const cached = allocationCache.get(resources);
  if (cached !== undefined) return cached;
  const slots: (string | undefined)[] = new Array<string | undefined>(MAX_IPS);
  // The probe below reaches the slots 0..MAX_IPS-2 only: at most that many hosts get a VIP.
  for (const key of eligibleKeys(resources).slice(0, MAX_IPS - 1)) {
    const s = fnv1a32(key);
    let slot = s % MAX_IPS;
    if (slots[slot] !== undefined) {
      const step = PRIME - (s % PRIME);
      // Go's uint32 arithmetic: the sum wraps at 2^32. Bounded: a probe sequence that cycles
      // without a free slot falls back to the first free one.
      let found = -1;
      for (let i = 1; i <= 2 * MAX_IPS && found < 0; i++) {
        const probe = ((s + i * step) % 0x1_0000_0000) % (MAX_IPS - 1);
        if (slots[probe] === undefined) found = probe;
      }
      if (found < 0) found = slots.findIndex((v, k) => v === undefined && k < MAX_IPS - 1);
      slot = found;
    }
    slots[slot] = key;
  }
  const out = new Map<string, AutoAllocated>();
  let x = 0;
  for (const key of slots) {
    x++;
    if (key === undefined) continue;
    if (x % 255 === 0) x++;
    const third = Math.floor(x / 255);
    const fourth = x % 255;
    out.set(key, { v4: `240.240.${third}.${fourth}`, v6: third === 0 ? `2001:2::f0f0:${fourth.toString(16)}` : `2001:2::f0f0:${third.toString(16)}${fourth.toString(16).padStart(2, '0')}` });
  }
  allocationCache.set(resources, out);
  return out;
}

/** The auto-allocated VIPs a proxy uses for `namespace/host`: by the families of its pod addresses. */
export function proxyAutoVips(a: AutoAllocated | undefined, podIps: string[]): string[] {
  if (a === undefined) return [];
  const v4 = podIps.length === 0 || podIps.some((ip) => !ip.includes(':'));
  const v6 = podIps.some((ip) => ip.includes(':'));
  return [...(v4 ? [a.v4] : []), ...(v6 ? [a.v6] : [])];
}

/**
 * Istio's BuildNameTable over the service ports a proxy sees (in outbound.ts's order: Services,
 * then ServiceEntries):
 *  - a host with VIPs (cluster IPs, entry `addresses`, auto-allocated VIPs) answers them (CIDRs are
 *    left out);
 *  - without one, only a passthrough service (headless Service, entry with resolution NONE) is in
 *    the table, answering its endpoint IPs (ready ones, or all with `publishNotReadyAddresses`);
 *  - anything else (an entry with resolution DNS and no VIP) is not: its queries go upstream;
 *  - wildcard hosts (`*.example.com`) by the same rules, as written: with `addresses` those, with
 *    resolution NONE and endpoints their IPs, else none (never auto-allocated; one served per
 *    connection, NONE or DYNAMIC_DNS without addresses, has nothing to answer); the proxy answers
 *    every name under the wildcard (mesh/dns/table.ts);
 *  - ExternalName Services are never in it (Istio: address 0.0.0.0, resolution Alias or DNS, not
 *    passthrough), alias or not: their names go upstream, where kube-dns answers the CNAME;
 *  - a host seen twice: a Kubernetes Service wins over an entry; two entries merge their addresses.
 */
export class NameTableBuilder {
  readonly #hosts = new Map<string, DnsHost>();

  add(host: string, kube: { name: string; namespace: string } | null, vips: string[], passthrough: boolean, endpointIps: () => string[]): void {
    let addresses = vips.filter(isIpAddress);
    if (vips.length === 0 && passthrough) addresses = endpointIps().filter(isIpAddress);
    addresses = [...new Set(addresses)];
    if (addresses.length === 0) return;
    const prev = this.#hosts.get(host);
    if (prev === undefined) this.#hosts.set(host, { host, addresses, kube });
    else if (prev.kube === null && kube !== null) this.#hosts.set(host, { host, addresses, kube });
    else if (prev.kube === null) prev.addresses = [...new Set([...prev.addresses, ...addresses])];
  }

  /**
   * A headless Service's pods by name (Kubernetes' `<hostname>.<service>.<ns>.svc.<domain>`, for pods
   * with `hostname` and `subdomain`: StatefulSets), from the EndpointSlice endpoints' `hostname`,
   * ready ones (all with `publishNotReadyAddresses`), as Istio's name table has them.
   */
  addHeadlessPods(resources: ResourceSet, svc: KubeObject, serviceHost: string): void {
    const ns = svc.metadata.namespace;
    const name = svc.metadata.name;
    const publishNotReady = obj(svc.body.spec).publishNotReadyAddresses === true;
    const suffix = serviceHost.slice(name.length + 1); // `<ns>.svc.<domain>`
    const byHost = new Map<string, string[]>();
    for (const slice of resources.endpointSlicesOf(ns, name)) {
      for (const e of arr(slice.body.endpoints)) {
        const eo = obj(e);
        const hostname = str(eo.hostname);
        if (hostname === undefined || !/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(hostname)) continue;
        if (obj(eo.conditions).ready === false && !publishNotReady) continue;
        const ips = arr(eo.addresses).map(str).filter((a): a is string => a !== undefined && isIpAddress(a));
        byHost.set(hostname, [...(byHost.get(hostname) ?? []), ...ips]);
      }
    }
    for (const [hostname, ips] of byHost) {
      const host = `${hostname}.${name}.${suffix}`;
      if (ips.length === 0 || this.#hosts.has(host)) continue;
      this.#hosts.set(host, { host, addresses: [...new Set(ips)], kube: { name: `${hostname}.${name}`, namespace: ns } });
    }
  }

  hosts(): DnsHost[] {
    return [...this.#hosts.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0));
  }
}
