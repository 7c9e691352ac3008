/**
 * What the first bytes of a connection arriving at the sidecar's inbound port (15006) are, as
 * Envoy's listener filters decide it before choosing a filter chain (reference/mesh.md §2.4, §2.6):
 * the TLS inspector (byte 0x16 0x03, then the ClientHello's SNI and ALPN offer, `tcp/client-hello.ts`)
 * and the HTTP inspector (the HTTP/2 connection preface, or an HTTP/1.x request line).
 *
 * `classify` works on the bytes read so far and says `need-more` until it can decide. An HTTP/1
 * request line is recognised by its method token followed by a space (Envoy's http_inspector parses
 * the line; a method and a space is the part that tells HTTP from other client-first protocols).
 */
import { parseClientHello } from '../tcp/client-hello.js';

/** The HTTP/2 client connection preface (RFC 9113 §3.4). */
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/** Longest method token looked at (`PROPPATCH`, `MKCALENDAR`...); a longer run of letters is not HTTP. */
const MAX_METHOD = 20;

/** Istio's ALPN values (reference/mesh.md §2.5): a ClientHello offering one of them comes from a mesh peer. */
export const ISTIO_ALPN: ReadonlySet<string> = new Set(['istio-http/1.0', 'istio-http/1.1', 'istio-h2', 'istio', 'istio-peer-exchange']);

/** The ALPN values that select Istio's HTTP chains (the peer's proxy speaks HTTP inside). */
export const ISTIO_HTTP_ALPN: ReadonlySet<string> = new Set(['istio-http/1.0', 'istio-http/1.1', 'istio-h2']);

export type FirstBytes =
  | { kind: 'need-more' }
  | { kind: 'tls'; sni: string; alpn: string[] }
  | { kind: 'h2' }
  | { kind: 'http1' }
  | { kind: 'opaque' };

export function classify(data: Buffer): FirstBytes {
  if (data.length === 0) return { kind: 'need-more' };
  if (data[0] === 0x16) {
    if (data.length < 2) return { kind: 'need-more' };
    if (data[1] === 0x03) {
      const hello = parseClientHello(data);
      if (hello.kind === 'need-more') return hello;
      if (hello.kind === 'sni') return { kind: 'tls', sni: hello.serverName, alpn: hello.alpn };
      if (hello.kind === 'no-sni') return { kind: 'tls', sni: '', alpn: hello.alpn };
      return { kind: 'opaque' };
    }
    return { kind: 'opaque' };
  }
  const n = Math.min(data.length, PREFACE.length);
  if (data.compare(PREFACE, 0, n, 0, n) === 0) return n === PREFACE.length ? { kind: 'h2' } : { kind: 'need-more' };
  for (let i = 0; i < data.length && i <= MAX_METHOD; i++) {
    const c = data[i];
    if (c === 0x20) return i === 0 ? { kind: 'opaque' } : { kind: 'http1' };
    // Method tokens as used on the wire: upper-case letters, `-` and `_` (RFC 9110 §9 allows any
    // tchar, but Envoy's parser and every registered method use these).
    if (!((c >= 0x41 && c <= 0x5a) || c === 0x2d || c === 0x5f)) return { kind: 'opaque' };
  }
  return data.length > MAX_METHOD ? { kind: 'opaque' } : { kind: 'need-more' };
}

/** The ALPN the sidecar's TLS server answers for an offer (never `undefined`: Node would abort the handshake). */
export function selectAlpn(offer: readonly string[]): string | undefined {
  if (offer.includes('h2')) return 'h2';
  if (offer.includes('http/1.1')) return 'http/1.1';
  if (offer.includes('http/1.0')) return 'http/1.0';
  if (offer.includes('istio')) return 'istio';
  return offer.find((p) => p !== 'istio-peer-exchange') ?? offer[0];
}
