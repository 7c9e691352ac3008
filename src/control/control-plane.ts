/**
 * `meshgate control` (istiod's role): the mesh CA and Istio's certificate API on one TLS gRPC
 * listener (default :15012), and the config pipeline that will feed per-proxy views to sidecars.
 *
 * The listener is a single `grpc.Server` with the control plane's serving certificate (DNS SAN
 * `istiod.istio-system.svc`, chained to the mesh root, as istiod's): services are added to it, so the
 * config stream of the sidecar issue is one more `addService` on the same port, as in istiod where
 * XDS and the CA share 15012. Snapshots translated from `--config` are kept by `ViewSource`, the
 * place where that stream will take them from.
 *
 * Order at start: admin (503 until ready), CA loaded (or created), gRPC bound, first snapshot
 * translated; `/ready` answers 200 only after the last step.
 */
import * as grpc from '@grpc/grpc-js';
import type { IRSnapshot } from '../ir/types.js';
import type { ApplyResult } from '../runtime/runtime.js';
import type { Logger } from '../lib/log.js';
import { Controller } from './controller.js';
import { DirectorySource } from './source.js';
import type { DataPlane } from './dataplane.js';
import { AdminText, startAdminServer, type AdminServer } from '../admin/server.js';
import type { TranslateOptions } from '../translate/index.js';
import { MeshCa, loadOrCreateCaDirectory } from '../mesh/ca/ca.js';
import { TokenVerifier } from '../mesh/ca/token.js';
import { caServiceHandlers, type Authenticator } from '../mesh/grpc/ca-service.js';
import { istioCertificateService } from '../mesh/grpc/istioca-proto.js';
import { MemoryCertificateProvider } from '../mesh/grpc/serving-credentials.js';
import type { ApiClient } from '../providers/kubernetes/api-client.js';
import { KubernetesSource } from '../providers/kubernetes/source.js';
import { loadKubernetesCa, publishRootCert, TokenReviewAuthenticator } from './mesh-kubernetes.js';
import { ConfigPushServer } from '../mesh/push/server.js';
import { configPushService } from '../mesh/push/proto.js';
import type { SidecarTranslate } from '../mesh/push/types.js';
import type { ResourceSet } from '../resources/resource-set.js';
import { DEFAULT_GRAPH_INTERVAL_MS, DEFAULT_GRAPH_WINDOW_MS, DEFAULT_SIDECAR_STATS_PORT, MeshGraphScraper, proxyTargets } from './mesh-graph/scraper.js';
import { MESH_DASHBOARD_HTML, MESH_DASHBOARD_JS } from '../admin/dashboard/mesh-page.js';

/** The name istiod's serving certificate carries and mesh clients verify, whatever address they dial. */
export const ISTIOD_SAN = 'istiod.istio-system.svc';
/** `/mesh/graph` when there is no graph. */
const MESH_GRAPH_OFF = { error: 'mesh graph off (--mesh-graph-interval 0, or no config push)', nodes: [], edges: [], targets: [], width: 0, height: 0 };
/** Lifetime of the control plane's own serving certificate (clamped to the CA's); renewed at half of it. */
const SERVING_TTL_S = 24 * 3600;

export interface ControlPlaneOptions {
  /** `--config DIR`; '' with `kubernetes`. */
  configDir: string;
  /** `--ca-dir DIR`; '' = the CA from the cluster's Secrets (Kubernetes mode only). */
  caDir: string;
  /** `--kubernetes`: config from the API server, callers checked by TokenReview. */
  kubernetes?: { client: ApiClient; watchNamespaces: string[] | null } | null;
  listenHost: string;
  listenPort: number;
  trustDomain: string;
  /**
   * Audiences a caller's token must carry (at least one): sent as TokenReview `spec.audiences` and
   * required in `status.audiences` (Kubernetes mode), or in the JWT `aud` (directory mode).
   * `--token-audiences`; default `["istio-ca"]` (istiod's TOKEN_AUDIENCES).
   */
  tokenAudiences?: string[];
  adminPort: number;
  certTtlSeconds: number;
  /** Lifetime of the serving certificate, s (default 24 h; tests shorten it). */
  servingTtlSeconds?: number;
  translate: TranslateOptions;
  log: Logger;
  /**
   * The per-proxy view for the config push (`translateSidecar` of translate/sidecar/); absent = no
   * ConfigPush service (sidecars get UNIMPLEMENTED).
   */
  sidecarTranslate?: SidecarTranslate;
  /** Push debounce, ms (default 100 after the last change, at most 10 000: PILOT_DEBOUNCE_AFTER/MAX). */
  pushDebounce?: { afterMs: number; maxMs: number };
  /**
   * The mesh graph (control/mesh-graph/, the dashboard's Mesh view): connected sidecars' metrics
   * scraped every `intervalMs` at `port` of their pod IP, rates over `windowMs`. Default 10 s,
   * 60 s, 15020; null = off.
   */
  meshGraph?: { intervalMs: number; windowMs: number; port: number } | null;
}

export interface ControlPlane {
  grpcPort: number;
  adminPort: number;
  ca: MeshCa;
  views: ViewSource;
  controller: Controller;
  /** The config push to sidecars; null without `sidecarTranslate`. */
  push: ConfigPushServer | null;
  /** The mesh graph's scraper; null when off or without the config push. */
  meshGraph: MeshGraphScraper | null;
  /** Kubernetes mode: resolves after the first pass writing ConfigMap istio-ca-root-cert everywhere. */
  rootCertPublished: Promise<void>;
  /** The objects of the last reload (null before the first): what the injection webhook reads MeshConfig from. */
  resources(): ResourceSet | null;
  stop(): Promise<void>;
}

/**
 * The "data plane" of the control plane: it serves no traffic, it keeps the latest snapshot and tells
 * subscribers (the per-proxy config stream) about each new one.
 */
export class ViewSource implements DataPlane {
  latest: IRSnapshot | null = null;
  readonly #subscribers = new Set<(ir: IRSnapshot) => void>();

  subscribe(fn: (ir: IRSnapshot) => void): () => void {
    this.#subscribers.add(fn);
    if (this.latest !== null) fn(this.latest);
    return () => this.#subscribers.delete(fn);
  }

  async apply(ir: IRSnapshot): Promise<ApplyResult[]> {
    this.latest = ir;
    for (const fn of this.#subscribers) fn(ir);
    return [{ version: ir.version, applied: true, errors: [], listeners: [] }];
  }

  async close(): Promise<void> {
    this.#subscribers.clear();
  }

  async metrics(): Promise<string> {
    return '';
  }
}

export async function startControlPlane(opts: ControlPlaneOptions): Promise<ControlPlane> {
  const log = opts.log;
  const views = new ViewSource();
  const k8s = opts.kubernetes ?? null;
  const source = k8s !== null ? new KubernetesSource({ client: k8s.client, log: log.child({ component: 'kubernetes' }), watchNamespaces: k8s.watchNamespaces, secretLabelSelector: null }) : new DirectorySource(opts.configDir);
  const servers: { grpc: grpc.Server | null; push: ConfigPushServer | null; graph: MeshGraphScraper | null } = { grpc: null, push: null, graph: null };
  // Each reload's objects go to the config push (created below, before the first reload).
  let latestResources: ResourceSet | null = null;
  const controller = new Controller({ source, translate: opts.translate, dataPlane: views, log, onResources: (r) => ((latestResources = r), servers.push?.setResources(r)) });
  const admin: AdminServer = await startAdminServer(controller, opts.adminPort, '0.0.0.0', undefined, {
    // istioctl proxy-status: every connected sidecar, the version sent and the one it runs.
    '/debug/proxy-status': () => servers.push?.status() ?? { generation: 0, proxies: [], push: 'disabled (no sidecar translation)' },
    // The push's metrics (istiod's pilot_xds* equivalents), on the port Prometheus scrapes istiod at.
    '/metrics': async () => new AdminText('text/plain; version=0.0.4; charset=utf-8', (await servers.push?.metrics.text()) ?? ''),
    // The mesh as Kiali draws it, from the sidecars' metrics (control/mesh-graph/), and the page drawing it.
    '/mesh/graph': () => servers.graph?.graph() ?? MESH_GRAPH_OFF,
    '/debug/mesh-graph': () => servers.graph?.graph() ?? MESH_GRAPH_OFF,
    '/dashboard': () => new AdminText('text/html; charset=utf-8', MESH_DASHBOARD_HTML),
    '/dashboard/': () => new AdminText('text/html; charset=utf-8', MESH_DASHBOARD_HTML),
    '/dashboard/mesh.js': () => new AdminText('text/javascript; charset=utf-8', MESH_DASHBOARD_JS),
  });
  try {
    const material = opts.caDir !== '' || k8s === null ? await loadOrCreateCaDirectory(opts.caDir, { trustDomain: opts.trustDomain }) : await loadKubernetesCa(k8s.client, opts.trustDomain, log);
    const ca = new MeshCa(material);
    log.info('mesh CA loaded', { dir: opts.caDir || null, source: material.source, signerNotAfter: ca.signingNotAfter.toISOString() });
    let authenticator: Authenticator;
    if (k8s !== null) authenticator = new TokenReviewAuthenticator(k8s.client, opts.tokenAudiences);
    else {
      const verifier = new TokenVerifier(material.signingKey, opts.tokenAudiences);
      authenticator = { authenticate: (t) => verifier.verify(t) };
    }
    // The serving certificate is renewed at half its life without rebinding (new handshakes get it).
    const provider = new MemoryCertificateProvider();
    let renewTimer: NodeJS.Timeout | null = null;
    const issueServing = async (): Promise<void> => {
      try {
        const serving = await ca.issueServing([ISTIOD_SAN], opts.servingTtlSeconds ?? SERVING_TTL_S);
        provider.set(serving.certChainPem, serving.keyPem, ca.rootCertPem);
        renewTimer = setTimeout(() => void issueServing(), Math.max(1000, (serving.notAfter.getTime() - Date.now()) / 2));
      } catch (e) {
        log.error('cannot renew the serving certificate; retrying in 10 s', { error: (e as Error).message });
        renewTimer = setTimeout(() => void issueServing(), 10_000);
      }
      renewTimer.unref();
    };
    await issueServing();
    // Keepalive pings notice sidecars that vanished without closing (their streams would look connected).
    const server = new grpc.Server({ 'grpc.keepalive_time_ms': 30_000, 'grpc.keepalive_timeout_ms': 10_000 });
    servers.grpc = server;
    server.addService(istioCertificateService(), caServiceHandlers({ ca: () => ca, authenticator, trustDomain: opts.trustDomain, certTtlSeconds: opts.certTtlSeconds, log: log.child({ component: 'ca' }) }));
    if (opts.sidecarTranslate !== undefined) {
      const push = new ConfigPushServer({ translate: opts.sidecarTranslate, translateOptions: opts.translate, authenticator, trustDomain: opts.trustDomain, log: log.child({ component: 'push' }), debounceAfterMs: opts.pushDebounce?.afterMs, debounceMaxMs: opts.pushDebounce?.maxMs });
      servers.push = push;
      server.addService(configPushService(), push.handlers());
      const g = opts.meshGraph === undefined ? { intervalMs: DEFAULT_GRAPH_INTERVAL_MS, windowMs: DEFAULT_GRAPH_WINDOW_MS, port: DEFAULT_SIDECAR_STATS_PORT } : opts.meshGraph;
      if (g !== null) servers.graph = new MeshGraphScraper({ targets: () => proxyTargets(push.status().proxies, g.port), intervalMs: g.intervalMs, windowMs: g.windowMs, log: log.child({ component: 'mesh-graph' }) });
    }
    const credentials = provider.credentials();
    const grpcPort = await new Promise<number>((resolve, reject) => server.bindAsync(`${opts.listenHost.includes(':') ? `[${opts.listenHost}]` : opts.listenHost}:${opts.listenPort}`, credentials, (err, port) => (err ? reject(err) : resolve(port))));
    await controller.start();
    servers.graph?.start();
    // Kubernetes mode: the trust bundle for every namespace, as istiod's namespace controller writes it.
    const publisher = k8s !== null ? publishRootCert(k8s.client, ca.rootCertPem, log.child({ component: 'root-cert' })) : null;
    log.info('meshgate control started', { grpc: grpcPort, admin: admin.port, trustDomain: opts.trustDomain, certTtlSeconds: opts.certTtlSeconds });
    let stopping: Promise<void> | null = null;
    const stop = () =>
      (stopping ??= (async () => {
        publisher?.stop();
        servers.graph?.stop();
        if (renewTimer !== null) clearTimeout(renewTimer);
        // Config streams never end by themselves: close them first, and do not wait forever for stragglers.
        servers.push?.close();
        await new Promise<void>((resolve) => {
          const force = setTimeout(() => {
            server.forceShutdown();
            resolve();
          }, 2000);
          server.tryShutdown(() => {
            clearTimeout(force);
            resolve();
          });
        });
        await controller.stop(1000);
        await admin.close();
      })());
    return { grpcPort, adminPort: admin.port, ca, views, controller, push: servers.push, meshGraph: servers.graph, resources: () => latestResources, stop, rootCertPublished: publisher?.synced ?? Promise.resolve() };
  } catch (e) {
    servers.graph?.stop();
    servers.push?.close();
    servers.grpc?.forceShutdown();
    await admin.close();
    throw e;
  }
}
