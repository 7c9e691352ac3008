/**
 * The control plane's side of the config push (reference/mesh.md §2.11): one bidi stream per
 * sidecar on the control gRPC port, each carrying that proxy's own view.
 *
 * - Authentication as istiod's: `authorization: Bearer <token>` (TokenReview in Kubernetes mode, a
 *   meshgate-issued JWT in directory mode), or else the workload's client certificate, verified
 *   against the mesh roots, whose SPIFFE ID names the caller. The hello's namespace and service
 *   account must be that identity's (`PERMISSION_DENIED` otherwise, naming both), and its trust
 *   domain the mesh's.
 * - Views: `translate(resources, proxy, options)` per proxy, pushed whole (JSON) and only when its
 *   version differs from the last one sent on that stream; a new stream always gets the current
 *   view (as istiod's first push after a reconnect). A view the translator marks invalid
 *   (MG_INVALID_IR) or a translator that throws sends nothing: the proxy keeps its last good view.
 * - Debounce as Pilot's: a config change is pushed `debounceAfterMs` (PILOT_DEBOUNCE_AFTER, 100 ms)
 *   after the last change, and never more than `debounceMaxMs` (PILOT_DEBOUNCE_MAX, 10 s) after the
 *   first of a burst.
 * - Back-pressure: at most one view in flight per stream; a change during a slow write is computed
 *   again when it drains, so only the latest view is queued.
 * - Status per stream (`status()`, the admin's `/debug/proxy-status`): connected since, sent
 *   version, ACKed version, last NACK and its error detail.
 */
import * as grpc from '@grpc/grpc-js';
import type { Logger } from '../../lib/log.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { TranslateOptions } from '../../translate/index.js';
import { spiffeId, type ServiceAccount } from '../ca/token.js';
import type { Authenticator } from '../grpc/ca-service.js';
import type { PushRequest, PushResponse, WireProxyMeta } from './proto.js';
import type { ProxyStatus, ProxyStatusReport, SidecarProxyMeta, SidecarTranslate } from './types.js';
import { PushMetrics } from './metrics.js';

export interface ConfigPushServerOptions {
  /** The per-proxy view (translate/sidecar's `translateSidecar`). */
  translate: SidecarTranslate;
  translateOptions: TranslateOptions;
  authenticator: Authenticator;
  /** The mesh's trust domain; a hello naming another is refused. */
  trustDomain: string;
  log: Logger;
  /** Quiet time after the last change before pushing, ms (default 100, PILOT_DEBOUNCE_AFTER). */
  debounceAfterMs?: number;
  /** Longest a burst of changes delays a push, ms (default 10 000, PILOT_DEBOUNCE_MAX). */
  debounceMaxMs?: number;
  /** How long a stream may stay without its hello, ms (default 10 000). */
  helloTimeoutMs?: number;
  /** Called on every ACK and NACK (metrics, tests). */
  onResponse?: (status: ProxyStatus, kind: 'ack' | 'nack') => void;
}

type Call = grpc.ServerDuplexStream<PushRequest, PushResponse>;

interface Connection {
  id: string;
  name: string;
  proxy: SidecarProxyMeta;
  identity: string;
  peer: string;
  call: Call;
  connectedAt: Date;
  sentVersion: string | null;
  sentNonce: string | null;
  sentAt: Date | null;
  ackedVersion: string | null;
  ackedAt: Date | null;
  lastNack: { version: string; error: string; time: Date } | null;
  pushes: number;
  diagnostics: { errors: number; warnings: number };
  viewError: string | null;
  /** A view is being written (not yet flushed). */
  writing: boolean;
  /** A push was asked for while writing: compute again once the write is flushed. */
  again: boolean;
  closed: boolean;
}

export class ConfigPushServer {
  readonly #opts: ConfigPushServerOptions;
  readonly #connections = new Set<Connection>();
  #resources: ResourceSet | null = null;
  #generation = 0;
  #debounceTimer: NodeJS.Timeout | null = null;
  #firstPendingAt = 0;
  #nonce = 0;
  #connectionSeq = 0;
  #closed = false;
  #pushing = false;
  #pushAgain = false;
  /** When the current config generation reached the push (convergence time). */
  #generationAt = 0;
  /** Prometheus metrics (`metrics.text()` for `/metrics`). */
  readonly metrics = new PushMetrics();

  constructor(opts: ConfigPushServerOptions) {
    this.#opts = opts;
  }

  /** Handlers for `server.addService(configPushService(), ...)`. */
  handlers(): grpc.UntypedServiceImplementation {
    return { Stream: (call: Call) => this.#accept(call) };
  }

  /** The latest accepted config; proxies get their new views after the debounce. */
  setResources(resources: ResourceSet): void {
    if (this.#closed) return;
    const first = this.#resources === null;
    this.#resources = resources;
    this.#generation++;
    // A burst keeps the time of its first change: convergence counts the debounce.
    if (first || this.#debounceTimer === null) this.#generationAt = performance.now();
    // The first config is pushed at once: streams opened before it are waiting for any view.
    if (first) return this.#pushAll();
    const now = Date.now();
    const after = this.#opts.debounceAfterMs ?? 100;
    const max = this.#opts.debounceMaxMs ?? 10_000;
    if (this.#debounceTimer === null) this.#firstPendingAt = now;
    else clearTimeout(this.#debounceTimer);
    const wait = Math.max(0, Math.min(after, this.#firstPendingAt + max - now));
    this.#debounceTimer = setTimeout(() => {
      this.#debounceTimer = null;
      this.#pushAll();
    }, wait);
  }

  /** Every open stream, sorted by name then connection. */
  status(): ProxyStatusReport {
    const iso = (d: Date | null) => (d === null ? null : d.toISOString());
    const proxies = [...this.#connections]
      .map((c): ProxyStatus => ({
        name: c.name,
        connectionId: c.id,
        proxy: c.proxy,
        identity: c.identity,
        peer: c.peer,
        connectedAt: c.connectedAt.toISOString(),
        state: c.sentVersion === null ? 'NOT SENT' : c.lastNack !== null && c.lastNack.version === c.sentVersion && c.ackedVersion !== c.sentVersion ? 'ERROR' : c.ackedVersion === c.sentVersion ? 'SYNCED' : 'STALE',
        sentVersion: c.sentVersion,
        sentAt: iso(c.sentAt),
        ackedVersion: c.ackedVersion,
        ackedAt: iso(c.ackedAt),
        lastNack: c.lastNack === null ? null : { version: c.lastNack.version, error: c.lastNack.error, time: c.lastNack.time.toISOString() },
        pushes: c.pushes,
        diagnostics: { ...c.diagnostics },
        viewError: c.viewError,
      }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.connectionId < b.connectionId ? -1 : 1));
    return { generation: this.#generation, proxies };
  }

  /** Ends every stream with UNAVAILABLE (sidecars reconnect, to this or another replica) and refuses new ones. */
  close(): void {
    this.#closed = true;
    if (this.#debounceTimer !== null) clearTimeout(this.#debounceTimer);
    this.#debounceTimer = null;
    for (const c of [...this.#connections]) this.#end(c, grpc.status.UNAVAILABLE, 'control plane shutting down');
  }

  #accept(call: Call): void {
    const log = this.#opts.log;
    const peer = call.getPeer();
    if (this.#closed) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'control plane shutting down' });
      return;
    }
    const header = call.metadata.get('authorization').map(String)[0] ?? '';
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header);
    // Authentication starts at once; the hello is checked against it when it arrives.
    const caller: Promise<ServiceAccount | Error> = bearer === null ? Promise.resolve(new Error('no bearer token')) : this.#opts.authenticator.authenticate(bearer[1]).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
    // The other credential istiod accepts: a workload certificate (verified against the mesh roots by
    // the TLS handshake), whose SPIFFE ID is the caller's identity.
    const certified = peerIdentity(call);
    let conn: Connection | null = null;
    let done = false;
    const fail = (code: grpc.status, details: string, reason: string): void => {
      if (done) return;
      done = true;
      clearTimeout(helloTimer);
      log.warn('config stream refused', { peer, reason, code: grpc.status[code] });
      call.emit('error', { code, details });
    };
    const helloTimer = setTimeout(() => fail(grpc.status.DEADLINE_EXCEEDED, 'no hello received', 'no hello in time'), this.#opts.helloTimeoutMs ?? 10_000);
    helloTimer.unref();
    // Messages are handled in order, one after another (the hello waits for the token check).
    let queue = Promise.resolve();
    call.on('data', (msg: PushRequest) => {
      queue = queue.then(async () => {
        if (done && conn === null) return;
        if (conn === null) {
          if (msg.kind !== 'hello' || !msg.hello?.proxy) return fail(grpc.status.INVALID_ARGUMENT, 'the first message must be a hello with the proxy metadata', 'first message is not a hello');
          const byToken = await caller;
          // Either credential authenticates (istiod tries its authenticators in turn); the token first.
          let sa: ServiceAccount;
          let credential: string;
          if (!(byToken instanceof Error)) {
            sa = byToken;
            credential = "the token's identity";
          } else if (certified !== null) {
            if (certified.trustDomain !== this.#opts.trustDomain) {
              return fail(grpc.status.PERMISSION_DENIED, `the client certificate's trust domain "${certified.trustDomain}" is not the mesh's ("${this.#opts.trustDomain}")`, 'certificate trust domain mismatch');
            }
            sa = certified;
            credential = `the client certificate's identity (${certified.uri})`;
          } else return fail(grpc.status.UNAUTHENTICATED, 'request authenticate failure', byToken.message);
          const proxy = proxyMeta(msg.hello.proxy, this.#opts.trustDomain);
          // As istiod's checkConnectionIdentity: the proxy's namespace and service account are the credential's.
          if (proxy.namespace !== sa.namespace || proxy.serviceAccount !== sa.serviceAccount) {
            return fail(grpc.status.PERMISSION_DENIED, `${credential} ${sa.namespace}/${sa.serviceAccount} is not the proxy's ${proxy.namespace}/${proxy.serviceAccount}`, 'identity mismatch');
          }
          if (proxy.trustDomain !== this.#opts.trustDomain) {
            return fail(grpc.status.PERMISSION_DENIED, `trust domain "${proxy.trustDomain}" is not the mesh's ("${this.#opts.trustDomain}")`, 'trust domain mismatch');
          }
          if (this.#closed) return fail(grpc.status.UNAVAILABLE, 'control plane shutting down', 'shutting down');
          clearTimeout(helloTimer);
          conn = this.#register(call, proxy, peer, spiffeId(this.#opts.trustDomain, sa));
          // Response headers now: the sidecar knows it was accepted even before its first view.
          call.sendMetadata(new grpc.Metadata());
          this.#push(conn);
          return;
        }
        this.#response(conn, msg);
      }).catch((e: unknown) => log.error('config stream message failed', { peer, error: (e as Error).message }));
    });
    const closed = (why: string) => {
      clearTimeout(helloTimer);
      done = true;
      if (conn !== null && !conn.closed) {
        conn.closed = true;
        this.#connections.delete(conn);
        this.metrics.connected.set(this.#connections.size);
        log.info('proxy disconnected', { proxy: conn.id, why, ackedVersion: conn.ackedVersion });
      }
    };
    call.on('cancelled', () => closed('cancelled'));
    call.on('error', () => closed('error'));
    call.on('close', () => closed('closed'));
    // The sidecar half-closed: nothing more will come; finish the stream.
    call.on('end', () => {
      if (conn !== null) this.#end(conn, grpc.status.OK, 'stream ended by the proxy');
      else if (!done) fail(grpc.status.INVALID_ARGUMENT, 'stream ended before the hello', 'ended before hello');
    });
  }

  #register(call: Call, proxy: SidecarProxyMeta, peer: string, identity: string): Connection {
    const name = `${proxy.podName !== '' ? proxy.podName : (proxy.podIps[0] ?? 'unknown')}.${proxy.namespace}`;
    const conn: Connection = {
      id: `${name}-${++this.#connectionSeq}`,
      name,
      proxy,
      identity,
      peer,
      call,
      connectedAt: new Date(),
      sentVersion: null,
      sentNonce: null,
      sentAt: null,
      ackedVersion: null,
      ackedAt: null,
      lastNack: null,
      pushes: 0,
      diagnostics: { errors: 0, warnings: 0 },
      viewError: null,
      writing: false,
      again: false,
      closed: false,
    };
    this.#connections.add(conn);
    this.metrics.connected.set(this.#connections.size);
    this.#opts.log.info('proxy connected', { proxy: conn.id, identity, peer, podIps: proxy.podIps });
    return conn;
  }

  #response(conn: Connection, msg: PushRequest): void {
    const log = this.#opts.log;
    if (msg.kind === 'ack' && msg.ack) {
      conn.ackedVersion = msg.ack.version;
      conn.ackedAt = new Date();
      log.debug('view ACKed', { proxy: conn.id, version: msg.ack.version, nonce: msg.ack.nonce });
      this.#notify(conn, 'ack');
    } else if (msg.kind === 'nack' && msg.nack) {
      conn.lastNack = { version: msg.nack.version, error: msg.nack.error_detail, time: new Date() };
      this.metrics.nacks.inc();
      log.warn('view NACKed: the proxy keeps its last good view', { proxy: conn.id, version: msg.nack.version, nonce: msg.nack.nonce, error: msg.nack.error_detail, running: conn.ackedVersion });
      this.#notify(conn, 'nack');
    } else {
      log.warn('unexpected message on a config stream ignored', { proxy: conn.id, kind: msg.kind ?? null });
    }
  }

  #notify(conn: Connection, kind: 'ack' | 'nack'): void {
    if (this.#opts.onResponse === undefined) return;
    const s = this.status().proxies.find((p) => p.connectionId === conn.id);
    if (s !== undefined) this.#opts.onResponse(s, kind);
  }

  /**
   * Every proxy's view, one proxy per macrotask so ACKs and other streams are served between
   * translations of a large mesh; a change arriving meanwhile restarts the round after this one
   * (views computed from the older config are replaced by the newer right after).
   */
  #pushAll(): void {
    if (this.#pushing) {
      this.#pushAgain = true;
      return;
    }
    this.#pushing = true;
    void (async () => {
      try {
        do {
          this.#pushAgain = false;
          for (const c of [...this.#connections]) {
            if (this.#closed) return;
            this.#push(c);
            await new Promise((r) => setImmediate(r));
          }
        } while (this.#pushAgain && !this.#closed);
      } finally {
        this.#pushing = false;
      }
    })();
  }

  /** Compute the proxy's view and send it if its version is new on this stream. */
  #push(conn: Connection): void {
    if (conn.closed || this.#resources === null) return;
    if (conn.writing) {
      conn.again = true;
      return;
    }
    const log = this.#opts.log;
    let ir;
    let json: Buffer | undefined;
    try {
      const out = this.#opts.translate(this.#resources, conn.proxy, this.#opts.translateOptions);
      ir = out.ir;
      json = out.json;
      conn.diagnostics = { errors: out.diagnostics.filter((d) => d.severity === 'error').length, warnings: out.diagnostics.filter((d) => d.severity === 'warning').length };
      if (out.diagnostics.some((d) => d.reason === 'MG_INVALID_IR')) {
        conn.viewError = 'the translated view is invalid (MG_INVALID_IR); the proxy keeps its last view';
        this.metrics.viewErrors.inc();
        log.error('view not pushed: it is invalid', { proxy: conn.id, problems: out.diagnostics.filter((d) => d.reason === 'MG_INVALID_IR').map((d) => d.message) });
        return;
      }
      conn.viewError = null;
    } catch (e) {
      conn.viewError = `cannot compute the view: ${(e as Error).message}`;
      this.metrics.viewErrors.inc();
      log.error('cannot compute a proxy view; it keeps its last view', { proxy: conn.id, error: (e as Error).message });
      return;
    }
    // Nothing new for this proxy (its part of the mesh did not change): nothing sent.
    if (ir.version === conn.sentVersion) {
      this.metrics.unchanged.inc();
      return;
    }
    const nonce = String(++this.#nonce);
    const view = json ?? Buffer.from(JSON.stringify(ir));
    conn.sentVersion = ir.version;
    conn.sentNonce = nonce;
    conn.sentAt = new Date();
    // A stream's first view is not a convergence (nothing changed); later ones are.
    if (conn.pushes > 0) this.metrics.convergence.observe((performance.now() - this.#generationAt) / 1000);
    conn.pushes++;
    this.metrics.views.inc();
    conn.writing = true;
    log.info('view pushed', { proxy: conn.id, version: ir.version, bytes: view.length, nonce });
    conn.call.write({ version: ir.version, nonce, view } satisfies PushResponse, () => {
      conn.writing = false;
      if (conn.again) {
        conn.again = false;
        this.#push(conn);
      }
    });
  }

  #end(conn: Connection, code: grpc.status, details: string): void {
    if (conn.closed) return;
    conn.closed = true;
    this.#connections.delete(conn);
    this.metrics.connected.set(this.#connections.size);
    if (code === grpc.status.OK) conn.call.end();
    else conn.call.emit('error', { code, details });
  }
}

/** The verified client certificate's SPIFFE identity (`spiffe://<td>/ns/<ns>/sa/<sa>`), or null. */
function peerIdentity(call: Call): (ServiceAccount & { trustDomain: string; uri: string }) | null {
  const cert = call.getAuthContext().sslPeerCertificate;
  if (cert === undefined) return null;
  for (const part of (cert.subjectaltname ?? '').split(', ')) {
    const m = /^URI:(spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+))$/.exec(part);
    if (m !== null) return { uri: m[1], trustDomain: m[2], namespace: m[3], serviceAccount: m[4] };
  }
  return null;
}

/** The hello's proxy metadata; an empty trust domain means the mesh's. */
function proxyMeta(w: WireProxyMeta, trustDomain: string): SidecarProxyMeta {
  return {
    namespace: w.namespace ?? '',
    serviceAccount: w.service_account ?? '',
    podName: w.pod_name ?? '',
    podIps: [...(w.pod_ips ?? [])],
    trustDomain: w.trust_domain || trustDomain,
  };
}
