/**
 * VirtualService `tls` and `tcp` routes of wildcard ServiceEntry hosts on the sidecar's outbound side
 * (translateSidecar then OutboundHandler, real TLS and TCP clients and servers on loopback, no
 * lab): a plain listener stands for the capture, and each accepted socket is presented with the
 * original destination TPROXY would give (its local address and port).
 *
 * Proves, for `*.example.com` (resolution NONE):
 * - a tls route by exact SNI and port splits connections by weight between the wildcard host itself
 *   (the original destination) and another Service (its endpoint);
 * - a tls route with destinationSubnets takes only connections to those addresses;
 * - a tls match for other sourceLabels is not applied; the one for this pod's labels, to a subset of
 *   the wildcard host, goes to the original destination;
 * - tcp routes: a sourceLabels match for another workload is not applied, a destinationSubnets
 *   route sends its addresses to another Service, the rest goes to the original destination;
 * - `*.example.org` has only a tls route for `a.example.org`: `b.example.org` is not the host's
 *   (no default SNI route, as Istio), so REGISTRY_ONLY closes it while `a.example.org` is routed.
 * For `*.cdn.example.test` (DYNAMIC_DNS):
 * - a tls route to the host itself reaches the SNI name (resolved when connecting), not the
 *   original destination; another tls route of it sends one name to another Service;
 * - its TCP port closes connections (no name to forward to), though a server listens at the
 *   original destination.
 * And: connection records (istio_tcp_*, access log) name the route, the wildcard host's cluster and
 * the endpoint each connection reached (UH when none); a table test of the per-connection endpoint.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import dns from 'node:dns';
import net from 'node:net';
import tls from 'node:tls';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { forwardTarget, perConnectionClusters } from '../../src/runtime/sidecar/wildcard-hosts.js';
import type { Cluster, IRSnapshot, OutboundService } from '../../src/ir/types.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { generatePkiSync } from '../support/x509-gen.js';
import type { TcpRecord } from '../../src/observability/tcp-record.js';
import { LoopbackServers, sniEchoServer, tcpRead, tlsRead, viaCapture, greetingServer } from '../support/loopback-servers.js';

const net8 = `127.${100 + ((process.pid >> 3) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
/** Original destinations the app dials (TPROXY keeps them). */
const ORIG = `${net8}.30`;
const ORIG2 = `${net8}.31`;
/** The endpoint of Service `egress`. */
const EGRESS = `${net8}.32`;
/** Where DNS sends `*.cdn.example.test` names. */
const DYN = `${net8}.33`;
const CLIENT_SIDE = `${net8}.34`;

const NAMES = ['*.example.com', '*.example.org', '*.cdn.example.test'];
const pki = generatePkiSync([{ name: 'server', cn: 'backends', dns: NAMES, key: 'ec' }]);
const CERT = pki.certs.server;

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

const tlsBackend = (who: string): tls.Server => sniEchoServer(CERT, who);

/** A server-first TCP server (a database greeting). */
const tcpBackend = (who: string): net.Server => greetingServer(`${who}\n`);

function config(p: { tls: number; org: number; pg: number; dyn: number; dtcp: number; egTls: number; egPg: number }): string {
  return `
apiVersion: v1
kind: Pod
metadata: {name: sleep-1, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: curl}]}
status: {phase: Running, podIP: ${CLIENT_SIDE}}
---
apiVersion: v1
kind: Service
metadata: {name: egress, namespace: default}
spec:
  clusterIP: 10.255.0.50
  ports: [{name: tls, port: ${p.tls}}, {name: tcp-pg, port: ${p.pg}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: egress-1, namespace: default, labels: {kubernetes.io/service-name: egress}}
addressType: IPv4
ports: [{name: tls, port: ${p.egTls}}, {name: tcp-pg, port: ${p.egPg}}]
endpoints: [{addresses: [${EGRESS}], conditions: {ready: true}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any, namespace: default}
spec:
  hosts: ["*.example.com"]
  resolution: NONE
  ports: [{number: ${p.tls}, name: tls, protocol: TLS}, {number: ${p.pg}, name: tcp-pg, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: any, namespace: default}
spec:
  host: "*.example.com"
  subsets: [{name: v1, labels: {version: v1}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any, namespace: default}
spec:
  hosts: ["*.example.com"]
  tls:
  - match: [{sniHosts: [api.example.com], port: ${p.tls}}]
    route:
    - destination: {host: "*.example.com", port: {number: ${p.tls}}}
      weight: 60
    - destination: {host: egress, port: {number: ${p.tls}}}
      weight: 40
  - match: [{sniHosts: ["*.example.com"], sourceLabels: {app: other}}]
    route: [{destination: {host: egress, port: {number: ${p.tls}}}}]
  - match: [{sniHosts: ["*.example.com"], destinationSubnets: ["${ORIG2}/32"]}]
    route: [{destination: {host: egress, port: {number: ${p.tls}}}}]
  - match: [{sniHosts: ["*.example.com"], sourceLabels: {app: sleep}}]
    route: [{destination: {host: "*.example.com", subset: v1, port: {number: ${p.tls}}}}]
  tcp:
  - match: [{sourceLabels: {app: other}}]
    route: [{destination: {host: egress, port: {number: ${p.pg}}}}]
  - match: [{port: ${p.pg}, destinationSubnets: ["${ORIG2}/32"]}]
    route: [{destination: {host: egress, port: {number: ${p.pg}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: org, namespace: default}
spec:
  hosts: ["*.example.org"]
  resolution: NONE
  ports: [{number: ${p.org}, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: org, namespace: default}
spec:
  hosts: ["*.example.org"]
  tls:
  - match: [{sniHosts: [a.example.org]}]
    route: [{destination: {host: egress, port: {number: ${p.tls}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cdn, namespace: default}
spec:
  hosts: ["*.cdn.example.test"]
  resolution: DYNAMIC_DNS
  ports: [{number: ${p.dyn}, name: tls, protocol: TLS}, {number: ${p.dtcp}, name: tcp, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cdn, namespace: default}
spec:
  hosts: ["*.cdn.example.test"]
  tls:
  - match: [{sniHosts: [edge.cdn.example.test]}]
    route: [{destination: {host: egress, port: {number: ${p.tls}}}}]
  - match: [{sniHosts: ["*.cdn.example.test"]}]
    route: [{destination: {host: "*.cdn.example.test", port: {number: ${p.dyn}}}}]
`;
}

describe('sidecar outbound: tls and tcp routes of wildcard ServiceEntry hosts', () => {
  const servers: net.Server[] = [];
  let handler: OutboundHandler;
  let ir: IRSnapshot;
  let diagnostics: Diagnostic[] = [];
  /** Closed TCP connection records (istio_tcp_*, access log) of the handler. */
  const records: TcpRecord[] = [];
  const P = { tls: 0, org: 0, pg: 0, dyn: 0, dtcp: 0, egTls: 0, egPg: 0 };
  const realLookup = dns.lookup;

  before(async () => {
    handler = new OutboundHandler({ env: { random: Math.random, observer: null }, tcpObserver: { observeTcp: (rec, phase) => void (phase === 'close' && records.push(rec)) }, detectionTimeoutMs: 200 });
    // The original destinations: a TLS server for *.example.com / *.example.org, a database.
    const orig = tlsBackend('original');
    P.tls = await listen(orig, ORIG);
    const org = tlsBackend('original-org');
    P.org = await listen(org, ORIG);
    const pg = tcpBackend('original-pg');
    P.pg = await listen(pg, ORIG);
    servers.push(orig, org, pg);
    // Service egress's endpoint.
    const egTls = tlsBackend('egress');
    P.egTls = await listen(egTls, EGRESS);
    const egPg = tcpBackend('egress-pg');
    P.egPg = await listen(egPg, EGRESS);
    servers.push(egTls, egPg);
    // DYNAMIC_DNS: the named host (DNS below answers DYN) and a server at the original destination that must not be reached.
    const dyn = tlsBackend('dynamic');
    P.dyn = await listen(dyn, DYN);
    const dtcp = tcpBackend('original-dtcp');
    P.dtcp = await listen(dtcp, ORIG);
    servers.push(dyn, dtcp);
    // The dynamic forward proxy resolves names when connecting (net.connect → dns.lookup): this
    // test's names resolve to DYN, every other name as usual.
    (dns as { lookup: unknown }).lookup = function lookup(host: string, options: unknown, callback?: unknown): void {
      const cb = (typeof options === 'function' ? options : callback) as (err: Error | null, a: unknown, f?: number) => void;
      const opts = typeof options === 'object' && options !== null ? (options as { all?: boolean }) : {};
      if (!host.endsWith('.cdn.example.test')) return void (realLookup as (...a: unknown[]) => void).call(dns, host, options, callback);
      process.nextTick(() => (opts.all ? cb(null, [{ address: DYN, family: 4 }]) : cb(null, DYN, 4)));
    };
    const objects: KubeObject[] = [];
    const diags: Diagnostic[] = [];
    parseFile('wildcard-routes.yaml', config(P), objects, diags);
    const checked = checkObjects(objects);
    const r = translateSidecar(new ResourceSet(checked.accepted), { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', podIps: [CLIENT_SIDE], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    diagnostics = [...diags, ...checked.diagnostics, ...r.diagnostics];
    handler.apply(r.ir);
    ir = r.ir;
  });

  after(async () => {
    (dns as { lookup: unknown }).lookup = realLookup;
    for (const s of servers) s.close();
    loopback.destroyConnections();
    await handler.close(0);
  });

  const asIfTo = <T>(orig: { address: string; port: number }, send: (port: number) => Promise<T>): Promise<T> => viaCapture(loopback, CLIENT_SIDE, (s) => handler.handle(s), orig.address, orig.port, send);

  const tlsCall = (port: number, sni: string | null): Promise<string> => tlsRead(CLIENT_SIDE, port, sni, CERT.cert);

  const tcpCall = (port: number): Promise<string> => tcpRead(CLIENT_SIDE, port);

  test('translation: the routes are applied, only the DYNAMIC_DNS TCP port is reported', () => {
    const reported = diagnostics.filter((d) => d.severity !== 'info').map((d) => `${d.reason} ${d.object?.kind}/${d.object?.name} ${d.field}`);
    assert.deepEqual(reported, ['MG_UNSUPPORTED ServiceEntry/cdn spec.ports[1]']);
    assert.equal(diagnostics.some((d) => d.message.includes('not applied')), false);
  });

  test('NONE, exact SNI and port: weighted between the original destination and another Service', async () => {
    const seen = new Map<string, number>();
    await asIfTo({ address: ORIG, port: P.tls }, async (port) => {
      for (let i = 0; i < 30; i++) {
        const r = await tlsCall(port, 'api.example.com');
        seen.set(r, (seen.get(r) ?? 0) + 1);
      }
    });
    assert.deepEqual([...seen.keys()].sort(), ['egress api.example.com', 'original api.example.com'], JSON.stringify([...seen]));
  });

  test('NONE, wildcard SNI: destinationSubnets route for its address only; another pod\'s sourceLabels not applied; subset of the host to the original destination', async () => {
    const toOrig2 = await asIfTo({ address: ORIG2, port: P.tls }, (port) => tlsCall(port, 'www.example.com'));
    assert.equal(toOrig2, 'egress www.example.com');
    const toOrig = await asIfTo({ address: ORIG, port: P.tls }, (port) => tlsCall(port, 'www.example.com'));
    assert.equal(toOrig, 'original www.example.com');
  });

  test('NONE, tcp routes: sourceLabels of another pod not applied, destinationSubnets to another Service, else the original destination', async () => {
    assert.equal(await asIfTo({ address: ORIG, port: P.pg }, (port) => tcpCall(port)), 'original-pg\n');
    assert.equal(await asIfTo({ address: ORIG2, port: P.pg }, (port) => tcpCall(port)), 'egress-pg\n');
  });

  test('NONE without a matching tls route: not the host\'s (REGISTRY_ONLY closes it, the routed name still goes)', async () => {
    // ALLOW_ANY: the passthrough relays it to its original destination.
    assert.equal(await asIfTo({ address: ORIG, port: P.org }, (port) => tlsCall(port, 'b.example.org')), 'original-org b.example.org');
    handler.apply({ ...ir, version: 'registry-only', sidecar: { ...ir.sidecar!, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
    try {
      const blocked = await asIfTo({ address: ORIG, port: P.org }, (port) => tlsCall(port, 'b.example.org'));
      assert.match(blocked, /^closed: /);
      assert.equal(await asIfTo({ address: ORIG, port: P.org }, (port) => tlsCall(port, 'a.example.org')), 'egress a.example.org');
    } finally {
      handler.apply(ir);
    }
  });

  test('DYNAMIC_DNS: a tls route to the host reaches the SNI name, never the original destination; another name to another Service', async () => {
    // Nothing listens at ORIG:P.dyn: only the name's address (DYN) answers.
    assert.equal(await asIfTo({ address: ORIG, port: P.dyn }, (port) => tlsCall(port, 'img.cdn.example.test')), 'dynamic img.cdn.example.test');
    assert.equal(await asIfTo({ address: ORIG, port: P.dyn }, (port) => tlsCall(port, 'edge.cdn.example.test')), 'egress edge.cdn.example.test');
  });

  test('DYNAMIC_DNS TCP port: closed (no name to forward to), though the original destination listens', async () => {
    assert.equal(await asIfTo({ address: ORIG, port: P.dtcp }, (port) => tcpCall(port)), '');
  });

  test('telemetry: relayed connections name the route, the wildcard host\'s cluster and the endpoint reached', async () => {
    records.length = 0;
    await asIfTo({ address: ORIG, port: P.tls }, (port) => tlsCall(port, 'www.example.com'));
    await asIfTo({ address: ORIG, port: P.dyn }, (port) => tlsCall(port, 'img.cdn.example.test'));
    await asIfTo({ address: ORIG, port: P.dtcp }, (port) => tcpCall(port));
    // A record is reported when the sidecar's side of the connection has closed: wait for the three.
    const deadline = Date.now() + 5000;
    while (records.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const seen = records.map((r) => ({ route: r.route, cluster: r.cluster, upstreamHost: r.upstreamHost, flags: r.flags, service: r.meshLabels?.destination_service })).sort((a, b) => String(a.route).localeCompare(String(b.route)));
    assert.deepEqual(seen, [
      { route: 'default', cluster: `outbound|${P.dtcp}||*.cdn.example.test`, upstreamHost: null, flags: 'UH', service: '*.cdn.example.test' },
      { route: 'virtualservice/default/any/tls/3', cluster: `outbound|${P.tls}|v1|*.example.com`, upstreamHost: `${ORIG}:${P.tls}`, flags: null, service: '*.example.com' },
      { route: 'virtualservice/default/cdn/tls/1', cluster: `outbound|${P.dyn}||*.cdn.example.test`, upstreamHost: `img.cdn.example.test:${P.dyn}`, flags: null, service: '*.cdn.example.test' },
    ]);
  });
});

test('perConnectionClusters / forwardTarget: NONE to the original destination, DYNAMIC_DNS to the SNI name on TLS ports only', () => {
  const svc = (host: string, port: number, protocol: OutboundService['protocol'], forward: OutboundService['forward']): OutboundService => ({ host, namespace: 'd', port, protocol, addresses: [], httpRoutes: null, tcpRoutes: `outbound_${port}_tcp_${host}`, ...(forward ? { forward } : {}) });
  const cluster = (host: string, port: number, subset = '', endpoints: Cluster['endpoints'] = []): Cluster => ({ name: `outbound|${port}|${subset}|${host}`, service: { namespace: 'd', name: host, host, port }, subset, discovery: 'eds', lbPolicy: 'ROUND_ROBIN', endpoints, connectTimeoutMs: 1000, connectionPool: null, outlierDetection: null, protocol: 'HTTP1', tls: null });
  const m = perConnectionClusters(
    [svc('*.a.io', 443, 'TLS', 'original-dst'), svc('*.a.io', 5432, 'TCP', 'original-dst'), svc('*.d.io', 443, 'TLS', 'dynamic-dns'), svc('*.d.io', 7000, 'TCP', 'dynamic-dns'), svc('*.s.io', 443, 'TLS', undefined)],
    [cluster('*.a.io', 443), cluster('*.a.io', 443, 'v1'), cluster('*.a.io', 5432), cluster('*.d.io', 443), cluster('*.d.io', 7000), cluster('*.s.io', 443, '', [{ address: '10.0.0.1', port: 443, ready: true }]), cluster('db.a.io', 5432)],
  );
  assert.deepEqual([...m.keys()].sort(), ['outbound|443|v1|*.a.io', 'outbound|443||*.a.io', 'outbound|443||*.d.io', 'outbound|5432||*.a.io', 'outbound|7000||*.d.io']);
  const cases: { desc: string; cluster: string; sni: string; want: { address: string; port: number } | null }[] = [
    { desc: 'NONE: the original destination, whatever the SNI', cluster: 'outbound|443||*.a.io', sni: 'x.a.io', want: { address: '10.1.1.1', port: 8443 } },
    { desc: 'NONE subset: the original destination', cluster: 'outbound|443|v1|*.a.io', sni: '', want: { address: '10.1.1.1', port: 8443 } },
    { desc: 'NONE TCP: the original destination', cluster: 'outbound|5432||*.a.io', sni: '', want: { address: '10.1.1.1', port: 8443 } },
    { desc: 'DYNAMIC_DNS TLS: the SNI name on the cluster port', cluster: 'outbound|443||*.d.io', sni: 'img.d.io', want: { address: 'img.d.io', port: 443 } },
    { desc: 'DYNAMIC_DNS without SNI: nothing', cluster: 'outbound|443||*.d.io', sni: '', want: null },
    { desc: 'DYNAMIC_DNS TCP port: nothing, even with an SNI', cluster: 'outbound|7000||*.d.io', sni: 'img.d.io', want: null },
  ];
  for (const c of cases) assert.deepEqual(forwardTarget(m.get(c.cluster)!, '10.1.1.1', 8443, c.sni), c.want, c.desc);
});
