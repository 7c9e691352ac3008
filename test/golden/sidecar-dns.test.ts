/**
 * DNS proxying in the sidecar views (translate/sidecar/dns.ts):
 *   - auto-allocated VIPs are unique, in 240.240.0.0/16 with no .0 or .255 last octet, and the same
 *     whichever proxy asks and whatever order the entries come in;
 *   - the VIP a proxy's DNS table answers is the address its outbound side matches (routing);
 *   - IPv6 pods get the 2001:2::/48 address, dual-stack pods both;
 *   - the view cache keeps pods whose `proxy.istio.io/config` differ apart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar, type SidecarProxyMeta } from '../../src/translate/sidecar/index.js';
import { autoAllocatedAddresses, meshDnsCapture } from '../../src/translate/sidecar/dns.js';
import { SidecarViewCache } from '../../src/translate/sidecar/view-cache.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';

function resources(yaml: string): ResourceSet {
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  parseFile('in.yaml', yaml, objects, diagnostics);
  assert.deepEqual(diagnostics, []);
  return new ResourceSet(checkObjects(objects).accepted);
}

const MESH = `apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultConfig:
      proxyMetadata: {ISTIO_META_DNS_CAPTURE: "true", ISTIO_META_DNS_AUTO_ALLOCATE: "true"}
`;

function entry(ns: string, host: string, resolution = 'DNS'): string {
  return `---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ${host.replace(/\./g, '-')}, namespace: ${ns}}
spec:
  hosts: [${host}]
  resolution: ${resolution}
  ports: [{number: 80, name: http, protocol: HTTP}]
`;
}

const proxy = (namespace: string, podIps: string[]): SidecarProxyMeta => ({ namespace, serviceAccount: 'default', podName: '', podIps, trustDomain: 'cluster.local' });

test('auto-allocated VIPs: unique, in 240.240.0.0/16, never .0 or .255, independent of input order', () => {
  const hosts = Array.from({ length: 1500 }, (_, i) => `h${i}.example.com`);
  const yaml = hosts.map((h, i) => entry(i % 2 ? 'a' : 'b', h)).join('');
  const all = autoAllocatedAddresses(resources(yaml));
  assert.equal(all.size, hosts.length);
  const v4 = [...all.values()].map((a) => a.v4);
  const v6 = [...all.values()].map((a) => a.v6);
  assert.equal(new Set(v4).size, v4.length, 'IPv4 VIPs are unique');
  assert.equal(new Set(v6).size, v6.length, 'IPv6 VIPs are unique');
  for (const a of v4) {
    const m = /^240\.240\.(\d+)\.(\d+)$/.exec(a);
    assert.ok(m && Number(m[1]) <= 255 && Number(m[2]) >= 1 && Number(m[2]) <= 254, a);
  }
  for (const a of v6) assert.match(a, /^2001:2::f0f0:[0-9a-f]{1,4}$/);
  const docs = yaml.split('---\n').filter((d) => d.trim() !== '');
  fc.assert(
    fc.property(fc.shuffledSubarray(docs, { minLength: docs.length, maxLength: docs.length }), (shuffled) => {
      const again = autoAllocatedAddresses(resources(shuffled.map((d) => `---\n${d}`).join('')));
      assert.deepEqual([...again.entries()].sort(), [...all.entries()].sort());
    }),
    { numRuns: 3, seed: 53 },
  );
});

test('the VIP in every proxy\'s DNS table is the address its outbound side routes, whatever the proxy\'s namespace', () => {
  const rs = resources(MESH + entry('shared', 'api.example.com') + entry('shared', 'static.example.com', 'STATIC') + entry('shared', 'none.example.com', 'NONE'));
  const views = [proxy('default', ['10.0.0.1']), proxy('shop', ['10.0.0.2'])].map((p) => translateSidecar(rs, p, DEFAULT_TRANSLATE_OPTIONS).ir.sidecar!);
  for (const v of views) {
    const dns = Object.fromEntries(v.dns!.hosts.map((h) => [h.host, h.addresses]));
    const routed = Object.fromEntries(v.outbound.map((s) => [s.host, s.addresses]));
    assert.match(dns['api.example.com'][0], /^240\.240\./);
    assert.deepEqual(routed['api.example.com'], dns['api.example.com']);
    assert.deepEqual(routed['static.example.com'], dns['static.example.com']);
    // Resolution NONE: no VIP (the original destination must be kept), no endpoints: not in the table.
    assert.equal(dns['none.example.com'], undefined);
    assert.deepEqual(routed['none.example.com'], []);
  }
  assert.deepEqual(views[0].dns, views[1].dns);
});

test('IPv6 pods get the 2001:2::/48 VIP, dual-stack pods both; without auto-allocation no VIP at all', () => {
  const rs = resources(MESH + entry('default', 'api.example.com'));
  const addrs = (ips: string[]) => translateSidecar(rs, proxy('default', ips), DEFAULT_TRANSLATE_OPTIONS).ir.sidecar!.outbound[0].addresses;
  assert.match(addrs(['fd00::1']).join(','), /^2001:2::f0f0:[0-9a-f]+$/);
  assert.match(addrs(['10.0.0.1', 'fd00::1']).join(','), /^240\.240\.\d+\.\d+,2001:2::f0f0:[0-9a-f]+$/);
  const off = resources(MESH.replace('ISTIO_META_DNS_AUTO_ALLOCATE: "true"', 'ISTIO_META_DNS_AUTO_ALLOCATE: "false"') + entry('default', 'api.example.com'));
  const v = translateSidecar(off, proxy('default', ['10.0.0.1']), DEFAULT_TRANSLATE_OPTIONS).ir.sidecar!;
  assert.deepEqual(v.outbound[0].addresses, []);
  assert.deepEqual(v.dns, { capture: true, autoAllocate: false, hosts: [] });
});

test('the view cache keeps pods with different proxy.istio.io/config apart', () => {
  const pod = (name: string, ip: string, dns: boolean) => `---
apiVersion: v1
kind: Pod
metadata:
  name: ${name}
  namespace: default
  labels: {app: web}
${dns ? `  annotations:\n    proxy.istio.io/config: '{"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "true"}}'\n` : ''}spec: {serviceAccountName: default, containers: [{name: web, image: web}]}
status: {phase: Running, podIP: ${ip}}
`;
  const rs = resources(pod('web-1', '10.0.0.1', false) + pod('web-2', '10.0.0.2', true) + entry('default', 'api.example.com'));
  const cache = new SidecarViewCache();
  const one = cache.translate(rs, { ...proxy('default', ['10.0.0.1']), podName: 'web-1' }, DEFAULT_TRANSLATE_OPTIONS);
  const two = cache.translate(rs, { ...proxy('default', ['10.0.0.2']), podName: 'web-2' }, DEFAULT_TRANSLATE_OPTIONS);
  assert.equal(one.ir.sidecar!.dns, undefined);
  assert.deepEqual(two.ir.sidecar!.dns, { capture: true, autoAllocate: false, hosts: [] });
  assert.deepEqual(JSON.parse(two.json.toString()), two.ir);
});

test('meshDnsCapture reads MeshConfig alone (what the injection webhook gives pods without their own proxy.istio.io/config)', () => {
  assert.equal(meshDnsCapture(resources(MESH)), true);
  assert.equal(meshDnsCapture(resources(MESH.replace('ISTIO_META_DNS_CAPTURE: "true"', 'ISTIO_META_DNS_CAPTURE: "0"'))), false);
  assert.equal(meshDnsCapture(resources(entry('default', 'api.example.com'))), false);
});
