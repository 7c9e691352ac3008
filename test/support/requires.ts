/**
 * Tests that drive an external program check for it first and skip with a line saying what to
 * install (the README's `npm test` passes on a machine with only Node.js and npm). Under CI
 * (`MESHGATE_CI=1`, set by .ci/run, which installs everything) a missing program is an error
 * instead: CI must skip nothing.
 *
 * Use as a test option: `test('...', { skip: needs('curl') }, ...)`.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import path from 'node:path';

/** Program -> Debian package (the install hint). */
const PACKAGES: Readonly<Record<string, string>> = {
  curl: 'curl',
  openssl: 'openssl',
  nghttp: 'nghttp2-client',
  h2load: 'nghttp2-client',
  ss: 'iproute2',
  chromium: 'chromium',
  'python3-h2': 'python3-h2',
};

/** Skip reasons made here start with this (the skip summary tells them from other skips). */
export const MISSING_PREFIX = 'needs ';

const known = new Map<string, boolean>();

function onPath(program: string): boolean {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir === '') continue;
    try {
      accessSync(path.join(dir, program), constants.X_OK);
      return true;
    } catch {
      // not here
    }
  }
  return false;
}

/** Whether `program` can be used: on PATH; `chromium` at /usr/bin/chromium; `python3-h2` importable by /usr/bin/python3. */
export function hasProgram(program: string): boolean {
  let ok = known.get(program);
  if (ok !== undefined) return ok;
  if (program === 'chromium') ok = existsSync(CHROMIUM) && onPath('chromium');
  else if (program === 'python3-h2') ok = existsSync(PYTHON3) && onPath('python3') && spawnSync(PYTHON3, ['-c', 'import h2, hyperframe'], { stdio: 'ignore', timeout: 5000 }).status === 0;
  else ok = onPath(program);
  known.set(program, ok);
  return ok;
}

export const CHROMIUM = '/usr/bin/chromium';
export const PYTHON3 = '/usr/bin/python3';

/**
 * false when every program is there; else the skip reason, e.g.
 * `needs curl, nghttp (not found; install: apt-get install curl nghttp2-client)`.
 * With MESHGATE_CI=1 a missing program throws: the test file fails instead of skipping.
 */
export function needs(...programs: string[]): string | false {
  const missing = programs.filter((p) => !hasProgram(p));
  if (missing.length === 0) return false;
  const pkgs = [...new Set(missing.map((p) => PACKAGES[p] ?? p))];
  const reason = `${MISSING_PREFIX}${missing.join(', ')} (not found; install: apt-get install ${pkgs.join(' ')})`;
  if (process.env.MESHGATE_CI === '1') throw new Error(`MESHGATE_CI=1: a test ${reason}; CI must skip nothing`);
  return reason;
}
