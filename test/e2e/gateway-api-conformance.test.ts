/**
 * Gateway API conformance tests replayed through the real `meshgate run` process: the suite's own
 * manifests (routes and listeners as in kubernetes-sigs/gateway-api conformance/tests/*.yaml, the
 * backends named v1/v2/v3 as infra-backend-v1/2/3) and its tables of request -> backend or status.
 * As in the suite, every Gateway has an address of its own (127.0.0.x on port 80, with
 * --gateway-bind-addresses), so each test sees only its own routes. Covered:
 * HTTPRouteExactPathMatching, HTTPRouteHeaderMatching, HTTPRouteQueryParamMatching,
 * HTTPRouteMethodMatching, HTTPRouteHostnameIntersection (traffic, route status, attachedRoutes),
 * HTTPRouteRequestHeaderModifierBackendWeights, HTTPRouteRequestMultipleMirrors,
 * HTTPRouteRequestPercentageMirror, HTTPRoute303Redirect, HTTPRoute308Redirect,
 * GatewayNameMaximumLength, HTTPRouteBackendProtocolH2C, HTTPRouteBackendProtocolWebSocket,
 * HTTPRouteServiceTypes (IPv4 and IPv6 EndpointSlices, headless Services), HTTPRouteNamedRule,
 * HTTPRouteCORS (credentials cases), HTTPRouteRetry, and in a second process (listeners on ports 8080
 * and 8090 at their own addresses) HTTPRouteRedirectPortAndScheme, GatewayWithAttachedRoutesWithPort8080,
 * HTTPRouteListenerPortMatching; and gRPC (h2c): GRPCRouteHeaderMatching, GRPCRouteListenerHostnameMatching,
 * GRPCRouteNamedRule; TCP: TCPRouteWeightedRouting, TCPRouteParentRefAttachAll, TCPRouteParentRefPortAndSectionName.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http, { createServer, type Server } from 'node:http';
import http2 from 'node:http2';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';
import { startEchoServer } from '../../src/demo/echo-server.js';
import https from 'node:https';
import net from 'node:net';
import { get, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { grpc, grpcClient, startGrpcEcho, unary, type GrpcEchoServer } from '../support/grpc-echo.js';
import { startSummingBackend } from '../support/tcp-backends.js';
import { freePort } from '../helpers/gateway.js';

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

async function waitUntil(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
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
  filters: '127.0.0.27',
  longName: '127.0.0.28',
  protocols: '127.0.0.29',
  serviceTypes: '127.0.0.30',
  cors: '127.0.0.34',
  retry: '127.0.0.35',
};

/** A Service (`clusterIP: None` when headless) on port 8080 -> targetPort 3000, with manually managed EndpointSlices. */
function manualService(name: string, headless: boolean, slices: { family: 'IPv4' | 'IPv6'; address: string; port: number }[]): string {
  return [
    `apiVersion: v1
kind: Service
metadata: { name: ${name}, namespace: infra }
spec:
  ${headless ? 'clusterIP: None' : 'clusterIP: 10.96.0.40'}
  ports: [{ name: first-port, port: 8080, targetPort: 3000 }]
`,
    ...slices.map(
      (sl) => `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: ${name}-${sl.family.toLowerCase()}, namespace: infra, labels: { kubernetes.io/service-name: ${name} } }
addressType: ${sl.family}
ports: [{ name: first-port, port: ${sl.port} }]
endpoints: [{ addresses: ["${sl.address}"], conditions: { ready: true } }]
`,
    ),
  ].join('---\n');
}

const LONG_NAME = `gateway-name-maximum-length-${'a'.repeat(253 - 'gateway-name-maximum-length-'.length)}`;

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
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: request-header-modifier-backend-weights, namespace: infra }
spec:
  parentRefs: [{ name: filters }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /weights } }]
      backendRefs:
        - { name: v1, port: 80, weight: 10, filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: Backend, value: infra-backend-v1 }] } }] }
        - { name: v2, port: 80, weight: 10, filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: Backend, value: infra-backend-v2 }] } }] }
    - matches: [{ path: { type: PathPrefix, value: /multi-mirror } }]
      filters:
        - { type: RequestMirror, requestMirror: { backendRef: { name: mirror-a, port: 80 } } }
        - { type: RequestMirror, requestMirror: { backendRef: { name: mirror-b, port: 80 } } }
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /percent-mirror } }]
      filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: mirror-a, port: 80 }, percent: 20 } }]
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /fraction-mirror } }]
      filters: [{ type: RequestMirror, requestMirror: { backendRef: { name: mirror-b, port: 80 }, fraction: { numerator: 25, denominator: 50 } } }]
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /redirect-303 } }]
      filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org, statusCode: 303 } }]
    - matches: [{ path: { type: PathPrefix, value: /redirect-308 } }]
      filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org, statusCode: 308 } }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: backend-protocol-h2c, namespace: infra }
spec:
  parentRefs: [{ name: protocols }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /h2c } }], backendRefs: [{ name: h2c-backend, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: backend-protocol-ws, namespace: infra }
spec:
  parentRefs: [{ name: protocols }]
  rules: [{ matches: [{ path: { type: PathPrefix, value: /ws } }], backendRefs: [{ name: ws-backend, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: service-types, namespace: infra }
spec:
  parentRefs: [{ name: service-types }]
  rules:
    - { matches: [{ path: { type: Exact, value: /manual-endpointslices } }], backendRefs: [{ name: manual-endpointslices, port: 8080 }] }
    - { matches: [{ path: { type: Exact, value: /headless } }], backendRefs: [{ name: headless, port: 8080 }] }
    - { matches: [{ path: { type: Exact, value: /headless-manual-endpointslices } }], backendRefs: [{ name: headless-manual-endpointslices, port: 8080 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: http-named-rules, namespace: infra }
spec:
  parentRefs: [{ name: filters }]
  rules:
    - { name: named-rule, matches: [{ path: { type: PathPrefix, value: /named } }], backendRefs: [{ name: v1, port: 80 }] }
    - { matches: [{ path: { type: PathPrefix, value: /unnamed } }], backendRefs: [{ name: v2, port: 80 }] }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: cors, namespace: infra }
spec:
  parentRefs: [{ name: cors }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /cors-1 } }]
      filters:
        - type: CORS
          cors:
            allowOrigins: ["https://www.foo.com", "https://*.bar.com"]
            allowMethods: [GET, OPTIONS]
            allowHeaders: [x-header-1, x-header-2]
            exposeHeaders: [x-header-3, x-header-4]
            allowCredentials: true
            maxAge: 3600
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /cors-wildcard-methods-headers } }]
      filters: [{ type: CORS, cors: { allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], allowCredentials: true } }]
      backendRefs: [{ name: v1, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /cors-wildcard-methods-headers-unauth } }]
      filters: [{ type: CORS, cors: { allowOrigins: ["*"], allowMethods: ["*"], allowHeaders: ["*"], allowCredentials: false } }]
      backendRefs: [{ name: v1, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: retries, namespace: infra }
spec:
  parentRefs: [{ name: retry }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /retry/code-500-attempts-3 } }]
      retry: { codes: [500], attempts: 3 }
      backendRefs: [{ name: flaky, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /retry/code-all-attempts-2 } }]
      retry: { codes: [500, 502, 503, 504], attempts: 2 }
      backendRefs: [{ name: flaky, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /retry/no-status-code-attempts-3 } }]
      retry: { attempts: 3 }
      backendRefs: [{ name: flaky, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /retry/backend-request-timeout-200ms } }]
      retry: { attempts: 2 }
      timeouts: { backendRequest: 200ms }
      backendRefs: [{ name: flaky, port: 80 }]
    - matches: [{ path: { type: PathPrefix, value: /retry/request-timeout-200ms } }]
      retry: { codes: [500], attempts: 5 }
      timeouts: { backendRequest: 200ms, request: 400ms }
      backendRefs: [{ name: flaky, port: 80 }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: request-header-modifier-backend, namespace: infra }
spec:
  parentRefs: [{ name: filters }]
  rules:
    - matches: [{ path: { type: PathPrefix, value: /backend-filter/set } }]
      backendRefs: [{ name: v1, port: 80, filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { set: [{ name: X-Header-Set, value: set-overwrites-values }] } }] }]
    - matches: [{ path: { type: PathPrefix, value: /backend-filter/add } }]
      backendRefs: [{ name: v1, port: 80, filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { add: [{ name: X-Header-Add, value: add-appends-values }] } }] }]
    - matches: [{ path: { type: PathPrefix, value: /backend-filter/remove } }]
      backendRefs: [{ name: v1, port: 80, filters: [{ type: RequestHeaderModifier, requestHeaderModifier: { remove: [X-Header-Remove] } }] }]
    - matches: [{ path: { type: PathPrefix, value: /backend-filter/multiple } }]
      backendRefs:
        - name: v1
          port: 80
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier:
                set: [{ name: X-Header-Set-1, value: header-set-1 }, { name: X-Header-Set-2, value: header-set-2 }]
                add: [{ name: X-Header-Add-1, value: header-add-1 }, { name: X-Header-Add-2, value: header-add-2 }, { name: X-Header-Add-3, value: header-add-3 }]
                remove: [X-Header-Remove-1, X-Header-Remove-2]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: long-name, namespace: infra }
spec:
  parentRefs: [{ name: ${LONG_NAME} }]
  rules: [{ backendRefs: [{ name: v3, port: 80 }] }]
`;

describe('Gateway API conformance tables, one address per Gateway', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};
  /** Paths each mirror backend received. */
  const mirrored: Record<string, string[]> = { 'mirror-a': [], 'mirror-b': [] };
  const mirrors: Server[] = [];
  let h2cServer: http2.Http2Server;
  /**
   * Tries per request id; `?id=X&fail=N&code=C`: the first N tries of id X answer C (after `delay`
   * ms; `reset=1`: the connection is reset instead), then 200.
   */
  const tries = new Map<string, number>();
  let flakyServer: Server;
  let wsServer: WebSocketServer;

  before(async () => {
    for (const name of ['v1', 'v2', 'v3']) e[name] = await startEchoServer({ name });
    e.v6 = await startEchoServer({ name: 'v6', host: '::1' });
    const mirrorPorts: number[] = [];
    for (const name of ['mirror-a', 'mirror-b']) {
      const server = createServer((req, res) => {
        mirrored[name].push(req.url ?? '');
        res.end('mirror');
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      mirrors.push(server);
      mirrorPorts.push((server.address() as AddressInfo).port);
    }
    // appProtocol kubernetes.io/h2c: an HTTP/2 cleartext (prior knowledge) backend that says which protocol it got.
    h2cServer = http2.createServer((req, res) => res.end(JSON.stringify({ name: 'h2c', httpVersion: req.httpVersion })));
    await new Promise<void>((r) => h2cServer.listen(0, '127.0.0.1', r));
    // appProtocol kubernetes.io/ws: a WebSocket echo backend.
    wsServer = new WebSocketServer({ port: 0, host: '127.0.0.1' });
    wsServer.on('connection', (socket) => socket.on('message', (m) => socket.send(`echo:${String(m)}`)));
    await new Promise<void>((r) => wsServer.once('listening', () => r()));
    const withAppProtocol = (yaml: string, appProtocol: string) => yaml.replace('ports: [{ name: http, port: 80 }]', `ports: [{ name: http, port: 80, appProtocol: ${appProtocol} }]`);
    flakyServer = createServer((req, res) => {
      const q = new URL(req.url ?? '/', 'http://x').searchParams;
      const id = q.get('id') ?? '';
      const n = (tries.get(id) ?? 0) + 1;
      tries.set(id, n);
      const failing = n <= Number(q.get('fail') ?? 0);
      if (failing && q.get('reset') === '1') return void req.socket.resetAndDestroy();
      const answer = () => {
        if (res.destroyed) return;
        // No keep-alive: every try is a fresh connection, so the tries counted are the retry policy's
        // alone (a reset on a reused idle connection is resent once by the upstream pool first).
        res.writeHead(failing ? Number(q.get('code') ?? 500) : 200, { 'content-type': 'text/plain', connection: 'close' });
        res.end(`try ${n}`);
      };
      if (failing && q.get('delay') !== null) setTimeout(answer, Number(q.get('delay')));
      else answer();
    });
    await new Promise<void>((r) => flakyServer.listen(0, '127.0.0.1', r));
    writeConfig(dir, 'backends.yaml', [
      serviceYaml('flaky', [(flakyServer.address() as AddressInfo).port], { namespace: 'infra' }),
      withAppProtocol(serviceYaml('h2c-backend', [(h2cServer.address() as AddressInfo).port], { namespace: 'infra' }), 'kubernetes.io/h2c'),
      withAppProtocol(serviceYaml('ws-backend', [(wsServer.address() as AddressInfo).port], { namespace: 'infra' }), 'kubernetes.io/ws'),
      ...['v1', 'v2', 'v3'].map((n) => serviceYaml(n, [e[n].port], { namespace: 'infra' })),
      serviceYaml('mirror-a', [mirrorPorts[0]], { namespace: 'infra' }),
      serviceYaml('mirror-b', [mirrorPorts[1]], { namespace: 'infra' }),
      // HTTPRouteServiceTypes: IPv4 and IPv6 endpoints of one Service; headless Services.
      manualService('manual-endpointslices', false, [{ family: 'IPv4', address: '127.0.0.1', port: e.v1.port }, { family: 'IPv6', address: '::1', port: e.v6.port }]),
      manualService('headless', true, [{ family: 'IPv4', address: '127.0.0.1', port: e.v2.port }]),
      manualService('headless-manual-endpointslices', true, [{ family: 'IPv4', address: '127.0.0.1', port: e.v3.port }, { family: 'IPv6', address: '::1', port: e.v6.port }]),
    ].join('---\n'));
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
      gateway('filters', ADDR.filters),
      gateway(LONG_NAME, ADDR.longName),
      gateway('protocols', ADDR.protocols),
      gateway('service-types', ADDR.serviceTypes),
      gateway('cors', ADDR.cors),
      gateway('retry', ADDR.retry),
    ].join('---\n'));
    writeConfig(dir, 'routes.yaml', ROUTES);
    gw = await startGateway({ configDir: dir, args: ['--gateway-bind-addresses', '127.0.0.0/8'] });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(e)) await x.close();
    for (const m of mirrors) await new Promise<void>((r) => m.close(() => r()));
    await new Promise<void>((r) => (h2cServer ? h2cServer.close(() => r()) : r()));
    await new Promise<void>((r) => (flakyServer ? flakyServer.close(() => r()) : r()));
    await new Promise<void>((r) => (wsServer ? wsServer.close(() => r()) : r()));
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

  test('HTTPRouteRequestHeaderModifierBackendWeights: each backend sees only its own backendRef filter; both get traffic', async () => {
    const seen: Record<string, number> = {};
    for (let i = 0; i < 60; i++) {
      const r = await get(`http://${ADDR.filters}:${gw.httpPort}/weights`, { host: 'example.com' });
      const name = r.json?.name ?? '?';
      assert.equal(r.json?.headers.backend, `infra-backend-${name}`, `backend ${name} received Backend: ${String(r.json?.headers.backend)}`);
      seen[name] = (seen[name] ?? 0) + 1;
    }
    assert.deepEqual(Object.keys(seen).sort(), ['v1', 'v2']);
    assert.ok((seen.v1 ?? 0) >= 10 && (seen.v2 ?? 0) >= 10, `10/10 weights split 60 requests as ${JSON.stringify(seen)}`);
  });

  test('HTTPRouteRequestMultipleMirrors: both mirrors receive each request, the client gets the primary\'s answer', async () => {
    for (const k of Object.keys(mirrored)) mirrored[k].length = 0;
    for (let i = 0; i < 3; i++) {
      const r = await get(`http://${ADDR.filters}:${gw.httpPort}/multi-mirror/${i}`, { host: 'example.com' });
      assert.equal(r.json?.name, 'v1');
    }
    await waitUntil(() => mirrored['mirror-a'].length === 3 && mirrored['mirror-b'].length === 3, 'both mirrors to receive 3 requests');
    assert.deepEqual(mirrored['mirror-a'].sort(), ['/multi-mirror/0', '/multi-mirror/1', '/multi-mirror/2']);
    assert.deepEqual(mirrored['mirror-b'].sort(), ['/multi-mirror/0', '/multi-mirror/1', '/multi-mirror/2']);
  });

  test('HTTPRouteRequestPercentageMirror: percent 20 and fraction 25/50 mirror about that share', async () => {
    for (const k of Object.keys(mirrored)) mirrored[k].length = 0;
    const n = 300;
    for (let i = 0; i < n; i++) {
      assert.equal((await get(`http://${ADDR.filters}:${gw.httpPort}/percent-mirror`, { host: 'example.com' })).json?.name, 'v1');
      assert.equal((await get(`http://${ADDR.filters}:${gw.httpPort}/fraction-mirror`, { host: 'example.com' })).json?.name, 'v1');
    }
    // Mirrors are sent without waiting: let the last ones land.
    await new Promise((r) => setTimeout(r, 300));
    const a = mirrored['mirror-a'].length;
    const b = mirrored['mirror-b'].length;
    // Binomial(300, p): more than 4 standard deviations out is a failure (20%: 60 +- 28; 50%: 150 +- 35).
    assert.ok(a >= 32 && a <= 88, `percent 20 mirrored ${a} of ${n}`);
    assert.ok(b >= 115 && b <= 185, `fraction 25/50 mirrored ${b} of ${n}`);
  });

  test('HTTPRoute303Redirect and HTTPRoute308Redirect: those status codes, absolute Location', async () => {
    for (const code of [303, 308]) {
      const r = await get(`http://${ADDR.filters}:${gw.httpPort}/redirect-${code}`, { host: 'example.com' });
      assert.equal(r.status, code);
      assert.equal(r.headers.location, `http://example.org/redirect-${code}`);
    }
  });

  test('GatewayNameMaximumLength: a Gateway with a 253-character name is served and has its conditions', async () => {
    assert.equal(await send(ADDR.longName, gw.httpPort, { path: '/', want: '' }), '200 v3');
    const s = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`)).body) as { status: { gateways: { name: string; conditions: { type: string; status: string; observedGeneration: number }[] }[] } }).status;
    const g = s.gateways.find((x) => x.name === LONG_NAME);
    assert.deepEqual(g?.conditions.map((c) => `${c.type}=${c.status}@${c.observedGeneration}`), ['Accepted=True@1', 'Programmed=True@1']);
  });

  test('HTTPRouteBackendProtocolH2C: a Service port with appProtocol kubernetes.io/h2c is reached over HTTP/2 cleartext', async () => {
    const r = await get(`http://${ADDR.protocols}:${gw.httpPort}/h2c`, { host: 'example.com' });
    assert.equal(r.status, 200, r.body);
    assert.deepEqual(JSON.parse(r.body), { name: 'h2c', httpVersion: '2.0' });
  });

  test('HTTPRouteBackendProtocolWebSocket: a WebSocket through a Service port with appProtocol kubernetes.io/ws', async () => {
    const ws = new WebSocket(`ws://${ADDR.protocols}:${gw.httpPort}/ws`, { headers: { host: 'example.com' } });
    try {
      const reply = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no WebSocket echo within 10 s')), 10_000);
        ws.once('open', () => ws.send('hello'));
        ws.once('message', (m) => {
          clearTimeout(timer);
          resolve(String(m));
        });
        ws.once('error', (err) => {
          clearTimeout(timer);
          reject(err);
        });
      });
      assert.equal(reply, 'echo:hello');
    } finally {
      ws.close();
    }
  });

  test('HTTPRouteServiceTypes: a Service with IPv4 and IPv6 EndpointSlices reaches both; headless Services are served', async () => {
    const names = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const r = await get(`http://${ADDR.serviceTypes}:${gw.httpPort}/manual-endpointslices`, { host: 'example.com' });
      assert.equal(r.status, 200, r.body);
      names.add(r.json?.name ?? '?');
    }
    assert.deepEqual([...names].sort(), ['v1', 'v6'], 'both the IPv4 and the IPv6 endpoint answer');
    assert.equal((await get(`http://${ADDR.serviceTypes}:${gw.httpPort}/headless`, { host: 'example.com' })).json?.name, 'v2');
    const headless = new Set<string>();
    for (let i = 0; i < 40; i++) headless.add((await get(`http://${ADDR.serviceTypes}:${gw.httpPort}/headless-manual-endpointslices`, { host: 'example.com' })).json?.name ?? '?');
    assert.deepEqual([...headless].sort(), ['v3', 'v6']);
  });

  test('HTTPRouteNamedRule: a named and an unnamed rule both route; the name shows in the route table', async () => {
    await table(ADDR.filters, gw.httpPort, [
      { path: '/named', want: '200 v1' },
      { path: '/unnamed', want: '200 v2' },
    ]);
    const dump = (await get(`http://127.0.0.1:${gw.adminPort}/config_dump`)).body;
    assert.match(dump, /httproute\/infra\/http-named-rules\/rule\/0:named-rule\/match\/0/, 'the rule name is part of the route name');
  });

  test('HTTPRouteCORS: origins exact and wildcard, credentials echo the origin, method and headers instead of `*`', async () => {
    const at = (path: string, method: string, headers: Record<string, string>) => get(`http://${ADDR.cors}:${gw.httpPort}${path}`, { host: 'example.com', method, headers });
    const preflight = { 'access-control-request-method': 'GET', 'access-control-request-headers': 'x-header-1, x-header-2' };
    for (const origin of ['https://www.foo.com', 'https://www.bar.com', 'https://xpto.www.bar.com']) {
      const r = await at('/cors-1', 'OPTIONS', { origin, ...preflight });
      assert.ok(r.status === 200 || r.status === 204, `preflight from ${origin}: ${r.status}`);
      assert.equal(r.headers['access-control-allow-origin'], origin);
      assert.deepEqual(String(r.headers['access-control-allow-methods']).split(/,\s*/).sort(), ['GET', 'OPTIONS']);
      assert.deepEqual(String(r.headers['access-control-allow-headers']).split(/,\s*/).map((h) => h.toLowerCase()).sort(), ['x-header-1', 'x-header-2']);
      assert.deepEqual(String(r.headers['access-control-expose-headers']).split(/,\s*/).map((h) => h.toLowerCase()).sort(), ['x-header-3', 'x-header-4']);
      assert.equal(r.headers['access-control-max-age'], '3600');
      assert.equal(r.headers['access-control-allow-credentials'], 'true');
    }
    const denied = await at('/cors-1', 'OPTIONS', { origin: 'https://foobar.com', 'access-control-request-method': 'GET' });
    assert.ok([200, 204, 403].includes(denied.status), `non-matching preflight: ${denied.status}`);
    assert.equal(denied.headers['access-control-allow-origin'], undefined);
    const simple = await at('/cors-1', 'GET', { origin: 'https://www.bar.com' });
    assert.equal(simple.status, 200);
    assert.equal(simple.headers['access-control-allow-origin'], 'https://www.bar.com');
    const notAllowed = await at('/cors-1', 'GET', { origin: 'https://foobar.com' });
    assert.equal(notAllowed.headers['access-control-allow-origin'], undefined);
    // Wildcards with credentials: the origin, method and headers are echoed, never `*`.
    const wild = await at('/cors-wildcard-methods-headers', 'OPTIONS', { origin: 'https://other.foo.com', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'x-header-1, x-header-2' });
    assert.ok(wild.status === 200 || wild.status === 204, String(wild.status));
    assert.equal(wild.headers['access-control-allow-origin'], 'https://other.foo.com');
    assert.equal(wild.headers['access-control-allow-methods'], 'PUT');
    assert.deepEqual(String(wild.headers['access-control-allow-headers']).split(/,\s*/).map((h) => h.toLowerCase()).sort(), ['x-header-1', 'x-header-2']);
    assert.equal(wild.headers['access-control-allow-credentials'], 'true');
    const unauth = await at('/cors-wildcard-methods-headers-unauth', 'OPTIONS', { origin: 'https://other.foo.com', 'access-control-request-method': 'PUT', 'access-control-request-headers': 'x-header-1, x-header-2' });
    assert.ok(['https://other.foo.com', '*'].includes(String(unauth.headers['access-control-allow-origin'])), String(unauth.headers['access-control-allow-origin']));
    assert.equal(unauth.headers['access-control-allow-credentials'], undefined);
    const withCreds = await at('/cors-wildcard-methods-headers', 'GET', { origin: 'https://other.foo.com' });
    assert.equal(withCreds.headers['access-control-allow-origin'], 'https://other.foo.com');
    assert.equal(withCreds.headers['access-control-allow-credentials'], 'true');
    const noCreds = await at('/cors-wildcard-methods-headers-unauth', 'GET', { origin: 'https://other.foo.com' });
    assert.ok(['https://other.foo.com', '*'].includes(String(noCreds.headers['access-control-allow-origin'])));
    assert.equal(noCreds.headers['access-control-allow-credentials'], undefined);
  });

  test('HTTPRouteRetry: the listed codes are retried `attempts` times (tries = attempts + 1); other codes and exhausted retries surface the backend\'s answer', async () => {
    let n = 0;
    const run = async (path: string, fail: number, code: number): Promise<string> => {
      const id = `r${n++}`;
      const r = await get(`http://${ADDR.retry}:${gw.httpPort}${path}?id=${id}&fail=${fail}&code=${code}`, { host: 'example.com' });
      return `${r.status} after ${tries.get(id) ?? 0} tries`;
    };
    const got: string[] = [];
    const want: string[] = [];
    const check = async (path: string, fail: number, code: number, expected: string) => {
      got.push(`${path} fail ${fail}x${code}: ${await run(path, fail, code)}`);
      want.push(`${path} fail ${fail}x${code}: ${expected}`);
    };
    await check('/retry/code-500-attempts-3', 2, 500, '200 after 3 tries');
    await check('/retry/code-500-attempts-3', 4, 500, '500 after 4 tries');
    await check('/retry/code-500-attempts-3', 1, 503, '503 after 1 tries');
    for (const code of [500, 502, 503, 504]) {
      await check('/retry/code-all-attempts-2', 1, code, '200 after 2 tries');
      await check('/retry/code-all-attempts-2', 3, code, `${code} after 3 tries`);
    }
    assert.deepEqual(got, want);
  });

  test('HTTPRouteRetryConnectionError and HTTPRouteRetryWithTimeouts: resets and per-try timeouts are retried within attempts and the request timeout', async () => {
    let n = 0;
    const run = async (path: string, params: string): Promise<string> => {
      const id = `t${n++}`;
      const r = await get(`http://${ADDR.retry}:${gw.httpPort}${path}?id=${id}&${params}`, { host: 'example.com' });
      return `${r.status} after ${tries.get(id) ?? 0} tries`;
    };
    const got: string[] = [];
    const want: string[] = [];
    const check = async (path: string, params: string, expected: RegExp | string) => {
      const result = await run(path, params);
      const ok = typeof expected === 'string' ? result === expected : expected.test(result);
      got.push(`${path}?${params}: ${ok ? 'as expected' : result}`);
      want.push(`${path}?${params}: as expected`);
    };
    // Connection resets: attempts 3, no codes.
    await check('/retry/no-status-code-attempts-3', 'fail=2&reset=1', '200 after 3 tries');
    await check('/retry/no-status-code-attempts-3', 'fail=4&reset=1', /^(500|502|503) after 4 tries$/);
    // A try longer than backendRequest (200 ms) is retried: attempts 2 = 3 tries.
    await check('/retry/backend-request-timeout-200ms', 'fail=2&code=500&delay=300', '200 after 3 tries');
    await check('/retry/backend-request-timeout-200ms', 'fail=3&code=500&delay=300', '504 after 3 tries');
    // Retries stop at the request timeout (400 ms): 4 failures of 100 ms each do not fit.
    await check('/retry/request-timeout-200ms', 'fail=1&code=500', '200 after 2 tries');
    await check('/retry/request-timeout-200ms', 'fail=4&code=500&delay=100', /^504 after [1-4] tries$/);
    assert.deepEqual(got, want);
  });

  test('HTTPRouteBackendRequestHeaderModifier: set, add and remove on a backendRef reach its backend', async () => {
    const seen = async (path: string, headers: Record<string, string>) => {
      const r = await get(`http://${ADDR.filters}:${gw.httpPort}${path}`, { host: 'example.com', headers });
      assert.equal(r.json?.name, 'v1', `${path}: ${r.status} ${r.body}`);
      return r.json?.headers ?? {};
    };
    assert.equal((await seen('/backend-filter/set', { 'Some-Other-Header': 'val' }))['x-header-set'], 'set-overwrites-values');
    assert.equal((await seen('/backend-filter/set', { 'X-Header-Set': 'some-other-value' }))['x-header-set'], 'set-overwrites-values');
    assert.equal((await seen('/backend-filter/add', {}))['x-header-add'], 'add-appends-values');
    const added = (await seen('/backend-filter/add', { 'X-Header-Add': 'some-other-value' }))['x-header-add'];
    assert.deepEqual(Array.isArray(added) ? added.join(',') : String(added).replace(/,\s*/g, ','), 'some-other-value,add-appends-values');
    assert.equal((await seen('/backend-filter/remove', { 'X-Header-Remove': 'val' }))['x-header-remove'], undefined);
    const m = await seen('/backend-filter/multiple', { 'X-Header-Set-2': 'set-val-2', 'X-Header-Add-2': 'add-val-2', 'X-Header-Remove-2': 'remove-val-2', 'Another-Header': 'another-header-val' });
    const flat = (v: unknown) => (Array.isArray(v) ? v.join(',') : String(v).replace(/,\s*/g, ','));
    assert.deepEqual(
      Object.fromEntries(['x-header-set-1', 'x-header-set-2', 'x-header-add-1', 'x-header-add-2', 'x-header-add-3', 'another-header', 'x-header-remove-1', 'x-header-remove-2'].map((k) => [k, m[k] === undefined ? null : flat(m[k])])),
      { 'x-header-set-1': 'header-set-1', 'x-header-set-2': 'header-set-2', 'x-header-add-1': 'header-add-1', 'x-header-add-2': 'add-val-2,header-add-2', 'x-header-add-3': 'header-add-3', 'another-header': 'another-header-val', 'x-header-remove-1': null, 'x-header-remove-2': null },
    );
  });
});

/** Whether `address:port` can be bound now (the 8080 listener binds that port itself). */
async function bindable(address: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: address, port }, () => s.close(() => resolve(true)));
  });
}

describe('Gateway API conformance: HTTPRouteRedirectPortAndScheme, GatewayWithAttachedRoutesWithPort8080, HTTPRouteListenerPortMatching', { timeout: 120_000 }, async () => {
  const a80 = '127.0.0.31';
  const a8080 = '127.0.0.32';
  const a443 = '127.0.0.33';
  const aPorts = '127.0.0.36';
  // Listeners on Gateway ports 8080 and 8090 are not in --port-map: they bind those ports themselves.
  const free = (await bindable(a8080, 8080)) && (await bindable(aPorts, 8080)) && (await bindable(aPorts, 8090));
  const dir = tempDir();
  let gw: GatewayProcess;
  const e: Record<string, Echo> = {};

  const redirect = (path: string, fields: string) => `    - { matches: [{ path: { type: PathPrefix, value: ${path} } }], filters: [{ type: RequestRedirect, requestRedirect: { hostname: example.org${fields} } }] }`;

  before(async () => {
    if (!free) return;
    for (const name of ['v1', 'v2', 'v3']) e[name] = await startEchoServer({ name });
    writeConfig(dir, 'secret.yaml', tlsSecret('cert', 'infra', makeCert(dir, 'example.org')));
    writeConfig(dir, 'gateways.yaml', `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
---
${gateway('same-namespace', a80)}---
${gateway('same-namespace-with-http-listener-on-8080', a8080, '[{ name: http, port: 8080, protocol: HTTP }]')}---
${gateway('same-namespace-with-https-listener', a443, '[{ name: https, port: 443, protocol: HTTPS, tls: { certificateRefs: [{ name: cert }] } }]')}---
${gateway('httproute-listener-port-matching', aPorts, `[${[['listener-1', 80, 'foo.com'], ['listener-2', 8080, 'foo.com'], ['listener-3', 8080, 'bar.com'], ['listener-4', 8090, 'foo.com'], ['listener-5', 8090, 'bar.com']].map(([n, p, h]) => `{ name: ${n}, port: ${p}, protocol: HTTP, hostname: ${h} }`).join(', ')}]`)}`);
    writeConfig(dir, 'backends.yaml', ['v1', 'v2', 'v3'].map((n) => serviceYaml(n, [e[n].port], { namespace: 'infra' })).join('---\n'));
    writeConfig(dir, 'routes.yaml', `apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: http-route-for-listener-on-port-80, namespace: infra }
spec:
  parentRefs: [{ name: same-namespace }]
  rules:
${redirect('/scheme-nil-and-port-nil', '')}
${redirect('/scheme-nil-and-port-80', ', port: 80')}
${redirect('/scheme-nil-and-port-8080', ', port: 8080')}
${redirect('/scheme-https-and-port-nil', ', scheme: https')}
${redirect('/scheme-https-and-port-443', ', scheme: https, port: 443')}
${redirect('/scheme-https-and-port-8443', ', scheme: https, port: 8443')}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: http-route-for-listener-on-port-8080, namespace: infra }
spec:
  parentRefs: [{ name: same-namespace-with-http-listener-on-8080 }]
  rules:
${redirect('/scheme-nil-and-port-nil', '')}
${redirect('/scheme-nil-and-port-80', ', port: 80')}
${redirect('/scheme-https-and-port-nil', ', scheme: https')}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: http-route-for-listener-on-port-443, namespace: infra }
spec:
  parentRefs: [{ name: same-namespace-with-https-listener }]
  rules:
${redirect('/scheme-nil-and-port-nil', '')}
${redirect('/scheme-nil-and-port-443', ', port: 443')}
${redirect('/scheme-nil-and-port-8443', ', port: 8443')}
${redirect('/scheme-http-and-port-nil', ', scheme: http')}
${redirect('/scheme-http-and-port-80', ', scheme: http, port: 80')}
${redirect('/scheme-http-and-port-8080', ', scheme: http, port: 8080')}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: backend-v1, namespace: infra }
spec:
  parentRefs: [{ name: httproute-listener-port-matching, port: 80 }]
  rules: [{ backendRefs: [{ name: v1, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: backend-v2, namespace: infra }
spec:
  parentRefs: [{ name: httproute-listener-port-matching, port: 8080 }]
  rules: [{ backendRefs: [{ name: v2, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: backend-v3, namespace: infra }
spec:
  parentRefs: [{ name: httproute-listener-port-matching, port: 8090, sectionName: listener-4 }]
  rules: [{ backendRefs: [{ name: v3, port: 80 }] }]
`);
    gw = await startGateway({ configDir: dir, args: ['--gateway-bind-addresses', '127.0.0.0/8'] });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(e)) await x.close();
    removeDir(dir);
  });

  test('HTTPRouteListenerPortMatching: parentRef port selects the listeners of that port (and sectionName narrows it)', { skip: !free && 'port 8080 or 8090 is taken on 127.0.0.32/127.0.0.36; free it to run this test' }, async () => {
    await table(aPorts, gw.httpPort, [{ host: 'foo.com', path: '/', want: '200 v1' }]);
    await table(aPorts, 8080, [
      { host: 'foo.com:8080', path: '/', want: '200 v2' },
      { host: 'bar.com:8080', path: '/', want: '200 v2' },
    ]);
    await table(aPorts, 8090, [
      { host: 'foo.com:8090', path: '/', want: '200 v3' },
      { host: 'bar.com:8090', path: '/', want: '404' },
    ]);
  });

  /** Status and Location of one request (HTTPS to the Gateway's own address, SNI and Host example.org). */
  const location = async (url: string, tls = false): Promise<string> => {
    const u = new URL(url);
    if (!tls) {
      const r = await get(url, { host: 'example.com' });
      return `${r.status} ${String(r.headers.location)}`;
    }
    return new Promise((resolve, reject) => {
      const req = https.request({ host: u.hostname, port: u.port, path: u.pathname, servername: 'example.org', headers: { host: 'example.org' }, rejectUnauthorized: false, agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(`${res.statusCode} ${String(res.headers.location)}`));
      });
      req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end();
    });
  };

  test('the default port of a redirect is the listener port (80, 8080, 443), omitted when it is the scheme\'s default', { skip: !free && `127.0.0.32:8080 is taken on this machine; free it to run this test` }, async () => {
    const got: string[] = [];
    const want: string[] = [];
    const check = async (base: string, path: string, expected: string, tls = false) => {
      got.push(`${base}${path} -> ${await location(`${base}${path}`, tls)}`);
      want.push(`${base}${path} -> 302 ${expected}${path}`);
    };
    const h80 = `http://${a80}:${gw.httpPort}`;
    await check(h80, '/scheme-nil-and-port-nil', 'http://example.org');
    await check(h80, '/scheme-nil-and-port-80', 'http://example.org');
    await check(h80, '/scheme-nil-and-port-8080', 'http://example.org:8080');
    await check(h80, '/scheme-https-and-port-nil', 'https://example.org');
    await check(h80, '/scheme-https-and-port-443', 'https://example.org');
    await check(h80, '/scheme-https-and-port-8443', 'https://example.org:8443');
    const h8080 = `http://${a8080}:8080`;
    await check(h8080, '/scheme-nil-and-port-nil', 'http://example.org:8080');
    await check(h8080, '/scheme-nil-and-port-80', 'http://example.org');
    await check(h8080, '/scheme-https-and-port-nil', 'https://example.org');
    const h443 = `https://${a443}:${gw.httpsPort}`;
    await check(h443, '/scheme-nil-and-port-nil', 'https://example.org', true);
    await check(h443, '/scheme-nil-and-port-443', 'https://example.org', true);
    await check(h443, '/scheme-nil-and-port-8443', 'https://example.org:8443', true);
    await check(h443, '/scheme-http-and-port-nil', 'http://example.org', true);
    await check(h443, '/scheme-http-and-port-80', 'http://example.org', true);
    await check(h443, '/scheme-http-and-port-8080', 'http://example.org:8080', true);
    assert.deepEqual(got, want);
    const s = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`)).body) as { status: { gateways: { name: string; listeners: { name: string; attachedRoutes: number; conditions: { type: string; status: string }[] }[] }[] } }).status;
    const l8080 = s.gateways.find((g) => g.name === 'same-namespace-with-http-listener-on-8080')?.listeners[0];
    assert.equal(l8080?.attachedRoutes, 1, 'GatewayWithAttachedRoutesWithPort8080: attachedRoutes');
    assert.deepEqual(l8080?.conditions.filter((c) => c.type === 'Programmed').map((c) => c.status), ['True']);
  });
});

describe('Gateway API conformance: GRPCRouteHeaderMatching, GRPCRouteListenerHostnameMatching, GRPCRouteNamedRule (h2c, @grpc/grpc-js)', { timeout: 120_000 }, () => {
  const headersAt = '127.0.0.41';
  const hostnamesAt = '127.0.0.42';
  const tcpAt = '127.0.0.43';
  const sectionsAt = '127.0.0.44';
  const tcpPorts: number[] = [];
  const dir = tempDir();
  let gw: GatewayProcess;
  const g: Record<string, GrpcEchoServer> = {};
  const tcpBackends: { close(): Promise<void> }[] = [];

  before(async () => {
    const sums = { 'tcp-v1': await startSummingBackend('tcp-v1'), 'tcp-v2': await startSummingBackend('tcp-v2') };
    tcpBackends.push(...Object.values(sums));
    // TCP listener ports are not in --port-map: each binds its own port at the Gateway's address.
    tcpPorts.push(await freePort(), await freePort(), await freePort(), await freePort());
    for (const name of ['grpc-infra-backend-v1', 'grpc-infra-backend-v2', 'grpc-infra-backend-v3']) g[name] = await startGrpcEcho(name);
    const grpcService = (name: string) => serviceYaml(name, [g[name].port], { namespace: 'infra', portName: 'grpc' });
    writeConfig(dir, 'backends.yaml', [...Object.keys(g).map(grpcService), serviceYaml('tcp-v1', [sums['tcp-v1'].port], { namespace: 'infra', servicePort: 9000 }), serviceYaml('tcp-v2', [sums['tcp-v2'].port], { namespace: 'infra', servicePort: 9000 })].join('---\n'));
    const host = (n: string, h: string) => `{ name: ${n}, port: 80, protocol: HTTP, hostname: "${h}" }`;
    writeConfig(dir, 'gateways.yaml', `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
---
${gateway('grpc-header-matching', headersAt)}---
${gateway('grpcroute-listener-hostname-matching', hostnamesAt, `[${host('listener-1', 'bar.com')}, ${host('listener-2', 'foo.bar.com')}, ${host('listener-3', '*.bar.com')}, ${host('listener-4', '*.foo.com')}]`)}---
${gateway('tcp', tcpAt, `[{ name: tcp-1, port: ${tcpPorts[0]}, protocol: TCP }, { name: tcp-2, port: ${tcpPorts[1]}, protocol: TCP }]`)}---
${gateway('tcp-sections', sectionsAt, `[{ name: tcp-1, port: ${tcpPorts[2]}, protocol: TCP }, { name: tcp-2, port: ${tcpPorts[3]}, protocol: TCP }]`)}`);
    const rule = (headers: string, backend: string, name = '') => `    - { ${name ? `name: ${name}, ` : ''}matches: [${headers}], backendRefs: [{ name: ${backend}, port: 80 }] }`;
    writeConfig(dir, 'routes.yaml', `apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: grpc-header-matching, namespace: infra }
spec:
  parentRefs: [{ name: grpc-header-matching }]
  rules:
${rule('{ headers: [{ name: version, value: one }] }', 'grpc-infra-backend-v1', 'version-one')}
${rule('{ headers: [{ name: version, value: two }] }', 'grpc-infra-backend-v2')}
${rule('{ headers: [{ name: version, value: two }, { name: color, value: orange }] }', 'grpc-infra-backend-v1')}
${rule('{ headers: [{ name: color, value: blue }] }, { headers: [{ name: color, value: green }] }', 'grpc-infra-backend-v1')}
${rule('{ headers: [{ name: color, value: red }] }, { headers: [{ name: color, value: yellow }] }', 'grpc-infra-backend-v2')}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: backend-v1, namespace: infra }
spec:
  parentRefs: [{ name: grpcroute-listener-hostname-matching, sectionName: listener-1 }]
  rules: [{ backendRefs: [{ name: grpc-infra-backend-v1, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: backend-v2, namespace: infra }
spec:
  parentRefs: [{ name: grpcroute-listener-hostname-matching, sectionName: listener-2 }]
  rules: [{ backendRefs: [{ name: grpc-infra-backend-v2, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: backend-v3, namespace: infra }
spec:
  parentRefs: [{ name: grpcroute-listener-hostname-matching, sectionName: listener-3 }, { name: grpcroute-listener-hostname-matching, sectionName: listener-4 }]
  rules: [{ backendRefs: [{ name: grpc-infra-backend-v3, port: 80 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: tcp-weighted, namespace: infra }
spec:
  parentRefs: [{ name: tcp }]
  rules: [{ backendRefs: [{ name: tcp-v1, port: 9000, weight: 70 }, { name: tcp-v2, port: 9000, weight: 30 }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: { name: tcp-port-and-section, namespace: infra }
spec:
  parentRefs: [{ name: tcp-sections, port: ${tcpPorts[2]}, sectionName: tcp-1 }]
  rules: [{ backendRefs: [{ name: tcp-v2, port: 9000 }] }]
`);
    gw = await startGateway({ configDir: dir, args: ['--gateway-bind-addresses', '127.0.0.0/8'] });
  });

  after(async () => {
    await gw?.stop();
    for (const x of Object.values(g)) await x.close();
    for (const x of tcpBackends) await x.close();
    removeDir(dir);
  });

  /** One TCP connection to `port` at the Gateway's address: the backend's name from its answer. */
  const tcpCall = (port: number, host = tcpAt) =>
    new Promise<string>((resolve, reject) => {
      const sock = net.connect({ host, port, allowHalfOpen: true });
      let out = '';
      sock.setEncoding('utf8');
      sock.setTimeout(10_000, () => sock.destroy(new Error(`TCP to ${tcpAt}:${port} timed out`)));
      sock.on('data', (d: string) => (out += d));
      sock.on('end', () => {
        sock.end();
        resolve(out.split(' ')[0]);
      });
      sock.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve('(closed)') : reject(err)));
      sock.on('connect', () => sock.end('ping'));
    });

  test('TCPRouteParentRefPortAndSectionName: a parentRef with port and sectionName attaches to that listener only', async () => {
    assert.equal(await tcpCall(tcpPorts[2], sectionsAt), 'tcp-v2');
    // The other TCP listener of that Gateway has no route: its connections are closed unanswered.
    const other = await tcpCall(tcpPorts[3], sectionsAt);
    assert.ok(other === '' || other === '(closed)', `the listener without a route answered ${JSON.stringify(other)}`);
    const s = (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`)).body) as { status: { gateways: { name: string; listeners: { name: string; attachedRoutes: number }[] }[] } }).status;
    assert.deepEqual(Object.fromEntries((s.gateways.find((x) => x.name === 'tcp-sections')?.listeners ?? []).map((l) => [l.name, l.attachedRoutes])), { 'tcp-1': 1, 'tcp-2': 0 });
  });

  test('TCPRouteWeightedRouting and TCPRouteParentRefAttachAll: 70/30 per connection, on every TCP listener of the Gateway', async () => {
    for (const port of tcpPorts.slice(0, 2)) {
      const count: Record<string, number> = {};
      const n = 300;
      for (let i = 0; i < n; i++) {
        const name = await tcpCall(port);
        count[name] = (count[name] ?? 0) + 1;
      }
      const v1 = ((count['tcp-v1'] ?? 0) / n) * 100;
      assert.deepEqual(Object.keys(count).sort(), ['tcp-v1', 'tcp-v2'], `port ${port}: ${JSON.stringify(count)}`);
      // Binomial(300, 0.7): 4 standard deviations are 10.6 points.
      assert.ok(Math.abs(v1 - 70) <= 10.6, `port ${port}: tcp-v1 got ${v1.toFixed(1)}% of ${n} connections`);
    }
  });

  /** One unary call: the backend that answered, or the gRPC status name. */
  async function call(address: string, authority: string, metadata: Record<string, string> = {}): Promise<string> {
    const client = grpcClient(gw.httpPort, authority, address);
    try {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(metadata)) md.set(k, v);
      const r = await unary(client, { text: 'conformance' }, md, { deadline: Date.now() + 10_000 });
      return r.reply !== null ? r.reply.from : grpc.status[r.error?.code ?? grpc.status.UNKNOWN];
    } finally {
      client.close();
    }
  }

  test('GRPCRouteHeaderMatching (and a named rule): the suite\'s table, misses are UNIMPLEMENTED', async () => {
    const cases: [Record<string, string>, string][] = [
      [{ version: 'one' }, 'grpc-infra-backend-v1'],
      [{ version: 'two' }, 'grpc-infra-backend-v2'],
      [{ version: 'two', color: 'orange' }, 'grpc-infra-backend-v1'],
      [{ version: 'two', color: 'blue' }, 'grpc-infra-backend-v2'],
      [{ color: 'orange' }, 'UNIMPLEMENTED'],
      [{ 'some-other-header': 'one' }, 'UNIMPLEMENTED'],
      [{ color: 'blue' }, 'grpc-infra-backend-v1'],
      [{ color: 'green' }, 'grpc-infra-backend-v1'],
      [{ color: 'red' }, 'grpc-infra-backend-v2'],
      [{ color: 'yellow' }, 'grpc-infra-backend-v2'],
      [{ color: 'purple' }, 'UNIMPLEMENTED'],
    ];
    const got: string[] = [];
    for (const [md] of cases) got.push(`${JSON.stringify(md)} -> ${await call(headersAt, 'grpc.example.com', md)}`);
    assert.deepEqual(got, cases.map(([md, want]) => `${JSON.stringify(md)} -> ${want}`));
  });

  test('GRPCRouteListenerHostnameMatching: :authority picks the most specific listener; none matching is UNIMPLEMENTED', async () => {
    const cases: [string, string][] = [
      ['bar.com', 'grpc-infra-backend-v1'],
      ['foo.bar.com', 'grpc-infra-backend-v2'],
      ['baz.bar.com', 'grpc-infra-backend-v3'],
      ['boo.bar.com', 'grpc-infra-backend-v3'],
      ['multiple.prefixes.bar.com', 'grpc-infra-backend-v3'],
      ['multiple.prefixes.foo.com', 'grpc-infra-backend-v3'],
      ['foo.com', 'UNIMPLEMENTED'],
      ['no.matching.host', 'UNIMPLEMENTED'],
    ];
    const got: string[] = [];
    for (const [authority] of cases) got.push(`${authority} -> ${await call(hostnamesAt, authority)}`);
    assert.deepEqual(got, cases.map(([a, want]) => `${a} -> ${want}`));
  });
});
