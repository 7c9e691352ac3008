/**
 * Small Node programs the lab runs inside pods with `ip netns exec node -e`: an echo app, a one-shot
 * TCP client, and a TPROXY-receiving test proxy. Each prints JSON lines on stdout.
 */
import { fileURLToPath } from 'node:url';
import { transparentLauncherArgv } from '../../src/mesh/capture/transparent.js';
import type { Lab, LabProcess } from './lab.js';

/** The compiled transparent.ts, for the test proxy to import. */
const TRANSPARENT_MODULE = fileURLToPath(new URL('../../src/mesh/capture/transparent.js', import.meta.url));

/**
 * Echo app. ECHO_NAME names it; ECHO_LISTEN is `port` or `addr:port`, comma-separated. Per connection
 * it reads until the client half-closes, then answers one JSON line with what it saw: its own name,
 * the local and remote addresses and the bytes received.
 */
export const ECHO_APP = String.raw`
const net = require('net');
for (const item of process.env.ECHO_LISTEN.split(',')) {
  // "8080" (IPv4, 0.0.0.0), "addr:8080", or "[::]:8080" (IPv6 only).
  const m = /^\[(.*)\]:(\d+)$/.exec(item) || /^(.*):(\d+)$/.exec(item) || [item, '0.0.0.0', item];
  const host = m[1], port = m[2];
  net.createServer({ allowHalfOpen: true }, (s) => {
    let got = '';
    s.setEncoding('utf8');
    s.on('data', (d) => (got += d));
    s.on('end', () => s.end(JSON.stringify({ server: process.env.ECHO_NAME, local: s.localAddress + ':' + s.localPort, remote: s.remoteAddress, got }) + '\n'));
    s.on('error', () => {});
  }).listen({ port: Number(port), host, ipv6Only: host.includes(':') }, () => console.log(JSON.stringify({ listening: item })));
}
`;

/**
 * One connection to TARGET (`addr:port`), optionally as AS_UID (gid too): sends "ping\n", half-closes,
 * prints what came back, or {"error": CODE}. Bounded by CLIENT_TIMEOUT_MS (5 s).
 */
export const CLIENT = String.raw`
const net = require('net');
if (process.env.AS_UID) { process.setgid(Number(process.env.AS_UID)); process.setuid(Number(process.env.AS_UID)); }
const t = /^\[(.*)\]:(\d+)$/.exec(process.env.TARGET) || /^(.*):(\d+)$/.exec(process.env.TARGET);
const host = t[1], port = t[2];
let out = '';
const done = (text) => { process.stdout.write(text); process.exit(0); };
const s = net.connect({ host, port: Number(port), allowHalfOpen: true });
s.setEncoding('utf8');
s.on('connect', () => s.end('ping\n'));
s.on('data', (d) => (out += d));
s.on('close', () => done(out || JSON.stringify({ error: 'EMPTY' }) + '\n'));
s.on('error', (e) => done(JSON.stringify({ error: e.code || String(e) }) + '\n'));
setTimeout(() => done(JSON.stringify({ error: 'TIMEOUT' }) + '\n'), Number(process.env.CLIENT_TIMEOUT_MS || 5000)).unref();
`;

/**
 * A client agent: one long-lived process per (pod, uid) that makes the CLIENT connection for every
 * JSON line {"id","target","timeoutMs"} on stdin and answers {"id","out"}. A Node start per call costs
 * ~0.3 s of CPU, which on a loaded 2-core CI machine slows every other test too.
 */
export const CLIENT_AGENT = String.raw`
const net = require('net');
if (process.env.AS_UID) { process.setgid(Number(process.env.AS_UID)); process.setuid(Number(process.env.AS_UID)); }
function run({ id, target, timeoutMs }) {
  const t = /^\[(.*)\]:(\d+)$/.exec(target) || /^(.*):(\d+)$/.exec(target);
  let out = '';
  let finished = false;
  const s = net.connect({ host: t[1], port: Number(t[2]), allowHalfOpen: true });
  const done = (text) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    s.destroy();
    console.log(JSON.stringify({ id, out: text }));
  };
  const timer = setTimeout(() => done(JSON.stringify({ error: 'TIMEOUT' }) + '\n'), timeoutMs);
  s.setEncoding('utf8');
  s.on('connect', () => s.end('ping\n'));
  s.on('data', (d) => (out += d));
  s.on('close', () => done(out || JSON.stringify({ error: 'EMPTY' }) + '\n'));
  s.on('error', (e) => done(JSON.stringify({ error: e.code || String(e) }) + '\n'));
}
let buf = '';
process.stdin.setEncoding('utf8').on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    run(JSON.parse(line));
  }
});
console.log(JSON.stringify({ agent: 'ready', uid: process.getuid() }));
`;

const agents = new WeakMap<Lab, Map<string, { proc: LabProcess; next: number }>>();

/**
 * One CLIENT connection from `pod` (as `asUid`, default root) to `target` (`addr:port` or
 * `[v6]:port`) through that pod's agent; resolves with what the client printed.
 */
export async function callFrom(lab: Lab, pod: string, target: string, opts: { asUid?: number; timeoutMs?: number } = {}): Promise<string> {
  let perLab = agents.get(lab);
  if (!perLab) agents.set(lab, (perLab = new Map()));
  const key = `${pod}/${opts.asUid ?? 0}`;
  let agent = perLab.get(key);
  if (!agent) {
    const proc = lab.spawn(pod, [process.execPath, '-e', CLIENT_AGENT], opts.asUid !== undefined ? { AS_UID: String(opts.asUid) } : {}, { stdin: true });
    await lab.waitForLine(proc, (l) => l.includes('"agent"'));
    agent = { proc, next: 0 };
    perLab.set(key, agent);
  }
  const id = ++agent.next;
  const timeoutMs = opts.timeoutMs ?? 5000;
  agent.proc.child.stdin!.write(`${JSON.stringify({ id, target, timeoutMs })}\n`);
  const line = await lab.waitForLine(agent.proc, (l) => l.startsWith(`{"id":${id},`), timeoutMs + 10_000);
  return (JSON.parse(line) as { out: string }).out;
}

/**
 * The test proxy: listens on the transparent sockets the launcher passed (127.0.0.1:15001 outbound,
 * 127.0.0.1:15006 inbound, and [::1]:15001, [::1]:15006 with IPv6) and logs every accepted connection as
 * {"kind","orig","peer","uid"}, where orig is socket.localAddress:localPort, the original destination.
 * Outbound it forwards to orig (or to VIPS[orig], a JSON map standing in for a Service), inbound to
 * 127.0.0.1:<orig port> from 127.0.0.6, as Istio's inbound does. It writes "via KIND ORIG\n" upstream
 * first, so the echo app shows that the connection went through it.
 */
export const TEST_PROXY = String.raw`
const net = require('net');
const vips = JSON.parse(process.env.VIPS || '{}');
const fmt = (a, p) => (a.includes(':') ? '[' + a + ']' : a) + ':' + p;
function handle(kind) {
  return (s) => {
    const orig = fmt(s.localAddress, s.localPort);
    const v6 = s.localAddress.includes(':');
    console.log(JSON.stringify({ kind, orig, peer: fmt(s.remoteAddress, s.remotePort), uid: process.getuid() }));
    const target = kind === 'outbound' ? (vips[orig] || orig) : fmt(v6 ? '::1' : '127.0.0.1', s.localPort);
    const t = /^\[(.*)\]:(\d+)$/.exec(target) || /^(.*):(\d+)$/.exec(target);
    // Inbound goes to the app from 127.0.0.6, as Istio does (IPv6: from ::1).
    const up = net.connect({ host: t[1], port: Number(t[2]), allowHalfOpen: true, ...(kind === 'inbound' && !v6 ? { localAddress: '127.0.0.6' } : {}) });
    up.write('via ' + kind + ' ' + orig + '\n');
    s.pipe(up);
    up.pipe(s);
    s.on('error', () => up.destroy());
    up.on('error', () => s.destroy());
  };
}
// The listeners come from src/mesh/capture/transparent.ts, as the sidecar's will.
import(process.env.TRANSPARENT_MODULE).then(async ({ inheritedTransparentFds, listenTransparent }) => {
  for (const spec of inheritedTransparentFds().keys()) {
    const kind = spec.endsWith(':15001') ? 'outbound' : 'inbound';
    await listenTransparent(net.createServer({ allowHalfOpen: true }, handle(kind)), spec);
    console.log(JSON.stringify({ ready: spec, uid: process.getuid() }));
  }
});
`;

/** argv for the test proxy under the launcher, dropping to `uid`. */
export function testProxyArgv(uid: number, ipv6 = false): string[] {
  const listeners = ['127.0.0.1:15001', '127.0.0.1:15006', ...(ipv6 ? ['[::1]:15001', '[::1]:15006'] : [])];
  return transparentLauncherArgv({ listeners, uid, gid: uid, command: ['env', `TRANSPARENT_MODULE=${TRANSPARENT_MODULE}`, process.execPath, '-e', TEST_PROXY] });
}

/** A plain Node listener (no IP_TRANSPARENT): logs each accepted connection's local address. */
export const PLAIN_LISTENER = String.raw`
const [host, port] = process.env.LISTEN.split(':');
require('net').createServer((s) => { console.log(JSON.stringify({ accepted: s.localAddress + ':' + s.localPort })); s.end('plain\n'); })
  .listen(Number(port), host, () => console.log(JSON.stringify({ up: process.env.LISTEN })));
`;
