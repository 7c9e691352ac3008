import { isIP } from 'node:net';

/**
 * 4 for an IPv4 address, 6 for IPv6, 0 otherwise. node:net's `isIP` is a pure string check; it is
 * re-exported here so the pure layers (translate, ir, runtime/compile) import no socket module.
 */
export function ipFamily(address: string): 0 | 4 | 6 {
  return isIP(address) as 0 | 4 | 6;
}
