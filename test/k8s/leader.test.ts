/**
 * Status and Events, written by the elected leader only: Ingress status from --publish-address and
 * --publish-service, handover when the leader stops renewing its Lease, Events for a bad object
 * (deduplicated), and the Event rate limit.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { Logger } from '../../src/lib/log.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { EventRecorder } from '../../src/providers/kubernetes/events.js';
import type { ApiClient } from '../../src/providers/kubernetes/api-client.js';
import type { KubeObject } from '../../src/resources/types.js';
import { LEASE_NAME } from '../../src/cli/kubernetes.js';
import { REAL, endpointSlice, eventually, ingress, service, startCluster, startGateway, type Cluster, type Gateway } from './harness.js';

type Obj = Record<string, unknown>;

function lbOf(o: Obj | null | undefined): unknown {
  return ((o?.status as Obj | undefined)?.loadBalancer as Obj | undefined)?.ingress ?? [];
}

describe('leader election, status and events', () => {
  let cluster: Cluster | null = null;
  const gateways: Gateway[] = [];

  afterEach(async () => {
    for (const g of gateways.splice(0)) await g.stop();
    await cluster?.close();
    cluster = null;
  });

  test('one leader writes Ingress status; when it stops renewing, the other takes over and writes', async () => {
    cluster = await startCluster();
    const ns = cluster.namespace;
    await cluster.apply(service(ns, 'web', 1));
    await cluster.apply(endpointSlice(ns, 'web', 1));
    await cluster.apply(ingress(ns, 'web', 'web.test', 'web'));
    const publish = { addresses: ['192.0.2.10', 'lb.example.com'] };
    for (let i = 0; i < 2; i++) gateways.push(await startGateway(cluster, { k8s: { publish } }));
    const want = [{ ip: '192.0.2.10' }, { hostname: 'lb.example.com' }];
    await eventually('status written', async () => JSON.stringify(lbOf(await cluster!.get(ingress(ns, 'web', 'web.test', 'web')))) === JSON.stringify(want));
    const leaders = () => gateways.filter((g) => g.wiring.elector.leading);
    await eventually('exactly one leader', () => leaders().length === 1);
    const [leader] = leaders();
    const follower = gateways.find((g) => g !== leader)!;
    assert.equal(follower.wiring.status.writes, 0, 'the follower wrote status');

    // The leader stops renewing without releasing (a hung or partitioned replica).
    await leader.wiring.elector.stop(false);
    await eventually('the follower takes the lease', () => follower.wiring.elector.leading, 10_000);
    const lease = await cluster.get({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: LEASE_NAME, namespace: ns } });
    assert.equal((lease?.spec as Obj).holderIdentity, follower.wiring.elector.identity);
    assert.ok(Number((lease?.spec as Obj).leaseTransitions) >= 1);

    // A new Ingress gets its status from the new leader.
    await cluster.apply(ingress(ns, 'web2', 'web2.test', 'web'));
    await eventually('status by the new leader', async () => JSON.stringify(lbOf(await cluster!.get(ingress(ns, 'web2', 'web2.test', 'web')))) === JSON.stringify(want));
    assert.ok(follower.wiring.status.writes >= 1);
  });

  test('--publish-service: the Service load balancer address, updated when it changes; other classes untouched', { skip: REAL && 'the cloud controller owns Service status' }, async () => {
    cluster = await startCluster();
    const ns = cluster.namespace;
    const lbService = (ip: string) => ({ ...service(ns, 'meshgate', 8080), spec: { type: 'LoadBalancer', clusterIP: '10.96.0.10', ports: [{ name: 'http', port: 80, targetPort: 8080 }] }, status: { loadBalancer: { ingress: [{ ip }] } } });
    await cluster.apply(lbService('192.0.2.20'));
    if (cluster.fake) await cluster.client.expect('PUT', `/api/v1/namespaces/${ns}/services/meshgate/status`, lbService('192.0.2.20'));
    await cluster.apply(ingress(ns, 'web', 'web.test', 'web'));
    await cluster.apply(ingress(ns, 'foreign', 'f.test', 'web', { className: 'someone-else' }));
    gateways.push(await startGateway(cluster, { k8s: { publish: { service: { namespace: ns, name: 'meshgate' } } } }));
    const web = ingress(ns, 'web', 'web.test', 'web');
    await eventually('status from the Service', async () => JSON.stringify(lbOf(await cluster!.get(web))) === '[{"ip":"192.0.2.20"}]');
    if (!cluster.fake) return;
    await cluster.client.expect('PUT', `/api/v1/namespaces/${ns}/services/meshgate/status`, lbService('192.0.2.21'));
    await eventually('status follows the Service', async () => JSON.stringify(lbOf(await cluster!.get(web))) === '[{"ip":"192.0.2.21"}]');
    assert.deepEqual(lbOf(await cluster.get(ingress(ns, 'foreign', 'f.test', 'web'))), []);
    assert.ok(!cluster.fake.writes.some((w) => w.path.endsWith('/ingresses/foreign/status')), 'an Ingress of another class got status');
  });

  test('a bad object gets a Warning Event from the leader, once', async () => {
    cluster = await startCluster();
    const ns = cluster.namespace;
    await cluster.apply(ingress(ns, 'broken', 'broken.test', 'no-such-service'));
    const gw = await startGateway(cluster);
    gateways.push(gw);
    const events = async () => {
      const res = await cluster!.client.expect('GET', `/apis/events.k8s.io/v1/namespaces/${ns}/events`);
      return ((res as Obj).items as Obj[]).filter((e) => (e.regarding as Obj)?.name === 'broken');
    };
    const [event] = await eventually('an Event on the Ingress', async () => ((await events()).length > 0 ? await events() : null));
    assert.equal(event.reason, 'MG_SERVICE_NOT_FOUND');
    assert.equal(event.type, 'Warning');
    assert.equal(event.reportingController, 'meshgate.io/ingress-controller');
    assert.equal((event.regarding as Obj).kind, 'Ingress');
    assert.ok((event.regarding as Obj).uid, 'regarding has no uid');
    assert.match(String(event.note), /no-such-service/);
    // More reloads (an unrelated change) do not repeat it.
    await cluster.apply(service(ns, 'unrelated', 1));
    await eventually('the reload', () => gw.controller.reloads.length >= 2);
    await gw.wiring.idle();
    assert.equal((await events()).length, 1);
  });

  test('the Event rate limit drops a burst beyond its budget and refills over time', { skip: REAL && 'unit test' }, async () => {
    let now = 0;
    const posted: unknown[] = [];
    const client = { expect: async (_m: string, _p: string, body: unknown) => posted.push(body) } as unknown as ApiClient;
    const target = (name: string): KubeObject => ({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace: 'ns', labels: {}, annotations: {}, creationTimestamp: null }, body: { metadata: { uid: name } }, origin: { file: null, line: null, order: '', fieldLines: {} } });
    const rec = new EventRecorder({ client, log: new Logger('error', {}, () => {}), identity: 'me', lookup: (_k, _ns, name) => target(name), burst: 3, perSecond: 1, now: () => now });
    const diag = (name: string): Diagnostic => ({ severity: 'error', reason: 'MG_SERVICE_NOT_FOUND', object: { kind: 'Service', namespace: 'ns', name }, field: null, file: null, line: null, message: 'm' });
    await rec.record(['a', 'b', 'c', 'd', 'e'].map(diag));
    assert.equal(posted.length, 3);
    now += 2000;
    await rec.record(['a', 'b', 'c', 'd', 'e'].map(diag));
    assert.equal(posted.length, 5, 'the dropped ones come back once tokens refill; the sent ones are not repeated');
  });
});
