/**
 * VirtualService HTTPRoute policies -> IR: `retries`, `fault`, `mirror`/`mirrors`, `corsPolicy`.
 *
 * Istio semantics (pilot/pkg/networking/core/route/route.go and route/retry/retry.go):
 *  - `retries` absent: the mesh default policy (attempts 2, retryOn
 *    `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes` with no codes,
 *    previous hosts avoided, backoff base 25 ms); `attempts <= 0` disables retries; integers in
 *    `retryOn` become retriable status codes and add `retriable-status-codes`; an unset `retryOn`
 *    keeps the default list.
 *  - `fault`: a percentage left out affects no request (Istio's translation of a nil percentage).
 *  - `mirrors` (with `percentage`, absent = 100) or the legacy `mirror` with `mirrorPercentage`
 *    (absent = 100) or the deprecated integer `mirrorPercent`.
 *  - `corsPolicy`: `allowOrigins` string matches (or the deprecated exact `allowOrigin` list).
 */
import type { CorsPolicy, FaultInjection, Mirror, RetryOn, RetryPolicy, StringMatch } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import { parseDuration } from '../../api/duration.js';
import { compileRe2 } from '../../lib/re2.js';
import { arr, bool, isObj, num, obj, str, type Obj } from '../../lib/unknown.js';
import type { TranslateContext } from '../types.js';

export const DEFAULT_RETRY_ON: RetryOn[] = ['cancelled', 'connect-failure', 'refused-stream', 'retriable-status-codes', 'unavailable'];

/** Istio's default retry policy (mesh `defaultHttpRetryPolicy` unset). */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  numRetries: 2,
  perTryTimeoutMs: null,
  retryOn: DEFAULT_RETRY_ON,
  retriableStatusCodes: [],
  backoffBaseMs: 25,
  ignorePreviousHosts: true,
};

const RETRY_ON: ReadonlySet<string> = new Set<RetryOn>([
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'refused-stream',
  'retriable-4xx',
  'retriable-status-codes',
  'retriable-headers',
  'envoy-ratelimited',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
]);

/** gRPC status names (google.rpc.Code) for `fault.abort.grpcStatus`. */
const GRPC_CODES: Readonly<Record<string, number>> = {
  OK: 0, CANCELLED: 1, UNKNOWN: 2, INVALID_ARGUMENT: 3, DEADLINE_EXCEEDED: 4, NOT_FOUND: 5, ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7, RESOURCE_EXHAUSTED: 8, FAILED_PRECONDITION: 9, ABORTED: 10, OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, DATA_LOSS: 15, UNAUTHENTICATED: 16,
};

function present(v: unknown): boolean {
  return v !== undefined && v !== null;
}

/** `http.retries` -> RetryPolicy, the default when absent, null when disabled. */
export function translateRetries(ctx: TranslateContext, vs: KubeObject, v: unknown, field: string): RetryPolicy | null {
  if (!present(v)) return DEFAULT_RETRY_POLICY;
  const r = obj(v);
  const attempts = num(r.attempts) ?? 0;
  if (!Number.isInteger(attempts) || attempts <= 0) return null;
  let retryOn: RetryOn[] = DEFAULT_RETRY_ON;
  const codes: number[] = [];
  if (typeof r.retryOn === 'string' && r.retryOn.trim() !== '') {
    const names = new Set<RetryOn>();
    for (const raw of r.retryOn.split(',')) {
      const p = raw.trim();
      if (p === '') continue;
      if (/^\d+$/.test(p)) {
        const code = Number(p);
        if (code >= 100 && code <= 599) {
          if (!codes.includes(code)) codes.push(code);
          names.add('retriable-status-codes');
        } else ctx.report('warning', 'MG_INVALID_FIELD', vs, `${field}.retryOn`, `${p} is not an HTTP status; it is ignored`);
      } else if (RETRY_ON.has(p)) names.add(p as RetryOn);
      else ctx.report('warning', 'MG_INVALID_FIELD', vs, `${field}.retryOn`, `unknown retry condition "${p}"; it is ignored`);
    }
    if (names.size > 0) retryOn = [...names].sort();
  }
  const perTry = durationMs(ctx, vs, r.perTryTimeout, `${field}.perTryTimeout`);
  const backoff = durationMs(ctx, vs, r.backoff, `${field}.backoff`);
  return {
    numRetries: attempts,
    perTryTimeoutMs: perTry,
    retryOn,
    retriableStatusCodes: codes.sort((a, b) => a - b),
    backoffBaseMs: backoff ?? DEFAULT_RETRY_POLICY.backoffBaseMs,
    ignorePreviousHosts: bool(r.retryIgnorePreviousHosts) ?? true,
  };
}

/** `http.fault` -> FaultInjection; null when absent or when it injects nothing. */
export function translateFault(ctx: TranslateContext, vs: KubeObject, v: unknown, field: string): FaultInjection | null {
  if (!isObj(v)) return null;
  let delay: FaultInjection['delay'] = null;
  let abort: FaultInjection['abort'] = null;
  if (isObj(v.delay)) {
    const d = v.delay;
    const f = `${field}.delay`;
    const ms = durationMs(ctx, vs, d.fixedDelay, `${f}.fixedDelay`);
    if (ms === null) {
      if (!present(d.fixedDelay)) ctx.report('warning', 'MG_UNSUPPORTED', vs, f, 'only fixedDelay is supported; no delay is injected');
    } else delay = { fixedDelayMs: ms, percentage: percentage(ctx, vs, d, f) };
  }
  if (isObj(v.abort)) {
    const a = v.abort;
    const f = `${field}.abort`;
    const pct = percentage(ctx, vs, a, f);
    const status = num(a.httpStatus);
    if (status !== undefined) {
      if (Number.isInteger(status) && status >= 200 && status <= 599) abort = { kind: 'http', status, percentage: pct };
      else ctx.report('warning', 'MG_INVALID_FIELD', vs, `${f}.httpStatus`, `httpStatus must be from 200 to 599; no abort is injected`);
    } else if (typeof a.grpcStatus === 'string') {
      const code = GRPC_CODES[a.grpcStatus.toUpperCase()];
      if (code !== undefined) abort = { kind: 'grpc', grpcStatus: code, percentage: pct };
      else ctx.report('warning', 'MG_INVALID_FIELD', vs, `${f}.grpcStatus`, `unknown gRPC status "${a.grpcStatus}"; no abort is injected`);
    } else {
      ctx.report('warning', 'MG_UNSUPPORTED', vs, f, 'only httpStatus and grpcStatus aborts are supported; no abort is injected');
    }
  }
  if (delay === null && abort === null) return null;
  return { delay, abort };
}

function percentage(ctx: TranslateContext, vs: KubeObject, o: Obj, field: string): number {
  if (isObj(o.percentage)) {
    const n = num(o.percentage.value) ?? 0;
    if (n >= 0 && n <= 100) return n;
    ctx.report('warning', 'MG_INVALID_FIELD', vs, `${field}.percentage.value`, `${n} is not from 0 to 100; no request is affected`);
    return 0;
  }
  const p = num(o.percent);
  if (p !== undefined && p >= 0 && p <= 100) return p;
  ctx.report('info', 'MG_MISSING_FIELD', vs, `${field}.percentage`, 'percentage is not set: as in Istio, no request is affected');
  return 0;
}

/**
 * `http.mirrors`, or the legacy `http.mirror` -> Mirror list; `resolve` maps a Destination to a
 * cluster name (registering it).
 */
export function translateMirrors(ctx: TranslateContext, vs: KubeObject, http: Obj, field: string, resolve: (dest: Obj, field: string) => string): Mirror[] {
  const out: Mirror[] = [];
  const list = arr(http.mirrors);
  if (list.length > 0) {
    if (present(http.mirror)) ctx.report('warning', 'MG_INVALID_FIELD', vs, `${field}.mirror`, 'mirror and mirrors are mutually exclusive; mirror is ignored');
    for (let i = 0; i < list.length; i++) {
      const m = obj(list[i]);
      const f = `${field}.mirrors[${i}]`;
      const pct = isObj(m.percentage) ? num(m.percentage.value) ?? 100 : 100;
      if (!isObj(m.destination)) {
        ctx.report('error', 'MG_MISSING_FIELD', vs, `${f}.destination`, 'a mirror needs a destination; it is ignored');
        continue;
      }
      out.push({ cluster: resolve(m.destination, `${f}.destination`), percentage: clampPct(pct) });
    }
    return out;
  }
  if (isObj(http.mirror)) {
    let pct = 100;
    if (isObj(http.mirrorPercentage)) pct = num(http.mirrorPercentage.value) ?? 100;
    else if (present(http.mirrorPercent)) pct = num(http.mirrorPercent) ?? 100;
    out.push({ cluster: resolve(http.mirror, `${field}.mirror`), percentage: clampPct(pct) });
  }
  return out;
}

function clampPct(n: number): number {
  return Math.min(100, Math.max(0, n));
}

/** `http.corsPolicy` -> CorsPolicy; null when absent. */
export function translateCors(ctx: TranslateContext, vs: KubeObject, v: unknown, field: string): CorsPolicy | null {
  if (!isObj(v)) return null;
  const allowOrigins: StringMatch[] = [];
  const origins = arr(v.allowOrigins);
  for (let i = 0; i < origins.length; i++) {
    const o = obj(origins[i]);
    const f = `${field}.allowOrigins[${i}]`;
    if (typeof o.exact === 'string') allowOrigins.push({ kind: 'exact', value: o.exact, ignoreCase: false });
    else if (typeof o.prefix === 'string') allowOrigins.push({ kind: 'prefix', value: o.prefix, ignoreCase: false });
    else if (typeof o.regex === 'string') {
      const r = compileRe2(o.regex);
      if (r.ok) allowOrigins.push({ kind: 'regex', regex: r.regex });
      else ctx.report('error', 'MG_INVALID_REGEX', vs, `${f}.regex`, `${r.message}; this origin is ignored`);
    } else ctx.report('warning', 'MG_INVALID_FIELD', vs, f, 'an origin needs exact, prefix or regex; it is ignored');
  }
  // Deprecated `allowOrigin`: exact strings, used only when allowOrigins is absent (as Istio).
  if (origins.length === 0) for (const o of arr(v.allowOrigin)) if (typeof o === 'string') allowOrigins.push({ kind: 'exact', value: o, ignoreCase: false });
  const strings = (x: unknown): string[] => arr(x).filter((s): s is string => typeof s === 'string' && s !== '');
  let maxAgeSeconds: number | null = null;
  const ms = durationMs(ctx, vs, v.maxAge, `${field}.maxAge`);
  if (ms !== null) maxAgeSeconds = Math.floor(ms / 1000);
  const cred = isObj(v.allowCredentials) ? bool(v.allowCredentials.value) : bool(v.allowCredentials);
  return {
    allowOrigins,
    allowMethods: strings(v.allowMethods),
    allowHeaders: strings(v.allowHeaders),
    exposeHeaders: strings(v.exposeHeaders),
    maxAgeSeconds,
    allowCredentials: cred === true,
    unmatchedPreflights: str(v.unmatchedPreflights) === 'IGNORE' ? 'ignore' : 'forward',
  };
}

/** A Duration in ms (rounded); null when absent or invalid (reported). `0s` yields null. */
function durationMs(ctx: TranslateContext, vs: KubeObject, v: unknown, field: string): number | null {
  if (!present(v)) return null;
  const ms = typeof v === 'string' ? parseDuration(v) : null;
  if (ms === null || ms < 0) {
    ctx.report('warning', 'MG_INVALID_FIELD', vs, field, `${JSON.stringify(v)} is not a duration (like "1.5s", "100ms"); it is ignored`);
    return null;
  }
  return ms === 0 ? null : Math.max(1, Math.round(ms));
}
