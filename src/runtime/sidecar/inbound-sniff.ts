/**
 * What the first bytes of a connection arriving at the sidecar's inbound port (15006) are, as
 * Envoy's listener filters decide it before choosing a filter chain (reference/mesh.md §2.4, §2.6):
 * the TLS inspector (byte 0x16 0x03, then the ClientHello's SNI and ALPN offer, `tcp/client-hello.ts`)
 * and the HTTP inspector (the HTTP/2 connection preface, or an HTTP/1.x request line).
 *
 * `classify` (protocol-sniff.ts, the one rule the outbound side uses too) works on the bytes read so
 * far and says `need-more` until it can decide; this module adds what the inbound side does with a
 * ClientHello's ALPN offer.
 */
export { classify, type FirstBytes } from './protocol-sniff.js';

/** Istio's ALPN values (reference/mesh.md §2.5): a ClientHello offering one of them comes from a mesh peer. */
export const ISTIO_ALPN: ReadonlySet<string> = new Set(['istio-http/1.0', 'istio-http/1.1', 'istio-h2', 'istio', 'istio-peer-exchange']);

/** The ALPN values that select Istio's HTTP chains (the peer's proxy speaks HTTP inside). */
export const ISTIO_HTTP_ALPN: ReadonlySet<string> = new Set(['istio-http/1.0', 'istio-http/1.1', 'istio-h2']);

/** The ALPN the sidecar's TLS server answers for an offer (never `undefined`: Node would abort the handshake). */
export function selectAlpn(offer: readonly string[]): string | undefined {
  if (offer.includes('h2')) return 'h2';
  if (offer.includes('http/1.1')) return 'http/1.1';
  if (offer.includes('http/1.0')) return 'http/1.0';
  if (offer.includes('istio')) return 'istio';
  return offer.find((p) => p !== 'istio-peer-exchange') ?? offer[0];
}
