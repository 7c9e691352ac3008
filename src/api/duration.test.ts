import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseDuration } from './duration.js';

describe('parseDuration', () => {
  const cases: { desc: string; input: string; want: number | null }[] = [
    { desc: 'seconds with a fraction', input: '1.5s', want: 1500 },
    { desc: 'milliseconds', input: '100ms', want: 100 },
    { desc: 'minutes', input: '2m', want: 120_000 },
    { desc: 'hours', input: '1h', want: 3_600_000 },
    { desc: 'compound', input: '1h30m10s', want: 5_410_000 },
    { desc: 'protobuf JSON form', input: '3.000s', want: 3000 },
    { desc: 'microseconds (us, µ, μ)', input: '1500us', want: 1.5 },
    { desc: 'micro sign', input: '1000µs', want: 1 },
    { desc: 'nanoseconds', input: '1000000ns', want: 1 },
    { desc: 'leading dot', input: '.5s', want: 500 },
    { desc: 'trailing dot', input: '5.s', want: 5000 },
    { desc: 'bare zero', input: '0', want: 0 },
    { desc: 'zero seconds', input: '0s', want: 0 },
    { desc: 'negative', input: '-1s', want: -1000 },
    { desc: 'plus sign', input: '+2s', want: 2000 },
    { desc: 'empty', input: '', want: null },
    { desc: 'no unit', input: '10', want: null },
    { desc: 'unknown unit', input: '1d', want: null },
    { desc: 'space', input: '1 s', want: null },
    { desc: 'upper case unit', input: '1S', want: null },
    { desc: 'sign only', input: '-', want: null },
    { desc: 'dot only', input: '.s', want: null },
    { desc: 'trailing garbage', input: '1sx', want: null },
  ];
  for (const c of cases) {
    test(c.desc, () => assert.equal(parseDuration(c.input), c.want, `parseDuration(${JSON.stringify(c.input)})`));
  }
});
