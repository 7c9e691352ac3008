/**
 * The runtime end to end over loopback: hand-built IR, echo backends, real node:http clients.
 * Routing, weights, redirects, direct responses, rewrites, header handling.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startEchoServer, type EchoServer } from '../../src/demo/echo-server.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { cluster, exact, forward, httpListener, match, ops, regex, route, snapshot, vhost } from '../support/ir-builders.js';
import { rawExchange, request } from '../support/http-client.js';
import { closeH2Sessions, h2Request } from '../support/h2-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { needs } from '../support/requires.js';

/** execFile with stdin input, promisified by hand (util.promisify drops `input`). */
function execFileP(cmd: string, args: string[], opts: { input: string }): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { timeout: 15_000 }, (err, stdout) => (err ? reject(Object.assign(err, { stdout })) : resolve({ stdout })));
    child.stdin?.end(opts.input);
  });
}

/**
 * Every routing check runs over HTTP/1.1 and over HTTP/2 (h2c, prior knowledge): routing, filters and
 * policies must not depend on the downstream protocol. Checks of HTTP/1.1 framing only run over it.
 */
const TRANSPORTS = [
  { name: 'HTTP/1.1', request },
  { name: 'HTTP/2 (h2c)', request: h2Request as typeof request },
];

for (const via of TRANSPORTS) describe(`runtime routing end to end over ${via.name}`, { timeout: 60_000 }, () => {
  const request = via.request;
  const h1Only = { skip: via.name === 'HTTP/1.1' ? false : 'HTTP/1.1 framing' };
  const echo: Record<string, EchoServer> = {};
  let gw: RuntimeHarness;
  let port: number;

  function ir(): IRSnapshot {
    const seg = (value: string) => ({ kind: 'segment-prefix' as const, value, ignoreCase: false });
    return snapshot(
      [
        httpListener(0, [
          vhost('shop', ['shop.example.com'], [
            route('shop/header', forward(['b']), [match({ headers: [{ name: 'x-canary', match: exact('yes'), invert: false }] })]),
            route('shop/api', forward(['b']), [match({ path: seg('/api') })]),
            route('shop/all', forward(['a']), [match()]),
          ]),
          vhost('redirects', ['redirect.example.com'], [
            route('r/scheme', { kind: 'redirect', scheme: 'https', authority: null, port: null, path: null, responseCode: 301 }, [match({ path: seg('/secure') })]),
            route('r/host-path', { kind: 'redirect', scheme: null, authority: 'new.example.com', port: 8443, path: { kind: 'prefix', value: '/v2' }, responseCode: 302 }, [match({ path: seg('/v1') })]),
            route('r/full', { kind: 'redirect', scheme: null, authority: null, port: 'from-protocol', path: { kind: 'full', value: '/moved' }, responseCode: 308 }, [match()]),
          ]),
          vhost('tls-only', ['secure.example.com'], [route('never', forward(['a']))], { httpsRedirect: { responseCode: 308, port: null } }),
          vhost('tls-only-port', ['secure8443.example.com'], [route('never2', forward(['a']))], { httpsRedirect: { responseCode: 301, port: 8443 } }),
          vhost('direct', ['direct.example.com'], [
            route('d/json', { kind: 'direct', status: 418, body: '{"teapot":true}', contentType: 'application/json' }, [match({ path: seg('/json') })]),
            route('d/text', { kind: 'direct', status: 200, body: 'hello', contentType: null }, [match()]),
          ]),
          vhost('rewrite', ['rewrite.example.com'], [
            route('rw/seg', forward(['a'], { rewrite: { path: { kind: 'prefix', value: '/' }, authority: null } }), [match({ path: seg('/foo') })]),
            route('rw/prefix', forward(['a'], { rewrite: { path: { kind: 'prefix', value: '/new' }, authority: null } }), [match({ path: { kind: 'prefix', value: '/old', ignoreCase: false } })]),
            route('rw/regex', forward(['a'], { rewrite: { path: { kind: 'regex', regex: { original: '^/svc/([^/]+)(/.*)$', source: '^/svc/([^/]+)(/.*)$', flags: '' }, substitution: '\\2/of/\\1' }, authority: null } }), [match({ path: regex('/svc/.*') })]),
            route('rw/authority', forward(['a'], { rewrite: { path: null, authority: 'internal.svc:8080' } }), [match({ path: seg('/auth') })]),
          ]),
          vhost('headers', ['headers.example.com'], [
            route(
              'h/ops',
              forward([{ cluster: 'a', requestHeaders: ops({ set: [{ name: 'x-order', value: 'destination' }], add: [{ name: 'x-dest', value: 'd' }] }), responseHeaders: ops({ set: [{ name: 'x-resp-order', value: 'destination' }] }) }]),
              [match()],
              {
                requestHeaders: ops({ set: [{ name: 'x-order', value: 'route' }, { name: 'x-route', value: 'r' }], remove: ['x-remove-me'] }),
                responseHeaders: ops({ set: [{ name: 'x-resp-order', value: 'route' }], add: [{ name: 'x-resp-added', value: '1' }], remove: ['x-echo-name'] }),
              },
            ),
          ]),
          vhost('nr', ['nr.example.com'], [route('nr/only', forward(['a']), [match({ path: { kind: 'exact', value: '/only', ignoreCase: false } })])]),
          vhost('weights', ['weights.example.com'], [route('w', forward([{ cluster: 'a', weight: 1 }, { cluster: 'b', weight: 3 }]))]),
          vhost('default', ['*'], [route('default', forward(['a']), [match({ path: seg('/') })])]),
        ]),
      ],
      [cluster('a', [{ port: echo.a.port }]), cluster('b', [{ port: echo.b.port }])],
    );
  }

  before(async () => {
    echo.a = await startEchoServer({ name: 'a' });
    echo.b = await startEchoServer({ name: 'b' });
    gw = await startRuntime(ir());
    port = gw.port();
  });
  after(async () => {
    closeH2Sessions();
    await gw?.close(500);
    await Promise.all(Object.values(echo).map((e) => e.close()));
  });

  test('routes by host, path and header', async () => {
    const cases = [
      { host: 'shop.example.com', path: '/', headers: {}, want: 'a' },
      { host: 'shop.example.com', path: '/api/items', headers: {}, want: 'b' },
      { host: 'shop.example.com', path: '/apix', headers: {}, want: 'a' },
      { host: 'shop.example.com', path: '/', headers: { 'x-canary': 'yes' }, want: 'b' },
      { host: 'SHOP.example.com:1234', path: '/', headers: { 'x-canary': 'yes' }, want: 'b' },
      { host: 'unknown.example.com', path: '/x', headers: {}, want: 'a' },
    ];
    for (const c of cases) {
      const r = await request(port, { host: c.host, path: c.path, headers: c.headers });
      assert.equal(r.status, 200, `${c.host}${c.path}: expected 200, got ${r.status} ${r.body}`);
      assert.equal(r.json?.name, c.want, `${c.host}${c.path} ${JSON.stringify(c.headers)}: expected backend ${c.want}, got ${r.json?.name}`);
    }
  });

  test('the query string reaches the upstream unchanged', async () => {
    const r = await request(port, { host: 'shop.example.com', path: '/p?a=1&b=%20x&c' });
    assert.equal(r.json?.url, '/p?a=1&b=%20x&c');
  });

  test('weights 1:3 split 2000 requests within ±5%', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    try {
      const counts: Record<string, number> = { a: 0, b: 0 };
      for (let batch = 0; batch < 20; batch++) {
        const replies = await Promise.all(Array.from({ length: 100 }, () => request(port, { host: 'weights.example.com', agent })));
        for (const r of replies) counts[r.json!.name]++;
      }
      const shareB = counts.b / 2000;
      assert.ok(Math.abs(shareB - 0.75) <= 0.05, `expected ~75% to b, got ${(shareB * 100).toFixed(1)}% (${JSON.stringify(counts)})`);
    } finally {
      agent.destroy();
    }
  });

  test('redirect: scheme change keeps host, path and query', async () => {
    const r = await request(port, { host: 'redirect.example.com', path: '/secure/page?x=1' });
    assert.equal(r.status, 301);
    assert.equal(r.headers.location, 'https://redirect.example.com/secure/page?x=1');
    assert.equal(r.headers.server, 'meshgate');
  });

  test('redirect: authority, port and prefix rewrite', async () => {
    const r = await request(port, { host: 'redirect.example.com', path: '/v1/items?q=2' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'http://new.example.com:8443/v2/items?q=2');
  });

  test('redirect: full path, port from protocol', async () => {
    const r = await request(port, { host: 'redirect.example.com:8080', path: '/other' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, 'http://redirect.example.com/moved');
  });

  test('httpsRedirect answers before any route', async () => {
    const r = await request(port, { host: 'secure.example.com:8080', path: '/a/b?c=d' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, 'https://secure.example.com/a/b?c=d');
    const r2 = await request(port, { host: 'secure8443.example.com', path: '/x' });
    assert.equal(r2.status, 301);
    assert.equal(r2.headers.location, 'https://secure8443.example.com:8443/x');
  });

  test('direct responses: status, body, content type', async () => {
    const j = await request(port, { host: 'direct.example.com', path: '/json' });
    assert.equal(j.status, 418);
    assert.equal(j.body, '{"teapot":true}');
    assert.equal(j.headers['content-type'], 'application/json');
    const t = await request(port, { host: 'direct.example.com', path: '/' });
    assert.equal(t.status, 200);
    assert.equal(t.body, 'hello');
    assert.equal(t.headers['content-type'], 'text/plain');
    assert.ok(t.headers.date, 'direct responses carry date');
    assert.equal(t.headers.server, 'meshgate');
  });

  test('rewrite: segment prefix /foo -> / gives /bar, not //bar', async () => {
    const r = await request(port, { host: 'rewrite.example.com', path: '/foo/bar?k=v' });
    assert.equal(r.json?.url, '/bar?k=v');
    const r2 = await request(port, { host: 'rewrite.example.com', path: '/foo' });
    assert.equal(r2.json?.url, '/');
  });

  test('rewrite: raw prefix, regex and authority', async () => {
    assert.equal((await request(port, { host: 'rewrite.example.com', path: '/oldstuff/x' })).json?.url, '/newstuff/x');
    assert.equal((await request(port, { host: 'rewrite.example.com', path: '/svc/users/list' })).json?.url, '/list/of/users');
    const a = await request(port, { host: 'rewrite.example.com', path: '/auth' });
    assert.equal(a.json?.headers.host, 'internal.svc:8080');
    assert.equal(a.json?.headers['x-forwarded-host'], 'rewrite.example.com');
  });

  test('header ops: request route then destination, response destination then route', async () => {
    const r = await request(port, { host: 'headers.example.com', headers: { 'x-remove-me': '1', 'x-order': 'client' } });
    const h = r.json!.headers;
    assert.equal(h['x-order'], 'destination', 'destination-level set runs after route-level on requests');
    assert.equal(h['x-route'], 'r');
    assert.equal(h['x-dest'], 'd');
    assert.equal(h['x-remove-me'], undefined);
    assert.equal(r.headers['x-resp-order'], 'route', 'route-level set runs after destination-level on responses');
    assert.equal(r.headers['x-resp-added'], '1');
    assert.equal(r.headers['x-echo-name'], undefined);
  });

  test('hop-by-hop headers are removed both ways', h1Only, async () => {
    const r = await request(port, {
      host: 'shop.example.com',
      path: '/headers?connection=x-upstream-secret&x-upstream-secret=1&keep-alive=timeout%3D5&x-kept=1',
      headers: { connection: 'keep-alive, x-client-secret', 'x-client-secret': 's', 'keep-alive': 'timeout=5', te: 'trailers, gzip', 'proxy-connection': 'x', upgrade: 'websocket' },
    });
    const h = r.json!.headers;
    for (const name of ['x-client-secret', 'keep-alive', 'proxy-connection', 'upgrade']) assert.equal(h[name], undefined, `${name} must not reach the upstream`);
    assert.equal(h.te, 'trailers');
    assert.equal(r.headers['x-upstream-secret'], undefined, 'a response header named in Connection is dropped');
    assert.notEqual(r.headers['keep-alive'], 'timeout=5', "the upstream's keep-alive header is not relayed (Node writes its own)");
    assert.equal(r.headers['x-kept'], '1');
  });

  test('forwarding headers: x-forwarded-for appended, proto and host set, x-request-id kept or made', async () => {
    const r = await request(port, { host: 'shop.example.com', headers: { 'x-forwarded-for': '203.0.113.7', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'spoofed', 'x-request-id': 'abc-123' } });
    const h = r.json!.headers;
    assert.equal(h['x-forwarded-for'], '203.0.113.7, 127.0.0.1');
    assert.equal(h['x-forwarded-proto'], 'http');
    assert.equal(h['x-forwarded-host'], 'shop.example.com');
    assert.equal(h['x-request-id'], 'abc-123');
    assert.equal(r.headers['x-request-id'], undefined, 'x-request-id is not added to responses');
    const bad = await request(port, { host: 'shop.example.com', headers: { 'x-request-id': 'has space and ' + 'x'.repeat(200) } });
    assert.match(bad.json!.headers['x-request-id'] ?? '', /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const none = await request(port, { host: 'shop.example.com' });
    assert.equal(none.json!.headers['x-forwarded-for'], '127.0.0.1');
    assert.ok(none.json!.headers['x-request-id']);
  });

  test('proxied responses carry date and server: meshgate (upstream server replaced)', async () => {
    const r = await request(port, { host: 'shop.example.com' });
    assert.equal(r.headers.server, 'meshgate');
    assert.ok(r.headers.date, 'date present');
  });

  test('no route: 404 with flag NR', async () => {
    const r = await request(port, { host: 'nr.example.com', path: '/other' });
    assert.equal(r.status, 404, `expected 404, got ${r.status}`);
    assert.equal(r.headers['x-meshgate-flags'], 'NR');
    assert.equal(r.headers.server, 'meshgate');
    assert.ok(r.headers.date);
    assert.equal((await request(port, { host: 'nr.example.com', path: '/only' })).status, 200);
  });

  test('asterisk-form and fragments: 400', h1Only, async () => {
    assert.match(await rawExchange(port, 'OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400 /);
    assert.match(await rawExchange(port, 'GET /a#b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'), /^HTTP\/1\.1 400 /);
  });

  test('two Host headers: 400', h1Only, async () => {
    const raw = await rawExchange(port, 'GET / HTTP/1.1\r\nHost: shop.example.com\r\nHost: evil.example.com\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 400 /, `expected 400, got ${raw.split('\r\n')[0]}`);
  });

  test('absolute-form target: its authority wins over Host', h1Only, async () => {
    const raw = await rawExchange(port, 'GET http://shop.example.com/api/x HTTP/1.1\r\nHost: other.example.com\r\nConnection: close\r\n\r\n');
    assert.match(raw, /^HTTP\/1\.1 200 /);
    assert.match(raw, /"name":"b"/, 'routed on shop.example.com /api');
    assert.match(raw, /"host":"shop.example.com"/);
  });

  test('more than 100 request headers: 431', async () => {
    const headers: string[] = [];
    for (let i = 0; i < 120; i++) headers.push(`x-h${i}`, 'v');
    if (via.name !== 'HTTP/1.1') {
      // Envoy resets an HTTP/2 stream over max_headers_count (HTTP/1.x gets 431); so does the h2 engine.
      await assert.rejects(request(port, { host: 'shop.example.com', headers }), /ENHANCE_YOUR_CALM/);
      return;
    }
    const r = await request(port, { host: 'shop.example.com', headers });
    assert.equal(r.status, 431);
  });

  test('curl: a POST with Expect: 100-continue goes through (expect is not forwarded)', { skip: h1Only.skip || needs('curl') }, async () => {
    const body = 'x'.repeat(200_000);
    const { stdout } = await execFileP(
      'curl',
      ['-sS', '--max-time', '10', '-H', 'Host: shop.example.com', '-H', 'Expect: 100-continue', '--data-binary', '@-', '-w', '\n%{http_code}', `http://127.0.0.1:${port}/echo`],
      { input: body },
    ).catch((err: Error & { stdout?: string }) => ({ stdout: err.stdout ?? String(err) }));
    const lines = stdout.trimEnd().split('\n');
    assert.equal(lines.at(-1), '200', `expected 200 from curl, got ${lines.at(-1)}`);
    const json = JSON.parse(lines.slice(0, -1).join('\n')) as { body: string; headers: Record<string, string> };
    assert.equal(json.body.length, body.length);
    assert.equal(json.headers.expect, undefined);
  });

  test('a request head over 64 KiB: 431', h1Only, async () => {
    const raw = await rawExchange(port, `GET / HTTP/1.1\r\nHost: shop.example.com\r\nX-Big: ${'a'.repeat(70_000)}\r\n\r\n`);
    assert.match(raw, /^HTTP\/1\.1 431 /, `expected 431, got ${raw.split('\r\n')[0]}`);
    const ok = await request(port, { host: 'shop.example.com', headers: { 'x-big': 'a'.repeat(30_000) } });
    assert.equal(ok.status, 200, 'a 30 KB header is within the limit');
  });

  test('keep-alive: many requests reuse one downstream connection', h1Only, async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    agent.on('free', (s) => sockets.add(s));
    try {
      for (let i = 0; i < 20; i++) {
        const r = await request(port, { host: 'shop.example.com', agent });
        assert.equal(r.status, 200);
      }
      assert.equal(sockets.size, 1, `expected 1 connection, saw ${sockets.size}`);
    } finally {
      agent.destroy();
    }
  });
});
