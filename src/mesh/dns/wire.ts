/**
 * A small, strict DNS wire codec (RFC 1035 §4, RFC 6891 EDNS(0)) for the sidecar's DNS proxy: it
 * parses the queries apps send, and builds the answers the proxy gives from its name table. Answers
 * relayed from the upstream resolvers are not rebuilt: only their header and question are checked.
 *
 * Strictness, so a hostile or broken packet costs nothing and never throws past `parseQuery`:
 *  - every read is bounds-checked; a short packet is a `DnsFormatError`;
 *  - a compression pointer must point strictly before the label that holds it (so pointers can
 *    never loop), a name is at most 255 octets and 127 labels, label types 0x40 and 0x80 are
 *    refused;
 *  - the sections must account for the whole packet (trailing bytes are an error).
 */

export const TYPE_A = 1;
export const TYPE_CNAME = 5;
export const TYPE_AAAA = 28;
export const TYPE_OPT = 41;
export const CLASS_IN = 1;

export const RCODE_NOERROR = 0;
export const RCODE_FORMERR = 1;
export const RCODE_SERVFAIL = 2;
export const RCODE_NXDOMAIN = 3;
export const RCODE_NOTIMP = 4;

/** Largest UDP answer to a query without EDNS (RFC 1035 §4.2.1). */
export const UDP_PLAIN_LIMIT = 512;
/** Largest DNS message (a TCP message's length prefix is 16 bits). */
export const MAX_MESSAGE = 65535;

const HEADER = 12;
const MAX_NAME = 255;

export class DnsFormatError extends Error {}

export interface DnsHeader {
  id: number;
  /** QR: a response. */
  response: boolean;
  opcode: number;
  authoritative: boolean;
  truncated: boolean;
  recursionDesired: boolean;
  recursionAvailable: boolean;
  /** AD and CD (RFC 4035), kept as read. */
  authenticData: boolean;
  checkingDisabled: boolean;
  rcode: number;
  qdcount: number;
  ancount: number;
  nscount: number;
  arcount: number;
}

export interface DnsQuestion {
  /** The name as sent (its case kept: resolvers match the answer's question case-sensitively, 0x20 encoding), without the final dot; '' for the root. */
  name: string;
  type: number;
  class: number;
}

export interface DnsQuery {
  header: DnsHeader;
  questions: DnsQuestion[];
  /** The EDNS(0) UDP payload size the client advertised (OPT record class), null without OPT. */
  ednsUdpSize: number | null;
}

export function parseHeader(buf: Uint8Array): DnsHeader {
  if (buf.length < HEADER) throw new DnsFormatError(`${buf.length} bytes is shorter than a DNS header (12)`);
  const flags = (buf[2] << 8) | buf[3];
  return {
    id: (buf[0] << 8) | buf[1],
    response: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    authoritative: (flags & 0x0400) !== 0,
    truncated: (flags & 0x0200) !== 0,
    recursionDesired: (flags & 0x0100) !== 0,
    recursionAvailable: (flags & 0x0080) !== 0,
    authenticData: (flags & 0x0020) !== 0,
    checkingDisabled: (flags & 0x0010) !== 0,
    rcode: flags & 0xf,
    qdcount: (buf[4] << 8) | buf[5],
    ancount: (buf[6] << 8) | buf[7],
    nscount: (buf[8] << 8) | buf[9],
    arcount: (buf[10] << 8) | buf[11],
  };
}

/**
 * Reads the (possibly compressed) name at `offset`: the name, in presentation form without the final
 * dot (label bytes outside printable ASCII, dots and backslashes escaped as `\DDD`), and the offset
 * after it in the original position (after the first pointer, if any).
 */
export function readName(buf: Uint8Array, offset: number): { name: string; next: number } {
  const labels: string[] = [];
  let pos = offset;
  let next = -1;
  let wire = 1; // the root label's length octet
  // Each pointer must go strictly backwards from the label that holds it: the walk ends.
  let limit = offset;
  for (;;) {
    if (pos >= buf.length) throw new DnsFormatError(`name at ${offset} runs past the end of the message`);
    const len = buf[pos];
    if (len === 0) {
      if (next < 0) next = pos + 1;
      break;
    }
    const kind = len & 0xc0;
    if (kind === 0xc0) {
      if (pos + 1 >= buf.length) throw new DnsFormatError(`compression pointer at ${pos} is cut short`);
      const target = ((len & 0x3f) << 8) | buf[pos + 1];
      if (target >= limit) throw new DnsFormatError(`compression pointer at ${pos} points forward or to itself (${target}): a loop`);
      if (next < 0) next = pos + 2;
      limit = target;
      pos = target;
      continue;
    }
    if (kind !== 0) throw new DnsFormatError(`label type 0x${kind.toString(16)} at ${pos} is not supported`);
    if (pos + 1 + len > buf.length) throw new DnsFormatError(`label at ${pos} runs past the end of the message`);
    wire += len + 1;
    if (wire > MAX_NAME) throw new DnsFormatError(`name at ${offset} is longer than 255 octets`);
    labels.push(labelText(buf, pos + 1, len));
    pos += 1 + len;
  }
  return { name: labels.join('.'), next };
}

function labelText(buf: Uint8Array, start: number, len: number): string {
  let s = '';
  for (let i = start; i < start + len; i++) {
    const c = buf[i];
    if (c > 0x20 && c < 0x7f && c !== 0x2e && c !== 0x5c) s += String.fromCharCode(c);
    else s += `\\${String(c).padStart(3, '0')}`;
  }
  return s;
}

/** Skips one resource record; returns its type, class and the offset after it. */
function skipRecord(buf: Uint8Array, offset: number): { type: number; klass: number; ttl: number; next: number } {
  const { next } = readName(buf, offset);
  if (next + 10 > buf.length) throw new DnsFormatError(`record at ${offset} is cut short`);
  const type = (buf[next] << 8) | buf[next + 1];
  const klass = (buf[next + 2] << 8) | buf[next + 3];
  const ttl = ((buf[next + 4] << 24) | (buf[next + 5] << 16) | (buf[next + 6] << 8) | buf[next + 7]) >>> 0;
  const rdlength = (buf[next + 8] << 8) | buf[next + 9];
  const end = next + 10 + rdlength;
  if (end > buf.length) throw new DnsFormatError(`record data at ${next + 10} runs past the end of the message`);
  return { type, klass, ttl, next: end };
}

/** Parses a whole message: header, questions, the other sections checked and skipped (EDNS size kept). */
export function parseQuery(buf: Uint8Array): DnsQuery {
  const header = parseHeader(buf);
  let pos = HEADER;
  const questions: DnsQuestion[] = [];
  for (let i = 0; i < header.qdcount; i++) {
    const { name, next } = readName(buf, pos);
    if (next + 4 > buf.length) throw new DnsFormatError(`question ${i} is cut short`);
    questions.push({ name, type: (buf[next] << 8) | buf[next + 1], class: (buf[next + 2] << 8) | buf[next + 3] });
    pos = next + 4;
  }
  let ednsUdpSize: number | null = null;
  const records = header.ancount + header.nscount + header.arcount;
  for (let i = 0; i < records; i++) {
    const rr = skipRecord(buf, pos);
    if (rr.type === TYPE_OPT) {
      if (i < header.ancount + header.nscount || ednsUdpSize !== null) throw new DnsFormatError('an OPT record outside the additional section, or twice');
      // RFC 6891 §6.2.5: values below 512 are treated as 512.
      ednsUdpSize = Math.max(UDP_PLAIN_LIMIT, rr.klass);
    }
    pos = rr.next;
  }
  if (pos !== buf.length) throw new DnsFormatError(`${buf.length - pos} bytes after the last record`);
  return { header, questions, ednsUdpSize };
}

/** The first question of a message (a response relayed from upstream), checked to be well formed. */
export function parseFirstQuestion(buf: Uint8Array): { header: DnsHeader; question: DnsQuestion | null; end: number } {
  const header = parseHeader(buf);
  if (header.qdcount === 0) return { header, question: null, end: HEADER };
  const { name, next } = readName(buf, HEADER);
  if (next + 4 > buf.length) throw new DnsFormatError('question is cut short');
  return { header, question: { name, type: (buf[next] << 8) | buf[next + 1], class: (buf[next + 2] << 8) | buf[next + 3] }, end: next + 4 };
}

/** One answer record the proxy writes. */
export type DnsAnswer =
  | { type: typeof TYPE_A; name: string; ttl: number; address: Uint8Array }
  | { type: typeof TYPE_AAAA; name: string; ttl: number; address: Uint8Array }
  | { type: typeof TYPE_CNAME; name: string; ttl: number; target: string };

/** Writes names with compression (RFC 1035 §4.1.4): a suffix already written becomes a pointer. */
class Writer {
  readonly #chunks: Uint8Array[] = [];
  #length = 0;
  readonly #suffixes = new Map<string, number>();

  get length(): number {
    return this.#length;
  }

  bytes(b: Uint8Array): void {
    this.#chunks.push(b);
    this.#length += b.length;
  }

  u16(v: number): void {
    this.bytes(Uint8Array.of((v >> 8) & 0xff, v & 0xff));
  }

  u32(v: number): void {
    this.bytes(Uint8Array.of((v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff));
  }

  /** The octets `name` takes if written now (labels up to the first suffix already written, then a pointer). */
  nameLength(name: string): number {
    const labels = splitName(name);
    let len = 0;
    for (let i = 0; i < labels.length; i++) {
      if (this.#suffixes.has(suffixKey(labels, i))) return len + 2;
      len += 1 + labels[i].length;
    }
    return len + 1;
  }

  name(name: string): void {
    const labels = splitName(name);
    for (let i = 0; i < labels.length; i++) {
      const key = suffixKey(labels, i);
      const at = this.#suffixes.get(key);
      if (at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (this.#length < 0x4000) this.#suffixes.set(key, this.#length);
      this.bytes(Uint8Array.of(labels[i].length));
      this.bytes(labels[i]);
    }
    this.bytes(Uint8Array.of(0));
  }

  result(): Buffer {
    return Buffer.concat(this.#chunks, this.#length);
  }
}

/**
 * Pointers reuse only a suffix of the very same octets, case included (as miekg/dns, which Istio's
 * DNS proxy packs with: its compression map is keyed by the exact name), so each name goes out in
 * the case it was given: lowercase answers after a question in the client's case
 * (table.ts `lookup`).
 */
function suffixKey(labels: Uint8Array[], from: number): string {
  let key = '';
  for (let i = from; i < labels.length; i++) key += `${labels[i].length}:${Buffer.from(labels[i]).toString('latin1')}`;
  return key;
}

/** Presentation form (as readName gives it) to label bytes; throws on an empty or long label. */
export function splitName(name: string): Uint8Array[] {
  const text = name.endsWith('.') && !name.endsWith('\\.') ? name.slice(0, -1) : name;
  if (text === '') return [];
  const labels: Uint8Array[] = [];
  let cur: number[] = [];
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === '\\' && /^\d{3}$/.test(text.slice(i + 1, i + 4))) {
      cur.push(Number(text.slice(i + 1, i + 4)) & 0xff);
      i += 3;
    } else if (ch === '\\' && i + 1 < text.length) {
      cur.push(text.charCodeAt(++i) & 0xff);
    } else if (ch === '.') {
      labels.push(Uint8Array.from(cur));
      cur = [];
    } else cur.push(text.charCodeAt(i) & 0xff);
  }
  labels.push(Uint8Array.from(cur));
  for (const l of labels) if (l.length === 0 || l.length > 63) throw new DnsFormatError(`"${name}" has an empty label or one longer than 63 octets`);
  return labels;
}

export interface DnsResponse {
  id: number;
  opcode: number;
  authoritative: boolean;
  recursionDesired: boolean;
  recursionAvailable: boolean;
  checkingDisabled: boolean;
  rcode: number;
  question: DnsQuestion | null;
  answers: DnsAnswer[];
}

/**
 * Encodes a response. With `limit` (the UDP size the client can take), records that would not fit
 * are left out, whole, and TC is set (RFC 2181 §9): the client retries over TCP.
 */
export function encodeResponse(r: DnsResponse, limit = MAX_MESSAGE): Buffer {
  const head = (count: number, truncated: boolean, out: Writer) => {
    out.u16(r.id);
    out.u16(0x8000 | ((r.opcode & 0xf) << 11) | (r.authoritative ? 0x0400 : 0) | (truncated ? 0x0200 : 0) | (r.recursionDesired ? 0x0100 : 0) | (r.recursionAvailable ? 0x0080 : 0) | (r.checkingDisabled ? 0x0010 : 0) | (r.rcode & 0xf));
    out.u16(r.question === null ? 0 : 1);
    out.u16(count);
    out.u16(0);
    out.u16(0);
    if (r.question !== null) {
      out.name(r.question.name);
      out.u16(r.question.type);
      out.u16(r.question.class);
    }
  };
  const encode = (n: number): Buffer => {
    const w = new Writer();
    head(n, n < r.answers.length, w);
    for (let i = 0; i < n; i++) {
      const a = r.answers[i];
      w.name(a.name);
      w.u16(a.type);
      w.u16(CLASS_IN);
      w.u32(a.ttl);
      if (a.type === TYPE_CNAME) {
        // RDLENGTH is known only after the (compressed) target is written.
        w.u16(w.nameLength(a.target));
        w.name(a.target);
      } else {
        w.u16(a.address.length);
        w.bytes(a.address);
      }
    }
    return w.result();
  };
  const whole = encode(r.answers.length);
  if (whole.length <= limit) return whole;
  // The most records that fit (the size grows with n): binary search, O(log n) encodings.
  let lo = 0;
  let hi = r.answers.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (encode(mid).length <= limit) lo = mid;
    else hi = mid - 1;
  }
  return encode(lo);
}

/** `1.2.3.4` → 4 bytes, an IPv6 text → 16 bytes; null when not an address. */
export function addressBytes(ip: string): Uint8Array | null {
  const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (v4) {
    const o = v4.slice(1).map(Number);
    return o.some((x) => x > 255) ? null : Uint8Array.from(o);
  }
  if (!ip.includes(':')) return null;
  let text = ip;
  const tail = /:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(text);
  if (tail) {
    const b = addressBytes(tail[1]);
    if (b === null) return null;
    text = `${text.slice(0, -tail[1].length)}${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const parts = text.split('::');
  if (parts.length > 2) return null;
  const head = parts[0] === '' ? [] : parts[0].split(':');
  const rest = parts.length === 2 && parts[1] !== '' ? parts[1].split(':') : [];
  const fill = 8 - head.length - rest.length;
  if (parts.length === 2 ? fill < 1 : fill !== 0) return null;
  const groups = [...head, ...Array<string>(parts.length === 2 ? fill : 0).fill('0'), ...rest];
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(groups[i])) return null;
    const g = parseInt(groups[i], 16);
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  }
  return out;
}

/**
 * A relayed upstream answer cut to `limit` bytes for a UDP client (the upstream ignored the size the
 * client advertised): the header with TC set and the question, no records; the client retries over TCP.
 */
export function truncateRelayed(buf: Uint8Array, limit: number): Buffer {
  if (buf.length <= limit) return Buffer.from(buf);
  const { end, header } = parseFirstQuestion(buf);
  const out = Buffer.from(buf.subarray(0, end));
  out[2] |= 0x02; // TC
  out[4] = 0;
  out[5] = header.qdcount === 0 ? 0 : 1;
  out.fill(0, 6, 12); // no records
  return out;
}
