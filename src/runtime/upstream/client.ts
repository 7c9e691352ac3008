/**
 * The upstream client seam: what the request path (Exchange, UpstreamCall, mirrors) calls to send
 * one request to one endpoint, whatever carries it (meshgate's HTTP/1.1 pool `h1-client.ts`, the
 * node:http2 sessions of `h2-client.ts`, TLS origination in both).
 *
 * The calling protocol is undici's legacy dispatch/handler split (the model named in
 * docs/architecture.md): `dispatch(request, handler)` and five callbacks. It needs no Promise and
 * no per-request object beyond the request and its handler; the handler is usually the Exchange
 * itself.
 *
 * Failures reach `onError` with the `code` strings the classifiers of `http/local-reply.ts` and
 * `upstream/upstream-call.ts` read (a refused connection `ECONNREFUSED`, a connect timeout
 * `UND_ERR_CONNECT_TIMEOUT`, a peer that closed mid-exchange `UND_ERR_SOCKET`, a malformed answer
 * `HPE_*`, TLS verification codes as Node raises them), so response flags and details are the same
 * whichever engine carried the request.
 */

import type { Readable } from 'node:stream';
import type { Dispatcher } from 'undici';

/** One request to an endpoint. */
export interface UpstreamRequest {
  /** Request target (path and query). */
  path: string;
  method: string;
  /**
   * Final upstream request headers as flat `[name, value, ...]` pairs with lowercase names,
   * including `host`. A `content-length` frames the body; a body without one is sent chunked.
   */
  headers: string[];
  /** Streamed with back-pressure; a Buffer is sent whole (with a Content-Length); null = none. */
  body: Readable | Buffer | null;
  /**
   * Send as HTTP/1.0 (ingress-nginx proxy-http-version "1.0"): `HTTP/1.0` request line, no
   * Connection header, the connection not reused, and a body without Content-Length read whole
   * first (no chunked coding in HTTP/1.0). HTTP/1.1 clients only; HTTP/2 ignores it.
   */
  http10?: boolean;
  /** Most body bytes read into memory for `http10` (default 16 MiB); more: `MG_ERR_BODY_TOO_LARGE`. */
  http10BodyLimit?: number;
}

/** Trailers of a response: flat `[name, value, ...]` Buffers (HTTP/1.1) or a headers object (HTTP/2). */
export type UpstreamTrailers = Buffer[] | Record<string, string | string[] | undefined> | null;

/** Receives the outcome of one dispatched request. Exactly one of onComplete / onError ends it. */
export interface UpstreamHandler {
  /**
   * Called once, synchronously from `dispatch`. `abort(err)` ends the request at any point (queued,
   * connecting, sending, receiving): the handler then gets `onError(err)` unless it already ended.
   */
  onConnect(abort: (err?: Error) => void): void;
  /**
   * The final response head (interim 1xx answers are not reported). `rawHeaders` are flat name /
   * value Buffers as received. Returning false pauses reading until `resume()` is called.
   */
  onHeaders(statusCode: number, rawHeaders: string[], resume: () => void): boolean;
  /** A piece of the response body; false pauses reading until `resume()`. */
  onData(chunk: Buffer): boolean;
  /** The response ended, with its trailers (null when none). */
  onComplete(trailers: UpstreamTrailers): void;
  /** The request failed; `err.code` says how (see the file comment). */
  onError(err: Error): void;
}

/** Live counters of a client (the `meshgate_upstream_pool_*` metrics). */
export interface UpstreamClientStats {
  /** Open connections (HTTP/1.1 sockets or HTTP/2 sessions), including those still connecting. */
  connected: number;
  /** Requests waiting for a connection or a stream slot. */
  pending: number;
  /** Requests sent and not finished. */
  running: number;
}

/** A client of one endpoint (one per endpoint key, reused across snapshot swaps). */
export interface UpstreamClient {
  /** Sends `request`; the outcome goes to `handler`. Returns false when the client is closed (the handler got onError). */
  dispatch(request: UpstreamRequest, handler: UpstreamHandler): boolean;
  readonly stats: UpstreamClientStats;
  /** True once `close` or `destroy` was called. */
  readonly closed: boolean;
  /** Stops taking requests; resolves when the requests in flight and queued have finished. */
  close(): Promise<void>;
  /** Ends every connection now; requests in flight fail with `UND_ERR_DESTROYED`. */
  destroy(): Promise<void>;
}

/**
 * The undici dispatcher of an endpoint, kept for the few callers that want undici's Promise API off
 * the hot path (ext-authz checks). Created on first use.
 */
export type UpstreamFetcher = Pick<Dispatcher, 'request'>;

/** An error with a stable `code` (the classifiers read it). */
export function upstreamError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

/** Methods whose requests carry a body: without one they are sent with `content-length: 0` (as undici does). */
export function expectsPayload(method: string): boolean {
  return method === 'POST' || method === 'PUT' || method === 'PATCH' || method === 'QUERY' || method === 'PROPFIND' || method === 'PROPPATCH';
}
