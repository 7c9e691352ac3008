/**
 * Gateway API conformance tests replayed through the real `meshgate run` process: the suite's own
 * manifests (routes and listeners as in kubernetes-sigs/gateway-api conformance/tests/*.yaml, the
 * backends named v1/v2/v3 as infra-backend-v1/2/3) and its tables of request -> backend or status.
 * As in the suite, every Gateway has an address of its own (127.0.0.x on port 80, with
 * --gateway-bind-addresses), so each test sees only its own routes. Covered:
 * HTTPRouteExactPathMatching, HTTPRouteHeaderMatching, HTTPRouteQueryParamMatching,
 * HTTPRouteMethodMatching, HTTPRouteHostnameIntersection (traffic, route status, attachedRoutes).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

/** One request to `address:port`: the status and the echo backend that answered (null: none). */
function send(address: string, port: number, c: Case): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address, port, path: c.path, method: c.method ?? 'GET', headers: { host: c.host ?? 'example.com', ...(c.headers ?? {}) }, agent: false }, (res) => {
      let body = '';
      res.on('data', (x: Buffer) => (body += x.toString()));
      res.on('end', () => {
        let name = '';
        try {
          name = ` ${(JSON.parse(body) as { name: string }).name}`;
        } catch {
          name = '';
        }
        resolve(`${res.statusCode}${name}`);
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`request ${c.path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

interface Case {
  path: string;
  host?: string;
  method?: string;
  headers?: Record<string, string>;
  /** `200 v1` (status and backend) or `404`. */
  want: string;
}

/** Runs a table against one Gateway address; reports every mismatch at once. */
async function table(address: string, port: number, cases: Case[]): Promise<void> {
  const got: string[] = [];
  for (const c of cases) got.push(`${c.method ?? 'GET'} ${c.host ?? ''}${c.path} ${JSON.stringify(c.headers ?? {})} -> ${await send(address, port, c)}`);
  assert.deepEqual(got, cases.map((c) => `${c.method ?? 'GET'} ${c.host ?? ''}${c.path} ${JSON.stringify(c.headers ?? {})} -> ${c.want}`));
}

const ADDR = {
  exact: '127.0.0.21',
  header: '127.0.0.22',
  query: '127.0.0.23',
  method: '127.0.0.24',
  intersection: '127.0.0.25',
  intersectionAll: '127.0.0.26',
};

const gateway = (name: string, address: string, listeners = '[{ name: http, port: 80, protocol: HTTP }]') => `
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: ${name}, namespace: infra }
spec:
  gatewayClassName: meshgate
  addresses: [{ type: IPAddress, value: ${address} }]
  listeners: ${listeners}
`;

const ROUTES = `
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: exact-path-matching, namespace: infra }
spec:
  parentRefs: [{ name: exact }]
  rules:
    - { matches: [{ path: { type: Exact, value: /one } }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ path: { type: Exact, value: /two } }], backendRefs: [{ name: v2, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: header-matching, namespace: infra }
spec:
  parentRefs: [{ name: header }]
  rules:
    - { matches: [{ headers: [{ name: version, value: one }] }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ headers: [{ name: version, value: two }] }], backendRefs: [{ name: v2, port: 80 }] }
    - { matches: [{ headers: [{ name: version, value: two }, { name: color, value: orange }] }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ headers: [{ name: color, value: blue }] }, { headers: [{ name: color, value: green }] }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ headers: [{ name: color, value: red }] }, { headers: [{ name: color, value: yellow }] }], backendRefs: [{ name: v2, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: query-param-matching, namespace: infra }
spec:
  parentRefs: [{ name: query }]
  rules:
    - { matches: [{ queryParams: [{ name: animal, value: whale }] }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ queryParams: [{ name: animal, value: dolphin }] }], backendRefs: [{ name: v2, port: 80 }] }
    - matches:
        - queryParams: [{ name: animal, value: dolphin }, { name: color, value: blue }]
        - queryParams: [{ name: ANIMAL, value: Whale }]
      backendRefs: [{ name: v3, port: 80 }]
    - { matches: [{ path: { type: PathPrefix, value: /path1 }, queryParams: [{ name: animal, value: whale }] }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ headers: [{ name: version, value: one }], queryParams: [{ name: animal, value: whale }] }], backendRefs: [{ name: v2, port: 80 }] }
    - { matches: [{ path: { type: PathPrefix, value: /path2 }, headers: [{ name: version, value: two }], queryParams: [{ name: animal, value: whale }] }], backendRefs: [{ name: v3, port: 80 }] }
    - matches:
        - { path: { type: PathPrefix, value: /path3 }, queryParams: [{ name: animal, value: shark }] }
        - { path: { type: PathPrefix, value: /path4 }, headers: [{ name: version, value: three }], queryParams: [{ name: animal, value: kraken }] }
      backendRefs: [{ name: v1, port: 80 }]
    - { matches: [{ path: { type: PathPrefix, value: /path5 } }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ queryParams: [{ name: animal, value: hydra }] }], backendRefs: [{ name: v2, port: 80 }] }
    - { matches: [{ headers: [{ name: version, value: four }] }], backendRefs: [{ name: v3, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: method-matching, namespace: infra }
spec:
  parentRefs: [{ name: method }]
  rules:
    - { matches: [{ method: POST }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ method: GET }], backendRefs: [{ name: v2, port: 80 }] }
    - { matches: [{ path: { type: PathPrefix, value: /path1 }, method: GET }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ headers: [{ name: version, value: one }], method: PUT }], backendRefs: [{ name: v2, port: 80 }] }
    - { matches: [{ path: { type: PathPrefix, value: /path2 }, headers: [{ name: version, value: two }], method: POST }], backendRefs: [{ name: v3, port: 80 }] }
    - matches:
        - { path: { type: PathPrefix, value: /path3 }, method: PATCH }
        - { path: { type: PathPrefix, value: /path4 }, headers: [{ name: version, value: three }], method: DELETE }
      backendRefs: [{ name: v1, port: 80 }]
    - { matches: [{ path: { type: PathPrefix, value: /path5 } }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ method: PATCH }], backendRefs: [{ name: v2, port: 80 }] }
    - { matches: [{ headers: [{ name: version, value: four }] }], backendRefs: [{ name: v3, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: specific-host-matches-listener-specific-host, namespace: infra }
spec:
  parentRefs: [{ name: httproute-hostname-intersection }]
  hostnames: [non.matching.com, "*.nonmatchingwildcard.io", very.specific.com]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /s1 } }], backendRefs: [{ name: v1, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: specific-host-matches-listener-wildcard-host, namespace: infra }
spec:
  parentRefs: [{ name: httproute-hostname-intersection }]
  hostnames: [non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /s2 } }], backendRefs: [{ name: v2, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: wildcard-host-matches-listener-specific-host, namespace: infra }
spec:
  parentRefs: [{ name: httproute-hostname-intersection }]
  hostnames: [non.matching.com, "*.specific.com"]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /s3 } }], backendRefs: [{ name: v3, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: wildcard-host-matches-listener-wildcard-host, namespace: infra }
spec:
  parentRefs: [{ name: httproute-hostname-intersection }]
  hostnames: ["*.anotherwildcard.io"]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /s4 } }], backendRefs: [{ name: v1, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: no-intersecting-hosts, namespace: infra }
spec:
  parentRefs: [{ name: httproute-hostname-intersection }]
  hostnames: [specific.but.wrong.com, wildcard.io]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /s5 } }], backendRefs: [{ name: v2, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: httproute-hostname-intersection-all, namespace: infra }
spec:
  parentRefs: [{ name: httproute-hostname-intersection-all }]
  hostnames: [first.com, sub.first.com, second.com, sub.second.com]
  rules: [{ backendRefs: [{ name: v2, port: 80 }] }]
`;

describe('Gateway API conformance tables, one address per Gateway', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};

  before(async () => {
    for (const name of ['v1', 'v2', 'v3']) e[name] = await startEchoServer({ name });
    writeConfig(dir, 'backends.yaml', ['v1', 'v2', 'v3'].map((n) => serviceYaml(n, [e[n].port], { namespace: 'infra' })).join('---\n'));
    const http = (name: string, hostname: string) => `{ name: ${name}, port: 80, protocol: HTTP, hostname: "${hostname}", allowedRoutes: { namespaces: { from: Same } } }`;
    writeConfig(dir, 'gateways.yaml', [
      `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
`,
      gateway('exact', ADDR.exact),
      gateway('header', ADDR.header),
      gateway('query', ADDR.query),
      gateway('method', ADDR.method),
      gateway('httproute-hostname-intersection', ADDR.intersection, `[${http('listener-1', 'very.specific.com')}, ${http('listener-2', '*.wildcard.io')}, ${http('listener-3', '*.anotherwildcard.io')}]`),
      gateway('httproute-hostname-intersection-all', ADDR.intersectionAll),
    ].join('---\n'));
    writeConfig(dir, 'routes.yaml', ROUTES);
    gw = await startGateway({ configDir: dir, args: ['--gateway-bind-addresses', '127.0.0.0/8'] });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(e)) await x.close();
    removeDir(dir);
  });

  test('HTTPRouteExactPathMatching: whole path, case-sensitive', async () => {
    await table(ADDR.exact, gw.httpPort, [
      { path: '/one', want: '200 v1' },
      { path: '/two', want: '200 v2' },
      { path: '/', want: '404' },
      { path: '/one/example', want: '404' },
      { path: '/two/', want: '404' },
      { path: '/Two', want: '404' },
    ]);
  });

  test('HTTPRouteHeaderMatching: AND within a match, OR across, more header matches win, ties by rule order', async () => {
    await table(ADDR.header, gw.httpPort, [
      { path: '/', headers: { Version: 'one' }, want: '200 v1' },
      { path: '/', headers: { Version: 'two' }, want: '200 v2' },
      { path: '/', headers: { Version: 'two', Color: 'orange' }, want: '200 v1' },
      { path: '/', headers: { Version: 'two', Color: 'blue' }, want: '200 v2' },
      { path: '/', headers: { Color: 'orange' }, want: '404' },
      { path: '/', headers: { 'Some-Other-Header': 'one' }, want: '404' },
      { path: '/', headers: { Color: 'blue' }, want: '200 v1' },
      { path: '/', headers: { Color: 'green' }, want: '200 v1' },
      { path: '/', headers: { Color: 'red' }, want: '200 v2' },
      { path: '/', headers: { Color: 'yellow' }, want: '200 v2' },
      { path: '/', headers: { Color: 'purple' }, want: '404' },
    ]);
  });

  test('HTTPRouteQueryParamMatching: exact, case-sensitive, more params win; path, method and headers come first', async () => {
    await table(ADDR.query, gw.httpPort, [
      { path: '/?animal=whale', want: '200 v1' },
      { path: '/?animal=dolphin', want: '200 v2' },
      { path: '/?animal=dolphin&color=blue', want: '200 v3' },
      { path: '/?ANIMAL=Whale', want: '200 v3' },
      { path: '/?animal=whale&otherparam=irrelevant', want: '200 v1' },
      { path: '/?animal=dolphin&color=yellow', want: '200 v2' },
      { path: '/?color=blue', want: '404' },
      { path: '/?animal=dog', want: '404' },
      { path: '/?animal=whaledolphin', want: '404' },
      { path: '/', want: '404' },
      { path: '/path1?animal=whale', want: '200 v1' },
      { path: '/?animal=whale', headers: { version: 'one' }, want: '200 v2' },
      { path: '/path2?animal=whale', headers: { version: 'two' }, want: '200 v3' },
      { path: '/path3?animal=shark', want: '200 v1' },
      { path: '/path4?animal=kraken', headers: { version: 'three' }, want: '200 v1' },
      { path: '/?animal=shark', want: '404' },
      { path: '/path4?animal=kraken', want: '404' },
      { path: '/path5?animal=hydra', want: '200 v1' },
      { path: '/?animal=hydra', headers: { version: 'four' }, want: '200 v3' },
    ]);
  });

  test('HTTPRouteMethodMatching: exact method (HEAD is not GET), ANDed with path and headers; a method match wins over a header match', async () => {
    await table(ADDR.method, gw.httpPort, [
      { path: '/', method: 'POST', want: '200 v1' },
      { path: '/', method: 'GET', want: '200 v2' },
      { path: '/', method: 'HEAD', want: '404' },
      { path: '/path1', method: 'GET', want: '200 v1' },
      { path: '/', method: 'PUT', headers: { version: 'one' }, want: '200 v2' },
      { path: '/path2', method: 'POST', headers: { version: 'two' }, want: '200 v3' },
      { path: '/path3', method: 'PATCH', want: '200 v1' },
      { path: '/path4', method: 'DELETE', headers: { version: 'three' }, want: '200 v1' },
      { path: '/', method: 'PUT', want: '404' },
      { path: '/path4', method: 'DELETE', want: '404' },
      { path: '/path5', method: 'PATCH', want: '200 v1' },
      { path: '/', method: 'PATCH', headers: { version: 'four' }, want: '200 v2' },
    ]);
  });

  test('HTTPRouteHostnameIntersection: the full matrix of listener and route hostnames', async () => {
    await table(ADDR.intersection, gw.httpPort, [
      { host: 'very.specific.com', path: '/s1', want: '200 v1' },
      { host: 'very.specific.com:1234', path: '/s1', want: '200 v1' },
      { host: 'non.matching.com', path: '/s1', want: '404' },
      { host: 'foo.nonmatchingwildcard.io', path: '/s1', want: '404' },
      { host: 'foo.wildcard.io', path: '/s1', want: '404' },
      { host: 'very.specific.com', path: '/non-matching-prefix', want: '404' },
      { host: 'foo.wildcard.io', path: '/s2', want: '200 v2' },
      { host: 'bar.wildcard.io', path: '/s2', want: '200 v2' },
      { host: 'foo.bar.wildcard.io', path: '/s2', want: '200 v2' },
      { host: 'non.matching.com', path: '/s2', want: '404' },
      { host: 'wildcard.io', path: '/s2', want: '404' },
      { host: 'very.specific.com', path: '/s2', want: '404' },
      { host: 'foo.wildcard.io', path: '/non-matching-prefix', want: '404' },
      { host: 'very.specific.com', path: '/s3', want: '200 v3' },
      { host: 'non.matching.com', path: '/s3', want: '404' },
      { host: 'foo.specific.com', path: '/s3', want: '404' },
      { host: 'foo.wildcard.io', path: '/s3', want: '404' },
      { host: 'very.specific.com', path: '/non-matching-prefix', want: '404' },
      { host: 'foo.anotherwildcard.io', path: '/s4', want: '200 v1' },
      { host: 'bar.anotherwildcard.io', path: '/s4', want: '200 v1' },
      { host: 'foo.bar.anotherwildcard.io', path: '/s4', want: '200 v1' },
      { host: 'anotherwildcard.io', path: '/s4', want: '404' },
      { host: 'foo.wildcard.io', path: '/s4', want: '404' },
      { host: 'very.specific.com', path: '/s4', want: '404' },
      { host: 'foo.anotherwildcard.io', path: '/non-matching-prefix', want: '404' },
      { host: 'specific.but.wrong.com', path: '/s5', want: '404' },
      { host: 'wildcard.io', path: '/s5', want: '404' },
    ]);
    await table(ADDR.intersectionAll, gw.httpPort, [
      { host: 'first.com', path: '/', want: '200 v2' },
      { host: 'sub.first.com', path: '/', want: '200 v2' },
      { host: 'second.com', path: '/', want: '200 v2' },
      { host: 'sub.second.com', path: '/', want: '200 v2' },
      { host: 'third.com', path: '/', want: '404' },
      { host: 'sub.third.com', path: '/', want: '404' },
    ]);
    const s = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`)).body) as {
      status: { gateways: { name: string; listeners: { name: string; attachedRoutes: number }[] }[]; routes: { name: string; parents: { conditions: { type: string; status: string; reason: string }[] }[] }[] };
    }).status;
    const g = s.gateways.find((x) => x.name === 'httproute-hostname-intersection');
    assert.deepEqual(Object.fromEntries((g?.listeners ?? []).map((l) => [l.name, l.attachedRoutes])), { 'listener-1': 2, 'listener-2': 1, 'listener-3': 1 });
    const none = s.routes.find((r) => r.name === 'no-intersecting-hosts');
    assert.deepEqual(none?.parents.map((p) => p.conditions.filter((c) => c.type === 'Accepted').map((c) => `${c.status}/${c.reason}`)), [['False/NoMatchingListenerHostname']]);
  });
});
