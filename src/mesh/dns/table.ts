/**
 * The DNS proxy's lookup table: the view's name table (`SidecarView.dns.hosts`, Istio's NameTable)
 * expanded once per view into every name a query may carry, as Istio's agent does
 * (pkg/dns/client: BuildAlternateHosts, buildDNSAnswers, lookupHost):
 *
 * - a ServiceEntry host answers as written (`api.example.com.`);
 * - a Kubernetes Service in the proxy's cluster domain also answers `name.ns.`, `name.ns.svc.` and,
 *   in the proxy's own namespace, `name.`;
 * - each of those names followed by the first search domain of /etc/resolv.conf
 *   (`api.example.com.default.svc.cluster.local.`: what a resolver asks first for a name with fewer
 *   dots than `ndots`) answers a CNAME to the name, with its addresses, so the search ends at the
 *   first query instead of going upstream once per search domain;
 * - a wildcard host (`*.example.com`, a ServiceEntry's) answers every name under it, at any depth
 *   (`a.b.example.com`, not `example.com`), under the name asked; an exact name wins, then the
 *   closest wildcard. Its first-search-domain name (`*.example.com.<search>`) is a wildcard too, so
 *   `a.example.com.<search>` gets Istio's chained answer: a CNAME to `*.example.com` and the addresses
 *   under `*.example.com` (pkg/dns/client lookupHost, what its tests expect; glibc and c-ares take it);
 * - a known name asked for a family it has no address of gets NOERROR with no answer (not even the
 *   CNAME of a search-domain name, as Istio), never
 *   NXDOMAIN (a client asking A and AAAA in parallel would take NXDOMAIN for the whole name,
 *   istio/istio#31250); a query of another type, or for an unknown name, goes upstream;
 * - answers have TTL 30 s (Istio's defaultTTLInSeconds) and rotate between queries (DNS load
 *   balancing over a headless Service's endpoints, as kube-dns does).
 */
import type { DnsHost } from '../../ir/sidecar.js';
import { addressBytes, TYPE_A, TYPE_AAAA, TYPE_CNAME, type DnsAnswer } from './wire.js';

/** Istio's defaultTTLInSeconds. */
export const DNS_TTL_S = 30;

export interface LookupOptions {
  /** The proxy's namespace (short names `name.` resolve in it). */
  namespace: string;
  /** The cluster's service domain, `svc.cluster.local` (Istio's proxy domain without the namespace). */
  serviceDomain: string;
  /** /etc/resolv.conf `search` domains (the first one gets the CNAME shortcut). */
  search: string[];
}

interface Entry {
  /** CNAME target (a name of the table), or null for a name holding addresses itself. */
  cname: string | null;
  v4: Uint8Array[];
  v6: Uint8Array[];
}

export type LookupResult = { found: false } | { found: true; answers: DnsAnswer[] };

/** Lowercase, without the final dot. */
export function canonicalName(name: string): string {
  const n = name.endsWith('.') ? name.slice(0, -1) : name;
  return n.replace(/[A-Z]+/g, (m) => m.toLowerCase());
}

export class DnsLookupTable {
  readonly #names = new Map<string, Entry>();
  /** The wildcard names of `#names` (`*.example.com`) by their suffix (`.example.com`): looked at only when the exact name misses. */
  readonly #wildcards = new Map<string, Entry>();
  #turn = 0;

  constructor(hosts: DnsHost[], o: LookupOptions) {
    const domain = canonicalName(o.serviceDomain);
    const firstSearch = o.search.length > 0 ? canonicalName(o.search[0]) : null;
    for (const h of hosts) {
      const v4: Uint8Array[] = [];
      const v6: Uint8Array[] = [];
      for (const a of h.addresses) {
        const b = addressBytes(a);
        if (b === null) continue;
        (b.length === 4 ? v4 : v6).push(b);
      }
      if (v4.length === 0 && v6.length === 0) continue;
      const alt = new Set<string>([canonicalName(h.host)]);
      // Only for services in the proxy's cluster domain (another domain's name.ns could clash).
      if (h.kube !== null && domain !== '' && alt.values().next().value!.endsWith(`.${domain}`)) {
        const { name, namespace } = h.kube;
        alt.add(`${name}.${namespace}`);
        if (namespace === o.namespace) alt.add(name);
        alt.add(`${name}.${namespace}.${domain.split('.')[0]}`);
      }
      for (const n of alt) {
        this.#names.set(n, { cname: null, v4, v6 });
        if (firstSearch !== null && !n.endsWith(`.${firstSearch}`) && n !== firstSearch) {
          const expanded = `${n}.${firstSearch}`;
          if (!alt.has(expanded) && !this.#names.has(expanded)) this.#names.set(expanded, { cname: n, v4: [], v6: [] });
        }
      }
    }
    for (const [n, e] of this.#names) if (n.startsWith('*.')) this.#wildcards.set(n.slice(1), e);
  }

  get size(): number {
    return this.#names.size;
  }

  /**
   * The answers for a query, or `found: false` when the question must go upstream. `qname` as sent;
   * the answer records are named in lowercase, as Istio's proxy names them (pkg/dns/client/dns.go:
   * ServeDNS lowercases the name before lookupHost, whose records and CNAME owners are lowercase),
   * while the question section keeps the client's case (the server copies it).
   */
  lookup(qtype: number, qname: string): LookupResult {
    if (qtype !== TYPE_A && qtype !== TYPE_AAAA) return { found: false };
    const name = canonicalName(qname);
    let entry = this.#names.get(name);
    if (entry === undefined && this.#wildcards.size > 0) {
      // `*.example.com` covers `a.b.example.com`: each suffix after a dot, the closest first.
      for (let dot = name.indexOf('.'); dot >= 0 && entry === undefined; dot = name.indexOf('.', dot + 1)) entry = this.#wildcards.get(name.slice(dot));
    }
    if (entry === undefined) return { found: false };
    const answers: DnsAnswer[] = [];
    // A wildcard's addresses answer under the name asked (lowercased).
    let owner = name;
    const cname = entry.cname;
    if (cname !== null) {
      owner = cname;
      entry = this.#names.get(cname)!;
    }
    const list = qtype === TYPE_A ? entry.v4 : entry.v6;
    // No address of the family: no data, the CNAME left out too (Istio's lookupHost).
    if (list.length === 0) return { found: true, answers };
    if (cname !== null) answers.push({ type: TYPE_CNAME, name, ttl: DNS_TTL_S, target: cname });
    const start = list.length > 1 ? this.#turn++ % list.length : 0;
    for (let i = 0; i < list.length; i++) {
      const address = list[(start + i) % list.length];
      answers.push(qtype === TYPE_A ? { type: TYPE_A, name: owner, ttl: DNS_TTL_S, address } : { type: TYPE_AAAA, name: owner, ttl: DNS_TTL_S, address });
    }
    return { found: true, answers };
  }
}
