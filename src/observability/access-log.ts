/**
 * Access logs in Istio's default format (MeshConfig `accessLogEncoding: TEXT`, the Envoy command
 * operators listed in /work/shared/reference/istio-api.md §2.4) or as JSON with Istio's keys.
 *
 * Lines are built only when the log is on, after the response closed, and handed to a buffered
 * writer that writes in batches with asynchronous `fs.write` calls and never waits: when the
 * destination cannot keep up and the buffer is full, lines are dropped and counted
 * (`meshgate_access_log_dropped_total`), so a slow disk or a stuck pipe never stalls traffic.
 */
import fs from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { responseDetails, type RequestRecord } from './record.js';

export type AccessLogFormat = 'text' | 'json';

export interface AccessLogOptions {
  /** `stdout`, or a file path (appended to). */
  path: string;
  format: AccessLogFormat;
}

/** Envoy prints `-` for an empty value. */
function dash(v: string | number | null | undefined): string {
  return v === null || v === undefined || v === '' ? '-' : String(v);
}

/** A request header (lowercase `name`), repeated values joined with `,`; read from rawHeaders, since `req.headers` would build an object of every header. */
export function header(rec: RequestRecord, name: string): string | null {
  const raw = rec.req.rawHeaders;
  let out: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n.length === name.length && (n === name || n.toLowerCase() === name)) out = out === null ? raw[i + 1] : `${out},${raw[i + 1]}`;
  }
  return out;
}

function address(host: string | undefined, port: number | undefined): string | null {
  if (host === undefined || port === undefined) return null;
  const h = host.startsWith('::ffff:') && host.includes('.') ? host.slice(7) : host;
  return h.includes(':') ? `[${h}]:${port}` : `${h}:${port}`;
}

/** The fields of one access-log entry, keyed as Istio's JSON encoding names them. */
export type LogEntry = Record<string, string | number | null>;

/** The fields of one access-log entry, keyed as Istio's JSON encoding names them. */
export function accessLogEntry(rec: RequestRecord, wallNow: number): LogEntry {
  // The socket is gone (null) when the answer closed after Node detached it, e.g. a 413 sent before
  // the upload was read: the entry then has no addresses rather than crashing the worker.
  const sock = rec.req.socket as TLSSocket | null;
  const sni = sock?.encrypted ? sock.servername || null : null;
  return {
    start_time: new Date(wallNow - rec.durationMs).toISOString(),
    route_name: rec.route === null ? null : rec.route.name,
    method: rec.req.method ?? null,
    path: rec.req.url ?? null,
    // Envoy's %PROTOCOL%: `HTTP/1.1`, `HTTP/1.0`, `HTTP/2` (Node says `2.0`).
    protocol: rec.req.httpVersionMajor === 2 ? 'HTTP/2' : `HTTP/${rec.req.httpVersion}`,
    response_code: rec.status,
    response_flags: rec.flags,
    response_code_details: responseDetails(rec),
    connection_termination_details: null,
    upstream_transport_failure_reason: null,
    bytes_received: rec.bytesReceived,
    bytes_sent: rec.bytesSent,
    duration: Math.round(rec.durationMs),
    upstream_service_time: rec.upstreamServiceTime < 0 ? null : String(Math.round(rec.upstreamServiceTime)),
    x_forwarded_for: header(rec, 'x-forwarded-for'),
    user_agent: header(rec, 'user-agent'),
    request_id: rec.requestId ?? header(rec, 'x-request-id'),
    authority: header(rec, 'host'),
    upstream_host: rec.upstreamHost,
    upstream_cluster: rec.clusterName,
    upstream_local_address: null,
    downstream_local_address: address(sock?.localAddress, sock?.localPort),
    downstream_remote_address: address(sock?.remoteAddress, sock?.remotePort),
    requested_server_name: sni,
  };
}

/** One line in Istio's default TEXT format. */
export function formatText(e: Record<string, string | number | null>): string {
  return (
    `[${e.start_time}] "${dash(e.method)} ${dash(e.path)} ${dash(e.protocol)}" ${e.response_code} ${dash(e.response_flags)} ${dash(e.response_code_details)} ` +
    `${dash(e.connection_termination_details)} "${dash(e.upstream_transport_failure_reason)}" ${e.bytes_received} ${e.bytes_sent} ${e.duration} ` +
    `${dash(e.upstream_service_time)} "${dash(e.x_forwarded_for)}" "${dash(e.user_agent)}" "${dash(e.request_id)}" "${dash(e.authority)}" ` +
    `"${dash(e.upstream_host)}" ${dash(e.upstream_cluster)} ${dash(e.upstream_local_address)} ${dash(e.downstream_local_address)} ` +
    `${dash(e.downstream_remote_address)} ${dash(e.requested_server_name)} ${dash(e.route_name)}\n`
  );
}

export function formatJson(e: Record<string, string | number | null>): string {
  return `${JSON.stringify(e)}\n`;
}

/** Most bytes one write to a pipe or terminal carries: PIPE_BUF, so lines of several processes never interleave. */
const MAX_WRITE_PIPE = 4096;
/** Most bytes one write to a regular file carries (appends of one write are never interleaved on a local file). */
const MAX_WRITE_FILE = 64 * 1024;

/**
 * A non-blocking line writer: `push` appends to a buffer; one asynchronous write at a time drains
 * it. Over `maxBufferedBytes` waiting, new lines are dropped and `onDrop` is called.
 */
export class AccessLogWriter {
  readonly #fd: number;
  readonly #ownsFd: boolean;
  readonly #maxBuffered: number;
  /** Bytes per write: larger batches (fewer system calls) to regular files than to pipes. */
  readonly #maxWrite: number;
  readonly #onDrop: () => void;
  #lines: string[] = [];
  #buffered = 0;
  #writing = false;
  #scheduled = false;
  #closed = false;

  constructor(path: string, onDrop: () => void, maxBufferedBytes = 8 * 1024 * 1024) {
    if (path === 'stdout' || path === '/dev/stdout') {
      this.#fd = 1;
      this.#ownsFd = false;
    } else {
      this.#fd = fs.openSync(path, 'a');
      this.#ownsFd = true;
    }
    this.#maxBuffered = maxBufferedBytes;
    let regular = false;
    try {
      regular = fs.fstatSync(this.#fd).isFile();
    } catch {
      // Unknown: treated as a pipe.
    }
    this.#maxWrite = regular ? MAX_WRITE_FILE : MAX_WRITE_PIPE;
    this.#onDrop = onDrop;
  }

  push(line: string): void {
    if (this.#closed) return;
    if (this.#buffered + line.length > this.#maxBuffered) {
      this.#onDrop();
      return;
    }
    this.#lines.push(line);
    this.#buffered += line.length;
    if (!this.#writing && !this.#scheduled) {
      this.#scheduled = true;
      setImmediate(flushWriter, this);
    }
  }

  /** Writes the next batch (called from setImmediate and after each write completes). */
  flush(): void {
    this.#scheduled = false;
    if (this.#writing || this.#lines.length === 0) return;
    let batch = '';
    let n = 0;
    while (n < this.#lines.length && (n === 0 || batch.length + this.#lines[n].length <= this.#maxWrite)) batch += this.#lines[n++];
    this.#lines = n === this.#lines.length ? [] : this.#lines.slice(n);
    this.#buffered -= batch.length;
    this.#writing = true;
    const buf = Buffer.from(batch, 'utf8');
    fs.write(this.#fd, buf, 0, buf.length, null, (err, written) => {
      this.#writing = false;
      if (err && (err as NodeJS.ErrnoException).code === 'EAGAIN') {
        // A non-blocking pipe is full: keep the batch and try again shortly.
        this.#requeue(batch);
        setTimeout(flushWriter, 5, this);
        return;
      }
      if (err) this.#onDrop();
      else if (written < buf.length) this.#requeue(buf.subarray(written).toString('utf8'));
      if (this.#lines.length > 0) this.flush();
    });
  }

  #requeue(rest: string): void {
    this.#lines.unshift(rest);
    this.#buffered += rest.length;
  }

  /** Waits (at most `timeoutMs`) for buffered lines to be written, then closes a file it opened. */
  async close(timeoutMs = 1000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.#lines.length > 0 || this.#writing) && Date.now() < deadline) {
      this.flush();
      await new Promise((r) => setTimeout(r, 5));
    }
    this.#closed = true;
    if (this.#ownsFd) fs.closeSync(this.#fd);
  }
}

function flushWriter(w: AccessLogWriter): void {
  w.flush();
}
