/**
 * Harness for hostile-input tests (hardening.md §5): a recording upstream that logs every request it
 * parses and every byte it receives, and a raw client that sends exact bytes and collects what the
 * gateway answered.
 */

import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { cluster, forward, httpListener, route, snapshot, vhost } from '../support/ir-builders.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';

export interface RecordedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: string;
  /** True when the body arrived completely (the request was not aborted). */
  complete: boolean;
}

export interface RecordingUpstream {
  port: number;
  requests: RecordedRequest[];
  /** Every byte received, all connections, in arrival order (latin1). */
  bytes(): string;
  reset(): void;
  close(): Promise<void>;
}

export async function startRecordingUpstream(): Promise<RecordingUpstream> {
  const requests: RecordedRequest[] = [];
  let raw: Buffer[] = [];
  const server = http.createServer((req, res) => {
    const rec: RecordedRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, rawHeaders: req.rawHeaders, body: '', complete: false };
    requests.push(rec);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      rec.body = Buffer.concat(chunks).toString('latin1');
      rec.complete = true;
      const body = JSON.stringify({ url: rec.url, method: rec.method });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
    req.on('error', () => undefined);
  });
  server.on('connection', (s: net.Socket) => s.on('data', (c: Buffer) => raw.push(c)));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as AddressInfo).port,
    requests,
    bytes: () => Buffer.concat(raw).toString('latin1'),
    reset() {
      requests.length = 0;
      raw = [];
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export interface RawReply {
  /** Everything received (latin1). */
  text: string;
  /** Status codes of every response seen, in order. */
  statuses: number[];
  /** True when the gateway closed the connection before `waitMs`. */
  closed: boolean;
}

/** Sends `payload` (latin1 bytes) on a fresh connection; collects until close or `waitMs`. */
export function sendRaw(port: number, payload: string | Buffer, waitMs = 1500): Promise<RawReply> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let closed = false;
    const timer = setTimeout(() => socket.destroy(), waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('end', () => {
      closed = true;
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      const statuses = [...text.matchAll(/HTTP\/1\.[01] (\d{3})/g)].map((m) => Number(m[1]));
      resolve({ text, statuses, closed });
    });
    socket.write(typeof payload === 'string' ? Buffer.from(payload, 'latin1') : payload);
  });
}

/** A runtime on a free port that forwards every request to a fresh recording upstream. */
export async function startCatchAllRuntime(): Promise<{ up: RecordingUpstream; gw: RuntimeHarness; close(): Promise<void> }> {
  const up = await startRecordingUpstream();
  const gw = await startRuntime(snapshot([httpListener(0, [vhost('any', ['*'], [route('all', forward(['up']))])])], [cluster('up', [{ port: up.port }])]));
  return {
    up,
    gw,
    close: async () => {
      await gw.close();
      await up.close();
    },
  };
}
