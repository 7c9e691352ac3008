/**
 * ingress-nginx external auth (`auth-url` and friends) against a real auth service on loopback, and
 * the controller ConfigMap (`--nginx-configmap NS/NAME`): global body limit, limit-req-status-code,
 * global allowlist with use-forwarded-headers, HSTS, ssl-protocols, a refused http-snippet, and a
 * ConfigMap change picked up without a restart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, service: string, annotations: Record<string, string>, tls = ''): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
${tls}  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: ${service}, port: { number: 80 } } } }] }
`;
}

describe('ingress-nginx auth-url', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Echo;
  const seen: { url: string; method: string; headers: http.IncomingHttpHeaders; bodyBytes: number }[] = [];
  const auth = http.createServer((req, res) => {
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => (bodyBytes += c.length));
    req.on('end', () => {
      seen.push({ url: req.url ?? '', method: req.method ?? '', headers: req.headers, bodyBytes });
      if (req.url === '/boom') return void res.writeHead(502).end();
      if (req.url === '/forbid') return void res.writeHead(403).end();
      if (req.url === '/cached' || req.url === '/nostore') {
        // Cacheable answers (no Set-Cookie); the header says which auth request produced them.
        const extra = req.url === '/nostore' ? { 'cache-control': 'no-store' } : {};
        if (req.headers['x-token'] === 'good') return void res.writeHead(200, { 'x-auth-user': `alice-${seen.length}`, ...extra }).end();
        return void res.writeHead(401, { 'www-authenticate': 'Bearer realm="cached"', ...extra }).end();
      }
      if (req.headers['x-token'] === 'good') {
        res.writeHead(202, { 'x-auth-user': 'alice', 'set-cookie': 'session=abc; Path=/' });
        return void res.end();
      }
      res.writeHead(401, { 'www-authenticate': 'Bearer realm="test"' });
      res.end('no');
    });
  });
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    await new Promise<void>((r) => auth.listen(0, '127.0.0.1', r));
    const authPort = (auth.address() as AddressInfo).port;
    writeConfig(dir, 'services.yaml', [serviceYaml('web', [web.port]), serviceYaml('auth', [authPort]), 'apiVersion: v1\nkind: ConfigMap\nmetadata: { name: auth-headers, namespace: default }\ndata: { X-Auth-Client: shop }\n'].join('---\n'));
    writeConfig(dir, 'ingress.yaml', [
      ingress('protected', 'protected.example.com', 'web', { 'auth-url': 'http://auth.default.svc.cluster.local/check', 'auth-response-headers': 'X-Auth-User' }),
      ingress('signin', 'signin.example.com', 'web', { 'auth-url': 'http://auth.default.svc.cluster.local/check', 'auth-signin': 'https://login.example.com/start' }),
      ingress('forbid', 'forbid.example.com', 'web', { 'auth-url': 'http://auth/forbid' }),
      ingress('boom', 'boom.example.com', 'web', { 'auth-url': 'http://auth/boom' }),
      ingress('post', 'post.example.com', 'web', { 'auth-url': 'http://auth/check', 'auth-method': 'GET', 'auth-proxy-set-headers': 'auth-headers' }),
      ingress('cached', 'cached.example.com', 'web', { 'auth-url': 'http://auth/cached', 'auth-response-headers': 'X-Auth-User', 'auth-cache-key': '$http_x_token', 'auth-cache-duration': '200 2s, 401 1s' }),
      ingress('nostore', 'nostore.example.com', 'web', { 'auth-url': 'http://auth/nostore', 'auth-cache-key': '$http_x_token' }),
      // The oauth2-proxy pattern: $host in the auth-url's host (resolved per rule host: here the auth Service's name).
      ingress('vars', 'auth.default.svc.cluster.local', 'web', { 'auth-url': 'http://$host/check?uri=$escaped_request_uri&team=$http_x_team&u=$arg_user', 'auth-signin': 'https://$host/oauth2/start?rd=$escaped_request_uri', 'server-alias': 'auth.default.svc' }),
      ingress('vars-signin', 'vars-signin.example.com', 'web', { 'auth-url': 'http://auth/check', 'auth-signin': 'http://$host/auth/start' }),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await web.close();
    auth.closeAllConnections();
    await new Promise<void>((r) => auth.close(() => r()));
    removeDir(dir);
  });

  test('2xx from the auth service allows: auth-response-headers reach the backend (a client-sent value replaced), Set-Cookie reaches the client', async () => {
    const r = await get(url('/page?a=b'), { host: 'protected.example.com', headers: { 'x-token': 'good', 'x-auth-user': 'mallory' } });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.json?.headers['x-auth-user'], 'alice');
    assert.equal(r.json?.url, '/page?a=b');
    assert.match(String(r.headers['set-cookie']), /session=abc/);
    const check = seen[seen.length - 1];
    assert.equal(check.url, '/check');
    assert.equal(check.headers['x-original-url'], 'http://protected.example.com/page?a=b');
    assert.equal(check.headers['x-original-method'], 'GET');
    assert.equal(check.headers['x-sent-from'], 'nginx-ingress-controller');
    assert.equal(check.headers.host, 'auth.default.svc.cluster.local');
  });

  test('headers meshgate sets for the auth service cannot be forged by the client (only meshgate\'s value reaches it)', async () => {
    const forged = { 'x-token': 'good', 'x-original-url': 'http://protected.example.com/public/health', 'x-original-method': 'HEAD', 'x-original-uri': '/public/health', 'x-real-ip': '10.9.9.9', 'x-sent-from': 'evil', 'x-auth-request-redirect': '/evil' };
    const r = await get(url('/admin/delete'), { host: 'protected.example.com', headers: forged });
    assert.equal(r.status, 200, r.body);
    const check = seen[seen.length - 1];
    assert.equal(check.headers['x-original-url'], 'http://protected.example.com/admin/delete');
    assert.equal(check.headers['x-original-method'], 'GET');
    assert.equal(check.headers['x-sent-from'], 'nginx-ingress-controller');
    assert.equal(check.headers['x-auth-request-redirect'], '/admin/delete');
    assert.notEqual(check.headers['x-real-ip'], '10.9.9.9');
    assert.doesNotMatch(String(check.headers['x-real-ip']), /,/);
  });

  test('401 is returned with the service\'s WWW-Authenticate; the backend is not called', async () => {
    const r = await get(url('/page'), { host: 'protected.example.com' });
    assert.equal(r.status, 401);
    assert.equal(r.headers['www-authenticate'], 'Bearer realm="test"');
    assert.equal(r.json, null);
  });

  test('auth-signin: 401 becomes a 302 to the sign-in URL with rd=<original URL>', async () => {
    const r = await get(url('/page?a=b'), { host: 'signin.example.com' });
    assert.equal(r.status, 302);
    // ingress-nginx: rd=$pass_access_scheme://$http_host$escaped_request_uri (e2e annotations/auth.go).
    assert.equal(r.headers.location, `https://login.example.com/start?rd=http://signin.example.com${encodeURIComponent('/page?a=b')}`);
  });

  test('nginx variables in auth-url: $host picks the auth target of the request\'s host; path and query variables are evaluated and escaped', async () => {
    const r = await get(url('/page?a=b&user=bob'), { host: 'auth.default.svc.cluster.local', headers: { 'x-token': 'good', 'x-team': 'red&admin=1#x' } });
    assert.equal(r.status, 200, r.body);
    const check = seen[seen.length - 1];
    assert.equal(check.url, `/check?uri=${encodeURIComponent('/page?a=b&user=bob')}&team=${encodeURIComponent('red&admin=1#x')}&u=bob`, 'a header value cannot add a query parameter or a fragment');
    assert.equal(check.headers.host, 'auth.default.svc.cluster.local');
    await get(url('/page?user=../../admin'), { host: 'auth.default.svc.cluster.local', headers: { 'x-token': 'good' } });
    assert.equal(seen[seen.length - 1].url, `/check?uri=${encodeURIComponent('/page?user=../../admin')}&team=&u=..%2F..%2Fadmin`, 'an $arg_ value cannot climb a path');
    // A server-alias of the host: $host is the alias, resolved like a rule host (nginx resolves $host of the server's names).
    const before = seen.length;
    const alias = await get(url('/page?user=al'), { host: 'auth.default.svc', headers: { 'x-token': 'good' } });
    assert.equal(alias.status, 200, alias.body);
    assert.equal(seen.length, before + 1, 'one auth request for the alias');
    assert.equal(seen[seen.length - 1].headers.host, 'auth.default.svc');
    assert.equal(seen[seen.length - 1].url, `/check?uri=${encodeURIComponent('/page?user=al')}&team=&u=al`);
  });

  test('nginx variables in auth-signin: evaluated per request; rd appended as ingress-nginx does unless the URL sets it', async () => {
    const own = await get(url('/page?a=b&user=bob'), { host: 'auth.default.svc.cluster.local' });
    assert.equal(own.status, 302);
    assert.equal(own.headers.location, `https://auth.default.svc.cluster.local/oauth2/start?rd=${encodeURIComponent('/page?a=b&user=bob')}`);
    const appended = await get(url('/?a=b&c=d'), { host: 'vars-signin.example.com' });
    assert.equal(appended.status, 302);
    // The exact Location of ingress-nginx's e2e ("should redirect to signin url when not signed in").
    assert.equal(appended.headers.location, `http://vars-signin.example.com/auth/start?rd=http://vars-signin.example.com${encodeURIComponent('/?a=b&c=d')}`);
  });

  test('auth-cache-key/-duration: an answer is reused per evaluated key for its status\'s duration, then asked again', async () => {
    const calls = () => seen.filter((s) => s.url === '/cached').length;
    const before = calls();
    const first = await get(url('/one'), { host: 'cached.example.com', headers: { 'x-token': 'good' } });
    assert.equal(first.status, 200, first.body);
    const user = first.json?.headers['x-auth-user'];
    assert.match(String(user), /^alice-\d+$/);
    const second = await get(url('/two'), { host: 'cached.example.com', headers: { 'x-token': 'good' } });
    assert.equal(second.status, 200);
    assert.equal(second.json?.headers['x-auth-user'], user, 'the kept answer\'s auth-response-headers are used');
    assert.equal(calls() - before, 1, 'the second request with the same key was not sent to the auth service');
    // Another key: its own answer (401, kept 1 s).
    assert.equal((await get(url('/x'), { host: 'cached.example.com', headers: { 'x-token': 'bad' } })).status, 401);
    const denied = await get(url('/x'), { host: 'cached.example.com', headers: { 'x-token': 'bad' } });
    assert.equal(denied.status, 401);
    assert.equal(denied.headers['www-authenticate'], 'Bearer realm="cached"');
    assert.equal(calls() - before, 2);
    // After the 200's 2 s the auth service is asked again.
    await new Promise((r) => setTimeout(r, 2200));
    const later = await get(url('/three'), { host: 'cached.example.com', headers: { 'x-token': 'good' } });
    assert.equal(later.status, 200);
    assert.equal(calls() - before, 3);
    assert.notEqual(later.json?.headers['x-auth-user'], user);
  });

  test('auth-cache-key: an answer with Cache-Control no-store is not kept (nginx proxy_cache)', async () => {
    const calls = () => seen.filter((s) => s.url === '/nostore').length;
    const before = calls();
    for (let i = 0; i < 3; i++) assert.equal((await get(url(`/n${i}`), { host: 'nostore.example.com', headers: { 'x-token': 'good' } })).status, 200);
    assert.equal(calls() - before, 3);
  });

  test('403 from the auth service is 403; any other answer is 500', async () => {
    assert.equal((await get(url('/'), { host: 'forbid.example.com' })).status, 403);
    assert.equal((await get(url('/'), { host: 'boom.example.com' })).status, 500);
  });

  test('the auth request never carries the body; auth-method sets its method; auth-proxy-set-headers adds headers', async () => {
    const r = await get(url('/submit'), { host: 'post.example.com', method: 'POST', body: 'secret body', headers: { 'x-token': 'good' } });
    assert.equal(r.status, 200);
    assert.equal(r.json?.body, 'secret body');
    const check = seen[seen.length - 1];
    assert.equal(check.method, 'GET');
    assert.equal(check.bodyBytes, 0);
    assert.equal(check.headers['x-original-method'], 'POST');
    assert.equal(check.headers['x-auth-client'], 'shop', 'auth-proxy-set-headers');
  });
});

describe('ingress-nginx controller ConfigMap', { timeout: 120_000 }, () => {
  const dir = tempDir();
  const certDir = tempDir();
  let gw: GatewayProcess;
  let web: Echo;
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;
  const configMap = (bodySize: string) => `apiVersion: v1
kind: ConfigMap
metadata: { name: ingress-nginx-controller, namespace: ingress-nginx }
data:
  proxy-body-size: "${bodySize}"
  limit-req-status-code: "429"
  limit-conn-status-code: "509"
  proxy-next-upstream-tries: "1"
  hsts-max-age: "100"
  hsts-include-subdomains: "false"
  use-forwarded-headers: "true"
  ssl-protocols: "TLSv1.3"
  http-snippet: "server { listen 9999; }"
  allow-snippet-annotations: "true"
  log-format-upstream: 'nginxlog $host "$request" $status'
  add-headers: ingress-nginx/response-headers
  proxy-set-headers: ingress-nginx/request-headers
---
apiVersion: v1
kind: ConfigMap
metadata: { name: response-headers, namespace: ingress-nginx }
data: { X-Frame-Options: DENY }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: request-headers, namespace: ingress-nginx }
data: { X-Gateway: meshgate }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: team-headers, namespace: default }
data: { X-Team: shop }
`;

  // Drops the connection of every odd request without answering, answers the even ones.
  let resetCalls = 0;
  const resetter = http.createServer((req, res) => {
    resetCalls++;
    if (resetCalls % 2 === 1) return void req.socket.destroy();
    req.resume();
    res.end('second try');
  });

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    await new Promise<void>((r) => resetter.listen(0, '127.0.0.1', r));
    const cert = makeCert(certDir, 'secure.example.com');
    writeConfig(dir, 'services.yaml', [serviceYaml('web', [web.port]), serviceYaml('resetter', [(resetter.address() as AddressInfo).port])].join('---\n'));
    writeConfig(dir, 'secrets.yaml', tlsSecret('secure-tls', 'default', cert));
    writeConfig(dir, 'configmap.yaml', configMap('1k'));
    writeConfig(dir, 'ingress.yaml', [
      ingress('plain', 'plain.example.com', 'web', { 'custom-headers': 'team-headers' }),
      ingress('big', 'big.example.com', 'web', { 'proxy-body-size': '1m' }),
      ingress('limited', 'limited.example.com', 'web', { 'limit-rps': '1', 'limit-burst-multiplier': '1' }),
      ingress('conns', 'conns.example.com', 'web', { 'limit-connections': '1' }),
      ingress('once', 'once.example.com', 'resetter', {}),
      ingress('twice', 'twice.example.com', 'resetter', { 'proxy-next-upstream-tries': '2' }),
      ingress('acl', 'acl.example.com', 'web', { 'whitelist-source-range': '10.0.0.0/8' }),
      ingress('secure', 'secure.example.com', 'web', {}, '  tls: [{ hosts: [secure.example.com], secretName: secure-tls }]\n'),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir, args: ['--nginx-configmap', 'ingress-nginx/ingress-nginx-controller'] });
  });

  after(async () => {
    await gw?.stop();
    await web.close();
    resetter.closeAllConnections();
    await new Promise<void>((r) => resetter.close(() => r()));
    removeDir(dir);
    removeDir(certDir);
  });

  test('proxy-body-size from the ConfigMap applies to Ingresses without the annotation; an annotation overrides it', async () => {
    assert.equal((await get(url('/'), { host: 'plain.example.com', method: 'POST', body: 'a'.repeat(2000) })).status, 413);
    assert.equal((await get(url('/'), { host: 'plain.example.com', method: 'POST', body: 'a'.repeat(1000) })).status, 200);
    assert.equal((await get(url('/'), { host: 'big.example.com', method: 'POST', body: 'a'.repeat(2000) })).status, 200);
  });

  test('add-headers, proxy-set-headers (ConfigMap) and custom-headers (annotation)', async () => {
    const r = await get(url('/'), { host: 'plain.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-frame-options'], 'DENY');
    assert.equal(r.headers['x-team'], 'shop');
    assert.equal(r.json?.headers['x-gateway'], 'meshgate');
    const other = await get(url('/'), { host: 'big.example.com' });
    assert.equal(other.headers['x-frame-options'], 'DENY');
    assert.equal(other.headers['x-team'], undefined);
  });

  test('log-format-upstream becomes the access log (nginx variables mapped)', async () => {
    await get(url('/logged-path?x=1'), { host: 'big.example.com' });
    await waitFor(() => gw.output().includes('nginxlog big.example.com "GET /logged-path?x=1 HTTP/1.1" 200'), 10_000, 'the access-log line in nginx format');
  });

  test('limit-req-status-code: rate-limited requests get the ConfigMap status', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) statuses.push((await get(url(`/${i}`), { host: 'limited.example.com' })).status);
    assert.deepEqual(statuses.slice(0, 2), [200, 200], `statuses ${statuses}`);
    assert.ok(statuses.slice(2).includes(429), `statuses ${statuses}`);
  });

  test('limit-conn-status-code: a request over limit-connections gets the ConfigMap status', async () => {
    const slow = get(url('/delay/3000'), { host: 'conns.example.com' });
    await new Promise((r) => setTimeout(r, 700));
    assert.equal((await get(url('/'), { host: 'conns.example.com' })).status, 509);
    assert.equal((await slow).status, 200);
  });

  test('proxy-next-upstream-tries "1" in the ConfigMap turns the default retry off; an annotation turns it back on', async () => {
    if (resetCalls % 2 === 1) await get(url('/align'), { host: 'twice.example.com' });
    const before = resetCalls;
    const once = await get(url('/a'), { host: 'once.example.com' });
    assert.equal(once.status, 502, once.body);
    assert.equal(resetCalls - before, 1);
    // Realign: the next request is dropped by the backend again.
    if (resetCalls % 2 === 1) assert.equal((await get(url('/align'), { host: 'once.example.com' })).status, 200);
    const mark = resetCalls;
    const twice = await get(url('/b'), { host: 'twice.example.com' });
    assert.equal(twice.status, 200, twice.body);
    assert.equal(twice.body, 'second try');
    assert.equal(resetCalls - mark, 2, 'the dropped try was retried once');
  });

  test('use-forwarded-headers: the allowlist reads the client address from X-Forwarded-For', async () => {
    assert.equal((await get(url('/'), { host: 'acl.example.com' })).status, 403);
    assert.equal((await get(url('/'), { host: 'acl.example.com', headers: { 'x-forwarded-for': '10.1.2.3' } })).status, 200);
    assert.equal((await get(url('/'), { host: 'acl.example.com', headers: { 'x-forwarded-for': '192.0.2.1' } })).status, 403);
  });

  test('HSTS on HTTPS responses of hosts with a certificate; ssl-protocols TLSv1.3 only; plain HTTP is redirected with 308', async () => {
    const r = await getTls(gw.httpsPort, '/', { host: 'secure.example.com' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['strict-transport-security'], 'max-age=100');
    const redirect = await get(url('/x'), { host: 'secure.example.com' });
    assert.equal(redirect.status, 308);
    assert.equal(redirect.headers['strict-transport-security'], undefined);
    const tls12 = await new Promise<string>((resolve) => {
      import('node:tls').then((tls) => {
        const s = tls.connect({ host: '127.0.0.1', port: gw.httpsPort, servername: 'secure.example.com', rejectUnauthorized: false, maxVersion: 'TLSv1.2' });
        s.on('secureConnect', () => {
          const v = s.getProtocol() ?? '';
          s.destroy();
          resolve(v);
        });
        s.on('error', (e) => resolve(`error: ${e.message}`));
      });
    });
    assert.ok(tls12.startsWith('error') || tls12 === '', `a TLS 1.2-only client must be refused, got ${tls12}`);
  });

  test('a ConfigMap change is applied without a restart', async () => {
    writeConfig(dir, 'configmap.yaml', configMap('4k'));
    await waitFor(async () => (await get(url('/'), { host: 'plain.example.com', method: 'POST', body: 'a'.repeat(2000) })).status === 200, 15_000, 'the new proxy-body-size to apply');
  });
});
