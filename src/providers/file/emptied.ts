/**
 * The loader's half of the emptied-file rule (watch.ts, EMPTIED_FILE_GRACE_MS). The watcher waits
 * before it reports a file that became empty, but a writer can truncate the file again between the
 * watcher's report of its previous write and the loader's read (a tool rewriting the file in place,
 * twice in a row): the loader would then read nothing and the gateway would drop every object of the
 * file for a moment. So the loader, too, keeps a file's last content while the file has been empty
 * for less than the grace; once it has stayed empty that long, empty it is (the watcher reports it
 * then, and the next load reads it as empty).
 */
import { EMPTIED_FILE_GRACE_MS } from './watch.js';

export class EmptiedFiles {
  readonly #last = new Map<string, { text: string }>();

  readonly #graceMs: number;

  constructor(graceMs = EMPTIED_FILE_GRACE_MS) {
    this.#graceMs = graceMs;
  }

  /**
   * The text to parse for `file`, read as `text` at `now`; `emptiedAt` is the empty file's mtime
   * (when it was truncated: the grace runs from there, as the watcher's does, so a file the watcher
   * reports as emptied after the grace is read as empty at once).
   */
  filter(file: string, text: string, emptiedAt: number, now: number): string {
    if (text !== '') {
      this.#last.set(file, { text });
      return text;
    }
    const last = this.#last.get(file);
    if (last === undefined) return text;
    if (now - emptiedAt < this.#graceMs) return last.text;
    this.#last.delete(file);
    return text;
  }

  /** The last non-empty text read of `file`, if any (what serves while the file is still being written). */
  lastText(file: string): string | undefined {
    return this.#last.get(file)?.text;
  }

  /** Forget files no longer in the directory. */
  retain(files: readonly string[]): void {
    const keep = new Set(files);
    for (const f of this.#last.keys()) if (!keep.has(f)) this.#last.delete(f);
  }
}
