/**
 * Property: translation does not depend on the order objects arrive in. Every golden input is
 * translated in its file order and in shuffled orders (fast-check permutations); snapshots and
 * diagnostics must be identical.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { parseFile } from '../../src/providers/file/load.js';
import { ConfigPipeline } from '../../src/control/pipeline.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import type { KubeObject } from '../../src/resources/types.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/translate/testdata');

function translateAll(objects: KubeObject[], diagnostics: Diagnostic[]): string {
  const r = new ConfigPipeline(DEFAULT_TRANSLATE_OPTIONS).run({ objects, diagnostics });
  return JSON.stringify({ snapshot: r.snapshot, diagnostics: r.diagnostics });
}

for (const api of readdirSync(root).sort()) {
  // Sidecar views have their own harness (test/golden/sidecar.test.ts).
  if (api === 'sidecar') continue;
  for (const file of readdirSync(path.join(root, api)).filter((f) => f.endsWith('.in.yaml')).sort()) {
    test(`order independence ${api}/${file}`, () => {
      const objects: KubeObject[] = [];
      const diagnostics: Diagnostic[] = [];
      parseFile(file, readFileSync(path.join(root, api, file), 'utf8'), objects, diagnostics);
      const expected = translateAll(objects, diagnostics);
      fc.assert(
        fc.property(fc.shuffledSubarray(objects, { minLength: objects.length, maxLength: objects.length }), (shuffled) => {
          assert.equal(translateAll(shuffled, [...diagnostics].reverse()), expected);
        }),
        { numRuns: 15, seed: 42 },
      );
    });
  }
}
