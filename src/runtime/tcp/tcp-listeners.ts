/**
 * TCP listeners: Istio protocol TCP servers and TLS passthrough. Sockets are kept by
 * `address:port` across swaps like HTTP listeners; each connection reads the current compiled
 * routes once, when it is matched, and keeps its upstream to the end.
 *
 * Per connection: (TLS) read the ClientHello until the SNI is known (at most `PEEK_TIMEOUT_MS`,
 * at most 16 KiB), first matching route, weighted destination, endpoint by the cluster's load
 * balancer, connect (the cluster's connect timeout), write what was read, then splice both ways.
 * A FIN from one side is passed to the other (half-close) and the socket stays open for the
 * other direction; an error or reset on either side destroys both. No route, no endpoint or a
 * failed connect: the client connection is closed (as Envoy's tcp_proxy does).
 */

import net from 'node:net';
import type { TcpListener } from '../../ir/types.js';
import type { CompiledCluster, CompiledSnapshot } from '../compile/types.js';
import { selectEndpoint } from '../upstream/load-balancer.js';
import { parseClientHello } from './client-hello.js';

/** Time a TLS passthrough connection has to send its ClientHello (Envoy's listener filter timeout is 15 s). */
export const PEEK_TIMEOUT_MS = 10_000;

interface CompiledTcpRoute {
  name: string;
  matches: { exact: Set<string>; suffixes: string[]; anySni: boolean; subnets: net.BlockList | null; port: number | null }[];
  clusters: (CompiledCluster | null)[];
  cumulative: number[];
  total: number;
}

interface CompiledTcpListener {
  key: string;
  ir: TcpListener;
  routes: CompiledTcpRoute[];
}

export interface TcpListenerStatus {
  name: string;
  key: string;
  boundPort: number | null;
  error: string | null;
}

function compileTcpListener(l: TcpListener, clusters: Map<string, CompiledCluster>): CompiledTcpListener {
  const routes = l.routes.map((r): CompiledTcpRoute => {
    let sum = 0;
    const cumulative = r.destinations.map((d) => (sum += d.weight));
    return {
      name: r.name,
      matches: r.matches.map((m) => {
        let subnets: net.BlockList | null = null;
        if (m.destinationSubnets.length > 0) {
          subnets = new net.BlockList();
          for (const c of m.destinationSubnets) {
            const [addr, len] = c.split('/');
            const type = net.isIPv6(addr) ? 'ipv6' : 'ipv4';
            subnets.addSubnet(addr, len === undefined ? (type === 'ipv6' ? 128 : 32) : Number(len), type);
          }
        }
        return {
          exact: new Set(m.sniHosts.filter((h) => !h.startsWith('*.'))),
          suffixes: m.sniHosts.filter((h) => h.startsWith('*.')).map((h) => h.slice(1)),
          anySni: m.sniHosts.length === 0,
          subnets,
          port: m.port,
        };
      }),
      clusters: r.destinations.map((d) => clusters.get(d.cluster) ?? null),
      cumulative,
      total: sum,
    };
  });
  return { key: `${l.address}:${l.port}`, ir: l, routes };
}

/** First route whose match holds for this connection (`sni` '' = none). */
function findTcpRoute(l: CompiledTcpListener, sni: string, localAddress: string): CompiledTcpRoute | null {
  for (const r of l.routes) {
    for (const m of r.matches) {
      if (m.port !== null && m.port !== l.ir.externalPort) continue;
      if (!m.anySni) {
        if (sni === '') continue;
        if (!m.exact.has(sni) && !m.suffixes.some((s) => sni.length > s.length && sni.endsWith(s))) continue;
      }
      if (m.subnets !== null) {
        const a = localAddress.startsWith('::ffff:') && localAddress.includes('.') ? localAddress.slice(7) : localAddress;
        if (!m.subnets.check(a, net.isIPv6(a) ? 'ipv6' : 'ipv4')) continue;
      }
      return r;
    }
  }
  return null;
}

class TcpRecord {
  boundPort: number | null = null;
  readonly sockets = new Set<net.Socket>();
  constructor(
    public compiled: CompiledTcpListener,
    readonly server: net.Server,
  ) {}
}

export class TcpListenerManager {
  readonly #records = new Map<string, TcpRecord>();
  readonly #random: () => number;

  constructor(random: () => number) {
    this.#random = random;
  }

  /** Applies the TCP listeners of a snapshot; `compiled` supplies the clusters (with their pools' endpoints). */
  async sync(listeners: TcpListener[], compiled: CompiledSnapshot, drainMs: number): Promise<TcpListenerStatus[]> {
    const next = listeners.map((l) => compileTcpListener(l, compiled.clusters));
    const keep = new Set(next.map((l) => l.key));
    for (const [key, rec] of this.#records) {
      if (keep.has(key)) continue;
      this.#records.delete(key);
      void drainTcp(rec, drainMs);
    }
    const statuses: TcpListenerStatus[] = [];
    for (const l of next) {
      let rec = this.#records.get(l.key);
      if (rec !== undefined) {
        rec.compiled = l;
        statuses.push({ name: l.ir.name, key: l.key, boundPort: rec.boundPort, error: null });
        continue;
      }
      const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false });
      rec = new TcpRecord(l, server);
      const r = rec;
      server.on('connection', (socket) => this.#onConnection(r, socket));
      try {
        await new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen({ host: l.ir.address, port: l.ir.port }, () => {
            server.off('error', reject);
            resolve();
          });
        });
      } catch (err) {
        statuses.push({ name: l.ir.name, key: l.key, boundPort: null, error: (err as Error).message });
        continue;
      }
      server.on('error', noop);
      rec.boundPort = (server.address() as net.AddressInfo).port;
      this.#records.set(l.key, rec);
      statuses.push({ name: l.ir.name, key: l.key, boundPort: rec.boundPort, error: null });
    }
    return statuses;
  }

  async close(graceMs: number): Promise<void> {
    const recs = [...this.#records.values()];
    this.#records.clear();
    await Promise.all(recs.map((r) => drainTcp(r, graceMs)));
  }

  #onConnection(rec: TcpRecord, client: net.Socket): void {
    rec.sockets.add(client);
    client.once('close', () => rec.sockets.delete(client));
    client.on('error', noop);
    client.setNoDelay(true);
    if (rec.compiled.ir.protocol === 'TCP') return this.#route(rec, client, '', Buffer.alloc(0));
    // TLS passthrough: read until the SNI is known; nothing is written to the client meanwhile.
    let seen: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => client.destroy(), PEEK_TIMEOUT_MS);
    const onData = (chunk: Buffer): void => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const r = parseClientHello(seen);
      if (r.kind === 'need-more') return;
      client.removeListener('data', onData);
      client.removeListener('end', onEnd);
      clearTimeout(timer);
      client.pause();
      if (r.kind === 'not-tls') return void client.destroy();
      this.#route(rec, client, r.kind === 'sni' ? r.serverName : '', seen);
    };
    const onEnd = (): void => {
      clearTimeout(timer);
      client.destroy();
    };
    client.on('data', onData);
    client.once('end', onEnd);
  }

  #route(rec: TcpRecord, client: net.Socket, sni: string, head: Buffer): void {
    const l = rec.compiled;
    const route = findTcpRoute(l, sni, client.localAddress ?? '');
    // Unknown SNI (or no route): closed cleanly, nothing sent (the client sees its handshake end).
    if (route === null) return void client.end();
    const x = route.total * this.#random();
    let i = 0;
    while (i < route.cumulative.length - 1 && x >= route.cumulative[i]) i++;
    const cluster = route.clusters[i];
    const endpoint = cluster === null || cluster.discovery === 'missing' ? null : selectEndpoint(cluster, this.#random);
    if (cluster === null || endpoint === null) return void client.destroy();
    const handle = endpoint.handle;
    if (handle !== null) handle.active++;
    const upstream = net.connect({ host: endpoint.address, port: endpoint.port, allowHalfOpen: true });
    rec.sockets.add(upstream);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      if (handle !== null) handle.active--;
    };
    const connectTimer = setTimeout(() => upstream.destroy(), cluster.connectTimeoutMs);
    upstream.setNoDelay(true);
    upstream.on('connect', () => {
      clearTimeout(connectTimer);
      if (head.length > 0) upstream.write(head);
      // Bytes both ways with back-pressure; a FIN is relayed as a FIN (end: true), never as a close.
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    const destroyBoth = (): void => {
      clearTimeout(connectTimer);
      client.destroy();
      upstream.destroy();
      release();
    };
    upstream.on('error', destroyBoth);
    client.on('error', destroyBoth);
    upstream.on('close', () => {
      rec.sockets.delete(upstream);
      // Closed after both FINs: the client closes too once its own writes are flushed.
      if (!client.destroyed && client.writableFinished) client.destroy();
      else if (!client.writableEnded) client.destroy();
      release();
    });
    client.on('close', () => {
      if (!upstream.destroyed && !upstream.writableEnded) upstream.destroy();
      release();
    });
  }

  boundPort(key: string): number | null {
    return this.#records.get(key)?.boundPort ?? null;
  }
}

function drainTcp(rec: TcpRecord, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    const hard = setTimeout(() => {
      for (const s of rec.sockets) s.destroy();
    }, graceMs);
    rec.server.close(() => {
      clearTimeout(hard);
      resolve();
    });
  });
}

function noop(): void {}
