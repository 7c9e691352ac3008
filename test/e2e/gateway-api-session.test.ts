/**
 * Gateway API HTTPRoute `sessionPersistence` (experimental) through the real `meshgate run` process,
 * against a Service with two endpoints: Cookie sessions (Session and Permanent lifetimes, the later
 * API shape `cookie: {name, path}`), Header sessions, `absoluteTimeout` and `idleTimeout` ending a
 * session (a new key, issued again), with real HTTP/1.1 clients.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** `name=value` of a Set-Cookie header for `name`, with its attributes. */
function setCookie(headers: Record<string, unknown>, name: string): { value: string; attributes: string } | null {
  const list = headers['set-cookie'];
  for (const line of Array.isArray(list) ? list : list === undefined ? [] : [String(list)]) {
    const m = new RegExp(`^${name}=([^;]*)(.*)$`).exec(String(line));
    if (m !== null) return { value: m[1], attributes: m[2] };
  }
  return null;
}

describe('Gateway API: sessionPersistence', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};
  const req = (p: string, headers: Record<string, string> = {}) => get(`http://127.0.0.1:${gw.httpPort}${p}`, { host: 'sticky.test', headers });

  before(async () => {
    for (const name of ['v1', 'v2']) e[name] = await startEchoServer({ name });
    writeConfig(dir, 'backends.yaml', serviceYaml('pair', [e.v1.port, e.v2.port]));
    writeConfig(dir, 'gateway.yaml', `
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: meshgate
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: sticky, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /session } }]
      sessionPersistence: { sessionName: sess, absoluteTimeout: 2s }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /permanent } }]
      sessionPersistence: { sessionName: perm, absoluteTimeout: 1h, cookieConfig: { lifetimeType: Permanent } }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /shaped } }]
      sessionPersistence: { type: Cookie, cookie: { name: shaped, path: /shaped } }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /header } }]
      sessionPersistence: { type: Header, sessionName: X-Session }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /idle } }]
      sessionPersistence: { sessionName: idle, idleTimeout: 2s }
      backendRefs: [{ name: pair, port: 80 }]
`);
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(e)) await x.close();
    removeDir(dir);
  });

  /** Requests with `send` headers; the set of backends that answered. */
  async function backends(p: string, n: number, send: Record<string, string> = {}): Promise<string[]> {
    const seen = new Set<string>();
    for (let i = 0; i < n; i++) seen.add((await req(p, send)).json?.name ?? '?');
    return [...seen].sort();
  }

  test('Cookie, Session lifetime: a session cookie (no Max-Age) keeps a client on one endpoint; without it requests spread', async () => {
    const first = await req('/session');
    const c = setCookie(first.headers, 'sess');
    assert.ok(c, `no session cookie in ${JSON.stringify(first.headers['set-cookie'])}`);
    assert.doesNotMatch(c.attributes, /Max-Age|Expires/i, 'a Session lifetime cookie has no Max-Age');
    assert.match(c.attributes, /Path=\//);
    const stuck = await backends('/session', 30, { cookie: `sess=${c.value}` });
    assert.deepEqual(stuck, [first.json?.name], 'every request of the session reaches the endpoint of its first answer');
    assert.deepEqual(await backends('/session', 40), ['v1', 'v2']);
  });

  test('absoluteTimeout: a session past it starts again (a new cookie), the old key is not honoured', async () => {
    const first = await req('/session');
    const c = setCookie(first.headers, 'sess');
    assert.ok(c);
    // Within the timeout the key is kept and not issued again.
    const again = await req('/session', { cookie: `sess=${c.value}` });
    assert.equal(setCookie(again.headers, 'sess'), null, 'a valid session is not issued again');
    await sleep(2400);
    const late = await req('/session', { cookie: `sess=${c.value}` });
    const renewed = setCookie(late.headers, 'sess');
    assert.ok(renewed, 'a new session cookie after absoluteTimeout');
    assert.notEqual(renewed.value.split('.')[0], c.value.split('.')[0], 'a new session id');
  });

  test('Cookie, Permanent lifetime: Max-Age is absoluteTimeout; the later API shape cookie {name, path} sets that name and path', async () => {
    const perm = setCookie((await req('/permanent')).headers, 'perm');
    assert.ok(perm);
    assert.match(perm.attributes, /Max-Age=3600/);
    const shaped = setCookie((await req('/shaped/x')).headers, 'shaped');
    assert.ok(shaped);
    assert.match(shaped.attributes, /Path=\/shaped/);
    assert.deepEqual((await backends('/shaped/x', 20, { cookie: `shaped=${shaped.value}` })).length, 1);
  });

  test('Header: the first answer carries the session header; sending it back keeps the endpoint', async () => {
    const first = await req('/header');
    const key = first.headers['x-session'];
    assert.equal(typeof key, 'string', `no x-session header in ${JSON.stringify(first.headers)}`);
    assert.deepEqual(await backends('/header', 30, { 'x-session': String(key) }), [first.json?.name]);
    // A key the gateway did not issue starts a new session.
    const forged = await req('/header', { 'x-session': 'not-a-session' });
    assert.notEqual(forged.headers['x-session'], undefined);
    assert.notEqual(forged.headers['x-session'], 'not-a-session');
    assert.deepEqual(await backends('/header', 40), ['v1', 'v2']);
  });

  test('idleTimeout: requests keep the session alive (the cookie is issued again), a pause longer than it ends it', async () => {
    const first = await req('/idle');
    let c = setCookie(first.headers, 'idle');
    assert.ok(c);
    const id = c.value.split('.')[0];
    // 3 s of activity, a request every 0.7 s: longer than the 2 s idle timeout in total.
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      await sleep(700);
      const r = await req('/idle', { cookie: `idle=${c.value}` });
      assert.equal(r.json?.name, first.json?.name, 'the session keeps its endpoint while active');
      const next = setCookie(r.headers, 'idle');
      if (next !== null) {
        assert.equal(next.value.split('.')[0], id, 'the same session, its idle clock moved');
        c = next;
      }
    }
    await sleep(2400);
    const late = setCookie((await req('/idle', { cookie: `idle=${c.value}` })).headers, 'idle');
    assert.ok(late, 'a new cookie after an idle pause');
    assert.notEqual(late.value.split('.')[0], id, 'a new session after the idle timeout');
  });
});
