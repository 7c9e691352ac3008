/**
 * The list/watch protocol against the fake API server: the first snapshot waits for every initial
 * list, dropped watches resume from the last resourceVersion, 410 Gone relists, bookmarks move the
 * resourceVersion, pages are followed, missing CRDs are found later, v1beta1 is used when v1 is
 * absent, --watch-namespace limits what is read, and Secrets are read only by reference or label.
 */
import assert from 'node:assert/strict';
import { after, afterEach, describe, test } from 'node:test';
import { Logger } from '../../src/lib/log.js';
import { ApiClient } from '../../src/providers/kubernetes/api-client.js';
import { KubernetesSource } from '../../src/providers/kubernetes/source.js';
import type { EchoServer } from '../../src/demo/echo-server.js';
import { FAST, REAL, echo, endpointSlice, eventually, ingress, served, service, startCluster, startGateway, type Cluster, type Gateway } from './harness.js';

const quiet = new Logger('error', {}, () => {});

describe('kubernetes list/watch protocol', { skip: REAL && 'needs the fake API server' }, () => {
  let cluster: Cluster | null = null;
  let gw: Gateway | null = null;
  let source: KubernetesSource | null = null;
  let backend: EchoServer | null = null;

  afterEach(async () => {
    source?.close();
    await gw?.stop();
    await cluster?.close();
    source = null;
    gw = null;
    cluster = null;
  });
  after(async () => backend?.close());

  function newSource(c: Cluster, extra: Partial<ConstructorParameters<typeof KubernetesSource>[0]> = {}): KubernetesSource {
    return new KubernetesSource({ client: ApiClient.load(c.kubeconfig), log: quiet, watchNamespaces: null, secretLabelSelector: null, debounceMs: 10, rediscoverMs: 200, backoff: FAST.backoff, ...extra });
  }

  test('the first load waits for every initial list (nothing from a partial view)', async () => {
    cluster = await startCluster();
    const ns = cluster.namespace;
    await cluster.apply(service(ns, 'web', 1));
    await cluster.apply(endpointSlice(ns, 'web', 1));
    const release = cluster.fake!.holdLists('endpointslices');
    source = newSource(cluster);
    let loaded = false;
    const load = source.load().then((l) => ((loaded = true), l));
    await eventually('the Service list', () => source!.items('Service').length === 1);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(loaded, false, 'load() resolved before the EndpointSlice list was in');
    release();
    const result = await load;
    // Namespaces are always read (Gateway API allowedRoutes selectors); not part of this check.
    assert.deepEqual(result.objects.map((o) => o.kind).filter((k) => k !== 'Namespace').sort(), ['EndpointSlice', 'Service']);
  });

  test('lists are read page by page (limit/continue) and items get apiVersion/kind and namespace', async () => {
    cluster = await startCluster();
    for (let i = 0; i < 12; i++) await cluster.apply(service(cluster.namespace, `s${i}`, 1));
    source = newSource(cluster, { pageSize: 5 });
    const { objects } = await source.load();
    assert.equal(objects.filter((o) => o.kind === 'Service').length, 12);
    const pages = cluster.fake!.requests.filter((r) => r.startsWith('GET /api/v1/services?') && !r.includes('watch=true'));
    assert.equal(pages.length, 3, pages.join('\n'));
    const s = objects.find((o) => o.kind === 'Service')!;
    assert.equal(s.apiVersion, 'v1');
    assert.equal(s.body.kind, 'Service');
    assert.equal(s.metadata.namespace, cluster.namespace);
    assert.equal(s.origin.file, null);
    assert.match(s.origin.order, /^\d{4}-.*Z\/[0-9a-f-]{36}$/);
  });

  test('a dropped watch resumes from the last resourceVersion, without a relist', async () => {
    backend = await echo('a');
    cluster = await startCluster();
    const ns = cluster.namespace;
    await cluster.apply(service(ns, 'web', backend.port));
    await cluster.apply(endpointSlice(ns, 'web', backend.port));
    await cluster.apply(ingress(ns, 'one', 'one.test', 'web'));
    gw = await startGateway(cluster);
    await served(gw, 'one.test', { name: 'a' });
    const ingressReflector = () => gw!.wiring.source.reflectors().find((r) => r.stats.lists > 0 && [...r.items()].some((o) => o.kind === 'Ingress'))!;
    const listsBefore = ingressReflector().stats.lists;
    const watchesBefore = ingressReflector().stats.watches;
    assert.ok(cluster.fake!.dropWatches() > 0);
    await cluster.apply(ingress(ns, 'two', 'two.test', 'web'));
    await served(gw, 'two.test', { name: 'a' });
    assert.equal(ingressReflector().stats.lists, listsBefore, 'relisted instead of resuming');
    assert.ok(ingressReflector().stats.watches > watchesBefore);
    const resumed = cluster.fake!.requests.filter((r) => r.includes('/ingresses?') && r.includes('watch=true')).at(-1)!;
    assert.match(resumed, /resourceVersion=\d+/);
    assert.doesNotMatch(resumed, /resourceVersion=0?&/);
  });

  test('410 Gone after compaction: the reflector relists and nothing is lost', async () => {
    backend ??= await echo('a');
    cluster = await startCluster();
    const ns = cluster.namespace;
    await cluster.apply(service(ns, 'web', backend.port));
    await cluster.apply(endpointSlice(ns, 'web', backend.port));
    await cluster.apply(ingress(ns, 'one', 'one.test', 'web'));
    gw = await startGateway(cluster);
    await served(gw, 'one.test', { name: 'a' });
    // History is compacted past every client's resourceVersion, then the watches drop: resuming must
    // fail with 410 Gone, and only a relist can bring the copy back.
    cluster.fake!.compact();
    cluster.fake!.dropWatches();
    await cluster.apply(ingress(ns, 'three', 'three.test', 'web'));
    await served(gw, 'three.test', { name: 'a' });
    const expired = gw.wiring.source.reflectors().reduce((n, r) => n + r.stats.expired, 0);
    assert.ok(expired > 0, 'no reflector saw 410 Gone');
    await cluster.apply(ingress(ns, 'four', 'four.test', 'web'));
    await served(gw, 'four.test', { name: 'a' });
  });

  test('bookmarks move the resourceVersion forward', async () => {
    cluster = await startCluster();
    source = newSource(cluster);
    await source.load();
    await eventually('watches open', () => cluster!.fake!.watcherCount >= source!.reflectors().length);
    // A change to a kind nobody else watches moves the server's resourceVersion.
    await cluster.apply({ apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name: 'x', namespace: cluster.namespace }, spec: {} });
    cluster.fake!.bookmark();
    const rv = String(cluster.fake!.resourceVersion);
    await eventually('every reflector at the bookmark', () => source!.reflectors().every((r) => r.resourceVersion === rv));
    assert.ok(source.reflectors().every((r) => r.stats.bookmarks > 0));
  });

  test('a missing Istio CRD is not fatal and is picked up once installed; v1beta1 when v1 is absent', async () => {
    cluster = await startCluster();
    for (const v of ['v1', 'v1beta1']) cluster.fake!.setServed('networking.istio.io', v, false);
    source = newSource(cluster);
    await cluster.apply(service(cluster.namespace, 'web', 1));
    const first = await source.load();
    assert.deepEqual(first.objects.map((o) => o.kind).filter((k) => k !== 'Namespace'), ['Service']);
    cluster.fake!.setServed('networking.istio.io', 'v1beta1', true);
    await cluster.apply({ apiVersion: 'networking.istio.io/v1beta1', kind: 'Gateway', metadata: { name: 'g', namespace: cluster.namespace }, spec: { selector: { istio: 'ingressgateway' }, servers: [] } });
    await eventually('the Gateway, read once v1beta1 is served', () => source!.items('Gateway').length === 1);
    assert.equal(source.items('Gateway')[0].apiVersion, 'networking.istio.io/v1beta1');
  });

  test('--watch-namespace: namespaced kinds only from those namespaces; IngressClass cluster-wide', async () => {
    cluster = await startCluster();
    await cluster.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'other' } });
    await cluster.apply(service(cluster.namespace, 'mine', 1));
    await cluster.apply(service('other', 'theirs', 1));
    await cluster.apply({ apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: 'c' }, spec: { controller: 'x' } });
    source = newSource(cluster, { watchNamespaces: [cluster.namespace] });
    const { objects } = await source.load();
    // Namespaces are cluster-scoped (read for Gateway API allowedRoutes selectors), like IngressClass.
    assert.deepEqual(objects.filter((o) => o.kind !== 'Namespace').map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`).sort(), ['IngressClass//c', `Service/${cluster.namespace}/mine`]);
    assert.ok(!cluster.fake!.requests.some((r) => r.startsWith('GET /api/v1/services')), 'a cluster-wide Service list was made');
  });

  test('Secrets: only referenced ones, each by name; or by label selector; never a cluster-wide read of all', async () => {
    cluster = await startCluster();
    const ns = cluster.namespace;
    const secret = (name: string, labels: Record<string, string> = {}) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns, labels }, type: 'Opaque', data: {} });
    await cluster.apply(secret('used'));
    await cluster.apply(secret('unused'));
    await cluster.apply(secret('labelled', { 'meshgate.io/tls': 'true' }));
    await cluster.apply(ingress(ns, 'i', 'i.test', 'web', { tlsSecret: 'used' }));
    const mark = cluster.fake!.requests.length;
    source = newSource(cluster);
    const { objects } = await source.load();
    assert.deepEqual(objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name), ['used']);
    const secretReads = cluster.fake!.requests.slice(mark).filter((r) => r.includes('/secrets'));
    assert.ok(secretReads.length > 0 && secretReads.every((r) => r.startsWith(`GET /api/v1/namespaces/${ns}/secrets?`) && r.includes('fieldSelector=metadata.name%3Dused')), secretReads.join('\n'));
    // A newly referenced Secret is watched; one no longer referenced is dropped.
    await cluster.apply(ingress(ns, 'i', 'i.test', 'web', { tlsSecret: 'unused' }));
    await eventually('the new reference read', async () => (await source!.load()).objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name).join() === 'unused');
    source.close();

    source = newSource(cluster, { secretLabelSelector: 'meshgate.io/tls=true' });
    const byLabel = await source.load();
    assert.deepEqual(byLabel.objects.filter((o) => o.kind === 'Secret').map((o) => o.metadata.name), ['labelled']);
  });
});
