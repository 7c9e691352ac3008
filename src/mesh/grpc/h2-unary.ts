/**
 * A gRPC unary client on node:http2, for the sidecar's certificate requests. @grpc/grpc-js with
 * @grpc/proto-loader and protobufjs is about 110 modules (in a bare Node.js process: 4 MiB of heap and
 * 12 MiB of RSS) for one call a day per proxy; this is the call itself (gRPC over HTTP/2, PROTOCOL-HTTP2.md
 * of grpc/grpc): POST `path` with `content-type: application/grpc`, `te: trailers`, `grpc-timeout`
 * and the caller's metadata, one length-prefixed message; the answer is one message and the status in
 * `grpc-status`/`grpc-message` (in the trailers, or in the headers of a trailers-only response).
 *
 * TLS: verified by `rootCertPem` and the name `servername` whatever address is dialled (as gRPC's
 * `ssl_target_name_override`). Failures carry grpc-js's `code` numbers (a connection or TLS failure
 * is 14 UNAVAILABLE, the deadline 4 DEADLINE_EXCEEDED) and a `details` text, so callers and their
 * logs read the same. One HTTP/2 session is kept and reused; it is dropped when it fails or closes.
 */
import http2 from 'node:http2';

export const GRPC_STATUS_NAMES = ['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'];

/** A failed call: `code` as grpc-js's `status` enum, `details` the server's or transport's message. */
export class GrpcCallError extends Error {
  readonly code: number;
  readonly details: string;
  constructor(code: number, details: string) {
    super(`${code} ${GRPC_STATUS_NAMES[code] ?? 'UNKNOWN'}: ${details}`);
    this.code = code;
    this.details = details;
  }
}

export interface GrpcH2Target {
  /** `HOST:PORT` (an IPv6 host in brackets). */
  address: string;
  rootCertPem: string;
  /** The name the server certificate must carry, and the `:authority`. */
  servername: string;
}

export class GrpcH2Client {
  readonly #t: GrpcH2Target;
  #session: http2.ClientHttp2Session | null = null;
  #closed = false;

  constructor(target: GrpcH2Target) {
    this.#t = target;
  }

  #connect(): http2.ClientHttp2Session {
    if (this.#session !== null && !this.#session.closed && !this.#session.destroyed) return this.#session;
    const session = http2.connect(`https://${this.#t.address}`, { ca: this.#t.rootCertPem, servername: this.#t.servername, ALPNProtocols: ['h2'] });
    const drop = () => {
      if (this.#session === session) this.#session = null;
    };
    session.on('error', drop);
    session.on('close', drop);
    session.on('goaway', drop);
    session.unref();
    this.#session = session;
    return session;
  }

  /** One unary call: `message` (protobuf bytes) to `path`, the answer's protobuf bytes. */
  unary(path: string, message: Buffer, metadata: Record<string, string>, deadlineMs: number): Promise<Buffer> {
    if (this.#closed) return Promise.reject(new GrpcCallError(1, 'the client is closed'));
    return new Promise<Buffer>((resolve, reject) => {
      let session: http2.ClientHttp2Session;
      try {
        session = this.#connect();
      } catch (e) {
        return reject(new GrpcCallError(14, (e as Error).message));
      }
      let done = false;
      const finish = (err: GrpcCallError | null, body?: Buffer) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        session.off('error', onSessionError);
        if (err) reject(err);
        else resolve(body!);
      };
      const onSessionError = (e: Error) => finish(new GrpcCallError(14, e.message));
      session.once('error', onSessionError);
      const ms = Math.max(1, Math.ceil(deadlineMs));
      const timer = setTimeout(() => {
        stream.close(http2.constants.NGHTTP2_CANCEL);
        // A session that never finished its TCP connect or TLS handshake (a black-holed address, a
        // server that accepts and says nothing) is not kept: the next call dials again, as grpc-js
        // reconnects, instead of queueing on the same stuck connection forever.
        if (session.connecting) {
          if (this.#session === session) this.#session = null;
          session.destroy();
        }
        finish(new GrpcCallError(4, 'Deadline exceeded'));
      }, ms);
      let stream: http2.ClientHttp2Stream;
      try {
        stream = session.request({
          ':method': 'POST',
          ':path': path,
          ':authority': this.#t.servername,
          'content-type': 'application/grpc',
          te: 'trailers',
          'grpc-timeout': `${ms}m`,
          ...metadata,
        });
      } catch (e) {
        // A header node:http2 refuses (or a session that can take no stream): the call fails now,
        // and the deadline timer goes with it (it would otherwise fire on a stream never made).
        return finish(new GrpcCallError(13, (e as Error).message));
      }
      const chunks: Buffer[] = [];
      let status: number | null = null;
      let statusMessage = '';
      const takeStatus = (h: http2.IncomingHttpHeaders) => {
        if (h['grpc-status'] === undefined) return;
        status = Number(h['grpc-status']);
        const m = h['grpc-message'];
        statusMessage = typeof m === 'string' ? safeDecode(m) : '';
      };
      stream.on('response', (h) => {
        const httpStatus = Number(h[':status']);
        takeStatus(h);
        if (httpStatus !== 200 && status === null) finish(new GrpcCallError(httpStatus === 401 ? 16 : httpStatus === 403 ? 7 : httpStatus === 404 ? 12 : 14, `HTTP status ${httpStatus}`));
      });
      stream.on('trailers', takeStatus);
      stream.on('data', (d: Buffer) => chunks.push(d));
      stream.on('error', (e) => finish(new GrpcCallError(14, e.message)));
      stream.on('close', () => {
        if (status === null) return finish(new GrpcCallError(stream.rstCode === http2.constants.NGHTTP2_REFUSED_STREAM ? 14 : 13, `stream closed without a grpc-status (RST code ${stream.rstCode})`));
        if (status !== 0) return finish(new GrpcCallError(status, statusMessage));
        const body = Buffer.concat(chunks);
        if (body.length < 5) return finish(new GrpcCallError(13, 'no response message'));
        if (body[0] !== 0) return finish(new GrpcCallError(13, 'compressed response messages are not supported'));
        const len = body.readUInt32BE(1);
        if (body.length < 5 + len) return finish(new GrpcCallError(13, 'truncated response message'));
        finish(null, body.subarray(5, 5 + len));
      });
      const head = Buffer.alloc(5);
      head.writeUInt32BE(message.length, 1);
      stream.end(Buffer.concat([head, message]));
    });
  }

  close(): void {
    this.#closed = true;
    this.#session?.close();
    this.#session = null;
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

// ---- protobuf, the few wire types these messages use ----

function varint(n: bigint): Buffer {
  const out: number[] = [];
  let v = BigInt.asUintN(64, n);
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return Buffer.from(out);
}

/** A length-delimited field (string, bytes, message). */
export function pbBytes(field: number, value: Buffer | string): Buffer {
  const b = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  return Buffer.concat([varint(BigInt((field << 3) | 2)), varint(BigInt(b.length)), b]);
}

/** A varint field (int64, int32, bool, enum). */
export function pbVarint(field: number, value: bigint | number): Buffer {
  return Buffer.concat([varint(BigInt((field << 3) | 0)), varint(BigInt(value))]);
}

/** Every field of a message: number, wire type and value (varint as bigint, length-delimited as bytes). */
export function pbFields(buf: Buffer): { field: number; wire: number; value: bigint | Buffer }[] {
  const out: { field: number; wire: number; value: bigint | Buffer }[] = [];
  let i = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated protobuf varint');
      const b = buf[i++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 63n) throw new Error('protobuf varint too long');
    }
  };
  while (i < buf.length) {
    const key = Number(readVarint());
    const field = key >>> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ field, wire, value: readVarint() });
    else if (wire === 2) {
      const len = Number(readVarint());
      if (i + len > buf.length) throw new Error('truncated protobuf field');
      out.push({ field, wire, value: buf.subarray(i, i + len) });
      i += len;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`unsupported protobuf wire type ${wire}`);
    if (i > buf.length) throw new Error('truncated protobuf field');
  }
  return out;
}
