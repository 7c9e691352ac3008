/**
 * Authorization (Istio AuthorizationPolicy semantics, Envoy RBAC): compiled once per snapshot into
 * predicates over a request's attributes.
 *
 * Decision (Istio): CUSTOM, then DENY, then ALLOW. A matching CUSTOM policy hands the request to its
 * external authorization provider (ext-authz.ts, called by security.ts): `authorize` answers "denied,
 * custom: <provider>", and once the provider allowed, the caller asks again with `customDone` for
 * DENY and ALLOW. Any matching DENY policy denies; with no ALLOW policy the request is allowed;
 * otherwise some ALLOW policy must match. AUDIT and dry-run
 * policies never change the answer. A denial is 403 `RBAC: access denied`.
 *
 * Multi-valued headers (hardening P-06, Istio I14): the upstream sees every line of a header, so a
 * condition on `request.headers[x]` is evaluated on the comma-joined value AND on each line: in a
 * DENY (or CUSTOM) policy it holds if it holds for any of them, in an ALLOW policy only if it holds
 * for all of them. Repeating a header therefore never turns a denial into an allow.
 */

import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { AuthorizationPolicy, AuthzCondition, AuthzRule } from '../../ir/types.js';

/** The request as authorization sees it. */
export interface AuthzAttributes {
  readonly method: string;
  /** Normalized path, query excluded. */
  readonly path: string;
  /** Host/:authority as sent (port included if present). */
  readonly authority: string;
  /** The listener's external port (Istio `destination.port` of the gateway). */
  readonly port: number;
  /** The client address (Istio `remote.ip`): the peer, or the x-forwarded-for entry `numTrustedProxies` points at. */
  readonly remoteIp: string;
  /** The connection's peer (Istio `source.ip`); absent = `remoteIp`. */
  readonly sourceIp?: string;
  readonly localIp: string;
  readonly sni: string;
  /** Every line of a header (lowercase name); [] when absent. */
  headerLines(name: string): string[];
  /** The verified JWT identity, or null when the request carried no token. */
  readonly identity: JwtIdentity | null;
  /** Peer identity from a verified client certificate (`cluster.local/ns/x/sa/y`), or null. */
  readonly peerPrincipal: string | null;
}

export interface JwtIdentity {
  /** `<iss>/<sub>`. */
  principal: string;
  audiences: string[];
  presenter: string | null;
  claims: Record<string, unknown>;
  /** Claims split on spaces when matched (`scope`, `permission`, and the rule's `spaceDelimitedClaims`). */
  spaceDelimited: ReadonlySet<string>;
}

/** A compiled condition: `deny` says which polarity multi-valued attributes use. */
type Predicate = (a: AuthzAttributes, deny: boolean) => boolean;

interface CompiledRule {
  from: Predicate[][];
  to: Predicate[][];
  when: Predicate[];
}

interface CompiledPolicy {
  name: string;
  /** CUSTOM: the provider name; null otherwise. */
  provider: string | null;
  rules: CompiledRule[];
}

export interface CompiledAuthz {
  custom: CompiledPolicy[];
  deny: CompiledPolicy[];
  allow: CompiledPolicy[];
}

/**
 * `custom`: the provider of the matching CUSTOM policy when that is why the request is not (yet)
 * allowed; the caller then asks that provider (and, when it allows, calls `authorize` again with
 * `customDone`). null for every other denial.
 */
export type AuthzDecision = { allowed: true; policy: string | null } | { allowed: false; policy: string | null; custom: string | null };

/** null when no policy would ever change an answer (no policies, or only AUDIT / dry-run ones). */
export function compileAuthz(policies: readonly AuthorizationPolicy[]): CompiledAuthz | null {
  const out: CompiledAuthz = { custom: [], deny: [], allow: [] };
  for (const p of policies) {
    if (p.dryRun || p.action === 'AUDIT') continue;
    const compiled: CompiledPolicy = { name: p.name, provider: p.action === 'CUSTOM' ? p.provider ?? '' : null, rules: p.rules.map(compileRule) };
    if (p.action === 'CUSTOM') out.custom.push(compiled);
    else if (p.action === 'DENY') out.deny.push(compiled);
    else out.allow.push(compiled);
  }
  return out.custom.length + out.deny.length + out.allow.length === 0 ? null : out;
}

/** `customDone`: CUSTOM policies were already evaluated (and their provider allowed); skip them. */
export function authorize(z: CompiledAuthz, a: AuthzAttributes, customDone = false): AuthzDecision {
  if (!customDone) for (const p of z.custom) if (policyMatches(p, a, true)) return { allowed: false, policy: p.name, custom: p.provider };
  for (const p of z.deny) if (policyMatches(p, a, true)) return { allowed: false, policy: p.name, custom: null };
  if (z.allow.length === 0) return { allowed: true, policy: null };
  for (const p of z.allow) if (policyMatches(p, a, false)) return { allowed: true, policy: p.name };
  return { allowed: false, policy: null, custom: null };
}

function policyMatches(p: CompiledPolicy, a: AuthzAttributes, deny: boolean): boolean {
  for (const r of p.rules) if (ruleMatches(r, a, deny)) return true;
  return false;
}

function ruleMatches(r: CompiledRule, a: AuthzAttributes, deny: boolean): boolean {
  if (r.from.length > 0 && !r.from.some((set) => allHold(set, a, deny))) return false;
  if (r.to.length > 0 && !r.to.some((set) => allHold(set, a, deny))) return false;
  return allHold(r.when, a, deny);
}

function allHold(ps: Predicate[], a: AuthzAttributes, deny: boolean): boolean {
  for (const p of ps) if (!p(a, deny)) return false;
  return true;
}

function compileRule(r: AuthzRule): CompiledRule {
  return { from: r.from.map((s) => s.map(compileCondition)), to: r.to.map((s) => s.map(compileCondition)), when: r.when.map(compileCondition) };
}

// ---- conditions ----------------------------------------------------------------------------------

/** Matches one attribute value. */
type ValueTest = (v: string) => boolean;

/**
 * A condition over an attribute with one or more values: `values` must match some value (if any
 * `values`), and `notValues` must match none.
 */
function condition(values: ValueTest | null, notValues: ValueTest | null, get: (a: AuthzAttributes) => string[] | null): Predicate {
  return (a) => {
    const vs = get(a);
    if (values !== null && (vs === null || !vs.some(values))) return false;
    if (notValues !== null && vs !== null && vs.some(notValues)) return false;
    return true;
  };
}

export function compileCondition(c: AuthzCondition): Predicate {
  const key = c.key;
  const header = /^request\.headers\[([^\][]+)\]$/.exec(key);
  if (header !== null) return headerCondition(header[1].toLowerCase(), c);
  const claims = /^request\.auth\.claims((?:\[[^\][]+\])+)$/.exec(key);
  if (claims !== null) {
    const path = claims[1].slice(1, -1).split('][');
    return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => claimValues(a.identity, path));
  }
  switch (key) {
    case 'request.path':
      return condition(anyOf(c.values, pathTest), anyOf(c.notValues, pathTest), (a) => [a.path]);
    case 'request.method':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => [a.method]);
    case 'request.host':
      // Case-insensitive; `example.com` matches `example.com` and `example.com:8080`, as Istio.
      return condition(anyOf(c.values, hostTest), anyOf(c.notValues, hostTest), (a) => hostValues(a.authority));
    case 'destination.port': {
      const test = (v: string): ValueTest => (s) => s === String(Number(v));
      return condition(anyOf(c.values, test), anyOf(c.notValues, test), (a) => [String(a.port)]);
    }
    case 'source.ip':
      return ipCondition(c, (a) => a.sourceIp ?? a.remoteIp);
    case 'remote.ip':
      return ipCondition(c, (a) => a.remoteIp);
    case 'destination.ip':
      return ipCondition(c, (a) => a.localIp);
    case 'connection.sni':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => (a.sni === '' ? null : [a.sni]));
    case 'request.auth.principal':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => (a.identity === null ? null : [a.identity.principal]));
    case 'request.auth.audiences':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => a.identity?.audiences ?? null);
    case 'request.auth.presenter':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => (a.identity?.presenter == null ? null : [a.identity.presenter]));
    case 'source.principal':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => (a.peerPrincipal === null ? null : [a.peerPrincipal]));
    case 'source.namespace':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => peerPart(a.peerPrincipal, 'ns'));
    case 'source.serviceAccount':
      return condition(anyOf(c.values, stringTest), anyOf(c.notValues, stringTest), (a) => peerServiceAccount(a.peerPrincipal));
    default:
      // translate never emits an unknown key; should one arrive, it matches nothing in an ALLOW
      // rule and everything in a DENY rule (fail closed).
      return (_a, deny) => deny;
  }
}

/** See the module comment: joined value and every line; any of them (deny) or all of them (allow). */
function headerCondition(name: string, c: AuthzCondition): Predicate {
  const values = anyOf(c.values, stringTest);
  const notValues = anyOf(c.notValues, stringTest);
  const holds = (v: string | null): boolean => {
    if (values !== null && (v === null || !values(v))) return false;
    if (notValues !== null && v !== null && notValues(v)) return false;
    return true;
  };
  return (a, deny) => {
    const lines = a.headerLines(name);
    if (lines.length <= 1) return holds(lines.length === 0 ? null : lines[0]);
    const joined = lines.join(',');
    if (deny) return holds(joined) || lines.some(holds);
    return holds(joined) && lines.every(holds);
  };
}

function ipCondition(c: AuthzCondition, get: (a: AuthzAttributes) => string): Predicate {
  const pos = blockList(c.values);
  const neg = blockList(c.notValues);
  return (a) => {
    const ip = plainIp(get(a));
    if (pos !== null && !inBlocks(pos, ip)) return false;
    if (neg !== null && inBlocks(neg, ip)) return false;
    return true;
  };
}

function blockList(values: string[]): BlockList | null {
  if (values.length === 0) return null;
  const list = new BlockList();
  for (const v of values) {
    const slash = v.indexOf('/');
    const addr = slash === -1 ? v : v.slice(0, slash);
    const type = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : null;
    if (type === null) continue;
    if (slash === -1) list.addAddress(addr, type);
    else list.addSubnet(addr, Number(v.slice(slash + 1)), type);
  }
  return list;
}

function inBlocks(list: BlockList, ip: string): boolean {
  if (isIPv4(ip)) return list.check(ip, 'ipv4');
  if (isIPv6(ip)) return list.check(ip, 'ipv6');
  return false;
}

/** `::ffff:1.2.3.4` as `1.2.3.4`. */
export function plainIp(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

function anyOf(patterns: string[], make: (p: string) => ValueTest): ValueTest | null {
  if (patterns.length === 0) return null;
  const tests = patterns.map(make);
  if (tests.length === 1) return tests[0];
  return (v) => {
    for (const t of tests) if (t(v)) return true;
    return false;
  };
}

/** Istio string match: `*` (any non-empty), `prefix*`, `*suffix`, or exact. */
export function stringTest(p: string): ValueTest {
  if (p === '*') return (v) => v !== '';
  if (p.endsWith('*')) {
    const prefix = p.slice(0, -1);
    return (v) => v.startsWith(prefix);
  }
  if (p.startsWith('*')) {
    const suffix = p.slice(1);
    return (v) => v.endsWith(suffix);
  }
  return (v) => v === p;
}

function hostTest(p: string): ValueTest {
  const t = stringTest(p.toLowerCase());
  return (v) => t(v);
}

function hostValues(authority: string): string[] {
  const lower = authority.toLowerCase();
  const close = lower.lastIndexOf(']');
  const colon = lower.lastIndexOf(':');
  return colon > close ? [lower.slice(0, colon), lower] : [lower];
}

/** Istio path match: the string forms, plus templates `{*}` (one segment) and a final `{**}`. */
export function pathTest(p: string): ValueTest {
  if (!p.includes('{')) return stringTest(p);
  let src = '^';
  const segs = p.split('/');
  segs.forEach((s, i) => {
    if (i > 0) src += '/';
    if (s === '{*}') src += '[^/]+';
    else if (s === '{**}') src += '.*';
    else src += s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  const re = new RegExp(`${src}$`);
  return (v) => re.test(v);
}

function claimValues(identity: JwtIdentity | null, path: string[]): string[] | null {
  if (identity === null) return null;
  let v: unknown = identity.claims;
  for (const k of path) {
    if (typeof v !== 'object' || v === null || Array.isArray(v) || !Object.hasOwn(v, k)) return null;
    v = (v as Record<string, unknown>)[k];
  }
  const split = path.length === 1 && identity.spaceDelimited.has(path[0]);
  const out: string[] = [];
  const add = (x: unknown): void => {
    if (typeof x === 'string') {
      if (split) for (const part of x.split(' ')) if (part !== '') out.push(part);
      if (!split) out.push(x);
    } else if (typeof x === 'number' || typeof x === 'boolean') out.push(String(x));
  };
  if (Array.isArray(v)) for (const x of v) add(x);
  else add(v);
  return out.length === 0 ? null : out;
}

function peerPart(principal: string | null, part: 'ns'): string[] | null {
  if (principal === null) return null;
  const segs = principal.split('/');
  const i = segs.indexOf(part);
  return i === -1 || i + 1 >= segs.length ? null : [segs[i + 1]];
}

function peerServiceAccount(principal: string | null): string[] | null {
  if (principal === null) return null;
  const m = /\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(principal);
  return m === null ? null : [`${m[1]}/${m[2]}`];
}
