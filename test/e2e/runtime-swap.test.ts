/**
 * Snapshot swaps and shutdown end to end: swaps under load lose nothing, listeners survive by
 * address:port, removed listeners drain, bind failures are reported, close is graceful.
 */

import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startEchoServer, type EchoServer } from '../../src/demo/echo-server.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { chain, cluster, forward, httpListener, httpsListener, match, route, snapshot, tlsContext, vhost } from '../support/ir-builders.js';
import { httpsRequest, request, within } from '../support/http-client.js';
import { makeCerts } from '../support/tls-certs.js';
import { startRuntime } from '../support/runtime-harness.js';

function connectRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code === 'ECONNREFUSED'));
  });
}

describe('runtime swaps and shutdown', { timeout: 60_000 }, () => {
  const echo: Record<string, EchoServer> = {};

  before(async () => {
    echo.a = await startEchoServer({ name: 'a' });
    echo.b = await startEchoServer({ name: 'b' });
  });
  after(async () => {
    await Promise.all(Object.values(echo).map((e) => e.close()));
  });

  /** Generation i: route to a or b, with a route name and a header that change every time. */
  function generation(i: number): IRSnapshot {
    const target = i % 2 === 0 ? 'a' : 'b';
    return snapshot(
      [httpListener(0, [vhost('v', ['*'], [route(`gen-${i}`, forward([target]), [match()], { responseHeaders: { set: [{ name: 'x-gen', value: String(i) }], add: [], remove: [] } })])])],
      [cluster('a', [{ port: echo.a.port }]), cluster('b', [{ port: echo.b.port }])],
    );
  }

  test('20 swaps while a client sends requests for 2 s: zero failed requests', async (t) => {
    const gw = await startRuntime(generation(0));
    const port = gw.port();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 8 });
    let ok = 0;
    const failures: string[] = [];
    const gens = new Set<string>();
    const stopAt = Date.now() + 2000;
    const client = async (): Promise<void> => {
      while (Date.now() < stopAt) {
        try {
          const r = await request(port, { agent, path: '/load' });
          if (r.status === 200 && r.json !== null) {
            ok++;
            gens.add(String(r.headers['x-gen']));
          } else failures.push(`status ${r.status}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
    };
    const swapper = async (): Promise<void> => {
      for (let i = 1; i <= 20; i++) {
        await new Promise((r) => setTimeout(r, 90));
        const result = await gw.apply(generation(i));
        assert.deepEqual(result.errors, []);
        assert.equal(gw.port(), port, `swap ${i} kept the listener`);
      }
    };
    try {
      await Promise.all([swapper(), ...Array.from({ length: 8 }, client)]);
    } finally {
      agent.destroy();
      await gw.close(500);
    }
    t.diagnostic(`${ok} requests, ${gens.size} generations seen`);
    assert.deepEqual(failures.slice(0, 5), [], `expected no failed request, got ${failures.length}`);
    // A steady load across the swaps (the generations seen say it overlapped them); the count is
    // low on a loaded shared machine, so it only has to show the clients kept going.
    assert.ok(ok > 40, `expected a steady load, got ${ok} requests`);
    assert.ok(gens.size > 10, `responses came from ${gens.size} generations (expected most of 21)`);
  });

  test('a listener removed from the IR stops accepting, its in-flight request finishes', async () => {
    const both = (withSecond: boolean): IRSnapshot =>
      snapshot(
        [
          httpListener(0, [vhost('v', ['*'], [route('r', forward(['a']))])]),
          ...(withSecond ? [httpListener(0, [vhost('v', ['*'], [route('r2', forward(['a']))])], { address: '127.0.0.2', name: 'second' })] : []),
        ],
        [cluster('a', [{ port: echo.a.port }])],
      );
    const gw = await startRuntime(both(true));
    try {
      const second = gw.port(1);
      const inflight = new Promise<number>((resolve, reject) => {
        http.get({ host: '127.0.0.2', port: second, path: '/delay/400', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 100));
      const result = await gw.apply(both(false));
      assert.equal(result.listeners.length, 1);
      assert.equal(await within(3000, inflight, 'in-flight request'), 200);
      const refused = await new Promise<boolean>((resolve) => {
        const s = net.connect(second, '127.0.0.2');
        s.on('connect', () => (s.destroy(), resolve(false)));
        s.on('error', () => resolve(true));
      });
      assert.equal(refused, true, 'the removed listener no longer accepts');
      assert.equal((await request(gw.port(0), {})).status, 200, 'the other listener still serves');
    } finally {
      await gw.close(500);
    }
  });

  test('a listener switched from HTTP to HTTPS keeps its socket: an in-flight request finishes on the plaintext config, new connections are TLS', async () => {
    const [cert] = makeCerts(['swap.example.com']);
    const vh = [vhost('v', ['*'], [route('r', forward(['a']))])];
    const plain = snapshot([httpListener(0, vh)], [cluster('a', [{ port: echo.a.port }])]);
    const gw = await startRuntime(plain);
    try {
      const port = gw.port();
      const inflight = new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: '/delay/400', agent: new http.Agent({ keepAlive: true }) }, (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
        }).on('error', reject);
      });
      await new Promise((r) => setTimeout(r, 100));
      const secure = snapshot(
        [httpsListener(0, [chain('tls', vh, [], tlsContext([{ secret: 'default/swap', serverNames: [], certChain: cert.certChain, privateKey: cert.privateKey }]))])],
        [cluster('a', [{ port: echo.a.port }])],
      );
      const result = await gw.apply(secure);
      assert.deepEqual(result.errors, []);
      assert.equal(gw.port(), port, 'the same socket serves HTTPS');
      const r = await within(3000, inflight, 'in-flight request');
      assert.deepEqual(r, { status: 200, connection: 'close' }, 'the plaintext request finishes, and its connection closes after it');
      const tlsReply = await httpsRequest(port, { servername: 'swap.example.com' });
      assert.equal(tlsReply.status, 200);
      assert.equal(tlsReply.peerCN, 'swap.example.com');
      // And back: the socket stays again, plaintext is served again.
      await gw.apply(plain);
      assert.equal(gw.port(), port);
      assert.equal((await request(port, {})).status, 200);
    } finally {
      await gw.close(500);
    }
  });

  test('close: a listener still draining from an earlier swap is cut at the end of the close grace period', async () => {
    const withSecond = snapshot(
      [httpListener(0, [vhost('v', ['*'], [route('r', forward(['a']))])]), httpListener(0, [vhost('v', ['*'], [route('r2', forward(['a']))])], { address: '127.0.0.2', name: 'second' })],
      [cluster('a', [{ port: echo.a.port }])],
    );
    const gw = await startRuntime(withSecond, { listenerDrainMs: 60_000 });
    const second = gw.port(1);
    // A request that outlives the close: its listener is removed (a 60 s drain), then the runtime closes with 300 ms.
    const cut = new Promise<string>((resolve) => {
      http.get({ host: '127.0.0.2', port: second, path: '/delay/20000', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve('finished'));
        res.on('error', () => resolve('cut'));
      }).on('error', () => resolve('cut'));
    });
    await new Promise((r) => setTimeout(r, 100));
    await gw.apply(snapshot([withSecond.listeners[0]], withSecond.clusters));
    const started = Date.now();
    await within(5000, gw.close(300), 'close');
    assert.ok(Date.now() - started < 3000, `close took ${Date.now() - started} ms (the earlier drain has 60 s)`);
    assert.equal(await within(3000, cut, 'the cut request'), 'cut');
  });

  test('a bind failure is reported and the other listeners still serve', async () => {
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const busy = (blocker.address() as net.AddressInfo).port;
    const runtime = new Runtime();
    try {
      const result = await runtime.apply(
        snapshot(
          [httpListener(busy, [vhost('v', ['*'], [route('r', forward(['a']))])]), httpListener(0, [vhost('v', ['*'], [route('r', forward(['a']))])], { address: '127.0.0.3' })],
          [cluster('a', [{ port: echo.a.port }])],
        ),
      );
      assert.equal(result.applied, true);
      const failed = result.listeners.find((l) => l.port === busy);
      assert.equal(failed?.state, 'failed', `expected the busy port to fail, got ${JSON.stringify(failed)}`);
      assert.match(failed?.error ?? '', /EADDRINUSE/);
      assert.equal(result.errors.length, 1);
      const ok = result.listeners.find((l) => l.address === '127.0.0.3');
      assert.equal(ok?.state, 'listening');
      const r = await new Promise<number>((resolve, reject) =>
        http.get({ host: '127.0.0.3', port: ok!.boundPort!, path: '/', agent: false }, (res) => (res.resume(), resolve(res.statusCode ?? 0))).on('error', reject),
      );
      assert.equal(r, 200);
    } finally {
      await runtime.close(200);
      await new Promise<void>((r) => blocker.close(() => r()));
    }
  });

  test('a snapshot that does not compile is refused; the previous one keeps serving', async () => {
    const gw = await startRuntime(generation(0));
    try {
      const bad = generation(1);
      bad.listeners[0].filterChains[0].virtualHosts[0].routes[0].matches = [match({ path: { kind: 'regex', regex: { original: '(', source: '(', flags: '' } } })];
      const result = await gw.runtime.apply(bad);
      assert.equal(result.applied, false);
      assert.match(result.errors[0] ?? '', /does not compile/);
      const r = await request(gw.port(), {});
      assert.equal(r.headers['x-gen'], '0');
    } finally {
      await gw.close(200);
    }
  });

  test('close: stops accepting at once, lets in-flight requests finish, then resolves', async () => {
    const gw = await startRuntime(generation(0));
    const port = gw.port();
    const inflight = request(port, { path: '/delay/500' });
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const closing = gw.close(5000);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(await connectRefused(port), true, 'no new connections while closing');
    const r = await inflight;
    assert.equal(r.status, 200, 'the in-flight request finished');
    await within(3000, closing, 'close');
    assert.ok(Date.now() - started < 3000, 'close did not wait for the whole grace period');
  });

  test('close: requests still running after the grace period are cut', async () => {
    const gw = await startRuntime(generation(0));
    const inflight = request(gw.port(), { path: '/delay/5000' }).then(
      () => 'completed',
      () => 'cut',
    );
    await new Promise((r) => setTimeout(r, 100));
    await within(3000, gw.close(300), 'close');
    assert.equal(await inflight, 'cut');
  });
});
