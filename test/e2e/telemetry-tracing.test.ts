/**
 * Telemetry API tracing end to end: the real `meshgate run` without any tracing flag; a reload adds
 * a Telemetry naming a MeshConfig OTLP/HTTP provider (a fake collector on loopback) with 100%
 * sampling and custom tags; later reloads turn span reporting off (context still propagated) and
 * sampling to 0 — all without a restart.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { freePort, get, removeDir, startGateway, tempDir, waitFor, writeConfig, type GatewayProcess } from '../helpers/gateway.js';
import { observabilityConfig } from '../support/observability-config.js';

const HOST = 'obs.example.com';

interface Span {
  traceId: string;
  name: string;
  attributes: Record<string, unknown>;
}

/** An OTLP/HTTP (JSON) traces receiver. */
async function startCollector(): Promise<{ port: number; spans: Span[]; close(): Promise<void> }> {
  const spans: Span[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      if (req.url === '/v1/traces' && req.method === 'POST') {
        const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: (Omit<Span, 'attributes'> & { attributes: { key: string; value: Record<string, unknown> }[] })[] }[] }[] };
        for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) for (const s of ss.spans) spans.push({ ...s, attributes: Object.fromEntries(s.attributes.map((a) => [a.key, Object.values(a.value)[0]])) });
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return { port: (server.address() as AddressInfo).port, spans, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

describe('Telemetry tracing, applied on reload', () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Awaited<ReturnType<typeof startEchoServer>>;
  let collector: Awaited<ReturnType<typeof startCollector>>;

  const upstream = async (headers: Record<string, string> = {}) => (JSON.parse((await get(`http://127.0.0.1:${gw.httpPort}/ok`, { host: HOST, headers })).body) as { headers: Record<string, string> }).headers;
  const version = async () => (JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/config_dump`)).body) as { version: string }).version;
  const telemetry = async (tracing: string) => {
    const before = await version();
    writeConfig(dir, 'telemetry.yaml', `apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: { name: mesh-default, namespace: istio-system }\nspec:\n  tracing:\n${tracing}`);
    await waitFor(async () => (await version()) !== before, 5000, 'the Telemetry change served');
  };

  before(async () => {
    web = await startEchoServer({ name: 'web' });
    collector = await startCollector();
    writeConfig(dir, 'config.yaml', observabilityConfig({ web: web.port, a: web.port, b: web.port, down: await freePort() }));
    writeConfig(
      dir,
      'mesh.yaml',
      `apiVersion: v1\nkind: ConfigMap\nmetadata: { name: istio, namespace: istio-system }\ndata:\n  mesh: |\n    extensionProviders:\n    - name: otel\n      opentelemetry:\n        service: 127.0.0.1\n        port: ${collector.port}\n        http: { path: /v1/traces }\n`,
    );
    gw = await startGateway({ configDir: dir, workers: 1 });
  });

  after(async () => {
    await gw?.stop();
    await web?.close();
    await collector?.close();
    removeDir(dir);
  });

  test('no Telemetry and no flag: trace context is still made and propagated (W3C and B3), nothing exported', async () => {
    // Istio's proxies make a span per request even without a tracing backend; apps rely on the headers.
    const h = await upstream();
    const m = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(h.traceparent ?? '');
    assert.ok(m, `a new trace upstream: ${h.traceparent}`);
    assert.equal(h['x-b3-traceid'], m[1]);
    assert.equal(h['x-b3-spanid'], m[2]);
    assert.match(h['x-b3-sampled'] ?? '', /^[01]$/);
    assert.equal(h['x-b3-parentspanid'], undefined, 'a new trace has no parent');
    // The client's W3C context is continued: same trace, sampled flag kept, a new parent span id.
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const client = '00f067aa0ba902b7';
    const w = await upstream({ traceparent: `00-${traceId}-${client}-01` });
    const wm = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(w.traceparent ?? '');
    assert.ok(wm, `continued upstream: ${w.traceparent}`);
    assert.equal(wm[1], traceId);
    assert.notEqual(wm[2], client, 'the upstream must see the gateway span as its parent');
    assert.equal(w['x-b3-parentspanid'], client);
    // B3 multi-header from the client: continued likewise.
    const b = await upstream({ 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': '1111222233334444', 'x-b3-sampled': '0' });
    assert.match(b.traceparent ?? '', /^00-0000000000000000a3ce929d0e0e4736-[0-9a-f]{16}-00$/);
    assert.notEqual(b['x-b3-spanid'], '1111222233334444');
    assert.equal(b['x-b3-parentspanid'], '1111222233334444');
    // Two requests, two spans.
    assert.notEqual((await upstream()).traceparent, h.traceparent);
    assert.equal(collector.spans.length, 0, 'no collector is configured yet: nothing exported');
  });

  test('a Telemetry naming the provider: sampled spans with custom tags reach the collector', async () => {
    await telemetry(`  - providers: [{ name: otel }]\n    randomSamplingPercentage: 100\n    customTags:\n      team: { literal: { value: edge } }\n      tenant: { header: { name: x-tenant, defaultValue: none } }\n`);
    const h = await upstream({ 'x-tenant': 'acme' });
    const m = /^00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(h.traceparent ?? '');
    assert.ok(m, `a sampled trace upstream: ${h.traceparent}`);
    await waitFor(() => collector.spans.some((s) => s.traceId === m[1]), 10_000, 'the span at the collector');
    const span = collector.spans.find((s) => s.traceId === m[1])!;
    assert.equal(span.attributes.team, 'edge');
    assert.equal(span.attributes.tenant, 'acme');
    const h2 = await upstream();
    const m2 = /^00-([0-9a-f]{32})-/.exec(h2.traceparent ?? '')!;
    await waitFor(() => collector.spans.some((s) => s.traceId === m2[1]), 10_000, 'the second span');
    assert.equal(collector.spans.find((s) => s.traceId === m2[1])!.attributes.tenant, 'none', 'header tag default');
  });

  test('disableSpanReporting: context still propagated, nothing exported', async () => {
    await telemetry(`  - providers: [{ name: otel }]\n    randomSamplingPercentage: 100\n    disableSpanReporting: true\n`);
    const h = await upstream();
    const m = /^00-([0-9a-f]{32})-[0-9a-f]{16}-01$/.exec(h.traceparent ?? '');
    assert.ok(m, `trace context upstream: ${h.traceparent}`);
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(!collector.spans.some((s) => s.traceId === m[1]), 'the span is not exported');
  });

  test('randomSamplingPercentage: 0 leaves new traces unsampled', async () => {
    await telemetry(`  - providers: [{ name: otel }]\n    randomSamplingPercentage: 0\n`);
    for (let i = 0; i < 5; i++) assert.match((await upstream()).traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  });
});
