/**
 * Local rate limiting as a first-class setting (Istio needs an EnvoyFilter for it): the annotation
 * `meshgate.io/local-rate-limit` on an Ingress or a VirtualService limits every route that object
 * makes. PURE.
 *
 *   meshgate.io/local-rate-limit: "100/s"                      100 requests per second per route
 *   meshgate.io/local-rate-limit: "600/m burst=50 key=remote-ip"  per client address, bursts of 50
 *   meshgate.io/local-rate-limit: "10/s key=header:x-api-key"  per value of a header
 *
 * `<n>/<interval>`: n tokens added every interval (`s`, `m`, `h`, or a Go duration such as `10s`);
 * `burst` is the bucket size (default n); `key` is `route` (default), `remote-ip` or `header:<name>`.
 */
import type { LocalRateLimit } from '../../ir/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { parseDuration } from '../../api/duration.js';
import { sourceOf, type TranslateContext } from '../types.js';

export const RATE_LIMIT_ANNOTATION = 'meshgate.io/local-rate-limit';

export function rateLimitAnnotationsOf(ctx: TranslateContext, resources: ResourceSet): LocalRateLimit[] {
  const out: LocalRateLimit[] = [];
  const candidates = [
    ...resources.ofKind('Ingress').filter((o) => o.apiVersion.startsWith('networking.k8s.io/')),
    ...resources.ofKind('VirtualService').filter((o) => o.apiVersion.startsWith('networking.istio.io/')),
  ];
  for (const o of candidates) {
    const value = o.metadata.annotations[RATE_LIMIT_ANNOTATION];
    if (value === undefined) continue;
    const parsed = parseRateLimit(value);
    if (typeof parsed === 'string') {
      ctx.report('error', 'MG_INVALID_FIELD', o, `metadata.annotations.${RATE_LIMIT_ANNOTATION}`, `${parsed}; the object's routes are not rate limited`);
      continue;
    }
    out.push({
      name: `ratelimit/${o.kind.toLowerCase()}/${o.metadata.namespace}/${o.metadata.name}`,
      source: sourceOf(o),
      target: { kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name },
      ...parsed,
    });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

type Parsed = Pick<LocalRateLimit, 'maxTokens' | 'tokensPerFill' | 'fillIntervalMs' | 'key'>;

/** The annotation value as bucket settings, or a sentence saying what is wrong. */
export function parseRateLimit(value: string): Parsed | string {
  const parts = value.trim().split(/\s+/);
  const m = /^([0-9]{1,9})\/([0-9.]*[a-z]+)$/.exec(parts[0] ?? '');
  if (m === null) return `"${value}" is not "<n>/<interval>" (for example "100/s")`;
  const n = Number(m[1]);
  const unit = m[2];
  const interval = unit === 's' || unit === 'm' || unit === 'h' ? parseDuration(`1${unit}`) : parseDuration(unit);
  if (n < 1) return 'the rate must be at least 1';
  if (interval === null || interval < 1) return `"${unit}" is not an interval (s, m, h or a duration such as 10s)`;
  const out: Parsed = { maxTokens: n, tokensPerFill: n, fillIntervalMs: Math.round(interval), key: { kind: 'route' } };
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    const k = eq === -1 ? p : p.slice(0, eq);
    const v = eq === -1 ? '' : p.slice(eq + 1);
    if (k === 'burst' && /^[0-9]{1,9}$/.test(v) && Number(v) >= 1) out.maxTokens = Number(v);
    else if (k === 'key' && v === 'route') out.key = { kind: 'route' };
    else if (k === 'key' && v === 'remote-ip') out.key = { kind: 'remote-ip' };
    else if (k === 'key' && /^header:[!#$%&'*+\-.^`|~0-9A-Za-z]+$/.test(v)) out.key = { kind: 'header', name: v.slice(7).toLowerCase() };
    else return `"${p}" is not burst=<n> or key=route|remote-ip|header:<name>`;
  }
  return out;
}


