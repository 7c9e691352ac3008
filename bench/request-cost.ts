/**
 * `npm run bench:request-cost`: the CPU and the memory one proxied request costs in meshgate's own
 * code, with the network between processes taken out as far as one machine allows. The runtime of a
 * checkout runs in a child process of its own (test/support/runtime-harness.ts: one plain forward
 * route, no observer), the upstream (Node's http, 1 KiB answers) and the load (16 keep-alive
 * connections, one request in flight each) in two others. Measured in the runtime's process:
 * `process.cpuUsage()` over the requests, and with `--alloc`, the bytes allocated per request
 * (V8's sampling heap profiler keeping objects that GC collected) with the functions that
 * allocate most.
 *
 *   npx tsc -p tsconfig.json
 *   node dist/bench/request-cost.js [--a OTHER_CHECKOUT] [--requests 30000] [--reps 3] [--alloc]
 *
 * With `--a`, the other checkout's build (its own dist/) and this one alternate, A then B, `--reps`
 * times: only figures of the same run compare on a shared machine.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SELF_ROOT = path.resolve(HERE, '../..');

interface Result {
  root: string;
  requests: number;
  cpuUsPerRequest: number;
  requestsPerSecond: number;
  allocBytesPerRequest?: number;
  topAllocators?: { bytesPerRequest: number; where: string }[];
}

/** The child: runtime + upstream + load, prints one JSON line. */
const CHILD = String.raw`
const { spawn } = require('node:child_process');
const inspector = require('node:inspector');
const [root, requests, alloc] = [process.argv[1], Number(process.argv[2]), process.argv[3] === '1'];
(async () => {
  const { startRuntime } = await import(root + '/dist/test/support/runtime-harness.js');
  const b = await import(root + '/dist/test/support/ir-builders.js');
  const upstream = spawn(process.execPath, ['-e', "require('http').createServer((q,s)=>{s.setHeader('content-type','text/plain');s.end(Buffer.alloc(1024,97))}).listen(0,'127.0.0.1',function(){console.log(this.address().port)})"], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise((r) => upstream.stdout.once('data', (d) => r(Number(String(d).trim()))));
  const gw = await startRuntime(b.snapshot([b.httpListener(0, [b.vhost('v', ['*'], [b.route('r', b.forward(['c']), [b.match()])])])], [b.cluster('c', [{ port }])]));
  const load = (n) => new Promise((resolve) => {
    const c = spawn(process.execPath, ['-e', "const http=require('http');const a=new http.Agent({keepAlive:true,maxSockets:16});let left=" + n + ",inflight=0;function go(){while(inflight<16&&left>0){left--;inflight++;http.get({host:'127.0.0.1',port:" + gw.port() + ",path:'/x',agent:a,headers:{'user-agent':'bench','accept':'*/*'}},(r)=>{r.resume();r.on('end',()=>{inflight--;if(left===0&&inflight===0)process.exit(0);go()})})}}go()"], { stdio: ['ignore', 'ignore', 'inherit'] });
    c.on('exit', resolve);
  });
  await load(5000); // warm-up: everything optimized
  let session = null;
  const post = (m, p) => new Promise((res, rej) => session.post(m, p || {}, (e, r) => (e ? rej(e) : res(r))));
  if (alloc) {
    session = new inspector.Session();
    session.connect();
    await post('HeapProfiler.enable');
    await post('HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  }
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await load(requests);
  const cpu = process.cpuUsage(cpu0);
  const ms = performance.now() - t0;
  const out = { root, requests, cpuUsPerRequest: +((cpu.user + cpu.system) / requests).toFixed(2), requestsPerSecond: Math.round((requests / ms) * 1000) };
  if (alloc) {
    const { profile } = await post('HeapProfiler.stopSampling');
    const self = new Map();
    let total = 0;
    const walk = (n) => {
      const f = n.callFrame;
      const where = (f.functionName || '(anonymous)') + ' ' + f.url.replace(/^file:\/\/.*?\/dist\//, '') + ':' + (f.lineNumber + 1);
      self.set(where, (self.get(where) || 0) + n.selfSize);
      total += n.selfSize;
      for (const c of n.children) walk(c);
    };
    walk(profile.head);
    out.allocBytesPerRequest = Math.round(total / requests);
    out.topAllocators = [...self.entries()].sort((x, y) => y[1] - x[1]).slice(0, 12).map(([where, v]) => ({ bytesPerRequest: Math.round(v / requests), where }));
  }
  console.log(JSON.stringify(out));
  await gw.close(100);
  upstream.kill();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
`;

function runOnce(root: string, requests: number, alloc: boolean): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', CHILD, root, String(requests), alloc ? '1' : '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const line = out.split('\n').find((l) => l.startsWith('{'));
      if (code !== 0 || line === undefined) reject(new Error(`${root}: exit ${code}\n${out}`));
      else resolve(JSON.parse(line) as Result);
    });
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { a: { type: 'string' }, requests: { type: 'string', default: '30000' }, reps: { type: 'string', default: '3' }, alloc: { type: 'boolean', default: false } } });
  const requests = Number(values.requests);
  const reps = Number(values.reps);
  const trees = values.a === undefined ? [['B', SELF_ROOT]] : [['A', path.resolve(values.a)], ['B', SELF_ROOT]];
  const results: Record<string, Result[]> = {};
  for (let i = 0; i < reps; i++) {
    for (const [name, root] of i % 2 === 0 ? trees : [...trees].reverse()) {
      const r = await runOnce(root, requests, values.alloc === true);
      (results[name] ??= []).push(r);
      process.stderr.write(`[request-cost] ${name} ${root}: ${r.cpuUsPerRequest} CPU µs per request, ${r.requestsPerSecond} req/s${r.allocBytesPerRequest === undefined ? '' : `, ${r.allocBytesPerRequest} bytes allocated per request`}\n`);
    }
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
  console.log(`request-cost  ${new Date().toISOString()}  ${requests} requests x ${reps}, 16 keep-alive connections, 1 KiB answers, load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  for (const [name, root] of trees) {
    const rs = results[name];
    console.log(`${name} ${root}: CPU µs per request ${rs.map((r) => r.cpuUsPerRequest).join(', ')} (median ${median(rs.map((r) => r.cpuUsPerRequest))})${rs[0].allocBytesPerRequest === undefined ? '' : `; allocated bytes per request ${rs.map((r) => r.allocBytesPerRequest).join(', ')}`}`);
    if (rs[0].topAllocators !== undefined) for (const t of rs[rs.length - 1].topAllocators!) console.log(`    ${String(t.bytesPerRequest).padStart(6)}  ${t.where}`);
  }
}

await main();
