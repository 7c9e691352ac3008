/**
 * The config push in Kubernetes mode (`meshgate control --kubernetes` against the fake API server):
 * sidecars are authenticated by TokenReview, and a Service created in the cluster reaches the
 * connected sidecar's view. The view is the test's function (test/support/push-view.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { REAL, startCluster } from './harness.js';
import { startControlPlane } from '../../src/control/control-plane.js';
import { ConfigPushClient } from '../../src/mesh/push/client.js';
import { Logger } from '../../src/lib/log.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { tempDir, waitFor } from '../helpers/gateway.js';
import { clusterNames, testTranslate } from '../support/push-view.js';
import type { IRSnapshot } from '../../src/ir/types.js';

const quiet = new Logger('error');

test('Kubernetes mode: a TokenReview-authenticated sidecar gets its view, and a new Service reaches it', { skip: REAL ? 'TokenReview answers are faked here; against a real cluster the tokens would have to be real pod tokens' : false }, async () => {
  const cluster = await startCluster({
    tokenReview: (spec) =>
      spec.token === 'tok-reviews'
        ? { authenticated: true, audiences: ['istio-ca'], user: { username: 'system:serviceaccount:bookinfo:reviews', groups: ['system:serviceaccounts', 'system:authenticated'] } }
        : { authenticated: false, error: 'invalid bearer token' },
  });
  const cp = await startControlPlane({ configDir: '', caDir: '', kubernetes: { client: cluster.client, watchNamespaces: null }, listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', adminPort: 0, certTtlSeconds: 3600, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: quiet, sidecarTranslate: testTranslate });
  const clients: ConfigPushClient[] = [];
  const dir = tempDir('meshgate-push-k8s-');
  const client = (token: string, serviceAccount: string, onApply: (ir: IRSnapshot) => void = () => {}) => {
    const tokenFile = path.join(dir, `token-${clients.length}`);
    writeFileSync(tokenFile, token);
    const c = new ConfigPushClient({ address: `127.0.0.1:${cp.grpcPort}`, rootCertPem: cp.ca.rootCertPem, tokenFile, proxy: { namespace: 'bookinfo', serviceAccount, podName: `${serviceAccount}-v1-abc`, podIps: ['10.2.0.5'], trustDomain: 'cluster.local' }, log: quiet, apply: onApply, initialBackoffMs: 100, maxBackoffMs: 1000 });
    clients.push(c);
    c.start();
    return c;
  };
  try {
    let serving: IRSnapshot | null = null;
    const good = client('tok-reviews', 'reviews', (ir) => void (serving = ir));
    const impostor = client('tok-reviews', 'ratings');
    const unknown = client('tok-nobody', 'reviews');
    await good.whenReady(10_000);
    const host = `details.${cluster.namespace}.svc.cluster.local`;
    await cluster.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'details', namespace: cluster.namespace }, spec: { ports: [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'TCP' }] } });
    await waitFor(() => clusterNames(serving).includes(`outbound|9080||${host}`), 10_000, 'the new Service in the sidecar view');
    await waitFor(() => impostor.lastError !== null && unknown.lastError !== null, 10_000, 'both refused');
    assert.match(impostor.lastError ?? '', /^PERMISSION_DENIED: the token's identity bookinfo\/reviews is not the proxy's bookinfo\/ratings/);
    assert.match(unknown.lastError ?? '', /^UNAUTHENTICATED/);
    assert.equal(impostor.ready || unknown.ready, false);
    const status = cp.push!.status();
    assert.deepEqual(status.proxies.map((p) => [p.name, p.identity]), [['reviews-v1-abc.bookinfo', 'spiffe://cluster.local/ns/bookinfo/sa/reviews']]);
  } finally {
    for (const c of clients) await c.stop();
    await cp.stop();
    await cluster.close();
  }
});
