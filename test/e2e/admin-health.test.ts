/**
 * Safe by default (#12): the admin server binds 127.0.0.1 (`--admin-address` widens it); the health
 * port serves /healthz/ready, /healthz and /stats/prometheus on all addresses and nothing else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { get, removeDir, startGateway, tempDir } from '../helpers/gateway.js';
import { parseRunOptions } from '../../src/cli/main.js';

/** Whether a TCP connection to host:port is accepted (within 2 s). */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

test('defaults: admin on 127.0.0.1:15000, health port 15021; --health-port 0 turns it off', () => {
  const d = parseRunOptions(['--config', '.']);
  assert.deepEqual([d.adminAddress, d.adminPort, d.healthPort], ['127.0.0.1', 15000, 15021]);
  const o = parseRunOptions(['--config', '.', '--admin-address', '0.0.0.0', '--health-port', '0']);
  assert.deepEqual([o.adminAddress, o.healthPort], ['0.0.0.0', 0]);
  assert.throws(() => parseRunOptions(['--config', '.', '--admin-address', 'everywhere']), /--admin-address/);
});

test('the admin server answers on 127.0.0.1 only; the health port on every address', async (t) => {
  // 127.0.0.2 is another loopback address on Linux: a socket bound to 127.0.0.1 does not accept there.
  if (!(await new Promise<boolean>((resolve) => {
    const probe = net.createServer().once('error', () => resolve(false)).listen(0, '127.0.0.2', () => probe.close(() => resolve(true)));
  }))) return t.skip('127.0.0.2 is not a local address here (Linux routes all of 127.0.0.0/8 to loopback)');
  const dir = tempDir();
  const gw = await startGateway({ configDir: dir, workers: 0 });
  try {
    assert.equal((await get(`http://127.0.0.1:${gw.adminPort}/ready`)).status, 200);
    assert.equal(await accepts('127.0.0.2', gw.adminPort), false, 'admin reachable on another address');
    const ready = await get(`http://127.0.0.2:${gw.healthPort}/healthz/ready`);
    assert.equal(ready.status, 200, ready.body);
    assert.equal((await get(`http://127.0.0.2:${gw.healthPort}/healthz`)).status, 200);
    const prom = await get(`http://127.0.0.2:${gw.healthPort}/stats/prometheus`);
    assert.equal(prom.status, 200);
    assert.match(prom.body, /# TYPE \w+/);
    for (const p of ['/config_dump', '/dashboard', '/ready', '/reloads']) assert.equal((await get(`http://127.0.0.2:${gw.healthPort}${p}`)).status, 404, p);
  } finally {
    await gw.stop();
  }
  const wide = await startGateway({ configDir: dir, workers: 0, args: ['--admin-address', '0.0.0.0'] });
  try {
    assert.equal((await get(`http://127.0.0.2:${wide.adminPort}/ready`)).status, 200);
  } finally {
    await wide.stop();
    removeDir(dir);
  }
});
