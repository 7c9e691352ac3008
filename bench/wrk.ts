/**
 * Runs wrk (one thread, keep-alive connections, `--latency`) and parses what it prints.
 */

import { spawn } from 'node:child_process';

export interface WrkOptions {
  port: number;
  path: string;
  host: string;
  connections: number;
  durationSec: number;
  /** CPU to pin wrk to with taskset, or null. */
  cpu: number | null;
}

export interface WrkResult {
  requests: number;
  seconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  /** Socket errors (connect + read + write + timeout). */
  socketErrors: number;
  /** Responses with a status outside 2xx/3xx. */
  non2xx: number;
  raw: string;
}

/** The wrk command line, as printed in the output and the doc. */
export function wrkArgs(o: WrkOptions): string[] {
  return ['-t1', `-c${o.connections}`, `-d${o.durationSec}s`, '--latency', '-H', `Host: ${o.host}`, `http://127.0.0.1:${o.port}${o.path}`];
}

function toMs(value: string, unit: string): number {
  const v = Number(value);
  switch (unit) {
    case 'us':
      return v / 1000;
    case 'ms':
      return v;
    case 's':
      return v * 1000;
    case 'm':
      return v * 60_000;
    default:
      return Number.NaN;
  }
}

/** Parses wrk 4.x output; throws when the summary lines are missing. */
export function parseWrk(raw: string): WrkResult {
  const total = /(\d+) requests in ([\d.]+)(us|ms|s|m),/.exec(raw);
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(raw);
  const p50 = /^\s+50%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(raw);
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(raw);
  if (!total || !rps || !p50 || !p99) throw new Error(`could not parse wrk output:\n${raw}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(raw);
  return {
    requests: Number(total[1]),
    seconds: toMs(total[2], total[3]) / 1000,
    rps: Number(rps[1]),
    p50Ms: toMs(p50[1], p50[2]),
    p99Ms: toMs(p99[1], p99[2]),
    socketErrors: sock ? Number(sock[1]) + Number(sock[2]) + Number(sock[3]) + Number(sock[4]) : 0,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    raw,
  };
}

/**
 * Runs wrk to completion, bounded at duration + 15 s (then SIGKILL by PID). `onSpawn` receives the
 * PID so the caller can kill it on SIGINT.
 */
export function runWrk(o: WrkOptions, onSpawn?: (pid: number | null) => void): Promise<WrkResult> {
  const args = wrkArgs(o);
  const argv = o.cpu === null ? ['wrk', ...args] : ['taskset', '-c', String(o.cpu), 'wrk', ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    onSpawn?.(child.pid ?? null);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) {
        try {
          process.kill(child.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }, (o.durationSec + 15) * 1000);
    child.on('error', (e) => {
      clearTimeout(timer);
      onSpawn?.(null);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      onSpawn?.(null);
      if (code !== 0) return reject(new Error(`wrk exited with ${code ?? signal}: ${err}${out}`));
      try {
        resolve(parseWrk(out));
      } catch (e) {
        reject(e);
      }
    });
  });
}
