/**
 * Programs the sidecar lab runs in its pods (`ip netns exec node -e`), and a hand-built sidecar view.
 */
import type { Cluster, IRSnapshot, Listener, OutboundService, Route, SidecarView, TcpListener, UpstreamTls } from '../../src/ir/types.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';

/**
 * HTTP app. APP_NAME names it, APP_PORT is its port (on APP_HOST, default 0.0.0.0); with TLS_CERT/TLS_KEY/TLS_CA (PEM paths) it is
 * HTTPS and requires a client certificate issued by TLS_CA. Every request is logged as a JSON line
 * ({"seen": path, "remote"}); the answer is JSON with what it saw.
 *   .../fail-once/<key>  503 the first time, 200 after;
 *   /slow             answers after 3 s.
 */
export const HTTP_APP = String.raw`
const http = require('http'), https = require('https'), fs = require('fs');
const seen = new Map();
const handler = (req, res) => {
  let body = '';
  req.on('data', (d) => (body += d));
  req.on('end', () => {
    const path = req.url.split('?')[0];
    console.log(JSON.stringify({ seen: path, remote: req.socket.remoteAddress }));
    const reply = (status) => {
      const peer = req.socket.getPeerCertificate ? req.socket.getPeerCertificate() : null;
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ server: process.env.APP_NAME, method: req.method, url: req.url, host: req.headers.host, remote: req.socket.remoteAddress, headers: req.headers, body,
        peer: peer && peer.subjectaltname ? peer.subjectaltname : null, sni: req.socket.servername || null, alpn: req.socket.alpnProtocol || null }));
    };
    if (path.includes('/fail-once/')) {
      const n = (seen.get(path) || 0) + 1;
      seen.set(path, n);
      if (n === 1) return reply(503);
    }
    if (path === '/slow') return setTimeout(() => reply(200), 3000);
    reply(200);
  });
};
const tlsOpts = process.env.TLS_CERT ? { cert: fs.readFileSync(process.env.TLS_CERT), key: fs.readFileSync(process.env.TLS_KEY), ca: fs.readFileSync(process.env.TLS_CA), requestCert: true, rejectUnauthorized: true, ALPNProtocols: ['http/1.1'] } : null;
const server = tlsOpts ? https.createServer(tlsOpts, handler) : http.createServer(handler);
server.listen(Number(process.env.APP_PORT), process.env.APP_HOST || '0.0.0.0', () => console.log(JSON.stringify({ listening: Number(process.env.APP_PORT) })));
`;

/**
 * HTTP client agent: one process per pod; each JSON line {"id","host","port","path","headers","count","timeoutMs"}
 * on stdin makes `count` requests in turn (keep-alive) and answers {"id","results":[{status,body,flags}|{error}]}.
 */
export const HTTP_AGENT = String.raw`
const http = require('http');
const agents = new Map();
async function one(c) {
  const key = c.host + ':' + c.port;
  let agent = agents.get(key);
  if (!agent) agents.set(key, (agent = new http.Agent({ keepAlive: true, maxSockets: 4 })));
  return new Promise((resolve) => {
    const req = http.request({ host: c.host, port: c.port, path: c.path, method: c.method || 'GET', headers: c.headers || {}, agent, timeout: c.timeoutMs || 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode, body, flags: res.headers['x-meshgate-flags'] || null, headers: res.headers }));
      res.on('error', (e) => resolve({ error: e.code || String(e) }));
    });
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
    req.on('error', (e) => resolve({ error: e.code || String(e) }));
    req.end(c.body || undefined);
  });
}
async function run(c) {
  const results = [];
  for (let i = 0; i < (c.count || 1); i++) results.push(await one(c));
  console.log(JSON.stringify({ id: c.id, results }));
}
let buf = '';
process.stdin.setEncoding('utf8').on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    void run(JSON.parse(line));
  }
});
console.log(JSON.stringify({ agent: 'ready', uid: process.getuid() }));
`;

/** A server-first TCP server: it greets every connection with "220 banner" and then echoes. */
export const BANNER_APP = String.raw`
require('net').createServer((s) => { s.write('220 banner from ' + process.env.APP_NAME + '\n'); s.pipe(s); s.on('error', () => {}); })
  .listen(Number(process.env.APP_PORT), '0.0.0.0', () => console.log(JSON.stringify({ listening: Number(process.env.APP_PORT) })));
`;

/** One h2c request (HTTP/2 prior knowledge) to TARGET: prints {status, body} or {error}. */
export const H2C_CLIENT = String.raw`
const http2 = require('http2');
const s = http2.connect('http://' + process.env.TARGET);
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code || String(e) })); process.exit(0); });
const req = s.request({ ':path': '/h2c', ':authority': process.env.AUTHORITY || process.env.TARGET });
let body = '', status = 0;
req.setEncoding('utf8');
req.on('response', (h) => (status = h[':status']));
req.on('data', (d) => (body += d));
req.on('end', () => { console.log(JSON.stringify({ status, body })); s.close(); });
req.on('error', (e) => { console.log(JSON.stringify({ error: e.code || String(e) })); process.exit(0); });
req.end();
setTimeout(() => { console.log(JSON.stringify({ error: 'TIMEOUT' })); process.exit(0); }, 5000).unref();
`;

/** Server-first: connects to TARGET, sends nothing, prints the first line received or {error}. */
export const WAIT_GREETING = String.raw`
const s = require('net').connect(process.env.TARGET.split(':')[1], process.env.TARGET.split(':')[0]);
const t0 = Date.now();
s.setEncoding('utf8');
s.on('data', (d) => { console.log(JSON.stringify({ line: d.split('\n')[0], ms: Date.now() - t0 })); process.exit(0); });
s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(0); });
s.on('close', () => { console.log(JSON.stringify({ error: 'CLOSED' })); process.exit(0); });
setTimeout(() => { console.log(JSON.stringify({ error: 'TIMEOUT' })); process.exit(0); }, 5000).unref();
`;

/** A TLS client with CERT/KEY/CA files: GET /tls over TLS with SNI `SNI` to TARGET; prints {status, body} or {error}. */
export const TLS_CLIENT = String.raw`
const https = require('https'), fs = require('fs');
const [host, port] = process.env.TARGET.split(':');
https.get({ host, port, path: '/tls', servername: process.env.SNI, cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY), ca: fs.readFileSync(process.env.CA), checkServerIdentity: () => undefined, agent: false }, (res) => {
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (d) => (body += d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body })));
}).on('error', (e) => console.log(JSON.stringify({ error: e.code || String(e) })));
`;

/**
 * A TCP client that holds one connection open: it connects to TARGET, writes "hello\n", then waits
 * for a line "finish" on stdin to write "bye\n" and half-close, and prints what came back.
 */
export const HOLD_CLIENT = String.raw`
const net = require('net');
const [host, port] = process.env.TARGET.split(':');
let out = '';
const s = net.connect({ host, port: Number(port), allowHalfOpen: true }, () => { s.write('hello\n'); console.log(JSON.stringify({ connected: true })); });
s.setEncoding('utf8');
s.on('data', (d) => (out += d));
s.on('close', () => { console.log(JSON.stringify({ out })); process.exit(0); });
s.on('error', (e) => { console.log(JSON.stringify({ out, error: e.code })); process.exit(0); });
process.stdin.setEncoding('utf8').on('data', (d) => { if (d.includes('finish')) s.end('bye\n'); });
`;

export interface LabAddresses {
  v1: string;
  v2: string;
  ext: string;
}

const FQDN = (name: string) => `${name}.default.svc.cluster.local`;

function domains(name: string, port: number, vip: string): string[] {
  const f = FQDN(name);
  const short = [f, name, `${name}.default`, `${name}.default.svc`];
  return [...short, ...short.map((d) => `${d}:${port}`), `${vip}:${port}`];
}

function outboundTable(port: number, virtualHosts: ReturnType<typeof vhost>[]): Listener {
  return httpListener(port, virtualHosts, { name: `outbound_${port}`, address: '0.0.0.0' });
}

function svc(name: string, port: number, protocol: OutboundService['protocol'], vip: string, http: boolean): OutboundService {
  return { host: FQDN(name), namespace: 'default', port, protocol, addresses: [vip], httpRoutes: http ? `outbound_${port}` : null, tcpRoutes: http ? null : `outbound_${port}_tcp_${FQDN(name)}` };
}

/** An undeclared (sniffed) service port: both an HTTP table and a TCP relay. */
function auto2(name: string, port: number, vip: string): OutboundService {
  return { host: FQDN(name), namespace: 'default', port, protocol: 'UNKNOWN', addresses: [vip], httpRoutes: `outbound_${port}`, tcpRoutes: `outbound_${port}_tcp_${FQDN(name)}` };
}

function meshCluster(name: string, port: number, subset: string, endpoints: { address: string; port: number }[], extra: Partial<Cluster> = {}): Cluster {
  const c = cluster(`outbound|${port}|${subset}|${FQDN(name)}`, endpoints, extra);
  return { ...c, service: { namespace: 'default', name, host: FQDN(name), port }, subset, connectTimeoutMs: 2000 };
}

export function istioMutual(name: string, port: number, sans: string[]): UpstreamTls {
  return { mode: 'ISTIO_MUTUAL', caCertificates: null, clientCertificate: null, sni: `outbound_.${port}_._.${FQDN(name)}`, subjectAltNames: sans, insecureSkipVerify: false };
}

/**
 * The client pod's view:
 *   reviews:9080 (VIP 10.250.1.10): header x-canary: v2 → v2; /retry → v1 with 3 retries on 5xx;
 *     /slow → v1 with a 500 ms timeout; else 90 % v1, 10 % v2.
 *   echo:9000 (VIP 10.250.1.11, TCP) → v1:9000.
 *   secure:8443 (VIP 10.250.1.12): Istio mTLS to ext:8443, server identity sa/secure.
 *   wrongid:8443 (VIP 10.250.1.13): Istio mTLS to ext:8443, expecting sa/other (verification fails).
 */
export function clientView(a: LabAddresses, policy: SidecarView['outboundTrafficPolicy'], version: string): IRSnapshot {
  const v1 = meshCluster('reviews', 9080, 'v1', [{ address: a.v1, port: 9080 }]);
  const v2 = meshCluster('reviews', 9080, 'v2', [{ address: a.v2, port: 9080 }]);
  const all = meshCluster('reviews', 9080, '', [
    { address: a.v1, port: 9080 },
    { address: a.v2, port: 9080 },
  ]);
  const echo = meshCluster('echo', 9000, '', [{ address: a.v1, port: 9000 }]);
  const secure = meshCluster('secure', 8443, '', [{ address: a.ext, port: 8443 }], { tls: istioMutual('secure', 8443, ['spiffe://cluster.local/ns/default/sa/secure']) });
  const wrong = meshCluster('wrongid', 8443, '', [{ address: a.ext, port: 8443 }], { tls: istioMutual('wrongid', 8443, ['spiffe://cluster.local/ns/default/sa/other']) });
  const auto = meshCluster('auto', 7000, '', [{ address: a.v1, port: 7000 }]);
  const banner = meshCluster('banner', 7001, '', [{ address: a.v2, port: 7001 }]);
  const tlsapp = meshCluster('tlsapp', 7443, '', [{ address: a.ext, port: 8443 }]);
  const reviewsRoutes: Route[] = [
    route('vs/reviews/canary', forward([v2.name]), [match({ headers: [{ name: 'x-canary', match: { kind: 'exact', value: 'v2', ignoreCase: false }, invert: false }] })]),
    route('vs/reviews/retry', forward([v1.name], { retries: { numRetries: 3, perTryTimeoutMs: null, retryOn: ['5xx'], retriableStatusCodes: [], backoffBaseMs: 25, ignorePreviousHosts: true } }), [match({ path: { kind: 'prefix', value: '/retry', ignoreCase: false } })]),
    route('vs/reviews/slow', forward([v1.name], { timeoutMs: 500 }), [match({ path: { kind: 'prefix', value: '/slow', ignoreCase: false } })]),
    route('vs/reviews/split', forward([
      { cluster: v1.name, weight: 90 },
      { cluster: v2.name, weight: 10 },
    ])),
  ];
  const outboundHttp = [
    outboundTable(8443, [vhost('secure.default.svc.cluster.local:8443', domains('secure', 8443, '10.250.1.12'), [route('default/secure', forward([secure.name]))]), vhost('wrongid.default.svc.cluster.local:8443', domains('wrongid', 8443, '10.250.1.13'), [route('default/wrongid', forward([wrong.name]))])]),
    outboundTable(9080, [vhost('reviews.default.svc.cluster.local:9080', domains('reviews', 9080, '10.250.1.10'), reviewsRoutes)]),
    outboundTable(7000, [vhost('auto.default.svc.cluster.local:7000', domains('auto', 7000, '10.250.1.14'), [route('default/auto', forward([auto.name]))])]),
    outboundTable(7001, [vhost('banner.default.svc.cluster.local:7001', domains('banner', 7001, '10.250.1.15'), [route('default/banner', forward([banner.name]))])]),
    outboundTable(7443, [vhost('tlsapp.default.svc.cluster.local:7443', domains('tlsapp', 7443, '10.250.1.16'), [route('default/tlsapp', forward([tlsapp.name]))])]),
  ].sort((x, y) => x.port - y.port);
  const tcpTo = (name: string, port: number, c: Cluster): TcpListener => ({ name: `outbound_${port}_tcp_${FQDN(name)}`, address: '0.0.0.0', port, externalPort: port, protocol: 'TCP', routes: [{ name: `default/${name}`, source: { kind: 'Service', namespace: 'default', name, file: null, line: null }, matches: [{ sniHosts: [], destinationSubnets: [], port: null }], destinations: [{ cluster: c.name, weight: 1 }] }], tlsChains: [] });
  const outboundTcp: TcpListener[] = [
    tcpTo('auto', 7000, auto),
    tcpTo('banner', 7001, banner),
    tcpTo('tlsapp', 7443, tlsapp),
    tcpTo('echo', 9000, echo),
  ];
  const base = snapshot([], [all, v1, v2, echo, secure, wrong, auto, banner, tlsapp].sort((x, y) => x.name.localeCompare(y.name)));
  const view: SidecarView = {
    proxy: { namespace: 'default', serviceAccount: 'client', podName: 'client-0', podIps: ['10.250.0.2'], labels: { app: 'client', version: 'v7' }, spiffeId: 'spiffe://cluster.local/ns/default/sa/client', workload: 'client' },
    outboundTrafficPolicy: policy,
    outbound: [auto2('auto', 7000, '10.250.1.14'), auto2('banner', 7001, '10.250.1.15'), auto2('tlsapp', 7443, '10.250.1.16'), svc('echo', 9000, 'TCP', '10.250.1.11', false), svc('reviews', 9080, 'HTTP', '10.250.1.10', true), svc('secure', 8443, 'HTTP', '10.250.1.12', true), svc('wrongid', 8443, 'HTTP', '10.250.1.13', true)],
    outboundHttp,
    outboundTcp,
    inbound: [],
    inboundDefault: 'PERMISSIVE',
    inboundHttp: [],
    workloads: [],
  };
  return { ...base, version, sidecar: view };
}

/**
 * Two meshed pods (sidecar-mesh.test.ts): the client's view calls reviews:9080 (VIP 10.250.1.10) whose
 * one endpoint (`server`) is labelled `security.istio.io/tlsMode: istio`, so auto mTLS applies.
 */
export function meshClientView(serverIp: string, version: string): IRSnapshot {
  const reviews = meshCluster('reviews', 9080, '', [{ address: serverIp, port: 9080 }]);
  reviews.endpoints = reviews.endpoints.map((e) => ({ ...e, tlsMode: 'istio' as const }));
  reviews.autoMtls = istioMutual('reviews', 9080, ['spiffe://cluster.local/ns/default/sa/reviews']);
  const base = snapshot([], [reviews]);
  const view: SidecarView = {
    proxy: { namespace: 'default', serviceAccount: 'client', podName: 'client-0', podIps: ['10.250.0.2'], labels: { app: 'client', version: 'v1' }, spiffeId: 'spiffe://cluster.local/ns/default/sa/client', workload: 'client' },
    outboundTrafficPolicy: 'ALLOW_ANY',
    outbound: [svc('reviews', 9080, 'HTTP', '10.250.1.10', true)],
    outboundHttp: [outboundTable(9080, [vhost('reviews.default.svc.cluster.local:9080', domains('reviews', 9080, '10.250.1.10'), [route('default/reviews', forward([reviews.name]))])])],
    outboundTcp: [],
    inbound: [],
    inboundDefault: 'PERMISSIVE',
    inboundHttp: [],
    workloads: [{ ip: serverIp, namespace: 'default', name: 'reviews', serviceAccount: 'reviews', app: 'reviews', version: 'v1', canonicalService: 'reviews', canonicalRevision: 'v1', meshed: true }],
  };
  return { ...base, version, sidecar: view };
}

/** The server pod's view: inbound 9080 (HTTP, STRICT) forwarded to the app. */
export function meshServerView(serverIp: string, clientIp: string, version: string): IRSnapshot {
  const service = { namespace: 'default', name: 'reviews', host: 'reviews.default.svc.cluster.local', port: 9080 };
  const base = snapshot([], [cluster('inbound|9080||', [], { service })]);
  const view: SidecarView = {
    proxy: { namespace: 'default', serviceAccount: 'reviews', podName: 'reviews-0', podIps: [serverIp], labels: { app: 'reviews', version: 'v1' }, spiffeId: 'spiffe://cluster.local/ns/default/sa/reviews', workload: 'reviews' },
    outboundTrafficPolicy: 'ALLOW_ANY',
    outbound: [],
    outboundHttp: [],
    outboundTcp: [],
    inbound: [{ port: 9080, protocol: 'HTTP', mtls: 'STRICT', httpRoutes: 'inbound_9080', cluster: 'inbound|9080||' }],
    inboundDefault: 'STRICT',
    inboundHttp: [httpListener(9080, [vhost('inbound', ['*'], [route('default', forward(['inbound|9080||']))])], { name: 'inbound_9080', address: '0.0.0.0' })],
    workloads: [{ ip: clientIp, namespace: 'default', name: 'client', serviceAccount: 'client', app: 'client', version: 'v1', canonicalService: 'client', canonicalRevision: 'v1', meshed: true }],
  };
  return { ...base, version, sidecar: view };
}

/** A dual-stack client view: reviews:9080 at the IPv6 VIP fd00:250:1::10, served by `v6Endpoint`. */
export function ipv6ClientView(v6Endpoint: string, version: string): IRSnapshot {
  const c = meshCluster('reviews', 9080, '', [{ address: v6Endpoint, port: 9080 }]);
  const vip = 'fd00:250:1::10';
  const f = FQDN('reviews');
  const names = [f, 'reviews', 'reviews.default', 'reviews.default.svc'];
  const base = snapshot([], [c]);
  const view: SidecarView = {
    proxy: { namespace: 'default', serviceAccount: 'client', podName: 'client-0', podIps: ['10.250.0.2', 'fd00:250::2'], labels: { app: 'client' }, spiffeId: 'spiffe://cluster.local/ns/default/sa/client', workload: 'client' },
    outboundTrafficPolicy: 'ALLOW_ANY',
    outbound: [{ host: f, namespace: 'default', port: 9080, protocol: 'HTTP', addresses: [vip], httpRoutes: 'outbound_9080', tcpRoutes: null }],
    outboundHttp: [outboundTable(9080, [vhost(`${f}:9080`, [...names, ...names.map((n) => `${n}:9080`), `[${vip}]:9080`], [route('default/reviews', forward([c.name]))])])],
    outboundTcp: [],
    inbound: [],
    inboundDefault: 'PERMISSIVE',
    inboundHttp: [],
    workloads: [],
  };
  return { ...base, version, sidecar: view };
}
