import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import type { Diagnostic } from '../lib/diagnostic.js';
import { formatDiagnostic } from '../lib/diagnostic.js';
import { parseFile } from '../providers/file/load.js';
import type { KubeObject } from '../resources/types.js';
import { checkObjects, KINDS, lookupKind, splitApiVersion } from './kinds.js';

/** Objects from YAML text, through the real loader (so lines are real). */
function objectsOf(text: string, file = 'test.yaml'): KubeObject[] {
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  parseFile(file, text, objects, diagnostics);
  assert.deepEqual(diagnostics, [], 'test input must load');
  return objects;
}

function check(text: string): { accepted: string[]; diagnostics: Diagnostic[] } {
  const r = checkObjects(objectsOf(text));
  return { accepted: r.accepted.map((o) => `${o.kind}/${o.metadata.name}`), diagnostics: r.diagnostics };
}

/** Sample files live in src/ (tests run from dist/src/api/). */
function sample(name: string): string {
  return readFileSync(new URL(`../../../src/api/testdata/${name}`, import.meta.url), 'utf8');
}

const vs = (http: string): string => `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: vs
  namespace: shop
spec:
  hosts: [shop.example.com]
  http:
${http}`;

describe('checkObjects: samples pass clean', () => {
  for (const file of ['istio-samples.yaml', 'kubernetes-samples.yaml']) {
    test(file, () => {
      const objects = objectsOf(sample(file), file);
      const r = checkObjects(objects);
      assert.deepEqual(r.diagnostics.map(formatDiagnostic), []);
      assert.equal(r.accepted.length, objects.length);
    });
  }
});

describe('checkObjects: kinds and versions', () => {
  test('a kind meshgate knowingly ignores (a workload): MG_UNKNOWN_KIND info, dropped', () => {
    const r = check('apiVersion: apps/v1\nkind: Deployment\nmetadata: { name: web }\nspec: { replicas: 1 }\n');
    assert.deepEqual(r.accepted, []);
    assert.equal(r.diagnostics.length, 1);
    assert.deepEqual(
      { ...r.diagnostics[0], message: undefined },
      { severity: 'info', reason: 'MG_UNKNOWN_KIND', object: { kind: 'Deployment', namespace: 'default', name: 'web' }, field: null, file: 'test.yaml', line: 1, message: undefined },
    );
  });

  test('Gateway of another group (Gateway API) is not the Istio Gateway', () => {
    const r = check('apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: gw }\nspec: { gatewayClassName: x, listeners: [{name: h, port: 80, protocol: HTTP}] }\n');
    assert.deepEqual(r.diagnostics, []);
    assert.equal(lookupKind('gateway.networking.k8s.io/v1', 'Gateway')?.group, 'gateway.networking.k8s.io');
    // Istio's `servers` is not a Gateway API field.
    const bad = check('apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: gw }\nspec: { gatewayClassName: x, listeners: [], servers: [] }\n');
    assert.deepEqual(bad.accepted, []);
    assert.equal(bad.diagnostics[0].reason, 'MG_UNKNOWN_FIELD');
  });

  test('an unknown kind is a warning (nothing will be served), with a did-you-mean for a typo', () => {
    const typo = check('apiVersion: networking.istio.io/v1\nkind: Virtualservice\nmetadata: { name: shop }\nspec: { hosts: [a] }\n');
    assert.deepEqual(typo.accepted, []);
    assert.equal(typo.diagnostics[0].severity, 'warning');
    assert.equal(typo.diagnostics[0].reason, 'MG_UNKNOWN_KIND');
    assert.match(typo.diagnostics[0].message, /did you mean `VirtualService`\?/);
    const close = check('apiVersion: networking.istio.io/v1\nkind: DestinationRul\nmetadata: { name: shop }\nspec: {}\n');
    assert.match(close.diagnostics[0].message, /did you mean `DestinationRule`\?/);
    const unknown = check('apiVersion: example.com/v1\nkind: Frobnicator\nmetadata: { name: x }\n');
    assert.equal(unknown.diagnostics[0].severity, 'warning');
    assert.doesNotMatch(unknown.diagnostics[0].message, /did you mean/);
    const mesh = check('apiVersion: networking.istio.io/v1\nkind: WorkloadGroup\nmetadata: { name: x }\nspec: {}\n');
    assert.equal(mesh.diagnostics[0].severity, 'info');
    // Istio's ProxyConfig resource has no proxyHeaders: an info that says where those are read.
    const pc = check('apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: { name: x, namespace: istio-system }\nspec: { concurrency: 2 }\n');
    assert.deepEqual(pc.accepted, []);
    assert.equal(pc.diagnostics[0].severity, 'info');
    assert.match(pc.diagnostics[0].message, /proxy\.istio\.io\/config/);
  });

  test('a read kind at an unknown version: MG_UNKNOWN_KIND warning naming the supported versions, dropped', () => {
    const r = check('apiVersion: networking.k8s.io/v1beta1\nkind: Ingress\nmetadata: { name: old }\nspec:\n  backend: { serviceName: a, servicePort: 80 }\n');
    assert.deepEqual(r.accepted, []);
    assert.equal(r.diagnostics.length, 1);
    const d = r.diagnostics[0];
    assert.equal(d.severity, 'warning');
    assert.equal(d.reason, 'MG_UNKNOWN_KIND');
    assert.equal(d.field, 'apiVersion');
    assert.equal(d.line, 1);
    assert.match(d.message, /networking\.k8s\.io\/v1\b/);
  });

  test('Istio kinds are read as v1, v1beta1 and v1alpha3', () => {
    for (const v of ['v1', 'v1beta1', 'v1alpha3']) {
      const r = check(`apiVersion: networking.istio.io/${v}\nkind: DestinationRule\nmetadata: { name: d }\nspec: { host: a }\n`);
      assert.deepEqual(r.diagnostics, [], v);
      assert.deepEqual(r.accepted, ['DestinationRule/d']);
    }
  });

  test('splitApiVersion and lookupKind', () => {
    assert.deepEqual(splitApiVersion('v1'), { group: '', version: 'v1' });
    assert.deepEqual(splitApiVersion('networking.istio.io/v1beta1'), { group: 'networking.istio.io', version: 'v1beta1' });
    assert.equal(lookupKind('v1', 'Service')?.kind, 'Service');
    assert.equal(lookupKind('apps/v1', 'Service'), undefined);
    assert.equal(KINDS.length, 28); // + 9 Gateway API kinds and Namespace (issue 13), WorkloadEntry (issue 3), RequestAuthentication and AuthorizationPolicy, ConfigMap (MeshConfig), Telemetry, PeerAuthentication (issue 15), Sidecar (issue 16)
  });
});

describe('checkObjects: schema', () => {
  test('unknown field: error with path, line and a suggestion; the object is dropped', () => {
    const r = check(`apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: web }
spec:
  rules:
  - http:
      paths:
      - path: /
        pathtype: Prefix
        backend: { service: { name: web, port: { number: 80 } } }
`);
    assert.deepEqual(r.accepted, []);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.severity, d.reason, d.field, d.line]),
      [
        ['error', 'MG_MISSING_FIELD', 'spec.rules[0].http.paths[0].pathType', 8],
        ['error', 'MG_UNKNOWN_FIELD', 'spec.rules[0].http.paths[0].pathtype', 9],
      ],
    );
    assert.match(r.diagnostics[1].message, /did you mean `pathType`\?/);
    assert.deepEqual(r.diagnostics[1].object, { kind: 'Ingress', namespace: 'default', name: 'web' });
    assert.equal(r.diagnostics[1].file, 'test.yaml');
  });

  test('suggestions for typos in Istio fields', () => {
    const r = check(vs(`  - match:
    - uri: { prefx: /a }
    route:
    - destination: { host: a }
      wieght: 10
    timeot: 1s
`));
    assert.deepEqual(
      r.diagnostics.map((d) => [d.field, d.line, /did you mean `(\w+)`/.exec(d.message)?.[1]]),
      [
        ['spec.http[0].match[0].uri.prefx', 10, 'prefix'],
        ['spec.http[0].route[0].wieght', 13, 'weight'],
        ['spec.http[0].timeot', 14, 'timeout'],
      ],
    );
  });

  test('no suggestion when nothing is close', () => {
    const r = check(vs('  - route: [{ destination: { host: a } }]\n    somethingElse: 1\n'));
    assert.equal(r.diagnostics.length, 1);
    assert.doesNotMatch(r.diagnostics[0].message, /did you mean/);
  });

  test('wrong types: MG_INVALID_FIELD', () => {
    const r = check(vs(`  - route:
    - destination:
        host: a
        port: { number: "80" }
      weight: 1.5
    timeout: soon
    retries: { attempts: -1 }
    match:
    - ignoreUriCase: "yes"
      headers: [x]
`));
    assert.deepEqual(
      r.diagnostics.map((d) => [d.reason, d.field]),
      [
        ['MG_INVALID_FIELD', 'spec.http[0].route[0].destination.port.number'],
        ['MG_INVALID_FIELD', 'spec.http[0].route[0].weight'],
        ['MG_INVALID_FIELD', 'spec.http[0].timeout'],
        ['MG_INVALID_FIELD', 'spec.http[0].retries.attempts'],
        ['MG_INVALID_FIELD', 'spec.http[0].match[0].ignoreUriCase'],
        ['MG_INVALID_FIELD', 'spec.http[0].match[0].headers'],
      ],
    );
    assert.match(r.diagnostics[0].message, /expected an integer between 1 and 65535, got "80"/);
    assert.match(r.diagnostics[2].message, /duration/);
  });

  test('bad enum value: MG_INVALID_FIELD listing the values, with a suggestion', () => {
    const r = check(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw }
spec:
  servers:
  - port: { number: 443, name: https, protocol: HTTPS }
    hosts: ["*"]
    tls: { mode: SIMPEL, credentialName: c }
`);
    assert.equal(r.diagnostics.length, 1);
    const d = r.diagnostics[0];
    assert.equal(d.reason, 'MG_INVALID_FIELD');
    assert.equal(d.field, 'spec.servers[0].tls.mode');
    assert.equal(d.line, 8);
    assert.match(d.message, /`PASSTHROUGH`, `SIMPLE`/);
    assert.match(d.message, /did you mean `SIMPLE`/);
  });

  test('oneof: two of exact/prefix/regex', () => {
    const r = check(vs('  - match: [{ uri: { exact: /a, prefix: /b } }]\n    route: [{ destination: { host: a } }]\n'));
    assert.deepEqual(r.diagnostics.map((d) => [d.reason, d.field]), [['MG_INVALID_FIELD', 'spec.http[0].match[0].uri.prefix']]);
  });

  test('missing required field: MG_MISSING_FIELD at the parent line', () => {
    const r = check(vs('  - route:\n    - destination: { subset: v1 }\n'));
    assert.deepEqual(
      r.diagnostics.map((d) => [d.reason, d.field, d.line]),
      [['MG_MISSING_FIELD', 'spec.http[0].route[0].destination.host', 10]],
    );
  });

  test('metadata: standard fields allowed, others not (strict kinds); label values must be strings', () => {
    const r = check(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: d
  generation: 3
  finalizers: [x]
  ownerReferences: [{ kind: X }]
  labels: { version: 1 }
  nmespace: shop
spec: { host: a }
`);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.reason, d.field]),
      [
        ['MG_INVALID_FIELD', 'metadata.labels.version'],
        ['MG_UNKNOWN_FIELD', 'metadata.nmespace'],
      ],
    );
    assert.match(r.diagnostics[1].message, /did you mean `namespace`/);
  });

  test('status is accepted as anything', () => {
    const r = check('apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: v }\nspec: {}\nstatus: { anything: [1, { x: y }] }\n');
    assert.deepEqual(r.diagnostics, []);
  });

  test('core kinds allow unknown fields but type the ones meshgate reads', () => {
    const r = check(`apiVersion: v1
kind: Service
metadata: { name: s, newField: 1 }
spec:
  futureField: true
  ports:
  - port: 80
    targetPort: 8080
    protocol: tcp
  - port: 70000
    targetPort: 1.5
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: e }
addressType: IPv4
endpoints:
- addresses: 10.0.0.1
  conditions: { ready: "true" }
---
apiVersion: v1
kind: Secret
metadata: { name: sec }
data: { tls.crt: "not base64!" }
`);
    assert.deepEqual(r.accepted, []);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.object?.kind, d.field, d.line]),
      [
        ['Service', 'spec.ports[0].protocol', 9],
        ['Service', 'spec.ports[1].port', 10],
        ['Service', 'spec.ports[1].targetPort', 11],
        ['EndpointSlice', 'endpoints[0].addresses', 18],
        ['EndpointSlice', 'endpoints[0].conditions.ready', 19],
        ['Secret', 'data["tls.crt"]', 24],
      ],
    );
  });

  test('warnings keep the object; one bad object does not drop the others', () => {
    const r = check(`apiVersion: v1
kind: Service
metadata: { name: good }
---
apiVersion: v1
kind: Service
metadata: { name: bad }
spec: { ports: [{ port: "x" }] }
`);
    assert.deepEqual(r.accepted, ['Service/good']);
  });

  test('diagnostics are sorted by file and line', () => {
    const objects = [
      ...objectsOf(vs('  - timeout: x\n'), 'b.yaml'),
      ...objectsOf(vs('  - timeout: y\n  - timeout: z\n'), 'a.yaml'),
    ];
    const r = checkObjects(objects);
    assert.deepEqual(r.diagnostics.map((d) => `${d.file}:${d.line}`), ['a.yaml:9', 'a.yaml:10', 'b.yaml:9']);
  });
});

describe('checkObjects never throws', () => {
  const kinds = [...KINDS.map((k) => [k.group ? `${k.group}/${k.versions[0]}` : 'v1', k.kind] as const), ['apps/v1', 'Deployment'] as const];
  const json = fc.jsonValue({ maxDepth: 6 });
  /** Values shaped a little like the schemas, so the property reaches deep fields. */
  const specLike = fc.letrec((tie) => ({
    node: fc.oneof(
      { depthSize: 'small' },
      json,
      fc.dictionary(
        fc.constantFrom('http', 'route', 'match', 'destination', 'host', 'uri', 'exact', 'servers', 'port', 'number', 'tls', 'mode', 'rules', 'paths', 'backend', 'service', 'trafficPolicy', 'subsets', 'timeout', '__proto__', 'constructor', 'x'),
        tie('node'),
      ),
      fc.array(tie('node'), { maxLength: 3 }),
    ),
  })).node;

  test('on arbitrary JSON-ish bodies', () => {
    fc.assert(
      fc.property(fc.constantFrom(...kinds), specLike, json, specLike, ([apiVersion, kind], spec, metadata, extra) => {
        const body: Record<string, unknown> = { apiVersion, kind, metadata, spec, subsets: extra, endpoints: extra, data: extra, status: extra };
        const o: KubeObject = {
          apiVersion,
          kind,
          metadata: { name: 'n', namespace: 'd', labels: {}, annotations: {}, creationTimestamp: null },
          body,
          origin: { file: 'f.yaml', line: 1, order: 'f.yaml#000000', fieldLines: {} },
        };
        const r = checkObjects([o]);
        assert.ok(r.accepted.length <= 1);
        for (const d of r.diagnostics) assert.equal(typeof d.message, 'string');
      }),
      { numRuns: 500 },
    );
  });
});

test('deprecated Istio fields are read with a warning naming the replacement (MG_DEPRECATED_FIELD)', () => {
  const r = check(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user, minimumRingSize: 1024}
    outlierDetection: {consecutiveErrors: 1, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin, namespace: default}
spec:
  hosts: [httpbin]
  http:
  - route: [{destination: {host: httpbin}}]
    mirror: {host: httpbin-v2}
    mirrorPercent: 50
    fault: {delay: {percent: 10, fixedDelay: 5s}}
    corsPolicy: {allowOrigin: [https://a.example]}
`);
  assert.deepEqual(r.accepted, ['DestinationRule/httpbin', 'VirtualService/httpbin']);
  const deprecated = r.diagnostics.filter((d) => d.reason === 'MG_DEPRECATED_FIELD');
  assert.ok(deprecated.every((d) => d.severity === 'warning'));
  const byField = Object.fromEntries(deprecated.map((d) => [d.field, d.message]));
  assert.match(byField['spec.trafficPolicy.outlierDetection.consecutiveErrors'], /use `consecutiveGatewayErrors`/);
  assert.match(byField['spec.trafficPolicy.loadBalancer.consistentHash.minimumRingSize'], /ringHash\.minimumRingSize/);
  assert.match(byField['spec.http[0].mirrorPercent'], /mirrorPercentage/);
  assert.match(byField['spec.http[0].fault.delay.percent'], /`percent` is deprecated; use `percentage\.value`/);
  assert.match(byField['spec.http[0].corsPolicy.allowOrigin'], /allowOrigins/);
  assert.equal(deprecated.length, 5, deprecated.map((d) => d.field).join(', '));
});
