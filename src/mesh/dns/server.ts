/**
 * The sidecar's DNS proxy (Istio's istio-agent "smart DNS proxy", pkg/dns/client), on
 * 127.0.0.1:15053 (and [::1]:15053 for an IPv6 pod), UDP and TCP. `meshgate capture --redirect-dns`
 * sends the app's port-53 traffic here; the proxy's own queries (its uid) are not captured, so
 * forwarding them to the resolvers of /etc/resolv.conf cannot loop.
 *
 * Per query (one question, as Istio: a query without one gets SERVFAIL):
 *   - a name of the view's table (table.ts) is answered here, authoritative, TTL 30 s;
 *   - anything else is forwarded to the resolv.conf servers in turn (5 s each, Istio's
 *     DefaultUpstreamTimeout) over the protocol the client used, and the first answer is relayed
 *     byte for byte (an NXDOMAIN included: only the upstream ever says NXDOMAIN); none → SERVFAIL;
 *   - before the first view arrives: SERVFAIL (Istio, unless it listens on :53 itself);
 *   - over UDP an answer is at most 512 bytes, or the client's EDNS(0) size: a longer local answer
 *     keeps the records that fit and sets TC, a longer relayed one is cut to its question with TC;
 *   - a packet that does not parse, or is itself a response, is dropped (over TCP the connection is
 *     closed); another opcode than QUERY gets NOTIMP, more than one question FORMERR.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import type { SidecarDns } from '../../ir/sidecar.js';
import type { Logger } from '../../lib/log.js';
import { DnsLookupTable, canonicalName } from './table.js';
import {
  DnsFormatError,
  encodeResponse,
  MAX_MESSAGE,
  parseFirstQuestion,
  parseQuery,
  RCODE_FORMERR,
  RCODE_NOERROR,
  RCODE_NOTIMP,
  RCODE_SERVFAIL,
  truncateRelayed,
  UDP_PLAIN_LIMIT,
  type DnsQuery,
} from './wire.js';

/** Istio's DefaultUpstreamTimeout. */
export const DEFAULT_UPSTREAM_TIMEOUT_MS = 5000;
/** The DNS proxy's port (Istio's IstioAgentDNSListenerPort). */
export const DNS_PROXY_PORT = 15053;
/** A TCP client idle this long is disconnected (RFC 7766 §6.2.3 suggests seconds). */
const TCP_IDLE_MS = 10_000;
/** Queries answered at once per TCP connection (more wait for a slot to free: back-pressure). */
const TCP_INFLIGHT = 16;
/** Upstream exchanges at once; a query beyond gets SERVFAIL at once (a flood of unknown names cannot open sockets without bound). */
const UPSTREAM_INFLIGHT = 512;

export interface ResolvConf {
  /** `host:port` of each `nameserver` (port 53), in file order. */
  servers: { host: string; port: number }[];
  search: string[];
}

/** Reads resolv.conf text: `nameserver` (at most 3, as glibc) and the last `search`/`domain` line. */
export function parseResolvConf(text: string): ResolvConf {
  const servers: ResolvConf['servers'] = [];
  let search: string[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    const [key, ...rest] = line.split(/\s+/);
    if (key === 'nameserver' && rest[0] && net.isIP(rest[0].split('%')[0]) !== 0 && servers.length < 3) servers.push({ host: rest[0], port: 53 });
    else if ((key === 'search' || key === 'domain') && rest.length > 0) search = rest.map((d) => d.replace(/\.$/, ''));
  }
  return { servers, search };
}

export function readResolvConf(file = '/etc/resolv.conf'): ResolvConf {
  try {
    return parseResolvConf(readFileSync(file, 'utf8'));
  } catch {
    return { servers: [], search: [] };
  }
}

export interface DnsProxyOptions {
  /** `host:port` to listen on, UDP and TCP each (e.g. `127.0.0.1:15053`, `[::1]:15053`). */
  listen: string[];
  /** The upstream resolvers and search domains (/etc/resolv.conf). */
  resolv: ResolvConf;
  /** The proxy's namespace. */
  namespace: string;
  /** `svc.cluster.local`. */
  serviceDomain?: string;
  upstreamTimeoutMs?: number;
  log: Logger;
}

export interface DnsProxyStats {
  requests: number;
  /** Answered from the table. */
  local: number;
  upstream: number;
  /** Forwarded queries no upstream answered (SERVFAIL). */
  upstreamFailures: number;
  /** Seconds spent on forwarded queries, and their count (the upstream request duration). */
  upstreamSeconds: number;
  /** Packets dropped as malformed. */
  malformed: number;
}

function splitHostPort(s: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(s);
  if (!m) throw new Error(`${s} is not HOST:PORT`);
  return { host: m[1] ?? m[2], port: Number(m[3]) };
}

export class DnsProxy {
  readonly #o: DnsProxyOptions;
  #table: DnsLookupTable | null = null;
  readonly #udp: dgram.Socket[] = [];
  readonly #tcp: net.Server[] = [];
  readonly #conns = new Set<net.Socket>();
  readonly #pending = new Set<{ cancel(): void }>();
  #closed = false;
  readonly stats: DnsProxyStats = { requests: 0, local: 0, upstream: 0, upstreamFailures: 0, upstreamSeconds: 0, malformed: 0 };
  /** The bound addresses, `host:port` (UDP and TCP share them). */
  readonly bound: string[] = [];

  constructor(o: DnsProxyOptions) {
    this.#o = o;
  }

  /** The view's name table (null: a view without DNS proxying, so everything goes upstream). */
  setTable(dns: SidecarDns | null | undefined): void {
    this.#table = new DnsLookupTable(dns?.hosts ?? [], { namespace: this.#o.namespace, serviceDomain: this.#o.serviceDomain ?? 'svc.cluster.local', search: this.#o.resolv.search });
  }

  /**
   * The proxy's metrics in Prometheus text, with the names istio-agent's DNS proxy has on 15020
   * (`istio_agent_dns_*`), plus what meshgate counts besides.
   */
  metricsText(): string {
    const s = this.stats;
    const line = (name: string, help: string, type: string, value: number) => `# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}\n`;
    return (
      line('istio_agent_dns_requests_total', 'Total number of DNS requests.', 'counter', s.requests) +
      line('istio_agent_dns_upstream_requests_total', 'Total number of DNS requests forwarded to upstream.', 'counter', s.upstream) +
      line('istio_agent_dns_upstream_failures_total', 'Total number of DNS failures.', 'counter', s.upstreamFailures) +
      `# HELP istio_agent_dns_upstream_request_duration_seconds Total time in seconds Istio takes to get DNS response from upstream.\n# TYPE istio_agent_dns_upstream_request_duration_seconds summary\nistio_agent_dns_upstream_request_duration_seconds_sum ${s.upstreamSeconds}\nistio_agent_dns_upstream_request_duration_seconds_count ${s.upstream}\n` +
      line('meshgate_dns_local_answers_total', 'DNS queries answered from the name table.', 'counter', s.local) +
      line('meshgate_dns_malformed_total', 'DNS packets dropped as malformed.', 'counter', s.malformed)
    );
  }

  get ready(): boolean {
    return this.#table !== null;
  }

  async start(): Promise<void> {
    try {
      for (const addr of this.#o.listen) {
        const { host, port } = splitHostPort(addr);
        // UDP and TCP on one port; with port 0 (tests) the TCP side of the UDP port may be taken: retry.
        for (let attempt = 0; ; attempt++) {
          try {
            await this.#bind(host, port);
            break;
          } catch (e) {
            if (port !== 0 || attempt >= 20 || (e as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw e;
          }
        }
      }
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  async #bind(host: string, port: number): Promise<void> {
    const udp = dgram.createSocket({ type: net.isIPv6(host) ? 'udp6' : 'udp4' });
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject);
      udp.bind({ address: host, port, exclusive: true }, () => {
        udp.off('error', reject);
        resolve();
      });
    });
    const boundPort = udp.address().port;
    const tcp = net.createServer((s) => this.#onTcp(s));
    try {
      await new Promise<void>((resolve, reject) => {
        tcp.once('error', reject);
        tcp.listen({ host, port: boundPort, exclusive: true }, () => {
          tcp.off('error', reject);
          resolve();
        });
      });
    } catch (e) {
      udp.close();
      throw e;
    }
    udp.on('error', (e) => this.#o.log.warn('DNS proxy UDP socket error', { error: e.message }));
    udp.on('message', (msg, rinfo) => this.#onUdp(udp, msg, rinfo));
    this.#udp.push(udp);
    this.#tcp.push(tcp);
    this.bound.push(net.isIPv6(host) ? `[${host}]:${boundPort}` : `${host}:${boundPort}`);
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const p of this.#pending) p.cancel();
    for (const u of this.#udp) u.close();
    for (const c of this.#conns) c.destroy();
    await Promise.all(this.#tcp.map((t) => new Promise<void>((resolve) => t.close(() => resolve()))));
  }

  #onUdp(sock: dgram.Socket, msg: Buffer, rinfo: dgram.RemoteInfo): void {
    void this.#answer(msg, 'udp').then((out) => {
      if (out !== null && !this.#closed) sock.send(out, rinfo.port, rinfo.address);
    });
  }

  #onTcp(sock: net.Socket): void {
    this.#conns.add(sock);
    sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
    sock.on('close', () => this.#conns.delete(sock));
    sock.on('error', () => undefined);
    let buf: Buffer = Buffer.alloc(0);
    let inflight = 0;
    const pump = (): void => {
      while (buf.length >= 2 && inflight < TCP_INFLIGHT) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        inflight++;
        void this.#answer(msg, 'tcp').then((out) => {
          inflight--;
          if (out === null) return sock.destroy();
          if (sock.destroyed) return;
          const head = Buffer.alloc(2);
          head.writeUInt16BE(out.length);
          sock.write(Buffer.concat([head, out]));
          pump();
        });
      }
      if (inflight >= TCP_INFLIGHT) sock.pause();
      else sock.resume();
    };
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      // A length prefix bounds a message to 64 KiB: more than a message and its prefix unread is a client not reading our answers.
      if (buf.length > 2 * (MAX_MESSAGE + 2)) return sock.destroy();
      pump();
    });
  }

  /** The reply bytes for one query, or null to drop it. Never throws. */
  async #answer(msg: Buffer, proto: 'udp' | 'tcp'): Promise<Buffer | null> {
    this.stats.requests++;
    let q: DnsQuery;
    try {
      q = parseQuery(msg);
    } catch (e) {
      if (!(e instanceof DnsFormatError)) this.#o.log.warn('DNS proxy: unexpected parse failure', { error: (e as Error).message });
      this.stats.malformed++;
      return null;
    }
    const h = q.header;
    if (h.response) {
      this.stats.malformed++;
      return null;
    }
    const limit = proto === 'tcp' ? MAX_MESSAGE : (q.ednsUdpSize ?? UDP_PLAIN_LIMIT);
    const reply = (rcode: number, answers = [] as Parameters<typeof encodeResponse>[0]['answers'], authoritative = false): Buffer =>
      encodeResponse({ id: h.id, opcode: h.opcode, authoritative, recursionDesired: h.recursionDesired, recursionAvailable: false, checkingDisabled: h.checkingDisabled, rcode, question: q.questions[0] ?? null, answers }, limit);
    try {
      if (h.opcode !== 0) return reply(RCODE_NOTIMP);
      if (q.questions.length === 0) return reply(RCODE_SERVFAIL);
      if (q.questions.length > 1) return reply(RCODE_FORMERR);
      const table = this.#table;
      if (table === null) return reply(RCODE_SERVFAIL);
      const question = q.questions[0];
      const found = question.class === 1 ? table.lookup(question.type, question.name) : ({ found: false } as const);
      if (found.found) {
        this.stats.local++;
        return reply(RCODE_NOERROR, found.answers, true);
      }
      this.stats.upstream++;
      const started = performance.now();
      const relayed = await this.#upstream(msg, proto, q);
      this.stats.upstreamSeconds += (performance.now() - started) / 1000;
      if (relayed === null) {
        this.stats.upstreamFailures++;
        return reply(RCODE_SERVFAIL);
      }
      return proto === 'udp' ? truncateRelayed(relayed, limit) : relayed;
    } catch (e) {
      // An answer that cannot be encoded (a name in the table no longer valid): SERVFAIL, never a crash.
      this.#o.log.warn('DNS proxy: cannot answer', { error: (e as Error).message });
      try {
        return encodeResponse({ id: h.id, opcode: h.opcode, authoritative: false, recursionDesired: h.recursionDesired, recursionAvailable: false, checkingDisabled: h.checkingDisabled, rcode: RCODE_SERVFAIL, question: null, answers: [] });
      } catch {
        return null;
      }
    }
  }

  /** The first valid answer of the resolv.conf servers, in turn; null when none answers. */
  async #upstream(msg: Buffer, proto: 'udp' | 'tcp', q: DnsQuery): Promise<Buffer | null> {
    if (this.#pending.size >= UPSTREAM_INFLIGHT) return null;
    const timeout = this.#o.upstreamTimeoutMs ?? DEFAULT_UPSTREAM_TIMEOUT_MS;
    for (const server of this.#o.resolv.servers) {
      if (this.#closed) return null;
      const answer = await (proto === 'udp' ? this.#udpExchange(msg, server, timeout) : this.#tcpExchange(msg, server, timeout)).catch((e: Error) => {
        this.#o.log.debug('DNS upstream failure', { server: server.host, error: e.message });
        return null;
      });
      if (answer !== null && matches(answer, q)) return answer;
    }
    return null;
  }

  #udpExchange(msg: Buffer, server: { host: string; port: number }, timeoutMs: number): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const sock = dgram.createSocket({ type: net.isIPv6(server.host.split('%')[0]) ? 'udp6' : 'udp4' });
      const id = msg.readUInt16BE(0);
      let settled = false;
      const done = (v: Buffer | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pending.delete(pending);
        sock.close();
        resolve(v);
      };
      const pending = { cancel: () => done(null) };
      this.#pending.add(pending);
      const timer = setTimeout(() => done(null), timeoutMs);
      sock.on('error', () => done(null));
      sock.on('message', (m, rinfo) => {
        // Only the server's answer to this query (a stray or spoofed datagram is ignored).
        if (rinfo.port !== server.port || m.length < 12 || m.readUInt16BE(0) !== id) return;
        done(m);
      });
      sock.send(msg, server.port, server.host, (e) => e && done(null));
    });
  }

  #tcpExchange(msg: Buffer, server: { host: string; port: number }, timeoutMs: number): Promise<Buffer | null> {
    return new Promise((resolve) => {
      const sock = net.connect({ host: server.host, port: server.port });
      let buf: Buffer = Buffer.alloc(0);
      let settled = false;
      const done = (v: Buffer | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#pending.delete(pending);
        sock.destroy();
        resolve(v);
      };
      const pending = { cancel: () => done(null) };
      this.#pending.add(pending);
      const timer = setTimeout(() => done(null), timeoutMs);
      sock.on('error', () => done(null));
      sock.on('close', () => done(null));
      sock.on('connect', () => {
        const head = Buffer.alloc(2);
        head.writeUInt16BE(msg.length);
        sock.write(Buffer.concat([head, msg]));
      });
      sock.on('data', (chunk: Buffer) => {
        buf = Buffer.concat([buf, chunk]);
        if (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) done(buf.subarray(2, 2 + buf.readUInt16BE(0)));
      });
    });
  }
}

/** Is `answer` a well-formed response to `q` (same id, a response, the same question)? */
function matches(answer: Buffer, q: DnsQuery): boolean {
  try {
    const { header, question } = parseFirstQuestion(answer);
    if (!header.response || header.id !== q.header.id) return false;
    const asked = q.questions[0];
    return question !== null && question.type === asked.type && question.class === asked.class && canonicalName(question.name) === canonicalName(asked.name);
  } catch {
    return false;
  }
}
