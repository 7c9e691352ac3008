/**
 * `meshgate run` as a mesh client (`--control`): the workload facts Istio's metadata exchange tells
 * destination sidecars (runtime/sidecar/peer-metadata.ts `gatewayPeerMetadata`, docs/sidecar.md
 * "The gateway"). Istio's gateways learn them from the pod (`POD_NAME`, `POD_NAMESPACE`,
 * `INSTANCE_IP`, the pod's labels, `CLUSTER_ID`); so does meshgate, with flags to say them outside a pod:
 *
 *   --pod-name NAME     the gateway pod's name (default $POD_NAME, else the host name)
 *   --pod-ip IP         the gateway pod's IP, in its node ID (default $INSTANCE_IP, else $POD_IP)
 *   --cluster-id ID     Istio's cluster ID: CLUSTER_ID and source_cluster (default $CLUSTER_ID, else Kubernetes)
 *
 * The namespace is `--workload-namespace`, else the mesh identity's; the workload `--workload-name`;
 * the labels are the gateway's (`--gateway-labels`, or the pod's own in Kubernetes mode).
 */
import os from 'node:os';
import { isIP } from 'node:net';
import type { ObservabilityOptions } from '../observability/observer.js';

export const GATEWAY_EXCHANGE_FLAGS = {
  'pod-name': { type: 'string' },
  'pod-ip': { type: 'string' },
  'cluster-id': { type: 'string' },
} as const;

type Fail = (message: string) => never;

/**
 * `observability` with the gateway's metadata-exchange identity when it is a mesh client of
 * namespace `meshNamespace` (null: no mesh client, then the flags are refused).
 */
export function withGatewayExchange(
  observability: ObservabilityOptions,
  v: Record<string, unknown>,
  meshNamespace: string | null,
  labels: Record<string, string>,
  fail: Fail,
  env: NodeJS.ProcessEnv = process.env,
): ObservabilityOptions {
  const s = (k: string): string | undefined => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  if (meshNamespace === null) {
    for (const k of Object.keys(GATEWAY_EXCHANGE_FLAGS)) if (s(k) !== undefined) fail(`--${k} needs --control HOST:PORT (the gateway as a mesh client)`);
    return observability;
  }
  const podIp = s('pod-ip') ?? env.INSTANCE_IP?.trim() ?? env.POD_IP?.trim() ?? '';
  if (podIp !== '' && isIP(podIp) === 0) fail(`--pod-ip: "${podIp}" is not an IP address`);
  const podName = s('pod-name') ?? (env.POD_NAME?.trim() || os.hostname());
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/i.test(podName)) fail(`--pod-name: "${podName}" is not a pod name`);
  const cluster = s('cluster-id') ?? (env.CLUSTER_ID?.trim() || 'Kubernetes');
  if (cluster === '' || /[\s~]/.test(cluster)) fail(`--cluster-id: "${cluster}" is not a cluster ID`);
  const id = observability.identity;
  return {
    ...observability,
    identity: {
      ...id,
      namespace: id.namespace === 'unknown' ? meshNamespace : id.namespace,
      cluster,
      exchange: { podName, podIp, labels: { ...labels } },
    },
  };
}
