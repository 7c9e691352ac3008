import assert from 'node:assert/strict';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EMPTIED_FILE_GRACE_MS, watchDirectory } from './watch.js';
import type { DirectoryWatcher } from './watch.js';

/** Resolves with the time it took for `calls()` to exceed `n`, or rejects after `ms`. */
async function waitForCalls(calls: () => number, n: number, ms: number): Promise<number> {
  const start = Date.now();
  while (Date.now() - start < ms) {
    if (calls() > n) return Date.now() - start;
    await sleep(10);
  }
  throw new Error(`expected more than ${n} callbacks within ${ms} ms, got ${calls()}`);
}

describe('watchDirectory', () => {
  let dir = '';
  let watcher: DirectoryWatcher | null = null;
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'meshgate-watch-'));
    await writeFile(path.join(dir, 'a.yaml'), 'a: 1\n');
  });
  afterEach(async () => {
    watcher?.close();
    watcher = null;
    await rm(dir, { recursive: true, force: true });
  });

  test('a file truncated and written late (a paused writer) is reported once, with its content; an intended emptying after the grace', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { debounceMs: 20 });
    await sleep(100);
    const { truncate } = await import('node:fs/promises');
    // The writer truncates, is paused for 300 ms (longer than the debounce), then writes.
    await truncate(path.join(dir, 'a.yaml'), 0);
    await sleep(300);
    assert.equal(calls, 0, 'the emptied file is not reported while it may be mid-write');
    await writeFile(path.join(dir, 'a.yaml'), 'a: 3\n');
    await waitForCalls(() => calls, 0, 1000);
    assert.equal(calls, 1);
    // Emptied for good: reported after EMPTIED_FILE_GRACE_MS.
    const t0 = Date.now();
    await truncate(path.join(dir, 'a.yaml'), 0);
    await waitForCalls(() => calls, 1, 3000);
    assert.ok(Date.now() - t0 >= EMPTIED_FILE_GRACE_MS - 50, `reported after ${Date.now() - t0} ms`);
  });

  test('a write is seen within 1 s', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++);
    await sleep(150); // let the starting signature settle
    await writeFile(path.join(dir, 'a.yaml'), 'a: 2\n');
    const took = await waitForCalls(() => calls, 0, 1000);
    assert.ok(took < 1000, `took ${took} ms`);
  });

  test('with a baseline taken before the caller read the directory, a change made before the watch starts is reported', async () => {
    const { directorySignature } = await import('./watch.js');
    const baseline = directorySignature(dir);
    await baseline;
    // Changed after the caller's read, before the watch starts: without the baseline this would be the starting state.
    await writeFile(path.join(dir, 'a.yaml'), 'a: 22\n');
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { debounceMs: 20, baseline });
    await waitForCalls(() => calls, 0, 2000);
  });

  test('a new file in a new sub-directory, and an atomic rename, are seen', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { debounceMs: 20 });
    await sleep(100);
    const { mkdir } = await import('node:fs/promises');
    await mkdir(path.join(dir, 'sub'));
    await writeFile(path.join(dir, 'sub', 'b.yml'), 'b: 1\n');
    await waitForCalls(() => calls, 0, 1000);
    const before = calls;
    await writeFile(path.join(dir, '.a.yaml.tmp'), 'a: 3\n');
    await rename(path.join(dir, '.a.yaml.tmp'), path.join(dir, 'a.yaml'));
    await waitForCalls(() => calls, before, 1000);
  });

  test('the poll alone finds changes (fs.watch misses events on some file systems)', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { fsWatch: false, pollMs: 100, debounceMs: 10 });
    await sleep(100);
    await writeFile(path.join(dir, 'c.json'), '{}');
    await waitForCalls(() => calls, 0, 500);
    await rm(path.join(dir, 'a.yaml'));
    await waitForCalls(() => calls, 1, 500);
  });

  test('a burst of 20 writes yields a handful of callbacks at most', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++);
    await sleep(150);
    for (let i = 0; i < 20; i++) {
      await writeFile(path.join(dir, `f${i % 5}.yaml`), `i: ${i}\n`);
      await sleep(5);
    }
    await waitForCalls(() => calls, 0, 1000);
    await sleep(1200); // a poll round too, which must not repeat what was reported
    assert.ok(calls >= 1 && calls <= 3, `expected 1-3 callbacks, got ${calls}`);
  });

  test('changes to dotfiles and non-config files do not call back', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { pollMs: 100 });
    await sleep(150);
    await writeFile(path.join(dir, '.a.yaml.swp'), 'x');
    await writeFile(path.join(dir, 'notes.txt'), 'x');
    await sleep(400);
    assert.equal(calls, 0);
  });

  test('close stops callbacks, even for a change already pending', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { pollMs: 50, debounceMs: 50 });
    await sleep(100);
    await writeFile(path.join(dir, 'a.yaml'), 'a: 5\n');
    // A poll may legitimately have reported the write while writeFile was in flight; none may follow close.
    watcher.close();
    const atClose = calls;
    await writeFile(path.join(dir, 'b.yaml'), 'b: 5\n');
    await sleep(400);
    assert.equal(calls, atClose, 'callbacks after close');
    watcher.close(); // idempotent
  });

  test('events alone (no poll): after a rename over a file, writes in place, a delete and a re-creation are each reported once', async () => {
    let calls = 0;
    // A poll that never runs in this test: only the directory watch can see these.
    watcher = watchDirectory(dir, () => calls++, { debounceMs: 30, pollMs: 600_000 });
    await sleep(150);
    const a = path.join(dir, 'a.yaml');
    const steps: [string, () => Promise<void>][] = [
      ['rename over', async () => {
        await writeFile(path.join(dir, '.a.tmp'), 'a: renamed\n');
        await rename(path.join(dir, '.a.tmp'), a);
      }],
      ['write in place after the rename', () => writeFile(a, 'a: after rename\n')],
      ['write in place again', () => writeFile(a, 'a: again\n')],
      ['delete', () => rm(a)],
      ['re-create', () => writeFile(a, 'a: re-created\n')],
      ['write in place after re-creating', () => writeFile(a, 'a: last\n')],
    ];
    for (const [what, act] of steps) {
      const before = calls;
      await act();
      await waitForCalls(() => calls, before, 3000).catch((e: Error) => assert.fail(`${what}: ${e.message}`));
      await sleep(200);
      assert.equal(calls, before + 1, `${what}: reported ${calls - before} times`);
    }
  });

  test('events alone: a Kubernetes ..data symlink swap is reported, and a symlinked file\'s target written in place', async () => {
    const { mkdir, symlink, readlink } = await import('node:fs/promises');
    let n = 0;
    const publish = async (text: string): Promise<void> => {
      const stamp = `..2026_12_07_${n++}`;
      await mkdir(path.join(dir, stamp));
      await writeFile(path.join(dir, stamp, 'k.yaml'), text);
      await symlink(stamp, path.join(dir, '..data_tmp'));
      await rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    };
    await publish('k: 1\n');
    await symlink('..data/k.yaml', path.join(dir, 'k.yaml'));
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { debounceMs: 30, pollMs: 600_000 });
    await sleep(150);
    for (let i = 2; i <= 4; i++) {
      const before = calls;
      const old = await readlink(path.join(dir, '..data'));
      await publish(`k: ${i}\n`);
      await rm(path.join(dir, old), { recursive: true });
      await waitForCalls(() => calls, before, 3000);
      await sleep(200);
      assert.equal(calls, before + 1, `swap ${i}: reported ${calls - before} times`);
    }
    const before = calls;
    await writeFile(path.join(dir, await readlink(path.join(dir, '..data')), 'k.yaml'), 'k: in place\n');
    await waitForCalls(() => calls, before, 3000);
  });

  test('a file written in parts for longer than the debounce\'s cap is reported once, after the last part', async () => {
    let calls = 0;
    watcher = watchDirectory(dir, () => calls++, { debounceMs: 100, pollMs: 100 });
    await sleep(150);
    const { open } = await import('node:fs/promises');
    const fh = await open(path.join(dir, 'a.yaml'), 'w');
    try {
      // 24 parts 25 ms apart: 575 ms, past the cap of 5 x 100 ms and across several polls; pauses
      // well below the debounce, so a timer late by 70 ms on a loaded machine still passes.
      for (let i = 0; i < 24; i++) {
        if (i > 0) await sleep(25);
        await fh.write(`p${i}: ${i}\n`);
        assert.equal(calls, 0, `reported after part ${i} of 24, while still being written`);
      }
    } finally {
      await fh.close();
    }
    await waitForCalls(() => calls, 0, 2000);
    await sleep(300);
    assert.equal(calls, 1);
  });
});
