/**
 * Istio's HTTP metadata exchange from the gateway (`meshgate run --control ...`), as Istio's ingress
 * gateway does it: its `istio.metadata_exchange` filter has the outbound configuration
 * (`upstream_propagation` and `upstream_discovery` of `istio_headers`). Real sockets: a control plane
 * issues the gateway's certificate; the destinations are plain Node.js HTTPS servers with mesh
 * certificates playing Envoy inbound sidecars (they answer with their own two headers only when the
 * request carried them, as Istio's inbound filter does).
 *
 * Proves:
 * - a request over Istio mTLS carries `x-envoy-peer-metadata-id: router~IP~POD.NS~NS.svc.cluster.local`
 *   and `x-envoy-peer-metadata`, base64 of a Struct that protobufjs decodes to the gateway's pod,
 *   namespace, workload, cluster and labels (with Istio's canonical fallbacks); a plaintext
 *   destination gets neither;
 * - the destination's answer never reaches the client, nor does a plaintext app's own header of
 *   those names; the app's own `server` is replaced, as Envoy's OVERWRITE does;
 * - the gateway's `istio_requests_total{reporter="source"}` names the destination workload its
 *   sidecar told (`destination_workload`, `_app`, `_version`, `_canonical_*`, `_cluster`) and the
 *   route counters still count those requests;
 * - TCP to an Istio mTLS endpoint offers ALPN `istio-peer-exchange, istio` (Istio's gateway clusters
 *   carry the TCP `istio.metadata_exchange` filter); a server that takes it reads the gateway's
 *   preamble before the client's bytes, the client never sees the server's, and `istio_tcp_*` name
 *   the server's workload.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import WebSocket, { WebSocketServer } from 'ws';
import { freePort, get, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { gatewayMeshArgs, startTestControlPlane } from '../support/mesh-control.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { encodeStruct } from '../../src/lib/proto-struct.js';
import { decodePeerPreambleBody, encodePeerPreamble } from '../../src/runtime/tcp/peer-exchange.js';
import { makeWorkloadCert, type TestCa } from '../support/mesh-pki.js';

const MX = 'x-envoy-peer-metadata';
const MX_ID = 'x-envoy-peer-metadata-id';

/** What Istio's sidecar in the reviews-v2 pod sends. */
const REVIEWS_ID = 'sidecar~10.4.0.7~reviews-v2-7f6b-q9z.default~default.svc.cluster.local';
const REVIEWS_MX = encodeStruct({
  NAME: 'reviews-v2-7f6b-q9z',
  NAMESPACE: 'default',
  WORKLOAD_NAME: 'reviews-v2',
  CLUSTER_ID: 'east-1',
  LABELS: { app: 'reviews', version: 'v2', 'service.istio.io/canonical-name': 'reviews', 'service.istio.io/canonical-revision': 'v2' },
}).toString('base64');

interface Seen {
  headers: Record<string, string | string[] | undefined>;
}

/** An Envoy inbound sidecar in front of an app: Istio mTLS, and the inbound metadata exchange. */
async function startEnvoyLikeBackend(ca: TestCa, identity: string, roots: string): Promise<{ server: https.Server; port: number; seen: Seen[] }> {
  const { certPem, keyPem } = await makeWorkloadCert(ca, identity);
  const seen: Seen[] = [];
  const server = https.createServer(
    {
      cert: certPem,
      key: keyPem,
      ca: roots,
      requestCert: true,
      rejectUnauthorized: true,
      ALPNCallback: ({ protocols }) => (protocols.some((p) => p.startsWith('istio')) ? 'http/1.1' : undefined),
    },
    (req, res) => {
      seen.push({ headers: { ...req.headers } });
      // Istio's inbound filter: each header answered only when the request carried it.
      const h: Record<string, string> = { 'content-type': 'text/plain', server: 'reviews-app/1.0' };
      if (req.headers[MX] !== undefined) h[MX] = REVIEWS_MX;
      if (req.headers[MX_ID] !== undefined) h[MX_ID] = REVIEWS_ID;
      res.writeHead(200, h);
      res.end('reviews');
    },
  );
  // WebSocket: the upgrade's answer carries the sidecar's headers too (Envoy's filter sees a 101 like any answer).
  const wss = new WebSocketServer({ noServer: true });
  wss.on('headers', (headers, req) => {
    if (req.headers[MX] !== undefined) headers.push(`${MX}: ${REVIEWS_MX}`);
    if (req.headers[MX_ID] !== undefined) headers.push(`${MX_ID}: ${REVIEWS_ID}`);
  });
  server.on('upgrade', (req, socket, head) => {
    seen.push({ headers: { ...req.headers } });
    wss.handleUpgrade(req, socket, head, (ws) => ws.on('message', (m) => ws.send(String(m))));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

/** An Envoy inbound TCP chain: Istio mTLS; with ALPN istio-peer-exchange, the preamble both ways, then an echo. */
async function startEnvoyLikeTcpBackend(ca: TestCa, identity: string, roots: string): Promise<{ server: tls.Server; port: number; seen: { offer: string[]; preamble: Buffer | null; app: string }[] }> {
  const { certPem, keyPem } = await makeWorkloadCert(ca, identity);
  const seen: { offer: string[]; preamble: Buffer | null; app: string }[] = [];
  let lastOffer: string[] = [];
  const server = tls.createServer(
    { cert: certPem, key: keyPem, ca: roots, requestCert: true, rejectUnauthorized: true, ALPNCallback: ({ protocols }) => ((lastOffer = protocols), protocols.includes('istio-peer-exchange') ? 'istio-peer-exchange' : protocols.includes('istio') ? 'istio' : undefined) },
    (socket) => {
      const entry = { offer: lastOffer, preamble: null as Buffer | null, app: '' };
      seen.push(entry);
      const exchange = socket.alpnProtocol === 'istio-peer-exchange';
      if (exchange) socket.write(encodePeerPreamble({ NAME: 'db-0', NAMESPACE: 'default', WORKLOAD_NAME: 'db-v1', CLUSTER_ID: 'east-1', LABELS: { app: 'db', version: 'v1' } }, 'sidecar~10.4.0.9~db-0.default~default.svc.cluster.local'));
      let buf = Buffer.alloc(0);
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (exchange && entry.preamble === null) {
          if (buf.length < 8) return;
          const len = buf.readUInt32BE(4);
          if (buf.length < 8 + len) return;
          entry.preamble = buf.subarray(0, 8 + len);
          buf = buf.subarray(8 + len);
        }
        if (buf.length > 0) {
          entry.app += buf.toString();
          socket.write(buf);
          buf = Buffer.alloc(0);
        }
      });
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
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

/** protobufjs (shipped with @grpc/proto-loader) as an independent decoder of the Struct. */
function protobufStruct(): { decode: (b: Buffer) => unknown } | null {
  try {
    const req = createRequire(import.meta.url);
    const pb = req('protobufjs') as { Root: { fromJSON(j: unknown): { lookupType(n: string): { decode(b: Buffer): unknown; toObject(m: unknown): unknown } } }; common: Record<string, unknown> };
    const T = pb.Root.fromJSON(pb.common['google/protobuf/struct.proto']).lookupType('google.protobuf.Struct');
    return { decode: (b) => T.toObject(T.decode(b)) };
  } catch {
    return null;
  }
}

/** A protobufjs Struct object as plain JSON. */
function plain(v: unknown): unknown {
  const o = v as { fields?: Record<string, unknown>; stringValue?: string; structValue?: unknown };
  if (o.fields !== undefined) return Object.fromEntries(Object.entries(o.fields).map(([k, x]) => [k, plain(x)]));
  if (o.stringValue !== undefined) return o.stringValue;
  if (o.structValue !== undefined) return plain(o.structValue);
  return v;
}

function series(text: string, metric: string, ...parts: string[]): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${metric}{`) && parts.every((p) => l.includes(p)));
}

describe('gateway as a mesh client: Istio metadata exchange', { timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let gw: GatewayProcess;
  let reviews: Awaited<ReturnType<typeof startEnvoyLikeBackend>>;
  let legacy: http.Server;
  const legacySeen: Seen[] = [];
  let db: Awaited<ReturnType<typeof startEnvoyLikeTcpBackend>>;
  let tcpPort = 0;

  before(async () => {
    cp = await startTestControlPlane('meshgate-mx', 3600);
    const meshCa: TestCa = { certPem: cp.ca.material.signingCertPem, key: cp.ca.material.signingKey };
    const roots = cp.ca.rootCertPem;
    reviews = await startEnvoyLikeBackend(meshCa, 'spiffe://cluster.local/ns/default/sa/reviews', roots);
    db = await startEnvoyLikeTcpBackend(meshCa, 'spiffe://cluster.local/ns/default/sa/db', roots);
    tcpPort = await freePort();
    // A plaintext app that (wrongly) answers with headers of those names itself.
    legacy = http.createServer((req, res) => {
      legacySeen.push({ headers: { ...req.headers } });
      res.writeHead(200, { [MX]: REVIEWS_MX, [MX_ID]: 'spoof', server: 'legacy-app' });
      res.end('legacy');
    });
    await new Promise<void>((r) => legacy.listen(0, '127.0.0.1', r));

    const meshArgs = await gatewayMeshArgs(cp, 'meshgate-mx');
    const configDir = tempDir('meshgate-mx-config-');
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
    - match: [{ uri: { prefix: /legacy } }]
      route: [{ destination: { host: legacy, port: { number: 80 } } }]
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: { name: legacy, namespace: default }
spec:
  selector: { matchLabels: { app: legacy } }
  mtls: { mode: DISABLE }
${service('reviews', reviews.port, 'reviews', { version: 'v2', 'security.istio.io/tlsMode': 'istio' })}${service('legacy', (legacy.address() as AddressInfo).port, 'legacy', { 'security.istio.io/tlsMode': 'istio' })}${service('db', db.port, 'db', { 'security.istio.io/tlsMode': 'istio' }, 'tcp')}`,
    );
    gw = await startGateway({
      configDir,
      workers: 1,
      args: [
        ...meshArgs,
        '--workload-name', 'istio-ingressgateway', '--pod-name', 'istio-ingressgateway-5d9f-x7k2p', '--pod-ip', '10.1.2.3', '--cluster-id', 'east-1',
      ],
      // Proves the flags win over the environment.
      env: { POD_NAME: 'from-env', INSTANCE_IP: '10.9.9.9' },
    });
  });

  after(async () => {
    await gw?.stop();
    await cp?.stop();
    reviews?.server.close();
    db?.server.close();
    legacy?.close();
  });

  test('Istio mTLS request: the gateway sends its node ID (router~) and metadata; the answer keeps neither header', async () => {
    const n = reviews.seen.length;
    // What a client sends under those names is never taken for the gateway's.
    const r = await get(`http://127.0.0.1:${gw.httpPort}/reviews`, { headers: { [MX]: 'Y2xpZW50', [MX_ID]: 'client~x' } });
    assert.equal(r.status, 200, `${r.status} ${r.body}\n${gw.output()}`);
    assert.equal(r.headers[MX], undefined, 'the destination sidecar\'s metadata never reaches the client');
    assert.equal(r.headers[MX_ID], undefined);
    assert.equal(r.headers.server, 'meshgate', 'the app\'s own server header is replaced (Envoy OVERWRITE)');
    const seen = reviews.seen[n].headers;
    assert.equal(seen[MX_ID], 'router~10.1.2.3~istio-ingressgateway-5d9f-x7k2p.istio-system~istio-system.svc.cluster.local');
    const value = seen[MX];
    assert.equal(typeof value, 'string', 'one x-envoy-peer-metadata value');
    const expected = {
      NAME: 'istio-ingressgateway-5d9f-x7k2p',
      NAMESPACE: 'istio-system',
      WORKLOAD_NAME: 'istio-ingressgateway',
      CLUSTER_ID: 'east-1',
      LABELS: { app: 'istio-ingressgateway', 'service.istio.io/canonical-name': 'istio-ingressgateway', 'service.istio.io/canonical-revision': 'latest' },
    };
    const pb = protobufStruct();
    if (pb !== null) assert.deepEqual(plain(pb.decode(Buffer.from(value as string, 'base64'))), expected, 'protobufjs decodes the gateway\'s Struct');
    else assert.fail('protobufjs (installed with @grpc/proto-loader) is missing');
  });

  test('plaintext destination: no exchange headers sent; an app\'s own headers of those names are dropped', async () => {
    const n = legacySeen.length;
    const r = await get(`http://127.0.0.1:${gw.httpPort}/legacy`);
    assert.equal(r.status, 200, `${r.status} ${r.body}\n${gw.output()}`);
    const seen = legacySeen[n].headers;
    assert.equal(seen[MX], undefined);
    assert.equal(seen[MX_ID], undefined);
    assert.equal(r.headers[MX], undefined);
    assert.equal(r.headers[MX_ID], undefined);
    assert.equal(r.headers.server, 'meshgate');
  });

  test('reporter="source" metrics name the workload the destination sidecar told; route counters still count', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await get(`http://127.0.0.1:${gw.httpPort}/reviews`)).status, 200);
    let text = '';
    await waitFor(async () => {
      text = (await get(`http://127.0.0.1:${gw.healthPort}/stats/prometheus`)).body;
      return series(text, 'istio_requests_total', 'destination_workload="reviews-v2"', 'destination_service="reviews.').length > 0;
    }, 15_000, 'the peer-labelled series');
    const lines = series(text, 'istio_requests_total', 'destination_workload="reviews-v2"', 'destination_service="reviews.');
    assert.equal(lines.length, 1, lines.join('\n'));
    const l = lines[0];
    for (const part of [
      'reporter="source"',
      'source_workload="istio-ingressgateway"',
      'source_workload_namespace="istio-system"',
      'source_cluster="east-1"',
      'destination_workload_namespace="default"',
      'destination_app="reviews"',
      'destination_version="v2"',
      'destination_canonical_service="reviews"',
      'destination_canonical_revision="v2"',
      'destination_cluster="east-1"',
      'destination_service="reviews.default.svc.cluster.local"',
      'response_code="200"',
    ]) assert.ok(l.includes(part), `${part} in ${l}`);
    assert.ok(Number(l.split(' ').pop()) >= 4, l);
    const route = series(text, 'meshgate_route_requests_total', 'destination_cluster="outbound|80||reviews.default.svc.cluster.local"', 'response_code="200"');
    assert.equal(route.length, 1, route.join('\n'));
    assert.ok(Number(route[0].split(' ').pop()) >= 4, route[0]);
  });

  test('TCP over Istio mTLS: ALPN istio-peer-exchange, preambles both ways, the server\'s workload in istio_tcp_*', async () => {
    const n = db.seen.length;
    const socket = net.connect({ host: '127.0.0.1', port: tcpPort });
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    socket.write('ping\n');
    await waitFor(() => got.length >= 5, 10_000, 'the echo through the gateway');
    assert.equal(got, 'ping\n', 'the server\'s preamble never reaches the client');
    const seen = db.seen[n];
    assert.deepEqual(seen.offer, ['istio-peer-exchange', 'istio']);
    assert.equal(seen.app, 'ping\n', 'the client\'s bytes come after the gateway\'s preamble, untouched');
    assert.ok(seen.preamble !== null && seen.preamble.readUInt32BE(0) === 0x3d230467, 'the gateway sent the preamble first');
    const body = decodePeerPreambleBody(seen.preamble.subarray(8));
    assert.equal(body.id, 'router~10.1.2.3~istio-ingressgateway-5d9f-x7k2p.istio-system~istio-system.svc.cluster.local');
    assert.equal(body.metadata?.WORKLOAD_NAME, 'istio-ingressgateway');
    assert.equal(body.metadata?.NAMESPACE, 'istio-system');
    socket.end();
    let text = '';
    await waitFor(async () => {
      text = (await get(`http://127.0.0.1:${gw.healthPort}/stats/prometheus`)).body;
      return series(text, 'istio_tcp_connections_closed_total', 'destination_workload="db-v1"').length > 0;
    }, 15_000, 'the peer-labelled TCP series');
    for (const metric of ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total', 'istio_tcp_sent_bytes_total']) {
      const lines = series(text, metric, 'destination_workload="db-v1"');
      assert.equal(lines.length, 1, `${metric}\n${text}`);
      for (const part of ['reporter="source"', 'source_workload="istio-ingressgateway"', 'destination_app="db"', 'destination_version="v1"', 'destination_cluster="east-1"', 'destination_service="db.default.svc.cluster.local"']) assert.ok(lines[0].includes(part), `${part} in ${lines[0]}`);
    }
  });

  test('WebSocket over Istio mTLS: the upgrade carries the gateway\'s headers; the 101 keeps the sidecar\'s from the client', async () => {
    const n = reviews.seen.length;
    const ws = new WebSocket(`ws://127.0.0.1:${gw.httpPort}/reviews/ws`);
    let headers: Record<string, string | string[] | undefined> = {};
    ws.once('upgrade', (res) => (headers = res.headers));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
      setTimeout(() => reject(new Error(`no WebSocket open in 10 s\n${gw.output()}`)), 10_000).unref();
    });
    const echo = new Promise<string>((r) => ws.once('message', (m) => r(String(m))));
    ws.send('hello');
    assert.equal(await echo, 'hello');
    ws.close();
    assert.equal(reviews.seen[n].headers[MX_ID], 'router~10.1.2.3~istio-ingressgateway-5d9f-x7k2p.istio-system~istio-system.svc.cluster.local');
    assert.equal(typeof reviews.seen[n].headers[MX], 'string');
    assert.equal(headers[MX], undefined);
    assert.equal(headers[MX_ID], undefined);
  });

  test('a local reply (404, no route) names the proxy in server, as Envoy\'s local replies do', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/nowhere`);
    assert.equal(r.status, 404);
    assert.equal(r.headers.server, 'meshgate');
  });
});
