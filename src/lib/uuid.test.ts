import assert from 'node:assert/strict';
import { test } from 'node:test';
import { uuid4 } from './uuid.js';

const V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

test('uuid4: RFC 9562 version 4 text, distinct across refills of the random bytes', () => {
  const seen = new Set<string>();
  // 10 refills of the 256-UUID batch.
  for (let i = 0; i < 2560; i++) {
    const u = uuid4();
    assert.match(u, V4);
    seen.add(u);
  }
  assert.equal(seen.size, 2560);
});

test('uuid4: every hex digit position takes many values (the bytes are random, not a counter)', () => {
  const perPosition = Array.from({ length: 36 }, () => new Set<string>());
  for (let i = 0; i < 2000; i++) {
    const u = uuid4();
    for (let p = 0; p < 36; p++) perPosition[p].add(u[p]);
  }
  for (let p = 0; p < 36; p++) {
    if ([8, 13, 18, 23].includes(p)) assert.deepEqual([...perPosition[p]], ['-']);
    else if (p === 14) assert.deepEqual([...perPosition[p]], ['4']);
    else if (p === 19) assert.deepEqual([...perPosition[p]].sort(), ['8', '9', 'a', 'b']);
    else assert.equal(perPosition[p].size, 16, `position ${p}`);
  }
});
