import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REQUEST_LINE_LIMIT, sniffKind, type SniffKind } from './protocol-sniff.js';
import { classify as inboundClassify } from './inbound-sniff.js';
import { classify as outboundClassify } from './outbound.js';

const b = (s: string | number[]) => (typeof s === 'string' ? Buffer.from(s, 'latin1') : Buffer.from(s));

/** One table for both capture listeners: the bytes, and what they are. */
const CASES: { desc: string; input: Buffer; want: SniffKind }[] = [
  { desc: 'nothing yet', input: b([]), want: 'need-more' },
  { desc: 'a handshake record byte alone', input: b([0x16]), want: 'need-more' },
  { desc: 'a TLS handshake record', input: b([0x16, 0x03, 0x01]), want: 'tls' },
  { desc: '0x16 not followed by a TLS version', input: b([0x16, 0x01]), want: 'opaque' },
  { desc: 'the h2c preface', input: b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), want: 'h2' },
  { desc: 'part of the h2c preface', input: b('PRI * HTTP/2.0\r\n'), want: 'need-more' },
  { desc: 'a GET request line', input: b('GET / HTTP/1.1\r\n'), want: 'http1' },
  { desc: 'HTTP/1.0 with a bare LF', input: b('GET /x?a=1 HTTP/1.0\n'), want: 'http1' },
  { desc: 'a WebDAV method and headers after the line', input: b('PROPFIND /x HTTP/1.1\r\nhost: a\r\n'), want: 'http1' },
  { desc: 'a method with - and _', input: b('VERSION-CONTROL /x HTTP/1.1\r\n'), want: 'http1' },
  { desc: 'a request line cut in its target', input: b('PROPFIND /x'), want: 'need-more' },
  { desc: 'a request line cut in its version', input: b('GET / HTTP/1.'), want: 'need-more' },
  { desc: 'a request line cut before its LF', input: b('GET / HTTP/1.1\r'), want: 'need-more' },
  { desc: 'a method cut short', input: b('GE'), want: 'need-more' },
  { desc: 'a method without its space yet', input: b('POS'), want: 'need-more' },
  { desc: 'HTTP/2.0 in a request line', input: b('GET / HTTP/2.0\r\n'), want: 'opaque' },
  { desc: 'a version that is not HTTP', input: b('GET / HTTX'), want: 'opaque' },
  { desc: 'no target', input: b('GET  HTTP/1.1\r\n'), want: 'opaque' },
  { desc: 'a line ending after the target (HTTP/0.9)', input: b('GET /\r\n'), want: 'opaque' },
  { desc: 'an SMTP greeting', input: b('220 smtp ready\r\n'), want: 'opaque' },
  { desc: 'a memcached command (lower case is no method)', input: b('get key\r\n'), want: 'opaque' },
  { desc: 'lower-case words with spaces', input: b('hello world'), want: 'opaque' },
  { desc: 'a lower-case request line', input: b('get / HTTP/1.1\r\n'), want: 'opaque' },
  { desc: 'binary', input: b('\x00\x00\x00\x01'), want: 'opaque' },
  { desc: 'an SSH banner', input: b('SSH-2.0-OpenSSH\r\n'), want: 'opaque' },
  { desc: 'a run of letters longer than any method', input: b('ABCDEFGHIJKLMNOPQRSTUVWXYZ'), want: 'opaque' },
  { desc: 'a Redis array', input: b('*1\r\n$4\r\nPING\r\n'), want: 'opaque' },
  { desc: 'a leading space', input: b(' GET'), want: 'opaque' },
  { desc: 'a request line longer than the limit', input: b(`GET /${'a'.repeat(REQUEST_LINE_LIMIT)}`), want: 'opaque' },
];

for (const c of CASES) {
  test(`sniffKind: ${c.desc}`, () => {
    assert.equal(sniffKind(c.input), c.want, `${JSON.stringify(c.input.toString('latin1').slice(0, 40))}: expected ${c.want}`);
  });
}

test('the inbound and outbound listeners classify every case alike', () => {
  const outboundOf: Record<SniffKind, ReturnType<typeof outboundClassify>> = { tls: 'tls', h2: 'http', http1: 'http', opaque: 'tcp', 'need-more': 'need-more' };
  for (const c of CASES) {
    assert.equal(outboundClassify(c.input), outboundOf[c.want], `outbound, ${c.desc}`);
    // Inbound parses the ClientHello too: a bare TLS record header is not enough to decide there.
    const inbound = inboundClassify(c.input).kind;
    assert.equal(inbound, c.want === 'tls' ? 'need-more' : c.want, `inbound, ${c.desc}`);
  }
});
