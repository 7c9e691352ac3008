import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { validateIR } from '../../src/ir/validate.js';
import { translate, DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { TranslateContext } from '../../src/translate/types.js';
import { translateSidecar, type SidecarProxyMeta } from '../../src/translate/sidecar/index.js';
import { fromPortName, serviceEntryPortProtocol, servicePortProtocol } from '../../src/translate/sidecar/protocol.js';
import { egressAdmits, exportedTo, parseEgressHost, sidecarScope } from '../../src/translate/sidecar/scope.js';
import { vhostDomains } from '../../src/translate/sidecar/outbound.js';

function resources(yaml: string, file = 'test.yaml'): ResourceSet {
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  parseFile(file, yaml, objects, diagnostics);
  assert.deepEqual(diagnostics.filter((d) => d.severity === 'error'), []);
  const checked = checkObjects(objects);
  assert.deepEqual(checked.diagnostics.filter((d) => d.severity === 'error'), []);
  return new ResourceSet(checked.accepted);
}

const SLEEP: SidecarProxyMeta = { namespace: 'default', serviceAccount: 'sleep', podName: 'sleep-1', podIps: ['10.0.0.10'], trustDomain: 'cluster.local' };

const BASE = `
apiVersion: v1
kind: Pod
metadata: {name: sleep-1, namespace: default, labels: {app: sleep}}
spec: {serviceAccountName: sleep, containers: [{name: c, image: x}]}
status: {phase: Running, podIP: 10.0.0.10}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: shop, labels: {app: web}}
spec: {serviceAccountName: web, containers: [{name: c, image: x, ports: [{name: http, containerPort: 8080}]}]}
status: {phase: Running, podIP: 10.0.2.1}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  clusterIP: 10.96.2.1
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: http-admin, port: 9000, targetPort: 9000}
`;

test('protocol selection: appProtocol first, then the port name prefix; UDP is not proxied', () => {
  assert.equal(servicePortProtocol({ name: 'tcp', appProtocol: 'http', protocol: 'TCP' }), 'HTTP');
  assert.equal(servicePortProtocol({ name: 'http-web', appProtocol: '' }), 'HTTP');
  assert.equal(servicePortProtocol({ name: 'grpc-api', appProtocol: '' }), 'GRPC');
  assert.equal(servicePortProtocol({ name: 'x', appProtocol: 'kubernetes.io/h2c' }), 'HTTP2');
  assert.equal(servicePortProtocol({ name: 'https', appProtocol: '' }), 'TLS');
  assert.equal(servicePortProtocol({ name: 'mongo-db', appProtocol: '' }), 'TCP');
  assert.equal(servicePortProtocol({ name: 'http', appProtocol: 'weird' }), 'HTTP', 'an appProtocol Istio does not know falls back to the name');
  assert.equal(servicePortProtocol({ name: 'dns', appProtocol: '', protocol: 'UDP' }), null);
  assert.equal(fromPortName(''), 'UNKNOWN');
  assert.equal(fromPortName('web'), 'UNKNOWN');
  assert.equal(fromPortName('grpc-web'), 'HTTP');
  assert.equal(fromPortName('httpx'), 'UNKNOWN', 'the prefix is the whole word before a dash');
  assert.equal(serviceEntryPortProtocol({ name: 'x', protocol: 'HTTPS' }), 'TLS');
  assert.equal(serviceEntryPortProtocol({ name: 'x', protocol: 'MYSQL' }), 'TCP');
  assert.equal(serviceEntryPortProtocol({ name: 'x', protocol: 'UDP' }), null);
  assert.equal(serviceEntryPortProtocol({ name: 'http-x', protocol: '' }), 'HTTP');
});

test('egress hosts and exportTo', () => {
  assert.deepEqual(parseEgressHost('./*', 'default'), { namespace: 'default', dnsName: '*' });
  assert.deepEqual(parseEgressHost('istio-system/*.Example.com', 'default'), { namespace: 'istio-system', dnsName: '*.example.com' });
  assert.deepEqual(parseEgressHost('~/*', 'default'), { namespace: '~', dnsName: '*' });
  assert.equal(parseEgressHost('a/b*c', 'default'), null);
  assert.equal(parseEgressHost('', 'default'), null);
  const scope = { sidecar: null, egress: [{ namespace: 'default', dnsName: '*', port: null }, { namespace: '*', dnsName: '*.example.com', port: 443 }, { namespace: '~', dnsName: '*', port: null }], outboundTrafficPolicy: null };
  assert.equal(egressAdmits(scope, 'default', 'a.default.svc.cluster.local', 80), true);
  assert.equal(egressAdmits(scope, 'other', 'a.other.svc.cluster.local', 80), false);
  assert.equal(egressAdmits(scope, 'ext', 'api.example.com', 443), true);
  assert.equal(egressAdmits(scope, 'ext', 'api.example.com', 80), false, 'a port-restricted egress entry admits only that port');
  assert.equal(egressAdmits(scope, 'ext', 'example.com', 443), false, 'a wildcard never covers its bare suffix');
  assert.equal(egressAdmits({ sidecar: null, egress: null, outboundTrafficPolicy: null }, 'x', 'y', 1), true);
  assert.equal(exportedTo([], 'a', 'b'), true);
  assert.equal(exportedTo(['.'], 'a', 'b'), false);
  assert.equal(exportedTo(['.'], 'a', 'a'), true);
  assert.equal(exportedTo(['~'], 'a', 'a'), false);
  assert.equal(exportedTo(['b', 'c'], 'a', 'c'), true);
  assert.equal(exportedTo(['*'], 'a', 'z'), true);
});

test('virtual-host domains: short names only within the namespace, VIPs with and without port', () => {
  const same = vhostDomains('web.shop.svc.cluster.local', 80, 'shop', true, ['10.96.2.1']);
  assert.deepEqual(same, ['web.shop.svc.cluster.local', 'web.shop.svc.cluster.local:80', 'web', 'web:80', 'web.shop', 'web.shop:80', 'web.shop.svc', 'web.shop.svc:80', '10.96.2.1', '10.96.2.1:80']);
  const other = vhostDomains('web.shop.svc.cluster.local', 80, 'default', true, []);
  assert.ok(!other.includes('web') && other.includes('web.shop') && other.includes('web.shop.svc:80'));
  assert.deepEqual(vhostDomains('api.example.com', 443, 'default', false, []), ['api.example.com', 'api.example.com:443']);
  assert.ok(vhostDomains('x.y.svc.cluster.local', 80, 'y', true, ['fd00::1']).includes('[fd00::1]:80'));
  assert.deepEqual(vhostDomains('*.example.com', 443, 'default', false, []), ['*.example.com']);
});

test('Sidecar resource precedence: workload selector, then namespace default, then root namespace; the oldest of a kind wins', () => {
  const rs = resources(`
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: root, namespace: istio-system}
spec: {egress: [{hosts: ["istio-system/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ns, namespace: default}
spec: {egress: [{hosts: ["./*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sel-old, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}
spec: {workloadSelector: {labels: {app: sleep}}, egress: [{hosts: ["*/*"]}]}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sel-new, namespace: default, creationTimestamp: "2026-03-01T00:00:00Z"}
spec: {workloadSelector: {labels: {app: sleep}}, egress: [{hosts: ["~/*"]}]}
`);
  const ctx = new TranslateContext(DEFAULT_TRANSLATE_OPTIONS);
  assert.equal(sidecarScope(ctx, rs, 'default', { app: 'sleep' }).sidecar?.metadata.name, 'sel-old');
  assert.ok(ctx.diagnostics.some((d) => d.reason === 'MG_DUPLICATE_OBJECT' && d.object?.name === 'sel-new'));
  assert.equal(sidecarScope(ctx, rs, 'default', { app: 'other' }).sidecar?.metadata.name, 'ns');
  assert.equal(sidecarScope(ctx, rs, 'elsewhere', {}).sidecar?.metadata.name, 'root');
  assert.equal(sidecarScope(ctx, rs, 'istio-system', {}).sidecar?.metadata.name, 'root');
});

test('translateSidecar: pure and order-independent; the version follows content, not file positions', () => {
  const a = translateSidecar(resources(BASE), SLEEP, DEFAULT_TRANSLATE_OPTIONS);
  const b = translateSidecar(resources(BASE), SLEEP, DEFAULT_TRANSLATE_OPTIONS);
  assert.equal(JSON.stringify(a), JSON.stringify(b));
  assert.deepEqual(validateIR(a.ir), []);
  // Moved down by comment lines: same version.
  const moved = translateSidecar(resources(`# a comment\n# another\n${BASE}`), SLEEP, DEFAULT_TRANSLATE_OPTIONS);
  assert.equal(moved.ir.version, a.ir.version);
  // Another proxy: another view and version.
  const web = translateSidecar(resources(BASE), { namespace: 'shop', serviceAccount: 'web', podName: '', podIps: ['10.0.2.1'], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
  assert.notEqual(web.ir.version, a.ir.version);
  assert.equal(web.ir.sidecar?.proxy.podName, 'web-1', 'found by IP');
  assert.deepEqual(web.ir.sidecar?.inbound.map((p) => [p.port, p.protocol, p.mtls]), [[8080, 'HTTP', 'PERMISSIVE'], [9000, 'HTTP', 'PERMISSIVE']]);
  // A content change: a new version.
  const changed = translateSidecar(resources(BASE.replace('10.96.2.1', '10.96.2.2')), SLEEP, DEFAULT_TRANSLATE_OPTIONS);
  assert.notEqual(changed.ir.version, a.ir.version);
  assert.deepEqual(a.ir.listeners, []);
  assert.deepEqual(a.ir.tcpListeners, []);
});

test('a mesh destination without a port on a multi-port Service uses the listener port (gateways still require it)', () => {
  const vs = `
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [web]
  http:
  - route:
    - destination: {host: web}
`;
  const r = translateSidecar(resources(BASE + vs), SLEEP, DEFAULT_TRANSLATE_OPTIONS);
  const tables = r.ir.sidecar?.outboundHttp ?? [];
  const dest = (port: number): string | undefined => {
    const route = tables.find((t) => t.port === port)?.filterChains[0].virtualHosts[0].routes[0];
    return route?.action.kind === 'forward' ? route.action.destinations[0].cluster : undefined;
  };
  assert.equal(dest(80), 'outbound|80||web.shop.svc.cluster.local');
  assert.equal(dest(9000), 'outbound|9000||web.shop.svc.cluster.local');
  assert.deepEqual(r.diagnostics.filter((d) => d.severity !== 'info'), []);
  // The short name `web` is not a domain for a proxy in another namespace.
  const domains = tables.find((t) => t.port === 80)?.filterChains[0].virtualHosts[0].domains.map((d) => (d.kind === 'exact' ? d.host : d.kind));
  assert.ok(domains?.includes('web.shop') && !domains.includes('web'));
});

test('validateIR checks a sidecar view: unknown clusters and tables are reported', () => {
  const r = translateSidecar(resources(BASE), SLEEP, DEFAULT_TRANSLATE_OPTIONS);
  const view = r.ir.sidecar!;
  const broken = { ...r.ir, clusters: r.ir.clusters.filter((c) => !c.name.startsWith('outbound|80|')), sidecar: { ...view, outbound: view.outbound.map((s) => ({ ...s, tcpRoutes: 'nope' })) } };
  const problems = validateIR(broken);
  assert.ok(problems.some((p) => p.includes('unknown cluster outbound|80||web.shop.svc.cluster.local')), problems.join('\n'));
  assert.ok(problems.some((p) => p.includes('unknown TCP relay nope')), problems.join('\n'));
});

test('the gateway translation ignores Sidecar resources quietly', () => {
  const rs = resources(`${BASE}---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec: {egress: [{hosts: ["./*"]}]}
`);
  const r = translate(rs, DEFAULT_TRANSLATE_OPTIONS);
  assert.equal(r.ir.sidecar, undefined);
  assert.deepEqual(r.diagnostics.filter((d) => d.object?.kind === 'Sidecar'), []);
});

test('MeshConfig defaultServiceExportTo / defaultVirtualServiceExportTo apply to objects that set no exportTo', () => {
  const mesh = `---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    defaultServiceExportTo: ["."]
    defaultVirtualServiceExportTo: ["."]
---
apiVersion: v1
kind: Service
metadata: {name: shared, namespace: shop, annotations: {networking.istio.io/exportTo: "*"}}
spec: {clusterIP: 10.96.2.9, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shared, namespace: shop}
spec:
  hosts: [shared]
  http:
  - route: [{destination: {host: shared}}]
    timeout: 4s
`;
  const r = translateSidecar(resources(BASE + mesh), SLEEP, DEFAULT_TRANSLATE_OPTIONS);
  assert.deepEqual(r.ir.sidecar?.outbound.map((s) => s.host), ['shared.shop.svc.cluster.local'], 'web (no exportTo, default ".") is hidden from namespace default; shared (exportTo *) is seen');
  const route = r.ir.sidecar?.outboundHttp[0].filterChains[0].virtualHosts[0].routes[0];
  assert.equal(route?.name, 'default', 'the VirtualService (no exportTo, default ".") is not seen from namespace default');
  const web = translateSidecar(resources(BASE + mesh), { namespace: 'shop', serviceAccount: 'web', podName: 'web-1', podIps: ['10.0.2.1'], trustDomain: 'cluster.local' }, DEFAULT_TRANSLATE_OPTIONS);
  assert.deepEqual(web.ir.sidecar?.outbound.map((s) => `${s.host}:${s.port}`), ['shared.shop.svc.cluster.local:80', 'web.shop.svc.cluster.local:80', 'web.shop.svc.cluster.local:9000']);
  const shared = web.ir.sidecar?.outboundHttp.find((t) => t.port === 80)?.filterChains[0].virtualHosts.find((v) => v.name.startsWith('shared.'))?.routes[0];
  assert.equal(shared?.action.kind === 'forward' ? shared.action.timeoutMs : null, 4000);
});

test('MeshConfig defaultInboundHttpRetryPolicy replaces the inbound retry policy; {} disables inbound retries', () => {
  const WEB: SidecarProxyMeta = { namespace: 'shop', serviceAccount: 'web', podName: 'web-1', podIps: ['10.0.2.1'], trustDomain: 'cluster.local' };
  const inboundRetries = (extra: string): unknown => {
    const r = translateSidecar(resources(BASE + extra), WEB, DEFAULT_TRANSLATE_OPTIONS);
    const route = r.ir.sidecar?.inboundHttp[0].filterChains[0].virtualHosts[0].routes[0];
    return route?.action.kind === 'forward' ? route.action.retries : 'none';
  };
  assert.deepEqual(inboundRetries(''), { numRetries: 2, perTryTimeoutMs: null, retryOn: ['reset-before-request'], retriableStatusCodes: [], backoffBaseMs: 25, ignorePreviousHosts: false });
  const cm = (mesh: string): string => `---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata:\n  mesh: |\n    ${mesh}\n`;
  assert.equal(inboundRetries(cm('defaultInboundHttpRetryPolicy: {}')), null);
  const custom = inboundRetries(cm('defaultInboundHttpRetryPolicy: {attempts: 4, retryOn: "reset-before-request,503"}')) as { numRetries: number; retryOn: string[]; retriableStatusCodes: number[] };
  assert.equal(custom.numRetries, 4);
  assert.deepEqual(custom.retryOn, ['reset-before-request', 'retriable-status-codes']);
  assert.deepEqual(custom.retriableStatusCodes, [503]);
});
