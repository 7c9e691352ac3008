/**
 * The sidecar's inbound side behind real capture, in the network-namespace lab (reference mesh.md
 * §6): `meshgate capture` (TPROXY) in the server pod sends inbound TCP to 127.0.0.1:15006, where the
 * InboundHandler runs as uid 1337 on a transparent listener made by the launcher
 * (inbound-lab-sidecar.ts). The original destination is the pod IP and the app's port.
 *
 * Topology (inside lab namespaces only):
 *   node    10.251.0.1  bridge
 *   server  10.251.0.2  capture + inbound sidecar + apps: HTTP 8080 (STRICT), HTTP 8081 (PERMISSIVE,
 *                       sniffed), HTTP 8082 (port-level DISABLE), TCP echo 9000 (STRICT), a
 *                       server-speaks-first app on 3306 (PERMISSIVE TCP, allowed from the client pod's
 *                       address only)
 *   client  10.251.0.3  meshed caller (certificates for ns1/client and ns1/other), as its sidecar would call
 *   plain   10.251.0.4  not meshed (plaintext)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { ECHO_APP } from './lab-programs.js';
import { transparentLauncherArgv } from '../../src/mesh/capture/transparent.js';
import { loadOrCreateCaDirectory, MeshCa } from '../../src/mesh/ca/ca.js';
import { privateKeyPem, signatureParams, splitPemCertificates, toCryptoPrivateKey, toCryptoPublicKey, x509 } from '../../src/mesh/ca/keys.js';
import type { MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import type { InboundPort, SidecarView } from '../../src/ir/sidecar.js';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { tempDir } from '../helpers/gateway.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../../src/cli/main.js');
const SIDECAR = path.resolve(here, 'inbound-lab-sidecar.js');
const skip = labSkipReason();
const TD = 'cluster.local';
const SERVER_IP = '10.251.0.2';
const CLIENT_IP = '10.251.0.3';
const PLAIN_IP = '10.251.0.4';

/** An HTTP app answering the peer address and the XFCC it received. */
const HTTP_APP = String.raw`
const http = require('http');
for (const port of process.env.PORTS.split(',')) {
  http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ port: Number(port), remote: req.socket.remoteAddress, xfcc: req.headers['x-forwarded-client-cert'] || null }));
  }).listen(Number(port), '0.0.0.0', () => console.log(JSON.stringify({ listening: port })));
}
`;

/** A server-speaks-first app (a MySQL-like greeting) on PORT; prints `{"accept": peer}` per connection. */
const GREETING_APP = String.raw`
require('net').createServer((s) => {
  console.log(JSON.stringify({ accept: s.remoteAddress }));
  s.on('error', () => {});
  s.end('greeting\n');
}).listen(Number(process.env.PORT), '0.0.0.0', () => console.log(JSON.stringify({ listening: process.env.PORT })));
`;

/**
 * One call: MODE `mtls-http` (Istio ALPN, workload certificate from CERT/KEY/CA files), `plain-http`,
 * `mtls-tcp` (ALPN istio, sends "ping\n", half-closes) or `raw` (sends an HTTP request in plaintext
 * and reports what came back) or `silent` (sends nothing, reports what came back before the close).
 * Prints one JSON line; gives up after CALL_TIMEOUT_MS (default 8 s).
 */
const CALL = String.raw`
const fs = require('fs'), tls = require('tls'), net = require('net'), http = require('http'), https = require('https');
const [host, port] = process.env.TARGET.split(':');
const mode = process.env.MODE;
const done = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); process.exit(0); };
setTimeout(() => done({ error: 'TIMEOUT' }), Number(process.env.CALL_TIMEOUT_MS || 8000)).unref();
const creds = () => ({ cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY), ca: fs.readFileSync(process.env.CA),
  servername: 'outbound_.' + port + '_._.server.ns1.svc.cluster.local',
  checkServerIdentity: (h, c) => (String(c.subjectaltname).includes('URI:spiffe://cluster.local/ns/ns1/sa/server') ? undefined : new Error('bad server identity ' + c.subjectaltname)) });
const collect = (res) => { let b = ''; res.setEncoding('utf8'); res.on('data', (c) => (b += c)); res.on('end', () => done({ status: res.statusCode, body: b })); };
if (mode === 'mtls-http') https.request({ host, port, path: '/', agent: false, ALPNProtocols: ['istio-http/1.1', 'istio', 'http/1.1'], ...creds() }, collect).on('error', (e) => done({ error: e.code || e.message })).end();
else if (mode === 'plain-http') http.request({ host, port, path: '/', agent: false }, collect).on('error', (e) => done({ error: e.code || e.message })).end();
else if (mode === 'mtls-tcp') {
  const s = tls.connect({ host, port: Number(port), ALPNProtocols: ['istio'], allowHalfOpen: true, ...creds() });
  let b = '';
  s.setEncoding('utf8');
  s.on('secureConnect', () => s.end('ping\n'));
  s.on('data', (c) => (b += c));
  s.on('error', (e) => done({ error: e.code || e.message, got: b }));
  s.on('close', () => done({ got: b }));
} else if (mode === 'silent') {
  const t0 = Date.now();
  const s = net.connect({ host, port: Number(port) });
  let b = '';
  s.setEncoding('utf8');
  s.on('data', (c) => (b += c));
  s.on('error', (e) => done({ error: e.code || e.message, got: b, ms: Date.now() - t0 }));
  s.on('close', () => done({ closed: true, got: b, ms: Date.now() - t0 }));
} else {
  const s = net.connect({ host, port: Number(port) });
  let n = 0;
  s.on('connect', () => s.write('GET / HTTP/1.1\r\nhost: server\r\n\r\n'));
  s.on('data', (c) => (n += c.length));
  s.on('error', (e) => done({ error: e.code || e.message, bytes: n }));
  s.on('close', () => done({ closed: true, bytes: n }));
}
`;

async function workloadCert(ca: MeshCa, ns: string, sa: string): Promise<MeshIdentityMaterial> {
  const id = `spiffe://${TD}/ns/${ns}/sa/${sa}`;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: { privateKey: await toCryptoPrivateKey(privateKey), publicKey: await toCryptoPublicKey(privateKey) },
    signingAlgorithm: signatureParams(privateKey),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: id }], true)],
  });
  const certs = (await ca.signCsr(csr.toString('pem'), [id], 3600)).flatMap((p) => splitPemCertificates(p));
  const rootFp = new Set(splitPemCertificates(ca.rootCertPem).map((p) => new X509Certificate(p).fingerprint256));
  const intermediates = certs.slice(1).filter((p) => !rootFp.has(new X509Certificate(p).fingerprint256));
  return { spiffeId: id, certChainPem: [certs[0], ...intermediates].join(''), keyPem: privateKeyPem(privateKey), rootsPem: ca.rootCertPem, notAfter: new Date(new X509Certificate(certs[0]).validTo).getTime() };
}

function inboundPort(port: number, protocol: InboundPort['protocol'], mtls: InboundPort['mtls']): InboundPort {
  return { port, protocol, mtls, httpRoutes: protocol === 'TCP' ? null : `inbound_${port}`, cluster: `inbound|${port}||` };
}

/** The wire counters, in rule order. */
const WIRE = [
  { port: 8080, text: 'HTTP/1.1' },
  { port: 8080, text: 'istio-http/1.1' },
  { port: 8081, text: 'HTTP/1.1' },
];

if (skip && labRequired()) {
  test('sidecar inbound lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

describe('sidecar inbound behind capture in a network-namespace lab', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let sidecar: LabProcess;
  const files: Record<string, string> = {};

  let greeting: LabProcess;
  const call = async (pod: string, target: string, mode: string, who = 'client', timeoutMs = 8000): Promise<Record<string, unknown>> => {
    const env = { TARGET: target, MODE: mode, CERT: files[`${who}.cert`] ?? '', KEY: files[`${who}.key`] ?? '', CA: files.root ?? '', CALL_TIMEOUT_MS: String(timeoutMs) };
    const r = await lab.run(pod, [process.execPath, '-e', CALL], env, timeoutMs + 7000);
    return JSON.parse(r.stdout.trim().split('\n').at(-1) || '{}') as Record<string, unknown>;
  };
  /** Packets counted by each WIRE rule so far. */
  const wire = (): number[] =>
    lab
      .exec('server', 'iptables', ['-t', 'raw', '-L', 'PREROUTING', '-v', '-x', '-n'])
      .split('\n')
      .filter((l) => l.includes('STRING match'))
      .map((l) => Number(l.trim().split(/\s+/)[0]));
  const ask = async (cmd: 'metrics' | 'stats'): Promise<string> => {
    const n = sidecar.stdout.length;
    sidecar.child.stdin!.write(`${cmd}\n`);
    // lastIndexOf: an answer may repeat an earlier one word for word (the same stats twice).
    const line = await lab.waitForLine(sidecar, (l) => sidecar.stdout.lastIndexOf(l) >= n && l.startsWith(`{"${cmd}"`));
    const v = (JSON.parse(line) as Record<string, unknown>)[cmd];
    return typeof v === 'string' ? v : JSON.stringify(v);
  };

  before(async () => {
    const dir = tempDir('meshgate-inbound-lab-');
    chmodSync(dir, 0o755);
    const ca = new MeshCa(await loadOrCreateCaDirectory(path.join(dir, 'ca'), { trustDomain: TD }));
    const [server, client, other] = await Promise.all([workloadCert(ca, 'ns1', 'server'), workloadCert(ca, 'ns1', 'client'), workloadCert(ca, 'ns1', 'other')]);
    const write = (name: string, text: string) => {
      const f = path.join(dir, name);
      writeFileSync(f, text, { mode: 0o644 });
      files[name] = f;
    };
    write('root', ca.rootCertPem);
    write('client.cert', client.certChainPem);
    write('client.key', client.keyPem);
    write('other.cert', other.certChainPem);
    write('other.key', other.keyPem);
    const ports = [inboundPort(3306, 'TCP', 'PERMISSIVE'), inboundPort(8080, 'HTTP', 'STRICT'), inboundPort(8081, 'UNKNOWN', 'PERMISSIVE'), inboundPort(8082, 'HTTP', 'DISABLE'), inboundPort(9000, 'TCP', 'STRICT')];
    const service = { namespace: 'ns1', name: 'server', host: 'server.ns1.svc.cluster.local', port: 80 };
    const view: SidecarView = {
      proxy: { namespace: 'ns1', serviceAccount: 'server', podName: 'server-1', podIps: [SERVER_IP], labels: { app: 'server', version: 'v1' }, spiffeId: server.spiffeId, workload: 'server' },
      outboundTrafficPolicy: 'ALLOW_ANY',
      outbound: [],
      outboundHttp: [],
      outboundTcp: [],
      inbound: ports,
      inboundDefault: 'PERMISSIVE',
      inboundHttp: ports.filter((p) => p.httpRoutes !== null).map((p) => httpListener(p.port, [vhost('inbound', ['*'], [route('default', forward([p.cluster]))])], { name: `inbound_${p.port}`, address: '0.0.0.0' })),
      workloads: [
        { ip: CLIENT_IP, namespace: 'ns1', name: 'client', serviceAccount: 'client', app: 'client', version: 'v1', canonicalService: 'client', canonicalRevision: 'v1', meshed: true },
        { ip: PLAIN_IP, namespace: 'ns1', name: 'plain', serviceAccount: 'default', app: 'plain', version: '', canonicalService: 'plain', canonicalRevision: 'latest', meshed: false },
      ],
    };
    const principal = { key: 'source.principal', values: [`${TD}/ns/ns1/sa/client`], notValues: [] };
    const ir: IRSnapshot = {
      ...snapshot([], ports.map((p) => cluster(p.cluster, [], { service })), {
        authorizationPolicies: [
          {
            name: 'authorizationpolicy/ns1/server',
            source: { kind: 'AuthorizationPolicy', namespace: 'ns1', name: 'server', file: null, line: null },
            action: 'ALLOW',
            provider: null,
            dryRun: false,
            rules: [
              { from: [[principal]], to: [[{ key: 'destination.port', values: ['8080', '9000'], notValues: [] }]], when: [] },
              { from: [], to: [[{ key: 'destination.port', values: ['8081', '8082'], notValues: [] }]], when: [] },
              // The server-first app: from the client pod's address only (the plain pod is denied).
              { from: [[{ key: 'source.ip', values: [CLIENT_IP], notValues: [] }]], to: [[{ key: 'destination.port', values: ['3306'], notValues: [] }]], when: [] },
            ],
          },
        ],
      }),
      sidecar: view,
    };
    write('config.json', JSON.stringify({ ir, identity: server }));

    lab = Lab.create({
      nodeIp: '10.251.0.1',
      prefixLength: 24,
      pods: [
        { name: 'server', ip: SERVER_IP },
        { name: 'client', ip: CLIENT_IP },
        { name: 'plain', ip: PLAIN_IP },
      ],
    });
    const httpApp = lab.spawn('server', [process.execPath, '-e', HTTP_APP], { PORTS: '8080,8081,8082' });
    const echo = lab.spawn('server', [process.execPath, '-e', ECHO_APP], { ECHO_NAME: 'server', ECHO_LISTEN: '9000' });
    await lab.waitForLine(httpApp, (l) => l.includes('8082'));
    await lab.waitForLine(echo, (l) => l.includes('listening'));
    greeting = lab.spawn('server', [process.execPath, '-e', GREETING_APP], { PORT: '3306' });
    await lab.waitForLine(greeting, (l) => l.includes('listening'));
    lab.exec('server', process.execPath, [MAIN, 'capture']);
    // Wire counters (raw PREROUTING sees every packet arriving on eth0, before capture): plaintext
    // HTTP request lines and Istio's ALPN value in ClientHellos, per port. Counting only (no target).
    lab.exec('server', 'iptables-restore', ['--noflush'], [
      '*raw',
      ...WIRE.map((w) => `-A PREROUTING -i eth0 -p tcp --dport ${w.port} -m string --string "${w.text}" --algo bm`),
      'COMMIT',
      '',
    ].join('\n'));
    sidecar = lab.spawn('server', transparentLauncherArgv({ listeners: ['127.0.0.1:15006'], uid: 1337, gid: 1337, command: [process.execPath, SIDECAR] }), { INBOUND_CONFIG: files['config.json'] }, { stdin: true });
    await lab.waitForLine(sidecar, (l) => l.includes('"ready"'), 20_000);
  });

  after(() => lab?.close());

  test('STRICT: the non-meshed pod is closed with no byte of answer; the app never sees it', async () => {
    const r = await call('plain', `${SERVER_IP}:8080`, 'raw');
    assert.equal(r.bytes, 0, JSON.stringify(r));
    const plainHttp = await call('plain', `${SERVER_IP}:8080`, 'plain-http');
    assert.ok(plainHttp.error !== undefined, JSON.stringify(plainHttp));
  });

  test('STRICT: the meshed caller with the allowed principal gets the app, which sees 127.0.0.6 and the XFCC', async () => {
    const r = await call('client', `${SERVER_IP}:8080`, 'mtls-http');
    assert.equal(r.status, 200, JSON.stringify(r));
    const body = JSON.parse(String(r.body)) as { remote: string; xfcc: string };
    assert.equal(body.remote, '127.0.0.6');
    assert.match(body.xfcc, /^By=spiffe:\/\/cluster\.local\/ns\/ns1\/sa\/server;Hash=[0-9a-f]{64};Subject="";URI=spiffe:\/\/cluster\.local\/ns\/ns1\/sa\/client$/);
  });

  test('on the wire: the mTLS call carries Istio ALPN and no plaintext HTTP; the plaintext control does', async () => {
    const before = wire();
    assert.equal(before.length, WIRE.length);
    assert.equal((await call('client', `${SERVER_IP}:8080`, 'mtls-http')).status, 200);
    const mid = wire();
    assert.equal(mid[0] - before[0], 0, 'plaintext HTTP seen on the wire to the STRICT port');
    assert.ok(mid[1] - before[1] >= 1, 'no ClientHello offering istio-http/1.1');
    assert.equal((await call('plain', `${SERVER_IP}:8081`, 'plain-http')).status, 200);
    assert.ok(wire()[2] - mid[2] >= 1, 'the control: a plaintext request line is counted');
  });

  test('AuthorizationPolicy: the wrong principal gets 403 RBAC: access denied', async () => {
    const r = await call('client', `${SERVER_IP}:8080`, 'mtls-http', 'other');
    assert.equal(r.status, 403, JSON.stringify(r));
    assert.equal(r.body, 'RBAC: access denied');
  });

  test('PERMISSIVE: the non-meshed pod is admitted in plaintext', async () => {
    const r = await call('plain', `${SERVER_IP}:8081`, 'plain-http');
    assert.equal(r.status, 200, JSON.stringify(r));
    const body = JSON.parse(String(r.body)) as { remote: string; xfcc: string | null };
    assert.equal(body.remote, '127.0.0.6');
    assert.equal(body.xfcc, null);
  });

  test('port-level DISABLE: plaintext reaches the app; an mTLS call is not terminated (relayed as bytes to a plaintext app, it fails)', async () => {
    const plain = await call('plain', `${SERVER_IP}:8082`, 'plain-http');
    assert.equal(plain.status, 200, JSON.stringify(plain));
    assert.equal((JSON.parse(String(plain.body)) as { remote: string }).remote, '127.0.0.6');
    const m = await call('client', `${SERVER_IP}:8082`, 'mtls-http');
    assert.equal(m.status, undefined, `the sidecar terminated mTLS on a DISABLE port: ${JSON.stringify(m)}`);
    assert.ok(m.error !== undefined, JSON.stringify(m));
  });

  test('TCP over mTLS through capture; the wrong principal is closed', async () => {
    const r = await call('client', `${SERVER_IP}:9000`, 'mtls-tcp');
    const reply = JSON.parse(String(r.got).trim()) as { remote: string; got: string; local: string };
    assert.equal(reply.got, 'ping\n');
    assert.equal(reply.remote, '127.0.0.6');
    assert.equal(reply.local, `${SERVER_IP}:9000`, 'forwarded to the original destination');
    const denied = await call('client', `${SERVER_IP}:9000`, 'mtls-tcp', 'other');
    assert.equal(denied.got ?? '', '', JSON.stringify(denied));
  });

  test('PERMISSIVE server-first TCP: a silent client the policy denies never reaches the app; an allowed one gets its greeting', async () => {
    const accepts = () => greeting.stdout.filter((l) => l.includes('"accept"')).length;
    const deniedBefore = (JSON.parse(await ask('stats')) as { tcpDenied: number }).tcpDenied;
    const before = accepts();
    // Both silent: the allowed one is relayed after the protocol detection timeout (10 s), the
    // denied one closed after the same wait (it might still have started mTLS).
    const [allowed, denied] = await Promise.all([call('client', `${SERVER_IP}:3306`, 'silent', 'client', 25_000), call('plain', `${SERVER_IP}:3306`, 'silent', 'client', 25_000)]);
    assert.equal(allowed.got, 'greeting\n', JSON.stringify(allowed));
    assert.equal(denied.got, '', JSON.stringify(denied));
    assert.equal(denied.closed, true, `the denied client was not closed: ${JSON.stringify(denied)}`);
    // The app's stdout line may trail the call's end by a moment.
    for (const until = Date.now() + 2000; accepts() - before < 1 && Date.now() < until; ) await new Promise((r) => setTimeout(r, 50));
    assert.equal(accepts() - before, 1, `the app accepted ${accepts() - before} connections, want 1 (the allowed client's): ${greeting.stdout.join(' ')}`);
    const deniedAfter = (JSON.parse(await ask('stats')) as { tcpDenied: number }).tcpDenied;
    assert.equal(deniedAfter - deniedBefore, 1, 'the denial was not counted');
  });

  test('metrics at the destination: reporter, SPIFFE principals, source workload by IP, mutual_tls and none', async () => {
    const text = await ask('metrics');
    const lines = text.split('\n');
    const has = (...parts: string[]) => lines.some((l) => parts.every((p) => l.includes(p)));
    assert.ok(
      has('istio_requests_total{', 'reporter="destination"', 'source_workload="client"', `source_principal="spiffe://${TD}/ns/ns1/sa/client"`, `destination_principal="spiffe://${TD}/ns/ns1/sa/server"`, 'destination_service="server.ns1.svc.cluster.local"', 'response_code="200"', 'connection_security_policy="mutual_tls"'),
      lines.filter((l) => l.startsWith('istio_requests_total')).join('\n'),
    );
    assert.ok(has('istio_requests_total{', 'reporter="destination"', `source_principal="spiffe://${TD}/ns/ns1/sa/other"`, 'source_workload="unknown"', 'response_code="403"'), 'the other principal is not the client pod\'s service account: no workload labels');
    assert.ok(has('istio_requests_total{', 'reporter="destination"', 'source_principal="unknown"', 'connection_security_policy="none"', 'response_code="200"'));
    assert.ok(has('istio_tcp_connections_opened_total{', 'reporter="destination"', 'source_workload="client"', 'connection_security_policy="mutual_tls"'));
    const stats = JSON.parse(await ask('stats')) as { refusedPlaintext: number };
    assert.ok(stats.refusedPlaintext >= 2, JSON.stringify(stats));
  });
});
