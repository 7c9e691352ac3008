import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadDirectory } from './load.js';
import { EmptiedFiles } from './emptied.js';

const SERVICE = 'apiVersion: v1\nkind: Service\nmetadata: { name: web, namespace: default }\nspec: { ports: [{ port: 80 }] }\n';

describe('loader: a file truncated for a rewrite in place', () => {
  test('keeps its last objects while empty for less than the grace, then reads empty', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-emptied-'));
    try {
      const file = path.join(dir, 'svc.yaml');
      writeFileSync(file, SERVICE);
      const emptied = new EmptiedFiles(300);
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 1);
      // The writer truncated the file and has not written yet (the reload test's race).
      writeFileSync(file, '');
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 1, 'the truncated file lost its objects at once');
      // Without the guard the object is gone: what the gateway served before the fix.
      assert.equal((await loadDirectory(dir)).objects.length, 0);
      await new Promise((r) => setTimeout(r, 350));
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 0, 'a file that stays empty is empty');
      // Emptied on purpose, and the watcher reports it after the grace: the first read after it is empty
      // (the grace counts from the truncation, not from the loader's first look).
      writeFileSync(file, SERVICE);
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 1);
      writeFileSync(file, '');
      await new Promise((r) => setTimeout(r, 350));
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 0, 'an emptied file read after the grace kept its old objects');
      // Written again: read as written.
      writeFileSync(file, SERVICE);
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file that starts empty is empty; a removed file is forgotten', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-emptied-'));
    try {
      const emptied = new EmptiedFiles(10_000);
      writeFileSync(path.join(dir, 'a.yaml'), '');
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 0);
      writeFileSync(path.join(dir, 'b.yaml'), SERVICE);
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 1);
      rmSync(path.join(dir, 'b.yaml'));
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 0);
      writeFileSync(path.join(dir, 'b.yaml'), '');
      assert.equal((await loadDirectory(dir, emptied)).objects.length, 0, 'a new empty file has no remembered content');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
