/**
 * The loader's half of "never load a half-written file" (load.ts LoadOptions.settleMs): a file
 * still being written when a load starts is read once it has settled.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadDirectory } from './load.js';
import { EmptiedFiles } from './emptied.js';

const svc = (name: string) => `apiVersion: v1\nkind: Service\nmetadata: { name: ${name}, namespace: default }\nspec: { ports: [{ port: 80 }] }\n`;

describe('loader: files still being written', () => {
  test('a load that starts mid-write reads the whole file once it has settled', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-settle-'));
    try {
      const file = path.join(dir, 'svc.yaml');
      const fh = await open(file, 'w');
      await fh.write(svc('one'));
      // The load starts while the writer is between its two parts (the first parses alone).
      const loading = loadDirectory(dir, new EmptiedFiles(), { settleMs: 150 });
      await sleep(60);
      await fh.write('---\n' + svc('two'));
      await fh.close();
      const loaded = await loading;
      assert.deepEqual(loaded.objects.map((o) => o.metadata.name), ['one', 'two'], 'the first part alone was loaded');
      // Without the wait, the same race reads the half: what the gateway loaded before.
      writeFileSync(file, svc('one'));
      assert.equal((await loadDirectory(dir)).objects.length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file renamed away for a moment (an editor\'s backup) is not taken as removed', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-settle-'));
    try {
      const file = path.join(dir, 'svc.yaml');
      writeFileSync(file, svc('one'));
      const { rename } = await import('node:fs/promises');
      await rename(file, `${file}~`);
      const loading = loadDirectory(dir, new EmptiedFiles(), { settleMs: 150 });
      await sleep(50);
      writeFileSync(file, svc('new'));
      assert.deepEqual((await loading).objects.map((o) => o.metadata.name), ['new']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file still changing when the wait runs out keeps its last content, with MG_FILE_UNSETTLED', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-settle-'));
    try {
      const file = path.join(dir, 'svc.yaml');
      writeFileSync(file, svc('old'));
      const emptied = new EmptiedFiles();
      assert.deepEqual((await loadDirectory(dir, emptied, { settleMs: 400 })).objects.map((o) => o.metadata.name), ['old']);
      const fh = await open(file, 'w');
      await fh.write(svc('half'));
      let writing = true;
      const writer = (async () => {
        for (let i = 0; writing && i < 100; i++) {
          await sleep(20);
          await fh.write(`# still writing ${i}\n`);
        }
      })();
      // Writes 20 ms apart against a settle time of 400 ms: still changing on a loaded machine too.
      const loaded = await loadDirectory(dir, emptied, { settleMs: 400, settleMaxMs: 600 });
      writing = false;
      await writer;
      await fh.close();
      assert.deepEqual(loaded.objects.map((o) => o.metadata.name), ['old']);
      assert.deepEqual(loaded.diagnostics.map((d) => [d.reason, d.severity, d.file]), [['MG_FILE_UNSETTLED', 'warning', 'svc.yaml']]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
