/**
 * Servers on loopback addresses of a test's own, and the accepted connections they hold open: the
 * local sidecar tests (test/mesh/sidecar-*-local, -dns-hosts, -proxy-headers, ...) bind several
 * addresses in 127.0.0.0/8 and close every accepted connection in `after`, so a kept-alive socket
 * never holds the test process open.
 */
import net from 'node:net';
import tls from 'node:tls';

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

/** A TLS server with `cert` that answers every connection with `<who> <the SNI it got, or ->` and closes it. */
export function sniEchoServer(cert: { cert: string; key: string }, who: string): tls.Server {
  const s = tls.createServer({ cert: cert.cert, key: cert.key }, (c) => {
    c.on('error', () => {});
    c.end(`${who} ${c.servername === false || c.servername === undefined ? '-' : c.servername}`);
  });
  s.on('tlsClientError', () => {});
  return s;
}

/** A server-first TCP server (a database greeting): sends `greeting` and closes every connection. */
export function greetingServer(greeting: string): net.Server {
  return net.createServer((c) => {
    c.on('error', () => {});
    c.end(greeting);
  });
}

/**
 * Runs `send` against a stand-in for the capture: a listener on `clientSide` whose accepted
 * connections say they were addressed to `address:port` (the original destination) and go to
 * `handle` (an outbound handler), as the TPROXY rules deliver them. The listener is closed after.
 */
export async function viaCapture<T>(loopback: LoopbackServers, clientSide: string, handle: (s: net.Socket) => void, address: string, port: number, send: (capPort: number) => Promise<T>): Promise<T> {
  const cap = net.createServer({ allowHalfOpen: true }, (s) => {
    Object.defineProperty(s, 'localAddress', { value: address });
    Object.defineProperty(s, 'localPort', { value: port });
    handle(s);
  });
  const capPort = await loopback.listen(cap, clientSide);
  try {
    return await send(capPort);
  } finally {
    cap.close();
  }
}

/**
 * A TLS client to `host:port` with SNI `sni`, verifying the server for it against `ca` (null SNI:
 * none, and the server is not checked): what the server said, or `closed: <reason>` when the
 * connection ended before a handshake.
 */
export function tlsRead(host: string, port: number, sni: string | null, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = tls.connect(sni === null ? { host, port, rejectUnauthorized: false } : { host, port, servername: sni, ca });
    let out = '';
    let secure = false;
    c.setEncoding('utf8');
    c.once('secureConnect', () => (secure = true));
    c.on('data', (d: string) => (out += d));
    c.on('close', () => resolve(secure ? out : `closed: ${out}`));
    c.on('error', (err: NodeJS.ErrnoException) => {
      if (secure) reject(err);
      else resolve(`closed: ${err.code ?? err.message}`);
    });
    c.setTimeout(10_000, () => c.destroy(new Error(`no answer for ${sni} within 10 s`)));
  });
}

/** A plain TCP client to `host:port`: everything the server sent before the connection closed. */
export function tcpRead(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = net.connect({ host, port });
    let out = '';
    c.setEncoding('utf8');
    c.on('data', (d: string) => (out += d));
    c.on('close', () => resolve(out));
    c.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(out) : reject(err)));
    c.setTimeout(10_000, () => c.destroy(new Error('no answer within 10 s')));
  });
}
