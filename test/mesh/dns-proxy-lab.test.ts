/**
 * DNS proxying in a network-namespace lab: an app in a meshed pod resolves a ServiceEntry host that
 * exists in no real DNS, through its ordinary resolver (getaddrinfo and /etc/resolv.conf), and
 * reaches it through the sidecar.
 *
 *   app   10.251.0.2  capture --redirect-dns --dns-servers 10.251.0.4 + sidecar (view with
 *                     ISTIO_META_DNS_CAPTURE and ISTIO_META_DNS_AUTO_ALLOCATE) + the app
 *   ext   10.251.0.3  the ServiceEntry's endpoint: an HTTP server on 8080; a TLS server on 8443
 *   dns   10.251.0.4  the pod's "cluster DNS": answers upstream.test, NXDOMAIN for every other name;
 *                     a TLS server on 8443 (ServiceEntry other.mesh-only.test)
 *
 * Proves: the app's query for `api.mesh-only.test` (port 53 to 10.251.0.4) is answered by the
 * sidecar with the auto-allocated VIP of the view; the app's HTTP call to that VIP is captured and
 * routed to the entry's endpoint; names the view does not know are forwarded by the sidecar (whose
 * own query is not captured again: no loop) and the upstream's answer, NXDOMAIN included, reaches
 * the app; over TCP too; `capture --clean` removes the DNS rules with the rest. TLS to the address
 * answered for the wildcard host `*.wild.test` goes by its VirtualService's `tls` routes (an SNI to
 * another ServiceEntry, another to the host itself: the original destination), and an SNI no route
 * names takes Istio's passthrough chain (PassthroughCluster in the sidecar's metrics).
 */
import { after, before, describe, test } from 'node:test';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { MESHGATE } from './meshgate-bin.js';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar } from '../../src/translate/sidecar/index.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { generatePkiSync } from '../support/x509-gen.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../../src/cli/main.js');
const WIRE = path.resolve(here, '../../src/mesh/dns/wire.js');
// The app gets its own resolv.conf by a bind mount inside `ip netns exec`'s private mount namespace.
const skip = labSkipReason() ?? (spawnSync('sh', ['-c', 'command -v mount']).status === 0 ? undefined : 'the DNS lab needs mount: apt-get install mount');

if (skip && labRequired()) {
  test('DNS proxy lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${skip}`));
}

const MESH = `
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      proxyMetadata:
        ISTIO_META_DNS_CAPTURE: "true"
        ISTIO_META_DNS_AUTO_ALLOCATE: "true"
---
apiVersion: v1
kind: Pod
metadata: {name: app-0, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: sleep, image: curl}]}
status: {phase: Running, podIP: 10.251.0.2}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: mesh-only, namespace: default}
spec:
  hosts: [api.mesh-only.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8080, name: http, protocol: HTTP}]
  endpoints: [{address: 10.251.0.3}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.wild.test"]
  addresses: [10.251.0.3]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 8080, name: http, protocol: HTTP}, {number: 8443, name: tls, protocol: TLS}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: other, namespace: default}
spec:
  hosts: [other.mesh-only.test]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 8443, name: tls, protocol: TLS}]
  endpoints: [{address: 10.251.0.4}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: wild, namespace: default}
spec:
  hosts: ["*.wild.test"]
  http:
  - headers: {request: {set: {x-via: wildcard}}}
    route: [{destination: {host: "*.wild.test", port: {number: 8080}}}]
  tls:
  - match: [{sniHosts: [pay.wild.test]}]
    route: [{destination: {host: other.mesh-only.test, port: {number: 8443}}}]
  - match: [{sniHosts: [www.wild.test]}]
    route: [{destination: {host: "*.wild.test", port: {number: 8443}}}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: default}
spec: {type: ExternalName, externalName: upstream.test}
---
apiVersion: v1
kind: Service
metadata: {name: mesh-alias, namespace: default}
spec: {type: ExternalName, externalName: api.mesh-only.test}
`;

/** The app: resolves NAME with getaddrinfo (all families), then GETs http://NAME:PORT/ unless PORT is empty; prints one JSON line. */
const APP = `
const dns = require('node:dns'); const http = require('node:http');
const name = process.env.NAME, port = process.env.PORT;
dns.lookup(name, { all: true }, (err, addrs) => {
  if (err) { console.log(JSON.stringify({ error: err.code })); return; }
  if (!port) { console.log(JSON.stringify({ addresses: addrs.map((a) => a.address) })); return; }
  const req = http.get({ host: name, port: Number(port), path: '/hello', timeout: 5000 }, (res) => {
    let body = ''; res.on('data', (c) => body += c); res.on('end', () => console.log(JSON.stringify({ addresses: addrs.map((a) => a.address), status: res.statusCode, body })));
  });
  req.on('error', (e) => console.log(JSON.stringify({ addresses: addrs.map((a) => a.address), error: e.code || e.message })));
  req.on('timeout', () => req.destroy(new Error('timeout')));
});
`;

/** The app over TLS: resolves NAME, connects to NAME:PORT with SNI SNI, prints what the server said (or how it ended). */
const TLS_APP = `
const dns = require('node:dns'); const tls = require('node:tls');
dns.lookup(process.env.NAME, (err, address) => {
  if (err) { console.log(JSON.stringify({ error: err.code })); return; }
  const s = tls.connect({ host: address, port: Number(process.env.PORT), servername: process.env.SNI, rejectUnauthorized: false });
  let said = ''; s.setEncoding('utf8'); s.on('data', (c) => said += c);
  s.on('close', () => console.log(JSON.stringify({ address, said })));
  s.on('error', (e) => { console.log(JSON.stringify({ address, error: e.code || e.message })); s.destroy(); });
  s.setTimeout(5000, () => s.destroy(new Error('timeout')));
});
`;

/** A TLS server on 8443 that answers `<WHO> <SNI>` and closes. */
const TLS_SERVER = `
const fs = require('node:fs');
require('node:tls').createServer({ cert: fs.readFileSync(process.env.CERT), key: fs.readFileSync(process.env.KEY) }, (s) => { s.on('error', () => {}); s.end(process.env.WHO + ' ' + (s.servername || '-')); })
  .listen(8443, '0.0.0.0', () => console.log('listening'));
`;

/** The endpoint: says who it is and who called. */
const EXT = `
require('node:http').createServer((req, res) => res.end(JSON.stringify({ server: 'ext', host: req.headers.host, remote: req.socket.remoteAddress, via: req.headers['x-via'] ?? null })))
  .listen(8080, '0.0.0.0', () => console.log('listening'));
`;

/**
 * The cluster DNS: upstream.test A 10.251.0.3; the ExternalName legacy.default.svc.cluster.local as
 * kube-dns answers it, a CNAME to upstream.test with its A record; NXDOMAIN else; UDP and TCP on 53;
 * logs each question.
 */
const RESOLVER = `
const dgram = require('node:dgram'); const net = require('node:net');
import(process.env.WIRE).then((w) => {
  const answer = (msg) => {
    const q = w.parseQuery(msg); const qu = q.questions[0];
    const name = qu.name.toLowerCase();
    const legacy = name === 'legacy.default.svc.cluster.local';
    const ok = name === 'upstream.test' || legacy;
    console.log('question ' + qu.name + ' ' + qu.type);
    const answers = legacy ? [{ type: 5, name: qu.name, ttl: 5, target: 'upstream.test' }] : [];
    if (ok && qu.type === 1) answers.push({ type: 1, name: legacy ? 'upstream.test' : qu.name, ttl: 60, address: Uint8Array.of(10, 251, 0, 3) });
    return w.encodeResponse({ id: q.header.id, opcode: 0, authoritative: true, recursionDesired: q.header.recursionDesired, recursionAvailable: true, checkingDisabled: false,
      rcode: ok ? 0 : 3, question: qu, answers });
  };
  const udp = dgram.createSocket('udp4');
  udp.on('message', (m, r) => udp.send(answer(m), r.port, r.address));
  udp.bind(53, '10.251.0.4', () => {
    net.createServer((s) => { let b = Buffer.alloc(0); s.on('data', (c) => { b = Buffer.concat([b, c]);
      while (b.length >= 2 && b.length >= 2 + b.readUInt16BE(0)) { const out = answer(b.subarray(2, 2 + b.readUInt16BE(0))); b = b.subarray(2 + b.readUInt16BE(0)); s.write(Buffer.concat([Buffer.from([out.length >> 8, out.length & 255]), out])); } }); s.on('error', () => {}); })
      .listen(53, '10.251.0.4', () => console.log('listening'));
  });
});
`;

describe('DNS proxying in a lab: a ServiceEntry host in no real DNS, resolved and reached through the sidecar', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let dir: string;
  let sidecar: LabProcess;
  let resolver: LabProcess;
  let vip = '';

  /** Runs the app in the app pod with /etc/resolv.conf bind-mounted from `resolvConf` (in ip netns exec's private mount namespace only). */
  const app = async (env: Record<string, string>, resolvConf = path.join(dir, 'app-resolv.conf')): Promise<Record<string, unknown>> => {
    const r = await lab.run('app', ['sh', '-c', 'mount --bind "$RESOLV" /etc/resolv.conf && exec "$@"', 'sh', process.execPath, '-e', APP], { ...env, RESOLV: resolvConf }, 20_000);
    const line = r.stdout.trim().split('\n').pop() ?? '';
    assert.ok(line.startsWith('{'), `app printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr}); sidecar: ${sidecar.stderr.join('')}`);
    return JSON.parse(line) as Record<string, unknown>;
  };

  before(async () => {
    lab = Lab.create({
      nodeIp: '10.251.0.1',
      prefixLength: 24,
      // The auto-allocated VIP range must be routable for connect() to reach OUTPUT (and capture).
      pods: [{ name: 'app', ip: '10.251.0.2', routes: ['240.240.0.0/16'] }, { name: 'ext', ip: '10.251.0.3' }, { name: 'dns', ip: '10.251.0.4' }],
    });
    dir = mkdtempSync(path.join(os.tmpdir(), 'mg-dns-lab-'));
    chmodSync(dir, 0o755);
    // The view the control plane would push to this pod.
    const objects: KubeObject[] = [];
    const diagnostics: Diagnostic[] = [];
    parseFile('mesh.yaml', MESH, objects, diagnostics);
    const { ir } = translateSidecar(new ResourceSet(checkObjects(objects).accepted), { namespace: 'default', serviceAccount: 'sleep', podName: 'app-0', podIps: ['10.251.0.2'], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
    vip = ir.sidecar?.dns?.hosts.find((h) => h.host === 'api.mesh-only.test')?.addresses[0] ?? '';
    assert.match(vip, /^240\.240\.\d+\.\d+$/, JSON.stringify(ir.sidecar?.dns));
    writeFileSync(path.join(dir, 'view.json'), JSON.stringify(ir), { mode: 0o644 });
    const resolv = 'nameserver 10.251.0.4\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 attempts:1 timeout:3\n';
    writeFileSync(path.join(dir, 'app-resolv.conf'), resolv, { mode: 0o644 });
    writeFileSync(path.join(dir, 'app-resolv-tcp.conf'), `${resolv}options use-vc\n`, { mode: 0o644 });
    const ext = lab.spawn('ext', [process.execPath, '-e', EXT]);
    await lab.waitForLine(ext, (l) => l.includes('listening'));
    const pki = generatePkiSync([{ name: 'server', cn: 'lab', dns: ['*.wild.test', 'other.mesh-only.test'], key: 'ec' }]);
    writeFileSync(path.join(dir, 'tls.crt'), pki.certs.server.cert, { mode: 0o644 });
    writeFileSync(path.join(dir, 'tls.key'), pki.certs.server.key, { mode: 0o644 });
    const tlsFiles = { CERT: path.join(dir, 'tls.crt'), KEY: path.join(dir, 'tls.key') };
    for (const [pod, who] of [['ext', 'ext'], ['dns', 'other']] as const) await lab.waitForLine(lab.spawn(pod, [process.execPath, '-e', TLS_SERVER], { ...tlsFiles, WHO: who }), (l) => l.includes('listening'));
    resolver = lab.spawn('dns', [process.execPath, '-e', RESOLVER], { WIRE });
    await lab.waitForLine(resolver, (l) => l.includes('listening'));
    lab.exec('app', process.execPath, [MAIN, 'capture', '--redirect-dns', '--dns-servers', '10.251.0.4']);
    // No --dns-capture: the view's ProxyConfig turns the DNS proxy on.
    sidecar = lab.spawn('app', [MESHGATE, 'sidecar', '--view-file', path.join(dir, 'view.json'), '--pod-ip', '10.251.0.2', '--namespace', 'default', '--service-account', 'sleep', '--pod-name', 'app-0', '--resolv-conf', path.join(dir, 'app-resolv.conf'), '--drain', '0s']);
    // The sidecar logs to stderr: its DNS proxy and the view (bounded wait).
    const deadline = Date.now() + 30_000;
    while (!sidecar.stderr.join('').includes('"view applied"') && sidecar.child.exitCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.match(sidecar.stderr.join(''), /"DNS proxy listening"[\s\S]*"view applied"/, `sidecar: ${sidecar.stderr.join('')}`);
  });

  after(() => {
    lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the app resolves the ServiceEntry host to its auto-allocated VIP and reaches the endpoint through the sidecar', async () => {
    const r = await app({ NAME: 'api.mesh-only.test', PORT: '8080' });
    assert.deepEqual(r.addresses, [vip], JSON.stringify(r));
    assert.equal(r.status, 200, `${JSON.stringify(r)}\nsidecar: ${sidecar.stderr.join('')}`);
    const body = JSON.parse(r.body as string) as { server: string; host: string; remote: string };
    assert.equal(body.server, 'ext');
    assert.equal(body.host, 'api.mesh-only.test:8080');
    // The sidecar dialled the endpoint: the app's own address, not the VIP's, is the source.
    assert.equal(body.remote, '10.251.0.2');
    assert.ok(!resolver.stdout.join('').includes('api.mesh-only.test'), `the cluster DNS was asked for the mesh-only name: ${resolver.stdout.join('')}`);
  });

  test('unknown names go to the pod\'s resolver through the sidecar (no loop); its NXDOMAIN reaches the app; TCP too', async () => {
    assert.deepEqual((await app({ NAME: 'upstream.test', PORT: '' })).addresses, ['10.251.0.3']);
    assert.equal((await app({ NAME: 'nothing.test', PORT: '' })).error, 'ENOTFOUND');
    const asked = resolver.stdout.join('');
    assert.match(asked, /question upstream\.test 1/);
    assert.match(asked, /question nothing\.test 1/);
    // glibc over TCP (options use-vc): redirected to the sidecar's TCP listener, forwarded over TCP.
    assert.deepEqual((await app({ NAME: 'api.mesh-only.test', PORT: '' }, path.join(dir, 'app-resolv-tcp.conf'))).addresses, [vip]);
    assert.deepEqual((await app({ NAME: 'upstream.test', PORT: '' }, path.join(dir, 'app-resolv-tcp.conf'))).addresses, ['10.251.0.3']);
  });

  test('a wildcard ServiceEntry host with an address: getaddrinfo takes Istio\'s chained answer to the search-domain name, and the call is routed by the wildcard\'s VirtualService', async () => {
    // ndots:5: glibc asks www.wild.test.default.svc.cluster.local first, answered with a CNAME to
    // *.wild.test and the address under *.wild.test, which it accepts.
    const r = await app({ NAME: 'www.wild.test', PORT: '8080' });
    assert.deepEqual(r.addresses, ['10.251.0.3'], JSON.stringify(r));
    assert.equal(r.status, 200, `${JSON.stringify(r)}\nsidecar: ${sidecar.stderr.join('')}`);
    assert.deepEqual(JSON.parse(r.body as string), { server: 'ext', host: 'www.wild.test:8080', remote: '10.251.0.2', via: 'wildcard' });
    // Deeper names too, and over TCP; never asked upstream.
    assert.deepEqual((await app({ NAME: 'a.b.wild.test', PORT: '' }, path.join(dir, 'app-resolv-tcp.conf'))).addresses, ['10.251.0.3']);
    assert.ok(!resolver.stdout.join('').includes('wild.test'), `the cluster DNS was asked for a wildcard name: ${resolver.stdout.join('')}`);
  });

  test('TLS to the address answered for a wildcard host goes by its tls routes; an SNI no route names takes the passthrough chain', async () => {
    const tlsApp = async (name: string, sni: string): Promise<Record<string, unknown>> => {
      const r = await lab.run('app', ['sh', '-c', 'mount --bind "$RESOLV" /etc/resolv.conf && exec "$@"', 'sh', process.execPath, '-e', TLS_APP], { NAME: name, SNI: sni, PORT: '8443', RESOLV: path.join(dir, 'app-resolv.conf') }, 20_000);
      const line = r.stdout.trim().split('\n').pop() ?? '';
      assert.ok(line.startsWith('{'), `app printed ${JSON.stringify(r.stdout)} (stderr ${r.stderr}); sidecar: ${sidecar.stderr.join('')}`);
      return JSON.parse(line) as Record<string, unknown>;
    };
    // The route by SNI to another ServiceEntry: the connection to 10.251.0.3 reaches 10.251.0.4.
    assert.deepEqual(await tlsApp('pay.wild.test', 'pay.wild.test'), { address: '10.251.0.3', said: 'other pay.wild.test' });
    // The route to the host itself: the original destination.
    assert.deepEqual(await tlsApp('www.wild.test', 'www.wild.test'), { address: '10.251.0.3', said: 'ext www.wild.test' });
    // No route: Istio's PassthroughFilterChain (ALLOW_ANY) to the original destination.
    assert.deepEqual(await tlsApp('misc.wild.test', 'misc.wild.test'), { address: '10.251.0.3', said: 'ext misc.wild.test' });
    const m = await lab.run('ext', [process.execPath, '-e', "require('node:http').get('http://10.251.0.2:15020/stats/prometheus', (res) => { let b = ''; res.on('data', (c) => b += c); res.on('end', () => console.log(b)); }).on('error', (e) => console.log('error ' + e.message))"]);
    const opened = m.stdout.split('\n').filter((l) => l.startsWith('istio_tcp_connections_opened_total{') && l.includes('reporter="source"'));
    assert.ok(opened.some((l) => l.includes('destination_service="other.mesh-only.test"')), opened.join('\n'));
    assert.ok(opened.some((l) => l.includes('destination_service="*.wild.test"')), opened.join('\n'));
    assert.ok(opened.some((l) => l.includes('PassthroughCluster')), opened.join('\n'));
  });

  test('ExternalName Services are not answered by the sidecar (as Istio): the cluster DNS answers them, alias or not', async () => {
    // The outside-host form: kube-dns' CNAME and the target's address reach the app.
    assert.deepEqual((await app({ NAME: 'legacy', PORT: '' })).addresses, ['10.251.0.3']);
    assert.match(resolver.stdout.join(''), /question legacy\.default\.svc\.cluster\.local 1/);
    // The alias of a ServiceEntry host in no DNS: the sidecar does not answer it either, so it does
    // not resolve (Istio's DNS proxy behaves the same); its target does.
    assert.equal((await app({ NAME: 'mesh-alias', PORT: '' })).error, 'ENOTFOUND');
    assert.match(resolver.stdout.join(''), /question mesh-alias\.default\.svc\.cluster\.local 1/);
  });

  test('the DNS proxy\'s metrics are on 15020 with istio-agent\'s names', async () => {
    const r = await lab.run('ext', [process.execPath, '-e', "require('node:http').get('http://10.251.0.2:15020/stats/prometheus', (res) => { let b = ''; res.on('data', (c) => b += c); res.on('end', () => console.log(b)); }).on('error', (e) => console.log('error ' + e.message))"]);
    const requests = Number(/^istio_agent_dns_requests_total (\d+)$/m.exec(r.stdout)?.[1] ?? -1);
    assert.ok(requests >= 4, r.stdout.slice(0, 3000));
    assert.match(r.stdout, /^istio_agent_dns_upstream_requests_total [1-9]\d*$/m);
  });

  test('capture --clean removes the DNS rules (nat and raw) with the rest', () => {
    const before = lab.exec('app', 'iptables-save', []);
    assert.match(before, /MESHGATE_OUTPUT_DNS/);
    assert.match(before, /MESHGATE_DNS_ZONES_OUT/);
    lab.exec('app', process.execPath, [MAIN, 'capture', '--clean']);
    assert.doesNotMatch(lab.exec('app', 'iptables-save', []), /MESHGATE/);
  });
});
