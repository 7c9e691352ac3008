/**
 * TCP and TLS backends for the TCP proxy tests: a server that counts and hashes what it receives
 * and, on the client's FIN, answers `<name> bytes=<n> sha=<hex>` and sends its own FIN (so a test
 * sees every byte and the half-close relayed).
 */
import { createHash } from 'node:crypto';
import net from 'node:net';
import tls from 'node:tls';
import type { Pem } from './mtls-certs.js';

export interface Backend {
  port: number;
  close(): Promise<void>;
}

/** Counts bytes; on the client's FIN answers `<name> bytes=<n> sha=<hex>` and sends its own FIN. Plain TCP, or TLS with `cert`. */
export async function startSummingBackend(name: string, cert?: Pem): Promise<Backend> {
  const onSocket = (s: net.Socket): void => {
    const hash = createHash('sha256');
    let n = 0;
    s.on('data', (c: Buffer) => {
      hash.update(c);
      n += c.length;
    });
    s.on('end', () => s.end(`${name} bytes=${n} sha=${hash.digest('hex')}`));
    s.on('error', () => {});
  };
  const server = cert === undefined ? net.createServer({ allowHalfOpen: true }, onSocket) : tls.createServer({ allowHalfOpen: true, cert: cert.cert, key: cert.key }, onSocket);
  // Every accepted socket, so close() also ends those left half-open (a handshake the gateway abandoned).
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}

