/**
 * A gRPC bidirectional-streaming call on node:http2, for the sidecar's config push (the unary
 * certificate call is h2-unary.ts; same reasons: grpc-js, proto-loader and protobufjs cost a sidecar
 * about 5 MiB of idle RSS for one stream (docs/benchmarks.md)). The wire is gRPC over HTTP/2 (PROTOCOL-HTTP2.md of
 * grpc/grpc): POST `path` with `content-type: application/grpc`, `te: trailers` and the caller's
 * metadata; each message either way is length-prefixed (1 byte compressed flag, 4 bytes big-endian
 * length); the status is `grpc-status`/`grpc-message`, in the trailers or in the headers of a
 * trailers-only response.
 *
 * One HTTP/2 connection per call (the push stream lives as long as its connection), over TLS
 * verified by `rootCertPem` and the name `servername` whatever address is dialled (gRPC's
 * `ssl_target_name_override`), presenting `clientCertificate` when given. Keepalive as grpc-js's
 * `grpc.keepalive_time_ms`/`grpc.keepalive_timeout_ms`: an HTTP/2 PING every `keepaliveTimeMs`;
 * one unanswered for `keepaliveTimeoutMs` ends the call with UNAVAILABLE.
 *
 * Events: `headers` (the server's response headers: it accepted the call), `message` (Buffer, one
 * whole message), `status` (once, last: a GrpcCallError-like `{ code, details }`, code 0 for OK).
 * Codes are grpc-js's `status` numbers: transport and TLS failures are 14 UNAVAILABLE, a malformed
 * or oversized message 13 INTERNAL / 8 RESOURCE_EXHAUSTED (the call is cancelled), `cancel()` 1.
 */
import { EventEmitter } from 'node:events';
import http2 from 'node:http2';

export interface GrpcH2StreamOptions {
  /** `HOST:PORT` (an IPv6 host in brackets). */
  address: string;
  rootCertPem: string;
  /** The name the server certificate must carry, and the `:authority`. */
  servername: string;
  path: string;
  /** Request metadata (lower-case names), e.g. `authorization`. */
  metadata: Record<string, string>;
  /** The TLS client certificate (chain and key, PEM), or null. */
  clientCertificate?: { certChainPem: string; keyPem: string } | null;
  /** Largest message accepted from the server, bytes (larger: RESOURCE_EXHAUSTED). */
  maxReceiveBytes: number;
  /** Interval between keepalive PINGs, ms (0: none). */
  keepaliveTimeMs: number;
  /** How long a PING may stay unanswered, ms. */
  keepaliveTimeoutMs: number;
  /** TCP + TLS + HTTP/2 settings must complete within this, ms (UNAVAILABLE otherwise). */
  connectTimeoutMs?: number;
  /** Local address to connect from (default: the kernel's choice). */
  localAddress?: string;
}

export interface GrpcStatus {
  code: number;
  details: string;
}

export class GrpcH2Stream extends EventEmitter {
  readonly #o: GrpcH2StreamOptions;
  readonly #session: http2.ClientHttp2Session;
  readonly #stream: http2.ClientHttp2Stream;
  #status: GrpcStatus | null = null;
  /** The status the server sent (trailers or trailers-only headers). */
  #serverStatus: GrpcStatus | null = null;
  #pingTimer: NodeJS.Timeout | null = null;
  #connectTimer: NodeJS.Timeout | null = null;
  /** Received bytes not yet making a whole message. */
  #chunks: Buffer[] = [];
  #buffered = 0;

  constructor(o: GrpcH2StreamOptions) {
    super();
    this.#o = o;
    const cert = o.clientCertificate ?? null;
    this.#session = http2.connect(`https://${o.address}`, {
      ca: o.rootCertPem,
      servername: o.servername,
      ALPNProtocols: ['h2'],
      ...(cert !== null ? { cert: cert.certChainPem, key: cert.keyPem } : {}),
      ...(o.localAddress !== undefined ? { localAddress: o.localAddress } : {}),
      // Views can be large: let the server send without waiting for window updates.
      settings: { initialWindowSize: 4 * 1024 * 1024 },
    });
    const session = this.#session;
    session.on('error', (e: Error) => this.#finish({ code: 14, details: e.message }));
    session.on('goaway', (code: number) => {
      // The call may still finish (graceful GOAWAY); if the connection then closes without a status, 'close' says so.
      if (code !== http2.constants.NGHTTP2_NO_ERROR) this.#finish({ code: 14, details: `the server closed the connection (GOAWAY ${code})` });
    });
    session.on('close', () => this.#finish({ code: 14, details: 'the connection closed' }));
    // The connection's window too (64 KiB by default), so a large view is not paced by window updates.
    session.once('connect', () => {
      if (!session.destroyed) session.setLocalWindowSize(4 * 1024 * 1024);
    });
    if (o.connectTimeoutMs !== undefined && o.connectTimeoutMs > 0) {
      this.#connectTimer = setTimeout(() => this.#finish({ code: 14, details: `no connection within ${o.connectTimeoutMs} ms` }), o.connectTimeoutMs);
      this.#connectTimer.unref();
      session.once('connect', () => this.#clearConnectTimer());
    }
    this.#stream = session.request({
      ':method': 'POST',
      ':path': o.path,
      ':authority': o.servername,
      ':scheme': 'https',
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'meshgate-sidecar',
      ...o.metadata,
    });
    const stream = this.#stream;
    stream.on('response', (h) => {
      const httpStatus = Number(h[':status']);
      if (h['grpc-status'] !== undefined) return this.#takeStatus(h);
      if (httpStatus !== 200) return this.#finish({ code: httpStatusCode(httpStatus), details: `HTTP status ${httpStatus}` });
      const type = String(h['content-type'] ?? '');
      if (!type.startsWith('application/grpc')) return this.#finish({ code: 13, details: `not a gRPC response (content-type "${type}")` });
      if (h['grpc-encoding'] !== undefined && h['grpc-encoding'] !== 'identity') return this.#finish({ code: 12, details: `unsupported grpc-encoding "${String(h['grpc-encoding'])}"` });
      this.emit('headers', h);
    });
    stream.on('trailers', (h) => this.#takeStatus(h));
    stream.on('data', (d: Buffer) => this.#data(d));
    stream.on('error', (e: Error) => this.#finish({ code: 14, details: e.message }));
    // The server's side is over (trailers, or a trailers-only response): so is the call, even though
    // this side is still open (servers such as grpc-js's end their half only).
    const serverDone = (): boolean => {
      if (this.#serverStatus === null) return false;
      if (this.#serverStatus.code === 0 && this.#buffered > 0) this.#finish({ code: 13, details: `the stream ended inside a message (${this.#buffered} bytes left over)` });
      else this.#finish(this.#serverStatus);
      return true;
    };
    stream.on('end', () => {
      // 'trailers' is emitted on a later tick than the end of the data: look once both are in.
      setImmediate(() => {
        if (serverDone()) return;
        if (this.#session.destroyed || this.#session.closed) return this.#finish({ code: 14, details: 'the connection closed' });
        this.#finish({ code: 13, details: 'the server ended the stream without a grpc-status' });
      });
    });
    stream.on('close', () => {
      if (serverDone()) return;
      const rst = stream.rstCode;
      if (this.#session.destroyed || this.#session.closed) return this.#finish({ code: 14, details: 'the connection closed' });
      this.#finish({ code: rst === http2.constants.NGHTTP2_REFUSED_STREAM ? 14 : rst === http2.constants.NGHTTP2_CANCEL ? 1 : 13, details: `the stream closed without a grpc-status (RST code ${rst ?? 'none'})` });
    });
    if (o.keepaliveTimeMs > 0) {
      this.#pingTimer = setInterval(() => this.#ping(), o.keepaliveTimeMs);
      this.#pingTimer.unref();
    }
  }

  /** The final status, once the call is over; null while it runs. */
  get status(): GrpcStatus | null {
    return this.#status;
  }

  /** Sends one message (protobuf bytes). Ignored once the call is over. */
  write(message: Buffer): void {
    if (this.#status !== null) return;
    const head = Buffer.alloc(5);
    head.writeUInt32BE(message.length, 1);
    this.#stream.write(Buffer.concat([head, message]));
  }

  /** Ends the call from this side (RST_STREAM CANCEL, then the connection): status `code`, 1 CANCELLED by default. */
  cancel(details = 'cancelled by the client', code = 1): void {
    this.#finish({ code, details });
  }

  #takeStatus(h: http2.IncomingHttpHeaders): void {
    if (h['grpc-status'] === undefined) return;
    const code = Number(h['grpc-status']);
    const m = h['grpc-message'];
    this.#serverStatus = { code: Number.isInteger(code) && code >= 0 && code <= 16 ? code : 2, details: typeof m === 'string' ? safeDecode(m) : '' };
  }

  #data(d: Buffer): void {
    if (this.#status !== null) return;
    this.#chunks.push(d);
    this.#buffered += d.length;
    for (;;) {
      if (this.#buffered < 5) return;
      const head = this.#peek(5);
      if (head[0] !== 0) return this.#finish({ code: 13, details: head[0] === 1 ? 'a compressed message, though no compression was offered' : `malformed message frame (flags ${head[0]})` });
      const len = head.readUInt32BE(1);
      if (len > this.#o.maxReceiveBytes) return this.#finish({ code: 8, details: `received message larger than max (${len} vs. ${this.#o.maxReceiveBytes})` });
      if (this.#buffered < 5 + len) return;
      const all = this.#peek(5 + len);
      this.#consume(5 + len);
      const msg = all.subarray(5, 5 + len);
      this.emit('message', msg);
      if (this.#status !== null) return;
    }
  }

  /** The first `n` buffered bytes, merged into one chunk. */
  #peek(n: number): Buffer {
    if (this.#chunks[0].length < n) {
      const merged = Buffer.concat(this.#chunks, this.#buffered);
      this.#chunks = [merged];
    }
    return this.#chunks[0].subarray(0, n);
  }

  #consume(n: number): void {
    const first = this.#chunks[0];
    if (first.length === n) this.#chunks.shift();
    else this.#chunks[0] = first.subarray(n);
    this.#buffered -= n;
  }

  #ping(): void {
    if (this.#status !== null || this.#session.destroyed) return;
    const timer = setTimeout(() => this.#finish({ code: 14, details: `keepalive ping not answered within ${this.#o.keepaliveTimeoutMs} ms` }), this.#o.keepaliveTimeoutMs);
    timer.unref();
    try {
      this.#session.ping((err) => {
        clearTimeout(timer);
        if (err !== null) this.#finish({ code: 14, details: `keepalive ping failed: ${err.message}` });
      });
    } catch (e) {
      clearTimeout(timer);
      this.#finish({ code: 14, details: `keepalive ping failed: ${(e as Error).message}` });
    }
  }

  #clearConnectTimer(): void {
    if (this.#connectTimer !== null) clearTimeout(this.#connectTimer);
    this.#connectTimer = null;
  }

  #finish(status: GrpcStatus): void {
    if (this.#status !== null) return;
    this.#status = status;
    this.#clearConnectTimer();
    if (this.#pingTimer !== null) clearInterval(this.#pingTimer);
    this.#pingTimer = null;
    this.#chunks = [];
    this.#buffered = 0;
    if (!this.#stream.closed && !this.#stream.destroyed) this.#stream.close(http2.constants.NGHTTP2_CANCEL);
    if (!this.#session.destroyed) {
      this.#session.close();
      // A server that does not answer the GOAWAY promptly: drop the connection anyway.
      setTimeout(() => this.#session.destroyed || this.#session.destroy(), 1000).unref();
    }
    this.emit('status', status);
  }
}

/** gRPC's mapping of HTTP statuses without a grpc-status (doc/http-grpc-status-mapping.md). */
function httpStatusCode(s: number): number {
  if (s === 400) return 13;
  if (s === 401) return 16;
  if (s === 403) return 7;
  if (s === 404) return 12;
  if (s === 429 || s === 502 || s === 503 || s === 504) return 14;
  return 2;
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}
