/** resolvePeerAuthentication: scope precedence, UNSET inheritance and port-level overrides, as a table. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { PeerAuthenticationPolicy } from '../../ir/mesh.js';
import { resolvePeerAuthentication } from './peer-authentication.js';

const mesh = (mode: PeerAuthenticationPolicy['mode']): PeerAuthenticationPolicy => ({ name: 'm', namespace: 'istio-system', scope: 'mesh', selector: null, mode, portLevelMtls: [] });
const ns = (namespace: string, mode: PeerAuthenticationPolicy['mode']): PeerAuthenticationPolicy => ({ name: `n-${namespace}`, namespace, scope: 'namespace', selector: null, mode, portLevelMtls: [] });
const wl = (namespace: string, selector: Record<string, string>, mode: PeerAuthenticationPolicy['mode'], ports: [number, PeerAuthenticationPolicy['mode']][] = []): PeerAuthenticationPolicy => ({
  name: `w-${namespace}`,
  namespace,
  scope: 'workload',
  selector,
  mode,
  portLevelMtls: ports.map(([port, m]) => ({ port, mode: m })),
});

const cases: { desc: string; policies: PeerAuthenticationPolicy[]; ns?: string; labels?: Record<string, string>; port?: number; want: string }[] = [
  { desc: 'nothing anywhere: PERMISSIVE', policies: [], want: 'PERMISSIVE' },
  { desc: 'mesh STRICT applies everywhere', policies: [mesh('STRICT')], want: 'STRICT' },
  { desc: 'mesh UNSET: PERMISSIVE', policies: [mesh('UNSET')], want: 'PERMISSIVE' },
  { desc: 'namespace overrides mesh', policies: [mesh('STRICT'), ns('a', 'DISABLE')], want: 'DISABLE' },
  { desc: 'namespace UNSET inherits mesh', policies: [mesh('STRICT'), ns('a', 'UNSET')], want: 'STRICT' },
  { desc: 'another namespace policy does not apply', policies: [mesh('STRICT'), ns('b', 'DISABLE')], want: 'STRICT' },
  { desc: 'workload overrides namespace', policies: [ns('a', 'DISABLE'), wl('a', { app: 'x' }, 'STRICT')], want: 'STRICT' },
  { desc: 'workload UNSET inherits namespace', policies: [mesh('STRICT'), ns('a', 'DISABLE'), wl('a', { app: 'x' }, 'UNSET')], want: 'DISABLE' },
  { desc: 'workload selector not matching', policies: [ns('a', 'PERMISSIVE'), wl('a', { app: 'y' }, 'STRICT')], want: 'PERMISSIVE' },
  { desc: 'port-level overrides the workload mode for its port', policies: [wl('a', { app: 'x' }, 'STRICT', [[8080, 'DISABLE']])], want: 'DISABLE' },
  { desc: 'port-level for another port does not apply', policies: [wl('a', { app: 'x' }, 'STRICT', [[9090, 'DISABLE']])], want: 'STRICT' },
  { desc: 'port-level UNSET inherits the workload, which inherits the namespace', policies: [ns('a', 'DISABLE'), wl('a', { app: 'x' }, 'UNSET', [[8080, 'UNSET']])], want: 'DISABLE' },
  { desc: 'port-level STRICT over a DISABLE namespace', policies: [ns('a', 'DISABLE'), wl('a', { app: 'x' }, 'UNSET', [[8080, 'STRICT']])], want: 'STRICT' },
];

for (const c of cases) {
  test(`resolvePeerAuthentication: ${c.desc}`, () => {
    assert.equal(resolvePeerAuthentication(c.policies, c.ns ?? 'a', c.labels ?? { app: 'x' }, c.port ?? 8080), c.want);
  });
}
