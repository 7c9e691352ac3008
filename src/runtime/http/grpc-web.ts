/**
 * gRPC-Web (grpc/doc/PROTOCOL-WEB.md) translated to gRPC at the gateway, as Envoy's grpc_web filter
 * does: a request with content-type `application/grpc-web[+proto]` or `application/grpc-web-text[+proto]`
 * goes upstream as `application/grpc[+proto]` with `te: trailers` (the `-text` body base64-decoded);
 * the answer comes back with the request's gRPC-Web content-type, the body as is (base64-encoded for
 * `-text`), and the upstream trailers appended as a trailer frame (flag byte 0x80, 4-byte length,
 * `name:value\r\n` lines). A trailers-only answer keeps grpc-status in its headers.
 */
import { Transform, type TransformCallback } from 'node:stream';
import type { Downstream } from './downstream.js';

/** 0: not gRPC-Web; 1: binary; 2: base64 (`-text`). */
export type GrpcWebMode = 0 | 1 | 2;

export function grpcWebMode(d: Downstream): GrpcWebMode {
  const ct = d.header('content-type');
  if (ct === null || !ct.startsWith('application/grpc-web')) return 0;
  return ct.startsWith('application/grpc-web-text') ? 2 : 1;
}

/** Upstream request headers for a gRPC-Web request: gRPC content-type, `te: trailers`, no content-length (the body may change size). */
export function grpcWebRequestHeaders(headers: string[], d: Downstream): string[] {
  const ct = String(d.header('content-type'));
  const proto = ct.includes('+proto') ? '+proto' : '';
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i].toLowerCase();
    if (n === 'content-type' || n === 'content-length' || n === 'te') continue;
    out.push(headers[i], headers[i + 1]);
  }
  out.push('content-type', `application/grpc${proto}`, 'te', 'trailers');
  return out;
}

/** Downstream response headers: the request's gRPC-Web content-type, no content-length (a trailer frame is appended). */
export function grpcWebResponseHeaders(headers: string[], d: Downstream): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const n = headers[i].toLowerCase();
    if (n === 'content-type' || n === 'content-length') continue;
    out.push(headers[i], headers[i + 1]);
  }
  out.push('content-type', String(d.header('content-type')));
  return out;
}

/** The trailer frame for undici's trailers (a flat Buffer/string list, or a headers object). */
export function grpcWebTrailerFrame(trailers: unknown): Buffer {
  let text = '';
  if (Array.isArray(trailers)) {
    for (let i = 0; i + 1 < trailers.length; i += 2) {
      const name = String(trailers[i]).toLowerCase();
      if (name.charCodeAt(0) !== 58) text += `${name}:${String(trailers[i + 1])}\r\n`;
    }
  } else if (typeof trailers === 'object' && trailers !== null) {
    for (const [name, value] of Object.entries(trailers as Record<string, unknown>)) {
      if (name.charCodeAt(0) === 58 || value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) text += `${name.toLowerCase()}:${String(v)}\r\n`;
    }
  }
  const payload = Buffer.from(text, 'latin1');
  const frame = Buffer.allocUnsafe(5 + payload.length);
  frame[0] = 0x80;
  frame.writeUInt32BE(payload.length, 1);
  payload.copy(frame, 5);
  return frame;
}

/** Base64-decodes a `-text` request body chunk by chunk (4-character groups; padding between messages allowed). */
export class Base64Decoder extends Transform {
  #rest = '';
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const s = this.#rest + chunk.toString('latin1').replace(/[\r\n\s]/g, '');
    const cut = s.length - (s.length % 4);
    this.#rest = s.slice(cut);
    cb(null, cut > 0 ? Buffer.from(s.slice(0, cut), 'base64') : undefined);
  }
  override _flush(cb: TransformCallback): void {
    cb(null, this.#rest.length > 0 ? Buffer.from(this.#rest, 'base64') : undefined);
  }
}

/** Base64-encodes response bytes for `-text`, keeping a 0-2 byte remainder between chunks. */
export class Base64Encoder {
  #rest: Buffer | null = null;
  encode(chunk: Buffer): Buffer {
    const b = this.#rest === null ? chunk : Buffer.concat([this.#rest, chunk]);
    const cut = b.length - (b.length % 3);
    this.#rest = cut < b.length ? b.subarray(cut) : null;
    return Buffer.from(b.subarray(0, cut).toString('base64'), 'latin1');
  }
  /** The remainder and `tail` (the trailer frame) encoded together: the body has padding only at its end. */
  finish(tail: Buffer): Buffer {
    const b = this.#rest === null ? tail : Buffer.concat([this.#rest, tail]);
    this.#rest = null;
    return Buffer.from(b.toString('base64'), 'latin1');
  }
}
