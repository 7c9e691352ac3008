/**
 * The config push between `meshgate control` and each `meshgate sidecar` (reference/mesh.md §2.11):
 * the names both ends and the control plane's wiring share.
 */
import type { Diagnostic } from '../../lib/diagnostic.js';
import type { IRSnapshot } from '../../ir/types.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { TranslateOptions } from '../../translate/index.js';

/**
 * Who a sidecar says it is, in its hello. `namespace`/`serviceAccount` must be the identity of its
 * bearer token; the rest (pod name and IPs) selects the Pod whose labels scope its view.
 * Same shape as translate/sidecar's `SidecarProxyMeta` (sc-translate), declared here too so the
 * push compiles on its own; the two are structurally identical.
 */
export interface SidecarProxyMeta {
  namespace: string;
  serviceAccount: string;
  podName: string;
  podIps: string[];
  trustDomain: string;
}

/** A proxy's view of the mesh: `translateSidecar` (translate/sidecar/) in production, anything of this type in tests. */
export type SidecarTranslate = (resources: ResourceSet, proxy: SidecarProxyMeta, options: TranslateOptions) => {
  ir: IRSnapshot;
  diagnostics: Diagnostic[];
  /** `JSON.stringify(ir)` when the translator has it already (a cached view's); else the push serializes `ir`. */
  json?: Buffer;
};

/**
 * Sync state of one proxy, with Istio's words (istioctl proxy-status): `SYNCED` the last version
 * sent was ACKed; `STALE` sent and not yet answered; `ERROR` the last version sent was NACKed;
 * `NOT SENT` nothing sent yet (no config loaded, or the view could not be computed).
 */
export type ProxySyncState = 'SYNCED' | 'STALE' | 'ERROR' | 'NOT SENT';

/** One connected proxy as `/debug/proxy-status` shows it. */
export interface ProxyStatus {
  /** `<pod name>.<namespace>` (istioctl's NAME), the first pod IP when the pod name is unknown. */
  name: string;
  /** Unique per stream: `<name>-<n>`. */
  connectionId: string;
  proxy: SidecarProxyMeta;
  /** The SPIFFE ID its token proved. */
  identity: string;
  /** Remote address of the stream. */
  peer: string;
  /** ISO time the stream was accepted. */
  connectedAt: string;
  state: ProxySyncState;
  /** Last version pushed on this stream, null before the first push. */
  sentVersion: string | null;
  sentAt: string | null;
  /** Last version the proxy ACKed: the one it runs. null before the first ACK. */
  ackedVersion: string | null;
  ackedAt: string | null;
  /** The proxy's last NACK (version, its error detail, time); null when it never NACKed on this stream. */
  lastNack: { version: string; error: string; time: string } | null;
  /** Pushes (views sent) on this stream. */
  pushes: number;
  /** Diagnostics of the last view computed for it (errors, warnings), and why none could be computed. */
  diagnostics: { errors: number; warnings: number };
  viewError: string | null;
}

export interface ProxyStatusReport {
  /** Config generations received (one per control-plane reload; 0 before the first). */
  generation: number;
  proxies: ProxyStatus[];
}
