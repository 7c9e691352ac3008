/**
 * Read a directory of Kubernetes-style YAML/JSON into KubeObjects, with the file and line of every
 * object and field, so that every later diagnostic can point at `file:line`.
 */

import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
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

export interface LoadOptions {
  /**
   * Read a file only once it has been unchanged this long, in ms (by its mtime and ctime, and the
   * same before and after the read): a file being written is not parsed half-written. 0 (the
   * default) reads at once (`validate`, `translate`). The watcher's debounce for a watched directory.
   */
  settleMs?: number;
  /** Longest one load waits for files to settle, in ms. Default 1000. */
  settleMaxMs?: number;
}

/** A file's times further in the future than this (a file server's clock ahead of ours) say nothing about its age. */
const CLOCK_SKEW_MS = 2000;

/**
 * Load every *.yaml, *.yml and *.json under `dir` (recursively; dotfiles and dot-directories skipped;
 * symlinks followed, loops not). Rejects only when `dir` itself cannot be read.
 */
export async function loadDirectory(dir: string, emptied: EmptiedFiles | null = null, opts: LoadOptions = {}): Promise<LoadResult> {
  const settleMs = opts.settleMs ?? 0;
  const deadline = Date.now() + (opts.settleMaxMs ?? 1000);
  const files = settleMs > 0 ? await listSettledFiles(dir, settleMs, deadline) : await listConfigFiles(dir);
  emptied?.retain(files);
  const objects: KubeObject[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const file of files) {
    let text: string;
    try {
      const read = settleMs > 0 ? await readSettled(path.join(dir, file), settleMs, deadline) : { text: await readFile(path.join(dir, file), 'utf8'), settled: true };
      if (!read.settled) {
        // Still being written when the wait ran out: its last content read whole serves until it
        // settles (the watcher reports it then and the next load reads it).
        const last = emptied?.lastText(file);
        diagnostics.push(
          fileDiagnostic('MG_FILE_UNSETTLED', file, null, `${file} was still being written after ${opts.settleMaxMs ?? 1000} ms; ${last !== undefined ? 'its last content read whole keeps serving' : 'it is not read yet'} until it has been unchanged for ${settleMs} ms`, 'warning'),
        );
        if (last === undefined) continue;
        parseFile(file, last, objects, diagnostics);
        continue;
      }
      text = read.text;
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
 * The config files under `dir` once no directory walked has changed its entries for `settleMs`
 * (waiting until `deadline` at most): a file renamed away for a moment (an editor's backup, a
 * delete then re-create) is not taken as removed.
 */
async function listSettledFiles(dir: string, settleMs: number, deadline: number): Promise<string[]> {
  for (;;) {
    const tree = await walkConfigDirectory(dir);
    let newest = 0;
    for (const d of tree.directories) {
      const st = await stat(d).catch(() => null);
      if (st !== null) newest = Math.max(newest, st.mtimeMs, st.ctimeMs);
    }
    const age = Date.now() - newest;
    if (age >= settleMs || age < -CLOCK_SKEW_MS || Date.now() >= deadline) return tree.files;
    await sleep(Math.min(settleMs - Math.max(age, 0), Math.max(1, deadline - Date.now())) + 1);
  }
}

/**
 * Read `file` once it has been unchanged for `settleMs` (mtime and ctime that old, and the same
 * before and after the read), waiting until `deadline` at most; `settled` false when the file was
 * still changing then (`text` is then what was there, possibly half-written).
 */
async function readSettled(file: string, settleMs: number, deadline: number): Promise<{ text: string; settled: boolean }> {
  for (;;) {
    const before = await stat(file);
    const age = Date.now() - Math.max(before.mtimeMs, before.ctimeMs);
    const fresh = age < settleMs && age >= -CLOCK_SKEW_MS;
    if (fresh && Date.now() < deadline) {
      await sleep(Math.min(settleMs - Math.max(age, 0), Math.max(1, deadline - Date.now())) + 1);
      continue;
    }
    const text = await readFile(file, 'utf8');
    const after = await stat(file);
    const same = after.ino === before.ino && after.dev === before.dev && after.size === before.size && after.mtimeMs === before.mtimeMs && after.ctimeMs === before.ctimeMs;
    if (same && !fresh) return { text, settled: true };
    if (Date.now() >= deadline) return { text, settled: false };
  }
}

/**
 * Relative paths (with `/`) of the config files under `dir`, sorted. Shared with the watcher, so it
 * watches exactly what the loader reads.
 */
export async function listConfigFiles(dir: string): Promise<string[]> {
  return (await walkConfigDirectory(dir)).files;
}

export interface ConfigDirectoryTree {
  /** Relative paths (with `/`) of the config files, sorted. */
  files: string[];
  /**
   * Real paths of every directory whose entries decide what is read: `dir` and each sub-directory
   * walked (symlinked ones resolved), and the directory holding the target of each symlinked config
   * file (a Kubernetes ConfigMap volume's `..2026_…` directory, or a file linked from elsewhere).
   * Sorted. A change of what is read is a change of an entry of one of these directories.
   */
  directories: string[];
}

/** The config files under `dir` and the directories to watch for them (see ConfigDirectoryTree). */
export async function walkConfigDirectory(dir: string): Promise<ConfigDirectoryTree> {
  const out: string[] = [];
  const root = await realpath(dir);
  const seenDirs = new Set<string>([root]);
  const watched = new Set<string>([root]);
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
        watched.add(real);
        await walk(childAbs, childRel);
      } else if (isFile && CONFIG_FILE.test(e.name)) {
        out.push(childRel);
        if (e.isSymbolicLink()) {
          // The link's target can be written in place where no watch of this tree sees it.
          const target = await realpath(childAbs).catch(() => null);
          if (target !== null) watched.add(path.dirname(target));
        }
      }
    }
  }
  await walk(dir, '');
  const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
  return { files: out.sort(byName), directories: [...watched].sort(byName) };
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

function fileDiagnostic(reason: Diagnostic['reason'], file: string, line: number | null, message: string, severity: Diagnostic['severity'] = 'error'): Diagnostic {
  return { severity, reason, object: null, field: null, file, line, message };
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
