/**
 * ingress-nginx HTTPS redirects end to end, as lua_ingress.lua `rewrite()` answers them: ssl-redirect
 * per path (two Ingresses on one host, one with ssl-redirect "false"), the Location without the port
 * (whatever port meshgate serves HTTPS on) unless use-port-in-redirects, then with the HTTPS port even
 * when it is 443, http-redirect-code from the ConfigMap, and requests matching no path following the
 * first Ingress of the host. Real `meshgate run`, echo backends on loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, created: string, host: string, path: string, annotations: Record<string, string>, tls = false): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, creationTimestamp: "${created}", annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
${tls ? `  tls: [{ hosts: [${host}], secretName: demo-tls }]\n` : ''}  rules:
    - host: ${host}
      http: { paths: [{ path: ${path}, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }] }
`;
}

describe('ingress-nginx HTTPS redirects', { timeout: 120_000 }, () => {
  let echo: Echo;
  const dirs: string[] = [];
  const gws: GatewayProcess[] = [];

  async function start(files: Record<string, string>, args: string[]): Promise<GatewayProcess> {
    const dir = tempDir();
    dirs.push(dir);
    for (const [name, text] of Object.entries(files)) writeConfig(dir, name, text);
    const gw = await startGateway({ configDir: dir, args });
    gws.push(gw);
    return gw;
  }

  // HTTPS port not reachable as 443 (no --port-map entry for it).
  let odd: GatewayProcess;
  // HTTPS port mapped from 443 (the helper's --port-map), ConfigMap use-port-in-redirects and http-redirect-code.
  let mapped: GatewayProcess;

  before(async () => {
    echo = await startEchoServer({ name: 'web' });
    const secret = tlsSecret('demo-tls', 'default', makeCert('', 'demo.example.com', ['demo.example.com', 'other.example.com']));
    odd = await start(
      {
        'services.yaml': serviceYaml('web', [echo.port]),
        'secrets.yaml': secret,
        'ingress.yaml': [
          ingress('secure', '2026-01-01T00:00:00Z', 'demo.example.com', '/app', {}, true),
          ingress('plain', '2026-01-02T00:00:00Z', 'demo.example.com', '/public', { 'ssl-redirect': 'false' }),
          ingress('ported', '2026-01-03T00:00:00Z', 'demo.example.com', '/ported', { 'use-port-in-redirects': 'true', 'preserve-trailing-slash': 'true' }),
        ].join('---\n'),
      },
      // The last --port-map wins: nothing maps to the HTTPS port, so clients reach it as itself.
      ['--port-map', '81=1'],
    );
    mapped = await start(
      {
        'services.yaml': serviceYaml('web', [echo.port]),
        'secrets.yaml': secret,
        'configmap.yaml': `apiVersion: v1
kind: ConfigMap
metadata: { name: ingress-nginx-controller, namespace: ingress-nginx }
data: { use-port-in-redirects: "true", http-redirect-code: "301", use-forwarded-headers: "true" }
`,
        'ingress.yaml': [
          ingress('first', '2026-01-01T00:00:00Z', 'other.example.com', '/a', {}, true),
          ingress('second', '2026-01-02T00:00:00Z', 'other.example.com', '/b', { 'use-port-in-redirects': 'false' }),
        ].join('---\n'),
      },
      ['--nginx-configmap', 'ingress-nginx/ingress-nginx-controller'],
    );
  });

  after(async () => {
    for (const gw of gws) await gw.stop();
    await echo?.close();
    for (const d of dirs) removeDir(d);
  });

  test('ssl-redirect is per path: two Ingresses on one host, the one with ssl-redirect "false" is proxied over HTTP', async () => {
    const url = (p: string) => `http://127.0.0.1:${odd.httpPort}${p}`;
    const r = await get(url('/app/x?y=1'), { host: 'demo.example.com' });
    assert.equal(r.status, 308, r.body);
    assert.equal(r.headers.location, 'https://demo.example.com/app/x?y=1', 'no port in the Location, though meshgate serves HTTPS on another port than 443');
    const p = await get(url('/public/x?y=1'), { host: 'demo.example.com' });
    assert.equal(p.status, 200, `the path of the ssl-redirect "false" Ingress is proxied: ${p.status} ${String(p.headers.location)}`);
    assert.equal(p.json?.name, 'web');
    assert.equal(p.json?.path, '/public/x');
    // The host's port in Host is left out; one trailing slash is left out (preserve-trailing-slash false).
    const h = await get(url('/app/dir/'), { host: `demo.example.com:${odd.httpPort}` });
    assert.equal(h.headers.location, 'https://demo.example.com/app/dir');
    // A path no Ingress defines: the implicit root location of the host's first Ingress ("secure") redirects.
    const none = await get(url('/nowhere'), { host: 'demo.example.com' });
    assert.equal(none.status, 308);
    assert.equal(none.headers.location, 'https://demo.example.com/nowhere');
    // Over HTTPS every path is proxied.
    assert.equal((await getTls(odd.httpsPort, '/app/x', { host: 'demo.example.com' })).json?.name, 'web');
  });

  test('use-port-in-redirects: the Location names the HTTPS port, and it is where the request is served', async () => {
    const r = await get(`http://127.0.0.1:${odd.httpPort}/ported/y/`, { host: 'demo.example.com' });
    assert.equal(r.status, 308, r.body);
    assert.equal(r.headers.location, `https://demo.example.com:${odd.httpsPort}/ported/y/`, 'the HTTPS port, and the slash kept (preserve-trailing-slash on this path only)');
    const loc = new URL(String(r.headers.location));
    const followed = await getTls(Number(loc.port), `${loc.pathname}${loc.search}`, { host: loc.hostname });
    assert.equal(followed.status, 200);
    assert.equal(followed.json?.path, '/ported/y/');
  });

  test('ConfigMap use-port-in-redirects names 443 too, an annotation "false" overrides it, and http-redirect-code sets the status', async () => {
    const url = (p: string) => `http://127.0.0.1:${mapped.httpPort}${p}`;
    const a = await get(url('/a/x'), { host: 'other.example.com' });
    assert.equal(a.status, 301, a.body);
    assert.equal(a.headers.location, 'https://other.example.com:443/a/x', 'use-port-in-redirects writes the HTTPS port as clients reach it (--port-map 443), 443 included');
    const b = await get(url('/b/x'), { host: 'other.example.com' });
    assert.equal(b.status, 301, b.body);
    assert.equal(b.headers.location, 'https://other.example.com/b/x');
  });

  test('use-forwarded-headers: X-Forwarded-Proto https (TLS offloaded in front) is proxied; http or none is redirected', async () => {
    const url = (p: string) => `http://127.0.0.1:${mapped.httpPort}${p}`;
    const offloaded = await get(url('/a/x'), { host: 'other.example.com', headers: { 'x-forwarded-proto': 'https' } });
    assert.equal(offloaded.status, 200, `no redirect loop behind a TLS-offloading proxy: ${offloaded.status} ${String(offloaded.headers.location)}`);
    assert.equal(offloaded.json?.name, 'web');
    assert.equal((await get(url('/a/x'), { host: 'other.example.com', headers: { 'x-forwarded-proto': 'http' } })).status, 301);
    assert.equal((await get(url('/nowhere'), { host: 'other.example.com', headers: { 'x-forwarded-proto': 'https' } })).status, 404, 'no path and no default backend: 404, not a redirect');
    assert.equal((await get(url('/nowhere'), { host: 'other.example.com' })).status, 301);
  });

  test('use-forwarded-headers: the upstream gets X-Forwarded-Proto/-Port/-Host and Host from the proxy in front (pass_access_scheme, pass_port, best_http_host)', async () => {
    const url = (p: string) => `http://127.0.0.1:${mapped.httpPort}${p}`;
    const r = await get(url('/a/x'), { host: 'other.example.com', headers: { 'x-forwarded-proto': 'https', 'x-forwarded-port': '8443', 'x-forwarded-host': 'shop.example.org, inner', proxy: 'http://evil.example:3128' } });
    assert.equal(r.status, 200, r.body);
    const h = r.json!.headers;
    assert.equal(h['x-forwarded-proto'], 'https');
    assert.equal(h['x-forwarded-scheme'], 'https');
    assert.equal(h['x-scheme'], 'https');
    assert.equal(h['x-forwarded-port'], '8443');
    assert.equal(h['x-forwarded-host'], 'shop.example.org');
    assert.equal(h.host, 'shop.example.org', 'proxy_set_header Host $best_http_host');
    assert.equal(h['x-original-forwarded-host'], 'shop.example.org, inner');
    assert.equal(h['x-real-ip'], '127.0.0.1');
    assert.equal(h.proxy, undefined, 'httpoxy: the Proxy header never reaches the backend');
  });

  test('use-forwarded-headers: the redirect goes to X-Forwarded-Host (its first entry, port dropped); an invalid one is ignored', async () => {
    const url = (p: string) => `http://127.0.0.1:${mapped.httpPort}${p}`;
    const xfh = await get(url('/b/x'), { host: 'other.example.com', headers: { 'x-forwarded-proto': 'http', 'x-forwarded-host': 'shop.example.org:8080, inner.example.com' } });
    assert.equal(xfh.status, 301, xfh.body);
    assert.equal(xfh.headers.location, 'https://shop.example.org/b/x', 'lua_ingress.lua redirect_host(): best_http_host without its port');
    const portInRedirect = await get(url('/a/x'), { host: 'other.example.com', headers: { 'x-forwarded-host': 'shop.example.org' } });
    assert.equal(portInRedirect.headers.location, 'https://shop.example.org:443/a/x');
    // Only a host name or IP literal is ever written into Location.
    for (const bad of ['evil.example.com/x', 'a b', 'user@evil.example.com', '']) {
      const r = await get(url('/b/x'), { host: 'other.example.com', headers: { 'x-forwarded-host': bad } });
      assert.equal(r.headers.location, 'https://other.example.com/b/x', `X-Forwarded-Host ${JSON.stringify(bad)}`);
    }
    const v6 = await get(url('/b/x'), { host: 'other.example.com', headers: { 'x-forwarded-host': '[2001:db8::1]:8443' } });
    assert.equal(v6.headers.location, 'https://[2001:db8::1]/b/x');
  });
});
