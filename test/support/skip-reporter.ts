/**
 * A node:test reporter that prints one line at the end of a run: how many tests were skipped and
 * why (reasons grouped), programs to install listed first. `npm test` runs it next to the TAP
 * reporter; .ci/run fails when that line reports a missing program.
 *
 *   # meshgate skipped 0 tests, 0 for missing programs
 *   # meshgate skipped 9 tests, 2 for missing programs: 2 needs curl (not found; install: apt-get install curl); 7 HTTP/1.1 framing
 */
import { MISSING_PREFIX } from './requires.js';

interface TestEvent {
  type: string;
  data: { skip?: boolean | string; name?: string; nesting?: number };
}

export default async function* skipReporter(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const reasons = new Map<string, number>();
  let total = 0;
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const skip = event.data.skip;
    if (skip === undefined || skip === false) continue;
    total++;
    const reason = typeof skip === 'string' && skip !== '' ? skip : '(no reason given)';
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
  }
  const sorted = [...reasons].sort(([a], [b]) => Number(b.startsWith(MISSING_PREFIX)) - Number(a.startsWith(MISSING_PREFIX)) || (a < b ? -1 : 1));
  const missing = sorted.filter(([r]) => r.startsWith(MISSING_PREFIX)).reduce((n, [, c]) => n + c, 0);
  const detail = sorted.map(([r, n]) => `${n} ${r}`).join('; ');
  yield `# meshgate skipped ${total} test${total === 1 ? '' : 's'}, ${missing} for missing programs${total > 0 ? `: ${detail}` : ''}\n`;
}
