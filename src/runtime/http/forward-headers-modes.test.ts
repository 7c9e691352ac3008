import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildDownstreamResponseHeaders, buildUpstreamRequestHeaders, NO_ATTEMPT_COUNT, NO_DEBUG_HEADERS, setAttemptCount, type ForwardMode } from './forward-headers.js';

/** The client's headers in every case: its own forwarding headers, Envoy's, and the metadata exchange's. */
const CLIENT = [
  'Host', 'reviews:9080',
  'X-Forwarded-Proto', 'https',
  'X-Forwarded-Host', 'shop.example.com',
  'X-Forwarded-For', '192.0.2.1',
  'X-Request-Id', 'abc-1',
  'X-Envoy-Attempt-Count', '7',
  'X-Envoy-Expected-Rq-Timeout-Ms', '99',
  'X-Envoy-Peer-Metadata', 'Cg0K',
  'X-Envoy-Peer-Metadata-Id', 'sidecar~10.0.0.1~a~b',
  'Accept', '*/*',
];

const CASES: { mode: ForwardMode; remote: string | null; want: Record<string, string | undefined> }[] = [
  {
    mode: 'gateway',
    remote: '10.0.0.9',
    // Istio's gateways count attempts (gateway.go include_request_attempt_count) and an external
    // client's x-envoy-expected-rq-timeout-ms is sanitized (Envoy header_sanitizing.rst).
    want: { 'x-forwarded-proto': 'http', 'x-forwarded-host': 'reviews:9080', 'x-forwarded-for': '192.0.2.1, 10.0.0.9', 'x-request-id': 'abc-1', 'x-envoy-attempt-count': '1', 'x-envoy-expected-rq-timeout-ms': undefined, 'x-envoy-peer-metadata': 'Cg0K', 'x-envoy-peer-metadata-id': 'sidecar~10.0.0.1~a~b', accept: '*/*' },
  },
  {
    mode: 'sidecar-outbound',
    remote: null,
    want: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example.com', 'x-forwarded-for': '192.0.2.1', 'x-request-id': 'abc-1', 'x-envoy-attempt-count': '1', 'x-envoy-expected-rq-timeout-ms': undefined, 'x-envoy-peer-metadata': undefined, 'x-envoy-peer-metadata-id': undefined, accept: '*/*' },
  },
  {
    mode: 'sidecar-inbound',
    remote: null,
    want: { 'x-forwarded-proto': 'https', 'x-forwarded-host': 'shop.example.com', 'x-forwarded-for': '192.0.2.1', 'x-request-id': 'abc-1', 'x-envoy-attempt-count': '7', 'x-envoy-expected-rq-timeout-ms': '99', 'x-envoy-peer-metadata': undefined, 'x-envoy-peer-metadata-id': undefined, accept: '*/*' },
  },
];

for (const c of CASES) {
  test(`buildUpstreamRequestHeaders, ${c.mode}: the client's forwarding headers`, () => {
    const out = buildUpstreamRequestHeaders([...CLIENT], 'reviews:9080', 'reviews:9080', 'http', c.remote, c.mode).headers;
    const got: Record<string, string> = {};
    for (let i = 0; i < out.length; i += 2) {
      assert.equal(got[out[i]], undefined, `${out[i]} twice`);
      got[out[i]] = out[i + 1];
    }
    for (const [name, value] of Object.entries(c.want)) assert.equal(got[name], value, name);
  });
}

test('a sidecar sets x-forwarded-proto only when the client sent none, and counts tries', () => {
  const out = buildUpstreamRequestHeaders(['host', 'a'], 'a', 'a', 'http', null, 'sidecar-outbound').headers;
  const at = (name: string) => out[out.indexOf(name) + 1];
  assert.equal(at('x-forwarded-proto'), 'http');
  assert.equal(out.includes('x-forwarded-host'), false);
  assert.match(at('x-request-id'), /^[0-9a-f-]{36}$/);
  setAttemptCount(out, 3);
  assert.equal(at('x-envoy-attempt-count'), '3');
});

test('the gateway counts tries as a sidecar\'s outbound side does; with attemptCount disabled the client\'s header passes', () => {
  const out = buildUpstreamRequestHeaders([...CLIENT], 'reviews:9080', 'reviews:9080', 'http', '10.0.0.9', 'gateway').headers;
  assert.deepEqual(out.filter((_, i) => out[i - (i % 2)] === 'x-envoy-attempt-count'), ['x-envoy-attempt-count', '1']);
  setAttemptCount(out, 2);
  assert.equal(out[out.indexOf('x-envoy-attempt-count') + 1], '2');
  const off = buildUpstreamRequestHeaders([...CLIENT], 'reviews:9080', 'reviews:9080', 'http', '10.0.0.9', 'gateway', NO_ATTEMPT_COUNT | NO_DEBUG_HEADERS).headers;
  assert.deepEqual(off.filter((_, i) => off[i - (i % 2)] === 'x-envoy-attempt-count'), ['x-envoy-attempt-count', '7']);
  assert.equal(off.includes('x-envoy-expected-rq-timeout-ms'), false, 'sanitized whatever the debug headers');
});

test('buildDownstreamResponseHeaders: the upstream\'s x-envoy-upstream-service-time is dropped only when the proxy sets its own', () => {
  const raw = ['Server', 'app', 'X-Envoy-Upstream-Service-Time', '5', 'Content-Type', 'text/plain'];
  assert.deepEqual(buildDownstreamResponseHeaders(raw, 'meshgate', true), ['content-type', 'text/plain', 'server', 'meshgate']);
  assert.deepEqual(buildDownstreamResponseHeaders(raw, 'meshgate'), ['x-envoy-upstream-service-time', '5', 'content-type', 'text/plain', 'server', 'meshgate']);
});
