import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Framing, H1Parser, ParseError, type ParserHandler, type RequestHead } from './parser.js';

interface Seen {
  heads: { method: string; target: string; minor: number; headers: string[]; framing: Framing; keepAlive: boolean; upgrade: boolean }[];
  bodies: string[];
  complete: number;
  error: string | null;
}

/** Feeds `input` in pieces of `step` bytes (0 = whole), as a socket would. */
function run(input: string, step = 0): Seen {
  const seen: Seen = { heads: [], bodies: [], complete: 0, error: null };
  const handler: ParserHandler = {
    onHead(h: RequestHead) {
      seen.heads.push({ method: h.method, target: h.target, minor: h.versionMinor, headers: [...h.rawHeaders], framing: h.framing, keepAlive: h.keepAlive, upgrade: h.upgrade });
      seen.bodies.push('');
    },
    onBody(c: Buffer) {
      seen.bodies[seen.bodies.length - 1] += c.toString('latin1');
    },
    onMessageComplete() {
      seen.complete++;
    },
  };
  const p = new H1Parser(handler);
  const buf = Buffer.from(input, 'latin1');
  const size = step === 0 ? buf.length : step;
  try {
    for (let at = 0; at < buf.length; at += size) {
      const chunk = buf.subarray(at, Math.min(buf.length, at + size));
      let i = 0;
      while (i < chunk.length) {
        i = p.execute(chunk, i);
        p.next();
      }
    }
  } catch (err) {
    if (!(err instanceof ParseError)) throw err;
    seen.error = `${err.status} ${err.code}`;
  }
  return seen;
}

const H = 'Host: a\r\n';

test('parser: well-formed requests, whole and byte by byte', () => {
  const cases: { desc: string; input: string; want: { targets: string[]; bodies: string[]; complete: number } }[] = [
    { desc: 'GET', input: `GET /x?y HTTP/1.1\r\n${H}\r\n`, want: { targets: ['/x?y'], bodies: [''], complete: 1 } },
    { desc: 'Content-Length body', input: `POST / HTTP/1.1\r\n${H}Content-Length: 5\r\n\r\nhello`, want: { targets: ['/'], bodies: ['hello'], complete: 1 } },
    { desc: 'chunked body with extension and trailers', input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: v\r\n\r\n`, want: { targets: ['/'], bodies: ['hello0123456789'], complete: 1 } },
    { desc: 'two pipelined', input: `GET /1 HTTP/1.1\r\n${H}\r\nGET /2 HTTP/1.1\r\n${H}\r\n`, want: { targets: ['/1', '/2'], bodies: ['', ''], complete: 2 } },
    { desc: 'leading empty line', input: `\r\nGET / HTTP/1.1\r\n${H}\r\n`, want: { targets: ['/'], bodies: [''], complete: 1 } },
    { desc: 'absolute-form and asterisk', input: `GET http://a/b HTTP/1.1\r\n${H}\r\nOPTIONS * HTTP/1.1\r\n${H}\r\n`, want: { targets: ['http://a/b', '*'], bodies: ['', ''], complete: 2 } },
  ];
  for (const c of cases) {
    for (const step of [0, 1, 3]) {
      const got = run(c.input, step);
      assert.equal(got.error, null, `${c.desc} (step ${step})`);
      assert.deepEqual({ targets: got.heads.map((h) => h.target), bodies: got.bodies, complete: got.complete }, c.want, `${c.desc} (step ${step})`);
    }
  }
});

test('parser: header lines as received, values trimmed; connection semantics', () => {
  const got = run(`GET / HTTP/1.0\r\nHost:  a  \r\nX-E:\r\nConnection: Keep-Alive\r\n\r\n`);
  assert.deepEqual(got.heads[0].headers, ['Host', 'a', 'X-E', '', 'Connection', 'Keep-Alive']);
  assert.equal(got.heads[0].keepAlive, true);
  assert.equal(run(`GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\n`).heads[0].keepAlive, false);
  assert.equal(run(`GET / HTTP/1.1\r\n${H}Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n`).heads[0].upgrade, true);
});

test('parser: refusals', () => {
  const cases: { desc: string; input: string; want: string }[] = [
    { desc: 'bare LF', input: `GET / HTTP/1.1\n${H}\r\n`, want: '400 MG_H1_BARE_LF' },
    { desc: 'bare CR', input: `GET / HTTP/1.1\r\nX: a\rb\r\n\r\n`, want: '400 MG_H1_BARE_CR' },
    { desc: 'unknown method', input: `FOO / HTTP/1.1\r\n${H}\r\n`, want: '400 MG_H1_BAD_METHOD' },
    { desc: 'HTTP/2.0 request line', input: `GET / HTTP/2.0\r\n${H}\r\n`, want: '400 MG_H1_BAD_VERSION' },
    { desc: 'target with a space', input: `GET /a b HTTP/1.1\r\n${H}\r\n`, want: '400 MG_H1_BAD_VERSION' },
    { desc: 'authority-form without CONNECT', input: `GET a:80 HTTP/1.1\r\n${H}\r\n`, want: '400 MG_H1_BAD_TARGET' },
    { desc: 'obs-fold', input: `GET / HTTP/1.1\r\n${H} folded\r\n\r\n`, want: '400 MG_H1_OBS_FOLD' },
    { desc: 'space before colon', input: `GET / HTTP/1.1\r\nHost : a\r\n\r\n`, want: '400 MG_H1_BAD_HEADER_NAME' },
    { desc: 'NUL in a value', input: `GET / HTTP/1.1\r\nX: a\x00\r\n\r\n`, want: '400 MG_H1_BAD_HEADER_VALUE' },
    { desc: 'CL and TE', input: `POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`, want: '400 MG_H1_BAD_TRANSFER_ENCODING' },
    { desc: 'two CL', input: `POST / HTTP/1.1\r\n${H}Content-Length: 1\r\nContent-Length: 1\r\n\r\n`, want: '400 MG_H1_BAD_CONTENT_LENGTH' },
    { desc: 'CL not digits', input: `POST / HTTP/1.1\r\n${H}Content-Length: 1a\r\n\r\n`, want: '400 MG_H1_BAD_CONTENT_LENGTH' },
    { desc: 'TE gzip, chunked', input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n`, want: '501 MG_H1_TRANSFER_CODING' },
    { desc: 'chunk size not hex', input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nZ\r\n`, want: '400 MG_H1_BAD_CHUNK_SIZE' },
    { desc: 'chunk size overflow', input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n${'f'.repeat(14)}\r\n`, want: '400 MG_H1_CHUNK_SIZE_OVERFLOW' },
    { desc: 'chunk data without CRLF', input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nab\r\n`, want: '400 MG_H1_BAD_CHUNK_DATA' },
    { desc: 'whitespace in a chunk extension', input: `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1; a\r\n`, want: '400 MG_H1_BAD_CHUNK_EXT' },
    { desc: 'head over 64 KiB', input: `GET / HTTP/1.1\r\nX: ${'a'.repeat(70_000)}\r\n\r\n`, want: '431 MG_H1_HEAD_TOO_LARGE' },
    { desc: 'bytes after Connection: close', input: `GET / HTTP/1.1\r\n${H}Connection: close\r\n\r\nGET / HTTP/1.1\r\n`, want: '400 MG_H1_DATA_AFTER_CLOSE' },
  ];
  for (const c of cases) for (const step of [0, 1]) assert.equal(run(c.input, step).error, c.want, `${c.desc} (step ${step})`);
});

test('parser: Connection tokens accumulate over repeated lines (a later line never clears an earlier close)', () => {
  const twoLines = run(`GET /a HTTP/1.1\r\n${H}Connection: close\r\nConnection: xclosex\r\n\r\n`);
  assert.equal(twoLines.error, null);
  assert.equal(twoLines.heads[0].keepAlive, false);
  // The pipelined request after a "close" message is never served.
  for (const step of [0, 1]) {
    const piped = run(`GET /a HTTP/1.1\r\n${H}Connection: close\r\nConnection: xclosex\r\n\r\nGET /b HTTP/1.1\r\n${H}\r\n`, step);
    assert.deepEqual(piped.heads.map((h) => h.target), ['/a'], `step ${step}`);
    assert.equal(piped.error, '400 MG_H1_DATA_AFTER_CLOSE', `step ${step}`);
  }
  // Upgrade and keep-alive (HTTP/1.0) accumulate the same way.
  assert.equal(run(`GET / HTTP/1.1\r\n${H}Connection: Upgrade\r\nConnection: xupgradex\r\nUpgrade: websocket\r\n\r\n`).heads[0].upgrade, true);
  assert.equal(run(`GET / HTTP/1.0\r\n${H}Connection: keep-alive\r\nConnection: xkeep-alivex\r\n\r\n`).heads[0].keepAlive, true);
});

test('parser: Content-Length with leading zeros is accepted (as llhttp); past 2^53-1 it is refused', () => {
  const zeros = run(`POST / HTTP/1.1\r\n${H}Content-Length: 00000000000000005\r\n\r\nhello`);
  assert.equal(zeros.error, null);
  assert.deepEqual(zeros.bodies, ['hello']);
  assert.equal(run(`POST / HTTP/1.1\r\n${H}Content-Length: 0000000000000000000000000\r\n\r\n`).complete, 1);
  assert.equal(run(`POST / HTTP/1.1\r\n${H}Content-Length: 0009007199254740991\r\n\r\n`).error, null);
  assert.equal(run(`POST / HTTP/1.1\r\n${H}Content-Length: 9007199254740992\r\n\r\n`).error, '400 MG_H1_BAD_CONTENT_LENGTH');
  assert.equal(run(`POST / HTTP/1.1\r\n${H}Content-Length: ${'9'.repeat(40)}\r\n\r\n`).error, '400 MG_H1_BAD_CONTENT_LENGTH');
});

test('parser: trailer lines are kept as one slice per read, not one Buffer per byte; split anywhere they parse the same', () => {
  const trailer = `X-Long: ${'v'.repeat(8000)}\r\nX-T: w\r\n`;
  const input = `POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n${trailer}\r\n`;
  const proto = Buffer.prototype as unknown as { subarray: (s?: number, e?: number) => Buffer };
  const own = Object.prototype.hasOwnProperty.call(proto, 'subarray');
  const original = proto.subarray;
  let calls = 0;
  proto.subarray = function (this: Buffer, s?: number, e?: number) {
    calls++;
    return original.call(this, s, e);
  };
  let got: Seen;
  try {
    got = run(input);
  } finally {
    if (own) proto.subarray = original;
    else delete (proto as { subarray?: unknown }).subarray;
  }
  assert.equal(got.error, null);
  assert.equal(got.complete, 1);
  assert.ok(calls < 100, `${calls} slices for one request with an 8 KB trailer`);
  for (const step of [1, 2, 7, 4096]) {
    const r = run(input, step);
    assert.equal(r.error, null, `step ${step}`);
    assert.equal(r.complete, 1, `step ${step}`);
  }
  // Still validated whatever the split: a bad name, a bad value, a bare CR in a trailer line.
  for (const [bad, want] of [
    ['X Y: v\r\n', '400 MG_H1_BAD_TRAILER'],
    ['X: a\x01b\r\n', '400 MG_H1_BAD_TRAILER'],
    ['X: a\rb\r\n', '400 MG_H1_BARE_CR'],
  ]) {
    for (const step of [0, 1, 3]) assert.equal(run(`POST / HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n${bad}\r\n`, step).error, want, `${JSON.stringify(bad)} step ${step}`);
  }
});
