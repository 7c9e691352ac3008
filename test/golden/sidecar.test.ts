/**
 * Golden sidecar views: every `src/translate/testdata/sidecar/<case>.in.yaml` goes through the real
 * file parser and schema checks, then translateSidecar for the proxy its leading comment names:
 *
 *   # proxy: {"namespace":"default","serviceAccount":"sleep","podName":"sleep-1","podIps":["10.0.0.10"],"trustDomain":"cluster.local"}
 *
 * (and optionally `# translate-options: {json}`, as the gateway goldens). The view and diagnostics
 * must equal `<case>.out.yaml` (null fields and empty lists/objects omitted, as there);
 * `UPDATE_GOLDEN=1` rewrites the outputs. Each case is also translated from shuffled object orders,
 * which must give the same bytes and version.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { stringify } from 'yaml';
import { parseFile } from '../../src/providers/file/load.js';
import { checkObjects } from '../../src/api/kinds.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { translateSidecar, type SidecarProxyMeta } from '../../src/translate/sidecar/index.js';
import { compareDiagnostics, type Diagnostic } from '../../src/lib/diagnostic.js';
import type { KubeObject } from '../../src/resources/types.js';
import type { TranslateOptions } from '../../src/translate/types.js';

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/translate/testdata/sidecar');
const update = process.env.UPDATE_GOLDEN === '1';

function run(objects: KubeObject[], loadDiagnostics: Diagnostic[], proxy: SidecarProxyMeta, options: TranslateOptions): { text: string; version: string } {
  const checked = checkObjects(objects);
  const r = translateSidecar(new ResourceSet(checked.accepted), proxy, options);
  const diagnostics = [...loadDiagnostics, ...checked.diagnostics, ...r.diagnostics].sort(compareDiagnostics);
  return { text: stringify(omitEmpty(JSON.parse(JSON.stringify({ diagnostics, snapshot: r.ir }))), { lineWidth: 0 }), version: r.ir.version };
}

for (const file of existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.in.yaml')).sort() : []) {
  const name = file.slice(0, -'.in.yaml'.length);
  test(`golden sidecar/${name}`, () => {
    const text = readFileSync(path.join(dir, file), 'utf8');
    const proxyLine = /^# proxy: (.*)$/m.exec(text);
    assert.ok(proxyLine, `${file}: the leading comment needs a "# proxy: {json}" line`);
    const proxy = JSON.parse(proxyLine[1]) as SidecarProxyMeta;
    const opts = /^# translate-options: (.*)$/m.exec(text);
    const options = opts ? { ...DEFAULT_TRANSLATE_OPTIONS, ...(JSON.parse(opts[1]) as object) } : DEFAULT_TRANSLATE_OPTIONS;
    const objects: KubeObject[] = [];
    const diagnostics: Diagnostic[] = [];
    parseFile(file, text, objects, diagnostics);
    const actual = run(objects, diagnostics, proxy, options);
    // Order independence: shuffled input, same bytes.
    fc.assert(
      fc.property(fc.shuffledSubarray(objects, { minLength: objects.length, maxLength: objects.length }), (shuffled) => {
        assert.equal(run(shuffled, [...diagnostics].reverse(), proxy, options).text, actual.text);
      }),
      { numRuns: 8, seed: 16 },
    );
    const outFile = path.join(dir, `${name}.out.yaml`);
    if (update || !existsSync(outFile)) {
      writeFileSync(outFile, actual.text);
      if (!update) assert.fail(`sidecar/${name}.out.yaml did not exist; written now: review it and run again`);
      return;
    }
    assert.equal(actual.text, readFileSync(outFile, 'utf8'), `sidecar/${name}: translation differs from ${name}.out.yaml (UPDATE_GOLDEN=1 to accept)`);
  });
}

/** As in translate.test.ts: object fields that are null, `[]` or `{}` are left out. */
function omitEmpty(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(omitEmpty);
  if (typeof v !== 'object' || v === null) return v;
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(v)) {
    const p = omitEmpty(x);
    if (p === null || (Array.isArray(p) && p.length === 0) || (typeof p === 'object' && p !== null && !Array.isArray(p) && Object.keys(p).length === 0)) continue;
    out[k] = p;
  }
  return out;
}
