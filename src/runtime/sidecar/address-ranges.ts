/**
 * ServiceEntry `addresses` given as CIDR ranges (`10.20.0.0/16`) on the sidecar's outbound side.
 * Istio makes one service per address (serviceentry/conversion.go convertServices; a /32 or /128 is
 * the address itself). An address gets a listener `<address>_<port>`; a range gets filter chains of
 * `0.0.0.0_<port>` that match the destination prefix (listener.go buildSidecarOutboundListener: "If
 * its a CIDR, we listen on 0.0.0.0, and setup a filter chain match for the CIDR range"). So a
 * connection's original destination is matched to an exact address first (Envoy picks the listener
 * by exact address), then to the longest range covering it (Envoy's filter chain match on
 * `prefix_ranges`), the first service by the view's order among equal ranges.
 */
import net from 'node:net';
import type { OutboundService } from '../../ir/types.js';

/** One range of a service port. */
export interface AddressRange {
  /** Prefix length. */
  bits: number;
  block: net.BlockList;
  svc: OutboundService;
}

/** The address an `addresses` entry stands for on its own: an IP, or a full-length prefix's IP; null for a range or anything else. */
export function hostAddress(a: string): string | null {
  if (net.isIP(a) !== 0) return a;
  const slash = a.indexOf('/');
  if (slash < 0) return null;
  const ip = a.slice(0, slash);
  const family = net.isIP(ip);
  return family !== 0 && Number(a.slice(slash + 1)) === (family === 4 ? 32 : 128) ? ip : null;
}

/** The ranges (not full-length) of every service port, by port, longest prefix first. */
export function addressRanges(outbound: readonly OutboundService[]): Map<number, AddressRange[]> {
  const out = new Map<number, AddressRange[]>();
  for (const svc of outbound) {
    for (const a of svc.addresses) {
      if (hostAddress(a) !== null) continue;
      const slash = a.indexOf('/');
      if (slash < 0) continue;
      const ip = a.slice(0, slash);
      const family = net.isIP(ip);
      const bits = Number(a.slice(slash + 1));
      if (family === 0 || !Number.isInteger(bits) || bits < 0 || bits > (family === 4 ? 32 : 128)) continue;
      const block = new net.BlockList();
      block.addSubnet(ip, bits, family === 4 ? 'ipv4' : 'ipv6');
      let list = out.get(svc.port);
      if (list === undefined) out.set(svc.port, (list = []));
      list.push({ bits, block, svc });
    }
  }
  // Array.prototype.sort is stable: the view's order is kept among ranges of one length.
  for (const list of out.values()) list.sort((x, y) => y.bits - x.bits);
  return out;
}

/** The service whose longest range on `port` covers `address`. */
export function matchAddressRange(ranges: ReadonlyMap<number, readonly AddressRange[]>, address: string, port: number): OutboundService | undefined {
  const list = ranges.get(port);
  if (list === undefined) return undefined;
  const a = address.startsWith('::ffff:') && address.includes('.') ? address.slice(7) : address;
  const family = net.isIP(a);
  if (family === 0) return undefined;
  const type = family === 4 ? 'ipv4' : 'ipv6';
  for (const r of list) if (r.block.check(a, type)) return r.svc;
  return undefined;
}
