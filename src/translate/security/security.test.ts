/** Translation of security.istio.io RequestAuthentication / AuthorizationPolicy and the rate-limit annotation. */

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { checkObject } from '../../api/kinds.js';
import type { KubeObject } from '../../resources/types.js';
import { ResourceSet } from '../../resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS, translate, type TranslateOptions } from '../index.js';
import { parseRateLimit } from './rate-limit.js';

function k(body: Record<string, unknown>): KubeObject {
  const meta = (body.metadata ?? {}) as Record<string, unknown>;
  return {
    apiVersion: String(body.apiVersion),
    kind: String(body.kind),
    metadata: {
      name: String(meta.name),
      namespace: String(meta.namespace ?? 'default'),
      labels: {},
      annotations: (meta.annotations as Record<string, string>) ?? {},
      creationTimestamp: null,
    },
    body,
    origin: { file: null, line: null, order: String(meta.name), fieldLines: {} },
  };
}

const ap = (name: string, spec: Record<string, unknown>, namespace = 'istio-system', version = 'v1', annotations: Record<string, string> = {}) =>
  k({ apiVersion: `security.istio.io/${version}`, kind: 'AuthorizationPolicy', metadata: { name, namespace, annotations }, spec });
const ra = (name: string, spec: Record<string, unknown>, namespace = 'istio-system') =>
  k({ apiVersion: 'security.istio.io/v1beta1', kind: 'RequestAuthentication', metadata: { name, namespace }, spec });

function run(objects: KubeObject[], options: Partial<TranslateOptions> = {}) {
  return translate(new ResourceSet(objects), { ...DEFAULT_TRANSLATE_OPTIONS, ...options });
}

describe('security translation', () => {
  test('defaults: the safe edge settings, no policies', () => {
    const s = run([]).ir.security;
    assert.deepEqual(s, { pathNormalization: 'MERGE_SLASHES', escapedSlashes: 'REJECT', headersWithUnderscores: 'REJECT_REQUEST', jwtRules: [], authorizationPolicies: [], extAuthzProviders: [], rateLimits: [] });
  });

  test('scoping: root namespace and gateway namespace apply; selectors must select the gateway; others do not', () => {
    const r = run([
      ap('root', { action: 'DENY', rules: [{}] }),
      ap('gw-ns', { action: 'DENY', rules: [{}] }, 'edge'),
      ap('other-ns', { action: 'DENY', rules: [{}] }, 'shop'),
      ap('selected', { selector: { matchLabels: { istio: 'ingressgateway' } }, rules: [{}] }),
      ap('not-selected', { selector: { matchLabels: { app: 'reviews' } }, rules: [{}] }),
      ap('target-ref', { targetRef: { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }, rules: [{}] }),
    ], { gatewayNamespace: 'edge' });
    assert.deepEqual(r.ir.security.authorizationPolicies.map((p) => p.name).sort(), ['authorizationpolicy/edge/gw-ns', 'authorizationpolicy/istio-system/root', 'authorizationpolicy/istio-system/selected']);
    assert.ok(r.diagnostics.some((d) => d.reason === 'MG_UNSUPPORTED' && d.object?.name === 'target-ref'));
    assert.ok(r.diagnostics.some((d) => d.reason === 'MG_NOT_BOUND' && d.object?.name === 'not-selected'));
  });

  test("default gateway labels are Istio's ingress pods' (app=istio-ingressgateway, istio=ingressgateway): the ingress authorization task's policy applies", () => {
    // istio.io "Ingress gateway" authorization task: an IP allow-list selecting app: istio-ingressgateway.
    const task = ap('ingress-policy', { selector: { matchLabels: { app: 'istio-ingressgateway' } }, action: 'ALLOW', rules: [{ from: [{ source: { ipBlocks: ['1.2.3.4'] } }] }] });
    assert.deepEqual(run([task]).ir.security.authorizationPolicies.map((p) => p.name), ['authorizationpolicy/istio-system/ingress-policy']);
    // The Helm gateway chart's label is not the default one, but --gateway-labels can say it.
    const helm = ap('helm', { selector: { matchLabels: { istio: 'ingress' } }, rules: [{}] });
    assert.deepEqual(run([helm]).ir.security.authorizationPolicies, []);
    assert.equal(run([helm], { gatewayLabels: { app: 'istio-ingress', istio: 'ingress' } }).ir.security.authorizationPolicies.length, 1);
  });

  test('a selector that selects neither this gateway nor any Pod is a warning; one selecting another workload is info', () => {
    const pod = k({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'reviews-1', namespace: 'istio-system' } });
    pod.metadata.labels = { app: 'reviews' };
    const nothing = run([ap('p', { selector: { matchLabels: { app: 'typo-gateway' } }, rules: [{}] })]).diagnostics.find((d) => d.object?.name === 'p');
    assert.equal(nothing?.severity, 'warning', `got ${JSON.stringify(nothing)}`);
    const other = run([ap('p', { selector: { matchLabels: { app: 'reviews' } }, rules: [{}] }), pod]).diagnostics.find((d) => d.object?.name === 'p');
    assert.equal(other?.severity, 'info', `got ${JSON.stringify(other)}`);
  });

  test('from/to/when become conditions; action defaults to ALLOW; dry-run annotation', () => {
    const r = run([
      ap('p', {
        rules: [{
          from: [{ source: { requestPrincipals: ['*'], notIpBlocks: ['10.0.0.0/8'] } }],
          to: [{ operation: { methods: ['GET'], notPaths: ['/admin*'] } }],
          when: [{ key: 'request.auth.claims[groups]', values: ['ops'] }],
        }],
      }, 'istio-system', 'v1beta1', { 'istio.io/dry-run': 'true' }),
    ]);
    const [p] = r.ir.security.authorizationPolicies;
    assert.equal(p.action, 'ALLOW');
    assert.equal(p.dryRun, true);
    assert.deepEqual(p.rules[0], {
      from: [[{ key: 'request.auth.principal', values: ['*'], notValues: [] }, { key: 'source.ip', values: [], notValues: ['10.0.0.0/8'] }]],
      to: [[{ key: 'request.method', values: ['GET'], notValues: [] }, { key: 'request.path', values: [], notValues: ['/admin*'] }]],
      when: [{ key: 'request.auth.claims[groups]', values: ['ops'], notValues: [] }],
    });
  });

  test('an invalid condition fails closed: ALLOW drops the rule, DENY drops only the condition', () => {
    const r = run([
      ap('allow', { rules: [{ when: [{ key: 'experimental.envoy.filters.x', values: ['1'] }] }] }),
      ap('deny', { action: 'DENY', rules: [{ from: [{ source: { ipBlocks: ['not-an-ip'] } }], to: [{ operation: { paths: ['/admin'] } }] }] }),
    ]);
    const byName = new Map(r.ir.security.authorizationPolicies.map((p) => [p.name.split('/')[2], p]));
    assert.deepEqual(byName.get('allow')!.rules, []);
    assert.deepEqual(byName.get('deny')!.rules, [{ from: [[]], to: [[{ key: 'request.path', values: ['/admin'], notValues: [] }]], when: [] }]);
    assert.equal(r.diagnostics.filter((d) => d.reason === 'MG_INVALID_FIELD').length, 2);
  });

  test('CUSTOM naming a provider MeshConfig lacks: reported, kept, fails closed at run time', () => {
    const r = run([ap('ext', { action: 'CUSTOM', provider: { name: 'opa' }, rules: [{}] })]);
    assert.equal(r.ir.security.authorizationPolicies[0].action, 'CUSTOM');
    assert.deepEqual(r.ir.security.extAuthzProviders, []);
    assert.ok(r.diagnostics.some((d) => d.reason === 'MG_INVALID_FIELD' && d.message.includes('"opa" is not defined in MeshConfig')));
  });

  test('RequestAuthentication: default locations made explicit, names lowercased, timeout parsed', () => {
    const r = run([
      ra('a', { jwtRules: [{ issuer: 'https://i', jwksUri: 'https://i/jwks', timeout: '2s' }, { issuer: 'https://j', jwks: '{"keys":[]}', fromHeaders: [{ name: 'X-Token' }], outputClaimToHeaders: [{ header: 'X-Sub', claim: 'sub' }] }] }),
    ]);
    const [a, b] = r.ir.security.jwtRules;
    assert.deepEqual(a.fromHeaders, [{ name: 'authorization', prefix: 'Bearer ' }]);
    assert.deepEqual(a.fromParams, ['access_token']);
    assert.equal(a.jwksTimeoutMs, 2000);
    assert.equal(a.forwardOriginalToken, false);
    assert.deepEqual(b.fromHeaders, [{ name: 'x-token', prefix: '' }]);
    assert.deepEqual(b.fromParams, []);
    assert.deepEqual(b.outputClaimToHeaders, [{ header: 'x-sub', claim: 'sub' }]);
  });

  test('RequestAuthentication: bad jwks or jwksUri fails closed (no keys)', () => {
    const r = run([ra('a', { jwtRules: [{ issuer: 'i', jwks: 'nope' }, { issuer: 'j', jwksUri: 'file:///etc/passwd' }, { issuer: 'k' }] })]);
    assert.deepEqual(r.ir.security.jwtRules.map((j) => [j.jwks, j.jwksUri]), [['{"keys":[]}', null], ['{"keys":[]}', null], ['{"keys":[]}', null]]);
  });

  test('schemas: v1 and v1beta1 accepted, unknown fields and missing issuer rejected', () => {
    assert.deepEqual(checkObject(ap('ok', { action: 'DENY', rules: [{ to: [{ operation: { paths: ['/a'] } }] }] })), []);
    assert.ok(checkObject(ap('bad', { action: 'MAYBE' })).some((d) => d.reason === 'MG_INVALID_FIELD'));
    assert.ok(checkObject(ap('bad', { rules: [{ to: [{ operation: { pathz: ['/a'] } }] }] })).some((d) => d.reason === 'MG_UNKNOWN_FIELD'));
    assert.ok(checkObject(ra('bad', { jwtRules: [{ jwksUri: 'https://x' }] })).some((d) => d.reason === 'MG_MISSING_FIELD'));
    assert.ok(checkObject(ap('both', { selector: { matchLabels: {} }, targetRef: { kind: 'Gateway', name: 'g' } })).length > 0);
  });

  test('the rate-limit annotation', () => {
    assert.deepEqual(parseRateLimit('100/s'), { maxTokens: 100, tokensPerFill: 100, fillIntervalMs: 1000, key: { kind: 'route' } });
    assert.deepEqual(parseRateLimit('600/m burst=50 key=remote-ip'), { maxTokens: 50, tokensPerFill: 600, fillIntervalMs: 60_000, key: { kind: 'remote-ip' } });
    assert.deepEqual(parseRateLimit('5/10s key=header:X-Api-Key'), { maxTokens: 5, tokensPerFill: 5, fillIntervalMs: 10_000, key: { kind: 'header', name: 'x-api-key' } });
    for (const bad of ['', 'fast', '0/s', '10/parsec', '10/s burst=0', '10/s key=cookie', '10/s\nx: y']) assert.equal(typeof parseRateLimit(bad), 'string', bad);
  });

  test('property: translation never throws and is order-independent for any policy shapes', () => {
    const strs = fc.array(fc.constantFrom('/a', '*', '10.0.0.0/8', 'x', 'GET', '80', '', '{*}', '/{**}', 'bad/99'), { maxLength: 3 });
    const polArb = fc.record({
      name: fc.constantFrom('a', 'b', 'c'),
      ns: fc.constantFrom('istio-system', 'default'),
      action: fc.constantFrom('ALLOW', 'DENY', 'AUDIT', 'CUSTOM'),
      paths: strs,
      ips: strs,
      key: fc.constantFrom('request.headers[x]', 'source.ip', 'bogus', 'destination.port', 'request.auth.claims[a][b]'),
      values: strs,
    });
    fc.assert(
      fc.property(fc.uniqueArray(polArb, { selector: (p) => `${p.ns}/${p.name}`, maxLength: 4 }), (ps) => {
        const objs = ps.map((p) => ap(p.name, { action: p.action, rules: [{ from: [{ source: { ipBlocks: p.ips } }], to: [{ operation: { paths: p.paths } }], when: [{ key: p.key, values: p.values }] }] }, p.ns));
        const a = run(objs);
        const b = run([...objs].reverse());
        assert.deepEqual(a.ir.security, b.ir.security);
        assert.equal(a.ir.version, b.ir.version);
      }),
      { numRuns: 300 },
    );
  });
});

describe('CUSTOM ext-authz providers from MeshConfig', () => {
  const mesh = (text: string, name = 'istio', namespace = 'istio-system') => k({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name, namespace }, data: { mesh: text } });
  const custom = ap('ext', { action: 'CUSTOM', provider: { name: 'authz' }, rules: [{}] });
  const svc = k({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'authz', namespace: 'auth' }, spec: { ports: [{ name: 'http', port: 8000 }] } });

  test('defaults: timeout 600s, statusOnError 403, fail closed, no header lists', () => {
    const r = run([custom, svc, mesh('extensionProviders:\n- name: authz\n  envoyExtAuthzHttp: {service: authz.auth.svc.cluster.local, port: 8000}\n')]);
    assert.deepEqual(r.ir.security.extAuthzProviders, [
      { name: 'authz', cluster: 'outbound|8000||authz.auth.svc.cluster.local', timeoutMs: 600_000, pathPrefix: '', failOpen: false, statusOnError: 403, includeRequestHeadersInCheck: [], includeAdditionalHeadersInCheck: [], headersToUpstreamOnAllow: [], headersToDownstreamOnDeny: [] },
    ]);
    assert.ok(r.ir.clusters.some((c) => c.name === 'outbound|8000||authz.auth.svc.cluster.local'));
  });

  test('MeshConfig in another ConfigMap is not read', () => {
    const r = run([custom, svc, mesh('extensionProviders:\n- name: authz\n  envoyExtAuthzHttp: {service: authz.auth.svc.cluster.local, port: 8000}\n', 'istio', 'default')]);
    assert.deepEqual(r.ir.security.extAuthzProviders, []);
  });

  test('invalid MeshConfig YAML and a bad service are reported, never thrown', () => {
    const bad = run([custom, svc, mesh('extensionProviders: [')]);
    assert.deepEqual(bad.ir.security.extAuthzProviders, []);
    assert.ok(bad.diagnostics.some((d) => d.field === 'data.mesh' && d.message.includes('not valid YAML')));
    const noNs = run([custom, svc, mesh('extensionProviders:\n- name: authz\n  envoyExtAuthzHttp: {service: authz, port: 8000}\n')]);
    assert.deepEqual(noNs.ir.security.extAuthzProviders, []);
    assert.ok(noNs.diagnostics.some((d) => d.field === 'data.mesh' && d.severity === 'error'));
  });

  test('the ConfigMap schema allows data as a map of strings only', () => {
    assert.deepEqual(checkObject(mesh('x')), []);
    assert.ok(checkObject(k({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'istio', namespace: 'istio-system' }, data: { mesh: 1 } })).length > 0);
  });
});
