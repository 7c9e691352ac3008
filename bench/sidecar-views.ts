/**
 * What the config push costs the control plane per config change: every connected proxy's view
 * computed and serialized (`node dist/bench/sidecar-views.js [services] [podsPerService]`, default
 * 500 Services and 2 pods each = 1000 proxies).
 *
 * The mesh: 10 namespaces; per Service one Deployment's pods (same labels and service account, an
 * `http` container port; `version` v1 or v2 by Service), a DestinationRule with v1/v2 subsets for every 5th Service
 * and a VirtualService with a header match and a 90/10 split for every 10th. Every pod is a proxy.
 *
 * Measured, on the same ResourceSet:
 *  - direct: `translateSidecar` + `JSON.stringify` for every proxy (the push before view caching);
 *  - cached: `SidecarViewCache.translate` for every proxy (one computation per group of proxies with
 *    the same namespace, service account, labels and ports), its serialized view included;
 *  - cached, unchanged config: the same again (what a reconnect storm or an unrelated change costs).
 * Also checks that both give the same view (after `personalize`) for a sample of proxies.
 */
import { performance } from 'node:perf_hooks';
import { parseFile } from '../src/providers/file/load.js';
import { checkObjects } from '../src/api/kinds.js';
import { ResourceSet } from '../src/resources/resource-set.js';
import type { KubeObject } from '../src/resources/types.js';
import type { Diagnostic } from '../src/lib/diagnostic.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../src/translate/index.js';
import { translateSidecar, type SidecarProxyMeta } from '../src/translate/sidecar/index.js';
import { SidecarViewCache } from '../src/translate/sidecar/view-cache.js';

const services = Number(process.argv[2] ?? 500);
const perService = Number(process.argv[3] ?? 2);
const NAMESPACES = 10;

function mesh(): { yaml: string; proxies: SidecarProxyMeta[] } {
  const docs: string[] = [];
  const proxies: SidecarProxyMeta[] = [];
  for (let i = 0; i < services; i++) {
    const ns = `ns-${i % NAMESPACES}`;
    const name = `svc-${i}`;
    const vip = `10.96.${Math.floor(i / 250)}.${(i % 250) + 1}`;
    docs.push(`apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: ${ns}}
spec:
  clusterIP: ${vip}
  selector: {app: ${name}}
  ports: [{name: http, port: 9080, targetPort: http}]`);
    for (let p = 0; p < perService; p++) {
      const n = i * perService + p;
      const ip = `10.${1 + Math.floor(n / 65000)}.${Math.floor((n % 65000) / 250)}.${(n % 250) + 1}`;
      const pod = `${name}-7d9f-${p}`;
      docs.push(`apiVersion: v1
kind: Pod
metadata:
  name: ${pod}
  namespace: ${ns}
  labels: {app: ${name}, version: v${(i % 2) + 1}, security.istio.io/tlsMode: istio, pod-template-hash: 7d9f}
spec: {serviceAccountName: ${name}, containers: [{name: app, image: x, ports: [{name: http, containerPort: 9080}]}]}
status: {phase: Running, podIP: ${ip}}`);
      proxies.push({ namespace: ns, serviceAccount: name, podName: pod, podIps: [ip], trustDomain: 'cluster.local' });
    }
    if (i % 5 === 0) {
      docs.push(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ${name}, namespace: ${ns}}
spec:
  host: ${name}
  trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: 100}}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]`);
    }
    if (i % 10 === 0) {
      docs.push(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ${name}, namespace: ${ns}}
spec:
  hosts: [${name}]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}]
    route: [{destination: {host: ${name}, subset: v2}}]
  - route:
    - {destination: {host: ${name}, subset: v1}, weight: 90}
    - {destination: {host: ${name}, subset: v2}, weight: 10}`);
    }
  }
  return { yaml: docs.join('\n---\n'), proxies };
}

function resources(yaml: string): ResourceSet {
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  parseFile('mesh.yaml', yaml, objects, diagnostics);
  const checked = checkObjects(objects);
  const errors = [...diagnostics, ...checked.diagnostics].filter((d) => d.severity === 'error');
  if (errors.length > 0) throw new Error(`generated config has errors: ${errors[0].message}`);
  return new ResourceSet(checked.accepted);
}

function main(): void {
  const { yaml, proxies } = mesh();
  const rs = resources(yaml);
  const options = { ...DEFAULT_TRANSLATE_OPTIONS };
  // Warm-up (JIT) on a few proxies, both ways.
  for (const p of proxies.slice(0, 5)) JSON.stringify(translateSidecar(rs, p, options).ir);
  new SidecarViewCache().translate(rs, proxies[0], options);

  // Direct: a sample (every proxy would take minutes at this size), extrapolated.
  const sample = proxies.filter((_, i) => i % Math.max(1, Math.floor(proxies.length / 40)) === 0);
  let bytes = 0;
  let t0 = performance.now();
  for (const p of sample) bytes += Buffer.byteLength(JSON.stringify(translateSidecar(rs, p, options).ir));
  const directPer = (performance.now() - t0) / sample.length;

  const cache = new SidecarViewCache();
  t0 = performance.now();
  for (const p of proxies) cache.translate(rs, p, options).json;
  const cachedAll = performance.now() - t0;
  t0 = performance.now();
  for (const p of proxies) cache.translate(rs, p, options).json;
  const unchangedAll = performance.now() - t0;

  // Same view either way (version aside: the cache versions the shared part once).
  let same = 0;
  for (const p of sample) {
    const direct = translateSidecar(rs, p, options).ir;
    const cached = cache.translate(rs, p, options);
    const strip = (ir: object) => JSON.stringify({ ...ir, version: '' });
    if (strip(direct) === strip(cached.ir) && cached.json.toString() === JSON.stringify(cached.ir)) same++;
  }
  const out = {
    services,
    proxies: proxies.length,
    groups: cache.stats.computed,
    viewBytesAvg: Math.round(bytes / sample.length),
    directMsPerProxy: Number(directPer.toFixed(2)),
    directMsAllExtrapolated: Math.round(directPer * proxies.length),
    cachedMsAll: Math.round(cachedAll),
    cachedMsPerProxy: Number((cachedAll / proxies.length).toFixed(3)),
    unchangedMsAll: Math.round(unchangedAll),
    sampleIdentical: `${same}/${sample.length}`,
  };
  console.log(JSON.stringify(out, null, 2));
  if (same !== sample.length) process.exitCode = 1;
}

main();
