/**
 * The downstream exchange (downstream.ts) over node:http's `IncomingMessage` and `ServerResponse`
 * (HTTP/1.1 with `--http1-engine node`). Everything engine specific about those objects lives
 * here; the request path sees only `Downstream`. (HTTP/2 is runtime/h2/h2-downstream.ts.)
 */

import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { RequestRecord } from '../../observability/record.js';
import { closeDownstream, type Downstream, type DownstreamOwner, type PendingUpgrade } from './downstream.js';
import type { CompiledProxyHeaders } from './proxy-headers.js';

const kDownstream = Symbol('meshgate.downstream');
type TaggedResponse = ServerResponse & { [kDownstream]?: NodeDownstream };

const kRejected = Symbol('meshgate.rejected');
type TaggedSocket = Socket & { [kRejected]?: true };

export class NodeDownstream implements Downstream {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  method: string;
  rawHeaders: string[];
  record: RequestRecord | null = null;
  owner: DownstreamOwner | null = null;
  replyHeaders: string[] | null = null;
  proxyHeaders: CompiledProxyHeaders | null = null;
  closeHooks: (() => void)[] | null = null;
  upgrade: PendingUpgrade | null = null;
  #status = 0;
  #sent: string[] | null = null;
  #draining = false;

  constructor(req: IncomingMessage, res: ServerResponse) {
    this.req = req;
    this.res = res;
    this.method = req.method ?? 'GET';
    this.rawHeaders = req.rawHeaders;
    (res as TaggedResponse)[kDownstream] = this;
    res.on('close', onResponseClose);
  }

  // ---- request head ----
  get target(): string {
    return this.req.url ?? '/';
  }
  /** Never: a request line claiming `HTTP/2.0` is an HTTP/1 request (refused by h1-guard.ts). */
  get http2(): boolean {
    return false;
  }
  get versionMajor(): number {
    return this.req.httpVersionMajor;
  }
  get versionMinor(): number {
    return this.req.httpVersionMinor;
  }
  get hasBody(): boolean {
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
    const s = this.req.socket as TLSSocket | null;
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
    return this.res.headersSent;
  }
  get ended(): boolean {
    return this.res.writableEnded;
  }
  get finished(): boolean {
    return this.res.writableFinished;
  }
  get destroyed(): boolean {
    return this.res.destroyed;
  }
  closeAfterResponse(): void {
    this.res.shouldKeepAlive = false;
  }
  rejectConnection(): void {
    this.res.shouldKeepAlive = false;
    const socket = this.res.socket as TaggedSocket | null;
    if (socket !== null) socket[kRejected] = true;
  }
  get connectionRejected(): boolean {
    return (this.req.socket as TaggedSocket | null)?.[kRejected] === true;
  }

  respond(status: number, headers: string[], body: Buffer | null): void {
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

  /** HTTP/1.1 responses are not re-chunked for trailers: they are dropped. */
  end(chunk?: Buffer | null, _trailers?: string[] | null): void {
    if (chunk != null && chunk.length > 0) this.res.end(chunk);
    else this.res.end();
  }

  reset(err?: Error): void {
    this.res.destroy(err);
  }
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

function destroyQuietly(this: Socket): void {
  this.destroy();
}
