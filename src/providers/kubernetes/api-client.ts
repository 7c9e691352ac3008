/**
 * The one door to the API server. Credentials come from @kubernetes/client-node's KubeConfig (a
 * kubeconfig file, or the pod's service account in a cluster); watches stream through its `Watch`.
 * Everything else is a plain JSON request, so objects stay the plain data the pipeline reads (the
 * generated typed clients turn timestamps into Date objects and drop unknown fields).
 */
import http from 'node:http';
import https from 'node:https';
import { KubeConfig, Watch } from '@kubernetes/client-node';

export interface ApiResponse {
  status: number;
  /** Parsed JSON body; null when the body is empty or not JSON. */
  body: unknown;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';

export interface WatchHandle {
  /** Stop the watch; `onDone` is called once, with null or an abort error. */
  abort(): void;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Requests a single call may take before it is abandoned (list pages, writes). */
const REQUEST_TIMEOUT_MS = 30_000;

export class ApiClient {
  readonly #kc: KubeConfig;
  readonly #watch: Watch;
  readonly server: string;

  constructor(kc: KubeConfig) {
    const cluster = kc.getCurrentCluster();
    if (!cluster) throw new Error('kubeconfig has no current cluster');
    this.#kc = kc;
    this.#watch = new Watch(kc);
    this.server = cluster.server.replace(/\/+$/, '');
  }

  /** From `--kubeconfig PATH`; else in-cluster service account; else $KUBECONFIG or ~/.kube/config. */
  static load(kubeconfig: string | null): ApiClient {
    const kc = new KubeConfig();
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromDefault();
    return new ApiClient(kc);
  }

  /** One JSON request. Non-2xx answers are returned, not thrown; network errors throw. */
  async request(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiResponse> {
    const url = new URL(this.server + path);
    const opts: https.RequestOptions = {
      method,
      hostname: url.hostname.replace(/^\[|\]$/g, ''),
      port: url.port,
      path: url.pathname + url.search,
      headers: { accept: 'application/json' },
      timeout: REQUEST_TIMEOUT_MS,
    };
    await this.#kc.applyToHTTPSOptions(opts);
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    if (payload) opts.headers = { ...opts.headers, 'content-type': contentType, 'content-length': String(payload.length) };
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = transport.request(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: parseJson(Buffer.concat(chunks).toString('utf8')) }));
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  /** A request whose answer must be 2xx; anything else throws an ApiError with the status. */
  async expect(method: string, path: string, body?: unknown, contentType?: string): Promise<unknown> {
    const res = await this.request(method, path, body, contentType);
    if (res.status < 200 || res.status > 299) throw new ApiError(res.status, `${method} ${path}: ${res.status} ${statusMessage(res.body)}`);
    return res.body;
  }

  /**
   * Watch `path` (a collection). `onEvent` gets each event in order; `onDone` is called exactly once
   * when the stream ends, fails, or is aborted (an HTTP error carries `statusCode`).
   */
  watch(path: string, query: Record<string, string>, onEvent: (type: WatchEventType, object: unknown) => void, onDone: (err: unknown) => void): WatchHandle {
    let controller: AbortController | null = null;
    let aborted = false;
    let done = false;
    const finish = (err: unknown) => {
      if (done) return;
      done = true;
      onDone(err);
    };
    this.#watch.watch(path, query, (type: string, object: unknown) => {
      if (!aborted) onEvent(type as WatchEventType, object);
    }, finish).then(
      (c) => {
        controller = c;
        if (aborted) c.abort();
      },
      finish,
    );
    return {
      abort: () => {
        aborted = true;
        controller?.abort();
        finish(null);
      },
    };
  }
}

function parseJson(text: string): unknown {
  if (text === '') return null;
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

/** The `message` of a metav1.Status body, else ''. */
export function statusMessage(body: unknown): string {
  return typeof body === 'object' && body !== null && typeof (body as { message?: unknown }).message === 'string' ? (body as { message: string }).message : '';
}
