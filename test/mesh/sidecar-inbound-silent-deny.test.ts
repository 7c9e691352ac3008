/**
 * A client that says nothing (server-speaks-first TCP: MySQL, SMTP) on a PERMISSIVE or DISABLE
 * inbound port, under a TCP AuthorizationPolicy, over real sockets (InboundHandler as in
 * sidecar-inbound.test.ts). Proves: a denied silent client never produces an accept on the app's
 * server (PERMISSIVE TCP, PERMISSIVE sniffed, DISABLE sniffed, DISABLE TCP), its connection is
 * closed and counted as a TCP denial (stats, istio_tcp_connections_*, the access log's
 * `rbac_access_denied_matched_policy[...]`); an allowed silent client still gets the app's
 * greeting; a client denied as plaintext that then starts mTLS with an allowed principal is served.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import type { MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';
import type { InboundPort, SidecarView } from '../../src/ir/sidecar.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { InboundHandler } from '../../src/runtime/sidecar/inbound.js';
import { Observability, DEFAULT_OBSERVABILITY } from '../../src/observability/observer.js';
import { Logger } from '../../src/lib/log.js';
import { cluster, snapshot } from '../support/ir-builders.js';
import { makeCa, makeWorkloadCert } from '../support/mesh-pki.js';
import { tempDir } from '../helpers/gateway.js';

const TD = 'cluster.local';
const quiet = new Logger('error', {}, () => {});
const net8 = `127.${100 + ((process.pid + 37) % 100)}.${1 + Math.floor(Math.random() * 250)}`;
const POD = `${net8}.20`;
const APP = `${net8}.21`;
/** Allowed by source address. */
const FRIEND = `${net8}.30`;
/** Denied as plaintext; allowed only with the ns1/client principal (mTLS). */
const STRANGER = `${net8}.31`;
const SERVICE = { namespace: 'ns1', name: 'db', host: 'db.ns1.svc.cluster.local', port: 3306 };
/** The handler's protocol detection timeout in this file, ms. */
const DETECT_MS = 1000;

function listen(server: net.Server, host: string, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

/** A server-first app (a MySQL-like greeting), counting every connection it accepts. */
function greetingApp(accepts: { n: number }): net.Server {
  return net.createServer({ allowHalfOpen: true }, (s) => {
    accepts.n++;
    s.on('error', () => {});
    s.write('greeting\n');
    s.on('data', (c: Buffer) => s.write(`echo:${c.toString()}`));
    s.on('end', () => s.end());
  });
}

/** Connects from `from`, sends nothing, collects what arrives until the close (bounded). */
function silent(port: number, from: string, limitMs: number): Promise<{ text: string; closedAfterMs: number; timedOut: boolean }> {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const s = net.connect({ host: POD, port, localAddress: from });
    let text = '';
    let timedOut = false;
    s.setEncoding('utf8');
    s.on('data', (c: string) => {
      text += c;
      // An allowed client got its greeting: done.
      if (text.includes('greeting')) s.end();
    });
    s.on('error', () => {});
    s.on('close', () => resolve({ text, closedAfterMs: Date.now() - t0, timedOut }));
    setTimeout(() => {
      timedOut = true;
      s.destroy();
    }, limitMs).unref();
    s.once('error', (e) => {
      if (s.connecting) reject(e);
    });
  });
}

describe('sidecar inbound: a silent client under a TCP AuthorizationPolicy', () => {
  const accepts = { permissiveTcp: { n: 0 }, permissiveAuto: { n: 0 }, disableAuto: { n: 0 }, disableTcp: { n: 0 } };
  const P = { permissiveTcp: 0, permissiveAuto: 0, disableAuto: 0, disableTcp: 0 };
  const servers: net.Server[] = [];
  let handler: InboundHandler;
  let obs: Observability;
  let clientCert: { certPem: string; keyPem: string };
  let rootPem: string;
  const logFile = path.join(tempDir('meshgate-silent-deny-'), 'access.log');

  before(async () => {
    const ca = await makeCa('O=Silent Mesh');
    rootPem = ca.certPem;
    const serverCert = await makeWorkloadCert(ca, `spiffe://${TD}/ns/ns1/sa/db`);
    clientCert = await makeWorkloadCert(ca, `spiffe://${TD}/ns/ns1/sa/client`);
    const identity: MeshIdentityMaterial = { spiffeId: `spiffe://${TD}/ns/ns1/sa/db`, certChainPem: serverCert.certPem, keyPem: serverCert.keyPem, rootsPem: rootPem, notAfter: new Date(new X509Certificate(serverCert.certPem).validTo).getTime() };
    obs = new Observability({ ...DEFAULT_OBSERVABILITY, metrics: true, accessLog: { path: logFile, format: 'json' } });
    handler = new InboundHandler({ identity: () => identity, log: quiet, observer: obs, forwardTo: (_a, port) => ({ address: APP, port }), peekTimeoutMs: DETECT_MS });
    for (const name of Object.keys(P) as (keyof typeof P)[]) {
      for (let i = 0; ; i++) {
        const app = greetingApp(accepts[name]);
        const port = await listen(app, APP);
        const pod = net.createServer({ allowHalfOpen: true }, (s) => handler.handle(s));
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
    const inbound = (port: number, protocol: InboundPort['protocol'], mtls: InboundPort['mtls']): InboundPort => ({ port, protocol, mtls, httpRoutes: null, cluster: `inbound|${port}||` });
    const ports = [inbound(P.permissiveTcp, 'TCP', 'PERMISSIVE'), inbound(P.permissiveAuto, 'UNKNOWN', 'PERMISSIVE'), inbound(P.disableAuto, 'UNKNOWN', 'DISABLE'), inbound(P.disableTcp, 'TCP', 'DISABLE')].sort((a, b) => a.port - b.port);
    const sidecar: SidecarView = {
      proxy: { namespace: 'ns1', serviceAccount: 'db', podName: 'db-1', podIps: [POD], labels: { app: 'db' }, spiffeId: `spiffe://${TD}/ns/ns1/sa/db`, workload: 'db' },
      outboundTrafficPolicy: 'ALLOW_ANY',
      outbound: [],
      outboundHttp: [],
      outboundTcp: [],
      inbound: ports,
      inboundDefault: 'PERMISSIVE',
      inboundHttp: [],
      workloads: [],
    };
    const cond = (key: string, v: string) => ({ key, values: [v], notValues: [] });
    const ir: IRSnapshot = {
      ...snapshot([], ports.map((p) => cluster(p.cluster, [], { service: SERVICE })), {
        authorizationPolicies: [
          {
            name: 'authorizationpolicy/ns1/db',
            source: { kind: 'AuthorizationPolicy', namespace: 'ns1', name: 'db', file: null, line: null },
            action: 'ALLOW',
            provider: null,
            dryRun: false,
            rules: [{ from: [[cond('source.ip', FRIEND)]], to: [], when: [] }, { from: [[cond('source.principal', `${TD}/ns/ns1/sa/client`)]], to: [], when: [] }],
          },
        ],
      }),
      sidecar,
    };
    handler.apply(ir);
  });

  after(async () => {
    await handler.close();
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    await obs.close();
  });

  test('a denied silent client is closed without the app ever accepting a connection for it', async () => {
    const deniedBefore = handler.stats.tcpDenied;
    const names = ['permissiveTcp', 'permissiveAuto', 'disableAuto', 'disableTcp'] as const;
    // The four at once: each is bounded by the handler's longer wait for a silent client it may not relay.
    const results = await Promise.all(names.map((n) => silent(P[n], STRANGER, 20_000)));
    names.forEach((n, i) => {
      const r = results[i];
      assert.equal(r.timedOut, false, `${n}: the denied silent client was never closed`);
      assert.equal(r.text, '', `${n}: the denied client received ${JSON.stringify(r.text)}`);
      assert.equal(accepts[n].n, 0, `${n}: the app accepted ${accepts[n].n} connection(s) for a client the policy denies`);
    });
    assert.equal(handler.stats.tcpDenied - deniedBefore, 4, 'each denial is counted');
    // Counted and logged as every TCP denial is.
    const metrics = await obs.registry.metrics();
    assert.match(metrics, /istio_tcp_connections_opened_total\{[^}]*reporter="destination"[^}]*\} [1-9]/);
    const deadline = Date.now() + 5000;
    let lines: Record<string, unknown>[] = [];
    while (Date.now() < deadline) {
      lines = (existsSync(logFile) ? readFileSync(logFile, 'utf8') : '').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
      if (lines.filter((l) => JSON.stringify(l).includes('rbac_access_denied_matched_policy[none]')).length >= 4) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(lines.filter((l) => JSON.stringify(l).includes('rbac_access_denied_matched_policy[none]')).length >= 4, `access log lacks the 4 denials: ${JSON.stringify(lines)}`);
  });

  test('an allowed silent client still gets the server-first greeting, the app dialled after the detection timeout', async () => {
    for (const n of ['permissiveTcp', 'permissiveAuto', 'disableAuto', 'disableTcp'] as const) {
      const before = accepts[n].n;
      const r = await silent(P[n], FRIEND, 15_000);
      assert.equal(r.text, 'greeting\n', `${n}: got ${JSON.stringify(r.text)}`);
      assert.equal(accepts[n].n, before + 1, `${n}: the app did not accept exactly one connection`);
    }
  });

  test('a client denied as plaintext that starts mTLS late with an allowed principal is served', async () => {
    const before = accepts.permissiveTcp.n;
    const raw = net.connect({ host: POD, port: P.permissiveTcp, localAddress: STRANGER, allowHalfOpen: true });
    raw.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', () => resolve());
      raw.once('error', reject);
    });
    // Past the detection timeout: nothing was dialled for it.
    await new Promise((r) => setTimeout(r, DETECT_MS + 800));
    assert.equal(accepts.permissiveTcp.n, before, 'the app was dialled for a client the policy denies as plaintext');
    const got = await new Promise<string>((resolve) => {
      const s = tls.connect({ socket: raw, cert: clientCert.certPem, key: clientCert.keyPem, ca: rootPem, servername: `outbound_.${SERVICE.port}_._.${SERVICE.host}`, ALPNProtocols: ['istio'], checkServerIdentity: () => undefined });
      let b = '';
      s.setEncoding('utf8');
      s.on('secureConnect', () => s.write('hi'));
      s.on('data', (c: string) => {
        b += c;
        if (b.includes('echo:hi')) s.end();
      });
      s.on('error', (e) => resolve(`error ${e.message}, got ${b}`));
      s.on('close', () => resolve(b));
      setTimeout(() => s.destroy(), 10_000).unref();
    });
    assert.equal(got, 'greeting\necho:hi');
    assert.equal(accepts.permissiveTcp.n, before + 1);
  });
});
