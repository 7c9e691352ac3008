/**
 * A WebSocket echo backend (`ws`) for end-to-end tests. On connect it sends one JSON message
 * `{ name, url, headers }` describing the upgrade request it received; then every message comes
 * back prefixed with `<name>:`. Path `/reject` answers the upgrade with 400; `/close` closes at once.
 */

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

export interface WsEcho {
  port: number;
  /** Tunnels currently open at this server. */
  readonly open: number;
  close(): Promise<void>;
}

export async function startWsEcho(name: string): Promise<WsEcho> {
  const server = http.createServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('upgrade required');
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/reject') {
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 8\r\nx-echo-name: ' + name + '\r\n\r\nrejected');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.send(JSON.stringify({ name, url: req.url, headers: req.headers }));
      if (req.url === '/close') return ws.close(1000, 'bye');
      ws.on('message', (data, isBinary) => ws.send(isBinary ? Buffer.concat([Buffer.from(`${name}:`), data as Buffer]) : `${name}:${String(data)}`));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get open() {
      return wss.clients.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export interface Hello {
  name: string;
  url: string;
  headers: Record<string, string>;
}

/** Opens a WebSocket; resolves with the socket and the server's hello, or the HTTP status it was refused with. */
export function open(url: string, headers: Record<string, string> = {}): Promise<{ ws: WebSocket; hello: Hello } | { status: number; flags: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('message', (data) => resolve({ ws, hello: JSON.parse(String(data)) as Hello }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, flags: res.headers['x-meshgate-flags'] as string | undefined, body }));
    });
    ws.once('error', reject);
  });
}

