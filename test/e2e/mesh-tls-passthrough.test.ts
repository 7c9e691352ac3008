/**
 * TLS passthrough through a gateway that is a mesh client (`meshgate run --control ...`), as Istio's
 * gateway does it ("passthrough+encrypt", istio/istio#29107; pilot cluster_tls.go applies a cluster's
 * transport socket whatever the listener): the client's own TLS, routed by SNI (Istio Gateway
 * `tls.mode: PASSTHROUGH` with VirtualService `tls` routes, Gateway API TLSRoute), is wrapped in Istio
 * mTLS to meshed endpoints. Each meshed backend is a STRICT sidecar inbound stand-in: it terminates TLS
 * with its workload certificate, requires a client certificate from the mesh CA and Istio's ALPN, and
 * relays the decrypted bytes to its app (as Envoy's inbound does, over a new connection), a TLS server
 * with the app's own certificate.
 *
 * Proves:
 * - VirtualService tls route to a meshed Service (auto mTLS): the inbound sees Istio's SNI and ALPN and
 *   the gateway's SPIFFE ID; the inner bytes are the client's own ClientHello (its SNI), and the client
 *   completes its handshake with the app's certificate through both layers, then echoes; Istio's TCP
 *   metadata exchange runs first when the pod takes ALPN istio-peer-exchange (as Envoy does);
 * - the same over a Gateway API TLSRoute;
 * - a non-meshed endpoint, and a meshed one whose DestinationRule says tls DISABLE, get the client's
 *   TLS as is (the app terminates it directly);
 * - a gateway without mesh identity (no `--control`) forwards the client's TLS unwrapped even to an
 *   endpoint labelled as meshed;
 * - AUTO_PASSTHROUGH on the mesh-client gateway is not wrapped: the client's own Istio mTLS reaches
 *   the pod (the pod sees the client's SPIFFE ID, not the gateway's).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { freePort, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { gatewayMeshArgs, startTestControlPlane } from '../support/mesh-control.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { parseClientHello } from '../../src/runtime/tcp/client-hello.js';
import { encodePeerPreamble, readPeerPreamble } from '../../src/runtime/tcp/peer-exchange.js';
import { makeWorkloadCert, type TestCa } from '../support/mesh-pki.js';
import { makeCerts, type TestCert } from '../support/tls-certs.js';

const GATEWAY_ID = 'URI:spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway';

/** What the Istio-inbound stand-in saw on one connection: its own handshake, then the first inner bytes. */
interface Outer {
  sni: string | null;
  alpnOffer: string[];
  alpn: string | false;
  peer: string | null;
  innerSni: string | null;
  /** The node ID in the gateway's metadata-exchange preamble (null: none). */
  peerId: string | null;
}

/** An app's own TLS server: says who it is and the SNI it got, then echoes. */
async function startApp(name: string, cert: TestCert): Promise<{ server: tls.Server; port: number }> {
  const server = tls.createServer({ cert: cert.certChain, key: cert.privateKey }, (s) => {
    s.write(`app:${name} sni:${(s as tls.TLSSocket & { servername?: string }).servername || ''}\n`);
    s.pipe(s);
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

/**
 * A meshed pod under STRICT: Istio mTLS with `identity`'s certificate (client certificate from the
 * mesh CA and Istio's ALPN required, as Envoy's inbound chain), its decrypted bytes relayed to the
 * app on `appPort`.
 */
async function startMeshedPod(ca: TestCa, identity: string, roots: string, appPort: number): Promise<{ server: tls.Server; port: number; seen: Outer[] }> {
  const { certPem, keyPem } = await makeWorkloadCert(ca, identity);
  const seen: Outer[] = [];
  let lastOffer: string[] = [];
  const server = tls.createServer(
    {
      cert: certPem,
      key: keyPem,
      ca: roots,
      requestCert: true,
      rejectUnauthorized: true,
      // Envoy's inbound takes the metadata exchange when offered (Istio's ALPN list holds istio-peer-exchange).
      ALPNCallback: ({ protocols }) => ((lastOffer = protocols), protocols.includes('istio-peer-exchange') ? 'istio-peer-exchange' : protocols.includes('istio') ? 'istio' : undefined),
    },
    (s) => {
      const o: Outer = { sni: (s as tls.TLSSocket & { servername?: string }).servername || null, alpnOffer: lastOffer, alpn: s.alpnProtocol ?? false, peer: s.getPeerCertificate()?.subjectaltname ?? null, innerSni: null, peerId: null };
      seen.push(o);
      s.on('error', () => undefined);
      const relay = (): void => {
        // A tap on the decrypted stream: the first inner bytes must be the client's own ClientHello.
        s.once('data', (b: Buffer) => {
          const h = parseClientHello(b);
          o.innerSni = h.kind === 'sni' ? h.serverName : `(${h.kind})`;
        });
        const app = net.connect({ host: '127.0.0.1', port: appPort });
        app.on('error', () => s.destroy());
        s.on('error', () => app.destroy());
        s.pipe(app).pipe(s);
      };
      if (s.alpnProtocol !== 'istio-peer-exchange') return relay();
      // The exchange: this side's preamble at once, the gateway's read off before the inner bytes.
      s.write(encodePeerPreamble({ NAME: 'meshed-0', NAMESPACE: 'default', WORKLOAD_NAME: 'meshed', LABELS: { app: 'meshed' } }, 'sidecar~127.0.0.1~meshed-0.default~default.svc.cluster.local'));
      readPeerPreamble(s, (r) => {
        if (r.kind !== 'peer') return void s.destroy();
        o.peerId = r.peer.id;
        relay();
      });
    },
  );
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port, seen };
}

/** The client's TLS through the gateway: handshake checked against `ca` for `servername`, one line echoed. */
async function tlsEcho(port: number, servername: string, ca: string): Promise<{ cn: string; lines: string[] }> {
  const socket = tls.connect({ host: '127.0.0.1', port, servername, ca });
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no echo from ${servername} within 10 s`)), 10_000);
      const lines: string[] = [];
      let buf = '';
      socket.once('error', (e) => (clearTimeout(timer), reject(e)));
      socket.once('close', () => (clearTimeout(timer), reject(new Error(`closed by ${servername} after ${JSON.stringify(lines)}`))));
      socket.once('secureConnect', () => socket.write('ping\n'));
      socket.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
          lines.push(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
        if (lines.length >= 2) {
          clearTimeout(timer);
          resolve({ cn: String(socket.getPeerCertificate().subject?.CN ?? ''), lines });
        }
      });
    });
  } finally {
    socket.destroy();
  }
}

function service(name: string, targetPort: number, meshed: boolean): string {
  return `---
apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: default }
spec:
  selector: { app: ${name} }
  ports: [{ name: https, port: 443, targetPort: ${targetPort} }]
---
apiVersion: v1
kind: Pod
metadata: { name: ${name}-0, namespace: default, labels: ${JSON.stringify({ app: name, ...(meshed ? { 'security.istio.io/tlsMode': 'istio' } : {}) })} }
spec: { serviceAccountName: ${name}, containers: [{ name: app, ports: [{ containerPort: ${targetPort} }] }] }
status: { phase: Running, podIP: 127.0.0.1 }
`;
}

function passthroughGateway(port: number, routes: [string, string][]): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - { port: { number: ${port}, name: tls, protocol: TLS }, hosts: ["*.example.com"], tls: { mode: PASSTHROUGH } }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: apps, namespace: default }
spec:
  hosts: ["*.example.com"]
  gateways: [istio-system/gw]
  tls:
${routes.map(([sni, host]) => `    - { match: [{ sniHosts: [${sni}] }], route: [{ destination: { host: ${host}, port: { number: 443 } } }] }`).join('\n')}
`;
}

describe('gateway as a mesh client: TLS passthrough wrapped in Istio mTLS to meshed workloads', { timeout: 120_000 }, () => {
  let cp: ControlPlane;
  let gw: GatewayProcess;
  let outside: GatewayProcess;
  const servers: tls.Server[] = [];
  let appCa = '';
  let meshed: Awaited<ReturnType<typeof startMeshedPod>>;
  let tlsPort = 0;
  let tlsRoutePort = 0;
  let outsidePort = 0;
  let autoPort = 0;
  let meshCa: TestCa;
  let roots = '';

  before(async () => {
    cp = await startTestControlPlane('meshgate-mesh', 3600);
    meshCa = { certPem: cp.ca.material.signingCertPem, key: cp.ca.material.signingKey };
    roots = cp.ca.rootCertPem;
    const certs = makeCerts(['meshed.example.com', 'plain.example.com', 'disabled.example.com']);
    appCa = certs.map((c) => c.certChain).join('\n');
    // The meshed pod's app: reached only through its inbound stand-in (the Pod's port, STRICT).
    const meshedApp = await startApp('meshed', certs[0]);
    meshed = await startMeshedPod(meshCa, 'spiffe://cluster.local/ns/default/sa/meshed', roots, meshedApp.port);
    const plain = await startApp('plain', certs[1]);
    const disabled = await startApp('disabled', certs[2]);
    // What the gateway outside the mesh reaches: the meshed app's own TLS, listening directly.
    const direct = await startApp('direct', certs[0]);
    servers.push(meshedApp.server, meshed.server, plain.server, disabled.server, direct.server);
    [tlsPort, tlsRoutePort, outsidePort, autoPort] = [await freePort(), await freePort(), await freePort(), await freePort()];

    const meshArgs = await gatewayMeshArgs(cp, 'meshgate-mesh');
    const configDir = tempDir('meshgate-gw-config-');
    writeConfig(
      configDir,
      'mesh.yaml',
      `${passthroughGateway(tlsPort, [['meshed.example.com', 'meshed'], ['plain.example.com', 'plain'], ['disabled.example.com', 'disabled']])}---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: disabled, namespace: default }
spec: { host: disabled, trafficPolicy: { tls: { mode: DISABLE } } }
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: eastwest, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - { port: { number: ${autoPort}, name: tls-auto, protocol: TLS }, hosts: ["*.local"], tls: { mode: AUTO_PASSTHROUGH } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: tls, namespace: default }
spec:
  gatewayClassName: meshgate
  listeners: [{ name: passthrough, port: ${tlsRoutePort}, protocol: TLS, tls: { mode: Passthrough } }]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: { name: meshed, namespace: default }
spec:
  parentRefs: [{ name: tls }]
  hostnames: [meshed.example.com]
  rules: [{ backendRefs: [{ name: meshed, port: 443 }] }]
${service('meshed', meshed.port, true)}${service('plain', plain.port, false)}${service('disabled', disabled.port, true)}`,
    );
    const outsideDir = tempDir('meshgate-gw-config-');
    // The Pod is labelled as meshed (its cluster has auto mTLS), but this gateway has no mesh identity.
    writeConfig(outsideDir, 'outside.yaml', `${passthroughGateway(outsidePort, [['meshed.example.com', 'meshed']])}${service('meshed', direct.port, true)}`);
    [gw, outside] = await Promise.all([
      startGateway({ configDir, workers: 1, args: meshArgs }),
      startGateway({ configDir: outsideDir, workers: 1 }),
    ]);
  });

  after(async () => {
    await Promise.all([gw?.stop(), outside?.stop()]);
    await cp?.stop();
    for (const s of servers) s.close();
  });

  test('VirtualService tls route to a meshed Service: Istio mTLS around the client\'s own TLS, which completes with the app\'s certificate', async () => {
    const before = meshed.seen.length;
    const r = await tlsEcho(tlsPort, 'meshed.example.com', appCa).catch((e: Error) => assert.fail(`${e.message}\n${gw.output()}`));
    assert.equal(r.cn, 'meshed.example.com');
    assert.deepEqual(r.lines, ['app:meshed sni:meshed.example.com', 'ping']);
    assert.equal(meshed.seen.length, before + 1);
    const o = meshed.seen[before];
    assert.equal(o.sni, 'outbound_.443_._.meshed.default.svc.cluster.local');
    assert.deepEqual(o.alpnOffer, ['istio-peer-exchange', 'istio']);
    assert.equal(o.alpn, 'istio-peer-exchange');
    assert.equal(o.peer, GATEWAY_ID);
    // The gateway's preamble came first (its node ID, as Istio's gateway: router~IP~POD.NS~...), the
    // pod's never reached the client (its handshake would have failed).
    assert.match(o.peerId ?? '', /^router~/);
    assert.equal(o.innerSni, 'meshed.example.com');
  });

  test('Gateway API TLSRoute to the meshed Service: wrapped the same way', async () => {
    const before = meshed.seen.length;
    const r = await tlsEcho(tlsRoutePort, 'meshed.example.com', appCa).catch((e: Error) => assert.fail(`${e.message}\n${gw.output()}`));
    assert.deepEqual(r.lines, ['app:meshed sni:meshed.example.com', 'ping']);
    assert.equal(meshed.seen.length, before + 1);
    const o = meshed.seen[before];
    assert.equal(o.sni, 'outbound_.443_._.meshed.default.svc.cluster.local');
    assert.equal(o.peer, GATEWAY_ID);
    assert.equal(o.innerSni, 'meshed.example.com');
  });

  test('a non-meshed endpoint gets the client\'s TLS unwrapped', async () => {
    const r = await tlsEcho(tlsPort, 'plain.example.com', appCa);
    assert.equal(r.cn, 'plain.example.com');
    assert.deepEqual(r.lines, ['app:plain sni:plain.example.com', 'ping']);
  });

  test('DestinationRule tls DISABLE: a meshed endpoint gets the client\'s TLS unwrapped', async () => {
    const r = await tlsEcho(tlsPort, 'disabled.example.com', appCa);
    assert.deepEqual(r.lines, ['app:disabled sni:disabled.example.com', 'ping']);
  });

  test('a gateway without mesh identity forwards the client\'s TLS unwrapped, even to a meshed endpoint', async () => {
    const before = meshed.seen.length;
    const r = await tlsEcho(outsidePort, 'meshed.example.com', appCa).catch((e: Error) => assert.fail(`${e.message}\n${outside.output()}`));
    assert.equal(r.cn, 'meshed.example.com');
    assert.deepEqual(r.lines, ['app:direct sni:meshed.example.com', 'ping']);
    assert.equal(meshed.seen.length, before);
  });

  test('AUTO_PASSTHROUGH is not wrapped: the client\'s own Istio mTLS reaches the pod', async () => {
    const before = meshed.seen.length;
    const { certPem, keyPem } = await makeWorkloadCert(meshCa, 'spiffe://cluster.local/ns/default/sa/sleep');
    // A sidecar on another network: Istio mTLS with its own certificate and Istio's SNI and ALPN, the app's TLS inside.
    const outer = tls.connect({ host: '127.0.0.1', port: autoPort, servername: 'outbound_.443_._.meshed.default.svc.cluster.local', ALPNProtocols: ['istio'], cert: certPem, key: keyPem, ca: roots, checkServerIdentity: () => undefined });
    try {
      const lines = await new Promise<string[]>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no echo through AUTO_PASSTHROUGH within 10 s\n${gw.output()}`)), 10_000);
        outer.once('error', (e) => (clearTimeout(timer), reject(e)));
        outer.once('secureConnect', () => {
          assert.equal(outer.alpnProtocol, 'istio');
          const inner = tls.connect({ socket: outer, servername: 'meshed.example.com', ca: appCa });
          const got: string[] = [];
          let buf = '';
          inner.once('error', (e) => (clearTimeout(timer), reject(e)));
          inner.once('secureConnect', () => inner.write('ping\n'));
          inner.on('data', (d: Buffer) => {
            buf += d.toString();
            for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
              got.push(buf.slice(0, i));
              buf = buf.slice(i + 1);
            }
            if (got.length >= 2) (clearTimeout(timer), resolve(got));
          });
        });
      });
      assert.deepEqual(lines, ['app:meshed sni:meshed.example.com', 'ping']);
    } finally {
      outer.destroy();
    }
    assert.equal(meshed.seen.length, before + 1);
    const o = meshed.seen[before];
    assert.equal(o.peer, 'URI:spiffe://cluster.local/ns/default/sa/sleep');
    assert.equal(o.sni, 'outbound_.443_._.meshed.default.svc.cluster.local');
    assert.equal(o.alpn, 'istio');
    assert.equal(o.innerSni, 'meshed.example.com');
  });
});
