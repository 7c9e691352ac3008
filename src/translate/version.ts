/**
 * The snapshot version: a hash of what the data plane serves, not of where it was written. Every
 * `SourceRef` (`{kind, namespace, name, file, line}`) names its object for logs and dumps; its
 * `file` and `line` are left out of the hash, so a comment line, reformatting or a moved file does
 * not make a new version (and no reload), while any change of content does.
 *
 * The translator builds every object with a fixed key order, so plain JSON is canonical (and native
 * JSON.stringify is ~10x faster than a key-sorting walk on a 10k-route snapshot). `file` and `line`
 * are keys of SourceRef only (a test holds the IR to that), and a key can only appear unescaped in
 * the JSON text: a quote inside a user's string is always written `\"`.
 */
import { sha256Hex } from '../lib/hash.js';

const POSITION = /,"file":(?:null|"(?:[^"\\]|\\.)*"),"line":(?:null|\d+)/g;

/** The JSON the version hashes: the parts' JSON without source positions. */
export function versionText(parts: unknown): string {
  return JSON.stringify(parts).replace(POSITION, '');
}

export function snapshotVersion(parts: unknown): string {
  return sha256Hex(versionText(parts), 16);
}
