/**
 * A DNS client for tests: queries as a stub resolver builds them, answers read back, and one
 * exchange over UDP or TCP (length-prefixed) with a deadline.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { parseFirstQuestion, readName, splitName, TYPE_A, TYPE_AAAA, TYPE_CNAME } from '../../src/mesh/dns/wire.js';

/** A query as a stub resolver sends it: RD set, one question, optionally an OPT record. */
export function buildQuery(id: number, name: string, type: number, opts: { edns?: number; flags?: number } = {}): Buffer {
  const labels = splitName(name);
  const parts: Buffer[] = [];
  const head = Buffer.alloc(12);
  head.writeUInt16BE(id, 0);
  head.writeUInt16BE(opts.flags ?? 0x0100, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(opts.edns === undefined ? 0 : 1, 10);
  parts.push(head);
  for (const l of labels) parts.push(Buffer.from([l.length]), Buffer.from(l));
  parts.push(Buffer.from([0, type >> 8, type & 0xff, 0, 1]));
  if (opts.edns !== undefined) parts.push(Buffer.from([0, 0, 41, opts.edns >> 8, opts.edns & 0xff, 0, 0, 0, 0, 0, 0]));
  return Buffer.concat(parts);
}

/** Reads every answer record of a response (names decompressed). */
export function readAnswers(buf: Buffer): { name: string; type: number; ttl: number; data: string }[] {
  const { header, end } = parseFirstQuestion(buf);
  let pos = end;
  const out: { name: string; type: number; ttl: number; data: string }[] = [];
  for (let i = 0; i < header.ancount; i++) {
    const { name, next } = readName(buf, pos);
    const type = buf.readUInt16BE(next);
    const ttl = buf.readUInt32BE(next + 4);
    const len = buf.readUInt16BE(next + 8);
    const rdata = buf.subarray(next + 10, next + 10 + len);
    let data: string;
    if (type === TYPE_A) data = [...rdata].join('.');
    else if (type === TYPE_AAAA) data = Array.from({ length: 8 }, (_, k) => rdata.readUInt16BE(2 * k).toString(16)).join(':');
    else if (type === TYPE_CNAME) data = readName(buf, next + 10).name;
    else data = rdata.toString('hex');
    out.push({ name, type, ttl, data });
    pos = next + 10 + len;
  }
  return out;
}


/** One UDP exchange; null when nothing came back within `timeoutMs`. */
export function udpQuery(port: number, msg: Buffer, timeoutMs = 3000, host = '127.0.0.1'): Promise<Buffer | null> {
  return new Promise((resolve) => {
    const sock = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4');
    const timer = setTimeout(() => finish(null), timeoutMs);
    let done = false;
    const finish = (v: Buffer | null) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      resolve(v);
    };
    sock.on('message', (m) => finish(m));
    sock.on('error', () => finish(null));
    sock.send(msg, port, host);
  });
}

/** Sends `msgs` (each length-prefixed, in one write) over one TCP connection and reads `msgs.length` answers, or until the peer closes or the deadline. */
export function tcpQuery(port: number, msgs: Buffer[], timeoutMs = 3000, host = '127.0.0.1'): Promise<{ answers: Buffer[]; closed: boolean }> {
  return new Promise((resolve) => {
    const answers: Buffer[] = [];
    let buf = Buffer.alloc(0);
    let done = false;
    const sock = net.connect({ host, port });
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ answers, closed });
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    sock.on('connect', () => sock.write(Buffer.concat(msgs.map((m) => Buffer.concat([Buffer.from([m.length >> 8, m.length & 0xff]), m])))));
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        answers.push(buf.subarray(2, 2 + buf.readUInt16BE(0)));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (answers.length >= msgs.length) finish(false);
    });
    sock.on('close', () => finish(true));
    sock.on('error', () => finish(true));
  });
}
