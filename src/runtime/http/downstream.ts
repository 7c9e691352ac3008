/**
 * The downstream exchange: what the request path (routing, filters, policies, the proxy, gRPC,
 * WebSocket, observability) sees of one client request and its response, whatever engine carries
 * it (docs/architecture.md, "The engines behind seams"). Engines implement it:
 * `node-downstream.ts` over node:http's and node:http2's compatibility objects; meshgate's own
 * HTTP/1.1 engine (`runtime/h1/`) over raw sockets.
 *
 * The request path keeps its per-request state in the fields below (`record`, `owner`,
 * `replyHeaders`, `upgrade`) instead of hidden symbol or WeakMap slots on engine objects, and
 * never reaches past this interface to a socket except through `upgrade` (a WebSocket takes the
 * connection over).
 *
 * A response is one of:
 * - `respond(status, headers, body)`: a complete response in one call (local replies);
 * - `writeHead(status, headers)`, then `write(chunk)` (false = wait for `owner.drained()`), then
 *   `end(trailers)`: a streamed response (the proxy).
 * Either way the engine remembers the status and headers it sent (`status`, `sentHeaders`): logs
 * and metrics read what actually went out.
 */

import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { ServerHttp2Stream } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import type { RequestRecord } from '../../observability/record.js';
import type { CompiledProxyHeaders } from './proxy-headers.js';

/** Told by the engine about the response's progress (the Exchange implements it). */
export interface DownstreamOwner {
  /** The engine can take more body bytes after `write` returned false. */
  drained(): void;
  /** The response is over: completed, reset, or the client went away. */
  responseClosed(): void;
}

/** A WebSocket upgrade on its way through the request path (websocket.ts). */
export interface PendingUpgrade {
  /** The HTTP/1.1 connection the upgrade came on, taken over from the engine; null for an HTTP/2 extended CONNECT stream. */
  socket: Socket | null;
  /** Bytes the engine read past the request head. */
  head: Buffer;
  /** The HTTP/2 stream of an extended CONNECT; null on HTTP/1.1. */
  stream: ServerHttp2Stream | null;
}

export interface Downstream {
  // ---- request head ----
  /** Request method as sent (an HTTP/2 extended CONNECT for WebSocket is rewritten to GET). */
  method: string;
  /** Request target as sent: origin-form, absolute-form, or `*`. */
  readonly target: string;
  /** Request header lines, flat `[name, value, ...]` as received (HTTP/2: pseudo-headers included). Replaced when headers are dropped. */
  rawHeaders: string[];
  /** The request came on an HTTP/2 stream (an HTTP/1 request line claiming `HTTP/2.0` does not). */
  readonly http2: boolean;
  /** Version of the request as sent: 1 (or what an HTTP/1 request line claimed), 2 on HTTP/2. */
  readonly versionMajor: number;
  /** 0 or 1 on HTTP/1; 0 on HTTP/2. */
  readonly versionMinor: number;
  /** The request announced a body (Content-Length > 0, chunked, or an HTTP/2 HEADERS frame without END_STREAM). */
  readonly hasBody: boolean;
  /** The request body as a stream (empty when none). */
  readonly body: Readable;
  /** The first value of a request header (lowercase `name`), or null. */
  header(name: string): string | null;

  // ---- connection facts ----
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** The TLS socket of the connection (HTTP/2: the session's), or null for plaintext. SNI, ALPN and the client certificate come from it. */
  readonly tls: TLSSocket | null;

  // ---- response ----
  /** Status sent; 0 until a head was sent. */
  readonly status: number;
  /** Header lines sent with the head (flat pairs, as given to the engine); null until a head was sent. */
  readonly sentHeaders: string[] | null;
  readonly headersSent: boolean;
  /** `end` (or `respond`) was called. */
  readonly ended: boolean;
  /** The whole response was handed to the connection (not reset, not cut by the client). */
  readonly finished: boolean;
  /** The response was reset or the client went away. */
  readonly destroyed: boolean;
  /** Close the connection after this response (HTTP/1; HTTP/2 streams are independent). */
  closeAfterResponse(): void;
  /** Close after this response and never serve what the client pipelined behind it (hardening H1-09). */
  rejectConnection(): void;
  /** An earlier request on this connection was refused (rejectConnection): nothing more is served. */
  readonly connectionRejected: boolean;
  /** A complete response. With an empty body on HTTP/2 it is one HEADERS frame that ends the stream. */
  respond(status: number, headers: string[], body: Buffer | null): void;
  /** The head of a streamed response. */
  writeHead(status: number, headers: string[]): void;
  /** A body chunk; false when the engine buffers beyond its mark (then wait for `owner.drained()`). */
  write(chunk: Buffer): boolean;
  /** Ends a streamed response, with trailers (flat pairs; relayed on HTTP/2, dropped on HTTP/1.1 as before). */
  end(chunk?: Buffer | null, trailers?: string[] | null): void;
  /** Aborts the response: the client sees a reset, never a truncated body presented as complete. */
  reset(err?: Error): void;

  // ---- per-request slots of the request path ----
  /** Observability's record of this request; null when observability is off. */
  record: RequestRecord | null;
  /** The proxy (Exchange) following this response; null when none. */
  owner: DownstreamOwner | null;
  /** Headers every local reply to this request carries (CORS of the matched route); null = none. */
  replyHeaders: string[] | null;
  /** The listener's ProxyConfig `proxyHeaders` (proxy-headers.ts), set by `handleRequest`; null = the defaults. */
  proxyHeaders: CompiledProxyHeaders | null;
  /** A WebSocket upgrade waiting for its route; null when the request is no upgrade. */
  upgrade: PendingUpgrade | null;
  /** Called once when the response is over (completed, reset or abandoned): per-client counters of filters; null = none. */
  closeHooks: (() => void)[] | null;
}

/** First value of header `name` (lowercase) in a flat list, or null. */
export function findHeader(raw: string[], name: string): string | null {
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n.length === name.length && (n === name || n.toLowerCase() === name)) return raw[i + 1];
  }
  return null;
}

/** Every line of a request header (lowercase name). */
export function headerLines(d: Downstream, name: string): string[] {
  const raw = d.rawHeaders;
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n.length === name.length && n.toLowerCase() === name) out.push(raw[i + 1]);
  }
  return out;
}

/** An address as clients and policies see it: IPv4-mapped IPv6 (`::ffff:1.2.3.4`) as plain IPv4. */
export function plainAddress(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

/** The value of a header the engine sent (lowercase `name`, repeated lines joined with `,`), or null. */
export function sentHeader(d: Downstream, name: string): string | null {
  const h = d.sentHeaders;
  if (h === null) return null;
  let out: string | null = null;
  for (let i = 0; i < h.length; i += 2) {
    const n = h[i];
    if (n.length === name.length && n.toLowerCase() === name) out = out === null ? h[i + 1] : `${out},${h[i + 1]}`;
  }
  return out;
}

/**
 * What every engine does when a response is over: the record is finished first (it reads what
 * was sent), then the owner (the proxy) lets go of its upstream request.
 */
export function closeDownstream(d: Downstream): void {
  const rec = d.record;
  if (rec !== null) {
    d.record = null;
    rec.closed(d);
  }
  const owner = d.owner;
  if (owner !== null) {
    d.owner = null;
    owner.responseClosed();
  }
  const hooks = d.closeHooks;
  if (hooks !== null) {
    d.closeHooks = null;
    for (const h of hooks) h();
  }
}

/** Runs `hook` once when the response of `d` is over. */
export function onDownstreamClose(d: Downstream, hook: () => void): void {
  (d.closeHooks ??= []).push(hook);
}
