/**
 * Backends that fail on purpose, for the traffic-management tests: each records every request it
 * got (in order, with its body) and answers as its behaviour says (a status, a delay, a reset before
 * or after the head). Bound to 127.0.0.1:0; `close()` ends every connection.
 */

import http from 'node:http';
import net from 'node:net';
import type { RetryPolicy } from '../../src/ir/types.js';

export interface Hit {
  /** 1-based number of this request at this backend. */
  n: number;
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/**
 * What a backend does with a request: a status (answered with the backend's name as body), or an
 * action: `reset-before-head` destroys the socket without answering, `reset-mid-body` sends the head
 * and part of the body then destroys, `hang` never answers, `{ delayMs, status }` answers late.
 */
export type Action = number | 'reset-before-head' | 'reset-mid-body' | 'hang' | { delayMs: number; status: number };

export interface Backend {
  name: string;
  port: number;
  hits: Hit[];
  /** TCP connections accepted so far. */
  connections: number;
  /** Replace the behaviour (`hit` is the request about to be answered). */
  behave: (hit: Hit) => Action;
  close(): Promise<void>;
}

export async function startBackend(name: string, behave: (hit: Hit) => Action = () => 200): Promise<Backend> {
  const sockets = new Set<net.Socket>();
  const b: Backend = {
    name,
    port: 0,
    hits: [],
    connections: 0,
    behave,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit: Hit = { n: b.hits.length + 1, method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString() };
      b.hits.push(hit);
      act(b.behave(hit), req, res, name);
    });
  });
  server.on('connection', (s) => {
    b.connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  b.port = (server.address() as net.AddressInfo).port;
  return b;
}

function act(a: Action, req: http.IncomingMessage, res: http.ServerResponse, name: string): void {
  if (typeof a === 'number') {
    res.writeHead(a, { 'content-type': 'text/plain', 'x-backend': name });
    res.end(name);
    return;
  }
  if (a === 'reset-before-head') return void req.socket.destroy();
  if (a === 'hang') return;
  if (a === 'reset-mid-body') {
    res.writeHead(200, { 'content-length': '1000', 'x-backend': name });
    res.write('partial');
    setTimeout(() => req.socket.destroy(), 20);
    return;
  }
  const t = setTimeout(() => act(a.status, req, res, name), a.delayMs);
  res.on('close', () => clearTimeout(t));
}

/** A port with nothing listening on it (bound, then released): connections are refused. */
export async function refusingPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function retryPolicy(p: Partial<RetryPolicy> = {}): RetryPolicy {
  return { numRetries: 2, perTryTimeoutMs: null, retryOn: ['5xx'], retriableStatusCodes: [], backoffBaseMs: 5, ignorePreviousHosts: true, ...p };
}

/** Istio's default policy, as the translator writes it (with a short backoff for tests). */
export function istioDefaultRetries(): RetryPolicy {
  return { numRetries: 2, perTryTimeoutMs: null, retryOn: ['cancelled', 'connect-failure', 'refused-stream', 'retriable-status-codes', 'unavailable'], retriableStatusCodes: [], backoffBaseMs: 25, ignorePreviousHosts: true };
}

/** Counts of hits per backend name. */
export function counts(backends: Backend[]): Record<string, number> {
  return Object.fromEntries(backends.map((b) => [b.name, b.hits.length]));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
