import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseAuthCacheDuration, parseAuthCacheKey } from './auth-cache.js';

const durations: { desc: string; input: string; want: ReturnType<typeof parseAuthCacheDuration> | RegExp }[] = [
  { desc: 'ingress-nginx default', input: '200 202 401 5m', want: [{ statuses: [200, 202, 401], seconds: 300 }] },
  { desc: 'several rules, times added up', input: '200 1h 30m, 401 30s', want: [{ statuses: [200], seconds: 5400 }, { statuses: [401], seconds: 30 }] },
  { desc: 'a time alone caches 200, 301, 302 (nginx proxy_cache_valid)', input: '10m', want: [{ statuses: [200, 301, 302], seconds: 600 }] },
  { desc: 'any', input: 'any 1m', want: [{ statuses: 'any', seconds: 60 }] },
  { desc: 'empty: the default', input: ' , ', want: [{ statuses: [200, 202, 401], seconds: 300 }] },
  { desc: 'a status after the time', input: '5m 200', want: /comes after the time/ },
  { desc: 'a time without unit', input: '200 300', want: /no time/ },
  { desc: 'a unit-less number', input: '200 30', want: /neither a status code/ },
  { desc: 'no time', input: '200 202', want: /no time/ },
];
for (const c of durations) {
  test(`parseAuthCacheDuration: ${c.desc}`, () => {
    const got = parseAuthCacheDuration(c.input);
    if (c.want instanceof RegExp) assert.match(String(got), c.want);
    else assert.deepEqual(got, c.want);
  });
}

const keys: { desc: string; input: string; want: ReturnType<typeof parseAuthCacheKey> | RegExp }[] = [
  { desc: 'the documented example', input: '$remote_user$http_authorization', want: [{ kind: 'request', name: 'remote_user' }, { kind: 'header', name: 'authorization' }] },
  { desc: 'braces, literal text, cookie and argument', input: 'k-${cookie_Session}:$arg_team', want: [{ kind: 'literal', value: 'k-' }, { kind: 'cookie', name: 'Session' }, { kind: 'literal', value: ':' }, { kind: 'query', name: 'team' }] },
  { desc: 'header name with underscores', input: '$http_x_auth_token', want: [{ kind: 'header', name: 'x-auth-token' }] },
  { desc: 'an unknown variable', input: '$ssl_client_s_dn', want: /not one meshgate evaluates/ },
  { desc: 'a lone $', input: 'a$', want: /does not start a variable/ },
  { desc: 'a space', input: '$host x', want: /not allowed/ },
];
for (const c of keys) {
  test(`parseAuthCacheKey: ${c.desc}`, () => {
    const got = parseAuthCacheKey(c.input);
    if (c.want instanceof RegExp) assert.match(String(got), c.want);
    else assert.deepEqual(got, c.want);
  });
}
