/**
 * Process bookkeeping for the benchmark: spawning pinned processes, reading their CPU time and RSS
 * from /proc (the process and every live descendant), and killing every one of them by PID.
 *
 * CPU: utime + stime (fields 14 and 15 of /proc/PID/stat, in clock ticks of `getconf CLK_TCK`)
 * summed over the process tree. cutime/cstime are not used: they only count children that have
 * exited and been waited for, and the processes measured here stay alive.
 */

import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import http from 'node:http';

/** Clock ticks per second for /proc/PID/stat times; 100 on every Linux this has met. */
export const CLOCK_TICKS: number = (() => {
  try {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return Number.isFinite(v) && v > 0 ? v : 100;
  } catch {
    return 100;
  }
})();

/** Whether `taskset` can pin processes here (present and more than one CPU). */
export function tasksetAvailable(cpus: number): boolean {
  if (cpus < 2) return false;
  try {
    execFileSync('taskset', ['-c', '0', 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Whether a command is on PATH. */
export function which(cmd: string): string | null {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

interface StatFields {
  ppid: number;
  ticks: number;
}

function readStat(pid: number): StatFields | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // comm (field 2) may hold spaces and parentheses: split after the last ')'.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): ppid is field 4, utime 14, stime 15.
  return { ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]) };
}

/** The PID and every live descendant (one scan of /proc). */
export function processTree(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const pid = Number(name);
    const st = readStat(pid);
    if (st === null) continue;
    let list = children.get(st.ppid);
    if (list === undefined) children.set(st.ppid, (list = []));
    list.push(pid);
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const pid = stack.pop() as number;
    if (pid !== root || readStat(root) !== null) out.push(pid);
    for (const child of children.get(pid) ?? []) stack.push(child);
  }
  return out;
}

/** CPU time in milliseconds (user + system) of a set of PIDs. */
export function cpuMs(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) ticks += readStat(pid)?.ticks ?? 0;
  return (ticks * 1000) / CLOCK_TICKS;
}

/** Resident set size in bytes summed over a set of PIDs (VmRSS of each). */
export function rssBytes(pids: number[]): number {
  let kib = 0;
  for (const pid of pids) {
    try {
      const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kib += Number(m[1]);
    } catch {
      // exited between the scan and the read
    }
  }
  return kib * 1024;
}

/** A spawned process and everything it forked, tracked so it can be killed by PID. */
export interface Tracked {
  name: string;
  child: ChildProcess;
  pid: number;
  /** Every descendant PID ever seen (recorded at each sample), killed at the end too. */
  seen: Set<number>;
  stderrTail: string;
}

const tracked: Tracked[] = [];

/**
 * Spawns `cmd args`, pinned to `cpu` with taskset when `pin` is set (children inherit the
 * affinity), and tracks it for `killAll`. stdout is discarded; the last 4 KiB of stderr are kept
 * for error messages.
 */
export function spawnTracked(name: string, cmd: string, args: string[], opts: { cpu: number | null; env?: NodeJS.ProcessEnv; cwd?: string }): Tracked {
  const argv = opts.cpu === null ? [cmd, ...args] : ['taskset', '-c', String(opts.cpu), cmd, ...args];
  const spawnOpts: SpawnOptions = { stdio: ['ignore', 'ignore', 'pipe'], env: opts.env ?? process.env, cwd: opts.cwd };
  // taskset execs the command, so the PID is the command's own.
  const child = spawn(argv[0], argv.slice(1), spawnOpts);
  if (child.pid === undefined) throw new Error(`${name}: could not spawn ${argv.join(' ')}`);
  const t: Tracked = { name, child, pid: child.pid, seen: new Set([child.pid]), stderrTail: '' };
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (s: string) => {
    t.stderrTail = (t.stderrTail + s).slice(-4096);
  });
  child.on('error', () => {});
  tracked.push(t);
  return t;
}

/** The live process tree of a tracked process, remembering every PID for the final kill. */
export function trackedTree(t: Tracked): number[] {
  const pids = processTree(t.pid);
  for (const p of pids) t.seen.add(p);
  return pids;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** SIGTERM to the root, wait up to `graceMs` for the whole tree to exit, then SIGKILL by PID. */
export async function stopTracked(t: Tracked, graceMs = 6000): Promise<void> {
  trackedTree(t);
  if (t.child.exitCode === null && t.child.signalCode === null && alive(t.pid)) {
    try {
      process.kill(t.pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && [...t.seen].some((p) => p === t.pid ? t.child.exitCode === null && t.child.signalCode === null : alive(p))) await sleep(50);
  for (const p of t.seen) {
    if (p === t.pid ? t.child.exitCode === null && t.child.signalCode === null : alive(p)) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
  const i = tracked.indexOf(t);
  if (i >= 0) tracked.splice(i, 1);
}

/** Stops every tracked process (in reverse start order). */
export async function killAll(graceMs = 6000): Promise<void> {
  for (const t of [...tracked].reverse()) await stopTracked(t, graceMs);
}

/** Synchronous last resort (process 'exit' handler): SIGKILL every tracked PID. */
export function killAllSync(): void {
  for (const t of tracked) {
    for (const p of t.seen) {
      try {
        process.kill(p, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }
}

/** A free TCP port on 127.0.0.1 (bound then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = http.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** One GET with a timeout: status, body and headers, or the error message. */
export function httpGet(port: number, path: string, host: string, timeoutMs = 2000): Promise<{ status: number; body: string; headers: http.IncomingHttpHeaders } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path, headers: { host }, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
      res.on('error', (e) => resolve({ error: e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve({ error: e.message }));
  });
}

/** Polls until `check` returns true or the deadline passes; throws with `what` on timeout. */
export async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, t?: Tracked): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (t !== undefined && (t.child.exitCode !== null || t.child.signalCode !== null)) {
      throw new Error(`${t.name} exited (${t.child.exitCode ?? t.child.signalCode}) before ${what}:\n${t.stderrTail}`);
    }
    if (await check()) return;
    await sleep(100);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${t ? `:\n${t.stderrTail}` : ''}`);
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.setTimeout(500);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('timeout', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(false));
  });
}

/** Busy and steal time per CPU in ms from /proc/stat (busy = user+nice+system+irq+softirq). */
export function cpuBusyMs(): Array<{ busy: number; steal: number }> {
  const out: Array<{ busy: number; steal: number }> = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2].trim().split(/\s+/).map(Number);
    // user nice system idle iowait irq softirq steal ...
    out[Number(m[1])] = { busy: ((f[0] + f[1] + f[2] + f[5] + f[6]) * 1000) / CLOCK_TICKS, steal: ((f[7] ?? 0) * 1000) / CLOCK_TICKS };
  }
  return out;
}

/** CPU ms of this process's exited, waited-for children (cutime + cstime of /proc/self/stat). */
export function childrenCpuMs(): number {
  const text = readFileSync('/proc/self/stat', 'utf8');
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // fields 16 and 17 (cutime, cstime) are rest[13] and rest[14].
  return ((Number(rest[13]) + Number(rest[14])) * 1000) / CLOCK_TICKS;
}

/** CPU ms per PID (utime + stime), for a breakdown of a process tree. */
export function cpuMsByPid(pids: number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) out.set(pid, ((readStat(pid)?.ticks ?? 0) * 1000) / CLOCK_TICKS);
  return out;
}

/** Pins this process (all its threads) to one CPU, so the harness stays off the proxy's CPU. */
export function pinSelf(cpu: number): void {
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
  } catch {
    // not fatal: the harness is mostly idle
  }
}
