/**
 * Rough throughput of the runtime against a bare baseline, each part in its own process:
 *
 *   node dist/test/support/bench-proxy.js [seconds=5] [connections=64]
 *
 * Runs, one after the other: the load generator straight to the upstream; through a bare
 * node:http server + undici Pool (the performance.md baseline); through the meshgate Runtime with
 * a realistic route table (30 virtual hosts, header and path matches before the one that matches).
 * The load generator is an undici Pool with `connections` keep-alive connections, each looping
 * GET requests. Each role also runs alone (`... upstream`, `... baseline <upstreamPort>`,
 * `... meshgate <upstreamPort>`) to be pinned with taskset and loaded with wrk, as performance.md
 * did. On a 2-core machine the generator, proxy and upstream share CPUs: compare the
 * rows with each other, not with other machines.
 */

import { fork, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Pool } from 'undici';
import type { IRSnapshot, Route } from '../../src/ir/types.js';
import { Runtime } from '../../src/runtime/runtime.js';
import { cluster, exact, forward, httpListener, match, route, snapshot, vhost } from './ir-builders.js';

const self = fileURLToPath(import.meta.url);
const role = process.argv[2];

/** Reports the port to the parent process, or prints it when run by hand (e.g. under taskset). */
function send(msg: { port: number | null }): void {
  if (process.send) process.send(msg);
  else console.log(`${role} listening on port ${msg.port}`);
}

async function listen(server: http.Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

function benchIr(upstreamPort: number): IRSnapshot {
  const routes: Route[] = [];
  for (let i = 0; i < 10; i++) routes.push(route(`api-${i}`, forward(['up']), [match({ path: { kind: 'segment-prefix', value: `/api/v${i}`, ignoreCase: false }, headers: [{ name: 'x-tenant', match: exact(`t${i}`), invert: false }] })]));
  routes.push(route('main', forward(['up']), [match({ path: { kind: 'segment-prefix', value: '/', ignoreCase: false } })]));
  const hosts = Array.from({ length: 30 }, (_, i) => vhost(`h${i}`, [`h${i}.example.com`], routes.slice(0, 3)));
  return snapshot([httpListener(0, [...hosts, vhost('bench', ['*'], routes)])], [cluster('up', [{ port: upstreamPort }])]);
}

// Exit normally on Ctrl-C so `node --cpu-prof` writes its profile.
if (role !== undefined && Number.isNaN(Number(role))) process.on('SIGINT', () => process.exit(0));

if (role === 'upstream') {
  const body = Buffer.from('ok');
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end(body);
  });
  send({ port: await listen(server) });
} else if (role === 'baseline') {
  const pool = new Pool(`http://127.0.0.1:${process.argv[3]}`, { connections: 128 });
  const server = http.createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    pool.stream({ path: req.url ?? '/', method: 'GET', opaque: res }, ({ statusCode, opaque }) => {
      const r = opaque as http.ServerResponse;
      r.writeHead(statusCode);
      return r;
    }, (err) => {
      if (err) res.destroy();
    });
  });
  send({ port: await listen(server) });
} else if (role === 'meshgate') {
  const runtime = new Runtime();
  const result = await runtime.apply(benchIr(Number(process.argv[3])));
  send({ port: result.listeners[0].boundPort });
} else {
  const seconds = Number(process.argv[2] ?? 5);
  const connections = Number(process.argv[3] ?? 64);
  const start = (r: string, ...args: string[]): Promise<{ child: ChildProcess; port: number }> =>
    new Promise((resolve) => {
      const child = fork(self, [r, ...args]);
      child.once('message', (m) => resolve({ child, port: (m as { port: number }).port }));
    });
  const load = async (port: number): Promise<number> => {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections });
    let count = 0;
    let errors = 0;
    let counting = false;
    const end = Date.now() + 1000 + seconds * 1000;
    setTimeout(() => (counting = true), 1000);
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < end) {
          try {
            const r = await pool.request({ path: '/', method: 'GET', headers: { host: 'bench.local' } });
            await r.body.dump();
            if (counting) count++;
          } catch {
            errors++;
          }
        }
      }),
    );
    await pool.close();
    if (errors > 0) console.log(`  (${errors} errors)`);
    return count / seconds;
  };
  const up = await start('upstream');
  const rows: [string, number][] = [];
  rows.push(['direct to upstream', await load(up.port)]);
  const base = await start('baseline', String(up.port));
  rows.push(['node:http + undici Pool.stream (baseline)', await load(base.port)]);
  base.child.kill();
  const mg = await start('meshgate', String(up.port));
  rows.push(['meshgate Runtime (31 vhosts, 11 routes)', await load(mg.port)]);
  mg.child.kill();
  up.child.kill();
  for (const [name, rps] of rows) console.log(`${name.padEnd(45)} ${Math.round(rps).toString().padStart(7)} req/s`);
}
