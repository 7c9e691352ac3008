import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseBool } from './parse.js';
import { mapLogFormat } from './configmap.js';
import { classifyAnnotations } from './registry.js';

for (const c of [
  { input: 'true', want: true }, { input: 'True', want: true }, { input: '1', want: true }, { input: 't', want: true },
  { input: 'false', want: false }, { input: 'FALSE', want: false }, { input: '0', want: false },
  { input: 'yes', want: null }, { input: 'on', want: null }, { input: '', want: null }, { input: ' true', want: null },
]) test(`parseBool(${JSON.stringify(c.input)}) = ${c.want} (Go strconv.ParseBool)`, () => assert.equal(parseBool(c.input), c.want));

test('mapLogFormat: ingress-nginx default variables map onto log operators; unknown ones become "-" and are listed', () => {
  const r = mapLogFormat('$remote_addr - [$time_local] "$request" $status $http_x_team $upstream_cache_status');
  assert.equal(r.format, '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% - [%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" %RESPONSE_CODE% %REQ(X-TEAM)% -');
  assert.deepEqual(r.unknown, ['upstream_cache_status']);
});

test('classifyAnnotations: only the nginx prefix, sorted, with status', () => {
  const got = classifyAnnotations({
    'nginx.ingress.kubernetes.io/server-snippet': 'x',
    'nginx.ingress.kubernetes.io/rewrite-target': '/',
    'nginx.ingress.kubernetes.io/limit-rate': '10',
    'nginx.ingress.kubernetes.io/nope': '1',
    'meshgate.io/local-rate-limit': '1/s',
  }).map((c) => [c.name, c.status]);
  assert.deepEqual(got, [['limit-rate', 'unsupported'], ['nope', 'unknown'], ['rewrite-target', 'honoured'], ['server-snippet', 'refused']]);
});

test('classifyAnnotations: a *-snippet annotation meshgate does not list is refused, never unknown (review L5)', () => {
  const got = classifyAnnotations({ 'nginx.ingress.kubernetes.io/lua-snippet': 'ngx.exit(200)', 'nginx.ingress.kubernetes.io/snippets': 'x' }).map((c) => [c.name, c.status]);
  assert.deepEqual(got, [['lua-snippet', 'refused'], ['snippets', 'unknown']]);
});
