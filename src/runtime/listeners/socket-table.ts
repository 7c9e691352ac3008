/**
 * The listening sockets of one runtime, by `address:port`, shared by the HTTP(S) listener manager
 * and the TCP listener manager. A socket belongs to one of them at a time (its `owner`) and hands
 * every connection it accepts to that owner's `handler`. A port that moves from one to the other
 * on a reload (an Istio server switched between HTTP and TCP, a Gateway API listener between
 * HTTPS and TLS) keeps its socket: the new owner takes it over (`take`) and only the handler
 * changes, so no connection is refused in between (as a socket kept across any other change).
 *
 * Port 0 (any free port) is never shared: each such listener has a socket of its own.
 */

import net, { type AddressInfo } from 'node:net';
import { EDGE_LIMITS } from './edge-limits.js';

export type SocketOwner = 'http' | 'tcp';
export type ConnectionHandler = (socket: net.Socket) => void;

interface Entry {
  readonly server: net.Server;
  /** Null: given up by its owner for the other manager of the same reload to take (`release(…, true)`). */
  owner: SocketOwner | null;
  handler: ConnectionHandler;
  boundPort: number;
}

export class SocketTable {
  readonly #entries = new Map<string, Entry>();

  /** The table key of a listener's socket. */
  static key(owner: SocketOwner, address: string, port: number): string {
    return port === 0 ? `${owner}|${address}:0` : `${address}:${port}`;
  }

  /**
   * Takes over the bound socket of `key` if it is free to take: given up (`release(…, true)`),
   * already `owner`'s, or owned by the other manager when `othersKeep` says that one does not keep
   * it (it drops the port in the same reload). Synchronous: from now on its connections go to
   * `handler`. False when there is no such socket (bind one).
   */
  take(key: string, owner: SocketOwner, handler: ConnectionHandler, othersKeep: ReadonlySet<string>): boolean {
    const e = this.#entries.get(key);
    if (e === undefined) return false;
    if (e.owner !== null && e.owner !== owner && othersKeep.has(key)) return false;
    e.owner = owner;
    e.handler = handler;
    return true;
  }

  /** Binds a new socket; the error message when that fails. */
  async bind(key: string, owner: SocketOwner, address: string, port: number, handler: ConnectionHandler): Promise<string | null> {
    const server = net.createServer({ allowHalfOpen: true, noDelay: true });
    const entry: Entry = { server, owner, handler, boundPort: 0 };
    // Each connection goes to the handler of the moment it is accepted.
    server.on('connection', (socket: net.Socket) => entry.handler(socket));
    server.maxConnections = EDGE_LIMITS.maxConnectionsPerListener; // edge-limits.ts
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: address, port }, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      server.close();
      return (err as Error).message;
    }
    // After listening, an error on the server must not crash the process.
    server.on('error', noop);
    entry.boundPort = (server.address() as AddressInfo).port;
    if (this.#entries.has(key)) {
      // Bound meanwhile by another call: one socket per key.
      server.close();
      return `${address}:${port} is already bound`;
    }
    this.#entries.set(key, entry);
    return null;
  }

  /**
   * `owner` no longer serves `key`. With `forOther`, the socket stays open, its connections still
   * going to the old handler, for the other manager to take in the same reload (`sweep` closes it
   * if none does); otherwise it stops accepting now. Nothing happens if `owner` no longer owns it.
   */
  release(key: string, owner: SocketOwner, forOther = false): void {
    const e = this.#entries.get(key);
    if (e === undefined || e.owner !== owner) return;
    if (forOther) {
      e.owner = null;
      return;
    }
    this.#entries.delete(key);
    e.server.close();
  }

  /** Closes the sockets given up for the other manager that it did not take (end of a reload). */
  sweep(): void {
    for (const [key, e] of this.#entries) {
      if (e.owner !== null) continue;
      this.#entries.delete(key);
      e.server.close();
    }
  }

  /** Whether `owner` has the socket of `key`. */
  owns(key: string, owner: SocketOwner): boolean {
    return this.#entries.get(key)?.owner === owner;
  }

  /** The port the socket of `key` is bound to; null when there is none. */
  boundPort(key: string): number | null {
    return this.#entries.get(key)?.boundPort ?? null;
  }
}

function noop(): void {}
