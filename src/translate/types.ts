import type { Diagnostic, DiagnosticReason, Severity } from '../lib/diagnostic.js';
import type { Cluster, EscapedSlashesAction, FilterChain, HttpsRedirect, PathNormalizationMode, Route, SourceRef, TcpRoute, TlsContext, UnderscoreHeadersAction } from '../ir/types.js';
import type { KubeObject } from '../resources/types.js';

/** How this gateway instance is configured: everything translate needs besides the resources. */
export interface TranslateOptions {
  /** IngressClass name this controller serves (`--ingress-class`, default `meshgate`). */
  ingressClass: string;
  /** `spec.controller` of IngressClasses that belong to meshgate. */
  controllerName: string;
  /** Labels of this gateway's pods; an Istio Gateway applies when its selector is a subset (`--gateway-labels`). */
  gatewayLabels: Record<string, string>;
  /** Port Ingress plain-HTTP traffic is served on (`--http-port`). */
  httpPort: number;
  /** Port Ingress HTTPS traffic is served on (`--https-port`). */
  httpsPort: number;
  /** External (Gateway `port.number`) -> bind port (`--port-map 80=8080`). Keys are decimal strings. */
  portMap: Record<string, number>;
  /** Address listeners bind to. */
  bindAddress: string;
  /** Namespace the gateway runs in: policies there (and in the root namespace, MeshConfig `rootNamespace`) apply to it (`--gateway-namespace`). */
  gatewayNamespace: string;
  /** Path normalization (Istio MeshConfig `pathNormalization`, `--path-normalization`); see ir/security.ts. */
  pathNormalization: PathNormalizationMode;
  /** Encoded `/` and `\` in paths (`--escaped-slashes`); see ir/security.ts. */
  escapedSlashes: EscapedSlashesAction;
  /** Header names with `_` (`--headers-with-underscores`); see ir/security.ts. */
  headersWithUnderscores: UnderscoreHeadersAction;
  /** Gateway API: GatewayClasses with this `controllerName` are served (`--gateway-controller-name`; default `meshgate.io/gateway-controller`). */
  gatewayControllerName?: string;
  /** Gateway API: the addresses Gateways are reachable at, for Gateway `status.addresses` (the publish Service or `--publish-address`); absent = none known. */
  gatewayAddresses?: string[];
  /**
   * Gateway API: addresses this machine can bind (IPs or CIDRs, `127.0.0.0/8`), for Gateways whose
   * `spec.addresses` name an IPAddress of their own: such a Gateway gets its own sockets there,
   * isolated from other Gateways on the same port. Absent = none (every Gateway shares `bindAddress`).
   */
  gatewayBindableAddresses?: string[];
  /** The ingress-nginx controller ConfigMap (`--nginx-configmap NS/NAME`); absent/null = none (translate/ingress/nginx/configmap.ts). */
  nginxConfigMap?: { namespace: string; name: string } | null;
  /** ingress-nginx's global default backend (`--default-backend-service NS/NAME`): custom error pages without a default-backend annotation; absent/null = none. */
  nginxDefaultBackend?: { namespace: string; name: string } | null;
}

export const DEFAULT_TRANSLATE_OPTIONS: TranslateOptions = {
  ingressClass: 'meshgate',
  controllerName: 'meshgate.io/ingress-controller',
  // The labels of Istio's default ingress gateway pods (istio/manifests, the `default` profile).
  gatewayLabels: { app: 'istio-ingressgateway', istio: 'ingressgateway' },
  httpPort: 8080,
  httpsPort: 8443,
  portMap: { '80': 8080, '443': 8443 },
  bindAddress: '0.0.0.0',
  gatewayNamespace: 'istio-system',
  pathNormalization: 'MERGE_SLASHES',
  escapedSlashes: 'REJECT',
  headersWithUnderscores: 'REJECT_REQUEST',
};

/**
 * A virtual host as a translator produces it: exactly one domain; the merge step combines drafts
 * for the same domain on the same chain (routes concatenated in draft order).
 */
export interface VirtualHostDraft {
  /** Lowercase `host`, `*.suffix` or `*`. */
  domain: string;
  /** Kubernetes Ingress wildcards cover one DNS label; Istio's cover any prefix. */
  singleLabelWildcard: boolean;
  httpsRedirect: HttpsRedirect | null;
  routes: Route[];
  /** The object that created this virtual host (for MG_DUPLICATE_HOST). */
  source: SourceRef;
}

export interface FilterChainDraft {
  name: string;
  serverNames: string[];
  tls: TlsContext | null;
  virtualHosts: VirtualHostDraft[];
  /** IR `FilterChain.rejectMisdirected` (Gateway API HTTPS listeners); absent = false. */
  rejectMisdirected?: boolean;
}

/** What a translator wants served on one port. */
export interface ListenerDraft {
  address: string;
  port: number;
  externalPort: number;
  protocol: 'HTTP' | 'HTTPS';
  chains: FilterChainDraft[];
  /** The object that asked for this listener (for MG_PORT_CONFLICT). */
  source: SourceRef;
  /** HTTPS: TLS passthrough routes on this port (IR `Listener.passthrough`); drafts of one port concatenate theirs. */
  passthrough?: TcpRoute[];
}

export type { FilterChain, Cluster };

/** Collects diagnostics and clusters while one translation runs. */
export class TranslateContext {
  readonly diagnostics: Diagnostic[] = [];
  readonly #clusters = new Map<string, Cluster>();

  constructor(readonly options: TranslateOptions) {}

  /** Report a problem with `obj` at `field` (a path inside the object); file and line come from the object's origin. */
  report(severity: Severity, reason: DiagnosticReason, obj: KubeObject | null, field: string | null, message: string): void {
    let line: number | null = null;
    if (obj) {
      line = obj.origin.line;
      if (field) {
        // The nearest enclosing field that has a known line.
        let path = field;
        for (;;) {
          const l = obj.origin.fieldLines[path];
          if (l !== undefined) {
            line = l;
            break;
          }
          const cut = Math.max(path.lastIndexOf('.'), path.lastIndexOf('['));
          if (cut <= 0) break;
          path = path.slice(0, cut);
        }
      }
    }
    this.diagnostics.push({
      severity,
      reason,
      object: obj ? { kind: obj.kind, namespace: obj.metadata.namespace, name: obj.metadata.name } : null,
      field,
      file: obj?.origin.file ?? null,
      line,
      message,
    });
  }

  /** Report a problem about the object a piece of IR came from (when only its SourceRef is at hand). */
  reportAt(severity: Severity, reason: DiagnosticReason, source: SourceRef, message: string): void {
    this.diagnostics.push({ severity, reason, object: { kind: source.kind, namespace: source.namespace, name: source.name }, field: null, file: source.file, line: source.line, message });
  }

  /** Register a cluster; the first registration of a name wins (later ones are the same by construction). */
  addCluster(cluster: Cluster): void {
    if (!this.#clusters.has(cluster.name)) this.#clusters.set(cluster.name, cluster);
  }

  getCluster(name: string): Cluster | undefined {
    return this.#clusters.get(name);
  }

  clusters(): Cluster[] {
    return [...this.#clusters.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}

/** The IR SourceRef of an object, with the line of `field` when known. */
export function sourceOf(obj: KubeObject, field?: string): SourceRef {
  const line = (field !== undefined ? obj.origin.fieldLines[field] : undefined) ?? obj.origin.line;
  return { kind: obj.kind, namespace: obj.metadata.namespace, name: obj.metadata.name, file: obj.origin.file, line };
}
