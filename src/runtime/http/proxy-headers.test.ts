/**
 * ProxyConfig proxyHeaders at run time, without sockets: what `compileProxyHeaders` makes of the IR
 * (null for every default: nothing per request), the upstream request headers with requestId and
 * attemptCount disabled, the response `server` header (overwrite, pass-through), and local answers
 * (`applyLocalReplyPolicy`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDownstreamResponseHeaders, buildUpstreamRequestHeaders, NO_ATTEMPT_COUNT, NO_DEBUG_HEADERS, NO_REQUEST_ID, XFCC_CERT, XFCC_CHAIN, XFCC_DNS, XFCC_SIDECAR, XFCC_SUBJECT, XFCC_URI, type ForwardMode } from './forward-headers.js';
import { compileProxyHeaders, xfccDetailsOf } from './proxy-headers.js';
import { applyLocalReplyPolicy } from './local-reply.js';
import type { ProxyHeaders } from '../../ir/proxy-headers.js';

const table: { desc: string; input: ProxyHeaders | undefined; want: ReturnType<typeof compileProxyHeaders> }[] = [
  { desc: 'no proxyHeaders', input: undefined, want: null },
  { desc: 'nothing that acts per request (IN_MESH, sidecar XFCC)', input: { metadataExchange: 'IN_MESH', forwardClientCertDetails: 'SANITIZE' }, want: null },
  { desc: 'server named', input: { server: { mode: 'overwrite', name: 'edge' } }, want: { server: 'edge', attemptCount: true, debugHeaders: true, forwardFlags: 0 } },
  { desc: 'server pass-through', input: { server: { mode: 'pass-through' } }, want: { server: null, attemptCount: true, debugHeaders: true, forwardFlags: 0 } },
  { desc: 'requestId disabled', input: { requestId: false }, want: { server: 'meshgate', attemptCount: true, debugHeaders: true, forwardFlags: NO_REQUEST_ID } },
  { desc: 'attemptCount disabled', input: { attemptCount: false }, want: { server: 'meshgate', attemptCount: false, debugHeaders: true, forwardFlags: NO_ATTEMPT_COUNT } },
  { desc: 'envoyDebugHeaders disabled', input: { envoyDebugHeaders: false }, want: { server: 'meshgate', attemptCount: true, debugHeaders: false, forwardFlags: NO_DEBUG_HEADERS } },
];
for (const c of table) {
  test(`compileProxyHeaders: ${c.desc}`, () => assert.deepEqual(compileProxyHeaders(c.input), c.want));
}

test('xfccDetailsOf: Istio sidecar default, and setCurrentClientCertDetails', () => {
  assert.equal(xfccDetailsOf(undefined), XFCC_SIDECAR);
  assert.equal(xfccDetailsOf({}), XFCC_SUBJECT | XFCC_DNS | XFCC_URI);
  assert.equal(xfccDetailsOf({ clientCertDetails: { subject: false, cert: true, chain: true, dns: false, uri: true } }), XFCC_CERT | XFCC_CHAIN | XFCC_URI);
});

function asMap(h: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < h.length; i += 2) {
    assert.equal(out[h[i]], undefined, `${h[i]} twice`);
    out[h[i]] = h[i + 1];
  }
  return out;
}

const modes: ForwardMode[] = ['gateway', 'sidecar-outbound', 'sidecar-inbound'];
for (const mode of modes) {
  test(`requestId disabled, ${mode}: none generated; a client's is kept; an ill-formed one is dropped`, () => {
    const none = buildUpstreamRequestHeaders(['host', 'a'], 'a', 'a', 'http', null, mode, NO_REQUEST_ID);
    assert.equal(asMap(none.headers)['x-request-id'], undefined);
    assert.equal(none.requestId, null);
    const own = buildUpstreamRequestHeaders(['host', 'a', 'X-Request-Id', 'abc-1'], 'a', 'a', 'http', null, mode, NO_REQUEST_ID);
    assert.equal(asMap(own.headers)['x-request-id'], 'abc-1');
    assert.equal(own.requestId, 'abc-1');
    const bad = buildUpstreamRequestHeaders(['host', 'a', 'x-request-id', 'a b'], 'a', 'a', 'http', null, mode, NO_REQUEST_ID);
    assert.equal(asMap(bad.headers)['x-request-id'], undefined);
    // Defaults: one is generated (the request path's behaviour before proxyHeaders).
    assert.match(asMap(buildUpstreamRequestHeaders(['host', 'a'], 'a', 'a', 'http', null, mode).headers)['x-request-id'], /^[0-9a-f-]{36}$/);
  });
}

test('attemptCount disabled, sidecar outbound: not set; the app\'s own passes unchanged', () => {
  const none = asMap(buildUpstreamRequestHeaders(['host', 'a'], 'a', 'a', 'http', null, 'sidecar-outbound', NO_ATTEMPT_COUNT).headers);
  assert.equal(none['x-envoy-attempt-count'], undefined);
  assert.match(none['x-request-id'], /^[0-9a-f-]{36}$/);
  const own = asMap(buildUpstreamRequestHeaders(['host', 'a', 'x-envoy-attempt-count', '5'], 'a', 'a', 'http', null, 'sidecar-outbound', NO_ATTEMPT_COUNT).headers);
  assert.equal(own['x-envoy-attempt-count'], '5');
  const both = asMap(buildUpstreamRequestHeaders(['host', 'a', 'x-envoy-attempt-count', '5'], 'a', 'a', 'http', null, 'sidecar-outbound', NO_ATTEMPT_COUNT | NO_REQUEST_ID).headers);
  assert.deepEqual(both, { host: 'a', 'x-envoy-attempt-count': '5', 'x-forwarded-proto': 'http' });
});

test("envoyDebugHeaders disabled, sidecar outbound: the app's x-envoy-expected-rq-timeout-ms passes (dropped by default)", () => {
  const raw = ['host', 'a', 'x-envoy-expected-rq-timeout-ms', '250'];
  assert.equal(asMap(buildUpstreamRequestHeaders([...raw], 'a', 'a', 'http', null, 'sidecar-outbound', NO_DEBUG_HEADERS).headers)['x-envoy-expected-rq-timeout-ms'], '250');
  assert.equal(asMap(buildUpstreamRequestHeaders([...raw], 'a', 'a', 'http', null, 'sidecar-outbound').headers)['x-envoy-expected-rq-timeout-ms'], undefined);
});

const upstream = (pairs: string[]): string[] => pairs;

test('response server header: meshgate by default, a name, or the upstream\'s passed through', () => {
  const raw = upstream(['Server', 'app/1.0', 'content-type', 'text/plain']);
  assert.equal(asMap(buildDownstreamResponseHeaders(raw)).server, 'meshgate');
  assert.equal(asMap(buildDownstreamResponseHeaders(raw, 'edge')).server, 'edge');
  assert.equal(asMap(buildDownstreamResponseHeaders(raw, null)).server, 'app/1.0');
  assert.equal(asMap(buildDownstreamResponseHeaders(upstream(['content-type', 'text/plain']), null)).server, undefined);
});

test('applyLocalReplyPolicy: server renamed or removed; debug headers removed when off', () => {
  const base = (): string[] => ['server', 'meshgate', 'content-type', 'text/plain', 'x-meshgate-flags', 'UO', 'x-envoy-overloaded', 'true', 'content-length', '3'];
  const named = base();
  applyLocalReplyPolicy(named, { server: 'edge', attemptCount: true, debugHeaders: true, forwardFlags: 0 });
  assert.deepEqual(named, ['server', 'edge', 'content-type', 'text/plain', 'x-meshgate-flags', 'UO', 'x-envoy-overloaded', 'true', 'content-length', '3']);
  const quiet = base();
  applyLocalReplyPolicy(quiet, { server: null, attemptCount: true, debugHeaders: false, forwardFlags: 0 });
  assert.deepEqual(quiet, ['content-type', 'text/plain', 'content-length', '3']);
});
