/**
 * The snapshot version hashes content, not source positions (issue 11, item 6): a comment line or a
 * blank line added to a YAML file moves every object's `source.line` but keeps the version (and so
 * causes no reload), and a changed file name keeps it too; a change of content makes a new one.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigPipeline } from '../../src/control/pipeline.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import { parseFile } from '../../src/providers/file/load.js';
import type { KubeObject } from '../../src/resources/types.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { versionText } from '../../src/translate/version.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/translate/testdata');

function snapshotOf(file: string, text: string): IRSnapshot {
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  parseFile(file, text, objects, diagnostics);
  const r = new ConfigPipeline(DEFAULT_TRANSLATE_OPTIONS).run({ objects, diagnostics });
  assert.ok(r.snapshot, `${file} translates`);
  return r.snapshot;
}

const BASE = readFileSync(path.join(root, 'istio/basic-binding.in.yaml'), 'utf8');

test('a comment line added to the YAML keeps the version, though every line number moved', () => {
  const before = snapshotOf('gw.yaml', BASE);
  const after = snapshotOf('gw.yaml', `# a comment added by an operator\n\n${BASE}`);
  const line = (s: IRSnapshot) => s.listeners[0].filterChains[0].virtualHosts[0].routes[0].source.line;
  assert.equal(line(after), (line(before) ?? 0) + 2, 'the route\'s source line moved by two');
  assert.equal(after.version, before.version);
});

test('a renamed file keeps the version', () => {
  assert.equal(snapshotOf('renamed.yaml', BASE).version, snapshotOf('gw.yaml', BASE).version);
});

test('a change of content changes the version', () => {
  const before = snapshotOf('gw.yaml', BASE);
  const after = snapshotOf('gw.yaml', BASE.replace('uri: {prefix: /api}', 'uri: {prefix: /api2}'));
  assert.notEqual(after.version, before.version);
});

test('a file name that looks like JSON does not confuse the version text', () => {
  const tricky = snapshotOf('a","line":1,"x.yaml', BASE);
  assert.equal(tricky.version, snapshotOf('gw.yaml', BASE).version);
});

/** Every object with a `file` or `line` key, with its path: those must be SourceRefs (kind, namespace, name, file, line). */
function positionKeys(v: unknown, at: string, out: string[]): void {
  if (Array.isArray(v)) return v.forEach((x, i) => positionKeys(x, `${at}[${i}]`, out));
  if (typeof v !== 'object' || v === null) return;
  const keys = Object.keys(v);
  if ((keys.includes('file') || keys.includes('line')) && keys.join(',') !== 'kind,namespace,name,file,line') out.push(`${at}: {${keys.join(', ')}}`);
  for (const k of keys) positionKeys((v as Record<string, unknown>)[k], `${at}.${k}`, out);
}

test('in every golden snapshot, `file` and `line` are keys of SourceRefs only (the version text drops exactly those)', () => {
  let checked = 0;
  for (const api of readdirSync(root)) {
    for (const f of readdirSync(path.join(root, api)).filter((x) => x.endsWith('.in.yaml'))) {
      const objects: KubeObject[] = [];
      const diagnostics: Diagnostic[] = [];
      parseFile(f, readFileSync(path.join(root, api, f), 'utf8'), objects, diagnostics);
      const snap = new ConfigPipeline(DEFAULT_TRANSLATE_OPTIONS).run({ objects, diagnostics }).snapshot;
      if (!snap) continue;
      const bad: string[] = [];
      const { version: _v, ...parts } = snap;
      positionKeys(parts, `${api}/${f}`, bad);
      assert.deepEqual(bad, []);
      assert.doesNotMatch(versionText(parts), /"(file|line)":/, `${api}/${f}: no position left in the version text`);
      checked++;
    }
  }
  assert.ok(checked > 20, `checked ${checked} snapshots`);
});
