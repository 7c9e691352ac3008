/**
 * Host names as Istio Gateways and VirtualServices write them, and how they meet.
 *
 * Istio `Server.hosts`: `[namespace/]dnsName`. The namespace part says which VirtualServices may bind:
 * `*` (the default) any namespace, `.` the Gateway's own, anything else exactly that namespace.
 * `dnsName` may carry a left-most `*` (`*.example.com`); `*` alone admits every host.
 *
 * meshgate keeps short names (no dot) literal on both sides. Istio would expand a short VirtualService
 * host `reviews` to `reviews.<vs namespace>.svc.cluster.local`; at an ingress gateway, clients send the
 * host they typed, so a literal match is what an operator expects, and nothing in between guesses.
 */

export interface ServerHost {
  /** Namespace a VirtualService must be in to bind: `*` = any (`.` already resolved to the Gateway's). */
  namespace: string;
  /** Lowercase DNS name, `*.suffix` or `*`. */
  dnsName: string;
}

/** Parse one `Server.hosts` entry; `gatewayNamespace` resolves `.`. */
export function parseServerHost(entry: string, gatewayNamespace: string): ServerHost {
  const slash = entry.indexOf('/');
  const ns = slash < 0 ? '*' : entry.slice(0, slash);
  const dnsName = (slash < 0 ? entry : entry.slice(slash + 1)).toLowerCase();
  return { namespace: ns === '.' ? gatewayNamespace : ns === '' ? '*' : ns, dnsName };
}

/** May a VirtualService in `namespace` bind through this server host? */
export function namespaceAdmits(host: ServerHost, namespace: string): boolean {
  return host.namespace === '*' || host.namespace === namespace;
}

/**
 * Where a VirtualService host and a server host meet: the more specific of the two, or null when
 * neither contains the other. Wildcards are suffix wildcards covering one or more labels; a wildcard
 * never covers the bare suffix (`*.example.com` does not admit `example.com`).
 *
 *   server `*`             x VS `a.example.com` -> `a.example.com`
 *   server `*.example.com` x VS `a.example.com` -> `a.example.com`
 *   server `a.example.com` x VS `*.example.com` -> `a.example.com`
 *   server `*.example.com` x VS `*.a.example.com` -> `*.a.example.com`
 */
export function intersectHosts(serverHost: string, vsHost: string): string | null {
  const s = serverHost.toLowerCase();
  const v = vsHost.toLowerCase();
  if (s === v) return s;
  if (covers(s, v)) return v;
  if (covers(v, s)) return s;
  return null;
}

/** Does pattern `a` cover every name `b` covers (and is `a` a wildcard)? */
function covers(a: string, b: string): boolean {
  if (a === '*') return true;
  if (!a.startsWith('*.')) return false;
  const suffix = a.slice(1); // `.example.com`
  if (b === '*') return false;
  if (b.startsWith('*.')) return b.slice(1).endsWith(suffix);
  return b.length > suffix.length && b.endsWith(suffix);
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** An IPv4 or IPv6 literal (as `Server.bind` takes it); pure, no `node:net`. */
export function isIpAddress(s: string): boolean {
  if (IPV4.test(s)) return true;
  if (!s.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(s)) return false;
  const doubleColons = s.split('::').length - 1;
  if (doubleColons > 1) return false;
  const parts = s.split(':');
  const last = parts[parts.length - 1];
  const tailIsV4 = last.includes('.');
  if (tailIsV4 && !IPV4.test(last)) return false;
  const groups = parts.filter((p) => p !== '');
  const count = groups.length + (tailIsV4 ? 1 : 0);
  if (!groups.every((g) => g.includes('.') || /^[0-9A-Fa-f]{1,4}$/.test(g))) return false;
  return doubleColons === 1 ? count <= 7 : count === 8;
}
