/**
 * ingress-nginx session affinity end to end (balancer/sticky_balanced.lua, sticky_persistent.lua,
 * sticky.lua, balancer.lua route_to_alternative_balancer): affinity-mode persistent vs balanced when
 * endpoints are added, session-cookie-change-on-failure when the cookie's endpoint fails, and
 * affinity-canary-behavior sticky vs legacy. Real `meshgate run`, echo backends on loopback.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, service: string, annotations: Record<string, string>): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: ${service}, port: { number: 80 } } } }] }
`;
}

const cookieOf = (setCookie: string | string[] | undefined, name: string): string | null => {
  const lines = Array.isArray(setCookie) ? setCookie : setCookie === undefined ? [] : [setCookie];
  const line = lines.find((l) => l.startsWith(`${name}=`));
  return line === undefined ? null : line.split(';')[0];
};

describe('ingress-nginx session affinity', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const echoes: Echo[] = [];
  const url = (p: string) => `http://127.0.0.1:${gw.httpPort}${p}`;
  // A backend that answers like an echo ("toggle") until told to fail: then it drops every connection.
  let failing = false;
  let toggleHits = 0;
  const toggle = http.createServer((req, res) => {
    toggleHits++;
    if (failing) return void req.socket.destroy();
    req.resume();
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name: 'toggle', method: req.method, url: req.url, path: req.url, headers: req.headers, body: '' }));
  });
  let togglePort = 0;
  const ports = (n: number) => echoes.slice(0, n).map((e) => e.port);

  function services(n: number): string {
    return [
      serviceYaml('persist', ports(n)),
      serviceYaml('balance', ports(n)),
      serviceYaml('probe', ports(n)),
      serviceYaml('flip-change', [togglePort, echoes[0].port]),
      serviceYaml('flip-keep', [togglePort, echoes[0].port]),
      serviceYaml('main', [echoes[0].port]),
      serviceYaml('canary', [echoes[1].port]),
      serviceYaml('main-legacy', [echoes[2].port]),
      serviceYaml('canary-legacy', [echoes[3].port]),
      serviceYaml('subset', echoes.map((e) => e.port)),
    ].join('---\n');
  }

  /** Waits until the round-robin "probe" Service reaches all of the first `n` echoes (the reload applied). */
  async function waitForEndpoints(n: number): Promise<void> {
    const want = new Set(echoes.slice(0, n).map((e) => e.name));
    await waitFor(async () => {
      const seen = new Set<string>();
      for (let i = 0; i < n * 3; i++) seen.add(String((await get(url('/'), { host: 'probe.example.com' })).json?.name));
      return [...want].every((w) => seen.has(w)) && seen.size === n;
    }, 20_000, `${n} endpoints in the probe Service`);
  }

  before(async () => {
    for (let i = 0; i < 5; i++) echoes.push(await startEchoServer({ name: `e${i}` }));
    await new Promise<void>((r) => toggle.listen(0, '127.0.0.1', r));
    togglePort = (toggle.address() as AddressInfo).port;
    writeConfig(dir, 'services.yaml', services(2));
    writeConfig(dir, 'ingress.yaml', [
      ingress('persist', 'persist.example.com', 'persist', { affinity: 'cookie', 'affinity-mode': 'persistent' }),
      ingress('balance', 'balance.example.com', 'balance', { affinity: 'cookie', 'affinity-mode': 'balanced' }),
      ingress('probe', 'probe.example.com', 'probe', {}),
      ingress('subset', 'subset.example.com', 'subset', { 'upstream-hash-by': '$arg_user', 'upstream-hash-by-subset': 'true' }),
      ingress('flip-change', 'flip-change.example.com', 'flip-change', { affinity: 'cookie', 'session-cookie-change-on-failure': 'true', 'session-cookie-name': 'sticky' }),
      ingress('flip-keep', 'flip-keep.example.com', 'flip-keep', { affinity: 'cookie', 'affinity-mode': 'persistent', 'session-cookie-name': 'sticky' }),
      ingress('main', 'canary.example.com', 'main', { affinity: 'cookie', 'session-cookie-name': 'affinity' }),
      ingress('canary', 'canary.example.com', 'canary', { canary: 'true', 'canary-by-header': 'ForceCanary', 'canary-by-header-value': 'yes', 'canary-weight': '1' }),
      ingress('main-legacy', 'legacy.example.com', 'main-legacy', { affinity: 'cookie', 'session-cookie-name': 'affinity' }),
      ingress('canary-legacy', 'legacy.example.com', 'canary-legacy', { canary: 'true', 'canary-by-header': 'ForceCanary', 'canary-by-header-value': 'yes', 'canary-weight': '50', 'affinity-canary-behavior': 'legacy' }),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const e of echoes) await e.close();
    toggle.closeAllConnections();
    await new Promise<void>((r) => toggle.close(() => r()));
    removeDir(dir);
  });

  test('affinity-mode persistent keeps every client when endpoints are added; balanced re-balances some; a vanished endpoint\'s client gets a new cookie', async () => {
    // 16 clients per host, each with the cookie the gateway issued and the endpoint that served it.
    const clients = async (host: string) => {
      const out: { cookie: string; name: string }[] = [];
      for (let i = 0; i < 16; i++) {
        const r = await get(url('/'), { host });
        const cookie = cookieOf(r.headers['set-cookie'], 'INGRESSCOOKIE');
        assert.ok(cookie !== null, `a new client gets the cookie: ${JSON.stringify(r.headers['set-cookie'])}`);
        assert.match(cookie, /^INGRESSCOOKIE=[0-9a-f]+\|[0-9a-f]{32}$/, 'the value is <key>|<backend key>, as ingress-nginx');
        out.push({ cookie, name: String(r.json?.name) });
      }
      return out;
    };
    const persistent = await clients('persist.example.com');
    const balanced = await clients('balance.example.com');
    writeConfig(dir, 'services.yaml', services(5));
    await waitForEndpoints(5);
    let balancedMoved = 0;
    for (const c of persistent) {
      const r = await get(url('/'), { host: 'persist.example.com', headers: { cookie: c.cookie } });
      assert.equal(r.json?.name, c.name, 'persistent: a client never moves to an added endpoint');
      assert.equal(r.headers['set-cookie'], undefined, 'a valid cookie is not re-issued');
    }
    for (const c of balanced) {
      const r = await get(url('/'), { host: 'balance.example.com', headers: { cookie: c.cookie } });
      if (r.json?.name !== c.name) balancedMoved++;
      assert.equal(r.headers['set-cookie'], undefined, 'balanced keeps the cookie; its key is re-hashed');
    }
    // 2 -> 5 endpoints: ingress-nginx documents (n-c)/n = 60% of balanced clients moving.
    assert.ok(balancedMoved >= 3, `balanced: some clients move to the new endpoints (${balancedMoved} of 16 moved)`);

    // Back to 2 endpoints: persistent clients of e2..e4 get another endpoint and a new cookie.
    const onRemoved = (await clients('persist.example.com')).concat(persistent);
    writeConfig(dir, 'services.yaml', services(2));
    await waitForEndpoints(2);
    for (const c of onRemoved) {
      const r = await get(url('/'), { host: 'persist.example.com', headers: { cookie: c.cookie } });
      assert.equal(r.status, 200);
      const fresh = cookieOf(r.headers['set-cookie'], 'INGRESSCOOKIE');
      if (c.name === 'e0' || c.name === 'e1') {
        assert.equal(r.json?.name, c.name);
        assert.equal(fresh, null);
      } else {
        assert.ok(fresh !== null && fresh !== c.cookie, `a client of the removed ${c.name} gets a new cookie`);
        const again = await get(url('/'), { host: 'persist.example.com', headers: { cookie: fresh } });
        assert.equal(again.json?.name, r.json?.name, 'the new cookie names the endpoint that served the request');
      }
    }
  });

  test('session-cookie-change-on-failure: the retry re-issues the cookie for the new endpoint; without it every try goes to the cookie\'s endpoint and the cookie is kept', async () => {
    failing = false;
    // A client whose cookie points at the toggle backend, on each host.
    const stuckOn = async (host: string): Promise<string> => {
      for (let i = 0; i < 60; i++) {
        const r = await get(url('/'), { host });
        if (r.json?.name === 'toggle') return cookieOf(r.headers['set-cookie'], 'sticky')!;
      }
      throw new Error(`no cookie for the toggle backend on ${host} in 60 tries`);
    };
    const change = await stuckOn('flip-change.example.com');
    const keep = await stuckOn('flip-keep.example.com');
    for (let i = 0; i < 3; i++) assert.equal((await get(url('/'), { host: 'flip-change.example.com', headers: { cookie: change } })).json?.name, 'toggle');
    failing = true;
    try {
      const before = toggleHits;
      const r = await get(url('/'), { host: 'flip-change.example.com', headers: { cookie: change } });
      assert.equal(r.status, 200, r.body);
      assert.equal(r.json?.name, 'e0', 'the failed try is retried on the other endpoint');
      assert.ok(toggleHits > before, 'the first try went to the cookie\'s endpoint');
      const renewed = cookieOf(r.headers['set-cookie'], 'sticky');
      assert.ok(renewed !== null && renewed !== change, `the cookie is re-issued: ${JSON.stringify(r.headers['set-cookie'])}`);
      const hitsNow = toggleHits;
      for (let i = 0; i < 4; i++) {
        const n = await get(url('/'), { host: 'flip-change.example.com', headers: { cookie: renewed } });
        assert.equal(n.json?.name, 'e0', 'the new cookie names the endpoint that answered');
        assert.equal(n.headers['set-cookie'], undefined);
      }
      assert.equal(toggleHits, hitsNow, 'the failed endpoint is not tried again with the new cookie');

      // Without change-on-failure (sticky.lua balance()): every try of a client with a cookie goes to
      // the cookie's endpoint, proxy-next-upstream-tries (3) times, and the cookie is kept.
      const keepBefore = toggleHits;
      const k = await get(url('/'), { host: 'flip-keep.example.com', headers: { cookie: keep } });
      // An upstream reset on an Ingress route: 502, as nginx answers it (flag UC).
      assert.equal(k.status, 502, `all tries failed on the cookie's endpoint: ${k.status} ${k.body}`);
      assert.equal(toggleHits - keepBefore, 3, 'the three tries all went to the cookie\'s endpoint');
      assert.equal(cookieOf(k.headers['set-cookie'], 'sticky'), null, 'without change-on-failure the cookie is kept');
      // A client without a cookie: its retry goes to another endpoint, and the cookie names the one that answered.
      let retried = 0;
      for (let i = 0; i < 30 && retried === 0; i++) {
        const hits = toggleHits;
        const n = await get(url('/'), { host: 'flip-keep.example.com' });
        assert.equal(n.status, 200, n.body);
        assert.equal(n.json?.name, 'e0');
        if (toggleHits === hits) continue;
        retried++;
        const fresh = cookieOf(n.headers['set-cookie'], 'sticky');
        assert.ok(fresh !== null, 'a new client gets a cookie');
        const again = await get(url('/'), { host: 'flip-keep.example.com', headers: { cookie: fresh } });
        assert.equal(again.json?.name, 'e0', 'the cookie issued on the retry names the endpoint that answered');
        assert.equal(toggleHits, hits + 1, 'the failed endpoint is not tried again with that cookie');
      }
      assert.equal(retried, 1, 'in 30 new clients at least one first try went to the failing endpoint');
    } finally {
      failing = false;
    }
    assert.equal((await get(url('/'), { host: 'flip-keep.example.com', headers: { cookie: keep } })).json?.name, 'toggle', 'the kept cookie still names the recovered endpoint');
  });

  test('affinity-canary-behavior sticky (default): a cookie issued by the canary keeps the client on the canary; one issued by the main keeps it on the main', async () => {
    const forced = await get(url('/info'), { host: 'canary.example.com', headers: { forcecanary: 'yes' } });
    assert.equal(forced.json?.name, 'e1', 'the header sends the request to the canary');
    const canaryCookie = cookieOf(forced.headers['set-cookie'], 'affinity');
    assert.ok(canaryCookie !== null, 'the canary issues the affinity cookie (it inherits the main\'s affinity)');
    for (let i = 0; i < 20; i++) assert.equal((await get(url('/info'), { host: 'canary.example.com', headers: { cookie: canaryCookie } })).json?.name, 'e1', 'canary weight is 1%, the cookie keeps the client on the canary');
    let mainCookie: string | null = null;
    for (let i = 0; i < 20 && mainCookie === null; i++) {
      const r = await get(url('/info'), { host: 'canary.example.com' });
      if (r.json?.name === 'e0') mainCookie = cookieOf(r.headers['set-cookie'], 'affinity');
    }
    assert.ok(mainCookie !== null, 'the main issues its own cookie');
    assert.notEqual(mainCookie.split('|')[1], canaryCookie.split('|')[1], 'the backend keys differ');
    const r = await get(url('/info'), { host: 'canary.example.com', headers: { cookie: mainCookie, forcecanary: 'yes' } });
    assert.equal(r.json?.name, 'e0', 'a main cookie wins over the canary header (balancer.lua checks affinity first)');
  });

  test('upstream-hash-by-subset: one key is spread over one subset of 3 endpoints (random inside it); keys cover both subsets of 5 endpoints', async () => {
    const union = new Set<string>();
    for (let u = 0; u < 16; u++) {
      const seen = new Set<string>();
      for (let i = 0; i < 24; i++) seen.add(String((await get(url(`/?user=user${u}`), { host: 'subset.example.com' })).json?.name));
      assert.ok(seen.size >= 2 && seen.size <= 3, `user${u} reached ${[...seen]} (a subset of 3, picked at random)`);
      for (const n of seen) union.add(n);
    }
    assert.equal(union.size, 5, `the two subsets of 5 endpoints cover them all: ${[...union]}`);
  });

  test('affinity-canary-behavior legacy: the canary sets no affinity cookie, and clients without one are split by weight', async () => {
    const forced = await get(url('/info'), { host: 'legacy.example.com', headers: { forcecanary: 'yes' } });
    assert.equal(forced.json?.name, 'e3');
    assert.equal(cookieOf(forced.headers['set-cookie'], 'affinity'), null, 'legacy: no affinity cookie from the canary');
    const seen: Record<string, number> = {};
    for (let i = 0; i < 60; i++) {
      const name = String((await get(url('/info'), { host: 'legacy.example.com' })).json?.name);
      seen[name] = (seen[name] ?? 0) + 1;
    }
    assert.ok((seen.e2 ?? 0) >= 10 && (seen.e3 ?? 0) >= 10, `weight 50 splits between main and canary: ${JSON.stringify(seen)}`);
  });
});
