/**
 * Read a directory of Kubernetes-style YAML/JSON into KubeObjects, with the file and line of every
 * object and field, so that every later diagnostic can point at `file:line`.
 */

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseAllDocuments } from 'yaml';
import type { Node as YamlNode } from 'yaml';
import { fieldIndex, fieldKey } from '../../api/field-path.js';
import { isClusterScoped } from '../../api/kinds.js';
import { compareDiagnostics } from '../../lib/diagnostic.js';
import type { Diagnostic } from '../../lib/diagnostic.js';
import type { KubeObject, ObjectMeta } from '../../resources/types.js';
import type { EmptiedFiles } from './emptied.js';

export interface LoadResult {
  /** Objects in file order (path, then document, then List item); duplicates removed. */
  objects: KubeObject[];
  /** Sorted with compareDiagnostics. */
  diagnostics: Diagnostic[];
  /** Files read, relative to the directory, sorted. */
  files: string[];
}

const CONFIG_FILE = /\.(ya?ml|json)$/i;

/**
 * Load every *.yaml, *.yml and *.json under `dir` (recursively; dotfiles and dot-directories skipped;
 * symlinks followed, loops not). Rejects only when `dir` itself cannot be read.
 */
export async function loadDirectory(dir: string, emptied: EmptiedFiles | null = null): Promise<LoadResult> {
  const files = await listConfigFiles(dir);
  emptied?.retain(files);
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(path.join(dir, file), 'utf8');
      // A file truncated for a rewrite in place keeps its last content for a moment (emptied.ts).
      if (emptied !== null && text === '') text = emptied.filter(file, text, (await stat(path.join(dir, file))).mtimeMs, Date.now());
      else if (emptied !== null) emptied.filter(file, text, 0, 0);
    } catch (err) {
      diagnostics.push(fileDiagnostic('MG_PARSE_ERROR', file, null, `cannot read file: ${(err as Error).message}`));
      continue;
    }
    parseFile(file, text, objects, diagnostics);
  }
  const kept = dropDuplicates(objects, diagnostics);
  diagnostics.sort(compareDiagnostics);
  return { objects: kept, diagnostics, files };
}

/**
 * Relative paths (with `/`) of the config files under `dir`, sorted. Shared with the watcher, so it
 * watches exactly what the loader reads.
 */
export async function listConfigFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const seenDirs = new Set<string>([await realpath(dir)]);
  async function walk(abs: string, rel: string): Promise<void> {
    let entries;
    try {
      entries = await readdir(abs, { withFileTypes: true });
    } catch {
      return; // vanished or unreadable sub-directory: nothing to read there
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const childAbs = path.join(abs, e.name);
      const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
      let isDir = e.isDirectory();
      let isFile = e.isFile();
      if (e.isSymbolicLink()) {
        try {
          const st = await stat(childAbs);
          isDir = st.isDirectory();
          isFile = st.isFile();
        } catch {
          continue; // dangling link
        }
      }
      if (isDir) {
        let real: string;
        try {
          real = await realpath(childAbs);
        } catch {
          continue;
        }
        if (seenDirs.has(real)) continue; // a symlink loop or a second link to the same tree
        seenDirs.add(real);
        await walk(childAbs, childRel);
      } else if (isFile && CONFIG_FILE.test(e.name)) {
        out.push(childRel);
      }
    }
  }
  await walk(dir, '');
  return out.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Parse one file's text (YAML, multi-document, or JSON) into objects and diagnostics. */
export function parseFile(file: string, text: string, objects: KubeObject[], diagnostics: Diagnostic[]): void {
  const lineCounter = new LineCounter();
  const lineAt = (offset: number): number => lineCounter.linePos(offset).line;
  const docs = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  if (/\.json$/i.test(file) && text.trim() !== '') {
    // JSON is read through the YAML parser for its line numbers, but must be JSON: YAML would accept
    // `{"a": }`. A JSON that YAML refuses (duplicate keys) still loads, without field lines.
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (err) {
      const at = jsonErrorOffset(text);
      diagnostics.push(fileDiagnostic('MG_PARSE_ERROR', file, at === null ? null : lineAt(at), `JSON syntax error: ${firstLine((err as Error).message)}`));
      return;
    }
    if (!Array.isArray(docs) || docs.length !== 1 || docs[0].errors.length > 0) {
      addValue(value, null, file, 1, `${file}#000000`, lineAt, objects, diagnostics);
      return;
    }
  }
  if (!Array.isArray(docs)) return; // an empty stream
  docs.forEach((doc, docIndex) => {
    if (doc.errors.length > 0) {
      for (const err of doc.errors) {
        diagnostics.push(fileDiagnostic('MG_PARSE_ERROR', file, lineAt(err.pos[0]), `YAML syntax error: ${firstLine(err.message)}`));
      }
      return; // this document only; the others of the file still load
    }
    const root = doc.contents;
    if (root === null || (isScalar(root) && (root.value === null || root.value === undefined))) return; // empty document
    const line = root.range ? lineAt(root.range[0]) : null;
    const order = `${file}#${String(docIndex).padStart(6, '0')}`;
    let value: unknown;
    try {
      value = doc.toJS({ maxAliasCount: 1000 });
    } catch (err) {
      diagnostics.push(fileDiagnostic('MG_PARSE_ERROR', file, line, `YAML error: ${firstLine((err as Error).message)}`));
      return;
    }
    addValue(value, root, file, line, order, lineAt, objects, diagnostics);
  });
}

/** Add one document's value (`root` its YAML node, or null when there is none): an object, or a List of them. */
function addValue(
  value: unknown,
  root: unknown,
  file: string,
  line: number | null,
  order: string,
  lineAt: (offset: number) => number,
  objects: KubeObject[],
  diagnostics: Diagnostic[],
): void {
  if (isRecord(value) && Array.isArray(value.items) && typeof value.kind === 'string' && value.kind.endsWith('List')) {
    // `kind: List` or a typed list (`IngressList`): each item is an object; typed lists may omit
    // the items' apiVersion and kind (the API server does), so they are taken from the list.
    const itemKind = value.kind === 'List' ? null : value.kind.slice(0, -'List'.length);
    const itemNodes = isMap(root) ? root.get('items', true) : undefined;
    value.items.forEach((item: unknown, i: number) => {
      const node = isSeq(itemNodes) ? (itemNodes.items[i] as YamlNode | undefined) : undefined;
      const itemLine = node?.range ? lineAt(node.range[0]) : line;
      if (itemKind !== null && isRecord(item)) {
        if (item.kind === undefined) item.kind = itemKind;
        if (item.apiVersion === undefined && typeof value.apiVersion === 'string') item.apiVersion = value.apiVersion;
      }
      const fieldLines: Record<string, number> = {};
      if (node) collectFieldLines(node, '', lineAt, fieldLines);
      addObject(item, file, itemLine, `${order}.${String(i).padStart(6, '0')}`, fieldLines, objects, diagnostics);
    });
    return;
  }
  const fieldLines: Record<string, number> = {};
  if (root) collectFieldLines(root, '', lineAt, fieldLines);
  addObject(value, file, line, order, fieldLines, objects, diagnostics);
}

/** Record the 1-based line of every node under `node` (keys' lines for map entries). */
function collectFieldLines(node: unknown, at: string, lineAt: (offset: number) => number, out: Record<string, number>): void {
  if (isMap(node)) {
    for (const pair of node.items) {
      const keyNode = pair.key;
      const key = isScalar(keyNode) ? keyNode.value : keyNode;
      if (typeof key !== 'string' && typeof key !== 'number' && typeof key !== 'boolean') continue;
      if (key === '<<') continue; // merge key: its fields have no line of their own here
      const child = fieldKey(at, String(key));
      const range = (isScalar(keyNode) ? keyNode.range : undefined) ?? (pair.value as YamlNode | null)?.range;
      if (range) out[child] = lineAt(range[0]);
      collectFieldLines(pair.value, child, lineAt, out);
    }
  } else if (isSeq(node)) {
    node.items.forEach((item, i) => {
      const child = fieldIndex(at, i);
      const range = (item as YamlNode | null)?.range;
      if (range) out[child] = lineAt(range[0]);
      collectFieldLines(item, child, lineAt, out);
    });
  } else if (isAlias(node)) {
    // Not followed: an alias's fields are reported at the alias itself.
  }
}

function addObject(
  value: unknown,
  file: string,
  line: number | null,
  order: string,
  fieldLines: Record<string, number>,
  objects: KubeObject[],
  diagnostics: Diagnostic[],
): void {
  if (!isRecord(value)) {
    const what = Array.isArray(value) ? 'a list' : `a ${typeof value}`;
    diagnostics.push(fileDiagnostic('MG_INVALID_OBJECT', file, line, `expected a Kubernetes object (a map with apiVersion, kind and metadata.name), found ${what}`));
    return;
  }
  const meta = value.metadata;
  const missing: string[] = [];
  if (typeof value.apiVersion !== 'string' || value.apiVersion === '') missing.push('apiVersion');
  if (typeof value.kind !== 'string' || value.kind === '') missing.push('kind');
  if (!isRecord(meta) || typeof meta.name !== 'string' || meta.name === '') missing.push('metadata.name');
  if (missing.length > 0) {
    const kind = typeof value.kind === 'string' ? value.kind : null;
    const name = isRecord(meta) && typeof meta.name === 'string' ? meta.name : null;
    const what = kind ? `${kind}${name ? ` ${name}` : ''}` : 'object';
    diagnostics.push(
      fileDiagnostic('MG_INVALID_OBJECT', file, line, `${what} has no ${missing.join(', ')} (as a string); every object needs apiVersion, kind and metadata.name`),
    );
    return;
  }
  const m = meta as Record<string, unknown>;
  const kind = value.kind as string;
  const namespace = isClusterScoped(kind) ? '' : typeof m.namespace === 'string' && m.namespace !== '' ? m.namespace : 'default';
  const metadata: ObjectMeta = {
    name: m.name as string,
    namespace,
    labels: stringEntries(m.labels),
    annotations: stringEntries(m.annotations),
    creationTimestamp: typeof m.creationTimestamp === 'string' ? m.creationTimestamp : m.creationTimestamp instanceof Date ? m.creationTimestamp.toISOString() : null,
  };
  objects.push({ apiVersion: value.apiVersion as string, kind, metadata, body: value, origin: { file, line, order, fieldLines } });
}

/**
 * The first definition (in path order) of each API group + kind/namespace/name wins; later ones get
 * MG_DUPLICATE_OBJECT. The group counts: an Istio Gateway and a Gateway API Gateway may share a name.
 */
function dropDuplicates(objects: KubeObject[], diagnostics: Diagnostic[]): KubeObject[] {
  const first = new Map<string, KubeObject>();
  const kept: KubeObject[] = [];
  for (const o of objects) {
    const slash = o.apiVersion.indexOf('/');
    const key = `${slash === -1 ? '' : o.apiVersion.slice(0, slash)}|${o.kind}/${o.metadata.namespace}/${o.metadata.name}`;
    const earlier = first.get(key);
    if (!earlier) {
      first.set(key, o);
      kept.push(o);
      continue;
    }
    diagnostics.push({
      severity: 'error',
      reason: 'MG_DUPLICATE_OBJECT',
      object: { kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name },
      field: null,
      file: o.origin.file,
      line: o.origin.line,
      message: `${key} is defined twice: in ${where(earlier)} and again in ${where(o)}; the first (${where(earlier)}) is used, this one is ignored`,
    });
  }
  return kept;
}

function where(o: KubeObject): string {
  return `${o.origin.file}${o.origin.line !== null ? `:${o.origin.line}` : ''}`;
}

function fileDiagnostic(reason: Diagnostic['reason'], file: string, line: number | null, message: string): Diagnostic {
  return { severity: 'error', reason, object: null, field: null, file, line, message };
}

function stringEntries(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isRecord(v)) return out;
  for (const [k, val] of Object.entries(v)) if (typeof val === 'string') out[k] = val;
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function firstLine(s: string): string {
  return s.split('\n')[0];
}

/**
 * Offset of the first JSON syntax error in `text` (V8's messages do not always say), or null.
 * A small recursive-descent scan; only called for text JSON.parse has already refused.
 */
function jsonErrorOffset(text: string): number | null {
  let i = 0;
  const ws = (): void => {
    while (i < text.length && ' \t\n\r'.includes(text[i])) i++;
  };
  const fail = (): never => {
    throw i;
  };
  const str = (): void => {
    if (text[i] !== '"') fail();
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\') i++;
      else if (text.charCodeAt(i) < 0x20) fail();
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const val = (): void => {
    ws();
    const c = text[i];
    if (c === '{' || c === '[') {
      const close = c === '{' ? '}' : ']';
      i++;
      ws();
      if (text[i] === close) {
        i++;
        return;
      }
      for (;;) {
        if (c === '{') {
          ws();
          str();
          ws();
          if (text[i] !== ':') fail();
          i++;
        }
        val();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === close) {
          i++;
          return;
        } else fail();
      }
    }
    if (c === '"') return str();
    const m = /^(?:true|false|null|-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
    if (!m) fail();
    i += (m as RegExpExecArray)[0].length;
  };
  try {
    val();
    ws();
    return i < text.length ? i : null;
  } catch (at) {
    return typeof at === 'number' ? Math.min(at, text.length) : null;
  }
}
