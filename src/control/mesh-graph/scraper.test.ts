/**
 * The scraper against real HTTP servers on 127.0.0.1: failures are recorded per sidecar (HTTP
 * status, timeout, oversized or unparsable answers) without touching the others, targets are
 * deduplicated by address, and proxy-status rows become targets by their first pod IP.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Logger } from '../../lib/log.js';
import { MeshGraphScraper, proxyTargets } from './scraper.js';

const quiet = new Logger('error');

async function server(handler: http.RequestListener): Promise<{ port: number; close(): Promise<void> }> {
  const s = http.createServer(handler);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  return {
    port: (s.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        s.close(() => r());
        s.closeAllConnections();
      }),
  };
}

const LINE = 'istio_requests_total{reporter="source",source_workload="a",source_workload_namespace="ns",destination_workload="b",destination_workload_namespace="ns",destination_service="b.ns.svc.cluster.local",request_protocol="http",response_code="200"}';

test('scrape failures are per sidecar and named; good sidecars are unaffected', async () => {
  let n = 0;
  const good = await server((_req, res) => res.end(`${LINE} ${(n += 5)}\n`));
  const status = await server((_req, res) => res.writeHead(500).end('boom'));
  const slow = await server(() => undefined);
  const big = await server((_req, res) => res.end('#'.repeat(5000)));
  const garbage = await server((_req, res) => res.end('istio_requests_total{a="\\x"} 1\n'));
  const scraper = new MeshGraphScraper({
    targets: () => [
      { name: 'good', address: '127.0.0.1', port: good.port },
      { name: 'good-again', address: '127.0.0.1', port: good.port },
      { name: 'status', address: '127.0.0.1', port: status.port },
      { name: 'slow', address: '127.0.0.1', port: slow.port },
      { name: 'big', address: '127.0.0.1', port: big.port },
      { name: 'garbage', address: '127.0.0.1', port: garbage.port },
    ],
    intervalMs: 1000,
    windowMs: 60_000,
    timeoutMs: 300,
    maxBytes: 1000,
    log: quiet,
  });
  try {
    await scraper.scrapeOnce();
    await new Promise((r) => setTimeout(r, 20));
    await scraper.scrapeOnce();
    const g = scraper.graph();
    const byName = new Map(g.targets.map((t) => [t.name, t]));
    assert.equal(g.targets.length, 5, 'one target per address');
    assert.equal(byName.get('good')?.lastError, null);
    assert.equal(byName.get('good')?.scrapes, 2);
    assert.equal(byName.get('status')?.lastError, 'HTTP 500');
    assert.equal(byName.get('slow')?.lastError, 'timed out after 300 ms');
    assert.equal(byName.get('big')?.lastError, 'answer larger than 1000 bytes');
    assert.match(byName.get('garbage')?.lastError ?? '', /^line 1: invalid escape "\\x"/);
    assert.equal(g.basis, 'window');
    assert.equal(g.edges.length, 1);
    assert.equal(g.edges[0].http?.requests, 5);
  } finally {
    scraper.stop();
    for (const s of [good, status, slow, big, garbage]) await s.close();
  }
});

test('stop() ends a scrape in flight and no round follows', async () => {
  let hits = 0;
  const slow = await server(() => {
    hits++;
  });
  const scraper = new MeshGraphScraper({ targets: () => [{ name: 'slow', address: '127.0.0.1', port: slow.port }], intervalMs: 100, timeoutMs: 10_000, log: quiet });
  scraper.start();
  const t0 = Date.now();
  while (hits === 0 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 10));
  scraper.stop();
  await scraper.scrapeOnce();
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(hits, 1);
  await slow.close();
});

test('proxy-status rows become targets at the claimed pod IP their config stream comes from', () => {
  assert.deepEqual(
    proxyTargets(
      [
        { name: 'a.ns', peer: '10.0.0.1:40001', proxy: { podIps: ['10.0.0.1', 'fd00::1'] } },
        { name: 'b.ns', peer: '10.0.0.2:40002', proxy: { podIps: [] } },
        { name: 'c.ns', peer: '[fd00::3]:40003', proxy: { podIps: ['10.0.0.3', 'fd00::3'] } },
        { name: 'd.ns', peer: '[::ffff:10.0.0.4]:40004', proxy: { podIps: ['10.0.0.4'] } },
        { name: 'e.ns', peer: 'ipv4:10.0.0.5:40005', proxy: { podIps: ['10.0.0.5'] } },
      ],
      15020,
    ),
    [
      { name: 'a.ns', address: '10.0.0.1', port: 15020 },
      { name: 'c.ns', address: 'fd00::3', port: 15020 },
      { name: 'd.ns', address: '10.0.0.4', port: 15020 },
      { name: 'e.ns', address: '10.0.0.5', port: 15020 },
    ],
  );
});

test('a proxy claiming a pod IP it does not connect from is listed with the reason and never dialled', async () => {
  // A valid sidecar credential must not make the control plane connect wherever the hello points.
  const t = proxyTargets([{ name: 'evil.ns', peer: '10.0.0.9:40009', proxy: { podIps: ['169.254.169.254'] } }], 15020);
  assert.equal(t.length, 1);
  assert.equal(t[0].address, '169.254.169.254');
  assert.match(t[0].refused ?? '', /comes from 10\.0\.0\.9, which is not one of the pod IPs the proxy claims \(169\.254\.169\.254\)/);
  // The scraper records the refusal without connecting: a listener at the claimed address sees nothing.
  let hits = 0;
  const victim = await server((_req, res) => {
    hits++;
    res.end('');
  });
  try {
    const scraper = new MeshGraphScraper({ targets: () => proxyTargets([{ name: 'evil.ns', peer: '127.0.0.9:40009', proxy: { podIps: ['127.0.0.1'] } }], victim.port), intervalMs: 60_000, log: quiet });
    await scraper.scrapeOnce();
    assert.equal(hits, 0);
    const row = scraper.graph().targets.find((x) => x.name === 'evil.ns');
    assert.match(row?.lastError ?? '', /not scraped: the config stream comes from 127\.0\.0\.9/);
    scraper.stop();
  } finally {
    await victim.close();
  }
});

test('a pod IP that is not an IP address (a host name a proxy wrote in its hello) is never scraped', () => {
  assert.deepEqual(
    proxyTargets(
      [
        { name: 'a.ns', peer: '10.0.0.1:1', proxy: { podIps: ['metadata.google.internal'] } },
        { name: 'b.ns', peer: '10.0.0.2:1', proxy: { podIps: ['localhost', '10.0.0.2'] } },
        { name: 'c.ns', peer: '10.0.0.3:1', proxy: { podIps: ['10.0.0.3'] } },
      ],
      15020,
    ),
    [
      { name: 'b.ns', address: '10.0.0.2', port: 15020 },
      { name: 'c.ns', address: '10.0.0.3', port: 15020 },
    ],
  );
});

test('a sidecar that trickles its answer is cut at the timeout (the whole scrape, not the idle time), so the round ends', async () => {
  const timers: NodeJS.Timeout[] = [];
  const trickle = await server((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.write('# a\n');
    timers.push(setInterval(() => res.write('#\n'), 50));
  });
  const scraper = new MeshGraphScraper({ targets: () => [{ name: 'trickle', address: '127.0.0.1', port: trickle.port }], intervalMs: 1000, timeoutMs: 300, log: quiet });
  try {
    const t0 = Date.now();
    const round = scraper.scrapeOnce();
    const bound = new Promise<'bound'>((r) => setTimeout(() => r('bound'), 3000));
    assert.notEqual(await Promise.race([round.then(() => 'round'), bound]), 'bound', 'the round did not end');
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(scraper.graph().targets[0].lastError, 'timed out after 300 ms');
  } finally {
    scraper.stop();
    for (const t of timers) clearInterval(t);
    await trickle.close();
  }
});
