/** The fuzzer's short CI run: every target, a fixed seed, a few seconds (see fuzz.ts to run longer). */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { h1DiffTarget, runFuzz } from './fuzz.js';

test('fuzz: normalize, translate, wire and h1diff targets, seed 5005, 8 s', { timeout: 60_000 }, async () => {
  const report = await runFuzz({ seed: 5005, seconds: 8, target: 'all' });
  assert.equal(report.length, 4);
  for (const r of report) assert.ok(r.runs > 0, `${r.target} did not run`);
});

test('differential: meshgate HTTP/1.1 parser against llhttp, seed 7007, 3000 inputs', () => {
  const s = h1DiffTarget(3000, 7007);
  // Not vacuous: many inputs are accepted by both (and agree), with bodies, and some are refused only by meshgate.
  assert.ok(s.bothAccepted > s.runs / 4, `only ${s.bothAccepted} of ${s.runs} inputs were accepted by both parsers`);
  assert.ok(s.withBody > s.runs / 8, `only ${s.withBody} accepted inputs carried a body`);
  assert.ok(s.stricter > 0, 'no input was refused by meshgate alone');
});
