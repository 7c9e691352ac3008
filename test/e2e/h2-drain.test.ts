/**
 * HTTP/2 connections that reach a draining listener (accepted just before a reload retired it):
 * the request the client sent with its connection preface is answered, then the session gets
 * GOAWAY. Real sockets, node:http2 clients, the listener front of http-front.ts (h2c by sniffing,
 * TLS by ALPN) with its session tracker already draining.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import { describe, test } from 'node:test';
import { createEngines, dispatchTls, SessionTracker, sniffPlaintext, type Http1Engine } from '../../src/runtime/listeners/http-front.js';
import { makeCerts } from '../support/tls-certs.js';

const noH1: Http1Engine = { accept: (s) => s.destroy(), closeIdle() {}, closeAll() {}, close() {} };

/** A draining listener front: its tracker drained before any connection arrives. */
function drainingFront(): { tracker: SessionTracker; engines: ReturnType<typeof createEngines> } {
  const tracker = new SessionTracker();
  const engines = createEngines(noH1, tracker);
  engines.h2.on('stream', (stream: http2.ServerHttp2Stream) => {
    stream.respond({ ':status': 200 });
    stream.end('served');
  });
  tracker.closeAll();
  return { tracker, engines };
}

/** One request on a new session; the body, and whether the session then got GOAWAY. */
async function oneRequest(url: string, opts: http2.SecureClientSessionOptions): Promise<{ body: string; goaway: boolean }> {
  const session = http2.connect(url, opts);
  session.on('error', () => {});
  let goaway = false;
  session.on('goaway', () => (goaway = true));
  try {
    const body = await new Promise<string>((resolve, reject) => {
      const s = session.request({ ':path': '/' });
      let b = '';
      s.on('data', (c: Buffer) => (b += c.toString()));
      s.on('end', () => resolve(b));
      s.on('error', reject);
      s.setTimeout(5000, () => reject(new Error('timed out')));
      s.end();
    });
    await new Promise((r) => setTimeout(r, 100));
    return { body, goaway };
  } finally {
    session.destroy();
  }
}

describe('HTTP/2 on a draining listener', { timeout: 30_000 }, () => {
  test('h2c (prior knowledge): the first request is answered, then GOAWAY', async () => {
    const { engines } = drainingFront();
    const server = net.createServer({ allowHalfOpen: true }, (socket) => sniffPlaintext(socket, engines));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      for (let i = 0; i < 5; i++) assert.deepEqual(await oneRequest(`http://127.0.0.1:${port}`, {}), { body: 'served', goaway: true }, `connection ${i}`);
    } finally {
      server.close();
    }
  });

  test('TLS with ALPN h2: the first request is answered, then GOAWAY', async () => {
    const { engines } = drainingFront();
    const [cert] = makeCerts(['drain.example.com']);
    const server = tls.createServer({ cert: cert.certChain, key: cert.privateKey, ALPNProtocols: ['h2'] }, (socket) => dispatchTls(socket, engines));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as net.AddressInfo).port;
      for (let i = 0; i < 5; i++) {
        assert.deepEqual(await oneRequest(`https://127.0.0.1:${port}`, { servername: 'drain.example.com', rejectUnauthorized: false }), { body: 'served', goaway: true }, `connection ${i}`);
      }
    } finally {
      server.close();
    }
  });
});
