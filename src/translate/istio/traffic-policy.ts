/**
 * DestinationRule `trafficPolicy` -> IR cluster settings (load balancer, connection pool, outlier
 * detection, connect timeout), for one cluster: a host, a port and maybe a subset.
 *
 * Precedence, most specific winning (Istio pilot/pkg/networking/core/cluster_traffic_policy.go,
 * selectTrafficPolicyComponents and MergeTrafficPolicy):
 *  1. the rule's `trafficPolicy`;
 *  2. its `portLevelSettings` entry for the cluster's port, which replaces the four components
 *     (loadBalancer, connectionPool, outlierDetection, tls) wholesale: one it leaves unset falls
 *     back to the default, not to the rule level ("port level policies do not inherit");
 *  3. the subset's `trafficPolicy`: each component it sets replaces the one from 1-2;
 *  4. the subset's `portLevelSettings` entry for the port: wholesale again.
 * Components are never deep-merged (a subset `connectionPool.http` drops the rule's `tcp`).
 * `tls` follows the same precedence and is resolved by `upstream-tls.ts` (when the caller passes the
 * resources and host it needs: Secrets for `credentialName`, the default SNI).
 *
 * Defaults when nothing is set: see `DEFAULT_LB_POLICY` and `DEFAULT_CONNECT_TIMEOUT_MS`; no
 * connection limits; no outlier detection. Within an `outlierDetection`, unset fields take Istio's
 * defaults (consecutive5xxErrors 5, interval 10 s, baseEjectionTime 30 s, maxEjectionPercent 10,
 * minHealthPercent 0).
 */
import type { ConnectionPool, HashKey, LbPolicy, OutlierDetection, UpstreamTls } from '../../ir/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { DiagnosticReason } from '../../lib/diagnostic.js';
import { upstreamTls } from './upstream-tls.js';
import type { KubeObject } from '../../resources/types.js';
import { parseDuration } from '../../api/duration.js';
import { arr, bool, isObj, num, obj, str, type Obj } from '../../lib/unknown.js';
import { DEFAULT_CONNECT_TIMEOUT_MS } from '../backends.js';
import type { TranslateContext } from '../types.js';
import { DEFAULT_LB_POLICY, type MergedDestinationRule, type Subset } from './destination-rules.js';

export interface TrafficPolicy {
  lbPolicy: LbPolicy;
  connectTimeoutMs: number;
  connectionPool: ConnectionPool | null;
  outlierDetection: OutlierDetection | null;
  /** Upstream TLS; null = plaintext (also when no `upstream` was given to `resolveTrafficPolicy`). */
  tls: UpstreamTls | null;
  /** True when the rule set `tls` for this cluster (DISABLE included): auto mTLS then stays off. */
  tlsSet?: boolean;
}

/** Istio default `minimumRingSize` (ringHash). */
export const DEFAULT_MIN_RING_SIZE = 1024;
/** Envoy default Maglev table size (a prime). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;

export const OUTLIER_DEFAULTS: OutlierDetection = {
  consecutive5xxErrors: 5,
  consecutiveGatewayErrors: 0,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
  minHealthPercent: 0,
};

interface Components {
  loadBalancer: { value: Obj; field: string } | null;
  connectionPool: { value: Obj; field: string } | null;
  outlierDetection: { value: Obj; field: string } | null;
  tls: { value: Obj; field: string } | null;
}

const NONE: Components = { loadBalancer: null, connectionPool: null, outlierDetection: null, tls: null };

/** Diagnostics already reported, per translation: a rule is resolved once per route that uses it. */
const reportedByCtx = new WeakMap<TranslateContext, Set<string>>();

/**
 * The traffic policy of the cluster for `port` (the Service port) and `subset` under the merged
 * DestinationRule `dr`. Problems in the rule are reported once per translation, on the rule.
 */
export function resolveTrafficPolicy(ctx: TranslateContext, dr: MergedDestinationRule | null, subset: Subset | null, port: number, upstream?: { resources: ResourceSet; host: string }): TrafficPolicy {
  let c: Components = NONE;
  // The merged rule's trafficPolicy comes from the first rule (by creation) that has one.
  const topRule = dr?.rules.find((r) => isObj(obj(r.body.spec).trafficPolicy)) ?? null;
  if (dr?.trafficPolicy) c = overlay(c, dr.trafficPolicy, 'spec.trafficPolicy', port);
  const subsetRule = subset ? (dr?.rules.find((r) => arr(obj(r.body.spec).subsets).some((s) => str(obj(s).name) === subset.name)) ?? null) : null;
  const subsetIndex = subsetRule ? arr(obj(subsetRule.body.spec).subsets).findIndex((s) => str(obj(s).name) === subset!.name) : -1;
  let subsetFrom: { rule: KubeObject; field: string } | null = null;
  if (subset?.trafficPolicy && subsetRule) {
    subsetFrom = { rule: subsetRule, field: `spec.subsets[${subsetIndex}].trafficPolicy` };
    c = overlay(c, subset.trafficPolicy, subsetFrom.field, port);
  }
  const ruleOf = (field: string): KubeObject | null => (subsetFrom && field.startsWith(subsetFrom.field) ? subsetFrom.rule : topRule);
  const report = (field: string, message: string, severity: 'warning' | 'error' = 'warning', reason: DiagnosticReason = 'MG_INVALID_FIELD'): void => {
    const rule = ruleOf(field);
    const key = `${rule?.metadata.namespace}/${rule?.metadata.name}/${field}`;
    let seen = reportedByCtx.get(ctx);
    if (!seen) reportedByCtx.set(ctx, (seen = new Set()));
    if (seen.has(key)) return;
    seen.add(key);
    ctx.report(severity, reason, rule, field, message);
  };
  return {
    lbPolicy: c.loadBalancer ? loadBalancer(c.loadBalancer.value, c.loadBalancer.field, report) : DEFAULT_LB_POLICY,
    connectTimeoutMs: (c.connectionPool && duration(obj(c.connectionPool.value.tcp).connectTimeout, `${c.connectionPool.field}.tcp.connectTimeout`, report, false)) || DEFAULT_CONNECT_TIMEOUT_MS,
    connectionPool: c.connectionPool ? connectionPool(c.connectionPool.value, c.connectionPool.field, report) : null,
    outlierDetection: c.outlierDetection ? outlierDetection(c.outlierDetection.value, c.outlierDetection.field, report) : null,
    tls: c.tls && upstream ? upstreamTls(upstream.resources, ruleOf(c.tls.field), c.tls.value, c.tls.field, upstream.host, report) : null,
    tlsSet: c.tls !== null,
  };
}

/** Applies one level (`policy` at `field`) over `c`: its components, then its entry for `port`. */
function overlay(c: Components, policy: Obj, field: string, port: number): Components {
  const pick = (name: keyof Components, from: Obj, f: string): { value: Obj; field: string } | null =>
    isObj(from[name]) ? { value: from[name] as Obj, field: `${f}.${name}` } : null;
  const out: Components = {
    loadBalancer: pick('loadBalancer', policy, field) ?? c.loadBalancer,
    connectionPool: pick('connectionPool', policy, field) ?? c.connectionPool,
    outlierDetection: pick('outlierDetection', policy, field) ?? c.outlierDetection,
    tls: pick('tls', policy, field) ?? c.tls,
  };
  const settings = arr(policy.portLevelSettings);
  for (let i = 0; i < settings.length; i++) {
    const s = obj(settings[i]);
    if (num(obj(s.port).number) !== port) continue;
    const f = `${field}.portLevelSettings[${i}]`;
    // Wholesale: unset components go back to the defaults.
    return { loadBalancer: pick('loadBalancer', s, f), connectionPool: pick('connectionPool', s, f), outlierDetection: pick('outlierDetection', s, f), tls: pick('tls', s, f) };
  }
  return out;
}

type Report = (field: string, message: string, severity?: 'warning' | 'error', reason?: DiagnosticReason) => void;

function loadBalancer(lb: Obj, field: string, report: Report): LbPolicy {
  if (isObj(lb.consistentHash)) return consistentHash(lb.consistentHash, `${field}.consistentHash`, report) ?? DEFAULT_LB_POLICY;
  const simple = str(lb.simple);
  switch (simple) {
    case 'ROUND_ROBIN':
      return 'ROUND_ROBIN';
    case 'LEAST_REQUEST':
      return 'LEAST_REQUEST';
    case 'LEAST_CONN':
      report(`${field}.simple`, 'LEAST_CONN is deprecated; use LEAST_REQUEST (what it means)', 'warning', 'MG_DEPRECATED_FIELD');
      return 'LEAST_REQUEST';
    case 'RANDOM':
      return 'RANDOM';
    case 'PASSTHROUGH':
      report(`${field}.simple`, `PASSTHROUGH sends each connection to its original destination address, which at a gateway is the gateway itself; meshgate balances over the endpoints with ${DEFAULT_LB_POLICY} instead`);
      return DEFAULT_LB_POLICY;
    case undefined:
    case 'UNSPECIFIED':
      return DEFAULT_LB_POLICY;
    default:
      report(`${field}.simple`, `unknown load balancer ${JSON.stringify(simple)}; ${DEFAULT_LB_POLICY} is used`);
      return DEFAULT_LB_POLICY;
  }
}

function consistentHash(ch: Obj, field: string, report: Report): LbPolicy | null {
  let hashOn: HashKey | null = null;
  if (typeof ch.httpHeaderName === 'string' && ch.httpHeaderName !== '') hashOn = { kind: 'header', name: ch.httpHeaderName.toLowerCase() };
  else if (isObj(ch.httpCookie)) {
    const c = ch.httpCookie;
    const name = str(c.name);
    if (!name) {
      report(`${field}.httpCookie.name`, 'httpCookie needs a name; requests are balanced with the default policy');
      return null;
    }
    let ttlSeconds: number | null = null;
    if (c.ttl !== undefined && c.ttl !== null) {
      const ms = typeof c.ttl === 'string' ? parseDuration(c.ttl) : null;
      if (ms === null || ms < 0) report(`${field}.httpCookie.ttl`, `ttl ${JSON.stringify(c.ttl)} is not a duration; the cookie is not generated`);
      else ttlSeconds = Math.floor(ms / 1000);
    }
    hashOn = { kind: 'cookie', name, path: str(c.path) || null, ttlSeconds };
  } else if (bool(ch.useSourceIp) === true) hashOn = { kind: 'source-ip' };
  else if (typeof ch.httpQueryParameterName === 'string' && ch.httpQueryParameterName !== '') hashOn = { kind: 'query-parameter', name: ch.httpQueryParameterName };
  if (hashOn === null) {
    report(field, 'consistentHash needs one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName; requests are balanced with the default policy');
    return null;
  }
  if (isObj(ch.maglev)) {
    const t = num(ch.maglev.tableSize);
    let tableSize = DEFAULT_MAGLEV_TABLE_SIZE;
    if (t !== undefined) {
      if (Number.isInteger(t) && t > 0 && t <= 5_000_011 && isPrime(t)) tableSize = t;
      else report(`${field}.maglev.tableSize`, `maglev tableSize must be a prime up to 5000011; ${DEFAULT_MAGLEV_TABLE_SIZE} is used`);
    }
    return { kind: 'consistent-hash', hashOn, algorithm: { kind: 'maglev', tableSize } };
  }
  // ringHash.minimumRingSize, or the deprecated top-level minimumRingSize.
  const m = num(obj(ch.ringHash).minimumRingSize) ?? num(ch.minimumRingSize);
  let minimumRingSize = DEFAULT_MIN_RING_SIZE;
  if (m !== undefined && m !== 0) {
    if (Number.isInteger(m) && m > 0 && m <= 8_388_608) minimumRingSize = m;
    else report(`${field}.ringHash.minimumRingSize`, `minimumRingSize must be from 1 to 8388608; ${DEFAULT_MIN_RING_SIZE} is used`);
  }
  return { kind: 'consistent-hash', hashOn, algorithm: { kind: 'ring-hash', minimumRingSize } };
}

function connectionPool(cp: Obj, field: string, report: Report): ConnectionPool | null {
  const tcp = obj(cp.tcp);
  const http = obj(cp.http);
  const limit = (v: unknown, f: string): number | null => {
    if (v === undefined || v === null) return null;
    const n = num(v);
    if (n === undefined || !Number.isInteger(n) || n < 0) {
      report(f, `${JSON.stringify(v)} is not a non-negative integer; no limit is applied`);
      return null;
    }
    // Istio/Envoy: 0 means "not set" (the 2^32-1 default) for these fields.
    return n === 0 || n >= 4294967295 ? null : n;
  };
  const idle = duration(http.idleTimeout, `${field}.http.idleTimeout`, report, true) ?? duration(tcp.idleTimeout, `${field}.tcp.idleTimeout`, report, true);
  const pool: ConnectionPool = {
    maxConnections: limit(tcp.maxConnections, `${field}.tcp.maxConnections`),
    maxPendingRequests: limit(http.http1MaxPendingRequests, `${field}.http.http1MaxPendingRequests`),
    maxRequests: limit(http.http2MaxRequests, `${field}.http.http2MaxRequests`),
    maxRequestsPerConnection: limit(http.maxRequestsPerConnection, `${field}.http.maxRequestsPerConnection`),
    maxRetries: limit(http.maxRetries, `${field}.http.maxRetries`),
    // `0s` disables the idle timeout in Istio; meshgate keeps its pool default then (never infinite).
    idleTimeoutMs: idle === null || idle === 0 ? null : idle,
  };
  if (Object.values(pool).every((v) => v === null)) return null;
  return pool;
}

function outlierDetection(od: Obj, field: string, report: Report): OutlierDetection | null {
  const count = (v: unknown, f: string, dflt: number): number => {
    // UInt32Value: `{ value: n }` in protobuf JSON, a bare number in YAML.
    const raw = isObj(v) ? v.value : v;
    if (raw === undefined || raw === null) return dflt;
    const n = num(raw);
    if (n === undefined || !Number.isInteger(n) || n < 0) {
      report(f, `${JSON.stringify(raw)} is not a non-negative integer; ${dflt} is used`);
      return dflt;
    }
    return n;
  };
  const percent = (v: unknown, f: string, dflt: number): number => {
    if (v === undefined || v === null) return dflt;
    const n = num(v);
    if (n === undefined || n < 0 || n > 100) {
      report(f, `${JSON.stringify(v)} is not a percentage from 0 to 100; ${dflt} is used`);
      return dflt;
    }
    return n;
  };
  const d = OUTLIER_DEFAULTS;
  // The deprecated consecutiveErrors counts gateway errors only (502, 503, 504 and connection
  // failures), not every 5xx: Istio (cluster_traffic_policy.go, istio/api#617) sets Envoy's
  // consecutive_gateway_failure to it, enforced at 100 %, and turns consecutive_5xx enforcement off.
  const legacy = count(od.consecutiveErrors, `${field}.consecutiveErrors`, 0);
  const result: OutlierDetection = {
    consecutive5xxErrors: count(od.consecutive5xxErrors, `${field}.consecutive5xxErrors`, legacy > 0 ? 0 : d.consecutive5xxErrors),
    consecutiveGatewayErrors: count(od.consecutiveGatewayErrors, `${field}.consecutiveGatewayErrors`, legacy > 0 ? legacy : d.consecutiveGatewayErrors),
    intervalMs: duration(od.interval, `${field}.interval`, report, false) ?? d.intervalMs,
    baseEjectionTimeMs: duration(od.baseEjectionTime, `${field}.baseEjectionTime`, report, false) ?? d.baseEjectionTimeMs,
    maxEjectionPercent: percent(od.maxEjectionPercent, `${field}.maxEjectionPercent`, d.maxEjectionPercent),
    minHealthPercent: percent(od.minHealthPercent, `${field}.minHealthPercent`, d.minHealthPercent),
  };
  if (result.consecutive5xxErrors === 0 && result.consecutiveGatewayErrors === 0) {
    report(field, 'both consecutive5xxErrors and consecutiveGatewayErrors are 0: no endpoint is ever ejected (meshgate implements the consecutive-error detectors only)');
    return null;
  }
  return result;
}

/** A Duration field in ms (rounded, at least 1); null when absent or invalid (reported). */
function duration(v: unknown, field: string, report: Report, zeroAllowed: boolean): number | null {
  if (v === undefined || v === null) return null;
  const ms = typeof v === 'string' ? parseDuration(v) : null;
  if (ms === null || ms < 0 || (!zeroAllowed && ms === 0)) {
    report(field, `${JSON.stringify(v)} is not a ${zeroAllowed ? '' : 'positive '}duration (like "1.5s", "100ms"); the default is used`);
    return null;
  }
  return ms === 0 ? 0 : Math.max(1, Math.round(ms));
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  for (let i = 2; i * i <= n; i++) if (n % i === 0) return false;
  return true;
}
