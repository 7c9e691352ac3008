/**
 * gRPC-Web translated to gRPC (runtime `http/grpc-web.ts`): hand-built gRPC-Web requests over
 * HTTP/1.1, binary and base64 text, to a real `@grpc/grpc-js` server through an HTTP2 cluster. The
 * answer carries the request's gRPC-Web content-type, the message frame, and the trailers as the
 * body's last frame (flag 0x80); an error answered trailers-only keeps grpc-status in the headers.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { startGrpcEcho, type GrpcEchoServer } from '../support/grpc-echo.js';
import http from 'node:http';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';

/** A length-prefixed gRPC message frame holding EchoRequest{text}. */
function echoRequestFrame(text: string): Buffer {
  const t = Buffer.from(text, 'utf8');
  const msg = Buffer.concat([Buffer.from([0x0a, t.length]), t]);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(msg.length, 1);
  return Buffer.concat([head, msg]);
}

/** Splits a gRPC-Web body into frames: messages (flag 0) and the trailer frame (flag 0x80). */
function frames(body: Buffer): { messages: Buffer[]; trailers: Record<string, string> | null } {
  const messages: Buffer[] = [];
  let trailers: Record<string, string> | null = null;
  for (let i = 0; i < body.length; ) {
    const flag = body[i];
    const len = body.readUInt32BE(i + 1);
    const payload = body.subarray(i + 5, i + 5 + len);
    i += 5 + len;
    if (flag & 0x80) {
      trailers = {};
      for (const line of payload.toString('latin1').split('\r\n')) {
        if (line === '') continue;
        const c = line.indexOf(':');
        trailers[line.slice(0, c).trim()] = line.slice(c + 1).trim();
      }
    } else messages.push(payload);
  }
  return { messages, trailers };
}

describe('gRPC-Web to gRPC', { timeout: 60_000 }, () => {
  let server: GrpcEchoServer;
  let gw: RuntimeHarness;

  before(async () => {
    server = await startGrpcEcho('web-a');
    gw = await startRuntime(snapshot([httpListener(0, [vhost('v', ['*'], [route('grpc', forward(['grpc']), [match()])])])], [cluster('grpc', [{ port: server.port }], { protocol: 'HTTP2' })]));
  });

  after(async () => {
    await gw?.close();
    await server?.close();
  });

  /** A browser-like gRPC-Web POST over HTTP/1.1; the body is kept as bytes. */
  const post = (contentType: string, body: Buffer | string): Promise<{ status: number; headers: http.IncomingHttpHeaders; bytes: Buffer; body: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: gw.port(), method: 'POST', path: '/meshgate.test.Echo/Unary', agent: false, headers: { 'content-type': contentType, 'x-grpc-web': '1', accept: contentType } });
      req.setTimeout(10_000, () => req.destroy(new Error('client timeout')));
      req.on('error', reject);
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const bytes = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes, body: bytes.toString('latin1') });
        });
      });
      req.end(body);
    });

  test('binary gRPC-Web: message frame, then the trailers as a trailer frame', async () => {
    const r = await post('application/grpc-web+proto', echoRequestFrame('hi'));
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['content-type'], 'application/grpc-web+proto');
    const f = frames(r.bytes);
    assert.equal(f.messages.length, 1);
    assert.ok(f.messages[0].toString('latin1').includes('hi') && f.messages[0].toString('latin1').includes('web-a'), `message should echo "hi" from web-a, got ${JSON.stringify(f.messages[0].toString('latin1'))}`);
    assert.equal(f.trailers?.['grpc-status'], '0', `trailer frame: ${JSON.stringify(f.trailers)}`);
    assert.equal(f.trailers?.['x-trailer'], 'done');
  });

  test('gRPC-Web text: base64 request body decoded, answer base64-encoded', async () => {
    const r = await post('application/grpc-web-text', echoRequestFrame('text-mode').toString('base64'));
    assert.equal(r.status, 200, r.body);
    assert.equal(r.headers['content-type'], 'application/grpc-web-text');
    assert.match(r.body, /^[A-Za-z0-9+/=]+$/);
    const f = frames(Buffer.from(r.body, 'base64'));
    assert.equal(f.messages.length, 1);
    assert.ok(f.messages[0].toString('latin1').includes('text-mode'));
    assert.equal(f.trailers?.['grpc-status'], '0');
  });

  test('an error status answered trailers-only keeps grpc-status in the headers', async () => {
    const r = await post('application/grpc-web+proto', echoRequestFrame('fail:5'));
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-type'], 'application/grpc-web+proto');
    const status = r.headers['grpc-status'] ?? frames(r.bytes).trailers?.['grpc-status'];
    assert.equal(status, '5');
  });
});
