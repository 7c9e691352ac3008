/**
 * The Kubernetes source end to end: objects created, changed and deleted through the API reach the
 * data plane (requests through the gateway's port to real echo backends). Runs against the fake API
 * server, or a real cluster with test/k8s/real-cluster.sh (fake-only scenarios are skipped there).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { makeCerts } from '../support/tls-certs.js';
import type { EchoServer } from '../../src/demo/echo-server.js';
import { BACKEND_IP, REAL, echo, endpointSlice, eventually, ingress, served, service, startCluster, startGateway, type Cluster, type Gateway } from './harness.js';

describe('kubernetes source: every kind reaches the data plane', () => {
  let cluster: Cluster;
  let gw: Gateway;
  let a: EchoServer;
  let b: EchoServer;
  let ns: string;

  before(async () => {
    [a, b] = await Promise.all([echo('a'), echo('b')]);
    cluster = await startCluster();
    ns = cluster.namespace;
    await cluster.apply(service(ns, 'web', a.port));
    await cluster.apply(endpointSlice(ns, 'web', a.port));
    // Keeps the HTTP listener up while the scenarios add and remove their own Ingresses.
    await cluster.apply(ingress(ns, 'keep', 'keep.test', 'web'));
    gw = await startGateway(cluster);
    await served(gw, 'keep.test', { name: 'a' });
  });

  after(async () => {
    await gw?.stop();
    await cluster?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  test('Ingress: create serves, update re-routes, delete stops serving', async () => {
    const ing = ingress(ns, 'web', 'web.test', 'web');
    await cluster.apply(ing);
    await served(gw, 'web.test', { name: 'a' });
    await cluster.apply(ingress(ns, 'web', 'web.test', 'web', { path: '/only' }));
    await served(gw, 'web.test', { status: 404, path: '/' });
    await served(gw, 'web.test', { name: 'a', path: '/only/x' });
    await cluster.remove(ing);
    await served(gw, 'web.test', { status: 404, path: '/only/x' });
  });

  test('Service and EndpointSlice: endpoints follow the slice; a deleted Service answers 503', async () => {
    await cluster.apply(service(ns, 'svc2', a.port));
    await cluster.apply(endpointSlice(ns, 'svc2', a.port));
    await cluster.apply(ingress(ns, 'svc2', 'svc2.test', 'svc2'));
    await served(gw, 'svc2.test', { name: 'a' });
    await cluster.apply(endpointSlice(ns, 'svc2', b.port));
    await served(gw, 'svc2.test', { name: 'b' });
    await cluster.remove(endpointSlice(ns, 'svc2', b.port));
    await served(gw, 'svc2.test', { status: 503 });
    await cluster.apply(endpointSlice(ns, 'svc2', b.port));
    await served(gw, 'svc2.test', { name: 'b' });
    await cluster.remove(service(ns, 'svc2', a.port));
    await served(gw, 'svc2.test', { status: 503 });
  });

  test('Endpoints (legacy): used when a Service has no EndpointSlice', async () => {
    const endpoints = { apiVersion: 'v1', kind: 'Endpoints', metadata: { name: 'legacy', namespace: ns }, subsets: [{ addresses: [{ ip: BACKEND_IP }], ports: [{ name: 'http', port: a.port }] }] };
    await cluster.apply(service(ns, 'legacy', a.port));
    await cluster.apply(ingress(ns, 'legacy', 'legacy.test', 'legacy'));
    await cluster.apply(endpoints);
    await served(gw, 'legacy.test', { name: 'a' });
    if (REAL) return; // The cluster's mirroring controller keeps a slice for it.
    await cluster.remove(endpoints);
    await served(gw, 'legacy.test', { status: 503 });
  });

  test('Pod: endpoints derived from the selector when there is no endpoint object', { skip: REAL && 'pod status is written by the kubelet' }, async () => {
    const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p1', namespace: ns, labels: { app: 'sel' } }, spec: { containers: [{ name: 'c', image: 'x' }] }, status: { phase: 'Running', podIP: '127.0.0.1' } };
    await cluster.apply(service(ns, 'sel', b.port, { app: 'sel' }));
    await cluster.apply(ingress(ns, 'sel', 'sel.test', 'sel'));
    await served(gw, 'sel.test', { status: 503 });
    await cluster.apply(pod);
    await served(gw, 'sel.test', { name: 'b' });
    await cluster.apply({ ...pod, metadata: { ...pod.metadata, labels: { app: 'other' } } });
    await served(gw, 'sel.test', { status: 503 });
    await cluster.remove(pod);
  });

  test('IngressClass: an Ingress of a class meshgate owns is served from when the class exists', async () => {
    const className = `${ns}-class`;
    const ic = { apiVersion: 'networking.k8s.io/v1', kind: 'IngressClass', metadata: { name: className }, spec: { controller: 'meshgate.io/ingress-controller' } };
    await cluster.apply(ingress(ns, 'classy', 'classy.test', 'web', { className }));
    await served(gw, 'classy.test', { status: 404 });
    await cluster.apply(ic);
    await served(gw, 'classy.test', { name: 'a' });
    await cluster.remove(ic);
    await served(gw, 'classy.test', { status: 404 });
  });

  test('Secret: an Ingress TLS Secret is read when referenced; HTTP redirects to HTTPS while it is valid', async () => {
    const [cert] = makeCerts(['tls.test']);
    const secret = { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'tls-cert', namespace: ns }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(cert.certChain).toString('base64'), 'tls.key': Buffer.from(cert.privateKey).toString('base64') } };
    await cluster.apply(ingress(ns, 'tls', 'tls.test', 'web', { tlsSecret: 'tls-cert' }));
    await served(gw, 'tls.test', { name: 'a' });
    await cluster.apply(secret);
    await served(gw, 'tls.test', { status: 308 });
    await cluster.remove(secret);
    await served(gw, 'tls.test', { name: 'a' });
  });

  test('Istio Gateway, VirtualService, DestinationRule, ServiceEntry', async () => {
    const gateway = { apiVersion: 'networking.istio.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: ns }, spec: { selector: { istio: 'ingressgateway' }, servers: [{ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['istio.test'] }] } };
    const vs = (svc: string) => ({ apiVersion: 'networking.istio.io/v1', kind: 'VirtualService', metadata: { name: 'vs', namespace: ns }, spec: { hosts: ['istio.test'], gateways: ['gw'], http: [{ route: [{ destination: { host: svc } }] }] } });
    await cluster.apply(service(ns, 'web-b', b.port));
    await cluster.apply(endpointSlice(ns, 'web-b', b.port));
    await cluster.apply(gateway);
    await cluster.apply(vs('web'));
    await served(gw, 'istio.test', { name: 'a' });
    await cluster.apply(vs('web-b'));
    await served(gw, 'istio.test', { name: 'b' });
    const dr = { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name: 'dr', namespace: ns }, spec: { host: 'web-b', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } } };
    await cluster.apply(dr);
    await eventually('the DestinationRule policy in the snapshot', () => gw.controller.serving?.clusters.some((c) => c.service.name === 'web-b' && c.lbPolicy === 'RANDOM'));
    await cluster.remove(dr);
    await eventually('the DestinationRule policy gone', () => gw.controller.serving?.clusters.some((c) => c.service.name === 'web-b' && c.lbPolicy !== 'RANDOM'));
    // ServiceEntry is read and checked (translation does not use it yet): a bad one is reported.
    const se = { apiVersion: 'networking.istio.io/v1', kind: 'ServiceEntry', metadata: { name: 'se', namespace: ns }, spec: { hosts: ['ext.test'], ports: [{ number: 80, name: 'http', protocol: 'HTTP' }], resolution: 'DNS' } };
    await cluster.apply(se);
    await eventually('the ServiceEntry read', () => gw.wiring.source.items('ServiceEntry').some((o) => o.metadata.name === 'se'));
    await cluster.remove(se);
    await eventually('the ServiceEntry gone', () => !gw.wiring.source.items('ServiceEntry').some((o) => o.metadata.name === 'se'));
    await cluster.remove(vs('web-b'));
    await served(gw, 'istio.test', { status: 404 });
    await cluster.remove(gateway);
  });
});
