import { test } from 'node:test';
import assert from 'node:assert/strict';
import { outboundLabels, outboundTelemetryContext } from './outbound-telemetry.js';
import { ISTIO_LABELS } from '../../observability/metrics.js';
import { cluster, snapshot } from '../../../test/support/ir-builders.js';
import type { IRSnapshot, SidecarView } from '../../ir/types.js';

function ir(): IRSnapshot {
  const auto = { mode: 'ISTIO_MUTUAL' as const, caCertificates: null, clientCertificate: null, sni: 'outbound_.9080_._.reviews.default.svc.cluster.local', subjectAltNames: [], insecureSkipVerify: false };
  const c = cluster('outbound|9080||reviews.default.svc.cluster.local', [
    { address: '10.0.0.3', port: 9080 },
    { address: '10.0.0.4', port: 9080 },
  ]);
  c.endpoints[0].tlsMode = 'istio';
  c.autoMtls = auto;
  const view: SidecarView = {
    proxy: { namespace: 'shop', serviceAccount: 'web', podName: 'web-1', podIps: ['10.0.0.2'], labels: { app: 'web', version: 'v3' }, spiffeId: 'spiffe://example.org/ns/shop/sa/web', workload: 'web' },
    outboundTrafficPolicy: 'ALLOW_ANY',
    outbound: [],
    outboundHttp: [],
    outboundTcp: [],
    inbound: [],
    inboundDefault: 'PERMISSIVE',
    inboundHttp: [],
    workloads: [
      { ip: '10.0.0.3', namespace: 'default', name: 'reviews-v1', serviceAccount: 'reviews', app: 'reviews', version: 'v1', canonicalService: 'reviews', canonicalRevision: 'v1', meshed: true },
      { ip: '10.0.0.4', namespace: 'default', name: 'legacy', serviceAccount: 'default', app: '', version: '', canonicalService: 'legacy', canonicalRevision: 'latest', meshed: false },
    ],
  };
  return { ...snapshot([], [c]), sidecar: view };
}

test('source-side labels: the meshed endpoint gives its workload and SPIFFE principal; every Istio label but the per-request ones', () => {
  const ctx = outboundTelemetryContext(ir(), 'Kubernetes')!;
  const l = outboundLabels(ctx, 'outbound|9080||reviews.default.svc.cluster.local', '10.0.0.3:9080#tls=6855a48e11782028');
  assert.deepEqual(Object.keys(l).sort(), ISTIO_LABELS.filter((k) => !['request_protocol', 'response_code', 'grpc_response_status', 'response_flags'].includes(k)).sort());
  assert.equal(l.reporter, 'source');
  assert.equal(l.source_workload, 'web');
  assert.equal(l.source_principal, 'spiffe://example.org/ns/shop/sa/web');
  assert.equal(l.source_canonical_revision, 'v3');
  assert.equal(l.destination_workload, 'reviews-v1');
  assert.equal(l.destination_workload_namespace, 'default');
  assert.equal(l.destination_principal, 'spiffe://example.org/ns/default/sa/reviews');
  assert.equal(l.destination_service, 'reviews.default.svc.cluster.local');
  assert.equal(l.destination_canonical_service, 'reviews');
  assert.equal(l.destination_version, 'v1');
  assert.equal(l.destination_cluster, 'Kubernetes');
  assert.equal(l.connection_security_policy, 'unknown');
});

test('source-side labels: a plaintext endpoint has no principals; an unknown one no workload', () => {
  const ctx = outboundTelemetryContext(ir(), 'Kubernetes')!;
  const plain = outboundLabels(ctx, 'outbound|9080||reviews.default.svc.cluster.local', '10.0.0.4:9080');
  assert.equal(plain.destination_workload, 'legacy');
  assert.equal(plain.destination_principal, 'unknown');
  assert.equal(plain.source_principal, 'unknown');
  assert.equal(plain.destination_canonical_service, 'legacy');
  assert.equal(plain.destination_app, 'unknown');
  const unknown = outboundLabels(ctx, 'PassthroughCluster', '192.0.2.1:80');
  assert.equal(unknown.destination_workload, 'unknown');
  // istio_stats: the catch-all cluster has no service; its name is destination_service_name.
  assert.equal(unknown.destination_service, 'unknown');
  assert.equal(unknown.destination_service_name, 'PassthroughCluster');
  assert.equal(unknown.destination_canonical_service, 'unknown');
  assert.equal(unknown.destination_cluster, 'unknown');
});
