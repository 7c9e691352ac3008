/**
 * The Kubernetes scenarios' harness. The same scenarios run against the fake API server (CI) or a
 * real cluster (`test/k8s/real-cluster.sh`, when MESHGATE_K8S_REAL=1 and KUBECONFIG are set): every
 * change is made through the API with plain REST calls, the gateway runs in this process with the real
 * Controller and an InProcessDataPlane, and requests go through its HTTP port to real echo backends.
 */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller } from '../../src/control/controller.js';
import { InProcessDataPlane } from '../../src/control/dataplane.js';
import { Logger } from '../../src/lib/log.js';
import { DEFAULT_TRANSLATE_OPTIONS, type TranslateOptions } from '../../src/translate/index.js';
import { wireKubernetes, type KubernetesRunOptions, type KubernetesTimings, type KubernetesWiring } from '../../src/cli/kubernetes.js';
import { ApiClient } from '../../src/providers/kubernetes/api-client.js';
import { startEchoServer, type EchoServer } from '../../src/demo/echo-server.js';
import { freePort } from '../helpers/gateway.js';
import { request, type Reply } from '../support/http-client.js';
import { FakeApiServer, type FakeApiServerOptions } from './fake-api-server.js';

type Obj = Record<string, unknown>;

/** Real-cluster mode: the scenarios talk to $KUBECONFIG's cluster. */
export const REAL = process.env.MESHGATE_K8S_REAL === '1';

/** Where backends listen: loopback for the fake; for a real cluster, an address its API server accepts in an EndpointSlice. */
export const BACKEND_IP = process.env.MESHGATE_TEST_BACKEND_IP ?? (REAL ? firstExternalIPv4() : '127.0.0.1');

/** Short timings so tests see handovers and rediscovery in seconds. */
export const FAST: KubernetesTimings = { leaseDurationMs: 1500, renewDeadlineMs: 1000, retryPeriodMs: 200, debounceMs: 20, rediscoverMs: 200, backoff: { initialMs: 50, maxMs: 500 } };

export interface Cluster {
  client: ApiClient;
  kubeconfig: string;
  /** The fake server; null against a real cluster. */
  fake: FakeApiServer | null;
  /** Namespace the scenario owns (created, deleted at the end). */
  namespace: string;
  apply(o: Obj): Promise<Obj>;
  remove(o: Obj): Promise<void>;
  get(o: Obj): Promise<Obj | null>;
  close(): Promise<void>;
}

export async function startCluster(opts: FakeApiServerOptions = {}): Promise<Cluster> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-k8s-'));
  let fake: FakeApiServer | null = null;
  let kubeconfig: string;
  if (REAL) {
    const kc = process.env.KUBECONFIG;
    if (!kc) throw new Error('MESHGATE_K8S_REAL=1 needs KUBECONFIG');
    kubeconfig = kc.split(path.delimiter)[0];
  } else {
    fake = await FakeApiServer.start(opts);
    kubeconfig = fake.writeKubeconfig(path.join(dir, 'kubeconfig'));
  }
  const client = ApiClient.load(kubeconfig);
  const namespace = `mg-test-${Math.random().toString(36).slice(2, 8)}`;
  const cluster: Cluster = {
    client,
    kubeconfig,
    fake,
    namespace,
    apply: (o) => applyObject(client, o),
    remove: async (o) => {
      const res = await client.request('DELETE', objectPath(o));
      if (res.status !== 200 && res.status !== 202 && res.status !== 404) throw new Error(`DELETE ${objectPath(o)}: ${res.status}`);
    },
    get: async (o) => {
      const res = await client.request('GET', objectPath(o));
      return res.status === 200 ? (res.body as Obj) : null;
    },
    close: async () => {
      if (REAL) await client.request('DELETE', `/api/v1/namespaces/${namespace}`);
      await fake?.close();
    },
  };
  await cluster.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace } });
  return cluster;
}

/** Create, or update over the current resourceVersion. */
async function applyObject(client: ApiClient, o: Obj): Promise<Obj> {
  const p = objectPath(o);
  const current = await client.request('GET', p);
  if (current.status === 404) return (await client.expect('POST', collectionOf(o), o)) as Obj;
  const meta = (current.body as { metadata: Obj }).metadata;
  return (await client.expect('PUT', p, { ...o, metadata: { ...(o.metadata as Obj), resourceVersion: meta.resourceVersion } })) as Obj;
}

const PLURAL: Record<string, string> = { Ingress: 'ingresses', Endpoints: 'endpoints', AuthorizationPolicy: 'authorizationpolicies', IngressClass: 'ingressclasses', ServiceEntry: 'serviceentries', Namespace: 'namespaces', GatewayClass: 'gatewayclasses', BackendTLSPolicy: 'backendtlspolicies' };
const CLUSTER_SCOPED = new Set(['Namespace', 'IngressClass', 'GatewayClass']);

function collectionOf(o: Obj): string {
  const apiVersion = String(o.apiVersion);
  const kind = String(o.kind);
  const base = apiVersion.includes('/') ? `/apis/${apiVersion}` : `/api/${apiVersion}`;
  const ns = CLUSTER_SCOPED.has(kind) ? '' : `/namespaces/${String((o.metadata as Obj).namespace ?? 'default')}`;
  return `${base}${ns}/${PLURAL[kind] ?? `${kind.toLowerCase()}s`}`;
}

export function objectPath(o: Obj): string {
  return `${collectionOf(o)}/${String((o.metadata as Obj).name)}`;
}

export interface Gateway {
  wiring: KubernetesWiring;
  controller: Controller;
  httpPort: number;
  get(host: string, urlPath?: string): Promise<Reply>;
  stop(): Promise<void>;
}

export interface GatewayOptions {
  k8s?: Partial<KubernetesRunOptions>;
  timings?: KubernetesTimings;
  translate?: Partial<TranslateOptions>;
}

/** The gateway, in process: the real wiring, Controller and data plane, listening on 127.0.0.1. */
export async function startGateway(cluster: Cluster, opts: GatewayOptions = {}): Promise<Gateway> {
  const httpPort = await freePort();
  const httpsPort = await freePort();
  const translate: TranslateOptions = { ...DEFAULT_TRANSLATE_OPTIONS, bindAddress: '127.0.0.1', httpPort, httpsPort, portMap: { '80': httpPort, '443': httpsPort }, ...opts.translate };
  const level = process.env.MESHGATE_TEST_LOG as 'debug' | undefined;
  const log = level ? new Logger(level) : new Logger('error', {}, () => {});
  const k8s: KubernetesRunOptions = { kubeconfig: cluster.kubeconfig, watchNamespaces: [cluster.namespace], namespace: cluster.namespace, publish: null, secretLabelSelector: null, ...opts.k8s };
  const wiring = wireKubernetes(k8s, translate, log, { ...FAST, ...opts.timings });
  const controller = new Controller({ source: wiring.source, translate, dataPlane: new InProcessDataPlane(), log, onDiagnostics: wiring.onDiagnostics, onGatewayApiStatus: wiring.onGatewayApiStatus });
  await controller.start();
  wiring.start();
  return {
    wiring,
    controller,
    httpPort,
    get: (host, urlPath = '/') => request(httpPort, { host, path: urlPath, timeoutMs: 5000 }),
    stop: async () => {
      await wiring.stop();
      await controller.stop(500);
    },
  };
}

/** Poll `check` until it returns a truthy value; fail with `what` and the last value seen. */
export async function eventually<T>(what: string, check: () => Promise<T | false | undefined | null> | T | false | undefined | null, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      last = await check();
      if (last) return last as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Wait until a request for `host` is answered by the echo backend `name` (or has `status`). */
export function served(gw: Gateway, host: string, want: { name?: string; status?: number; path?: string }, timeoutMs?: number): Promise<Reply> {
  return eventually<Reply>(
    `${host}${want.path ?? '/'} -> ${want.name ?? want.status}`,
    async (): Promise<Reply | false> => {
      const r = await gw.get(host, want.path ?? '/');
      if (want.name !== undefined) return r.status === 200 && r.json?.name === want.name ? r : false;
      return r.status === want.status ? r : false;
    },
    timeoutMs,
  );
}

export async function echo(name: string): Promise<EchoServer> {
  return startEchoServer({ name, host: BACKEND_IP, port: 0 });
}

// ---- object builders ---------------------------------------------------------------------------

export function service(ns: string, name: string, targetPort: number, selector?: Record<string, string>): Obj {
  return { apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: ns }, spec: { ports: [{ name: 'http', port: 80, targetPort, protocol: 'TCP' }], ...(selector ? { selector } : {}) } };
}

export function endpointSlice(ns: string, svc: string, port: number, ip = BACKEND_IP, name = `${svc}-1`): Obj {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: ns, labels: { 'kubernetes.io/service-name': svc } },
    addressType: 'IPv4',
    endpoints: [{ addresses: [ip], conditions: { ready: true } }],
    ports: [{ name: 'http', port, protocol: 'TCP' }],
  };
}

export function ingress(ns: string, name: string, host: string, svc: string, extra: { className?: string; tlsSecret?: string; path?: string } = {}): Obj {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name, namespace: ns },
    spec: {
      ingressClassName: extra.className ?? 'meshgate',
      ...(extra.tlsSecret ? { tls: [{ hosts: [host], secretName: extra.tlsSecret }] } : {}),
      rules: [{ host, http: { paths: [{ path: extra.path ?? '/', pathType: 'Prefix', backend: { service: { name: svc, port: { number: 80 } } } }] } }],
    },
  };
}

function firstExternalIPv4(): string {
  for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}
