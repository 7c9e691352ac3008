/**
 * One request of meshgate's HTTP/1.1 engine as the request path sees it (downstream.ts), and its
 * response writer: framing per RFC 9112 §6.3, one socket write (corked) for the head and the first
 * body bytes, chunked encoding when the length is unknown, back-pressure from the socket.
 */

import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { RequestRecord } from '../../observability/record.js';
import type { Downstream, DownstreamOwner, PendingUpgrade } from '../http/downstream.js';
import { Framing, type RequestHead } from './parser.js';
import { isHeaderField } from '../../lib/header-chars.js';
import type { CompiledProxyHeaders } from '../http/proxy-headers.js';

/** What the response writer needs from its connection. */
export interface H1Link {
  readonly socket: Socket;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  readonly tls: TLSSocket | null;
  /** The HTTP `date` value of this second. */
  date(): string;
  /** An earlier request on this connection was refused. */
  rejected: boolean;
  /** The response of `d` is complete (or abandoned): the connection goes on with the next request or closes. */
  responseDone(d: H1Downstream): void;
}

/** The request body: a Readable fed by the parser; reading pauses the socket (back-pressure). */
export class RequestBody extends Readable {
  readonly #socket: Socket;
  constructor(socket: Socket) {
    super({ highWaterMark: 64 * 1024 });
    this.#socket = socket;
    // The engine destroys a body that turns out malformed; its consumer (an upstream client) may
    // have let go of it already (the answer came first), and an unheard 'error' would crash the worker.
    this.on('error', noop);
  }
  override _read(): void {
    if (this.#socket.isPaused()) this.#socket.resume();
  }
}

const EMPTY = new Readable({ read() {} });
EMPTY.push(null);

const CRLF = '\r\n';

/** Status lines by status (100-999), made on first use. */
const STATUS_LINES: (string | undefined)[] = new Array<string | undefined>(1000).fill(undefined);

/** `HTTP/1.1 <status> <reason>\r\n` for a status of 100-999, made once per status (no lookup in node:http's table and no join per answer). */
export function statusLine(status: number): string {
  return (STATUS_LINES[status] ??= `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}${CRLF}`);
}

/** A Content-Length value of canonical digits as a number; -1 when it is not one (empty, a sign, `0x10`, `1e3`, spaces, beyond 2^53). */
export function canonicalLength(value: string): number {
  const len = value.length;
  if (len === 0) return -1;
  let n = 0;
  for (let i = 0; i < len; i++) {
    const d = value.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return -1;
    n = n * 10 + d;
    // Checked at each digit, so the bound is exact (leading zeros are fine).
    if (n > Number.MAX_SAFE_INTEGER) return -1;
  }
  return n;
}
/** A Content-Length value as RFC 9110 §8.6 writes it: digits only. */
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

export class H1Downstream implements Downstream {
  readonly #link: H1Link;
  method: string;
  readonly target: string;
  rawHeaders: string[];
  readonly versionMinor: number;
  readonly hasBody: boolean;
  readonly #body: RequestBody | null;
  record: RequestRecord | null = null;
  owner: DownstreamOwner | null = null;
  replyHeaders: string[] | null = null;
  proxyHeaders: CompiledProxyHeaders | null = null;
  closeHooks: (() => void)[] | null = null;
  upgrade: PendingUpgrade | null = null;
  /** The request asked to keep the connection (and nothing since decided otherwise). */
  keepAlive: boolean;
  /** The request message has been read to its end. */
  requestComplete = false;
  /** The response is over (ended, reset, or abandoned); the body that still arrives is dropped. */
  responseOver = false;
  #status = 0;
  #sent: string[] | null = null;
  /** Head not yet written: it goes out with the first body bytes. */
  #pendingHead: string | null = null;
  #ended = false;
  #finished = false;
  #destroyed = false;
  #noBody = false;
  #chunked = false;
  /** Body bytes still owed under Content-Length; -1 when the length is not fixed. */
  #remaining = -1;

  constructor(link: H1Link, head: RequestHead, body: RequestBody | null) {
    this.#link = link;
    this.method = head.method;
    this.target = head.target;
    this.rawHeaders = head.rawHeaders;
    this.versionMinor = head.versionMinor;
    this.hasBody = head.framing === Framing.Chunked || (head.framing === Framing.Length && head.contentLength > 0);
    this.keepAlive = head.keepAlive;
    this.#body = body;
  }

  // ---- request head ----
  get http2(): boolean {
    return false;
  }
  get versionMajor(): number {
    return 1;
  }
  get body(): Readable {
    return this.#body ?? EMPTY;
  }
  /** The body stream when the request has one (the engine feeds it). */
  get requestBody(): RequestBody | null {
    return this.#body;
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
    return this.#link.remoteAddress;
  }
  get remotePort(): number {
    return this.#link.remotePort;
  }
  get localAddress(): string {
    return this.#link.localAddress;
  }
  get localPort(): number {
    return this.#link.localPort;
  }
  get tls(): TLSSocket | null {
    return this.#link.tls;
  }

  // ---- response ----
  get status(): number {
    return this.#status;
  }
  get sentHeaders(): string[] | null {
    return this.#sent;
  }
  get headersSent(): boolean {
    return this.#sent !== null;
  }
  get ended(): boolean {
    return this.#ended;
  }
  get finished(): boolean {
    return this.#finished;
  }
  get destroyed(): boolean {
    return this.#destroyed;
  }
  closeAfterResponse(): void {
    this.keepAlive = false;
  }
  rejectConnection(): void {
    this.keepAlive = false;
    this.#link.rejected = true;
  }
  get connectionRejected(): boolean {
    return this.#link.rejected;
  }

  respond(status: number, headers: string[], body: Buffer | null): void {
    if (this.#sent !== null || this.#destroyed) return;
    this.writeHead(status, headers);
    this.end(body);
  }

  writeHead(status: number, headers: string[]): void {
    if (this.#sent !== null || this.#destroyed) return;
    this.#status = status;
    this.#sent = headers;
    // RFC 9112 §6.3: HEAD, 1xx, 204 and 304 answers have no body whatever their headers say.
    this.#noBody = this.method === 'HEAD' || status < 200 || status === 204 || status === 304;
    let head = Number.isInteger(status) && status >= 100 && status <= 999 ? statusLine(status) : `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Unknown'}${CRLF}`;
    let length = -1;
    let hasDate = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i];
      const value = headers[i + 1];
      const lower = name.length === 14 || name.length === 17 || name.length === 10 || name.length === 4 ? name.toLowerCase() : name;
      if (lower === 'transfer-encoding' || lower === 'connection') continue; // the engine frames the message
      // Response splitting and worse: a name that is not a token, or a value with a CR, LF, NUL or
      // other CTL (config, an upgrade's upstream), never reaches the wire (RFC 9110 §5.1, §5.5).
      if (!isHeaderField(name, value)) continue;
      if (lower === 'content-length') {
        // One Content-Length, in canonical digits (not `0x10`, `1e3` or ` 5 `): the framing and
        // the wire always agree. A second one (identical upstream duplicates) is not repeated.
        if (length >= 0) continue;
        const n = canonicalLength(value);
        if (n < 0) continue;
        length = n;
        head += `${name}: ${n}${CRLF}`;
        continue;
      } else if (lower === 'date') hasDate = true;
      head += `${name}: ${value}${CRLF}`;
    }
    if (!hasDate) head += `date: ${this.#link.date()}${CRLF}`;
    if (!this.#noBody) {
      if (length >= 0) this.#remaining = length;
      else if (this.versionMinor === 1) {
        this.#chunked = true;
        head += `transfer-encoding: chunked${CRLF}`;
      } else {
        // HTTP/1.0 without a length: the body ends with the connection.
        this.keepAlive = false;
      }
    }
    if (!this.keepAlive) head += `connection: close${CRLF}`;
    else if (this.versionMinor === 0) head += `connection: keep-alive${CRLF}`;
    this.#pendingHead = head + CRLF;
  }

  write(chunk: Buffer): boolean {
    if (this.#destroyed || this.#ended) return false;
    const socket = this.#link.socket;
    if (this.#noBody || chunk.length === 0) {
      if (this.#pendingHead !== null) this.#flushHead();
      return socket.writableLength < socket.writableHighWaterMark;
    }
    if (this.#remaining >= 0) {
      if (chunk.length > this.#remaining) chunk = chunk.subarray(0, this.#remaining);
      this.#remaining -= chunk.length;
    }
    const head = this.#pendingHead;
    if (this.#chunked) {
      socket.cork();
      if (head !== null) {
        this.#pendingHead = null;
        socket.write(`${head}${chunk.length.toString(16)}${CRLF}`, 'latin1');
      } else socket.write(`${chunk.length.toString(16)}${CRLF}`, 'latin1');
      socket.write(chunk);
      const ok = socket.write(CRLF, 'latin1');
      socket.uncork();
      return ok;
    }
    if (head !== null) {
      this.#pendingHead = null;
      return writeHeadAndBody(socket, head, chunk);
    }
    return socket.write(chunk);
  }

  end(chunk?: Buffer | null, _trailers?: string[] | null): void {
    if (this.#destroyed || this.#ended) return;
    if (this.#sent === null) this.writeHead(200, []);
    this.#ended = true;
    const socket = this.#link.socket;
    if (chunk != null && chunk.length > 0 && !this.#noBody) {
      // Head, body and (chunked) the last chunk in one write.
      if (this.#remaining >= 0 && chunk.length > this.#remaining) chunk = chunk.subarray(0, this.#remaining);
      if (this.#remaining >= 0) this.#remaining -= chunk.length;
      const head = this.#pendingHead;
      this.#pendingHead = null;
      if (this.#chunked) {
        socket.cork();
        socket.write(`${head ?? ''}${chunk.length.toString(16)}${CRLF}`, 'latin1');
        socket.write(chunk);
        socket.write(`${CRLF}0${CRLF}${CRLF}`, 'latin1');
        socket.uncork();
      } else if (head !== null) writeHeadAndBody(socket, head, chunk);
      else socket.write(chunk);
    } else {
      const head = this.#pendingHead;
      this.#pendingHead = null;
      // HTTP/1.1 trailers are dropped, as node:http's path did (the response is not re-chunked for them).
      if (head !== null) socket.write(this.#chunked ? head + '0\r\n\r\n' : head, 'latin1');
      else if (this.#chunked) socket.write(LAST_CHUNK);
    }
    if (this.#remaining > 0) {
      // Fewer bytes than announced: the client must see a cut connection, never a short body as complete.
      this.reset();
      return;
    }
    this.#finished = true;
    if (this.#remaining < 0 && !this.#chunked && !this.#noBody) this.keepAlive = false;
    this.responseOver = true;
    this.#link.responseDone(this);
  }

  reset(_err?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    this.keepAlive = false;
    this.responseOver = true;
    this.#pendingHead = null;
    this.#link.socket.destroy();
  }

  /** The connection closed under this request. */
  connectionClosed(): void {
    if (!this.#finished) this.#destroyed = true;
    this.responseOver = true;
    const b = this.#body;
    if (b !== null && !this.requestComplete && !b.destroyed) b.destroy(ABORTED);
  }

  #flushHead(): void {
    const head = this.#pendingHead!;
    this.#pendingHead = null;
    this.#link.socket.write(head, 'latin1');
  }
}

/** Up to this many bytes, a response head and its body go out as one Buffer (one write, no writev). */
const COALESCE_MAX = 16 * 1024;

/**
 * Head and body in one write: the common small answer costs one Buffer (from Node's pool below
 * 4 KiB) and one plain write, instead of cork, two queued writes and a writev of a string and a
 * Buffer. Larger bodies are not copied.
 */
function writeHeadAndBody(socket: Socket, head: string, chunk: Buffer): boolean {
  const total = head.length + chunk.length;
  if (total > COALESCE_MAX) {
    socket.cork();
    socket.write(head, 'latin1');
    const ok = socket.write(chunk);
    socket.uncork();
    return ok;
  }
  const buf = Buffer.allocUnsafe(total);
  buf.write(head, 0, 'latin1');
  buf.set(chunk, head.length);
  return socket.write(buf);
}

const ABORTED = Object.assign(new Error('meshgate: the client closed the connection before the request body was complete'), { code: 'ECONNRESET' });

function noop(): void {}
