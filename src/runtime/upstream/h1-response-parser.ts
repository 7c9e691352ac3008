/**
 * A strict, incremental HTTP/1.1 response parser (RFC 9112) for meshgate's upstream client.
 *
 * - Status line `HTTP/1.0|1.1 SP 3DIGIT [SP reason] CRLF`; header lines `token ":" OWS value OWS CRLF`.
 *   Lines end with CRLF only (a bare CR or LF is refused), obs-fold is refused, field names are
 *   tokens, values carry no control character but HTAB. The head is at most `MAX_HEAD_BYTES`.
 * - Interim 1xx answers (100, 102, 103) are skipped; a 101 was never asked for and is refused.
 * - Body framing (RFC 9112 §6.3): none for HEAD, 1xx, 204 and 304; else chunked when
 *   Transfer-Encoding ends with `chunked`; else Content-Length; else until the connection closes.
 *   Refused as smuggling vectors: Content-Length together with Transfer-Encoding, differing
 *   Content-Length values, a Transfer-Encoding that does not end with `chunked` (or lists it twice),
 *   a malformed chunk size or chunk delimiter.
 *
 * Headers and trailers are handed over as flat `[name, value, ...]` Buffers sliced from the input
 * (no copy). Body bytes go to the sink as slices of the chunks read. Errors carry llhttp's `HPE_*`
 * codes (classified as `UPE`, 502), except an oversized head (`UND_ERR_HEADERS_OVERFLOW`, as undici).
 */

import { upstreamError } from './client.js';

/** Limit of a response head (status line and headers), and separately of a trailer section. */
export const MAX_HEAD_BYTES = 16 * 1024;

/** Where the parsed response goes (the connection that owns the parser). */
export interface ResponseSink {
  /** The final head. `keepAliveMs`: the `Keep-Alive: timeout=N` hint in ms, -1 when none. */
  onResponseHead(status: number, rawHeaders: string[], keepAliveMs: number): void;
  onResponseData(chunk: Buffer): void;
  onResponseEnd(trailers: Buffer[] | null): void;
}

const enum State {
  /** No response expected (between requests). */
  Idle,
  Head,
  Fixed,
  ChunkSize,
  ChunkExt,
  ChunkSizeLf,
  ChunkData,
  ChunkDataCr,
  ChunkDataLf,
  Trailers,
  UntilClose,
  Done,
}

/** RFC 9110 token characters. */
const TOKEN = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TOKEN[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TOKEN[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TOKEN[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TOKEN[c] = 1;

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

const CRLFCRLF = Buffer.from('\r\n\r\n', 'latin1');

/** `buf`'s bytes [start, end) as a latin1 string: Buffer's own slice, without `toString`'s argument checks. */
const latin1 = (buf: Buffer, start: number, end: number): string => (buf as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(start, end);

function parseError(code: string, message: string): Error {
  return upstreamError(code, `upstream response: ${message}`);
}

export class H1ResponseParser {
  readonly #sink: ResponseSink;
  #state = State.Idle;
  /** The request was HEAD: the answer has no body whatever its head says. */
  #head = false;
  /** Head (or trailer section) bytes read so far but not complete. */
  #partial: Buffer | null = null;
  /** Body bytes still expected (Fixed, ChunkData). */
  #remaining = 0;
  #chunkDigits = 0;
  #extBytes = 0;
  /** The answer lets the connection be reused. */
  keepAlive = false;
  /** Set by the owner when a callback ended the exchange (abort): parsing stops at once. */
  halted = false;
  /** Counts `start()` calls: `execute` never parses bytes for an answer armed during its own run. */
  #generation = 0;

  constructor(sink: ResponseSink) {
    this.#sink = sink;
  }

  /** Expect the answer to a new request (`head`: the request is HEAD). */
  start(head: boolean): void {
    this.#state = State.Head;
    this.#head = head;
    this.#partial = null;
    this.keepAlive = false;
    this.halted = false;
    this.#generation++;
  }

  /** Whether any byte of the current answer has arrived. */
  get started(): boolean {
    return this.#state !== State.Head || this.#partial !== null;
  }

  /** The connection closed. Returns an error when the answer was cut short, null when it ended (close-delimited). */
  finish(): Error | null {
    if (this.#state === State.UntilClose) {
      this.#state = State.Done;
      this.#sink.onResponseEnd(null);
      return null;
    }
    if (this.#state === State.Idle || this.#state === State.Done) return null;
    return parseError('UND_ERR_SOCKET', 'other side closed');
  }

  /**
   * Parses `chunk`; returns an error when the input is not a valid answer (the connection is then
   * unusable). Bytes that follow the end of the answer (a body on HEAD, 204 or 304, more than the
   * Content-Length, a second answer in the same read) are never parsed as the answer to another
   * request: they are an `HPE_INVALID_CONSTANT` error returned after the answer was delivered, also
   * when a callback armed the parser again for the next request meanwhile.
   */
  execute(chunk: Buffer): Error | null {
    let pos = 0;
    const len = chunk.length;
    const generation = this.#generation;
    while (pos < len && !this.halted) {
      if (this.#generation !== generation) return parseError('HPE_INVALID_CONSTANT', 'data after the end of the response');
      switch (this.#state) {
        case State.Idle:
        case State.Done:
          return parseError('HPE_INVALID_CONSTANT', 'data after the end of the response');
        case State.Head:
        case State.Trailers: {
          let buf = chunk;
          let from = pos;
          let searchFrom = pos;
          if (this.#partial !== null) {
            const prev = this.#partial;
            buf = Buffer.concat([prev, chunk.subarray(pos)]);
            from = 0;
            searchFrom = Math.max(0, prev.length - 3);
          }
          // A trailer section may be empty: its blank line directly follows the last chunk.
          if (this.#state === State.Trailers && buf.length - from >= 2 && buf[from] === 13 && buf[from + 1] === 10) {
            this.#partial = null;
            pos = buf === chunk ? from + 2 : len - (buf.length - from - 2);
            this.#end(null);
            continue;
          }
          const end = buf.indexOf(CRLFCRLF, searchFrom);
          if (end === -1) {
            if (buf.length - from > MAX_HEAD_BYTES) return parseError('UND_ERR_HEADERS_OVERFLOW', 'head too large');
            this.#partial = buf === chunk ? Buffer.from(chunk.subarray(pos)) : buf;
            return null;
          }
          if (end - from > MAX_HEAD_BYTES) return parseError('UND_ERR_HEADERS_OVERFLOW', 'head too large');
          this.#partial = null;
          const next = end + 4;
          // Position in `chunk` after the head: `buf` is `partial + chunk[pos..]`.
          const consumed = buf === chunk ? next : len - (buf.length - next);
          const err = this.#state === State.Head ? this.#onHead(buf, from, end + 2) : this.#onTrailers(buf, from, end + 2);
          if (err !== null) return err;
          pos = consumed;
          continue;
        }
        case State.Fixed: {
          const n = Math.min(this.#remaining, len - pos);
          this.#remaining -= n;
          const slice = pos === 0 && n === len ? chunk : chunk.subarray(pos, pos + n);
          pos += n;
          this.#sink.onResponseData(slice);
          if (this.#remaining === 0 && !this.halted) this.#end(null);
          continue;
        }
        case State.UntilClose: {
          this.#sink.onResponseData(pos === 0 ? chunk : chunk.subarray(pos));
          return null;
        }
        case State.ChunkData: {
          const n = Math.min(this.#remaining, len - pos);
          this.#remaining -= n;
          const slice = chunk.subarray(pos, pos + n);
          pos += n;
          if (this.#remaining === 0) this.#state = State.ChunkDataCr;
          this.#sink.onResponseData(slice);
          continue;
        }
        case State.ChunkSize: {
          const c = chunk[pos++];
          const d = HEX[c];
          if (d >= 0) {
            if (++this.#chunkDigits > 12) return parseError('HPE_INVALID_CHUNK_SIZE', 'chunk size too large');
            this.#remaining = this.#remaining * 16 + d;
          } else if (this.#chunkDigits === 0) {
            return parseError('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
          } else if (c === 13) {
            this.#state = State.ChunkSizeLf;
          } else if (c === 59 /* ; */ || c === 32 || c === 9) {
            this.#state = State.ChunkExt;
            this.#extBytes = 0;
          } else {
            return parseError('HPE_INVALID_CHUNK_SIZE', 'invalid chunk size');
          }
          continue;
        }
        case State.ChunkExt: {
          const c = chunk[pos++];
          if (c === 13) this.#state = State.ChunkSizeLf;
          else if (c === 10 || (c < 32 && c !== 9) || c === 127) return parseError('HPE_INVALID_CHUNK_SIZE', 'invalid chunk extension');
          else if (++this.#extBytes > 1024) return parseError('HPE_INVALID_CHUNK_SIZE', 'chunk extension too long');
          continue;
        }
        case State.ChunkSizeLf: {
          if (chunk[pos++] !== 10) return parseError('HPE_STRICT', 'chunk size line not ended by CRLF');
          if (this.#remaining === 0) {
            this.#state = State.Trailers;
          } else {
            this.#state = State.ChunkData;
          }
          continue;
        }
        case State.ChunkDataCr: {
          if (chunk[pos++] !== 13) return parseError('HPE_STRICT', 'chunk data not followed by CRLF');
          this.#state = State.ChunkDataLf;
          continue;
        }
        case State.ChunkDataLf: {
          if (chunk[pos++] !== 10) return parseError('HPE_STRICT', 'chunk data not followed by CRLF');
          this.#state = State.ChunkSize;
          this.#remaining = 0;
          this.#chunkDigits = 0;
          continue;
        }
      }
    }
    return null;
  }

  #end(trailers: Buffer[] | null): void {
    this.#state = State.Done;
    this.#sink.onResponseEnd(trailers);
  }

  /** The head in `buf[from, end)` (`end` after the last header line's CRLF). */
  #onHead(buf: Buffer, from: number, end: number): Error | null {
    // Status line.
    const lineEnd = buf.indexOf(13, from);
    if (lineEnd - from < 12 || buf[lineEnd + 1] !== 10) return parseError('HPE_INVALID_CONSTANT', 'invalid status line');
    if (buf.toString('latin1', from, from + 7) !== 'HTTP/1.') return parseError('HPE_INVALID_CONSTANT', 'invalid HTTP version');
    const minor = buf[from + 7];
    if ((minor !== 0x30 && minor !== 0x31) || buf[from + 8] !== 32) return parseError('HPE_INVALID_VERSION', 'invalid HTTP version');
    const d0 = buf[from + 9] - 48;
    const d1 = buf[from + 10] - 48;
    const d2 = buf[from + 11] - 48;
    if (d0 < 1 || d0 > 5 || d1 < 0 || d1 > 9 || d2 < 0 || d2 > 9) return parseError('HPE_INVALID_STATUS', 'invalid status code');
    if (lineEnd > from + 12 && buf[from + 12] !== 32) return parseError('HPE_INVALID_STATUS', 'invalid status code');
    for (let i = from + 13; i < lineEnd; i++) {
      const c = buf[i];
      if ((c < 32 && c !== 9) || c === 127) return parseError('HPE_INVALID_STATUS', 'invalid reason phrase');
    }
    const status = d0 * 100 + d1 * 10 + d2;
    // Header lines (names and values as latin1 strings: their bytes unchanged).
    const raw: string[] = [];
    let contentLength = -1;
    let chunked = false;
    let te = false;
    let close = minor === 0x30;
    let keepAliveMs = -1;
    let p = lineEnd + 2;
    while (p < end) {
      const eol = buf.indexOf(13, p);
      if (eol === -1 || eol >= end || buf[eol + 1] !== 10) return parseError('HPE_STRICT', 'header line not ended by CRLF');
      let colon = -1;
      for (let i = p; i < eol; i++) {
        const c = buf[i];
        if (c === 58) {
          colon = i;
          break;
        }
        if (TOKEN[c] === 0) return parseError('HPE_INVALID_HEADER_TOKEN', 'invalid header name');
      }
      if (colon <= p) return parseError('HPE_INVALID_HEADER_TOKEN', 'invalid header line');
      let vs = colon + 1;
      let ve = eol;
      while (vs < ve && (buf[vs] === 32 || buf[vs] === 9)) vs++;
      while (ve > vs && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve--;
      for (let i = vs; i < ve; i++) {
        const c = buf[i];
        if ((c < 32 && c !== 9) || c === 127) return parseError('HPE_INVALID_HEADER_TOKEN', 'invalid header value');
      }
      raw.push(latin1(buf, p, colon), latin1(buf, vs, ve));
      const nl = colon - p;
      if (nl === 14 && equalsLower(buf, p, 'content-length')) {
        const n = contentLengthAt(buf, vs, ve);
        if (n < 0 || (contentLength >= 0 && n !== contentLength)) return parseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'invalid or conflicting Content-Length');
        contentLength = n;
      } else if (nl === 17 && equalsLower(buf, p, 'transfer-encoding')) {
        // Codings accumulate over repeated fields; `chunked` must be the last one, and only once.
        const codings = buf.toString('latin1', vs, ve).toLowerCase().split(',');
        for (const c of codings) {
          const coding = c.trim();
          if (chunked) return parseError('HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding after chunked');
          if (coding === 'chunked') chunked = true;
        }
        te = true;
      } else if (nl === 10 && equalsLower(buf, p, 'connection')) {
        const v = buf.toString('latin1', vs, ve).toLowerCase();
        // The usual values are one token (Node.js and most servers send `keep-alive`): no split.
        if (v === 'keep-alive') {
          if (minor === 0x30) close = false;
        } else if (hasToken(v, 'close')) close = true;
        else if (minor === 0x30 && hasToken(v, 'keep-alive')) close = false;
      } else if (nl === 10 && equalsLower(buf, p, 'keep-alive')) {
        keepAliveMs = keepAliveAt(buf, vs, ve);
      }
      p = eol + 2;
    }
    if (te && !chunked) return parseError('HPE_INVALID_TRANSFER_ENCODING', 'Transfer-Encoding does not end with chunked');
    if (te && contentLength >= 0) return parseError('HPE_UNEXPECTED_CONTENT_LENGTH', 'Content-Length with Transfer-Encoding');
    if (status < 200) {
      if (status === 101) return parseError('UND_ERR_INFO', 'unexpected 101 Switching Protocols');
      // Interim answer: skip it and read the next head.
      this.#state = State.Head;
      return null;
    }
    this.keepAlive = !close;
    if (this.#head || status === 204 || status === 304) {
      this.#state = State.Done;
      this.#sink.onResponseHead(status, raw, keepAliveMs);
      if (!this.halted) this.#sink.onResponseEnd(null);
      return null;
    }
    if (chunked) {
      this.#state = State.ChunkSize;
      this.#remaining = 0;
      this.#chunkDigits = 0;
    } else if (contentLength >= 0) {
      this.#state = contentLength === 0 ? State.Done : State.Fixed;
      this.#remaining = contentLength;
    } else {
      this.#state = State.UntilClose;
      this.keepAlive = false;
    }
    this.#sink.onResponseHead(status, raw, keepAliveMs);
    if (this.#state === State.Done && !this.halted) this.#sink.onResponseEnd(null);
    return null;
  }

  /** The trailer section in `buf[from, end)`. */
  #onTrailers(buf: Buffer, from: number, end: number): Error | null {
    const raw: Buffer[] = [];
    let p = from;
    while (p < end) {
      const eol = buf.indexOf(13, p);
      if (eol === -1 || eol >= end || buf[eol + 1] !== 10) return parseError('HPE_STRICT', 'trailer line not ended by CRLF');
      let colon = -1;
      for (let i = p; i < eol; i++) {
        const c = buf[i];
        if (c === 58) {
          colon = i;
          break;
        }
        if (TOKEN[c] === 0) return parseError('HPE_INVALID_HEADER_TOKEN', 'invalid trailer name');
      }
      if (colon <= p) return parseError('HPE_INVALID_HEADER_TOKEN', 'invalid trailer line');
      let vs = colon + 1;
      let ve = eol;
      while (vs < ve && (buf[vs] === 32 || buf[vs] === 9)) vs++;
      while (ve > vs && (buf[ve - 1] === 32 || buf[ve - 1] === 9)) ve--;
      for (let i = vs; i < ve; i++) {
        const c = buf[i];
        if ((c < 32 && c !== 9) || c === 127) return parseError('HPE_INVALID_HEADER_TOKEN', 'invalid trailer value');
      }
      raw.push(buf.subarray(p, colon), buf.subarray(vs, ve));
      p = eol + 2;
    }
    this.#end(raw.length === 0 ? null : raw);
    return null;
  }
}

/** Whether `buf[at, at + lower.length)` equals `lower` ignoring ASCII case. */
function equalsLower(buf: Buffer, at: number, lower: string): boolean {
  for (let i = 0; i < lower.length; i++) {
    if ((buf[at + i] | 0x20) !== lower.charCodeAt(i)) return false;
  }
  return true;
}

/** Content-Length read from the buffer when it is only digits (every response), else `parseContentLength`. */
function contentLengthAt(buf: Buffer, vs: number, ve: number): number {
  if (ve === vs) return -1;
  let n = 0;
  for (let i = vs; i < ve; i++) {
    const c = buf[i];
    if (c < 48 || c > 57) return parseContentLength(buf.toString('latin1', vs, ve));
    n = n * 10 + (c - 48);
    if (n > Number.MAX_SAFE_INTEGER) return -1;
  }
  return n;
}

/** Keep-Alive's `timeout=N` read from the buffer when the value is only that (as Node.js sends it), else `keepAliveTimeoutMs`. */
function keepAliveAt(buf: Buffer, vs: number, ve: number): number {
  if (ve - vs > 8 && ve - vs <= 17 && equalsLower(buf, vs, 'timeout=')) {
    let n = 0;
    let i = vs + 8;
    for (; i < ve; i++) {
      const c = buf[i];
      if (c < 48 || c > 57) break;
      n = n * 10 + (c - 48);
    }
    if (i === ve) return n * 1000;
  }
  return keepAliveTimeoutMs(buf.toString('latin1', vs, ve));
}

/** A Content-Length value (a list of identical values is one value, RFC 9110 §8.6); -1 when invalid. */
function parseContentLength(v: string): number {
  let out = -1;
  for (const part of v.split(',')) {
    const s = part.trim();
    if (s.length === 0) return -1;
    // Leading zeros are accepted (as llhttp); the bound is checked at each digit, so it is exact.
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      const c = s.charCodeAt(i);
      if (c < 48 || c > 57) return -1;
      n = n * 10 + (c - 48);
      if (n > Number.MAX_SAFE_INTEGER) return -1;
    }
    if (out >= 0 && n !== out) return -1;
    out = n;
  }
  return out;
}

function hasToken(list: string, token: string): boolean {
  if (list === token) return true;
  for (const t of list.split(',')) if (t.trim() === token) return true;
  return false;
}

/** `timeout=N` of a Keep-Alive header, in ms; -1 when absent or invalid. */
function keepAliveTimeoutMs(v: string): number {
  const m = /(?:^|[,;\s])timeout\s*=\s*(\d{1,9})/i.exec(v);
  return m === null ? -1 : Number(m[1]) * 1000;
}
