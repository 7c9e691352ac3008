/**
 * The downstream exchange (downstream.ts) over Node's own engines: node:http's `IncomingMessage`
 * and `ServerResponse` (HTTP/1.1, selected with `--http1-engine node`), and node:http2's
 * compatibility objects `Http2ServerRequest` / `Http2ServerResponse` (HTTP/2). Everything engine
 * specific about those objects lives here; the request path sees only `Downstream`.
 */

import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Http2ServerRequest, OutgoingHttpHeaders, ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { RequestRecord } from '../../observability/record.js';
import { closeDownstream, type Downstream, type DownstreamOwner, type PendingUpgrade } from './downstream.js';
import { SERVER_NAME } from './local-reply.js';

const kDownstream = Symbol('meshgate.downstream');
type TaggedResponse = ServerResponse & { [kDownstream]?: NodeDownstream };

const kRejected = Symbol('meshgate.rejected');
type TaggedSocket = Socket & { [kRejected]?: true };

export class NodeDownstream implements Downstream {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** HTTP/2 stream of the compatibility objects; null on HTTP/1. */
  readonly #stream: ServerHttp2Stream | null;
  method: string;
  rawHeaders: string[];
  record: RequestRecord | null = null;
  owner: DownstreamOwner | null = null;
  replyHeaders: string[] | null = null;
  closeHooks: (() => void)[] | null = null;
  upgrade: PendingUpgrade | null = null;
  #status = 0;
  #sent: string[] | null = null;
  /** respond() ended an HTTP/2 stream with its HEADERS frame (the compat response never sees it finish). */
  #endedOnHeaders = false;
  #draining = false;

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.req = req;
    this.res = res;
    this.method = req.method ?? 'GET';
    this.rawHeaders = req.rawHeaders;
    this.#stream = req.httpVersionMajor === 2 ? ((req as unknown as Partial<Http2ServerRequest>).stream ?? null) : null;
    (res as TaggedResponse)[kDownstream] = this;
    res.on('close', onResponseClose);
  }

  // ---- request head ----
  get target(): string {
    return this.req.url ?? '/';
  }
  get http2(): boolean {
    return this.#stream !== null;
  }
  get versionMajor(): number {
    return this.req.httpVersionMajor;
  }
  get versionMinor(): number {
    return this.req.httpVersionMinor;
  }
  get hasBody(): boolean {
    if (this.#stream !== null) return this.#stream.endAfterHeaders !== true;
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i].length;
      if (n !== 14 && n !== 17) continue;
      const l = raw[i].toLowerCase();
      if (l === 'content-length' || l === 'transfer-encoding') return true;
    }
    return false;
  }
  get body(): Readable {
    return this.req;
  }
  header(name: string): string | null {
    const raw = this.rawHeaders;
    for (let i = 0; i < raw.length; i += 2) {
      const n = raw[i];
      if (n.length === name.length && (n === name || n.toLowerCase() === name)) return raw[i + 1];
    }
    return null;
  }

  // ---- connection facts ----
  get remoteAddress(): string {
    return this.req.socket.remoteAddress ?? '';
  }
  get remotePort(): number {
    return this.req.socket.remotePort ?? 0;
  }
  get localAddress(): string {
    return this.req.socket.localAddress ?? '';
  }
  get localPort(): number {
    return this.req.socket.localPort ?? 0;
  }
  get tls(): TLSSocket | null {
    // HTTP/2: the session's socket (req.socket is a proxy per stream). An HTTP/1 request line
    // claiming `HTTP/2.0` has no stream: its own socket.
    const s = (this.#stream?.session?.socket ?? this.req.socket) as TLSSocket | null;
    return s !== null && s.encrypted === true ? s : null;
  }

  // ---- response ----
  get status(): number {
    return this.#status;
  }
  get sentHeaders(): string[] | null {
    return this.#sent;
  }
  get headersSent(): boolean {
    return this.res.headersSent || this.#endedOnHeaders;
  }
  get ended(): boolean {
    return this.res.writableEnded || this.#endedOnHeaders;
  }
  get finished(): boolean {
    return this.res.writableFinished || (this.#endedOnHeaders && this.#stream !== null && this.#stream.rstCode === 0);
  }
  get destroyed(): boolean {
    return this.#stream !== null ? this.#stream.destroyed : this.res.destroyed;
  }
  closeAfterResponse(): void {
    if (this.#stream === null) this.res.shouldKeepAlive = false;
  }
  rejectConnection(): void {
    if (this.#stream !== null) return;
    this.res.shouldKeepAlive = false;
    const socket = this.res.socket as TaggedSocket | null;
    if (socket !== null) socket[kRejected] = true;
  }
  get connectionRejected(): boolean {
    if (this.#stream !== null) return false;
    return (this.req.socket as TaggedSocket | null)?.[kRejected] === true;
  }

  respond(status: number, headers: string[], body: Buffer | null): void {
    const stream = this.#stream;
    if (stream !== null && (body === null || body.length === 0)) {
      if (stream.headersSent || stream.destroyed) return;
      this.#status = status;
      this.#sent = headers;
      this.#endedOnHeaders = true;
      stream.respond(headerObject(status, headers), { endStream: true });
      return;
    }
    this.#status = status;
    this.#sent = headers;
    this.res.writeHead(status, headers);
    if (body === null) this.res.end();
    else this.res.end(body);
  }

  writeHead(status: number, headers: string[]): void {
    this.#status = status;
    this.#sent = headers;
    this.res.writeHead(status, headers);
  }

  write(chunk: Buffer): boolean {
    const ok = this.res.write(chunk);
    if (!ok && !this.#draining) {
      this.#draining = true;
      this.res.on('drain', onResponseDrain);
    }
    return ok;
  }

  end(chunk?: Buffer | null, trailers?: string[] | null): void {
    if (trailers != null && trailers.length > 0 && this.#stream !== null) {
      const obj: Record<string, string | string[]> = {};
      for (let i = 0; i < trailers.length; i += 2) {
        const prev = obj[trailers[i]];
        obj[trailers[i]] = prev === undefined ? trailers[i + 1] : Array.isArray(prev) ? [...prev, trailers[i + 1]] : [prev, trailers[i + 1]];
      }
      this.res.addTrailers(obj);
    }
    if (chunk != null && chunk.length > 0) this.res.end(chunk);
    else this.res.end();
  }

  reset(err?: Error): void {
    this.res.destroy(err);
  }
}

/** HTTP/2 header object (`:status` plus repeated names as arrays) from a flat list. */
function headerObject(status: number, headers: string[]): OutgoingHttpHeaders {
  const obj: OutgoingHttpHeaders = { ':status': status };
  for (let i = 0; i < headers.length; i += 2) {
    const prev = obj[headers[i]];
    obj[headers[i]] = prev === undefined ? headers[i + 1] : Array.isArray(prev) ? [...prev, headers[i + 1]] : [String(prev), headers[i + 1]];
  }
  return obj;
}

function onResponseClose(this: TaggedResponse): void {
  const d = this[kDownstream];
  if (d === undefined) return;
  this[kDownstream] = undefined;
  closeDownstream(d);
}

function onResponseDrain(this: TaggedResponse): void {
  const d = this[kDownstream];
  if (d !== undefined && d.owner !== null) d.owner.drained();
}

const NO_BYTES = Buffer.alloc(0);

/**
 * The `upgrade` event of node:http's engine. `serve` runs the normal request path with a response
 * written straight onto the socket; a WebSocket upgrade waits in `d.upgrade` for its route
 * (websocket.ts). Other Upgrade values (h2c, TLS/1.0) are ignored and the request is served as is.
 */
export function acceptUpgrade(req: IncomingMessage, socket: Socket, head: Buffer, serve: (d: Downstream) => void): void {
  socket.on('error', destroyQuietly);
  const res = new ServerResponse(req);
  res.assignSocket(socket);
  // The parser has let go of this socket: after a local answer it is closed.
  res.shouldKeepAlive = false;
  res.once('finish', () => socket.end());
  const d = new NodeDownstream(req, res);
  const value = String(req.headers.upgrade ?? '').toLowerCase();
  if (value === 'websocket') d.upgrade = { socket, head, stream: null };
  serve(d);
}

/**
 * The `connect` event of the HTTP/2 engine (a CONNECT stream, seen through the compatibility API).
 * Extended CONNECT for `websocket` (RFC 8441 §4) runs the request path as a `GET`; anything else is
 * 405, as Node answers CONNECT when nobody handles it.
 */
export function acceptExtendedConnect(req: IncomingMessage, res: ServerResponse, serve: (d: Downstream) => void): void {
  const d = new NodeDownstream(req, res);
  const protocol = d.header(':protocol');
  if (protocol === null || protocol.toLowerCase() !== 'websocket') {
    d.respond(405, ['server', SERVER_NAME, 'content-length', '0'], null);
    return;
  }
  // Envoy routes an extended CONNECT as the HTTP/1.1 upgrade it stands for (method GET).
  d.method = 'GET';
  d.upgrade = { socket: null, head: NO_BYTES, stream: (req as unknown as Http2ServerRequest).stream };
  serve(d);
}

function destroyQuietly(this: Socket): void {
  this.destroy();
}
