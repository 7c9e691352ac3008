/**
 * The sidecar's side of the config push (reference/mesh.md §2.11), as istio-agent's xDS proxy:
 *
 * - Dials the control plane over TLS, verifying it with the mesh root and the name
 *   `istiod.istio-system.svc` whatever address is dialled, presenting the workload certificate when
 *   it holds one; authenticates with the bearer token, read again at every (re)connection
 *   (projected tokens rotate); sends its hello first. The stream is gRPC over node:http2
 *   (mesh/grpc/h2-stream.ts: keepalive PINGs every 30 s, 10 s to answer) with the messages encoded
 *   by hand (wire.ts): grpc-js and protobufjs cost every sidecar ~5 MiB of idle RSS. A message that
 *   cannot be parsed ends the stream (INTERNAL), as a gRPC client's would; the next one is retried.
 * - Each view received is parsed, checked (the version it was sent with, `ir.sidecar` present,
 *   `validateIR`) and handed to `apply`. Success is ACKed; any failure is NACKed with its error as
 *   the detail, and the last good view keeps serving. A view equal to the running one (same
 *   version, e.g. the first push after a reconnect) is ACKed without applying it again. Views that
 *   arrive while one is being applied wait; only the newest of them is applied.
 * - When the stream breaks (control plane down, network), the sidecar keeps serving its last good
 *   view and reconnects with capped, jittered exponential backoff; the backoff starts over once a
 *   stream has delivered a view.
 *
 * Events: `connected` (the control plane accepted the hello), `disconnected` (error), `applied`
 * (version), `rejected` (version, error), `ready` (first view applied).
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import type { IRSnapshot } from '../../ir/types.js';
import { validateIR } from '../../ir/validate.js';
import type { Logger } from '../../lib/log.js';
import { ISTIOD_NAME } from '../identity/client.js';
import { GRPC_STATUS_NAMES } from '../grpc/h2-unary.js';
import { GrpcH2Stream, type GrpcStatus } from '../grpc/h2-stream.js';
import type { PushRequest, PushResponse } from './proto.js';
import { CONFIG_PUSH_STREAM_PATH, decodePushResponse, encodePushRequest } from './wire.js';
import type { SidecarProxyMeta } from './types.js';

export interface ConfigPushClientOptions {
  /** `HOST:PORT` of the control plane (15012). */
  address: string;
  /**
   * The address the stream is opened from (default: the kernel's choice, the pod IP in a pod). The
   * control plane scrapes a proxy's metrics for the mesh graph only at the pod IP the stream came from.
   */
  localAddress?: string;
  /** PEM of the mesh root(s): the trust anchor for the control plane. */
  rootCertPem: string;
  /** Where the bearer token is read before each connection. */
  tokenFile: string;
  /**
   * The workload certificate now, presented as the TLS client certificate (the control plane
   * accepts it as the credential when there is no valid token, as istiod does); null while there
   * is none. Read at each (re)connection, so a renewed certificate is used from the next stream.
   */
  clientCertificate?: () => { certChainPem: string; keyPem: string } | null;
  proxy: SidecarProxyMeta;
  log: Logger;
  /** Installs a view; throws (or rejects) to refuse it, the message becoming the NACK's detail. */
  apply: (ir: IRSnapshot) => Promise<void> | void;
  /** First reconnection delay, ms (default 500); doubles per failure up to `maxBackoffMs`. */
  initialBackoffMs?: number;
  /** Longest reconnection delay, ms (default 15 000). Each delay is jittered to 50-100 % of its value. */
  maxBackoffMs?: number;
  /** Largest view accepted, bytes (default 256 MiB). */
  maxViewBytes?: number;
}

type Stream = GrpcH2Stream;

const PERMISSION_DENIED = 7;
const UNAUTHENTICATED = 16;
const INVALID_ARGUMENT = 3;

export class ConfigPushClient extends EventEmitter {
  readonly #opts: ConfigPushClientOptions;
  #stream: Stream | null = null;
  #connected = false;
  #stopped = true;
  #closed = false;
  #timer: NodeJS.Timeout | null = null;
  #failures = 0;
  #version: string | null = null;
  #lastError: string | null = null;
  #lastNack: { version: string; error: string } | null = null;
  /** The newest view waiting while another is applied (older waiting ones are dropped: never ACKed). */
  #pending: { msg: PushResponse; stream: Stream } | null = null;
  #applying = false;
  /** Views applied (ACKed with a new version), for logs and tests. */
  applied = 0;
  /** Streams opened, the first included. */
  connects = 0;

  constructor(opts: ConfigPushClientOptions) {
    super();
    this.#opts = opts;
  }

  /** Version of the view serving now (last applied); null before the first. */
  get version(): string | null {
    return this.#version;
  }

  /** A view is serving. */
  get ready(): boolean {
    return this.#version !== null;
  }

  /** The control plane accepted the current stream. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Why the last stream ended, or null. */
  get lastError(): string | null {
    return this.#lastError;
  }

  /** The last view refused (its version and why), or null. */
  get lastNack(): { version: string; error: string } | null {
    return this.#lastNack;
  }

  /** Opens the stream (and keeps reopening it) until `stop()`. A stopped client cannot start again. */
  start(): void {
    if (this.#closed) throw new Error('this ConfigPushClient was stopped; make a new one');
    if (!this.#stopped) return;
    this.#stopped = false;
    this.#open();
  }

  /** Resolves once a view is serving; rejects after `timeoutMs`. */
  whenReady(timeoutMs: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('ready', onReady);
        reject(new Error(`no config from the control plane within ${timeoutMs} ms${this.#lastError !== null ? ` (last error: ${this.#lastError})` : ''}`));
      }, timeoutMs);
      const onReady = () => {
        clearTimeout(timer);
        resolve();
      };
      this.once('ready', onReady);
    });
  }

  /** Closes the stream and its connection; the last view stays where `apply` put it. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#closed = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#pending = null;
    const s = this.#stream;
    this.#stream = null;
    if (s !== null) {
      s.removeAllListeners('message');
      s.cancel('the sidecar is stopping');
    }
    this.#setConnected(false, 'stopped');
  }

  #open(): void {
    if (this.#stopped) return;
    const log = this.#opts.log;
    // Each stream has its own connection, which presents the workload certificate of the moment.
    const cert = this.#opts.clientCertificate?.() ?? null;
    let token: string | null = null;
    try {
      token = readFileSync(this.#opts.tokenFile, 'utf8').trim();
    } catch (e) {
      const why = `cannot read the token: ${(e as Error).message}`;
      if (cert === null) {
        this.#lastError = why;
        log.warn('config stream not opened', { error: why });
        return this.#retry();
      }
      // Not an error of this attempt: the certificate is the credential. lastError keeps the
      // outcome of the last stream, which this attempt's own outcome replaces.
      log.warn('no token: authenticating with the workload certificate', { error: why });
    }
    this.connects++;
    let stream: GrpcH2Stream;
    try {
      stream = this.#dial(token, cert);
    } catch (e) {
      // An address node:http2 cannot dial (malformed): said, and tried again like any failure.
      this.#lastError = `UNAVAILABLE: ${(e as Error).message}`;
      log.warn('config stream not opened', { error: this.#lastError });
      return this.#retry();
    }
    this.#stream = stream;
    let gotView = false;
    stream.on('headers', () => {
      if (this.#stream === stream) this.#setConnected(true, null);
    });
    stream.on('message', (bytes: Buffer) => {
      if (this.#stream !== stream) return;
      let msg: PushResponse;
      try {
        msg = decodePushResponse(bytes);
      } catch (e) {
        // As a gRPC client that cannot parse a response: the call fails (INTERNAL), and is made again.
        return stream.cancel(`cannot parse the server's message: ${(e as Error).message}`, 13);
      }
      gotView = true;
      this.#enqueue(msg, stream);
    });
    stream.on('status', (s: GrpcStatus) => {
      if (this.#stream !== stream) return;
      this.#stream = null;
      const why = s.code === 0 ? 'the control plane ended the stream' : `${GRPC_STATUS_NAMES[s.code] ?? s.code}: ${s.details}`;
      this.#lastError = why;
      this.#setConnected(false, why);
      if (gotView) this.#failures = 0;
      const level = s.code === PERMISSION_DENIED || s.code === UNAUTHENTICATED || s.code === INVALID_ARGUMENT ? 'error' : 'warn';
      log[level]('config stream ended; serving the last good view', { why, version: this.#version });
      this.#retry();
    });
    const hello: PushRequest = {
      hello: {
        proxy: { namespace: this.#opts.proxy.namespace, service_account: this.#opts.proxy.serviceAccount, pod_name: this.#opts.proxy.podName, pod_ips: this.#opts.proxy.podIps, trust_domain: this.#opts.proxy.trustDomain },
        meshgate_version: '',
      },
    };
    stream.write(encodePushRequest(hello));
  }

  #dial(token: string | null, cert: { certChainPem: string; keyPem: string } | null): GrpcH2Stream {
    return new GrpcH2Stream({
      address: this.#opts.address,
      ...(this.#opts.localAddress !== undefined ? { localAddress: this.#opts.localAddress } : {}),
      rootCertPem: this.#opts.rootCertPem,
      // The control plane is verified as istiod.istio-system.svc whatever address is dialled.
      servername: ISTIOD_NAME,
      path: CONFIG_PUSH_STREAM_PATH,
      metadata: token !== null ? { authorization: `Bearer ${token}` } : {},
      clientCertificate: cert,
      maxReceiveBytes: this.#opts.maxViewBytes ?? 256 * 1024 * 1024,
      // A control plane that vanished without closing (host down, partition) is noticed in ~40 s.
      keepaliveTimeMs: 30_000,
      keepaliveTimeoutMs: 10_000,
      connectTimeoutMs: 20_000,
    });
  }

  #setConnected(value: boolean, why: string | null): void {
    if (this.#connected === value) return;
    this.#connected = value;
    if (value) {
      this.#opts.log.info('connected to the control plane', { address: this.#opts.address });
      this.emit('connected');
    } else this.emit('disconnected', why);
  }

  #retry(): void {
    if (this.#stopped || this.#timer !== null) return;
    const initial = this.#opts.initialBackoffMs ?? 500;
    const max = this.#opts.maxBackoffMs ?? 15_000;
    const base = Math.min(max, initial * 2 ** Math.min(this.#failures, 20));
    this.#failures++;
    const delay = Math.round(base * (0.5 + Math.random() * 0.5));
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#open();
    }, delay);
    this.#timer.unref();
  }

  #enqueue(msg: PushResponse, stream: Stream): void {
    this.#pending = { msg, stream };
    if (!this.#applying) void this.#drain();
  }

  async #drain(): Promise<void> {
    this.#applying = true;
    try {
      while (this.#pending !== null) {
        const { msg, stream } = this.#pending;
        this.#pending = null;
        const outcome = await this.#applyOne(msg);
        // Answer on the stream the view came on, if it is still open (a new stream gets a fresh push).
        if (stream !== this.#stream) continue;
        if (outcome === null) stream.write(encodePushRequest({ ack: { version: msg.version, nonce: msg.nonce } }));
        else stream.write(encodePushRequest({ nack: { version: msg.version, nonce: msg.nonce, error_detail: outcome } }));
      }
    } finally {
      this.#applying = false;
    }
  }

  /** Apply one view: null on success, else the error detail for the NACK. */
  async #applyOne(msg: PushResponse): Promise<string | null> {
    const log = this.#opts.log;
    let error: string | null = null;
    let ir: IRSnapshot | null = null;
    try {
      ir = JSON.parse(Buffer.from(msg.view).toString('utf8')) as IRSnapshot;
    } catch (e) {
      error = `the view is not JSON: ${(e as Error).message}`;
    }
    if (ir !== null) error = checkView(ir, msg.version);
    if (error === null && ir !== null && msg.version === this.#version) {
      log.debug('view unchanged', { version: msg.version });
      return null;
    }
    if (error === null && ir !== null) {
      try {
        await this.#opts.apply(ir);
      } catch (e) {
        error = e instanceof Error ? e.message : String(e);
      }
    }
    if (error !== null) {
      this.#lastNack = { version: msg.version, error };
      log.error('view rejected; the last good view keeps serving', { version: msg.version, serving: this.#version, error });
      this.emit('rejected', msg.version, error);
      return error;
    }
    const first = this.#version === null;
    this.#version = msg.version;
    this.applied++;
    log.info('view applied', { version: msg.version });
    this.emit('applied', msg.version);
    if (first) this.emit('ready');
    return null;
  }
}

/** Why a received view cannot be served, or null. */
export function checkView(ir: IRSnapshot, version: string): string | null {
  if (ir === null || typeof ir !== 'object' || Array.isArray(ir)) return 'the view is not an object';
  if (ir.version !== version) return `the view's version ${String(ir.version)} is not the pushed version ${version}`;
  if (ir.sidecar === undefined || ir.sidecar === null || typeof ir.sidecar !== 'object') return 'the view has no sidecar tables (ir.sidecar)';
  for (const k of ['listeners', 'clusters', 'tcpListeners'] as const) if (!Array.isArray(ir[k])) return `the view's ${k} is not a list`;
  let problems: string[];
  try {
    problems = validateIR(ir);
  } catch (e) {
    return `the view is malformed: ${(e as Error).message}`;
  }
  if (problems.length > 0) return `invalid view: ${problems.slice(0, 10).join('; ')}${problems.length > 10 ? ` (and ${problems.length - 10} more)` : ''}`;
  return null;
}
