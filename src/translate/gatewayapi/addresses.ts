/**
 * Gateway `spec.addresses` that meshgate can bind itself: an `IPAddress` inside one of the
 * `gatewayBindableAddresses` (the machine's own addresses, or what `--gateway-bind-addresses`
 * says). Such a Gateway gets its own sockets (address, port): its listeners are isolated from other
 * Gateways on the same port, as each Gateway of the conformance suite has its own address.
 */
import { ipFamily } from '../../lib/ip.js';

/** The address as a number and its family, or null when it is not an IP address. */
function ipValue(address: string): { family: 4 | 6; value: bigint } | null {
  const family = ipFamily(address);
  if (family === 4) return { family, value: address.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n) };
  if (family !== 6) return null;
  let text = address.toLowerCase();
  // An embedded IPv4 tail (`::ffff:10.0.0.1`) becomes two hextets.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4 !== null) {
    const n = ipValue(v4[1]);
    if (n === null) return null;
    text = `${text.slice(0, -v4[1].length)}${(n.value >> 16n).toString(16)}:${(n.value & 0xffffn).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const left = head === '' ? [] : head.split(':');
  const right = tail === null || tail === '' ? [] : tail.split(':');
  const groups = tail === null ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  if (groups.length !== 8) return null;
  return { family: 6, value: groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n) };
}

/** Whether `address` lies in `cidr` (`10.0.0.0/8`, `fd00::/8`, or a plain address). */
export function addressInCidr(address: string, cidr: string): boolean {
  const slash = cidr.indexOf('/');
  const base = ipValue(slash === -1 ? cidr : cidr.slice(0, slash));
  const ip = ipValue(address);
  if (base === null || ip === null || base.family !== ip.family) return false;
  const bits = base.family === 4 ? 32 : 128;
  const prefix = slash === -1 ? bits : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) return false;
  const shift = BigInt(bits - prefix);
  return base.value >> shift === ip.value >> shift;
}

/** Canonical text of an IP address for comparisons (lowercase; IPv4 as is). */
export function sameAddress(a: string, b: string): boolean {
  const x = ipValue(a);
  const y = ipValue(b);
  return x !== null && y !== null && x.family === y.family && x.value === y.value;
}
