/**
 * Endpoint pools are kept by address:port across swaps and retired after a grace period.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cluster, snapshot } from '../../../test/support/ir-builders.js';
import { compileSnapshot } from '../compile/compile-snapshot.js';
import { EndpointPools } from './endpoint-pools.js';

test('pools are reused across swaps and closed after the grace period once unused', async () => {
  const pools = new EndpointPools({ retireGraceMs: 50 });
  try {
    const first = compileSnapshot(snapshot([], [cluster('a', [{ port: 1001 }, { port: 1002 }])]));
    pools.bind(first, null);
    assert.equal(pools.size, 2);
    // The same endpoint in another cluster of the next snapshot keeps its pool.
    const second = compileSnapshot(snapshot([], [cluster('b', [{ port: 1001 }])]));
    pools.bind(second, first);
    assert.equal(second.clusters.get('b')!.endpoints[0].handle, first.clusters.get('a')!.endpoints[0].handle);
    assert.equal(pools.size, 2, 'the unused pool lingers during the grace period');
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(pools.size, 1, 'the unused pool was closed after the grace period');
    // Coming back before the grace period ends cancels retirement.
    const third = compileSnapshot(snapshot([], [cluster('c', [{ port: 1003 }])]));
    pools.bind(third, second);
    pools.bind(compileSnapshot(snapshot([], [cluster('b', [{ port: 1001 }]), cluster('c', [{ port: 1003 }])])), third);
    await new Promise((r) => setTimeout(r, 120));
    assert.equal(pools.size, 2);
  } finally {
    await pools.close(100);
  }
});

test('round-robin cursors carry over across swaps by cluster name', () => {
  const pools = new EndpointPools();
  const a = compileSnapshot(snapshot([], [cluster('a', [{ port: 1001 }, { port: 1002 }])]));
  a.clusters.get('a')!.cursor = 7;
  const b = compileSnapshot(snapshot([], [cluster('a', [{ port: 1001 }, { port: 1002 }])]));
  pools.bind(b, a);
  assert.equal(b.clusters.get('a')!.cursor, 7);
  void pools.close(10);
});

test('an endpoint in two clusters with different connect timeouts gets one live pool', async () => {
  const pools = new EndpointPools();
  try {
    const snap = compileSnapshot(snapshot([], [cluster('a', [{ port: 1001 }], { connectTimeoutMs: 1000 }), cluster('b', [{ port: 1001 }], { connectTimeoutMs: 2000 })]));
    pools.bind(snap, null);
    const a = snap.clusters.get('a')!.endpoints[0].handle!;
    const b = snap.clusters.get('b')!.endpoints[0].handle!;
    assert.equal(a, b);
    assert.equal((a.dispatcher as unknown as { closed: boolean }).closed, false);
  } finally {
    await pools.close(100);
  }
});
