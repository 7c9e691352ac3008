import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Diagnostic } from '../../lib/diagnostic.js';
import type { Cluster, FilterChain, Listener, Route, VirtualHost } from '../../ir/types.js';
import type { KubeObject } from '../../resources/types.js';
import { ResourceSet } from '../../resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS, translate, type TranslateOptions, type TranslateResult } from '../index.js';
import { intersectHosts, isIpAddress, parseServerHost } from './hosts.js';
import { resolveServiceHost } from './objects.js';

// ---- fixtures ---------------------------------------------------------------------------------

/** Test-only self-signed P-256 certificate for example.com and *.example.com (valid until 2126). */
const CERT = `-----BEGIN CERTIFICATE-----
MIIBqjCCAVCgAwIBAgIUKgbvcFZyOvCWtOTmvp/jQkRUrFkwCgYIKoZIzj0EAwIw
FjEUMBIGA1UEAwwLZXhhbXBsZS5jb20wIBcNMjYxMTIxMjM0MDA4WhgPMjEyNjEw
MjgyMzQwMDhaMBYxFDASBgNVBAMMC2V4YW1wbGUuY29tMFkwEwYHKoZIzj0CAQYI
KoZIzj0DAQcDQgAELrG1LuFQoB9upsfGq9Pz8jubSRRkuZegRfXnIK0Dxa5po5iy
lVZQMW5ilxVxXcy7BFDufrZuJcjEx4y7Emh/aaN6MHgwHQYDVR0OBBYEFLvNaqlU
20E7p3E6DtP0Kic7F6i9MB8GA1UdIwQYMBaAFLvNaqlU20E7p3E6DtP0Kic7F6i9
MA8GA1UdEwEB/wQFMAMBAf8wJQYDVR0RBB4wHIILZXhhbXBsZS5jb22CDSouZXhh
bXBsZS5jb20wCgYIKoZIzj0EAwIDSAAwRQIhAIanM3Izspfc5vxTY3lSuC9XTOYi
ctlamUO+oaYVWMTUAiAfCArUW+pn1cKpxeXi8PQohuSNStBH9avw7h0Zh8QKKw==
-----END CERTIFICATE-----
`;
const KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgoTYATWyJS26p99n9
dzDMjT6t7hJVFokMYAfeKHta6y2hRANCAAQusbUu4VCgH26mx8ar0/PyO5tJFGS5
l6BF9ecgrQPFrmmjmLKVVlAxbmKXFXFdzLsEUO5+tm4lyMTHjLsSaH9p
-----END PRIVATE KEY-----
`;

let order = 0;

/** A KubeObject from a plain object, as the file loader would make it (no lines unless given). */
function k(body: Record<string, unknown>, fieldLines: Record<string, number> = {}): KubeObject {
  const meta = (body.metadata ?? {}) as Record<string, unknown>;
  return {
    apiVersion: String(body.apiVersion),
    kind: String(body.kind),
    metadata: {
      name: String(meta.name),
      namespace: typeof meta.namespace === 'string' ? meta.namespace : 'default',
      labels: (meta.labels as Record<string, string>) ?? {},
      annotations: {},
      creationTimestamp: typeof meta.creationTimestamp === 'string' ? meta.creationTimestamp : null,
    },
    body,
    origin: { file: 'test.yaml', line: 1, order: `test.yaml#${String(order++).padStart(6, '0')}`, fieldLines },
  };
}

const NET = 'networking.istio.io/v1';

function gateway(name: string, servers: unknown[], opts: { namespace?: string; selector?: Record<string, string>; created?: string } = {}): KubeObject {
  return k({
    apiVersion: NET,
    kind: 'Gateway',
    metadata: { name, namespace: opts.namespace ?? 'istio-system', creationTimestamp: opts.created },
    spec: { selector: opts.selector ?? { istio: 'ingressgateway' }, servers },
  });
}

const http80 = (hosts: string[] = ['*'], extra: Record<string, unknown> = {}) => ({ port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts, ...extra });

function vs(name: string, spec: Record<string, unknown>, opts: { namespace?: string; created?: string; lines?: Record<string, number> } = {}): KubeObject {
  return k({ apiVersion: NET, kind: 'VirtualService', metadata: { name, namespace: opts.namespace ?? 'default', creationTimestamp: opts.created }, spec }, opts.lines);
}

function service(name: string, ports: { port: number; name?: string; targetPort?: number }[], namespace = 'default', selector: Record<string, string> = { app: name }): KubeObject {
  return k({ apiVersion: 'v1', kind: 'Service', metadata: { name, namespace }, spec: { selector, ports } });
}

function pod(name: string, ip: string, labels: Record<string, string>, namespace = 'default'): KubeObject {
  return k({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace, labels }, spec: { containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }] }] }, status: { phase: 'Running', podIP: ip } });
}

function run(objects: KubeObject[], options: Partial<TranslateOptions> = {}): TranslateResult {
  return translate(new ResourceSet(objects), { ...DEFAULT_TRANSLATE_OPTIONS, ...options });
}

function listener(r: TranslateResult, port: number): Listener {
  const l = r.ir.listeners.find((x) => x.port === port);
  assert.ok(l, `expected a listener on port ${port}, got ports ${r.ir.listeners.map((x) => x.port).join(', ') || 'none'}`);
  return l;
}

function vhost(chain: FilterChain, domain: string): VirtualHost {
  const v = chain.virtualHosts.find((x) => x.name.startsWith(`${domain}:`));
  assert.ok(v, `expected virtual host ${domain}, got ${chain.virtualHosts.map((x) => x.name).join(', ') || 'none'}`);
  return v;
}

function routeNames(v: VirtualHost): string[] {
  return v.routes.map((r) => r.name);
}

function cluster(r: TranslateResult, name: string): Cluster {
  const c = r.ir.clusters.find((x) => x.name === name);
  assert.ok(c, `expected cluster ${name}, got ${r.ir.clusters.map((x) => x.name).join(', ') || 'none'}`);
  return c;
}

function diag(r: TranslateResult, reason: string, field?: string): Diagnostic {
  const d = r.diagnostics.find((x) => x.reason === reason && (field === undefined || x.field === field));
  assert.ok(d, `expected diagnostic ${reason}${field ? ` at ${field}` : ''}, got:\n${r.diagnostics.map((x) => `${x.severity} ${x.reason} ${x.field} ${x.message}`).join('\n')}`);
  return d;
}

function noErrors(r: TranslateResult): void {
  const errs = r.diagnostics.filter((d) => d.severity === 'error' || d.reason === 'MG_INVALID_IR');
  assert.deepEqual(errs, [], 'expected no errors');
}

const to = (host: string, extra: Record<string, unknown> = {}) => ({ route: [{ destination: { host, ...extra } }] });

/** The standard backend: Service web (port 80 -> 8080) with two Running pods. */
const web = () => [service('web', [{ port: 80, name: 'http', targetPort: 8080 }]), pod('web-1', '10.0.0.1', { app: 'web', version: 'v1' }), pod('web-2', '10.0.0.2', { app: 'web', version: 'v2' })];

// ---- binding ----------------------------------------------------------------------------------

test('VirtualService bound to a selected Gateway: listener, chain, vhost, route, cluster', () => {
  const r = run([gateway('gw', [http80()]), vs('shop', { hosts: ['Shop.Example.com'], gateways: ['istio-system/gw'], http: [{ name: 'main', ...to('web') }] }), ...web()]);
  noErrors(r);
  const l = listener(r, 8080);
  assert.equal(l.externalPort, 80);
  assert.equal(l.protocol, 'HTTP');
  assert.equal(l.address, '0.0.0.0');
  assert.equal(l.filterChains.length, 1);
  assert.equal(l.filterChains[0].name, 'http.80');
  const v = vhost(l.filterChains[0], 'shop.example.com');
  assert.deepEqual(v.domains, [{ kind: 'exact', host: 'shop.example.com' }]);
  assert.deepEqual(routeNames(v), ['virtualservice/default/shop/http/0:main']);
  const route = v.routes[0];
  assert.deepEqual(route.matches, [{ path: null, method: null, scheme: null, authority: null, headers: [], queryParams: [], port: null }]);
  assert.equal(route.action.kind, 'forward');
  if (route.action.kind !== 'forward') return;
  assert.deepEqual(route.action.destinations.map((d) => [d.cluster, d.weight]), [['outbound|80||web.default.svc.cluster.local', 100]]);
  assert.equal(route.action.timeoutMs, null);
  const c = cluster(r, 'outbound|80||web.default.svc.cluster.local');
  assert.equal(c.discovery, 'eds');
  assert.equal(c.lbPolicy, 'ROUND_ROBIN');
  assert.equal(c.connectTimeoutMs, 10_000);
  assert.deepEqual(c.endpoints.map((e) => `${e.address}:${e.port}`), ['10.0.0.1:8080', '10.0.0.2:8080']);
});

test('unqualified gateway names resolve in the VirtualService namespace', () => {
  const r = run([gateway('gw', [http80()], { namespace: 'default' }), vs('shop', { hosts: ['a.example.com'], gateways: ['gw'], http: [to('web')] }), ...web()]);
  noErrors(r);
  vhost(listener(r, 8080).filterChains[0], 'a.example.com');
});

test('Gateway whose selector does not match is not served: warning when it selects no Pod, info when it selects another gateway; VS naming it gets an info', () => {
  const r = run([gateway('other', [http80()], { selector: { istio: 'egressgateway' } }), vs('shop', { hosts: ['a.example.com'], gateways: ['istio-system/other'], http: [to('web')] }), ...web()]);
  assert.equal(r.ir.listeners.length, 0);
  assert.equal(diag(r, 'MG_GATEWAY_NOT_SELECTED', 'spec.selector').severity, 'warning');
  const egress = run([gateway('other', [http80()], { selector: { istio: 'egressgateway' } }), pod('egress-1', '10.0.0.9', { istio: 'egressgateway' }, 'istio-system')]);
  assert.equal(diag(egress, 'MG_GATEWAY_NOT_SELECTED', 'spec.selector').severity, 'info');
  assert.equal(diag(r, 'MG_GATEWAY_NOT_FOUND', 'spec.gateways[0]').severity, 'info');
});

test("default gateway labels are Istio's default ingress pods' labels", () => {
  assert.deepEqual(DEFAULT_TRANSLATE_OPTIONS.gatewayLabels, { app: 'istio-ingressgateway', istio: 'ingressgateway' });
  const r = run([gateway('gw', [http80()], { selector: { app: 'istio-ingressgateway' } }), vs('shop', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }), ...web()]);
  vhost(listener(r, 8080).filterChains[0], 'a.example.com');
});

test('empty selector selects every gateway', () => {
  const r = run([gateway('gw', [http80()], { selector: {} }), vs('shop', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }), ...web()]);
  noErrors(r);
  vhost(listener(r, 8080).filterChains[0], 'a.example.com');
});

test('missing Gateway: warning; mesh-only VirtualService: info; no routes', () => {
  const r = run([
    gateway('gw', [http80()]),
    vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/nope'], http: [to('web')] }),
    vs('b', { hosts: ['b.example.com'], http: [to('web')] }),
    vs('c', { hosts: ['c.example.com'], gateways: ['mesh'], http: [to('web')] }),
    ...web(),
  ]);
  assert.equal(diag(r, 'MG_GATEWAY_NOT_FOUND', 'spec.gateways[0]').severity, 'warning');
  assert.equal(r.diagnostics.filter((d) => d.reason === 'MG_NOT_BOUND').length, 2);
  // The server still listens: no VS bound means every request is 404 NR.
  assert.deepEqual(listener(r, 8080).filterChains[0].virtualHosts, []);
});

test('Gateway API Gateway of the same kind name is not an Istio Gateway', () => {
  const gapi = k({ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'gw', namespace: 'istio-system' }, spec: { gatewayClassName: 'x', listeners: [] } });
  const r = run([gapi, vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }), ...web()]);
  assert.equal(r.ir.listeners.length, 0);
  assert.equal(diag(r, 'MG_GATEWAY_NOT_FOUND').severity, 'warning');
});

test('exportTo "." hides a VirtualService from gateways in other namespaces', () => {
  const r = run([gateway('gw', [http80()]), vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], exportTo: ['.'], http: [to('web')] }), vs('b', { hosts: ['b.example.com'], gateways: ['istio-system/gw'], exportTo: ['*'], http: [to('web')] }), ...web()]);
  const chain = listener(r, 8080).filterChains[0];
  assert.deepEqual(chain.virtualHosts.map((v) => v.name), ['b.example.com:8080']);
  diag(r, 'MG_NOT_BOUND', 'spec.exportTo');
});

// ---- hosts ------------------------------------------------------------------------------------

test('host intersection: the more specific name wins, wildcard both ways', () => {
  assert.equal(intersectHosts('*', 'a.example.com'), 'a.example.com');
  assert.equal(intersectHosts('*.example.com', 'a.example.com'), 'a.example.com');
  assert.equal(intersectHosts('*.example.com', 'a.b.example.com'), 'a.b.example.com');
  assert.equal(intersectHosts('a.example.com', '*.example.com'), 'a.example.com');
  assert.equal(intersectHosts('*.example.com', '*.a.example.com'), '*.a.example.com');
  assert.equal(intersectHosts('*.a.example.com', '*.example.com'), '*.a.example.com');
  assert.equal(intersectHosts('a.example.com', '*'), 'a.example.com');
  assert.equal(intersectHosts('*.example.com', 'example.com'), null);
  assert.equal(intersectHosts('a.example.com', 'b.example.com'), null);
  assert.equal(intersectHosts('*.example.com', '*.example.org'), null);
  assert.deepEqual(parseServerHost('./Foo.com', 'gw-ns'), { namespace: 'gw-ns', dnsName: 'foo.com' });
  assert.deepEqual(parseServerHost('prod/*', 'gw-ns'), { namespace: 'prod', dnsName: '*' });
  assert.deepEqual(parseServerHost('*.x.io', 'gw-ns'), { namespace: '*', dnsName: '*.x.io' });
});

test('VS hosts meet server hosts; unknown hosts warn with the field', () => {
  const r = run([
    gateway('gw', [http80(['*.example.com', 'exact.test'])]),
    vs('a', { hosts: ['a.example.com', '*.example.com', 'other.org', '*.test'], gateways: ['istio-system/gw'], http: [to('web')] }),
    ...web(),
  ]);
  const chain = listener(r, 8080).filterChains[0];
  assert.deepEqual(chain.virtualHosts.map((v) => v.name), ['*.example.com:8080', 'a.example.com:8080', 'exact.test:8080']);
  assert.deepEqual(vhost(chain, '*.example.com').domains, [{ kind: 'suffix', suffix: '.example.com', singleLabel: false }]);
  const d = diag(r, 'MG_HOST_NOT_IN_GATEWAY', 'spec.hosts[2]');
  assert.equal(d.severity, 'warning');
  assert.match(d.message, /other\.org/);
  assert.equal(r.diagnostics.filter((x) => x.reason === 'MG_HOST_NOT_IN_GATEWAY').length, 1);
});

test('server host namespace part restricts which VirtualServices bind', () => {
  const r = run([
    gateway('gw', [http80(['prod/*', './gw.example.com'])]),
    vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }, { namespace: 'default' }),
    vs('b', { hosts: ['b.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }, { namespace: 'prod' }),
    vs('c', { hosts: ['gw.example.com'], gateways: ['istio-system/gw'], http: [to('web.default')] }, { namespace: 'istio-system' }),
    ...web(),
    service('web', [{ port: 80 }], 'prod'),
  ]);
  const chain = listener(r, 8080).filterChains[0];
  assert.deepEqual(chain.virtualHosts.map((v) => v.name), ['b.example.com:8080', 'gw.example.com:8080']);
  diag(r, 'MG_HOST_NOT_IN_GATEWAY', 'spec.hosts[0]');
});

test('service host names: short, name.ns, name.ns.svc, FQDN', () => {
  assert.deepEqual(resolveServiceHost('web', 'shop'), { namespace: 'shop', name: 'web', fqdn: 'web.shop.svc.cluster.local' });
  assert.deepEqual(resolveServiceHost('web.prod', 'shop')?.fqdn, 'web.prod.svc.cluster.local');
  assert.deepEqual(resolveServiceHost('web.prod.svc', 'shop')?.fqdn, 'web.prod.svc.cluster.local');
  assert.deepEqual(resolveServiceHost('web.prod.svc.cluster.local', 'shop')?.fqdn, 'web.prod.svc.cluster.local');
  assert.equal(resolveServiceHost('api.example.com', 'shop'), null);
  assert.equal(resolveServiceHost('*.prod.svc.cluster.local', 'shop'), null);
});

test('bind addresses', () => {
  for (const ok of ['10.1.2.3', '0.0.0.0', '::', '::1', 'fe80::1', '2001:db8::8a2e:370:7334', '::ffff:10.0.0.1']) assert.ok(isIpAddress(ok), ok);
  for (const bad of ['10.1.2', '256.0.0.1', 'unix:///tmp/s', 'localhost', '1::2::3', '']) assert.ok(!isIpAddress(bad), bad);
});

// ---- merging ----------------------------------------------------------------------------------

test('several VirtualServices for one host: creation order, catch-all last, unreachable routes reported', () => {
  const r = run([
    gateway('gw', [http80()]),
    // Created second, listed first: creation order must win over input order.
    vs('b', { hosts: ['shop.example.com'], gateways: ['istio-system/gw'], http: [{ match: [{ uri: { prefix: '/b' } }], ...to('web') }, { match: [{ uri: { prefix: '/' } }], ...to('web') }] }, { created: '2024-01-02T00:00:00Z' }),
    vs('a', {
      hosts: ['shop.example.com'],
      gateways: ['istio-system/gw'],
      http: [{ match: [{ uri: { prefix: '/a' } }], ...to('web') }, to('web'), { match: [{ uri: { prefix: '/late' } }], ...to('web') }],
    }, { created: '2024-01-01T00:00:00Z', lines: { 'spec.http[2]': 42 } }),
    ...web(),
  ]);
  const v = vhost(listener(r, 8080).filterChains[0], 'shop.example.com');
  assert.deepEqual(routeNames(v), ['virtualservice/default/a/http/0', 'virtualservice/default/b/http/0', 'virtualservice/default/a/http/1']);
  const within = diag(r, 'MG_UNREACHABLE_ROUTE', 'spec.http[2]');
  assert.equal(within.object?.name, 'a');
  assert.equal(within.line, 42);
  const across = r.diagnostics.find((d) => d.reason === 'MG_UNREACHABLE_ROUTE' && d.object?.name === 'b');
  assert.ok(across, 'the second catch-all (from b) is unreachable');
  assert.equal(across.field, 'spec.http[1]');
  assert.equal(diag(r, 'MG_DUPLICATE_HOST').severity, 'info');
});

test('the same VS on two gateways sharing port 80 is merged once, match gateways naming either apply', () => {
  const r = run([
    gateway('g1', [http80()], { created: '2024-01-01T00:00:00Z' }),
    gateway('g2', [http80()], { created: '2024-01-02T00:00:00Z' }),
    vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/g1', 'istio-system/g2'], http: [{ match: [{ gateways: ['istio-system/g2'], uri: { prefix: '/g2' } }], ...to('web') }, to('web')] }),
    ...web(),
  ]);
  noErrors(r);
  assert.deepEqual(routeNames(vhost(listener(r, 8080).filterChains[0], 'a.example.com')), ['virtualservice/default/a/http/0', 'virtualservice/default/a/http/1']);
});

test('match-level gateways and port select blocks per gateway and port', () => {
  const r = run([
    gateway('gw', [http80(), { port: { number: 8000, name: 'alt', protocol: 'HTTP' }, hosts: ['*'] }]),
    gateway('other', [{ port: { number: 9000, name: 'o', protocol: 'HTTP' }, hosts: ['*'] }]),
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw', 'istio-system/other'],
      http: [
        { match: [{ port: 8000, uri: { prefix: '/p' } }], ...to('web') },
        { match: [{ gateways: ['istio-system/other'], uri: { prefix: '/o' } }], ...to('web') },
        { match: [{ uri: { exact: '/all' } }], ...to('web') },
      ],
    }),
    ...web(),
  ]);
  noErrors(r);
  assert.deepEqual(routeNames(vhost(listener(r, 8080).filterChains[0], 'a.example.com')), ['virtualservice/default/a/http/2']);
  const p8000 = vhost(listener(r, 8000).filterChains[0], 'a.example.com');
  assert.deepEqual(routeNames(p8000), ['virtualservice/default/a/http/0', 'virtualservice/default/a/http/2']);
  assert.equal(p8000.routes[0].matches[0].port, 8000);
  assert.deepEqual(routeNames(vhost(listener(r, 9000).filterChains[0], 'a.example.com')), ['virtualservice/default/a/http/1', 'virtualservice/default/a/http/2']);
});

// ---- matches ----------------------------------------------------------------------------------

test('match fields: uri kinds, ignoreUriCase, method, headers, withoutHeaders, queryParams', () => {
  const r = run([
    gateway('gw', [http80()]),
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw'],
      http: [
        {
          match: [
            { uri: { exact: '/E' }, ignoreUriCase: true, method: { exact: 'GET' }, scheme: { exact: 'https' }, authority: { prefix: 'a.' } },
            {
              uri: { regex: '(?i)/v[0-9]+/.*' },
              headers: { 'X-User': { exact: 'bob' }, 'x-any': {}, 'x-re': { regex: 'a|b' }, ':path': { exact: '/x' } },
              withoutHeaders: { 'x-debug': { prefix: '1' } },
              queryParams: { v: { exact: '' }, p: {} },
            },
          ],
          ...to('web'),
        },
      ],
    }),
    ...web(),
  ]);
  noErrors(r);
  const [m0, m1] = vhost(listener(r, 8080).filterChains[0], 'a.example.com').routes[0].matches;
  assert.deepEqual(m0.path, { kind: 'exact', value: '/E', ignoreCase: true });
  assert.deepEqual(m0.method, { kind: 'exact', value: 'GET', ignoreCase: false });
  assert.deepEqual(m0.scheme, { kind: 'exact', value: 'https', ignoreCase: false });
  assert.deepEqual(m0.authority, { kind: 'prefix', value: 'a.', ignoreCase: false });
  assert.deepEqual(m1.path, { kind: 'regex', regex: { original: '(?i)/v[0-9]+/.*', source: '^(?:/v[0-9]+/.*)$', flags: 'iu' } });
  assert.deepEqual(m1.headers, [
    { name: 'x-user', match: { kind: 'exact', value: 'bob', ignoreCase: false }, invert: false },
    { name: 'x-any', match: null, invert: false },
    { name: 'x-re', match: { kind: 'regex', regex: { original: 'a|b', source: '^(?:a|b)$', flags: 'u' } }, invert: false },
    { name: 'x-debug', match: { kind: 'prefix', value: '1', ignoreCase: false }, invert: true },
  ]);
  assert.deepEqual(m1.queryParams, [
    { name: 'v', match: { kind: 'exact', value: '', ignoreCase: false } },
    { name: 'p', match: null },
  ]);
  assert.equal(diag(r, 'MG_UNSUPPORTED', 'spec.http[0].match[1].headers[":path"]').severity, 'info');
});

test('invalid regex drops only that route, with the field path and line', () => {
  const r = run([
    gateway('gw', [http80()]),
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw'],
      http: [{ match: [{ uri: { regex: '/(a)\\1' } }], ...to('web') }, { match: [{ headers: { x: { regex: '(?=x)' } } }], ...to('web') }, to('web')],
    }, { lines: { 'spec.http[0].match[0].uri.regex': 12 } }),
    ...web(),
  ]);
  const d = diag(r, 'MG_INVALID_REGEX', 'spec.http[0].match[0].uri.regex');
  assert.equal(d.severity, 'error');
  assert.equal(d.line, 12);
  assert.match(d.message, /backreference/);
  diag(r, 'MG_INVALID_REGEX', 'spec.http[1].match[0].headers["x"].regex');
  assert.deepEqual(routeNames(vhost(listener(r, 8080).filterChains[0], 'a.example.com')), ['virtualservice/default/a/http/2']);
});

test('sourceLabels blocks apply only when they select this gateway; JWT claim blocks need a RequestAuthentication', () => {
  const r = run([
    gateway('gw', [http80()]),
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw'],
      http: [
        { match: [{ sourceLabels: { app: 'other' } }], ...to('web') },
        { match: [{ sourceLabels: { istio: 'ingressgateway' }, uri: { prefix: '/s' } }], ...to('web') },
        { match: [{ headers: { '@request.auth.claims.group': { exact: 'admin' } } }], ...to('web') },
      ],
    }),
    ...web(),
  ]);
  assert.deepEqual(routeNames(vhost(listener(r, 8080).filterChains[0], 'a.example.com')), ['virtualservice/default/a/http/1', 'virtualservice/default/a/http/2']);
  // No RequestAuthentication at the gateway: no request carries verified claims.
  assert.match(diag(r, 'MG_UNSUPPORTED', 'spec.http[2].match[0].headers["@request.auth.claims.group"]').message, /no RequestAuthentication/);
});

test('JWT claim matches (Istio "JWT claim based routing") become claim conditions, names keep their case, nested with "."', () => {
  const ra = k({ apiVersion: 'security.istio.io/v1', kind: 'RequestAuthentication', metadata: { name: 'jwt', namespace: 'istio-system' }, spec: { selector: { matchLabels: { istio: 'ingressgateway' } }, jwtRules: [{ issuer: 'testing@secure.istio.io', jwksUri: 'https://raw.githubusercontent.com/istio/istio/release-1.24/security/tools/jwt/samples/jwks.json' }] } });
  const r = run([
    gateway('gw', [http80()]),
    ra,
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw'],
      http: [
        { match: [{ uri: { prefix: '/headers' }, headers: { '@request.auth.claims.groups': { exact: 'group1' } } }], ...to('web') },
        { match: [{ headers: { '@request.auth.claims.nested.Key': { prefix: 'v' } } }], ...to('web') },
        { match: [{ withoutHeaders: { '@request.auth.claims.role': {} } }], ...to('web') },
        { match: [{ headers: { '@request.auth.claims.': { exact: 'x' } } }], ...to('web') },
      ],
    }),
    ...web(),
  ]);
  const v = vhost(listener(r, 8080).filterChains[0], 'a.example.com');
  assert.deepEqual(v.routes[0].matches[0].headers, [{ name: '@request.auth.claims.groups', match: { kind: 'exact', value: 'group1', ignoreCase: false }, invert: false }]);
  assert.deepEqual(v.routes[1].matches[0].headers.map((h) => h.name), ['@request.auth.claims.nested.Key']);
  assert.deepEqual(v.routes[2].matches[0].headers.map((h) => [h.name, h.invert]), [['@request.auth.claims.role', true]]);
  assert.equal(v.routes.length, 3, 'a claim path that names no claim never matches');
  assert.equal(r.diagnostics.filter((d) => d.reason === 'MG_UNSUPPORTED' && d.field?.includes('@request.auth')).length, 0);
  diag(r, 'MG_INVALID_FIELD', 'spec.http[3].match[0].headers["@request.auth.claims."]');
});

// ---- destinations -----------------------------------------------------------------------------

function withSubsets(): KubeObject[] {
  return [
    ...web(),
    k({
      apiVersion: NET,
      kind: 'DestinationRule',
      metadata: { name: 'web', namespace: 'default', creationTimestamp: '2024-01-01T00:00:00Z' },
      spec: {
        host: 'web',
        trafficPolicy: { loadBalancer: { simple: 'LEAST_CONN' }, connectionPool: { tcp: { connectTimeout: '2s' } } },
        subsets: [
          { name: 'v1', labels: { version: 'v1' } },
          { name: 'v2', labels: { version: 'v2' }, trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } },
        ],
      },
    }),
    // A later DR for the same host: its trafficPolicy loses, its new subset is merged, its v1 loses.
    k({
      apiVersion: NET,
      kind: 'DestinationRule',
      metadata: { name: 'web-more', namespace: 'default', creationTimestamp: '2024-01-02T00:00:00Z' },
      spec: { host: 'web.default.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'RANDOM' } }, subsets: [{ name: 'v1', labels: { version: 'nope' } }, { name: 'all', labels: { app: 'web' } }] },
    }),
  ];
}

test('subsets from merged DestinationRules, weights, traffic policy', () => {
  const r = run([
    gateway('gw', [http80()]),
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw'],
      http: [{ route: [{ destination: { host: 'web', subset: 'v1' }, weight: 90 }, { destination: { host: 'web', subset: 'v2' }, weight: 10 }, { destination: { host: 'web', subset: 'all' }, weight: 0 }] }],
    }),
    ...withSubsets(),
  ]);
  noErrors(r);
  const action = vhost(listener(r, 8080).filterChains[0], 'a.example.com').routes[0].action;
  assert.equal(action.kind, 'forward');
  if (action.kind !== 'forward') return;
  assert.deepEqual(action.destinations.map((d) => [d.cluster, d.weight]), [
    ['outbound|80|v1|web.default.svc.cluster.local', 90],
    ['outbound|80|v2|web.default.svc.cluster.local', 10],
  ]);
  const v1 = cluster(r, 'outbound|80|v1|web.default.svc.cluster.local');
  assert.deepEqual(v1.endpoints.map((e) => e.address), ['10.0.0.1']);
  assert.equal(v1.lbPolicy, 'LEAST_REQUEST');
  assert.equal(v1.connectTimeoutMs, 2000);
  const v2 = cluster(r, 'outbound|80|v2|web.default.svc.cluster.local');
  assert.deepEqual(v2.endpoints.map((e) => e.address), ['10.0.0.2']);
  assert.equal(v2.lbPolicy, 'RANDOM');
  assert.equal(v2.connectTimeoutMs, 2000);
});

test('deprecated consecutiveErrors counts gateway errors (502/503/504, connect failures), not every 5xx, as Istio maps it', () => {
  const dr = (od: Record<string, unknown>) => k({ apiVersion: NET, kind: 'DestinationRule', metadata: { name: 'web', namespace: 'default' }, spec: { host: 'web', trafficPolicy: { outlierDetection: od } } });
  const base = [gateway('gw', [http80()]), vs('shop', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }), ...web()];
  // The istio.io circuit-breaking task's rule.
  const legacy = cluster(run([...base, dr({ consecutiveErrors: 1, interval: '1s', baseEjectionTime: '3m', maxEjectionPercent: 100 })]), 'outbound|80||web.default.svc.cluster.local').outlierDetection;
  assert.equal(legacy?.consecutive5xxErrors, 0);
  assert.equal(legacy?.consecutiveGatewayErrors, 1);
  assert.equal(legacy?.baseEjectionTimeMs, 180_000);
  // Explicit new fields win over the legacy one.
  const both = cluster(run([...base, dr({ consecutiveErrors: 2, consecutive5xxErrors: 7 })]), 'outbound|80||web.default.svc.cluster.local').outlierDetection;
  assert.deepEqual([both?.consecutive5xxErrors, both?.consecutiveGatewayErrors], [7, 2]);
  const modern = cluster(run([...base, dr({ consecutive5xxErrors: 3 })]), 'outbound|80||web.default.svc.cluster.local').outlierDetection;
  assert.deepEqual([modern?.consecutive5xxErrors, modern?.consecutiveGatewayErrors], [3, 0]);
});

test('unknown subset: error and a missing cluster (503 NC)', () => {
  const r = run([gateway('gw', [http80()]), vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web', { subset: 'v9' })] }), ...withSubsets()]);
  const d = diag(r, 'MG_SUBSET_NOT_FOUND', 'spec.http[0].route[0].destination.subset');
  assert.equal(d.severity, 'error');
  assert.match(d.message, /v1, v2, all/);
  const c = cluster(r, 'outbound|80|v9|web.default.svc.cluster.local');
  assert.equal(c.discovery, 'missing');
  assert.deepEqual(c.endpoints, []);
});

test('DestinationRule exported only to its namespace is not seen from another', () => {
  const dr = k({ apiVersion: NET, kind: 'DestinationRule', metadata: { name: 'web', namespace: 'default' }, spec: { host: 'web', exportTo: ['.'], subsets: [{ name: 'v1', labels: { version: 'v1' } }] } });
  const r = run([gateway('gw', [http80()]), vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web.default', { subset: 'v1' })] }, { namespace: 'shop' }), dr, ...web()]);
  diag(r, 'MG_SUBSET_NOT_FOUND');
});

test('weights: invalid sets drop the route; zero weights are dropped', () => {
  const r = run([
    gateway('gw', [http80()]),
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw'],
      http: [
        { match: [{ uri: { prefix: '/zero' } }], route: [{ destination: { host: 'web' }, weight: 0 }, { destination: { host: 'web' }, weight: 0 }] },
        { match: [{ uri: { prefix: '/neg' } }], route: [{ destination: { host: 'web' }, weight: -1 }, { destination: { host: 'web' }, weight: 5 }] },
        { match: [{ uri: { prefix: '/frac' } }], route: [{ destination: { host: 'web' }, weight: 1.5 }, { destination: { host: 'web' }, weight: 5 }] },
        { match: [{ uri: { prefix: '/ok' } }], route: [{ destination: { host: 'web' }, weight: 0 }, { destination: { host: 'web', port: { number: 80 } }, weight: 7 }] },
        { match: [{ uri: { prefix: '/one' } }], route: [{ destination: { host: 'web' }, weight: 30 }] },
      ],
    }),
    ...web(),
  ]);
  diag(r, 'MG_INVALID_WEIGHTS', 'spec.http[0].route');
  diag(r, 'MG_INVALID_WEIGHTS', 'spec.http[1].route[0].weight');
  diag(r, 'MG_INVALID_WEIGHTS', 'spec.http[2].route[0].weight');
  const v = vhost(listener(r, 8080).filterChains[0], 'a.example.com');
  assert.deepEqual(routeNames(v), ['virtualservice/default/a/http/3', 'virtualservice/default/a/http/4']);
  const weights = v.routes.map((x) => (x.action.kind === 'forward' ? x.action.destinations.map((d) => d.weight) : []));
  assert.deepEqual(weights, [[7], [100]]);
});

test('missing service, non-service host, and multi-port service without port', () => {
  const r = run([
    gateway('gw', [http80()]),
    vs('a', {
      hosts: ['a.example.com'],
      gateways: ['istio-system/gw'],
      http: [
        { match: [{ uri: { prefix: '/a' } }], ...to('nope', { port: { number: 80 } }) },
        { match: [{ uri: { prefix: '/b' } }], ...to('api.example.com') },
        { match: [{ uri: { prefix: '/c' } }], ...to('multi') },
        { match: [{ uri: { prefix: '/d' } }], ...to('multi.default.svc.cluster.local', { port: { number: 9090 } }) },
      ],
    }),
    service('multi', [{ port: 8080, name: 'http' }, { port: 9090, name: 'grpc' }]),
  ]);
  diag(r, 'MG_SERVICE_NOT_FOUND', 'spec.http[0].route[0].destination');
  diag(r, 'MG_SERVICE_NOT_FOUND', 'spec.http[1].route[0].destination.host');
  assert.match(diag(r, 'MG_MISSING_FIELD', 'spec.http[2].route[0].destination.port').message, /IST0112/);
  assert.equal(cluster(r, 'outbound|80||nope.default.svc.cluster.local').discovery, 'missing');
  assert.equal(cluster(r, 'outbound|0||api.example.com').discovery, 'missing');
  assert.equal(cluster(r, 'outbound|0||multi.default.svc.cluster.local').discovery, 'missing');
  assert.equal(cluster(r, 'outbound|9090||multi.default.svc.cluster.local').discovery, 'eds');
  // Every route is still served (503 NC for the missing ones).
  assert.equal(vhost(listener(r, 8080).filterChains[0], 'a.example.com').routes.length, 4);
  assert.deepEqual(r.diagnostics.filter((d) => d.reason === 'MG_INVALID_IR'), []);
});

// ---- actions ----------------------------------------------------------------------------------

function routesOf(http: unknown[], extra: KubeObject[] = []): { r: TranslateResult; routes: Route[] } {
  const r = run([gateway('gw', [http80()]), vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http }), ...web(), ...extra]);
  return { r, routes: vhost(listener(r, 8080).filterChains[0], 'a.example.com').routes };
}

test('redirect: uri, authority, scheme, port, derivePort, code', () => {
  const { r, routes } = routesOf([
    { match: [{ uri: { exact: '/a' } }], redirect: { uri: '/new', authority: 'b.example.com', scheme: 'https', port: 8443, redirectCode: 308 } },
    { match: [{ uri: { prefix: '/p' } }], redirect: { prefixRewrite: '/q', derivePort: 'FROM_PROTOCOL_DEFAULT' } },
    { match: [{ uri: { prefix: '/r' } }], redirect: { derivePort: 'FROM_REQUEST_PORT' } },
    { match: [{ uri: { prefix: '/bad' } }], redirect: { uri: '/x', redirectCode: 404 } },
  ]);
  assert.deepEqual(routes.map((x) => x.action), [
    { kind: 'redirect', scheme: 'https', authority: 'b.example.com', port: 8443, path: { kind: 'full', value: '/new' }, responseCode: 308 },
    { kind: 'redirect', scheme: null, authority: null, port: 'from-protocol', path: { kind: 'prefix', value: '/q' }, responseCode: 301 },
    { kind: 'redirect', scheme: null, authority: null, port: 'from-request', path: null, responseCode: 301 },
  ]);
  diag(r, 'MG_INVALID_FIELD', 'spec.http[3].redirect.redirectCode');
});

test('rewrite: prefix vs full, authority, uriRegexRewrite, timeout', () => {
  const { r, routes } = routesOf([
    { match: [{ uri: { prefix: '/api/' } }], rewrite: { uri: '/', authority: 'internal' }, timeout: '1.5s', ...to('web') },
    { match: [{ uri: { exact: '/e' } }, { uri: { regex: '/r.*' } }], rewrite: { uri: '/full' }, timeout: '0s', ...to('web') },
    { match: [{ uri: { prefix: '/v1/' } }], rewrite: { uriRegexRewrite: { match: '^/v1/(.*)$', rewrite: '/v2/\\1' } }, timeout: '2m', ...to('web') },
    { match: [{ uri: { prefix: '/bad/' } }], rewrite: { uriRegexRewrite: { match: '(?<=x)', rewrite: '' } }, ...to('web') },
    { rewrite: { uri: '/v2' }, ...to('web') },
  ]);
  const fwd = routes.map((x) => (x.action.kind === 'forward' ? x.action : null));
  assert.deepEqual(fwd[0]?.rewrite, { path: { kind: 'prefix', value: '/' }, authority: 'internal' });
  assert.equal(fwd[0]?.timeoutMs, 1500);
  assert.deepEqual(fwd[1]?.rewrite, { path: { kind: 'full', value: '/full' }, authority: null });
  assert.equal(fwd[1]?.timeoutMs, null);
  assert.deepEqual(fwd[2]?.rewrite, { path: { kind: 'regex', regex: { original: '^/v1/(.*)$', source: '^/v1/(.*)$', flags: 'u' }, substitution: '/v2/\\1' }, authority: null });
  assert.equal(fwd[2]?.timeoutMs, 120_000);
  // The catch-all with a uri rewrite behaves as Envoy's prefix "/" + prefix_rewrite.
  assert.deepEqual(fwd[3]?.rewrite, { path: { kind: 'prefix', value: '/v2' }, authority: null });
  assert.deepEqual(routes[3].matches[0].path, { kind: 'prefix', value: '/', ignoreCase: false });
  assert.equal(routes.length, 4);
  diag(r, 'MG_INVALID_REGEX', 'spec.http[3].rewrite.uriRegexRewrite.match');
});


test('directResponse: string and base64 bytes bodies', () => {
  const { routes } = routesOf([
    { match: [{ uri: { exact: '/s' } }], directResponse: { status: 418, body: { string: 'teapot' } } },
    { match: [{ uri: { exact: '/b' } }], directResponse: { status: 200, body: { bytes: Buffer.from('héllo').toString('base64') } } },
    { match: [{ uri: { exact: '/e' } }], directResponse: { status: 204 } },
  ]);
  assert.deepEqual(routes.map((x) => x.action), [
    { kind: 'direct', status: 418, body: 'teapot', contentType: null },
    { kind: 'direct', status: 200, body: 'héllo', contentType: null },
    { kind: 'direct', status: 204, body: null, contentType: null },
  ]);
});

test('headers at route and destination level, names lowercased', () => {
  const { routes } = routesOf([
    {
      headers: { request: { set: { 'X-A': '1' }, add: { 'X-B': '2' }, remove: ['X-C'] }, response: { set: { 'X-Resp': 'r' } } },
      route: [{ destination: { host: 'web' }, headers: { request: { add: { 'X-Dest': 'd' } }, response: { remove: ['Server'] } } }],
    },
  ]);
  const route = routes[0];
  assert.deepEqual(route.requestHeaders, { set: [{ name: 'x-a', value: '1' }], add: [{ name: 'x-b', value: '2' }], remove: ['x-c'] });
  assert.deepEqual(route.responseHeaders, { set: [{ name: 'x-resp', value: 'r' }], add: [], remove: [] });
  assert.equal(route.action.kind, 'forward');
  if (route.action.kind !== 'forward') return;
  assert.deepEqual(route.action.destinations[0].requestHeaders, { set: [], add: [{ name: 'x-dest', value: 'd' }], remove: [] });
  assert.deepEqual(route.action.destinations[0].responseHeaders, { set: [], add: [], remove: ['server'] });
});

test('retries, fault, corsPolicy are translated (no MG_UNSUPPORTED); delegate: warning and the route is not served', () => {
  const { r, routes } = routesOf([
    { match: [{ uri: { prefix: '/a' } }], retries: { attempts: 3 }, corsPolicy: { allowOrigins: [{ exact: '*' }] }, ...to('web') },
    { match: [{ uri: { prefix: '/b' } }], retries: { attempts: 1 }, fault: { abort: { httpStatus: 500, percentage: { value: 50 } } }, ...to('web') },
    { match: [{ uri: { prefix: '/d' } }], delegate: { name: 'child', namespace: 'default' } },
  ]);
  assert.deepEqual(r.diagnostics.filter((d) => d.reason === 'MG_UNSUPPORTED' && d.field !== 'spec.http[2].delegate'), []);
  assert.equal(diag(r, 'MG_UNSUPPORTED', 'spec.http[2].delegate').severity, 'warning');
  assert.equal(routes.length, 2);
  const a0 = routes[0].action;
  const a1 = routes[1].action;
  assert.ok(a0.kind === 'forward' && a1.kind === 'forward');
  assert.equal(a0.retries?.numRetries, 3);
  assert.deepEqual(routes[0].cors?.allowOrigins, [{ kind: 'exact', value: '*', ignoreCase: false }]);
  assert.deepEqual(a1.fault, { delay: null, abort: { kind: 'http', status: 500, percentage: 50 } });
});

// ---- servers ----------------------------------------------------------------------------------

test('httpsRedirect: a vhost per server host even without a VirtualService, and on bound vhosts', () => {
  const r = run([
    gateway('gw', [http80(['a.example.com', '*.example.org'], { tls: { httpsRedirect: true } })]),
    vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }),
    ...web(),
  ]);
  noErrors(r);
  const chain = listener(r, 8080).filterChains[0];
  assert.deepEqual(chain.virtualHosts.map((v) => [v.name, v.httpsRedirect, v.routes.length]), [
    ['*.example.org:8080', { responseCode: 301, port: null }, 0],
    ['a.example.com:8080', { responseCode: 301, port: null }, 1],
  ]);
});

function tlsSecret(name = 'web-cert', namespace = 'istio-system'): KubeObject {
  return k({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace }, type: 'kubernetes.io/tls', data: { 'tls.crt': Buffer.from(CERT).toString('base64'), 'tls.key': Buffer.from(KEY).toString('base64') } });
}

test('HTTPS SIMPLE with credentialName: certificate from the Gateway namespace, versions, ciphers', () => {
  const r = run([
    gateway('gw', [
      { port: { number: 443, name: 'https', protocol: 'HTTPS' }, name: 'main', hosts: ['a.example.com', 'b.example.com'], tls: { mode: 'SIMPLE', credentialName: 'web-cert', minProtocolVersion: 'TLSV1_1', cipherSuites: ['ECDHE-ECDSA-AES128-GCM-SHA256'] } },
      { port: { number: 443, name: 'https-all', protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'SIMPLE', credentialName: 'web-cert', minProtocolVersion: 'TLSV1_3', maxProtocolVersion: 'TLS_AUTO' } },
    ]),
    vs('a', { hosts: ['a.example.com'], gateways: ['istio-system/gw'], http: [to('web')] }),
    tlsSecret(),
    // Same name in the VirtualService namespace: must not be used.
    k({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'web-cert', namespace: 'default' }, data: {} }),
    ...web(),
  ]);
  noErrors(r);
  const l = listener(r, 8443);
  assert.equal(l.protocol, 'HTTPS');
  assert.equal(l.externalPort, 443);
  const names = l.filterChains.map((c) => c.name);
  assert.deepEqual(names, ['https.443.main.gw.istio-system', 'https.443.1.gw.istio-system']);
  const [main, all] = l.filterChains;
  assert.deepEqual(main.serverNames, ['a.example.com', 'b.example.com']);
  assert.equal(main.tls?.certificates[0].secret, 'istio-system/web-cert');
  assert.deepEqual(main.tls?.certificates[0].serverNames, ['a.example.com', 'b.example.com']);
  assert.equal(main.tls?.minProtocolVersion, 'TLSv1.2');
  assert.equal(main.tls?.maxProtocolVersion, 'TLSv1.3');
  assert.deepEqual(main.tls?.cipherSuites, ['ECDHE-ECDSA-AES128-GCM-SHA256']);
  assert.deepEqual(all.serverNames, []);
  assert.equal(all.tls?.minProtocolVersion, 'TLSv1.3');
  vhost(main, 'a.example.com');
  vhost(all, 'a.example.com');
  assert.equal(diag(r, 'MG_UNSUPPORTED', 'spec.servers[0].tls.minProtocolVersion').severity, 'warning');
});

test('credentialName and <name>-cacert come from the gateway workload namespace, never the Gateway namespace (CVE-2021-34824)', () => {
  // istio.io "Secure Gateways": the Secret in istio-system, the Gateway in default.
  const simple = { port: { number: 443, name: 'https', protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'SIMPLE', credentialName: 'web-cert' } };
  const mutual = { port: { number: 444, name: 'https-m', protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'MUTUAL', credentialName: 'web-cert' } };
  const ca = (namespace: string) => k({ apiVersion: 'v1', kind: 'Secret', metadata: { name: 'web-cert-cacert', namespace }, data: { 'ca.crt': Buffer.from(CERT).toString('base64') } });
  const r = run([gateway('gw', [simple, mutual], { namespace: 'default' }), tlsSecret('web-cert', 'istio-system'), ca('istio-system')]);
  noErrors(r);
  const chains = listener(r, 8443).filterChains;
  assert.equal(chains[0].tls?.certificates[0].secret, 'istio-system/web-cert');
  assert.equal(listener(r, 444).filterChains[0].tls?.clientValidation?.caSecret, 'istio-system/web-cert-cacert');
  // The same names only in the Gateway's namespace: not used, the servers are not served.
  const wrong = run([gateway('gw', [simple, mutual], { namespace: 'default' }), tlsSecret('web-cert', 'default'), ca('default')]);
  assert.deepEqual(wrong.ir.listeners, []);
  assert.match(diag(wrong, 'MG_SECRET_NOT_FOUND', 'spec.servers[0].tls.credentialName').message, /istio-system\/web-cert/);
  // --gateway-namespace moves where they are read.
  const moved = run([gateway('gw', [simple], { namespace: 'default' }), tlsSecret('web-cert', 'gw-ns')], { gatewayNamespace: 'gw-ns' });
  assert.equal(listener(moved, 8443).filterChains[0].tls?.certificates[0].secret, 'gw-ns/web-cert');
});

test('HTTPS servers: PASSTHROUGH (also when mode is absent) and TCP are relayed, MUTUAL needs a client CA, a missing secret or tls block is not served', () => {
  const s = (mode: string | undefined, port: number, cred = 'web-cert') => ({ port: { number: port, name: `p${port}`, protocol: 'HTTPS' }, hosts: ['*'], tls: { ...(mode ? { mode } : {}), credentialName: cred } });
  const r = run([
    gateway('gw', [s(undefined, 441), s('PASSTHROUGH', 442), s('MUTUAL', 443), s('SIMPLE', 444, 'nope'), { port: { number: 445, name: 'tcp', protocol: 'TCP' }, hosts: ['*'] }, { port: { number: 446, name: 'https', protocol: 'HTTPS' }, hosts: ['*'] }]),
    tlsSecret(),
  ]);
  assert.deepEqual(r.ir.listeners, []);
  assert.deepEqual(r.ir.tcpListeners.map((l) => [l.port, l.protocol]), [[441, 'TLS'], [442, 'TLS'], [445, 'TCP']]);
  assert.match(diag(r, 'MG_UNSUPPORTED', 'spec.servers[0].tls').message, /PASSTHROUGH/);
  diag(r, 'MG_SECRET_INVALID', 'spec.servers[2].tls.credentialName');
  diag(r, 'MG_SECRET_NOT_FOUND', 'spec.servers[3].tls.credentialName');
  diag(r, 'MG_MISSING_FIELD', 'spec.servers[5].tls');
});

test('port map, bind address, and GRPC served as HTTP (h2c on every plaintext listener)', () => {
  const r = run(
    [
      gateway('gw', [
        { port: { number: 80, name: 'http', protocol: 'HTTP' }, hosts: ['*'], bind: '127.0.0.1' },
        { port: { number: 9090, name: 'grpc', protocol: 'GRPC' }, hosts: ['*'] },
        { port: { number: 7000, name: 'u', protocol: 'HTTP' }, hosts: ['*'], bind: 'unix:///tmp/sock' },
      ]),
    ],
    { portMap: { '80': 18080 }, bindAddress: '::' },
  );
  assert.deepEqual(r.ir.listeners.map((l) => [l.name, l.port, l.externalPort]), [
    ['::_9090', 9090, 9090],
    ['127.0.0.1_18080', 18080, 80],
  ]);
  assert.equal(r.diagnostics.filter((d) => d.field === 'spec.servers[1].port.protocol').length, 0, 'GRPC is served without a warning');
  diag(r, 'MG_UNSUPPORTED', 'spec.servers[2].bind');
});

test('HTTP and HTTPS servers on one bind port: MG_PORT_CONFLICT', () => {
  const r = run([
    gateway('a', [http80()], { created: '2024-01-01T00:00:00Z' }),
    gateway('b', [{ port: { number: 80, name: 'https', protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'SIMPLE', credentialName: 'web-cert' } }], { created: '2024-01-02T00:00:00Z' }),
    tlsSecret(),
  ]);
  assert.equal(listener(r, 8080).protocol, 'HTTP');
  const d = diag(r, 'MG_PORT_CONFLICT');
  assert.equal(d.object?.name, 'b');
});

test('output does not depend on input order', () => {
  const objects = [
    gateway('gw', [http80(), { port: { number: 443, name: 'https', protocol: 'HTTPS' }, hosts: ['*'], tls: { mode: 'SIMPLE', credentialName: 'web-cert' } }]),
    vs('b', { hosts: ['shop.example.com'], gateways: ['istio-system/gw'], http: [{ match: [{ uri: { prefix: '/b' } }], ...to('web', { subset: 'v2' }) }] }),
    vs('a', { hosts: ['shop.example.com', 'x.example.com'], gateways: ['istio-system/gw'], http: [{ match: [{ uri: { prefix: '/a' } }], ...to('web', { subset: 'v1' }) }, to('nope')] }),
    tlsSecret(),
    ...withSubsets(),
  ];
  const first = JSON.stringify(run(objects));
  const reversed = JSON.stringify(run([...objects].reverse()));
  assert.equal(reversed, first);
});

test('translate never throws on odd but schema-shaped input', () => {
  const r = run([
    gateway('gw', [http80(), {}, { port: {} }, null as unknown as object]),
    vs('a', { hosts: ['a.example.com', 7], gateways: ['istio-system/gw', 3], http: [null, {}, { match: [null, {}], route: [null] }, { route: [{}] }] }),
    k({ apiVersion: NET, kind: 'DestinationRule', metadata: { name: 'x' }, spec: {} }),
  ]);
  assert.ok(Array.isArray(r.ir.listeners));
  assert.deepEqual(r.diagnostics.filter((d) => d.reason === 'MG_INVALID_IR'), []);
});
