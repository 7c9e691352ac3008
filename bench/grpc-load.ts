/**
 * gRPC load client for bench/h2.ts: `node dist/bench/grpc-load.js <port> <authority> <concurrency> <ms>`
 * runs unary calls on one channel (one HTTP/2 connection, calls multiplexed), `concurrency` in
 * flight at all times, for `ms` milliseconds, then prints one JSON line
 * `{ calls, errors, seconds, p50Ms, p99Ms, cpuMs }` (cpuMs: this process's own user + system CPU
 * during the calls, so a run can tell what the load generator spent per call).
 */

import { grpcClient, unary } from '../test/support/grpc-echo.js';

const [port, authority, concurrency, ms] = [Number(process.argv[2]), process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
const client = grpcClient(port, authority);
const latencies: number[] = [];
let errors = 0;
const started = performance.now();
const cpu0 = process.cpuUsage();
const deadline = started + ms;

async function loop(): Promise<void> {
  while (performance.now() < deadline) {
    const t = performance.now();
    const r = await unary(client, { text: 'bench' });
    if (r.error !== null) errors++;
    else latencies.push(performance.now() - t);
  }
}

await Promise.all(Array.from({ length: concurrency }, loop));
const cpu = process.cpuUsage(cpu0);
const seconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
const q = (p: number) => (latencies.length === 0 ? 0 : latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]);
process.stdout.write(`${JSON.stringify({ calls: latencies.length, errors, seconds, p50Ms: q(0.5), p99Ms: q(0.99), cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
client.close();
