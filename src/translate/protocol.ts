/**
 * The protocol the gateway speaks to a Service port, chosen as Istio does ("Protocol Selection"):
 * the port's `appProtocol` first, else the port name `<protocol>[-<suffix>]`; then the
 * DestinationRule's `connectionPool.http.h2UpgradePolicy` may upgrade an HTTP/1.1 port to HTTP/2.
 */

import type { UpstreamProtocol } from '../ir/types.js';

export type H2UpgradePolicy = 'DEFAULT' | 'DO_NOT_UPGRADE' | 'UPGRADE';

/** Protocol names (lowercase) that mean HTTP/2 to the upstream. `kubernetes.io/h2c` is the Kubernetes standard name. */
const HTTP2_NAMES = new Set(['http2', 'grpc', 'grpc-web', 'h2c', 'kubernetes.io/h2c']);

/** Whether an `appProtocol` value or a port name declares HTTP/2 (gRPC included). */
export function declaresHttp2(appProtocol: string, portName: string): boolean {
  if (appProtocol !== '') return HTTP2_NAMES.has(appProtocol.toLowerCase());
  const name = portName.toLowerCase();
  const dash = name.indexOf('-');
  const prefix = dash === -1 ? name : name.slice(0, dash);
  // `grpc-web` is itself a prefix with a dash.
  return HTTP2_NAMES.has(prefix) || name === 'grpc-web' || name.startsWith('grpc-web-');
}

/**
 * HTTP/2 when the port declares it, or when the DestinationRule asks for `UPGRADE` (Istio's mesh
 * default, used for `DEFAULT`, is not to upgrade).
 */
export function upstreamProtocol(port: { appProtocol: string; name: string }, policy: H2UpgradePolicy): UpstreamProtocol {
  if (declaresHttp2(port.appProtocol, port.name)) return 'HTTP2';
  return policy === 'UPGRADE' ? 'HTTP2' : 'HTTP1';
}
