/**
 * Gateway API hostnames: listener/route intersection and listener specificity
 * (gateway-api `site/content/en/docs/concepts/hostnames.md`, HTTPRoute `spec.hostnames`).
 * A wildcard `*.example.com` covers one or more labels (`a.example.com`, `a.b.example.com`), never
 * `example.com` itself. `*` stands for "no hostname" (any).
 */

/** Lowercased, trailing dot removed; `''`/absent -> `*`. */
export function normalizeHostname(h: string | undefined | null): string {
  if (h === undefined || h === null || h === '') return '*';
  return h.toLowerCase().replace(/\.$/, '');
}

/** Does `host` (exact or `*.x`) fall entirely inside `pattern` (exact, `*.y` or `*`)? */
export function hostnameWithin(host: string, pattern: string): boolean {
  if (pattern === '*') return true;
  if (host === '*') return false;
  if (!pattern.startsWith('*.')) return host === pattern;
  const suffix = pattern.slice(1); // `.example.com`
  if (host.startsWith('*.')) return host.slice(1) === suffix || host.slice(1).endsWith(suffix);
  return host.endsWith(suffix) && host.length > suffix.length;
}

/**
 * The hostnames a route serves on a listener: the intersection of the listener hostname with each
 * route hostname (the narrower of the two), deduplicated; route hostnames outside the listener's
 * are dropped. A route without hostnames serves the listener's hostname.
 */
export function intersectHostnames(listener: string, routeHostnames: readonly string[]): string[] {
  if (routeHostnames.length === 0) return [listener];
  const out: string[] = [];
  for (const r of routeHostnames) {
    const h = hostnameWithin(r, listener) ? r : hostnameWithin(listener, r) ? listener : null;
    if (h !== null && !out.includes(h)) out.push(h);
  }
  return out;
}

/**
 * Specificity rank of a listener hostname (bigger = more specific): exact names first, then
 * wildcards by the number of labels after `*` ( `*.foo.example.com` before `*.example.com`), then `*`.
 */
export function hostnameSpecificity(h: string): number {
  if (h === '*') return 0;
  if (h.startsWith('*.')) return 1 + h.split('.').length - 1;
  return 1000;
}

/** Precise DNS-1123 name, or `*.` followed by one. */
const HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Why a hostname written in a listener or route is invalid, or null when valid. */
export function hostnameProblem(h: string): string | null {
  if (h.includes(':') || IPV4.test(h)) return 'an IP address is not a hostname';
  if (!HOSTNAME.test(h.toLowerCase())) return 'not a DNS name (a wildcard may only be a whole first label, `*.example.com`)';
  return null;
}
