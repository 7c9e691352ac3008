/**
 * Watch a config directory and say when what the loader would read has changed, once the change has
 * settled.
 *
 * What is watched: each directory whose entries decide what is read (the config directory, every
 * sub-directory, and the directory of each symlinked file's target: load.ts walkConfigDirectory),
 * each with a plain, non-recursive `fs.watch`. A directory watch reports every change to an entry of
 * the directory (a write in place, a rename over it, a delete, a new file, a symlink swapped), however
 * often the entry's inode is replaced. Files are never watched one by one: a watch on a file follows
 * its inode, and an editor's or a deploy tool's rename puts a new inode at the path, so such a watch
 * goes deaf to every later write. That is what Node 20's recursive `fs.watch` does on Linux (it
 * watches each file, and after a rename over a file it reports no change to that path again: no
 * write in place, no delete, no re-creation), which is why it is not used.
 *
 * Events can still be missed (network file systems, some container overlays, inotify limits), so a
 * cheap periodic poll compares every config file's (path, inode, size, mtime, ctime) signature too.
 *
 * When: events are debounced (a burst of writes is one check, `debounceMs` after the last event, and
 * never more than MAX_WAIT_FACTOR x `debounceMs` after the first), and a check reports a change only
 * once it has settled: every config file unchanged for `debounceMs` (by its mtime and ctime, or by
 * two looks that far apart), so a file still being written is not loaded half-written. A file that
 * was emptied waits longer (EMPTIED_FILE_GRACE_MS). Each settled change is reported once; a check
 * that finds the signature last reported reports nothing (the poll does not repeat what an event
 * said, and changes to files the loader does not read, such as editor swap files, are ignored).
 */

import { watch as fsWatch } from 'node:fs';
import type { FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { walkConfigDirectory } from './load.js';

export interface WatchOptions {
  /**
   * Quiet time, in ms, after the last event before the directory is checked, and how long every
   * config file must have been unchanged for a change to be reported. Default 100.
   */
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

/** Default quiet time before a change is reported (WatchOptions.debounceMs). */
export const DEFAULT_DEBOUNCE_MS = 100;

/** Longest a stream of events can postpone a check, as a multiple of debounceMs. */
const MAX_WAIT_FACTOR = 5;

/**
 * A file's times further in the future than this (a network file system's clock ahead of ours) say
 * nothing about whether it is still being written; such a change settles by two equal looks instead.
 */
const CLOCK_SKEW_MS = 2000;

/**
 * A config file that had content and now has none is most likely being rewritten in place
 * (truncated, then written: what most tools do without a rename), and a writer paused between the
 * two would otherwise make the gateway drop every object of that file for a moment. Such a change is
 * reported only once the file has stayed empty this long (an intended emptying just waits).
 */
export const EMPTIED_FILE_GRACE_MS = 1000;

/** One look at the directory. */
interface Look {
  /** Changes whenever a config file is added, removed, replaced or written (see signatureOf). */
  key: string;
  /** Latest mtime or ctime of any config file or watched directory, in ms since the epoch. */
  newest: number;
  /** Directories to watch (ConfigDirectoryTree.directories), each with its device and inode. */
  directories: Map<string, string>;
}

export function watchDirectory(dir: string, onChange: () => void, opts: WatchOptions = {}): DirectoryWatcher {
  const debounceMs = opts.debounceMs ?? DEFAULT_DEBOUNCE_MS;
  const pollMs = opts.pollMs ?? 1000;
  const useEvents = opts.fsWatch !== false;
  let closed = false;
  /** Signature last reported (or found at start); null until the first look finishes. */
  let reported: string | null = null;
  /** A changed signature not reported yet, and when it was first seen. */
  let pending: { key: string; since: number } | null = null;
  let debounceTimer: NodeJS.Timeout | null = null;
  let firstPendingAt = 0;
  /** A check scheduled because a change has not settled yet. */
  let settleTimer: NodeJS.Timeout | null = null;
  let checking = false;
  let recheck = false;
  /** When a file was first seen emptied (see EMPTIED_FILE_GRACE_MS); null when none is. */
  let emptiedSince: number | null = null;
  /** One fs.watch per directory, by real path, with the directory's identity when it was watched. */
  const watchers = new Map<string, { id: string; watcher: FSWatcher }>();

  // Take the starting signature, so the first real change is seen as a change.
  void (opts.baseline ?? look(dir).then((l) => l.key))
    .catch(() => '') // no directory yet: its appearance will be a change
    .then((key) => {
      if (closed) return;
      reported = key;
      // Watch at once (a check after the debounce does the same, later).
      void check();
    });

  /** Look at the directory; report a settled change; keep the directory watches in step. */
  async function check(): Promise<void> {
    if (closed) return;
    if (reported === null || checking) {
      recheck = true; // a check is running or the start signature is not known yet: check again after it
      return;
    }
    checking = true;
    let changed = false;
    try {
      const now0 = Date.now();
      const l = await look(dir);
      if (closed) return;
      if (useEvents) syncWatches(l.directories);
      const now = Date.now();
      if (l.key === reported) {
        pending = null;
        emptiedSince = null;
      } else {
        const earlier = pending;
        if (earlier?.key !== l.key) pending = { key: l.key, since: now0 };
        // Settled: no config file written for debounceMs (their own times say so; times from a clock
        // far ahead of ours say nothing), or two looks debounceMs apart found the same signature.
        const age = now0 - l.newest;
        const settled = age >= debounceMs || age < -CLOCK_SKEW_MS || (earlier?.key === l.key && now0 - earlier.since >= debounceMs);
        if (!settled) {
          settleLater(Math.max(10, Math.min(debounceMs, age >= 0 ? debounceMs - age : debounceMs)));
        } else if (emptiedFile(reported, l.key)) {
          emptiedSince ??= now;
          if (now - emptiedSince < EMPTIED_FILE_GRACE_MS) settleLater(Math.min(debounceMs, EMPTIED_FILE_GRACE_MS)); // the writer is most likely still at work
          else changed = true;
        } else changed = true;
        if (changed) {
          emptiedSince = null;
          pending = null;
          reported = l.key;
        }
      }
    } catch {
      // The directory may be briefly absent (replaced by a deploy tool); the next poll will look again.
    } finally {
      checking = false;
    }
    if (closed) return;
    if (changed) onChange();
    if (recheck && !closed) {
      recheck = false;
      schedule();
    }
  }

  /** Check again in `ms` (a change that has not settled). */
  function settleLater(ms: number): void {
    if (closed || settleTimer !== null) return;
    settleTimer = setTimeout(() => {
      settleTimer = null;
      void check();
    }, ms);
  }

  /** An event: check once events stop (trailing debounce, capped). */
  function schedule(): void {
    if (closed) return;
    const now = Date.now();
    if (debounceTimer === null) firstPendingAt = now;
    else clearTimeout(debounceTimer);
    // Trailing debounce, but never postponed beyond MAX_WAIT_FACTOR x debounceMs after the first event.
    const wait = Math.max(0, Math.min(debounceMs, firstPendingAt + debounceMs * MAX_WAIT_FACTOR - now));
    debounceTimer = setTimeout(() => {
      debounceTimer = null;
      void check();
    }, wait);
  }

  /** Watch exactly the directories of `want` (each once; again when a directory was replaced by another). */
  function syncWatches(want: Map<string, string>): void {
    for (const [d, w] of watchers) {
      if (want.get(d) === w.id) continue;
      w.watcher.close();
      watchers.delete(d);
    }
    let added = false;
    for (const [d, id] of want) {
      if (watchers.has(d)) continue;
      try {
        const watcher = fsWatch(d, { persistent: true }, () => schedule());
        watcher.on('error', () => {
          // e.g. the directory was removed: forget it; the next check watches what is there then.
          watcher.close();
          if (watchers.get(d)?.watcher === watcher) watchers.delete(d);
          schedule();
        });
        watchers.set(d, { id, watcher });
        added = true;
      } catch {
        // Gone already, or out of watches (inotify max_user_watches): the poll covers it.
      }
    }
    // A change made in a new directory between the look that found it and its watch: look once more.
    if (added) schedule();
  }

  const poller = setInterval(() => void check(), pollMs);

  return {
    close(): void {
      if (closed) return;
      closed = true;
      clearInterval(poller);
      if (debounceTimer !== null) clearTimeout(debounceTimer);
      if (settleTimer !== null) clearTimeout(settleTimer);
      debounceTimer = null;
      settleTimer = null;
      for (const w of watchers.values()) w.watcher.close();
      watchers.clear();
    },
  };
}

/** True when a file of `before` with content has size 0 in `after` (see signatureOf). */
function emptiedFile(before: string, after: string): boolean {
  const sizes = new Map<string, string>();
  for (const line of before.split('\n')) {
    const f = line.split('\u0000');
    if (f.length === 5) sizes.set(f[0], f[2]);
  }
  for (const line of after.split('\n')) {
    const f = line.split('\u0000');
    if (f.length === 5 && f[2] === '0' && sizes.has(f[0]) && sizes.get(f[0]) !== '0') return true;
  }
  return false;
}

/** One string that changes whenever a config file is added, removed, replaced or written. */
export const directorySignature = async (dir: string): Promise<string> => (await look(dir)).key;

/**
 * Each config file as `path\0inode\0size\0mtime\0ctime` (symlinks followed: a swapped `..data` link
 * changes the inode). The ctime catches what the mtime can miss: a rename over the file, a copy that
 * keeps the old mtime (`cp -p`, `tar`), a change of mode or owner. `newest` counts the watched
 * directories' times too: a file renamed away for a moment (an editor's backup) or a swapped
 * symlink is a recent change even when no remaining file is recent.
 */
async function look(dir: string): Promise<Look> {
  const tree = await walkConfigDirectory(dir);
  const parts: string[] = [];
  let newest = 0;
  for (const f of tree.files) {
    try {
      const st = await stat(path.join(dir, f));
      parts.push(`${f}\u0000${st.dev}:${st.ino}\u0000${st.size}\u0000${st.mtimeMs}\u0000${st.ctimeMs}`);
      newest = Math.max(newest, st.mtimeMs, st.ctimeMs);
    } catch {
      parts.push(`${f}\u0000gone`);
    }
  }
  const directories = new Map<string, string>();
  for (const d of tree.directories) {
    const st = await stat(d).catch(() => null);
    if (st === null) continue;
    directories.set(d, `${st.dev}:${st.ino}`);
    newest = Math.max(newest, st.mtimeMs, st.ctimeMs);
  }
  return { key: parts.join('\n'), newest, directories };
}
