/**
 * Reads the server name (SNI, RFC 6066 §3) and the offered ALPN protocols (RFC 7301) from a TLS
 * ClientHello without terminating TLS, as Envoy's tls_inspector does. Works on the bytes received so far: `need-more` until the whole
 * ClientHello record(s) arrived, `not-tls` for anything that is not a TLS handshake.
 */

import type { Socket } from 'node:net';

/** Largest ClientHello accepted (hardening T-03: over 16 KiB or malformed -> close). */
export const MAX_CLIENT_HELLO = 16 * 1024;

/** `alpn`: the protocols the client offers, in its order (`[]` without the extension). */
export type ClientHelloResult = { kind: 'sni'; serverName: string; alpn: string[] } | { kind: 'no-sni'; alpn: string[] } | { kind: 'need-more' } | { kind: 'not-tls' };

/**
 * `data` is everything read from the connection so far. The ClientHello may span several TLS
 * records (handshake fragmentation); their payloads are joined before parsing.
 */
export function parseClientHello(data: Buffer): ClientHelloResult {
  // Reassemble the handshake message from consecutive handshake records (content type 22).
  let off = 0;
  const parts: Buffer[] = [];
  let have = 0;
  let needed = -1;
  while (true) {
    if (data.length < off + 5) return { kind: 'need-more' };
    if (data[off] !== 22 || data[off + 1] !== 3) return { kind: 'not-tls' };
    const len = data.readUInt16BE(off + 3);
    if (len === 0 || len > MAX_CLIENT_HELLO) return { kind: 'not-tls' };
    if (data.length < off + 5 + len) {
      if (off + 5 + len > MAX_CLIENT_HELLO + 5 * 8) return { kind: 'not-tls' };
      return { kind: 'need-more' };
    }
    parts.push(data.subarray(off + 5, off + 5 + len));
    have += len;
    off += 5 + len;
    if (needed === -1) {
      const first = parts[0];
      if (first.length < 4) {
        if (have < 4) continue;
      }
      const hs = parts.length === 1 ? first : Buffer.concat(parts);
      if (hs[0] !== 1) return { kind: 'not-tls' }; // not a ClientHello
      needed = 4 + hs.readUIntBE(1, 3);
      if (needed > MAX_CLIENT_HELLO) return { kind: 'not-tls' };
    }
    if (have >= needed) break;
  }
  const hello = Buffer.concat(parts).subarray(4, needed);
  return sniOf(hello);
}

function sniOf(h: Buffer): ClientHelloResult {
  try {
    let p = 2 + 32; // version, random
    p += 1 + h[p]; // session id
    p += 2 + h.readUInt16BE(p); // cipher suites
    p += 1 + h[p]; // compression methods
    if (p === h.length) return { kind: 'no-sni', alpn: [] };
    const end = p + 2 + h.readUInt16BE(p);
    p += 2;
    if (end > h.length) return { kind: 'not-tls' };
    let serverName: string | null = null;
    const alpn: string[] = [];
    while (p + 4 <= end) {
      const type = h.readUInt16BE(p);
      const len = h.readUInt16BE(p + 2);
      p += 4;
      if (type === 0 && serverName === null) {
        // server_name: list length, then entries of type 0 (host_name).
        let q = p + 2;
        const listEnd = p + 2 + h.readUInt16BE(p);
        while (q + 3 <= listEnd) {
          const nameType = h[q];
          const nameLen = h.readUInt16BE(q + 1);
          if (nameType === 0) {
            const name = h.toString('latin1', q + 3, q + 3 + nameLen).toLowerCase();
            if (!/^[a-z0-9.*_-]+$/.test(name)) return { kind: 'not-tls' };
            serverName = name.endsWith('.') ? name.slice(0, -1) : name;
            break;
          }
          q += 3 + nameLen;
        }
      } else if (type === 16) {
        // application_layer_protocol_negotiation: list length, then length-prefixed names.
        let q = p + 2;
        const listEnd = Math.min(p + 2 + h.readUInt16BE(p), p + len);
        while (q + 1 <= listEnd) {
          const n = h[q];
          if (q + 1 + n > listEnd) break;
          alpn.push(h.toString('latin1', q + 1, q + 1 + n));
          q += 1 + n;
        }
      }
      p += len;
    }
    return serverName === null ? { kind: 'no-sni', alpn } : { kind: 'sni', serverName, alpn };
  } catch {
    return { kind: 'not-tls' };
  }
}

/**
 * Reads a connection until its ClientHello is complete (or proves not to be one), writing nothing,
 * then pauses it and calls `done` with the result and every byte read (to relay or put back). A
 * client that half-closes first, or sends no whole ClientHello within `timeoutMs`, is destroyed.
 */
export function peekClientHello(socket: Socket, timeoutMs: number, done: (hello: Exclude<ClientHelloResult, { kind: 'need-more' }>, seen: Buffer) => void): void {
  let seen: Buffer = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), timeoutMs);
  const onEnd = (): void => {
    clearTimeout(timer);
    socket.destroy();
  };
  const onData = (chunk: Buffer): void => {
    seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
    const hello = parseClientHello(seen);
    if (hello.kind === 'need-more') return;
    socket.removeListener('data', onData);
    socket.removeListener('end', onEnd);
    clearTimeout(timer);
    socket.pause();
    done(hello, seen);
  };
  socket.on('data', onData);
  socket.once('end', onEnd);
}
