/**
 * `npm run lab` (root required): the service mesh on one machine, in network namespaces, then torn
 * down. The same lab as mesh-e2e-lab.test.ts (see mesh-e2e-lab.ts for the topology and the YAML the
 * control plane reads): `meshgate control`, `meshgate token`, `meshgate capture` and
 * `meshgate sidecar` in meshed pods (client, reviews v1 and v2, an intruder with another service
 * account) and one pod outside the mesh. It prints what it shows: the mTLS handshake as seen on the
 * wire and by the app, the 90/10 canary split, a header route, the denied calls, the metrics of both
 * ends, proxy-status and the mesh graph. Everything is removed at the end, on Ctrl-C and on errors.
 *
 *   MESH_LAB_HOLD=1 npm run lab   keeps the lab up until Ctrl-C (the commands to look around are printed).
 */
import { labNamespacesOf, labSkipReason } from './lab.js';
import { CP_IP, installWireCounters, MAIN, meshConfigYaml, metricLines, pod, REVIEWS_VIP, startMeshLab, TD, wireCounters, WIRE_RULES, type MeshLab } from './mesh-e2e-lab.js';

const out = (line = '') => process.stdout.write(`${line}\n`);
const head = (title: string) => out(`\n== ${title}`);

const why = labSkipReason(['iptables']);
if (why !== undefined) {
  process.stderr.write(`npm run lab: ${why}\n`);
  process.exit(2);
}

let lab: MeshLab | null = null;
// The Lab removes its namespaces on exit and on SIGINT/SIGTERM; the temporary directory goes too.
process.on('exit', () => lab?.close());

const serverOf = (body: string | undefined) => {
  try {
    return (JSON.parse(body ?? '') as { server: string }).server;
  } catch {
    return '?';
  }
};

async function main(): Promise<void> {
  const t0 = Date.now();
  head('building the lab (network namespaces on a bridge; nothing in the root namespace)');
  const m = (lab = await startMeshLab({ say: (l) => out(`  ${l}`) }));
  out(`  every sidecar ready (workload certificate + pushed view) after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  out(`  config: ${m.configDir} (${['namespaces', 'pods', 'services', 'routing', 'security', 'mesh'].map((f) => `${f}.yaml`).join(', ')})`);

  head('mTLS: client -> reviews.bookinfo:9080 (VIP ' + REVIEWS_VIP + ') through both sidecars');
  installWireCounters(m.lab, 'v1', 9080);
  const before = wireCounters(m.lab, 'v1');
  let r = await m.get('client', REVIEWS_VIP, 9080, '/productpage');
  for (let i = 0; i < 20 && serverOf(r.body) !== 'reviews-v1'; i++) r = await m.get('client', REVIEWS_VIP, 9080, '/productpage');
  const seen = JSON.parse(r.body ?? '{}') as { server?: string; remote?: string; headers?: Record<string, string> };
  const wire = wireCounters(m.lab, 'v1').map((n, i) => n - before[i]);
  out(`  HTTP ${r.status} from ${seen.server}; the app saw the call from ${seen.remote} (the sidecar, as Istio forwards)`);
  out(`  x-forwarded-client-cert at the app: ${seen.headers?.['x-forwarded-client-cert'] ?? '(none)'}`);
  out('  packets arriving at v1:9080 (iptables string-match counters on its eth0):');
  WIRE_RULES.forEach((w, i) => out(`    ${String(wire[i]).padStart(3)}  ${w.name}`));
  out(`  -> the ClientHello carries Istio's SNI and ALPN, and no plaintext HTTP crossed the wire`);

  head('canary: VirtualService 90 % v1 / 10 % v2 (DestinationRule subsets by version label)');
  const N = 200;
  const split = await m.getMany('client', REVIEWS_VIP, 9080, '/reviews', N);
  const count = (name: string) => split.filter((x) => serverOf(x.body) === name).length;
  out(`  ${N} requests: v1 ${count('reviews-v1')}, v2 ${count('reviews-v2')}, other ${N - count('reviews-v1') - count('reviews-v2')}`);
  const canary = await m.getMany('client', REVIEWS_VIP, 9080, '/reviews', 10, { 'x-canary': 'v2' });
  out(`  with header x-canary: v2 -> ${[...new Set(canary.map((x) => serverOf(x.body)))].join(', ')} (10 of 10)`);

  head('denied calls');
  const denied = await m.get('other', REVIEWS_VIP, 9080, '/reviews');
  out(`  other/intruder (meshed, not allowed by the AuthorizationPolicy): HTTP ${denied.status} "${denied.body}"`);
  const strict = await m.get('outside', pod('v1').ip, 9080, '/reviews', {}, 3000);
  out(`  legacy pod outside the mesh, plaintext to ${pod('v1').ip}:9080 (PeerAuthentication STRICT): ${strict.status !== undefined ? `HTTP ${strict.status}` : `no HTTP answer (${strict.error})`}`);

  head('a config change: routing.yaml edited to 50/50 (the control plane watches --config)');
  const t1 = Date.now();
  m.writeConfig({ 'routing.yaml': meshConfigYaml({ v2Weight: 50 })['routing.yaml'] });
  // Served when the client's sidecar runs the new version (proxy-status) -- bounded.
  const before50 = (await m.get('cp', CP_IP, 15014, '/debug/proxy-status')).body ?? '';
  const clientVersion = (body: string) => (JSON.parse(body) as { proxies: { name: string; ackedVersion: string | null }[] }).proxies.find((p) => p.name === 'client-0.frontend')?.ackedVersion;
  const old = clientVersion(before50);
  let acked = old;
  while (acked === old && Date.now() - t1 < 10_000) {
    await new Promise((r) => setTimeout(r, 20));
    acked = clientVersion((await m.get('cp', CP_IP, 15014, '/debug/proxy-status')).body ?? '{"proxies":[]}');
  }
  out(`  the client's sidecar runs the new view ${acked !== old ? `${Date.now() - t1} ms after the edit` : 'NOT within 10 s'}`);
  const half = await m.getMany('client', REVIEWS_VIP, 9080, '/reviews', 100);
  out(`  100 requests: v1 ${half.filter((x) => serverOf(x.body) === 'reviews-v1').length}, v2 ${half.filter((x) => serverOf(x.body) === 'reviews-v2').length}`);

  head('metrics (Prometheus /stats/prometheus on :15020 of each pod)');
  const client = (await m.get('outside', pod('client').ip, 15020, '/stats/prometheus')).body ?? '';
  const server = (await m.get('outside', pod('v1').ip, 15020, '/stats/prometheus')).body ?? '';
  const short = (l: string) => l.replace(/,?(source_canonical_\w+|source_cluster|destination_canonical_\w+|destination_cluster|destination_service_\w+|grpc_response_status|source_app|source_version|destination_app|destination_version|request_protocol)="[^"]*"/g, '');
  for (const l of metricLines(client, 'istio_requests_total{', 'reporter="source"', 'response_code="200"').slice(0, 1)) out(`  client: ${short(l)}`);
  for (const l of metricLines(server, 'istio_requests_total{', 'reporter="destination"', `source_principal="spiffe://${TD}/ns/frontend/sa/client"`).slice(0, 1)) out(`  v1:     ${short(l)}`);

  head('meshgate proxy-status');
  const ps = await m.lab.run('cp', [process.execPath, MAIN, 'proxy-status', '--admin', `${CP_IP}:15014`], {}, 20_000);
  for (const l of ps.stdout.trimEnd().split('\n')) out(`  ${l}`);

  head(`the mesh graph, as the control plane's dashboard draws it (http://${CP_IP}:15014/dashboard, JSON at /mesh/graph)`);
  for (const l of await meshGraphLines(m)) out(`  ${l}`);

  if (process.env.MESH_LAB_HOLD === '1') {
    head('the lab stays up until Ctrl-C; look around, e.g.:');
    out(`  ip netns exec ${m.lab.ns('client')} iptables-save -t mangle`);
    out(`  ip netns exec ${m.lab.ns('outside')} curl -s http://${pod('client').ip}:15020/stats/prometheus | grep istio_requests_total`);
    out(`  edit ${m.configDir}/routing.yaml (the sidecars get the change within a second)`);
    out(`  ip netns exec ${m.lab.ns('cp')} curl -s http://${CP_IP}:15014/mesh/graph`);
    await new Promise<void>((resolve) => process.once('SIGINT', resolve));
  }
  head('tearing down');
  m.close();
  lab = null;
  const left = labNamespacesOf(m.lab.id);
  out(`  done in ${((Date.now() - t0) / 1000).toFixed(1)} s; ${left.length === 0 ? 'no lab namespace left' : `LEFT BEHIND: ${left.join(', ')}`}`);
}

/** One line per edge of `/mesh/graph`, once the control plane has two scrapes of the sidecars (bounded). */
async function meshGraphLines(m: MeshLab): Promise<string[]> {
  interface Edge { source: string; target: string; protocol: string; mtls: string; http: { rate: number | null; errorRatio: number; p99Ms: number | null } | null; tcp: { sentBytesRate: number | null; receivedBytesRate: number | null } | null }
  const name = (id: string) => (id === 'unknown' ? 'unknown' : id.split('/').slice(1).join('/'));
  let g: { basis: string; edges: Edge[] } = { basis: 'cumulative', edges: [] };
  for (const deadline = Date.now() + 5000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 500))) {
    await m.get('client', REVIEWS_VIP, 9080, '/graph');
    const r = await m.get('cp', CP_IP, 15014, '/mesh/graph');
    if (r.status === 200) g = JSON.parse(r.body ?? '{}') as typeof g;
    if (g.basis === 'window' && g.edges.length > 0) break;
  }
  return g.edges.map((e) => {
    const nums = e.http !== null
      ? `${(e.http.rate ?? 0).toFixed(1)} req/s  ${(e.http.errorRatio * 100).toFixed(1)} % errors  p99 ${e.http.p99Ms === null ? '-' : `${e.http.p99Ms.toFixed(1)} ms`}`
      : `${(((e.tcp?.sentBytesRate ?? 0) + (e.tcp?.receivedBytesRate ?? 0)) / 1024).toFixed(1)} kB/s`;
    return `${name(e.source).padEnd(20)} -> ${name(e.target).padEnd(28)} ${e.protocol.padEnd(5)} ${nums}${e.mtls === 'all' ? '  mTLS' : e.mtls === 'some' ? '  partly mTLS' : ''}`;
  });
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`npm run lab failed: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  },
);
