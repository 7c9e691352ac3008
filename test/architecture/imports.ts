/**
 * Every import of every TypeScript file under src/, parsed with the TypeScript compiler (not a regex):
 * static imports and re-exports, `import type`, and dynamic `import()`. Used by the layer-rule test
 * and by the lean-process test to follow what a process loads.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** The worktree's root (this file is dist/test/architecture/imports.js once built). */
export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface Import {
  /** Importing file, relative to ROOT with forward slashes: `src/runtime/http/exchange.ts`. */
  from: string;
  /** The specifier as written. */
  specifier: string;
  /** The project file it names (`src/...ts`), or null for packages and node: built-ins. */
  target: string | null;
  /** `import type`, or every named binding type-only: erased at build time, never loaded. */
  typeOnly: boolean;
  /** `import()` evaluated at run time (not at module load). */
  dynamic: boolean;
  line: number;
}

export function sourceFiles(dir = path.join(ROOT, 'src')): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...sourceFiles(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) out.push(p);
  }
  return out.sort();
}

function resolveTarget(fromAbs: string, specifier: string): string | null {
  if (!specifier.startsWith('.')) return null;
  const abs = path.resolve(path.dirname(fromAbs), specifier).replace(/\.js$/, '.ts');
  return path.relative(ROOT, abs).split(path.sep).join('/');
}

export function parseImports(fileAbs: string): Import[] {
  const text = readFileSync(fileAbs, 'utf8');
  const sf = ts.createSourceFile(fileAbs, text, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
  const from = path.relative(ROOT, fileAbs).split(path.sep).join('/');
  const out: Import[] = [];
  const add = (node: ts.Node, spec: string, typeOnly: boolean, dynamic: boolean) =>
    out.push({ from, specifier: spec, target: resolveTarget(fileAbs, spec), typeOnly, dynamic, line: sf.getLineAndCharacterOfPosition(node.getStart(sf)).line + 1 });
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const c = node.importClause;
      let typeOnly = false;
      if (c) {
        if (c.isTypeOnly) typeOnly = true;
        else if (!c.name && c.namedBindings && ts.isNamedImports(c.namedBindings) && c.namedBindings.elements.length > 0) typeOnly = c.namedBindings.elements.every((e) => e.isTypeOnly);
      }
      add(node, node.moduleSpecifier.text, typeOnly, false);
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const typeOnly = node.isTypeOnly || (!!node.exportClause && ts.isNamedExports(node.exportClause) && node.exportClause.elements.length > 0 && node.exportClause.elements.every((e) => e.isTypeOnly));
      add(node, node.moduleSpecifier.text, typeOnly, false);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments.length === 1 && ts.isStringLiteralLike(node.arguments[0])) {
      add(node, node.arguments[0].text, false, true);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      // `import('../x.js').T` in a type position.
      add(node, node.argument.literal.text, true, false);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

export function allImports(): Import[] {
  return sourceFiles().flatMap(parseImports);
}

/** The layer of a project file: the first directory under src/ (`runtime/compile` kept apart). */
export function layerOf(file: string): string {
  const parts = file.split('/');
  if (parts[0] !== 'src') return parts[0];
  if (parts[1] === 'runtime' && parts[2] === 'compile') return 'runtime/compile';
  return parts.length > 2 ? parts[1] : `(${parts[1]})`;
}

/**
 * Files a module loads at start (static value imports, followed transitively), and the first chain
 * that reaches each package. Dynamic imports and type-only imports are not followed.
 */
export function staticClosure(entry: string, imports: Import[] = allImports()): { files: Set<string>; packages: Map<string, string[]> } {
  const byFrom = new Map<string, Import[]>();
  for (const i of imports) {
    let l = byFrom.get(i.from);
    if (!l) byFrom.set(i.from, (l = []));
    l.push(i);
  }
  const files = new Set<string>([entry]);
  const via = new Map<string, string[]>([[entry, [entry]]]);
  const packages = new Map<string, string[]>();
  const queue = [entry];
  while (queue.length > 0) {
    const f = queue.shift() as string;
    for (const i of byFrom.get(f) ?? []) {
      if (i.typeOnly || i.dynamic) continue;
      if (i.target === null) {
        const pkg = i.specifier.startsWith('node:') ? i.specifier : i.specifier.startsWith('@') ? i.specifier.split('/').slice(0, 2).join('/') : i.specifier.split('/')[0];
        if (!packages.has(pkg)) packages.set(pkg, [...(via.get(f) ?? []), pkg]);
        continue;
      }
      if (files.has(i.target)) continue;
      files.add(i.target);
      via.set(i.target, [...(via.get(f) ?? []), i.target]);
      queue.push(i.target);
    }
  }
  return { files, packages };
}
