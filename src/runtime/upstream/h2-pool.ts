/**
 * Upstream HTTP/2: the undici pool options for a cluster whose protocol is HTTP2. Plaintext
 * endpoints are reached with prior knowledge (h2c, as Envoy does for `http2`/`grpc` ports); each
 * connection multiplexes up to `H2_MAX_CONCURRENT_STREAMS` requests before the pool opens another,
 * so the pool's connection limit and the cluster's circuit breakers bound it as for HTTP/1.1.
 */

import type { Pool } from 'undici';
import type { UpstreamProtocol } from '../../ir/types.js';

/** Streams per upstream HTTP/2 connection (Envoy's default is unlimited; gRPC servers commonly allow 100). */
export const H2_MAX_CONCURRENT_STREAMS = 100;

/**
 * Extra undici Pool options for `protocol`; empty for HTTP/1.1 (today's pools unchanged). Over TLS
 * (`tls`), HTTP/2 is negotiated by ALPN (h2 offered next to http/1.1) instead of h2c.
 */
export function upstreamProtocolOptions(protocol: UpstreamProtocol, tls = false): Partial<Pool.Options> {
  if (protocol !== 'HTTP2') return {};
  if (tls) return { allowH2: true, pipelining: H2_MAX_CONCURRENT_STREAMS, maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS };
  // A Pool builds its connector from `connect` (an object is spread into undici's buildConnector),
  // which is where `useH2c` takes effect; it is not in undici's type declarations yet.
  const connect = { useH2c: true } as Pool.Options['connect'];
  return { connect, allowH2: true, pipelining: H2_MAX_CONCURRENT_STREAMS, maxConcurrentStreams: H2_MAX_CONCURRENT_STREAMS };
}
