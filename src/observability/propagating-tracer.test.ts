import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PropagatingTracer } from './propagating-tracer.js';
import type { RequestRecord } from './record.js';

/** A record whose downstream carries `raw` (flat name/value pairs, names as the client sent them). */
function recordWith(raw: string[]): RequestRecord {
  const header = (name: string): string | null => {
    for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) return raw[i + 1];
    return null;
  };
  return { d: { rawHeaders: raw, header }, span: null } as unknown as RequestRecord;
}

function upstream(raw: string[], sampling = 0): Record<string, string> {
  const t = new PropagatingTracer(sampling);
  const rec = recordWith(raw);
  t.start(rec);
  const h = t.headers(rec);
  const out: Record<string, string> = {};
  for (let i = 0; i < h.length; i += 2) out[h[i]] = h[i + 1];
  return out;
}

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const SPAN = '00f067aa0ba902b7';

test('traceparent is continued whatever the case of its name; the first one wins', () => {
  const h = upstream(['Host', 'a', 'TraceParent', `00-${TRACE}-${SPAN}-01`, 'traceparent', `00-${'1'.repeat(32)}-${'2'.repeat(16)}-00`]);
  assert.match(h.traceparent, new RegExp(`^00-${TRACE}-[0-9a-f]{16}-01$`));
  assert.equal(h['x-b3-parentspanid'], SPAN);
  assert.equal(h['x-b3-sampled'], '1');
});

test('B3 single and multi-header forms are continued, names in any case', () => {
  const single = upstream(['B3', `${TRACE}-${SPAN}-1`]);
  assert.equal(single['x-b3-traceid'], TRACE);
  assert.equal(single['x-b3-parentspanid'], SPAN);
  assert.equal(single['x-b3-sampled'], '1');
  const multi = upstream(['X-B3-TraceId', TRACE, 'X-B3-SpanId', SPAN, 'X-B3-Flags', '1']);
  assert.equal(multi['x-b3-traceid'], TRACE);
  assert.equal(multi['x-b3-parentspanid'], SPAN);
  assert.equal(multi['x-b3-sampled'], '1');
});

test('without trace headers a new trace starts, with non-zero ids and the sampling decision', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const h = upstream(['host', 'a', 'x-b3', 'not a b3 header', 'x-request-id', 'r'], 0);
    assert.match(h.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
    assert.notEqual(h['x-b3-traceid'], '0'.repeat(32));
    assert.equal(h['x-b3-parentspanid'], undefined);
    seen.add(h['x-b3-traceid']);
  }
  assert.equal(seen.size, 200);
  assert.equal(upstream([], 100)['x-b3-sampled'], '1');
});
