/**
 * The data plane of one `meshgate sidecar` (reference/mesh.md §0, §2.1): the outbound capture
 * listener (15001, `OutboundHandler`), the inbound capture listener (15006, the `InboundHandler` of
 * `./inbound.ts`), readiness on 15021 (`GET /healthz/ready`: 200 once the process holds a workload
 * certificate, when it needs one, and a view; else 503) and Istio's metrics on 15020
 * (`/stats/prometheus`, `reporter="source"` from the outbound side).
 *
 * Views arrive whole (`apply`): the outbound tables are compiled first (a view that does not
 * compile is refused before anything changes), then the inbound side takes it; when the inbound side
 * refuses it the outbound side goes back to the previous view. The error of a refused view is the
 * NACK detail. The last good view keeps serving.
 *
 * Listening sockets: the capture listeners are the transparent sockets the launcher made as root
 * (mesh/capture/transparent.ts, `MESHGATE_TRANSPARENT_FDS`), or, without them, plain sockets
 * (debugging without capture: the original destination is then the listener itself, which only the
 * inbound side's tests use). 15020 and 15021 listen on every address of the pod.
 */
import http from 'node:http';
import net from 'node:net';
import type { IRSnapshot } from '../../ir/types.js';
import type { Logger } from '../../lib/log.js';
import { createObservability, type Observability, type ObservabilityOptions } from '../../observability/observer.js';
import { meshIdentity, setMeshIdentity, type MeshIdentityMaterial } from '../upstream/mesh-identity.js';
import { inheritedTransparentFds, listenTransparent } from '../../mesh/capture/transparent.js';
import { OutboundHandler } from './outbound.js';
import { plainAddress } from '../http/downstream.js';
import { appProbeHandler } from './app-probe.js';
import { canonicalServiceName, canonicalServiceRevision } from '../../lib/canonical-service.js';

/** What the sidecar needs of the inbound side (implemented by `./inbound.ts`, sc-inbound). */
export interface InboundSide {
  apply(ir: IRSnapshot): void;
  handle(socket: net.Socket): void;
  close(): Promise<void>;
}

export interface SidecarRuntimeOptions {
  log: Logger;
  /** Metrics and access log settings; `identity` (the `source_*` labels) is filled from the first view. */
  observability: Omit<ObservabilityOptions, 'identity'>;
  /** Capture listeners, `ADDRESS:PORT` (`127.0.0.1:15001`, `[::1]:15001`). */
  outboundListen: string[];
  inboundListen: string[];
  /** Readiness (15021) and metrics (15020) ports; listened on every address (0.0.0.0 and, with IPv6, ::). 0 = off. */
  healthPort: number;
  statusPort: number;
  /** Also listen on `::` for 15020/15021. */
  ipv6: boolean;
  /** The pod's addresses (`--pod-ip`). */
  podIps: string[];
  /** True when a workload certificate is expected (`--control`): readiness waits for it. */
  needsIdentity: boolean;
  detectionTimeoutMs: number;
  /** Grace for connections of removed tables and at shutdown, ms. */
  drainMs: number;
  /** Istio cluster ID (`source_cluster`/`destination_cluster`); default `Kubernetes`. */
  clusterId?: string;
  /** More Prometheus text for `/stats/prometheus` (the DNS proxy's, as istio-agent's metrics are merged there). */
  extraMetrics?: () => string;
}

export class SidecarRuntime {
  readonly #o: SidecarRuntimeOptions;
  readonly #log: Logger;
  readonly #env = { random: Math.random, observer: null as Observability | null };
  #obs: Observability | null = null;
  #outbound: OutboundHandler | null = null;
  #inbound: InboundSide | null = null;
  #lastGood: IRSnapshot | null = null;
  readonly #servers: net.Server[] = [];
  readonly #selfPorts = new Set<number>();
  #closed = false;
  /** The app's original probes, rewritten by inject to `/app-health/...` on 15020 (ISTIO_KUBE_APP_PROBERS). */
  readonly #appProbes = appProbeHandler();
  /** Ports actually bound (tests pass 0). */
  readonly bound = { outbound: [] as number[], inbound: [] as number[], health: [] as number[], status: [] as number[] };

  constructor(o: SidecarRuntimeOptions) {
    this.#o = o;
    this.#log = o.log;
    if (this.#appProbes.error !== null) this.#log.warn('app probes not served', { error: this.#appProbes.error });
  }

  /** The version being served; null before the first view. */
  get version(): string | null {
    return this.#lastGood?.version ?? null;
  }

  get ready(): boolean {
    return this.#lastGood !== null && (!this.#o.needsIdentity || meshIdentity() !== null);
  }

  get outbound(): OutboundHandler | null {
    return this.#outbound;
  }

  /** Binds every listener. */
  async start(): Promise<void> {
    const fds = inheritedTransparentFds();
    for (const [specs, kind] of [
      [this.#o.outboundListen, 'outbound'],
      [this.#o.inboundListen, 'inbound'],
    ] as const) {
      for (const spec of specs) {
        const server = net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => this.#accept(kind, s));
        server.on('error', (e) => this.#log.error(`${kind} listener error`, { listener: spec, error: e.message }));
        if (fds.has(spec)) await listenTransparent(server, spec);
        else {
          const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(spec);
          if (m === null) throw new Error(`bad listener ${spec}`);
          await listen(server, m[1], Number(m[2]));
          this.#log.warn('listener is not transparent (no launcher socket): connections are not captured ones', { listener: spec });
        }
        this.#servers.push(server);
        const port = (server.address() as net.AddressInfo).port;
        this.#selfPorts.add(port);
        this.bound[kind].push(port);
      }
    }
    const hosts = this.#o.ipv6 ? ['0.0.0.0', '::'] : ['0.0.0.0'];
    for (const [port, kind] of [
      [this.#o.healthPort, 'health'],
      [this.#o.statusPort, 'status'],
    ] as const) {
      if (port === 0 && kind === 'health' && this.#o.healthPort === 0) continue;
      if (port === 0 && kind === 'status' && this.#o.statusPort === 0) continue;
      for (const host of hosts) {
        const server = http.createServer((req, res) => void this.#serveHttp(kind, req, res));
        await listen(server, host, port, host === '::');
        this.#servers.push(server);
        const bound = (server.address() as net.AddressInfo).port;
        this.#selfPorts.add(bound);
        this.bound[kind].push(bound);
      }
    }
  }

  /** A new workload certificate (first or renewal): new upstream connections use it. */
  setIdentity(m: MeshIdentityMaterial | null): void {
    setMeshIdentity(m);
  }

  /** Serves `ir` from now on; throws (the previous view keeps serving) when it cannot. */
  async apply(ir: IRSnapshot): Promise<void> {
    if (this.#closed) throw new Error('sidecar is shutting down');
    const view = ir.sidecar;
    if (view === undefined) throw new Error(`snapshot ${ir.version} is not a sidecar view (no "sidecar")`);
    if (this.#outbound === null) await this.#init(ir);
    this.#outbound!.apply(ir);
    try {
      this.#inbound!.apply(ir);
    } catch (e) {
      if (this.#lastGood !== null) this.#outbound!.apply(this.#lastGood);
      throw e;
    }
    try {
      await this.#obs!.applySnapshot(ir);
    } catch (e) {
      this.#log.warn('observability settings of the view not applied', { version: ir.version, error: (e as Error).message });
    }
    this.#lastGood = ir;
  }

  /** The first view: who this workload is (the `source_*` labels), then both sides. */
  async #init(ir: IRSnapshot): Promise<void> {
    const p = ir.sidecar!.proxy;
    // `source_app`/`source_version` are the labels; the canonical service has Istio's fallbacks.
    const identity = {
      workload: p.workload,
      namespace: p.namespace,
      app: p.labels.app ?? 'unknown',
      version: p.labels.version ?? 'unknown',
      canonicalService: canonicalServiceName(p.labels, p.workload),
      canonicalRevision: canonicalServiceRevision(p.labels),
      cluster: this.#o.clusterId ?? 'Kubernetes',
    };
    this.#obs = createObservability({ ...this.#o.observability, identity });
    this.#env.observer = this.#obs;
    const outbound = new OutboundHandler({
      env: this.#env,
      tcpObserver: this.#obs,
      detectionTimeoutMs: this.#o.detectionTimeoutMs,
      drainMs: this.#o.drainMs,
      clusterId: this.#o.clusterId ?? 'Kubernetes',
      isSelf: (address, port) => this.#selfPorts.has(port) && (address.startsWith('127.') || address === '::1' || address === '0.0.0.0' || this.#o.podIps.includes(address)),
    });
    this.#obs.metrics?.attach(outbound);
    this.#outbound = outbound;
    this.#inbound = await loadInbound({ identity: () => meshIdentity(), log: this.#log.child({ component: 'inbound' }), metrics: this.#obs, observer: this.#obs, random: Math.random, clusterId: this.#o.clusterId ?? 'Kubernetes' });
  }

  #accept(kind: 'outbound' | 'inbound', socket: net.Socket): void {
    socket.on('error', noop);
    if (kind === 'outbound') {
      if (this.#outbound === null) return void socket.destroy();
      return this.#outbound.handle(socket);
    }
    if (this.#inbound === null) return void socket.destroy();
    this.#inbound.handle(socket);
  }

  async #serveHttp(kind: 'health' | 'status', req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return void res.writeHead(405, { allow: 'GET, HEAD' }).end();
    if (kind === 'health' && path === '/healthz/ready') {
      const ready = this.ready;
      const why = ready ? 'ready' : this.#lastGood === null ? 'no config from the control plane yet' : 'no workload certificate yet';
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain; charset=utf-8' }).end(`${why}\n`);
      return;
    }
    if (kind === 'status' && (path === '/stats/prometheus' || path === '/metrics')) {
      const text = (this.#obs === null ? '' : await this.#obs.registry.metrics()) + (this.#o.extraMetrics?.() ?? '');
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text);
      return;
    }
    if (kind === 'status' && path === '/healthz/ready') {
      // Istio's 15020 also answers readiness (the app probe rewrite targets it).
      res.writeHead(this.ready ? 200 : 503).end();
      return;
    }
    if (kind === 'status' && (await this.#appProbes.serve(path, res))) return;
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
  }

  /** Stops accepting, lets in-flight requests finish for at most `graceMs`, closes everything. */
  async close(graceMs: number): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const s of this.#servers) s.close();
    await Promise.all([this.#outbound?.close(graceMs), this.#inbound?.close()]);
    await this.#obs?.close();
  }
}

/**
 * The inbound side: `./inbound.js` (sc-inbound's `InboundHandler`) when this build has it; else a
 * plaintext passthrough (every inbound connection relayed to its original destination from
 * 127.0.0.6, Istio's InboundPassthroughCluster with PeerAuthentication DISABLE), so captured pods
 * keep working. Loaded by URL so this file builds without it.
 */
async function loadInbound(opts: Record<string, unknown> & { log: Logger }): Promise<InboundSide> {
  try {
    const m = (await import(new URL('./inbound.js', import.meta.url).href)) as { InboundHandler?: new (o: unknown) => InboundSide };
    if (typeof m.InboundHandler === 'function') return new m.InboundHandler(opts);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw e;
  }
  opts.log.warn('no inbound handler in this build: inbound connections are relayed in plaintext (no mTLS, no policy)');
  return new PassthroughInbound();
}

/** Inbound without policy: bytes relayed to the original destination from 127.0.0.6 (IPv6 ::6). */
export class PassthroughInbound implements InboundSide {
  readonly #sockets = new Set<net.Socket>();
  apply(): void {}
  handle(client: net.Socket): void {
    const address = plainAddress(client.localAddress ?? '');
    const port = client.localPort ?? 0;
    if (address === '' || port === 0) return void client.destroy();
    const upstream = net.connect({ host: address, port, allowHalfOpen: true, localAddress: address.includes(':') ? '::6' : '127.0.0.6' });
    for (const s of [client, upstream]) {
      this.#sockets.add(s);
      s.once('close', () => this.#sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream);
    upstream.pipe(client);
  }
  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
  }
}

function listen(server: net.Server, host: string, port: number, ipv6Only = false): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, ipv6Only }, () => {
      server.off('error', reject);
      server.on('error', noop);
      resolve();
    });
  });
}

function noop(): void {}
