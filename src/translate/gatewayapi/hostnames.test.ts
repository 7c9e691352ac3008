import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostnameProblem, hostnameSpecificity, hostnameWithin, intersectHostnames, normalizeHostname } from './hostnames.js';

// Gateway API hostnames concept page and HTTPRoute `spec.hostnames`.
const intersections: { desc: string; listener: string; route: string[]; want: string[] }[] = [
  { desc: 'no route hostnames: the listener hostname', listener: 'a.example.com', route: [], want: ['a.example.com'] },
  { desc: 'precise vs precise: equal', listener: 'a.example.com', route: ['a.example.com', 'b.example.com'], want: ['a.example.com'] },
  { desc: 'wildcard listener, precise route under it', listener: '*.example.com', route: ['a.example.com', 'a.b.example.com', 'example.com'], want: ['a.example.com', 'a.b.example.com'] },
  { desc: 'precise listener under a wildcard route: the listener hostname', listener: 'sub.domain.example.com', route: ['*.example.com'], want: ['sub.domain.example.com'] },
  { desc: 'wildcard vs wildcard: the more specific one', listener: '*.com', route: ['*.example.com'], want: ['*.example.com'] },
  { desc: 'wildcard vs wildcard the other way', listener: '*.foo.example.com', route: ['*.example.com'], want: ['*.foo.example.com'] },
  { desc: 'listener without hostname takes every route hostname', listener: '*', route: ['x.org', '*.y.org'], want: ['x.org', '*.y.org'] },
  { desc: 'a wildcard never covers the bare suffix', listener: 'example.com', route: ['*.example.com'], want: [] },
  { desc: 'duplicates collapse', listener: 'a.example.com', route: ['*.example.com', 'a.example.com'], want: ['a.example.com'] },
];
for (const c of intersections) {
  test(`intersectHostnames: ${c.desc}`, () => assert.deepEqual(intersectHostnames(c.listener, c.route), c.want));
}

test('hostnameWithin', () => {
  assert.equal(hostnameWithin('a.b.example.com', '*.example.com'), true);
  assert.equal(hostnameWithin('*.b.example.com', '*.example.com'), true);
  assert.equal(hostnameWithin('*.example.com', '*.b.example.com'), false);
  assert.equal(hostnameWithin('*', 'a.example.com'), false);
  assert.equal(hostnameWithin('anything', '*'), true);
});

test('hostnameSpecificity: exact, then wildcards with more labels, then none', () => {
  const order = ['*', '*.com', '*.example.com', '*.foo.example.com', 'foo.example.com'];
  assert.deepEqual([...order].reverse().sort((a, b) => hostnameSpecificity(b) - hostnameSpecificity(a)), [...order].reverse());
});

test('normalizeHostname and hostnameProblem', () => {
  assert.equal(normalizeHostname(undefined), '*');
  assert.equal(normalizeHostname('Foo.Example.COM.'), 'foo.example.com');
  assert.equal(hostnameProblem('*.example.com'), null);
  assert.match(String(hostnameProblem('10.0.0.1')), /IP address/);
  assert.match(String(hostnameProblem('a.*.example.com')), /wildcard/);
});
