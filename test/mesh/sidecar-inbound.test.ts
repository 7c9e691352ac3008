/**
 * The sidecar's inbound side (InboundHandler, src/runtime/sidecar/inbound.ts) over real sockets: a
 * plain listener on a loopback address stands for the pod (its address and port are the original
 * destination, as TPROXY keeps them) and hands every accepted socket to the handler; the app listens
 * on another loopback address (`forwardTo`). Peers hold certificates from a real MeshCa. Clients dial
 * from their own loopback address, which the view's workload table knows.
 *
 * Proves: STRICT closes plaintext with nothing sent; PERMISSIVE admits mTLS and plaintext (HTTP and,
 * on an undeclared port, the app's own TLS; a declared HTTP port closes TLS without Istio's ALPN);
 * port-level DISABLE takes plaintext and closes an mTLS ClientHello on its HTTP port; AuthorizationPolicy by peer principal (403 `RBAC: access denied`, 200 for the allowed one;
 * TCP closed); XFCC as Istio's sidecars set it; the app sees 127.0.0.6; HTTP/2 over mTLS; TCP over
 * mTLS with half-close; no or foreign client certificates fail the handshake; a renewed workload
 * certificate serves new handshakes; destination-side metrics labels.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { existsSync, readFileSync } from 'node:fs';
import tls from 'node:tls';
import { loadOrCreateCaDirectory, MeshCa } from '../../src/mesh/ca/ca.js';
import { privateKeyPem, signatureParams, splitPemCertificates, toCryptoPrivateKey, toCryptoPublicKey, x509 } from '../../src/mesh/ca/keys.js';
import type { MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import type { InboundPort, SidecarView } from '../../src/ir/sidecar.js';
import { InboundHandler } from '../../src/runtime/sidecar/inbound.js';
import { Observability, DEFAULT_OBSERVABILITY } from '../../src/observability/observer.js';
import { Logger } from '../../src/lib/log.js';
import { cluster, forward, httpListener, named, route, snapshot, vhost } from '../support/ir-builders.js';
import { tempDir } from '../helpers/gateway.js';
import { tlsClientHello } from '../support/loopback-servers.js';

const TD = 'cluster.local';
const quiet = new Logger('error', {}, () => {});

/** Addresses of this run (127/8 is all loopback): the pod, the app, two clients. */
const net8 = `127.${100 + (process.pid % 100)}.${1 + Math.floor(Math.random() * 250)}`;
const POD = `${net8}.20`;
const APP = `${net8}.21`;
const CLIENT = `${net8}.30`;
const STRANGER = `${net8}.31`;

async function workloadCert(ca: MeshCa, ns: string, sa: string, ttlSeconds = 3600): Promise<MeshIdentityMaterial> {
  const id = `spiffe://${TD}/ns/${ns}/sa/${sa}`;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: { privateKey: await toCryptoPrivateKey(privateKey), publicKey: await toCryptoPublicKey(privateKey) },
    signingAlgorithm: signatureParams(privateKey),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true)],
  });
  const chain = await ca.signCsr(csr.toString('pem'), [id], ttlSeconds);
  const certs = chain.flatMap((p) => splitPemCertificates(p));
  const root = ca.rootCertPem;
  const rootFp = new Set(splitPemCertificates(root).map((p) => new X509Certificate(p).fingerprint256));
  const intermediates = certs.slice(1).filter((p) => !rootFp.has(new X509Certificate(p).fingerprint256));
  return { spiffeId: id, certChainPem: [certs[0], ...intermediates].join(''), keyPem: privateKeyPem(privateKey), rootsPem: root, notAfter: new Date(new X509Certificate(certs[0]).validTo).getTime() };
}

/** Listens on `host:port` (0 = any) and resolves the bound port. */
function listen(server: net.Server, host: string, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** The app: an HTTP server answering what it saw, and a raw TCP echo; on DISABLE's port, a TLS ClientHello is recorded and closed. */
interface AppSeen {
  remoteAddress: string;
  xfcc: string | null;
  path: string;
}

function httpApp(seen: AppSeen[], tlsHellos: string[] | null = null): net.Server {
  const h = http.createServer((req, res) => {
    seen.push({ remoteAddress: req.socket.remoteAddress ?? '', xfcc: (req.headers['x-forwarded-client-cert'] as string | undefined) ?? null, path: req.url ?? '' });
    res.setHeader('content-type', 'application/json');
    res.setHeader('x-envoy-peer-metadata-id', 'sidecar~10.0.0.9~server~ns1');
    res.end(JSON.stringify({ remote: req.socket.remoteAddress, xfcc: req.headers['x-forwarded-client-cert'] ?? null, xff: req.headers['x-forwarded-for'] ?? null, headers: req.headers }));
  });
  h.keepAliveTimeout = 500;
  return net.createServer((s) => {
    s.once('data', (first: Buffer) => {
      if (first[0] === 0x16 && tlsHellos !== null) {
        tlsHellos.push(s.remoteAddress ?? '');
        return void s.destroy();
      }
      s.pause();
      s.unshift(first);
      h.emit('connection', s);
      s.resume();
    });
    s.on('error', () => {});
  });
}

/** A server-first protocol (SMTP, MySQL...): the app speaks first and closes. */
function bannerApp(): net.Server {
  return net.createServer((s) => {
    s.end('220 banner\r\n');
    s.on('error', () => {});
  });
}

/** Connections the echo apps saw closed, by their app-side port (source port of the sidecar's connection). */
const echoClosed = new Set<number>();

function echoApp(peers: string[]): net.Server {
  return net.createServer({ allowHalfOpen: true }, (s) => {
    peers.push(s.remoteAddress ?? '');
    const remotePort = s.remotePort ?? 0;
    s.on('close', () => echoClosed.add(remotePort));
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    // Answers after the client's FIN: proves half-close is relayed both ways.
    s.on('end', () => s.end(Buffer.concat([Buffer.from('echo:'), ...chunks])));
    s.on('error', () => {});
  });
}

const SERVICE = { namespace: 'ns1', name: 'server', host: 'server.ns1.svc.cluster.local', port: 80 };

function inboundPort(port: number, protocol: InboundPort['protocol'], mtls: InboundPort['mtls']): InboundPort {
  const http = protocol !== 'TCP' && protocol !== 'TLS';
  return { port, protocol, mtls, httpRoutes: http ? `inbound_${port}` : null, cluster: `inbound|${port}||` };
}

function view(ports: InboundPort[], inboundDefault: SidecarView['inboundDefault'] = 'PERMISSIVE'): SidecarView {
  return {
    proxy: { namespace: 'ns1', serviceAccount: 'server', podName: 'server-1', podIps: [POD], labels: { app: 'server', version: 'v1' }, spiffeId: `spiffe://${TD}/ns/ns1/sa/server`, workload: 'server' },
    outboundTrafficPolicy: 'ALLOW_ANY',
    outbound: [],
    outboundHttp: [],
    outboundTcp: [],
    inbound: ports,
    inboundDefault,
    inboundHttp: ports
      .filter((p) => p.httpRoutes !== null)
      .map((p) => httpListener(p.port, [vhost('inbound', ['*'], [route('default', forward([p.cluster]))])], { name: `inbound_${p.port}`, address: '0.0.0.0' })),
    workloads: [
      { ip: CLIENT, namespace: 'ns1', name: 'client', serviceAccount: 'client', app: 'client', version: 'v2', canonicalService: 'client', canonicalRevision: 'v2', meshed: true },
      { ip: STRANGER, namespace: 'ns2', name: 'intruder', serviceAccount: 'intruder', app: 'intruder', version: '', canonicalService: 'intruder', canonicalRevision: 'latest', meshed: true },
    ],
  };
}

/** tls.connect honours `localAddress` (and `allowHalfOpen`) though its options type does not say so. */
type TlsOptions = tls.ConnectionOptions & { localAddress?: string; allowHalfOpen?: boolean };
function tlsConnect(o: TlsOptions): tls.TLSSocket {
  return tls.connect(o);
}

const TLS_CLIENT_DEFAULTS = { checkServerIdentity: (_host: string, cert: tls.PeerCertificate) => (String(cert.subjectaltname ?? '').includes(`URI:spiffe://${TD}/ns/ns1/sa/server`) ? undefined : new Error(`unexpected server identity ${cert.subjectaltname}`)) };

function mtlsOptions(m: MeshIdentityMaterial, port: number, alpn: string[]): TlsOptions {
  return { host: POD, port, cert: m.certChainPem, key: m.keyPem, ca: m.rootsPem, servername: `outbound_.80_._.${SERVICE.host}`, ALPNProtocols: alpn, ...TLS_CLIENT_DEFAULTS };
}

/** One HTTP/1.1 request over Istio mTLS (ALPN `istio-http/1.1, istio, http/1.1`). */
function mtlsGet(m: MeshIdentityMaterial, port: number, from: string, p = '/'): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = https.request({ ...mtlsOptions(m, port, ['istio-http/1.1', 'istio', 'http/1.1']), localAddress: from, path: p, agent: false, headers: { host: SERVICE.host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** mtlsGet offering `session` for resumption; says whether the handshake resumed and the session ticket the sidecar sent. */
function mtlsGetResuming(m: MeshIdentityMaterial, port: number, from: string, p: string, session: Buffer | undefined): Promise<{ status: number; body: string; reused: boolean; session: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    // `session` is passed on to tls.connect (https.RequestOptions does not list it).
    const options: https.RequestOptions & { session?: Buffer } = { ...mtlsOptions(m, port, ['istio-http/1.1', 'istio', 'http/1.1']), session, localAddress: from, path: p, agent: false, headers: { host: SERVICE.host } };
    const req = https.request(options, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reused: (res.socket as tls.TLSSocket).isSessionReused(), session: ticket }));
    });
    req.on('socket', (s) => s.on('session', (t: Buffer) => (ticket = t)));
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

function plainGet(port: number, from: string, p = '/'): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: POD, port, localAddress: from, path: p, agent: false, headers: { host: SERVICE.host } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

/** Sends `bytes` on a raw connection; resolves what came back before the close. */
function rawExchange(port: number, bytes: Buffer | string, from = CLIENT): Promise<{ received: Buffer; closedBy: 'end' | 'error' | 'close' }> {
  return new Promise((resolve) => {
    const s = net.connect({ host: POD, port, localAddress: from });
    const got: Buffer[] = [];
    const timer = setTimeout(() => s.destroy(), 10_000);
    let how: 'end' | 'error' | 'close' = 'close';
    s.on('data', (c: Buffer) => got.push(c));
    s.on('end', () => (how = 'end'));
    s.on('error', () => (how = 'error'));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(got), closedBy: how });
    });
    s.on('connect', () => s.write(bytes));
  });
}

/** TCP over mTLS (ALPN `istio`): writes, half-closes, reads the answer. */
function mtlsTcp(m: MeshIdentityMaterial, port: number, from: string, payload: string): Promise<{ ok: boolean; received: string; error: string | null }> {
  return new Promise((resolve) => {
    const s = tlsConnect({ ...mtlsOptions(m, port, ['istio']), localAddress: from, allowHalfOpen: true });
    let received = '';
    let error: string | null = null;
    const timer = setTimeout(() => s.destroy(new Error('timeout')), 10_000);
    s.setEncoding('utf8');
    s.on('secureConnect', () => {
      s.write(payload);
      s.end();
    });
    s.on('data', (c: string) => (received += c));
    s.on('error', (e) => (error = e.message));
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ ok: error === null, received, error });
    });
  });
}

describe('sidecar inbound (15006) over real sockets', () => {
  let ca: MeshCa;
  let server: MeshIdentityMaterial;
  let client: MeshIdentityMaterial;
  let intruder: MeshIdentityMaterial;
  let identity: MeshIdentityMaterial | null;
  const seen: AppSeen[] = [];
  const tlsHellos: string[] = [];
  const echoPeers: string[] = [];
  const servers: net.Server[] = [];
  let handler: InboundHandler;
  let obs: Observability;
  let baseIr: IRSnapshot;
  const logFile = path.join(tempDir('meshgate-inbound-log-'), 'access.log');
  /** Port numbers (the same at the pod and at the app). */
  const P = { strictHttp: 0, permissiveAuto: 0, permissiveHttp: 0, disableHttp: 0, strictTcp: 0, permissiveTcp: 0, undeclared: 0, bannerPermissive: 0, bannerDisable: 0 };

  before(async () => {
    const material = await loadOrCreateCaDirectory(path.join(tempDir('meshgate-inbound-ca-'), 'ca'), { trustDomain: TD });
    ca = new MeshCa(material);
    [server, client, intruder] = await Promise.all([workloadCert(ca, 'ns1', 'server'), workloadCert(ca, 'ns1', 'client'), workloadCert(ca, 'ns2', 'intruder')]);
    identity = server;
    // Apps on APP:<port>, each port then taken on POD as well.
    const apps: [keyof typeof P, net.Server][] = [
      ['strictHttp', httpApp(seen)],
      ['permissiveAuto', httpApp(seen, tlsHellos)],
      ['permissiveHttp', httpApp(seen, tlsHellos)],
      ['disableHttp', httpApp(seen, tlsHellos)],
      ['strictTcp', echoApp(echoPeers)],
      ['permissiveTcp', echoApp(echoPeers)],
      ['undeclared', echoApp(echoPeers)],
      ['bannerPermissive', bannerApp()],
      ['bannerDisable', bannerApp()],
    ];
    obs = new Observability({ ...DEFAULT_OBSERVABILITY, metrics: true, accessLog: { path: logFile, format: 'json' } });
    handler = new InboundHandler({ identity: () => identity, log: quiet, observer: obs, forwardTo: (_a, port) => ({ address: APP, port }), peekTimeoutMs: 2000 });
    for (const [name, app] of apps) {
      // Bind the app, then the same port on the pod address (retry with another port if taken there).
      for (let i = 0; ; i++) {
        const port = await listen(app, APP);
        const pod = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (s) => handler.handle(s));
        try {
          await listen(pod, POD, port);
          P[name] = port;
          servers.push(app, pod);
          break;
        } catch (e) {
          await new Promise<void>((r) => app.close(() => r()));
          if (i > 10) throw e;
        }
      }
    }
    const ports = [
      inboundPort(P.strictHttp, 'HTTP', 'STRICT'),
      inboundPort(P.permissiveAuto, 'UNKNOWN', 'PERMISSIVE'),
      inboundPort(P.permissiveHttp, 'HTTP', 'PERMISSIVE'),
      inboundPort(P.disableHttp, 'HTTP', 'DISABLE'),
      inboundPort(P.strictTcp, 'TCP', 'STRICT'),
      inboundPort(P.permissiveTcp, 'TCP', 'PERMISSIVE'),
      inboundPort(P.bannerPermissive, 'TCP', 'PERMISSIVE'),
      inboundPort(P.bannerDisable, 'TCP', 'DISABLE'),
    ].sort((a, b) => a.port - b.port);
    const clusters = ports.map((p) => cluster(p.cluster, [], { service: SERVICE }));
    const principal = (v: string) => ({ key: 'source.principal', values: [v], notValues: [] });
    const port = (...ps: number[]) => ({ key: 'destination.port', values: ps.map(String), notValues: [] });
    baseIr = {
      ...snapshot([], clusters, {
        authorizationPolicies: [
          {
            name: 'authorizationpolicy/ns1/server',
            source: { kind: 'AuthorizationPolicy', namespace: 'ns1', name: 'server', file: null, line: null },
            action: 'ALLOW',
            provider: null,
            dryRun: false,
            rules: [
              // Only ns1/client may call the STRICT ports.
              { from: [[principal(`${TD}/ns/ns1/sa/client`)]], to: [[port(P.strictHttp, P.strictTcp)]], when: [] },
              // Anyone on the others.
              { from: [], to: [[port(P.permissiveAuto, P.permissiveHttp, P.disableHttp, P.permissiveTcp, P.undeclared, P.bannerPermissive, P.bannerDisable)]], when: [] },
            ],
          },
        ],
      }),
      sidecar: view(ports, 'PERMISSIVE'),
    };
    handler.apply(baseIr);
  });

  after(async () => {
    await handler.close();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    await obs.close();
  });

  test('STRICT: plaintext is closed with no byte of answer', async () => {
    const before = seen.length;
    const r = await rawExchange(P.strictHttp, 'GET / HTTP/1.1\r\nhost: server\r\n\r\n');
    assert.equal(r.received.length, 0, `got ${JSON.stringify(r.received.toString())}`);
    const t = await rawExchange(P.strictTcp, 'hello');
    assert.equal(t.received.length, 0);
    assert.equal(seen.length, before, 'the app saw a plaintext request on a STRICT port');
  });

  test('STRICT HTTP: the allowed principal gets 200; the app sees 127.0.0.6 and Istio XFCC', async () => {
    const r = await mtlsGet(client, P.strictHttp, CLIENT, '/allowed');
    assert.equal(r.status, 200, r.body);
    const app = JSON.parse(r.body) as { remote: string; xfcc: string | null; xff: string | null };
    assert.equal(app.remote, '127.0.0.6');
    assert.equal(app.xff, null, 'a sidecar inbound does not append the peer to x-forwarded-for (use_remote_address: false)');
    assert.ok(app.xfcc !== null, 'no x-forwarded-client-cert');
    const parts = app.xfcc.split(';');
    assert.equal(parts[0], `By=spiffe://${TD}/ns/ns1/sa/server`);
    assert.match(parts[1], /^Hash=[0-9a-f]{64}$/);
    assert.equal(parts[2], 'Subject=""');
    assert.equal(parts[3], `URI=spiffe://${TD}/ns/ns1/sa/client`);
    assert.equal(parts.length, 4, `XFCC has more than By, Hash, Subject, URI: ${app.xfcc}`);
    assert.ok(!app.xfcc.includes('Cert='), 'sidecars do not forward the certificate');
  });

  test('a resumed mTLS session (session ticket, as Envoy peers resume) keeps the peer identity: XFCC URI, AuthorizationPolicy by principal', async () => {
    const first = await mtlsGetResuming(client, P.strictHttp, CLIENT, '/allowed', undefined);
    assert.equal(first.status, 200, first.body);
    assert.ok(first.session !== undefined, 'the sidecar sent no session ticket');
    const second = await mtlsGetResuming(client, P.strictHttp, CLIENT, '/allowed', first.session);
    assert.equal(second.reused, true, 'the second handshake did not resume the session');
    assert.equal(second.status, 200, second.body);
    const app = JSON.parse(second.body) as { xfcc: string | null };
    assert.ok(app.xfcc?.includes(`;URI=spiffe://${TD}/ns/ns1/sa/client`), `XFCC of the resumed connection: ${app.xfcc}`);
    // The identity comes from the resumed session, not from whoever resumed first.
    const firstIntruder = await mtlsGetResuming(intruder, P.strictHttp, STRANGER, '/denied', undefined);
    assert.equal(firstIntruder.status, 403);
    const resumedIntruder = await mtlsGetResuming(intruder, P.strictHttp, STRANGER, '/denied', firstIntruder.session);
    assert.equal(resumedIntruder.reused, true, 'the intruder did not resume');
    assert.equal(resumedIntruder.status, 403, 'a resumed session of the wrong principal is still denied');
  });

  test("inbound forwarding headers are Envoy's sidecar inbound ones: the peer's kept, nothing of the gateway added, metadata exchange consumed", async () => {
    const ask = (headers: Record<string, string>) =>
      new Promise<{ headers: Record<string, string>; response: http.IncomingHttpHeaders }>((resolve, reject) => {
        const req = https.request({ ...mtlsOptions(client, P.strictHttp, ['istio-http/1.1', 'istio', 'http/1.1']), localAddress: CLIENT, path: '/fwd', agent: false, headers: { host: SERVICE.host, ...headers } }, (res) => {
          let body = '';
          res.on('data', (c: Buffer) => (body += c));
          res.on('end', () => resolve({ headers: (JSON.parse(body) as { headers: Record<string, string> }).headers, response: res.headers }));
        });
        req.on('error', reject);
        req.end();
      });
    // What a client sidecar sends (Envoy outbound): its x-forwarded-proto, x-request-id, attempt count, metadata exchange.
    const peer = await ask({ 'x-forwarded-proto': 'http', 'x-request-id': 'req-1', 'x-envoy-attempt-count': '2', 'x-envoy-peer-metadata': 'ChgKBE5BTUUSEBoOY2xpZW50', 'x-envoy-peer-metadata-id': 'sidecar~127.0.0.1~client~ns1' });
    assert.equal(peer.headers['x-forwarded-proto'], 'http', "the peer's x-forwarded-proto is kept");
    assert.equal(peer.headers['x-request-id'], 'req-1');
    assert.equal(peer.headers['x-envoy-attempt-count'], '2', 'the client sidecar\'s attempt count reaches the app');
    assert.equal(peer.headers['x-forwarded-host'], undefined, 'no x-forwarded-host added');
    assert.equal(peer.headers['x-envoy-peer-metadata'], undefined, 'metadata exchange headers never reach the app');
    assert.equal(peer.headers['x-envoy-peer-metadata-id'], undefined);
    // The peer sent both: the proxy answers with its own (Istio's downstream propagation), never the app's.
    assert.equal(peer.response['x-envoy-peer-metadata-id'], `sidecar~${POD}~server-1.ns1~ns1.svc.cluster.local`, "the proxy's node ID, not the app's header");
    assert.match(String(peer.response['x-envoy-peer-metadata']), /^[A-Za-z0-9+/]+={0,2}$/);
    // Nothing sent: x-forwarded-proto from the connection (mTLS: https), x-request-id generated.
    const bare = await ask({});
    assert.equal(bare.response['x-envoy-peer-metadata-id'], undefined, 'a peer that sent no metadata exchange gets none (nor the app’s)');
    assert.equal(bare.response['x-envoy-peer-metadata'], undefined);
    assert.equal(bare.headers['x-forwarded-proto'], 'https');
    assert.match(bare.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
  });

  test('a client XFCC is kept and the sidecar appends its element (APPEND_FORWARD)', async () => {
    const r = await new Promise<string>((resolve, reject) => {
      const req = https.request({ ...mtlsOptions(client, P.strictHttp, ['istio-http/1.1', 'istio', 'http/1.1']), localAddress: CLIENT, path: '/xfcc', agent: false, headers: { host: SERVICE.host, 'x-forwarded-client-cert': 'By=spiffe://earlier;URI=spiffe://first', 'x-forwarded-for': '192.0.2.7' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c));
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
    const { xfcc, xff } = JSON.parse(r) as { xfcc: string; xff: string };
    assert.equal(xff, '192.0.2.7', 'the client x-forwarded-for passes unchanged');
    assert.ok(xfcc.startsWith('By=spiffe://earlier;URI=spiffe://first,By=spiffe://'), xfcc);
  });

  test('STRICT HTTP: the wrong principal gets 403 RBAC: access denied and the app sees nothing', async () => {
    const before = seen.length;
    const r = await mtlsGet(intruder, P.strictHttp, STRANGER, '/denied');
    assert.equal(r.status, 403);
    assert.equal(r.body, 'RBAC: access denied');
    assert.equal(seen.length, before);
  });

  test('HTTP/2 over mTLS (ALPN istio-h2)', async () => {
    const session = http2.connect(`https://${POD}:${P.strictHttp}`, { createConnection: () => tlsConnect({ ...mtlsOptions(client, P.strictHttp, ['istio-h2', 'istio', 'h2']), localAddress: CLIENT }) });
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const st = session.request({ ':path': '/h2', ':authority': SERVICE.host });
        let status = 0;
        let body = '';
        st.on('response', (h) => (status = Number(h[':status'])));
        st.setEncoding('utf8');
        st.on('data', (c: string) => (body += c));
        st.on('end', () => resolve({ status, body }));
        st.on('error', reject);
        st.end();
      });
      assert.equal(status, 200, body);
      assert.match((JSON.parse(body) as { xfcc: string }).xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/ns1\/sa\/client$/);
    } finally {
      session.destroy();
    }
  });

  test('a peer offering only Istio ALPN values (istio-h2 alone, istio-http/1.1 alone) is served HTTP/2 and HTTP/1.1', async () => {
    const session = http2.connect(`https://${POD}:${P.strictHttp}`, { createConnection: () => tlsConnect({ ...mtlsOptions(client, P.strictHttp, ['istio-h2']), localAddress: CLIENT }) });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const st = session.request({ ':path': '/istio-h2', ':authority': SERVICE.host });
        let status = 0;
        st.on('response', (h) => (status = Number(h[':status'])));
        st.resume();
        st.on('end', () => resolve(status));
        st.on('error', reject);
        st.end();
      });
      assert.equal(status, 200);
    } finally {
      session.destroy();
    }
    const r = await new Promise<number>((resolve, reject) => {
      https.get({ ...mtlsOptions(client, P.strictHttp, ['istio-http/1.1']), localAddress: CLIENT, agent: false, path: '/istio-h1', headers: { host: SERVICE.host } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      }).on('error', reject);
    });
    assert.equal(r, 200);
  });

  test('mTLS handshakes fail without a client certificate or with one from another CA', async () => {
    const noCert = await new Promise<string | null>((resolve) => {
      const s = tlsConnect({ host: POD, port: P.strictHttp, ca: server.rootsPem, ALPNProtocols: ['istio-http/1.1', 'istio', 'http/1.1'], servername: 'outbound_.80_._.x', ...TLS_CLIENT_DEFAULTS, localAddress: CLIENT });
      s.on('secureConnect', () => s.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
      let data = '';
      s.on('data', (c: Buffer) => (data += c));
      s.on('error', (e) => resolve(e.message));
      s.on('close', () => resolve(data === '' ? 'closed' : `answered: ${data}`));
    });
    assert.ok(noCert !== null && !noCert.startsWith('answered'), `a client without a certificate was served: ${noCert}`);
    const otherCa = new MeshCa(await loadOrCreateCaDirectory(path.join(tempDir('meshgate-inbound-ca2-'), 'ca'), { trustDomain: TD }));
    const forged = await workloadCert(otherCa, 'ns1', 'client');
    const r = await mtlsGet({ ...forged, rootsPem: server.rootsPem }, P.strictHttp, CLIENT).then(
      (x) => `answered ${x.status}`,
      (e: Error) => e.message,
    );
    assert.ok(!r.startsWith('answered'), `a certificate from another CA was accepted: ${r}`);
  });

  test("PERMISSIVE (sniffed port): plaintext HTTP, mTLS HTTP and the app's own TLS all pass", async () => {
    const plain = await plainGet(P.permissiveAuto, CLIENT, '/plain');
    assert.equal(plain.status, 200);
    const p = JSON.parse(plain.body) as { remote: string; xfcc: string | null };
    assert.equal(p.remote, '127.0.0.6');
    assert.equal(p.xfcc, null, 'plaintext requests carry no XFCC');
    const m = await mtlsGet(client, P.permissiveAuto, CLIENT, '/mtls');
    assert.equal(m.status, 200);
    assert.match((JSON.parse(m.body) as { xfcc: string }).xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/ns1\/sa\/client/);
    // A ClientHello without Istio ALPN is the app's: relayed untouched (the app records it).
    const before = tlsHellos.length;
    await new Promise<void>((resolve) => {
      const s = tlsConnect({ host: POD, port: P.permissiveAuto, localAddress: CLIENT, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'], servername: 'app.example' });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    assert.equal(tlsHellos.length, before + 1, 'the app did not receive the TLS ClientHello');
    assert.equal(tlsHellos.at(-1), '127.0.0.6');
  });

  test('PERMISSIVE (sniffed port): plaintext HTTP/2 with prior knowledge (h2c) is served', async () => {
    const session = http2.connect(`http://${POD}:${P.permissiveAuto}`, { createConnection: () => net.connect({ host: POD, port: P.permissiveAuto, localAddress: CLIENT }) });
    try {
      const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const st = session.request({ ':path': '/h2c', ':authority': SERVICE.host });
        let status = 0;
        let body = '';
        st.on('response', (h) => (status = Number(h[':status'])));
        st.setEncoding('utf8');
        st.on('data', (c: string) => (body += c));
        st.on('end', () => resolve({ status, body }));
        st.on('error', reject);
        st.end();
      });
      assert.equal(status, 200, body);
      assert.equal((JSON.parse(body) as { remote: string }).remote, '127.0.0.6');
    } finally {
      session.destroy();
    }
  });

  test("PERMISSIVE declared HTTP port: plaintext HTTP and mTLS HTTP pass; TLS without Istio's ALPN is closed, never relayed to the app", async () => {
    assert.equal((await plainGet(P.permissiveHttp, CLIENT, '/plain')).status, 200);
    const m = await mtlsGet(client, P.permissiveHttp, CLIENT, '/mtls');
    assert.equal(m.status, 200, m.body);
    // Istio's chains for a declared HTTP port under PERMISSIVE take mTLS with its ALPN and plaintext
    // HTTP only (filterchain_options.go inboundPermissiveHTTPFilterChainMatchWithMxcOptions): another
    // ClientHello matches no chain and the connection is closed.
    const before = tlsHellos.length;
    const refused = handler.stats.refusedTls;
    for (const ALPNProtocols of [['http/1.1'], ['h2', 'http/1.1'], []]) {
      const r = await new Promise<string>((resolve) => {
        const s = tlsConnect({ host: POD, port: P.permissiveHttp, localAddress: CLIENT, rejectUnauthorized: false, ALPNProtocols, servername: 'app.example' });
        s.on('secureConnect', () => resolve('handshake completed'));
        s.on('error', (e: NodeJS.ErrnoException) => resolve(`closed: ${e.code ?? e.message}`));
        s.on('close', () => resolve('closed'));
        s.setTimeout(10_000, () => s.destroy(new Error('timeout')));
      });
      assert.match(r, /^closed/, `ALPN ${JSON.stringify(ALPNProtocols)}: ${r}`);
    }
    assert.equal(tlsHellos.length, before, 'a ClientHello reached the app on a PERMISSIVE HTTP port');
    assert.equal(handler.stats.refusedTls, refused + 3);
    // The same on the undeclared PERMISSIVE port is the app's own TLS (the test above).
  });

  test('port-level DISABLE: plaintext HTTP passes; an mTLS ClientHello on its HTTP port is closed, never relayed to the app', async () => {
    const plain = await plainGet(P.disableHttp, CLIENT, '/disable');
    assert.equal(plain.status, 200);
    const before = tlsHellos.length;
    const r = await mtlsGet(client, P.disableHttp, CLIENT).then(
      (x) => `answered ${x.status}`,
      (e: Error) => e.message,
    );
    assert.ok(!r.startsWith('answered'), r);
    // Istio's only chain there is plaintext HTTP and its TLS inspector is off for the port
    // (listener_inbound.go populateListenerFilters): Envoy's HTTP codec reads the ClientHello, answers
    // 400 and closes; it never reaches the app. meshgate closes it.
    assert.equal(tlsHellos.length, before, 'the mTLS ClientHello reached the app');
    const refused = handler.stats.refusedTls;
    const raw = await rawExchange(P.disableHttp, tlsClientHello('server.ns1.svc.cluster.local'));
    assert.equal(raw.received.length, 0, raw.received.toString('latin1'));
    assert.equal(tlsHellos.length, before, 'the ClientHello reached the app');
    assert.equal(handler.stats.refusedTls, refused + 1);
  });

  test('TCP over mTLS: relayed with half-close; the app sees 127.0.0.6; the wrong principal is closed', async () => {
    const before = echoPeers.length;
    const ok = await mtlsTcp(client, P.strictTcp, CLIENT, 'ping');
    assert.equal(ok.received, 'echo:ping', ok.error ?? '');
    assert.equal(echoPeers.at(-1), '127.0.0.6');
    const denied = await mtlsTcp(intruder, P.strictTcp, STRANGER, 'ping');
    assert.equal(denied.received, '');
    assert.equal(echoPeers.length, before + 1, 'the app saw the denied connection');
  });

  test('PERMISSIVE TCP and undeclared ports: plaintext relayed; mTLS (ALPN istio) terminated then relayed', async () => {
    const plain = await rawExchangeHalfClose(P.permissiveTcp, 'abc');
    assert.equal(plain, 'echo:abc');
    const m = await mtlsTcp(client, P.permissiveTcp, CLIENT, 'xyz');
    assert.equal(m.received, 'echo:xyz');
    const u = await rawExchangeHalfClose(P.undeclared, 'undeclared');
    assert.equal(u, 'echo:undeclared');
    const um = await mtlsTcp(client, P.undeclared, CLIENT, 'u-mtls');
    assert.equal(um.received, 'echo:u-mtls');
  });

  test('PERMISSIVE TCP: a client that sends a few undecided bytes and half-closes is relayed, FIN included', async () => {
    // "AB" could still become an HTTP method: the FIN decides (opaque TCP).
    assert.equal(await rawExchangeHalfClose(P.permissiveTcp, 'AB'), 'echo:AB');
    // On a STRICT port the same is refused.
    assert.equal(await rawExchangeHalfClose(P.strictTcp, 'AB'), '');
  });

  test('server-first protocols: DISABLE relays at once; PERMISSIVE relays once the peek timeout says the client is silent', async () => {
    const banner = (port: number) =>
      new Promise<{ text: string; ms: number }>((resolve, reject) => {
        const t0 = Date.now();
        const s = net.connect({ host: POD, port, localAddress: CLIENT });
        let text = '';
        s.setEncoding('utf8');
        s.on('data', (c: string) => (text += c));
        s.on('close', () => resolve({ text, ms: Date.now() - t0 }));
        s.on('error', reject);
        setTimeout(() => s.destroy(), 15_000).unref();
      });
    const d = await banner(P.bannerDisable);
    assert.equal(d.text, '220 banner\r\n');
    assert.ok(d.ms < 1500, `DISABLE waited ${d.ms} ms`);
    const p = await banner(P.bannerPermissive);
    assert.equal(p.text, '220 banner\r\n');
    assert.ok(p.ms >= 1900, `PERMISSIVE answered after ${p.ms} ms, before the 2 s peek timeout`);
  });

  test('PERMISSIVE: a client silent past the detection timeout is not taken for plaintext when it then sends a ClientHello or a request', async () => {
    const silentThen = async (port: number): Promise<net.Socket> => {
      const raw = net.connect({ host: POD, port, localAddress: CLIENT, allowHalfOpen: true });
      await new Promise<void>((resolve, reject) => {
        raw.once('connect', () => resolve());
        raw.once('error', reject);
      });
      // The harness's detection timeout is 2 s; the apps behind these ports wait for their client.
      await new Promise((r) => setTimeout(r, 2600));
      return raw;
    };
    const hellosBefore = tlsHellos.length;
    // TCP port: mTLS (ALPN istio) terminated, then relayed.
    const raw = await silentThen(P.permissiveTcp);
    const got = await new Promise<string>((resolve) => {
      const s = tlsConnect({ ...mtlsOptions(client, P.permissiveTcp, ['istio']), socket: raw, allowHalfOpen: true });
      let b = '';
      s.setEncoding('utf8');
      s.on('secureConnect', () => s.end('late'));
      s.on('data', (c: string) => (b += c));
      s.on('error', (e) => resolve(`error ${e.message}, got ${b}`));
      s.on('close', () => resolve(b));
      setTimeout(() => s.destroy(), 10_000).unref();
    });
    assert.equal(got, 'echo:late');
    assert.equal(echoPeers.at(-1), '127.0.0.6');
    // Sniffed port: a late mTLS HTTP request is terminated (the app sees XFCC, never a ClientHello)...
    const raw2 = await silentThen(P.permissiveAuto);
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request({ ...mtlsOptions(client, P.permissiveAuto, ['istio-http/1.1', 'istio', 'http/1.1']), createConnection: () => tlsConnect({ ...mtlsOptions(client, P.permissiveAuto, ['istio-http/1.1', 'istio', 'http/1.1']), socket: raw2 }), path: '/late-tls', headers: { host: SERVICE.host } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(r.status, 200, r.body);
    assert.match((JSON.parse(r.body) as { xfcc: string }).xfcc, /URI=spiffe:\/\/cluster\.local\/ns\/ns1\/sa\/client/);
    assert.equal(tlsHellos.length, hellosBefore, 'a ClientHello was relayed to the app as plaintext');
    // ...and a late plaintext request is served as HTTP.
    const raw3 = await silentThen(P.permissiveAuto);
    const plain = await new Promise<string>((resolve) => {
      let b = '';
      raw3.setEncoding('utf8');
      raw3.on('data', (c: string) => (b += c));
      raw3.on('close', () => resolve(b));
      raw3.write(`GET /late-plain HTTP/1.1\r\nhost: ${SERVICE.host}\r\nconnection: close\r\n\r\n`);
      setTimeout(() => raw3.destroy(), 10_000).unref();
    });
    assert.match(plain, /^HTTP\/1\.1 200 /);
    assert.equal(seen.at(-1)?.path, '/late-plain');
  });

  test('PERMISSIVE: a client that stays silent past the detection timeout and resets closes the app connection opened for it', async () => {
    const before = echoPeers.length;
    const raw = net.connect({ host: POD, port: P.permissiveTcp, localAddress: CLIENT });
    raw.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', () => resolve());
      raw.once('error', reject);
    });
    // Past the harness's 2 s detection timeout the app is dialled (it might be the one to speak first).
    const deadline = Date.now() + 6000;
    while (echoPeers.length === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(echoPeers.length, before + 1, 'the app was not dialled for a silent client');
    const closedBefore = echoClosed.size;
    // A reset, not a FIN (a FIN is relayed: the app would close on it anyway).
    raw.resetAndDestroy();
    const until = Date.now() + 5000;
    while (echoClosed.size === closedBefore && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    assert.equal(echoClosed.size, closedBefore + 1, 'the app connection outlived its client');
  });

  test('STRICT: a client silent past the protocol detection timeout may still start its mTLS handshake', async () => {
    const raw = net.connect({ host: POD, port: P.strictTcp, localAddress: CLIENT, allowHalfOpen: true });
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', () => resolve());
      raw.once('error', reject);
    });
    // The harness's detection timeout is 2 s: a STRICT port cannot relay a silent client, so it waits longer.
    await new Promise((r) => setTimeout(r, 2600));
    const got = await new Promise<string>((resolve) => {
      const s = tlsConnect({ ...mtlsOptions(client, P.strictTcp, ['istio']), socket: raw, allowHalfOpen: true });
      let b = '';
      s.setEncoding('utf8');
      s.on('secureConnect', () => s.end('late'));
      s.on('data', (c: string) => (b += c));
      s.on('error', () => resolve(`error, got ${b}`));
      s.on('close', () => resolve(b));
    });
    assert.equal(got, 'echo:late');
  });

  test('a renewed workload certificate serves the next handshakes', async () => {
    const renewed = await workloadCert(ca, 'ns1', 'server');
    const serialOf = (m: MeshIdentityMaterial) => new X509Certificate(splitPemCertificates(m.certChainPem)[0]).serialNumber;
    const seenSerial = () =>
      new Promise<string>((resolve, reject) => {
        const s = tlsConnect({ ...mtlsOptions(client, P.strictTcp, ['istio']), localAddress: CLIENT });
        s.on('secureConnect', () => {
          resolve(s.getPeerX509Certificate()!.serialNumber);
          s.destroy();
        });
        s.on('error', reject);
      });
    assert.equal(await seenSerial(), serialOf(server));
    identity = renewed;
    try {
      assert.equal(await seenSerial(), serialOf(renewed));
    } finally {
      identity = server;
    }
  });

  test('without a workload certificate, mTLS connections are closed and plaintext still works where allowed', async () => {
    identity = null;
    try {
      const r = await mtlsGet(client, P.permissiveAuto, CLIENT).then(
        (x) => `answered ${x.status}`,
        (e: Error) => e.message,
      );
      assert.ok(!r.startsWith('answered'), r);
      assert.equal((await plainGet(P.permissiveAuto, CLIENT)).status, 200);
    } finally {
      identity = server;
    }
  });

  test('metrics: reporter="destination" with SPIFFE principals, workloads and connection_security_policy', async () => {
    const text = await obs.registry.metrics();
    const lines = text.split('\n');
    const find = (name: string, ...parts: string[]) => lines.find((l) => l.startsWith(`${name}{`) && parts.every((p) => l.includes(p)));
    const mtls200 = find(
      'istio_requests_total',
      'reporter="destination"',
      'source_workload="client"',
      'source_workload_namespace="ns1"',
      `source_principal="spiffe://${TD}/ns/ns1/sa/client"`,
      'source_app="client"',
      'source_version="v2"',
      'destination_workload="server"',
      `destination_principal="spiffe://${TD}/ns/ns1/sa/server"`,
      'destination_service="server.ns1.svc.cluster.local"',
      'destination_service_name="server"',
      'destination_service_namespace="ns1"',
      'request_protocol="http"',
      'response_code="200"',
      'connection_security_policy="mutual_tls"',
    );
    assert.ok(mtls200 !== undefined, `no mTLS 200 series in:\n${lines.filter((l) => l.startsWith('istio_requests_total')).join('\n')}`);
    assert.ok(find('istio_requests_total', 'reporter="destination"', `source_principal="spiffe://${TD}/ns/ns2/sa/intruder"`, 'source_workload="intruder"', 'response_code="403"', 'connection_security_policy="mutual_tls"'), 'no 403 series for the intruder');
    assert.ok(find('istio_requests_total', 'reporter="destination"', 'source_principal="unknown"', 'source_workload="unknown"', 'destination_principal="unknown"', 'connection_security_policy="none"', 'response_code="200"'), 'no plaintext series');
    assert.ok(find('istio_request_duration_milliseconds_count', 'reporter="destination"', 'connection_security_policy="mutual_tls"'), 'no duration histogram');
    const tcpOpen = find('istio_tcp_connections_opened_total', 'reporter="destination"', `source_principal="spiffe://${TD}/ns/ns1/sa/client"`, 'request_protocol="tcp"', 'connection_security_policy="mutual_tls"', 'destination_service="server.ns1.svc.cluster.local"');
    assert.ok(tcpOpen !== undefined, `no TCP series in:\n${lines.filter((l) => l.startsWith('istio_tcp')).join('\n')}`);
    const sent = find('istio_tcp_sent_bytes_total', 'reporter="destination"', `source_principal="spiffe://${TD}/ns/ns1/sa/client"`, 'destination_service="server.ns1.svc.cluster.local"');
    assert.ok(sent !== undefined && Number(sent.split(' ').at(-1)) > 0, `no bytes sent counted: ${sent}`);
    assert.ok(find('istio_tcp_connections_closed_total', 'reporter="destination"', 'destination_service_name="InboundPassthroughClusterIpv4"', 'connection_security_policy="none"'), 'no passthrough TCP series');
    // A TCP connection denied by AuthorizationPolicy is counted too (Envoy's network RBAC closes a
    // connection istio_stats already counts), under every standard TCP label.
    for (const name of ['istio_tcp_connections_opened_total', 'istio_tcp_connections_closed_total']) {
      const denied = find(name, 'reporter="destination"', `source_principal="spiffe://${TD}/ns/ns2/sa/intruder"`, 'request_protocol="tcp"');
      assert.ok(denied !== undefined, `no denied TCP series for ${name} in:\n${lines.filter((l) => l.startsWith('istio_tcp')).join('\n')}`);
      const labels = Object.fromEntries([...denied.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
      assert.deepEqual(labels, {
        reporter: 'destination',
        source_workload: 'intruder',
        source_canonical_service: 'intruder',
        source_canonical_revision: 'latest',
        source_workload_namespace: 'ns2',
        source_principal: `spiffe://${TD}/ns/ns2/sa/intruder`,
        source_app: 'intruder',
        source_version: 'unknown',
        source_cluster: 'unknown',
        destination_workload: 'server',
        destination_workload_namespace: 'ns1',
        destination_principal: `spiffe://${TD}/ns/ns1/sa/server`,
        destination_app: 'server',
        destination_version: 'v1',
        destination_service: 'server.ns1.svc.cluster.local',
        destination_canonical_service: 'server',
        destination_canonical_revision: 'v1',
        destination_service_name: 'server',
        destination_service_namespace: 'ns1',
        destination_cluster: 'unknown',
        request_protocol: 'tcp',
        response_flags: '-',
        connection_security_policy: 'mutual_tls',
      });
    }
  });

  test('access log: one line per inbound request and TCP connection, with the inbound cluster', async () => {
    const deadline = Date.now() + 10_000;
    let entries: Record<string, unknown>[] = [];
    while (Date.now() < deadline) {
      entries = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) : [];
      if (entries.some((e) => e.response_code === 0 && e.upstream_cluster === `inbound|${P.strictTcp}||`) && entries.some((e) => e.response_code === 403)) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const denied = entries.find((e) => e.response_code === 403 && e.path === '/denied');
    assert.ok(denied !== undefined, `no 403 line in ${entries.length} lines`);
    assert.equal(denied.downstream_remote_address, `${STRANGER}:${String(denied.downstream_remote_address).split(':')[1]}`);
    const allowed = entries.find((e) => e.response_code === 200 && e.path === '/allowed');
    assert.ok(allowed !== undefined);
    assert.equal(allowed.upstream_cluster, `inbound|${P.strictHttp}||`);
    assert.equal(allowed.upstream_host, `${APP}:${P.strictHttp}`);
    assert.equal(allowed.downstream_local_address, `${POD}:${P.strictHttp}`);
    const rbac = entries.find((e) => e.upstream_cluster === `inbound|${P.strictTcp}||` && e.downstream_remote_address !== null && String(e.downstream_remote_address).startsWith(`${STRANGER}:`));
    assert.ok(rbac !== undefined, 'no access-log line for the TCP connection AuthorizationPolicy denied');
    assert.match(String(rbac.connection_termination_details), /^rbac_access_denied_matched_policy\[.+\]$/);
    assert.equal(rbac.upstream_host, null, 'a denied connection never reaches the app');
    const tcp = entries.find((e) => e.upstream_cluster === `inbound|${P.strictTcp}||` && Number(e.bytes_sent) > 0);
    assert.ok(tcp !== undefined, 'no TCP line');
    assert.equal(tcp.upstream_host, `${APP}:${P.strictTcp}`);
    assert.match(String(tcp.upstream_local_address), /^127\.0\.0\.6:\d+$/);
  });

  test('a new view applies to new connections and to the next request of a kept-alive one; the old one comes back', async () => {
    const v = baseIr.sidecar!;
    const swappedPorts = v.inbound.map((p) => (p.port === P.strictHttp ? { ...p, mtls: 'PERMISSIVE' as const } : p));
    const swapped: IRSnapshot = {
      ...baseIr,
      version: 'swapped',
      sidecar: {
        ...v,
        inbound: swappedPorts,
        inboundHttp: v.inboundHttp.map((l) => (l.name === `inbound_${P.strictHttp}` ? httpListener(P.strictHttp, [vhost('inbound', ['*'], [named('swapped')])], { name: l.name, address: '0.0.0.0' }) : l)),
      },
    };
    // A kept-alive mTLS connection opened under the old view.
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<string>((resolve, reject) => {
        https.get({ ...mtlsOptions(client, P.strictHttp, ['istio-http/1.1', 'istio', 'http/1.1']), localAddress: CLIENT, agent, path: '/ka', headers: { host: SERVICE.host } }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c));
          res.on('end', () => resolve(b));
        }).on('error', reject);
      });
    try {
      assert.match(await get(), /"remote":"127\.0\.0\.6"/);
      handler.apply(swapped);
      assert.equal(handler.version, 'swapped');
      assert.equal(await get(), 'swapped', 'the kept-alive connection did not see the new route table');
      // PERMISSIVE now admits plaintext (an HTTP answer, not a close), and the policy, which names a
      // principal, denies it: a plaintext caller has none (Istio: `principals` effectively requires mTLS).
      const plain = await plainGet(P.strictHttp, CLIENT);
      assert.equal(plain.status, 403);
      assert.equal(plain.body, 'RBAC: access denied');
    } finally {
      agent.destroy();
      handler.apply(baseIr);
    }
    assert.equal((await rawExchange(P.strictHttp, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n')).received.length, 0, 'STRICT again');
  });

  test('RequestAuthentication and AuthorizationPolicy together: the peer principal and the JWT principal', async () => {
    const { generateKeyPair, exportJWK, SignJWT } = await import('jose');
    const key = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(key.publicKey)), kid: 'k1', alg: 'ES256' };
    const sign = (iss = 'https://issuer.test') => new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(iss).setIssuedAt().setExpirationTime('5m').sign(key.privateKey);
    const src = { kind: 'RequestAuthentication', namespace: 'ns1', name: 'jwt', file: null, line: null };
    const withJwt: IRSnapshot = {
      ...baseIr,
      version: 'jwt',
      security: {
        ...baseIr.security,
        jwtRules: [
          { name: 'requestauthentication/ns1/jwt/jwt/0', source: src, issuer: 'https://issuer.test', audiences: [], jwks: JSON.stringify({ keys: [jwk] }), jwksUri: null, jwksTimeoutMs: 1000, fromHeaders: [{ name: 'authorization', prefix: 'Bearer ' }], fromParams: [], fromCookies: [], outputPayloadToHeader: null, outputClaimToHeaders: [], forwardOriginalToken: false, spaceDelimitedClaims: [] },
        ],
        authorizationPolicies: [
          ...baseIr.security.authorizationPolicies,
          {
            name: 'authorizationpolicy/ns1/require-jwt',
            source: { ...src, kind: 'AuthorizationPolicy', name: 'require-jwt' },
            action: 'DENY',
            provider: null,
            dryRun: false,
            rules: [{ from: [[{ key: 'request.auth.principal', values: [], notValues: ['*'] }]], to: [[{ key: 'request.path', values: ['/secure/*'], notValues: [] }]], when: [] }],
          },
        ],
      },
    };
    handler.apply(withJwt);
    const call = (p: string, token: string | null) =>
      new Promise<{ status: number; body: string }>((resolve, reject) => {
        https.get({ ...mtlsOptions(client, P.strictHttp, ['istio-http/1.1', 'istio', 'http/1.1']), localAddress: CLIENT, agent: false, path: p, headers: { host: SERVICE.host, ...(token === null ? {} : { authorization: `Bearer ${token}` }) } }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        }).on('error', reject);
      });
    try {
      assert.equal((await call('/open', null)).status, 200, 'no token, no requirement');
      assert.equal((await call('/secure/x', null)).status, 403, 'DENY without a request principal');
      assert.equal((await call('/secure/x', await sign())).status, 200, 'a valid token from the allowed peer');
      const bad = await call('/secure/x', await sign('https://other.test'));
      assert.equal(bad.status, 401, bad.body);
      // The peer principal still decides first: the intruder with a valid token is denied.
      const intr = await mtlsGet(intruder, P.strictHttp, STRANGER, '/open');
      assert.equal(intr.status, 403);
    } finally {
      handler.apply(baseIr);
    }
  });

  test('apply refuses a view it cannot serve and keeps the previous one', () => {
    const version = handler.version;
    const bad: IRSnapshot = { ...snapshot([], []), sidecar: view([inboundPort(P.strictHttp, 'HTTP', 'STRICT')]) };
    assert.throws(() => handler.apply(bad), /cluster inbound\|\d+\|\| is not in the snapshot/);
    assert.throws(() => handler.apply(snapshot([], [])), /no sidecar view/);
    assert.equal(handler.version, version);
  });
});

/** Plain TCP: write, half-close, read the answer. */
function rawExchangeHalfClose(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: POD, port, localAddress: CLIENT, allowHalfOpen: true });
    let out = '';
    const timer = setTimeout(() => s.destroy(new Error('timeout')), 10_000);
    s.setEncoding('utf8');
    s.on('connect', () => {
      s.write(payload);
      s.end();
    });
    s.on('data', (c: string) => (out += c));
    s.on('error', reject);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
  });
}

describe('sidecar inbound: IPv6 original destinations', () => {
  test('HTTP and TCP to an IPv6 pod address are forwarded from the IPv6 source address', async (t) => {
    const probe = net.createServer();
    const v6 = await listen(probe, '::1').then(
      () => true,
      () => false,
    );
    probe.close();
    if (!v6) return t.skip('no IPv6 loopback here (::1)');
    const material = await loadOrCreateCaDirectory(path.join(tempDir('meshgate-inbound-ca6-'), 'ca'), { trustDomain: TD });
    const ca6 = new MeshCa(material);
    const server6 = await workloadCert(ca6, 'ns1', 'server');
    const seen6: AppSeen[] = [];
    const peers6: string[] = [];
    const app = httpApp(seen6);
    const echo = echoApp(peers6);
    const [appPort, echoPort] = [await listen(app, '::1'), await listen(echo, '::1')];
    const h = new InboundHandler({ identity: () => server6, log: quiet, sourceAddress6: '::1', forwardTo: (_a, port) => ({ address: '::1', port: port === podHttp ? appPort : echoPort }) });
    const podServer = net.createServer({ allowHalfOpen: true }, (s) => h.handle(s));
    const podHttp = await listen(podServer, '::1');
    const podTcp = net.createServer({ allowHalfOpen: true }, (s) => h.handle(s));
    const podTcpPort = await listen(podTcp, '::1');
    try {
      const port = inboundPort(podHttp, 'HTTP', 'PERMISSIVE');
      const v = view([port]);
      v.proxy.podIps = ['::1'];
      h.apply({ ...snapshot([], [cluster(port.cluster, [], { service: SERVICE })]), sidecar: v });
      const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        http.get({ host: '::1', port: podHttp, path: '/v6', agent: false }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        }).on('error', reject);
      });
      assert.equal(r.status, 200, r.body);
      assert.equal((JSON.parse(r.body) as { remote: string }).remote, '::1');
      // An undeclared port: relayed as TCP from the IPv6 source.
      const out = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: '::1', port: podTcpPort, allowHalfOpen: true });
        let b = '';
        s.on('connect', () => s.end('v6'));
        s.on('data', (c: Buffer) => (b += c));
        s.on('close', () => resolve(b));
        s.on('error', reject);
      });
      assert.equal(out, 'echo:v6');
      assert.equal(peers6.at(-1), '::1');
    } finally {
      await h.close();
      for (const s of [app, echo, podServer, podTcp]) s.close();
    }
  });
});

describe('sidecar inbound: a dual-stack pod', () => {
  test('HTTP sent to the IPv4 pod address goes to the app at IPv4 from 127.0.0.6; to the IPv6 one, at IPv6', async (t) => {
    const probe = net.createServer();
    const v6 = await listen(probe, '::1').then(
      () => true,
      () => false,
    );
    probe.close();
    if (!v6) return t.skip('no IPv6 loopback here (::1)');
    const pod4 = `${net8}.24`;
    const app4 = `${net8}.25`;
    const ca4 = new MeshCa(await loadOrCreateCaDirectory(path.join(tempDir('meshgate-inbound-ca4-'), 'ca'), { trustDomain: TD }));
    const id = await workloadCert(ca4, 'ns1', 'server');
    const seenDs: AppSeen[] = [];
    // The app on both families (its IPv6 side on another port: the pod's ::1 port is the sidecar's).
    const appV4 = httpApp(seenDs);
    const port = await listen(appV4, app4);
    const appV6 = httpApp(seenDs);
    const port6 = await listen(appV6, '::1');
    const h = new InboundHandler({ identity: () => id, log: quiet, sourceAddress6: '::1', forwardTo: (a, p) => (net.isIPv6(a) ? { address: '::1', port: port6 } : { address: app4, port: p }) });
    const podV4 = net.createServer({ allowHalfOpen: true }, (s) => h.handle(s));
    const podV6 = net.createServer({ allowHalfOpen: true }, (s) => h.handle(s));
    try {
      await listen(podV4, pod4, port);
      // The pod's IPv6 listener must have the same port number (the target port) as the IPv4 one.
      const ok6 = await listen(podV6, '::1', port).then(
        () => true,
        () => false,
      );
      if (!ok6) return t.skip(`port ${port} is taken on ::1`);
      const ip = inboundPort(port, 'HTTP', 'PERMISSIVE');
      const v = view([ip]);
      v.proxy.podIps = [pod4, '::1'];
      h.apply({ ...snapshot([], [cluster(ip.cluster, [], { service: SERVICE })]), sidecar: v });
      const get = (host: string) =>
        new Promise<{ remote: string }>((resolve, reject) => {
          http.get({ host, port, path: '/ds', agent: false }, (res) => {
            let b = '';
            res.on('data', (c: Buffer) => (b += c));
            res.on('end', () => resolve(JSON.parse(b) as { remote: string }));
          }).on('error', reject);
        });
      assert.equal((await get(pod4)).remote, '127.0.0.6');
      assert.equal((await get('::1')).remote, '::1');
      assert.equal((await get(pod4)).remote, '127.0.0.6');
    } finally {
      await h.close();
      for (const s of [appV4, appV6, podV4, podV6]) s.close();
    }
  });
});

describe('sidecar inbound: close with a grace period', () => {
  test('an HTTP request in flight finishes; idle connections and new ones are closed', async () => {
    const pod = `${net8}.22`;
    const appAddr = `${net8}.23`;
    const ca2 = new MeshCa(await loadOrCreateCaDirectory(path.join(tempDir('meshgate-inbound-ca3-'), 'ca'), { trustDomain: TD }));
    const id = await workloadCert(ca2, 'ns1', 'server');
    const slow = http.createServer((_req, res) => setTimeout(() => res.end('slow done'), 400));
    const port = await listen(slow, appAddr);
    const h = new InboundHandler({ identity: () => id, log: quiet, forwardTo: (_a, p) => ({ address: appAddr, port: p }) });
    const podServer = net.createServer({ allowHalfOpen: true }, (s) => h.handle(s));
    await listen(podServer, pod, port);
    try {
      const ip = inboundPort(port, 'HTTP', 'PERMISSIVE');
      const v = view([ip]);
      v.proxy.podIps = [pod];
      h.apply({ ...snapshot([], [cluster(ip.cluster, [], { service: SERVICE })]), sidecar: v });
      const inflight = new Promise<{ status: number; body: string }>((resolve, reject) => {
        http.get({ host: pod, port, path: '/slow', agent: false }, (res) => {
          let b = '';
          res.on('data', (c: Buffer) => (b += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
        }).on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      const closing = h.close(5000);
      const late = await rawExchangeTo(pod, port, 'GET / HTTP/1.1\r\nhost: x\r\n\r\n');
      assert.equal(late.length, 0, 'a connection accepted after close was served');
      const r = await inflight;
      assert.equal(r.status, 200);
      assert.equal(r.body, 'slow done');
      await closing;
      assert.ok(Date.now() - t0 < 4000, 'close waited for the whole grace period although nothing was left');
    } finally {
      podServer.close();
      slow.close();
    }
  });
});

function rawExchangeTo(host: string, port: number, bytes: string): Promise<Buffer> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const got: Buffer[] = [];
    s.on('connect', () => s.write(bytes));
    s.on('data', (c: Buffer) => got.push(c));
    s.on('error', () => {});
    s.on('close', () => resolve(Buffer.concat(got)));
    setTimeout(() => s.destroy(), 10_000).unref();
  });
}
