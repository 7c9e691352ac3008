/**
 * Watch a config directory and say when what the loader would read has changed.
 *
 * Two sources of truth, because neither is enough alone: `fs.watch` (recursive; fast, but it misses
 * events on some file systems, e.g. network mounts and some container overlays, and after an editor's
 * atomic rename of a watched file) and a cheap periodic poll of every config file's
 * (path, inode, mtime, size) signature. Events are debounced so a burst of writes yields one callback;
 * a callback happens only when the signature differs from the one last reported, so the poll does not
 * repeat what fs.watch already said and changes to unrelated files (editor swap files) are ignored.
 */

import { watch as fsWatch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { listConfigFiles } from './load.js';

export interface WatchOptions {
  /** Quiet time after the last event before `onChange` runs, in ms. Default 100. */
  debounceMs?: number;
  /** Interval of the fallback poll, in ms. Default 1000. */
  pollMs?: number;
  /** Use fs.watch besides the poll. Default true; false polls only (tests, file systems without events). */
  fsWatch?: boolean;
  /**
   * The directory's signature (`directorySignature`) taken before the caller last read it: changes
   * since are reported, even those made before the watch started. Default: the directory as found
   * when the watch starts (a change made between the caller's read and then would be missed).
   */
  baseline?: Promise<string>;
}

export interface DirectoryWatcher {
  /** Stop watching; `onChange` is never called after this returns. */
  close(): void;
}

/** Longest a stream of events can postpone the callback, as a multiple of debounceMs. */
const MAX_WAIT_FACTOR = 5;

/**
 * A config file that had content and now has none is most likely being rewritten in place
 * (truncated, then written: what most tools do without a rename), and a writer paused between the
 * two would otherwise make the gateway drop every object of that file for a moment. Such a change is
 * reported only once the file has stayed empty this long (an intended emptying just waits).
 */
export const EMPTIED_FILE_GRACE_MS = 1000;

export function watchDirectory(dir: string, onChange: () => void, opts: WatchOptions = {}): DirectoryWatcher {
  const debounceMs = opts.debounceMs ?? 100;
  const pollMs = opts.pollMs ?? 1000;
  let closed = false;
  /** Signature last reported (or found at start); null until the first scan finishes. */
  let reported: string | null = null;
  let debounceTimer: NodeJS.Timeout | null = null;
  let firstPendingAt = 0;
  let scanning = false;
  let rescan = false;
  /** When a file was first seen emptied (see EMPTIED_FILE_GRACE_MS); null when none is. */
  let emptiedSince: number | null = null;

  // Take the starting signature, so the first real change is seen as a change.
  void (opts.baseline ?? signature(dir))
    .catch(() => '') // no directory yet: its appearance will be a change
    .then((sig) => {
      if (closed) return;
      reported = sig;
      if (rescan) {
        rescan = false;
        schedule();
      }
    });

  /** Compare the directory with what was last reported; call onChange if it differs. */
  async function scan(): Promise<void> {
    if (closed) return;
    if (reported === null || scanning) {
      rescan = true; // a scan is running or the start signature is not known yet: check again after it
      return;
    }
    scanning = true;
    let changed = false;
    try {
      const sig = await signature(dir);
      if (sig !== reported) {
        if (emptiedFile(reported, sig)) {
          const now = Date.now();
          emptiedSince ??= now;
          if (now - emptiedSince < EMPTIED_FILE_GRACE_MS) {
            // Look again shortly: the writer is most likely still at work.
            if (!closed) setTimeout(() => void scan(), Math.min(debounceMs, EMPTIED_FILE_GRACE_MS)).unref();
            return;
          }
        }
        emptiedSince = null;
        reported = sig;
        changed = true;
      } else emptiedSince = null;
    } catch {
      // The directory may be briefly absent (replaced by a deploy tool); the next poll will look again.
    } finally {
      scanning = false;
    }
    if (closed) return;
    if (changed) onChange();
    if (rescan && !closed) {
      rescan = false;
      schedule();
    }
  }

  function schedule(): void {
    if (closed) return;
    const now = Date.now();
    if (debounceTimer === null) firstPendingAt = now;
    else clearTimeout(debounceTimer);
    // Trailing debounce, but never postponed beyond MAX_WAIT_FACTOR x debounceMs after the first event.
    const wait = Math.max(0, Math.min(debounceMs, firstPendingAt + debounceMs * MAX_WAIT_FACTOR - now));
    debounceTimer = setTimeout(() => {
      debounceTimer = null;
      void scan();
    }, wait);
  }

  let watcher: FSWatcher | null = null;
  if (opts.fsWatch !== false) {
    try {
      watcher = fsWatch(dir, { recursive: true, persistent: true }, () => schedule());
      watcher.on('error', () => {
        // e.g. the directory was removed; the poll keeps looking.
        watcher?.close();
        watcher = null;
      });
    } catch {
      watcher = null; // recursive watch unsupported here: the poll alone will do
    }
  }
  const poller = setInterval(() => void scan(), pollMs);

  return {
    close(): void {
      if (closed) return;
      closed = true;
      clearInterval(poller);
      if (debounceTimer !== null) clearTimeout(debounceTimer);
      debounceTimer = null;
      watcher?.close();
      watcher = null;
    },
  };
}

/** True when a file of `before` with content has size 0 in `after` (signature lines `path\0ino\0mtime\0size`). */
function emptiedFile(before: string, after: string): boolean {
  const sizes = new Map<string, string>();
  for (const line of before.split('\n')) {
    const f = line.split('\u0000');
    if (f.length === 4) sizes.set(f[0], f[3]);
  }
  for (const line of after.split('\n')) {
    const f = line.split('\u0000');
    if (f.length === 4 && f[3] === '0' && sizes.has(f[0]) && sizes.get(f[0]) !== '0') return true;
  }
  return false;
}

/** One string that changes whenever a config file is added, removed, replaced or written. */
export const directorySignature = (dir: string): Promise<string> => signature(dir);

async function signature(dir: string): Promise<string> {
  const files = await listConfigFiles(dir);
  const parts: string[] = [];
  for (const f of files) {
    try {
      const st = await stat(path.join(dir, f));
      parts.push(`${f}\u0000${st.ino}\u0000${st.mtimeMs}\u0000${st.size}`);
    } catch {
      parts.push(`${f}\u0000gone`);
    }
  }
  return parts.join('\n');
}
