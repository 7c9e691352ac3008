/**
 * The hostile-input corpus (hardening.md §4.1, §4.2; issue 5): raw bytes sent to the real runtime on
 * loopback, in front of a recording upstream. Each entry names the answer it expects. Then the
 * no-bypass proof: whatever the corpus sends, the upstream never receives a request that ANY common
 * interpretation of the path (one more percent-decoding, `\` as `/`, `;` parameters stripped, dot
 * segments resolved, slashes merged, as Tomcat, nginx, Express or a filesystem would) maps to the
 * denied `/admin` tree, and never a smuggled second request.
 */

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { DENY_ADMIN, isAdmin, upstreamReadings } from './corpus-policy.js';
import { sendRaw, startRecordingUpstream, type RecordingUpstream } from './harness.js';

const H = 'Host: gw.test\r\n';

/** [name, request bytes, expected status (0: connection closed without an answer is acceptable too)] */
const SMUGGLING: [string, string, number][] = [
  ['CL and TE together', `POST /x HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['TE chunked + CL hiding a request', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`, 400],
  ['duplicate CL, same value', `POST /x HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc`, 400],
  ['duplicate CL, different values', `POST /x HTTP/1.1\r\n${H}Content-Length: 3\r\nContent-Length: 40\r\n\r\nabc`, 400],
  ['CL list "3, 3"', `POST /x HTTP/1.1\r\n${H}Content-Length: 3, 3\r\n\r\nabc`, 400],
  ['CL "+3"', `POST /x HTTP/1.1\r\n${H}Content-Length: +3\r\n\r\nabc`, 400],
  ['CL "0x3"', `POST /x HTTP/1.1\r\n${H}Content-Length: 0x3\r\n\r\nabc`, 400],
  ['CL "-1"', `POST /x HTTP/1.1\r\n${H}Content-Length: -1\r\n\r\nabc`, 400],
  ['CL empty', `POST /x HTTP/1.1\r\n${H}Content-Length: \r\n\r\nabc`, 400],
  ['CL above 2^53', `POST /x HTTP/1.1\r\n${H}Content-Length: 99999999999999999999\r\n\r\nabc`, 400],
  ['whitespace before colon', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n`, 400],
  ['obs-fold before TE', `POST /x HTTP/1.1\r\n${H}X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['TE xchunked', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n`, 501],
  ['TE ",chunked"', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n`, 501],
  ['TE "chunked, chunked"', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n`, 400],
  ['TE "gzip, chunked" (not decoded here)', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`, 501],
  ['TE identity', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: identity\r\nContent-Length: 1\r\n\r\nx`, 400],
  ['TE empty', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: \r\n\r\n`, 400],
  ['TE in HTTP/1.0', `POST /x HTTP/1.0\r\n${H}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['two TE lines', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, 400],
  ['chunk size 0x5', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n`, 400],
  ['chunk size -0', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n-0\r\n\r\n`, 400],
  ['chunk size overflow', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n`, 400],
  ['bare CR in chunk extension', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1;a\rb\r\nx\r\n0\r\n\r\n`, 400],
  ['chunk data without CRLF', `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n1\r\nxy0\r\n\r\n`, 400],
  ['bare LF line endings', `GET /x HTTP/1.1\n${H.replace('\r', '')}\n`, 400],
  ['NUL in a header value', `GET /x HTTP/1.1\r\n${H}X-A: a\x00b\r\n\r\n`, 400],
  ['CR in a header value', `GET /x HTTP/1.1\r\n${H}X-A: a\rb\r\n\r\n`, 400],
  ['empty header name', `GET /x HTTP/1.1\r\n${H}: v\r\n\r\n`, 400],
  ['0x80 in a header name', `GET /x HTTP/1.1\r\n${H}X-\x80: v\r\n\r\n`, 400],
  ['two Host headers', `GET /x HTTP/1.1\r\n${H}Host: other.test\r\n\r\n`, 400],
  ['no Host in HTTP/1.1', `GET /x HTTP/1.1\r\n\r\n`, 400],
  ['underscore in a header name', `GET /x HTTP/1.1\r\n${H}X_Forwarded_For: 10.0.0.1\r\n\r\n`, 400],
  ['fragment in the target', `GET /x#frag HTTP/1.1\r\n${H}\r\n`, 400],
  ['lowercase method', `get /x HTTP/1.1\r\n${H}\r\n`, 400],
  ['HTTP/1.32', `GET /x HTTP/1.32\r\n${H}\r\n`, 400],
  ['HTTP/2.0 on an HTTP/1 connection', `GET /x HTTP/2.0\r\n${H}\r\n`, 400],
  ['HTTP/0.9 request line', `GET /x\r\n\r\n`, 400],
  ['asterisk-form', `OPTIONS * HTTP/1.1\r\n${H}\r\n`, 400],
  ['header over 64 KiB', `GET /x HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(70_000)}\r\n\r\n`, 431],
  ['101 headers', `GET /x HTTP/1.1\r\n${H}${Array.from({ length: 101 }, (_, i) => `X-H${i}: v\r\n`).join('')}\r\n`, 431],
];

/** [name, request target, expected status] against DENY /admin, /admin/*. 403: denied; 400: refused as ambiguous. */
const PATH_TRICKS: [string, string, number][] = [
  ['plain', '/admin', 403],
  ['subtree', '/admin/users', 403],
  ['double slash', '//admin', 403],
  ['triple slash inside', '/admin///users', 403],
  ['dot segment', '/./admin', 403],
  ['dot-dot', '/public/../admin', 403],
  ['dot-dot above root', '/../admin', 403],
  ['encoded letter', '/%61dmin', 403],
  ['encoded letters, uppercase hex', '/%61%64%6D%69%6E', 403],
  ['encoded dots', '/public/%2e%2e/admin', 403],
  ['encoded dots, mixed case', '/public/%2E%2e/admin', 403],
  ['half-encoded dots', '/public/.%2e/admin', 403],
  ['trailing dot', '/admin/.', 403],
  ['backslash', '/public\\..\\admin', 403],
  ['backslash prefix', '\\admin', 400],
  ['merged after dot-dot', '/public//../admin', 403],
  ['encoded slash', '/public%2F..%2Fadmin', 400],
  ['encoded slash, lowercase', '/public%2f..%2fadmin', 400],
  ['encoded backslash', '/public%5C..%5Cadmin', 400],
  ['encoded slash in the name', '/admin%2Fusers', 400],
  ['double-encoded dots (decoded once only)', '/public/%252e%252e/admin', 200],
  ['path parameter', '/admin;jsessionid=1', 400],
  ['path parameter in a parent', '/public;x/../admin', 400],
  ['NUL', '/admin%00', 400],
  ['encoded NUL before a suffix', '/public/x%00/../../admin', 400],
  ['malformed escape', '/admin%zz', 400],
  ['raw non-ASCII', '/adm\xefn', 400],
  ['fragment', '/admin#x', 400],
  ['query is not the path', '/admin?x=1', 403],
  ['encoded question mark stays in the path', '/admin%3Fx', 200],
  ['absolute-form target', 'http://gw.test/admin', 403],
  ['absolute-form with dots', 'http://gw.test/public/../admin', 403],
  ['public path passes', '/public/index.html', 200],
  ['admin-like name passes', '/administrator', 200],
  ['case is significant (as Istio): the upstream sees /ADMIN, never /admin', '/ADMIN', 200],
];

describe('hostile-input corpus (runtime, loopback)', { timeout: 90_000 }, () => {
  let up: RecordingUpstream;
  let gw: RuntimeHarness;
  let port: number;

  before(async () => {
    up = await startRecordingUpstream();
    gw = await startRuntime(
      snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])], { authorizationPolicies: [DENY_ADMIN] }),
    );
    port = gw.port();
  });
  after(async () => {
    await gw?.close();
    await up?.close();
  });

  describe('HTTP/1.1 framing and smuggling: refused before anything reaches the upstream', () => {
    for (const [name, payload, want] of SMUGGLING) {
      test(name, async () => {
        up.reset();
        const r = await sendRaw(port, payload);
        assert.equal(r.statuses[0], want, `${name}: expected ${want}, got ${JSON.stringify(r.text.slice(0, 120))}`);
        assert.equal(r.statuses.length, 1, `${name}: exactly one response, got ${r.statuses.join(',')}`);
        assert.match(r.text, /\r\nserver: meshgate\r\n/i, `${name}: the refusal is the gateway's (server: meshgate), got ${JSON.stringify(r.text.slice(0, 160))}`);
        assert.ok(r.closed, `${name}: the connection must be closed after an error`);
        const completed = up.requests.filter((q) => q.complete);
        assert.equal(completed.length, 0, `${name}: the upstream must not receive a complete request, got ${JSON.stringify(completed.map((q) => q.url))}`);
        assert.ok(!up.bytes().includes('/smuggled'), `${name}: smuggled request reached the upstream`);
      });
    }

    test('a bad chunk after the head was forwarded: the upstream sees an aborted request, never a complete one', async () => {
      up.reset();
      // Valid head, valid first chunk, then an invalid chunk size once the request is under way.
      const r = await sendRaw(port, `POST /x HTTP/1.1\r\n${H}Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n\r\n`);
      assert.ok(r.statuses.length === 0 || r.statuses[0] >= 400, `expected an error or a reset, got ${r.text.slice(0, 80)}`);
      await new Promise((res) => setTimeout(res, 200));
      assert.equal(up.requests.filter((q) => q.complete).length, 0, 'the upstream must never see the body complete');
      assert.ok(!up.bytes().includes('0\r\n\r\n'), 'the upstream must never see the chunked terminator');
    });

    test('keep-alive desync: a valid request, then a smuggling payload on the same connection', async () => {
      up.reset();
      const r = await sendRaw(port, `GET /one HTTP/1.1\r\n${H}\r\nPOST /x HTTP/1.1\r\n${H}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`);
      // Node answers the parse error at once and closes: the pipelined first response may be lost
      // with the connection, but nothing after the bad request is ever parsed as a request.
      assert.equal(r.statuses[r.statuses.length - 1], 400, `got ${r.statuses.join(',')}`);
      assert.ok(r.closed);
      assert.ok(up.requests.every((q) => q.url === '/one'), `upstream saw ${up.requests.map((q) => q.url).join(',')}`);
    });

    test('a request pipelined behind a rejected one is never served', async () => {
      for (const bad of ['OPTIONS * HTTP/1.1', 'GET /a#b HTTP/1.1', 'GET /x%2Fy HTTP/1.1', `POST /x HTTP/1.1\r\nTransfer-Encoding: gzip, chunked`]) {
        up.reset();
        const first = bad.startsWith('POST') ? `${bad}\r\n${H}\r\n0\r\n\r\n` : `${bad}\r\n${H}Content-Length: 0\r\n\r\n`;
        const r = await sendRaw(port, `${first}GET /smuggled HTTP/1.1\r\n${H}\r\n`);
        assert.ok(r.statuses[0] >= 400, `${bad}: ${r.statuses.join(',')}`);
        assert.deepEqual(up.requests.map((q) => q.url), [], `${bad}: the pipelined request reached the upstream`);
      }
    });

    // defparam/smuggler-style Transfer-Encoding mutations: a byte placed around the name, colon and
    // value. Whatever the gateway answers, the upstream never sees a smuggled request, and a request
    // it does forward was re-framed by the gateway.
    const bytes = [0x01, 0x09, 0x0b, 0x0c, 0x0d, 0x20, 0x7f, 0x80, 0xff];
    const positions: ((b: string) => string)[] = [
      (b) => `${b}Transfer-Encoding: chunked`,
      (b) => `Transfer-Encoding${b}: chunked`,
      (b) => `Transfer-Encoding:${b}chunked`,
      (b) => `Transfer-Encoding: chunked${b}`,
      (b) => `Transfer-Encoding: ${b}chunked`,
      (b) => `X: x\r\n${b}Transfer-Encoding: chunked`,
      (b) => `Transfer${b}Encoding: chunked`,
      (b) => `Transfer-Encoding: chun${b}ked`,
    ];
    test(`Transfer-Encoding mutations (${bytes.length * positions.length} payloads)`, async () => {
      for (const b of bytes) {
        for (const [i, pos] of positions.entries()) {
          up.reset();
          const body = `0\r\n\r\nGET /smuggled HTTP/1.1\r\n${H}\r\n`;
          const payload = `POST /x HTTP/1.1\r\n${H}${pos(String.fromCharCode(b))}\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
          const r = await sendRaw(port, payload, 800);
          const what = `byte 0x${b.toString(16)} at position ${i}`;
          assert.ok(!up.bytes().includes('/smuggled') || up.requests.every((q) => q.url !== '/smuggled'), `${what}: smuggled request reached the upstream`);
          assert.ok(up.requests.every((q) => q.url !== '/smuggled'), `${what}: smuggled request parsed by the upstream`);
          assert.ok(r.statuses.length <= 1, `${what}: one response at most, got ${r.statuses.join(',')}`);
          for (const q of up.requests) assert.ok(q.headers['transfer-encoding'] === undefined || q.headers['transfer-encoding'] === 'chunked', `${what}: TE forwarded as received`);
        }
      }
    });
  });

  describe('path normalization against a DENY /admin policy', () => {
    for (const [name, target, want] of PATH_TRICKS) {
      test(`${name}: ${JSON.stringify(target)} -> ${want}`, async () => {
        up.reset();
        const r = await sendRaw(port, `GET ${target} HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
        assert.equal(r.statuses[0], want, `expected ${want}, got ${JSON.stringify(r.text.slice(0, 100))}`);
        for (const q of up.requests) {
          const bad = upstreamReadings(q.url).filter(isAdmin);
          assert.deepEqual(bad, [], `upstream received ${q.url}, which reads as ${bad.join(', ')}`);
        }
        if (want === 403) assert.match(r.text, /RBAC: access denied/);
      });
    }

    test('the normalized path is what the upstream receives', async () => {
      up.reset();
      const r = await sendRaw(port, `GET /public/./a//b/../%63ss?x=%2F HTTP/1.1\r\n${H}Connection: close\r\n\r\n`);
      assert.equal(r.statuses[0], 200);
      assert.deepEqual(up.requests.map((q) => q.url), ['/public/a/css?x=%2F']);
    });
  });
});
