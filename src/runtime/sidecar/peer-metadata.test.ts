import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { SidecarProxy } from '../../ir/sidecar.js';
import { decodeStruct, encodeStruct } from '../../lib/proto-struct.js';
import { gatewayPeerMetadata, localPeerMetadata, localPeerStruct, parsePeerMetadata, PEER_METADATA, PEER_METADATA_ID, peerHeaderBits, peerMetadataOf, proxyNodeId, syncRequestPeerMetadata, takePeerMetadata, withDestinationPeer, withSourcePeer } from './peer-metadata.js';

/**
 * A real `x-envoy-peer-metadata` of an Istio 1.16.1 sidecar (pod `client` in namespace `foo`, pod IP
 * 192.168.0.127), as a tcpdump of plaintext mesh traffic printed it in "Enforce zero trust with
 * east-west traffic encryption in Kubernetes with Istio, part 2" (infosecwriteups.com), with its
 * `x-envoy-peer-metadata-id: sidecar~192.168.0.127~client.foo~foo.svc.cluster.local`.
 */
const ISTIO_1_16_HEADER =
  'ChoKDkFQUF9DT05UQUlORVJTEggaBmNsaWVudAoaCgpDTFVTVEVSX0lEEgwaCkt1YmVybmV0ZXMKHwoMSU5TVEFOQ0VfSVBTEg8aDTE5Mi4xNjguMC4xMjcKGQoNSVNUSU9fVkVSU0lPThIIGgYxLjE2LjEKuAEKBkxBQkVMUxKtASqqAQoPCgNhcHASCBoGY2xpZW50CiQKGXNlY3VyaXR5LmlzdGlvLmlvL3Rsc01vZGUSBxoFaXN0aW8KEwoHc2VydmljZRIIGgZjbGllbnQKKwofc2VydmljZS5pc3Rpby5pby9jYW5vbmljYWwtbmFtZRIIGgZjbGllbnQKLwojc2VydmljZS5pc3Rpby5pby9jYW5vbmljYWwtcmV2aXNpb24SCBoGbGF0ZXN0ChoKB01FU0hfSUQSDxoNY2x1c3Rlci5sb2NhbAoQCgROQU1FEggaBmNsaWVudAoSCglOQU1FU1BBQ0USBRoDZm9vCj4KBU9XTkVSEjUaM2t1YmVybmV0ZXM6Ly9hcGlzL3YxL25hbWVzcGFjZXMvZGVmYXVsdC9wb2RzL2NsaWVudAoXChFQTEFURk9STV9NRVRBREFUQRICKgAKGQoNV09SS0xPQURfTkFNRRIIGgZjbGllbnQ=';

const PROXY: SidecarProxy = {
  namespace: 'shop',
  serviceAccount: 'web-sa',
  podName: 'web-7d9c-x2',
  podIps: ['10.1.2.3', 'fd00::3'],
  labels: { app: 'web', version: 'v3', 'pod-template-hash': '7d9c' },
  spiffeId: 'spiffe://example.org/ns/shop/sa/web-sa',
  workload: 'web',
};

describe('Istio metadata exchange: a real Istio header', () => {
  test('decodes to the workload Istio describes', () => {
    const p = parsePeerMetadata(ISTIO_1_16_HEADER);
    assert.deepEqual(p, {
      instance: 'client',
      namespace: 'foo',
      workload: 'client',
      clusterId: 'Kubernetes',
      canonicalService: 'client',
      canonicalRevision: 'latest',
      app: 'client',
      version: '',
      serviceAccount: '',
      meshId: 'cluster.local',
    });
  });

  test('re-encoding the decoded Struct gives Istio’s bytes back (deterministic serialization as protobuf C++)', () => {
    const bytes = Buffer.from(ISTIO_1_16_HEADER, 'base64');
    const s = decodeStruct(bytes);
    assert.deepEqual(Object.keys(s), ['APP_CONTAINERS', 'CLUSTER_ID', 'INSTANCE_IPS', 'ISTIO_VERSION', 'LABELS', 'MESH_ID', 'NAME', 'NAMESPACE', 'OWNER', 'PLATFORM_METADATA', 'WORKLOAD_NAME']);
    assert.equal(encodeStruct(s).toString('base64'), ISTIO_1_16_HEADER);
  });

  test('the header without padding (Go’s RawStdEncoding, as Istio’s own tests send it) decodes the same', () => {
    assert.deepEqual(parsePeerMetadata(ISTIO_1_16_HEADER.replace(/=+$/, '')), parsePeerMetadata(ISTIO_1_16_HEADER));
  });
});

describe('Istio metadata exchange: this proxy', () => {
  test('node ID is Istio’s sidecar~IP~POD.NS~NS.svc.cluster.local', () => {
    assert.equal(proxyNodeId(PROXY), 'sidecar~10.1.2.3~web-7d9c-x2.shop~shop.svc.cluster.local');
    assert.equal(proxyNodeId({ ...PROXY, podName: '' }), 'sidecar~10.1.2.3~web.shop~shop.svc.cluster.local');
  });

  test('the value is padded base64 of the Struct Istio 1.18+ sends (OWNER aside): the telemetry labels only', () => {
    const m = localPeerMetadata(PROXY, 'cluster-a');
    assert.match(m.value, /^[A-Za-z0-9+/]+={0,2}$/);
    assert.equal(m.value.length % 4, 0, 'padded, as Envoy’s Base64::encode');
    assert.equal(m.id, 'sidecar~10.1.2.3~web-7d9c-x2.shop~shop.svc.cluster.local');
    const s = { ...decodeStruct(Buffer.from(m.value, 'base64')) };
    assert.deepEqual(JSON.parse(JSON.stringify(s)), {
      CLUSTER_ID: 'cluster-a',
      LABELS: { app: 'web', 'service.istio.io/canonical-name': 'web', 'service.istio.io/canonical-revision': 'v3', version: 'v3' },
      NAME: 'web-7d9c-x2',
      NAMESPACE: 'shop',
      WORKLOAD_NAME: 'web',
    });
    assert.deepEqual(parsePeerMetadata(m.value), {
      instance: 'web-7d9c-x2',
      namespace: 'shop',
      workload: 'web',
      clusterId: 'cluster-a',
      canonicalService: 'web',
      canonicalRevision: 'v3',
      app: 'web',
      version: 'v3',
      serviceAccount: '',
      meshId: '',
    });
  });

  const canonical: { desc: string; labels: Record<string, string>; want: [string, string] }[] = [
    { desc: 'Istio’s own labels win', labels: { 'service.istio.io/canonical-name': 'cn', 'service.istio.io/canonical-revision': 'cr', app: 'a', version: 'v' }, want: ['cn', 'cr'] },
    { desc: 'then app.kubernetes.io/name and /version', labels: { 'app.kubernetes.io/name': 'kn', 'app.kubernetes.io/version': 'kv', app: 'a', version: 'v' }, want: ['kn', 'kv'] },
    { desc: 'then app and version', labels: { app: 'a', version: 'v' }, want: ['a', 'v'] },
    { desc: 'then the workload and latest', labels: {}, want: ['web', 'latest'] },
  ];
  for (const c of canonical) {
    test(`canonical service and revision: ${c.desc}`, () => {
      const labels = localPeerStruct({ ...PROXY, labels: c.labels }, 'k').LABELS as Record<string, string>;
      assert.deepEqual([labels['service.istio.io/canonical-name'], labels['service.istio.io/canonical-revision']], c.want);
    });
  }

  test('encoded once per view: the same proxy object gives the same headers object', () => {
    const view = { ...PROXY };
    assert.equal(localPeerMetadata(view, 'k'), localPeerMetadata(view, 'k'));
    assert.notEqual(localPeerMetadata(view, 'k'), localPeerMetadata({ ...PROXY }, 'k'));
  });

  test('reply lines follow what the peer sent, as Istio’s downstream propagation', () => {
    const m = localPeerMetadata(PROXY, 'k');
    assert.deepEqual(m.reply[0], []);
    assert.deepEqual(m.reply[1], [PEER_METADATA_ID, m.id]);
    assert.deepEqual(m.reply[2], [PEER_METADATA, m.value]);
    assert.deepEqual(m.reply[3], [PEER_METADATA_ID, m.id, PEER_METADATA, m.value]);
  });
});

describe('Istio metadata exchange: peers', () => {
  const refused: { desc: string; input: string }[] = [
    { desc: 'empty', input: '' },
    { desc: 'not base64', input: 'not base64!' },
    { desc: 'base64 of no Struct', input: Buffer.from('hello world').toString('base64') },
    { desc: 'forged text', input: 'forged' },
    { desc: 'truncated Struct', input: ISTIO_1_16_HEADER.slice(0, 200) },
    { desc: 'too long', input: 'A'.repeat(20_000) },
  ];
  for (const r of refused) {
    test(`refused: ${r.desc}`, () => {
      assert.equal(parsePeerMetadata(r.input), null);
    });
  }

  test('remembered: the same value gives the same object', () => {
    const a = peerMetadataOf(ISTIO_1_16_HEADER);
    assert.notEqual(a, null);
    assert.equal(peerMetadataOf(ISTIO_1_16_HEADER), a);
  });

  test('takePeerMetadata removes both headers in place and returns the metadata', () => {
    const h = ['a', '1', PEER_METADATA_ID, 'id', 'b', '2', PEER_METADATA, 'v', 'c', '3'];
    assert.equal(takePeerMetadata(h), 'v');
    assert.deepEqual(h, ['a', '1', 'b', '2', 'c', '3']);
    const none = ['a', '1'];
    assert.equal(takePeerMetadata(none), null);
    assert.deepEqual(none, ['a', '1']);
  });

  const bits: { desc: string; raw: string[]; want: number }[] = [
    { desc: 'none', raw: ['host', 'a', 'x-envoy-peer-metadatx', 'v'], want: 0 },
    { desc: 'the id only, any case', raw: ['X-Envoy-Peer-Metadata-Id', 'i'], want: 1 },
    { desc: 'the metadata only', raw: [':authority', 'a', 'x-envoy-peer-metadata', 'v'], want: 2 },
    { desc: 'both', raw: ['x-envoy-peer-metadata', 'v', 'accept', '*/*', 'x-envoy-peer-metadata-id', 'i'], want: 3 },
  ];
  for (const b of bits) {
    test(`peerHeaderBits: ${b.desc}`, () => {
      assert.equal(peerHeaderBits(b.raw), b.want);
    });
  }

  test('syncRequestPeerMetadata adds or removes this proxy’s request headers', () => {
    const m = localPeerMetadata(PROXY, 'k');
    const h = ['host', 'x'];
    syncRequestPeerMetadata(h, m, true);
    assert.deepEqual(h, ['host', 'x', ...m.request]);
    syncRequestPeerMetadata(h, m, true);
    assert.equal(h.length, 6);
    syncRequestPeerMetadata(h, m, false);
    assert.deepEqual(h, ['host', 'x']);
  });

  const unknownSource = {
    reporter: 'destination',
    source_workload: 'unknown',
    source_canonical_service: 'unknown',
    source_canonical_revision: 'latest',
    source_workload_namespace: 'foo',
    source_principal: 'spiffe://cluster.local/ns/foo/sa/client',
    source_app: 'unknown',
    source_version: 'unknown',
    source_cluster: 'unknown',
  };

  test('source labels from a peer (reporter=destination)', () => {
    const p = parsePeerMetadata(ISTIO_1_16_HEADER)!;
    assert.deepEqual(withSourcePeer(unknownSource, p), {
      ...unknownSource,
      source_workload: 'client',
      source_canonical_service: 'client',
      source_canonical_revision: 'latest',
      source_workload_namespace: 'foo',
      source_app: 'client',
      source_version: 'unknown',
      source_cluster: 'Kubernetes',
    });
  });

  test('a peer claiming another namespace than its certificate is ignored', () => {
    const p = parsePeerMetadata(ISTIO_1_16_HEADER)!;
    const base = { ...unknownSource, source_principal: 'spiffe://cluster.local/ns/bar/sa/client', source_workload_namespace: 'bar' };
    assert.equal(withSourcePeer(base, p), base);
  });

  test('a source the view knows keeps its labels', () => {
    const p = parsePeerMetadata(ISTIO_1_16_HEADER)!;
    const base = { ...unknownSource, source_workload: 'known' };
    assert.equal(withSourcePeer(base, p), base);
  });

  test('destination labels from a peer (reporter=source), the service namespace kept', () => {
    const p = parsePeerMetadata(localPeerMetadata(PROXY, 'c2').value)!;
    const base = { reporter: 'source', destination_workload: 'unknown', destination_workload_namespace: 'shop', destination_app: 'unknown', destination_version: 'unknown', destination_canonical_service: 'unknown', destination_canonical_revision: 'latest', destination_cluster: 'unknown', destination_service: 'web.shop.svc.cluster.local' };
    const out = withDestinationPeer(base, p);
    assert.deepEqual(out, { ...base, destination_workload: 'web', destination_app: 'web', destination_version: 'v3', destination_canonical_service: 'web', destination_canonical_revision: 'v3', destination_cluster: 'c2' });
    assert.equal(withDestinationPeer(base, p), out, 'merged once per base and peer');
  });
});

describe('Istio metadata exchange: the gateway', () => {
  const info = { podName: 'istio-ingressgateway-5d9f-x7k2p', podIp: '10.0.0.9', namespace: 'istio-system', workload: 'istio-ingressgateway', labels: { app: 'istio-ingressgateway', istio: 'ingressgateway' }, clusterId: 'Kubernetes' };

  test('node ID router~IP~POD.NS~NS.svc.cluster.local and the same Struct as a sidecar’s', () => {
    const m = gatewayPeerMetadata(info);
    assert.equal(m.id, 'router~10.0.0.9~istio-ingressgateway-5d9f-x7k2p.istio-system~istio-system.svc.cluster.local');
    assert.deepEqual(m.request, [PEER_METADATA_ID, m.id, PEER_METADATA, m.value]);
    assert.deepEqual(JSON.parse(JSON.stringify({ ...decodeStruct(Buffer.from(m.value, 'base64')) })), {
      CLUSTER_ID: 'Kubernetes',
      LABELS: { app: 'istio-ingressgateway', 'service.istio.io/canonical-name': 'istio-ingressgateway', 'service.istio.io/canonical-revision': 'latest' },
      NAME: 'istio-ingressgateway-5d9f-x7k2p',
      NAMESPACE: 'istio-system',
      WORKLOAD_NAME: 'istio-ingressgateway',
    });
    const p = parsePeerMetadata(m.value)!;
    assert.equal(p.workload, 'istio-ingressgateway');
  });

  test('a sidecar and a gateway of the same pod facts keep separate encodings', () => {
    assert.ok(localPeerMetadata(PROXY, 'k', 'router').id.startsWith('router~'));
    assert.ok(localPeerMetadata(PROXY, 'k').id.startsWith('sidecar~'));
  });
});
