/**
 * Servers on loopback addresses of a test's own, and the accepted connections they hold open: the
 * local sidecar tests (test/mesh/sidecar-*-local, -dns-hosts, -proxy-headers, ...) bind several
 * addresses in 127.0.0.0/8 and close every accepted connection in `after`, so a kept-alive socket
 * never holds the test process open.
 */
import type net from 'node:net';

export class LoopbackServers {
  /** Accepted connections still open (TCP and, for TLS servers, the TLS sockets). */
  readonly connections = new Set<net.Socket>();

  /** Starts `server` on `host:port` (0: any free port), tracking what it accepts; resolves to the port. */
  listen(server: net.Server, host: string, port = 0): Promise<number> {
    const track = (c: net.Socket): void => {
      this.connections.add(c);
      c.once('close', () => this.connections.delete(c));
      c.on('error', () => {});
    };
    server.on('connection', track);
    server.on('secureConnection', track);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve((server.address() as net.AddressInfo).port);
      });
    });
  }

  /** Destroys every accepted connection still open. */
  destroyConnections(): void {
    for (const c of this.connections) c.destroy();
  }
}

/** A minimal TLS 1.2 ClientHello with one SNI name (for routing by SNI without a TLS client). */
export function tlsClientHello(name: string): Buffer {
  const u16 = (n: number): Buffer => Buffer.from([n >> 8, n & 0xff]);
  const host = Buffer.from(name);
  const sniEntry = Buffer.concat([Buffer.from([0]), u16(host.length), host]);
  const sniExt = Buffer.concat([u16(0), u16(sniEntry.length + 2), u16(sniEntry.length), sniEntry]);
  const body = Buffer.concat([Buffer.from([3, 3]), Buffer.alloc(32, 1), Buffer.from([0]), u16(2), Buffer.from([0x00, 0x2f]), Buffer.from([1, 0]), u16(sniExt.length), sniExt]);
  const hs = Buffer.concat([Buffer.from([1, 0]), u16(body.length), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 1]), u16(hs.length), hs]);
}
