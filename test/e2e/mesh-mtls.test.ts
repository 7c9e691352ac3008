/**
 * The gateway as a mesh client (`meshgate run --control ...`) against meshed backends: real TLS
 * servers that demand Istio's ALPN and a client certificate from the mesh CA, as an Istio sidecar's
 * inbound does. Proves: the workload certificate is obtained from the control plane; DestinationRule
 * ISTIO_MUTUAL and auto mTLS (Pods labelled security.istio.io/tlsMode: istio) send Istio's SNI and
 * ALPN with the gateway's SPIFFE ID; a server with the wrong SPIFFE ID gets 503 UF with the reason;
 * PeerAuthentication DISABLE keeps a labelled Pod plaintext; AuthorizationPolicy principals and
 * namespaces match clients holding workload certificates; the certificate is renewed without restart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import http2 from 'node:http2';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import net from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { freePort, get, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { gatewayMeshArgs, startTestControlPlane } from '../support/mesh-control.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { makeWorkloadCert, type TestCa } from '../support/mesh-pki.js';

interface Seen {
  sni: string | null;
  alpnOffer: string[];
  peer: string | null;
}

/** An Istio-inbound-like server: TLS with `identity`'s certificate, client certificate required from `ca`, Istio ALPN required. */
async function startMeshedBackend(ca: TestCa, identity: string, roots: string): Promise<{ server: https.Server; port: number; seen: Seen[] }> {
  const { certPem, keyPem } = await makeWorkloadCert(ca, identity);
  const seen: Seen[] = [];
  let lastOffer: string[] = [];
  const server = https.createServer(
    {
      cert: certPem + (ca.certPem === roots ? '' : ca.certPem),
      key: keyPem,
      ca: roots,
      requestCert: true,
      rejectUnauthorized: true,
      // Envoy's inbound chain selects on the client's offer; a client without Istio ALPN finds no chain.
      ALPNCallback: ({ protocols }) => {
        lastOffer = protocols;
        if (!protocols.some((p) => p.startsWith('istio'))) return undefined;
        return protocols.includes('h2') ? 'h2' : 'http/1.1';
      },
    },
    (req, res) => {
      const sock = req.socket as TLSSocket;
      const peer = sock.getPeerCertificate();
      const s: Seen = { sni: sock.servername || null, alpnOffer: lastOffer, peer: peer?.subjectaltname ?? null };
      seen.push(s);
      const body = JSON.stringify(s);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    },
  );
  // WebSocket upgrades: answered with one message saying who called, then echo.
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate()?.subjectaltname ?? null;
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ peer, alpnOffer: lastOffer }));
      ws.on('message', (m) => ws.send(String(m)));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

/** The same, speaking HTTP/2 (ALPN h2 chosen from an offer that must hold istio-h2). */
async function startMeshedH2Backend(ca: TestCa, identity: string, roots: string): Promise<{ server: tls.Server; port: number }> {
  const { certPem, keyPem } = await makeWorkloadCert(ca, identity);
  const byPort = new Map<number, Seen>();
  const h2 = http2.createServer((req, res) => {
    const body = JSON.stringify({ ...byPort.get(req.socket.remotePort ?? 0), httpVersion: req.httpVersion });
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(body);
  });
  let lastOffer: string[] = [];
  const server = tls.createServer({ cert: certPem, key: keyPem, ca: roots, requestCert: true, rejectUnauthorized: true, ALPNCallback: ({ protocols }) => ((lastOffer = protocols), protocols.includes('istio-h2') ? 'h2' : undefined) }, (socket) => {
    byPort.set(socket.remotePort ?? 0, { sni: (socket as TLSSocket & { servername?: string }).servername || null, alpnOffer: lastOffer, peer: socket.getPeerCertificate()?.subjectaltname ?? null });
    h2.emit('connection', socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

/** A meshed TCP server: writes what it saw (SNI, ALPN offer, peer URI) as one line, then echoes. */
async function startMeshedTcpBackend(ca: TestCa, identity: string, roots: string): Promise<{ server: tls.Server; port: number }> {
  const { certPem, keyPem } = await makeWorkloadCert(ca, identity);
  let lastOffer: string[] = [];
  const server = tls.createServer({ cert: certPem, key: keyPem, ca: roots, requestCert: true, rejectUnauthorized: true, ALPNCallback: ({ protocols }) => ((lastOffer = protocols), protocols.includes('istio') ? 'istio' : undefined) }, (socket) => {
    socket.write(`${JSON.stringify({ sni: (socket as TLSSocket & { servername?: string }).servername || null, alpnOffer: lastOffer, peer: socket.getPeerCertificate()?.subjectaltname ?? null })}\n`);
    socket.pipe(socket);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

function service(name: string, port: number, sa: string, labels: Record<string, string>, portName = 'http'): string {
  return `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  selector: { app: ${name} }
  ports: [{ name: ${portName}, port: 80, targetPort: ${port} }]
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}-0, namespace: default, labels: ${JSON.stringify({ app: name, ...labels })} }
spec: { serviceAccountName: ${sa}, containers: [{ name: app, ports: [{ containerPort: ${port} }] }] }
status: { phase: Running, podIP: 127.0.0.1 }
`;
}

describe('gateway as a mesh client: Istio mTLS to meshed workloads', { timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let gw: GatewayProcess;
  let meshCa: TestCa;
  const backends: { server: http.Server | https.Server | tls.Server }[] = [];
  let tcpPort = 0;
  let reviews: Awaited<ReturnType<typeof startMeshedBackend>>;
  let ratings: Awaited<ReturnType<typeof startMeshedBackend>>;

  before(async () => {
    cp = await startTestControlPlane('meshgate-mesh', 6);
    meshCa = { certPem: cp.ca.material.signingCertPem, key: cp.ca.material.signingKey };
    const roots = cp.ca.rootCertPem;
    reviews = await startMeshedBackend(meshCa, 'spiffe://cluster.local/ns/default/sa/reviews', roots);
    ratings = await startMeshedBackend(meshCa, 'spiffe://cluster.local/ns/default/sa/ratings', roots);
    // Claims to be "reviews" but the details Pods run as "details": the gateway must refuse it.
    const impostor = await startMeshedBackend(meshCa, 'spiffe://cluster.local/ns/default/sa/reviews', roots);
    const grpcish = await startMeshedH2Backend(meshCa, 'spiffe://cluster.local/ns/default/sa/h2', roots);
    const db = await startMeshedTcpBackend(meshCa, 'spiffe://cluster.local/ns/default/sa/db', roots);
    backends.push(grpcish, db);
    tcpPort = await freePort();
    const legacy = http.createServer((req, res) => res.end('plaintext legacy'));
    await new Promise<void>((r) => legacy.listen(0, '127.0.0.1', r));
    backends.push(reviews, ratings, impostor, { server: legacy });

    const meshArgs = await gatewayMeshArgs(cp, 'meshgate-mesh');
    const configDir = tempDir('meshgate-gw-config-');
    writeConfig(
      configDir,
      'mesh.yaml',
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - { port: { number: 80, name: http, protocol: HTTP }, hosts: ["*"] }
    - { port: { number: ${tcpPort}, name: tcp, protocol: TCP }, hosts: ["*"] }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  tcp: [{ match: [{ port: ${tcpPort} }], route: [{ destination: { host: db, port: { number: 80 } } }] }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: routes, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  http:
    - match: [{ uri: { prefix: /reviews } }]
      route: [{ destination: { host: reviews, port: { number: 80 } } }]
    - match: [{ uri: { prefix: /ratings } }]
      route: [{ destination: { host: ratings, port: { number: 80 } } }]
    - match: [{ uri: { prefix: /details } }]
      route: [{ destination: { host: details, port: { number: 80 } } }]
    - match: [{ uri: { prefix: /legacy } }]
      route: [{ destination: { host: legacy, port: { number: 80 } } }]
    - match: [{ uri: { prefix: /h2 } }]
      route: [{ destination: { host: h2svc, port: { number: 80 } } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: reviews, namespace: default }
spec:
  host: reviews
  trafficPolicy: { tls: { mode: ISTIO_MUTUAL } }
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: legacy, namespace: default }
spec:
  selector: { matchLabels: { app: legacy } }
  mtls: { mode: DISABLE }
${service('reviews', reviews.port, 'reviews', {})}${service('ratings', ratings.port, 'ratings', { 'security.istio.io/tlsMode': 'istio' })}${service('details', impostor.port, 'details', { 'security.istio.io/tlsMode': 'istio' })}${service('legacy', (legacy.address() as AddressInfo).port, 'legacy', { 'security.istio.io/tlsMode': 'istio' })}${service('h2svc', grpcish.port, 'h2', { 'security.istio.io/tlsMode': 'istio' }, 'http2')}${service('db', db.port, 'db', { 'security.istio.io/tlsMode': 'istio' }, 'tcp')}`,
    );
    gw = await startGateway({
      configDir,
      workers: 1,
      // Namespace and service account come from the token's subject.
      args: [...meshArgs, '--workload-cert-ttl', '6s'],
    });
  });

  after(async () => {
    await gw?.stop();
    await cp?.stop();
    for (const b of backends) b.server.close();
  });

  test('DestinationRule ISTIO_MUTUAL: Istio SNI and ALPN, the backend sees the gateway SPIFFE ID', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/reviews`);
    assert.equal(r.status, 200, `${r.status} ${r.body}\n${gw.output()}`);
    const seen = JSON.parse(r.body) as Seen;
    assert.equal(seen.sni, 'outbound_.80_._.reviews.default.svc.cluster.local');
    assert.deepEqual(seen.alpnOffer, ['istio-http/1.1', 'istio', 'http/1.1']);
    assert.equal(seen.peer, 'URI:spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway');
  });

  test('auto mTLS: a Pod labelled security.istio.io/tlsMode: istio is reached with Istio mTLS without a DestinationRule', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/ratings`);
    assert.equal(r.status, 200, `${r.status} ${r.body}`);
    const seen = JSON.parse(r.body) as Seen;
    assert.equal(seen.sni, 'outbound_.80_._.ratings.default.svc.cluster.local');
    assert.equal(seen.peer, 'URI:spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway');
  });

  test('HTTP/2 port: ALPN istio-h2, istio, h2 and the request goes as HTTP/2', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/h2`);
    assert.equal(r.status, 200, `${r.status} ${r.body}`);
    const seen = JSON.parse(r.body) as Seen & { httpVersion: string };
    assert.deepEqual(seen.alpnOffer, ['istio-h2', 'istio', 'h2']);
    assert.equal(seen.httpVersion, '2.0');
    assert.equal(seen.sni, 'outbound_.80_._.h2svc.default.svc.cluster.local');
    assert.equal(seen.peer, 'URI:spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway');
  });

  test('TCP route: Istio mTLS offering istio-peer-exchange, istio (Istio\'s gateway clusters); a server that picks istio gets the bytes as they are', async () => {
    const socket = net.connect({ host: '127.0.0.1', port: tcpPort });
    const lines: string[] = [];
    let buf = '';
    socket.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    socket.write('ping\n');
    await waitFor(() => lines.length >= 2, 10_000, 'the meshed TCP backend to answer and echo');
    socket.destroy();
    const seen = JSON.parse(lines[0]) as Seen;
    assert.deepEqual(seen.alpnOffer, ['istio-peer-exchange', 'istio']);
    assert.equal(seen.sni, 'outbound_.80_._.db.default.svc.cluster.local');
    assert.equal(seen.peer, 'URI:spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway');
    assert.equal(lines[1], 'ping');
  });

  test('WebSocket through ISTIO_MUTUAL: the tunnel is Istio mTLS with the HTTP/1.1 ALPN', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${gw.httpPort}/reviews/ws`);
    const messages: string[] = [];
    ws.on('message', (m) => messages.push(String(m)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send('hello');
    await waitFor(() => messages.length >= 2, 10_000, 'the hello and the echo');
    ws.close();
    const first = JSON.parse(messages[0]) as { peer: string; alpnOffer: string[] };
    assert.equal(first.peer, 'URI:spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway');
    assert.deepEqual(first.alpnOffer, ['istio-http/1.1', 'istio', 'http/1.1']);
    assert.equal(messages[1], 'hello');
  });

  test('a server whose SPIFFE ID is not the service account of the destination Pods: 503 UF with the reason', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/details`);
    assert.equal(r.status, 503, r.body);
    assert.match(r.body, /connection failure/);
    assert.match(r.body, /MG_TLS_SPIFFE_MISMATCH/);
  });

  test('PeerAuthentication DISABLE for the Pod: auto mTLS stays off (plaintext)', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/legacy`);
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'plaintext legacy');
  });

  test('the workload certificate is renewed without restart; new connections use the new one', async () => {
    // --workload-cert-ttl 6s (capped by the control plane's 6 s): renewal at about 3 s.
    await waitFor(() => /workload certificate installed[\s\S]*workload certificate installed/.test(gw.output()), 20_000, 'a renewal in the gateway log');
    // After the first certificate expired, requests on new connections still succeed.
    await new Promise((r) => setTimeout(r, 6500));
    const r = await get(`http://127.0.0.1:${gw.httpPort}/reviews`, { headers: { connection: 'close' } });
    assert.equal(r.status, 200, `${r.status} ${r.body}`);
  });
});
