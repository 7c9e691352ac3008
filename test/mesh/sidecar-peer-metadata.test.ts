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
 *   when the client sent it, local 403 replies included); a value claiming another namespace than
 *   the client certificate is ignored.
 * And Istio's TCP metadata exchange (ALPN `istio-peer-exchange`, runtime/tcp/peer-exchange.ts):
 * - meshgate's outbound TCP relay to an Istio mTLS endpoint offers it; with a server that takes it
 *   the server reads meshgate's preamble (node ID, metadata) before the app's bytes, the app never
 *   sees the server's, and the server's names the destination in `istio_tcp_*`; with a server that
 *   answers `istio` nothing extra is sent;
 * - meshgate's inbound TCP port answers it to an Envoy client: its preamble comes first, the
 *   client's never reaches the app, and `istio_tcp_*` carry the client's workload labels.
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
import { parsePeerMetadata, peerWorkloadOf } from '../../src/runtime/sidecar/peer-metadata.js';
import { decodePeerPreambleBody } from '../../src/runtime/tcp/peer-exchange.js';
import { decodeStruct, encodeStruct, type StructObject } from '../../src/lib/proto-struct.js';
import { Logger } from '../../src/lib/log.js';
import type { Cluster, IRSnapshot, Listener, OutboundService, SidecarView, TcpListener, UpstreamTls } from '../../src/ir/types.js';
import type { InboundPort } from '../../src/ir/sidecar.js';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { makeCa, makeWorkloadCert, type TestCa } from '../support/mesh-pki.js';
import { LoopbackServers } from '../support/loopback-servers.js';

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
const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

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

/** One TCP service on `VIP:port` relayed to one endpoint. */
function tcpService(name: string, ns: string, port: number, endpoint: { address: string; port: number }, tls: UpstreamTls | null): { svc: OutboundService; relay: TcpListener; cluster: Cluster } {
  const host = FQDN(name, ns);
  const c: Cluster = { ...cluster(`outbound|${port}||${host}`, [endpoint]), service: { namespace: ns, name, host, port }, tls };
  const relay: TcpListener = {
    name: `outbound_${port}_tcp_${host}`,
    address: '0.0.0.0',
    port,
    externalPort: port,
    protocol: 'TCP',
    routes: [{ name: `default/${name}`, source: { kind: 'Service', namespace: ns, name, file: null, line: null }, matches: [{ sniHosts: [], destinationSubnets: [], port: null }], destinations: [{ cluster: c.name, weight: 1 }] }],
    tlsChains: [],
  };
  return { svc: { host, namespace: ns, port, protocol: 'TCP', addresses: [VIP], httpRoutes: null, tcpRoutes: relay.name }, relay, cluster: c };
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

/** A TCP metadata exchange preamble built by hand from the spec: magic, length, Any{type_url, Struct{metadata, id}}. */
function framePreamble(metadata: StructObject, id: string): Buffer {
  const struct = encodeStruct({ 'x-envoy-peer-metadata': metadata, 'x-envoy-peer-metadata-id': id });
  const typeUrl = Buffer.from('type.googleapis.com/google.protobuf.Struct');
  const varint = (n: number): Buffer => {
    const out: number[] = [];
    while (n > 0x7f) {
      out.push((n & 0x7f) | 0x80);
      n >>>= 7;
    }
    out.push(n);
    return Buffer.from(out);
  };
  const any = Buffer.concat([Buffer.from([0x0a]), varint(typeUrl.length), typeUrl, Buffer.from([0x12]), varint(struct.length), struct]);
  const header = Buffer.alloc(8);
  header.writeUInt32BE(0x3d230467, 0);
  header.writeUInt32BE(any.length, 4);
  return Buffer.concat([header, any]);
}

/** Splits a byte stream that should start with a preamble: the preamble (null when there is none) and the bytes after it. */
function splitPreamble(b: Buffer): { preamble: { metadata: StructObject; id: string; any: Buffer } | null; rest: Buffer } {
  if (b.length < 8 || b.readUInt32BE(0) !== 0x3d230467) return { preamble: null, rest: b };
  const len = b.readUInt32BE(4);
  const any = b.subarray(8, 8 + len);
  const body = decodePeerPreambleBody(any);
  assert.ok(body.metadata !== null, 'a preamble without metadata');
  return { preamble: { metadata: body.metadata, id: body.id, any }, rest: b.subarray(8 + len) };
}

/** protobufjs's google.protobuf.Any, to read a preamble's body independently. */
function protobufAny(): { typeUrl: (b: Buffer) => string } | null {
  try {
    const req = createRequire(import.meta.url);
    const pb = req('protobufjs') as { Root: { fromJSON(j: unknown): { lookupType(n: string): { decode(b: Buffer): unknown; toObject(m: unknown): unknown } } }; common: Record<string, unknown> };
    const T = pb.Root.fromJSON(pb.common['google/protobuf/any.proto']).lookupType('google.protobuf.Any');
    return { typeUrl: (b) => (T.toObject(T.decode(b)) as { type_url: string }).type_url };
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
    loopback.destroyConnections();
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
    const P = { ratings: 0, legacy: 0, vipRatings: 0, vipLegacy: 0, db: 0, dbPlain: 0, vipDb: 0, vipDbPlain: 0 };
    /** What the Envoy-like TCP servers saw: the ALPN chosen, the client's preamble, the bytes after it. */
    const atDb: { alpn: string | false; preamble: { metadata: StructObject; id: string } | null; payload: string }[] = [];

    before(async () => {
      setMeshIdentity(await material('shop', 'web'));
      const ratingsCert = await makeWorkloadCert(root, spiffe('books', 'ratings'));
      // The Envoy destination: mTLS with a mesh certificate; answers with its metadata when the
      // request carried the caller's (Istio's downstream propagation), the app's answer otherwise.
      const ratings = https.createServer({ cert: ratingsCert.certPem, key: ratingsCert.keyPem, ca: root.certPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] }, (req, res) => {
        atRatings.push({ headers: req.headers });
        if (req.headers['x-envoy-peer-metadata-id'] !== undefined) res.setHeader('x-envoy-peer-metadata-id', RATINGS_ID);
        if (req.headers['x-envoy-peer-metadata'] !== undefined) res.setHeader('x-envoy-peer-metadata', RATINGS_MX);
        // What an Istio inbound sidecar's answer carries (server_name istio-envoy, OVERWRITE).
        res.setHeader('server', 'istio-envoy');
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
      // Envoy-like TCP servers with a mesh certificate: one whose TCP chain answers the exchange
      // (ALPN istio-peer-exchange, h2, http/1.1, as Istio's), writing its preamble with its first
      // bytes and reading the client's; one that takes `istio` only (no exchange). Both echo.
      const dbCert = await makeWorkloadCert(root, spiffe('books', 'db'));
      const dbServer = (alpn: string[]): tls.Server =>
        tls.createServer({ cert: dbCert.certPem, key: dbCert.keyPem, ca: root.certPem, requestCert: true, rejectUnauthorized: true, ALPNProtocols: alpn, allowHalfOpen: true } as tls.TlsOptions, (sock) => {
          const got: Buffer[] = [];
          sock.on('data', (c: Buffer) => got.push(c));
          sock.on('end', () => {
            const all = Buffer.concat(got);
            const mx = sock.alpnProtocol === 'istio-peer-exchange';
            const { preamble, rest } = mx ? splitPreamble(all) : { preamble: null, rest: all };
            atDb.push({ alpn: sock.alpnProtocol ?? false, preamble, payload: rest.toString() });
            sock.end(Buffer.concat([mx ? framePreamble(decodeStruct(Buffer.from(RATINGS_MX, 'base64')), RATINGS_ID) : Buffer.alloc(0), Buffer.from(`echo:${rest.toString()}`)]));
          });
          sock.on('error', () => {});
        });
      const db = dbServer(['istio-peer-exchange', 'h2', 'http/1.1']);
      const dbPlain = dbServer(['istio']);
      P.db = await listen(db, RATINGS);
      P.dbPlain = await listen(dbPlain, RATINGS);
      servers.push(db, dbPlain);
      obs = createObservability({ ...DEFAULT_OBSERVABILITY, metrics: true, identity: { workload: 'web', namespace: 'shop', app: 'web', version: 'v3', cluster: 'west' } });
      handler = new OutboundHandler({ env: { random: Math.random, observer: obs }, tcpObserver: obs, clusterId: 'west', detectionTimeoutMs: 200 });
      const vip = (): net.Server => net.createServer({ allowHalfOpen: true }, (s) => handler.handle(s));
      const v1 = vip();
      const v2 = vip();
      const v3 = vip();
      const v4 = vip();
      P.vipRatings = await listen(v1, VIP);
      P.vipLegacy = await listen(v2, VIP);
      P.vipDb = await listen(v3, VIP);
      P.vipDbPlain = await listen(v4, VIP);
      servers.push(v1, v2, v3, v4);
      const d1 = tcpService('db', 'books', P.vipDb, { address: RATINGS, port: P.db }, istioMutual(FQDN('db', 'books'), P.vipDb, [spiffe('books', 'db')]));
      const d2 = tcpService('db-istio', 'books', P.vipDbPlain, { address: RATINGS, port: P.dbPlain }, istioMutual(FQDN('db-istio', 'books'), P.vipDbPlain, [spiffe('books', 'db')]));
      const r = service('ratings', 'books', P.vipRatings, { address: RATINGS, port: P.ratings }, istioMutual(FQDN('ratings', 'books'), P.vipRatings, [spiffe('books', 'ratings')]));
      const l = service('legacy', 'books', P.vipLegacy, { address: LEGACY, port: P.legacy }, null);
      const sidecar: SidecarView = {
        proxy: { namespace: 'shop', serviceAccount: 'web', podName: 'web-0', podIps: [WEB], labels: { app: 'web', version: 'v3' }, spiffeId: spiffe('shop', 'web'), workload: 'web' },
        outboundTrafficPolicy: 'ALLOW_ANY',
        outbound: [l.svc, r.svc, d1.svc, d2.svc].sort((a, b) => a.port - b.port),
        outboundHttp: [l.table, r.table],
        outboundTcp: [d1.relay, d2.relay],
        inbound: [],
        inboundDefault: 'PERMISSIVE',
        inboundHttp: [],
        // The view knows neither destination pod: only the metadata exchange can name the workload.
        workloads: [],
      };
      const ir: IRSnapshot = { ...snapshot([], [l.cluster, r.cluster, d1.cluster, d2.cluster]), version: 'peer-metadata-outbound', sidecar };
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
        serviceAccount: '',
        meshId: '',
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
      // Envoy's OVERWRITE (Istio's outbound listeners): the upstream's server header is replaced by the proxy's name.
      assert.equal(r.headers.server, 'meshgate');
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

    const tcpCall = (port: number, payload: string): Promise<string> =>
      new Promise((resolve, reject) => {
        const sock = net.connect({ host: VIP, port, allowHalfOpen: true });
        let got = '';
        sock.setEncoding('utf8');
        sock.on('connect', () => sock.end(payload));
        sock.on('data', (c: string) => (got += c));
        sock.on('end', () => resolve(got));
        sock.on('error', reject);
        sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
      });

    test('TCP to an Istio mTLS endpoint: the exchange is offered and done; the server’s preamble never reaches the app', async () => {
      const got = await tcpCall(P.vipDb, 'PING');
      assert.equal(got, 'echo:PING', 'the app got exactly the server’s bytes');
      const seen = atDb.at(-1)!;
      assert.equal(seen.alpn, 'istio-peer-exchange');
      assert.ok(seen.preamble !== null, 'no preamble from meshgate');
      assert.equal(seen.payload, 'PING', 'the server got exactly the app’s bytes after the preamble');
      assert.equal(seen.preamble.id, `sidecar~${WEB}~web-0.shop~shop.svc.cluster.local`);
      const p = peerWorkloadOf(seen.preamble.metadata);
      assert.deepEqual([p.workload, p.namespace, p.app, p.version, p.clusterId], ['web', 'shop', 'web', 'v3', 'west']);
      // The view does not know the endpoint: the server's preamble names it in istio_tcp_* (reporter="source").
      const deadline = Date.now() + 5000;
      let found: string[] = [];
      while (Date.now() < deadline) {
        found = series(await obs.registry.metrics(), 'istio_tcp_connections_closed_total', 'reporter="source"', `destination_service="${FQDN('db', 'books')}"`);
        if (found.length > 0) break;
        await new Promise((x) => setTimeout(x, 50));
      }
      assert.equal(found.length, 1, series(await obs.registry.metrics(), 'istio_tcp_connections_closed_total').join('\n'));
      for (const label of ['destination_workload="ratings-v1"', 'destination_app="ratings"', 'destination_canonical_service="ratings"', 'destination_cluster="east"', 'source_workload="web"']) {
        assert.ok(found[0].includes(label), `${label} missing in ${found[0]}`);
      }
      const opened = series(await obs.registry.metrics(), 'istio_tcp_connections_opened_total', 'reporter="source"', `destination_service="${FQDN('db', 'books')}"`, 'destination_workload="ratings-v1"');
      assert.equal(opened.length, 1, 'opened counted under the same labels');
    });

    test('TCP to a server that does not choose the exchange: no preamble either way', async () => {
      const got = await tcpCall(P.vipDbPlain, 'PONG');
      assert.equal(got, 'echo:PONG');
      const seen = atDb.at(-1)!;
      assert.equal(seen.alpn, 'istio');
      assert.equal(seen.payload, 'PONG');
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
    let tcpPort = 0;
    let obsIn: Observability;

    before(async () => {
      const serverId = await material('ns1', 'server');
      envoyClient = await material('books', 'productpage');
      spoofer = await material('ns2', 'spoofer');
      const app = http.createServer((req, res) => {
        atApp.push({ headers: req.headers });
        // An app setting these itself: never relayed to the peer.
        res.setHeader('x-envoy-peer-metadata-id', 'app-made');
        res.setHeader('server', 'app-server/1.0');
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
      // A TCP port with an echo app: it answers `echo:` and every byte it received, after the client's FIN.
      const echo = net.createServer({ allowHalfOpen: true }, (sock) => {
        const got: Buffer[] = [];
        sock.on('data', (c: Buffer) => got.push(c));
        sock.on('end', () => sock.end(Buffer.concat([Buffer.from('echo:'), ...got])));
        sock.on('error', () => {});
      });
      for (let i = 0; ; i++) {
        const p = await listen(echo, SERVER_APP);
        const pod = net.createServer({ allowHalfOpen: true }, (s) => handler.handle(s));
        try {
          await listen(pod, SERVER, p);
          tcpPort = p;
          servers.push(echo, pod);
          break;
        } catch (e) {
          await new Promise<void>((r) => echo.close(() => r()));
          if (i > 10) throw e;
        }
      }
      const svc = { namespace: 'ns1', name: 'server', host: FQDN('server', 'ns1'), port: 80 };
      const inbound: InboundPort = { port, protocol: 'HTTP', mtls: 'PERMISSIVE', httpRoutes: `inbound_${port}`, cluster: `inbound|${port}||` };
      const inboundTcp: InboundPort = { port: tcpPort, protocol: 'TCP', mtls: 'PERMISSIVE', httpRoutes: null, cluster: `inbound|${tcpPort}||` };
      const sidecar: SidecarView = {
        proxy: { namespace: 'ns1', serviceAccount: 'server', podName: 'server-0', podIps: [SERVER], labels: { app: 'server', version: 'v1' }, spiffeId: spiffe('ns1', 'server'), workload: 'server' },
        outboundTrafficPolicy: 'ALLOW_ANY',
        outbound: [],
        outboundHttp: [],
        outboundTcp: [],
        inbound: [inbound, inboundTcp].sort((a, b) => a.port - b.port),
        inboundDefault: 'PERMISSIVE',
        inboundHttp: [httpListener(port, [vhost('inbound', ['*'], [route('default', forward([inbound.cluster]))])], { name: `inbound_${port}`, address: '0.0.0.0' })],
        // The view does not know the caller's pod.
        workloads: [],
      };
      // A DENY policy for /deny on the HTTP port: local 403 replies.
      const deny = {
        name: 'authorizationpolicy/ns1/deny',
        source: { kind: 'AuthorizationPolicy', namespace: 'ns1', name: 'deny', file: null, line: null },
        action: 'DENY' as const,
        provider: null,
        dryRun: false,
        rules: [{ from: [], to: [[{ key: 'request.path', values: ['/deny'], notValues: [] }, { key: 'destination.port', values: [String(port)], notValues: [] }]], when: [] }],
      };
      handler.apply({ ...snapshot([], [cluster(inbound.cluster, [], { service: svc }), cluster(inboundTcp.cluster, [], { service: { ...svc, port: 5432 } })], { authorizationPolicies: [deny] }), version: 'peer-metadata-inbound', sidecar });
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
      // Envoy's OVERWRITE (Istio's inbound listeners): the app's own server header never leaves the pod.
      assert.equal(r.headers.server, 'meshgate');
    });

    test('a local reply (403 from AuthorizationPolicy) answers the peer’s metadata exchange too', async () => {
      const r = await envoyGet(envoyClient, { 'x-envoy-peer-metadata': PRODUCTPAGE_MX, 'x-envoy-peer-metadata-id': 'sidecar~1.2.3.4~x.books~books.svc.cluster.local' }, '/deny');
      assert.equal(r.status, 403, r.body);
      assert.equal(r.body, 'RBAC: access denied');
      assert.equal(r.headers.server, 'meshgate', 'a local reply names the proxy, as Envoy\'s do');
      assert.equal(r.headers['x-envoy-peer-metadata-id'], `sidecar~${SERVER}~server-0.ns1~ns1.svc.cluster.local`);
      assert.equal(parsePeerMetadata(String(r.headers['x-envoy-peer-metadata']))?.workload, 'server');
      const none = await envoyGet(envoyClient, {}, '/deny');
      assert.equal(none.status, 403);
      assert.equal(none.headers['x-envoy-peer-metadata-id'], undefined, 'a 403 to a client that sent nothing carries nothing');
    });

    test('a plaintext request (PERMISSIVE) is not answered with meshgate’s metadata; its own still names the caller', async () => {
      const r = await new Promise<{ status: number; headers: http.IncomingHttpHeaders }>((resolve, reject) => {
        const req = http.get({ host: SERVER, port, path: '/plain', localAddress: ENVOY_CLIENT, headers: { host: FQDN('server', 'ns1'), 'x-envoy-peer-metadata': PRODUCTPAGE_MX, 'x-envoy-peer-metadata-id': 'sidecar~1.2.3.4~x.books~books.svc.cluster.local' }, timeout: 5000 }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
      });
      assert.equal(r.status, 200);
      assert.equal(r.headers['x-envoy-peer-metadata'], undefined, 'metadata sent in clear text');
      assert.equal(r.headers['x-envoy-peer-metadata-id'], undefined);
      const h = atApp.at(-1)!.headers;
      assert.equal(h['x-envoy-peer-metadata'], undefined, 'x-envoy-peer-metadata reached the app');
      const text = await obsIn.registry.metrics();
      const found = series(text, 'istio_requests_total', 'reporter="destination"', 'source_principal="unknown"', 'source_workload="productpage-v1"');
      assert.equal(found.length, 1, series(text, 'istio_requests_total').join('\n'));
      assert.ok(found[0].includes('connection_security_policy="none"'), found[0]);
      assert.ok(found[0].includes('source_workload_namespace="books"'), found[0]);
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
      const found = series(text, 'istio_requests_total', 'reporter="destination"', `source_principal="${spiffe('books', 'productpage')}"`, 'source_workload="productpage-v1"', 'response_code="200"');
      assert.equal(found.length, 1, `expected one series, got:\n${series(text, 'istio_requests_total').join('\n')}`);
      // The denied request of the earlier test is counted under the peer's workload too (its 403 is a local reply).
      assert.equal(series(text, 'istio_requests_total', 'reporter="destination"', 'source_workload="productpage-v1"', 'response_code="403"').length, 1, 'the 403 is not counted under the peer');
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

    /** An Envoy client sidecar's TCP connection: ALPN offer, its preamble (when negotiated) and `payload`, then FIN; all bytes back. */
    const envoyTcp = (m: MeshIdentityMaterial, alpn: string[], preamble: Buffer | null, payload: string): Promise<{ alpn: string | false; received: Buffer }> =>
      new Promise((resolve, reject) => {
        const sock = tls.connect({ host: SERVER, port: tcpPort, localAddress: ENVOY_CLIENT, cert: m.certChainPem, key: m.keyPem, ca: m.rootsPem, servername: `outbound_.5432_._.${FQDN('server', 'ns1')}`, ALPNProtocols: alpn, checkServerIdentity: () => undefined } as tls.ConnectionOptions);
        const got: Buffer[] = [];
        sock.on('secureConnect', () => {
          if (sock.alpnProtocol === 'istio-peer-exchange' && preamble !== null) sock.write(preamble);
          sock.end(payload);
        });
        sock.on('data', (c: Buffer) => got.push(c));
        sock.on('end', () => resolve({ alpn: sock.alpnProtocol ?? false, received: Buffer.concat(got) }));
        sock.on('error', reject);
        sock.setTimeout(5000, () => sock.destroy(new Error('timeout')));
      });

    test('TCP: an Envoy client offering istio-peer-exchange gets meshgate’s preamble; its own never reaches the app; its labels reach the metrics', async (t) => {
      const productpage = decodeStruct(Buffer.from(PRODUCTPAGE_MX, 'base64'));
      const r = await envoyTcp(envoyClient, ['istio-peer-exchange', 'istio'], framePreamble(productpage, `sidecar~${ENVOY_CLIENT}~productpage-v1-84975bc778-pxz2w.books~books.svc.cluster.local`), 'SELECT 1;');
      assert.equal(r.alpn, 'istio-peer-exchange', 'the TCP chain answers the exchange, as Istio’s');
      const { preamble, rest } = splitPreamble(r.received);
      assert.ok(preamble !== null, `no preamble first in ${r.received.toString('hex').slice(0, 64)}`);
      assert.equal(rest.toString(), 'echo:SELECT 1;', 'the app saw exactly the client’s bytes');
      assert.equal(preamble.id, `sidecar~${SERVER}~server-0.ns1~ns1.svc.cluster.local`);
      const p = peerWorkloadOf(preamble.metadata);
      assert.deepEqual([p.workload, p.namespace, p.clusterId, p.canonicalService], ['server', 'ns1', 'west', 'server']);
      const pb = protobufAny();
      if (pb !== null) assert.equal(pb.typeUrl(preamble.any), 'type.googleapis.com/google.protobuf.Struct', 'protobufjs reads the Any');
      else t.diagnostic('protobufjs missing: the Any was not decoded independently');
      // Counted once the connection closed, under the peer's workload.
      const deadline = Date.now() + 5000;
      let found: string[] = [];
      while (Date.now() < deadline) {
        found = series(await obsIn.registry.metrics(), 'istio_tcp_connections_closed_total', 'reporter="destination"', 'source_workload="productpage-v1"');
        if (found.length > 0) break;
        await new Promise((x) => setTimeout(x, 50));
      }
      assert.equal(found.length, 1, series(await obsIn.registry.metrics(), 'istio_tcp_connections_closed_total').join('\n'));
      for (const label of ['source_app="productpage"', 'source_canonical_service="productpage"', 'source_cluster="east"', `source_principal="${spiffe('books', 'productpage')}"`, 'request_protocol="tcp"', 'connection_security_policy="mutual_tls"']) {
        assert.ok(found[0].includes(label), `${label} missing in ${found[0]}`);
      }
      const opened = series(await obsIn.registry.metrics(), 'istio_tcp_connections_opened_total', 'reporter="destination"', 'source_workload="productpage-v1"');
      assert.equal(opened.length, 1, 'opened counted under the same labels');
    });

    test('TCP: a client offering only istio gets no preamble (the bytes are the app’s alone)', async () => {
      const r = await envoyTcp(envoyClient, ['istio'], null, 'plain');
      assert.equal(r.alpn, 'istio');
      assert.equal(r.received.toString(), 'echo:plain');
    });
  });
});
