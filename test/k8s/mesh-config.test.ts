/**
 * Istio's MeshConfig (ConfigMap istio-system/istio, `data.mesh`) read from the API server: watched by
 * name even when the gateway watches other namespaces only, and a change to it reaches the data
 * plane without a restart. Observed through what it configures: the ext-authz provider of an
 * AuthorizationPolicy CUSTOM (a policy naming a provider MeshConfig lacks denies what it matches).
 */
import { after, before, describe, test } from 'node:test';
import type { EchoServer } from '../../src/demo/echo-server.js';
import { echo, endpointSlice, ingress, served, service, startCluster, startGateway, type Cluster, type Gateway } from './harness.js';

type Obj = Record<string, unknown>;

function meshConfig(mesh: string): Obj {
  return { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh } };
}

describe('kubernetes source: MeshConfig ConfigMap istio-system/istio', () => {
  let cluster: Cluster;
  let gw: Gateway;
  let web: EchoServer;
  let authz: EchoServer;
  let ns: string;

  before(async () => {
    [web, authz] = await Promise.all([echo('web'), echo('authz')]);
    cluster = await startCluster();
    ns = cluster.namespace;
    await cluster.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'istio-system' } });
    await cluster.apply(service(ns, 'web', web.port));
    await cluster.apply(endpointSlice(ns, 'web', web.port));
    // The echo server answers 200 to every check: an ext-authz service that allows everything.
    await cluster.apply(service(ns, 'authz', authz.port));
    await cluster.apply(endpointSlice(ns, 'authz', authz.port));
    await cluster.apply(ingress(ns, 'web', 'web.test', 'web'));
    await cluster.apply({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'ext', namespace: ns },
      spec: { action: 'CUSTOM', provider: { name: 'ext' }, rules: [{ to: [{ operation: { paths: ['/secure/*'] } }] }] },
    });
    // Only the test namespace is watched (watchNamespaces); the MeshConfig is still read.
    gw = await startGateway(cluster, { translate: { gatewayNamespace: ns } });
    await served(gw, 'web.test', { name: 'web' });
  });

  after(async () => {
    await gw?.stop();
    await cluster?.close();
    await Promise.all([web?.close(), authz?.close()]);
  });

  test('a provider added to MeshConfig is used without a restart; removing it denies again', async () => {
    await served(gw, 'web.test', { status: 403, path: '/secure/a' });
    const provider = `extensionProviders:\n  - name: ext\n    envoyExtAuthzHttp: { service: authz.${ns}.svc.cluster.local, port: 80 }\n`;
    await cluster.apply(meshConfig(provider));
    await served(gw, 'web.test', { name: 'web', path: '/secure/a' });
    await cluster.apply(meshConfig('extensionProviders: []\n'));
    await served(gw, 'web.test', { status: 403, path: '/secure/a' });
    await served(gw, 'web.test', { name: 'web', path: '/open' });
  });
});
