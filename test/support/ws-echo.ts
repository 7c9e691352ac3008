/**
 * A WebSocket echo backend (`ws`) for end-to-end tests. On connect it sends one JSON message
 * `{ name, url, headers }` describing the upgrade request it received; then every message comes
 * back prefixed with `<name>:`. Path `/reject` answers the upgrade with 400; `/reject-chunked` with a
 * chunked 403 `nope! :(` on a connection it leaves open; `/hangup` closes the connection without an
 * answer; `/close` closes the WebSocket at once.
 */

import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import WebSocket, { WebSocketServer } from 'ws';

export interface WsEcho {
  port: number;
  /** Tunnels currently open at this server. */
  readonly open: number;
  close(): Promise<void>;
}

/** `tls`: serve wss (node:https) with this certificate; `ca` + `requestCert` require a client certificate. */
export async function startWsEcho(name: string, tls?: { cert: string; key: string; ca?: string; requestCert?: boolean }): Promise<WsEcho> {
  const answer = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('upgrade required');
  };
  const server: http.Server =
    tls === undefined ? http.createServer(answer) : https.createServer({ cert: tls.cert, key: tls.key, ca: tls.ca, requestCert: tls.requestCert ?? false, rejectUnauthorized: tls.requestCert ?? false }, answer);
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => {
    if (req.url === '/hangup') {
      socket.destroy();
      return;
    }
    if (req.url === '/reject-chunked') {
      // A chunked refusal on a connection left open: the relay must end on the framing.
      socket.on('end', () => socket.destroy());
      socket.on('error', () => socket.destroy());
      socket.write('HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n5\r\nnope!\r\n3;x=1\r\n :(\r\n0\r\n\r\n');
      return;
    }
    if (req.url === '/reject') {
      socket.end('HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 8\r\nx-echo-name: ' + name + '\r\n\r\nrejected');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      const peer = tls === undefined ? null : (req.socket as TLSSocket).getPeerCertificate();
      ws.send(JSON.stringify({ name, url: req.url, headers: req.headers, sni: tls === undefined ? undefined : (req.socket as TLSSocket).servername, client: peer?.subjectaltname }));
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
  /** wss backends: the SNI received and the client certificate's SANs (if one was sent). */
  sni?: string;
  client?: string;
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

