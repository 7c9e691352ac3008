/**
 * ingress-nginx annotations that change the upstream request itself, end to end with a raw TCP
 * backend that reports the bytes it received: proxy-http-version "1.0" (request line, no keep-alive,
 * no chunked body), mirror-request-body with bodies over 64 KiB, and backend-protocol AUTO_HTTP (the
 * client's scheme to a backend port that speaks both).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { get, getTls, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, service: string, annotations: Record<string, string>, tlsSecretName = ''): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
${tlsSecretName === '' ? '' : `  tls: [{ hosts: [${host}], secretName: ${tlsSecretName} }]\n`}  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: ${service}, port: { number: 80 } } } }] }
`;
}

/** What the raw backend saw of one request. */
interface Seen {
  requestLine: string;
  headers: Record<string, string>;
  /** The body as received on the wire (framing included when chunked). */
  bodyBytes: number;
  bodySha: string;
  /** Index of the TCP connection it came on. */
  connection: number;
}

/**
 * A backend speaking raw HTTP/1.x: reads a head, then a Content-Length body or a chunked body (decoded),
 * answers with a small JSON (keep-alive for HTTP/1.1 requests, close for HTTP/1.0 ones).
 */
function rawBackend(seen: Seen[]): net.Server {
  let connections = 0;
  return net.createServer((socket) => {
    const id = connections++;
    let buf = Buffer.alloc(0);
    let head: { line: string; headers: Record<string, string> } | null = null;
    const parse = (): void => {
      for (;;) {
        if (head === null) {
          const end = buf.indexOf('\r\n\r\n');
          if (end === -1) return;
          const lines = buf.subarray(0, end).toString('latin1').split('\r\n');
          const headers: Record<string, string> = {};
          for (const l of lines.slice(1)) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim();
          head = { line: lines[0], headers };
          buf = buf.subarray(end + 4);
        }
        let body: Buffer;
        if (head.headers['transfer-encoding'] === 'chunked') {
          const parts: Buffer[] = [];
          let at = 0;
          for (;;) {
            const crlf = buf.indexOf('\r\n', at);
            if (crlf === -1) return;
            const size = parseInt(buf.subarray(at, crlf).toString('latin1'), 16);
            if (buf.length < crlf + 2 + size + 2) return;
            if (size === 0) {
              at = crlf + 4;
              break;
            }
            parts.push(buf.subarray(crlf + 2, crlf + 2 + size));
            at = crlf + 2 + size + 2;
          }
          body = Buffer.concat(parts);
          buf = buf.subarray(at);
        } else {
          const n = Number(head.headers['content-length'] ?? 0);
          if (buf.length < n) return;
          body = buf.subarray(0, n);
          buf = buf.subarray(n);
        }
        seen.push({ requestLine: head.line, headers: head.headers, bodyBytes: body.length, bodySha: createHash('sha256').update(body).digest('hex'), connection: id });
        const http10 = head.line.endsWith('HTTP/1.0');
        const out = JSON.stringify({ ok: true });
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${out.length}\r\n${http10 ? 'connection: close\r\n' : ''}\r\n${out}`);
        head = null;
        if (http10) {
          socket.end();
          return;
        }
      }
    };
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      parse();
    });
    socket.on('error', () => {});
  });
}

/** A request with a body sent chunked (no Content-Length) or with a Content-Length. */
function send(port: number, host: string, path: string, body: Buffer | null, chunked: boolean): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { host };
    if (body !== null) headers[chunked ? 'transfer-encoding' : 'content-length'] = chunked ? 'chunked' : String(body.length);
    const req = http.request({ hostname: '127.0.0.1', port, path, method: body === null ? 'GET' : 'POST', headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      res.on('error', reject);
    });
    req.setTimeout(15_000, () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    if (body === null) return void req.end();
    // Several writes so the gateway sees a streamed body.
    for (let i = 0; i < body.length; i += 16 * 1024) req.write(body.subarray(i, Math.min(body.length, i + 16 * 1024)));
    req.end();
  });
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** One port that speaks HTTP in clear and over TLS (the first byte tells), answering which one carried the request. */
function dualBackend(pair: { cert: string; key: string }): net.Server {
  const web = http.createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name: (req.socket as tls.TLSSocket).encrypted === true ? 'tls' : 'clear', method: req.method, url: req.url, path: req.url, headers: req.headers, body: '' }));
  });
  const secureContext = tls.createSecureContext(pair);
  return net.createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', (first: Buffer) => {
      // The sniffed bytes are replayed through a stream the HTTP or TLS layer reads from.
      const duplex = new Duplex({
        read() {
          socket.resume();
        },
        write(chunk: Buffer, _enc, cb) {
          socket.write(chunk, cb);
        },
        final(cb) {
          socket.end();
          cb();
        },
      });
      duplex.on('error', () => {});
      duplex.push(first);
      socket.on('data', (d: Buffer) => {
        if (!duplex.push(d)) socket.pause();
      });
      socket.on('end', () => duplex.push(null));
      socket.on('close', () => duplex.destroy());
      web.emit('connection', first[0] === 0x16 ? new tls.TLSSocket(duplex as unknown as net.Socket, { isServer: true, secureContext }) : duplex);
    });
  });
}

describe('ingress-nginx upstream request annotations', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const seen: Seen[] = [];
  const mirrored: Seen[] = [];
  const backend = rawBackend(seen);
  const mirror = rawBackend(mirrored);
  const dual = dualBackend(makeCert('', 'dual.default.svc.cluster.local'));

  before(async () => {
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    await new Promise<void>((r) => mirror.listen(0, '127.0.0.1', r));
    const port = (backend.address() as net.AddressInfo).port;
    const mirrorPort = (mirror.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dual.listen(0, '127.0.0.1', r));
    writeConfig(dir, 'services.yaml', [serviceYaml('raw', [port]), serviceYaml('mirror', [mirrorPort]), serviceYaml('dual', [(dual.address() as net.AddressInfo).port]), tlsSecret('auto-tls', 'default', makeCert('', 'auto.example.com')), tlsSecret('redir-tls', 'default', makeCert('', 'redir.example.com'))].join('---\n'));
    writeConfig(dir, 'ingress.yaml', [
      ingress('old', 'old.example.com', 'raw', { 'proxy-http-version': '1.0' }),
      ingress('old-bounded', 'bounded.example.com', 'raw', { 'proxy-http-version': '1.0', 'proxy-body-size': '64k' }),
      ingress('current', 'current.example.com', 'raw', {}),
      ingress('mirrored', 'mirrored.example.com', 'raw', { 'mirror-target': 'http://mirror.default.svc.cluster.local$request_uri', 'proxy-body-size': '4m' }),
      ingress('auto', 'auto.example.com', 'dual', { 'backend-protocol': 'AUTO_HTTP', 'ssl-redirect': 'false' }, 'auto-tls'),
      ingress('redir', 'redir.example.com', 'raw', {}, 'redir-tls'),
      // cert-manager's HTTP-01 solver: its own Ingress on the host, an Exact path under /.well-known/acme-challenge.
      ingress('acme-solver', 'redir.example.com', 'raw', {}).replace('path: /, pathType: Prefix', 'path: /.well-known/acme-challenge/tok3n, pathType: Exact'),
      ingress('mirrored-unbounded', 'mirrored-unbounded.example.com', 'raw', { 'mirror-target': 'http://mirror.default.svc.cluster.local$request_uri', 'proxy-body-size': '0' }),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    backend.close();
    mirror.close();
    dual.close();
    removeDir(dir);
  });

  test("ingress-nginx's upstream headers: X-Real-IP, X-Forwarded-Host/-Port/-Proto/-Scheme, X-Scheme; the client's forwarded values are not trusted without use-forwarded-headers; Proxy removed", async () => {
    const r = await send(gw.httpPort, 'current.example.com', '/headers', null, false);
    assert.equal(r.status, 200, r.body);
    const plain = seen[seen.length - 1].headers;
    assert.equal(plain['x-real-ip'], '127.0.0.1');
    assert.equal(plain['x-forwarded-host'], 'current.example.com');
    assert.equal(plain['x-forwarded-port'], '80', 'the port clients reach (the Ingress HTTP port), not the local one');
    assert.equal(plain['x-forwarded-proto'], 'http');
    assert.equal(plain['x-forwarded-scheme'], 'http');
    assert.equal(plain['x-scheme'], 'http');
    assert.equal(plain['x-original-forwarded-host'], undefined);
    // A client's own forwarded headers change nothing but X-Original-Forwarded-Host; Proxy (httpoxy) is dropped.
    await new Promise<void>((resolve, reject) => {
      const req = http.request({ hostname: '127.0.0.1', port: gw.httpPort, path: '/forged', headers: { host: 'current.example.com', 'x-forwarded-proto': 'https', 'x-forwarded-port': '443', 'x-forwarded-host': 'evil.example', 'x-real-ip': '6.6.6.6', proxy: 'http://evil.example:3128' }, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      req.end();
    });
    const forged = seen[seen.length - 1].headers;
    assert.equal(forged['x-forwarded-proto'], 'http');
    assert.equal(forged['x-forwarded-port'], '80');
    assert.equal(forged['x-forwarded-host'], 'current.example.com');
    assert.equal(forged.host, 'current.example.com');
    assert.equal(forged['x-real-ip'], '127.0.0.1');
    assert.equal(forged['x-original-forwarded-host'], 'evil.example');
    assert.equal(forged.proxy, undefined);
  });

  test('proxy-http-version 1.0: HTTP/1.0 request line, no keep-alive (a connection per request), no Connection options', async () => {
    const before = seen.length;
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.httpPort, 'old.example.com', `/old${i}`, null, false)).status, 200);
    const got = seen.slice(before);
    assert.deepEqual(got.map((s) => s.requestLine), ['GET /old0 HTTP/1.0', 'GET /old1 HTTP/1.0', 'GET /old2 HTTP/1.0']);
    assert.equal(new Set(got.map((s) => s.connection)).size, 3, 'one connection per request');
    for (const s of got) assert.equal(s.headers.connection, undefined, 'no Connection header (HTTP/1.0 closes by default, as ingress-nginx sends it)');
    // The default stays HTTP/1.1 with keep-alive.
    const mark = seen.length;
    for (let i = 0; i < 3; i++) assert.equal((await send(gw.httpPort, 'current.example.com', `/new${i}`, null, false)).status, 200);
    const current = seen.slice(mark);
    assert.ok(current.every((s) => s.requestLine.endsWith('HTTP/1.1')));
    assert.equal(new Set(current.map((s) => s.connection)).size, 1, 'HTTP/1.1 reuses the connection');
  });

  test('proxy-http-version 1.0: a chunked upload is sent with a Content-Length (read whole first), never chunked', async () => {
    const body = Buffer.alloc(300 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 7) & 0xff;
    const before = seen.length;
    const r = await send(gw.httpPort, 'old.example.com', '/upload', body, true);
    assert.equal(r.status, 200, r.body);
    const s = seen[before];
    assert.equal(s.requestLine, 'POST /upload HTTP/1.0');
    assert.equal(s.headers['transfer-encoding'], undefined, 'HTTP/1.0 has no chunked coding');
    assert.equal(s.headers['content-length'], String(body.length));
    assert.equal(s.bodySha, sha(body), 'the whole body arrives intact');
    // The same upload on the HTTP/1.1 route stays chunked (streamed).
    const mark = seen.length;
    assert.equal((await send(gw.httpPort, 'current.example.com', '/upload', body, true)).status, 200);
    assert.equal(seen[mark].headers['transfer-encoding'], 'chunked');
    assert.equal(seen[mark].bodySha, sha(body));
  });

  test('proxy-http-version 1.0 with proxy-body-size 64k: a larger chunked upload is 413, the backend never sees it', async () => {
    const before = seen.length;
    const ok = await send(gw.httpPort, 'bounded.example.com', '/small', Buffer.alloc(10 * 1024, 1), true);
    assert.equal(ok.status, 200);
    assert.equal(seen[before].headers['content-length'], String(10 * 1024));
    const mark = seen.length;
    const r = await send(gw.httpPort, 'bounded.example.com', '/big', Buffer.alloc(200 * 1024, 1), true).catch((e: Error) => ({ status: -1, body: e.message }));
    assert.equal(r.status, 413, r.body);
    assert.equal(seen.length, mark, 'nothing reached the backend');
  });

  test('mirror-request-body on: a body over 64 KiB is mirrored whole (nginx buffers it for the mirror subrequest)', async () => {
    const body = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < body.length; i++) body[i] = (i * 13) & 0xff;
    const before = mirrored.length;
    const mainBefore = seen.length;
    const r = await send(gw.httpPort, 'mirrored.example.com', '/copy', body, true);
    assert.equal(r.status, 200, r.body);
    assert.equal(seen[mainBefore].bodySha, sha(body), 'the main backend gets the whole body');
    await waitFor(() => mirrored.length > before, 10_000, 'the mirrored copy');
    const copy = mirrored[before];
    assert.equal(copy.requestLine, 'POST /copy HTTP/1.1');
    assert.equal(copy.bodyBytes, body.length, 'the copy carries the whole body');
    assert.equal(copy.bodySha, sha(body));
  });

  test('mirror-request-body on without a body limit (proxy-body-size 0): up to 8 MiB is mirrored; a larger body is proxied, not mirrored', async () => {
    const body = Buffer.alloc(9 * 1024 * 1024, 5);
    const before = mirrored.length;
    const mainBefore = seen.length;
    const r = await send(gw.httpPort, 'mirrored-unbounded.example.com', '/big', body, false);
    assert.equal(r.status, 200, r.body);
    assert.equal(seen[mainBefore].bodySha, sha(body));
    const small = Buffer.alloc(200 * 1024, 6);
    assert.equal((await send(gw.httpPort, 'mirrored-unbounded.example.com', '/small', small, false)).status, 200);
    await waitFor(() => mirrored.length > before, 10_000, 'the copy of the small body');
    await new Promise((res) => setTimeout(res, 200));
    assert.deepEqual(mirrored.slice(before).map((m) => [m.requestLine, m.bodySha]), [['POST /small HTTP/1.1', sha(small)]], 'only the body within the bound was mirrored');
  });

  test('backend-protocol AUTO_HTTP: a request that came over HTTPS reaches the backend over TLS, one over HTTP in clear (nginx $scheme)', async () => {
    const secure = await getTls(gw.httpsPort, '/a', { host: 'auto.example.com' });
    assert.equal(secure.status, 200, secure.body);
    assert.equal(secure.json?.name, 'tls');
    const clear = await get(`http://127.0.0.1:${gw.httpPort}/b`, { host: 'auto.example.com' });
    assert.equal(clear.status, 200, clear.body);
    assert.equal(clear.json?.name, 'clear');
    assert.equal(clear.json?.url, '/b');
  });

  test('ssl-redirect: 308 to https without one trailing slash; the ACME HTTP-01 path (no-tls-redirect-locations) is served over HTTP', async () => {
    const r = await get(`http://127.0.0.1:${gw.httpPort}/dir/?a=1`, { host: 'redir.example.com' });
    assert.equal(r.status, 308);
    assert.equal(r.headers.location, 'https://redir.example.com/dir/?a=1', 'the slash is not the last character of the request URI');
    const slash = await get(`http://127.0.0.1:${gw.httpPort}/dir/`, { host: 'redir.example.com' });
    assert.equal(slash.headers.location, 'https://redir.example.com/dir');
    const before = seen.length;
    const acme = await get(`http://127.0.0.1:${gw.httpPort}/.well-known/acme-challenge/tok3n`, { host: 'redir.example.com' });
    assert.equal(acme.status, 200, 'the challenge is answered over plain HTTP');
    assert.equal(seen[before]?.requestLine, 'GET /.well-known/acme-challenge/tok3n HTTP/1.1');
  });
});
