/**
 * Hot reload: changes take effect within a second, a broken file keeps the last good config serving,
 * and reloads under load fail no request. Runs the real command with two worker processes.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

const vs = (backend: string, extraPath = '') => `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: app, namespace: default }
spec:
  hosts: [app.example.com]
  gateways: [gw]
  http:
${extraPath ? `    - match: [{ uri: { prefix: ${extraPath} } }]\n      directResponse: { status: 200, body: { string: "added" } }\n` : ''}    - route:
        - destination: { host: ${backend} }
`;

describe('hot reload', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let blue: Echo;
  let green: Echo;
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;
  const who = async () => (await get(url('/'), { host: 'app.example.com' })).json?.name;

  before(async () => {
    blue = await startEchoServer({ name: 'blue' });
    green = await startEchoServer({ name: 'green' });
    writeConfig(dir, 'services.yaml', serviceYaml('blue', [blue.port]) + '---\n' + serviceYaml('green', [green.port]));
    writeConfig(dir, 'app.yaml', vs('blue'));
    gw = await startGateway({ configDir: dir, workers: 2 });
  });

  after(async () => {
    await gw?.stop();
    await blue?.close();
    await green?.close();
    removeDir(dir);
  });

  test('a change is served within one second', async () => {
    assert.equal(await who(), 'blue');
    const t0 = Date.now();
    writeConfig(dir, 'app.yaml', vs('green', '/new'));
    await waitFor(async () => (await who()) === 'green', 1000, 'the new route to be served');
    const elapsed = Date.now() - t0;
    assert.ok(elapsed < 1000, `took ${elapsed} ms`);
    // Both workers serve it: many connections land on both.
    for (let i = 0; i < 20; i++) {
      const r = await get(url('/new'), { host: 'app.example.com', headers: { connection: 'close' } });
      assert.equal(r.body, 'added');
    }
  });

  test('a broken file is reported and the last good config keeps serving', async () => {
    writeConfig(dir, 'app.yaml', vs('green'));
    // The previous test left green (with /new) serving: wait for this write itself to be served.
    await waitFor(async () => (await who()) === 'green' && (await get(url('/new'), { host: 'app.example.com' })).json?.name === 'green', 2000, 'green without /new');
    // /config_dump says what each worker serves; `version` is the oldest of them. One worker can serve
    // a snapshot before the other has: wait until both serve the same one.
    type Dump = { version: string; converged: boolean; workers: { runtime: string; pid: number; version: string | null }[] };
    const dump = async () => JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/config_dump`)).body) as Dump;
    await waitFor(async () => (await dump()).converged, 3000, 'both workers to serve one snapshot');
    const settled = await dump();
    const before = settled.version;
    assert.equal(settled.workers.length, 2, JSON.stringify(settled.workers));
    for (const w of settled.workers) {
      assert.match(w.runtime, /^worker \d+$/);
      assert.ok(Number.isInteger(w.pid) && w.pid !== gw.proc.pid, `a worker's pid: ${w.pid}`);
      assert.equal(w.version, before);
    }
    writeConfig(dir, 'app.yaml', 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: app\n  broken: [');
    await waitFor(async () => {
      const d = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { reason: string; file: string | null }[] };
      return d.diagnostics.some((x) => x.reason === 'MG_PARSE_ERROR' && x.file === 'app.yaml');
    }, 3000, 'the parse error to be reported');
    assert.equal(await who(), 'green', 'the last good routes keep serving');
    const after = await dump();
    assert.equal(after.version, before);
    assert.deepEqual(after.workers.map((w) => w.version), [before, before]);
    // An object with a schema error keeps its last accepted version too.
    writeConfig(dir, 'app.yaml', vs('blue').replace('gateways: [gw]', 'gateways: [gw]\n  bogusField: 1'));
    await waitFor(async () => {
      const d = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { reason: string }[] };
      return d.diagnostics.some((x) => x.reason === 'MG_UNKNOWN_FIELD');
    }, 3000, 'the unknown field to be reported');
    assert.equal(await who(), 'green');
    assert.match(gw.output(), /MG_UNKNOWN_FIELD/);
  });

  test('reloads under load fail no request', async () => {
    writeConfig(dir, 'app.yaml', vs('blue'));
    await waitFor(async () => (await who()) === 'blue', 2000, 'blue');
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let ok = 0;
    const failures: string[] = [];
    let stop = false;
    const worker = async () => {
      while (!stop) {
        await new Promise<void>((resolve) => {
          const req = http.request({ host: '127.0.0.1', port: gw.httpPort, path: '/', headers: { host: 'app.example.com' }, agent }, (res) => {
            res.resume();
            res.on('end', () => {
              if (res.statusCode === 200) ok++;
              else failures.push(`status ${res.statusCode}`);
              resolve();
            });
          });
          req.on('error', (e) => {
            failures.push(e.message);
            resolve();
          });
          req.end();
        });
      }
    };
    const loops = Array.from({ length: 8 }, worker);
    // Ten config changes, alternating backends, while the clients run.
    for (let i = 0; i < 10; i++) {
      writeConfig(dir, 'app.yaml', vs(i % 2 ? 'blue' : 'green', `/v${i}`));
      await new Promise((r) => setTimeout(r, 250));
    }
    stop = true;
    await Promise.all(loops);
    agent.destroy();
    assert.deepEqual(failures, [], `failed requests during reloads (ok: ${ok}); gateway output:\n${gw.output().slice(-4000)}`);
    assert.ok(ok > 200, `only ${ok} requests completed`);
    const reloads = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/reloads`)).body) as { reloads: { outcome: string }[] };
    assert.ok(reloads.reloads.filter((r) => r.outcome === 'applied').length >= 10);
  });
});
