/**
 * Records which modules a process loads, for the lean-process tests and for measuring (issue 11).
 * Use: `node --import ./dist/test/support/module-recorder.js ...` with MESHGATE_MODULE_LOG_DIR set;
 * the flag and the variable reach cluster workers too (they inherit execArgv and the environment).
 * Every ES module URL the process loads is appended, as it loads, to `$DIR/<pid>.modules`, and when
 * the process exits every CommonJS file in require.cache is appended as well (CommonJS modules that
 * an ES module imports reach the load hook, but what they `require()` does not).
 */
import { appendFileSync } from 'node:fs';
import { createRequire, register } from 'node:module';
import path from 'node:path';

const dir = process.env.MESHGATE_MODULE_LOG_DIR;
if (dir) {
  const file = path.join(dir, `${process.pid}.modules`);
  register('./module-recorder-hooks.js', import.meta.url, { data: { file } });
  const require = createRequire(import.meta.url);
  process.on('exit', () => {
    const cjs = Object.keys(require.cache).map((f) => `file://${f}`);
    if (cjs.length > 0) appendFileSync(file, `${cjs.join('\n')}\n`);
  });
}
