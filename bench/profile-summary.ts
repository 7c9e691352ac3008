/**
 * Self time per function from a V8 `.cpuprofile` (what `node --cpu-prof` writes).
 *
 *   node dist/bench/profile-summary.js FILE.cpuprofile [TOP]
 */

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples?: number[];
  timeDeltas?: number[];
  startTime: number;
  endTime: number;
}

export interface HotSpot {
  name: string;
  /** Self time in ms. */
  selfMs: number;
  /** Share of the non-idle samples, in percent. */
  pct: number;
}

export interface ProfileSummary {
  file: string;
  /** Profiled time, ms. */
  totalMs: number;
  /** Time not spent in `(idle)`, ms. */
  busyMs: number;
  top: HotSpot[];
  /** Self time rolled up by area (meshgate, undici, node:http, streams, native...), % of busy. */
  areas: HotSpot[];
}

/** Which layer a frame belongs to, for the roll-up. */
function area(n: ProfileNode): string {
  const { url, functionName } = n.callFrame;
  if (url === '') {
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return '(program): V8/native not attributed';
    return 'native/builtins called from JS (writev, string encode, crypto...)';
  }
  if (url.includes('/node_modules/undici/')) return 'undici';
  if (url.includes('/node_modules/')) return 'other node_modules';
  if (url.startsWith('wasm://')) return 'undici llhttp (wasm)';
  if (url.includes('/dist/src/')) return 'meshgate (dist/src)';
  if (/^node:(_http_|http$)/.test(url)) return 'node:http';
  if (/^node:internal\/streams|^node:stream/.test(url)) return 'node streams';
  if (/^node:(net$|internal\/stream_base|internal\/net)/.test(url)) return 'node net/stream_base';
  if (/^node:internal\/(modules|bootstrap)/.test(url)) return 'module loading (startup)';
  return 'other node: internals';
}

function label(n: ProfileNode, root: string): string {
  const f = n.callFrame;
  const fn = f.functionName === '' ? '(anonymous)' : f.functionName;
  if (f.url === '') return fn;
  let where = f.url.startsWith('file://') ? fileURLToPath(f.url) : f.url;
  if (where.startsWith(root)) where = where.slice(root.length + 1);
  else if (where.includes('/node_modules/')) where = where.slice(where.lastIndexOf('/node_modules/') + 14);
  return `${fn} ${where}:${f.lineNumber + 1}`;
}

/** The `top` functions by self time; `root` is stripped from file paths. */
export function summarizeProfile(file: string, top = 25, root = process.cwd()): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of prof.nodes) byId.set(n.id, n);
  const selfUs = new Map<string, number>();
  const areaUs = new Map<string, number>();
  let total = 0;
  let idle = 0;
  const samples = prof.samples ?? [];
  const deltas = prof.timeDeltas ?? [];
  for (let i = 0; i < samples.length; i++) {
    // timeDeltas[i] is the time before sample i; charge it to the sample that ends the interval.
    const dt = i + 1 < deltas.length ? deltas[i + 1] : 0;
    const node = byId.get(samples[i]);
    if (node === undefined || dt <= 0) continue;
    const name = label(node, root);
    total += dt;
    if (name === '(idle)') {
      idle += dt;
      continue;
    }
    selfUs.set(name, (selfUs.get(name) ?? 0) + dt);
    const a = area(node);
    areaUs.set(a, (areaUs.get(a) ?? 0) + dt);
  }
  const busy = total - idle;
  const list = [...selfUs.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, us]) => ({ name, selfMs: us / 1000, pct: busy > 0 ? (100 * us) / busy : 0 }));
  const areas = [...areaUs.entries()].sort((a, b) => b[1] - a[1]).map(([name, us]) => ({ name, selfMs: us / 1000, pct: busy > 0 ? (100 * us) / busy : 0 }));
  return { file, totalMs: total / 1000, busyMs: busy / 1000, top: list, areas };
}

export function formatProfile(s: ProfileSummary): string {
  const lines = [`${path.basename(s.file)}: ${s.totalMs.toFixed(0)} ms profiled, ${s.busyMs.toFixed(0)} ms busy (not idle); self time, % of busy:`];
  for (const h of s.top) lines.push(`  ${h.pct.toFixed(1).padStart(5)}%  ${h.selfMs.toFixed(0).padStart(6)} ms  ${h.name}`);
  lines.push('by area, % of busy:');
  for (const h of s.areas) lines.push(`  ${h.pct.toFixed(1).padStart(5)}%  ${h.selfMs.toFixed(0).padStart(6)} ms  ${h.name}`);
  return lines.join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  const file = process.argv[2];
  if (file === undefined) {
    process.stderr.write('usage: node dist/bench/profile-summary.js FILE.cpuprofile [TOP]\n');
    process.exit(2);
  }
  process.stdout.write(`${formatProfile(summarizeProfile(file, Number(process.argv[3] ?? 25)))}\n`);
}
