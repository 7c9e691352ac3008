/**
 * AuthorizationPolicy -> the IR's AuthorizationPolicy: `from.source`, `to.operation` and `when` all
 * become AuthzConditions (attribute key, values, notValues). PURE.
 *
 * A field meshgate cannot honour (unknown `when` key, a malformed IP block, port or path template)
 * fails closed, as Istio does: in an ALLOW (or AUDIT) policy the whole rule is dropped, so it
 * allows less; in a DENY or CUSTOM policy only that condition is dropped, so the rule denies more.
 */
import { ipFamily } from '../../lib/ip.js';
import type { AuthorizationPolicy, AuthzCondition, AuthzRule } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import { arr, obj, str } from '../../lib/unknown.js';
import { sourceOf, type TranslateContext } from '../types.js';

type Action = AuthorizationPolicy['action'];

/** `from.source` field -> attribute. */
const SOURCE_FIELDS: readonly [string, string, string][] = [
  ['principals', 'notPrincipals', 'source.principal'],
  ['requestPrincipals', 'notRequestPrincipals', 'request.auth.principal'],
  ['namespaces', 'notNamespaces', 'source.namespace'],
  ['serviceAccounts', 'notServiceAccounts', 'source.serviceAccount'],
  ['ipBlocks', 'notIpBlocks', 'source.ip'],
  ['remoteIpBlocks', 'notRemoteIpBlocks', 'remote.ip'],
];

/** `to.operation` field -> attribute. */
const OPERATION_FIELDS: readonly [string, string, string][] = [
  ['hosts', 'notHosts', 'request.host'],
  ['ports', 'notPorts', 'destination.port'],
  ['methods', 'notMethods', 'request.method'],
  ['paths', 'notPaths', 'request.path'],
];

/** `when` keys meshgate evaluates (besides `request.headers[...]` and `request.auth.claims[...]...`). */
const WHEN_KEYS = new Set([
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.principal',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'destination.ip',
  'destination.port',
  'connection.sni',
]);

export function translateAuthorizationPolicy(ctx: TranslateContext, o: KubeObject): AuthorizationPolicy {
  const spec = obj(o.body.spec);
  const action = (str(spec.action) ?? 'ALLOW') as Action;
  // CUSTOM: the provider is looked up in MeshConfig by ext-authz.ts, which reports a missing one.
  const provider = action === 'CUSTOM' ? str(obj(spec.provider).name) ?? '' : null;
  const rules: AuthzRule[] = [];
  arr(spec.rules).forEach((raw, i) => {
    const rule = translateRule(ctx, o, action, obj(raw), `spec.rules[${i}]`);
    if (rule !== null) rules.push(rule);
  });
  return {
    name: `authorizationpolicy/${o.metadata.namespace}/${o.metadata.name}`,
    source: sourceOf(o),
    action,
    provider,
    rules,
    dryRun: o.metadata.annotations['istio.io/dry-run'] === 'true',
  };
}

/** null when the rule must be dropped (an invalid condition in an ALLOW or AUDIT policy). */
function translateRule(ctx: TranslateContext, o: KubeObject, action: Action, r: Record<string, unknown>, field: string): AuthzRule | null {
  let invalid = false;
  const failClosed = action === 'DENY' || action === 'CUSTOM';
  const keep = (c: AuthzCondition, at: string): boolean => {
    const problem = checkCondition(c);
    if (problem === null) return true;
    invalid = true;
    ctx.report('warning', 'MG_INVALID_FIELD', o, at, `${problem}; ${failClosed ? 'the condition is ignored, so the rule matches more requests' : 'the rule is ignored'}`);
    return false;
  };
  const from: AuthzCondition[][] = arr(r.from).map((f, i) => fieldsToConditions(obj(obj(f).source), SOURCE_FIELDS, `${field}.from[${i}].source`, keep));
  const to: AuthzCondition[][] = arr(r.to).map((t, i) => fieldsToConditions(obj(obj(t).operation), OPERATION_FIELDS, `${field}.to[${i}].operation`, keep));
  const when: AuthzCondition[] = [];
  arr(r.when).forEach((w, i) => {
    const c: AuthzCondition = { key: str(obj(w).key) ?? '', values: strings(obj(w).values), notValues: strings(obj(w).notValues) };
    if (keep(c, `${field}.when[${i}]`)) when.push(c);
  });
  if (invalid && !failClosed) return null;
  return { from, to, when };
}

function fieldsToConditions(
  src: Record<string, unknown>,
  fields: readonly [string, string, string][],
  at: string,
  keep: (c: AuthzCondition, at: string) => boolean,
): AuthzCondition[] {
  const out: AuthzCondition[] = [];
  for (const [pos, neg, key] of fields) {
    const c: AuthzCondition = { key, values: strings(src[pos]), notValues: strings(src[neg]) };
    if (c.values.length === 0 && c.notValues.length === 0) continue;
    if (keep(c, `${at}.${c.values.length > 0 ? pos : neg}`)) out.push(c);
  }
  return out;
}

function strings(v: unknown): string[] {
  return arr(v).filter((s): s is string => typeof s === 'string');
}

/** Why a condition cannot be evaluated, or null when it can. */
export function checkCondition(c: AuthzCondition): string | null {
  const key = c.key;
  if (!isKnownKey(key)) return `unsupported attribute "${key}"`;
  if (c.values.length === 0 && c.notValues.length === 0) return `"${key}" needs values or notValues`;
  const all = [...c.values, ...c.notValues];
  if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip') {
    const bad = all.find((v) => !isIpBlock(v));
    if (bad !== undefined) return `"${bad}" is not an IP address or CIDR block`;
  } else if (key === 'destination.port') {
    const bad = all.find((v) => !/^[0-9]{1,5}$/.test(v) || Number(v) < 1 || Number(v) > 65535);
    if (bad !== undefined) return `"${bad}" is not a port number`;
  } else if (key === 'request.path') {
    const bad = all.find((v) => !isPathPattern(v));
    if (bad !== undefined) return `"${bad}" is not a path, a path with one leading or trailing "*", or a {*}/{**} template`;
  }
  return null;
}

function isKnownKey(key: string): boolean {
  if (WHEN_KEYS.has(key) || key === 'source.serviceAccount' || key === 'request.host' || key === 'request.method' || key === 'request.path') return true;
  if (/^request\.headers\[[^\][]+\]$/.test(key)) return true;
  return /^request\.auth\.claims(\[[^\][]+\])+$/.test(key);
}

export function isIpBlock(v: string): boolean {
  const slash = v.indexOf('/');
  const addr = slash === -1 ? v : v.slice(0, slash);
  const family = ipFamily(addr);
  if (family === 0) return false;
  if (slash === -1) return true;
  const bits = v.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

/** Istio path values: exact, `*`, `prefix*`, `*suffix`, or a template with `{*}` segments and a final `{**}`. */
export function isPathPattern(v: string): boolean {
  if (v === '*') return true;
  if (v.includes('{')) {
    if (v.includes('*') && v.replace(/\{\*\*?\}/g, '').includes('*')) return false;
    const segs = v.split('/');
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      if (s.includes('{') || s.includes('}')) {
        if (s === '{*}') continue;
        if (s === '{**}' && i === segs.length - 1) continue;
        return false;
      }
    }
    return true;
  }
  const first = v.indexOf('*');
  if (first === -1) return true;
  return v.lastIndexOf('*') === first && (first === 0 || first === v.length - 1);
}
