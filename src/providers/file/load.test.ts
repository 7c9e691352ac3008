import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { Diagnostic } from '../../lib/diagnostic.js';
import type { KubeObject } from '../../resources/types.js';
import { loadDirectory, parseFile } from './load.js';
import type { LoadResult } from './load.js';

/** Write `files` (relative path -> text) into a fresh temp dir and load it. */
async function loadFiles(files: Record<string, string>): Promise<LoadResult> {
  const dir = await mkdtemp(path.join(tmpdir(), 'meshgate-load-'));
  try {
    for (const [rel, text] of Object.entries(files)) {
      await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
      await writeFile(path.join(dir, rel), text);
    }
    return await loadDirectory(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const ingress = (name: string, extra = ''): string => `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: ${name}
${extra}spec:
  rules:
  - host: a.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
`;

describe('loadDirectory', () => {
  test('multi-document YAML: one object per document, empty documents skipped, lines and order', async () => {
    const r = await loadFiles({
      'a.yaml': `# leading comment\n${ingress('one')}---\n---\n# only a comment\n---\n${ingress('two')}`,
    });
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(r.files, ['a.yaml']);
    assert.deepEqual(
      r.objects.map((o) => [o.metadata.name, o.origin.file, o.origin.line, o.origin.order]),
      [
        ['one', 'a.yaml', 2, 'a.yaml#000000'],
        ['two', 'a.yaml', 22, 'a.yaml#000003'],
      ],
    );
  });

  test('field lines: every node, dot for keys, [i] for items', async () => {
    const r = await loadFiles({ 'x.yaml': ingress('one') });
    const lines = r.objects[0].origin.fieldLines;
    assert.equal(lines['apiVersion'], 1);
    assert.equal(lines['metadata.name'], 4);
    assert.equal(lines['spec.rules'], 6);
    assert.equal(lines['spec.rules[0]'], 7);
    assert.equal(lines['spec.rules[0].host'], 7);
    assert.equal(lines['spec.rules[0].http.paths[0].pathType'], 11);
    assert.equal(lines['spec.rules[0].http.paths[0].backend.service.port.number'], 16);
  });

  test('namespace defaults to `default`; cluster-scoped kinds keep ""; labels/annotations default {}', async () => {
    const r = await loadFiles({
      'a.yaml': `${ingress('one')}---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: { name: meshgate, namespace: ignored }
spec: { controller: meshgate.io/ingress }
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
  labels: { app: web, version: 2 }
  creationTimestamp: "2024-05-01T10:00:00Z"
`,
    });
    assert.deepEqual(r.diagnostics, []);
    const [ing, cls, svc] = r.objects;
    assert.deepEqual(ing.metadata, { name: 'one', namespace: 'default', labels: {}, annotations: {}, creationTimestamp: null });
    assert.equal(cls.metadata.namespace, '');
    assert.equal(svc.metadata.namespace, 'shop');
    assert.deepEqual(svc.metadata.labels, { app: 'web' }, 'non-string label values are left to the schema check');
    assert.equal(svc.metadata.creationTimestamp, '2024-05-01T10:00:00Z');
    assert.equal((svc.body.metadata as Record<string, unknown>).labels !== undefined, true, 'body is the object as parsed');
  });

  test('JSON files, and List / typed *List items with their own lines and order', async () => {
    const r = await loadFiles({
      'b.json': JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'json-svc' }, spec: { ports: [{ port: 80 }] } }, null, '\t'),
      'c.yaml': `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: { name: s1 }
- apiVersion: v1
  kind: Service
  metadata:
    name: s2
---
apiVersion: networking.k8s.io/v1
kind: IngressList
items:
- metadata: { name: i1 }
  spec: {}
`,
    });
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(
      r.objects.map((o) => [o.kind, o.metadata.name, o.origin.file, o.origin.line, o.origin.order]),
      [
        ['Service', 'json-svc', 'b.json', 1, 'b.json#000000'],
        ['Service', 's1', 'c.yaml', 4, 'c.yaml#000000.000000'],
        ['Service', 's2', 'c.yaml', 7, 'c.yaml#000000.000001'],
        ['Ingress', 'i1', 'c.yaml', 15, 'c.yaml#000001.000000'],
      ],
    );
    assert.equal(r.objects[0].origin.fieldLines['spec.ports[0].port'], 10);
    assert.equal(r.objects[0].origin.fieldLines['metadata.name'], 5);
    assert.equal(r.objects[2].origin.fieldLines['metadata.name'], 10, 'item field lines are relative to the item');
    assert.equal(r.objects[3].apiVersion, 'networking.k8s.io/v1', 'typed list items inherit apiVersion and kind');
  });

  test('a YAML syntax error is reported with its line; the other documents of the file still load', async () => {
    const r = await loadFiles({
      'bad.yaml': `${ingress('good1')}---\napiVersion: v1\nkind: Service\nmetadata:\n  name: [oops\n---\n${ingress('good2')}`,
    });
    assert.deepEqual(
      r.objects.map((o) => o.metadata.name),
      ['good1', 'good2'],
    );
    assert.ok(r.diagnostics.length >= 1);
    for (const d of r.diagnostics) {
      assert.equal(d.reason, 'MG_PARSE_ERROR');
      assert.equal(d.severity, 'error');
      assert.equal(d.file, 'bad.yaml');
      assert.ok(d.line !== null && d.line >= 20 && d.line <= 22, `line ${d.line} should be near the broken document (20-22)`);
    }
  });

  test('invalid JSON is a parse error with a line', async () => {
    const r = await loadFiles({ 'x.json': '{\n  "apiVersion": "v1",\n  "kind": \n}\n' });
    assert.equal(r.objects.length, 0);
    assert.equal(r.diagnostics[0].reason, 'MG_PARSE_ERROR');
    assert.equal(r.diagnostics[0].file, 'x.json');
    assert.equal(r.diagnostics[0].line, 4);
  });

  test('a JSON list of objects (kind: List)', async () => {
    const r = await loadFiles({
      'l.json': JSON.stringify({ apiVersion: 'v1', kind: 'List', items: [{ apiVersion: 'v1', kind: 'Secret', metadata: { name: 's', namespace: 'n' } }] }),
    });
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(r.objects.map((o) => `${o.kind}/${o.metadata.namespace}/${o.metadata.name}`), ['Secret/n/s']);
  });

  test('label keys with dots are quoted in field paths', async () => {
    const r = await loadFiles({ 'a.yaml': 'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  labels:\n    app.kubernetes.io/name: web\n' });
    assert.equal(r.objects[0].origin.fieldLines['metadata.labels["app.kubernetes.io/name"]'], 6);
  });

  test('non-objects and objects without apiVersion, kind or metadata.name: MG_INVALID_OBJECT', async () => {
    const r = await loadFiles({
      'x.yaml': `just a string\n---\n- a\n- list\n---\nkind: Service\nmetadata: { name: s }\n---\napiVersion: v1\nkind: Service\nmetadata: {}\n---\napiVersion: v1\nmetadata: { name: s }\n`,
    });
    assert.equal(r.objects.length, 0);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.reason, d.line]),
      [
        ['MG_INVALID_OBJECT', 1],
        ['MG_INVALID_OBJECT', 3],
        ['MG_INVALID_OBJECT', 6],
        ['MG_INVALID_OBJECT', 9],
        ['MG_INVALID_OBJECT', 13],
      ],
    );
    assert.match(r.diagnostics[2].message, /apiVersion/);
    assert.match(r.diagnostics[3].message, /metadata\.name/);
    assert.match(r.diagnostics[4].message, /kind/);
  });

  test('duplicates across files: the first in path order is kept, the later one reported naming both files', async () => {
    const r = await loadFiles({
      'b/z.yaml': ingress('web'),
      'a.yaml': `${ingress('other')}---\n${ingress('web')}`,
      'c.yaml': ingress('web', '  namespace: elsewhere\n'),
    });
    assert.deepEqual(r.files, ['a.yaml', 'b/z.yaml', 'c.yaml']);
    assert.deepEqual(
      r.objects.map((o) => `${o.origin.file}:${o.metadata.namespace}/${o.metadata.name}`),
      ['a.yaml:default/other', 'a.yaml:default/web', 'c.yaml:elsewhere/web'],
    );
    assert.equal(r.diagnostics.length, 1);
    const d = r.diagnostics[0];
    assert.equal(d.reason, 'MG_DUPLICATE_OBJECT');
    assert.equal(d.severity, 'error');
    assert.equal(d.file, 'b/z.yaml');
    assert.equal(d.line, 1);
    assert.deepEqual(d.object, { kind: 'Ingress', namespace: 'default', name: 'web' });
    assert.match(d.message, /a\.yaml:18/);
    assert.match(d.message, /b\/z\.yaml:1/);
  });

  test('recursion: sorted paths, only yaml/yml/json, dotfiles and dot-directories skipped', async () => {
    const r = await loadFiles({
      'z.yml': ingress('z'),
      'sub/deeper/a.YAML': ingress('deep'),
      'sub/readme.md': 'not yaml',
      '.hidden.yaml': ingress('hidden'),
      '.git/x.yaml': ingress('git'),
      'm.json': '',
    });
    assert.deepEqual(r.files, ['m.json', 'sub/deeper/a.YAML', 'z.yml']);
    assert.deepEqual(
      r.objects.map((o) => o.metadata.name),
      ['deep', 'z'],
    );
  });

  describe('symlinks', () => {
    let dir = '';
    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'meshgate-link-'));
      await mkdir(path.join(dir, 'real'));
      await writeFile(path.join(dir, 'real', 'a.yaml'), ingress('a'));
      await symlink(path.join(dir, 'real'), path.join(dir, 'real', 'loop'));
      await symlink(path.join(dir, 'real', 'a.yaml'), path.join(dir, 'linked.yaml'));
    });
    after(() => rm(dir, { recursive: true, force: true }));

    test('followed, without looping', async () => {
      const r = await loadDirectory(dir);
      assert.deepEqual(r.files, ['linked.yaml', 'real/a.yaml']);
      assert.equal(r.diagnostics.length, 1, 'the same object through a file link is a duplicate');
      assert.equal(r.diagnostics[0].reason, 'MG_DUPLICATE_OBJECT');
    });
  });

  test('a missing directory rejects', async () => {
    await assert.rejects(loadDirectory(path.join(tmpdir(), 'meshgate-does-not-exist-xyz')));
  });

  test('parseFile never throws, whatever the text', () => {
    const yamlish = fc
      .array(fc.oneof(fc.constantFrom('---\n', 'kind: List\n', 'items:\n', '- ', '  ', 'apiVersion: v1\n', 'metadata: {name: x}\n', '&a [*a]\n', '{', '}', '"', ': ', '\t', '\n'), fc.string()), { maxLength: 30 })
      .map((parts) => parts.join(''));
    fc.assert(
      fc.property(yamlish, fc.constantFrom('f.yaml', 'f.json'), (text, file) => {
        const objects: KubeObject[] = [];
        const diagnostics: Diagnostic[] = [];
        parseFile(file, text, objects, diagnostics);
        for (const d of diagnostics) assert.equal(d.file, file);
      }),
      { numRuns: 500 },
    );
  });
});
