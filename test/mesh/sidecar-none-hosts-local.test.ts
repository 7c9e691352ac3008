/**
 * Exact ServiceEntry hosts with resolution NONE and no endpoints on the sidecar's outbound side
 * (translateSidecar then OutboundHandler, real TLS, TCP and HTTP clients and servers on loopback; a
 * plain listener stands for the capture and presents each socket with the original destination).
 *
 * Istio gives a sidecar an ORIGINAL_DST cluster for resolution NONE (pilot cluster.go
 * convertResolution: Passthrough), so such a host's connections go to the address the app dialled,
 * never to the host name resolved again. Proved, with names that resolve nowhere:
 * - `legacy.none.test` with `addresses`: TLS to its address (any SNI) and TCP to it reach that
 *   address; its VirtualService's `tls` route by SNI sends one name to another ServiceEntry;
 * - `web.none.test` without addresses, HTTP by Host on its port: the original destination, with its
 *   VirtualService's header edit; REGISTRY_ONLY still serves it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
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
import { generatePkiSync } from '../support/x509-gen.js';
import { LoopbackServers, sniEchoServer, viaCapture, greetingServer } from '../support/loopback-servers.js';

const net8 = `127.${100 + ((process.pid >> 3) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
/** legacy.none.test's address: its servers (the original destination). */
const LEGACY = `${net8}.50`;
/** Where the app dialled web.none.test (what its DNS said). */
const WEB = `${net8}.51`;
/** The endpoint of ServiceEntry vault.none.test (STATIC). */
const VAULT = `${net8}.52`;
const CLIENT_SIDE = `${net8}.53`;

const pki = generatePkiSync([{ name: 'server', cn: 'backends', dns: ['legacy.none.test', '*.none.test'], key: 'ec' }]);
const CERT = pki.certs.server;

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

const tlsBackend = (who: string): tls.Server => sniEchoServer(CERT, who);

describe('sidecar outbound: exact ServiceEntry hosts with resolution NONE reach the original destination', () => {
  const servers: net.Server[] = [];
  let handler: OutboundHandler;
  let ir: IRSnapshot;
  const P = { tls: 0, tcp: 0, http: 0 };

  before(async () => {
    handler = new OutboundHandler({ env: { random: Math.random, observer: null }, tcpObserver: null, detectionTimeoutMs: 300 });
    const legacyTls = tlsBackend('legacy');
    P.tls = await listen(legacyTls, LEGACY);
    const vault = tlsBackend('vault');
    await listen(vault, VAULT, P.tls);
    const legacyTcp = greetingServer('legacy-tcp\n');
    P.tcp = await listen(legacyTcp, LEGACY);
    const web = http.createServer((req, res) => res.end(`web host=${req.headers.host} via=${req.headers['x-via'] ?? '-'}`));
    P.http = await listen(web, WEB);
    servers.push(legacyTls, vault, legacyTcp, web);
    const yaml = `
apiVersion: v1
kind: Pod
metadata: {name: sleep-1, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: curl}]}
status: {phase: Running, podIP: ${CLIENT_SIDE}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.none.test]
  addresses: [${LEGACY}]
  resolution: NONE
  ports: [{number: ${P.tls}, name: tls, protocol: TLS}, {number: ${P.tcp}, name: tcp, protocol: TCP}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vault, namespace: default}
spec:
  hosts: [vault.none.test]
  resolution: STATIC
  ports: [{number: ${P.tls}, name: tls, protocol: TLS}]
  endpoints: [{address: ${VAULT}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: legacy, namespace: default}
spec:
  hosts: [legacy.none.test]
  tls:
  - match: [{sniHosts: [secret.none.test]}]
    route: [{destination: {host: vault.none.test, port: {number: ${P.tls}}}}]
  - match: [{sniHosts: ["*"]}]
    route: [{destination: {host: legacy.none.test, port: {number: ${P.tls}}}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web, namespace: default}
spec:
  hosts: [web.none.test]
  resolution: NONE
  ports: [{number: ${P.http}, name: http, protocol: HTTP}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: default}
spec:
  hosts: [web.none.test]
  http:
  - headers: {request: {set: {x-via: web-vs}}}
    route: [{destination: {host: web.none.test}}]
`;
    const objects: KubeObject[] = [];
    const diags: Diagnostic[] = [];
    parseFile('none-hosts.yaml', yaml, objects, diags);
    const checked = checkObjects(objects);
    const r = translateSidecar(new ResourceSet(checked.accepted), { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', podIps: [CLIENT_SIDE], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    assert.deepEqual([...diags, ...checked.diagnostics, ...r.diagnostics].filter((d) => d.severity !== 'info'), []);
    ir = r.ir;
    handler.apply(ir);
  });

  after(async () => {
    for (const s of servers) s.close();
    loopback.destroyConnections();
    await handler.close(0);
  });

  const asIfTo = <T>(address: string, port: number, send: (capPort: number) => Promise<T>): Promise<T> => viaCapture(loopback, CLIENT_SIDE, (s) => handler.handle(s), address, port, send);

  const tlsTo = (address: string, port: number, sni: string): Promise<string> =>
    asIfTo(address, port, (p) => new Promise((resolve, reject) => {
      const c = tls.connect({ host: CLIENT_SIDE, port: p, servername: sni, ca: CERT.cert });
      let out = '';
      let secure = false;
      c.setEncoding('utf8');
      c.once('secureConnect', () => (secure = true));
      c.on('data', (d: string) => (out += d));
      c.on('close', () => resolve(secure ? out : `closed: ${out}`));
      c.on('error', (err: NodeJS.ErrnoException) => (secure ? reject(err) : resolve(`closed: ${err.code ?? err.message}`)));
      c.setTimeout(10_000, () => c.destroy(new Error(`no answer for ${sni} within 10 s`)));
    }));

  /** Raw bytes out, everything read back (the body for HTTP). */
  const rawTo = (address: string, port: number, send: string): Promise<string> =>
    asIfTo(address, port, (p) => new Promise((resolve, reject) => {
      const c = net.connect({ host: CLIENT_SIDE, port: p }, () => {
        if (send !== '') c.write(send);
      });
      let out = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => (out += d));
      c.on('close', () => resolve(out));
      c.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(out) : reject(err)));
      c.setTimeout(10_000, () => c.destroy(new Error('no answer within 10 s')));
    }));

  const httpGet = (): Promise<string> =>
    rawTo(WEB, P.http, `GET / HTTP/1.1\r\nhost: web.none.test:${P.http}\r\nconnection: close\r\n\r\n`).then((r) => r.slice(r.indexOf('\r\n\r\n') + 4));

  test('the host\'s clusters have no endpoints: each connection\'s is its original destination', () => {
    const clusters = ir.clusters.filter((c) => c.service.host === 'legacy.none.test' || c.service.host === 'web.none.test');
    assert.deepEqual(clusters.map((c) => [c.name, c.endpoints.length]).sort(), [[`outbound|${P.http}||web.none.test`, 0], [`outbound|${P.tcp}||legacy.none.test`, 0], [`outbound|${P.tls}||legacy.none.test`, 0]].sort());
  });

  test('TLS and TCP to the host\'s address reach that address; a tls route by SNI goes to another ServiceEntry', async () => {
    assert.equal(await tlsTo(LEGACY, P.tls, 'legacy.none.test'), 'legacy legacy.none.test');
    assert.equal(await tlsTo(LEGACY, P.tls, 'secret.none.test'), 'vault secret.none.test');
    assert.equal(await rawTo(LEGACY, P.tcp, ''), 'legacy-tcp\n');
  });

  test('HTTP by Host to a host without addresses: the original destination, with its VirtualService; REGISTRY_ONLY serves it too', async () => {
    assert.equal(await httpGet(), `web host=web.none.test:${P.http} via=web-vs`);
    handler.apply({ ...ir, version: 'registry-only', sidecar: { ...ir.sidecar!, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
    try {
      assert.equal(await httpGet(), `web host=web.none.test:${P.http} via=web-vs`);
    } finally {
      handler.apply(ir);
    }
  });
});
