/**
 * Istio's HTTP metadata exchange between meshgate's sidecar and Envoy sidecars, over real sockets on
 * loopback (no lab): the Envoy side is a plain Node.js HTTPS server or client holding a mesh
 * certificate and doing what Istio's `istio.metadata_exchange` HTTP filter does with
 * `x-envoy-peer-metadata` / `x-envoy-peer-metadata-id` (src/runtime/sidecar/peer-metadata.ts).
 *
 * Proves, for meshgate as the client sidecar (OutboundHandler):
 * - requests to an Istio mTLS endpoint carry meshgate's two headers, well formed (the node ID
 *   format; the value is base64 of a google.protobuf.Struct that protobufjs decodes as Istio's
 *   proxies would), whatever the app sent under those names; requests to a plaintext endpoint
 *   carry neither;
 * - the Envoy destination's answer fills `destination_workload`, `_app`, `_version`,
 *   `_canonical_*` and `_cluster` of `reporter="source"` metrics the view could not fill, and never
 *   reaches the app;
 * for meshgate as the server sidecar (InboundHandler):
 * - an Envoy client's headers fill `source_*` of `reporter="destination"` metrics for a caller the
 *   view does not know, never reach the app, and are answered with meshgate's own headers (each only
 *   when the client sent it); a value claiming another namespace than the client certificate is ignored.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { createRequire } from 'node:module';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { InboundHandler } from '../../src/runtime/sidecar/inbound.js';
import { setMeshIdentity, type MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';
import { createObservability, DEFAULT_OBSERVABILITY, type Observability } from '../../src/observability/observer.js';
import { parsePeerMetadata } from '../../src/runtime/sidecar/peer-metadata.js';
import { encodeStruct } from '../../src/lib/proto-struct.js';
import { Logger } from '../../src/lib/log.js';
import type { Cluster, IRSnapshot, Listener, OutboundService, SidecarView, UpstreamTls } from '../../src/ir/types.js';
import type { InboundPort } from '../../src/ir/sidecar.js';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { makeCa, makeWorkloadCert, type TestCa } from '../support/mesh-pki.js';

const TD = 'cluster.local';
const net8 = `127.${100 + ((process.pid >> 4) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
/** The client pod (meshgate outbound), service VIPs, the Envoy destination pod, a plaintext pod. */
const WEB = `${net8}.2`;
const VIP = `${net8}.10`;
const RATINGS = `${net8}.11`;
const LEGACY = `${net8}.12`;
/** meshgate as server: its pod, its app, an Envoy client pod. */
const SERVER = `${net8}.20`;
const SERVER_APP = `${net8}.21`;
const ENVOY_CLIENT = `${net8}.30`;

const FQDN = (name: string, ns: string) => `${name}.${ns}.svc.cluster.local`;
const spiffe = (ns: string, sa: string) => `spiffe://${TD}/ns/${ns}/sa/${sa}`;

/** What Istio's proxy in the `ratings-v1` pod (books namespace, cluster `east`) sends as its metadata. */
const RATINGS_ID = `sidecar~${RATINGS}~ratings-v1-5d8f-abc.books~books.svc.cluster.local`;
const RATINGS_MX = encodeStruct({
  NAME: 'ratings-v1-5d8f-abc',
  NAMESPACE: 'books',
  WORKLOAD_NAME: 'ratings-v1',
  CLUSTER_ID: 'east',
  OWNER: 'kubernetes://apis/apps/v1/namespaces/books/deployments/ratings-v1',
  LABELS: { app: 'ratings', version: 'v1', 'service.istio.io/canonical-name': 'ratings', 'service.istio.io/canonical-revision': 'v1' },
}).toString('base64');

/** Every connection a server of this file accepted (destroyed at the end). */
const conns = new Set<net.Socket>();

function listen(server: net.Server, host: string, port = 0): Promise<number> {
  server.on('connection', (c: net.Socket) => {
    conns.add(c);
    c.once('close', () => conns.delete(c));
  });
  server.on('secureConnection', (c: net.Socket) => {
    conns.add(c);
    c.once('close', () => conns.delete(c));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

function istioMutual(host: string, port: number, sans: string[]): UpstreamTls {
  return { mode: 'ISTIO_MUTUAL', caCertificates: null, clientCertificate: null, sni: `outbound_.${port}_._.${host}`, subjectAltNames: sans, insecureSkipVerify: false };
}

/** One HTTP service on `VIP:port` with one endpoint. */
function service(name: string, ns: string, port: number, endpoint: { address: string; port: number }, tls: UpstreamTls | null): { svc: OutboundService; table: Listener; cluster: Cluster } {
  const host = FQDN(name, ns);
  const c: Cluster = { ...cluster(`outbound|${port}||${host}`, [endpoint]), service: { namespace: ns, name, host, port }, tls };
  const table = httpListener(port, [vhost(`${host}:${port}`, [host, `${host}:${port}`, `${VIP}:${port}`, name, `${name}:${port}`], [route(`default/${name}`, forward([c.name]))])], { name: `outbound_${port}`, address: '0.0.0.0' });
  return { svc: { host, namespace: ns, port, protocol: 'HTTP', addresses: [VIP], httpRoutes: table.name, tcpRoutes: null }, table, cluster: c };
}

/** Lines of a Prometheus text exposition for `metric` that contain every `part`. */
function series(text: string, metric: string, ...parts: string[]): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${metric}{`) && parts.every((p) => l.includes(p)));
}

/** protobufjs (the protobuf implementation @grpc/proto-loader ships) as an independent decoder of the Struct. */
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

interface Request {
  headers: http.IncomingHttpHeaders;
}

describe('metadata exchange with Envoy sidecars', () => {
  let root: TestCa;
  const servers: net.Server[] = [];
  let obs: Observability;

  before(async () => {
    root = await makeCa('O=Peer Metadata Test Mesh');
  });

  after(async () => {
    setMeshIdentity(null);
    const closing = servers.map((s) => new Promise<void>((r) => s.close(() => r())));
    for (const c of conns) c.destroy();
    await Promise.all(closing);
    await obs?.close();
  });

  async function material(ns: string, sa: string): Promise<MeshIdentityMaterial> {
    const c = await makeWorkloadCert(root, spiffe(ns, sa));
    return { spiffeId: spiffe(ns, sa), certChainPem: c.certPem, keyPem: c.keyPem, rootsPem: root.certPem, notAfter: Date.now() + 3600_000 };
  }

  describe('meshgate as the client sidecar, an Envoy sidecar as the destination', () => {
    let handler: OutboundHandler;
    const atRatings: Request[] = [];
    const atLegacy: Request[] = [];
    const P = { ratings: 0, legacy: 0, vipRatings: 0, vipLegacy: 0 };

    before(async () => {
      setMeshIdentity(await material('shop', 'web'));
      const ratingsCert = await makeWorkloadCert(root, spiffe('books', 'ratings'));
      // The Envoy destination: mTLS with a mesh certificate; answers with its metadata when the
      // request carried the caller's (Istio's downstream propagation), the app's answer otherwise.
      const ratings = https.createServer({ cert: ratingsCert.certPem, key: ratingsCert.keyPem, ca: root.certPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] }, (req, res) => {
        atRatings.push({ headers: req.headers });
        if (req.headers['x-envoy-peer-metadata-id'] !== undefined) res.setHeader('x-envoy-peer-metadata-id', RATINGS_ID);
        if (req.headers['x-envoy-peer-metadata'] !== undefined) res.setHeader('x-envoy-peer-metadata', RATINGS_MX);
        res.end('ratings');
      });
      ratings.keepAliveTimeout = 500;
      const legacy = http.createServer((req, res) => {
        atLegacy.push({ headers: req.headers });
        res.end('legacy');
      });
      legacy.keepAliveTimeout = 500;
      P.ratings = await listen(ratings, RATINGS);
      P.legacy = await listen(legacy, LEGACY);
      servers.push(ratings, legacy);
      obs = createObservability({ ...DEFAULT_OBSERVABILITY, metrics: true, identity: { workload: 'web', namespace: 'shop', app: 'web', version: 'v3', cluster: 'west' } });
      handler = new OutboundHandler({ env: { random: Math.random, observer: obs }, tcpObserver: obs, clusterId: 'west', detectionTimeoutMs: 200 });
      const vip = (): net.Server => net.createServer({ allowHalfOpen: true }, (s) => handler.handle(s));
      const v1 = vip();
      const v2 = vip();
      P.vipRatings = await listen(v1, VIP);
      P.vipLegacy = await listen(v2, VIP);
      servers.push(v1, v2);
      const r = service('ratings', 'books', P.vipRatings, { address: RATINGS, port: P.ratings }, istioMutual(FQDN('ratings', 'books'), P.vipRatings, [spiffe('books', 'ratings')]));
      const l = service('legacy', 'books', P.vipLegacy, { address: LEGACY, port: P.legacy }, null);
      const sidecar: SidecarView = {
        proxy: { namespace: 'shop', serviceAccount: 'web', podName: 'web-0', podIps: [WEB], labels: { app: 'web', version: 'v3' }, spiffeId: spiffe('shop', 'web'), workload: 'web' },
        outboundTrafficPolicy: 'ALLOW_ANY',
        outbound: [l.svc, r.svc].sort((a, b) => a.port - b.port),
        outboundHttp: [l.table, r.table],
        outboundTcp: [],
        inbound: [],
        inboundDefault: 'PERMISSIVE',
        inboundHttp: [],
        // The view knows neither destination pod: only the metadata exchange can name the workload.
        workloads: [],
      };
      const ir: IRSnapshot = { ...snapshot([], [l.cluster, r.cluster]), version: 'peer-metadata-outbound', sidecar };
      handler.apply(ir);
    });

    after(async () => {
      await handler.close(0);
    });

    const get = (port: number, host: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> =>
      new Promise((resolve, reject) => {
        const req = http.get({ host: VIP, port, path: '/', localAddress: '127.0.0.1', headers: { host, connection: 'close', ...headers }, timeout: 5000 }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
      });

    test('a request to the Istio mTLS endpoint carries well-formed metadata-exchange headers, not the app’s', async (t) => {
      const r = await get(P.vipRatings, FQDN('ratings', 'books'), { 'x-envoy-peer-metadata': 'forged-by-app', 'x-envoy-peer-metadata-id': 'forged-by-app' });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, 'ratings');
      const h = atRatings.at(-1)!.headers;
      assert.equal(h['x-envoy-peer-metadata-id'], `sidecar~${WEB}~web-0.shop~shop.svc.cluster.local`);
      const value = String(h['x-envoy-peer-metadata']);
      assert.match(value, /^[A-Za-z0-9+/]+={0,2}$/, 'standard base64');
      assert.equal(value.length % 4, 0, 'padded, as Envoy’s Base64::encode');
      assert.deepEqual(parsePeerMetadata(value), {
        instance: 'web-0',
        namespace: 'shop',
        workload: 'web',
        clusterId: 'west',
        canonicalService: 'web',
        canonicalRevision: 'v3',
        app: 'web',
        version: 'v3',
        serviceAccount: 'web',
        meshId: TD,
      });
      const pb = protobufStruct();
      if (pb === null) return t.skip('protobufjs (installed with @grpc/proto-loader) is missing: the independent decoding is not checked');
      // An independent protobuf implementation reads the same Struct (what Envoy's ParseFromString does).
      const decoded = pb.decode(Buffer.from(value, 'base64')) as { fields: Record<string, { stringValue?: string; structValue?: { fields: Record<string, { stringValue: string }> } }> };
      assert.equal(decoded.fields.WORKLOAD_NAME.stringValue, 'web');
      assert.equal(decoded.fields.NAMESPACE.stringValue, 'shop');
      assert.equal(decoded.fields.NAME.stringValue, 'web-0');
      assert.equal(decoded.fields.CLUSTER_ID.stringValue, 'west');
      assert.equal(decoded.fields.LABELS.structValue?.fields['service.istio.io/canonical-name'].stringValue, 'web');
      assert.equal(decoded.fields.LABELS.structValue?.fields['service.istio.io/canonical-revision'].stringValue, 'v3');
    });

    test('the Envoy destination’s answer never reaches the app, and names the destination in reporter="source" metrics', async () => {
      const r = await get(P.vipRatings, FQDN('ratings', 'books'));
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-envoy-peer-metadata'], undefined, 'x-envoy-peer-metadata reached the app');
      assert.equal(r.headers['x-envoy-peer-metadata-id'], undefined, 'x-envoy-peer-metadata-id reached the app');
      const text = await obs.registry.metrics();
      const found = series(text, 'istio_requests_total', 'reporter="source"', `destination_service="${FQDN('ratings', 'books')}"`, 'response_code="200"');
      assert.equal(found.length, 1, `expected one series, got:\n${series(text, 'istio_requests_total').join('\n')}`);
      for (const label of [
        'source_workload="web"',
        'source_workload_namespace="shop"',
        'destination_workload="ratings-v1"',
        'destination_workload_namespace="books"',
        'destination_app="ratings"',
        'destination_version="v1"',
        'destination_canonical_service="ratings"',
        'destination_canonical_revision="v1"',
        'destination_cluster="east"',
        'destination_service_name="ratings"',
        'destination_service_namespace="books"',
      ]) {
        assert.ok(found[0].includes(label), `${label} missing in ${found[0]}`);
      }
    });

    test('a plaintext endpoint gets no metadata exchange; its labels stay unknown', async () => {
      const r = await get(P.vipLegacy, FQDN('legacy', 'books'), { 'x-envoy-peer-metadata': 'forged-by-app' });
      assert.equal(r.status, 200);
      const h = atLegacy.at(-1)!.headers;
      assert.equal(h['x-envoy-peer-metadata'], undefined, 'metadata sent over plaintext');
      assert.equal(h['x-envoy-peer-metadata-id'], undefined);
      const text = await obs.registry.metrics();
      const found = series(text, 'istio_requests_total', 'reporter="source"', `destination_service="${FQDN('legacy', 'books')}"`);
      assert.equal(found.length, 1, series(text, 'istio_requests_total').join('\n'));
      assert.ok(found[0].includes('destination_workload="unknown"'), found[0]);
    });
  });

  describe('meshgate as the server sidecar, an Envoy sidecar as the client', () => {
    let handler: InboundHandler;
    let envoyClient: MeshIdentityMaterial;
    let spoofer: MeshIdentityMaterial;
    const atApp: Request[] = [];
    let port = 0;
    let obsIn: Observability;

    before(async () => {
      const serverId = await material('ns1', 'server');
      envoyClient = await material('books', 'productpage');
      spoofer = await material('ns2', 'spoofer');
      const app = http.createServer((req, res) => {
        atApp.push({ headers: req.headers });
        // An app setting these itself: never relayed to the peer.
        res.setHeader('x-envoy-peer-metadata-id', 'app-made');
        res.end('served');
      });
      app.keepAliveTimeout = 500;
      obsIn = createObservability({ ...DEFAULT_OBSERVABILITY, metrics: true, identity: { workload: 'server', namespace: 'ns1', app: 'server', version: 'v1', cluster: 'west' } });
      handler = new InboundHandler({ identity: () => serverId, log: new Logger('error', {}, () => {}), observer: obsIn, clusterId: 'west', forwardTo: (_a, p) => ({ address: SERVER_APP, port: p }) });
      for (let i = 0; ; i++) {
        const p = await listen(app, SERVER_APP);
        const pod = net.createServer({ allowHalfOpen: true }, (s) => handler.handle(s));
        try {
          await listen(pod, SERVER, p);
          port = p;
          servers.push(app, pod);
          break;
        } catch (e) {
          await new Promise<void>((r) => app.close(() => r()));
          if (i > 10) throw e;
        }
      }
      const svc = { namespace: 'ns1', name: 'server', host: FQDN('server', 'ns1'), port: 80 };
      const inbound: InboundPort = { port, protocol: 'HTTP', mtls: 'PERMISSIVE', httpRoutes: `inbound_${port}`, cluster: `inbound|${port}||` };
      const sidecar: SidecarView = {
        proxy: { namespace: 'ns1', serviceAccount: 'server', podName: 'server-0', podIps: [SERVER], labels: { app: 'server', version: 'v1' }, spiffeId: spiffe('ns1', 'server'), workload: 'server' },
        outboundTrafficPolicy: 'ALLOW_ANY',
        outbound: [],
        outboundHttp: [],
        outboundTcp: [],
        inbound: [inbound],
        inboundDefault: 'PERMISSIVE',
        inboundHttp: [httpListener(port, [vhost('inbound', ['*'], [route('default', forward([inbound.cluster]))])], { name: `inbound_${port}`, address: '0.0.0.0' })],
        // The view does not know the caller's pod.
        workloads: [],
      };
      handler.apply({ ...snapshot([], [cluster(inbound.cluster, [], { service: svc })]), version: 'peer-metadata-inbound', sidecar });
    });

    after(async () => {
      await handler.close(0);
      await obsIn.close();
    });

    /** What Istio's client sidecar sends: its headers, over Istio mTLS (ALPN istio-http/1.1). */
    const envoyGet = (m: MeshIdentityMaterial, headers: Record<string, string>, path = '/'): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> =>
      new Promise((resolve, reject) => {
        const options: https.RequestOptions & tls.ConnectionOptions = {
            host: SERVER,
            port,
            localAddress: ENVOY_CLIENT,
            path,
            agent: false,
            cert: m.certChainPem,
            key: m.keyPem,
            ca: m.rootsPem,
            servername: `outbound_.80_._.${FQDN('server', 'ns1')}`,
            ALPNProtocols: ['istio-http/1.1', 'istio', 'http/1.1'],
            checkServerIdentity: () => undefined,
            headers: { host: FQDN('server', 'ns1'), ...headers },
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

    const PRODUCTPAGE_MX = encodeStruct({
      NAME: 'productpage-v1-84975bc778-pxz2w',
      NAMESPACE: 'books',
      WORKLOAD_NAME: 'productpage-v1',
      CLUSTER_ID: 'east',
      LABELS: { app: 'productpage', version: 'v1', 'service.istio.io/canonical-name': 'productpage', 'service.istio.io/canonical-revision': 'v1' },
    }).toString('base64');

    test('the Envoy client’s headers never reach the app; meshgate answers with its own', async () => {
      const r = await envoyGet(envoyClient, { 'x-envoy-peer-metadata': PRODUCTPAGE_MX, 'x-envoy-peer-metadata-id': `sidecar~${ENVOY_CLIENT}~productpage-v1-84975bc778-pxz2w.books~books.svc.cluster.local` });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.body, 'served');
      const h = atApp.at(-1)!.headers;
      assert.equal(h['x-envoy-peer-metadata'], undefined, 'x-envoy-peer-metadata reached the app');
      assert.equal(h['x-envoy-peer-metadata-id'], undefined, 'x-envoy-peer-metadata-id reached the app');
      assert.equal(r.headers['x-envoy-peer-metadata-id'], `sidecar~${SERVER}~server-0.ns1~ns1.svc.cluster.local`, 'the proxy’s node ID, not the app’s header');
      const p = parsePeerMetadata(String(r.headers['x-envoy-peer-metadata']));
      assert.deepEqual(p && [p.workload, p.namespace, p.app, p.version, p.canonicalService, p.canonicalRevision, p.clusterId], ['server', 'ns1', 'server', 'v1', 'server', 'v1', 'west']);
    });

    test('each header is answered only when the client sent it (Istio’s downstream propagation)', async () => {
      const onlyId = await envoyGet(envoyClient, { 'x-envoy-peer-metadata-id': 'sidecar~1.2.3.4~x.books~books.svc.cluster.local' });
      assert.equal(onlyId.headers['x-envoy-peer-metadata-id'], `sidecar~${SERVER}~server-0.ns1~ns1.svc.cluster.local`);
      assert.equal(onlyId.headers['x-envoy-peer-metadata'], undefined);
      const none = await envoyGet(envoyClient, {});
      assert.equal(none.headers['x-envoy-peer-metadata-id'], undefined, 'answered a client that sent nothing');
      assert.equal(none.headers['x-envoy-peer-metadata'], undefined);
    });

    test('the Envoy client’s workload labels appear in reporter="destination" metrics', async () => {
      await envoyGet(envoyClient, { 'x-envoy-peer-metadata': PRODUCTPAGE_MX }, '/labels');
      const text = await obsIn.registry.metrics();
      const found = series(text, 'istio_requests_total', 'reporter="destination"', `source_principal="${spiffe('books', 'productpage')}"`, 'source_workload="productpage-v1"');
      assert.equal(found.length, 1, `expected one series, got:\n${series(text, 'istio_requests_total').join('\n')}`);
      for (const label of [
        'source_workload_namespace="books"',
        'source_app="productpage"',
        'source_version="v1"',
        'source_canonical_service="productpage"',
        'source_canonical_revision="v1"',
        'source_cluster="east"',
        'destination_workload="server"',
        'destination_workload_namespace="ns1"',
        'connection_security_policy="mutual_tls"',
      ]) {
        assert.ok(found[0].includes(label), `${label} missing in ${found[0]}`);
      }
    });

    test('metadata claiming another namespace than the client certificate is ignored', async () => {
      // ns2/spoofer presents the productpage metadata (namespace books).
      const r = await envoyGet(spoofer, { 'x-envoy-peer-metadata': PRODUCTPAGE_MX });
      assert.equal(r.status, 200);
      const text = await obsIn.registry.metrics();
      const found = series(text, 'istio_requests_total', 'reporter="destination"', `source_principal="${spiffe('ns2', 'spoofer')}"`);
      assert.equal(found.length, 1, series(text, 'istio_requests_total').join('\n'));
      assert.ok(found[0].includes('source_workload="unknown"'), found[0]);
      assert.ok(found[0].includes('source_workload_namespace="ns2"'), found[0]);
    });
  });
});
