import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { H1Engine } from './engine.js';
import type { Downstream } from '../http/downstream.js';

/** An engine on a loopback server whose request path never answers (an upstream that hangs). */
async function hangingServer(streamIdleTimeout: number): Promise<{ port: number; close: () => Promise<void> }> {
  const served: Downstream[] = [];
  const engine = new H1Engine({ headersTimeout: 10_000, keepAliveTimeout: 60_000, streamIdleTimeout, maxHeaderSize: 64 * 1024, maxHeadersCount: 101 }, (d) => {
    served.push(d);
    d.body.resume();
  });
  const server = net.createServer((s) => engine.accept(s, null));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      engine.closeAll();
      engine.close();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Sends a POST head announcing 10 body bytes and 1 byte of it; then `extra` bytes every `everyMs`. Resolves with how long the connection lived (ms), or null when still open at `maxMs`. */
function trickle(port: number, everyMs: number, extra: number, maxMs: number): Promise<number | null> {
  return new Promise((resolve) => {
    const start = Date.now();
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    c.write('POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nx');
    let sent = 0;
    const t = setInterval(() => {
      if (sent < extra && !c.destroyed) {
        c.write('y');
        sent++;
      }
    }, everyMs);
    const done = setTimeout(() => {
      clearInterval(t);
      c.destroy();
      resolve(null);
    }, maxMs);
    c.on('close', () => {
      clearInterval(t);
      clearTimeout(done);
      resolve(Date.now() - start);
    });
  });
}

describe('HTTP/1.1 engine: stream idle timeout (review M3)', () => {
  test('a request whose client stops sending its body is closed after the idle timeout', async () => {
    const s = await hangingServer(1500);
    try {
      const lived = await trickle(s.port, 1000, 0, 8000);
      assert.ok(lived !== null, 'the stalled request was never closed');
      assert.ok(lived >= 1400 && lived < 6000, `closed after ${lived} ms`);
    } finally {
      await s.close();
    }
  });

  test('a request that keeps making progress stays open', async () => {
    const s = await hangingServer(1500);
    try {
      // 8 more bytes, one every 400 ms: 3.2 s of progress, more than twice the idle timeout.
      const lived = await trickle(s.port, 400, 8, 3300);
      assert.equal(lived, null, `closed after ${lived} ms while the body was still arriving`);
    } finally {
      await s.close();
    }
  });
});
