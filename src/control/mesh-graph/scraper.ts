/**
 * The control plane's scraper of sidecar metrics, for the mesh graph: every `intervalMs` it reads
 * `/stats/prometheus` of each connected sidecar (its pod IP from the config push, port 15020 by
 * default, as Prometheus's `kubernetes-pods` job scrapes Istio's merged metrics), keeps the scrapes
 * of the last `windowMs` per sidecar (history.ts) and builds the graph on request (graph.ts).
 *
 * - Scrapes of one round run in parallel (at most `concurrency` at a time), each bounded by
 *   `timeoutMs` and `maxBytes`; a round never starts before the previous one ended.
 * - A failed scrape (refused, timed out, HTTP error, unparsable text) is recorded on the target and
 *   keeps its earlier scrapes: the next success continues the window.
 * - A sidecar that disconnects keeps its data until it leaves the window (Prometheus's range
 *   queries behave the same); one that reconnects with the same address continues its history,
 *   and counter resets of a restarted sidecar are taken as such.
 */
import http from 'node:http';
import { isIP } from 'node:net';
import type { Logger } from '../../lib/log.js';
import { TargetHistory } from './history.js';
import { buildMeshGraph, type MeshGraph } from './graph.js';
import { parsePromText } from './prom-text.js';

export interface ScrapeTarget {
  /** `<pod>.<namespace>` (the proxy-status name). */
  name: string;
  address: string;
  port: number;
  /** Why this proxy is listed but not scraped (its claimed pod IP is not where it connects from). */
  refused?: string;
}

export interface MeshGraphOptions {
  /** The sidecars to scrape now (the push's connected proxies). */
  targets: () => ScrapeTarget[];
  /** Scrape period, ms (default 10 000). */
  intervalMs?: number;
  /** Rate window, ms (default 60 000, Kiali's default graph duration). */
  windowMs?: number;
  /** One scrape's timeout, ms (default min(interval, 5000)). */
  timeoutMs?: number;
  /** Largest accepted answer, bytes (default 32 MiB). */
  maxBytes?: number;
  concurrency?: number;
  log: Logger;
  /** Clock, for tests. */
  now?: () => number;
}

interface TargetState {
  target: ScrapeTarget;
  history: TargetHistory;
  connected: boolean;
  lastError: string | null;
}

export const DEFAULT_GRAPH_INTERVAL_MS = 10_000;
export const DEFAULT_GRAPH_WINDOW_MS = 60_000;
/** Istio's merged Prometheus port on every sidecar. */
export const DEFAULT_SIDECAR_STATS_PORT = 15020;

export class MeshGraphScraper {
  readonly #opts: MeshGraphOptions;
  readonly intervalMs: number;
  readonly windowMs: number;
  readonly #timeoutMs: number;
  readonly #maxBytes: number;
  readonly #states = new Map<string, TargetState>();
  readonly #inFlight = new Set<http.ClientRequest>();
  #timer: NodeJS.Timeout | null = null;
  #round: Promise<void> | null = null;
  #stopped = false;
  #cache: { round: number; graph: MeshGraph } | null = null;
  /** Completed scrape rounds (tests wait on it). */
  rounds = 0;

  constructor(opts: MeshGraphOptions) {
    this.#opts = opts;
    this.intervalMs = opts.intervalMs ?? DEFAULT_GRAPH_INTERVAL_MS;
    this.windowMs = opts.windowMs ?? DEFAULT_GRAPH_WINDOW_MS;
    this.#timeoutMs = opts.timeoutMs ?? Math.min(this.intervalMs, 5000);
    this.#maxBytes = opts.maxBytes ?? 32 * 1024 * 1024;
  }

  #now(): number {
    return (this.#opts.now ?? Date.now)();
  }

  /** Scrapes at once, then every interval. */
  start(): void {
    if (this.#stopped || this.#timer !== null) return;
    const tick = () => {
      this.#timer = null;
      void this.scrapeOnce().finally(() => {
        if (this.#stopped) return;
        this.#timer = setTimeout(tick, this.intervalMs);
        this.#timer.unref();
      });
    };
    tick();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    for (const r of this.#inFlight) r.destroy(new Error('scraper stopped'));
  }

  /** One scrape round over the current targets (a round already running is awaited instead). */
  scrapeOnce(): Promise<void> {
    this.#round ??= this.#scrapeRound().finally(() => {
      this.#round = null;
      this.rounds++;
    });
    return this.#round;
  }

  async #scrapeRound(): Promise<void> {
    const seen = new Set<string>();
    const targets: TargetState[] = [];
    for (const t of this.#opts.targets()) {
      const key = `${t.address}|${t.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      let s = this.#states.get(key);
      if (s === undefined) this.#states.set(key, (s = { target: t, history: new TargetHistory(), connected: true, lastError: null }));
      s.target = t;
      s.connected = true;
      targets.push(s);
    }
    for (const [key, s] of this.#states) if (!seen.has(key)) s.connected = false;
    const concurrency = Math.max(1, this.#opts.concurrency ?? 16);
    let next = 0;
    const worker = async () => {
      while (next < targets.length && !this.#stopped) await this.#scrape(targets[next++]);
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, targets.length) }, worker));
    const now = this.#now();
    for (const [key, s] of this.#states) {
      s.history.prune(now, this.windowMs);
      if (!s.connected && s.history.scrapes.length === 0) this.#states.delete(key);
    }
  }

  async #scrape(s: TargetState): Promise<void> {
    // The scrape's time is when it started (as Prometheus stamps its samples): the sidecar renders its
    // counters when asked, and a slow transfer on a loaded machine must not shorten the rate's span.
    const started = this.#now();
    try {
      if (s.target.refused !== undefined) throw new Error(s.target.refused);
      const text = await this.#fetch(s.target);
      s.history.add(started, parsePromText(text));
      s.lastError = null;
    } catch (e) {
      const msg = (e as Error).message;
      if (s.lastError !== msg) this.#opts.log.warn('cannot scrape a sidecar for the mesh graph', { proxy: s.target.name, address: `${s.target.address}:${s.target.port}`, error: msg });
      s.lastError = msg;
    }
  }

  #fetch(t: ScrapeTarget): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = http.get({ host: t.address, port: t.port, path: '/stats/prometheus', headers: { accept: 'text/plain;version=0.0.4' }, timeout: this.#timeoutMs, agent: false }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`HTTP ${res.statusCode}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > this.#maxBytes) {
            reject(new Error(`answer larger than ${this.#maxBytes} bytes`));
            req.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      });
      this.#inFlight.add(req);
      // The whole scrape is bounded, not only its idle time: a sidecar that trickles its answer
      // would otherwise hold the round (and every later one) open.
      const deadline = setTimeout(() => req.destroy(new Error(`timed out after ${this.#timeoutMs} ms`)), this.#timeoutMs);
      req.on('close', () => {
        clearTimeout(deadline);
        this.#inFlight.delete(req);
      });
      req.on('timeout', () => req.destroy(new Error(`timed out after ${this.#timeoutMs} ms`)));
      req.on('error', reject);
    });
  }

  /** The graph of the current window (computed once per scrape round: nothing changes between rounds). */
  graph(): MeshGraph {
    if (this.#cache !== null && this.#cache.round === this.rounds) return this.#cache.graph;
    const now = this.#now();
    const inputs = [...this.#states.values()].map((s) => {
      s.history.prune(now, this.windowMs);
      return { name: s.target.name, address: s.target.address, port: s.target.port, connected: s.connected, lastError: s.lastError, history: s.history };
    });
    const graph = buildMeshGraph(inputs, { now, windowMs: this.windowMs, intervalMs: this.intervalMs });
    this.#cache = { round: this.rounds, graph };
    return graph;
  }
}

/**
 * The scrape targets of connected proxies (proxy-status rows): one per proxy, at the pod IP its
 * config stream comes from. The pod IPs are only what the proxy's hello claims, and a proxy with a
 * valid credential could name any address there (another pod, a node, a cloud metadata service) and
 * have the control plane connect to it. So a proxy is scraped only when the stream's source address
 * (`peer`, as gRPC reports it) is one of its claimed pod IPs; otherwise it is listed with the reason
 * (`refused`) and never dialled. In a cluster a sidecar reaches the control plane from its pod IP
 * (pod-to-Service traffic is not source-NATed); a proxy behind NAT is not drawn. Only IP literals are
 * ever targets, never host names.
 */
export function proxyTargets(proxies: readonly { name: string; peer: string; proxy: { podIps: readonly string[] } }[], port: number): ScrapeTarget[] {
  const out: ScrapeTarget[] = [];
  for (const p of proxies) {
    const claimed = p.proxy.podIps.filter((ip) => isIP(ip) !== 0);
    const from = peerIp(p.peer);
    const address = from === null ? undefined : claimed.find((ip) => sameIp(ip, from));
    if (address !== undefined) out.push({ name: p.name, address, port });
    else if (claimed.length > 0) out.push({ name: p.name, address: claimed[0], port, refused: `not scraped: the config stream comes from ${from ?? `an unknown address (${p.peer})`}, which is not one of the pod IPs the proxy claims (${claimed.join(', ')})` });
  }
  return out;
}

/** The IP of a gRPC peer string (`1.2.3.4:5`, `[fd00::1]:5`, `ipv4:1.2.3.4:5`, `ipv6:[::1]:5`), or null. */
export function peerIp(peer: string): string | null {
  const s = peer.replace(/^ipv[46]:/, '');
  const m = /^\[([^\]]+)\]:\d+$/.exec(s) ?? /^([^:]+):\d+$/.exec(s);
  const ip = m?.[1] ?? s;
  return isIP(ip) !== 0 ? ip : null;
}

/** Equal addresses, an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) being its IPv4 address. */
function sameIp(a: string, b: string): boolean {
  const plain = (x: string) => x.toLowerCase().replace(/^::ffff:(\d+\.\d+\.\d+\.\d+)$/, '$1');
  return plain(a) === plain(b);
}
