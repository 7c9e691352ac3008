/**
 * The layer rules of docs/architecture.md hold for every import in src/ (issue 11, item 6): a new
 * import that breaks one fails here, naming the file, line and rule.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { allImports, parseImports, ROOT, sourceFiles, type Import } from './imports.js';
import { checkLayerRules } from './layer-rules.js';
import path from 'node:path';

test('every import in src/ follows the layer rules', () => {
  const imports = allImports();
  assert.ok(imports.length > 500, `expected the import parser to find the project's imports, found ${imports.length}`);
  const violations = checkLayerRules(imports);
  assert.deepEqual(violations.map((v) => `${v.at} ${v.specifier}: ${v.rule}`), []);
});

test('the parser sees static, type-only, re-export and dynamic imports', () => {
  const main = parseImports(path.join(ROOT, 'src/cli/main.ts'));
  assert.ok(main.some((i) => i.specifier === './kubernetes.js' && i.dynamic), 'dynamic import of ./kubernetes.js');
  assert.ok(main.some((i) => i.specifier === '../control/dataplane-types.js' && i.typeOnly), 'import type of the DataPlane');
  const ir = parseImports(path.join(ROOT, 'src/ir/types.ts'));
  assert.ok(ir.some((i) => i.specifier === '../lib/re2.js' && i.typeOnly), 'export type { Regex } from lib/re2');
  assert.ok(sourceFiles().every((f) => f.endsWith('.ts')));
});

const imp = (from: string, specifier: string, target: string | null, typeOnly = false): Import => ({ from, specifier, target, typeOnly, dynamic: false, line: 1 });

for (const c of [
  { desc: 'translate reads the file system', i: imp('src/translate/x.ts', 'node:fs', null) },
  { desc: 'runtime/compile opens a socket', i: imp('src/runtime/compile/x.ts', 'node:net', null) },
  { desc: 'runtime imports translate', i: imp('src/runtime/http/x.ts', '../../translate/index.js', 'src/translate/index.ts') },
  { desc: 'runtime imports api types', i: imp('src/runtime/http/x.ts', '../../api/kinds.js', 'src/api/kinds.ts', true) },
  { desc: 'providers import ir types', i: imp('src/providers/file/x.ts', '../../ir/types.js', 'src/ir/types.ts', true) },
  { desc: 'providers import control types', i: imp('src/providers/kubernetes/x.ts', '../../control/source.js', 'src/control/source.ts', true) },
  { desc: 'lib imports ir', i: imp('src/lib/x.ts', '../ir/types.js', 'src/ir/types.ts', true) },
  { desc: 'ir imports runtime', i: imp('src/ir/x.ts', '../runtime/runtime.js', 'src/runtime/runtime.ts', true) },
  { desc: 'translate imports observability', i: imp('src/translate/telemetry/x.ts', '../../observability/cel.js', 'src/observability/cel.ts') },
  { desc: 'compile/types imports a runtime filter', i: imp('src/runtime/compile/types.ts', '../filters/security.js', 'src/runtime/filters/security.ts', true) },
  { desc: 'compile/types loads the upstream client seam at run time', i: imp('src/runtime/compile/types.ts', '../upstream/client.js', 'src/runtime/upstream/client.ts') },
  { desc: 'the upstream client seam imports a runtime module', i: imp('src/runtime/upstream/client.ts', './h1-pool.js', 'src/runtime/upstream/h1-pool.ts', true) },
  { desc: 'runtime wires itself to control', i: imp('src/runtime/x.ts', '../control/controller.js', 'src/control/controller.ts') },
]) {
  test(`a violation is reported: ${c.desc}`, () => {
    assert.equal(checkLayerRules([c.i]).length > 0, true, `expected a violation for ${c.i.from} -> ${c.i.specifier}`);
  });
}

for (const c of [
  { desc: 'translate hashes with node:crypto', i: imp('src/translate/x.ts', 'node:crypto', null) },
  { desc: 'compile names a TLS type', i: imp('src/runtime/compile/x.ts', 'node:tls', null, true) },
  { desc: 'translate parses log formats from formats/', i: imp('src/translate/telemetry/x.ts', '../../formats/cel.js', 'src/formats/cel.ts') },
  { desc: 'cli wires control', i: imp('src/cli/x.ts', '../control/controller.js', 'src/control/controller.ts') },
  { desc: 'a test file reads fixtures', i: imp('src/translate/x.test.ts', 'node:fs', null) },
  { desc: 'compile/types names the upstream client seam (type-only)', i: imp('src/runtime/compile/types.ts', '../upstream/client.js', 'src/runtime/upstream/client.ts', true) },
]) {
  test(`allowed: ${c.desc}`, () => {
    assert.deepEqual(checkLayerRules([c.i]), []);
  });
}
