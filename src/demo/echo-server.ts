/**
 * A small echo backend for the demo and the tests: a real node:http server.
 *
 * Every request is answered with status 200 and JSON
 *   { name, method, url, path, query, headers, body }
 * (`query`: parsed parameters, first value each; `headers`: Node's lowercased header object;
 * `body`: the request body read fully as UTF-8, at most 1 MiB, else 413), except these paths:
 *
 *   /status/<code>        answers <code> with the same JSON (e.g. `/status/503`)
 *   /delay/<ms>           waits <ms> ms (at most 60 s), then answers the JSON
 *   /stream/<n>           streams <n> chunks of 1 KiB of `x` (chunked), one per tick; ?size=<bytes>
 *                         sets the chunk size
 *   /bytes/<n>            answers <n> bytes of `x` with Content-Length, written with back-pressure
 *   /upload               consumes the body without keeping it; answers {name, bytes} (any size)
 *   /abort/<n>            sends headers with Content-Length 2n, writes n bytes, then destroys the
 *                         socket (an upstream dying mid-response)
 *   /headers?k=v&...      adds the query parameters as response headers (e.g. `?connection=x&x=1`)
 *
 * Every response has `x-echo-name: <name>` and `server: echo`.
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface EchoServerOptions {
  name: string;
  host?: string;
  port?: number;
}

export interface EchoServer {
  port: number;
  url: string;
  name: string;
  close(): Promise<void>;
}

export interface EchoReply {
  name: string;
  method: string;
  url: string;
  path: string;
  query: Record<string, string>;
  headers: http.IncomingHttpHeaders;
  body: string;
}

const MAX_BODY = 1024 * 1024;

export async function startEchoServer(options: EchoServerOptions): Promise<EchoServer> {
  const { name } = options;
  const host = options.host ?? '127.0.0.1';
  const server = http.createServer({ keepAliveTimeout: 5000, maxHeaderSize: 64 * 1024 }, (req, res) => handle(name, req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host.includes(':') ? `[${host}]` : host;
  return {
    port,
    name,
    url: `http://${urlHost}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function handle(name: string, req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://echo.invalid');
  const segments = url.pathname.split('/');
  const arg = Number(segments[2] ?? '');
  res.setHeader('x-echo-name', name);
  res.setHeader('server', 'echo');
  switch (segments[1]) {
    case 'upload': {
      let bytes = 0;
      req.on('data', (c: Buffer) => (bytes += c.length));
      req.on('end', () => reply(res, 200, { name, bytes }));
      return;
    }
    case 'bytes':
      if (Number.isInteger(arg) && arg >= 0) return void req.resume().on('end', () => sendBytes(res, arg));
      break;
    case 'stream':
      if (Number.isInteger(arg) && arg >= 0) {
        const size = Number(url.searchParams.get('size') ?? 1024);
        return void req.resume().on('end', () => streamChunks(res, arg, size));
      }
      break;
    case 'abort':
      if (Number.isInteger(arg) && arg > 0) {
        return void req.resume().on('end', () => {
          res.writeHead(200, { 'content-length': String(arg * 2), 'content-type': 'text/plain' });
          res.write(Buffer.alloc(arg, 'x'), () => res.destroy());
        });
      }
      break;
  }
  readBody(req, (body, tooLarge) => {
    if (tooLarge) return reply(res, 413, { name, error: 'body too large' });
    const echo: EchoReply = {
      name,
      method: req.method ?? '',
      url: req.url ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body,
    };
    if (segments[1] === 'status' && Number.isInteger(arg) && arg >= 200 && arg <= 599) return reply(res, arg, echo);
    if (segments[1] === 'delay' && Number.isInteger(arg) && arg >= 0) {
      const timer = setTimeout(() => reply(res, 200, echo), Math.min(arg, 60_000));
      res.on('close', () => clearTimeout(timer));
      return;
    }
    if (segments[1] === 'headers') for (const [k, v] of url.searchParams) res.setHeader(k, v);
    reply(res, 200, echo);
  });
}

function readBody(req: http.IncomingMessage, done: (body: string, tooLarge: boolean) => void): void {
  const chunks: Buffer[] = [];
  let size = 0;
  let tooLarge = false;
  req.on('data', (c: Buffer) => {
    size += c.length;
    if (size > MAX_BODY) tooLarge = true;
    else chunks.push(c);
  });
  req.on('end', () => done(Buffer.concat(chunks).toString('utf8'), tooLarge));
  req.on('error', () => undefined);
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  const json = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
  res.end(json);
}

/** n bytes with Content-Length, honouring back-pressure. */
function sendBytes(res: http.ServerResponse, n: number): void {
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n) });
  const chunk = Buffer.alloc(64 * 1024, 'x');
  let left = n;
  const write = (): void => {
    while (left > 0) {
      const c = left >= chunk.length ? chunk : chunk.subarray(0, left);
      left -= c.length;
      if (!res.write(c)) return void res.once('drain', write);
    }
    res.end();
  };
  write();
}

function streamChunks(res: http.ServerResponse, n: number, size: number): void {
  res.writeHead(200, { 'content-type': 'text/plain' });
  const chunk = Buffer.alloc(Number.isInteger(size) && size > 0 ? size : 1024, 'x');
  let i = 0;
  const next = (): void => {
    if (res.destroyed) return;
    if (i++ >= n) return void res.end();
    res.write(chunk);
    setImmediate(next);
  };
  next();
}
