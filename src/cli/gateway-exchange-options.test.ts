import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withGatewayExchange } from './gateway-exchange-options.js';
import { DEFAULT_OBSERVABILITY } from '../observability/observer.js';

const fail = (m: string): never => {
  throw new Error(m);
};
const labels = { app: 'istio-ingressgateway', istio: 'ingressgateway' };

test('run --control: the exchange identity from flags, else POD_NAME / INSTANCE_IP / CLUSTER_ID, namespace from the mesh identity', () => {
  const env = { POD_NAME: 'gw-abc', INSTANCE_IP: '10.1.1.1', CLUSTER_ID: 'east' };
  const fromEnv = withGatewayExchange(DEFAULT_OBSERVABILITY, {}, 'istio-system', labels, fail, env).identity;
  assert.deepEqual(fromEnv.exchange, { podName: 'gw-abc', podIp: '10.1.1.1', labels });
  assert.equal(fromEnv.namespace, 'istio-system');
  assert.equal(fromEnv.cluster, 'east');
  const fromFlags = withGatewayExchange(DEFAULT_OBSERVABILITY, { 'pod-name': 'p', 'pod-ip': '10.2.2.2', 'cluster-id': 'west' }, 'istio-system', labels, fail, env).identity;
  assert.deepEqual(fromFlags.exchange, { podName: 'p', podIp: '10.2.2.2', labels });
  assert.equal(fromFlags.cluster, 'west');
  // Istio's default cluster ID; POD_IP as the second choice.
  const bare = withGatewayExchange(DEFAULT_OBSERVABILITY, {}, 'ns', labels, fail, { POD_NAME: 'x', POD_IP: '10.3.3.3' }).identity;
  assert.equal(bare.cluster, 'Kubernetes');
  assert.equal(bare.exchange?.podIp, '10.3.3.3');
  // --workload-namespace wins over the mesh identity's namespace.
  const ns = withGatewayExchange({ ...DEFAULT_OBSERVABILITY, identity: { ...DEFAULT_OBSERVABILITY.identity, namespace: 'edge' } }, {}, 'istio-system', labels, fail, env).identity;
  assert.equal(ns.namespace, 'edge');
});

test('without --control: no exchange, and its flags are refused; bad values name the flag', () => {
  assert.equal(withGatewayExchange(DEFAULT_OBSERVABILITY, {}, null, labels, fail, {}), DEFAULT_OBSERVABILITY);
  assert.throws(() => withGatewayExchange(DEFAULT_OBSERVABILITY, { 'pod-name': 'p' }, null, labels, fail, {}), /--pod-name needs --control/);
  assert.throws(() => withGatewayExchange(DEFAULT_OBSERVABILITY, { 'pod-ip': 'nope' }, 'ns', labels, fail, {}), /--pod-ip: "nope" is not an IP address/);
  assert.throws(() => withGatewayExchange(DEFAULT_OBSERVABILITY, { 'cluster-id': 'a b' }, 'ns', labels, fail, {}), /--cluster-id/);
});
