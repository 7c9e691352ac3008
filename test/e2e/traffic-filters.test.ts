/**
 * Fault injection (delay DI, abort FI, by percentage), mirroring (Host `-shadow`, answer and latency
 * never reach the client, bounded bodies) and CORS (preflight answered by the gateway, unmatched
 * preflights forwarded or ignored, headers on actual responses), end to end.
 */

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { CorsPolicy, FaultInjection, Mirror, Route } from '../../src/ir/types.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { request } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { refusingPort, sleep, startBackend, type Action, type Backend, type Hit } from './traffic-support.js';

const open: { close(): Promise<void> }[] = [];
after(async () => {
  for (const o of open.reverse()) await o.close();
});

async function backend(name: string, behave: (hit: Hit) => Action = () => 200): Promise<Backend> {
  const b = await startBackend(name, behave);
  open.push(b);
  return b;
}

function prefix(p: string) {
  return [match({ path: { kind: 'prefix', value: p, ignoreCase: false } })];
}

async function gateway(routes: Route[], clusters: Record<string, number>): Promise<RuntimeHarness> {
  const gw = await startRuntime(snapshot([httpListener(0, [vhost('v', ['*'], routes)])], Object.entries(clusters).map(([n, port]) => cluster(n, [{ port }]))));
  open.push({ close: () => gw.close(500) });
  return gw;
}

describe('fault injection', { timeout: 60_000 }, () => {
  test('abort 100%: answered locally with the status and flag FI; the upstream sees nothing', async () => {
    const up = await backend('up');
    const fault: FaultInjection = { delay: null, abort: { kind: 'http', status: 418, percentage: 100 } };
    const gw = await gateway([route('f', forward(['up'], { fault }), [match()])], { up: up.port });
    const r = await request(gw.port());
    assert.equal(r.status, 418);
    assert.equal(r.body, 'fault filter abort');
    assert.equal(r.headers['x-meshgate-flags'], 'FI');
    assert.equal(up.hits.length, 0);
  });

  test('delay 100%: the request reaches the upstream after the delay; the route timeout starts after it', async () => {
    const up = await backend('up');
    const fault: FaultInjection = { delay: { fixedDelayMs: 300, percentage: 100 }, abort: null };
    const gw = await gateway([route('f', forward(['up'], { fault, timeoutMs: 200 }), [match()])], { up: up.port });
    const t0 = Date.now();
    const r = await request(gw.port());
    const ms = Date.now() - t0;
    assert.equal(r.status, 200, 'the 300 ms delay does not count against the 200 ms route timeout');
    assert.ok(ms >= 290, `answered after ${ms} ms, want at least the 300 ms delay`);
    assert.equal(up.hits.length, 1);
  });

  test('abort 30% over 400 requests: about 30% aborted, the rest forwarded, none lost', async () => {
    const up = await backend('up');
    const fault: FaultInjection = { delay: null, abort: { kind: 'http', status: 503, percentage: 30 } };
    const gw = await gateway([route('f', forward(['up'], { fault }), [match()])], { up: up.port });
    let aborted = 0;
    for (let i = 0; i < 400; i++) {
      const r = await request(gw.port());
      if (r.status === 503) {
        assert.equal(r.headers['x-meshgate-flags'], 'FI');
        aborted++;
      } else assert.equal(r.status, 200);
    }
    assert.ok(aborted > 400 * 0.22 && aborted < 400 * 0.38, `aborted ${aborted} of 400, want about 120`);
    assert.equal(up.hits.length, 400 - aborted);
  });

  test('gRPC abort: 200 with grpc-status', async () => {
    const up = await backend('up');
    const fault: FaultInjection = { delay: null, abort: { kind: 'grpc', grpcStatus: 14, percentage: 100 } };
    const gw = await gateway([route('f', forward(['up'], { fault }), [match()])], { up: up.port });
    const r = await request(gw.port(), { method: 'POST', headers: { 'content-type': 'application/grpc' }, body: '' });
    assert.equal(r.headers['grpc-status'], '14');
    assert.equal(up.hits.length, 0);
  });
});

describe('mirroring', { timeout: 60_000 }, () => {
  test('a copy goes to the mirror with Host -shadow; the mirror\'s failure and slowness never reach the client', async () => {
    const main = await backend('main');
    const shadowSlow = await backend('slow-shadow', () => ({ delayMs: 2000, status: 500 }));
    const shadowDead = await backend('dead-shadow', () => 'reset-before-head');
    const mirrors: Mirror[] = [{ cluster: 'slow', percentage: 100 }, { cluster: 'dead', percentage: 100 }];
    const gw = await gateway([route('m', forward(['main'], { mirrors }), [match()])], { main: main.port, slow: shadowSlow.port, dead: shadowDead.port });
    const t0 = Date.now();
    const r = await request(gw.port(), { path: '/p?q=1', host: 'shop.example.com:8080' });
    const ms = Date.now() - t0;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'main');
    assert.ok(ms < 1000, `client waited ${ms} ms: the slow mirror must not delay it`);
    for (let i = 0; i < 50 && (shadowSlow.hits.length === 0 || shadowDead.hits.length === 0); i++) await sleep(20);
    assert.equal(shadowSlow.hits[0].headers.host, 'shop.example.com-shadow:8080');
    assert.equal(shadowSlow.hits[0].url, '/p?q=1');
    assert.equal(shadowDead.hits[0].headers.host, 'shop.example.com-shadow:8080');
    assert.equal(main.hits[0].headers.host, 'shop.example.com:8080');
  });

  test('small bodies are copied to the mirror; large ones are not mirrored; the main request always gets its body', async () => {
    const main = await backend('main');
    const shadow = await backend('shadow');
    const gw = await gateway([route('m', forward(['main'], { mirrors: [{ cluster: 'shadow', percentage: 100 }] }), [match()])], { main: main.port, shadow: shadow.port });
    const small = 'a'.repeat(5000);
    assert.equal((await request(gw.port(), { method: 'POST', path: '/small', body: small })).status, 200);
    const big = 'b'.repeat(100_000);
    assert.equal((await request(gw.port(), { method: 'POST', path: '/big', body: big })).status, 200);
    await sleep(200);
    assert.deepEqual(main.hits.map((h) => [h.url, h.body.length]), [['/small', 5000], ['/big', 100_000]]);
    assert.deepEqual(shadow.hits.map((h) => [h.url, h.body]), [['/small', small]], 'only the small body was mirrored, byte for byte');
  });

  test("copies obey the mirror cluster's circuit breaker: over its limit they are dropped, never queued", async () => {
    const main = await backend('main');
    const shadow = await backend('shadow', () => ({ delayMs: 1500, status: 200 }));
    const limits = { maxConnections: 1, maxPendingRequests: 1, maxRequests: null, maxRequestsPerConnection: null, maxRetries: null, idleTimeoutMs: null };
    const gw = await startRuntime(
      snapshot(
        [httpListener(0, [vhost('v', ['*'], [route('m', forward(['main'], { mirrors: [{ cluster: 'shadow', percentage: 100 }] }), [match()])])])],
        [cluster('main', [{ port: main.port }]), cluster('shadow', [{ port: shadow.port }], { connectionPool: limits })],
      ),
    );
    open.push({ close: () => gw.close(500) });
    const replies = await Promise.all(Array.from({ length: 6 }, (_, i) => request(gw.port(), { path: `/r${i}` })));
    assert.deepEqual(replies.map((r) => r.status), [200, 200, 200, 200, 200, 200], 'clients never notice the mirror');
    await sleep(2000);
    assert.equal(main.hits.length, 6);
    assert.equal(shadow.hits.length, 1, 'one copy holds the only slot; the other five are dropped instead of queued');
  });

  test('mirror percentage: about 25% of requests are copied', async () => {
    const main = await backend('main');
    const shadow = await backend('shadow');
    const gw = await gateway([route('m', forward(['main'], { mirrors: [{ cluster: 'shadow', percentage: 25 }] }), [match()])], { main: main.port, shadow: shadow.port });
    for (let i = 0; i < 400; i++) await request(gw.port());
    await sleep(100);
    assert.equal(main.hits.length, 400);
    assert.ok(shadow.hits.length > 60 && shadow.hits.length < 140, `mirrored ${shadow.hits.length} of 400, want about 100`);
  });
});

describe('CORS', { timeout: 60_000 }, () => {
  const cors: CorsPolicy = {
    allowOrigins: [{ kind: 'exact', value: 'https://app.example.com', ignoreCase: false }, { kind: 'prefix', value: 'https://dev-', ignoreCase: false }],
    allowMethods: ['GET', 'POST'],
    allowHeaders: ['content-type', 'x-token'],
    exposeHeaders: ['x-trace'],
    maxAgeSeconds: 600,
    allowCredentials: true,
    unmatchedPreflights: 'forward',
  };
  const preflight = (origin: string) => ({ method: 'OPTIONS', headers: { origin, 'access-control-request-method': 'POST' } });

  test('preflight from an allowed origin is answered by the gateway', async () => {
    const up = await backend('up');
    const gw = await gateway([route('c', forward(['up']), [match()], { cors })], { up: up.port });
    for (const origin of ['https://app.example.com', 'https://dev-42.example.com']) {
      const r = await request(gw.port(), preflight(origin));
      assert.equal(r.status, 200);
      assert.equal(r.headers['access-control-allow-origin'], origin);
      assert.equal(r.headers['access-control-allow-methods'], 'GET,POST');
      assert.equal(r.headers['access-control-allow-headers'], 'content-type,x-token');
      assert.equal(r.headers['access-control-max-age'], '600');
      assert.equal(r.headers['access-control-allow-credentials'], 'true');
    }
    assert.equal(up.hits.length, 0, 'allowed preflights never reach the upstream');
  });

  test('preflight from another origin is forwarded (default) or answered without CORS headers (ignore)', async () => {
    const up = await backend('up');
    const gw = await gateway(
      [route('ignore', forward(['up']), prefix('/ignore'), { cors: { ...cors, unmatchedPreflights: 'ignore' } }), route('c', forward(['up']), [match()], { cors })],
      { up: up.port },
    );
    const fwd = await request(gw.port(), preflight('https://evil.example.com'));
    assert.equal(fwd.body, 'up');
    assert.equal(fwd.headers['access-control-allow-origin'], undefined);
    const ign = await request(gw.port(), { ...preflight('https://evil.example.com'), path: '/ignore' });
    assert.equal(ign.status, 200);
    assert.equal(ign.body, '');
    assert.equal(ign.headers['access-control-allow-origin'], undefined);
    assert.equal(up.hits.length, 1);
  });

  test('actual requests from an allowed origin get allow-origin, credentials and expose headers', async () => {
    const up = await backend('up');
    const gw = await gateway([route('c', forward(['up']), [match()], { cors })], { up: up.port });
    const ok = await request(gw.port(), { headers: { origin: 'https://app.example.com' } });
    assert.equal(ok.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(ok.headers['access-control-allow-credentials'], 'true');
    assert.equal(ok.headers['access-control-expose-headers'], 'x-trace');
    const other = await request(gw.port(), { headers: { origin: 'https://evil.example.com' } });
    assert.equal(other.status, 200);
    assert.equal(other.headers['access-control-allow-origin'], undefined);
  });

  test("the gateway's own answers (direct response, redirect, 503) carry the CORS headers too", async () => {
    const gw = await gateway(
      [
        route('direct', { kind: 'direct', status: 418, body: 'teapot', contentType: null }, prefix('/direct'), { cors }),
        route('redirect', { kind: 'redirect', scheme: null, authority: null, port: null, path: { kind: 'full', value: '/moved' }, responseCode: 302 }, prefix('/redirect'), { cors }),
        route('down', forward(['down']), prefix('/down'), { cors }),
      ],
      { down: await refusingPort() },
    );
    for (const [p, status] of [['/direct', 418], ['/redirect', 302], ['/down', 503]] as const) {
      const r = await request(gw.port(), { path: p, headers: { origin: 'https://app.example.com' } });
      assert.equal(r.status, status, p);
      assert.equal(r.headers['access-control-allow-origin'], 'https://app.example.com', `${p}: allow-origin`);
      assert.equal(r.headers['access-control-expose-headers'], 'x-trace', `${p}: expose-headers`);
      const other = await request(gw.port(), { path: p, headers: { origin: 'https://evil.example.com' } });
      assert.equal(other.headers['access-control-allow-origin'], undefined, `${p}: not for another origin`);
    }
  });
});
