import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildUpstreamRequestHeaders, setAttemptCount, type ForwardMode } from './forward-headers.js';

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
    want: { 'x-forwarded-proto': 'http', 'x-forwarded-host': 'reviews:9080', 'x-forwarded-for': '192.0.2.1, 10.0.0.9', 'x-request-id': 'abc-1', 'x-envoy-attempt-count': '7', 'x-envoy-expected-rq-timeout-ms': '99', 'x-envoy-peer-metadata': 'Cg0K', 'x-envoy-peer-metadata-id': 'sidecar~10.0.0.1~a~b', accept: '*/*' },
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
