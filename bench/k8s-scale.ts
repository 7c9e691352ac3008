/**
 * Kubernetes scale: 5,000 Services (each with an EndpointSlice) and 10,000 Ingress paths in the fake
 * API server; the gateway (real source, Controller and in-process data plane) watches it. Measures:
 *   - the first sync (start until the first snapshot serves);
 *   - for single-object changes, the time from the change (the moment the API server emits the watch
 *     event) until a request through the gateway's port sees it: a new Ingress, and an EndpointSlice
 *     moving a Service to another backend.
 *
 *   npm run build && npm run bench:k8s            (SERVICES=5000 PATHS=10000 ROUNDS=20 to change)
 */
import { performance } from 'node:perf_hooks';
import { Controller } from '../src/control/controller.js';
import { InProcessDataPlane } from '../src/control/dataplane.js';
import { Logger } from '../src/lib/log.js';
import { DEFAULT_TRANSLATE_OPTIONS, type TranslateOptions } from '../src/translate/index.js';
import { wireKubernetes } from '../src/cli/kubernetes.js';
import { startEchoServer } from '../src/demo/echo-server.js';
import { FakeApiServer } from '../test/k8s/fake-api-server.js';
import { endpointSlice, ingress, service } from '../test/k8s/harness.js';
import { freePort } from '../test/helpers/gateway.js';
import { request } from '../test/support/http-client.js';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const SERVICES = Number(process.env.SERVICES ?? 5000);
const PATHS = Number(process.env.PATHS ?? 10_000);
const ROUNDS = Number(process.env.ROUNDS ?? 20);
const PATHS_PER_INGRESS = 10;
const NAMESPACES = 10;

type Obj = Record<string, unknown>;

/** Namespace of Ingress i. */
function ns(i: number): string {
  return `team-${i % NAMESPACES}`;
}

/** Namespace of Service s: the ten Services an Ingress uses (a block of ten) share its namespace. */
function svcNs(s: number): string {
  return ns(Math.floor(s / PATHS_PER_INGRESS));
}

/** One Ingress with PATHS_PER_INGRESS paths, each to a different Service of its namespace. */
function bigIngress(i: number): Obj {
  const base = ingress(ns(i), `ing-${i}`, `h${i}.bench`, 'x');
  const paths = Array.from({ length: PATHS_PER_INGRESS }, (_, j) => {
    const svc = (i * PATHS_PER_INGRESS + j) % SERVICES;
    return { path: `/p${j}`, pathType: 'Prefix', backend: { service: { name: `svc-${svc}`, port: { number: 80 } } } };
  });
  return { ...base, spec: { ingressClassName: 'meshgate', rules: [{ host: `h${i}.bench`, http: { paths } }] } };
}

async function until(port: number, host: string, urlPath: string, ok: (status: number, name: string | undefined) => boolean): Promise<void> {
  const deadline = performance.now() + 30_000;
  for (;;) {
    const r = await request(port, { host, path: urlPath, timeoutMs: 5000 });
    if (ok(r.status, r.json?.name)) return;
    if (performance.now() > deadline) throw new Error(`${host}${urlPath}: still ${r.status} ${r.json?.name ?? ''}`);
    await new Promise((res) => setTimeout(res, 2));
  }
}

function stats(ms: number[]): { p50: number; p95: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]);
  return { p50: at(0.5), p95: at(0.95), max: Math.round(s[s.length - 1]) };
}

async function main(): Promise<void> {
  const [a, b] = await Promise.all([startEchoServer({ name: 'a', host: '127.0.0.1', port: 0 }), startEchoServer({ name: 'b', host: '127.0.0.1', port: 0 })]);
  const fake = await FakeApiServer.start();
  const kubeconfig = fake.writeKubeconfig(path.join(mkdtempSync(path.join(os.tmpdir(), 'meshgate-bench-')), 'kubeconfig'));
  for (let i = 0; i < SERVICES; i++) {
    fake.apply(service(svcNs(i), `svc-${i}`, a.port));
    fake.apply(endpointSlice(svcNs(i), `svc-${i}`, a.port, '127.0.0.1'));
  }
  const ingresses = Math.ceil(PATHS / PATHS_PER_INGRESS);
  for (let i = 0; i < ingresses; i++) fake.apply(bigIngress(i));

  const httpPort = await freePort();
  const translate: TranslateOptions = { ...DEFAULT_TRANSLATE_OPTIONS, bindAddress: '127.0.0.1', httpPort, httpsPort: await freePort(), portMap: {} };
  const log = new Logger('error', {}, () => {});
  const wiring = wireKubernetes({ kubeconfig, watchNamespaces: null, namespace: 'meshgate-system', publish: null, secretLabelSelector: null }, translate, log, { debounceMs: 10 });
  const controller = new Controller({ source: wiring.source, translate, dataPlane: new InProcessDataPlane(), log, onDiagnostics: wiring.onDiagnostics });
  const t0 = performance.now();
  await controller.start();
  const firstSync = performance.now() - t0;
  const serving = controller.serving!;
  const routes = serving.listeners.flatMap((l) => l.filterChains.flatMap((c) => c.virtualHosts.flatMap((v) => v.routes))).length;
  await until(httpPort, 'h0.bench', '/p0', (s, n) => s === 200 && n === 'a');

  const newIngress: number[] = [];
  const sliceMove: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    // A new Ingress (one more host and path).
    const host = `new${r}.bench`;
    let t = performance.now();
    fake.apply({ ...ingress(ns(0), `new-${r}`, host, 'svc-0'), spec: { ingressClassName: 'meshgate', rules: [{ host, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'svc-0', port: { number: 80 } } } }] } }] } });
    await until(httpPort, host, '/', (s) => s === 200);
    newIngress.push(performance.now() - t);
    // An EndpointSlice moves svc-N to the other backend.
    const i = (r * 251) % SERVICES;
    const target = r % 2 === 0 ? b : a;
    const hostOf = Array.from({ length: ingresses }, (_, k) => k).find((k) => JSON.stringify(bigIngress(k)).includes(`"svc-${i}"`));
    if (hostOf === undefined) throw new Error(`no Ingress uses svc-${i}`);
    const paths = ((bigIngress(hostOf).spec as Obj).rules as Obj[])[0] as { http: { paths: { path: string; backend: { service: { name: string } } }[] } };
    const p = paths.http.paths.find((x) => x.backend.service.name === `svc-${i}`)!.path;
    t = performance.now();
    fake.apply(endpointSlice(svcNs(i), `svc-${i}`, target.port, '127.0.0.1'));
    await until(httpPort, `h${hostOf}.bench`, p, (s, n) => s === 200 && n === target.name);
    sliceMove.push(performance.now() - t);
  }
  const reloads = controller.reloads.slice(-ROUNDS * 2).map((x) => x.durationMs);
  const result = {
    services: SERVICES,
    endpointSlices: SERVICES,
    ingresses,
    ingressPaths: ingresses * PATHS_PER_INGRESS,
    routesInSnapshot: routes,
    clustersInSnapshot: serving.clusters.length,
    firstSyncMs: Math.round(firstSync),
    newIngressToTrafficMs: stats(newIngress),
    endpointSliceToTrafficMs: stats(sliceMove),
    reloadMs: stats(reloads),
    rssMiB: Math.round(process.memoryUsage().rss / 2 ** 20),
    node: process.version,
    cpus: os.cpus().length,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  await wiring.stop();
  await controller.stop(200);
  await fake.close();
  await Promise.all([a.close(), b.close()]);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
