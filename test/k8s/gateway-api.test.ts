/**
 * Gateway API from the Kubernetes source (fake API server): the CRDs appearing after start are
 * found by rediscovery; GatewayClass, Gateway and HTTPRoute created through the API are served; the
 * leader writes their status through `/status` subresources (read-modify-write: another controller's
 * route parent and a foreign Gateway condition survive; addresses from --publish-address;
 * observedGeneration; nothing rewritten while nothing changes); a Gateway listener certificate from
 * a referenced Secret is served; listeners added and removed show in status at the new generation.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { EchoServer } from '../../src/demo/echo-server.js';
import { DEFAULT_RESOURCES, type ResourceDef } from './fake-api-server.js';
import { REAL, echo, endpointSlice, eventually, served, service, startCluster, startGateway, type Cluster, type Gateway } from './harness.js';

type Obj = Record<string, unknown>;
const G = 'gateway.networking.k8s.io';
const gatewayApi = (resource: string, kind: string, namespaced = true): ResourceDef => ({ group: G, versions: ['v1'], resource, kind, namespaced, status: true });
const RESOURCES: ResourceDef[] = [
  ...DEFAULT_RESOURCES,
  gatewayApi('gatewayclasses', 'GatewayClass', false),
  gatewayApi('gateways', 'Gateway'),
  gatewayApi('httproutes', 'HTTPRoute'),
  gatewayApi('grpcroutes', 'GRPCRoute'),
  gatewayApi('referencegrants', 'ReferenceGrant'),
  gatewayApi('backendtlspolicies', 'BackendTLSPolicy'),
];

/** cluster.apply, again on 409: meshgate's status writes race the test's read-then-PUT of the same object. */
async function applyRetrying(cluster: Cluster, o: Obj): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await cluster.apply(o);
      return;
    } catch (e) {
      if (attempt >= 10 || !/\b409\b/.test((e as Error).message)) throw e;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

const conditions = (o: Obj | null | undefined): Obj[] => ((o?.status as Obj | undefined)?.conditions as Obj[] | undefined) ?? [];
const cond = (list: Obj[], type: string): string => {
  const c = list.find((x) => x.type === type);
  return c ? `${String(c.status)}/${String(c.reason)}` : 'absent';
};

describe('kubernetes source: Gateway API', { skip: REAL && 'uses the fake API server to add the CRDs', timeout: 60_000 }, () => {
  let cluster: Cluster;
  let gw: Gateway;
  let a: EchoServer;
  let ns: string;
  const className = `meshgate-${Math.random().toString(36).slice(2, 6)}`;

  const route = (name: string, host: string, status?: Obj): Obj => ({
    apiVersion: `${G}/v1`,
    kind: 'HTTPRoute',
    metadata: { name, namespace: ns, generation: 1 },
    spec: { parentRefs: [{ name: 'gw' }], hostnames: [host], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] },
    ...(status ? { status } : {}),
  });

  before(async () => {
    a = await echo('a');
    cluster = await startCluster({ resources: RESOURCES });
    ns = cluster.namespace;
    // The Gateway API CRDs are not installed yet when meshgate starts.
    cluster.fake!.setServed(G, 'v1', false);
    await cluster.apply(service(ns, 'web', a.port));
    await cluster.apply(endpointSlice(ns, 'web', a.port));
    gw = await startGateway(cluster, { k8s: { publish: { addresses: ['192.0.2.10'] } } });
  });

  after(async () => {
    await gw?.stop();
    await cluster?.close();
    await a?.close();
  });

  test('CRDs installed after start are found; GatewayClass, Gateway and HTTPRoute are served', async () => {
    cluster.fake!.setServed(G, 'v1', true);
    await cluster.apply({ apiVersion: `${G}/v1`, kind: 'GatewayClass', metadata: { name: className, generation: 1 }, spec: { controllerName: 'meshgate.io/gateway-controller' } });
    await cluster.apply({
      apiVersion: `${G}/v1`,
      kind: 'Gateway',
      metadata: { name: 'gw', namespace: ns },
      spec: { gatewayClassName: className, listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] },
      // A condition another controller owns (say, a policy attachment): must survive our writes.
      status: { conditions: [{ type: 'example.com/Audited', status: 'True', reason: 'Audited', message: 'x', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' }] },
    });
    const foreignParent = { parentRef: { name: 'other-gw' }, controllerName: 'example.com/other', conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'theirs', observedGeneration: 1, lastTransitionTime: '2026-01-01T00:00:00Z' }] };
    await cluster.apply(route('app', 'app.example.com', { parents: [foreignParent] }));
    await served(gw, 'app.example.com', { name: 'a' }, 15_000);
  });

  test('status: GatewayClass Accepted, Gateway Accepted/Programmed with addresses and listeners, route parent Accepted/ResolvedRefs; foreign entries kept', async () => {
    const gc = await eventually('GatewayClass status', async () => {
      const o = await cluster.get({ apiVersion: `${G}/v1`, kind: 'GatewayClass', metadata: { name: className } });
      return cond(conditions(o), 'Accepted') === 'True/Accepted' ? o : false;
    });
    assert.equal((conditions(gc)[0] as Obj).observedGeneration, 1);
    const g = await eventually('Gateway status', async () => {
      const o = await cluster.get({ apiVersion: `${G}/v1`, kind: 'Gateway', metadata: { name: 'gw', namespace: ns } });
      const st = (o?.status ?? {}) as Obj;
      return cond(conditions(o), 'Programmed') === 'True/Programmed' && ((st.listeners as Obj[] | undefined)?.[0]?.attachedRoutes as number) === 1 ? o : false;
    });
    const st = g.status as Obj;
    assert.deepEqual(st.addresses, [{ type: 'IPAddress', value: '192.0.2.10' }]);
    assert.equal(cond(conditions(g), 'Accepted'), 'True/Accepted');
    assert.equal(cond(conditions(g), 'example.com/Audited'), 'True/Audited', 'a foreign condition is kept');
    assert.equal(conditions(g).find((c) => c.type === 'Accepted')?.observedGeneration, 1, 'the API server set generation 1');
    const listener = (st.listeners as Obj[])[0];
    assert.deepEqual(listener.supportedKinds, [{ group: G, kind: 'HTTPRoute' }, { group: G, kind: 'GRPCRoute' }]);
    assert.equal(cond(listener.conditions as Obj[], 'Programmed'), 'True/Programmed');
    const r = await eventually('HTTPRoute status', async () => {
      const o = await cluster.get({ apiVersion: `${G}/v1`, kind: 'HTTPRoute', metadata: { name: 'app', namespace: ns } });
      return ((o?.status as Obj | undefined)?.parents as Obj[] | undefined)?.length === 2 ? o : false;
    });
    const parents = (r.status as Obj).parents as Obj[];
    assert.equal(parents[0].controllerName, 'example.com/other', 'the other controller\'s parent is kept, first');
    const mine = parents[1];
    assert.equal(mine.controllerName, 'meshgate.io/gateway-controller');
    assert.deepEqual(mine.parentRef, { group: G, kind: 'Gateway', namespace: ns, name: 'gw' });
    assert.equal(cond(mine.conditions as Obj[], 'Accepted'), 'True/Accepted');
    assert.equal(cond(mine.conditions as Obj[], 'ResolvedRefs'), 'True/ResolvedRefs');
    assert.ok(typeof (mine.conditions as Obj[])[0].lastTransitionTime === 'string');
  });

  test('status follows changes (a missing backend: ResolvedRefs=False BackendNotFound and 500) and is not rewritten while nothing changes', async () => {
    await cluster.apply({ ...route('app', 'app.example.com'), metadata: { name: 'app', namespace: ns, generation: 2 }, spec: { parentRefs: [{ name: 'gw' }], hostnames: ['app.example.com'], rules: [{ backendRefs: [{ name: 'nope', port: 80 }] }] } });
    await served(gw, 'app.example.com', { status: 500 });
    await eventually('ResolvedRefs=False BackendNotFound', async () => {
      const o = await cluster.get({ apiVersion: `${G}/v1`, kind: 'HTTPRoute', metadata: { name: 'app', namespace: ns } });
      const mine = (((o?.status as Obj | undefined)?.parents as Obj[] | undefined) ?? []).find((p) => p.controllerName === 'meshgate.io/gateway-controller');
      const c = (mine?.conditions as Obj[] | undefined)?.find((x) => x.type === 'ResolvedRefs');
      return c?.reason === 'BackendNotFound' && c.observedGeneration === 2;
    });
    await gw.wiring.idle();
    const statusWrites = () => cluster.fake!.writes.filter((w) => w.path.endsWith('/status') && w.path.includes(G)).length;
    const before = statusWrites();
    // An unrelated change: a reload, same Gateway API status, so no status write.
    await cluster.apply({ ...service(ns, 'unrelated', a.port) });
    await new Promise((r) => setTimeout(r, 300));
    await gw.wiring.idle();
    assert.equal(statusWrites(), before, 'status was rewritten although it did not change');
  });

  test('a route that stops naming our Gateway loses our parent entry; the other controller\'s stays', async () => {
    await cluster.apply({ ...route('app', 'app.example.com'), spec: { parentRefs: [{ name: 'not-ours' }], hostnames: ['app.example.com'], rules: [{ backendRefs: [{ name: 'web', port: 80 }] }] } });
    await eventually('our parent entry removed', async () => {
      const o = await cluster.get({ apiVersion: `${G}/v1`, kind: 'HTTPRoute', metadata: { name: 'app', namespace: ns } });
      const parents = ((o?.status as Obj | undefined)?.parents as Obj[] | undefined) ?? [];
      return parents.length === 1 && parents[0].controllerName === 'example.com/other';
    });
  });

  test('BackendTLSPolicy: the ConfigMap it names is read (by name only) and becomes the cluster\'s CA', async () => {
    const pem = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';
    await cluster.apply({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'backend-ca', namespace: ns }, data: { 'ca.crt': pem } });
    await cluster.apply({ apiVersion: `${G}/v1`, kind: 'BackendTLSPolicy', metadata: { name: 'web-tls', namespace: ns }, spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], validation: { caCertificateRefs: [{ group: '', kind: 'ConfigMap', name: 'backend-ca' }], hostname: 'web.internal' } } });
    await cluster.apply(route('app', 'app.example.com'));
    const tls = await eventually('the cluster with the policy\'s TLS', () => {
      const c = gw.controller.serving?.clusters.find((x) => x.service.name === 'web' && x.service.namespace === ns);
      return c?.tls?.caCertificates?.kind === 'inline' && c.tls.caCertificates.pem.includes('MIIBfake') ? c.tls : false;
    });
    assert.equal(tls.sni, 'web.internal');
    // Lists and watches (the test's own apply is a GET by name and a POST).
    const cmRequests = cluster.fake!.requests.filter((r) => r.startsWith('GET ') && r.includes('/configmaps?') && r.includes(`/namespaces/${ns}/`));
    assert.ok(cmRequests.length > 0 && cmRequests.every((r) => r.includes('fieldSelector=metadata.name%3Dbackend-ca')), `ConfigMaps read beyond the named one: ${JSON.stringify(cmRequests)}`);
  });
  test('GatewayModifyListeners and GatewayObservedGenerationBump: a listener added, then removed; every condition carries the new generation', async () => {
    const gateway = (generation: number, listeners: Obj[]): Obj => ({ apiVersion: `${G}/v1`, kind: 'Gateway', metadata: { name: 'gw', namespace: ns, generation }, spec: { gatewayClassName: className, listeners } });
    const http = { name: 'http', port: 80, protocol: 'HTTP' };
    const read = () => cluster.get({ apiVersion: `${G}/v1`, kind: 'Gateway', metadata: { name: 'gw', namespace: ns } });
    const generations = (o: Obj): number[] => {
      const st = (o.status ?? {}) as Obj;
      const own = conditions(o).filter((c) => !String(c.type).includes('/'));
      return [...own, ...((st.listeners as Obj[] | undefined) ?? []).flatMap((l) => l.conditions as Obj[])].map((c) => c.observedGeneration as number);
    };
    await applyRetrying(cluster, gateway(2, [http, { name: 'extra', port: 80, protocol: 'HTTP', hostname: 'extra.example.com' }]));
    const added = await eventually('the added listener in status, at generation 2', async () => {
      const o = await read();
      const names = (((o?.status as Obj | undefined)?.listeners as Obj[] | undefined) ?? []).map((l) => l.name);
      return o && names.join(',') === 'http,extra' && generations(o).every((g) => g === 2) ? o : false;
    });
    const extra = ((added.status as Obj).listeners as Obj[])[1];
    assert.deepEqual(extra.supportedKinds, [{ group: G, kind: 'HTTPRoute' }, { group: G, kind: 'GRPCRoute' }]);
    for (const t of ['Accepted', 'ResolvedRefs', 'Programmed']) assert.equal(cond(extra.conditions as Obj[], t), `True/${t}`, t);
    assert.equal(cond(extra.conditions as Obj[], 'Conflicted'), 'False/NoConflicts');
    assert.equal(cond(conditions(added), 'Programmed'), 'True/Programmed');
    assert.equal(cond(conditions(added), 'example.com/Audited'), 'True/Audited', 'a foreign condition is kept');
    await applyRetrying(cluster, gateway(3, [http]));
    await eventually('the removed listener gone from status, at generation 3', async () => {
      const o = await read();
      const names = (((o?.status as Obj | undefined)?.listeners as Obj[] | undefined) ?? []).map((l) => l.name);
      return o !== null && o !== undefined && names.join(',') === 'http' && generations(o).every((g) => g === 3);
    });
  });
  test('GatewayClassObservedGenerationBump and BackendTLSPolicyObservedGenerationBump: a spec edit moves observedGeneration', async () => {
    await applyRetrying(cluster, { apiVersion: `${G}/v1`, kind: 'GatewayClass', metadata: { name: className, generation: 2 }, spec: { controllerName: 'meshgate.io/gateway-controller', description: 'edited' } });
    await eventually('GatewayClass Accepted at generation 2', async () => {
      const o = await cluster.get({ apiVersion: `${G}/v1`, kind: 'GatewayClass', metadata: { name: className } });
      const c = conditions(o).find((x) => x.type === 'Accepted');
      return c?.status === 'True' && c.observedGeneration === 2;
    });
    const policy = (generation: number, hostname: string): Obj => ({ apiVersion: `${G}/v1`, kind: 'BackendTLSPolicy', metadata: { name: 'web-tls', namespace: ns, generation }, spec: { targetRefs: [{ group: '', kind: 'Service', name: 'web' }], validation: { caCertificateRefs: [{ group: '', kind: 'ConfigMap', name: 'backend-ca' }], hostname } } });
    await applyRetrying(cluster, policy(2, 'web2.internal'));
    const ancestorGenerations = async (): Promise<number[]> => {
      const o = await cluster.get({ apiVersion: `${G}/v1`, kind: 'BackendTLSPolicy', metadata: { name: 'web-tls', namespace: ns } });
      const ancestors = (((o?.status as Obj | undefined)?.ancestors as Obj[] | undefined) ?? []);
      return ancestors.flatMap((a) => (a.conditions as Obj[]).map((c) => c.observedGeneration as number));
    };
    await eventually('BackendTLSPolicy conditions at generation 2', async () => {
      const g = await ancestorGenerations();
      return g.length > 0 && g.every((x) => x === 2);
    });
    assert.equal(gw.controller.serving?.clusters.find((x) => x.service.name === 'web' && x.service.namespace === ns)?.tls?.sni, 'web2.internal');
  });
});
