/**
 * TLS to upstreams (IR `Cluster.tls`, Istio DestinationRule `trafficPolicy.tls`) end to end, against
 * a real node:https echo backend whose certificate is issued by a test CA: SIMPLE with the right CA,
 * the wrong CA, a subjectAltNames mismatch, insecureSkipVerify, a CA file read by the runtime, MUTUAL
 * against a backend that requires client certificates, the SNI sent, and two clusters with different
 * TLS to one address kept on separate pools. Failures are 503 `UF` with the TLS reason in the body
 * and in the access log's `response_code_details`.
 */

import assert from 'node:assert/strict';
import http2 from 'node:http2';
import https from 'node:https';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import type { UpstreamTls } from '../../src/ir/types.js';
import { RequestRecord, responseDetails } from '../../src/observability/record.js';
import type { RequestObserver } from '../../src/observability/observer.js';
import { cluster, forward, httpListener, match, route, snapshot, vhost } from '../support/ir-builders.js';
import { makePki, type Pki } from '../support/mtls-certs.js';
import { request } from '../support/http-client.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';

/** An HTTPS echo: answers JSON with the SNI it saw and the client certificate's SAN, if any. */
async function startHttpsEcho(pki: Pki, requireClientCert: boolean): Promise<{ server: https.Server; port: number }> {
  const server = https.createServer(
    { cert: pki.server.cert, key: pki.server.key, ca: pki.caA.cert, requestCert: requireClientCert, rejectUnauthorized: requireClientCert },
    (req, res) => {
      const sock = req.socket as TLSSocket;
      const peer = sock.getPeerCertificate();
      const body = JSON.stringify({ sni: sock.servername ?? null, client: peer && 'subjectaltname' in peer ? (peer.subjectaltname ?? null) : null, path: req.url });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

describe('upstream TLS end to end', { timeout: 60_000 }, () => {
  let pki: Pki;
  let simple: { server: https.Server; port: number };
  let mutual: { server: https.Server; port: number };
  let gw: RuntimeHarness;
  let port: number;
  const details: string[] = [];

  before(async () => {
    pki = makePki(['api.example.com', 'other.example.com']);
    simple = await startHttpsEcho(pki, false);
    mutual = await startHttpsEcho(pki, true);
    const caFile = join(pki.dir, 'ca-a.crt');
    writeFileSync(join(pki.dir, 'unused'), '');
    const inline = (pem: string) => ({ kind: 'inline' as const, pem, secret: 'default/test' });
    const tls = (extra: Partial<UpstreamTls>): UpstreamTls => ({ mode: 'SIMPLE', caCertificates: inline(pki.caA.cert), clientCertificate: null, sni: 'api.example.com', subjectAltNames: [], insecureSkipVerify: false, ...extra });
    const clientA = { certChain: inline(pki.clientA.cert), privateKey: inline(pki.clientA.key) };
    const p = (path: string) => [match({ path: { kind: 'segment-prefix', value: path, ignoreCase: false } })];
    const s = [{ port: simple.port }];
    const m = [{ port: mutual.port }];
    // A minimal observer: keeps each finished request's `response_code_details`.
    const observer: RequestObserver = {
      begin: (listener, d) => new RequestRecord(listener, d, { finish: (rec) => details.push(`${rec.status} ${responseDetails(rec)}`) }),
      upstreamTraceHeaders: () => null,
    };
    gw = await startRuntime(
      snapshot(
        [
          httpListener(0, [
            vhost('v', ['*'], [
              route('right-ca', forward(['right-ca']), p('/right-ca')),
              route('wrong-ca', forward(['wrong-ca']), p('/wrong-ca')),
              route('san-ok', forward(['san-ok']), p('/san-ok')),
              route('san-mismatch', forward(['san-mismatch']), p('/san-mismatch')),
              route('insecure', forward(['insecure']), p('/insecure')),
              route('ca-file', forward(['ca-file']), p('/ca-file')),
              route('ca-file-missing', forward(['ca-file-missing']), p('/ca-file-missing')),
              route('plaintext', forward(['plaintext']), p('/plaintext')),
              route('mutual', forward(['mutual']), p('/mutual')),
              route('mutual-no-cert', forward(['mutual-no-cert']), p('/mutual-no-cert')),
              route('other-sni', forward(['other-sni']), p('/other-sni')),
              route('stranger-sni', forward(['stranger-sni']), p('/stranger-sni')),
            ]),
          ]),
        ],
        [
          cluster('right-ca', s, { tls: tls({}) }),
          cluster('wrong-ca', s, { tls: tls({ caCertificates: inline(pki.caB.cert) }) }),
          cluster('san-ok', s, { tls: tls({ subjectAltNames: ['spiffe://nope', 'other.example.com'] }) }),
          cluster('san-mismatch', s, { tls: tls({ subjectAltNames: ['reviews.example.com'] }) }),
          cluster('insecure', s, { tls: tls({ caCertificates: inline(pki.caB.cert), subjectAltNames: ['reviews.example.com'], insecureSkipVerify: true }) }),
          cluster('ca-file', s, { tls: tls({ caCertificates: { kind: 'file', path: caFile } }) }),
          cluster('ca-file-missing', s, { tls: tls({ caCertificates: { kind: 'file', path: join(pki.dir, 'does-not-exist.pem') } }) }),
          cluster('plaintext', s),
          cluster('mutual', m, { tls: tls({ mode: 'MUTUAL', clientCertificate: clientA }) }),
          cluster('mutual-no-cert', m, { tls: tls({}) }),
          cluster('other-sni', s, { tls: tls({ sni: 'other.example.com' }) }),
          cluster('stranger-sni', s, { tls: tls({ sni: 'stranger.example.com' }) }),
        ],
      ),
      { observer },
    );
    port = gw.port();
  });

  after(async () => {
    await gw?.close();
    simple?.server.closeAllConnections();
    mutual?.server.closeAllConnections();
    await Promise.all([simple, mutual].map((b) => b && new Promise<void>((r) => b.server.close(() => r()))));
    pki?.cleanup();
  });

  const json = (body: string): { sni: string | null; client: string | null; path: string } => JSON.parse(body) as { sni: string | null; client: string | null; path: string };

  test('SIMPLE with the CA that issued the backend certificate: 200, the configured SNI is sent', async () => {
    const r = await request(port, { path: '/right-ca/x', host: 'www.example.org' });
    assert.equal(r.status, 200, `expected 200, got ${r.status}: ${r.body}`);
    assert.deepEqual(json(r.body), { sni: 'api.example.com', client: null, path: '/right-ca/x' });
  });

  test('sni is sent as configured per cluster, whatever the Host', async () => {
    const r = await request(port, { path: '/other-sni', host: 'api.example.com' });
    assert.equal(r.status, 200, r.body);
    assert.equal(json(r.body).sni, 'other.example.com');
  });

  test('a CA that did not issue the certificate: 503 UF with CERTIFICATE_VERIFY_FAILED in the body and the details', async () => {
    details.length = 0;
    const r = await request(port, { path: '/wrong-ca' });
    assert.equal(r.status, 503, r.body);
    assert.equal(r.headers['x-meshgate-flags'], 'UF');
    assert.match(r.body, /^upstream connect error or disconnect\/reset before headers\. reset reason: connection failure, transport failure reason: TLS_error:CERTIFICATE_VERIFY_FAILED:/);
    await waitFor(() => details.length > 0);
    assert.match(details[0], /^503 upstream_reset_before_response_started\{connection_failure,TLS_error:CERTIFICATE_VERIFY_FAILED:[A-Z_]+\}$/);
  });

  test('subjectAltNames: one matching SAN is enough; none matching is 503 UF', async () => {
    const ok = await request(port, { path: '/san-ok' });
    assert.equal(ok.status, 200, ok.body);
    const bad = await request(port, { path: '/san-mismatch' });
    assert.equal(bad.status, 503, bad.body);
    assert.equal(bad.headers['x-meshgate-flags'], 'UF');
    assert.match(bad.body, /CERTIFICATE_VERIFY_FAILED:ERR_TLS_CERT_ALTNAME_INVALID$/);
  });

  test('without subjectAltNames the certificate must name the SNI: a trusted chain for another name is 503 UF', async () => {
    const bad = await request(port, { path: '/stranger-sni' });
    assert.equal(bad.status, 503, bad.body);
    assert.equal(bad.headers['x-meshgate-flags'], 'UF');
    assert.match(bad.body, /CERTIFICATE_VERIFY_FAILED:ERR_TLS_CERT_ALTNAME_INVALID$/);
  });

  test('insecureSkipVerify: neither the chain nor the SANs are checked', async () => {
    const r = await request(port, { path: '/insecure' });
    assert.equal(r.status, 200, r.body);
  });

  test('caCertificates as a file path is read by the runtime; an unreadable file fails the handshake, never plaintext', async () => {
    const ok = await request(port, { path: '/ca-file' });
    assert.equal(ok.status, 200, ok.body);
    const bad = await request(port, { path: '/ca-file-missing' });
    assert.equal(bad.status, 503, bad.body);
    assert.match(bad.body, /MG_TLS_FILE_UNREADABLE/);
  });

  test('MUTUAL: a backend requiring client certificates answers only when one is presented', async () => {
    const ok = await request(port, { path: '/mutual' });
    assert.equal(ok.status, 200, ok.body);
    assert.equal(json(ok.body).client, 'URI:spiffe://test/client-a');
    const bad = await request(port, { path: '/mutual-no-cert' });
    assert.equal(bad.status, 503, `expected 503 without a client certificate, got ${bad.status}: ${bad.body}`);
  });

  test('a WebSocket upgrade to a TLS cluster goes over TLS with the cluster SNI (never in plaintext)', async () => {
    // The HTTPS echo does not upgrade: its plain answer, relayed, shows the upgrade arrived over TLS.
    // (Tunnels to wss backends: test/e2e/protocol-websocket.test.ts.)
    const r = await request(port, { path: '/right-ca/ws', headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    assert.equal(r.status, 200, r.body);
    assert.equal((JSON.parse(r.body) as { sni: string }).sni, 'api.example.com');
    const bad = await request(port, { path: '/wrong-ca/ws', headers: { connection: 'upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
    assert.equal(bad.status, 503, bad.body);
    assert.equal(bad.headers['x-meshgate-flags'], 'UF');
  });

  test('a plaintext cluster to the TLS port shares no pool with the TLS clusters (and fails)', async () => {
    const r = await request(port, { path: '/plaintext' });
    assert.notEqual(r.status, 200, r.body);
    // The TLS clusters to the same address still work: their pools are their own.
    assert.equal((await request(port, { path: '/right-ca' })).status, 200);
    assert.equal(gw.runtime !== null, true);
  });
});

describe('upstream TLS with HTTP/2 (ALPN h2)', { timeout: 60_000 }, () => {
  let pki: Pki;
  let h2: http2.Http2SecureServer;
  let gw: RuntimeHarness;

  before(async () => {
    pki = makePki(['grpc.example.com']);
    // HTTP/2 only: a pool that fell back to HTTP/1.1 would fail the ALPN handshake.
    h2 = http2.createSecureServer({ cert: pki.server.cert, key: pki.server.key, allowHTTP1: false }, (req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`${req.httpVersion} ${(req.socket as unknown as TLSSocket).servername ?? ''}`);
    });
    await new Promise<void>((r) => h2.listen(0, '127.0.0.1', r));
    const h2Port = (h2.address() as AddressInfo).port;
    const tls: UpstreamTls = { mode: 'SIMPLE', caCertificates: { kind: 'inline', pem: pki.caA.cert, secret: 'default/ca' }, clientCertificate: null, sni: 'grpc.example.com', subjectAltNames: ['grpc.example.com'], insecureSkipVerify: false };
    gw = await startRuntime(snapshot([httpListener(0, [vhost('v', ['*'], [route('h2', forward(['h2']), [match()])])])], [cluster('h2', [{ port: h2Port }], { protocol: 'HTTP2', tls })]));
  });

  after(async () => {
    await gw?.close();
    await new Promise<void>((r) => (h2 ? h2.close(() => r()) : r()));
    pki?.cleanup();
  });

  test('an HTTP2 cluster with TLS negotiates h2 by ALPN and sends the SNI', async () => {
    const r = await request(gw.port(), { path: '/' });
    assert.equal(r.status, 200, r.body);
    assert.equal(r.body, '2.0 grpc.example.com');
  });
});

async function waitFor(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}
