/**
 * docs/architecture.md's dependency rules as data, checked over every import of src/ (imports.ts).
 * Test files (`*.test.ts`) are not checked: they are not shipped and may read fixtures from disk.
 */
import { layerOf, type Import } from './imports.js';

/** Node built-ins a pure layer must not load (I/O, processes, environment, clock, engine state). */
const IMPURE_BUILTINS = new Set(
  ['fs', 'fs/promises', 'net', 'tls', 'http', 'https', 'http2', 'dgram', 'dns', 'dns/promises', 'child_process', 'cluster', 'os', 'process', 'worker_threads', 'readline', 'perf_hooks', 'timers', 'timers/promises', 'v8', 'vm', 'inspector'].map((m) => `node:${m}`),
);

/** Pure layers: same input, same output; no I/O. node:crypto is allowed (hashing, certificate parsing). */
const PURE = new Set(['translate', 'ir', 'runtime/compile', 'formats']);

/** What each layer may import from the project (absent: no restriction). */
const MAY_IMPORT: Record<string, readonly string[]> = {
  lib: ['lib'],
  ir: ['ir', 'lib'],
  formats: ['formats', 'lib'],
  translate: ['translate', 'ir', 'lib', 'api', 'resources', 'formats'],
};

/** What each layer must never import. */
const NEVER: Record<string, readonly string[]> = {
  runtime: ['api', 'resources', 'translate', 'providers', 'control', 'cli', 'admin'],
  'runtime/compile': ['api', 'resources', 'translate', 'providers', 'control', 'cli', 'admin'],
  providers: ['ir', 'translate', 'runtime', 'runtime/compile', 'control', 'cli', 'admin', 'observability'],
  api: ['control', 'cli', 'admin', 'runtime', 'runtime/compile', 'translate', 'providers'],
  resources: ['control', 'cli', 'admin', 'runtime', 'runtime/compile', 'translate', 'providers'],
};

/**
 * The engines' seam interfaces (issue 11, item 0): files of types that depend on nothing in the
 * runtime themselves, so the compiled types may name them (type-only).
 */
const SEAMS = new Set(['src/runtime/upstream/client.ts']);

/** Files with a rule of their own: importable layers only. */
const FILE_RULES: Record<string, readonly string[]> = {
  // The compiled snapshot's types depend on nothing in the runtime (the runtime's own types are
  // merged in by src/runtime/compiled-slots.ts; seam interfaces are allowed, type-only).
  'src/runtime/compile/types.ts': ['ir', 'lib', 'runtime/compile'],
  ...Object.fromEntries([...SEAMS].map((f) => [f, ['ir', 'lib', 'runtime/compile']])),
};

export interface Violation {
  at: string;
  specifier: string;
  rule: string;
}

export function checkLayerRules(imports: readonly Import[]): Violation[] {
  const out: Violation[] = [];
  for (const i of imports) {
    if (i.from.endsWith('.test.ts') || !i.from.startsWith('src/')) continue;
    const from = layerOf(i.from);
    const at = `${i.from}:${i.line}`;
    if (i.target === null) {
      if (PURE.has(from) && !i.typeOnly && IMPURE_BUILTINS.has(i.specifier)) out.push({ at, specifier: i.specifier, rule: `${from}/ is pure: no ${i.specifier}` });
      continue;
    }
    const to = layerOf(i.target);
    const fileRule = FILE_RULES[i.from];
    const seam = i.typeOnly && SEAMS.has(i.target) && i.from === 'src/runtime/compile/types.ts';
    if (fileRule && !fileRule.includes(to) && !seam) out.push({ at, specifier: i.specifier, rule: `${i.from} imports only ${fileRule.join('/, ')}/` });
    const may = MAY_IMPORT[from];
    if (may && !may.includes(to)) out.push({ at, specifier: i.specifier, rule: `${from}/ imports only ${may.join('/, ')}/` });
    if (NEVER[from]?.includes(to)) out.push({ at, specifier: i.specifier, rule: `${from}/ never imports ${to}/` });
    // Only control/ and cli/ wire layers together; admin/ reads the controller, and the control
    // plane's metrics (observability/control-metrics.ts) name its types.
    if (to === 'control' || to === 'cli' || to === 'admin') {
      const allowed = from === 'control' || from === 'cli' || from === 'admin' || (from === 'observability' && i.typeOnly && to === 'control');
      if (!allowed) out.push({ at, specifier: i.specifier, rule: `only control/ and cli/ wire layers: ${from}/ must not import ${to}/` });
    }
  }
  return out;
}
