/**
 * TCP/TLS route lookup: the exact-SNI index gives the same route as a linear first-match scan, for
 * any mix of exact, wildcard and catch-all routes (property test), and a table of small cases.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type { TcpRoute } from '../../ir/types.js';
import { compileTcpRoutes, findTcpRoute } from './tcp-listeners.js';

const NAMES = ['a.example.com', 'b.example.com', 'c.other.org', 'outbound_.80_._.x.default.svc.cluster.local'];
const listener = { ir: { externalPort: 443 } } as unknown as Parameters<typeof findTcpRoute>[0];

function route(name: string, blocks: string[][]): TcpRoute {
  return {
    name,
    source: { kind: 'VirtualService', namespace: 'default', name, file: null, line: null },
    matches: blocks.map((sniHosts) => ({ sniHosts, destinationSubnets: [], port: null })),
    destinations: [{ cluster: 'c', weight: 1 }],
  };
}

/** The definition: the first route with a block whose SNI list admits `sni`. */
function linear(routes: TcpRoute[], sni: string): string | null {
  for (const r of routes) {
    for (const m of r.matches) {
      if (m.sniHosts.length === 0) return r.name;
      if (sni === '') continue;
      if (m.sniHosts.some((h) => (h.startsWith('*.') ? sni.length > h.length - 1 && sni.endsWith(h.slice(1)) : h === sni))) return r.name;
    }
  }
  return null;
}

test('exact-SNI index: same route as a linear first-match scan', () => {
  const host = fc.constantFrom(...NAMES, '*.example.com', '*.org');
  const block = fc.oneof({ weight: 1, arbitrary: fc.constant([] as string[]) }, { weight: 6, arbitrary: fc.array(host, { minLength: 1, maxLength: 3 }) });
  const routes = fc.array(fc.array(block, { minLength: 1, maxLength: 2 }), { maxLength: 12 }).map((rs) => rs.map((b, i) => route(`r${i}`, b)));
  fc.assert(
    fc.property(routes, fc.constantFrom(...NAMES, 'z.example.com', 'nothing.net', ''), (rs, sni) => {
      const got = findTcpRoute(listener, compileTcpRoutes(rs, new Map()), sni, [], '127.0.0.1');
      assert.equal(got?.name ?? null, linear(rs, sni));
    }),
    { numRuns: 3000 },
  );
});

test('an earlier wildcard route wins over a later exact one; exact routes are found among thousands', () => {
  const many = Array.from({ length: 5000 }, (_, i) => route(`exact-${i}`, [[`host-${i}.example.com`]]));
  const compiled = compileTcpRoutes([route('wild', [['*.example.com']]), ...many], new Map());
  assert.equal(findTcpRoute(listener, compiled, 'host-42.example.com', [], '127.0.0.1')?.name, 'wild');
  const exactOnly = compileTcpRoutes(many, new Map());
  assert.equal(findTcpRoute(listener, exactOnly, 'host-4999.example.com', [], '127.0.0.1')?.name, 'exact-4999');
  assert.equal(findTcpRoute(listener, exactOnly, 'nope.example.com', [], '127.0.0.1'), null);
});
