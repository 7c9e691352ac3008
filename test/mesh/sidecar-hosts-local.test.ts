/**
 * Services reached by name on the sidecar's outbound side (translateSidecar then OutboundHandler,
 * over real sockets on loopback, no lab): a plain listener on a loopback address stands for the
 * original destination (TPROXY keeps it) and hands every accepted socket to the handler.
 *
 * Proves:
 * - an ExternalName Service (`payments` -> `localhost`) is served by Host on its port's table, its
 *   VirtualService (header) applied, and reaches the external name on the service port;
 * - a wildcard ServiceEntry host (`*.example.com`, resolution NONE) is served by Host with its
 *   VirtualService (header) and forwarded to the original destination; the exact host
 *   `api.example.com` goes to its own endpoint with its own VirtualService (exact before wildcard);
 * - an ExternalName naming a host the mesh knows (`shop-api` -> `api.example.com`) is its alias: its
 *   requests are routed as that host's (its VirtualService, its endpoint);
 * - a TCP port of an ExternalName (server-first protocol) is relayed to the external name;
 * - DYNAMIC_DNS (`*.invalid`): the request goes to the Host asked for, not the original destination
 *   (a name that does not resolve: 503);
 * - TLS to a wildcard host (NONE) is relayed by SNI to the original destination;
 * - with REGISTRY_ONLY a wildcard host is still served while another Host gets 502.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import http from 'node:http';
import net from 'node:net';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { hostOnlyServices, matchWildcard, wildcardTarget } from '../../src/runtime/sidecar/wildcard-hosts.js';
import type { OutboundService } from '../../src/ir/types.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { LoopbackServers, tlsClientHello, viaCapture as throughCapture } from '../support/loopback-servers.js';

const net8 = `127.${100 + ((process.pid >> 3) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
const ORIG = `${net8}.20`;
const EXACT = `${net8}.21`;
const CLIENT_SIDE = `${net8}.22`;

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

function config(p: { web: number; pay: number; dyn: number; tls: number; db: number }): string {
  return `
apiVersion: v1
kind: Pod
metadata: {name: sleep-1, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: curl}]}
status: {phase: Running, podIP: ${CLIENT_SIDE}}
---
apiVersion: v1
kind: Service
metadata: {name: payments, namespace: default}
spec: {type: ExternalName, externalName: localhost, ports: [{name: http, port: ${p.pay}}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments, namespace: default}
spec:
  hosts: [payments]
  http:
  - headers: {request: {set: {x-via: external-name}}}
    route: [{destination: {host: payments}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any, namespace: default}
spec:
  hosts: ["*.example.com"]
  resolution: NONE
  ports: [{number: ${p.web}, name: http, protocol: HTTP}, {number: ${p.tls}, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: default}
spec:
  hosts: [api.example.com]
  resolution: STATIC
  ports: [{number: ${p.web}, name: http, protocol: HTTP}]
  endpoints: [{address: ${EXACT}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: default, creationTimestamp: "2025-01-01T00:00:00Z"}
spec:
  hosts: [api.example.com]
  http:
  - headers: {request: {set: {x-via: exact}}}
    route: [{destination: {host: api.example.com}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: any, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  hosts: ["*.example.com"]
  http:
  - headers: {request: {set: {x-via: wildcard}}}
    route: [{destination: {host: "*.example.com", port: {number: ${p.web}}}}]
---
apiVersion: v1
kind: Service
metadata: {name: warehouse-db, namespace: default}
spec: {type: ExternalName, externalName: localhost, ports: [{name: tcp-db, port: ${p.db}}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop-api, namespace: default}
spec: {type: ExternalName, externalName: api.example.com}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dyn, namespace: default}
spec:
  hosts: ["*.invalid"]
  resolution: DYNAMIC_DNS
  ports: [{number: ${p.dyn}, name: http, protocol: HTTP}]
`;
}

describe('sidecar outbound: ExternalName Services and wildcard ServiceEntry hosts', () => {
  const servers: net.Server[] = [];
  let handler: OutboundHandler;
  let ir: import('../../src/ir/types.js').IRSnapshot;
  const P = { web: 0, pay: 0, dyn: 0, tls: 0, db: 0 };
  const app = (who: string) =>
    http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ who, host: req.headers.host, via: req.headers['x-via'] ?? null }));
    });

  before(async () => {
    handler = new OutboundHandler({ env: { random: Math.random, observer: null }, tcpObserver: null, detectionTimeoutMs: 200 });
    const capture = (): net.Server => net.createServer({ allowHalfOpen: true }, (s) => handler.handle(s));
    // The original destination of wildcard traffic is a real server; the sidecar's capture sits on another address.
    const orig = app('original');
    P.web = await listen(orig, ORIG);
    servers.push(orig);
    const exact = app('exact');
    await listen(exact, EXACT, P.web);
    servers.push(exact);
    // ExternalName `localhost` on the service port: the external app is on 127.0.0.1.
    const ext = app('external');
    P.pay = await listen(ext, '127.0.0.1');
    servers.push(ext);
    // Captured destinations: payments' (any address, here CLIENT_SIDE), the dynamic port, the TLS one.
    const payCap = capture();
    await listen(payCap, CLIENT_SIDE, P.pay);
    const dynCap = capture();
    P.dyn = await listen(dynCap, CLIENT_SIDE);
    servers.push(payCap, dynCap);
    // TLS: the "original destination" is a raw server that answers the first bytes it gets.
    const tlsOrig = net.createServer((s) => {
      s.once('data', (b: Buffer) => s.end(`got ${b[0]}`));
      s.on('error', () => {});
    });
    P.tls = await listen(tlsOrig, ORIG);
    servers.push(tlsOrig);
    // A TCP ExternalName: a server-first database on localhost, reached through Istio's 0.0.0.0_<port> relay.
    const db = net.createServer((c) => {
      c.end('db hello\n');
      c.on('error', () => {});
    });
    P.db = await listen(db, '127.0.0.1');
    const dbCap = capture();
    await listen(dbCap, CLIENT_SIDE, P.db);
    servers.push(db, dbCap);
    const objects: KubeObject[] = [];
    const diags: Diagnostic[] = [];
    parseFile('hosts.yaml', config(P), objects, diags);
    const checked = checkObjects(objects);
    const r = translateSidecar(new ResourceSet(checked.accepted), { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', podIps: [CLIENT_SIDE], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    handler.apply(r.ir);
    ir = r.ir;
  });

  after(async () => {
    for (const s of servers) s.close();
    loopback.destroyConnections();
    await handler.close(0);
  });

  /** A request through a capture listener at `dest:port` (its own address is the original destination). */
  async function viaCapture(dest: string, port: number, host: string): Promise<{ status: number; body: string }> {
    return fetchRaw(dest, port, host);
  }

  /** A request whose original destination is `orig` while the app listens there (what TPROXY gives the sidecar). */
  const asIfTo = <T>(orig: { address: string; port: number }, send: (port: number) => Promise<T>): Promise<T> => throughCapture(loopback, CLIENT_SIDE, (s) => handler.handle(s), orig.address, orig.port, send);

  test('wildcard host (NONE): by Host with its VirtualService, to the original destination; the exact host first', async () => {
    const r = (await asIfTo({ address: ORIG, port: P.web }, (port) => fetchRaw(CLIENT_SIDE, port, `www.example.com:${P.web}`))) as { status: number; body: string };
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { who: 'original', host: `www.example.com:${P.web}`, via: 'wildcard' });
    const e = (await asIfTo({ address: ORIG, port: P.web }, (port) => fetchRaw(CLIENT_SIDE, port, 'api.example.com'))) as { status: number; body: string };
    assert.equal(e.status, 200, e.body);
    assert.deepEqual(JSON.parse(e.body), { who: 'exact', host: 'api.example.com', via: 'exact' });
  });

  test('ExternalName naming a mesh host: an alias, routed as that host', async () => {
    const r = (await asIfTo({ address: ORIG, port: P.web }, (port) => fetchRaw(CLIENT_SIDE, port, 'shop-api.default.svc.cluster.local'))) as { status: number; body: string };
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { who: 'exact', host: 'shop-api.default.svc.cluster.local', via: 'exact' });
  });

  test('ExternalName TCP port: a server-first connection is relayed to the external name', async () => {
    const got = await new Promise<string>((resolve, reject) => {
      const c = net.connect({ host: CLIENT_SIDE, port: P.db });
      let out = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => (out += d));
      c.on('close', () => resolve(out));
      c.on('error', reject);
      c.setTimeout(10_000, () => c.destroy(new Error('timeout')));
    });
    assert.equal(got, 'db hello\n');
  });

  test('REGISTRY_ONLY: the wildcard host is in the registry, another Host is not (502)', async () => {
    handler.apply({ ...ir, version: 'registry-only', sidecar: { ...ir.sidecar!, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
    try {
      const ok = (await asIfTo({ address: ORIG, port: P.web }, (port) => fetchRaw(CLIENT_SIDE, port, 'www.example.com'))) as { status: number; body: string };
      assert.equal(ok.status, 200, ok.body);
      assert.equal(JSON.parse(ok.body).via, 'wildcard');
      const blocked = (await asIfTo({ address: ORIG, port: P.web }, (port) => fetchRaw(CLIENT_SIDE, port, 'www.example.org'))) as { status: number; body: string };
      assert.equal(blocked.status, 502);
    } finally {
      handler.apply(ir);
    }
  });

  test('wildcard host (NONE), TLS: relayed by SNI to the original destination', async () => {
    const hello = tlsClientHello('svc.example.com');
    const got = (await asIfTo({ address: ORIG, port: P.tls }, (port) =>
      new Promise<string>((resolve, reject) => {
        const c = net.connect({ host: CLIENT_SIDE, port }, () => c.write(hello));
        let out = '';
        c.setEncoding('utf8');
        c.on('data', (d: string) => (out += d));
        c.on('close', () => resolve(out));
        c.on('error', reject);
        c.setTimeout(10_000, () => c.destroy(new Error('timeout')));
      }))) as string;
    assert.equal(got, 'got 22');
  });

  async function fetchRaw(address: string, port: number, host: string): Promise<{ status: number; body: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: address, port, path: '/', headers: { host }, agent: false, timeout: 10_000 }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  test('ExternalName: served by Host with its VirtualService, to the external name on the service port', async () => {
    const r = await viaCapture(CLIENT_SIDE, P.pay, `payments.default.svc.cluster.local:${P.pay}`);
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { who: 'external', host: `payments.default.svc.cluster.local:${P.pay}`, via: 'external-name' });
    const short = await viaCapture(CLIENT_SIDE, P.pay, 'payments');
    assert.equal(JSON.parse(short.body).via, 'external-name');
  });

  test('DYNAMIC_DNS: forwarded to the Host asked for, never the original destination', async () => {
    const r = await viaCapture(CLIENT_SIDE, P.dyn, `nothing.invalid:${P.dyn}`);
    assert.equal(r.status, 503, r.body);
    assert.deepEqual(wildcardTarget({ host: '*.x.io', namespace: 'd', port: 80, protocol: 'HTTP', addresses: [], httpRoutes: 't', tcpRoutes: null, forward: 'dynamic-dns' }, 'a.x.io:8443', '10.0.0.1', 80), { address: 'a.x.io', port: 8443 });
    assert.deepEqual(wildcardTarget({ host: '*.x.io', namespace: 'd', port: 80, protocol: 'HTTP', addresses: [], httpRoutes: 't', tcpRoutes: null, forward: 'dynamic-dns' }, 'a.x.io', '10.0.0.1', 80), { address: 'a.x.io', port: 80 });
    assert.deepEqual(wildcardTarget({ host: '*.x.io', namespace: 'd', port: 80, protocol: 'HTTP', addresses: [], httpRoutes: 't', tcpRoutes: null, forward: 'original-dst' }, 'a.x.io', '10.0.0.1', 81), { address: '10.0.0.1', port: 81 });
  });
});

test('TLS by SNI on a port: the exact host first, then the longest wildcard; TCP catch-all only for address-less TCP services', () => {
  const svc = (host: string, protocol: OutboundService['protocol'], addresses: string[] = []): OutboundService => ({ host, namespace: 'd', port: 443, protocol, addresses, httpRoutes: null, tcpRoutes: `outbound_443_tcp_${host}`, ...(host.startsWith('*.') ? { forward: 'original-dst' as const } : {}) });
  const { wildcardTls, addresslessTcp } = hostOnlyServices([svc('*.example.com', 'TLS'), svc('*.api.example.com', 'TLS'), svc('api.example.com', 'TLS'), svc('vip.example.com', 'TLS', ['10.0.0.1']), svc('db.example.com', 'TCP')]);
  const list = wildcardTls.get(443);
  assert.equal(matchWildcard(list, 'api.example.com')?.host, 'api.example.com');
  assert.equal(matchWildcard(list, 'v1.api.example.com')?.host, '*.api.example.com');
  assert.equal(matchWildcard(list, 'www.example.com.')?.host, '*.example.com');
  assert.equal(matchWildcard(list, 'example.com'), undefined);
  assert.equal(matchWildcard(list, 'vip.example.com')?.host, '*.example.com');
  assert.equal(addresslessTcp.get(443)?.host, 'db.example.com');
});
