/**
 * Defence in depth (review C2): an exception thrown while a request is served (here: node:http's
 * own `writeHead` refusing a header value a route adds, on the `--http1-engine node` engine, once
 * on the synchronous request path of a direct response and once inside the upstream client's
 * socket handler for a forwarded response) is caught at the engine boundary: the client gets a
 * 500, the process has no uncaught exception, and the next request is served. Real sockets.
 */

import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, match, ops, route, snapshot, vhost } from '../support/ir-builders.js';
import { request } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { internalFailureCount } from '../../src/runtime/http/internal-failure.js';

const BAD = ops({ add: [{ name: 'x-bad', value: 'a\u0001b' }] });
const prefix = (value: string) => [match({ path: { kind: 'prefix', value, ignoreCase: false } })];

describe('request path: a throw is answered 500 and the worker lives on', () => {
  let app: http.Server;
  let gw: RuntimeHarness;
  const uncaught: unknown[] = [];
  const onUncaught = (err: unknown) => uncaught.push(err);

  before(async () => {
    process.on('uncaughtException', onUncaught);
    process.on('unhandledRejection', onUncaught);
    app = http.createServer((_req, res) => res.end('app'));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    const appPort = (app.address() as { port: number }).port;
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('any', ['*'], [
              route('direct', { kind: 'direct', status: 200, body: 'direct', contentType: null }, prefix('/direct'), { responseHeaders: BAD }),
              route('fwd-bad', forward(['app']), prefix('/fwd-bad'), { responseHeaders: BAD }),
              route('all', forward(['app'])),
            ]),
          ]),
        ],
        [cluster('app', [{ port: appPort }])],
      ),
      { http1Engine: 'node' },
    );
  });

  after(async () => {
    await gw?.close();
    await new Promise<void>((r) => app.close(() => r()));
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  });

  async function followUp(): Promise<void> {
    const r = await request(gw.port(), { path: '/ok', headers: { connection: 'close' } });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'app');
    assert.deepEqual(uncaught, []);
  }

  test('a forwarded response whose head the engine refuses: 500, upstream request abandoned', async () => {
    const before = internalFailureCount();
    const r = await request(gw.port(), { path: '/fwd-bad', headers: { connection: 'close' } });
    assert.equal(r.status, 500);
    assert.equal(internalFailureCount(), before + 1);
    await followUp();
  });

  test('a direct response whose head the engine refuses: 500', async () => {
    const before = internalFailureCount();
    const r = await request(gw.port(), { path: '/direct', headers: { connection: 'close' } });
    assert.equal(r.status, 500);
    assert.ok(internalFailureCount() > before);
    await followUp();
  });
});
