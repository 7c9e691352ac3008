/**
 * The HTTP/1.1 response parser without sockets: every answer is fed whole, then split at every
 * byte position into two pieces, then one byte at a time; the result must not depend on the split.
 */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { H1ResponseParser, type ResponseSink } from './h1-response-parser.js';

interface Parsed {
  status: number;
  headers: string[];
  body: string;
  trailers: string[] | null;
  ended: boolean;
  keepAlive: boolean;
  keepAliveMs: number;
  error: string | null;
}

function parse(pieces: Buffer[], head = false, eof = false): Parsed {
  const out: Parsed = { status: 0, headers: [], body: '', trailers: null, ended: false, keepAlive: false, keepAliveMs: -1, error: null };
  const sink: ResponseSink = {
    onResponseHead(status, raw, keepAliveMs) {
      out.status = status;
      out.headers = raw;
      out.keepAliveMs = keepAliveMs;
    },
    onResponseData(chunk) {
      out.body += chunk.toString('latin1');
    },
    onResponseEnd(trailers) {
      out.ended = true;
      out.trailers = trailers === null ? null : trailers.map((b) => b.toString('latin1'));
    },
  };
  const p = new H1ResponseParser(sink);
  p.start(head);
  for (const piece of pieces) {
    const err = p.execute(piece);
    if (err !== null) {
      out.error = (err as Error & { code: string }).code;
      return out;
    }
  }
  if (eof) {
    const err = p.finish();
    if (err !== null) out.error = (err as Error & { code: string }).code;
  }
  out.keepAlive = p.keepAlive;
  return out;
}

function splits(raw: string): Buffer[][] {
  const b = Buffer.from(raw, 'latin1');
  const out: Buffer[][] = [[b]];
  for (let i = 1; i < b.length; i++) out.push([b.subarray(0, i), b.subarray(i)]);
  out.push(Array.from(b, (c) => Buffer.from([c])));
  return out;
}

const cases: { desc: string; raw: string; head?: boolean; eof?: boolean; want: Partial<Parsed> }[] = [
  { desc: 'Content-Length', raw: 'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A:  b \r\n\r\nhello', want: { status: 200, headers: ['Content-Length', '5', 'X-A', 'b'], body: 'hello', ended: true, keepAlive: true } },
  { desc: 'chunked with extension and trailers', raw: 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;a=b\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\ngrpc-status: 0\r\nx: y\r\n\r\n', want: { body: 'abc0123456789abcdef', trailers: ['grpc-status', '0', 'x', 'y'], ended: true, keepAlive: true } },
  { desc: 'chunked, no trailers', raw: 'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n', want: { body: 'z', trailers: null, ended: true } },
  { desc: 'interim answers then the final one', raw: 'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n', want: { status: 204, headers: [], body: '', ended: true } },
  { desc: 'HEAD ignores Content-Length', raw: 'HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n', head: true, want: { status: 200, body: '', ended: true } },
  { desc: '304 ignores Content-Length', raw: 'HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n', want: { status: 304, body: '', ended: true } },
  { desc: 'close-delimited', raw: 'HTTP/1.1 200 OK\r\n\r\nuntil the end', eof: true, want: { body: 'until the end', ended: true, keepAlive: false } },
  { desc: 'HTTP/1.0 closes by default', raw: 'HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAlive: false } },
  { desc: 'HTTP/1.0 with keep-alive', raw: 'HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\nkeep-alive: timeout=7, max=5\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAlive: true, keepAliveMs: 7000 } },
  { desc: 'Connection: close', raw: 'HTTP/1.1 200 OK\r\nconnection: upgrade, close\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAlive: false } },
  { desc: 'Connection: close alone', raw: 'HTTP/1.1 200 OK\r\nConnection: Close\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAlive: false } },
  { desc: 'Connection: keep-alive on HTTP/1.1 (as Node.js sends it)', raw: 'HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAlive: true, keepAliveMs: 5000 } },
  { desc: 'HTTP/1.0 with keep-alive and close: close wins', raw: 'HTTP/1.0 200 OK\r\nconnection: keep-alive\r\nconnection: close\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAlive: false } },
  { desc: 'cut short in a chunk', raw: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nab', eof: true, want: { body: 'ab', ended: false, error: 'UND_ERR_SOCKET' } },
  { desc: 'cut short in a Content-Length body', raw: 'HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab', eof: true, want: { body: 'ab', ended: false, error: 'UND_ERR_SOCKET' } },
  { desc: 'CL + TE', raw: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 1\r\n\r\n', want: { error: 'HPE_UNEXPECTED_CONTENT_LENGTH' } },
  { desc: 'chunked twice', raw: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n', want: { error: 'HPE_INVALID_TRANSFER_ENCODING' } },
  { desc: 'chunk without CRLF after data', raw: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\r\nab', want: { error: 'HPE_STRICT' } },
  { desc: 'chunk size line ended by a bare LF', raw: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n1\na\r\n', want: { error: 'HPE_INVALID_CHUNK_SIZE' } },
  { desc: 'Content-Length with leading zeros (as llhttp)', raw: 'HTTP/1.1 200 OK\r\ncontent-length: 0000000000000000002\r\n\r\nok', want: { status: 200, body: 'ok', ended: true, keepAlive: true } },
  { desc: 'Content-Length past 2^53-1', raw: 'HTTP/1.1 200 OK\r\ncontent-length: 9007199254740992\r\n\r\n', want: { error: 'HPE_UNEXPECTED_CONTENT_LENGTH' } },
  { desc: 'Content-Length as a list of identical values', raw: 'HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\nok', want: { status: 200, body: 'ok', ended: true } },
  { desc: 'Content-Length list with different values', raw: 'HTTP/1.1 200 OK\r\ncontent-length: 2,3\r\n\r\nok', want: { error: 'HPE_UNEXPECTED_CONTENT_LENGTH' } },
  { desc: 'Content-Length with a sign', raw: 'HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok', want: { error: 'HPE_UNEXPECTED_CONTENT_LENGTH' } },
  { desc: 'Keep-Alive timeout alone (as Node.js sends it)', raw: 'HTTP/1.1 200 OK\r\nKeep-Alive: timeout=120\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAlive: true, keepAliveMs: 120000 } },
  { desc: 'Keep-Alive timeout with spaces and another parameter', raw: 'HTTP/1.1 200 OK\r\nkeep-alive: max=3, TIMEOUT = 9\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAliveMs: 9000 } },
  { desc: 'Keep-Alive timeout not a number', raw: 'HTTP/1.1 200 OK\r\nkeep-alive: timeout=5s\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAliveMs: 5000 } },
  { desc: 'Keep-Alive timeout of ten digits', raw: 'HTTP/1.1 200 OK\r\nkeep-alive: timeout=1234567890\r\ncontent-length: 0\r\n\r\n', want: { ended: true, keepAliveMs: 123456789000 } },
  { desc: 'trailer without a colon', raw: 'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\nbad trailer\r\n\r\n', want: { error: 'HPE_INVALID_HEADER_TOKEN' } },
];

describe('H1ResponseParser', () => {
  for (const c of cases) {
    test(`${c.desc}: same result however the bytes are split`, () => {
      for (const pieces of splits(c.raw)) {
        const got = parse(pieces, c.head ?? false, c.eof ?? false);
        for (const [k, v] of Object.entries(c.want)) {
          assert.deepEqual(got[k as keyof Parsed], v, `${k} with pieces of sizes ${pieces.map((p) => p.length).join('+')}`);
        }
      }
    });
  }
});

describe('H1ResponseParser: bytes after the end of an answer', () => {
  test('an owner that arms the parser again from onResponseEnd never gets the rest of the read as the next answer', () => {
    const smuggled = 'HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nPWNED!';
    for (const [head, answer] of [
      [false, `HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok${smuggled}`],
      [true, `HTTP/1.1 200 OK\r\ncontent-length: ${smuggled.length}\r\n\r\n${smuggled}`],
      [false, `HTTP/1.1 204 No Content\r\n\r\n${smuggled}`],
      [false, `HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n${smuggled}`],
    ] as const) {
      const heads: number[] = [];
      let ends = 0;
      const sink: ResponseSink = {
        onResponseHead: (status) => void heads.push(status),
        onResponseData: () => {},
        onResponseEnd: () => {
          ends++;
          p.start(false);
        },
      };
      const p = new H1ResponseParser(sink);
      p.start(head);
      const err = p.execute(Buffer.from(answer, 'latin1')) as (Error & { code?: string }) | null;
      assert.equal(err?.code, 'HPE_INVALID_CONSTANT', answer);
      assert.deepEqual(heads, [heads[0]], 'one answer parsed');
      assert.equal(ends, 1);
    }
  });
});
