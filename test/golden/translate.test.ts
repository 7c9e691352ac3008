/**
 * Golden translation tests: every `src/translate/testdata/<api>/<case>.in.yaml` goes through the real
 * file parser, schema checks and translate; the snapshot and diagnostics must equal `<case>.out.yaml`.
 * `UPDATE_GOLDEN=1 npm test` rewrites the outputs; review the YAML diff.
 *
 * Outputs omit null fields and empty lists and objects (`omitEmpty`), so a new IR field that is null
 * or empty by default does not rewrite every golden: only the cases that set it change.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { parseFile } from '../../src/providers/file/load.js';
import { ConfigPipeline } from '../../src/control/pipeline.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { sha256Hex } from '../../src/lib/hash.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import type { KubeObject } from '../../src/resources/types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/translate/testdata');
const update = process.env.UPDATE_GOLDEN === '1';

for (const api of readdirSync(root).sort()) {
  // Sidecar views have their own harness (test/golden/sidecar.test.ts).
  if (api === 'sidecar') continue;
  const dir = path.join(root, api);
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.in.yaml')).sort()) {
    const name = file.slice(0, -'.in.yaml'.length);
    test(`golden ${api}/${name}`, () => {
      const text = readFileSync(path.join(dir, file), 'utf8');
      const objects: KubeObject[] = [];
      const diagnostics: Diagnostic[] = [];
      parseFile(file, text, objects, diagnostics);
      // A `# translate-options: {json}` line in the leading comment overrides options for that case.
      const opts = /^# translate-options: (.*)$/m.exec(text);
      const result = new ConfigPipeline(opts ? { ...DEFAULT_TRANSLATE_OPTIONS, ...(JSON.parse(opts[1]) as object) } : DEFAULT_TRANSLATE_OPTIONS).run({ objects, diagnostics });
      // PEM blobs are long and say nothing to a reviewer: keep a fingerprint instead.
      // Gateway API cases also show the status translation made (other APIs have none).
      const status = result.gatewayApiStatus;
      const hasStatus = status !== undefined && (status.gatewayClasses.length > 0 || status.gateways.length > 0 || status.routes.length > 0 || status.policies.length > 0);
      const shown = JSON.parse(JSON.stringify({ diagnostics: result.diagnostics, snapshot: result.snapshot, ...(hasStatus ? { gatewayApiStatus: status } : {}) }), (k, v) =>
        (k === 'certChain' || k === 'privateKey' || k === 'pem') && typeof v === 'string' ? `<pem sha256:${sha256Hex(v, 12)}>` : v,
      );
      const actual = stringify(omitEmpty(shown), { lineWidth: 0 });
      const outFile = path.join(dir, `${name}.out.yaml`);
      if (update || !existsSync(outFile)) {
        writeFileSync(outFile, actual);
        if (!update) assert.fail(`${api}/${name}.out.yaml did not exist; written now: review it and run again`);
        return;
      }
      assert.equal(actual, readFileSync(outFile, 'utf8'), `${api}/${name}: translation differs from ${name}.out.yaml (UPDATE_GOLDEN=1 to accept)`);
    });
  }
}

/**
 * The value without object fields that are null, `[]` or `{}` (after the same pruning inside them).
 * List elements are kept as they are (a null in a list is data); '', 0 and false are kept too.
 */
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
