/**
 * Istio Gateway servers and Gateway API listeners on one port through the real `meshgate run`
 * process: each host is served by the API that names it; a Gateway API listener whose hostname
 * would take an Istio host is refused (it never shadows the VirtualService), and says so in
 * `meshgate validate`-style status at /gateway_api_status.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { get, removeDir, serviceYaml, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

describe('Gateway API and Istio on one port', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let istio: Awaited<ReturnType<typeof startEchoServer>>;
  let gapi: Awaited<ReturnType<typeof startEchoServer>>;

  before(async () => {
    istio = await startEchoServer({ name: 'istio' });
    gapi = await startEchoServer({ name: 'gateway-api' });
    writeConfig(dir, 'all.yaml', [serviceYaml('istio-web', [istio.port]), serviceYaml('gapi-web', [gapi.port]), `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: istio, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [shop.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: shop, namespace: default }
spec:
  hosts: [shop.example.com]
  gateways: [istio-system/istio]
  http: [{ route: [{ destination: { host: istio-web } }] }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: gw, namespace: default }
spec:
  gatewayClassName: meshgate
  listeners:
    - { name: api, port: 80, protocol: HTTP, hostname: api.example.com }
    - { name: wild, port: 80, protocol: HTTP, hostname: "*.example.com" }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: api, namespace: default }
spec:
  parentRefs: [{ name: gw }]
  rules: [{ backendRefs: [{ name: gapi-web, port: 80 }] }]
`].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await istio?.close();
    await gapi?.close();
    removeDir(dir);
  });

  test('each host is served by the API that names it', async () => {
    assert.equal((await get(`http://127.0.0.1:${gw.httpPort}/`, { host: 'shop.example.com' })).json?.name, 'istio');
    assert.equal((await get(`http://127.0.0.1:${gw.httpPort}/`, { host: 'api.example.com' })).json?.name, 'gateway-api');
  });

  test('the "*.example.com" listener would shadow shop.example.com: refused, other hosts get 404', async () => {
    assert.equal((await get(`http://127.0.0.1:${gw.httpPort}/`, { host: 'other.example.com' })).status, 404);
    const s = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/gateway_api_status`)).body) as { status: { gateways: { listeners: { name: string; conditions: { type: string; status: string; reason: string }[] }[] }[] } };
    const wild = s.status.gateways[0].listeners.find((l) => l.name === 'wild');
    assert.deepEqual(wild?.conditions.find((c) => c.type === 'Accepted'), { ...wild?.conditions.find((c) => c.type === 'Accepted'), status: 'False', reason: 'PortUnavailable' });
  });
});
