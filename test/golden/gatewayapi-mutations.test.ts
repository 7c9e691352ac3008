/**
 * Property: Gateway API translation never throws and never produces an invalid snapshot, whatever a
 * user writes. Every Gateway API golden input is mutated at random (a field deleted, a value replaced
 * by another JSON value of any type, an array emptied) and run through the real pipeline (schema
 * checks, then translate): the pipeline must return, and no MG_INVALID_IR may appear.
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

const dir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/translate/testdata/gatewayapi');

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** Paths to every node under `spec` (objects, arrays and leaves). */
function paths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v !== null && typeof v === 'object') for (const [k, x] of Object.entries(v)) paths(x, [...at, k], out);
  return out;
}

function mutate(body: Record<string, unknown>, where: (string | number)[], how: 'delete' | 'replace' | 'empty', value: Json): Record<string, unknown> {
  const copy = structuredClone(body);
  if (where.length === 0) return copy;
  let parent: unknown = copy;
  for (const k of where.slice(0, -1)) parent = (parent as Record<string | number, unknown>)[k];
  const last = where[where.length - 1];
  const p = parent as Record<string | number, unknown>;
  if (how === 'delete') {
    if (Array.isArray(p)) p.splice(Number(last), 1);
    else delete p[last];
  } else if (how === 'empty') p[last] = Array.isArray(p[last]) ? [] : {};
  else p[last] = value;
  return copy;
}

const json: fc.Arbitrary<Json> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: -2, max: 70000 }),
  fc.constantFrom('', '*', '*.example.com', 'Exact', 'PathPrefix', 'RegularExpression', 'Terminate', 'Passthrough', 'HTTP', 'TLS', 'TCP', 'Service', 'Gateway', '/', '(', 'a..b', 'x'),
  fc.constant<Json>([]),
  fc.constant<Json>({}),
);

for (const file of readdirSync(dir).filter((f) => f.endsWith('.in.yaml')).sort()) {
  test(`mutated ${file}: translation returns and the snapshot is valid`, () => {
    const objects: KubeObject[] = [];
    const diagnostics: Diagnostic[] = [];
    parseFile(file, readFileSync(path.join(dir, file), 'utf8'), objects, diagnostics);
    const gatewayApi = objects.map((o, i) => [o, i] as const).filter(([o]) => o.apiVersion.startsWith('gateway.networking.k8s.io/'));
    fc.assert(
      fc.property(fc.nat(), fc.nat(), fc.constantFrom('delete', 'replace', 'empty') as fc.Arbitrary<'delete' | 'replace' | 'empty'>, json, (pick, at, how, value) => {
        const [target, index] = gatewayApi[pick % gatewayApi.length];
        const spots = paths(target.body.spec, ['spec']);
        const where = spots[at % spots.length];
        const body = mutate(target.body, where, how, value);
        const changed = [...objects];
        changed[index] = { ...target, body };
        const result = new ConfigPipeline(DEFAULT_TRANSLATE_OPTIONS).run({ objects: changed, diagnostics: [] });
        const invalid = result.diagnostics.filter((d) => d.reason === 'MG_INVALID_IR');
        assert.deepEqual(invalid, [], `${where.join('.')} ${how} ${JSON.stringify(value)}`);
      }),
      { numRuns: Number(process.env.MUTATION_RUNS ?? 60), seed: Number(process.env.MUTATION_SEED ?? 1313) },
    );
  });
}
