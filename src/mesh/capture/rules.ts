/**
 * Transparent traffic capture for a meshgate sidecar: the pure part.
 *
 * `meshgate capture` runs once per pod, as root in the pod's network namespace, the way Istio's
 * `istio-init` runs `istio-iptables`. It makes iptables rules (through `iptables-restore`, so
 * `iptables-save` shows them, as istio-iptables does) that send
 *   - outbound TCP of every uid but the proxy's to the outbound listener (15001),
 *   - inbound TCP to the inbound listener (15006),
 * with TPROXY, so the kernel does not rewrite the destination: the sidecar reads the original
 * destination as the accepted socket's local address (reference mesh.md §2.3, variant A, verified on
 * this machine kind). The listeners must be transparent (IP_TRANSPARENT, see transparent.ts).
 *
 * How a packet flows (table mangle; IPv6 is the same with ip6tables, ::1 and `local ::/0`):
 *   - outbound: OUTPUT marks the app's packets with the capture mark; the policy rule
 *     `fwmark MARK lookup TABLE` with `local 0.0.0.0/0 dev lo` in TABLE loops them through `lo`, where
 *     PREROUTING hands them to the outbound listener with TPROXY;
 *   - inbound: PREROUTING hands new connections arriving on any interface but `lo` to the inbound
 *     listener with TPROXY;
 *   - packets of connections a transparent socket already owns are marked and accepted (DIVERT, as
 *     Istio's TPROXY mode does), so they are routed locally.
 *
 * The proxy's own calls to its pod's address (a Service that picked this pod) go to the inbound
 * listener, as istio-iptables does; its inbound forwarding, from 127.0.0.6, does not.
 *
 * Never captured: loopback, the proxy's own traffic (by uid and gid: no capture loop), replies
 * (`--ctdir REPLY`: an inbound SYN-ACK has no full socket to match by owner, mesh.md §2.3), HBONE
 * (15008) inbound, and whatever the exclusions name.
 *
 * This module only computes text and argument lists; apply.ts runs them. Everything it makes is
 * named with CHAIN_PREFIX, so `capture --clean` can find and remove exactly that.
 */

/** Every chain meshgate capture makes starts with this; `--clean` removes every chain so named. */
export const CHAIN_PREFIX = 'MESHGATE_';

/** The chains, named after istio-iptables' (ISTIO_INBOUND, ISTIO_OUTPUT, ISTIO_DIVERT, ...). */
export const CHAINS = {
  prerouting: 'MESHGATE_PREROUTING',
  inbound: 'MESHGATE_INBOUND',
  tproxy: 'MESHGATE_TPROXY',
  divert: 'MESHGATE_DIVERT',
  output: 'MESHGATE_OUTPUT',
  redirect: 'MESHGATE_REDIRECT',
  hairpin: 'MESHGATE_HAIRPIN',
  /** nat: the app's DNS to the DNS proxy (Istio's ISTIO_OUTPUT_DNS). */
  dnsRedirect: 'MESHGATE_OUTPUT_DNS',
  /** raw: conntrack zones splitting app↔proxy from proxy↔resolver DNS flows (Istio's raw ISTIO_OUTPUT_DNS, ISTIO_INBOUND). */
  dnsZonesOut: 'MESHGATE_DNS_ZONES_OUT',
  dnsZonesIn: 'MESHGATE_DNS_ZONES_IN',
} as const;

/** A destination port or an inclusive range of ports. */
export interface PortRange {
  from: number;
  to: number;
}

export interface CaptureOptions {
  /** The proxy's uid: its traffic is never captured. Default 1337 (Istio's). */
  proxyUid: number;
  /** The proxy's gid, matched too (istio-iptables `-g`). Default: the uid. */
  proxyGid: number;
  /** The outbound listener's port (istio-iptables `-p`). Default 15001. */
  outboundPort: number;
  /** The inbound listener's port (istio-iptables `-z`). Default 15006. */
  inboundPort: number;
  /** Inbound ports captured: `'*'` for all, a list, or an empty list for none (`-b`). Default `'*'`. */
  inboundPorts: '*' | PortRange[];
  /** Inbound ports never captured (`-d`). 15008 (HBONE) is always excluded too. Default 15020,15021,15090. */
  excludeInboundPorts: PortRange[];
  /** Outbound destinations captured: `'*'` or CIDRs (`-i`). Default `'*'`. */
  includeOutboundCidrs: '*' | string[];
  /** Outbound destinations never captured (`-x`). */
  excludeOutboundCidrs: string[];
  /** Outbound ports captured whatever the destination address (`-q`). */
  includeOutboundPorts: PortRange[];
  /** Outbound ports never captured (`-o`). They win over every include. */
  excludeOutboundPorts: PortRange[];
  /** The firewall mark of captured packets and the policy-routing key. Default 1337 (0x539). */
  mark: number;
  /** The routing table holding `local 0.0.0.0/0 dev lo` (and `local ::/0`). Default 133 (Istio's INBOUND_TPROXY_ROUTE_TABLE). */
  routeTable: number;
  /**
   * IPv6 capture (ip6tables, `ip -6`): `on`, `off`, or `auto` (default): on when the namespace has a
   * global IPv6 address, so a dual-stack pod cannot bypass the sidecar over IPv6.
   */
  ipv6: 'auto' | 'on' | 'off';
  /**
   * DNS capture (istio-iptables `--redirect-dns`, what `ISTIO_META_DNS_CAPTURE` turns on): the app's
   * UDP and TCP port 53 to the DNS servers goes to the sidecar's DNS proxy (`dnsPort`), by nat OUTPUT
   * REDIRECT; the proxy's own queries (its uid and gid) go out untouched. Default off.
   */
  redirectDns: boolean;
  /** With `redirectDns`, port 53 to any address (istio-iptables `--capture-all-dns`); else only to `dnsServers`. */
  captureAllDns: boolean;
  /**
   * With `redirectDns` and not `captureAllDns`: the DNS servers whose traffic is captured (`--dns-servers`,
   * default the `nameserver`s of /etc/resolv.conf, as istio-iptables reads them). Other port-53
   * destinations (a local dnsmasq's upstream) are not captured, so a resolver chain cannot loop.
   */
  dnsServers: string[];
  /** The DNS proxy's port (Istio's 15053). */
  dnsPort: number;
}

/** An address family of the rules: 4 (iptables, `ip -4`) or 6 (ip6tables, `ip -6`). */
export type Family = 4 | 6;

export const DEFAULT_CAPTURE_OPTIONS: CaptureOptions = {
  proxyUid: 1337,
  proxyGid: 1337,
  outboundPort: 15001,
  inboundPort: 15006,
  inboundPorts: '*',
  excludeInboundPorts: [
    { from: 15020, to: 15020 },
    { from: 15021, to: 15021 },
    { from: 15090, to: 15090 },
  ],
  includeOutboundCidrs: '*',
  excludeOutboundCidrs: [],
  includeOutboundPorts: [],
  excludeOutboundPorts: [],
  mark: 1337,
  routeTable: 133,
  ipv6: 'auto',
  redirectDns: false,
  captureAllDns: false,
  dnsServers: [],
  dnsPort: 15053,
};

/** HBONE (Istio's mTLS tunnel port) is never captured inbound, as istio-iptables does. */
export const HBONE_PORT = 15008;

export class CaptureOptionError extends Error {}

/**
 * `15020,15021,15090-15099` (or `15090:15099`) → ranges. Empty text is the empty list. Throws
 * CaptureOptionError naming the flag.
 */
export function parsePortList(flag: string, text: string): PortRange[] {
  const out: PortRange[] = [];
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    const m = /^(\d{1,5})(?:[-:](\d{1,5}))?$/.exec(item);
    const from = m ? Number(m[1]) : NaN;
    const to = m ? Number(m[2] ?? m[1]) : NaN;
    if (!m || from < 1 || to > 65535 || from > to) throw new CaptureOptionError(`${flag}: "${item}" is not a port (1-65535) or a range A-B`);
    out.push({ from, to });
  }
  return out;
}

/** `'*'` or a port list (empty text: no inbound capture, as istio-iptables `-b ''`). */
export function parseInboundPorts(text: string): '*' | PortRange[] {
  return text.trim() === '*' ? '*' : parsePortList('--inbound-ports', text);
}

/** A list of IPv4 and IPv6 CIDRs (a bare address is /32 or /128), normalised to the network address. */
export function parseCidrList(flag: string, text: string): string[] {
  const out: string[] = [];
  for (const raw of text.split(',')) {
    const item = raw.trim();
    if (item === '') continue;
    out.push(normaliseCidr(flag, item));
  }
  return out;
}

/** `'*'` or a CIDR list, for `--include-outbound-cidrs`. */
export function parseIncludeCidrs(text: string): '*' | string[] {
  return text.trim() === '*' ? '*' : parseCidrList('--include-outbound-cidrs', text);
}

/** The family of a normalised CIDR. */
export function cidrFamily(cidr: string): Family {
  return cidr.includes(':') ? 6 : 4;
}

function normaliseCidr(flag: string, item: string): string {
  const slash = item.indexOf('/');
  const addr = slash < 0 ? item : item.slice(0, slash);
  const bitsText = slash < 0 ? undefined : item.slice(slash + 1);
  const v6 = addr.includes(':');
  const width = v6 ? 128 : 32;
  const value = v6 ? parseIpv6(addr) : parseIpv4(addr);
  const bits = bitsText === undefined ? width : /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
  if (value === undefined || !(bits >= 0 && bits <= width)) {
    throw new CaptureOptionError(`${flag}: "${item}" is not a CIDR such as 10.96.0.0/12 or fd00::/8`);
  }
  // ip(6)tables-save prints the network address (10.1.2.3/8 as 10.0.0.0/8, compressed IPv6):
  // normalise so the rules we print are the rules iptables shows.
  const total = BigInt(width);
  const mask = bits === 0 ? 0n : ((1n << total) - 1n) ^ ((1n << (total - BigInt(bits))) - 1n);
  const net = value & mask;
  return `${v6 ? formatIpv6(net) : formatIpv4(net)}/${bits}`;
}

function parseIpv4(a: string): bigint | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(a);
  if (!m) return undefined;
  const o = m.slice(1, 5).map(Number);
  if (o.some((x) => x > 255)) return undefined;
  return BigInt(((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0);
}

function formatIpv4(v: bigint): string {
  const n = Number(v);
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function parseIpv6(a: string): bigint | undefined {
  let text = a;
  // An embedded IPv4 tail (::ffff:10.0.0.1) becomes two hex groups.
  const v4 = /:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (v4) {
    const n = parseIpv4(v4[1]);
    if (n === undefined) return undefined;
    text = `${text.slice(0, -v4[1].length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
  }
  if (!/^[0-9a-fA-F:]+$/.test(text)) return undefined;
  const parts = text.split('::');
  if (parts.length > 2) return undefined;
  const groups = (x: string) => (x === '' ? [] : x.split(':'));
  const head = groups(parts[0]);
  const rest = parts.length === 2 ? groups(parts[1]) : [];
  const fill = 8 - head.length - rest.length;
  if (parts.length === 2 ? fill < 1 : fill !== 0) return undefined;
  const all = [...head, ...Array<string>(parts.length === 2 ? fill : 0).fill('0'), ...rest];
  if (all.some((g) => !/^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  let v = 0n;
  for (const g of all) v = (v << 16n) | BigInt(parseInt(g, 16));
  return v;
}

/** RFC 5952 text, as inet_ntop (and so ip6tables-save) prints it: the longest run of 2+ zero groups is `::`. */
function formatIpv6(v: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hexes = g.map((x) => x.toString(16));
  if (bestLen < 2) return hexes.join(':');
  return `${hexes.slice(0, best).join(':')}::${hexes.slice(best + bestLen).join(':')}`;
}

function portMatch(p: PortRange): string {
  return p.from === p.to ? `--dport ${p.from}` : `--dport ${p.from}:${p.to}`;
}

function hex(n: number): string {
  return `0x${n.toString(16)}`;
}

/** Checks the numeric options (uids, ports, mark, table) and throws CaptureOptionError naming the flag. */
export function validateCaptureOptions(o: CaptureOptions): void {
  const int = (flag: string, v: number, min: number, max: number) => {
    if (!Number.isInteger(v) || v < min || v > max) throw new CaptureOptionError(`${flag}: ${v} is not an integer in ${min}-${max}`);
  };
  int('--proxy-uid', o.proxyUid, 0, 0xfffffffe);
  int('--proxy-gid', o.proxyGid, 0, 0xfffffffe);
  int('--outbound-port', o.outboundPort, 1, 65535);
  int('--inbound-port', o.inboundPort, 1, 65535);
  int('--mark', o.mark, 1, 0xffffffff);
  // 253-255 are default, main and local; 0 is unspec.
  int('--route-table', o.routeTable, 1, 252);
  int('--dns-port', o.dnsPort, 1, 65535);
  if (o.redirectDns && (o.dnsPort === o.outboundPort || o.dnsPort === o.inboundPort)) throw new CaptureOptionError(`--dns-port ${o.dnsPort} is also a capture listener's port`);
  if (o.outboundPort === o.inboundPort) throw new CaptureOptionError(`--outbound-port and --inbound-port are both ${o.inboundPort}`);
  if (o.proxyUid === 0) throw new CaptureOptionError('--proxy-uid 0: root traffic would never be captured and the proxy must not run as root');
}

/**
 * The `iptables-restore --noflush` input that installs capture on a namespace with none of our
 * chains yet: one `*mangle` transaction. apply.ts adds the deletions of a previous run's rules to the
 * same transaction, so re-running is atomic and idempotent.
 */
export function buildCaptureRules(o: CaptureOptions, family: Family = 4): { chains: string[]; jumps: string[]; rules: string[] } {
  validateCaptureOptions(o);
  const C = CHAINS;
  const L = LOOPBACK[family];
  const ofFamily = (cidrs: string[]) => cidrs.filter((c) => cidrFamily(c) === family);
  const mark = `${hex(o.mark)}/0xffffffff`;
  const inboundCaptured = o.inboundPorts === '*' || o.inboundPorts.length > 0;
  const chains = inboundCaptured ? [C.prerouting, C.inbound, C.tproxy, C.divert, C.output, C.redirect, C.hairpin] : [C.prerouting, C.divert, C.output, C.redirect];
  const jumps = [`-A PREROUTING -p tcp -j ${C.prerouting}`, `-A OUTPUT -p tcp -j ${C.output}`];
  const r: string[] = [];

  // PREROUTING. Packets a transparent socket owns (connections already handed to the proxy) are marked
  // and accepted, so they route locally whatever their destination address.
  r.push(`-A ${C.prerouting} -p tcp -m socket --transparent -j ${C.divert}`);
  // The proxy calling its own pod (hairpin, marked in OUTPUT): to the inbound listener, as Istio does,
  // so a pod's calls to itself through a Service get inbound policy too. Only a local destination:
  // the app's captured packets are for remote addresses.
  if (inboundCaptured) {
    r.push(`-A ${C.prerouting} -i lo -p tcp -m mark --mark ${mark} -m addrtype --dst-type LOCAL -j TPROXY --on-port ${o.inboundPort} --on-ip ${L.listen} --tproxy-mark ${mark}`);
  }
  // Outbound: the app's packets, marked in OUTPUT and looped through lo by the policy route.
  r.push(`-A ${C.prerouting} -i lo -p tcp -m mark --mark ${mark} -j TPROXY --on-port ${o.outboundPort} --on-ip ${L.listen} --tproxy-mark ${mark}`);
  if (inboundCaptured) r.push(`-A ${C.prerouting} ! -i lo -p tcp -j ${C.inbound}`);

  r.push(`-A ${C.divert} -j MARK --set-xmark ${mark}`);
  r.push(`-A ${C.divert} -j ACCEPT`);

  if (inboundCaptured) {
    // Replies to the proxy's (and excluded apps') own outbound connections arrive on eth0 too; TPROXY
    // would drop them (their socket is not transparent).
    r.push(`-A ${C.inbound} -p tcp -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN`);
    r.push(`-A ${C.inbound} -p tcp --dport ${HBONE_PORT} -j RETURN`);
    if (o.inboundPorts === '*') {
      for (const p of o.excludeInboundPorts) r.push(`-A ${C.inbound} -p tcp ${portMatch(p)} -j RETURN`);
      r.push(`-A ${C.inbound} -p tcp -j ${C.tproxy}`);
    } else {
      // istio-iptables: with an explicit list, only those ports are captured (exclusions still win).
      for (const p of o.excludeInboundPorts) r.push(`-A ${C.inbound} -p tcp ${portMatch(p)} -j RETURN`);
      for (const p of o.inboundPorts) r.push(`-A ${C.inbound} -p tcp ${portMatch(p)} -j ${C.tproxy}`);
    }
    r.push(`-A ${C.tproxy} ! -d ${L.host} -p tcp -j TPROXY --on-port ${o.inboundPort} --on-ip ${L.listen} --tproxy-mark ${mark}`);
  }

  // OUTPUT, in precedence order. Replies first: the proxy's accepted sockets were created by root.
  r.push(`-A ${C.output} -m conntrack --ctdir REPLY -j RETURN`);
  // A connection is captured or not by its first packet, as with istio-iptables' nat REDIRECT (nat
  // sees only that packet); MESHGATE_REDIRECT keeps the decision in the connmark. A later packet of a
  // connection not captured then is never captured: the packets a socket sends after its owner closed
  // it (the ACK of the peer's FIN, an RST) have no owner uid, so the proxy's own connections would fall
  // to the rules below and be captured to the outbound listener, which drops them; the peer (another
  // pod's inbound side) then retransmits its FIN in LAST-ACK for minutes.
  r.push(`-A ${C.output} -m conntrack --ctstate ESTABLISHED,RELATED -m connmark ! --mark ${mark} -j RETURN`);
  if (inboundCaptured) {
    // The proxy's inbound forwarding to the app comes from 127.0.0.6 (IPv6 ::6): never hairpinned.
    r.push(`-A ${C.output} -s ${L.passthrough} -o lo -j RETURN`);
    r.push(`-A ${C.output} ! -d ${L.host} -o lo -p tcp -m owner --uid-owner ${o.proxyUid} -j ${C.hairpin}`);
    r.push(`-A ${C.output} ! -d ${L.host} -o lo -p tcp -m owner --gid-owner ${o.proxyGid} -j ${C.hairpin}`);
  }
  r.push(`-A ${C.output} -o lo -j RETURN`);
  r.push(`-A ${C.output} -m owner --uid-owner ${o.proxyUid} -j RETURN`);
  r.push(`-A ${C.output} -m owner --gid-owner ${o.proxyGid} -j RETURN`);
  r.push(`-A ${C.output} -d ${L.net} -j RETURN`);
  // DNS capture: TCP port 53 to the captured servers is not marked here: nat OUTPUT redirects it to
  // the DNS proxy (a marked packet would be routed to the outbound listener instead).
  if (o.redirectDns) for (const d of dnsDestinations(o, family)) r.push(`-A ${C.output}${d === null ? '' : ` -d ${d}`} -p tcp --dport 53 -j RETURN`);
  for (const p of o.excludeOutboundPorts) r.push(`-A ${C.output} -p tcp ${portMatch(p)} -j RETURN`);
  // `-g`: once marked, leave MESHGATE_OUTPUT (back to OUTPUT's next rule).
  for (const p of o.includeOutboundPorts) r.push(`-A ${C.output} -p tcp ${portMatch(p)} -g ${C.redirect}`);
  for (const cidr of ofFamily(o.excludeOutboundCidrs)) r.push(`-A ${C.output} -d ${cidr} -j RETURN`);
  if (o.includeOutboundCidrs === '*') r.push(`-A ${C.output} -g ${C.redirect}`);
  // A list names each family's own ranges: a family with none has no range-based capture.
  else for (const cidr of ofFamily(o.includeOutboundCidrs)) r.push(`-A ${C.output} -d ${cidr} -g ${C.redirect}`);
  r.push(`-A ${C.redirect} -j MARK --set-xmark ${mark}`);
  r.push(`-A ${C.redirect} -j CONNMARK --set-xmark ${mark}`);

  if (inboundCaptured) {
    // Hairpin: the same ports as inbound capture (HBONE and the excluded ports go straight through).
    r.push(`-A ${C.hairpin} -p tcp --dport ${HBONE_PORT} -j RETURN`);
    for (const p of o.excludeInboundPorts) r.push(`-A ${C.hairpin} -p tcp ${portMatch(p)} -j RETURN`);
    // The connmark too, so the connection's later packets get here (see MESHGATE_OUTPUT's second rule).
    if (o.inboundPorts === '*') r.push(`-A ${C.hairpin} -j MARK --set-xmark ${mark}`, `-A ${C.hairpin} -j CONNMARK --set-xmark ${mark}`);
    else for (const p of o.inboundPorts) r.push(`-A ${C.hairpin} -p tcp ${portMatch(p)} -j MARK --set-xmark ${mark}`, `-A ${C.hairpin} -p tcp ${portMatch(p)} -j CONNMARK --set-xmark ${mark}`);
  }

  return { chains, jumps, rules: r };
}

/** One table's part of the rules: chains to declare, jumps from built-in chains, rules of our chains. */
export interface TableRules {
  chains: string[];
  jumps: string[];
  rules: string[];
}

/**
 * The DNS servers captured in a family: `[null]` (any address) with `captureAllDns`, else the
 * family's `dnsServers` as /32 or /128 (none: nothing captured in that family).
 */
function dnsDestinations(o: CaptureOptions, family: Family): (string | null)[] {
  if (o.captureAllDns) return [null];
  return o.dnsServers.filter((s) => cidrFamily(s) === family).map((s) => (s.includes('/') ? s : `${s}/${family === 4 ? 32 : 128}`));
}

/**
 * DNS capture's tables (empty without `redirectDns`, or with no server of this family), as
 * istio-iptables makes them:
 *  - nat: OUTPUT's port-53 packets go to MESHGATE_OUTPUT_DNS, which returns the proxy's (uid, gid:
 *    its queries to the upstream resolvers) and REDIRECTs the app's UDP and TCP to the DNS proxy;
 *  - raw: conntrack zones, so the app's redirected flow (zone 2) and the proxy's own flow to the
 *    same resolver (zone 1) never share a conntrack entry (Istio's fix of UDP conntrack races).
 *    The first CT rule a packet meets sets its zone (a later CT does nothing to a packet that has one).
 */
export function buildDnsRules(o: CaptureOptions, family: Family = 4): Map<string, TableRules> {
  const out = new Map<string, TableRules>();
  const dests = o.redirectDns ? dnsDestinations(o, family) : [];
  if (dests.length === 0) return out;
  const C = CHAINS;
  const d = (x: string | null) => (x === null ? '' : ` -d ${x}`);
  const src = (x: string | null) => (x === null ? '' : ` -s ${x}`);
  const owners = [`-m owner --uid-owner ${o.proxyUid}`, `-m owner --gid-owner ${o.proxyGid}`];
  const nat: string[] = owners.map((m) => `-A ${C.dnsRedirect} ${m} -j RETURN`);
  for (const x of dests) for (const p of ['udp', 'tcp']) nat.push(`-A ${C.dnsRedirect}${d(x)} -p ${p} --dport 53 -j REDIRECT --to-ports ${o.dnsPort}`);
  out.set('nat', { chains: [C.dnsRedirect], jumps: [`-A OUTPUT -p udp --dport 53 -j ${C.dnsRedirect}`, `-A OUTPUT -p tcp --dport 53 -j ${C.dnsRedirect}`], rules: nat });
  const raw: string[] = [];
  for (const m of owners) raw.push(`-A ${C.dnsZonesOut} -p udp --dport 53 ${m} -j CT --zone 1`, `-A ${C.dnsZonesOut} -p udp --sport ${o.dnsPort} ${m} -j CT --zone 2`);
  for (const x of dests) raw.push(`-A ${C.dnsZonesOut}${d(x)} -p udp --dport 53 -j CT --zone 2`);
  for (const x of dests) raw.push(`-A ${C.dnsZonesIn}${src(x)} -p udp --sport 53 -j CT --zone 1`);
  out.set('raw', { chains: [C.dnsZonesOut, C.dnsZonesIn], jumps: [`-A OUTPUT -p udp -j ${C.dnsZonesOut}`, `-A PREROUTING -p udp -j ${C.dnsZonesIn}`], rules: raw });
  return out;
}

/** Every table's rules for a family: mangle (always) first, then DNS capture's nat and raw. */
export function buildAllRules(o: CaptureOptions, family: Family = 4): Map<string, TableRules> {
  return new Map<string, TableRules>([['mangle', buildCaptureRules(o, family)], ...buildDnsRules(o, family)]);
}

function renderTable(table: string, t: TableRules, deletions: string[]): string {
  return [`*${table}`, ...t.chains.map((c) => `:${c} - [0:0]`), ...deletions, ...t.jumps, ...t.rules, 'COMMIT', ''].join('\n');
}

/**
 * Per family: the listeners' address (TPROXY `--on-ip`), the loopback host and range, and the source
 * address the proxy uses to forward inbound connections to the app (Istio's 127.0.0.6 and ::6).
 */
export const LOOPBACK: Record<Family, { listen: string; host: string; net: string; passthrough: string }> = {
  4: { listen: '127.0.0.1', host: '127.0.0.1/32', net: '127.0.0.0/8', passthrough: '127.0.0.6/32' },
  6: { listen: '::1', host: '::1/128', net: '::1/128', passthrough: '::6/128' },
};

/** The family's tools: `iptables-save`/`iptables-restore` or the ip6tables ones, and `ip -4`/`-6`. */
export const TOOLS: Record<Family, { save: string; restore: string; ip: string }> = {
  4: { save: 'iptables-save', restore: 'iptables-restore', ip: '-4' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore', ip: '-6' },
};

/** The complete `iptables-restore --noflush` input for a fresh namespace (what `--dry-run` prints). */
export function renderRestore(o: CaptureOptions, extra: { deletions?: string[]; tableDeletions?: Record<string, string[]> } = {}, family: Family = 4): string {
  let text = '';
  // Declaring a chain creates it, or flushes it when it exists (a previous run's rules).
  for (const [table, t] of buildAllRules(o, family)) text += renderTable(table, t, table === 'mangle' ? (extra.deletions ?? []) : (extra.tableDeletions?.[table] ?? []));
  return text;
}

/** What `capture --dry-run` prints per family: the `ip` commands (as comments) and the restore input. */
export function renderPlan(o: CaptureOptions, families: Family[] = [4]): string {
  return families
    .map((f) => {
      const { rule, route } = policyRouting(o, f);
      const address = inboundSourceAddress(f);
      return `${address === null ? '' : `# ip ${address.join(' ')}\n`}# ip ${route.join(' ')}\n# ip ${rule.join(' ')}\n# ${TOOLS[f].restore} --noflush\n${renderRestore(o, {}, f)}`;
    })
    .join('');
}

/**
 * The `ip` arguments that give `lo` the address the proxy forwards inbound IPv6 connections from
 * (`::6`, as istio-iptables runs `ip -6 addr add ::6/128 dev lo`); null for IPv4, whose 127.0.0.6 is
 * already local (all of 127.0.0.0/8 is).
 */
export function inboundSourceAddress(family: Family): string[] | null {
  return family === 6 ? ['-6', 'addr', 'add', LOOPBACK[6].passthrough, 'dev', 'lo'] : null;
}

/** Does `ip -6 addr show dev lo` output hold `::6/128`? */
export function hasInboundSourceAddress(ipAddrShow: string): boolean {
  return /\binet6 ::6\/128\b/.test(ipAddrShow);
}

/** The policy rule and route (each an `ip` argument list) that deliver marked packets locally. */
export function policyRouting(o: Pick<CaptureOptions, 'mark' | 'routeTable'>, family: Family = 4): { rule: string[]; route: string[] } {
  const ip = TOOLS[family].ip;
  return {
    rule: [ip, 'rule', 'add', 'fwmark', hex(o.mark), 'lookup', String(o.routeTable)],
    route: [ip, 'route', 'add', 'local', family === 4 ? '0.0.0.0/0' : '::/0', 'dev', 'lo', 'table', String(o.routeTable)],
  };
}

/** One parsed `iptables-save` dump: per table, its chains and its rules in order. */
export interface SavedTables {
  tables: Map<string, { chains: string[]; rules: string[] }>;
}

export function parseIptablesSave(text: string): SavedTables {
  const tables = new Map<string, { chains: string[]; rules: string[] }>();
  let current: { chains: string[]; rules: string[] } | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      current = tables.get(line.slice(1)) ?? { chains: [], rules: [] };
      tables.set(line.slice(1), current);
    } else if (line.startsWith(':') && current) current.chains.push(line.slice(1).split(' ')[0]);
    else if (line.startsWith('-A ') && current) current.rules.push(line);
  }
  return { tables };
}

const OWN_TARGET = new RegExp(`\\s-[jg] ${CHAIN_PREFIX}\\S+`);

/**
 * What a previous capture left in a dump: per table, our chains and the rules of other chains that
 * jump into them (as `-D` lines, the exact text iptables-save printed).
 */
export function findOwnRules(saved: SavedTables): Map<string, { chains: string[]; deletions: string[] }> {
  const out = new Map<string, { chains: string[]; deletions: string[] }>();
  for (const [table, t] of saved.tables) {
    const chains = t.chains.filter((c) => c.startsWith(CHAIN_PREFIX));
    const deletions = t.rules
      .filter((line) => OWN_TARGET.test(line) && !line.slice(3).startsWith(CHAIN_PREFIX))
      .map((line) => `-D ${line.slice(3)}`);
    if (chains.length > 0 || deletions.length > 0) out.set(table, { chains, deletions });
  }
  return out;
}

/**
 * The `iptables-restore --noflush` input that installs capture over whatever a previous run left
 * (idempotent: the old jumps are deleted, our chains flushed and refilled, stale chains of ours in
 * other tables or with other names removed), all in one transaction per table.
 */
export function planApply(o: CaptureOptions, saveOutput: string, family: Family = 4): string {
  const own = findOwnRules(parseIptablesSave(saveOutput));
  const tables = buildAllRules(o, family);
  let text = '';
  for (const [table, found] of own) {
    if (tables.has(table)) continue;
    text += removalBlock(table, found);
  }
  const tableDeletions: Record<string, string[]> = {};
  for (const [table, found] of own) tableDeletions[table] = found.deletions;
  text += renderRestore(o, { deletions: own.get('mangle')?.deletions ?? [], tableDeletions }, family);
  // Stale chains (another version's names) must lose their references before -X: a second block.
  for (const [table, t] of tables) {
    const stale = (own.get(table)?.chains ?? []).filter((c) => !t.chains.includes(c));
    if (stale.length > 0) text += [`*${table}`, ...stale.map((c) => `-F ${c}`), ...stale.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
  }
  return text;
}

/** The `iptables-restore --noflush` input that removes everything of ours in a dump, or '' for nothing. */
export function planClean(saveOutput: string): string {
  let text = '';
  for (const [table, found] of findOwnRules(parseIptablesSave(saveOutput))) text += removalBlock(table, found);
  return text;
}

function removalBlock(table: string, found: { chains: string[]; deletions: string[] }): string {
  // Deleting the jumps first, then flushing every chain of ours (rules inside them may point at each
  // other), then deleting the chains.
  return [`*${table}`, ...found.deletions, ...found.chains.map((c) => `-F ${c}`), ...found.chains.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
}

/** How many times `ip -4 rule show` output holds our policy rule (`fwmark 0x539 lookup 133`). */
export function countPolicyRules(ipRuleShow: string, o: Pick<CaptureOptions, 'mark' | 'routeTable'>): number {
  const want = new RegExp(`\\bfwmark ${hex(o.mark)}(?:/0xffffffff)? lookup ${o.routeTable}\\b`);
  return ipRuleShow.split('\n').filter((l) => want.test(l)).length;
}

/** Does `ip -4 route show table N` output hold our local route? */
export function hasLocalRoute(ipRouteShow: string): boolean {
  return ipRouteShow.split('\n').some((l) => /^local (default|0\.0\.0\.0\/0|::\/0) dev lo\b/.test(l.trim()));
}
