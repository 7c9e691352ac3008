import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ownPodLabels, parseDownwardLabels, POD_LABELS_FILE } from './pod-labels.js';
import { parseRunOptions } from './main.js';

test('parseDownwardLabels: the kubelet downward API format', () => {
  assert.deepEqual(parseDownwardLabels('app="istio-ingressgateway"\nistio="ingressgateway"\npod-template-hash="5d8f"\nodd="a \\"q\\""\n'), {
    app: 'istio-ingressgateway',
    istio: 'ingressgateway',
    'pod-template-hash': '5d8f',
    odd: 'a "q"',
  });
});

test('ownPodLabels: downward API file first, else a GET of POD_NAMESPACE/POD_NAME, else null', async () => {
  const noFile = () => {
    throw new Error('ENOENT');
  };
  const gets: string[] = [];
  const getPod = async (ns: string, name: string) => (gets.push(`${ns}/${name}`), { metadata: { labels: { istio: 'ingress', app: 'istio-ingress', n: 1 } } });
  const fromFile = await ownPodLabels({ env: {}, readFile: (p) => (p === POD_LABELS_FILE ? 'istio="ingressgateway"\n' : noFile()), getPod });
  assert.deepEqual(fromFile, { labels: { istio: 'ingressgateway' }, from: POD_LABELS_FILE });
  const fromApi = await ownPodLabels({ env: { POD_NAMESPACE: 'gw', POD_NAME: 'meshgate-1' }, readFile: noFile, getPod });
  assert.deepEqual(fromApi, { labels: { istio: 'ingress', app: 'istio-ingress' }, from: 'pod gw/meshgate-1' });
  assert.deepEqual(gets, ['gw/meshgate-1']);
  assert.equal(await ownPodLabels({ env: {}, readFile: noFile, getPod }), null);
});

test('run --kubernetes reads its own pod labels unless --gateway-labels is given; --config keeps the default', () => {
  assert.equal(parseRunOptions(['--kubernetes']).ownPodLabels, true);
  assert.equal(parseRunOptions(['--kubernetes', '--gateway-labels', 'istio=ingress']).ownPodLabels, false);
  const dir = parseRunOptions(['--config', '.']);
  assert.equal(dir.ownPodLabels, false);
  assert.deepEqual(dir.translate.gatewayLabels, { app: 'istio-ingressgateway', istio: 'ingressgateway' });
});
