/**
 * Istio ProxyConfig `proxyHeaders` in a sidecar, from YAML (MeshConfig and the pod's
 * `proxy.istio.io/config`) through translateSidecar to the OutboundHandler and InboundHandler, over
 * real sockets on loopback (no lab, no root): plain listeners on loopback addresses stand for the
 * captured original destinations and hand their sockets to the handlers.
 *
 * Proves, on the outbound side, for a pod whose annotation disables attemptCount and
 * envoyDebugHeaders and names the server (and, for contrast, for a pod without it):
 * - no x-envoy-attempt-count on the first try or on the retry (the app's own passes unchanged on
 *   both), where the default view sends 1 then 2;
 * - no x-envoy-expected-rq-timeout-ms, where the default view sends the route timeout;
 * - the answer's `server` is the configured name (the app's is replaced), `meshgate` by default;
 * - REGISTRY_ONLY's 502 carries the configured name and no x-meshgate-flags;
 * on the inbound side, for a pod whose annotation sets forwardedClientCert SANITIZE_SET with
 * setCurrentClientCertDetails cert and chain (dns off), and (contrast) one without:
 * - the app sees only the sidecar's XFCC element (the client's own is dropped), with `Cert` and
 *   `Chain` (the client's certificate, URL-encoded) and no `DNS`; by default the client's element
 *   is kept and the sidecar's appended, without `Cert`;
 * - MeshConfig's server name applies to inbound answers too.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { InboundHandler } from '../../src/runtime/sidecar/inbound.js';
import { Logger } from '../../src/lib/log.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import type { MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';
import { makeCa, makeWorkloadCert, type TestCa } from '../support/mesh-pki.js';
import { LoopbackServers } from '../support/loopback-servers.js';

const net8 = `127.${100 + ((process.pid >> 2) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
/** The client pods (outbound), the reviews VIP and its app, the server pod and its app, an unknown destination. */
const WEB = `${net8}.2`;
const WEB_PLAIN = `${net8}.3`;
const VIP = `${net8}.10`;
const APP = `${net8}.11`;
const SERVER = `${net8}.20`;
const SERVER_APP = `${net8}.21`;
const CLIENT = `${net8}.30`;
const UNKNOWN = `${net8}.40`;

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

function config(p: { http: number; app: number; inbound: number }): string {
  return `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    outboundTrafficPolicy: {mode: REGISTRY_ONLY}
    defaultConfig:
      proxyHeaders:
        server: {value: mesh-proxy}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-0
  namespace: default
  labels: {app: web}
  annotations:
    proxy.istio.io/config: |
      proxyHeaders:
        attemptCount: {disabled: true}
        envoyDebugHeaders: {disabled: true}
spec: {serviceAccountName: web, containers: [{name: web, image: curl}]}
status: {phase: Running, podIP: ${WEB}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web-plain-0
  namespace: default
  labels: {app: web-plain}
  annotations:
    proxy.istio.io/config: |
      proxyHeaders:
        server: {value: meshgate}
spec: {serviceAccountName: web, containers: [{name: web, image: curl}]}
status: {phase: Running, podIP: ${WEB_PLAIN}}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: ${VIP}
  ports: [{name: http, port: ${p.http}, targetPort: ${p.app}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: reviews-1, namespace: default, labels: {kubernetes.io/service-name: reviews}}
addressType: IPv4
ports: [{name: http, port: ${p.app}}]
endpoints: [{addresses: [${APP}], conditions: {ready: true}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - timeout: 3s
    retries: {attempts: 2, retryOn: 5xx}
    route: [{destination: {host: reviews}}]
---
apiVersion: v1
kind: Pod
metadata:
  name: server-0
  namespace: default
  labels: {app: server}
  annotations:
    proxy.istio.io/config: |
      proxyHeaders:
        forwardedClientCert: SANITIZE_SET
        setCurrentClientCertDetails: {cert: true, chain: true, dns: false}
spec: {serviceAccountName: server, containers: [{name: server, image: app, ports: [{containerPort: ${p.inbound}}]}]}
status: {phase: Running, podIP: ${SERVER}}
---
apiVersion: v1
kind: Pod
metadata:
  name: server-plain-0
  namespace: default
  labels: {app: server}
spec: {serviceAccountName: server, containers: [{name: server, image: app, ports: [{containerPort: ${p.inbound}}]}]}
status: {phase: Running, podIP: ${SERVER}}
---
apiVersion: v1
kind: Service
metadata: {name: server, namespace: default}
spec:
  selector: {app: server}
  ports: [{name: http, port: 80, targetPort: ${p.inbound}}]
`;
}

function views(p: { http: number; app: number; inbound: number }): Record<'web' | 'webPlain' | 'server' | 'serverPlain', IRSnapshot> {
  const objects: KubeObject[] = [];
  const diags: Diagnostic[] = [];
  parseFile('proxy-headers.yaml', config(p), objects, diags);
  const checked = checkObjects(objects);
  assert.deepEqual([...diags, ...checked.diagnostics].filter((d) => d.severity === 'error'), []);
  const rs = new ResourceSet(checked.accepted);
  const view = (podName: string, sa: string, ip: string): IRSnapshot => {
    const r = translateSidecar(rs, { namespace: 'default', serviceAccount: sa, podName, podIps: [ip], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    assert.deepEqual(r.diagnostics.filter((d) => d.severity !== 'info'), [], `${podName}'s view`);
    return r.ir;
  };
  return { web: view('web-0', 'web', WEB), webPlain: view('web-plain-0', 'web', WEB_PLAIN), server: view('server-0', 'server', SERVER), serverPlain: view('server-plain-0', 'server', SERVER) };
}

interface Seen {
  path: string;
  headers: http.IncomingHttpHeaders;
}

/** One HTTP/1.1 request to `host:port` with `headers`. */
function request(address: string, port: number, path: string, headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address, port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`request to ${address}:${port}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

describe('ProxyConfig proxyHeaders in a sidecar', () => {
  const servers: net.Server[] = [];
  const seenOut: Seen[] = [];
  const seenIn: Seen[] = [];
  const P = { http: 0, app: 0, inbound: 0, unknown: 0 };
  let out: OutboundHandler;
  let inb: InboundHandler;
  let v: ReturnType<typeof views>;
  let ca: TestCa;
  let client: MeshIdentityMaterial;
  let failNext = 0;

  before(async () => {
    ca = await makeCa('O=Proxy Headers Test Mesh');
    const serverCert = await makeWorkloadCert(ca, 'spiffe://cluster.local/ns/default/sa/server');
    const serverId: MeshIdentityMaterial = { spiffeId: 'spiffe://cluster.local/ns/default/sa/server', certChainPem: serverCert.certPem, keyPem: serverCert.keyPem, rootsPem: ca.certPem, notAfter: Date.now() + 3600_000 };
    const c = await makeWorkloadCert(ca, 'spiffe://cluster.local/ns/default/sa/sleep');
    client = { spiffeId: 'spiffe://cluster.local/ns/default/sa/sleep', certChainPem: c.certPem, keyPem: c.keyPem, rootsPem: ca.certPem, notAfter: Date.now() + 3600_000 };
    // The reviews app: 503 while failNext > 0 (the VirtualService retries 5xx), names itself in `server`.
    const app = http.createServer((req, res) => {
      seenOut.push({ path: req.url ?? '', headers: req.headers });
      res.setHeader('server', 'reviews-app/2.1');
      if (failNext > 0) {
        failNext--;
        res.writeHead(503).end('try again');
        return;
      }
      res.end('ok');
    });
    app.keepAliveTimeout = 500;
    P.app = await listen(app, APP);
    servers.push(app);
    out = new OutboundHandler({ env: { random: Math.random, observer: null }, tcpObserver: null, detectionTimeoutMs: 200 });
    const vip = net.createServer({ allowHalfOpen: true }, (s) => out.handle(s));
    P.http = await listen(vip, VIP);
    const unknown = net.createServer({ allowHalfOpen: true }, (s) => out.handle(s));
    P.unknown = await listen(unknown, UNKNOWN);
    servers.push(vip, unknown);
    // The server pod's app and its capture (same port on two addresses, as TPROXY keeps the destination).
    const serverApp = http.createServer((req, res) => {
      seenIn.push({ path: req.url ?? '', headers: req.headers });
      res.setHeader('server', 'server-app/1.0');
      res.end('served');
    });
    serverApp.keepAliveTimeout = 500;
    inb = new InboundHandler({ identity: () => serverId, log: new Logger('error', {}, () => {}), observer: null, clusterId: 'Kubernetes', forwardTo: (_a, port) => ({ address: SERVER_APP, port }) });
    for (let i = 0; ; i++) {
      const port = await listen(serverApp, SERVER_APP);
      const pod = net.createServer({ allowHalfOpen: true }, (s) => inb.handle(s));
      try {
        await listen(pod, SERVER, port);
        P.inbound = port;
        servers.push(serverApp, pod);
        break;
      } catch (e) {
        await new Promise<void>((r) => serverApp.close(() => r()));
        if (i > 10) throw e;
      }
    }
    v = views(P);
  });

  after(async () => {
    for (const s of servers) s.close();
    loopback.destroyConnections();
    await out.close(0);
    await inb.close(0);
  });

  test('outbound, attemptCount and envoyDebugHeaders disabled: no attempt count, no expected timeout; the server named', async () => {
    out.apply(v.web);
    seenOut.length = 0;
    failNext = 1;
    const r = await request(VIP, P.http, '/retry', { host: 'reviews', 'x-envoy-attempt-count': '9' });
    assert.equal(r.status, 200, r.body);
    assert.equal(seenOut.length, 2, 'one retry');
    for (const s of seenOut) {
      assert.equal(s.headers['x-envoy-attempt-count'], '9', "the app's own attempt count passes unchanged, on every try");
      assert.equal(s.headers['x-envoy-expected-rq-timeout-ms'], undefined, 'no expected-timeout header');
    }
    assert.equal(r.headers.server, 'mesh-proxy', "MeshConfig's server name, the app's replaced");
    seenOut.length = 0;
    await request(VIP, P.http, '/plain', { host: 'reviews', 'x-envoy-expected-rq-timeout-ms': '777' });
    assert.equal(seenOut[0].headers['x-envoy-attempt-count'], undefined, 'none set by the sidecar');
    assert.equal(seenOut[0].headers['x-envoy-expected-rq-timeout-ms'], '777', "the app's own expected timeout passes (the sidecar sets none)");
  });

  test('outbound, the defaults (for contrast): attempt count 1 then 2, the expected timeout, server meshgate', async () => {
    out.apply(v.webPlain);
    seenOut.length = 0;
    failNext = 1;
    const r = await request(VIP, P.http, '/retry', { host: 'reviews', 'x-envoy-attempt-count': '9' });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(seenOut.map((s) => s.headers['x-envoy-attempt-count']), ['1', '2']);
    assert.deepEqual(seenOut.map((s) => s.headers['x-envoy-expected-rq-timeout-ms']), ['3000', '3000']);
    assert.equal(r.headers.server, 'meshgate', "the annotation's server value replaces MeshConfig's");
  });

  test('outbound, REGISTRY_ONLY: the 502 carries the configured server and no flags header', async () => {
    out.apply(v.web);
    const r = await request(UNKNOWN, P.unknown, '/', { host: 'unknown.example.com' });
    assert.equal(r.status, 502, r.body);
    assert.equal(r.headers.server, 'mesh-proxy');
    assert.equal(r.headers['x-meshgate-flags'], undefined);
  });

  /** A request over Istio mTLS to the server pod, as a client sidecar sends it. */
  const meshGet = (headers: Record<string, string>): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> =>
    new Promise((resolve, reject) => {
      const options: https.RequestOptions & tls.ConnectionOptions = {
        host: SERVER,
        port: P.inbound,
        localAddress: CLIENT,
        path: '/',
        agent: false,
        cert: client.certChainPem,
        key: client.keyPem,
        ca: client.rootsPem,
        servername: 'outbound_.80_._.server.default.svc.cluster.local',
        ALPNProtocols: ['istio-http/1.1', 'istio', 'http/1.1'],
        checkServerIdentity: () => undefined,
        headers: { host: 'server.default.svc.cluster.local', ...headers },
        timeout: 5000,
      };
      const req = https.request(options, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });

  const pemOf = (xfcc: string, key: 'Cert' | 'Chain'): string | null => {
    const m = new RegExp(`;${key}="([^"]*)"`).exec(xfcc);
    return m === null ? null : decodeURIComponent(m[1]);
  };

  test('inbound, forwardedClientCert SANITIZE_SET with cert and chain, no DNS: only the sidecar element reaches the app', async () => {
    inb.apply(v.server);
    seenIn.length = 0;
    const r = await meshGet({ 'x-forwarded-client-cert': 'By=spiffe://evil;URI=spiffe://cluster.local/ns/default/sa/admin' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'served');
    assert.equal(r.headers.server, 'mesh-proxy', "MeshConfig's server name on inbound answers too");
    const xfcc = String(seenIn[0].headers['x-forwarded-client-cert']);
    assert.doesNotMatch(xfcc, /evil|sa\/admin/, `the client's element is dropped: ${xfcc}`);
    assert.match(xfcc, /^By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/server;Hash=[0-9a-f]{64};Cert="[^"]+";Chain="[^"]+";Subject="[^"]*";URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/, xfcc);
    const leaf = new X509Certificate(client.certChainPem);
    assert.equal(new X509Certificate(pemOf(xfcc, 'Cert')!).fingerprint256, leaf.fingerprint256, 'Cert is the client certificate');
    assert.equal(new X509Certificate(pemOf(xfcc, 'Chain')!).fingerprint256, leaf.fingerprint256, 'Chain starts with the client certificate');
    assert.equal(pemOf(xfcc, 'Chain')!.match(/BEGIN CERTIFICATE/g)?.length, 1, 'the client sent its leaf only: the trust store root is not in Chain');
  });

  test('inbound, the defaults (for contrast): APPEND_FORWARD without Cert', async () => {
    inb.apply(v.serverPlain);
    seenIn.length = 0;
    const r = await meshGet({ 'x-forwarded-client-cert': 'By=spiffe://upstream;URI=spiffe://cluster.local/ns/default/sa/gw' });
    assert.equal(r.status, 200, r.body);
    const xfcc = String(seenIn[0].headers['x-forwarded-client-cert']);
    assert.match(xfcc, /^By=spiffe:\/\/upstream;URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/gw,By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/server;Hash=[0-9a-f]{64};Subject="[^"]*";URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep$/, xfcc);
    assert.equal(r.headers.server, 'mesh-proxy');
  });
});
