/**
 * Taking over from ingress-nginx with the Kubernetes source: Ingresses of the IngressClass whose
 * controller is `k8s.io/ingress-nginx` are served (controllerName from `--watch-ingress-nginx-class`),
 * the basic-auth Secret an annotation names is watched (a Secret created later is picked up), and the
 * controller ConfigMap (`--nginx-configmap`) is watched by name in a namespace the gateway does not
 * otherwise watch: a global allowlist added to it applies without a restart, and goes away again.
 */
import { after, before, describe, test } from 'node:test';
import type { EchoServer } from '../../src/demo/echo-server.js';
import assert from 'node:assert/strict';
import { request } from '../support/http-client.js';
import { loadForMigrate, migrateIngresses } from '../../src/cli/migrate.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { echo, endpointSlice, eventually, service, startCluster, startGateway, type Cluster, type Gateway } from './harness.js';

type Obj = Record<string, unknown>;

describe('kubernetes source: ingress-nginx takeover', () => {
  let cluster: Cluster;
  let gw: Gateway;
  let web: EchoServer;
  let ns: string;
  const basic = (user: string, pass: string) => `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
  const status = async (host: string, headers: Record<string, string> = {}) => (await request(gw.httpPort, { host, path: '/', headers, timeoutMs: 5000 })).status;
  const configMap = (data: Record<string, string>): Obj => ({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ingress-nginx-controller', namespace: 'ingress-nginx' }, data });
  const ingress = (name: string, host: string, annotations: Record<string, string>): Obj => ({
    apiVersion: 'networking.k8s.io/v1',
    kind: 'Ingress',
    metadata: { name, namespace: ns, annotations: Object.fromEntries(Object.entries(annotations).map(([k, v]) => [`nginx.ingress.kubernetes.io/${k}`, v])) },
    spec: { ingressClassName: 'nginx', rules: [{ host, http: { paths: [{ path: '/', pathType: 'Prefix', backend: { service: { name: 'web', port: { number: 80 } } } }] } }] },
  });

  before(async () => {
    web = await echo('web');
    cluster = await startCluster();
    ns = cluster.namespace;
    await cluster.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ingress-nginx' } });
    await cluster.apply({ apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'nginx' }, spec: { controller: 'k8s.io/ingress-nginx' } });
    await cluster.apply(service(ns, 'web', web.port));
    await cluster.apply(endpointSlice(ns, 'web', web.port));
    await cluster.apply(ingress('open', 'open.test', {}));
    await cluster.apply(ingress('basic', 'basic.test', { 'auth-type': 'basic', 'auth-secret': 'htpasswd', 'auth-realm': 'k8s' }));
    gw = await startGateway(cluster, { translate: { ingressClass: 'nginx', controllerName: 'k8s.io/ingress-nginx', nginxConfigMap: { namespace: 'ingress-nginx', name: 'ingress-nginx-controller' } } });
    await eventually('the nginx-class Ingress to be served', async () => (await status('open.test')) === 200);
  });

  after(async () => {
    await gw?.stop();
    await cluster?.close();
    await web?.close();
  });

  test('basic auth: the referenced Secret is watched; before it exists every request is 503', async () => {
    await eventually('503 without the Secret', async () => (await status('basic.test')) === 503);
    await cluster.apply({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'htpasswd', namespace: ns }, stringData: { auth: 'foo:{PLAIN}bar\n' } });
    await eventually('401 once the Secret exists', async () => (await status('basic.test')) === 401);
    await eventually('200 with the password', async () => (await status('basic.test', { authorization: basic('foo', 'bar') })) === 200);
  });

  test('custom-headers: the ConfigMap it names is watched (created after the Ingress)', async () => {
    await cluster.apply(ingress('headers', 'headers.test', { 'custom-headers': 'team-headers' }));
    await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'team-headers', namespace: ns }, data: { 'X-Team': 'shop' } });
    await eventually('the custom header on responses', async () => (await request(gw.httpPort, { host: 'headers.test', path: '/', timeoutMs: 5000 })).headers['x-team'] === 'shop');
    await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'team-headers', namespace: ns }, data: { 'X-Team': 'checkout' } });
    await eventually('the changed value', async () => (await request(gw.httpPort, { host: 'headers.test', path: '/', timeoutMs: 5000 })).headers['x-team'] === 'checkout');
  });

  test('the controller ConfigMap is watched by name: a global allowlist applies and is lifted without a restart', async () => {
    await cluster.apply(configMap({ 'whitelist-source-range': '10.0.0.0/8' }));
    await eventually('403 under the global allowlist', async () => (await status('open.test')) === 403);
    await cluster.apply(configMap({ 'whitelist-source-range': '10.0.0.0/8, 127.0.0.1, ::1' }));
    await eventually('200 once loopback is allowed', async () => (await status('open.test')) === 200);
  });

  test('meshgate migrate --kubernetes: reads the cluster once and reports per Ingress and annotation', async () => {
    await cluster.apply(ingress('snippet', 'snippet.test', { 'configuration-snippet': 'deny all;', 'proxy-body-size': '1m' }));
    const loaded = await loadForMigrate(null, { kubeconfig: cluster.kubeconfig, watchNamespaces: [ns], configMaps: [] });
    const report = migrateIngresses(loaded, { ...DEFAULT_TRANSLATE_OPTIONS, ingressClass: 'nginx', controllerName: 'k8s.io/ingress-nginx' });
    const snippet = report.find((r) => r.name === 'snippet');
    assert.ok(snippet, `report: ${JSON.stringify(report.map((r) => r.name))}`);
    assert.equal(snippet.served, false);
    assert.equal(snippet.changesBehaviour, true);
    assert.deepEqual(snippet.annotations.map((a) => [a.annotation, a.status]), [['configuration-snippet', 'refused'], ['proxy-body-size', 'honoured']]);
    const open = report.find((r) => r.name === 'open');
    assert.equal(open?.served, true);
    assert.equal(open?.changesBehaviour, false);
  });
});
