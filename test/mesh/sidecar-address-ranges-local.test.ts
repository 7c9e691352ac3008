/**
 * ServiceEntry `addresses` given as CIDR ranges on the sidecar's outbound side (translateSidecar then
 * OutboundHandler, real TLS and TCP clients and servers on loopback; a plain listener stands for the
 * capture and presents each socket with the original destination TPROXY would give).
 *
 * Istio makes one service per address (serviceentry/conversion.go; a /32 is the address itself): an
 * address gets its own listener, whose TLS default chain takes every connection; a range gets chains
 * of `0.0.0.0_<port>` matching its prefix, whose TLS default chain names the host
 * (tls.go buildSidecarOutboundTLSFilterChainOpts). Proved for `*.range.test` (NONE, a /29 and a /32),
 * under REGISTRY_ONLY so that what the service does not take is closed rather than passed through:
 * - TLS into the range with an SNI the host covers goes to the original destination; another SNI,
 *   or none, is closed (the passthrough chain);
 * - TLS to the /32 address goes to the original destination whatever its SNI;
 * - TCP into the range goes to the original destination (the default route takes every connection);
 * - an address of the range on another port is not the service's: closed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import net from 'node:net';
import tls from 'node:tls';
import { OutboundHandler } from '../../src/runtime/sidecar/outbound.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import type { TcpRecord } from '../../src/observability/tcp-record.js';
import { generatePkiSync } from '../support/x509-gen.js';
import { LoopbackServers, sniEchoServer, viaCapture, greetingServer } from '../support/loopback-servers.js';

const net16 = `127.${100 + ((process.pid >> 3) % 100)}`;
const third = 1 + Math.floor(Math.random() * 250);
/** The range 127.x.y.64/29; IN_RANGE is one of its addresses, SINGLE the /32 entry. */
const RANGE = `${net16}.${third}.64/29`;
const IN_RANGE = `${net16}.${third}.66`;
const SINGLE = `${net16}.${third}.90`;
const CLIENT_SIDE = `${net16}.${third}.91`;

const pki = generatePkiSync([{ name: 'server', cn: 'backends', dns: ['*.range.test', 'other.example'], key: 'ec' }]);
const CERT = pki.certs.server;

const loopback = new LoopbackServers();
const listen = (server: net.Server, host: string, port = 0): Promise<number> => loopback.listen(server, host, port);

const tlsBackend = (who: string): tls.Server => sniEchoServer(CERT, who);

describe('sidecar outbound: ServiceEntry address ranges (CIDR)', () => {
  const servers: net.Server[] = [];
  let handler: OutboundHandler;
  const records: TcpRecord[] = [];
  const P = { tls: 0, tcp: 0, other: 0 };

  before(async () => {
    handler = new OutboundHandler({ env: { random: Math.random, observer: null }, tcpObserver: { observeTcp: (rec, phase) => void (phase === 'close' && records.push(rec)) }, detectionTimeoutMs: 300 });
    const inRange = tlsBackend('in-range');
    P.tls = await listen(inRange, IN_RANGE);
    const single = tlsBackend('single');
    await listen(single, SINGLE, P.tls);
    const pg = greetingServer('in-range-pg\n');
    P.tcp = await listen(pg, IN_RANGE);
    // A port of an address in the range that no service declares.
    const other = tlsBackend('undeclared-port');
    P.other = await listen(other, IN_RANGE);
    servers.push(inRange, single, pg, other);
    const yaml = `
apiVersion: v1
kind: Pod
metadata: {name: sleep-1, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: curl}]}
status: {phase: Running, podIP: ${CLIENT_SIDE}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: range, namespace: default}
spec:
  hosts: ["*.range.test"]
  addresses: [${RANGE}, ${SINGLE}/32]
  resolution: NONE
  ports: [{number: ${P.tls}, name: tls, protocol: TLS}, {number: ${P.tcp}, name: tcp, protocol: TCP}]
`;
    const objects: KubeObject[] = [];
    const diags: Diagnostic[] = [];
    parseFile('ranges.yaml', yaml, objects, diags);
    const checked = checkObjects(objects);
    const r = translateSidecar(new ResourceSet(checked.accepted), { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', podIps: [CLIENT_SIDE], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    assert.deepEqual([...diags, ...checked.diagnostics, ...r.diagnostics].filter((d) => d.severity !== 'info'), []);
    handler.apply({ ...r.ir, sidecar: { ...r.ir.sidecar!, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
  });

  after(async () => {
    for (const s of servers) s.close();
    loopback.destroyConnections();
    await handler.close(0);
  });

  const asIfTo = <T>(address: string, port: number, send: (capPort: number) => Promise<T>): Promise<T> => viaCapture(loopback, CLIENT_SIDE, (s) => handler.handle(s), address, port, send);

  /** What the server said, or `closed: <reason>` when the connection ended before a handshake; `sni` null: none. */
  const tlsTo = (address: string, port: number, sni: string | null): Promise<string> =>
    asIfTo(address, port, (p) => new Promise((resolve, reject) => {
      const c = tls.connect(sni === null ? { host: CLIENT_SIDE, port: p, rejectUnauthorized: false } : { host: CLIENT_SIDE, port: p, servername: sni, ca: CERT.cert });
      let out = '';
      let secure = false;
      c.setEncoding('utf8');
      c.once('secureConnect', () => (secure = true));
      c.on('data', (d: string) => (out += d));
      c.on('close', () => resolve(secure ? out : `closed: ${out}`));
      c.on('error', (err: NodeJS.ErrnoException) => (secure ? reject(err) : resolve(`closed: ${err.code ?? err.message}`)));
      c.setTimeout(10_000, () => c.destroy(new Error(`no answer for ${sni} within 10 s`)));
    }));

  const tcpTo = (address: string, port: number): Promise<string> =>
    asIfTo(address, port, (p) => new Promise((resolve, reject) => {
      const c = net.connect({ host: CLIENT_SIDE, port: p });
      let out = '';
      c.setEncoding('utf8');
      c.on('data', (d: string) => (out += d));
      c.on('close', () => resolve(out));
      c.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(out) : reject(err)));
      c.setTimeout(10_000, () => c.destroy(new Error('no answer within 10 s')));
    }));

  test('TLS into the range: an SNI the host covers goes to the original destination; another SNI, or none, is closed', async () => {
    assert.equal(await tlsTo(IN_RANGE, P.tls, 'db.range.test'), 'in-range db.range.test');
    assert.match(await tlsTo(IN_RANGE, P.tls, 'other.example'), /^closed: /);
    assert.match(await tlsTo(IN_RANGE, P.tls, null), /^closed: /);
  });

  test('TLS to the /32 address: its own listener takes every connection, whatever the SNI', async () => {
    assert.equal(await tlsTo(SINGLE, P.tls, 'other.example'), 'single other.example');
    assert.equal(await tlsTo(SINGLE, P.tls, null), 'single -');
  });

  test('TCP into the range goes to the original destination; another port of the range is not the service\'s', async () => {
    assert.equal(await tcpTo(IN_RANGE, P.tcp), 'in-range-pg\n');
    assert.match(await tlsTo(IN_RANGE, P.other, 'db.range.test'), /^closed: /);
  });

  test('connection records name the wildcard host\'s cluster and the endpoint reached', async () => {
    records.length = 0;
    await tlsTo(IN_RANGE, P.tls, 'db.range.test');
    const deadline = Date.now() + 5000;
    while (records.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(records.map((r) => `${r.route} ${r.cluster} ${r.upstreamHost}`), [`default outbound|${P.tls}||*.range.test ${IN_RANGE}:${P.tls}`]);
  });
});
