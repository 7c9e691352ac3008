/**
 * Custom error pages (IR `ErrorPages`, ingress-nginx `custom-http-errors` + default backend).
 *
 * For a request whose route has error pages, the response is watched as it is written: when its
 * status is one of `codes`, the status, headers and body are held back, and once it is complete a
 * `GET /` goes to the error backend with `x-code`, `x-format`, `x-original-uri`, `x-request-id`
 * and the fixed headers; the client gets that answer instead (status, content type, body up to
 * MAX_PAGE bytes). Answers with other statuses pass through untouched and are never buffered.
 */

import type { Downstream } from '../http/downstream.js';
import type { ErrorPages } from '../../ir/types.js';
import type { CompiledCluster } from '../compile/types.js';
import { applyLocalReplyPolicy, FLAGS_HEADER, SERVER_NAME } from '../http/local-reply.js';
import { selectEndpoint } from '../upstream/load-balancer.js';

/** Largest error page relayed; the rest is dropped. */
const MAX_PAGE = 1024 * 1024;
const TIMEOUT_MS = 10_000;

export interface CompiledErrorPages {
  codes: Set<number>;
  cluster: CompiledCluster | null;
  /** Flat `[name, value, ...]`. */
  headers: string[];
}

export function compileErrorPages(e: ErrorPages, clusters: ReadonlyMap<string, CompiledCluster>): CompiledErrorPages {
  const headers: string[] = [];
  for (const h of e.headers) headers.push(h.name, h.value);
  return { codes: new Set(e.codes), cluster: clusters.get(e.cluster) ?? null, headers };
}

/** What the interception reads from the request. */
export interface ErrorPageInput {
  readonly d: Downstream;
  readonly path: string;
  readonly query: string;
  header(name: string): string | null;
}

/**
 * Watches `x.d` (this request's downstream exchange): a listed status is held back with its headers
 * and body, and replaced by the error backend's page once the response would have ended.
 */
export function interceptErrors(c: CompiledErrorPages, x: ErrorPageInput): void {
  const d = x.d;
  const writeHead = d.writeHead;
  const write = d.write;
  const end = d.end;
  const respond = d.respond;
  let held = 0;
  const restore = (): void => {
    d.writeHead = writeHead;
    d.write = write;
    d.end = end;
    d.respond = respond;
  };
  const replace = (status: number): void => {
    restore();
    fetchPage(c, x, status)
      .catch(() => ({ status, contentType: null, body: Buffer.alloc(0) }))
      .then((page) => {
        if (d.destroyed || d.headersSent) return;
        const h: string[] = ['server', SERVER_NAME, 'content-length', String(page.body.length), FLAGS_HEADER, 'custom-error'];
        if (page.contentType !== null) h.push('content-type', page.contentType);
        if (d.proxyHeaders !== null) applyLocalReplyPolicy(h, d.proxyHeaders);
        respond.call(d, page.status, h, page.body);
      });
  };
  d.respond = function (this: Downstream, status: number, headers: string[], body: Buffer | null): void {
    if (held === 0 && c.codes.has(status)) return replace(status);
    restore();
    respond.call(this, status, headers, body);
  };
  d.writeHead = function (this: Downstream, status: number, headers: string[]): void {
    if (held === 0 && c.codes.has(status)) {
      held = status;
      return;
    }
    restore();
    writeHead.call(this, status, headers);
  };
  d.write = function (this: Downstream, chunk: Buffer): boolean {
    // A held answer's body is dropped (the page replaces it); never pause the upstream for it.
    if (held !== 0) return true;
    return write.call(this, chunk);
  };
  d.end = function (this: Downstream, chunk?: Buffer | null, trailers?: string[] | null): void {
    if (held === 0) {
      restore();
      return end.call(this, chunk, trailers);
    }
    replace(held);
  };
}

async function fetchPage(c: CompiledErrorPages, x: ErrorPageInput, status: number): Promise<{ status: number; contentType: string | null; body: Buffer }> {
  const fallback = { status, contentType: null, body: Buffer.alloc(0) };
  const endpoint = c.cluster === null || c.cluster.discovery === 'missing' ? null : selectEndpoint(c.cluster, Math.random);
  if (endpoint === null || endpoint.handle === null) return fallback;
  const headers = [
    'x-code', String(status),
    'x-format', x.header('accept') ?? 'text/html',
    'x-original-uri', x.query === '' ? x.path : `${x.path}?${x.query}`,
    ...(x.header('x-request-id') !== null ? ['x-request-id', x.header('x-request-id')!] : []),
    ...c.headers,
  ];
  try {
    const r = await (await endpoint.handle.fetcher()).request({ method: 'GET', path: '/', headers, signal: AbortSignal.timeout(TIMEOUT_MS), headersTimeout: 0, bodyTimeout: 0 });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of r.body) {
      const b = chunk as Buffer;
      if (size + b.length > MAX_PAGE) {
        chunks.push(b.subarray(0, MAX_PAGE - size));
        size = MAX_PAGE;
        r.body.destroy();
        break;
      }
      chunks.push(b);
      size += b.length;
    }
    const ct = r.headers['content-type'];
    return { status: r.statusCode, contentType: ct === undefined ? null : Array.isArray(ct) ? ct[0] : ct, body: Buffer.concat(chunks, size) };
  } catch {
    return fallback;
  }
}
