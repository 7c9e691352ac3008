/**
 * Fixed-rate HTTP/1.1 load generator (what wrk2 does, for machines without it), run in its own
 * process by bench/engine.ts:
 *
 *   node dist/bench/fixed-rate-load.js PORT HOST PATH RATE CONNECTIONS SECONDS [WARMUP_SECONDS]
 *
 * Requests are due at fixed intervals (RATE per second, spread over CONNECTIONS keep-alive
 * connections, one request in flight per connection). A request's latency runs from the moment it
 * was due, not from when a connection was free to send it, so a stalled proxy is charged for the
 * requests queued behind the stall (no coordinated omission). Prints one JSON line:
 * `{ sent, completed, errors, seconds, achievedRate, p50Ms, p90Ms, p99Ms, p999Ms, maxMs }` over the
 * measured part (after the warm-up).
 */
import net from 'node:net';

const [port, host, path, rate, connections, seconds, warmup] = [Number(process.argv[2]), process.argv[3], process.argv[4], Number(process.argv[5]), Number(process.argv[6]), Number(process.argv[7]), Number(process.argv[8] ?? '1')];
if (!(port > 0 && rate > 0 && connections > 0 && seconds > 0)) {
  process.stderr.write('usage: fixed-rate-load.js PORT HOST PATH RATE CONNECTIONS SECONDS [WARMUP_SECONDS]\n');
  process.exit(2);
}
const REQUEST = Buffer.from(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUser-Agent: meshgate-fixed-rate\r\nAccept: */*\r\n\r\n`, 'latin1');

const intervalMs = 1000 / rate;
const start = performance.now() + 200;
const measureFrom = start + warmup * 1000;
const end = measureFrom + seconds * 1000;
const latencies: number[] = [];
let sent = 0;
let errors = 0;
/** Due times of requests not yet sent (no connection was free). */
const backlog: number[] = [];

class Conn {
  socket: net.Socket;
  busy = false;
  due = 0;
  buf: Buffer = Buffer.alloc(0);
  constructor() {
    this.socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => this.onClose());
  }
  send(due: number): void {
    this.busy = true;
    this.due = due;
    this.socket.write(REQUEST);
    if (due >= measureFrom && due < end) sent++;
  }
  onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const headEnd = this.buf.indexOf('\r\n\r\n');
      if (headEnd < 0) return;
      const head = this.buf.subarray(0, headEnd).toString('latin1');
      const status = Number(head.slice(9, 12));
      let total: number;
      const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
      if (cl) total = headEnd + 4 + Number(cl[1]);
      else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
        const z = this.buf.indexOf('\r\n0\r\n\r\n', headEnd);
        if (z < 0) return;
        total = z + 7;
      } else total = headEnd + 4;
      if (this.buf.length < total) return;
      this.buf = this.buf.subarray(total);
      this.complete(status);
    }
  }
  complete(status: number): void {
    const now = performance.now();
    if (this.due >= measureFrom && this.due < end) {
      if (status >= 200 && status < 300) latencies.push(now - this.due);
      else errors++;
    }
    this.busy = false;
    const next = backlog.shift();
    if (next !== undefined) this.send(next);
  }
  onClose(): void {
    if (this.busy && this.due >= measureFrom && this.due < end) errors++;
    this.busy = false;
    if (performance.now() < end) {
      const i = conns.indexOf(this);
      if (i >= 0) conns[i] = new Conn();
    }
  }
}

const conns: Conn[] = Array.from({ length: connections }, () => new Conn());
let nextDue = start;
let rr = 0;

function tick(): void {
  const now = performance.now();
  while (nextDue <= now && nextDue < end) {
    let c: Conn | null = null;
    for (let k = 0; k < conns.length; k++) {
      const cand = conns[(rr + k) % conns.length];
      if (!cand.busy && !cand.socket.connecting) {
        c = cand;
        rr = (rr + k + 1) % conns.length;
        break;
      }
    }
    if (c) c.send(nextDue);
    else backlog.push(nextDue);
    nextDue += intervalMs;
  }
  if (now >= end + 2000 || (nextDue >= end && backlog.length === 0 && conns.every((x) => !x.busy))) return finish();
  setTimeout(tick, Math.max(0, Math.min(1, nextDue - performance.now())));
}

function finish(): void {
  // Requests still queued or in flight 2 s after the end count as errors (the proxy fell behind).
  errors += backlog.filter((d) => d >= measureFrom && d < end).length;
  for (const c of conns) if (c.busy && c.due >= measureFrom && c.due < end) errors++;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => (latencies.length === 0 ? 0 : latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))]);
  process.stdout.write(
    `${JSON.stringify({ sent, completed: latencies.length, errors, seconds, achievedRate: latencies.length / seconds, p50Ms: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99), p999Ms: q(0.999), maxMs: latencies.at(-1) ?? 0 })}\n`,
  );
  for (const c of conns) c.socket.destroy();
  process.exit(0);
}

setTimeout(tick, Math.max(0, start - performance.now()));
