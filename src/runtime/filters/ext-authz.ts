/**
 * HTTP external authorization (Envoy `ext_authz` with an HTTP service, Istio `envoyExtAuthzHttp`),
 * run for a request a CUSTOM AuthorizationPolicy matches (rbac.ts decides that; security.ts calls
 * this before DENY and ALLOW, as Istio orders them).
 *
 * The check request goes to the provider's IR cluster through the same long-lived endpoint pools
 * as forwarded traffic: original method, `pathPrefix` + original path and query, no body, the
 * original `host`, `authorization`, the configured headers and `x-forwarded-for`/`-proto`/`-host`.
 * 200 allows (the `headersToUpstreamOnAllow` of the answer are then set on the upstream request);
 * any other status is answered to the client with the service's status, body (at most
 * MAX_DENY_BODY bytes) and headers. No answer within `timeoutMs`, or no reachable endpoint:
 * `statusOnError` (empty body), or allow when `failOpen`.
 */

import type { ExtAuthzHttpProvider } from '../../ir/types.js';
import type { CompiledCluster } from '../compile/types.js';
import { buildUpstreamRequestHeaders } from '../http/forward-headers.js';
import { selectEndpoint } from '../upstream/load-balancer.js';
import { stringTest } from './rbac.js';

export interface CompiledExtAuthz {
  name: string;
  /** null when the snapshot has no such cluster (then every check is an error). */
  cluster: CompiledCluster | null;
  timeoutMs: number;
  pathPrefix: string;
  failOpen: boolean;
  statusOnError: number;
  /** Client headers to copy into the check (besides the ones always sent); null = none. */
  requestHeaders: NameTest | null;
  /** Flat `[name, value, ...]`. */
  additionalHeaders: string[];
  /** Answer headers set on the upstream request on allow; null = none. */
  toUpstream: NameTest | null;
  /** Answer headers sent to the client on deny; null = all but hop-by-hop and `host`. */
  toDownstream: NameTest | null;
}

/** A lowercase header name test (Istio header patterns: exact, `prefix*`, `*suffix`). */
type NameTest = (name: string) => boolean;

/** Most bytes of a denying answer's body relayed to the client; the rest is dropped. */
export const MAX_DENY_BODY = 64 * 1024;

/** Check-request headers always sent when the client sent them (the gateway sets `host` and `x-forwarded-*`). */
const ALWAYS_SENT = new Set(['host', 'authorization', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host']);

/** Never copied from an answer to the client or the upstream. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'host']);

export function compileExtAuthz(p: ExtAuthzHttpProvider, clusters: ReadonlyMap<string, CompiledCluster>): CompiledExtAuthz {
  const additional: string[] = [];
  for (const h of p.includeAdditionalHeadersInCheck) additional.push(h.name, h.value);
  return {
    name: p.name,
    cluster: clusters.get(p.cluster) ?? null,
    timeoutMs: p.timeoutMs,
    pathPrefix: p.pathPrefix,
    failOpen: p.failOpen,
    statusOnError: p.statusOnError,
    requestHeaders: nameTest(p.includeRequestHeadersInCheck),
    additionalHeaders: additional,
    toUpstream: nameTest(p.headersToUpstreamOnAllow),
    toDownstream: nameTest(p.headersToDownstreamOnDeny),
  };
}

function nameTest(patterns: string[]): NameTest | null {
  if (patterns.length === 0) return null;
  const tests = patterns.map((p) => stringTest(p.toLowerCase()));
  return (n) => tests.some((t) => t(n));
}

/** What the check needs to know about the request. */
export interface CheckRequest {
  method: string;
  /** Origin-form target as forwarded: normalized path plus `?query`. */
  target: string;
  authority: string;
  scheme: string;
  rawHeaders: string[];
  remoteAddress: string;
}

/** The outcome: allowed (with the headers to set upstream), or an answer to send the client. */
export type CheckResult =
  | { allowed: true; upstreamHeaders: [string, string][] }
  | { allowed: false; status: number; headers: string[]; body: Buffer };

/** Sends the check request; never rejects. */
export async function checkExtAuthz(p: CompiledExtAuthz, r: CheckRequest): Promise<CheckResult> {
  const endpoint = p.cluster === null || p.cluster.discovery === 'missing' ? null : selectEndpoint(p.cluster, Math.random);
  if (endpoint === null || endpoint.handle === null) return onError(p);
  const built = buildUpstreamRequestHeaders(r.rawHeaders, r.authority, r.authority, r.scheme, r.remoteAddress);
  const headers: string[] = [];
  const h = built.headers;
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i].toLowerCase();
    if (ALWAYS_SENT.has(n) || (p.requestHeaders !== null && p.requestHeaders(n) && n !== 'content-length')) headers.push(n, h[i + 1]);
  }
  headers.push(...p.additionalHeaders);
  const signal = AbortSignal.timeout(p.timeoutMs);
  try {
    const res = await (await endpoint.handle.fetcher()).request({ method: r.method, path: `${p.pathPrefix}${r.target}`, headers, signal, headersTimeout: 0, bodyTimeout: 0 });
    if (res.statusCode === 200) {
      await res.body.dump();
      const upstreamHeaders: [string, string][] = [];
      if (p.toUpstream !== null) {
        for (const [n, v] of Object.entries(res.headers)) {
          if (v === undefined || HOP_BY_HOP.has(n) || !p.toUpstream(n)) continue;
          upstreamHeaders.push([n, Array.isArray(v) ? v.join(',') : v]);
        }
      }
      return { allowed: true, upstreamHeaders };
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of res.body) {
      const b = c as Buffer;
      if (size + b.length > MAX_DENY_BODY) {
        chunks.push(b.subarray(0, MAX_DENY_BODY - size));
        size = MAX_DENY_BODY;
        res.body.destroy();
        break;
      }
      chunks.push(b);
      size += b.length;
    }
    const out: string[] = [];
    for (const [n, v] of Object.entries(res.headers)) {
      if (v === undefined || HOP_BY_HOP.has(n) || n === 'server' || n === 'date') continue;
      if (p.toDownstream !== null && !p.toDownstream(n)) continue;
      for (const one of Array.isArray(v) ? v : [v]) out.push(n, one);
    }
    return { allowed: false, status: res.statusCode, headers: out, body: Buffer.concat(chunks, size) };
  } catch {
    return onError(p);
  }
}

function onError(p: CompiledExtAuthz): CheckResult {
  return p.failOpen ? { allowed: true, upstreamHeaders: [] } : { allowed: false, status: p.statusOnError, headers: [], body: EMPTY };
}

const EMPTY = Buffer.alloc(0);

