/**
 * The sidecar's app probes (app-probe.ts): what `meshgate inject` puts in ISTIO_KUBE_APP_PROBERS is
 * run against real servers on 127.0.0.1 (HTTP, TCP, gRPC health over h2c) and judged as the kubelet does.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { once } from 'node:events';
import { appProbeHandler, parseAppProbers, runAppProbe } from './app-probe.js';

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

test('httpGet: 2xx/3xx is 200, other statuses are passed on, headers are sent, silence is 503 after the timeout', async () => {
  const seen: string[] = [];
  const app = http.createServer((req, res) => {
    seen.push(`${req.url} ${req.headers['x-probe'] ?? ''}`);
    if (req.url === '/hang') return;
    res.writeHead(req.url === '/bad' ? 500 : req.url === '/moved' ? 302 : 200).end();
  });
  const port = await listen(app);
  try {
    assert.equal((await runAppProbe({ httpGet: { path: '/ok', port, httpHeaders: [{ name: 'X-Probe', value: 'yes' }] } })).status, 200);
    assert.equal((await runAppProbe({ httpGet: { path: '/moved', port: String(port) } })).status, 200);
    assert.equal((await runAppProbe({ httpGet: { path: '/bad', port } })).status, 500);
    const t0 = Date.now();
    const hang = await runAppProbe({ httpGet: { path: '/hang', port }, timeoutSeconds: 1 });
    assert.equal(hang.status, 503);
    assert.ok(Date.now() - t0 < 3000);
    assert.equal((await runAppProbe({ httpGet: { path: '/', port: 'http' } })).status, 500, 'an unresolved named port');
    assert.deepEqual(seen.slice(0, 3), ['/ok yes', '/moved ', '/bad ']);
  } finally {
    app.closeAllConnections();
    app.close();
  }
});

test('tcpSocket: a listening port is 200, a closed one 503', async () => {
  const server = net.createServer((s) => s.destroy());
  const port = await listen(server);
  assert.equal((await runAppProbe({ tcpSocket: { port } })).status, 200);
  server.close();
  await once(server, 'close');
  assert.equal((await runAppProbe({ tcpSocket: { port } })).status, 503);
});

test('grpc: grpc.health.v1.Health/Check SERVING is 200, NOT_SERVING 503, the service name is sent', async () => {
  let asked = '';
  const server = http2.createServer();
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const body = Buffer.concat(chunks).subarray(5);
      asked = body.length > 2 ? body.subarray(2).toString('utf8') : '';
      const status = asked === 'down' ? 2 : 1;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(Buffer.from([0, 0, 0, 0, 2, 0x08, status]));
      assert.equal(headers[':path'], '/grpc.health.v1.Health/Check');
    });
  });
  const port = await listen(server as unknown as net.Server);
  try {
    assert.equal((await runAppProbe({ grpc: { port, service: 'reviews' } })).status, 200);
    assert.equal(asked, 'reviews');
    assert.equal((await runAppProbe({ grpc: { port, service: 'down' } })).status, 503);
  } finally {
    server.close();
  }
});

test('ISTIO_KUBE_APP_PROBERS: parsed by path; bad JSON is reported; unknown paths are 404 and other paths are left to the caller', async () => {
  assert.match(parseAppProbers('{').error ?? '', /not JSON/);
  assert.equal(parseAppProbers(undefined).probes.size, 0);
  const server = net.createServer((s) => s.destroy());
  const port = await listen(server);
  const h = appProbeHandler(JSON.stringify({ '/app-health/app/livez': { tcpSocket: { port }, timeoutSeconds: 1 } }));
  const status = http.createServer((req, res) => void h.serve(req.url ?? '/', res).then((served) => served || res.writeHead(418).end()));
  const sp = await listen(status);
  const get = async (p: string) => {
    const r = await fetch(`http://127.0.0.1:${sp}${p}`);
    await r.arrayBuffer();
    return r.status;
  };
  try {
    assert.equal(await get('/app-health/app/livez'), 200);
    assert.equal(await get('/app-health/app/readyz'), 404);
    assert.equal(await get('/stats/prometheus'), 418);
  } finally {
    status.closeAllConnections();
    status.close();
    server.close();
  }
});
