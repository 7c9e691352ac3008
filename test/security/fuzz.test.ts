/** The fuzzer's short CI run: every target, a fixed seed, a few seconds (see fuzz.ts to run longer). */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runFuzz } from './fuzz.js';

test('fuzz: normalize, translate and wire targets, seed 5005, 6 s', { timeout: 60_000 }, async () => {
  const report = await runFuzz({ seed: 5005, seconds: 6, target: 'all' });
  assert.equal(report.length, 3);
  for (const r of report) assert.ok(r.runs > 0, `${r.target} did not run`);
});
