/**
 * Access logging configured the Istio way, end to end: the real `meshgate run` (two workers) with
 * a config directory holding MeshConfig (ConfigMap istio-system/istio) and Telemetry objects. A
 * Telemetry filter keeps only error lines; a reload with `disabled: true` stops the log without a
 * restart; MeshConfig `accessLogFile` with a custom `accessLogFormat` writes lines in that format;
 * TCP connections go through the same decision.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { freePort, get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { observabilityConfig } from '../support/observability-config.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
const HOST = 'obs.example.com';

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
}

function meshConfig(mesh: string): string {
  return `apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |
${mesh
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
`;
}

async function version(gw: GatewayProcess): Promise<string | null> {
  return (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/config_dump`)).body) as { version: string | null }).version;
}

/** Writes `file` and waits until the gateway serves a new snapshot. */
async function reload(gw: GatewayProcess, dir: string, file: string, text: string): Promise<void> {
  const before = await version(gw);
  writeConfig(dir, file, text);
  await waitFor(async () => (await version(gw)) !== before, 5000, `a new snapshot after writing ${file}`);
}

describe('Telemetry accessLogging: filter, then disabled on reload', () => {
  const dir = tempDir();
  const logFile = path.join(dir, 'logs', 'access.log');
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};

  const telemetry = (body: string) => `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: { name: mesh-default, namespace: istio-system }
spec:
  accessLogging:
${body}`;

  before(async () => {
    for (const name of ['web', 'a', 'b']) e[name] = await startEchoServer({ name });
    writeConfig(dir, 'config.yaml', observabilityConfig({ web: e.web.port, a: e.a.port, b: e.b.port, down: await freePort() }));
    writeConfig(dir, 'logs/.keep', '');
    writeConfig(dir, 'mesh.yaml', meshConfig(`extensionProviders:\n- name: file\n  envoyFileAccessLog:\n    path: ${logFile}`));
    writeConfig(dir, 'telemetry.yaml', telemetry(`  - providers: [{ name: file }]\n    filter: { expression: "response.code >= 400" }\n`));
    gw = await startGateway({ configDir: dir, workers: 2 });
  });

  after(async () => {
    await gw?.stop();
    for (const s of Object.values(e)) await s.close();
    removeDir(dir);
  });

  test('only the 404 and 503 lines are logged, in Istio\'s default format', async () => {
    const base = `http://127.0.0.1:${gw.httpPort}`;
    assert.equal((await get(`${base}/ok`, { host: HOST })).status, 200);
    assert.equal((await get(`${base}/ok`, { host: 'nowhere.example.com' })).status, 404);
    assert.equal((await get(`${base}/down`, { host: HOST })).status, 503);
    assert.equal((await get(`${base}/ok`, { host: HOST })).status, 200);
    await waitFor(() => lines(logFile).length >= 2, 5000, 'two lines in the access log');
    await new Promise((r) => setTimeout(r, 300));
    const got = lines(logFile);
    assert.equal(got.length, 2, `only the error lines expected, got:\n${got.join('\n')}`);
    const codes = got.map((l) => l.split(' ')[4]).sort();
    assert.deepEqual(codes, ['404', '503']);
    assert.match(got.find((l) => l.includes(' 404 '))!, /^\[\S+\] "GET \/ok HTTP\/1\.1" 404 NR route_not_found /);
    assert.match(got.find((l) => l.includes(' 503 '))!, /"GET \/down HTTP\/1\.1" 503 UF(,URX)? /);
  });

  test('a reload with disabled: true stops the log, without a restart', async () => {
    const pid = gw.proc.pid;
    await reload(gw, dir, 'telemetry.yaml', telemetry(`  - providers: [{ name: file }]\n    disabled: true\n`));
    const before = lines(logFile).length;
    const base = `http://127.0.0.1:${gw.httpPort}`;
    for (let i = 0; i < 6; i++) assert.equal((await get(`${base}/x`, { host: 'nowhere.example.com' })).status, 404);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(lines(logFile).length, before, `no new lines expected after disabled: true, got:\n${lines(logFile).slice(before).join('\n')}`);
    assert.equal(gw.proc.pid, pid);
    assert.equal(gw.proc.exitCode, null, 'the gateway kept running');

    // And back on, with a different filter: the 200s now, not the 404s.
    await reload(gw, dir, 'telemetry.yaml', telemetry(`  - providers: [{ name: file }]\n    filter: { expression: "response.code == 200 && request.url_path.startsWith('/again')" }\n`));
    await get(`${base}/again`, { host: HOST });
    await get(`${base}/x`, { host: 'nowhere.example.com' });
    await get(`${base}/other`, { host: HOST });
    await waitFor(() => lines(logFile).length > before, 5000, 'a new line once re-enabled');
    await new Promise((r) => setTimeout(r, 300));
    const added = lines(logFile).slice(before);
    assert.equal(added.length, 1, `one line expected, got:\n${added.join('\n')}`);
    assert.match(added[0], /"GET \/again HTTP\/1\.1" 200 /);
  });
});

describe('MeshConfig accessLogFile with a custom accessLogFormat', () => {
  const dir = tempDir();
  const logFile = path.join(dir, 'access.log');
  const jsonFile = path.join(dir, 'access.json');
  let gw: GatewayProcess;
  let web: Echo;
  let tcpBackend: net.Server;
  let tcpPort: number;

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    tcpBackend = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => tcpBackend.listen(0, '127.0.0.1', r));
    tcpPort = await freePort();
    writeConfig(dir, 'config.yaml', observabilityConfig({ web: web.port, a: web.port, b: web.port, down: await freePort() }));
    writeConfig(
      dir,
      'tcp.yaml',
      [
        serviceYaml('echo-tcp', [(tcpBackend.address() as net.AddressInfo).port], { servicePort: tcpPort }),
        `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: tcp-gw, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: ${tcpPort}, name: tcp, protocol: TCP }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp, namespace: default }
spec:
  hosts: ["*"]
  gateways: [tcp-gw]
  tcp:
    - route: [{ destination: { host: echo-tcp, port: { number: ${tcpPort} } } }]
`,
      ].join('---\n'),
    );
    writeConfig(dir, 'mesh.yaml', meshConfig(`accessLogFile: ${logFile}\naccessLogFormat: 'mg %REQ(:METHOD)% %REQ(:PATH)% code=%RESPONSE_CODE% flags=%RESPONSE_FLAGS% ua=%REQ(USER-AGENT):8% up=%UPSTREAM_CLUSTER% route=%ROUTE_NAME% bytes=%BYTES_SENT%'`));
    // The operator's flag is only the default: the MeshConfig file wins.
    // (The TCP server's port is not in --port-map, so the gateway binds that very number.)
    gw = await startGateway({ configDir: dir, workers: 2, args: ['--access-log', 'stdout'] });
  });

  after(async () => {
    await gw?.stop();
    await web?.close();
    await new Promise((r) => tcpBackend?.close(r));
    removeDir(dir);
  });

  test('lines in that format, and none on stdout from the --access-log default', async () => {
    const base = `http://127.0.0.1:${gw.httpPort}`;
    assert.equal((await get(`${base}/hello`, { host: HOST, headers: { 'user-agent': 'curl/8.4.0-long' } })).status, 200);
    assert.equal((await get(`${base}/hello`, { host: 'nowhere.example.com' })).status, 404);
    await waitFor(() => lines(logFile).length >= 2, 5000, 'two lines in the MeshConfig access log');
    const got = lines(logFile);
    const ok = got.find((l) => l.includes('code=200'));
    assert.ok(ok, `no 200 line in:\n${got.join('\n')}`);
    assert.match(ok, /^mg GET \/hello code=200 flags=- ua=curl\/8\.4 up=outbound\|80\|\|web\.default\.svc\.cluster\.local route=virtualservice\/default\/obs\/http\/5 bytes=\d+$/);
    assert.ok(got.some((l) => /^mg GET \/hello code=404 flags=NR ua=- up=- route=- bytes=\d+$/.test(l)), `no 404 line in:\n${got.join('\n')}`);
    assert.ok(!gw.output().split('\n').some((l) => l.startsWith('[')), 'the --access-log stdout default is not used when MeshConfig configures a log');
  });

  test('TCP connections are logged by the same decision (HTTP operators print -)', async () => {
    const before = lines(logFile).length;
    await new Promise<void>((resolve, reject) => {
      const c = net.connect(tcpPort, '127.0.0.1', () => c.end('ping'));
      c.on('data', () => undefined);
      c.on('close', () => resolve());
      c.on('error', reject);
    });
    await waitFor(() => lines(logFile).length > before, 5000, 'a line for the TCP connection');
    const added = lines(logFile).slice(before);
    assert.match(added[0], /^mg - - code=0 flags=- ua=- up=outbound\|\d+\|\|echo-tcp\.default\.svc\.cluster\.local route=\S+ bytes=4$/);
  });

  test('a reload to JSON encoding with a JSON accessLogFormat switches the file and format', async () => {
    await reload(gw, dir, 'mesh.yaml', meshConfig(`accessLogFile: ${jsonFile}\naccessLogEncoding: JSON\naccessLogFormat: '{"code": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%", "where": "%REQ(:AUTHORITY)% %ROUTE_NAME%"}'`));
    const before = lines(logFile).length;
    assert.equal((await get(`http://127.0.0.1:${gw.httpPort}/json`, { host: HOST })).status, 200);
    await waitFor(() => lines(jsonFile).length >= 1, 5000, 'a line in the JSON log');
    assert.deepEqual(JSON.parse(lines(jsonFile)[0]), { code: 200, path: '/json', where: `${HOST} virtualservice/default/obs/http/5` });
    assert.equal(lines(logFile).length, before, 'the old file gets no more lines');
  });
});
