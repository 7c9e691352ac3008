/**
 * A strict HTTP/1.1 request parser (RFC 9112), incremental over the chunks a socket delivers.
 *
 * - The head is buffered until its empty line, validated byte by byte as it arrives (a bare LF or
 *   a CR not followed by LF is refused at once), then parsed in one char-code loop into a flat
 *   `[name, value, ...]` list. At most `maxHeadSize` bytes (431 beyond).
 * - The body is framed per RFC 9112 §6.3: Content-Length, or chunked (sizes in hex, extensions
 *   bounded, trailers parsed like header fields and dropped), or none. Body bytes are handed out as
 *   slices of the socket's chunks, never copied.
 * - The parser stops after each complete message (`execute` returns how far it read): the
 *   connection decides when the next pipelined request may start.
 *
 * What it refuses (each a `ParseError` with the status the engine answers, then the connection
 * closes): methods outside Node's list (llhttp's), anything but one SP between the request-line
 * parts, target bytes outside 0x21-0x7E, versions other than HTTP/1.0 and HTTP/1.1, header names
 * that are not tokens (so whitespace before the colon and empty names), CTLs other than HTAB in
 * values, obs-fold, Content-Length that is not all digits or above 2^53-1, two Content-Length
 * lines, Content-Length with Transfer-Encoding, two Transfer-Encoding lines, Transfer-Encoding in
 * HTTP/1.0, an empty Transfer-Encoding or `chunked` twice (400), and Transfer-Encoding other than
 * `chunked` (501: meshgate never decodes transfer codings), chunk sizes that are not hex or
 * overflow, chunk data not followed by CRLF.
 */

import { METHODS } from 'node:http';

/** Body framing of a request (RFC 9112 §6.3). */
export const enum Framing {
  None = 0,
  Length = 1,
  Chunked = 2,
}

/** A refusal: the status to answer (400, 413, 431, 501) and a stable reason code. */
export class ParseError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
  ) {
    super(code);
  }
}

/** What the parser tells its owner (the connection implements it: no closures per request). */
export interface ParserHandler {
  /** A complete request head; the fields of `RequestHead` are valid until the next head. */
  onHead(head: RequestHead): void;
  /** A slice of body bytes (already de-chunked). */
  onBody(chunk: Buffer): void;
  /** The message ended (body complete, trailers read). */
  onMessageComplete(): void;
}

/** A parsed request head. */
export interface RequestHead {
  method: string;
  target: string;
  /** 0 or 1 (HTTP/1.0, HTTP/1.1). */
  versionMinor: number;
  /** Header lines as received: names as sent, values without surrounding whitespace. */
  rawHeaders: string[];
  framing: Framing;
  /** Content-Length when framing is Length. */
  contentLength: number;
  /** The connection stays open after this exchange (HTTP/1.1 without `close`, HTTP/1.0 with `keep-alive`). */
  keepAlive: boolean;
  /**
   * A protocol switch meshgate tunnels: `Connection: upgrade` with an `Upgrade` header listing
   * `websocket`. Any other upgrade (h2c from `curl --http2`, TLS/1.0...) is read as the plain request
   * it also is, body included, as Envoy and nginx do (RFC 9110 §7.8 lets a server ignore Upgrade);
   * the forwarding code drops `Upgrade`, `HTTP2-Settings` and the Connection tokens.
   */
  upgrade: boolean;
  /** `Expect: 100-continue` (HTTP/1.1). */
  expectContinue: boolean;
  /** An `Expect` other than 100-continue (417). */
  expectOther: boolean;
}

/** Methods llhttp knows (Node's `http.METHODS`); anything else is refused as llhttp refuses it. */
const KNOWN_METHODS: ReadonlySet<string> = new Set(METHODS);

/** RFC 9110 tchar: ! # $ % & ' * + - . ^ _ ` | ~ DIGIT ALPHA. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~") TCHAR[c.charCodeAt(0)] = 1;
for (let c = 0x30; c <= 0x39; c++) TCHAR[c] = 1;
for (let c = 0x41; c <= 0x5a; c++) TCHAR[c] = 1;
for (let c = 0x61; c <= 0x7a; c++) TCHAR[c] = 1;

/** field-vchar / SP / HTAB (obs-text allowed, as llhttp does). */
const VALUE_CHAR = new Uint8Array(256);
VALUE_CHAR[0x09] = 1;
for (let c = 0x20; c <= 0x7e; c++) VALUE_CHAR[c] = 1;
for (let c = 0x80; c <= 0xff; c++) VALUE_CHAR[c] = 1;

const TOKEN = "[!#$%&'*+\\-.^_`|~0-9A-Za-z]+";
const CHUNK_EXT = new RegExp(`^(?:;${TOKEN}(?:=(?:${TOKEN}|"(?:[\\t\\x20\\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t\\x20-\\x7e\\x80-\\xff])*"))?)+$`);

const HEX = new Int8Array(256).fill(-1);
for (let c = 0; c < 10; c++) HEX[0x30 + c] = c;
for (let c = 0; c < 6; c++) {
  HEX[0x41 + c] = 10 + c;
  HEX[0x61 + c] = 10 + c;
}

const enum State {
  /** Before a request line: leading CRLFs are skipped (RFC 9112 §2.2). */
  Start,
  Head,
  BodyLength,
  ChunkSize,
  ChunkExt,
  ChunkSizeLf,
  ChunkData,
  ChunkDataCr,
  ChunkDataLf,
  Trailers,
  /** A message ended; `execute` reads nothing more until `next()`. */
  Done,
  /** A refusal was raised; the connection is closing. */
  Failed,
  /** The last message did not keep the connection: nothing may follow it (llhttp: HPE_CLOSED_CONNECTION). */
  Closed,
}

/** Longest chunk extension accepted (Node: 16 KiB, then 413). */
const MAX_CHUNK_EXT = 16 * 1024;
/** Most trailer bytes accepted. */
const MAX_TRAILERS = 64 * 1024;
const NO_BYTES = Buffer.alloc(0);

export class H1Parser {
  readonly #handler: ParserHandler;
  readonly #maxHeadSize: number;
  /** Most header lines kept (more are validated, framing-checked, and dropped; the request path answers 431). */
  readonly #maxHeaders: number;
  #state = State.Start;
  /** Head bytes buffered so far (the chunks they came in). */
  #head: Buffer[] = [];
  #headLength = 0;
  /** Last byte seen of the head (CR tracking across chunks). */
  #prev = 0;
  /** Count of consecutive CRLF pairs at the end of the head so far (2 = end of head). */
  #crlfRun = 0;
  #remaining = 0;
  #chunkDigits = 0;
  #ext = '';
  #trailerBytes = 0;
  /** Trailer section: bytes of the current line, and whether the line is empty so far. */
  #trailerLineLength = 0;
  readonly head: RequestHead = {
    method: '',
    target: '',
    versionMinor: 1,
    rawHeaders: [],
    framing: Framing.None,
    contentLength: 0,
    keepAlive: true,
    upgrade: false,
    expectContinue: false,
    expectOther: false,
  };

  constructor(handler: ParserHandler, maxHeadSize = 64 * 1024, maxHeaders = 101) {
    this.#handler = handler;
    this.#maxHeadSize = maxHeadSize;
    this.#maxHeaders = maxHeaders;
  }

  /** True between two messages (nothing of the next head read yet). */
  get idle(): boolean {
    return this.#state === State.Start && this.#headLength === 0;
  }

  /** True while a head is being read. */
  get inHead(): boolean {
    return this.#state === State.Head || (this.#state === State.Start && this.#headLength > 0);
  }

  /** After `onMessageComplete`: ready for the next request. */
  next(): void {
    if (this.#state === State.Done) this.#state = this.head.keepAlive ? State.Start : State.Closed;
  }

  /**
   * Reads `buf` from `offset`. Returns the index where it stopped: `buf.length`, or just after the
   * end of a message (the state is then Done until `next()`). Throws `ParseError`.
   */
  execute(buf: Buffer, offset = 0): number {
    let i = offset;
    const n = buf.length;
    while (i < n) {
      switch (this.#state) {
        case State.Start: {
          // Skip empty lines before the request line (complete CRLF pairs only).
          const c = buf[i];
          if (this.#headLength === 0 && (c === 13 || c === 10)) {
            if (c === 13) {
              this.#prev = 13;
              i++;
              continue;
            }
            if (this.#prev !== 13) return this.#fail(400, 'MG_H1_BARE_LF');
            this.#prev = 0;
            i++;
            continue;
          }
          if (this.#prev === 13) return this.#fail(400, 'MG_H1_BARE_CR');
          this.#state = State.Head;
          this.#crlfRun = 0;
          this.#prev = 0;
          continue;
        }
        case State.Head: {
          // Validate line endings as bytes arrive; stop at CRLFCRLF.
          let j = i;
          let prev = this.#prev;
          let run = this.#crlfRun;
          let end = -1;
          for (; j < n; j++) {
            const c = buf[j];
            if (c === 10) {
              if (prev !== 13) return this.#fail(400, 'MG_H1_BARE_LF');
              run++;
              if (run === 2) {
                end = j + 1;
                break;
              }
            } else if (c === 13) {
              if (prev === 13) return this.#fail(400, 'MG_H1_BARE_CR');
            } else {
              if (prev === 13) return this.#fail(400, 'MG_H1_BARE_CR');
              run = 0;
            }
            prev = c;
          }
          const stop = end === -1 ? n : end;
          if (this.#headLength + (stop - i) > this.#maxHeadSize) return this.#fail(431, 'MG_H1_HEAD_TOO_LARGE');
          if (stop > i) {
            this.#head.push(buf.subarray(i, stop));
            this.#headLength += stop - i;
          }
          if (end === -1) {
            this.#prev = prev;
            this.#crlfRun = run;
            return n;
          }
          this.#prev = 0;
          this.#crlfRun = 0;
          const bytes = this.#head.length === 1 ? this.#head[0] : Buffer.concat(this.#head, this.#headLength);
          this.#head = [];
          this.#headLength = 0;
          this.#parseHead(bytes.toString('latin1', 0, bytes.length - 4));
          i = end;
          const h = this.head;
          this.#handler.onHead(h);
          // An upgrade (or CONNECT): what follows the head belongs to the tunnel, not to HTTP.
          if (h.upgrade || h.method === 'CONNECT') {
            this.#state = State.Done;
            return i;
          }
          if (h.framing === Framing.Length) {
            if (h.contentLength === 0) return this.#complete(i);
            this.#remaining = h.contentLength;
            this.#state = State.BodyLength;
          } else if (h.framing === Framing.Chunked) {
            this.#startChunk();
          } else {
            return this.#complete(i);
          }
          continue;
        }
        case State.BodyLength: {
          const take = Math.min(this.#remaining, n - i);
          this.#remaining -= take;
          this.#handler.onBody(buf.subarray(i, i + take));
          i += take;
          if (this.#remaining === 0) return this.#complete(i);
          continue;
        }
        case State.ChunkSize: {
          const c = buf[i];
          const d = HEX[c];
          if (d >= 0) {
            if (++this.#chunkDigits > 13) return this.#fail(400, 'MG_H1_CHUNK_SIZE_OVERFLOW');
            this.#remaining = this.#remaining * 16 + d;
            i++;
            continue;
          }
          if (this.#chunkDigits === 0) return this.#fail(400, 'MG_H1_BAD_CHUNK_SIZE');
          if (c === 13) {
            this.#state = State.ChunkSizeLf;
            i++;
            continue;
          }
          if (c === 59 /* ; */) {
            // The extension, checked whole at its CR. (RFC 9112 §7.1.1 allows BWS before `;`;
            // llhttp refuses it, and so does this parser: a proxy must not read more than it does.)
            this.#state = State.ChunkExt;
            this.#ext = '';
            continue;
          }
          return this.#fail(400, 'MG_H1_BAD_CHUNK_SIZE');
        }
        case State.ChunkExt: {
          let j = i;
          while (j < n && buf[j] !== 13) j++;
          if (this.#ext.length + (j - i) > MAX_CHUNK_EXT) return this.#fail(413, 'MG_H1_CHUNK_EXT_TOO_LARGE');
          this.#ext += buf.toString('latin1', i, j);
          i = j;
          if (j === n) continue;
          // chunk-ext = *( ";" name [ "=" ( token / quoted-string ) ] ): RFC 9112 §7.1.1 without the
          // BWS it allows, which llhttp refuses (a proxy must not read more than the server behind it).
          if (!CHUNK_EXT.test(this.#ext)) return this.#fail(400, 'MG_H1_BAD_CHUNK_EXT');
          this.#state = State.ChunkSizeLf;
          i++;
          continue;
        }
        case State.ChunkSizeLf: {
          if (buf[i] !== 10) return this.#fail(400, 'MG_H1_BARE_CR');
          i++;
          if (this.#remaining === 0) {
            this.#state = State.Trailers;
            this.#trailerBytes = 0;
            this.#trailerLineLength = 0;
            this.#prev = 0;
            this.#head = [];
            this.#headLength = 0;
          } else {
            this.#state = State.ChunkData;
          }
          continue;
        }
        case State.ChunkData: {
          const take = Math.min(this.#remaining, n - i);
          this.#remaining -= take;
          this.#handler.onBody(buf.subarray(i, i + take));
          i += take;
          if (this.#remaining === 0) this.#state = State.ChunkDataCr;
          continue;
        }
        case State.ChunkDataCr:
          if (buf[i] !== 13) return this.#fail(400, 'MG_H1_BAD_CHUNK_DATA');
          this.#state = State.ChunkDataLf;
          i++;
          continue;
        case State.ChunkDataLf:
          if (buf[i] !== 10) return this.#fail(400, 'MG_H1_BAD_CHUNK_DATA');
          i++;
          this.#startChunk();
          continue;
        case State.Trailers: {
          // Trailer fields: validated like header fields, then dropped (as node:http's server path did).
          // A line's bytes are kept as one slice per run within this read, never one per byte.
          let run = -1;
          while (i < n) {
            const c = buf[i];
            i++;
            if (++this.#trailerBytes > MAX_TRAILERS) return this.#fail(431, 'MG_H1_TRAILERS_TOO_LARGE');
            if (c === 10) {
              if (this.#prev !== 13) return this.#fail(400, 'MG_H1_BARE_LF');
              this.#prev = 0;
              if (this.#trailerLineLength === 0) {
                this.#head = [];
                return this.#complete(i);
              }
              const line = Buffer.concat(this.#head).toString('latin1');
              this.#head = [];
              this.#trailerLineLength = 0;
              this.#checkTrailerLine(line);
              continue;
            }
            if (this.#prev === 13) return this.#fail(400, 'MG_H1_BARE_CR');
            this.#prev = c;
            if (c !== 13) {
              this.#trailerLineLength++;
              if (run === -1) run = i - 1;
            } else if (run !== -1) {
              this.#head.push(buf.subarray(run, i - 1));
              run = -1;
            }
          }
          if (run !== -1) this.#head.push(buf.subarray(run, i));
          continue;
        }
        case State.Done:
          return i;
        case State.Failed:
          return n;
        case State.Closed:
          return this.#fail(400, 'MG_H1_DATA_AFTER_CLOSE');
      }
    }
    return i;
  }

  /** The bytes of an incomplete head so far (for an upgrade, nothing; for errors, nothing). */
  #startChunk(): void {
    this.#state = State.ChunkSize;
    this.#remaining = 0;
    this.#chunkDigits = 0;
  }

  #complete(i: number): number {
    this.#state = State.Done;
    this.#handler.onMessageComplete();
    return i;
  }

  #fail(status: number, code: string): never {
    this.#state = State.Failed;
    this.#head = [];
    this.#headLength = 0;
    throw new ParseError(status, code);
  }

  #checkTrailerLine(line: string): void {
    const colon = line.indexOf(':');
    if (colon <= 0) this.#fail(400, 'MG_H1_BAD_TRAILER');
    for (let k = 0; k < colon; k++) if (TCHAR[line.charCodeAt(k)] !== 1) this.#fail(400, 'MG_H1_BAD_TRAILER');
    for (let k = colon + 1; k < line.length; k++) if (VALUE_CHAR[line.charCodeAt(k)] !== 1) this.#fail(400, 'MG_H1_BAD_TRAILER');
  }

  /** Parses a head (without its final CRLFCRLF; line endings already checked) into `this.head`. */
  #parseHead(s: string): void {
    const h = this.head;
    const len = s.length;
    // ---- request-line: method SP request-target SP HTTP-version ----
    let i = 0;
    while (i < len && TCHAR[s.charCodeAt(i)] === 1) i++;
    if (i === 0 || i >= len || s.charCodeAt(i) !== 32) this.#fail(400, 'MG_H1_BAD_METHOD');
    const method = s.slice(0, i);
    if (!KNOWN_METHODS.has(method)) this.#fail(400, 'MG_H1_BAD_METHOD');
    const t0 = ++i;
    while (i < len) {
      const c = s.charCodeAt(i);
      if (c === 32) break;
      if (c < 0x21 || c > 0x7e) this.#fail(400, 'MG_H1_BAD_TARGET');
      i++;
    }
    if (i === t0 || i >= len) this.#fail(400, 'MG_H1_BAD_TARGET');
    const target = s.slice(t0, i);
    if (!validTarget(method, target)) this.#fail(400, 'MG_H1_BAD_TARGET');
    i++;
    // `HTTP/1.x` then CRLF (or the end of the head).
    if (
      len - i < 8 ||
      s.charCodeAt(i) !== 72 || s.charCodeAt(i + 1) !== 84 || s.charCodeAt(i + 2) !== 84 || s.charCodeAt(i + 3) !== 80 ||
      s.charCodeAt(i + 4) !== 47 || s.charCodeAt(i + 5) !== 49 || s.charCodeAt(i + 6) !== 46
    ) this.#fail(400, 'MG_H1_BAD_VERSION');
    const minor = s.charCodeAt(i + 7) - 48;
    if (minor !== 0 && minor !== 1) this.#fail(400, 'MG_H1_BAD_VERSION');
    i += 8;
    if (i < len && (s.charCodeAt(i) !== 13 || s.charCodeAt(i + 1) !== 10)) this.#fail(400, 'MG_H1_BAD_VERSION');
    i += 2;

    // ---- header fields ----
    const raw: string[] = [];
    let kept = 0;
    let cl = -1;
    let te: string | null = null;
    let teLines = 0;
    let connClose = false;
    let connKeepAlive = false;
    let connUpgrade = false;
    let hasUpgrade = false;
    let upgradeTo = '';
    let expect: string | null = null;
    while (i < len) {
      const c0 = s.charCodeAt(i);
      if (c0 === 32 || c0 === 9) this.#fail(400, 'MG_H1_OBS_FOLD');
      const n0 = i;
      while (i < len && TCHAR[s.charCodeAt(i)] === 1) i++;
      if (i === n0 || i >= len || s.charCodeAt(i) !== 58 /* : */) this.#fail(400, 'MG_H1_BAD_HEADER_NAME');
      const name = s.slice(n0, i);
      i++;
      while (i < len && (s.charCodeAt(i) === 32 || s.charCodeAt(i) === 9)) i++;
      const v0 = i;
      let vEnd = i;
      while (i < len) {
        const c = s.charCodeAt(i);
        if (c === 13) break;
        if (VALUE_CHAR[c] !== 1) this.#fail(400, 'MG_H1_BAD_HEADER_VALUE');
        i++;
        if (c !== 32 && c !== 9) vEnd = i;
      }
      const value = s.slice(v0, vEnd);
      i += 2; // CRLF (checked as the head arrived)
      if (kept < this.#maxHeaders) {
        raw.push(name, value);
        kept++;
      }
      // Framing and connection fields are read whatever the count (the request path answers 431 past it).
      switch (name.length) {
        case 14:
          if (name.toLowerCase() === 'content-length') {
            // Leading zeros are accepted (as llhttp); the value itself is bounded by the checks below.
            if (cl !== -1 || value.length === 0) this.#fail(400, 'MG_H1_BAD_CONTENT_LENGTH');
            let v = 0;
            for (let k = 0; k < value.length; k++) {
              const d = value.charCodeAt(k) - 48;
              if (d < 0 || d > 9) this.#fail(400, 'MG_H1_BAD_CONTENT_LENGTH');
              v = v * 10 + d;
              // Checked at each digit, so the comparison is exact (v never grows past one digit beyond the safe range).
              if (v > Number.MAX_SAFE_INTEGER) this.#fail(400, 'MG_H1_BAD_CONTENT_LENGTH');
            }
            cl = v;
          }
          break;
        case 17:
          if (name.toLowerCase() === 'transfer-encoding') {
            teLines++;
            te = value;
          }
          break;
        case 10:
          if (name.toLowerCase() === 'connection') {
            const v = value.toLowerCase();
            // Tokens accumulate over repeated lines (as llhttp): a later line never clears an earlier one.
            // The usual values are one token: no split.
            if (v === 'keep-alive') connKeepAlive = true;
            else if (v === 'close') connClose = true;
            else {
              if (v.includes('close')) connClose ||= hasToken(v, 'close');
              if (v.includes('keep-alive')) connKeepAlive ||= hasToken(v, 'keep-alive');
              if (v.includes('upgrade')) connUpgrade ||= hasToken(v, 'upgrade');
            }
          }
          break;
        case 7:
          if (name.toLowerCase() === 'upgrade') {
            hasUpgrade = true;
            upgradeTo = upgradeTo === '' ? value : `${upgradeTo},${value}`;
          }
          break;
        case 6:
          if (name.toLowerCase() === 'expect') expect = value;
          break;
      }
    }

    let framing = Framing.None;
    if (te !== null) {
      // RFC 9112 §6.1: Transfer-Encoding with Content-Length is a smuggling attempt; HTTP/1.0 has
      // no transfer codings; chunked applies once and last. Other codings are not decoded (501).
      if (cl !== -1 || teLines > 1 || minor === 0) this.#fail(400, 'MG_H1_BAD_TRANSFER_ENCODING');
      const v = te.toLowerCase();
      if (v === 'chunked') framing = Framing.Chunked;
      else if (v === '' || countToken(v, 'chunked') > 1) this.#fail(400, 'MG_H1_BAD_TRANSFER_ENCODING');
      else this.#fail(501, 'MG_H1_TRANSFER_CODING');
    } else if (cl > 0) {
      framing = Framing.Length;
    } else if (cl === 0) {
      framing = Framing.Length;
    }
    h.method = method;
    h.target = target;
    h.versionMinor = minor;
    h.rawHeaders = raw;
    h.framing = framing;
    h.contentLength = cl === -1 ? 0 : cl;
    h.keepAlive = minor === 1 ? !connClose : connKeepAlive && !connClose;
    h.upgrade = connUpgrade && hasUpgrade && tunnelledUpgrade(upgradeTo);
    h.expectContinue = minor === 1 && expect !== null && expect.toLowerCase() === '100-continue';
    h.expectOther = expect !== null && !h.expectContinue && minor === 1;
  }
}

/** Bytes llhttp refuses in an authority (absolute-form, CONNECT): `"` `#` `<` `>` `\\` `^` `` ` `` `{` `|` `}`. */
const NOT_AUTHORITY = new Uint8Array(128);
for (const c of '"#<>\\^`{|}') NOT_AUTHORITY[c.charCodeAt(0)] = 1;

/**
 * The request-target forms RFC 9112 §3.2 defines, as llhttp reads them (bytes 0x21-0x7E were
 * checked already): origin-form `/...`; asterisk-form `*` alone; absolute-form `scheme://authority[/?...]`
 * with a letters-only scheme; authority-form only for CONNECT.
 */
function validTarget(method: string, t: string): boolean {
  const c0 = t.charCodeAt(0);
  if (c0 === 47 /* / */) return true;
  if (method === 'CONNECT') return authorityOk(t, 0, t.length);
  if (c0 === 42 /* * */) return t.length === 1;
  let i = 0;
  while (i < t.length && ((t.charCodeAt(i) | 0x20) >= 97 && (t.charCodeAt(i) | 0x20) <= 122)) i++;
  if (i === 0 || t.charCodeAt(i) !== 58 || t.charCodeAt(i + 1) !== 47 || t.charCodeAt(i + 2) !== 47) return false;
  i += 3;
  let end = i;
  while (end < t.length && t.charCodeAt(end) !== 47 && t.charCodeAt(end) !== 63) end++;
  return authorityOk(t, i, end);
}

function authorityOk(t: string, from: number, to: number): boolean {
  for (let k = from; k < to; k++) if (NOT_AUTHORITY[t.charCodeAt(k)] === 1) return false;
  return true;
}

/**
 * Whether an `Upgrade` value (comma-separated `protocol[/version]` list, RFC 9110 §7.8) names a
 * protocol meshgate tunnels: WebSocket only (case-insensitive).
 */
export function tunnelledUpgrade(value: string): boolean {
  for (const part of value.split(',')) {
    const p = part.trim().toLowerCase();
    const slash = p.indexOf('/');
    if ((slash === -1 ? p : p.slice(0, slash)) === 'websocket') return true;
  }
  return false;
}

/** Whether the comma-separated list `v` (lowercase) holds `token`. */
function hasToken(v: string, token: string): boolean {
  return countToken(v, token) > 0;
}

function countToken(v: string, token: string): number {
  let count = 0;
  for (const part of v.split(',')) if (part.trim() === token) count++;
  return count;
}

export { NO_BYTES };
