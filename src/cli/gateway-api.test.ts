import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFile } from '../providers/file/load.js';
import { ConfigPipeline } from '../control/pipeline.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../translate/index.js';
import type { Diagnostic } from '../lib/diagnostic.js';
import type { KubeObject } from '../resources/types.js';
import { formatGatewayApiStatus, gatewayApiOptions, localBindableAddresses } from './gateway-api.js';

const fail = (m: string) => new Error(m);

test('--gateway-controller-name: default, a valid name, invalid names refused', () => {
  const only = (v: string | undefined) => (k: string) => (k === 'gateway-controller-name' ? v : undefined);
  assert.equal(gatewayApiOptions(only(undefined), fail).gatewayControllerName, 'meshgate.io/gateway-controller');
  assert.equal(gatewayApiOptions(only('example.com/gw'), fail).gatewayControllerName, 'example.com/gw');
  for (const bad of ['nodomain', 'Example.com/x', 'example.com/', '/x']) assert.throws(() => gatewayApiOptions(only(bad), fail), /is not a controller name/, bad);
});

test('--gateway-bind-addresses: default is this machine (loopback as its whole prefix), a list, none, bad values refused', () => {
  const only = (v: string | undefined) => (k: string) => (k === 'gateway-bind-addresses' ? v : undefined);
  const local = gatewayApiOptions(only(undefined), fail).gatewayBindableAddresses;
  assert.ok(local.includes('127.0.0.1/8'), `loopback prefix expected in ${local.join(',')}`);
  assert.deepEqual(localBindableAddresses(), local);
  assert.deepEqual(gatewayApiOptions(only('10.0.0.0/24, 192.0.2.7,fd00::/8'), fail).gatewayBindableAddresses, ['10.0.0.0/24', '192.0.2.7', 'fd00::/8']);
  assert.deepEqual(gatewayApiOptions(only('none'), fail).gatewayBindableAddresses, []);
  for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0.1/8/1', '::/129']) assert.throws(() => gatewayApiOptions(only(bad), fail), /is not an IP address or CIDR/, bad);
});

const CONFIG = `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: mine }
spec: { controllerName: example.com/gw }
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: web, namespace: default }
spec:
  gatewayClassName: mine
  listeners: [{ name: http, port: 80, protocol: HTTP }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: r, namespace: default }
spec:
  parentRefs: [{ name: web, sectionName: http }]
  rules: [{ backendRefs: [{ name: missing, port: 80 }] }]
`;

function run(controllerName: string) {
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  parseFile('c.yaml', CONFIG, objects, diagnostics);
  return new ConfigPipeline({ ...DEFAULT_TRANSLATE_OPTIONS, gatewayControllerName: controllerName }).run({ objects, diagnostics });
}

test('only classes with our controllerName are served; status lines name every condition', () => {
  const ignored = run('meshgate.io/gateway-controller');
  assert.equal(ignored.snapshot?.listeners.length, 0);
  assert.deepEqual(ignored.gatewayApiStatus?.gateways, []);
  const served = run('example.com/gw');
  assert.equal(served.snapshot?.listeners.length, 1);
  assert.deepEqual(formatGatewayApiStatus(served.gatewayApiStatus!), [
    'status GatewayClass/mine: Accepted=True(Accepted)',
    'status Gateway/default/web: Accepted=True(Accepted) Programmed=True(Programmed)',
    '  listener http: attachedRoutes=1 supportedKinds=HTTPRoute,GRPCRoute Accepted=True(Accepted) ResolvedRefs=True(ResolvedRefs) Conflicted=False(NoConflicts) Programmed=True(Programmed)',
    'status HTTPRoute/default/r parent default/web/http: Accepted=True(Accepted) ResolvedRefs=False(BackendNotFound)',
  ]);
});
