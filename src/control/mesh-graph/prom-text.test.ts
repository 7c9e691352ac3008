import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Histogram, Registry } from 'prom-client';
import { parsePromText, PromParseError, seriesKey } from './prom-text.js';

const good: { desc: string; input: string; want: { name: string; labels: Record<string, string>; value: number; timestampMs?: number | null }[] }[] = [
  { desc: 'bare sample', input: 'up 1\n', want: [{ name: 'up', labels: {}, value: 1 }] },
  { desc: 'labels, blanks inside braces, trailing comma', input: 'm{ a = "x" , b="y", } 2.5\n', want: [{ name: 'm', labels: { a: 'x', b: 'y' }, value: 2.5 }] },
  { desc: 'escapes in label values', input: 'm{v="a\\\\b\\"c\\nd"} 1\n', want: [{ name: 'm', labels: { v: 'a\\b"c\nd' }, value: 1 }] },
  { desc: 'braces and commas inside a value', input: 'm{v="} x{,=",w="z"} 3\n', want: [{ name: 'm', labels: { v: '} x{,=', w: 'z' }, value: 3 }] },
  { desc: 'special floats and exponents', input: 'a NaN\nb +Inf\nc -Inf\nd 1e3\ne -0.5E-2\n', want: [{ name: 'a', labels: {}, value: NaN }, { name: 'b', labels: {}, value: Infinity }, { name: 'c', labels: {}, value: -Infinity }, { name: 'd', labels: {}, value: 1000 }, { name: 'e', labels: {}, value: -0.005 }] },
  { desc: 'timestamp', input: 'm{a="1"} 7 1700000000000\n', want: [{ name: 'm', labels: { a: '1' }, value: 7, timestampMs: 1700000000000 }] },
  { desc: 'comments, HELP with escapes, TYPE, blank lines, CRLF', input: '# a comment\r\n# HELP m Some \\\\ help\\n.\r\n# TYPE m counter\r\n\r\nm_total 4\r\n', want: [{ name: 'm_total', labels: {}, value: 4 }] },
  { desc: 'empty braces, colon in name', input: 'ns:m{} 0\n', want: [{ name: 'ns:m', labels: {}, value: 0 }] },
];

for (const c of good) {
  test(`prom text: ${c.desc}`, () => {
    const got = parsePromText(c.input).samples;
    assert.equal(got.length, c.want.length, JSON.stringify(got));
    c.want.forEach((w, i) => {
      assert.equal(got[i].name, w.name);
      assert.deepEqual(got[i].labels, w.labels);
      if (Number.isNaN(w.value)) assert.ok(Number.isNaN(got[i].value));
      else assert.equal(got[i].value, w.value);
      assert.equal(got[i].timestampMs, w.timestampMs ?? null);
    });
  });
}

const bad: { desc: string; input: string; want: RegExp }[] = [
  { desc: 'unknown escape', input: 'm{a="\\t"} 1', want: /line 1: invalid escape "\\t" in the value of label a of m/ },
  { desc: 'unterminated value', input: 'ok 1\nm{a="x} 1', want: /line 2: unterminated value of label a/ },
  { desc: 'repeated label', input: 'm{a="1",a="2"} 1', want: /label a repeated in m/ },
  { desc: 'unquoted value', input: 'm{a=1} 1', want: /expected a quoted value for label a/ },
  { desc: 'bad label name', input: 'm{1a="x"} 1', want: /expected a label name/ },
  { desc: 'missing value', input: 'm{a="x"}', want: /missing value for m/ },
  { desc: 'value not a number', input: 'm 12abc', want: /value "12abc" of m is not a number/ },
  { desc: 'hex is not a Prometheus float', input: 'm 0x10', want: /not a number/ },
  { desc: 'bad timestamp', input: 'm 1 2.5', want: /timestamp "2.5" of m is not an integer/ },
  { desc: 'text after the timestamp', input: 'm 1 2 3', want: /unexpected text after the value/ },
  { desc: 'no blank before the value', input: 'm{a="x"}1', want: /expected a blank before the value/ },
  { desc: 'bad metric name', input: '9m 1', want: /expected a metric name/ },
  { desc: 'unknown type', input: '# TYPE m countr\nm 1', want: /unknown metric type "countr"/ },
  { desc: 'second TYPE', input: '# TYPE m counter\n# TYPE m gauge\nm 1', want: /line 2: second # TYPE line for m/ },
  { desc: 'missing comma between labels', input: 'm{a="x" b="y"} 1', want: /expected "," or "}" after label a/ },
];

for (const c of bad) {
  test(`prom text refuses: ${c.desc}`, () => {
    assert.throws(() => parsePromText(c.input), (e: unknown) => e instanceof PromParseError && c.want.test(e.message));
  });
}

test('prom text: reads back what prom-client writes, label values with quotes, backslashes and newlines included', async () => {
  const registry = new Registry();
  const c = new Counter({ name: 'istio_requests_total', help: 'Requests "quoted" \\ and\nnewline.', labelNames: ['reporter', 'path'], registers: [registry] });
  const h = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'd', labelNames: ['reporter'], buckets: [1, 5, 10], registers: [registry] });
  const weird = 'a "b" \\c\nd} e{,';
  c.inc({ reporter: 'source', path: weird }, 3);
  c.inc({ reporter: 'destination', path: '/' }, 1);
  h.observe({ reporter: 'source' }, 4);
  h.observe({ reporter: 'source' }, 50);
  const exp = parsePromText(await registry.metrics());
  assert.equal(exp.types.get('istio_requests_total'), 'counter');
  assert.equal(exp.types.get('istio_request_duration_milliseconds'), 'histogram');
  const weirdSample = exp.samples.find((s) => s.name === 'istio_requests_total' && s.labels.path === weird);
  assert.ok(weirdSample, `the escaped label value read back: ${JSON.stringify(exp.samples.filter((s) => s.name === 'istio_requests_total'))}`);
  assert.equal(weirdSample.value, 3);
  const buckets = exp.samples.filter((s) => s.name === 'istio_request_duration_milliseconds_bucket').map((s) => [s.labels.le, s.value]);
  assert.deepEqual(buckets, [['1', 0], ['5', 1], ['10', 1], ['+Inf', 2]]);
});

test('series keys do not depend on label order and keep values apart', () => {
  assert.equal(seriesKey('m', { a: '1', b: '2' }), seriesKey('m', { b: '2', a: '1' }));
  assert.notEqual(seriesKey('m', { a: '1,b=2' }), seriesKey('m', { a: '1', b: '2' }));
  assert.notEqual(seriesKey('m', { a: '1' }), seriesKey('n', { a: '1' }));
});
