/**
 * The DNS proxy's lookup table (Istio's BuildAlternateHosts and lookupHost), as a decision table:
 * name and type asked -> found or not, and the answers.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DnsLookupTable } from './table.js';
import { TYPE_A, TYPE_AAAA, TYPE_CNAME } from './wire.js';
import type { DnsHost } from '../../ir/sidecar.js';

const HOSTS: DnsHost[] = [
  { host: 'reviews.default.svc.cluster.local', addresses: ['10.96.0.20', 'fd00::20'], kube: { name: 'reviews', namespace: 'default' } },
  { host: 'ratings.shop.svc.cluster.local', addresses: ['10.96.0.30'], kube: { name: 'ratings', namespace: 'shop' } },
  { host: 'remote.default.svc.other.domain', addresses: ['10.97.0.1'], kube: { name: 'remote', namespace: 'default' } },
  { host: 'api.example.com', addresses: ['240.240.0.1'], kube: null },
  { host: '*.wild.example.com', addresses: ['240.240.0.2'], kube: null },
  { host: '*.b.wild.example.com', addresses: ['192.0.2.3', 'fd00::3'], kube: null },
  { host: 'exact.wild.example.com', addresses: ['192.0.2.4'], kube: null },
];
const table = new DnsLookupTable(HOSTS, { namespace: 'default', serviceDomain: 'svc.cluster.local', search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'] });

function show(type: number, name: string): string {
  const r = table.lookup(type, name);
  if (!r.found) return 'upstream';
  return r.answers.map((a) => (a.type === TYPE_CNAME ? `CNAME ${a.name}->${a.target}` : `${a.name}=${[...a.address].join(a.type === TYPE_A ? '.' : ',')}`)).join(' ') || 'nodata';
}

const cases: { desc: string; type: number; name: string; want: string }[] = [
  { desc: 'FQDN', type: TYPE_A, name: 'reviews.default.svc.cluster.local', want: 'reviews.default.svc.cluster.local=10.96.0.20' },
  { desc: 'FQDN with the final dot and other case: the answer in lowercase (Istio)', type: TYPE_A, name: 'Reviews.Default.svc.cluster.local.', want: 'reviews.default.svc.cluster.local=10.96.0.20' },
  { desc: 'short name in other case: the answer in lowercase', type: TYPE_A, name: 'REVIEWS', want: 'reviews=10.96.0.20' },
  { desc: 'first search domain appended, mixed case: the CNAME owner and the address in lowercase', type: TYPE_A, name: 'API.Example.com.Default.svc.cluster.local.', want: 'CNAME api.example.com.default.svc.cluster.local->api.example.com api.example.com=240.240.0.1' },
  { desc: 'short name in the proxy namespace', type: TYPE_A, name: 'reviews', want: 'reviews=10.96.0.20' },
  { desc: 'name.ns', type: TYPE_A, name: 'reviews.default', want: 'reviews.default=10.96.0.20' },
  { desc: 'name.ns.svc', type: TYPE_A, name: 'reviews.default.svc', want: 'reviews.default.svc=10.96.0.20' },
  { desc: 'AAAA', type: TYPE_AAAA, name: 'reviews', want: 'reviews=253,0,0,0,0,0,0,0,0,0,0,0,0,0,0,32' },
  { desc: 'short name of another namespace is not ours', type: TYPE_A, name: 'ratings', want: 'upstream' },
  { desc: 'name.ns of another namespace', type: TYPE_A, name: 'ratings.shop', want: 'ratings.shop=10.96.0.30' },
  { desc: 'known name, no address of the family: no data, not NXDOMAIN', type: TYPE_AAAA, name: 'ratings.shop.svc.cluster.local', want: 'nodata' },
  { desc: 'another cluster domain: FQDN only', type: TYPE_A, name: 'remote.default', want: 'upstream' },
  { desc: 'another cluster domain FQDN', type: TYPE_A, name: 'remote.default.svc.other.domain', want: 'remote.default.svc.other.domain=10.97.0.1' },
  { desc: 'first search domain appended: CNAME then the address', type: TYPE_A, name: 'api.example.com.default.svc.cluster.local', want: 'CNAME api.example.com.default.svc.cluster.local->api.example.com api.example.com=240.240.0.1' },
  { desc: 'second search domain appended: upstream (only the first is expanded, as Istio)', type: TYPE_A, name: 'api.example.com.svc.cluster.local', want: 'upstream' },
  { desc: 'short name with search domain is the FQDN itself', type: TYPE_A, name: 'reviews.default.svc.cluster.local', want: 'reviews.default.svc.cluster.local=10.96.0.20' },
  { desc: 'wildcard entry covers a subdomain, answered under the name asked', type: TYPE_A, name: 'a.c.wild.example.com', want: 'a.c.wild.example.com=240.240.0.2' },
  { desc: 'wildcard: one label under it', type: TYPE_A, name: 'www.wild.example.com', want: 'www.wild.example.com=240.240.0.2' },
  { desc: 'wildcard: the name asked answers, lowercased (Istio)', type: TYPE_A, name: 'WWW.Wild.example.com.', want: 'www.wild.example.com=240.240.0.2' },
  { desc: 'wildcard: an exact name under it wins', type: TYPE_A, name: 'exact.wild.example.com', want: 'exact.wild.example.com=192.0.2.4' },
  { desc: 'wildcard: the closest wildcard wins', type: TYPE_A, name: 'x.y.b.wild.example.com', want: 'x.y.b.wild.example.com=192.0.2.3' },
  { desc: 'wildcard: its own suffix is not covered', type: TYPE_A, name: 'wild.example.com', want: 'upstream' },
  { desc: 'wildcard: the closest one\'s suffix falls to the next wildcard', type: TYPE_A, name: 'b.wild.example.com', want: 'b.wild.example.com=240.240.0.2' },
  { desc: 'wildcard: the name itself, as written', type: TYPE_A, name: '*.wild.example.com', want: '*.wild.example.com=240.240.0.2' },
  { desc: 'wildcard: AAAA of a wildcard with IPv6', type: TYPE_AAAA, name: 'a.b.wild.example.com', want: 'a.b.wild.example.com=253,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3' },
  { desc: 'wildcard: AAAA of a wildcard without IPv6: no data', type: TYPE_AAAA, name: 'a.wild.example.com', want: 'nodata' },
  { desc: 'wildcard: a suffix-lookalike label is not a subdomain', type: TYPE_A, name: 'notwild.example.com', want: 'upstream' },
  {
    desc: 'wildcard with the first search domain: Istio\'s chained answer, a CNAME to the wildcard and its addresses under it',
    type: TYPE_A,
    name: 'a.b.wild.example.com.default.svc.cluster.local',
    want: 'CNAME a.b.wild.example.com.default.svc.cluster.local->*.b.wild.example.com *.b.wild.example.com=192.0.2.3',
  },
  { desc: 'wildcard with the first search domain: an exact name under it still wins', type: TYPE_A, name: 'exact.wild.example.com.default.svc.cluster.local', want: 'CNAME exact.wild.example.com.default.svc.cluster.local->exact.wild.example.com exact.wild.example.com=192.0.2.4' },
  { desc: 'first search domain, no address of the family: no data, without the CNAME (Istio)', type: TYPE_AAAA, name: 'api.example.com.default.svc.cluster.local', want: 'nodata' },
  { desc: 'wildcard with the first search domain, no address of the family: no data', type: TYPE_AAAA, name: 'a.wild.example.com.default.svc.cluster.local', want: 'nodata' },
  { desc: 'wildcard with the first search domain, AAAA: the CNAME and the AAAA under the wildcard', type: TYPE_AAAA, name: 'a.b.wild.example.com.default.svc.cluster.local', want: 'CNAME a.b.wild.example.com.default.svc.cluster.local->*.b.wild.example.com *.b.wild.example.com=253,0,0,0,0,0,0,0,0,0,0,0,0,0,0,3' },
  { desc: 'wildcard with the second search domain: upstream', type: TYPE_A, name: 'a.wild.example.com.svc.cluster.local', want: 'upstream' },
  { desc: 'MX for a known name: upstream', type: 15, name: 'api.example.com', want: 'upstream' },
  { desc: 'MX under a wildcard: upstream', type: 15, name: 'a.wild.example.com', want: 'upstream' },
  { desc: 'unknown name', type: TYPE_A, name: 'www.google.com', want: 'upstream' },
];
for (const c of cases) {
  test(`lookup: ${c.desc}`, () => assert.equal(show(c.type, c.name), c.want));
}

test('lookup: a table without wildcards sends every miss upstream; one with them only the names under none', () => {
  const plain = new DnsLookupTable([{ host: 'api.example.com', addresses: ['240.240.0.1'], kube: null }], { namespace: 'default', serviceDomain: 'svc.cluster.local', search: [] });
  assert.deepEqual(plain.lookup(TYPE_A, 'a.api.example.com'), { found: false });
  assert.deepEqual(plain.lookup(TYPE_A, ''), { found: false });
  assert.deepEqual(table.lookup(TYPE_A, ''), { found: false });
  assert.deepEqual(table.lookup(TYPE_A, 'com'), { found: false });
  assert.deepEqual(table.lookup(TYPE_A, 'a.example.org'), { found: false });
});

/**
 * Istio's lookupHost (pkg/dns/client/dns.go) written out linearly, for ServiceEntry hosts and A
 * queries: every host and its first-search-domain name in one set, the exact name first, then
 * `*.` + each suffix after a label, the closest first; a CNAME when the name found is an expanded
 * one; addresses under the name asked for a wildcard, under the CNAME target after a CNAME; no
 * address of the family asked: no answer at all.
 */
function istioLookup(hosts: DnsHost[], search: string, qtype: number, q: string): string {
  const all = new Set<string>();
  const names = new Map<string, string[]>();
  const cname = new Map<string, string>();
  for (const h of hosts) {
    all.add(h.host);
    names.set(h.host, h.addresses.filter((a) => a.includes(':') === (qtype === TYPE_AAAA)));
    if (!`${h.host}.`.endsWith(`${search}.`)) {
      cname.set(`${h.host}.${search}`, h.host);
      all.add(`${h.host}.${search}`);
    }
  }
  // ServeDNS: strings.ToLower(req.Question[0].Name) before lookupHost.
  q = q.toLowerCase();
  let hostname = q;
  let wildcard = false;
  let found = all.has(q);
  if (!found) {
    const labels = q.split('.');
    for (let idx = 0; idx < labels.length && !found; idx++) {
      const qhost = `*.${labels.slice(idx + 1).join('.')}`;
      if (all.has(qhost)) [found, wildcard, hostname] = [true, true, qhost];
    }
  }
  if (!found) return 'upstream';
  const out: string[] = [];
  const target = cname.get(hostname);
  if (target !== undefined) hostname = target;
  const ips = names.get(hostname) ?? [];
  if (ips.length === 0) return 'nodata';
  if (target !== undefined) out.push(`CNAME ${q}->${target}`);
  const owner = wildcard && target === undefined ? q : hostname;
  out.push(...[...ips].sort().map((ip) => `${owner}=${ip}`));
  return out.join(' ');
}

test('lookup: the indexed table (exact map, then wildcards by suffix) answers as Istio\'s linear lookupHost', () => {
  const label = fc.constantFrom('a', 'b', 'c');
  const anyCase = fc.constantFrom('a', 'B', 'c', 'C');
  const name = fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => l.join('.'));
  const host = fc.tuple(fc.boolean(), name).map(([w, n]) => (w ? `*.${n}` : n));
  // The search domain's labels are not the hosts': no host is another's search-domain name.
  const query = fc.tuple(fc.array(anyCase, { minLength: 1, maxLength: 5 }), fc.constantFrom('', '.s.t', '.t', '.s', '.S.t')).map(([l, suffix]) => `${l.join('.')}${suffix}`);
  fc.assert(
    fc.property(fc.uniqueArray(host, { maxLength: 8 }), fc.array(query, { minLength: 1, maxLength: 20 }), (names, queries) => {
      // IPv4 and IPv6, IPv4 only or IPv6 only, by position.
      const hosts: DnsHost[] = names.map((h, i) => ({ host: h, addresses: [...(i % 3 !== 2 ? [`10.0.0.${i + 1}`, `10.1.0.${i + 1}`] : []), ...(i % 3 !== 1 ? [`fd00::${i + 1}`] : [])], kube: null }));
      const t = new DnsLookupTable(hosts, { namespace: 'default', serviceDomain: 'svc.cluster.local', search: ['s.t', 'x.y'] });
      for (const [k, q] of queries.entries()) {
        const qtype = k % 2 === 0 ? TYPE_A : TYPE_AAAA;
        const r = t.lookup(qtype, q);
        const records = r.found ? r.answers : [];
        const show = (a: (typeof records)[number]): string => (a.type === TYPE_CNAME ? `CNAME ${a.name}->${a.target}` : `${a.name}=${a.type === TYPE_A ? [...a.address].join('.') : `fd00::${a.address[15]}`}`);
        const got = !r.found ? 'upstream' : records.length === 0 ? 'nodata' : [...records.filter((a) => a.type === TYPE_CNAME).map(show), ...records.filter((a) => a.type !== TYPE_CNAME).map(show).sort()].join(' ');
        assert.equal(got, istioLookup(hosts, 's.t', qtype, q), `${qtype === TYPE_A ? 'A' : 'AAAA'} ${q} over ${JSON.stringify(hosts)}`);
      }
    }),
    { numRuns: 300, seed: 91 },
  );
});
