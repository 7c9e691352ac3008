/**
 * DestinationRuleIndex as a table: Istio's lookup for one proxy (push_context.go destinationRule,
 * sidecar.go SidecarScope.DestinationRule) and its enhanced merge (destination_rule.go), including
 * the cases Istio's own tests pin down (TestSetDestinationRuleWithWorkloadSelector,
 * TestSetDestinationRuleMerging): rules with a workloadSelector are private, rules of one host merge
 * only when their exportTo sets agree, a superset exportTo merges into the earlier entry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { KubeObject } from '../../resources/types.js';
import { ResourceSet } from '../../resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS, TranslateContext } from '../types.js';
import { DestinationRuleIndex, type DestinationRuleProxy } from './destination-rules.js';

let order = 0;

function dr(ns: string, name: string, spec: Record<string, unknown>, created = '2024-01-01T00:00:00Z'): KubeObject {
  const body = { apiVersion: 'networking.istio.io/v1', kind: 'DestinationRule', metadata: { name, namespace: ns, creationTimestamp: created }, spec };
  return {
    apiVersion: body.apiVersion,
    kind: body.kind,
    metadata: { name, namespace: ns, labels: {}, annotations: {}, creationTimestamp: created },
    body,
    origin: { file: 'test.yaml', line: 1, order: `test.yaml#${String(order++).padStart(6, '0')}`, fieldLines: {} },
  };
}

const HOST = 'httpbin.test.svc.cluster.local';
const sel = (app: string) => ({ matchLabels: { app } });

interface Case {
  desc: string;
  rules: KubeObject[];
  proxy: DestinationRuleProxy;
  host?: string;
  serviceNamespace?: string | null;
  /** `ns/name` of the rules merged into the one used, in order; null = none applies. */
  want: string[] | null;
  subsets?: string[];
}

const ns4 = dr('test', 'nsRule4', { host: HOST, exportTo: ['.', 'test2'], subsets: [{ name: 's4' }] }, '2024-01-01T00:00:00Z');
const app1 = dr('test', 'nsRule1', { host: HOST, exportTo: ['test2', '.'], workloadSelector: sel('app1') }, '2024-01-01T00:00:01Z');
const app2 = dr('test', 'nsRule2', { host: HOST, exportTo: ['test2', '.'], workloadSelector: sel('app2'), subsets: [{ name: 's2' }] }, '2024-01-01T00:00:02Z');
const app3 = dr('test', 'nsRule3', { host: HOST, exportTo: ['test2', '.'], workloadSelector: sel('app2'), subsets: [{ name: 's3' }] }, '2024-01-01T00:00:02Z');

const cases: Case[] = [
  // Istio TestSetDestinationRuleWithWorkloadSelector: app1+ns4, app2+app3+ns4, ns4.
  { desc: 'selector rule selecting the proxy, merged with the namespace rule of a superset exportTo', rules: [app1, app2, app3, ns4], proxy: { namespace: 'test', labels: { app: 'app1' } }, serviceNamespace: 'test', want: ['test/nsRule1', 'test/nsRule4'] },
  { desc: 'rules with the same selector merge', rules: [app1, app2, app3, ns4], proxy: { namespace: 'test', labels: { app: 'app2' } }, serviceNamespace: 'test', want: ['test/nsRule2', 'test/nsRule3', 'test/nsRule4'], subsets: ['s2', 's3', 's4'] },
  { desc: 'no selector selects the proxy: the rule without one', rules: [app1, app2, app3, ns4], proxy: { namespace: 'test', labels: { app: 'other' } }, serviceNamespace: 'test', want: ['test/nsRule4'] },
  { desc: 'selector rules are never exported', rules: [app1, app2, app3, ns4], proxy: { namespace: 'test2', labels: { app: 'app1' } }, serviceNamespace: 'test', want: ['test/nsRule4'] },
  // Istio TestSetDestinationRuleMerging: rule1+rule2 merge; rule3 (exportTo istio-system) stays apart.
  {
    desc: 'same (empty) exportTo merges; another exportTo stays apart and is what istio-system sees',
    rules: [dr('test', 'rule1', { host: HOST, subsets: [{ name: 'subset1' }, { name: 'subset2' }] }), dr('test', 'rule2', { host: HOST, subsets: [{ name: 'subset3' }, { name: 'subset4' }] }, '2024-01-01T00:00:01Z'), dr('test', 'rule3', { host: HOST, exportTo: ['istio-system'], subsets: [{ name: 'subset5' }] }, '2024-01-01T00:00:02Z')],
    proxy: { namespace: 'istio-system', labels: {} },
    serviceNamespace: 'test',
    want: ['test/rule3'],
    subsets: ['subset5'],
  },
  {
    desc: 'same rules seen from a third namespace: the merged public entry',
    rules: [dr('test', 'rule1', { host: HOST, subsets: [{ name: 'subset1' }] }), dr('test', 'rule2', { host: HOST, subsets: [{ name: 'subset3' }] }, '2024-01-01T00:00:01Z'), dr('test', 'rule3', { host: HOST, exportTo: ['istio-system'] }, '2024-01-01T00:00:02Z')],
    proxy: { namespace: 'other', labels: {} },
    serviceNamespace: 'test',
    want: ['test/rule1', 'test/rule2'],
    subsets: ['subset1', 'subset3'],
  },
  {
    desc: 'a rule whose selector does not select the proxy decides the step all the same (no fallback to the service namespace)',
    rules: [dr('client', 'only-for-a', { host: HOST, workloadSelector: sel('a') }), dr('test', 'service-rule', { host: HOST })],
    proxy: { namespace: 'client', labels: { app: 'b' } },
    serviceNamespace: 'test',
    want: null,
  },
  {
    desc: 'an empty workloadSelector selects every workload (and makes the rule private)',
    rules: [dr('client', 'everyone', { host: HOST, workloadSelector: {} })],
    proxy: { namespace: 'client', labels: { app: 'b' } },
    serviceNamespace: 'test',
    want: ['client/everyone'],
  },
  {
    desc: "exportTo '~' hides a rule from everyone, its namespace included",
    rules: [dr('test', 'hidden', { host: HOST, exportTo: ['~'] })],
    proxy: { namespace: 'test', labels: {} },
    serviceNamespace: 'test',
    want: null,
  },
  {
    desc: 'a wildcard service host: the same wildcard rule before a broader one',
    rules: [dr('istio-system', 'all', { host: '*' }), dr('istio-system', 'example', { host: '*.example.com' })],
    proxy: { namespace: 'client', labels: {} },
    host: '*.example.com',
    serviceNamespace: 'client',
    want: ['istio-system/example'],
  },
  {
    desc: '"*" covers any host when nothing more specific exists',
    rules: [dr('istio-system', 'all', { host: '*' })],
    proxy: { namespace: 'client', labels: {} },
    serviceNamespace: 'test',
    want: ['istio-system/all'],
  },
];

for (const c of cases) {
  test(`DestinationRuleIndex: ${c.desc}`, () => {
    const ctx = new TranslateContext({ ...DEFAULT_TRANSLATE_OPTIONS });
    const index = new DestinationRuleIndex(ctx, new ResourceSet(c.rules), c.proxy);
    const got = index.lookup(c.host ?? HOST, c.serviceNamespace ?? null);
    const names = got === null ? null : got.rules.map((r) => `${r.metadata.namespace}/${r.metadata.name}`);
    assert.deepEqual(names, c.want, `want ${JSON.stringify(c.want)}, got ${JSON.stringify(names)}`);
    if (c.subsets !== undefined) assert.deepEqual([...(got?.subsets.keys() ?? [])], c.subsets);
  });
}
