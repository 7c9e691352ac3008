/**
 * The sidecar's DNS proxy over real UDP and TCP sockets on 127.0.0.1, with a fake upstream resolver
 * (UDP and TCP, on its own port) standing for the pod's /etc/resolv.conf server:
 *   - names of the view's table are answered here (A, AAAA, Kubernetes short names relative to the
 *     proxy's namespace, the first-search-domain CNAME shortcut, NOERROR/no data for the other
 *     family), TTL 30, authoritative;
 *   - everything else is relayed from upstream byte for byte (NXDOMAIN included), over the client's
 *     protocol; no upstream answer → SERVFAIL; no view yet → SERVFAIL;
 *   - UDP answers over 512 bytes (no EDNS) are cut with TC, and the same query over TCP is whole;
 *   - malformed packets are dropped and the server keeps answering; TCP pipelining works and a
 *     malformed TCP message closes only that connection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import dns from 'node:dns/promises';
import { DnsProxy, parseResolvConf } from '../../src/mesh/dns/server.js';
import type { SidecarDns } from '../../src/ir/sidecar.js';
import { Logger } from '../../src/lib/log.js';
import { addressBytes, encodeResponse, parseFirstQuestion, parseQuery, RCODE_NOERROR, RCODE_NXDOMAIN, RCODE_SERVFAIL, TYPE_A, TYPE_AAAA, TYPE_CNAME, type DnsAnswer } from '../../src/mesh/dns/wire.js';
import { buildQuery, readAnswers, tcpQuery, udpQuery } from '../support/dns-client.js';

const log = new Logger('error', { component: 'dns-test' });
const MX = 15;

const TABLE: SidecarDns = {
  capture: true,
  autoAllocate: true,
  hosts: [
    { host: 'reviews.default.svc.cluster.local', addresses: ['10.96.0.20'], kube: { name: 'reviews', namespace: 'default' } },
    { host: 'ratings.other.svc.cluster.local', addresses: ['10.96.0.30', 'fd00::30'], kube: { name: 'ratings', namespace: 'other' } },
    { host: 'api.example.com', addresses: ['240.240.0.1'], kube: null },
    { host: '*.wild.example.org', addresses: ['192.0.2.7'], kube: null },
    { host: 'db.default.svc.cluster.local', addresses: Array.from({ length: 60 }, (_, i) => `10.1.0.${i + 1}`), kube: { name: 'db', namespace: 'default' } },
  ],
};

/** The fake upstream: www.example.org A, big.example.org (700 bytes of A records, whatever the client's size), NXDOMAIN else. */
async function startUpstream(): Promise<{ port: number; seen: string[]; udpAnswers: Buffer[]; close(): Promise<void> }> {
  const seen: string[] = [];
  const udpAnswers: Buffer[] = [];
  const answer = (msg: Buffer, proto: string): Buffer => {
    const q = parseQuery(msg);
    const question = q.questions[0];
    seen.push(`${proto} ${question.name} ${question.type}`);
    let answers: DnsAnswer[] = [];
    let rcode = RCODE_NXDOMAIN;
    if (question.name.toLowerCase() === 'www.example.org' && question.type === TYPE_A) {
      answers = [{ type: TYPE_A, name: question.name, ttl: 300, address: addressBytes('93.184.216.34')! }];
      rcode = RCODE_NOERROR;
    } else if (question.name === 'big.example.org') {
      answers = Array.from({ length: 45 }, (_, i) => ({ type: TYPE_A, name: question.name, ttl: 60, address: Uint8Array.of(10, 9, 0, i) }));
      rcode = RCODE_NOERROR;
    } else if (question.name === 'reviews.default.svc.cluster.local' && question.type === MX) {
      rcode = RCODE_NOERROR;
    }
    return encodeResponse({ id: q.header.id, opcode: 0, authoritative: false, recursionDesired: q.header.recursionDesired, recursionAvailable: true, checkingDisabled: false, rcode, question, answers });
  };
  // UDP and TCP on one port: retry when the TCP side of a random UDP port is taken.
  let udp!: dgram.Socket;
  let tcp!: net.Server;
  let port = 0;
  for (let attempt = 0; port === 0; attempt++) {
    udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const p = udp.address().port;
    tcp = net.createServer((s) => onTcp(s));
    const ok = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(p, '127.0.0.1', () => r(true));
    });
    if (ok) port = p;
    else {
      udp.close();
      if (attempt > 20) throw new Error('no free UDP+TCP port');
    }
  }
  udp.on('message', (m, rinfo) => {
    const out = answer(m, 'udp');
    udpAnswers.push(out);
    udp.send(out, rinfo.port, rinfo.address);
  });
  function onTcp(s: net.Socket): void {
    let buf = Buffer.alloc(0);
    s.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const out = answer(buf.subarray(2, 2 + buf.readUInt16BE(0)), 'tcp');
        buf = buf.subarray(2 + buf.readUInt16BE(0));
        s.write(Buffer.concat([Buffer.from([out.length >> 8, out.length & 0xff]), out]));
      }
    });
    s.on('error', () => undefined);
  }
  return { port, seen, udpAnswers, close: () => new Promise<void>((r) => { udp.close(); tcp.close(() => r()); }) };
}

async function withProxy(fn: (p: DnsProxy, up: Awaited<ReturnType<typeof startUpstream>>) => Promise<void>, table: SidecarDns | null = TABLE): Promise<void> {
  const up = await startUpstream();
  const resolv = parseResolvConf(`search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 127.0.0.1\noptions ndots:5\n`);
  resolv.servers[0].port = up.port;
  const proxy = new DnsProxy({ listen: ['127.0.0.1:0'], resolv, namespace: 'default', upstreamTimeoutMs: 1000, log });
  try {
    await proxy.start();
    if (table !== null) proxy.setTable(table);
    await fn(proxy, up);
  } finally {
    await proxy.close();
    await up.close();
  }
}

function portOf(p: DnsProxy): number {
  return Number(p.bound[0].split(':').pop());
}

async function ask(p: DnsProxy, name: string, type: number, opts: { edns?: number } = {}): Promise<Buffer> {
  const out = await udpQuery(portOf(p), buildQuery(0x4242, name, type, opts));
  assert.ok(out !== null, `no UDP answer for ${name}`);
  return out;
}

test('dns proxy: table names are answered over UDP, authoritative, TTL 30, with Kubernetes short names of the proxy namespace', async () => {
  await withProxy(async (p, up) => {
    for (const name of ['reviews.default.svc.cluster.local', 'reviews.default.svc', 'reviews.default', 'reviews', 'REVIEWS.Default.svc.cluster.local']) {
      const out = await ask(p, name, TYPE_A);
      const h = parseFirstQuestion(out);
      assert.equal(h.header.id, 0x4242);
      assert.equal(h.header.rcode, RCODE_NOERROR, name);
      assert.equal(h.header.authoritative, true, name);
      assert.equal(h.question!.name, name, 'the question comes back as asked (case kept)');
      // The answer record is named in lowercase, as Istio's proxy answers (pkg/dns/client/dns.go).
      assert.deepEqual(readAnswers(out), [{ name: name.toLowerCase(), type: TYPE_A, ttl: 30, data: '10.96.0.20' }], name);
    }
    // ratings lives in namespace other: `ratings.other` is known, bare `ratings` is not (goes upstream).
    assert.deepEqual(readAnswers(await ask(p, 'ratings.other', TYPE_AAAA)).map((a) => a.data), ['fd00:0:0:0:0:0:0:30']);
    const bare = await ask(p, 'ratings', TYPE_A);
    assert.equal(parseFirstQuestion(bare).header.rcode, RCODE_NXDOMAIN);
    assert.deepEqual(up.seen, ['udp ratings 1']);
  });
});

test('dns proxy: a known name without an address of the asked family is NOERROR with no answer, never NXDOMAIN', async () => {
  await withProxy(async (p, up) => {
    const out = await ask(p, 'api.example.com', TYPE_AAAA);
    const h = parseFirstQuestion(out).header;
    assert.equal(h.rcode, RCODE_NOERROR);
    assert.equal(h.ancount, 0);
    assert.equal(h.authoritative, true);
    assert.deepEqual(up.seen, [], 'nothing asked upstream');
  });
});

test('dns proxy: a name followed by the first search domain gets a CNAME to the name and its addresses', async () => {
  await withProxy(async (p) => {
    const out = await ask(p, 'api.example.com.default.svc.cluster.local', TYPE_A);
    assert.deepEqual(readAnswers(out), [
      { name: 'api.example.com.default.svc.cluster.local', type: TYPE_CNAME, ttl: 30, data: 'api.example.com' },
      { name: 'api.example.com', type: TYPE_A, ttl: 30, data: '240.240.0.1' },
    ]);
  });
});

test('dns proxy: a wildcard host answers the names under it under the name asked; with the first search domain, a CNAME to the wildcard and its addresses; its own suffix goes upstream', async () => {
  await withProxy(async (p, up) => {
    assert.deepEqual(readAnswers(await ask(p, 'a.b.Wild.example.org', TYPE_A)), [{ name: 'a.b.wild.example.org', type: TYPE_A, ttl: 30, data: '192.0.2.7' }], 'the name asked, lowercased (Istio)');
    const aaaa = parseFirstQuestion(await ask(p, 'a.wild.example.org', TYPE_AAAA)).header;
    assert.deepEqual([aaaa.rcode, aaaa.ancount, aaaa.authoritative], [RCODE_NOERROR, 0, true]);
    assert.deepEqual(readAnswers(await ask(p, 'a.wild.example.org.default.svc.cluster.local', TYPE_A)), [
      { name: 'a.wild.example.org.default.svc.cluster.local', type: TYPE_CNAME, ttl: 30, data: '*.wild.example.org' },
      { name: '*.wild.example.org', type: TYPE_A, ttl: 30, data: '192.0.2.7' },
    ]);
    // c-ares (Node's dns.Resolver) follows the chain to the addresses.
    const resolver = new dns.Resolver({ timeout: 3000, tries: 1 });
    resolver.setServers([`127.0.0.1:${portOf(p)}`]);
    assert.deepEqual(await resolver.resolve4('a.wild.example.org.default.svc.cluster.local'), ['192.0.2.7']);
    assert.deepEqual(await resolver.resolve4('a.b.wild.example.org'), ['192.0.2.7']);
    // Over TCP alike.
    const tcp = await tcpQuery(portOf(p), [buildQuery(7, 'x.wild.example.org', TYPE_A)]);
    assert.equal(tcp.answers.length, 1);
    assert.deepEqual(readAnswers(tcp.answers[0]).map((a) => `${a.name} ${a.data}`), ['x.wild.example.org 192.0.2.7']);
    assert.deepEqual(up.seen, []);
    assert.equal(parseFirstQuestion(await ask(p, 'wild.example.org', TYPE_A)).header.rcode, RCODE_NXDOMAIN);
    assert.deepEqual(up.seen, ['udp wild.example.org 1']);
  });
});

test('dns proxy: other names and other types are relayed from upstream byte for byte, NXDOMAIN included', async () => {
  await withProxy(async (p, up) => {
    const www = await ask(p, 'www.example.org', TYPE_A);
    assert.deepEqual(www, up.udpAnswers[0], 'relayed unchanged');
    assert.deepEqual(readAnswers(www), [{ name: 'www.example.org', type: TYPE_A, ttl: 300, data: '93.184.216.34' }]);
    const nx = await ask(p, 'nothing.invalid', TYPE_A);
    assert.equal(parseFirstQuestion(nx).header.rcode, RCODE_NXDOMAIN);
    // MX for a table name: not A/AAAA, so upstream answers it (Istio's lookupHost).
    const mx = await ask(p, 'reviews.default.svc.cluster.local', MX);
    assert.equal(parseFirstQuestion(mx).header.authoritative, false);
    assert.deepEqual(up.seen, ['udp www.example.org 1', 'udp nothing.invalid 1', 'udp reviews.default.svc.cluster.local 15']);
    // istio-agent's metric names.
    const m = p.metricsText();
    assert.match(m, /^istio_agent_dns_requests_total 3$/m);
    assert.match(m, /^istio_agent_dns_upstream_requests_total 3$/m);
    assert.match(m, /^istio_agent_dns_upstream_failures_total 0$/m);
    assert.match(m, /^istio_agent_dns_upstream_request_duration_seconds_count 3$/m);
    // Over TCP the upstream is asked over TCP.
    const t = await tcpQuery(portOf(p), [buildQuery(7, 'www.example.org', TYPE_A)]);
    assert.equal(t.answers.length, 1);
    assert.deepEqual(readAnswers(t.answers[0]).map((a) => a.data), ['93.184.216.34']);
    assert.equal(up.seen.at(-1), 'tcp www.example.org 1');
  });
});

test('dns proxy: over UDP an answer is cut to 512 bytes with TC unless EDNS allows more; TCP gets it whole', async () => {
  await withProxy(async (p) => {
    const udp = await ask(p, 'db', TYPE_A);
    const h = parseFirstQuestion(udp).header;
    assert.ok(udp.length <= 512, `${udp.length} bytes`);
    assert.equal(h.truncated, true);
    assert.ok(h.ancount < 60);
    const edns = await ask(p, 'db', TYPE_A, { edns: 4096 });
    assert.equal(parseFirstQuestion(edns).header.truncated, false);
    assert.equal(readAnswers(edns).length, 60);
    const tcp = await tcpQuery(portOf(p), [buildQuery(1, 'db', TYPE_A)]);
    assert.equal(readAnswers(tcp.answers[0]).length, 60);
    // Endpoints rotate between answers (DNS load balancing over a headless Service).
    const again = await tcpQuery(portOf(p), [buildQuery(2, 'db', TYPE_A)]);
    assert.notDeepEqual(readAnswers(again.answers[0])[0], readAnswers(tcp.answers[0])[0]);
    // A relayed answer longer than the client's UDP size: the question with TC, no records.
    const big = await ask(p, 'big.example.org', TYPE_A);
    assert.equal(parseFirstQuestion(big).header.truncated, true);
    assert.equal(parseFirstQuestion(big).header.ancount, 0);
    const bigTcp = await tcpQuery(portOf(p), [buildQuery(3, 'big.example.org', TYPE_A)]);
    assert.equal(readAnswers(bigTcp.answers[0]).length, 45);
  });
});

test('dns proxy: malformed packets are dropped and the proxy keeps answering; TCP pipelines and closes on a malformed message', async () => {
  await withProxy(async (p) => {
    const port = portOf(p);
    const loop = Buffer.from([0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1]);
    const junk = [Buffer.from([1, 2, 3]), loop, Buffer.alloc(600, 0xff), Buffer.from([0, 1, 0x81, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0x61, 0, 0, 1, 0, 1])];
    for (const j of junk) assert.equal(await udpQuery(port, j, 300), null, `no answer to ${j.subarray(0, 8).toString('hex')}`);
    assert.equal(p.stats.malformed, junk.length);
    assert.deepEqual(readAnswers(await ask(p, 'reviews', TYPE_A)).map((a) => a.data), ['10.96.0.20']);
    const piped = await tcpQuery(port, [buildQuery(11, 'reviews', TYPE_A), buildQuery(12, 'api.example.com', TYPE_A)]);
    assert.deepEqual(piped.answers.map((a) => parseFirstQuestion(a).header.id).sort(), [11, 12]);
    const bad = await tcpQuery(port, [loop, buildQuery(13, 'reviews', TYPE_A)]);
    assert.equal(bad.closed, true);
  });
});

test('dns proxy: SERVFAIL before the first view, and when no upstream answers', async () => {
  await withProxy(async (p) => {
    assert.equal(parseFirstQuestion(await ask(p, 'reviews', TYPE_A)).header.rcode, RCODE_SERVFAIL);
    p.setTable(null); // a view without DNS: everything upstream
    assert.equal(parseFirstQuestion(await ask(p, 'www.example.org', TYPE_A)).header.rcode, RCODE_NOERROR);
  }, null);
  const closed = net.createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const deadPort = (closed.address() as net.AddressInfo).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const proxy = new DnsProxy({ listen: ['127.0.0.1:0'], resolv: { servers: [{ host: '127.0.0.1', port: deadPort }], search: [] }, namespace: 'default', upstreamTimeoutMs: 300, log });
  await proxy.start();
  try {
    proxy.setTable(TABLE);
    const t0 = Date.now();
    const out = await udpQuery(portOf(proxy), buildQuery(5, 'www.example.org', TYPE_A));
    assert.equal(parseFirstQuestion(out!).header.rcode, RCODE_SERVFAIL);
    assert.match(proxy.metricsText(), /^istio_agent_dns_upstream_failures_total 1$/m);
    assert.ok(Date.now() - t0 < 2500, 'bounded by the upstream timeout');
    const tcp = await tcpQuery(portOf(proxy), [buildQuery(6, 'www.example.org', TYPE_A)]);
    assert.equal(parseFirstQuestion(tcp.answers[0]).header.rcode, RCODE_SERVFAIL);
  } finally {
    await proxy.close();
  }
});

test('parseResolvConf: nameservers (at most 3), the last search line, comments', () => {
  const r = parseResolvConf('# comment\nsearch a.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver fe80::1%eth0\nnameserver bogus\nnameserver 1.1.1.1\nnameserver 8.8.8.8\nsearch ns.svc.cluster.local. cluster.local ; trailing\n');
  assert.deepEqual(r.servers.map((s) => s.host), ['10.96.0.10', 'fe80::1%eth0', '1.1.1.1']);
  assert.deepEqual(r.search, ['ns.svc.cluster.local', 'cluster.local']);
});

test('dns proxy on [::1] (an IPv6 pod): AAAA over UDP and TCP', async (t) => {
  const probe = dgram.createSocket('udp6');
  const v6 = await new Promise<boolean>((r) => {
    probe.once('error', () => r(false));
    probe.bind(0, '::1', () => r(true));
  });
  probe.close();
  if (!v6) return t.skip('no IPv6 loopback here (::1): enable IPv6 on lo to run this test');
  const proxy = new DnsProxy({ listen: ['[::1]:0'], resolv: { servers: [], search: [] }, namespace: 'default', log });
  try {
    await proxy.start();
    proxy.setTable({ capture: true, autoAllocate: true, hosts: [{ host: 'api.example.com', addresses: ['2001:2::f0f0:1'], kube: null }] });
    assert.match(proxy.bound[0], /^\[::1\]:\d+$/);
    const port = Number(proxy.bound[0].split(':').pop());
    const udp = await udpQuery(port, buildQuery(1, 'api.example.com', TYPE_AAAA), 3000, '::1');
    assert.deepEqual(readAnswers(udp!).map((a) => a.data), ['2001:2:0:0:0:0:f0f0:1']);
    const tcp = await tcpQuery(port, [buildQuery(2, 'api.example.com', TYPE_AAAA)], 3000, '::1');
    assert.deepEqual(readAnswers(tcp.answers[0]).map((a) => a.data), ['2001:2:0:0:0:0:f0f0:1']);
  } finally {
    await proxy.close();
  }
});
