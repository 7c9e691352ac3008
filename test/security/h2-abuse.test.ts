/**
 * HTTP/2 abuse through the real listener (h2c prior knowledge): rapid reset (CVE-2023-44487) and a
 * CONTINUATION flood, with raw frames from python3-h2 (`/usr/bin/python3`; installed by .ci/run).
 * The abusive connection gets GOAWAY or is closed; a well-behaved client is still served.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import http2 from 'node:http2';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import type { RuntimeHarness } from '../support/runtime-harness.js';
import { ResetTracker, H2_GUARD } from '../../src/runtime/listeners/h2-guard.js';
import { startCatchAllRuntime, type RecordingUpstream } from './harness.js';
import { needs } from '../support/requires.js';

const SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../test/security/h2attack.py');
const PY = '/usr/bin/python3';

interface ProbeResult {
  sent: number;
  goaway: boolean;
  error_code: number | null;
  closed: boolean;
}

function probe(mode: string, port: number, n: number): Promise<ProbeResult> {
  return new Promise((resolve, reject) => {
    execFile(PY, [SCRIPT, mode, '127.0.0.1', String(port), String(n)], { timeout: 20_000 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as ProbeResult);
    });
  });
}

function h2get(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const client = http2.connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => {
      client.destroy();
      reject(new Error('h2 request: no answer within 5 s'));
    }, 5000);
    client.on('error', reject);
    client.on('close', () => clearTimeout(timer));
    const req = client.request({ ':path': '/ok', ':authority': 'h2.test' });
    req.on('response', (h) => {
      resolve(Number(h[':status']));
      client.close();
    });
    req.on('error', reject);
    req.end();
  });
}

describe('ResetTracker (rapid-reset rule)', () => {
  test('normal streams never trip it', () => {
    const t = new ResetTracker();
    for (let i = 0; i < 10_000; i++) assert.equal(t.record(false, i), false);
  });
  test('more than half premature after the minimum: abusive', () => {
    const t = new ResetTracker();
    let tripped = -1;
    for (let i = 0; i < 1000 && tripped < 0; i++) if (t.record(i % 3 !== 0, i * 10)) tripped = i;
    assert.ok(tripped >= H2_GUARD.minStreamsForRatio - 1 && tripped < H2_GUARD.minStreamsForRatio + 5, `tripped at ${tripped}`);
  });
  test('a burst of premature resets within one second: abusive whatever the ratio', () => {
    const t = new ResetTracker();
    for (let i = 0; i < 100_000; i++) t.record(false, 0);
    let tripped = false;
    for (let i = 0; i <= H2_GUARD.maxPrematurePerSecond && !tripped; i++) tripped = t.record(true, 5000);
    assert.ok(tripped);
  });
});

describe('HTTP/2 abuse on the h2c listener', { timeout: 60_000, skip: needs('python3-h2') }, () => {
  let rig: Awaited<ReturnType<typeof startCatchAllRuntime>>;
  let up: RecordingUpstream;
  let gw: RuntimeHarness;
  let port: number;

  before(async () => {
    rig = await startCatchAllRuntime();
    ({ up, gw } = rig);
    port = gw.port();
  });
  after(async () => {
    await rig?.close();
  });

  test('rapid reset: GOAWAY ENHANCE_YOUR_CALM long before Node\'s own limit; others still served', async () => {
    assert.equal(await h2get(port), 200, 'baseline');
    const r = await probe('rapidreset', port, 20_000);
    // The client pipelines far ahead of the server; what counts is who closed the session: our
    // guard answers ENHANCE_YOUR_CALM (11), Node's own limit (about 1000 streams) INTERNAL_ERROR (2).
    assert.ok(r.goaway, `no GOAWAY: ${JSON.stringify(r)}`);
    assert.equal(r.error_code, 11, `GOAWAY code ${r.error_code} after ${r.sent} streams`);
    assert.equal(await h2get(port), 200, 'a well-behaved client is still served');
  });

  test('CONTINUATION flood: the session is closed, the gateway stays up', async () => {
    const r = await probe('continuation', port, 5000);
    assert.ok(r.goaway || r.closed, `no GOAWAY or close: ${JSON.stringify(r)}`);
    assert.ok(r.sent < 5000, `accepted all ${r.sent} CONTINUATION frames`);
    assert.equal(await h2get(port), 200);
  });
});
