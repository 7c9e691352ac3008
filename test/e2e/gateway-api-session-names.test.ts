/**
 * Gateway API `sessionPersistence` names and cookie paths come from an HTTPRoute (a route owner,
 * less trusted than the Gateway's): one that is not a cookie/header name or a plain cookie path is
 * reported and replaced (the generated name, `/`), so it can neither add Set-Cookie attributes
 * (`Domain=`) nor break the response head. Real `meshgate run`, raw HTTP/1.1 over a socket.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

/** The raw response head of one GET (the connection closed after it). */
function rawHead(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(`GET ${path} HTTP/1.1\r\nhost: sticky.test\r\nconnection: close\r\n\r\n`));
    let text = '';
    s.setEncoding('latin1');
    s.on('data', (d: string) => (text += d));
    s.on('end', () => resolve(text.split('\r\n\r\n')[0]));
    s.on('error', reject);
    s.setTimeout(10_000, () => s.destroy(new Error('timed out')));
  });
}

describe('Gateway API: sessionPersistence names from the route', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const echo: Echo[] = [];

  before(async () => {
    for (const name of ['v1', 'v2']) echo.push(await startEchoServer({ name }));
    writeConfig(dir, 'backends.yaml', serviceYaml('pair', echo.map((e) => e.port)));
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
    - matches: [{ path: { type: PathPrefix, value: /attr } }]
      sessionPersistence: { sessionName: "s; Domain=victim.test" }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /path } }]
      sessionPersistence: { type: Cookie, cookie: { name: ok, path: "/p; Domain=victim.test" } }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /crlf } }]
      sessionPersistence: { sessionName: "s\\r\\nx-injected: yes" }
      backendRefs: [{ name: pair, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /header } }]
      sessionPersistence: { type: Header, sessionName: "x-s\\r\\nx-injected: yes" }
      backendRefs: [{ name: pair, port: 80 }]
`);
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    for (const e of echo) await e.close();
    removeDir(dir);
  });

  for (const p of ['/attr', '/path', '/crlf', '/header']) {
    test(`${p}: a session is issued with no injected attribute or header`, async () => {
      const head = await rawHead(gw.httpPort, p);
      assert.match(head, /^HTTP\/1\.1 200 /);
      assert.doesNotMatch(head, /domain=victim/i);
      assert.doesNotMatch(head, /^x-injected:/im);
      // A session is still issued (the generated name / path), as a Set-Cookie or the header.
      assert.match(head, p === '/header' ? /^mg-session-[0-9a-f]+: [0-9a-f]{16}\./m : /^set-cookie: mg-session-[0-9a-f]+=|^set-cookie: ok=[^;]*; Path=\/;/im);
    });
  }
});
