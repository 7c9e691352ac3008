/**
 * HTTP/2 downstream requests on node:http2's core stream API (`session.on('stream')`), not its
 * compatibility layer (`Http2ServerRequest`/`Http2ServerResponse`, which builds two stream
 * objects and a headers object per request on top of the stream): one `H2Downstream` per stream,
 * the request head from the stream's flat raw header list, the response through `stream.respond`,
 * `stream.write`/`end`, and trailers through `wantTrailers`/`sendTrailers`.
 */

import http2, { type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { RequestRecord } from '../../observability/record.js';
import { closeDownstream, type Downstream, type DownstreamOwner, type PendingUpgrade } from '../http/downstream.js';
import { SERVER_NAME } from '../http/local-reply.js';
import { H2_CONNECTION_SPECIFIC, H2_SINGLE_VALUE, isHeaderField } from '../../lib/header-chars.js';
import type { CompiledProxyHeaders } from '../http/proxy-headers.js';

const { NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR } = http2.constants;

const kDownstream = Symbol('meshgate.h2');
type TaggedStream = ServerHttp2Stream & { [kDownstream]?: H2Downstream };

export class H2Downstream implements Downstream {
  readonly #stream: ServerHttp2Stream;
  method: string;
  readonly target: string;
  rawHeaders: string[];
  readonly hasBody: boolean;
  record: RequestRecord | null = null;
  owner: DownstreamOwner | null = null;
  replyHeaders: string[] | null = null;
  proxyHeaders: CompiledProxyHeaders | null = null;
  closeHooks: (() => void)[] | null = null;
  upgrade: PendingUpgrade | null = null;
  #status = 0;
  #sent: string[] | null = null;
  #ended = false;
  #noBody = false;
  #trailers: OutgoingHttpHeaders | null = null;
  #draining = false;
  #body: Readable | null = null;
  #bodyEnded = false;

  constructor(stream: ServerHttp2Stream, rawHeaders: string[]) {
    this.#stream = stream;
    this.rawHeaders = rawHeaders;
    let method = 'GET';
    let target = '';
    for (let i = 0; i < rawHeaders.length; i += 2) {
      const n = rawHeaders[i];
      if (n.charCodeAt(0) !== 58) break; // pseudo-headers come first (RFC 9113 §8.3)
      if (n === ':method') method = rawHeaders[i + 1];
      else if (n === ':path') target = rawHeaders[i + 1];
    }
    this.method = method;
    this.target = target;
    this.hasBody = stream.endAfterHeaders !== true;
    (stream as TaggedStream)[kDownstream] = this;
    stream.on('close', onStreamClose);
    stream.on('error', noop);
  }

  /** The stream (WebSocket over HTTP/2 splices it). */
  get stream(): ServerHttp2Stream {
    return this.#stream;
  }

  // ---- request head ----
  get http2(): boolean {
    return true;
  }
  get versionMajor(): number {
    return 2;
  }
  get versionMinor(): number {
    return 0;
  }
  /**
   * The request body as a plain Readable fed from the stream's 'data' events (back-pressure kept:
   * the stream is paused while the body's buffer is full and resumed when it is read), without a
   * PassThrough and a pipe in between. Not the stream itself: the upstream client destroys a body
   * it has read, which must not reset the stream the response still goes out on. A client that
   * resets the stream aborts the body.
   */
  get body(): Readable {
    let b = this.#body;
    if (b === null) {
      const stream = this.#stream as TaggedStream;
      b = this.#body = new Readable({ read: resumeStream.bind(stream) });
      // Its consumer (the upstream client) listens for the abort; with none left, it is not an uncaught error.
      b.on('error', noop);
      stream.on('data', onStreamData);
      stream.on('end', onStreamEnd);
    }
    return b;
  }

  /** A chunk of the request body from the stream; false: the body's buffer is full. */
  bodyData(chunk: Buffer): boolean {
    const b = this.#body;
    return b === null || b.destroyed || b.push(chunk);
  }

  bodyEnd(): void {
    this.#bodyEnded = true;
    const b = this.#body;
    if (b !== null && !b.destroyed) b.push(null);
  }
  header(name: string): string | null {
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i];
      if (n.length === name.length && (n === name || n.toLowerCase() === name)) return raw[i + 1];
    }
    return null;
  }

  // ---- connection facts (the session's socket) ----
  get remoteAddress(): string {
    return this.#stream.session?.socket?.remoteAddress ?? '';
  }
  get remotePort(): number {
    return this.#stream.session?.socket?.remotePort ?? 0;
  }
  get localAddress(): string {
    return this.#stream.session?.socket?.localAddress ?? '';
  }
  get localPort(): number {
    return this.#stream.session?.socket?.localPort ?? 0;
  }
  get tls(): TLSSocket | null {
    const s = this.#stream.session?.socket as TLSSocket | undefined;
    return s !== undefined && s.encrypted === true ? s : null;
  }

  // ---- response ----
  get status(): number {
    return this.#status;
  }
  get sentHeaders(): string[] | null {
    return this.#sent;
  }
  get headersSent(): boolean {
    return this.#sent !== null || this.#stream.headersSent;
  }
  get ended(): boolean {
    return this.#ended;
  }
  get finished(): boolean {
    return this.#ended && this.#stream.rstCode === NGHTTP2_NO_ERROR;
  }
  get destroyed(): boolean {
    return this.#stream.destroyed;
  }
  /** HTTP/2 streams are independent: nothing to close. */
  closeAfterResponse(): void {}
  rejectConnection(): void {}
  get connectionRejected(): boolean {
    return false;
  }

  respond(status: number, headers: string[], body: Buffer | null): void {
    const stream = this.#stream;
    if (this.headersSent || stream.destroyed) return;
    if (status < 200 || status > 599) status = 502; // HTTP/2 carries no other final status (node:http2 throws)
    this.#status = status;
    this.#sent = headers;
    this.#ended = true;
    const noBody = body === null || body.length === 0 || this.method === 'HEAD' || status === 204 || status === 304;
    if (!this.#respond(status, headers, { endStream: noBody })) return;
    if (!noBody) stream.end(body);
  }

  writeHead(status: number, headers: string[]): void {
    const stream = this.#stream;
    if (this.headersSent || stream.destroyed) return;
    if (status < 200 || status > 599) status = 502; // HTTP/2 carries no other final status (node:http2 throws)
    this.#status = status;
    this.#sent = headers;
    this.#noBody = this.method === 'HEAD' || status === 204 || status === 304;
    if (this.#noBody) {
      this.#ended = true;
      this.#respond(status, headers, { endStream: true });
      return;
    }
    // Trailers (gRPC's grpc-status) are known only at the end: always ask for the chance to send them.
    if (this.#respond(status, headers, { waitForTrailers: true })) stream.once('wantTrailers', onWantTrailers);
  }

  /**
   * `stream.respond` that never throws: `headerObject` already leaves out what node:http2 refuses,
   * so a throw here is a case it missed. The stream is reset (INTERNAL_ERROR) and the request
   * flagged, instead of the exception leaving an upstream socket's 'data' handler and ending the
   * worker. False: the stream was reset.
   */
  #respond(status: number, headers: string[], options: { endStream?: boolean; waitForTrailers?: boolean }): boolean {
    const stream = this.#stream;
    try {
      stream.respond(headerObject(status, headers), options);
      return true;
    } catch (err) {
      this.#failed(err);
      return false;
    }
  }

  #failed(err: unknown): void {
    this.#noBody = true;
    this.#ended = true;
    const rec = this.record;
    if (rec !== null) {
      const flag = 'UPE';
      if (!rec.flags.split(',').includes(flag)) rec.flags = rec.flags === '-' ? flag : `${rec.flags},${flag}`;
      if (rec.details === null) rec.details = `h2_response_refused{${(err as { code?: string }).code ?? 'error'}}`;
    }
    if (!this.#stream.destroyed) this.#stream.close(NGHTTP2_INTERNAL_ERROR);
  }

  write(chunk: Buffer): boolean {
    const stream = this.#stream;
    if (this.#noBody || this.#ended || stream.destroyed) return true;
    const ok = stream.write(chunk);
    if (!ok && !this.#draining) {
      this.#draining = true;
      stream.on('drain', onStreamDrain);
    }
    return ok;
  }

  end(chunk?: Buffer | null, trailers?: string[] | null): void {
    const stream = this.#stream;
    if (this.#ended || stream.destroyed) return;
    if (this.#sent === null) this.writeHead(200, []);
    if (this.#noBody) return;
    this.#ended = true;
    if (trailers != null && trailers.length > 0) this.#trailers = headerObject(-1, trailers);
    if (chunk != null && chunk.length > 0) stream.end(chunk);
    else stream.end();
  }

  reset(_err?: Error): void {
    const stream = this.#stream;
    if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
  }

  /** 'wantTrailers': the body is out; the trailers (or none) end the stream. */
  sendTrailers(): void {
    const stream = this.#stream;
    if (stream.destroyed) return;
    try {
      stream.sendTrailers(this.#trailers ?? {});
    } catch {
      // Trailers node:http2 still refuses: end without them; if even that fails, reset the stream.
      try {
        stream.sendTrailers({});
      } catch (err) {
        this.#failed(err);
      }
    }
  }

  drained(): void {
    if (this.owner !== null) this.owner.drained();
  }

  /** The stream closed: a request body still incomplete (the client reset the stream) is aborted. */
  streamClosed(): void {
    const b = this.#body;
    if (b !== null && !this.#bodyEnded && !b.destroyed) b.destroy(ABORTED);
  }
}

const ABORTED = Object.assign(new Error('meshgate: the client reset the HTTP/2 stream before the request body was complete'), { code: 'ECONNRESET' });


/**
 * Header object for `respond`/`sendTrailers` (repeated names as arrays); `status` < 0: none
 * (trailers). Leaves out what node:http2 would throw on, as Envoy sends only what HTTP/2 can carry:
 * names that are not tokens and values with CTL characters (RFC 9110 §5), connection-specific
 * fields (RFC 9113 §8.2.2, `te` other than `trailers`), and a repeat of a single-value field (the
 * first value is kept: an HTTP/1 upstream with two Content-Type or Location lines). A status
 * HTTP/2 cannot carry as a final response (not 200-599) becomes 502.
 */
export function headerObject(status: number, headers: string[]): OutgoingHttpHeaders {
  const obj: OutgoingHttpHeaders = Object.create(null) as OutgoingHttpHeaders;
  if (status >= 0) obj[':status'] = status >= 200 && status <= 599 ? status : 502;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i].toLowerCase();
    const value = headers[i + 1];
    if (!isHeaderField(name, value) || H2_CONNECTION_SPECIFIC.has(name)) continue;
    if (name === 'te' && value.trim().toLowerCase() !== 'trailers') continue;
    const prev = obj[name];
    if (prev === undefined) obj[name] = value;
    else if (H2_SINGLE_VALUE.has(name)) continue;
    else if (Array.isArray(prev)) prev.push(value);
    else obj[name] = [prev as string, value];
  }
  return obj;
}

function onStreamClose(this: TaggedStream): void {
  const d = this[kDownstream];
  if (d === undefined) return;
  this[kDownstream] = undefined;
  d.streamClosed();
  closeDownstream(d);
}

function onStreamData(this: TaggedStream, chunk: Buffer): void {
  const d = this[kDownstream];
  if (d !== undefined && !d.bodyData(chunk)) this.pause();
}

function onStreamEnd(this: TaggedStream): void {
  this[kDownstream]?.bodyEnd();
}

function resumeStream(this: ServerHttp2Stream): void {
  if (!this.destroyed) this.resume();
}

function onStreamDrain(this: TaggedStream): void {
  this[kDownstream]?.drained();
}

function onWantTrailers(this: TaggedStream): void {
  const d = this[kDownstream];
  if (d !== undefined) d.sendTrailers();
  else if (!this.destroyed) this.sendTrailers({});
}

function noop(): void {}

const NO_BYTES = Buffer.alloc(0);

/**
 * The `stream` event of a listener's HTTP/2 engine: every request, and RFC 8441 extended CONNECT
 * for `websocket` (routed as the `GET` it stands for, then spliced by websocket.ts); any other
 * CONNECT is 405, as before.
 */
export function acceptH2Stream(stream: ServerHttp2Stream, rawHeaders: string[], serve: (d: Downstream) => void): void {
  const d = new H2Downstream(stream, rawHeaders);
  if (d.method === 'CONNECT') {
    const protocol = d.header(':protocol');
    if (protocol === null || protocol.toLowerCase() !== 'websocket') {
      d.respond(405, ['server', SERVER_NAME, 'content-length', '0'], null);
      return;
    }
    d.method = 'GET';
    d.upgrade = { socket: null, head: NO_BYTES, stream };
  }
  serve(d);
}
