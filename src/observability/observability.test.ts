/** Table tests for the small pure parts of observability. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AccessLogWriter } from './access-log.js';
import { destinationLabels } from './metrics.js';
import { otlpTracesUrl, parseB3, parseTraceparent, replaceTraceHeaders } from './tracing.js';
import { parsePrometheus, quantile } from '../admin/dashboard/stats.js';
import { formatTable } from '../admin/dashboard/model.js';

test('parseTraceparent', () => {
  const cases: { desc: string; input: string | undefined; want: { traceId: string; spanId: string; traceFlags: number } | null }[] = [
    { desc: 'sampled', input: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 } },
    { desc: 'not sampled', input: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00', want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 0 } },
    { desc: 'upper case is accepted', input: '00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01', want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 } },
    { desc: 'future version with extra field', input: '01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra', want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 } },
    { desc: 'all-zero trace id', input: '00-00000000000000000000000000000000-00f067aa0ba902b7-01', want: null },
    { desc: 'all-zero span id', input: '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01', want: null },
    { desc: 'version ff', input: 'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', want: null },
    { desc: 'short trace id', input: '00-4bf92f3577b34da6-00f067aa0ba902b7-01', want: null },
    { desc: 'absent', input: undefined, want: null },
    { desc: 'other flag bits: only sampled is kept', input: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03', want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 } },
    { desc: 'a non-hex character', input: '00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01', want: null },
    { desc: 'non-hex flags', input: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x', want: null },
    { desc: 'wrong separator', input: '00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01', want: null },
    { desc: 'surrounding spaces are trimmed', input: ' 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ', want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', traceFlags: 1 } },
  ];
  for (const c of cases) {
    const got = parseTraceparent(c.input);
    assert.deepEqual(got === null ? null : { traceId: got.traceId, spanId: got.spanId, traceFlags: got.traceFlags }, c.want, c.desc);
  }
});

test('parseB3', () => {
  const cases: { desc: string; input: Record<string, string>; want: { traceId: string; spanId: string; sampled: boolean | null } | null }[] = [
    { desc: 'multi-header, 64-bit id padded', input: { 'x-b3-traceid': 'a3ce929d0e0e4736', 'x-b3-spanid': '00f067aa0ba902b7', 'x-b3-sampled': '1' }, want: { traceId: '0000000000000000a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true } },
    { desc: 'multi-header, no decision', input: { 'x-b3-traceid': '4bf92f3577b34da6a3ce929d0e0e4736', 'x-b3-spanid': '00f067aa0ba902b7' }, want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: null } },
    { desc: 'debug flag samples', input: { 'x-b3-traceid': '4bf92f3577b34da6a3ce929d0e0e4736', 'x-b3-spanid': '00f067aa0ba902b7', 'x-b3-flags': '1' }, want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: true } },
    { desc: 'single header, deny', input: { b3: '4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0' }, want: { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', sampled: false } },
    { desc: 'single header "0" only (deny, no ids)', input: { b3: '0' }, want: null },
    { desc: 'bad span id', input: { 'x-b3-traceid': '4bf92f3577b34da6a3ce929d0e0e4736', 'x-b3-spanid': 'xyz' }, want: null },
  ];
  for (const c of cases) {
    const got = parseB3(c.input);
    assert.deepEqual(got === null ? null : { traceId: got.context.traceId, spanId: got.context.spanId, sampled: got.sampled }, c.want, c.desc);
  }
});

test('replaceTraceHeaders drops the client trace headers, keeps tracestate and the rest', () => {
  const got = replaceTraceHeaders(['accept', '*/*', 'traceparent', 'old', 'tracestate', 'a=b', 'x-b3-spanid', 'old', 'b3', 'old'], ['traceparent', 'new']);
  assert.deepEqual(got, ['accept', '*/*', 'tracestate', 'a=b', 'traceparent', 'new']);
});

test('otlpTracesUrl', () => {
  assert.equal(otlpTracesUrl('http://collector:4318'), 'http://collector:4318/v1/traces');
  assert.equal(otlpTracesUrl('http://collector:4318/custom/traces'), 'http://collector:4318/custom/traces');
});

test('destinationLabels from cluster names', () => {
  const l = destinationLabels('outbound|9080|v1|reviews.shop.svc.cluster.local');
  assert.equal(l.destination_service, 'reviews.shop.svc.cluster.local');
  assert.equal(l.destination_service_name, 'reviews');
  assert.equal(l.destination_service_namespace, 'shop');
  assert.equal(destinationLabels('').destination_service, 'unknown');
  assert.equal(destinationLabels('outbound|443||api.example.com').destination_service_namespace, 'unknown');
});

test('quantile interpolates inside the bucket', () => {
  const b: [number, number][] = [[1, 0], [5, 50], [10, 100], [Infinity, 100]];
  assert.equal(quantile(b, 0.5), 5);
  assert.equal(quantile(b, 0.25), 3);
  assert.equal(quantile(b, 0.75), 7.5);
  assert.equal(quantile([[1, 0], [Infinity, 0]], 0.5), null);
  assert.equal(quantile([[1, 0], [Infinity, 4]], 0.5), 1, 'above every bound: the last finite bound');
});

test('parsePrometheus reads labels with escapes and +Inf', () => {
  const got = parsePrometheus('# HELP x y\nx_bucket{a="q\\"uote",le="+Inf"} 3\nup 1\n');
  assert.deepEqual(got, [
    { name: 'x_bucket', labels: { a: 'q"uote', le: '+Inf' }, value: 3 },
    { name: 'up', labels: {}, value: 1 },
  ]);
});

test('formatTable pads columns and leaves no trailing spaces', () => {
  assert.equal(formatTable(['A', 'BB'], [['xyz', '1'], ['q', '']]), 'A    BB\n---  --\nxyz  1\nq\n');
});

test('AccessLogWriter writes every line in order and drops (counted) over its buffer', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'meshgate-log-'));
  try {
    const file = path.join(dir, 'access.log');
    let dropped = 0;
    const w = new AccessLogWriter(file, () => dropped++, 64 * 1024);
    const lines: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const l = `line ${i} ${'x'.repeat(40)}\n`;
      lines.push(l);
      w.push(l);
    }
    await w.close(5000);
    const written = readFileSync(file, 'utf8');
    const got = written.split('\n').filter(Boolean);
    // Nothing waits: what did not fit in the buffer was dropped and counted, the rest kept in order.
    assert.ok(dropped > 0, 'a burst larger than the buffer drops');
    assert.equal(got.length + dropped, 5000);
    assert.deepEqual(got, lines.slice(0, got.length).map((l) => l.trimEnd()));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
