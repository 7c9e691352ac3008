/**
 * Local replies go through one function and are recorded as sent (issue 11, item 0), through the
 * real `meshgate run` with an Istio config, on HTTP/1.1 and HTTP/2:
 * - `%RESP(...)%` in an access-log format reads the response head that was sent, on HTTP/1.1 as on
 *   HTTP/2 (it was always `-` on HTTP/1.1);
 * - a gRPC call denied by an AuthorizationPolicy gets a gRPC status, PERMISSION_DENIED (it got a
 *   plain-text 403 that gRPC clients report as an HTTP error);
 * - a denial is logged with the bytes of its body and Envoy's details (it was `bytes=0` and `-`).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

const HOST = 'shop.example.com';

function lines(file: string): string[] {
  return existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter((l) => l !== '') : [];
}

/** The one log line for `p` (the format starts with the path), waited for. */
async function lineFor(file: string, p: string): Promise<string> {
  let found: string | undefined;
  await waitFor(() => (found = lines(file).find((l) => l.startsWith(`${p} `))) !== undefined, 5000, `the access-log line of ${p}`);
  return found!;
}

/** One HTTP/2 (h2c) request; resolves with the response head. */
function h2Request(port: number, headers: http2.OutgoingHttpHeaders): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    client.on('error', reject);
    const req = client.request(headers, { endStream: true });
    let head: http2.IncomingHttpHeaders = {};
    req.on('response', (h) => (head = h));
    req.on('error', reject);
    req.resume();
    req.on('end', () => {
      client.close();
      resolve(head);
    });
  });
}

describe('local replies: one function, recorded as sent', { timeout: 60_000 }, () => {
  const dir = tempDir();
  const logFile = path.join(dir, 'access.log');
  let gw: GatewayProcess;
  let echo: Awaited<ReturnType<typeof startEchoServer>>;

  before(async () => {
    echo = await startEchoServer({ name: 'web' });
    writeConfig(dir, 'backends.yaml', serviceYaml('web', [echo.port]));
    writeConfig(dir, 'gateway.yaml', `
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: public, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*/${HOST}"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: [${HOST}]
  gateways: [istio-system/public]
  http: [{ route: [{ destination: { host: web } }] }]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: { name: deny-admin, namespace: istio-system }
spec:
  action: DENY
  rules: [{ to: [{ operation: { paths: ["/admin", "/shop.Admin/*"] } }] }]
---
apiVersion: v1
kind: ConfigMap
metadata: { name: istio, namespace: istio-system }
data:
  mesh: |
    accessLogFile: ${logFile}
    accessLogFormat: '%REQ(:PATH)% code=%RESPONSE_CODE% flags=%RESPONSE_FLAGS% details=%RESPONSE_CODE_DETAILS% bytes=%BYTES_SENT% server=%RESP(SERVER)% ct=%RESP(CONTENT-TYPE)% mgflags=%RESP(X-MESHGATE-FLAGS)% grpc=%RESP(GRPC-STATUS)%'
`);
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await echo?.close();
    removeDir(dir);
  });

  test('%RESP(...)% reads the head that was sent on HTTP/1.1: proxied and local answers', async () => {
    const base = `http://127.0.0.1:${gw.httpPort}`;
    const ok = await get(`${base}/resp-h1`, { host: HOST });
    assert.equal(ok.status, 200);
    const line = await lineFor(logFile, '/resp-h1');
    assert.match(line, / server=meshgate /, `the proxied answer's server header, got: ${line}`);
    assert.match(line, new RegExp(` ct=${String(ok.headers['content-type']).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} `), `the proxied answer's content-type, got: ${line}`);

    assert.equal((await get(`${base}/resp-404`, { host: 'nowhere.example.com' })).status, 404);
    const nr = await lineFor(logFile, '/resp-404');
    assert.match(nr, /code=404 flags=NR .* server=meshgate ct=text\/plain mgflags=NR /, `the local 404's headers, got: ${nr}`);
  });

  test('%RESP(...)% on HTTP/2 reads the same', async () => {
    const head = await h2Request(gw.httpPort, { ':path': '/resp-h2', ':authority': HOST });
    assert.equal(head[':status'], 200);
    const line = await lineFor(logFile, '/resp-h2');
    assert.match(line, / server=meshgate /, line);
  });

  test('an AuthorizationPolicy denial is logged with its body bytes and details, on HTTP/1.1', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/admin`, { host: HOST });
    assert.equal(r.status, 403);
    assert.equal(r.body, 'RBAC: access denied');
    const line = await lineFor(logFile, '/admin');
    assert.match(line, /^\/admin code=403 flags=- details=rbac_access_denied_matched_policy\[\S+\] bytes=19 server=meshgate ct=text\/plain mgflags=RBAC /, `got: ${line}`);
  });

  test('a gRPC call denied by an AuthorizationPolicy gets PERMISSION_DENIED (grpc-js over h2c)', async () => {
    const client = new grpc.Client(`127.0.0.1:${gw.httpPort}`, grpc.credentials.createInsecure(), { 'grpc.default_authority': HOST });
    try {
      const err = await new Promise<grpc.ServiceError | null>((resolve) => {
        client.makeUnaryRequest(
          '/shop.Admin/Delete',
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.from('x'),
          { deadline: Date.now() + 5000 },
          (e) => resolve(e),
        );
      });
      assert.ok(err !== null, 'the call fails');
      assert.equal(err.code, grpc.status.PERMISSION_DENIED, `gRPC status ${err.code} (${err.details}), expected PERMISSION_DENIED`);
      assert.equal(err.details, 'RBAC: access denied');
    } finally {
      client.close();
    }
    const line = await lineFor(logFile, '/shop.Admin/Delete');
    assert.match(line, /code=200 flags=- details=rbac_access_denied_matched_policy\[\S+\] bytes=0 server=meshgate ct=application\/grpc mgflags=RBAC grpc=7$/, `got: ${line}`);
  });

  test('a gRPC request over HTTP/1.1 denied by an AuthorizationPolicy gets grpc-status 7', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/shop.Admin/List`, { host: HOST, method: 'POST', headers: { 'content-type': 'application/grpc' }, body: '' });
    assert.equal(r.status, 200);
    assert.equal(r.headers['grpc-status'], '7');
    assert.equal(r.headers['content-type'], 'application/grpc');
  });
});
