/**
 * A sidecar's inbound side (reference/mesh.md §2.6, §2.8, §2.10): the workload's ports, their
 * effective PeerAuthentication, and the `inbound|<port>||` clusters and `inbound_<port>` route
 * tables. PURE.
 *
 * - Ports: the target ports of the Services of the proxy's namespace whose selector (non-empty) is a
 *   subset of the pod's labels; a named targetPort is looked up among the pod's container ports (not
 *   found: reported, skipped). Several Services targeting one port: the first by name decides the
 *   protocol (a different one is reported).
 * - mTLS: the effective PeerAuthentication mode of the pod and target port (port-level included);
 *   `inboundDefault` is the workload's mode without port-level settings.
 * - Cluster `inbound|<port>||`: one endpoint, the pod IP (the first of `podIps`) and the port,
 *   plaintext, HTTP/2 for HTTP2/GRPC ports.
 * - HTTP (and UNKNOWN, once sniffed) ports: table `inbound_<port>` with one virtual host `*` and one
 *   route `default` forwarding to the cluster with no timeout and Istio's inbound retry policy
 *   (only `reset-before-request`).
 */
import type { Cluster, Listener, RetryPolicy, SourceRef } from '../../ir/types.js';
import type { InboundPort, MeshPortProtocol } from '../../ir/sidecar.js';
import type { MtlsMode, PeerAuthenticationPolicy } from '../../ir/mesh.js';
import type { KubeObject } from '../../resources/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import { arr, num, obj, str, strMap } from '../../lib/unknown.js';
import { DEFAULT_CONNECT_TIMEOUT_MS, matchesLabels, serviceFqdn } from '../backends.js';
import { resolvePeerAuthentication } from '../security/peer-authentication.js';
import { sourceOf, type TranslateContext } from '../types.js';
import { isHttpProtocol, servicePortProtocol } from './protocol.js';

/** Istio's inbound route retries: only a reset before the request reached the app. */
export const INBOUND_RETRY_POLICY: RetryPolicy = {
  numRetries: 2,
  perTryTimeoutMs: null,
  retryOn: ['reset-before-request'],
  retriableStatusCodes: [],
  backoffBaseMs: 25,
  ignorePreviousHosts: false,
};

export interface InboundResult {
  inbound: InboundPort[];
  inboundDefault: Exclude<MtlsMode, 'UNSET'>;
  inboundHttp: Listener[];
  clusters: Cluster[];
}

export function translateInbound(ctx: TranslateContext, resources: ResourceSet, pod: KubeObject | null, namespace: string, labels: Record<string, string>, podIp: string | null, policies: readonly PeerAuthenticationPolicy[]): InboundResult {
  // The workload's mode without port-level overrides (port 0 is never a port-level key).
  const inboundDefault = resolvePeerAuthentication(policies, namespace, labels, 0);
  const ports = new Map<number, { protocol: MeshPortProtocol; svc: KubeObject; field: string }>();
  if (pod !== null) {
    const services = resources.ofKind('Service').filter((s) => s.apiVersion === 'v1' && s.metadata.namespace === namespace);
    for (const svc of [...services].sort((a, b) => (a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0))) {
      const spec = obj(svc.body.spec);
      const selector = strMap(spec.selector);
      if (Object.keys(selector).length === 0 || !matchesLabels(labels, selector)) continue;
      arr(spec.ports).forEach((p, i) => {
        const po = obj(p);
        const field = `spec.ports[${i}]`;
        const port = num(po.port);
        if (port === undefined) return;
        const protocol = servicePortProtocol({ name: str(po.name) ?? '', appProtocol: str(po.appProtocol) ?? '', protocol: str(po.protocol) });
        if (protocol === null) return;
        const tp = po.targetPort;
        let target: number | undefined;
        if (typeof tp === 'number') target = tp;
        else if (typeof tp === 'string' && /^\d+$/.test(tp)) target = Number(tp);
        else if (typeof tp === 'string' && tp !== '') {
          target = containerPort(pod, tp);
          if (target === undefined) {
            ctx.report('warning', 'MG_SERVICE_PORT_NOT_FOUND', svc, `${field}.targetPort`, `targetPort "${tp}" names no container port of Pod ${pod.metadata.namespace}/${pod.metadata.name}; the port is not an inbound port of this sidecar`);
            return;
          }
        } else target = port;
        if (!(target >= 1 && target <= 65535)) return;
        const prev = ports.get(target);
        if (prev === undefined) ports.set(target, { protocol, svc, field });
        else if (prev.protocol !== protocol) {
          ctx.report('warning', 'MG_PORT_CONFLICT', svc, field, `target port ${target} is ${protocol} here but ${prev.protocol} for Service ${prev.svc.metadata.namespace}/${prev.svc.metadata.name}; the sidecar uses ${prev.protocol}`);
        }
      });
    }
  }
  const inbound: InboundPort[] = [];
  const inboundHttp: Listener[] = [];
  const clusters: Cluster[] = [];
  if (ports.size > 0 && podIp === null) {
    ctx.report('warning', 'MG_MISSING_FIELD', pod, 'status.podIP', 'the proxy has no pod IP (--pod-ip) and the Pod none either: inbound ports are not served');
    return { inbound, inboundDefault, inboundHttp, clusters };
  }
  for (const [port, p] of [...ports.entries()].sort((a, b) => a[0] - b[0])) {
    const cluster = `inbound|${port}||`;
    clusters.push({
      name: cluster,
      service: { namespace, name: p.svc.metadata.name, host: serviceFqdn(p.svc.metadata.name, namespace), port },
      subset: '',
      discovery: 'eds',
      lbPolicy: 'ROUND_ROBIN',
      endpoints: [{ address: podIp as string, port, ready: true }],
      connectTimeoutMs: DEFAULT_CONNECT_TIMEOUT_MS,
      connectionPool: null,
      outlierDetection: null,
      protocol: p.protocol === 'HTTP2' || p.protocol === 'GRPC' ? 'HTTP2' : 'HTTP1',
      tls: null,
    });
    const http = isHttpProtocol(p.protocol) || p.protocol === 'UNKNOWN';
    const httpRoutes = http ? `inbound_${port}` : null;
    if (httpRoutes !== null) inboundHttp.push(inboundTable(httpRoutes, port, cluster, sourceOf(p.svc, p.field)));
    inbound.push({ port, protocol: p.protocol, mtls: resolvePeerAuthentication(policies, namespace, labels, port), httpRoutes, cluster });
  }
  return { inbound, inboundDefault, inboundHttp, clusters };
}

function inboundTable(name: string, port: number, cluster: string, source: SourceRef): Listener {
  return {
    name,
    address: '0.0.0.0',
    port,
    externalPort: port,
    protocol: 'HTTP',
    filterChains: [
      {
        name,
        serverNames: [],
        tls: null,
        virtualHosts: [
          {
            name: `inbound|http|${port}`,
            domains: [{ kind: 'any' }],
            httpsRedirect: null,
            routes: [
              {
                name: 'default',
                source,
                matches: [{ path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null }],
                action: { kind: 'forward', destinations: [{ cluster, weight: 100, requestHeaders: null, responseHeaders: null }], rewrite: null, timeoutMs: null, retries: INBOUND_RETRY_POLICY, fault: null, mirrors: [] },
                requestHeaders: null,
                responseHeaders: null,
                cors: null,
              },
            ],
          },
        ],
      },
    ],
  };
}

function containerPort(pod: KubeObject, name: string): number | undefined {
  for (const c of arr(obj(pod.body.spec).containers)) {
    for (const p of arr(obj(c).ports)) {
      const po = obj(p);
      if (str(po.name) === name) return num(po.containerPort);
    }
  }
  return undefined;
}
