/**
 * Mesh policy in the IR (reference/mesh.md §2.6). Plain data; keys and certificates never enter it.
 */

/** Istio PeerAuthentication mTLS modes. `UNSET` inherits from the enclosing scope. */
export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';

/**
 * One PeerAuthentication. Resolution for a workload (namespace, labels, target port): the narrowest
 * scope that applies wins (mesh < namespace < workload), among equals the oldest; `UNSET` inherits
 * from the next wider scope; `portLevelMtls` of the workload policy overrides for its target ports;
 * nothing set at all means PERMISSIVE.
 */
export interface PeerAuthenticationPolicy {
  /** `peerauthentication/<namespace>/<name>`. */
  name: string;
  namespace: string;
  /** `mesh`: in the root namespace without selector; `namespace`: no selector; `workload`: with a selector. */
  scope: 'mesh' | 'namespace' | 'workload';
  /** `matchLabels` of the selector; null for mesh and namespace scope. */
  selector: Record<string, string> | null;
  mode: MtlsMode;
  /** Per target port (workload scope only), sorted by port. */
  portLevelMtls: { port: number; mode: MtlsMode }[];
}
