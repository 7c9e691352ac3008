/**
 * ingress-nginx annotations end to end: the real `meshgate run` process serving Ingresses written for
 * ingress-nginx, echo backends on loopback, real HTTP clients. Each test asserts what ingress-nginx
 * documents (status codes, Location values, the path and headers the backend sees, limits over a
 * bounded burst), and that a snippet never changes what a request gets.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { createHash } from 'node:crypto';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { freePort, get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, service: string, annotations: Record<string, string>, paths: { path: string; type?: string; service?: string; port?: number }[] = [{ path: '/' }]): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
  rules:
    - host: ${host}
      http:
        paths:
${paths.map((p) => `          - { path: ${JSON.stringify(p.path)}, pathType: ${p.type ?? 'Prefix'}, backend: { service: { name: ${p.service ?? service}, port: { number: ${p.port ?? 80} } } } }`).join('\n')}
`;
}

/**
 * A request with a streamed (chunked) body of `size` bytes on a kept-alive connection (as curl and
 * browsers send it); resolves with the status. The gateway answers 413 while the client is still
 * writing and discards the rest of the upload.
 */
const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 1 });
function postChunked(port: number, host: string, path: string, size: number): Promise<number> {
  return new Promise((resolve, reject) => {
    let status = 0;
    const req = http.request({ hostname: '127.0.0.1', port, path, method: 'POST', headers: { host, 'transfer-encoding': 'chunked' }, agent: keepAlive }, (res) => {
      status = res.statusCode ?? 0;
      res.resume();
      res.on('end', () => resolve(status));
      res.on('error', () => resolve(status));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', (e) => setTimeout(() => (status !== 0 ? resolve(status) : reject(e)), 200));
    const chunk = Buffer.alloc(1024, 97);
    let sent = 0;
    const write = (): void => {
      while (sent < size) {
        sent += chunk.length;
        if (!req.write(chunk)) return void req.once('drain', write);
      }
      req.end();
    };
    write();
  });
}

describe('ingress-nginx annotations', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const echoes: Record<string, Echo> = {};
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;
  // A backend that counts the requests (and body bytes) it receives.
  let counted = 0;
  let countedBytes = 0;
  let lastCountedUrl = '';
  let lastCountedHeaders: http.IncomingHttpHeaders = {};
  let lastCountedBody = 0;
  const counter = http.createServer((req, res) => {
    counted++;
    lastCountedUrl = req.url ?? '';
    lastCountedHeaders = req.headers;
    lastCountedBody = 0;
    req.on('data', (c: Buffer) => (lastCountedBody += c.length));
    req.on('data', (c: Buffer) => (countedBytes += c.length));
    req.on('end', () => res.end('ok'));
  });
  const hits = (_name: string) => counted;
  // An error-page backend (ingress-nginx's custom default backend): answers with the code it is given.
  let lastErrorHeaders: http.IncomingHttpHeaders = {};
  const errorPages = http.createServer((req, res) => {
    lastErrorHeaders = req.headers;
    const code = Number(req.headers['x-code'] ?? 500);
    res.writeHead(code, { 'content-type': 'text/html' }).end(`<h1>custom ${code} page for ${req.url}</h1>`);
  });
  // A backend whose every other answer is 502 (first try fails, the retry succeeds).
  let flakyCalls = 0;
  const flaky = http.createServer((req, res) => {
    flakyCalls++;
    req.resume();
    res.writeHead(flakyCalls % 2 === 1 ? 502 : 200).end(flakyCalls % 2 === 1 ? 'bad gateway' : 'ok');
  });

  // A backend that drops the connection of every odd request without answering (an upstream "error"
  // for nginx) and answers the even ones; `resetMethods` records what it received.
  let resetCalls = 0;
  const resetMethods: string[] = [];
  const resetter = http.createServer((req, res) => {
    resetCalls++;
    resetMethods.push(req.method ?? '');
    if (resetCalls % 2 === 1) return void req.socket.destroy();
    req.resume();
    res.end('second try');
  });
  // A port nothing listens on (its connections are refused), next to a live echo backend.
  let deadPort = 0;

  before(async () => {
    deadPort = await freePort();
    await new Promise<void>((r) => resetter.listen(0, '127.0.0.1', r));
    for (const name of ['web', 'canary', 'other', 'sticky-a', 'sticky-b']) echoes[name] = await startEchoServer({ name });
    await new Promise<void>((r) => counter.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => flaky.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => errorPages.listen(0, '127.0.0.1', r));
    const errorPagesPort = (errorPages.address() as import('node:net').AddressInfo).port;
    const flakyPort = (flaky.address() as import('node:net').AddressInfo).port;
    const counterPort = (counter.address() as import('node:net').AddressInfo).port;
    writeConfig(dir, 'services.yaml', [
      serviceYaml('web', [echoes.web.port]),
      // Each canary's main path has a Service of its own: a canary attaches to its main's Service, so
      // every path proxying to that Service gets the canary rules (ingress-nginx).
      ...['web-pattern', 'web-half', 'web-main', 'web-weighted'].map((n) => serviceYaml(n, [echoes.web.port])),
      serviceYaml('canary', [echoes.canary.port]),
      serviceYaml('other', [echoes.other.port]),
      serviceYaml('sticky', [echoes['sticky-a'].port, echoes['sticky-b'].port]),
      serviceYaml('sticky-none', [echoes['sticky-a'].port, echoes['sticky-b'].port]),
      serviceYaml('counter', [counterPort]),
      // ClusterIP 127.0.0.1:<web port>, endpoints on the "other" echo: service-upstream must reach "web".
      serviceYaml('vip', [echoes.other.port], { servicePort: echoes.web.port }).replace('spec:\n', 'spec:\n  clusterIP: 127.0.0.1\n'),
      serviceYaml('empty', [echoes.web.port], { notReady: [echoes.web.port] }),
      serviceYaml('fallback', [echoes.other.port]),
      serviceYaml('mirror', [counterPort]),
      serviceYaml('flaky', [flakyPort]),
      serviceYaml('resetter', [(resetter.address() as import('node:net').AddressInfo).port]),
      serviceYaml('half-dead', [deadPort, echoes.web.port]),
      serviceYaml('error-pages', [errorPagesPort]),
    ].join('---\n'));
    writeConfig(dir, 'secrets.yaml', `apiVersion: v1
kind: Secret
metadata: { name: htpasswd, namespace: default }
stringData: { auth: "foo:$apr1$xyzSALT1$UtWQLD3Dm.MaSLGo6QUZ91\\nbcrypt-user:$2y$05$zyxwvutsrqponmlkjihgfeglsAmPxizkh6XR.lRZ0ghu0eyvImhE6\\nsha-user:$6$e2esalt$1RzOQRLSxmsZX0If6c7QzHfQFC/3tP/1a1Dtrcp3jDlcli0aSAB73sFP4rmSSn5MM/jq5EfPSO7yNrb/xSbcK/\\n" }
---
apiVersion: v1
kind: Secret
metadata: { name: htdigest, namespace: default }
stringData: { auth: "foo:digest-realm:${createHash('md5').update('foo:digest-realm:secret pw').digest('hex')}\\n" }
`);
    writeConfig(dir, 'ingress.yaml', [
      ingress('rewrite', 'rw.example.com', 'web', { 'use-regex': 'true', 'rewrite-target': '/$2', 'x-forwarded-prefix': '/something' }, [{ path: '/something(/|$)(.*)', type: 'ImplementationSpecific' }]),
      ingress('sibling', 'rw.example.com', 'other', { 'upstream-vhost': 'internal.example.com' }, [{ path: '/static' }]),
      ingress('approot', 'approot.example.com', 'web', { 'app-root': '/app1' }),
      ingress('moved', 'moved.example.com', 'counter', { 'permanent-redirect': 'https://new.example.com/landing' }),
      ingress('temp', 'temp.example.com', 'counter', { 'temporal-redirect': 'https://b.example.com/tmp', 'temporal-redirect-code': '307' }),
      ingress('force', 'force.example.com', 'web', { 'force-ssl-redirect': 'true' }),
      ingress('force-keep', 'force-keep.example.com', 'web', { 'force-ssl-redirect': 'true', 'preserve-trailing-slash': 'true' }),
      ingress('www', 'example.com', 'web', { 'from-to-www-redirect': 'true', 'server-alias': 'alias.example.com' }),
      ingress('body', 'body.example.com', 'counter', { 'proxy-body-size': '8k' }),
      ingress('allow', 'allow.example.com', 'web', { 'whitelist-source-range': '10.0.0.0/8' }),
      ingress('allow-local', 'allow-local.example.com', 'web', { 'whitelist-source-range': '127.0.0.0/8, ::1', 'denylist-source-range': '10.0.0.0/8' }),
      ingress('deny', 'deny.example.com', 'web', { 'denylist-source-range': '127.0.0.1, ::1' }),
      ingress('rps', 'rps.example.com', 'web', { 'limit-rps': '1', 'limit-burst-multiplier': '2' }),
      ingress('rps-exempt', 'rps-exempt.example.com', 'web', { 'limit-rps': '1', 'limit-burst-multiplier': '1', 'limit-whitelist': '127.0.0.1, ::1' }),
      ingress('rps-allow', 'rps-allow.example.com', 'web', { 'limit-rpm': '1', 'limit-burst-multiplier': '1', 'limit-allowlist': '127.0.0.0/8, ::1/128' }),
      ingress('rps-rpm', 'rps-rpm.example.com', 'web', { 'limit-rps': '10', 'limit-rpm': '2', 'limit-burst-multiplier': '1' }),
      ingress('basic', 'basic.example.com', 'web', { 'auth-type': 'basic', 'auth-secret': 'htpasswd', 'auth-realm': 'Authentication Required - foo' }),
      ingress('basic-missing', 'basic-missing.example.com', 'web', { 'auth-type': 'basic', 'auth-secret': 'nope' }),
      ingress('relocate', 'relocate.example.com', 'web', { 'proxy-redirect-from': 'http://internal:8080/', 'proxy-redirect-to': 'https://public.example.com/' }),
      ingress('errors', 'errors.example.com', 'web', { 'custom-http-errors': '404,503', 'default-backend': 'error-pages' }),
      ingress('retry', 'retry.example.com', 'flaky', { 'proxy-next-upstream': 'error timeout http_502', 'proxy-next-upstream-tries': '2' }),
      ingress('noretry', 'noretry.example.com', 'flaky', { 'proxy-next-upstream': 'off' }),
      ingress('default-retry', 'default-retry.example.com', 'resetter', {}),
      ingress('nonidem', 'nonidem.example.com', 'resetter', { 'proxy-next-upstream': 'error timeout non_idempotent' }),
      ingress('half-dead', 'half-dead.example.com', 'half-dead', {}),
      ingress('conns', 'conns.example.com', 'web', { 'limit-connections': '1' }),
      ingress('pattern-main', 'pattern.example.com', 'web-pattern', {}),
      ingress('pattern-canary', 'pattern.example.com', 'canary', { canary: 'true', 'canary-by-header': 'X-Region', 'canary-by-header-pattern': '^(eu|us)-west$' }),
      ingress('half-main', 'half.example.com', 'web-half', {}),
      ingress('half-canary', 'half.example.com', 'canary', { canary: 'true', 'canary-weight': '300', 'canary-weight-total': '1000' }),
      ingress('digest', 'digest.example.com', 'web', { 'auth-type': 'digest', 'auth-secret': 'htdigest', 'auth-realm': 'digest-realm' }),
      ingress('cors', 'cors.example.com', 'counter', { 'enable-cors': 'true', 'cors-allow-origin': 'https://app.example.com, https://*.example.org' }),
      ingress('cors-any', 'cors-any.example.com', 'counter', { 'enable-cors': 'true', 'cors-allow-origin': '*, foo.bar.com', 'cors-allow-credentials': 'false', 'cors-allow-methods': 'POST, GET', 'cors-max-age': '200', 'cors-expose-headers': 'X-Total' }),
      ingress('main', 'canary.example.com', 'web-main', {}),
      ingress('attached', 'attached.example.com', 'web-main', {}),
      ingress('canary', 'canary.example.com', 'canary', { canary: 'true', 'canary-by-header': 'X-Canary', 'canary-by-cookie': 'use_canary' }),
      ingress('weighted-main', 'weighted.example.com', 'web-weighted', {}),
      ingress('weighted-canary', 'weighted.example.com', 'canary', { canary: 'true', 'canary-weight': '100' }),
      ingress('timeout', 'timeout.example.com', 'web', { 'proxy-read-timeout': '1', 'proxy-next-upstream': 'off' }),
      ingress('sticky', 'sticky.example.com', 'sticky', { affinity: 'cookie', 'session-cookie-name': 'route', 'session-cookie-max-age': '600', 'session-cookie-samesite': 'Lax', 'session-cookie-secure': 'true' }),
      ingress('samesite', 'samesite.example.com', 'sticky-none', { affinity: 'cookie', 'session-cookie-samesite': 'None', 'session-cookie-secure': 'true', 'session-cookie-conditional-samesite-none': 'true' }),
      ingress('snippet', 'snippet.example.com', 'web', { 'configuration-snippet': 'return 200 "pwned";' }),
      ingress('waf', 'waf.example.com', 'web', { 'enable-modsecurity': 'true' }),
      ingress('vip', 'vip.example.com', 'vip', { 'service-upstream': 'true' }, [{ path: '/', port: echoes.web.port }]),
      ingress('endpoints', 'endpoints.example.com', 'vip', {}, [{ path: '/', port: echoes.web.port }]),
      ingress('fallback', 'fallback.example.com', 'empty', { 'default-backend': 'fallback' }),
      ingress('mirrored', 'mirrored.example.com', 'web', { 'mirror-target': 'http://mirror.default.svc.cluster.local$request_uri' }),
      ingress('mirrored-nobody', 'mirrored-nobody.example.com', 'web', { 'mirror-target': 'http://mirror.default.svc.cluster.local$request_uri', 'mirror-host': 'copy.example.com', 'mirror-request-body': 'off' }),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const e of Object.values(echoes)) await e.close();
    keepAlive.destroy();
    errorPages.closeAllConnections();
    await new Promise<void>((r) => errorPages.close(() => r()));
    flaky.closeAllConnections();
    await new Promise<void>((r) => flaky.close(() => r()));
    resetter.closeAllConnections();
    await new Promise<void>((r) => resetter.close(() => r()));
    counter.closeAllConnections();
    await new Promise<void>((r) => counter.close(() => r()));
    removeDir(dir);
  });

  test('rewrite-target with capture groups: the backend sees /$2, query kept, case-insensitive, X-Forwarded-Prefix sent', async () => {
    for (const [sent, seen] of [['/something', '/'], ['/something/', '/'], ['/something/new', '/new'], ['/SOMETHING/a/b?q=1', '/a/b?q=1']]) {
      const r = await get(url(sent), { host: 'rw.example.com' });
      assert.equal(r.status, 200, `${sent}: ${r.body}`);
      assert.equal(r.json?.name, 'web');
      assert.equal(r.json?.url, seen, `${sent} should reach the backend as ${seen}`);
      assert.equal(r.json?.headers['x-forwarded-prefix'], '/something');
    }
  });

  test('host-wide regex mode: a sibling Prefix path becomes a start-anchored regex; upstream-vhost sets the Host', async () => {
    const r = await get(url('/staticfoo'), { host: 'rw.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.json?.name, 'other', 'ingress-nginx matches ^/static against /staticfoo once the host is in regex mode');
    assert.equal(r.json?.headers.host, 'internal.example.com');
    assert.equal(r.json?.headers['x-forwarded-host'], 'rw.example.com');
  });

  test('app-root: / answers 302 to the app root, other paths are proxied', async () => {
    const r = await get(url('/?x=1'), { host: 'approot.example.com' });
    assert.equal(r.status, 302);
    assert.equal(r.headers.location, 'http://approot.example.com/app1');
    const p = await get(url('/app1/page'), { host: 'approot.example.com' });
    assert.equal(p.status, 200);
    assert.equal(p.json?.url, '/app1/page');
  });

  test('permanent-redirect 301 and temporal-redirect 307 to the URL verbatim; the backend is not called', async () => {
    const before = hits('web');
    const m = await get(url('/old/page?a=b'), { host: 'moved.example.com' });
    assert.equal(m.status, 301);
    assert.equal(m.headers.location, 'https://new.example.com/landing');
    const t = await get(url('/x?y=z'), { host: 'temp.example.com' });
    assert.equal(t.status, 307);
    assert.equal(t.headers.location, 'https://b.example.com/tmp');
    assert.equal(hits('web'), before);
  });

  test('force-ssl-redirect: 308 to https without a certificate on the host', async () => {
    const r = await get(url('/p?q=1'), { host: 'force.example.com' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, 'https://force.example.com/p?q=1');
    // lua_ingress.lua: one trailing slash of the request URI is left out, unless preserve-trailing-slash.
    assert.equal((await get(url('/dir/'), { host: 'force.example.com' })).headers.location, 'https://force.example.com/dir');
    assert.equal((await get(url('/'), { host: 'force.example.com' })).headers.location, 'https://force.example.com');
    assert.equal((await get(url('/dir/'), { host: 'force-keep.example.com' })).headers.location, 'https://force-keep.example.com/dir/');
  });

  test('from-to-www-redirect and server-alias', async () => {
    const r = await get(url('/x?y=1'), { host: 'www.example.com' });
    assert.equal(r.status, 308);
    assert.match(String(r.headers.location), /^http:\/\/example\.com(:\d+)?\/x\?y=1$/);
    const a = await get(url('/alias'), { host: 'alias.example.com' });
    assert.equal(a.status, 200);
    assert.equal(a.json?.url, '/alias');
  });

  test('proxy-body-size: 413 above the limit (Content-Length or chunked), the backend never sees the large body', async () => {
    const before = hits('web');
    const big = await get(url('/upload'), { host: 'body.example.com', method: 'POST', body: 'a'.repeat(9000) });
    assert.equal(big.status, 413);
    assert.equal(hits('web'), before, 'a body over the limit by Content-Length never reaches the backend');
    const bytes = countedBytes;
    const small = await get(url('/upload'), { host: 'body.example.com', method: 'POST', body: 'a'.repeat(8192) });
    assert.equal(small.status, 200);
    assert.equal(countedBytes - bytes, 8192);
    assert.equal(await postChunked(gw.httpPort, 'body.example.com', '/upload', 64 * 1024), 413);
    assert.ok(countedBytes - bytes < 8192 + 64 * 1024, 'the chunked upload was cut');
  });

  test('whitelist-source-range and denylist-source-range: 403 for clients outside / inside the ranges', async () => {
    assert.equal((await get(url('/'), { host: 'allow.example.com' })).status, 403);
    assert.equal((await get(url('/'), { host: 'allow-local.example.com' })).status, 200);
    assert.equal((await get(url('/'), { host: 'deny.example.com' })).status, 403);
  });

  test('limit-rps 1 with burst multiplier 2: 3 back-to-back requests pass, the next is 503; limit-whitelist exempts', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await get(url(`/r${i}`), { host: 'rps.example.com' })).status);
    // 1 + burst (1 x 2) requests pass at once (nginx limit_req burst nodelay); the test sends 6 within well under a second.
    assert.deepEqual(statuses.slice(0, 3), [200, 200, 200], `statuses ${statuses}`);
    assert.ok(statuses.slice(3).includes(503), `a request past the burst must be 503, got ${statuses}`);
    const exempt: number[] = [];
    for (let i = 0; i < 6; i++) exempt.push((await get(url(`/e${i}`), { host: 'rps-exempt.example.com' })).status);
    assert.deepEqual(exempt, [200, 200, 200, 200, 200, 200]);
  });

  test('limit-rps and limit-rpm together: both apply (rps 10 alone would pass 11 at once, rpm 2 with burst 2 passes 3), refused requests count against neither; limit-allowlist exempts', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) statuses.push((await get(url(`/m${i}`), { host: 'rps-rpm.example.com' })).status);
    assert.deepEqual(statuses, [200, 200, 200, 503, 503, 503, 503, 503], `statuses ${statuses}`);
    const exempt: number[] = [];
    for (let i = 0; i < 5; i++) exempt.push((await get(url(`/a${i}`), { host: 'rps-allow.example.com' })).status);
    assert.deepEqual(exempt, [200, 200, 200, 200, 200]);
  });

  test('auth-type basic: 401 with the realm, 200 with the htpasswd user, Authorization not passed upstream; missing Secret 503', async () => {
    const none = await get(url('/'), { host: 'basic.example.com' });
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Basic realm="Authentication Required - foo"');
    const wrong = await get(url('/'), { host: 'basic.example.com', headers: { authorization: `Basic ${Buffer.from('foo:bar').toString('base64')}` } });
    assert.equal(wrong.status, 401);
    const ok = await get(url('/'), { host: 'basic.example.com', headers: { authorization: `Basic ${Buffer.from('foo:secret pw').toString('base64')}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json?.headers.authorization, undefined);
    assert.equal((await get(url('/'), { host: 'basic-missing.example.com' })).status, 503);
  });

  test('auth-type basic with bcrypt ($2y$) and SHA-512-crypt ($6$) htpasswd lines, as nginx checks them through crypt(3)', async () => {
    const basic = (user: string, pw: string) => ({ authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` });
    for (const user of ['bcrypt-user', 'sha-user']) {
      assert.equal((await get(url('/'), { host: 'basic.example.com', headers: basic(user, 'secret pw') })).status, 200, user);
      assert.equal((await get(url('/'), { host: 'basic.example.com', headers: basic(user, 'secret pw') })).status, 200, `${user} again (remembered)`);
      assert.equal((await get(url('/'), { host: 'basic.example.com', headers: basic(user, 'wrong pw') })).status, 401, `${user} with a wrong password`);
    }
  });

  test('enable-cors: a listed origin gets every CORS header; its OPTIONS is answered 204 by the gateway, others reach the backend', async () => {
    const before = hits('web');
    const pre = await get(url('/api'), { host: 'cors.example.com', method: 'OPTIONS', headers: { origin: 'https://x.example.org', 'access-control-request-method': 'PUT' } });
    // ingress-nginx's template: `return 204` with the CORS headers, text/plain and Content-Length 0.
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], 'https://x.example.org');
    assert.equal(pre.headers['access-control-allow-methods'], 'GET, PUT, POST, DELETE, PATCH, OPTIONS');
    assert.equal(pre.headers['access-control-allow-headers'], 'DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization');
    assert.equal(pre.headers['access-control-allow-credentials'], 'true');
    assert.equal(pre.headers['access-control-max-age'], '1728000');
    assert.equal(pre.headers['content-type'], 'text/plain charset=UTF-8');
    assert.equal(pre.headers['content-length'], '0');
    assert.equal(hits('web'), before, 'the backend never sees an allowed preflight');
    // Any OPTIONS from an allowed origin is a preflight for ingress-nginx (no Access-Control-Request-Method needed).
    assert.equal((await get(url('/api'), { host: 'cors.example.com', method: 'OPTIONS', headers: { origin: 'https://app.example.com' } })).status, 204);
    assert.equal(hits('web'), before);
    const simple = await get(url('/api'), { host: 'cors.example.com', headers: { origin: 'https://app.example.com' } });
    assert.equal(simple.status, 200);
    assert.equal(simple.headers['access-control-allow-origin'], 'https://app.example.com');
    assert.equal(simple.headers['access-control-allow-methods'], 'GET, PUT, POST, DELETE, PATCH, OPTIONS', 'nginx adds every CORS header to actual answers too');
    assert.equal(simple.headers['access-control-max-age'], '1728000');
    const other = await get(url('/api'), { host: 'cors.example.com', headers: { origin: 'https://evil.example.net' } });
    assert.equal(other.headers['access-control-allow-origin'], undefined);
    const twoLabels = await get(url('/api'), { host: 'cors.example.com', headers: { origin: 'https://a.b.example.org' } });
    assert.equal(twoLabels.headers['access-control-allow-origin'], undefined, '*. stands for exactly one label');
    // An OPTIONS from an origin not listed goes to the backend, without CORS headers.
    const seen = counted;
    const unlisted = await get(url('/api'), { host: 'cors.example.com', method: 'OPTIONS', headers: { origin: 'https://evil.example.net', 'access-control-request-method': 'PUT' } });
    assert.equal(unlisted.status, 200);
    assert.equal(unlisted.body, 'ok');
    assert.equal(counted, seen + 1);
    assert.equal(unlisted.headers['access-control-allow-origin'], undefined);
  });

  test('enable-cors with "*": every answer says Access-Control-Allow-Origin: *, even without Origin; any OPTIONS is 204', async () => {
    const plain = await get(url('/x'), { host: 'cors-any.example.com' });
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['access-control-allow-origin'], '*');
    assert.equal(plain.headers['access-control-allow-credentials'], undefined, 'cors-allow-credentials "false"');
    assert.equal(plain.headers['access-control-allow-methods'], 'POST, GET');
    assert.equal(plain.headers['access-control-max-age'], '200');
    assert.equal(plain.headers['access-control-expose-headers'], 'X-Total');
    const withOrigin = await get(url('/x'), { host: 'cors-any.example.com', headers: { origin: 'https://anything.example' } });
    assert.equal(withOrigin.headers['access-control-allow-origin'], '*');
    const seen = counted;
    const opt = await get(url('/x'), { host: 'cors-any.example.com', method: 'OPTIONS' });
    assert.equal(opt.status, 204);
    assert.equal(opt.headers['access-control-allow-origin'], '*');
    assert.equal(counted, seen, 'the backend is not called');
  });

  test('canary by header (always/never) and cookie, attached to the main Ingress; weight 100 sends everything to the canary', async () => {
    const name = async (headers: Record<string, string>) => (await get(url('/'), { host: 'canary.example.com', headers })).json?.name;
    assert.equal(await name({}), 'web');
    assert.equal(await name({ 'x-canary': 'always' }), 'canary');
    assert.equal(await name({ 'x-canary': 'never', cookie: 'use_canary=always' }), 'web', 'header never wins over the cookie');
    assert.equal(await name({ 'x-canary': 'other' }), 'web');
    assert.equal(await name({ cookie: 'a=1; use_canary=always' }), 'canary');
    assert.equal(await name({ cookie: 'use_canary=never' }), 'web');
    for (let i = 0; i < 5; i++) assert.equal((await get(url('/'), { host: 'weighted.example.com' })).json?.name, 'canary');
  });

  test('a canary attaches to its main path\'s Service: another host proxying to that Service gets the canary rules too (ingress-nginx upstream alternatives)', async () => {
    const name = async (headers: Record<string, string>) => (await get(url('/'), { host: 'attached.example.com', headers })).json?.name;
    assert.equal(await name({}), 'web');
    assert.equal(await name({ 'x-canary': 'always' }), 'canary', 'the canary of canary.example.com applies to every path of its main Service');
  });

    test('proxy-read-timeout 1 with proxy-next-upstream off: 504 after about a second', async () => {
    const t0 = Date.now();
    const r = await get(url('/delay/8000'), { host: 'timeout.example.com' });
    const took = Date.now() - t0;
    assert.equal(r.status, 504);
    // Not before the 1 s timeout, and well before the backend's 8 s answer (loaded machines are slow).
    assert.ok(took >= 900 && took < 6000, `took ${took} ms`);
  });

  test('affinity cookie: the gateway sets the cookie and a client that sends it back stays on one endpoint', async () => {
    const first = await get(url('/'), { host: 'sticky.example.com' });
    const setCookie = String(first.headers['set-cookie'] ?? '');
    assert.match(setCookie, /^route=[^;]+/);
    assert.match(setCookie, /; Path=\/; Max-Age=600; HttpOnly; Secure; SameSite=Lax$/, 'Path defaults to the Ingress path; the session-cookie-* attributes follow');
    const cookie = setCookie.split(';')[0];
    const names = new Set<string>();
    for (let i = 0; i < 8; i++) names.add(String((await get(url('/'), { host: 'sticky.example.com', headers: { cookie } })).json?.name));
    assert.equal(names.size, 1, `one endpoint for one cookie, got ${[...names]}`);
  });

  test('session-cookie-conditional-samesite-none: SameSite=None is left out for browsers that reject it, kept for others', async () => {
    const cookieFor = async (ua: string | null) => String((await get(url('/'), { host: 'samesite.example.com', headers: ua === null ? {} : { 'user-agent': ua } })).headers['set-cookie'] ?? '');
    const modern = await cookieFor('Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36');
    assert.match(modern, /^INGRESSCOOKIE=[^;]+; Path=\/; HttpOnly; Secure; SameSite=None$/);
    const chrome60 = await cookieFor('Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/60.0.3112.113 Safari/537.36');
    assert.match(chrome60, /^INGRESSCOOKIE=[^;]+; Path=\/; HttpOnly; Secure$/);
    const ios12 = await cookieFor('Mozilla/5.0 (iPhone; CPU iPhone OS 12_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.1.2 Mobile/15E148 Safari/604.1');
    assert.doesNotMatch(ios12, /SameSite/);
    assert.match(await cookieFor(null), /SameSite=None$/, 'no User-Agent: sent as configured');
  });

  test('a configuration-snippet never changes what a request gets: its Ingress is not served; enable-modsecurity (not implemented) is not served unprotected', async () => {
    const r = await get(url('/'), { host: 'snippet.example.com' });
    assert.equal(r.status, 404);
    assert.ok(!r.body.includes('pwned'));
    assert.equal((await get(url('/'), { host: 'waf.example.com' })).status, 404);
    // The other Ingresses are unaffected.
    assert.equal((await get(url('/'), { host: 'canary.example.com' })).status, 200);
  });

  test('service-upstream: requests go to the ClusterIP, not the endpoints', async () => {
    assert.equal((await get(url('/'), { host: 'vip.example.com' })).json?.name, 'web');
    assert.equal((await get(url('/'), { host: 'endpoints.example.com' })).json?.name, 'other');
  });

  test('default-backend: a Service without ready endpoints is replaced by the default backend, with X-Code and the names', async () => {
    const r = await get(url('/page'), { host: 'fallback.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.json?.name, 'other');
    assert.equal(r.json?.url, '/page');
    assert.equal(r.json?.headers['x-code'], '503');
    assert.equal(r.json?.headers['x-ingress-name'], 'fallback');
    assert.equal(r.json?.headers['x-service-name'], 'empty');
    assert.equal(r.json?.headers['x-namespace'], 'default');
  });

  test('mirror-target: every request is copied to the mirror, the client gets the main answer', async () => {
    const before = counted;
    const r = await get(url('/m?x=1'), { host: 'mirrored.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.json?.name, 'web');
    const deadline = Date.now() + 5000;
    while (counted === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    assert.equal(counted, before + 1, 'the mirror got one copy');
    assert.equal(lastCountedUrl, '/m?x=1');
    assert.equal(lastCountedHeaders.host, 'mirror.default.svc.cluster.local', 'ingress-nginx: the copy\'s Host is the mirror-target\'s host');
  });

  test('mirror-host sets the copy\'s Host; mirror-request-body "off" sends the copy without the body', async () => {
    const before = counted;
    const r = await get(url('/post?y=2'), { host: 'mirrored-nobody.example.com', method: 'POST', body: 'payload-bytes' });
    assert.equal(r.status, 200);
    assert.equal(r.json?.body, 'payload-bytes', 'the backend gets the body');
    const deadline = Date.now() + 5000;
    while (counted === before && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
    assert.equal(counted, before + 1);
    await new Promise((res) => setTimeout(res, 100));
    assert.equal(lastCountedUrl, '/post?y=2');
    assert.equal(lastCountedHeaders.host, 'copy.example.com');
    assert.equal(lastCountedBody, 0);
    assert.equal(lastCountedHeaders['content-length'] ?? '0', '0');
  });

  test('auth-type digest: 401 with a Digest challenge; a correct MD5 qop=auth response passes, a wrong password or another URI does not', async () => {
    const first = await get(url('/secret?a=1'), { host: 'digest.example.com' });
    assert.equal(first.status, 401);
    const challenge = String(first.headers['www-authenticate']);
    assert.match(challenge, /^Digest algorithm="MD5", qop="auth", realm="digest-realm", nonce="[^"]+"$/);
    const nonce = /nonce="([^"]+)"/.exec(challenge)![1];
    const md5 = (s: string) => createHash('md5').update(s).digest('hex');
    const auth = (password: string, uri: string) => {
      const ha1 = md5(`foo:digest-realm:${password}`);
      const response = md5(`${ha1}:${nonce}:00000001:abcdef:auth:${md5(`GET:${uri}`)}`);
      return `Digest username="foo", realm="digest-realm", nonce="${nonce}", uri="${uri}", qop=auth, nc=00000001, cnonce="abcdef", response="${response}", algorithm=MD5`;
    };
    const ok = await get(url('/secret?a=1'), { host: 'digest.example.com', headers: { authorization: auth('secret pw', '/secret?a=1') } });
    assert.equal(ok.status, 200);
    assert.equal(ok.json?.headers.authorization, undefined);
    assert.equal((await get(url('/secret?a=1'), { host: 'digest.example.com', headers: { authorization: auth('wrong', '/secret?a=1') } })).status, 401);
    assert.equal((await get(url('/other'), { host: 'digest.example.com', headers: { authorization: auth('secret pw', '/secret?a=1') } })).status, 401);
  });

  test('proxy-next-upstream http_502 with 2 tries: a 502 is retried and the client gets the second answer; "off" returns the 502', async () => {
    const before = flakyCalls;
    const r = await get(url('/x'), { host: 'retry.example.com' });
    assert.equal(r.status, 200, r.body);
    assert.equal(flakyCalls - before, 2);
    if (flakyCalls % 2 === 1) await get(url('/align'), { host: 'retry.example.com' });
    const n = await get(url('/y'), { host: 'noretry.example.com' });
    assert.equal(n.status, 502);
  });

  test('proxy-next-upstream default (error timeout, 3 tries): a GET whose connection broke is retried without any annotation', async () => {
    if (resetCalls % 2 === 1) await get(url('/align'), { host: 'default-retry.example.com' });
    const before = resetCalls;
    const r = await get(url('/a'), { host: 'default-retry.example.com' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, 'second try');
    assert.equal(resetCalls - before, 2, 'the first try was dropped by the backend, the second answered');
  });

  test('proxy-next-upstream default: a POST that reached the backend is never retried (nginx non-idempotent rule); non_idempotent allows it', async () => {
    if (resetCalls % 2 === 1) await get(url('/align'), { host: 'default-retry.example.com' });
    const before = resetCalls;
    const p = await get(url('/p'), { host: 'default-retry.example.com', method: 'POST', body: 'x=1' });
    // An upstream reset on an Ingress route is 502, as nginx answers it. What matters: not sent twice.
    assert.equal(p.status, 502, `a POST must not be sent twice: ${p.body}`);
    assert.equal(resetCalls - before, 1);
    assert.deepEqual(resetMethods.slice(-1), ['POST']);
    if (resetCalls % 2 === 1) await get(url('/align'), { host: 'default-retry.example.com' });
    const again = resetCalls;
    const n = await get(url('/p'), { host: 'nonidem.example.com', method: 'POST', body: 'x=1' });
    assert.equal(n.status, 200, n.body);
    assert.equal(resetCalls - again, 2, 'with non_idempotent the POST is retried');
  });

  test('proxy-next-upstream default: a POST whose connection could not be made (nothing sent) is retried on the other endpoint', async () => {
    for (let i = 0; i < 6; i++) {
      const r = await get(url(`/post${i}`), { host: 'half-dead.example.com', method: 'POST', body: 'payload' });
      assert.equal(r.status, 200, `POST ${i}: ${r.body}`);
      assert.equal(r.json?.name, 'web');
    }
  });

  test('limit-connections 1: a second concurrent request of the same client is 503', async () => {
    const slow = get(url('/delay/3000'), { host: 'conns.example.com' });
    await new Promise((r) => setTimeout(r, 700));
    const second = await get(url('/'), { host: 'conns.example.com' });
    assert.equal(second.status, 503);
    assert.equal((await slow).status, 200);
    assert.equal((await get(url('/'), { host: 'conns.example.com' })).status, 200, 'the slot is free again');
  });

  test('canary-by-header-pattern: a matching value goes to the canary', async () => {
    const name = async (v?: string) => (await get(url('/'), { host: 'pattern.example.com', headers: v === undefined ? {} : { 'x-region': v } })).json?.name;
    assert.equal(await name('eu-west'), 'canary');
    assert.equal(await name('us-west'), 'canary');
    assert.equal(await name('ap-south'), 'web');
    assert.equal(await name(), 'web');
  });

  test('canary-weight 300 of canary-weight-total 1000: about 30% of requests reach the canary', async () => {
    let canary = 0;
    const n = 200;
    for (let i = 0; i < n; i++) if ((await get(url('/'), { host: 'half.example.com' })).json?.name === 'canary') canary++;
    // Binomial(200, 0.3): mean 60, sd 6.5; the bounds are 4.6 sd away.
    assert.ok(canary >= 30 && canary <= 90, `${canary} of ${n} went to the canary`);
  });

  test('custom-http-errors: a listed status is replaced by the default backend\'s page (GET /, X-Code and names); others pass through', async () => {
    const r = await get(url('/status/404?q=1'), { host: 'errors.example.com', headers: { accept: 'text/html' } });
    assert.equal(r.status, 404);
    assert.equal(r.headers['content-type'], 'text/html');
    assert.equal(r.body, '<h1>custom 404 page for /</h1>');
    assert.equal(lastErrorHeaders['x-code'], '404');
    assert.equal(lastErrorHeaders['x-original-uri'], '/status/404?q=1');
    assert.equal(lastErrorHeaders['x-format'], 'text/html');
    assert.equal(lastErrorHeaders['x-ingress-name'], 'errors');
    assert.equal(lastErrorHeaders['x-service-name'], 'web');
    const other = await get(url('/status/500'), { host: 'errors.example.com' });
    assert.equal(other.status, 500);
    assert.equal(other.json?.name, 'web');
    const ok = await get(url('/fine'), { host: 'errors.example.com' });
    assert.equal(ok.status, 200);
    assert.equal(ok.json?.url, '/fine');
  });

  test('proxy-redirect-from/-to: a Location starting with the prefix is rewritten, others are kept', async () => {
    const r = await get(url(`/headers?location=${encodeURIComponent('http://internal:8080/app/x?y=1')}`), { host: 'relocate.example.com' });
    assert.equal(r.headers.location, 'https://public.example.com/app/x?y=1');
    const other = await get(url(`/headers?location=${encodeURIComponent('https://elsewhere.example.com/')}`), { host: 'relocate.example.com' });
    assert.equal(other.headers.location, 'https://elsewhere.example.com/');
  });
});
