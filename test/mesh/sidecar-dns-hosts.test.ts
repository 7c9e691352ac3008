/**
 * Wildcard ServiceEntry hosts and ExternalName Services in the sidecar's DNS table, end to end
 * without a lab: the view (translateSidecar) -> the DNS proxy's lookup table (what it answers) ->
 * a connection to the answered address through the outbound handler, over real sockets on loopback
 * (a listener on a loopback address stands for the original destination TPROXY keeps).
 *
 * Proves, as Istio's BuildNameTable and lookupHost:
 * - `*.fixed.test` (resolution NONE, `addresses`) answers its address for names under it, at any
 *   depth, with the first search domain as a CNAME to the wildcard; a TLS or TCP connection to that
 *   address goes to the original destination (the address itself), as Istio's ORIGINAL_DST cluster;
 * - `*.dyn.test` (DYNAMIC_DNS, `addresses`) answers its address; TLS to it whose SNI the host covers
 *   goes to the SNI name asked for, never to the address (here a name that does not resolve: the
 *   connection is closed); TLS without such an SNI, or other bytes, finds no filter chain on Istio's
 *   listener `<address>_<port>` (its default chain matches the host's SNIs only: tls.go
 *   buildSidecarOutboundTLSFilterChainOpts) and takes its PassthroughFilterChain (listener.go
 *   buildListenerFromEntry): ALLOW_ANY relays it to the address, REGISTRY_ONLY closes it;
 * - `*.none.test` (NONE, no addresses) and `*.cdn.test` (DYNAMIC_DNS, no addresses) are not answered,
 *   even with auto-allocation on: their queries go upstream;
 * - ExternalName Services are not answered, an alias (`reviews-alias` -> reviews) or an outside
 *   name (`payments` -> pay.example.net), in any of their short forms: their queries go upstream.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import net from 'node:net';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { DnsLookupTable } from '../../src/mesh/dns/table.js';
import { TYPE_A, TYPE_CNAME } from '../../src/mesh/dns/wire.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { LoopbackServers, tlsClientHello } from '../support/loopback-servers.js';

const net8 = `127.${100 + ((process.pid >> 3) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
/** The address `*.fixed.test` is declared with: also its original destination (a real server). */
const FIXED = `${net8}.30`;
/** The address of `*.dyn.test`: a server there must never be reached. */
const DYN = `${net8}.31`;
const CLIENT_SIDE = `${net8}.32`;

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

function config(p: { tls: number; tcp: number; dyn: number }): string {
  return `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true", ISTIO_META_DNS_AUTO_ALLOCATE: "true"}
---
apiVersion: v1
kind: Pod
metadata: {name: sleep-1, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: curl}]}
status: {phase: Running, podIP: ${CLIENT_SIDE}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {clusterIP: 10.96.0.20, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews-alias, namespace: default}
spec: {type: ExternalName, externalName: reviews.default.svc.cluster.local}
---
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: default}
spec: {type: ExternalName, externalName: pay.example.net, ports: [{name: http, port: 8080}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: fixed, namespace: default}
spec:
  hosts: ["*.fixed.test"]
  addresses: [${FIXED}]
  resolution: NONE
  ports: [{number: ${p.tls}, name: tls, protocol: TLS}, {number: ${p.tcp}, name: tcp, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dyn, namespace: default}
spec:
  hosts: ["*.dyn.test"]
  addresses: [${DYN}]
  resolution: DYNAMIC_DNS
  ports: [{number: ${p.dyn}, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: none, namespace: default}
spec:
  hosts: ["*.none.test"]
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: cdn, namespace: default}
spec:
  hosts: ["*.cdn.test"]
  resolution: DYNAMIC_DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
`;
}

describe('sidecar DNS: wildcard ServiceEntry hosts and ExternalName Services, answered and reached', () => {
  const servers: net.Server[] = [];
  let handler: OutboundHandler;
  let table: DnsLookupTable;
  let r0: IRSnapshot;
  const P = { tls: 0, tcp: 0, dyn: 0 };
  /** `cluster upstream` of every connection the handler opened (its TCP observer). */
  const opened: string[] = [];

  before(async () => {
    handler = new OutboundHandler({ env: { random: Math.random, observer: null }, tcpObserver: { observeTcp: (rec, phase) => void (phase === 'open' && opened.push(`${rec.cluster} ${rec.upstreamHost}`)) }, detectionTimeoutMs: 4000 });
    // The original destinations: a raw server answering the first byte it gets, and a server-first TCP one.
    const tls = net.createServer((s) => s.once('data', (b: Buffer) => s.end(`fixed got ${b[0]}`)));
    P.tls = await listen(tls, FIXED);
    const tcp = net.createServer((s) => s.end('fixed hello'));
    P.tcp = await listen(tcp, FIXED);
    const dyn = net.createServer((s) => s.once('data', () => s.end('dyn address reached')));
    P.dyn = await listen(dyn, DYN);
    servers.push(tls, tcp, dyn);
    const objects: KubeObject[] = [];
    const diags: Diagnostic[] = [];
    parseFile('dns-hosts.yaml', config(P), objects, diags);
    assert.deepEqual(diags, []);
    const r = translateSidecar(new ResourceSet(checkObjects(objects).accepted), { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', podIps: [CLIENT_SIDE], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    r0 = r.ir;
    handler.apply(r.ir);
    table = new DnsLookupTable(r.ir.sidecar!.dns!.hosts, { namespace: 'default', serviceDomain: 'svc.cluster.local', search: ['default.svc.cluster.local', 'svc.cluster.local', 'cluster.local'] });
  });

  after(async () => {
    for (const s of servers) s.close();
    loopback.destroyConnections();
    await handler.close(0);
  });

  /** What the DNS proxy answers for an A query: 'upstream', or the records. */
  function resolve(name: string): string {
    const r = table.lookup(TYPE_A, name);
    if (!r.found) return 'upstream';
    return r.answers.map((a) => (a.type === TYPE_CNAME ? `CNAME ${a.target}` : a.type === TYPE_A ? `${a.name}=${[...a.address].join('.')}` : '?')).join(' ');
  }

  /** Opens a connection whose original destination is `address:port` (captured on another address, presented as that one), writes `send`, returns all it reads. */
  async function connectAsIfTo(address: string, port: number, send: Buffer | null): Promise<string> {
    const cap = net.createServer({ allowHalfOpen: true }, (s) => {
      Object.defineProperty(s, 'localAddress', { value: address });
      Object.defineProperty(s, 'localPort', { value: port });
      handler.handle(s);
    });
    const capPort = await listen(cap, CLIENT_SIDE);
    try {
      return await new Promise<string>((resolve, reject) => {
        const c = net.connect({ host: CLIENT_SIDE, port: capPort }, () => {
          if (send !== null) c.write(send);
        });
        let out = '';
        c.setEncoding('utf8');
        c.on('data', (d: string) => (out += d));
        c.on('close', () => resolve(out));
        c.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? resolve(out) : reject(e)));
        c.setTimeout(10_000, () => c.destroy(new Error('timeout')));
      });
    } finally {
      cap.close();
    }
  }

  test('a wildcard host with addresses answers them for every name under it; the first search domain gets the chained answer', () => {
    assert.equal(resolve('api.fixed.test'), `api.fixed.test=${FIXED}`);
    assert.equal(resolve('A.b.Fixed.test.'), `a.b.fixed.test=${FIXED}`, 'the name asked, lowercased (Istio)');
    assert.equal(resolve('fixed.test'), 'upstream');
    assert.equal(resolve('api.fixed.test.default.svc.cluster.local'), `CNAME *.fixed.test *.fixed.test=${FIXED}`);
    assert.equal(resolve('x.dyn.test'), `x.dyn.test=${DYN}`);
  });

  test('wildcard hosts without addresses (NONE, DYNAMIC_DNS) are not answered, auto-allocation on or not', () => {
    assert.equal(resolve('a.none.test'), 'upstream');
    assert.equal(resolve('a.cdn.test'), 'upstream');
    assert.equal(resolve('a.cdn.test.default.svc.cluster.local'), 'upstream');
  });

  test('ExternalName Services are not answered, alias or not: upstream (kube-dns) answers their CNAME', () => {
    assert.equal(resolve('reviews'), 'reviews=10.96.0.20');
    for (const name of ['reviews-alias', 'reviews-alias.default', 'reviews-alias.default.svc', 'reviews-alias.default.svc.cluster.local', 'payments', 'payments.default.svc.cluster.local']) {
      assert.equal(resolve(name), 'upstream', name);
    }
  });

  test('TLS and TCP to the address answered for a NONE wildcard go to that original destination', async () => {
    assert.equal(await connectAsIfTo(FIXED, P.tls, tlsClientHello('api.fixed.test')), 'fixed got 22');
    // A TCP port is relayed at once, with no protocol detection: the server speaks first, well
    // before the detection timeout (4 s) would have ended.
    const start = Date.now();
    assert.equal(await connectAsIfTo(FIXED, P.tcp, null), 'fixed hello');
    assert.ok(Date.now() - start < 3000, `took ${Date.now() - start} ms`);
    assert.deepEqual(opened.splice(0), [`outbound|${P.tls}||*.fixed.test ${FIXED}:${P.tls}`, `outbound|${P.tcp}||*.fixed.test ${FIXED}:${P.tcp}`]);
  });

  test('TLS to the address answered for a DYNAMIC_DNS wildcard goes to the SNI name, never to the address', async () => {
    // The SNI name does not resolve: the connection is closed without reaching the address.
    assert.equal(await connectAsIfTo(DYN, P.dyn, tlsClientHello('nothing.dyn.test')), '');
    assert.deepEqual(opened.splice(0), [`outbound|${P.dyn}||*.dyn.test nothing.dyn.test:${P.dyn}`]);
    // No SNI, or one the host does not cover: no filter chain of the host's; Istio's passthrough chain
    // (ALLOW_ANY) relays it to the original destination, the address itself.
    assert.equal(await connectAsIfTo(DYN, P.dyn, Buffer.from('plain bytes\r\n')), 'dyn address reached');
    assert.equal(await connectAsIfTo(DYN, P.dyn, tlsClientHello('www.example.net')), 'dyn address reached');
    assert.deepEqual(opened.splice(0), [`PassthroughCluster ${DYN}:${P.dyn}`, `PassthroughCluster ${DYN}:${P.dyn}`]);
  });

  test('REGISTRY_ONLY: TLS to a DYNAMIC_DNS wildcard address without an SNI the host covers is closed, the address never dialled', async () => {
    const ir = r0;
    handler.apply({ ...ir, version: 'registry-only', sidecar: { ...ir.sidecar!, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
    try {
      assert.equal(await connectAsIfTo(DYN, P.dyn, Buffer.from('plain bytes\r\n')), '');
      assert.equal(await connectAsIfTo(DYN, P.dyn, tlsClientHello('www.example.net')), '');
      assert.deepEqual(opened.splice(0), ['BlackHoleCluster null', 'BlackHoleCluster null']);
      // The host's own names still go to the SNI name.
      assert.equal(await connectAsIfTo(DYN, P.dyn, tlsClientHello('nothing.dyn.test')), '');
      assert.deepEqual(opened.splice(0), [`outbound|${P.dyn}||*.dyn.test nothing.dyn.test:${P.dyn}`]);
    } finally {
      handler.apply(r0);
    }
  });
});
