/**
 * Decision tables of the sidecar's inbound side without sockets: what the first bytes are
 * (inbound-sniff.ts), the ALPN answered to an offer, and AuthorizationPolicy on TCP connections
 * (inbound-authz.ts: HTTP-only rules dropped from ALLOW, HTTP-only conditions removed from DENY).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import tls from 'node:tls';
import net from 'node:net';
import type { AuthorizationPolicy, AuthzCondition, AuthzRule } from '../../ir/types.js';
import { classify, selectAlpn } from './inbound-sniff.js';
import { authorizeTcp, compileTcpAuthz, tcpPolicies } from './inbound-authz.js';

/** A real ClientHello, as Node's TLS client writes it with `alpn` offered. */
async function clientHello(alpn: string[], servername = 'outbound_.80_._.a.ns.svc.cluster.local'): Promise<Buffer> {
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) => {
    server.once('connection', (s) => {
      let buf = Buffer.alloc(0);
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        if (buf.length >= 5 && buf.length >= 5 + buf.readUInt16BE(3)) {
          resolve(buf);
          s.destroy();
        }
      });
    });
  });
  const c = tls.connect({ host: '127.0.0.1', port, servername, ALPNProtocols: alpn, rejectUnauthorized: false });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

test('classify: TLS with its ALPN offer and SNI, h2 preface, HTTP/1 request lines, opaque bytes, need-more', async () => {
  const hello = await clientHello(['istio-http/1.1', 'istio', 'http/1.1']);
  const t = classify(hello);
  assert.deepEqual(t, { kind: 'tls', sni: 'outbound_.80_._.a.ns.svc.cluster.local', alpn: ['istio-http/1.1', 'istio', 'http/1.1'] });
  assert.deepEqual(classify(hello.subarray(0, 20)), { kind: 'need-more' });
  assert.deepEqual(classify(hello.subarray(0, 1)), { kind: 'need-more' });
  assert.deepEqual(classify(Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), { kind: 'h2' });
  assert.deepEqual(classify(Buffer.from('PRI * HTTP/2')), { kind: 'need-more' });
  assert.deepEqual(classify(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'http1' });
  assert.deepEqual(classify(Buffer.from('PROPFIND /x HTTP/1.1\r\n')), { kind: 'http1' });
  assert.deepEqual(classify(Buffer.from('POS')), { kind: 'need-more' });
  assert.deepEqual(classify(Buffer.from('hello world')), { kind: 'opaque' }, 'lower case is no method');
  assert.deepEqual(classify(Buffer.from([0x16, 0x01, 0x00])), { kind: 'opaque' });
  assert.deepEqual(classify(Buffer.from('\x00\x00\x00\x0a')), { kind: 'opaque' });
  assert.deepEqual(classify(Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWXYZ')), { kind: 'opaque' }, 'a run of letters longer than any method');
  assert.deepEqual(classify(Buffer.from(' GET')), { kind: 'opaque' });
});

test('selectAlpn: h2, then http/1.1, then istio; never istio-peer-exchange when anything else is offered', () => {
  assert.equal(selectAlpn(['istio-h2', 'istio', 'h2']), 'h2');
  assert.equal(selectAlpn(['istio-http/1.1', 'istio', 'http/1.1']), 'http/1.1');
  assert.equal(selectAlpn(['istio-http/1.0', 'istio', 'http/1.0']), 'http/1.0');
  assert.equal(selectAlpn(['istio']), 'istio');
  assert.equal(selectAlpn(['istio-peer-exchange', 'istio']), 'istio');
  assert.equal(selectAlpn(['istio-peer-exchange', 'foo']), 'foo');
  assert.equal(selectAlpn(['istio-peer-exchange']), 'istio-peer-exchange');
});

const cond = (key: string, ...values: string[]): AuthzCondition => ({ key, values, notValues: [] });
const rule = (r: Partial<AuthzRule>): AuthzRule => ({ from: [], to: [], when: [], ...r });
const policy = (name: string, action: AuthorizationPolicy['action'], rules: AuthzRule[]): AuthorizationPolicy => ({
  name: `authorizationpolicy/ns1/${name}`,
  source: { kind: 'AuthorizationPolicy', namespace: 'ns1', name, file: null, line: null },
  action,
  provider: action === 'CUSTOM' ? 'ext' : null,
  rules,
  dryRun: false,
});
const facts = (over: Partial<Parameters<typeof authorizeTcp>[1]> = {}) => ({ peerIp: '10.0.0.5', localIp: '10.0.0.9', port: 9000, sni: '', peerPrincipal: 'cluster.local/ns/ns1/sa/client', ...over });

test('TCP authorization: ALLOW rules naming HTTP attributes never match; the others do by principal, namespace, IP and port', () => {
  const z = compileTcpAuthz([
    policy('by-principal', 'ALLOW', [rule({ from: [[cond('source.principal', 'cluster.local/ns/ns1/sa/client')]], to: [[cond('destination.port', '9000')]] })]),
    policy('http-only', 'ALLOW', [rule({ to: [[cond('request.method', 'GET'), cond('destination.port', '9001')]] })]),
    policy('by-namespace', 'ALLOW', [rule({ from: [[cond('source.namespace', 'ns3')]] })]),
    policy('by-ip', 'ALLOW', [rule({ from: [[cond('source.ip', '10.9.0.0/16')]] })]),
  ])!;
  assert.equal(authorizeTcp(z, facts()).allowed, true);
  assert.equal(authorizeTcp(z, facts({ peerPrincipal: 'cluster.local/ns/ns1/sa/other' })).allowed, false, 'wrong principal');
  assert.equal(authorizeTcp(z, facts({ peerPrincipal: null })).allowed, false, 'plaintext has no principal');
  assert.equal(authorizeTcp(z, facts({ port: 9001 })).allowed, false, 'a rule with request.method never allows TCP');
  assert.equal(authorizeTcp(z, facts({ port: 9001, peerPrincipal: 'cluster.local/ns/ns3/sa/x' })).allowed, true, 'namespace from the principal');
  assert.equal(authorizeTcp(z, facts({ port: 9001, peerPrincipal: null, peerIp: '10.9.1.1' })).allowed, true, 'ipBlocks');
  // A policy made only of HTTP rules allows nothing over TCP (it still exists, so ALLOW semantics apply).
  const onlyHttp = compileTcpAuthz([policy('paths', 'ALLOW', [rule({ to: [[cond('request.path', '/x')]] })])])!;
  assert.equal(authorizeTcp(onlyHttp, facts()).allowed, false);
});

test('TCP authorization: DENY rules lose their HTTP-only conditions and still deny; CUSTOM, AUDIT and dry-run do not apply', () => {
  const deny = policy('deny-get-from-ns2', 'DENY', [rule({ from: [[cond('source.namespace', 'ns2')]], to: [[cond('request.method', 'GET')]] })]);
  assert.deepEqual(tcpPolicies([deny])[0].rules, [rule({ from: [[cond('source.namespace', 'ns2')]], to: [[]] })]);
  const z = compileTcpAuthz([deny])!;
  assert.equal(authorizeTcp(z, facts({ peerPrincipal: 'cluster.local/ns/ns2/sa/x' })).allowed, false, 'denied whatever the method would have been');
  assert.equal(authorizeTcp(z, facts()).allowed, true);
  assert.equal(compileTcpAuthz([policy('c', 'CUSTOM', [rule({})]), policy('a', 'AUDIT', [rule({})]), { ...policy('d', 'DENY', [rule({})]), dryRun: true }]), null);
});
