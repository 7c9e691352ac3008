/**
 * An app's own TLS through two meshgate sidecars (translateSidecar, then the client's OutboundHandler
 * and each server's InboundHandler, over real sockets on loopback, no lab): the client app speaks
 * HTTPS to a Service port declared TLS (`https`), which the client sidecar relays by SNI. A plain
 * listener on a loopback address stands for each original destination (TPROXY keeps it) and hands
 * every accepted socket to the handler; each server app listens on another address (`forwardTo`).
 *
 * Istio (pilot cluster_tls.go): the relay's cluster has auto mTLS per endpoint like any other, so the
 * client sidecar wraps the app's TLS in Istio mTLS to meshed endpoints (SNI `outbound_.<port>_._.<fqdn>`,
 * ALPN `istio-peer-exchange`, `istio`, then the TCP metadata exchange) and relays it as is to others;
 * a DestinationRule's `tls` overrides. The server sidecar terminates Istio mTLS (its TCP chain) and
 * relays the inner bytes, the app's TLS, to the app; under PERMISSIVE a ClientHello without Istio's
 * ALPN is the app's own TLS, relayed unterminated (Istio's "plain TLS" chain).
 *
 * Proves:
 * - HTTPS to a meshed STRICT workload works: on the wire the server sidecar gets Istio's ClientHello,
 *   the app gets the client's own TLS (its SNI, its certificate check) from 127.0.0.6; istio_tcp_*
 *   at the server carry `connection_security_policy="mutual_tls"` and both principals, at the client
 *   `destination_principal` and the server's workload (from the metadata exchange and the view);
 * - a VirtualService `tls` route by SNI to a subset whose DestinationRule says DISABLE: the app's TLS
 *   goes unwrapped to a PERMISSIVE workload, which relays it (`connection_security_policy="none"`);
 *   the same workload reached by auto mTLS gets Istio mTLS; an SNI no `tls` route names is closed
 *   under REGISTRY_ONLY (no default route beside `tls` routes: Istio's passthrough chain);
 * - TLS sniffed on an undeclared port is wrapped the same way;
 * - a non-meshed endpoint (no tlsMode label) gets the app's TLS as is;
 * - DestinationRule ISTIO_MUTUAL wraps it to a workload the registry does not label as meshed;
 * - a non-meshed client's own TLS straight to the PERMISSIVE workload is relayed to its app, and to
 *   the STRICT workload is refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { InboundHandler } from '../../src/runtime/sidecar/inbound.js';
import { setMeshIdentity, type MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';
import { parseClientHello } from '../../src/runtime/tcp/client-hello.js';
import { createObservability, DEFAULT_OBSERVABILITY, type Observability } from '../../src/observability/observer.js';
import { Logger } from '../../src/lib/log.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { makeCa, makeWorkloadCert, type TestCa } from '../support/mesh-pki.js';
import { makeCerts } from '../support/tls-certs.js';
import { LoopbackServers } from '../support/loopback-servers.js';
import type { IRSnapshot } from '../../src/ir/types.js';

const TD = 'cluster.local';
const net8 = `127.${100 + ((process.pid >> 5) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
const SLEEP = `${net8}.2`;
const VIP = { reviews: `${net8}.10`, ratings: `${net8}.11`, legacy: `${net8}.12`, secure: `${net8}.13`, auto: `${net8}.14` };
/** Pod IPs (the server sidecars' inbound capture, or the app itself for legacy) and the apps behind the sidecars. */
const POD = { reviews: `${net8}.20`, ratings: `${net8}.30`, legacy: `${net8}.40`, secure: `${net8}.50` };
const APP = { reviews: `${net8}.21`, ratings: `${net8}.31`, secure: `${net8}.51` };
const FQDN = (name: string): string => `${name}.default.svc.cluster.local`;
const spiffe = (sa: string): string => `spiffe://${TD}/ns/default/sa/${sa}`;
const PLAIN_SNI = 'plain.ratings.example';

function config(port: number): string {
  const pod = (name: string, app: string, ip: string, meshed: boolean): string => `apiVersion: v1
kind: Pod
metadata: {name: ${name}, namespace: default, labels: {app: ${app}, version: v1${meshed ? ', security.istio.io/tlsMode: istio' : ''}}}
spec: {serviceAccountName: ${app}, containers: [{name: app, image: app}]}
status: {phase: Running, podIP: ${ip}}
`;
  const service = (name: string, portName: string, app = name): string => `apiVersion: v1
kind: Service
metadata: {name: ${name}, namespace: default}
spec: {clusterIP: ${VIP[name as keyof typeof VIP]}, selector: {app: ${app}}, ports: [{name: ${portName}, port: ${port}, targetPort: ${port}}]}
`;
  return [
    pod('sleep-1', 'sleep', SLEEP, true),
    pod('reviews-v1', 'reviews', POD.reviews, true),
    pod('ratings-v1', 'ratings', POD.ratings, true),
    pod('legacy-1', 'legacy', POD.legacy, false),
    // A workload with a sidecar the registry does not label: only ISTIO_MUTUAL reaches it with mTLS.
    pod('secure-1', 'secure', POD.secure, false),
    service('reviews', 'https'),
    service('ratings', 'https-ratings'),
    service('legacy', 'tls'),
    service('secure', 'https'),
    // An undeclared port (`web`) over the reviews pod: its TLS is sniffed, relayed by the tcp relay.
    service('auto', 'web', 'reviews'),
    `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
`,
    `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: ratings, namespace: default}
spec: {selector: {matchLabels: {app: ratings}}, mtls: {mode: PERMISSIVE}}
`,
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  subsets:
  - {name: plain, labels: {version: v1}, trafficPolicy: {tls: {mode: DISABLE}}}
`,
    `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings, namespace: default}
spec:
  hosts: [ratings]
  tls:
  - match: [{sniHosts: [${PLAIN_SNI}]}]
    route: [{destination: {host: ratings, subset: plain}}]
  - match: [{sniHosts: [ratings.default.svc.cluster.local]}]
    route: [{destination: {host: ratings}}]
`,
    `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: secure, namespace: default}
spec: {host: secure, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
`,
  ].join('---\n');
}

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

function close(server: net.Server): Promise<void> {
  return new Promise((r) => server.close(() => r()));
}

/** Lines of a Prometheus text exposition for `metric` that contain every `part`. */
function series(text: string, metric: string, ...parts: string[]): string[] {
  return text.split('\n').filter((l) => l.startsWith(`${metric}{`) && parts.every((p) => l.includes(p)));
}

interface Answer {
  who: string;
  sni: string | null;
  remote: string;
}

describe('sidecar TLS relays: the app TLS wrapped in Istio mTLS per endpoint', () => {
  const servers: net.Server[] = [];
  const inbound = new Map<string, InboundHandler>();
  /** What reached each pod's address first: the ClientHello's SNI and ALPN offer, or `plain`. */
  const wire: { pod: string; sni: string; alpn: readonly string[] }[] = [];
  let outbound: OutboundHandler;
  let clientIr: IRSnapshot;
  let obsOut: Observability;
  const obsIn = new Map<string, Observability>();
  let root: TestCa;
  let appCerts: ReturnType<typeof makeCerts>;
  let appCa = '';
  let port = 0;

  async function material(sa: string): Promise<MeshIdentityMaterial> {
    const c = await makeWorkloadCert(root, spiffe(sa));
    return { spiffeId: spiffe(sa), certChainPem: c.certPem, keyPem: c.keyPem, rootsPem: root.certPem, notAfter: Date.now() + 3600_000 };
  }

  function translate(objects: KubeObject[], name: string, sa: string, ip: string): ReturnType<typeof translateSidecar> {
    return translateSidecar(new ResourceSet(objects), { namespace: 'default', serviceAccount: sa, podName: name, podIps: [ip], trustDomain: TD }, DEFAULT_TRANSLATE_OPTIONS);
  }

  /** Binds every address on one port (the service port is the target port): retried on another port when one is taken. */
  async function bindAll(): Promise<void> {
    const apps = { reviews: appServer('reviews'), ratings: appServer('ratings'), legacy: appServer('legacy'), secure: appServer('secure') };
    for (let attempt = 0; ; attempt++) {
      const bound: net.Server[] = [];
      try {
        const p = await listen(apps.reviews, APP.reviews);
        bound.push(apps.reviews);
        await listen(apps.ratings, APP.ratings, p);
        bound.push(apps.ratings);
        await listen(apps.secure, APP.secure, p);
        bound.push(apps.secure);
        // The legacy app has no sidecar: it listens on its pod address itself.
        await listen(apps.legacy, POD.legacy, p);
        bound.push(apps.legacy);
        for (const name of ['reviews', 'ratings', 'secure'] as const) {
          const pod = net.createServer({ allowHalfOpen: true }, (s) => {
            // A tap on the wire: the first bytes the pod receives (the handler reads them too).
            s.once('data', (b: Buffer) => {
              const h = parseClientHello(b);
              wire.push({ pod: name, sni: h.kind === 'sni' ? h.serverName : '', alpn: h.kind === 'sni' || h.kind === 'no-sni' ? h.alpn : ['plain'] });
            });
            const handler = inbound.get(name);
            if (handler === undefined) return void s.destroy();
            handler.handle(s);
          });
          await listen(pod, POD[name], p);
          bound.push(pod);
        }
        for (const name of ['reviews', 'ratings', 'legacy', 'secure', 'auto'] as const) {
          const vip = net.createServer({ allowHalfOpen: true }, (s) => outbound.handle(s));
          await listen(vip, VIP[name], p);
          bound.push(vip);
        }
        servers.push(...bound);
        port = p;
        return;
      } catch (e) {
        await Promise.all(bound.map(close));
        if (attempt > 10) throw e;
      }
    }
  }

  /** An HTTPS app answering who it is, the SNI its client sent and the address it came from. */
  function appServer(who: string): https.Server {
    const cert = appCerts.find((c) => c.cn === FQDN(who))!;
    const server = https.createServer({ cert: cert.certChain, key: cert.privateKey }, (req, res) => {
      const s = req.socket as tls.TLSSocket;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ who, sni: typeof s.servername === 'string' ? s.servername : null, remote: s.remoteAddress ?? '' } satisfies Answer));
    });
    server.keepAliveTimeout = 200;
    return server;
  }

  before(async () => {
    root = await makeCa('O=TLS Relay Test Mesh');
    appCerts = makeCerts(['reviews', 'ratings', 'legacy', 'secure'].map(FQDN));
    appCa = appCerts.map((c) => c.certChain).join('\n');
    const identity = (workload: string): { workload: string; namespace: string; app: string; version: string; cluster: string } => ({ workload, namespace: 'default', app: workload, version: 'v1', cluster: 'Kubernetes' });
    // The client sidecar: its own workload certificate, source-side metrics.
    obsOut = createObservability({ ...DEFAULT_OBSERVABILITY, metrics: true, identity: identity('sleep') });
    outbound = new OutboundHandler({ env: { random: Math.random, observer: obsOut }, tcpObserver: obsOut, detectionTimeoutMs: 200 });
    await bindAll();
    const objects: KubeObject[] = [];
    const diags: Diagnostic[] = [];
    parseFile('tls-relay.yaml', config(port), objects, diags);
    assert.deepEqual(diags.filter((d) => d.severity === 'error'), []);
    const checked = checkObjects(objects).accepted;
    setMeshIdentity(await material('sleep'));
    const client = translate(checked, 'sleep-1', 'sleep', SLEEP);
    assert.deepEqual(client.diagnostics.filter((d) => d.severity === 'error'), []);
    clientIr = client.ir;
    outbound.apply(client.ir);
    for (const name of ['reviews', 'ratings', 'secure'] as const) {
      const id = await material(name);
      const o = createObservability({ ...DEFAULT_OBSERVABILITY, metrics: true, identity: identity(name) });
      obsIn.set(name, o);
      const h = new InboundHandler({ identity: () => id, log: new Logger('error', {}, () => {}), observer: o, clusterId: 'Kubernetes', forwardTo: (_a, p) => ({ address: APP[name], port: p }) });
      h.apply(translate(checked, `${name}-${name === 'secure' ? '1' : 'v1'}`, name, POD[name]).ir);
      inbound.set(name, h);
    }
  });

  after(async () => {
    setMeshIdentity(null);
    loopback.destroyConnections();
    await Promise.all(servers.map(close));
    await outbound.close(0);
    for (const h of inbound.values()) await h.close(0);
    await obsOut?.close();
    for (const o of obsIn.values()) await o.close();
  });

  /** GET / over the app's own TLS to `address:port` (the service VIP, or a pod directly), checking the app's certificate. */
  function get(address: string, servername: string, app = servername): Promise<Answer> {
    return new Promise((resolve, reject) => {
      const req = https.request({ host: address, port, path: '/', servername, ca: appCa, agent: false, timeout: 10_000, headers: { connection: 'close' }, checkServerIdentity: (_h, cert) => tls.checkServerIdentity(app, cert) }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body) as Answer);
          } catch (e) {
            reject(new Error(`${res.statusCode}: ${body} (${(e as Error).message})`));
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  }

  const lastWire = (pod: string): { sni: string; alpn: readonly string[] } | undefined => wire.filter((w) => w.pod === pod).at(-1);

  /** Waits (bounded) until `metric` has a line with every part in `obs`'s exposition. */
  async function waitSeries(obs: Observability, metric: string, ...parts: string[]): Promise<string[]> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const found = series(await obs.registry.metrics(), metric, ...parts);
      if (found.length > 0 || Date.now() > deadline) return found;
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  test('HTTPS to a STRICT meshed workload: Istio mTLS around the app TLS, relayed to the app', async () => {
    const r = await get(VIP.reviews, FQDN('reviews'));
    assert.deepEqual(r, { who: 'reviews', sni: FQDN('reviews'), remote: '127.0.0.6' });
    assert.deepEqual(lastWire('reviews'), { pod: 'reviews', sni: `outbound_.${port}_._.${FQDN('reviews')}`, alpn: ['istio-peer-exchange', 'istio'] });
    const inTcp = obsIn.get('reviews')!;
    const opened = await waitSeries(inTcp, 'istio_tcp_connections_closed_total', 'reporter="destination"', 'connection_security_policy="mutual_tls"', `source_principal="${spiffe('sleep')}"`, `destination_principal="${spiffe('reviews')}"`, 'source_workload="sleep-1"', 'source_app="sleep"');
    assert.equal(opened.length, 1, series(await inTcp.registry.metrics(), 'istio_tcp_connections_closed_total').join('\n'));
    const src = await waitSeries(obsOut, 'istio_tcp_connections_closed_total', 'reporter="source"', `destination_service="${FQDN('reviews')}"`, `destination_principal="${spiffe('reviews')}"`, `source_principal="${spiffe('sleep')}"`, 'destination_workload="reviews-v1"', 'destination_app="reviews"');
    assert.equal(src.length, 1, series(await obsOut.registry.metrics(), 'istio_tcp_connections_closed_total').join('\n'));
  });

  test('VirtualService tls route by SNI: a DISABLE subset gets the app TLS as is (PERMISSIVE relays it), auto mTLS otherwise', async () => {
    const plain = await get(VIP.ratings, PLAIN_SNI, FQDN('ratings'));
    assert.deepEqual(plain, { who: 'ratings', sni: PLAIN_SNI, remote: '127.0.0.6' });
    assert.equal(lastWire('ratings')?.sni, PLAIN_SNI);
    assert.ok(!lastWire('ratings')!.alpn.some((p) => p.startsWith('istio')), String(lastWire('ratings')!.alpn));
    const wrapped = await get(VIP.ratings, FQDN('ratings'));
    assert.deepEqual(wrapped, { who: 'ratings', sni: FQDN('ratings'), remote: '127.0.0.6' });
    assert.deepEqual(lastWire('ratings'), { pod: 'ratings', sni: `outbound_.${port}_._.${FQDN('ratings')}`, alpn: ['istio-peer-exchange', 'istio'] });
    const o = obsIn.get('ratings')!;
    assert.equal((await waitSeries(o, 'istio_tcp_connections_closed_total', 'reporter="destination"', 'connection_security_policy="none"', 'source_principal="unknown"')).length, 1);
    assert.equal((await waitSeries(o, 'istio_tcp_connections_closed_total', 'reporter="destination"', 'connection_security_policy="mutual_tls"', `source_principal="${spiffe('sleep')}"`)).length, 1);
    // An SNI no tls route names: Istio's listener on the VIP has no chain for it once a tls route
    // applies (tls.go), so it takes the listener's PassthroughFilterChain (listener.go
    // buildListenerFromEntry): REGISTRY_ONLY closes it before any upstream. (ALLOW_ANY relays it to
    // the VIP, here this test's own capture stand-in: sidecar-wildcard-address-routes-local covers it.)
    outbound.apply({ ...clientIr, version: 'registry-only', sidecar: { ...clientIr.sidecar!, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
    try {
      const seen = wire.length;
      await assert.rejects(get(VIP.ratings, 'other.ratings.example', FQDN('ratings')), /socket hang up|ECONNRESET|disconnected/);
      assert.equal(wire.length, seen, 'the unrouted connection reached a pod');
    } finally {
      outbound.apply(clientIr);
    }
  });

  test('an undeclared port: the sniffed TLS is wrapped too', async () => {
    const r = await get(VIP.auto, FQDN('reviews'));
    assert.deepEqual(r, { who: 'reviews', sni: FQDN('reviews'), remote: '127.0.0.6' });
    assert.deepEqual(lastWire('reviews'), { pod: 'reviews', sni: `outbound_.${port}_._.${FQDN('auto')}`, alpn: ['istio-peer-exchange', 'istio'] });
  });

  test('a non-meshed endpoint gets the app TLS unwrapped', async () => {
    const r = await get(VIP.legacy, FQDN('legacy'));
    assert.equal(r.who, 'legacy');
    assert.equal(r.sni, FQDN('legacy'));
  });

  test('DestinationRule ISTIO_MUTUAL: wrapped even for an endpoint the registry does not label', async () => {
    const r = await get(VIP.secure, FQDN('secure'));
    assert.deepEqual(r, { who: 'secure', sni: FQDN('secure'), remote: '127.0.0.6' });
    const w = lastWire('secure')!;
    assert.equal(w.sni, `outbound_.${port}_._.${FQDN('secure')}`);
    assert.deepEqual(w.alpn, ['istio-peer-exchange', 'istio']);
  });

  test('a client without a sidecar: its TLS is relayed by a PERMISSIVE workload, refused by a STRICT one', async () => {
    const r = await get(POD.ratings, FQDN('ratings'));
    assert.deepEqual(r, { who: 'ratings', sni: FQDN('ratings'), remote: '127.0.0.6' });
    await assert.rejects(get(POD.reviews, FQDN('reviews')));
  });
});
