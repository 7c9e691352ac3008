/**
 * WebSocket through the gateway with the `ws` client and server: the upgrade request is routed like
 * any request (match, weights, rewrites, header edits, local answers), then bytes flow both ways;
 * a refused upgrade is relayed; idle tunnels are closed.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import http2 from 'node:http2';
import type { UpstreamTls } from '../../src/ir/types.js';
import type { RequestObserver } from '../../src/observability/observer.js';
import { RequestRecord } from '../../src/observability/record.js';
import { chain, cluster, exact, forward, httpListener, httpsListener, match, ops, route, snapshot, tlsContext, vhost } from '../support/ir-builders.js';
import { makePki, type Pki } from '../support/mtls-certs.js';
import { freePort, get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { parsePrometheus } from '../../src/admin/dashboard/stats.js';
import { makeCerts, type TestCert } from '../support/tls-certs.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { within } from '../support/http-client.js';
import { open, startWsEcho, type Hello, type WsEcho } from '../support/ws-echo.js';
import { setWebSocketIdleTimeout } from '../../src/runtime/http/websocket.js';

function next(ws: WebSocket): Promise<string> {
  return new Promise((resolve) => ws.once('message', (d) => resolve(String(d))));
}

describe('WebSocket through the gateway', { timeout: 60_000 }, () => {
  const be: Record<string, WsEcho> = {};
  let gw: RuntimeHarness;
  let base: string;

  before(async () => {
    be.a = await startWsEcho('a');
    be.b = await startWsEcho('b');
    const prefix = (value: string) => ({ kind: 'prefix' as const, value, ignoreCase: false });
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('ws', ['ws.example.com'], [
              route('ws/canary', forward(['b']), [match({ headers: [{ name: 'x-canary', match: exact('yes'), invert: false }] })]),
              route('ws/weighted', forward([{ cluster: 'a', weight: 1 }, { cluster: 'b', weight: 3 }]), [match({ path: prefix('/weighted') })]),
              route('ws/rewrite', forward(['a'], { rewrite: { path: { kind: 'prefix', value: '/inner' }, authority: null } }), [match({ path: prefix('/outer') })], {
                requestHeaders: ops({ set: [{ name: 'x-route', value: 'rewrite' }] }),
                responseHeaders: ops({ set: [{ name: 'x-resp', value: 'edited' }] }),
              }),
              route('ws/denied', { kind: 'direct', status: 403, body: 'denied', contentType: null }, [match({ path: prefix('/denied') })]),
              route('ws/empty', forward(['empty']), [match({ path: prefix('/empty') })]),
              route('ws/limited', forward(['limited']), [match({ path: prefix('/limited') })]),
              route('ws/all', forward(['a']), [match({ path: prefix('/') })]),
            ]),
            vhost('other', ['other.example.com'], [route('other/only', forward(['a']), [match({ path: { kind: 'exact', value: '/only', ignoreCase: false } })])]),
          ]),
        ],
        [
          cluster('a', [{ port: be.a.port }]),
          cluster('b', [{ port: be.b.port }]),
          cluster('empty', []),
          cluster('limited', [{ port: be.a.port }], { connectionPool: { maxConnections: 1, maxPendingRequests: null, maxRequests: null, maxRequestsPerConnection: null, maxRetries: null, idleTimeoutMs: null } }),
        ],
      ),
    );
    base = `ws://127.0.0.1:${gw.port()}`;
  });
  after(async () => {
    await gw?.close(300);
    await Promise.all(Object.values(be).map((b) => b.close()));
  });

  test('echo both ways, text and a 1 MiB binary message; forwarding headers reach the backend', async () => {
    const r = await within(5000, open(`${base}/chat?room=1`, { host: 'ws.example.com' }), 'open');
    assert.ok('ws' in r, `expected an open WebSocket, got ${JSON.stringify(r)}`);
    const { ws, hello } = r;
    try {
      assert.equal(hello.name, 'a');
      assert.equal(hello.url, '/chat?room=1');
      assert.equal(hello.headers['x-forwarded-proto'], 'http');
      assert.equal(hello.headers['x-forwarded-host'], 'ws.example.com');
      assert.ok(hello.headers['sec-websocket-key'], 'the handshake key reaches the backend');
      ws.send('hello');
      assert.equal(await within(5000, next(ws), 'text echo'), 'a:hello');
      const big = Buffer.alloc(1024 * 1024, 7);
      const got = new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer)));
      ws.send(big);
      const echoed = await within(10_000, got, 'binary echo');
      assert.equal(echoed.length, big.length + 2);
      assert.ok(echoed.subarray(2).equals(big), 'the binary payload comes back unchanged');
    } finally {
      ws.close();
    }
  });

  test('the route is matched at the upgrade request: header match, rewrite and header edits apply', async () => {
    const canary = await open(`${base}/x`, { host: 'ws.example.com', 'x-canary': 'yes' });
    assert.ok('ws' in canary && canary.hello.name === 'b', `x-canary: yes should reach b, got ${JSON.stringify('ws' in canary ? canary.hello.name : canary)}`);
    canary.ws.close();
    const rw = await new Promise<{ hello: Hello; resp: string | undefined; ws: WebSocket }>((resolve, reject) => {
      const ws = new WebSocket(`${base}/outer/room`, { headers: { host: 'ws.example.com' } });
      let resp: string | undefined;
      ws.once('upgrade', (res) => (resp = res.headers['x-resp'] as string | undefined));
      ws.once('message', (d) => resolve({ hello: JSON.parse(String(d)) as Hello, resp, ws }));
      ws.once('error', reject);
    });
    assert.equal(rw.hello.url, '/inner/room', 'prefix rewrite applies to the upgrade request');
    assert.equal(rw.hello.headers['x-route'], 'rewrite', 'request header edits apply');
    assert.equal(rw.resp, 'edited', 'response header edits apply to the 101');
    rw.ws.close();
  });

  test('weights 1:3 are applied per upgrade request (400 upgrades within ±8%)', async () => {
    const counts: Record<string, number> = { a: 0, b: 0 };
    for (let batch = 0; batch < 8; batch++) {
      const opened = await Promise.all(Array.from({ length: 50 }, () => open(`${base}/weighted`, { host: 'ws.example.com' })));
      for (const o of opened) {
        assert.ok('ws' in o, `expected an open WebSocket, got ${JSON.stringify(o)}`);
        counts[o.hello.name]++;
        o.ws.terminate();
      }
    }
    const shareB = counts.b / 400;
    assert.ok(Math.abs(shareB - 0.75) <= 0.08, `expected ~75% to b, got ${(shareB * 100).toFixed(1)}% (${JSON.stringify(counts)})`);
  });

  const refusals = [
    { desc: 'no route: 404 NR', path: '/nothing', host: 'other.example.com', status: 404, flags: 'NR' },
    { desc: 'direct response on the matched route: 403', path: '/denied', host: 'ws.example.com', status: 403, flags: undefined },
    { desc: 'no healthy upstream: 503 UH', path: '/empty', host: 'ws.example.com', status: 503, flags: 'UH' },
    { desc: 'the backend refuses the upgrade: its 400 is relayed', path: '/reject', host: 'ws.example.com', status: 400, flags: undefined },
  ];
  for (const c of refusals) {
    test(`upgrade answered without a tunnel: ${c.desc}`, async () => {
      const r = await within(5000, open(`${base}${c.path}`, { host: c.host }), c.desc);
      assert.ok(!('ws' in r), `expected the upgrade to be refused, it was accepted by ${'ws' in r ? r.hello.name : ''}`);
      assert.equal(r.status, c.status, `expected ${c.status}, got ${r.status} ${r.body}`);
      assert.equal(r.flags, c.flags);
    });
  }

  test("a tunnel holds a slot of the cluster's circuit breaker until it closes: over the limit, 503 UO", async () => {
    const first = await open(`${base}/limited/1`, { host: 'ws.example.com' });
    assert.ok('ws' in first, 'the first tunnel opens');
    const second = await open(`${base}/limited/2`, { host: 'ws.example.com' });
    assert.ok('status' in second && second.status === 503 && second.flags === 'UO', `the second is refused with 503 UO, got ${JSON.stringify(second)}`);
    first.ws.close();
    await within(5000, new Promise((resolve) => first.ws.once('close', resolve)), 'first tunnel closed');
    let third: Awaited<ReturnType<typeof open>> = { status: 0, flags: undefined, body: '' };
    for (let i = 0; i < 50 && !('ws' in third); i++) {
      third = await open(`${base}/limited/3`, { host: 'ws.example.com' });
      if (!('ws' in third)) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok('ws' in third, `the slot is given back when the tunnel closes, got ${JSON.stringify(third)}`);
    third.ws.close();
  });

  test('the backend closing the WebSocket closes the client side', async () => {
    const r = await open(`${base}/close`, { host: 'ws.example.com' });
    assert.ok('ws' in r);
    const code = await within(5000, new Promise<number>((resolve) => r.ws.once('close', (c) => resolve(c))), 'close');
    assert.equal(code, 1000);
  });

  test('an idle tunnel is closed after the idle timeout; an active one is not', async () => {
    setWebSocketIdleTimeout(400);
    try {
      const idle = await open(`${base}/idle`, { host: 'ws.example.com' });
      const busy = await open(`${base}/busy`, { host: 'ws.example.com' });
      assert.ok('ws' in idle && 'ws' in busy);
      const started = Date.now();
      const closed = new Promise<number>((resolve) => idle.ws.once('close', () => resolve(Date.now() - started)));
      let busyClosed = false;
      busy.ws.once('close', () => (busyClosed = true));
      const ticker = setInterval(() => busy.ws.send('tick'), 100);
      const ms = await within(5000, closed, 'idle close');
      clearInterval(ticker);
      assert.ok(ms >= 300 && ms < 2000, `expected the idle tunnel closed after ~400 ms, got ${ms} ms`);
      assert.equal(busyClosed, false, 'the active tunnel stays open');
      busy.ws.close();
    } finally {
      setWebSocketIdleTimeout(300_000);
    }
  });
});

/** A masked client frame (RFC 6455 §5.2): FIN, `opcode`, payload. */
function clientFrame(opcode: number, payload: Buffer): Buffer {
  const mask = Buffer.from([1, 2, 3, 4]);
  const len = payload.length;
  const head = len < 126 ? Buffer.from([0x80 | opcode, 0x80 | len]) : Buffer.from([0x80 | opcode, 0x80 | 126, len >> 8, len & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, body]);
}

/** Reads unmasked server frames from a byte stream. */
class FrameReader {
  #buf = Buffer.alloc(0);
  #waiters: (() => void)[] = [];
  constructor(source: NodeJS.ReadableStream) {
    source.on('data', (c: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, c]);
      for (const w of this.#waiters.splice(0)) w();
    });
  }
  async next(): Promise<{ opcode: number; payload: Buffer }> {
    for (;;) {
      const b = this.#buf;
      if (b.length >= 2) {
        let len = b[1] & 0x7f;
        let off = 2;
        if (len === 126 && b.length >= 4) {
          len = b.readUInt16BE(2);
          off = 4;
        } else if (len === 127 && b.length >= 10) {
          len = Number(b.readBigUInt64BE(2));
          off = 10;
        }
        if (len < 126 || off > 2) {
          if (b.length >= off + len) {
            this.#buf = b.subarray(off + len);
            return { opcode: b[0] & 0x0f, payload: b.subarray(off, off + len) };
          }
        }
      }
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }
}

/** RFC 8441 extended CONNECT with node:http2: the answer's head and, on 200, a frame reader on the stream. */
async function h2WebSocket(
  port: number,
  o: { authority: string; path: string; tls?: { servername: string }; headers?: Record<string, string>; protocol?: string },
): Promise<{ session: http2.ClientHttp2Session; stream: http2.ClientHttp2Stream; status: number; headers: http2.IncomingHttpHeaders; frames: FrameReader; enabled: boolean }> {
  const session = o.tls
    ? http2.connect(`https://127.0.0.1:${port}`, { servername: o.tls.servername, rejectUnauthorized: false })
    : http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  const settings = await within(5000, new Promise<http2.Settings>((r) => session.once('remoteSettings', r)), 'server SETTINGS');
  const stream = session.request({
    ':method': 'CONNECT',
    ':protocol': o.protocol ?? 'websocket',
    ':scheme': o.tls ? 'https' : 'http',
    ':path': o.path,
    ':authority': o.authority,
    'sec-websocket-version': '13',
    ...(o.headers ?? {}),
  });
  stream.on('error', () => {});
  const frames = new FrameReader(stream);
  const headers = await within(5000, new Promise<http2.IncomingHttpHeaders>((r) => stream.once('response', r)), 'CONNECT response');
  return { session, stream, status: Number(headers[':status']), headers, frames, enabled: settings.enableConnectProtocol === true };
}

describe('WebSocket to TLS upstreams, over HTTP/2 (RFC 8441), and its request record', { timeout: 60_000 }, () => {
  let pki: Pki;
  const be: Record<string, WsEcho> = {};
  let gw: RuntimeHarness;
  let cert: TestCert;
  const records: RequestRecord[] = [];

  before(async () => {
    pki = makePki(['ws.example.com']);
    [cert] = makeCerts(['h2.example.com']);
    be.plain = await startWsEcho('plain');
    be.simple = await startWsEcho('simple', { cert: pki.server.cert, key: pki.server.key });
    be.mutual = await startWsEcho('mutual', { cert: pki.server.cert, key: pki.server.key, ca: pki.caA.cert, requestCert: true });
    const inline = (pem: string) => ({ kind: 'inline' as const, pem, secret: 'default/test' });
    const tls = (extra: Partial<UpstreamTls>): UpstreamTls => ({ mode: 'SIMPLE', caCertificates: inline(pki.caA.cert), clientCertificate: null, sni: 'ws.example.com', subjectAltNames: [], insecureSkipVerify: false, ...extra });
    const p = (value: string) => [match({ path: { kind: 'prefix', value, ignoreCase: false } })];
    const observer: RequestObserver = {
      begin: (listener, d) => new RequestRecord(listener, d, { finish: (rec) => records.push(rec) }),
      upstreamTraceHeaders: () => null,
    };
    const routes = [
      route('wss/simple', forward(['simple']), p('/simple')),
      route('wss/wrong-ca', forward(['wrong-ca']), p('/wrong-ca')),
      route('wss/mutual', forward(['mutual']), p('/mutual')),
      route('wss/h2-cluster', forward(['h2-cluster']), p('/h2-cluster')),
      route('wss/denied', { kind: 'direct', status: 403, body: 'denied', contentType: null }, p('/denied')),
      route('wss/empty', forward(['empty']), p('/empty')),
      route('wss/rewrite', forward(['plain'], { rewrite: { path: { kind: 'prefix', value: '/inner' }, authority: null } }), p('/outer'), {
        requestHeaders: ops({ set: [{ name: 'x-route', value: 'rewrite' }] }),
        responseHeaders: ops({ set: [{ name: 'x-resp', value: 'edited' }] }),
      }),
      route('wss/plain', forward(['plain']), p('/')),
    ];
    gw = await startRuntime(
      snapshot(
        [
          httpListener(await freePort(), [vhost('ws', ['ws.example.com'], routes)]),
          httpsListener(await freePort(), [chain('tls', [vhost('ws', ['ws.example.com'], routes)], [], tlsContext([{ secret: 'default/h2', serverNames: [], certChain: cert.certChain, privateKey: cert.privateKey }]))]),
        ],
        [
          cluster('plain', [{ port: be.plain.port }]),
          cluster('simple', [{ port: be.simple.port }], { tls: tls({}) }),
          cluster('wrong-ca', [{ port: be.simple.port }], { tls: tls({ caCertificates: inline(pki.caB.cert) }) }),
          cluster('mutual', [{ port: be.mutual.port }], { tls: tls({ mode: 'MUTUAL', clientCertificate: { certChain: inline(pki.clientA.cert), privateKey: inline(pki.clientA.key) } }) }),
          cluster('h2-cluster', [{ port: be.plain.port }], { protocol: 'HTTP2' }),
          cluster('empty', []),
        ],
      ),
      { observer },
    );
  });
  after(async () => {
    await gw?.close(300);
    await Promise.all(Object.values(be).map((b) => b.close()));
    pki?.cleanup();
  });

  const lastRecord = async (path: string): Promise<RequestRecord> => {
    let r: RequestRecord | undefined;
    await within(5000, (async () => {
      while ((r = [...records].reverse().find((x) => x.d.target === path)) === undefined) await new Promise((res) => setTimeout(res, 20));
    })(), `the record of ${path}`);
    return r!;
  };

  test('wss upstream (SIMPLE): the tunnel is TLS with the cluster SNI; echo both ways', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.port(0)}/simple/a`, { host: 'ws.example.com' }), 'open');
    assert.ok('ws' in r, `expected an open WebSocket, got ${JSON.stringify(r)}`);
    assert.equal(r.hello.name, 'simple');
    assert.equal(r.hello.sni, 'ws.example.com');
    r.ws.send('hi');
    assert.equal(await within(5000, next(r.ws), 'echo'), 'simple:hi');
    r.ws.close();
  });

  test('wss upstream (MUTUAL): the gateway presents the cluster client certificate', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.port(0)}/mutual`, { host: 'ws.example.com' }), 'open');
    assert.ok('ws' in r, `expected an open WebSocket, got ${JSON.stringify(r)}`);
    assert.match(r.hello.client ?? '', /spiffe:\/\/test\/client-a/);
    r.ws.close();
  });

  test('wss upstream with the wrong CA: 503 UF with the TLS reason, as for HTTP', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.port(0)}/wrong-ca`, { host: 'ws.example.com' }), 'refusal');
    assert.ok(!('ws' in r), 'the upgrade must be refused');
    assert.equal(r.status, 503);
    assert.equal(r.flags, 'UF');
    assert.match(r.body, /transport failure reason: TLS_error:CERTIFICATE_VERIFY_FAILED/);
  });

  test('a cluster speaking HTTP/2 to its endpoints gets the upgrade as HTTP/1.1', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.port(0)}/h2-cluster`, { host: 'ws.example.com' }), 'open');
    assert.ok('ws' in r, `expected an open WebSocket, got ${JSON.stringify(r)}`);
    r.ws.close();
  });

  for (const mode of ['h2c', 'h2 over TLS (ALPN)'] as const) {
    test(`${mode}: extended CONNECT is routed (rewrite, header edits), answered 200, and frames are spliced`, async () => {
      const port = mode === 'h2c' ? gw.port(0) : gw.port(1);
      const t = mode === 'h2c' ? undefined : { servername: 'ws.example.com' };
      const c = await h2WebSocket(port, { authority: 'ws.example.com', path: '/outer/room?x=1', tls: t });
      try {
        assert.equal(c.enabled, true, 'SETTINGS_ENABLE_CONNECT_PROTOCOL is advertised');
        assert.equal(c.status, 200, `expected 200, got ${c.status}`);
        assert.equal(c.headers['x-resp'], 'edited', 'response header edits apply to the 200');
        assert.equal(c.headers['sec-websocket-accept'], undefined, 'no HTTP/1.1 handshake header on HTTP/2');
        const hello = JSON.parse(String((await within(5000, c.frames.next(), 'hello frame')).payload)) as Hello;
        assert.equal(hello.url, '/inner/room?x=1');
        assert.equal(hello.headers['x-route'], 'rewrite');
        assert.equal(hello.headers['x-forwarded-proto'], mode === 'h2c' ? 'http' : 'https');
        c.stream.write(clientFrame(1, Buffer.from('over h2')));
        const echo = await within(5000, c.frames.next(), 'echo frame');
        assert.equal(echo.opcode, 1);
        assert.equal(String(echo.payload), 'plain:over h2');
        const big = Buffer.alloc(60_000, 'z');
        c.stream.write(clientFrame(1, big));
        assert.equal((await within(5000, c.frames.next(), 'big echo')).payload.length, big.length + 'plain:'.length);
      } finally {
        c.stream.close();
        c.session.close();
      }
      const rec = await lastRecord('/outer/room?x=1');
      assert.equal(rec.status, 200, 'an HTTP/2 tunnel is logged 200, as Envoy logs it');
      assert.equal(rec.route?.name, 'wss/rewrite');
      assert.ok(rec.bytesReceived > 60_000, `bytes from the client counted, got ${rec.bytesReceived}`);
      assert.ok(rec.bytesSent > 60_000, `bytes to the client counted, got ${rec.bytesSent}`);
    });
  }

  test('h2: extended CONNECT to a TLS upstream', async () => {
    const c = await h2WebSocket(gw.port(0), { authority: 'ws.example.com', path: '/simple' });
    try {
      assert.equal(c.status, 200);
      const hello = JSON.parse(String((await within(5000, c.frames.next(), 'hello')).payload)) as Hello;
      assert.equal(hello.name, 'simple');
    } finally {
      c.session.close();
    }
  });

  const h2Refusals = [
    { desc: 'direct response 403', path: '/denied', status: 403, flags: undefined },
    { desc: 'no healthy upstream 503 UH', path: '/empty', status: 503, flags: 'UH' },
    { desc: 'upstream TLS failure 503 UF', path: '/wrong-ca', status: 503, flags: 'UF' },
    { desc: 'the backend refuses the upgrade: its 400 is relayed', path: '/reject', status: 400, flags: undefined },
    { desc: 'the backend closes without answering: 503 UC', path: '/hangup', status: 503, flags: 'UC' },
  ];
  test('HTTP/1.1: the backend closes without answering the upgrade: 503 UC', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.port(0)}/hangup`, { host: 'ws.example.com' }), 'hangup');
    assert.ok(!('ws' in r));
    assert.equal(r.status, 503);
    assert.equal(r.flags, 'UC');
    const rec = await lastRecord('/hangup');
    assert.equal(rec.flags, 'UC');
  });
  for (const c of h2Refusals) {
    test(`h2: extended CONNECT answered as a local reply on the stream: ${c.desc}`, async () => {
      const r = await h2WebSocket(gw.port(0), { authority: 'ws.example.com', path: c.path });
      try {
        assert.equal(r.status, c.status);
        assert.equal(r.headers['x-meshgate-flags'], c.flags);
      } finally {
        r.session.close();
      }
    });
  }

  test('a chunked refusal is relayed with its framing (HTTP/1.1) or decoded (HTTP/2), and ends without the upstream closing', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.port(0)}/reject-chunked`, { host: 'ws.example.com' }), 'h1 refusal');
    assert.ok(!('ws' in r));
    assert.equal(r.status, 403);
    assert.equal(r.body, 'nope! :(');
    const c = await h2WebSocket(gw.port(0), { authority: 'ws.example.com', path: '/reject-chunked' });
    try {
      assert.equal(c.status, 403);
      const chunks: Buffer[] = [];
      c.stream.removeAllListeners('data');
      await within(5000, new Promise<void>((res) => {
        c.stream.on('data', (d: Buffer) => chunks.push(d));
        c.stream.on('end', () => res());
      }), 'h2 refusal body');
      assert.equal(Buffer.concat(chunks).toString(), 'nope! :(');
    } finally {
      c.session.close();
    }
  });

  test('h2: CONNECT without :protocol websocket is 405', async () => {
    const r = await h2WebSocket(gw.port(0), { authority: 'ws.example.com', path: '/', protocol: 'connect-udp' });
    try {
      assert.equal(r.status, 405);
    } finally {
      r.session.close();
    }
  });

  test('HTTP/1.1 tunnel record: status 101, finished when the tunnel closes, bytes both ways', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.port(0)}/record-h1`, { host: 'ws.example.com' }), 'open');
    assert.ok('ws' in r);
    r.ws.send(Buffer.alloc(5000, 1));
    await within(5000, next(r.ws), 'echo');
    await new Promise((res) => setTimeout(res, 200));
    assert.equal(records.find((x) => x.d.target === '/record-h1'), undefined, 'no record while the tunnel is open');
    await new Promise<void>((res) => {
      r.ws.once('close', () => res());
      r.ws.close();
    });
    const rec = await lastRecord('/record-h1');
    assert.equal(rec.status, 101);
    assert.equal(rec.flags, '-');
    assert.ok(rec.durationMs >= 200, `duration is the tunnel lifetime, got ${rec.durationMs} ms`);
    assert.ok(rec.bytesReceived >= 5000, `client bytes counted, got ${rec.bytesReceived}`);
    assert.ok(rec.bytesSent >= 5000, `upstream bytes counted, got ${rec.bytesSent}`);
    assert.equal(rec.upstreamHost, `127.0.0.1:${be.plain.port}`);
  });

  test('record of a client that resets the HTTP/2 tunnel: DC', async () => {
    const c = await h2WebSocket(gw.port(0), { authority: 'ws.example.com', path: '/record-reset' });
    await within(5000, c.frames.next(), 'hello');
    c.stream.close(http2.constants.NGHTTP2_CANCEL);
    const rec = await lastRecord('/record-reset');
    c.session.close();
    assert.equal(rec.status, 200);
    assert.equal(rec.flags, 'DC');
  });
});

describe('WebSocket in metrics and the access log (meshgate run)', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let echo: WsEcho;

  before(async () => {
    echo = await startWsEcho('obs');
    writeConfig(dir, 'config.yaml', [
      serviceYaml('ws', [echo.port]),
      `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [ws.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: ws, namespace: default }
spec:
  hosts: [ws.example.com]
  gateways: [gw]
  http:
    - route: [{ destination: { host: ws } }]
`,
    ].join('---\n'));
    gw = await startGateway({ configDir: dir, workers: 1, args: ['--access-log', 'stdout'] });
  });
  after(async () => {
    await gw?.stop();
    await echo?.close();
    removeDir(dir);
  });

  test('one istio_requests_total sample and one access-log line per WebSocket, written when it closes: 101 over HTTP/1.1, 200 over HTTP/2', async () => {
    const r = await within(5000, open(`ws://127.0.0.1:${gw.httpPort}/chat-h1`, { host: 'ws.example.com' }), 'open');
    assert.ok('ws' in r);
    r.ws.send('x'.repeat(3000));
    await within(5000, next(r.ws), 'echo');
    await new Promise((res) => setTimeout(res, 300));
    assert.ok(!gw.output().includes('/chat-h1'), 'no log line while the tunnel is open');
    await new Promise<void>((res) => {
      r.ws.once('close', () => res());
      r.ws.close();
    });
    const c = await h2WebSocket(gw.httpPort, { authority: 'ws.example.com', path: '/chat-h2' });
    await within(5000, c.frames.next(), 'hello');
    c.stream.end();
    c.session.close();
    await waitFor(() => gw.output().includes('/chat-h1') && gw.output().includes('/chat-h2'), 5000, 'the two access-log lines');
    const lines = gw.output().split('\n');
    const h1 = lines.find((l) => l.includes('/chat-h1'))!;
    const h2 = lines.find((l) => l.includes('/chat-h2'))!;
    assert.match(h1, /"GET \/chat-h1 HTTP\/1\.1" 101 - /, h1);
    assert.match(h2, /"GET \/chat-h2 HTTP\/2(?:\.0)?" 200 - /, h2);
    // Istio TEXT format: ... "<details>" "<termination details>" "<upstream failure>" <bytes received> <bytes sent> <duration> ...
    const m = /" (\d+) (\d+) (\d+) /.exec(h1.slice(h1.indexOf('via_upstream')));
    assert.ok(m !== null, `bytes and duration in ${h1}`);
    assert.ok(Number(m[1]) >= 3000 && Number(m[2]) >= 3000, `bytes each way counted: ${h1}`);
    assert.ok(Number(m[3]) >= 300, `duration is the tunnel lifetime: ${h1}`);
    const res = await get(`http://127.0.0.1:${gw.adminPort}/metrics`);
    const samples = parsePrometheus(res.body).filter((s) => s.name === 'istio_requests_total' && s.labels.destination_service === 'ws.default.svc.cluster.local');
    const count = (code: string) => samples.filter((s) => s.labels.response_code === code).reduce((n, s) => n + s.value, 0);
    assert.equal(count('101'), 1, `one 101 sample: ${JSON.stringify(samples)}`);
    assert.equal(count('200'), 1, `one 200 sample: ${JSON.stringify(samples)}`);
  });
});
