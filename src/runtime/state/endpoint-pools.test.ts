/**
 * Endpoint pools are kept by address:port across swaps and retired after a grace period.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cluster, snapshot } from '../../../test/support/ir-builders.js';
import { compileSnapshot } from '../compile/compile-snapshot.js';
import { DEFAULT_POOL_OPTIONS, EndpointPools } from './endpoint-pools.js';
import type { H1Client } from '../upstream/h1-client.js';
import type { UpstreamTls } from '../../ir/types.js';
import { SERVER_OPTIONS } from '../listeners/listener-manager.js';

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

test('an endpoint in two clusters shares one pool when their pool settings are equal, and gets one per cluster when they differ (Envoy: a pool per cluster)', async () => {
  const pools = new EndpointPools();
  try {
    const limit = (n: number) => ({ maxConnections: null, maxPendingRequests: null, maxRequests: null, maxRequestsPerConnection: n, maxRetries: null, idleTimeoutMs: null });
    const snap = compileSnapshot(
      snapshot([], [
        cluster('a', [{ port: 1001 }], { connectTimeoutMs: 1000 }),
        cluster('b', [{ port: 1001 }], { connectTimeoutMs: 2000 }),
        cluster('c', [{ port: 1001 }], { connectTimeoutMs: 1000 }),
        cluster('d', [{ port: 1001 }], { connectTimeoutMs: 1000, connectionPool: limit(1) }),
        cluster('e', [{ port: 1001 }], { connectTimeoutMs: 1000, protocol: 'HTTP2' }),
      ]),
    );
    pools.bind(snap, null);
    const handle = (name: string) => snap.clusters.get(name)!.endpoints[0].handle!;
    const client = (name: string) => handle(name).dispatcher as unknown as H1Client & { closed: boolean };
    assert.equal(handle('a'), handle('c'), 'equal settings share the pool');
    assert.notEqual(handle('a'), handle('b'));
    assert.equal(client('a').options.connectTimeoutMs, 1000);
    assert.equal(client('b').options.connectTimeoutMs, 2000, "b's connect timeout is b's, not the first cluster's");
    assert.equal(client('d').options.maxRequestsPerConnection, 1);
    assert.equal(client('a').options.maxRequestsPerConnection, 0);
    assert.notEqual(handle('e'), handle('a'), 'an HTTP/2 cluster never sends over an HTTP/1.1 pool');
    for (const n of ['a', 'b', 'd']) assert.equal(client(n).closed, false);
    assert.equal(pools.size, 4);
    // A reload that changes a cluster's settings moves it to a new pool; the old one is retired after the grace period.
    const next = compileSnapshot(snapshot([], [cluster('a', [{ port: 1001 }], { connectTimeoutMs: 3000 })]));
    pools.bind(next, snap);
    assert.equal((next.clusters.get('a')!.endpoints[0].handle!.dispatcher as unknown as H1Client).options.connectTimeoutMs, 3000);
  } finally {
    await pools.close(100);
  }
});

test('Istio mTLS connections (the peer is a sidecar) stay idle longer than plaintext ones; a DestinationRule idleTimeout wins over both', async () => {
  const pools = new EndpointPools();
  try {
    const istio: UpstreamTls = { mode: 'ISTIO_MUTUAL', caCertificates: null, clientCertificate: null, sni: 'outbound_.80_._.a.default.svc.cluster.local', subjectAltNames: [], insecureSkipVerify: false };
    const idle = { maxConnections: null, maxPendingRequests: null, maxRequests: null, maxRequestsPerConnection: null, maxRetries: null, idleTimeoutMs: 7000 };
    const snap = compileSnapshot(
      snapshot([], [cluster('plain', [{ port: 1001 }]), cluster('mtls', [{ port: 1002 }], { tls: istio }), cluster('mtls-dr', [{ port: 1003 }], { tls: istio, connectionPool: idle })]),
    );
    pools.bind(snap, null);
    const keepAlive = (name: string) => (snap.clusters.get(name)!.endpoints[0].handle!.dispatcher as unknown as H1Client).options.keepAliveTimeoutMs;
    assert.equal(keepAlive('plain'), DEFAULT_POOL_OPTIONS.keepAliveTimeoutMs);
    assert.equal(keepAlive('mtls'), DEFAULT_POOL_OPTIONS.meshKeepAliveTimeoutMs);
    assert.ok(DEFAULT_POOL_OPTIONS.meshKeepAliveTimeoutMs < SERVER_OPTIONS.keepAliveTimeout, "below a meshgate sidecar inbound's idle close, so the client closes first");
    assert.equal(keepAlive('mtls-dr'), 7000);
  } finally {
    await pools.close(100);
  }
});
