/**
 * Istio protocol selection for a mesh port (reference/istio-api.md; Istio "Protocol Selection",
 * pilot/pkg/serviceregistry/kube/conversion.go and pkg/config/protocol): the port's `appProtocol`
 * first (when it names a protocol Istio knows), else the port name `<protocol>[-<suffix>]`. PURE.
 *
 *   http, grpc-web, kubernetes.io/ws        -> HTTP
 *   http2, kubernetes.io/h2c, h2c           -> HTTP2
 *   grpc                                     -> GRPC
 *   https, tls, kubernetes.io/wss           -> TLS   (relayed by SNI, never terminated)
 *   tcp, mongo, mysql, redis                 -> TCP   (Istio's MONGO/MYSQL/REDIS filters are off by default: plain TCP)
 *   anything else (no name, `web`, ...)      -> UNKNOWN (sniffed)
 *   UDP and SCTP ports                       -> null (not proxied)
 */
import type { MeshPortProtocol } from '../../ir/sidecar.js';

const BY_NAME: Readonly<Record<string, MeshPortProtocol>> = {
  http: 'HTTP',
  'grpc-web': 'HTTP',
  'kubernetes.io/ws': 'HTTP',
  http2: 'HTTP2',
  h2c: 'HTTP2',
  'kubernetes.io/h2c': 'HTTP2',
  grpc: 'GRPC',
  https: 'TLS',
  tls: 'TLS',
  'kubernetes.io/wss': 'TLS',
  tcp: 'TCP',
  mongo: 'TCP',
  mysql: 'TCP',
  redis: 'TCP',
};

/** A protocol name as Istio parses it (case-insensitive); undefined when Istio does not know it. */
export function parseMeshProtocol(name: string): MeshPortProtocol | undefined {
  return BY_NAME[name.toLowerCase()];
}

/**
 * The protocol of a Kubernetes Service port (`protocol` is the L4 protocol, TCP by default), or
 * null for UDP/SCTP ports, which the sidecar does not proxy.
 */
export function servicePortProtocol(port: { name: string; appProtocol: string; protocol?: string }): MeshPortProtocol | null {
  const l4 = (port.protocol ?? 'TCP').toUpperCase();
  if (l4 === 'UDP' || l4 === 'SCTP') return null;
  if (port.appProtocol !== '') {
    const p = parseMeshProtocol(port.appProtocol);
    if (p !== undefined) return p;
  }
  return fromPortName(port.name);
}

/** The `<protocol>[-<suffix>]` convention; `grpc-web` is itself a name with a dash. */
export function fromPortName(name: string): MeshPortProtocol {
  const n = name.toLowerCase();
  if (n === 'grpc-web' || n.startsWith('grpc-web-')) return 'HTTP';
  const dash = n.indexOf('-');
  return parseMeshProtocol(dash === -1 ? n : n.slice(0, dash)) ?? 'UNKNOWN';
}

/**
 * The protocol of a ServiceEntry port: its `protocol` field (Istio requires it), else its name;
 * null for UDP.
 */
export function serviceEntryPortProtocol(port: { name: string; protocol: string }): MeshPortProtocol | null {
  if (port.protocol !== '') {
    if (port.protocol.toUpperCase() === 'UDP') return null;
    const p = parseMeshProtocol(port.protocol);
    if (p !== undefined) return p;
    return 'UNKNOWN';
  }
  return fromPortName(port.name);
}

/** HTTP tables serve these (UNKNOWN once sniffed as HTTP). */
export function isHttpProtocol(p: MeshPortProtocol): boolean {
  return p === 'HTTP' || p === 'HTTP2' || p === 'GRPC';
}
