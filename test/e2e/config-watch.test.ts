/**
 * Config-directory watching, end to end: the real `meshgate run --config DIR` (and `meshgate control
 * --config DIR`) against every way tools change files: written in place, replaced by rename, written
 * in place after a rename, deleted and re-created, new files and sub-directories, Kubernetes
 * ConfigMap volumes (`..data` symlink swapped by the atomic writer), editors that rename the file to
 * a backup and write a new one, a writer that pauses mid-file, a broken write. Each change must be
 * served, and reloaded exactly once once it has settled; a half-written file must never be served.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { CLI, freePort, get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
interface Reload {
  time: string;
  version: string | null;
  outcome: 'applied' | 'unchanged' | 'rejected';
}

const GATEWAY = `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*"]
`;

/**
 * A VirtualService for `host`: `/marker` answers `marker`, everything else goes to `backend`. The
 * marker route comes last, so a file cut short before it still parses (to a route without it).
 */
const vs = (name: string, host: string, marker: string, backend = 'blue') => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ${name}, namespace: default }
spec:
  hosts: [${host}]
  gateways: [gw]
  http:
    - match: [{ uri: { prefix: /backend } }]
      route:
        - destination: { host: ${backend} }
    - match: [{ uri: { exact: /marker } }]
      directResponse: { status: 200, body: { string: "${marker}" } }
`;

/** How long after a change is served no further reload may come (above the 1 s poll and the debounce). */
const QUIET_MS = 1400;
/** Bound on a change being served, generous for a loaded 2-core machine (typically 150-400 ms). */
const SERVED_WITHIN_MS = 6000;

describe('config directory watching (meshgate run --config)', () => {
  const dir = tempDir('meshgate-watch-e2e-');
  let gw: GatewayProcess;
  let blue: Echo;
  let green: Echo;
  /** What each settled change took to be served, in ms, for the report. */
  const latencies: { what: string; ms: number }[] = [];
  const file = (f: string) => path.join(dir, f);

  const reloads = async (): Promise<Reload[]> => (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/reloads`)).body) as { reloads: Reload[] }).reloads;
  /** `/marker` of `host`: the marker, or `404` when no route has it. */
  const marker = async (host: string): Promise<string> => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/marker`, { host });
    return r.status === 200 ? r.body : String(r.status);
  };

  /**
   * Make a change and check it is served (`/marker` of `host` answers `expect`) and reloaded exactly
   * once, as `outcome`. Returns the reloads it made.
   */
  async function change(what: string, host: string, expect: string, act: () => void | Promise<void>, outcome: Reload['outcome'] = 'applied', opts: { laterUnchanged?: boolean } = {}): Promise<Reload[]> {
    const seen = await reloads();
    assert.ok(seen.length < 90, 'the admin keeps the last 100 reloads: this test must stay below');
    const t0 = Date.now();
    await act();
    await waitFor(async () => (await marker(host)) === expect, SERVED_WITHIN_MS, `${what}: ${host}/marker to answer ${expect}`);
    latencies.push({ what, ms: Date.now() - t0 });
    await waitFor(async () => (await reloads()).length > seen.length, SERVED_WITHIN_MS, `${what}: its reload to be recorded`);
    await sleep(QUIET_MS);
    const made = (await reloads()).slice(seen.length);
    // A writer paused longer than the debounce (a timer late on a loaded machine) is a settled change:
    // the load finds the file being written again, reads it once settled, and the watcher then reports
    // the end of the write, read as unchanged. Where a test allows that, it is the only extra reload.
    if (opts.laterUnchanged && made.length > 1 && made.slice(1).every((r) => r.outcome === 'unchanged' && r.version === made[0].version)) made.length = 1;
    assert.deepEqual(
      made.map((r) => r.outcome),
      [outcome],
      `${what}: expected exactly one reload (${outcome}), got ${JSON.stringify(made)}\n--- gateway output ---\n${gw.output().slice(-3000)}`,
    );
    return made;
  }

  before(async () => {
    blue = await startEchoServer({ name: 'blue' });
    green = await startEchoServer({ name: 'green' });
    writeConfig(dir, 'services.yaml', serviceYaml('blue', [blue.port]) + '---\n' + serviceYaml('green', [green.port]));
    writeConfig(dir, 'gateway.yaml', GATEWAY);
    writeConfig(dir, 'app.yaml', vs('app', 'app.example.com', 'v0'));
    gw = await startGateway({ configDir: dir, workers: 1 });
    await waitFor(async () => (await marker('app.example.com')) === 'v0', SERVED_WITHIN_MS, 'the first config');
    // The start's own reload(s) are done: later counts start from here.
    await sleep(QUIET_MS);
  });

  after(async () => {
    await gw?.stop();
    await blue?.close();
    await green?.close();
    removeDir(dir);
    if (latencies.length > 0) {
      const ms = latencies.map((l) => l.ms).sort((a, b) => a - b);
      console.log(`# config-watch: ${ms.length} changes served in median ${ms[Math.floor(ms.length / 2)]} ms, max ${ms[ms.length - 1]} ms (${latencies.map((l) => `${l.what}=${l.ms}`).join(', ')})`);
    }
  });

  test('in place, renamed over, in place again (twice), deleted and re-created: each served, one reload each', async () => {
    const app = file('app.yaml');
    await change('write in place', 'app.example.com', 'v1', () => writeFileSync(app, vs('app', 'app.example.com', 'v1')));
    await change('rename over', 'app.example.com', 'v2', () => {
      writeFileSync(file('.app.yaml.tmp'), vs('app', 'app.example.com', 'v2'));
      renameSync(file('.app.yaml.tmp'), app);
    });
    // Node 20's recursive fs.watch goes deaf to a path after a rename over it: these were seen only by the 1 s poll.
    await change('write in place after the rename', 'app.example.com', 'v3', () => writeFileSync(app, vs('app', 'app.example.com', 'v3')));
    await change('write in place again', 'app.example.com', 'v4', () => writeFileSync(app, vs('app', 'app.example.com', 'v4')));
    await change('delete', 'app.example.com', '404', () => rmSync(app));
    await change('re-create', 'app.example.com', 'v5', () => writeFileSync(app, vs('app', 'app.example.com', 'v5')));
    await change('write in place after re-creating', 'app.example.com', 'v6', () => writeFileSync(app, vs('app', 'app.example.com', 'v6')));
  });

  test('after a rename over the file, writes in place 700 ms apart are each applied (not merged by a poll)', async () => {
    const app = file('app.yaml');
    await change('rename over', 'app.example.com', 'r0', () => {
      writeFileSync(file('.app.yaml.tmp'), vs('app', 'app.example.com', 'r0'));
      renameSync(file('.app.yaml.tmp'), app);
    });
    const seen = (await reloads()).length;
    // Seen only by the poll (the fault), five writes in 2.8 s merge into three or four reloads.
    for (let i = 1; i <= 5; i++) {
      writeFileSync(app, vs('app', 'app.example.com', `r${i}`));
      await sleep(700);
    }
    await waitFor(async () => (await marker('app.example.com')) === 'r5', SERVED_WITHIN_MS, 'the last write to be served');
    await sleep(QUIET_MS);
    const made = (await reloads()).slice(seen);
    assert.deepEqual(made.map((r) => r.outcome), ['applied', 'applied', 'applied', 'applied', 'applied'], `one applied reload per write, got ${JSON.stringify(made)}`);
  });

  test('a new file, a new sub-directory, and files in it written in place and renamed over', async () => {
    await change('new file', 'extra.example.com', 'e1', () => writeFileSync(file('extra.yaml'), vs('extra', 'extra.example.com', 'e1')));
    await change('new sub-directory with a file', 'sub.example.com', 's1', () => {
      mkdirSync(file('sub/deeper'), { recursive: true });
      writeFileSync(file('sub/deeper/more.yml'), vs('more', 'sub.example.com', 's1'));
    });
    await change('write in place in the sub-directory', 'sub.example.com', 's2', () => writeFileSync(file('sub/deeper/more.yml'), vs('more', 'sub.example.com', 's2')));
    await change('rename over in the sub-directory', 'sub.example.com', 's3', () => {
      writeFileSync(file('sub/deeper/.more.tmp'), vs('more', 'sub.example.com', 's3'));
      renameSync(file('sub/deeper/.more.tmp'), file('sub/deeper/more.yml'));
    });
    await change('write in place in the sub-directory after the rename', 'sub.example.com', 's4', () => writeFileSync(file('sub/deeper/more.yml'), vs('more', 'sub.example.com', 's4')));
    await change('sub-directory removed', 'sub.example.com', '404', () => rmSync(file('sub'), { recursive: true }));
    await change('sub-directory made again', 'sub.example.com', 's5', () => {
      mkdirSync(file('sub'));
      writeFileSync(file('sub/again.json'), JSON.stringify({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'more', namespace: 'default' }, spec: { hosts: ['sub.example.com'], gateways: ['gw'], http: [{ match: [{ uri: { exact: '/marker' } }], directResponse: { status: 200, body: { string: 's5' } } }] } }));
    });
    await change('extra file removed', 'extra.example.com', '404', () => rmSync(file('extra.yaml')));
  });

  test('a Kubernetes ConfigMap volume: every ..data symlink swap of the atomic writer is served, once', async () => {
    let n = 0;
    /** What the kubelet's atomic writer does: a new timestamped directory, `..data_tmp` renamed over `..data`, the old directory removed. */
    const publish = (text: string): void => {
      const stamp = `..2026_12_07_18_00_00.${process.pid}${n++}`;
      mkdirSync(file(stamp));
      writeFileSync(file(`${stamp}/k8s.yaml`), text);
      const old = existsSync(file('..data')) ? readlinkSync(file('..data')) : null;
      symlinkSync(stamp, file('..data_tmp'));
      renameSync(file('..data_tmp'), file('..data'));
      if (!existsSync(file('k8s.yaml'))) symlinkSync('..data/k8s.yaml', file('k8s.yaml'));
      if (old !== null) rmSync(file(old), { recursive: true });
    };
    await change('ConfigMap mounted', 'k8s.example.com', 'k1', () => publish(vs('k8s', 'k8s.example.com', 'k1')));
    for (let i = 2; i <= 4; i++) await change(`ConfigMap update ${i - 1}`, 'k8s.example.com', `k${i}`, () => publish(vs('k8s', 'k8s.example.com', `k${i}`)));
    // A link target written in place (not what the kubelet does, but a hand-made link to a file elsewhere).
    await change('symlink target written in place', 'k8s.example.com', 'k5', () => writeFileSync(file(`${readlinkSync(file('..data'))}/k8s.yaml`), vs('k8s', 'k8s.example.com', 'k5')));
  });

  test("editors: vim's rename to a backup then write, and a temp file renamed over (sed -i, most editors)", async () => {
    const app = file('app.yaml');
    await change('vim: test file, rename to backup, write new, remove backup', 'app.example.com', 'ed1', async () => {
      writeFileSync(file('4913'), '');
      rmSync(file('4913'));
      renameSync(app, `${app}~`);
      writeFileSync(app, vs('app', 'app.example.com', 'ed1'));
      rmSync(`${app}~`);
    });
    await change('write in place after the editor', 'app.example.com', 'ed2', () => writeFileSync(app, vs('app', 'app.example.com', 'ed2')));
    await change('sed -i: temp file renamed over', 'app.example.com', 'ed3', () => {
      writeFileSync(file('sedAbC123'), vs('app', 'app.example.com', 'ed3'));
      renameSync(file('sedAbC123'), app);
    });
  });

  test('a file written slowly, in 26 parts 25 ms apart, is never served half-written', async () => {
    const app = file('app.yaml');
    await change('baseline', 'app.example.com', 'h0', () => writeFileSync(app, vs('app', 'app.example.com', 'h0')));
    const full = vs('app', 'app.example.com', 'h1');
    // Every prefix ending in the comment lines parses on its own: the VirtualService without its /marker route.
    const cut = full.indexOf('    - match: [{ uri: { exact: /marker } }]');
    assert.ok(cut > 0);
    const parts = [full.slice(0, cut), ...Array.from({ length: 24 }, (_, i) => `    # part ${i + 1} of a slow writer\n`), full.slice(cut)];
    // Watch what is served all along: only h0, then h1; never a half (no /marker: the 404 of no route).
    const answers = new Set<string>();
    let watching = true;
    const watchUntil = Date.now() + 30_000;
    const watcher = (async () => {
      while (watching && Date.now() < watchUntil) {
        answers.add(await marker('app.example.com'));
        await sleep(5);
      }
    })();
    try {
      // Longer than the debounce's cap (5 x 100 ms): a stream of events no longer postpones the check.
      // Pauses well below the 100 ms debounce, so a timer late by 70 ms on a loaded machine still passes.
      await change('26 parts, 25 ms apart', 'app.example.com', 'h1', async () => {
        const fd = openSync(app, 'w');
        try {
          for (const [i, part] of parts.entries()) {
            if (i > 0) await sleep(25);
            writeSync(fd, part);
          }
        } finally {
          closeSync(fd);
        }
      }, 'applied', { laterUnchanged: true });
    } finally {
      watching = false;
      await watcher;
    }
    assert.deepEqual([...answers].sort(), ['h0', 'h1'], 'only the old and the new config were served');
  });

  test('a broken write keeps the serving version and reloads once, unchanged (4 rounds)', async () => {
    const app = file('app.yaml');
    for (let i = 0; i < 4; i++) {
      const [good] = await change(`good write ${i}`, 'app.example.com', `b${i}`, () => writeFileSync(app, vs('app', 'app.example.com', `b${i}`)));
      const seen = (await reloads()).length;
      writeFileSync(app, 'apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: app\n  broken: [');
      await waitFor(async () => {
        const d = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/diagnostics`)).body) as { diagnostics: { reason: string; file: string | null }[] };
        return d.diagnostics.some((x) => x.reason === 'MG_PARSE_ERROR' && x.file === 'app.yaml');
      }, SERVED_WITHIN_MS, 'the parse error to be reported');
      await sleep(QUIET_MS);
      const made = (await reloads()).slice(seen);
      assert.deepEqual(made.map((r) => [r.outcome, r.version]), [['unchanged', good.version]], `round ${i}: the broken write made ${JSON.stringify(made)}`);
      assert.equal(await marker('app.example.com'), `b${i}`, 'the last good config keeps serving');
      const dump = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/config_dump`)).body) as { version: string };
      assert.equal(dump.version, good.version);
    }
  });
});

describe('config directory watching (meshgate control --config)', () => {
  test('a rename over a file, then writes in place: each reloaded once', async () => {
    const caDir = path.join(tempDir('meshgate-ca-'), 'ca');
    const dir = tempDir('meshgate-cp-watch-');
    writeConfig(dir, 'app.yaml', GATEWAY + '---\n' + vs('app', 'app.example.com', 'c0'));
    const [grpcPort, adminPort] = [await freePort(), await freePort()];
    const proc = spawn(process.execPath, [CLI, 'control', '--config', dir, '--ca-dir', caDir, '--listen', `127.0.0.1:${grpcPort}`, '--admin-port', String(adminPort)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d));
    proc.stderr.on('data', (d: Buffer) => (out += d));
    const exited = new Promise((r) => proc.once('exit', r));
    const reloads = async (): Promise<Reload[]> => (JSON.parse((await get(`http://127.0.0.1:${adminPort}/reloads`)).body) as { reloads: Reload[] }).reloads;
    try {
      await waitFor(async () => (await get(`http://127.0.0.1:${adminPort}/ready`)).status === 200, 20_000, `control /ready (output: ${out})`);
      await sleep(QUIET_MS);
      const steps: [string, () => void][] = [
        ['rename over', () => {
          writeFileSync(path.join(dir, '.app.tmp'), GATEWAY + '---\n' + vs('app', 'app.example.com', 'c1'));
          renameSync(path.join(dir, '.app.tmp'), path.join(dir, 'app.yaml'));
        }],
        ['write in place after the rename', () => writeFileSync(path.join(dir, 'app.yaml'), GATEWAY + '---\n' + vs('app', 'app.example.com', 'c2'))],
        ['write in place again', () => writeFileSync(path.join(dir, 'app.yaml'), GATEWAY + '---\n' + vs('app', 'app.example.com', 'c3'))],
      ];
      for (const [what, act] of steps) {
        const seen = (await reloads()).length;
        act();
        await waitFor(async () => (await reloads()).length > seen, SERVED_WITHIN_MS, `${what}: a reload`);
        await sleep(QUIET_MS);
        const made = (await reloads()).slice(seen);
        assert.deepEqual(made.map((r) => r.outcome), ['applied'], `${what}: expected one applied reload, got ${JSON.stringify(made)}\n${out.slice(-2000)}`);
      }
    } finally {
      proc.kill('SIGTERM');
      await exited;
      removeDir(dir);
      removeDir(path.dirname(caDir));
    }
  });
});
