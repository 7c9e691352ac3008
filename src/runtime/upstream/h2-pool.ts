/**
 * Upstream HTTP/2 for the undici pools that remain (ext-authz checks, `EndpointHandle.fetcher()`):
 * the pool options for a cluster whose protocol is HTTP2. The request path uses meshgate's own
 * node:http2 client (`h2-client.ts`) with the same rules: plaintext endpoints are reached with prior
 * knowledge (h2c, as Envoy does for `http2`/`grpc` ports); each connection multiplexes up to
 * `H2_MAX_CONCURRENT_STREAMS` requests before another opens.
 */

import type { Pool } from 'undici';
import type { UpstreamProtocol } from '../../ir/types.js';
import { H2_MAX_CONCURRENT_STREAMS } from './h2-client.js';

export { H2_MAX_CONCURRENT_STREAMS };

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
