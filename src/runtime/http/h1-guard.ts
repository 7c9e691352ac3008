/**
 * What Node's HTTP/1.1 parser (llhttp, Node 20) lets through that an edge proxy must refuse before
 * anything reaches an upstream (hardening.md §3, §4.1). Observed on Node 20.20 with raw sockets:
 *
 *   rejected by Node already (400): CL+TE together, duplicate or comma-joined CL (even the same
 *   value), invalid CL, two TE lines, TE `identity`, obs-fold, whitespace before the colon, bare LF,
 *   NUL/CR in values, empty header name, spaces and bytes over 0x7E in the target, no Host (1.1),
 *   invalid chunk sizes; head over maxHeaderSize: 431.
 *
 *   passed by Node, refused here:
 *   - two Host headers (request-handler.ts, RFC 9112 §3.2)
 *   - Transfer-Encoding in an HTTP/1.0 request: 400 (RFC 9112 §6.1: the framing is faulty)
 *   - Transfer-Encoding other than exactly `chunked` (`gzip, chunked`, `Chunked ` is fine): 501, as
 *     nginx; meshgate never decodes transfer codings, and an empty TE is 400
 *   - HTTP versions other than 1.0 and 1.1 on an HTTP/1 connection (`GET /` as 0.9, `HTTP/2.0`): 400
 *   - header names with `_`: 400, dropped, or allowed (IR `headersWithUnderscores`; Envoy's
 *     `headers_with_underscores_action`, whose edge advice is REJECT_REQUEST)
 *
 * Every refusal closes the connection. HTTP/2 requests reach only the header-name check: nghttp2
 * validates their framing itself.
 */

import type { UnderscoreHeadersAction } from '../../ir/types.js';
import type { Downstream } from './downstream.js';
import { Errors, type LocalError } from './local-errors.js';

/** Result of `checkRequestHead`: null = fine; DROP_UNDERSCORES = fine once such headers are dropped. */
export const DROP_UNDERSCORES = 1;

/**
 * Checks a request head. Returns null when it is acceptable, `DROP_UNDERSCORES` when headers with
 * `_` must be removed (action DROP_HEADER), or the error to answer (then close the connection).
 */
export function checkRequestHead(d: Downstream, underscores: UnderscoreHeadersAction): LocalError | typeof DROP_UNDERSCORES | null {
  const h2 = d.http2;
  if (!h2 && (d.versionMajor !== 1 || (d.versionMinor !== 0 && d.versionMinor !== 1))) return Errors.badRequest;
  const raw = d.rawHeaders;
  let drop = false;
  for (let i = 0; i < raw.length; i += 2) {
    const n = raw[i];
    if (n.length === 17 && !h2 && n.toLowerCase() === 'transfer-encoding') {
      if (d.versionMinor === 0) return Errors.badRequest;
      const v = raw[i + 1].trim().toLowerCase();
      if (v === '') return Errors.badRequest;
      if (v !== 'chunked') return Errors.transferCoding;
    }
    if (underscores !== 'ALLOW' && n.indexOf('_') !== -1) {
      if (underscores === 'REJECT_REQUEST') return Errors.headerUnderscore;
      drop = true;
    }
  }
  return drop ? DROP_UNDERSCORES : null;
}

/** Removes header lines whose name holds `_` from a flat `[name, value, ...]` list. */
export function dropUnderscoreHeaders(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) if (headers[i].indexOf('_') === -1) out.push(headers[i], headers[i + 1]);
  return out;
}
