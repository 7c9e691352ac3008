/**
 * VirtualService `tls` and `tcp` routes of wildcard ServiceEntry hosts that have `addresses` (the ones
 * the DNS proxy answers), for connections to those addresses: translateSidecar then OutboundHandler,
 * real TLS and TCP clients and servers on loopback, no lab (a plain listener stands for the capture;
 * each accepted socket is presented with the original destination TPROXY would give).
 *
 * Istio builds a listener `<address>_<port>` for such a host (listener.go buildSidecarOutboundListener)
 * with the same filter chains as for an address-less host (tls.go buildSidecarOutboundTLSFilterChainOpts,
 * buildSidecarOutboundTCPFilterChainOpts), and, when no chain matches everything, Istio's
 * PassthroughFilterChain as its default chain (listener.go buildListenerFromEntry). So, proved here:
 * - address + tls routes (`*.api.test`, NONE, two addresses): an exact SNI split by weight between the
 *   host itself (the original destination) and another Service; a destinationSubnets route taking the
 *   second address only; a sourceLabels block of another pod not applied;
 * - address + tls routes (`*.cdn.test`, DYNAMIC_DNS): one name to another Service, another to the SNI
 *   name (resolved when connecting), never the address;
 * - address + tcp routes: destinationSubnets to another Service, then the host's default route
 *   (NONE: the original destination); a DYNAMIC_DNS host's TCP port whose tcp route sends every
 *   connection to another Service (its own default reaches nothing);
 * - no route matching: on a TLS port whose tls routes replace the host's default chain, a covered
 *   SNI no route names, or no SNI, takes the passthrough chain: ALLOW_ANY relays it to the original
 *   destination (the address), REGISTRY_ONLY closes it while routed names still pass; on a TCP port
 *   the host's default route takes what no tcp route matches, under REGISTRY_ONLY too; a Service's
 *   cluster IP with tls routes is served the same way;
 * - a DYNAMIC_DNS host's undeclared port: TLS to its address is closed, as Istio's TCP chain to a
 *   cluster it never builds (cluster.go buildOutboundClusters: HTTP, HTTP2, GRPC and TLS ports only).
 * HTTP to an address (Host: the address) is routed by the wildcard host's virtual host (every
 * address of a service is a domain of it: httproute.go generateVirtualHostDomains).
 * Connection records name the route, the cluster and the endpoint reached.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import dns from 'node:dns';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import type { TcpRecord } from '../../src/observability/tcp-record.js';
import { generatePkiSync } from '../support/x509-gen.js';
import { LoopbackServers, sniEchoServer, tcpRead, tlsRead, viaCapture, greetingServer } from '../support/loopback-servers.js';

const net8 = `127.${100 + ((process.pid >> 3) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
/** `*.api.test`'s addresses (NONE): the first has real servers (the original destination). */
const API = `${net8}.40`;
const API2 = `${net8}.41`;
/** `*.cdn.test`'s address (DYNAMIC_DNS): a server there is reached only by the passthrough chain. */
const CDN = `${net8}.42`;
/** Where DNS sends `*.cdn.test` names. */
const DYN = `${net8}.43`;
/** The endpoint of Service `egress`. */
const EGRESS = `${net8}.44`;
const CLIENT_SIDE = `${net8}.45`;
/** Service vault's cluster IP (a real server stands for what kube-proxy would reach). */
const VAULT = `${net8}.46`;

const pki = generatePkiSync([{ name: 'server', cn: 'backends', dns: ['*.api.test', '*.cdn.test', 'vault.default.svc.cluster.local'], key: 'ec' }]);
const CERT = pki.certs.server;

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

const tlsBackend = (who: string): tls.Server => sniEchoServer(CERT, who);

/** A server-first TCP server (a database greeting). */
const tcpBackend = (who: string): net.Server => greetingServer(`${who}\n`);

function config(p: { tls: number; tcp: number; http: number; dtls: number; dtcp: number; dany: number; svc: number; egTls: number; egPg: number }): string {
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
  clusterIP: 10.255.0.60
  ports: [{name: tls, port: 9443}, {name: tcp-pg, port: 5432}]
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
metadata: {name: api, namespace: default}
spec:
  hosts: ["*.api.test"]
  addresses: [${API}, ${API2}]
  resolution: NONE
  ports: [{number: ${p.tls}, name: tls, protocol: TLS}, {number: ${p.tcp}, name: tcp-pg, protocol: TCP}, {number: ${p.http}, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default}
spec:
  hosts: ["*.api.test"]
  http:
  - headers: {request: {set: {x-via: api-vs}}}
    route: [{destination: {host: "*.api.test", port: {number: ${p.http}}}}]
  tls:
  - match: [{sniHosts: [pay.api.test], port: ${p.tls}}]
    route:
    - destination: {host: "*.api.test", port: {number: ${p.tls}}}
      weight: 50
    - destination: {host: egress, port: {number: 9443}}
      weight: 50
  - match: [{sniHosts: ["*.api.test"], sourceLabels: {app: other}}]
    route: [{destination: {host: egress, port: {number: 9443}}}]
  - match: [{sniHosts: ["*.api.test"], destinationSubnets: ["${API2}/32"]}]
    route: [{destination: {host: egress, port: {number: 9443}}}]
  - match: [{sniHosts: [www.api.test, docs.api.test]}]
    route: [{destination: {host: "*.api.test", port: {number: ${p.tls}}}}]
  tcp:
  - match: [{sourceLabels: {app: other}}]
    route: [{destination: {host: egress, port: {number: 5432}}}]
  - match: [{destinationSubnets: ["${API2}/32"]}]
    route: [{destination: {host: egress, port: {number: 5432}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cdn, namespace: default}
spec:
  hosts: ["*.cdn.test"]
  addresses: [${CDN}]
  resolution: DYNAMIC_DNS
  ports: [{number: ${p.dtls}, name: tls, protocol: TLS}, {number: ${p.dtcp}, name: tcp, protocol: TCP}, {number: ${p.dany}, name: any}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cdn, namespace: default}
spec:
  hosts: ["*.cdn.test"]
  tls:
  - match: [{sniHosts: [edge.cdn.test]}]
    route: [{destination: {host: egress, port: {number: 9443}}}]
  - match: [{sniHosts: [img.cdn.test]}]
    route: [{destination: {host: "*.cdn.test", port: {number: ${p.dtls}}}}]
  tcp:
  - match: [{port: ${p.dtcp}}]
    route: [{destination: {host: egress, port: {number: 5432}}}]
---
apiVersion: v1
kind: Service
metadata: {name: vault, namespace: default}
spec:
  clusterIP: ${VAULT}
  ports: [{name: tls, port: ${p.svc}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: vault-1, namespace: default, labels: {kubernetes.io/service-name: vault}}
addressType: IPv4
ports: [{name: tls, port: ${p.svc}}]
endpoints: [{addresses: [${VAULT}], conditions: {ready: true}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault, namespace: default}
spec:
  hosts: [vault]
  tls:
  - match: [{sniHosts: [vault.default.svc.cluster.local]}]
    route: [{destination: {host: egress, port: {number: 9443}}}]
`;
}

describe('sidecar outbound: tls and tcp routes of wildcard hosts, for connections to their own addresses', () => {
  const servers: net.Server[] = [];
  let handler: OutboundHandler;
  let ir: IRSnapshot;
  let diagnostics: Diagnostic[] = [];
  /** Closed TCP connection records (istio_tcp_*, access log) of the handler. */
  const records: TcpRecord[] = [];
  const P = { tls: 0, tcp: 0, http: 0, dtls: 0, dtcp: 0, dany: 0, svc: 0, egTls: 0, egPg: 0 };
  const realLookup = dns.lookup;

  before(async () => {
    handler = new OutboundHandler({ env: { random: Math.random, observer: null }, tcpObserver: { observeTcp: (rec, phase) => void (phase === 'close' && records.push(rec)) }, detectionTimeoutMs: 300 });
    // The original destinations at `*.api.test`'s first address.
    const orig = tlsBackend('original');
    P.tls = await listen(orig, API);
    const pg = tcpBackend('original-pg');
    P.tcp = await listen(pg, API);
    const web = http.createServer((req, res) => res.end(`original-http host=${req.headers.host} via=${req.headers['x-via'] ?? '-'}`));
    P.http = await listen(web, API);
    servers.push(web);
    // At `*.cdn.test`'s address: reached only by the passthrough chain (or never, for its TCP port).
    const cdn = tlsBackend('cdn-address');
    P.dtls = await listen(cdn, CDN);
    const cdnPg = tcpBackend('cdn-address-pg');
    P.dtcp = await listen(cdnPg, CDN);
    // The SNI names of `*.cdn.test` resolve to DYN, on the same port.
    const cdnAny = tlsBackend('cdn-address-any');
    P.dany = await listen(cdnAny, CDN);
    const dyn = tlsBackend('dynamic');
    await listen(dyn, DYN, P.dtls);
    const dynAny = tlsBackend('dynamic-any');
    await listen(dynAny, DYN, P.dany);
    const vault = tlsBackend('vault');
    P.svc = await listen(vault, VAULT);
    servers.push(cdnAny, dynAny, vault);
    // Service egress's endpoint.
    const egTls = tlsBackend('egress');
    P.egTls = await listen(egTls, EGRESS);
    const egPg = tcpBackend('egress-pg');
    P.egPg = await listen(egPg, EGRESS);
    servers.push(orig, pg, cdn, cdnPg, dyn, egTls, egPg);
    // The dynamic forward proxy resolves names when connecting (net.connect → dns.lookup).
    (dns as { lookup: unknown }).lookup = function lookup(host: string, options: unknown, callback?: unknown): void {
      const cb = (typeof options === 'function' ? options : callback) as (err: Error | null, a: unknown, f?: number) => void;
      const opts = typeof options === 'object' && options !== null ? (options as { all?: boolean }) : {};
      if (!host.endsWith('.cdn.test')) return void (realLookup as (...a: unknown[]) => void).call(dns, host, options, callback);
      process.nextTick(() => (opts.all ? cb(null, [{ address: DYN, family: 4 }]) : cb(null, DYN, 4)));
    };
    const objects: KubeObject[] = [];
    const diags: Diagnostic[] = [];
    parseFile('wildcard-address-routes.yaml', config(P), objects, diags);
    const checked = checkObjects(objects);
    const r = translateSidecar(new ResourceSet(checked.accepted), { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', podIps: [CLIENT_SIDE], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    diagnostics = [...diags, ...checked.diagnostics, ...r.diagnostics];
    ir = r.ir;
    handler.apply(ir);
  });

  after(async () => {
    (dns as { lookup: unknown }).lookup = realLookup;
    for (const s of servers) s.close();
    loopback.destroyConnections();
    await handler.close(0);
  });

  const asIfTo = <T>(address: string, port: number, send: (capPort: number) => Promise<T>): Promise<T> => viaCapture(loopback, CLIENT_SIDE, (s) => handler.handle(s), address, port, send);

  const tlsCall = (port: number, sni: string | null): Promise<string> => tlsRead(CLIENT_SIDE, port, sni, CERT.cert);

  const tcpCall = (port: number): Promise<string> => tcpRead(CLIENT_SIDE, port);

  const tlsTo = (address: string, port: number, sni: string | null): Promise<string> => asIfTo(address, port, (p) => tlsCall(p, sni));
  const tcpTo = (address: string, port: number): Promise<string> => asIfTo(address, port, (p) => tcpCall(p));

  /** Serves the view with REGISTRY_ONLY while `run` runs. */
  async function registryOnly(run: () => Promise<void>): Promise<void> {
    handler.apply({ ...ir, version: 'registry-only', sidecar: { ...ir.sidecar!, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
    try {
      await run();
    } finally {
      handler.apply(ir);
    }
  }

  test('translation: the routes apply; only the DYNAMIC_DNS TCP port is reported', () => {
    const reported = diagnostics.filter((d) => d.severity !== 'info').map((d) => `${d.reason} ${d.object?.kind}/${d.object?.name} ${d.field}`);
    assert.deepEqual(reported, ['MG_UNSUPPORTED ServiceEntry/cdn spec.ports[1]', 'MG_UNSUPPORTED ServiceEntry/cdn spec.ports[2]']);
    const api = new Map(ir.sidecar!.outbound.filter((s) => s.host === '*.api.test').map((s) => [s.port, s.addresses]));
    assert.deepEqual(api, new Map([[P.tls, [API, API2]], [P.tcp, [API, API2]], [P.http, [API, API2]]]));
  });

  test('address + tls routes (NONE): an exact SNI split by weight between the original destination and another Service', async () => {
    const seen = new Map<string, number>();
    for (let i = 0; i < 30; i++) {
      const r = await tlsTo(API, P.tls, 'pay.api.test');
      seen.set(r, (seen.get(r) ?? 0) + 1);
    }
    // 30 connections at 50/50: each side is missed with probability 2^-30.
    assert.deepEqual([...seen.keys()].sort(), ['egress pay.api.test', 'original pay.api.test'], JSON.stringify([...seen]));
  });

  test('address + tls routes (NONE): destinationSubnets takes the second address only; another pod\'s sourceLabels block is not applied', async () => {
    assert.equal(await tlsTo(API2, P.tls, 'www.api.test'), 'egress www.api.test');
    assert.equal(await tlsTo(API2, P.tls, 'other.api.test'), 'egress other.api.test');
    // The first address: the sourceLabels block (app: other) would send it to egress; the named route sends it to the host itself.
    assert.equal(await tlsTo(API, P.tls, 'www.api.test'), 'original www.api.test');
    assert.equal(await tlsTo(API, P.tls, 'docs.api.test'), 'original docs.api.test');
  });

  test('address + tls routes (DYNAMIC_DNS): one name to another Service, another to the SNI name, never the address', async () => {
    assert.equal(await tlsTo(CDN, P.dtls, 'edge.cdn.test'), 'egress edge.cdn.test');
    assert.equal(await tlsTo(CDN, P.dtls, 'img.cdn.test'), 'dynamic img.cdn.test');
  });

  test('address + tcp routes: destinationSubnets to another Service, else the host\'s default route (NONE: the original destination)', async () => {
    assert.equal(await tcpTo(API2, P.tcp), 'egress-pg\n');
    assert.equal(await tcpTo(API, P.tcp), 'original-pg\n');
  });

  test('address + tcp routes (DYNAMIC_DNS TCP port): the tcp route takes every connection to another Service', async () => {
    assert.equal(await tcpTo(CDN, P.dtcp), 'egress-pg\n');
  });

  test('DYNAMIC_DNS undeclared port: TLS to the address is closed (Istio builds no dynamic forward proxy cluster for it), neither the SNI name nor the address reached', async () => {
    assert.match(await tlsTo(CDN, P.dany, 'img.cdn.test'), /^closed: /);
    assert.match(await tlsTo(CDN, P.dany, null), /^closed: /);
  });

  test('a Service\'s cluster IP with tls routes: an SNI no route matches takes the passthrough chain too (ALLOW_ANY), closed under REGISTRY_ONLY', async () => {
    assert.equal(await tlsTo(VAULT, P.svc, 'vault.default.svc.cluster.local'), 'egress vault.default.svc.cluster.local');
    assert.equal(await tlsTo(VAULT, P.svc, 'other.api.test'), 'vault other.api.test');
    await registryOnly(async () => {
      assert.match(await tlsTo(VAULT, P.svc, 'other.api.test'), /^closed: /);
    });
  });

  test('HTTP by address (Host: the address): the wildcard host\'s virtual host and VirtualService, under REGISTRY_ONLY too', async () => {
    const get = (): Promise<string> =>
      asIfTo(API, P.http, (port) => new Promise((resolve, reject) => {
        const c = net.connect({ host: CLIENT_SIDE, port }, () => c.write(`GET / HTTP/1.1\r\nhost: ${API}:${P.http}\r\nconnection: close\r\n\r\n`));
        let out = '';
        c.setEncoding('utf8');
        c.on('data', (d: string) => (out += d));
        c.on('close', () => resolve(out.slice(out.indexOf('\r\n\r\n') + 4)));
        c.on('error', reject);
        c.setTimeout(10_000, () => c.destroy(new Error('no answer within 10 s')));
      }));
    // httproute.go generateVirtualHostDomains: every address of the service is a domain of its virtual host.
    assert.equal(await get(), `original-http host=${API}:${P.http} via=api-vs`);
    await registryOnly(async () => assert.equal(await get(), `original-http host=${API}:${P.http} via=api-vs`));
  });

  test('no tls route matching, ALLOW_ANY: the passthrough chain relays to the original destination (the address)', async () => {
    // NONE: a covered SNI no route names, and no SNI at all.
    assert.equal(await tlsTo(API, P.tls, 'other.api.test'), 'original other.api.test');
    assert.equal(await tlsTo(API, P.tls, null), 'original -');
    // DYNAMIC_DNS: the address itself, not the SNI name.
    assert.equal(await tlsTo(CDN, P.dtls, 'other.cdn.test'), 'cdn-address other.cdn.test');
    assert.equal(await tlsTo(CDN, P.dtls, null), 'cdn-address -');
  });

  test('no route matching, REGISTRY_ONLY: TLS is closed while routed names pass; TCP takes the host\'s default route', async () => {
    await registryOnly(async () => {
      assert.match(await tlsTo(API, P.tls, 'other.api.test'), /^closed: /);
      assert.match(await tlsTo(API, P.tls, null), /^closed: /);
      assert.match(await tlsTo(CDN, P.dtls, 'other.cdn.test'), /^closed: /);
      assert.equal(await tlsTo(API, P.tls, 'www.api.test'), 'original www.api.test');
      assert.equal(await tlsTo(CDN, P.dtls, 'img.cdn.test'), 'dynamic img.cdn.test');
      assert.equal(await tcpTo(API, P.tcp), 'original-pg\n');
    });
  });

  test('telemetry: each connection names its route, cluster and the endpoint reached', async () => {
    records.length = 0;
    await tlsTo(API2, P.tls, 'www.api.test');
    await tlsTo(CDN, P.dtls, 'img.cdn.test');
    await tlsTo(API, P.tls, 'other.api.test');
    await tcpTo(API, P.tcp);
    // A record is reported when the sidecar's side of the connection has closed: wait for the four.
    const deadline = Date.now() + 5000;
    while (records.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const seen = records.map((r) => `${r.route} ${r.cluster} ${r.upstreamHost}`).sort();
    assert.deepEqual(seen, [
      `PassthroughCluster PassthroughCluster ${API}:${P.tls}`,
      `default outbound|${P.tcp}||*.api.test ${API}:${P.tcp}`,
      `virtualservice/default/api/tls/2 outbound|9443||egress.default.svc.cluster.local ${EGRESS}:${P.egTls}`,
      `virtualservice/default/cdn/tls/1 outbound|${P.dtls}||*.cdn.test img.cdn.test:${P.dtls}`,
    ]);
  });
});
