/**
 * Two `meshgate sidecar`s in a network-namespace lab: the client pod's outbound side (15001) calls a
 * service whose endpoint is meshed, with auto mTLS (Istio SNI, ALPN and the workload certificate);
 * the server pod's inbound side (15006, sc-inbound's InboundHandler) terminates it under STRICT and
 * forwards to the app from 127.0.0.6. Both get their certificates from a real `meshgate control`.
 * Needs `src/runtime/sidecar/inbound.ts` (branch sc-inbound): skipped, saying so, in a build without it.
 *
 *   client   10.250.0.2  capture + sidecar (sa default/client) + HTTP agent
 *   server   10.250.0.3  capture + sidecar (sa default/reviews) + HTTP app :9080
 *   outside  10.250.0.4  not meshed
 *   cp       10.250.0.5  meshgate control
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Lab, labRequired, labSkipReason, type LabProcess } from './lab.js';
import { HTTP_AGENT, HTTP_APP, meshClientView, meshServerView } from './sidecar-programs.js';
import { makePlugInCa } from '../support/mesh-pki.js';
import { loadOrCreateCaDirectory } from '../../src/mesh/ca/ca.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import { MESHGATE } from './meshgate-bin.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../../src/cli/main.js');
const INBOUND = path.resolve(here, '../../src/runtime/sidecar/inbound.js');
const labSkip = labSkipReason();
const skip = labSkip ?? (existsSync(INBOUND) ? undefined : 'this build has no inbound side (src/runtime/sidecar/inbound.ts, branch sc-inbound)');

if (labSkip && labRequired()) {
  test('two-sidecar lab', async () => assert.fail(`the network-namespace lab cannot run but CI requires it: ${labSkip}`));
}

describe('two meshgate sidecars: outbound auto mTLS to a STRICT inbound', { skip: skip ? `skipped: ${skip}` : false }, () => {
  let lab: Lab;
  let dir: string;
  const sidecars: Record<string, LabProcess> = {};
  let app: LabProcess;
  const agents = new Map<string, { proc: LabProcess; next: number }>();

  const get = async (pod: string, host: string, port: number, p: string, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<{ status?: number; body?: string; error?: string; flags?: string | null }> => {
    let agent = agents.get(pod);
    if (!agent) {
      const proc = lab.spawn(pod, [process.execPath, '-e', HTTP_AGENT], {}, { stdin: true });
      await lab.waitForLine(proc, (l) => l.includes('"agent"'));
      agents.set(pod, (agent = { proc, next: 0 }));
    }
    const id = ++agent.next;
    agent.proc.child.stdin!.write(`${JSON.stringify({ id, host, port, path: p, headers, count: 1, timeoutMs })}\n`);
    const line = await lab.waitForLine(agent.proc, (l) => l.startsWith(`{"id":${id},`), timeoutMs + 10_000);
    return (JSON.parse(line) as { results: { status?: number; body?: string; error?: string }[] }).results[0];
  };
  const log = (pod: string) => sidecars[pod].stderr.join('');

  before(async () => {
    lab = Lab.create({
      nodeIp: '10.250.0.1',
      prefixLength: 24,
      pods: [
        { name: 'client', ip: '10.250.0.2', routes: ['10.250.1.0/24'] },
        { name: 'server', ip: '10.250.0.3' },
        { name: 'outside', ip: '10.250.0.4' },
        { name: 'cp', ip: '10.250.0.5' },
      ],
    });
    dir = mkdtempSync(path.join(os.tmpdir(), 'mg-sidecar-mesh-'));
    chmodSync(dir, 0o755);
    const caDir = path.join(dir, 'ca');
    await makePlugInCa(caDir);
    chmodSync(caDir, 0o755);
    chmodSync(path.join(caDir, 'root-cert.pem'), 0o644);
    const material = await loadOrCreateCaDirectory(caDir, { trustDomain: 'cluster.local' });
    mkdirSync(path.join(dir, 'config'));
    for (const [pod, sa, view] of [
      ['client', 'client', meshClientView('10.250.0.3', 'client-1')],
      ['server', 'reviews', meshServerView('10.250.0.3', '10.250.0.2', 'server-1')],
    ] as const) {
      writeFileSync(path.join(dir, `${pod}.token`), `${await issueToken(material.signingKey, { namespace: 'default', serviceAccount: sa }, 3600)}\n`, { mode: 0o644 });
      writeFileSync(path.join(dir, `${pod}.json`), JSON.stringify(view), { mode: 0o644 });
    }
    const cp = lab.spawn('cp', [process.execPath, MAIN, 'control', '--config', path.join(dir, 'config'), '--ca-dir', caDir, '--listen', '10.250.0.5:15012', '--admin-port', '0']);
    app = lab.spawn('server', [process.execPath, '-e', HTTP_APP], { APP_NAME: 'reviews', APP_PORT: '9080' });
    await lab.waitForLine(app, (l) => l.includes('listening'));
    for (const [pod, ip, sa] of [
      ['client', '10.250.0.2', 'client'],
      ['server', '10.250.0.3', 'reviews'],
    ] as const) {
      lab.exec(pod, process.execPath, [MAIN, 'capture']);
      sidecars[pod] = lab.spawn(pod, [
        MESHGATE, 'sidecar', '--control', '10.250.0.5:15012', '--root-cert', path.join(caDir, 'root-cert.pem'), '--token-file', path.join(dir, `${pod}.token`),
        '--pod-ip', ip, '--namespace', 'default', '--service-account', sa, '--pod-name', `${pod}-0`, '--view-file', path.join(dir, `${pod}.json`), '--drain', '1s',
      ]);
    }
    // Ready = certificate + view, asked from the outside pod as a kubelet would.
    for (const ip of ['10.250.0.2', '10.250.0.3']) {
      const deadline = Date.now() + 30_000;
      let status: number | undefined;
      while (Date.now() < deadline && (status = (await get('outside', ip, 15021, '/healthz/ready', {}, 2000)).status) !== 200) await new Promise((r) => setTimeout(r, 200));
      assert.equal(status, 200, `sidecar ${ip} not ready: client ${log('client')} server ${log('server')} control ${cp.stderr.join('')}`);
    }
  });

  after(() => {
    lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('the call reaches the app over Istio mTLS: the app sees 127.0.0.6 and the client SPIFFE ID in x-forwarded-client-cert', async () => {
    const r = await get('client', '10.250.1.10', 9080, '/hello');
    assert.equal(r.status, 200, `${JSON.stringify(r)}\nclient: ${log('client')}\nserver: ${log('server')}`);
    const b = JSON.parse(r.body!) as { server: string; remote: string; headers: Record<string, string> };
    assert.equal(b.server, 'reviews');
    assert.equal(b.remote, '127.0.0.6');
    assert.match(b.headers['x-forwarded-client-cert'] ?? '', /URI=spiffe:\/\/cluster\.local\/ns\/default\/sa\/client/);
    assert.match(b.headers['x-forwarded-client-cert'] ?? '', /By=spiffe:\/\/cluster\.local\/ns\/default\/sa\/reviews/);
    // Neither sidecar appends its peer to x-forwarded-for (Envoy's sidecars: use_remote_address false).
    assert.equal(b.headers['x-forwarded-for'], undefined);
  });

  test('STRICT: the non-meshed pod gets no HTTP answer from the server pod', async () => {
    const r = await get('outside', '10.250.0.3', 9080, '/plain', {}, 3000);
    assert.equal(r.status, undefined, JSON.stringify(r));
    assert.ok(r.error, JSON.stringify(r));
  });

  test('metrics: reporter="source" on the client, reporter="destination" with the peer principal and mutual_tls on the server', async () => {
    const client = (await get('outside', '10.250.0.2', 15020, '/stats/prometheus')).body ?? '';
    const server = (await get('outside', '10.250.0.3', 15020, '/stats/prometheus')).body ?? '';
    const src = client.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('reporter="source"') && l.includes('destination_service="reviews.default.svc.cluster.local"'));
    assert.ok(src, client.slice(0, 2000));
    assert.match(src!, /source_workload="client"/);
    // The destination workload and its verified identity, from the endpoint that served the request.
    assert.match(src!, /destination_workload="reviews"/);
    assert.match(src!, /destination_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/reviews"/);
    assert.match(src!, /source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/client"/);
    assert.match(src!, /connection_security_policy="unknown"/);
    const dst = server.split('\n').find((l) => l.startsWith('istio_requests_total{') && l.includes('reporter="destination"'));
    assert.ok(dst, server.slice(0, 2000));
    assert.match(dst!, /source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/client"/);
    assert.match(dst!, /connection_security_policy="mutual_tls"/);
  });
});
