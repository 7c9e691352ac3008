/**
 * translate(resources, options) -> { ir, diagnostics }: PURE. The same ResourceSet and options give a
 * byte-identical snapshot, whatever order the objects arrived in.
 */
import type { Diagnostic } from '../lib/diagnostic.js';
import { compareDiagnostics } from '../lib/diagnostic.js';
import { snapshotVersion } from './version.js';
import type { IRSnapshot } from '../ir/types.js';
import { validateIR } from '../ir/validate.js';
import type { ResourceSet } from '../resources/resource-set.js';
import { translateIngresses } from './ingress/index.js';
import { translateIstio } from './istio/index.js';
import { translateIstioTcp } from './istio/tcp.js';
import { portUses, translateGatewayApi } from './gatewayapi/index.js';
import type { GatewayApiStatus } from './gatewayapi/status.js';
import { mergeListeners } from './merge/listeners.js';
import { translateSecurity } from './security/index.js';
import { translatePeerAuthentications } from './security/peer-authentication.js';
import { translateGatewayTopology } from './istio/gateway-topology.js';
import { gatewayPods, translateProxyHeaders } from './istio/proxy-headers.js';
import { translateAccessLogging } from './telemetry/access-logging.js';
import { withNginxAccessLog } from './ingress/nginx/configmap.js';
import { translateTracing } from './telemetry/tracing.js';
import { TranslateContext, type TranslateOptions } from './types.js';

export interface TranslateResult {
  ir: IRSnapshot;
  diagnostics: Diagnostic[];
  /** Gateway API status (conditions made from the same findings as `diagnostics`), for `/status` subresources, validate and the admin API. */
  gatewayApiStatus: GatewayApiStatus;
}

export function translate(resources: ResourceSet, options: TranslateOptions): TranslateResult {
  const ctx = new TranslateContext(options);
  // Istio drafts first: on a port shared with Ingress, Istio's routes for a host are tried first.
  const drafts = [...translateIstio(ctx, resources), ...translateIngresses(ctx, resources)];
  // TCP and TLS passthrough servers, on ports no HTTP listener took.
  const istioTcp = translateIstioTcp(ctx, resources, new Set(drafts.map((d) => d.port)));
  // Gateway API listeners: a port Istio or Ingress serves is shared only without a host in common
  // (refused otherwise, never shadowed).
  const gatewayApi = translateGatewayApi(ctx, resources, portUses(drafts, istioTcp));
  const listeners = mergeListeners(ctx, [...drafts, ...gatewayApi.drafts]);
  const tcpListeners = [...istioTcp, ...gatewayApi.tcpListeners].sort((a, b) => a.port - b.port);
  const security = {
    ...translateSecurity(ctx, resources),
    ...translateGatewayTopology(ctx, resources),
    ...translateProxyHeaders(ctx, resources, 'gateway', gatewayPods(ctx, resources)),
  };
  const accessLogging = withNginxAccessLog(ctx, resources, translateAccessLogging(ctx, resources));
  const tracing = translateTracing(ctx, resources);
  const peerAuthentication = translatePeerAuthentications(ctx, resources);
  const clusters = ctx.clusters();
  // Content only: source positions (file, line) are not part of the version (version.ts).
  // PeerAuthentication only when some exist, so snapshots without any keep their shape and version.
  const mesh = peerAuthentication.length > 0 ? { peerAuthentication } : {};
  const version = snapshotVersion({ listeners, clusters, security, tcpListeners, accessLogging, tracing, ...mesh });
  const ir: IRSnapshot = { version, listeners, clusters, security, tcpListeners, accessLogging, tracing, ...mesh };
  for (const problem of validateIR(ir)) {
    ctx.diagnostics.push({ severity: 'error', reason: 'MG_INVALID_IR', object: null, field: null, file: null, line: null, message: `internal: ${problem}` });
  }
  return { ir, diagnostics: dedupe(ctx.diagnostics).sort(compareDiagnostics), gatewayApiStatus: gatewayApi.status };
}

function dedupe(list: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const k = JSON.stringify(d);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export { DEFAULT_TRANSLATE_OPTIONS } from './types.js';
export type { TranslateOptions } from './types.js';
