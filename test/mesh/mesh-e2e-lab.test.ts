/**
 * The whole mesh end to end, as a user runs it (issue 16, reference mesh.md §6): `meshgate control`
 * reads real Kubernetes and Istio objects from a YAML directory (mesh-e2e-lab.ts), every meshed pod
 * runs `meshgate capture` and `meshgate sidecar --control ...` with a token from `meshgate token`,
 * and no view is written by hand: each sidecar gets its own, computed by translateSidecar and pushed.
 *
 * Proves: mTLS on the wire (iptables string-match counters: Istio SNI and ALPN in the ClientHello, no
 * plaintext request line), STRICT refusing the non-meshed pod, 403 `RBAC: access denied` for another
 * service account, the 90/10 VirtualService split, header routing, retries and a timeout, opaque TCP
 * and h2c through both sidecars, an app's own HTTPS wrapped in Istio mTLS (port `https`, STRICT, policy by
 * principal), metrics at both ends, certificate rotation under traffic (20 s
 * certificates), the app probes `meshgate inject` rewrites answered on 15020, proxy-status, edited
 * YAML reaching the sidecars in < 1 s (a new route, REGISTRY_ONLY, STRICT -> PERMISSIVE -> STRICT),
 * the last good view with the control plane down and the reconnection after it returns, and
 * `capture --clean` leaving nothing. About 30-45 s.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { labRequired, labSkipReason } from './lab.js';
import { CLIENT } from './lab-programs.js';
import path from 'node:path';
import { CP_IP, ECHO_VIP, GRPC_VIP, H2C_CLIENT, HTTPS_CLIENT, TLS_PEEK, installTlsWireCounters, installWireCounters, MAIN, meshConfigYaml, metricLines, pod, REVIEWS_VIP, SECURE_HOST, SECURE_VIP, startMeshLab, TD, tlsWireCounters, wireCounters, type MeshLab } from './mesh-e2e-lab.js';

const skip = labSkipReason(['iptables']);

if (skip && labRequired()) {
  test('mesh end-to-end lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

const serverOf = (body: string | undefined): string => {
  try {
    return (JSON.parse(body ?? '') as { server: string }).server;
  } catch {
    return `?${body?.slice(0, 80)}`;
  }
};

describe('the mesh end to end: control plane, capture and sidecars from real Kubernetes/Istio objects', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let m: MeshLab;

  before(async () => {
    // Workload certificates live 20 s: every sidecar renews at ~10 s, while the tests run.
    m = await startMeshLab({ certTtl: '20s' });
    installWireCounters(m.lab, 'v1', 9080);
    for (const p of ['v1', 'v2']) installTlsWireCounters(m.lab, p, 9443, SECURE_HOST);
  });

  after(() => m?.close());

  test('mTLS on the wire: Istio SNI and ALPN in the ClientHello, no plaintext request; the app sees 127.0.0.6 and the caller SPIFFE ID', async () => {
    const before = wireCounters(m.lab, 'v1');
    assert.equal(before.length, 3);
    // x-canary: v2 goes to v2; the 90/10 default is random: call until v1 answers (bounded).
    let r = await m.get('client', REVIEWS_VIP, 9080, '/wire-marker');
    for (let i = 0; i < 20 && serverOf(r.body) !== 'reviews-v1'; i++) r = await m.get('client', REVIEWS_VIP, 9080, '/wire-marker');
    assert.equal(r.status, 200, `${JSON.stringify(r)}\nclient: ${m.log('client')}\nv1: ${m.log('v1')}`);
    const body = JSON.parse(r.body!) as { server: string; remote: string; headers: Record<string, string> };
    assert.equal(body.server, 'reviews-v1');
    assert.equal(body.remote, '127.0.0.6');
    assert.match(body.headers['x-forwarded-client-cert'] ?? '', new RegExp(`By=spiffe://${TD}/ns/bookinfo/sa/reviews;Hash=[0-9a-f]{64};Subject="";URI=spiffe://${TD}/ns/frontend/sa/client`));
    const after = wireCounters(m.lab, 'v1');
    assert.equal(after[0] - before[0], 0, 'a plaintext HTTP request line crossed the wire to v1:9080');
    assert.ok(after[1] - before[1] >= 1, 'no ClientHello offering istio-http/1.1 reached v1:9080');
    assert.ok(after[2] - before[2] >= 1, 'no ClientHello with SNI outbound_.9080_.v1_.reviews.bookinfo.svc.cluster.local');
  });

  test('PeerAuthentication STRICT: the non-meshed pod gets no HTTP answer and the app never sees it', async () => {
    const before = wireCounters(m.lab, 'v1');
    const r = await m.get('outside', pod('v1').ip, 9080, '/strict-marker', {}, 3000);
    assert.equal(r.status, undefined, JSON.stringify(r));
    assert.ok(r.error, JSON.stringify(r));
    assert.ok(wireCounters(m.lab, 'v1')[0] - before[0] >= 1, 'the control: the plaintext request did cross the wire');
    assert.ok(!m.apps.get('v1')!.stdout.some((l) => l.includes('/strict-marker')), 'the app saw the refused request');
  });

  test('AuthorizationPolicy: another service account (other/intruder) gets 403 RBAC: access denied', async () => {
    const r = await m.get('other', REVIEWS_VIP, 9080, '/denied');
    assert.equal(r.status, 403, `${JSON.stringify(r)}\nother: ${m.log('other')}`);
    assert.equal(r.body, 'RBAC: access denied');
  });

  test('VirtualService: 90/10 split over v1/v2 subsets (400 requests), and x-canary: v2 always to v2', async (t) => {
    const N = 400;
    const results = await m.getMany('client', REVIEWS_VIP, 9080, '/split', N, {}, 5000);
    const by = new Map<string, number>();
    for (const r of results) by.set(r.status === 200 ? serverOf(r.body) : `status ${r.status ?? r.error}`, (by.get(r.status === 200 ? serverOf(r.body) : `status ${r.status ?? r.error}`) ?? 0) + 1);
    t.diagnostic(`split: ${JSON.stringify(Object.fromEntries(by))}`);
    assert.equal((by.get('reviews-v1') ?? 0) + (by.get('reviews-v2') ?? 0), N, JSON.stringify(Object.fromEntries(by)));
    // Binomial(400, 0.1): mean 40, sigma 6; the band is about +-4 sigma.
    const v2 = by.get('reviews-v2') ?? 0;
    assert.ok(v2 >= 16 && v2 <= 64, `v2 got ${v2} of ${N}`);
    const canary = await m.getMany('client', REVIEWS_VIP, 9080, '/canary', 20, { 'x-canary': 'v2' });
    assert.deepEqual([...new Set(canary.map((r) => serverOf(r.body)))], ['reviews-v2']);
  });

  test('VirtualService retries (5xx, the app fails once) and timeout (500 ms against a 3 s answer: 504 UT)', async () => {
    const r = await m.get('client', REVIEWS_VIP, 9080, '/fail-once/e2e');
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(m.apps.get('v1')!.stdout.filter((l) => l.includes('"seen":"/fail-once/e2e"')).length, 2, 'the app saw the request twice (one retry)');
    const t0 = Date.now();
    const slow = await m.get('client', REVIEWS_VIP, 9080, '/slow', {}, 5000);
    const ms = Date.now() - t0;
    assert.equal(slow.status, 504, JSON.stringify(slow));
    assert.match(slow.body ?? '', /upstream request timeout/);
    assert.ok(ms < 2500, `answered after ${ms} ms`);
  });

  test('opaque TCP through both sidecars (mTLS between them), by service VIP', async () => {
    const r = await m.lab.run('client', [process.execPath, '-e', CLIENT], { TARGET: `${ECHO_VIP}:9000` }, 20_000);
    const reply = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { server?: string; got?: string; remote?: string; error?: string };
    assert.equal(reply.got, 'ping\n', `${r.stdout}\nclient: ${m.log('client')}`);
    assert.match(reply.server ?? '', /^echo-v[12]$/);
    assert.equal(reply.remote, '127.0.0.6');
  });

  test('HTTPS (the app\'s own TLS, port `https`) through both sidecars under STRICT: Istio mTLS around it on the wire, the app gets the client\'s TLS; AuthorizationPolicy by principal applies', async () => {
    const https = (from: string, target: string) => m.lab.run(from, [process.execPath, '-e', HTTPS_CLIENT], { TARGET: target, SNI: SECURE_HOST, CA: path.join(m.dir, 'secure.crt') }, 20_000);
    const sum = (): number[] => ['v1', 'v2'].map((p) => tlsWireCounters(m.lab, p)).reduce((a, b) => a.map((x, i) => x + b[i]));
    const before = sum();
    const r = await https('client', `${SECURE_VIP}:9443`);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; body?: string; error?: string };
    assert.equal(out.status, 200, `${r.stdout} ${r.stderr}\nclient: ${m.log('client')}\nv1: ${m.log('v1')}`);
    const b = JSON.parse(out.body!) as { server: string; sni: string; remote: string };
    assert.match(b.server, /^secure-v[12]$/);
    assert.equal(b.sni, SECURE_HOST);
    assert.equal(b.remote, '127.0.0.6');
    const after = sum();
    assert.ok(after[0] - before[0] >= 1, `no ClientHello with SNI outbound_.9443_._.${SECURE_HOST} reached the reviews pods`);
    assert.ok(after[1] - before[1] >= 1, 'no ClientHello offering istio-peer-exchange reached the reviews pods');
    // The non-meshed pod's own TLS straight to a pod: STRICT refuses it; another service account: denied by the policy.
    const outside = JSON.parse((await https('outside', `${pod('v1').ip}:9443`)).stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; error?: string };
    assert.equal(outside.status, undefined, JSON.stringify(outside));
    const other = JSON.parse((await https('other', `${SECURE_VIP}:9443`)).stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; error?: string };
    assert.equal(other.status, undefined, JSON.stringify(other));
    const server = ((await m.get('outside', pod('v1').ip, 15020, '/stats/prometheus')).body ?? '') + ((await m.get('outside', pod('v2').ip, 15020, '/stats/prometheus')).body ?? '');
    const dst = metricLines(server, 'istio_tcp_connections_opened_total{', 'reporter="destination"', `destination_service="${SECURE_HOST}"`, 'connection_security_policy="mutual_tls"', `source_principal="spiffe://${TD}/ns/frontend/sa/client"`, `destination_principal="spiffe://${TD}/ns/bookinfo/sa/reviews"`);
    assert.ok(dst.length > 0, server.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total')).join('\n'));
  });

  test('HTTP/2 (h2c, a gRPC port) through both sidecars: body and trailers arrive, the app speaks h2 with the inbound sidecar', async () => {
    const r = await m.lab.run('client', [process.execPath, '-e', H2C_CLIENT], { TARGET: `${GRPC_VIP}:9090`, BODY: 'h2-marker' }, 20_000);
    const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { status?: number; body?: string; trailers?: Record<string, string>; error?: string };
    assert.equal(out.status, 200, `${r.stdout} ${r.stderr}\nclient: ${m.log('client')}\nv1: ${m.log('v1')}`);
    const b = JSON.parse(out.body!) as { server: string; version: string; remote: string; body: string };
    assert.match(b.server, /^ratings-v[12]$/);
    assert.equal(b.version, '2.0');
    assert.equal(b.remote, '127.0.0.6');
    assert.equal(b.body, 'h2-marker');
    assert.equal(out.trailers?.['x-trailer'], 'yes');
  });

  test('metrics: reporter="source" at the client, reporter="destination" with principals and mutual_tls at the server', async () => {
    const client = (await m.get('outside', pod('client').ip, 15020, '/stats/prometheus')).body ?? '';
    const server = (await m.get('outside', pod('v1').ip, 15020, '/stats/prometheus')).body ?? '';
    const src = metricLines(client, 'istio_requests_total{', 'reporter="source"', 'destination_service="reviews.bookinfo.svc.cluster.local"', 'response_code="200"');
    assert.ok(src.length > 0, client.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n'));
    assert.match(src.join('\n'), /source_workload="client"/);
    assert.match(src.join('\n'), /source_workload_namespace="frontend"/);
    // The destination side of the client's series comes from the view's workload table.
    assert.match(src.join('\n'), new RegExp(`destination_principal="spiffe://${TD}/ns/bookinfo/sa/reviews"`));
    assert.match(src.join('\n'), /destination_workload="reviews(-v[12])?"/);
    const dst = metricLines(server, 'istio_requests_total{', 'reporter="destination"', `source_principal="spiffe://${TD}/ns/frontend/sa/client"`, `destination_principal="spiffe://${TD}/ns/bookinfo/sa/reviews"`, 'connection_security_policy="mutual_tls"', 'response_code="200"');
    assert.ok(dst.length > 0, server.split('\n').filter((l) => l.startsWith('istio_requests_total')).join('\n'));
    assert.ok(metricLines(server, 'istio_requests_total{', 'reporter="destination"', `source_principal="spiffe://${TD}/ns/other/sa/intruder"`, 'response_code="403"').length + metricLines((await m.get('outside', pod('v2').ip, 15020, '/stats/prometheus')).body ?? '', 'istio_requests_total{', `source_principal="spiffe://${TD}/ns/other/sa/intruder"`, 'response_code="403"').length > 0, 'the denied call is counted at the destination');
    assert.ok(metricLines(server + ((await m.get('outside', pod('v2').ip, 15020, '/stats/prometheus')).body ?? ''), 'istio_tcp_connections_opened_total{', 'reporter="destination"', 'connection_security_policy="mutual_tls"').length > 0, 'TCP connection at the destination');
    // The client's TCP series carry the destination workload and principals as its HTTP ones do.
    const tcpSrc = metricLines(client, 'istio_tcp_connections_closed_total{', 'reporter="source"', 'request_protocol="tcp"', `source_principal="spiffe://${TD}/ns/frontend/sa/client"`, `destination_principal="spiffe://${TD}/ns/bookinfo/sa/reviews"`, 'destination_workload_namespace="bookinfo"');
    assert.ok(tcpSrc.length > 0, client.split('\n').filter((l) => l.startsWith('istio_tcp')).join('\n'));
    assert.match(tcpSrc.join('\n'), /destination_workload="reviews(-v[12])?"/);
  });

  test('certificate rotation (20 s certificates, renewed at half life): v2 presents a new certificate, and a 5 rps loop through it sees no error', async (t) => {
    const peek = async () => {
      const r = await m.lab.run('outside', [process.execPath, '-e', TLS_PEEK], { TARGET: `${pod('v2').ip}:9080`, SNI: 'outbound_.9080_.v2_.reviews.bookinfo.svc.cluster.local' }, 10_000);
      return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { serial?: string; san?: string; validFrom?: string; validTo?: string; error?: string };
    };
    const first = await peek();
    assert.equal(first.san, `URI:spiffe://${TD}/ns/bookinfo/sa/reviews`, JSON.stringify(first));
    const life = (Date.parse(first.validTo!) - Date.now()) / 1000;
    assert.ok(life > 0 && life <= 21, `the certificate lives ${life} s more (--cert-ttl 20s)`);
    const errors: string[] = [];
    const t0 = Date.now();
    let serial = first.serial;
    let nextPeek = Date.now() + 1000;
    while (Date.now() - t0 < 25_000 && serial === first.serial) {
      const r = await m.get('client', REVIEWS_VIP, 9080, '/rotation', { 'x-canary': 'v2' }, 3000);
      if (r.status !== 200) errors.push(JSON.stringify(r));
      if (Date.now() >= nextPeek) {
        serial = (await peek()).serial ?? serial;
        nextPeek = Date.now() + 1000;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    t.diagnostic(`v2's certificate changed ${Date.now() - t0} ms into the loop (it had ${life.toFixed(1)} s left at the start)`);
    assert.notEqual(serial, first.serial, 'v2 never presented a new certificate in 25 s');
    assert.deepEqual(errors, []);
    // Requests after the rotation still pass (new connections use the new certificates).
    assert.equal((await m.get('client', REVIEWS_VIP, 9080, '/after-rotation', { 'x-canary': 'v2' })).status, 200);
  });

  test('app probes rewritten by meshgate inject are answered on 15020 under STRICT (the sidecar runs the original probe)', async () => {
    const ready = await m.get('outside', pod('v1').ip, 15020, m.probes.readiness);
    assert.equal(ready.status, 200, `${m.probes.readiness}: ${JSON.stringify(ready)} (env ${m.probes.env})`);
    assert.ok(m.apps.get('v1')!.stdout.some((l) => l.includes('"seen":"/ready"')), 'the app got the original readiness probe');
    const live = await m.get('outside', pod('v1').ip, 15020, m.probes.liveness);
    assert.equal(live.status, 200, JSON.stringify(live));
    assert.equal((await m.get('outside', pod('v1').ip, 15020, '/app-health/nope/readyz')).status, 404);
  });

  test('proxy-status: every sidecar connected and SYNCED', async () => {
    const r = await m.lab.run('cp', [process.execPath, MAIN, 'proxy-status', '--admin', `${CP_IP}:15014`, '--output', 'json'], {}, 20_000);
    assert.equal(r.status, 0, r.stderr);
    const report = JSON.parse(r.stdout) as { proxies: { name: string; state: string; ackedVersion: string | null }[] };
    assert.deepEqual(report.proxies.map((p) => p.name).sort(), ['client-0.frontend', 'other-0.other', 'reviews-v1-0.bookinfo', 'reviews-v2-0.bookinfo']);
    assert.ok(report.proxies.every((p) => p.state === 'SYNCED' && p.ackedVersion !== null), r.stdout);
  });

  test('mesh graph: the control plane scrapes the sidecars and draws client -> reviews with rate, p99 and mTLS', async () => {
    interface Edge { source: string; target: string; protocol: string; mtls: string; mtlsFrom: string | null; http: { rate: number | null; p99Ms: number | null; errorRatio: number } | null }
    interface Graph { basis: string; edges: Edge[]; targets: { name: string; lastError: string | null }[] }
    let graph = null as Graph | null;
    const t0 = Date.now();
    let edge: Edge | undefined;
    while (Date.now() - t0 < 15_000 && edge === undefined) {
      for (let i = 0; i < 5; i++) await m.get('client', REVIEWS_VIP, 9080, '/graph', {}, 3000);
      const r = await m.get('cp', CP_IP, 15014, '/mesh/graph', {}, 3000);
      graph = r.status === 200 ? (JSON.parse(r.body ?? '{}') as Graph) : null;
      edge = graph?.edges.find((e) => e.source === 'workload/frontend/client' && /^workload\/bookinfo\/reviews/.test(e.target) && e.http !== null && (e.http.rate ?? 0) > 0 && e.mtlsFrom === 'destination');
      if (edge === undefined) await new Promise((res) => setTimeout(res, 500));
    }
    assert.ok(edge, `no client -> reviews edge with a rate and destination mTLS evidence: ${JSON.stringify(graph)}`);
    assert.equal(graph!.basis, 'window');
    assert.equal(edge.mtls, 'all');
    assert.ok(edge.http!.p99Ms !== null && edge.http!.p99Ms > 0, JSON.stringify(edge));
    // Every sidecar is scraped by pod IP on 15020 (the capture leaves 15020 alone).
    assert.deepEqual(graph!.targets.filter((x) => x.lastError !== null), []);
    assert.deepEqual(graph!.targets.map((x) => x.name).sort(), ['client-0.frontend', 'other-0.other', 'reviews-v1-0.bookinfo', 'reviews-v2-0.bookinfo']);
  });

  test('an edited YAML reaches the sidecars in under 1 s: a new route, then REGISTRY_ONLY', async (t) => {
    const probe = async (hdr: Record<string, string>) => (await m.get('client', REVIEWS_VIP, 9080, '/change', hdr, 3000)).status;
    assert.equal(await probe({ 'x-e2e-change': '1' }), 200);
    const measure = async (files: Record<string, string>, done: () => Promise<boolean>): Promise<number> => {
      const t0 = Date.now();
      m.writeConfig(files);
      while (Date.now() - t0 < 10_000) {
        if (await done()) return Date.now() - t0;
        await new Promise((r) => setTimeout(r, 10));
      }
      return Infinity;
    };
    const ms1 = await measure({ 'routing.yaml': meshConfigYaml({ teapotHeader: true })['routing.yaml'] }, async () => (await probe({ 'x-e2e-change': '1' })) === 418);
    t.diagnostic(`VirtualService edit -> served by the client sidecar: ${ms1} ms`);
    // Passthrough (ALLOW_ANY) to an address outside the registry, then 502 once REGISTRY_ONLY.
    const legacy = `${pod('outside').ip}`;
    assert.equal((await m.get('client', legacy, 8080, '/passthrough')).status, 200, m.log('client'));
    const ms2 = await measure({ 'mesh.yaml': meshConfigYaml({ registryOnly: true })['mesh.yaml'] }, async () => (await m.get('client', legacy, 8080, '/registry-only', {}, 3000)).status === 502);
    t.diagnostic(`MeshConfig REGISTRY_ONLY -> 502 at the client sidecar: ${ms2} ms`);
    assert.ok(ms1 < 1000, `route change took ${ms1} ms`);
    assert.ok(ms2 < 1000, `REGISTRY_ONLY took ${ms2} ms`);
    assert.equal(await probe({}), 200, 'the known service is still served');
  });

  test('PeerAuthentication edited to PERMISSIVE: the plaintext pod is admitted (then denied by the policy: no principal); back to STRICT: refused again', async (t) => {
    const security = meshConfigYaml()['security.yaml'];
    const plain = () => m.get('outside', pod('v1').ip, 9080, '/permissive', {}, 3000);
    const t0 = Date.now();
    m.writeConfig({ 'security.yaml': security.replace('mode: STRICT', 'mode: PERMISSIVE') });
    let r = await plain();
    while (r.status === undefined && Date.now() - t0 < 10_000) r = await plain();
    t.diagnostic(`STRICT -> PERMISSIVE served by the server sidecar: ${Date.now() - t0} ms`);
    assert.equal(r.status, 403, JSON.stringify(r));
    assert.equal(r.body, 'RBAC: access denied');
    m.writeConfig({ 'security.yaml': security });
    const t1 = Date.now();
    while ((r = await plain()).status !== undefined && Date.now() - t1 < 10_000) await new Promise((res) => setTimeout(res, 20));
    assert.equal(r.status, undefined, JSON.stringify(r));
    assert.equal((await m.get('client', REVIEWS_VIP, 9080, '/after-strict')).status, 200);
  });

  test('control plane down: the sidecars keep serving their last good view and stay ready; restarted, they reconnect and are SYNCED', async () => {
    m.cp.child.kill('SIGKILL');
    await m.cp.exited;
    assert.equal((await m.get('client', REVIEWS_VIP, 9080, '/cp-down', { 'x-canary': 'v2' })).status, 200);
    assert.equal((await m.get('outside', pod('client').ip, 15021, '/healthz/ready')).status, 200);
    const r403 = await m.get('other', REVIEWS_VIP, 9080, '/cp-down');
    assert.equal(r403.status, 403, 'policy still enforced');
    m.restartControl();
    const deadline = Date.now() + 40_000;
    let synced = 0;
    let last = '';
    while (Date.now() < deadline) {
      const s = await m.get('cp', CP_IP, 15014, '/debug/proxy-status', {}, 2000);
      last = s.body ?? s.error ?? '';
      if (s.status === 200) {
        const report = JSON.parse(s.body!) as { proxies: { state: string }[] };
        synced = report.proxies.filter((p) => p.state === 'SYNCED').length;
        if (synced === 4) break;
      }
      await new Promise((res) => setTimeout(res, 250));
    }
    assert.equal(synced, 4, last.slice(0, 2000));
  });

  test('capture --clean leaves nothing: iptables and policy routing as before capture', async () => {
    // The intruder pod: stop its sidecar, then clean; compare with a namespace that never had capture.
    const norm = (s: string) => s.split('\n').filter((l) => l !== '' && !l.startsWith('#')).map((l) => l.replace(/\[\d+:\d+\]/g, '[0:0]')).join('\n');
    const state = (name: string) => ({
      iptables: norm(m.lab.exec(name, 'iptables-save', [])),
      ip6tables: norm(m.lab.tryExec(name, 'ip6tables-save', []).stdout),
      rules: m.lab.exec(name, 'ip', ['rule']),
      rules6: m.lab.tryExec(name, 'ip', ['-6', 'rule']).stdout,
      routes: m.lab.exec(name, 'ip', ['route', 'show', 'table', 'all']).split('\n').filter((l) => !l.includes('10.252.') && !l.includes('dev eth0')).join('\n'),
    });
    const sc = m.sidecars.get('other')!;
    sc.child.kill('SIGTERM');
    await Promise.race([sc.exited, new Promise((r) => setTimeout(r, 5000))]);
    assert.match(m.lab.exec('other', 'iptables-save', []), /MESHGATE/);
    const r = m.lab.tryExec('other', process.execPath, [MAIN, 'capture', '--clean']);
    assert.equal(r.status, 0, r.stderr);
    const cleaned = state('other');
    const pristine = state('cp');
    assert.doesNotMatch(cleaned.iptables + cleaned.ip6tables, /MESHGATE/);
    // No rule and no chain of its own left in any table (the built-in chains may stay, empty, ACCEPT).
    const BUILTIN = /^:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ACCEPT \[0:0\]$/;
    for (const line of `${cleaned.iptables}\n${cleaned.ip6tables}`.split('\n')) {
      assert.ok(line === '' || line.startsWith('*') || line === 'COMMIT' || BUILTIN.test(line), `left behind: ${line}`);
    }
    assert.equal(cleaned.rules, pristine.rules);
    assert.equal(cleaned.rules6, pristine.rules6);
    assert.equal(cleaned.routes, pristine.routes);
  });
});
