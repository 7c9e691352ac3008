/**
 * TLS termination on Istio Gateway servers with protocol TLS (SIMPLE, MUTUAL) and TLS origination on
 * TCP routes (DestinationRule `tls`), through the real `meshgate run` process:
 *  - the gateway shows the credential's certificate chosen by SNI, decrypts, and relays plaintext to a
 *    plain TCP backend with the `tcp` routes, half-close included;
 *  - MUTUAL: no client certificate, or one from another CA, is refused; one from the CA is relayed;
 *  - an SNI no server names is refused;
 *  - a certificate Secret replaced at run time is used by new connections without a restart;
 *  - a TCP route to a cluster with DestinationRule tls SIMPLE reaches a TLS backend (right CA), and with
 *    the wrong CA the client connection is closed and the access log says UF with
 *    TLS_error:CERTIFICATE_VERIFY_FAILED;
 *  - revocation: a Gateway credential Secret's `ca.crl` refuses the client certificates it revokes, and a
 *    DestinationRule credential's `ca.crl` makes a revoked upstream certificate fail (UF, CERT_REVOKED).
 */

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash, randomBytes, X509Certificate } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { type GatewayProcess, get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig } from '../helpers/gateway.js';
import { makePki, type Pem, type Pki } from '../support/mtls-certs.js';
import { generatePkiSync } from '../support/x509-gen.js';
import { startSummingBackend } from '../support/tcp-backends.js';
import { within } from '../support/http-client.js';

/** A CRL of the PKI's CA A revoking `<name>.crt` of `pki.dir` (made in JavaScript, support/x509-gen.ts). */
function revoke(pki: Pki, name: string): string {
  const cert = readFileSync(join(pki.dir, `${name}.crt`), 'utf8');
  return generatePkiSync([], [{ issuer: 'ca-a', revoked: [name] }], { 'ca-a': pki.caA, [name]: { cert } }).crls['ca-a'];
}

/** A TCP Service on port 9000 with one endpoint, 127.0.0.1:`port`. */
const service = (name: string, port: number) => serviceYaml(name, [port], { servicePort: 9000, portName: 'tcp' });

const b64 = (s: string) => Buffer.from(s).toString('base64');

function secret(name: string, namespace: string, data: Record<string, string>): string {
  return `apiVersion: v1
kind: Secret
metadata: { name: ${name}, namespace: ${namespace} }
type: Opaque
data:
${Object.entries(data).map(([k, v]) => `  ${k}: ${b64(v)}`).join('\n')}
`;
}

interface Exchange {
  /** What came back before the gateway's FIN. */
  answer: string;
  /** The certificate the gateway showed (TLS only). */
  peer: X509Certificate | null;
}

/** Sends `payload` then FIN, reads until the peer's FIN. `opts` null = plain TCP. */
function exchange(port: number, payload: Buffer, opts: tls.ConnectionOptions | null): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const s: net.Socket = opts === null ? net.connect({ port, host: '127.0.0.1', allowHalfOpen: true }) : tls.connect({ port, host: '127.0.0.1', ...opts, allowHalfOpen: true } as tls.ConnectionOptions);
    let out = '';
    let peer: X509Certificate | null = null;
    s.setEncoding('utf8');
    s.on('data', (d: string) => (out += d));
    s.on('end', () => {
      s.end();
      resolve({ answer: out, peer });
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`closed without a FIN; got ${JSON.stringify(out)}`)));
    s.once(opts === null ? 'connect' : 'secureConnect', () => {
      if (opts !== null) peer = (s as tls.TLSSocket).getPeerX509Certificate() ?? null;
      s.end(payload);
    });
  });
}

/** A TLS client that expects to be refused: resolves with how the connection ended and the bytes of application data it got. */
function refused(port: number, opts: tls.ConnectionOptions): Promise<{ how: string; data: number }> {
  return new Promise((resolve) => {
    const s = tls.connect({ port, host: '127.0.0.1', ...opts });
    let data = 0;
    s.on('data', (d: Buffer) => (data += d.length));
    s.on('secureConnect', () => s.write('ping'));
    s.on('error', (e: Error & { code?: string }) => resolve({ how: e.code ?? e.message, data }));
    s.on('close', () => resolve({ how: 'closed', data }));
  });
}

const expectAnswer = (name: string, payload: Buffer) => `${name} bytes=${payload.length} sha=${createHash('sha256').update(payload).digest('hex')}`;

describe('TLS termination on TLS servers and TLS origination on TCP routes', { timeout: 90_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let pki: Pki;
  let rotated: Pki;
  const closers: (() => Promise<void>)[] = [];
  let config: (dbCert: Pem) => string;

  before(async () => {
    pki = makePki(['db.example.com', 'mtls.example.com', 'bad.example.com', 'backend.internal', 'crl.example.com', 'revoked.example.com']);
    rotated = makePki(['db.example.com']);
    const echo = await startSummingBackend('echo');
    const tlsUp = await startSummingBackend('tls-up', pki.server);
    const revokedUp = await startSummingBackend('revoked-up', rotated.server);
    closers.push(echo.close, tlsUp.close, revokedUp.close);
    const clientCrl = revoke(pki, 'client-other-san');
    const serverCrl = revoke(rotated, 'server');
    config = (dbCert) =>
      [
        service('echo', echo.port),
        service('tls-up-good', tlsUp.port),
        service('tls-up-bad', tlsUp.port),
        service('tls-up-revoked', revokedUp.port),
        secret('crl-cert', 'istio-system', { 'tls.crt': pki.server.cert, 'tls.key': pki.server.key, 'ca.crt': pki.caA.cert, 'ca.crl': clientCrl }),
        secret('revoked-ca', 'default', { cacert: rotated.caA.cert, 'ca.crl': serverCrl }),
        secret('db-cert', 'istio-system', { 'tls.crt': dbCert.cert, 'tls.key': dbCert.key }),
        secret('mtls-cert', 'istio-system', { 'tls.crt': pki.server.cert, 'tls.key': pki.server.key, 'ca.crt': pki.caA.cert }),
        secret('good-ca', 'default', { cacert: pki.caA.cert }),
        secret('wrong-ca', 'default', { cacert: pki.caB.cert }),
      ].join('---\n') +
      `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: tcp, protocol: TCP }
      hosts: ["*"]
    - port: { number: 443, name: tls-db, protocol: TLS }
      hosts: [db.example.com]
      tls: { mode: SIMPLE, credentialName: db-cert, minProtocolVersion: TLSV1_2 }
    - port: { number: 443, name: tls-mtls, protocol: TLS }
      hosts: [mtls.example.com]
      tls: { mode: MUTUAL, credentialName: mtls-cert }
    - port: { number: 443, name: tls-bad, protocol: TLS }
      hosts: [bad.example.com]
      tls: { mode: SIMPLE, credentialName: mtls-cert }
    - port: { number: 443, name: tls-revoked, protocol: TLS }
      hosts: [revoked.example.com]
      tls: { mode: SIMPLE, credentialName: mtls-cert }
    - port: { number: 443, name: tls-crl, protocol: TLS }
      hosts: [crl.example.com]
      tls: { mode: MUTUAL, credentialName: crl-cert }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: plain, namespace: default }
spec:
  hosts: [db.example.com, mtls.example.com, crl.example.com]
  gateways: [istio-system/gw]
  tcp:
    - match: [{ port: 443 }]
      route: [{ destination: { host: echo } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: originate, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  tcp:
    - match: [{ port: 80 }]
      route: [{ destination: { host: tls-up-good } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: originate-bad, namespace: default }
spec:
  hosts: [bad.example.com]
  gateways: [istio-system/gw]
  tcp:
    - route: [{ destination: { host: tls-up-bad } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: originate-revoked, namespace: default }
spec:
  hosts: [revoked.example.com]
  gateways: [istio-system/gw]
  tcp:
    - route: [{ destination: { host: tls-up-revoked } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: revoked, namespace: default }
spec:
  host: tls-up-revoked
  trafficPolicy: { tls: { mode: SIMPLE, credentialName: revoked-ca, sni: db.example.com } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: good, namespace: default }
spec:
  host: tls-up-good
  trafficPolicy: { tls: { mode: SIMPLE, credentialName: good-ca, sni: backend.internal } }
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: bad, namespace: default }
spec:
  host: tls-up-bad
  trafficPolicy: { tls: { mode: SIMPLE, credentialName: wrong-ca, sni: backend.internal } }
`;
    writeConfig(dir, 'all.yaml', config(pki.server));
    gw = await startGateway({ configDir: dir, waitReady: true, args: ['--access-log', 'stdout', '--access-log-format', 'json'] });
  });
  after(async () => {
    await gw?.stop();
    for (const c of closers) await c();
    pki?.cleanup();
    rotated?.cleanup();
    removeDir(dir);
  });

  test('SIMPLE: the credential certificate is shown for the SNI, and 1 MiB reaches a plain TCP backend; its answer comes after our FIN', async () => {
    const payload = randomBytes(1024 * 1024);
    const r = await within(20_000, exchange(gw.httpsPort, payload, { servername: 'db.example.com', ca: pki.caA.cert }), 'tls exchange');
    assert.equal(r.answer, expectAnswer('echo', payload));
    assert.equal(r.peer?.fingerprint256, new X509Certificate(pki.server.cert).fingerprint256, 'the gateway presents the db-cert certificate');
  });

  test('MUTUAL: a client certificate from the CA is relayed; none, or one from another CA, is refused', async () => {
    const payload = Buffer.from('mutual hello');
    const ok = await within(10_000, exchange(gw.httpsPort, payload, { servername: 'mtls.example.com', ca: pki.caA.cert, cert: pki.clientA.cert, key: pki.clientA.key }), 'mtls ok');
    assert.equal(ok.answer, expectAnswer('echo', payload));
    const none = await within(10_000, refused(gw.httpsPort, { servername: 'mtls.example.com', ca: pki.caA.cert }), 'no client cert');
    assert.equal(none.data, 0, `no client certificate must get nothing back (ended ${none.how})`);
    const other = await within(10_000, refused(gw.httpsPort, { servername: 'mtls.example.com', ca: pki.caA.cert, cert: pki.clientB.cert, key: pki.clientB.key }), 'other CA');
    assert.equal(other.data, 0, `a certificate of another CA must get nothing back (ended ${other.how})`);
  });

  test('an SNI no server names is refused during the handshake', async () => {
    const r = await within(10_000, refused(gw.httpsPort, { servername: 'nobody.example.com', rejectUnauthorized: false }), 'unknown sni');
    assert.equal(r.data, 0);
    assert.notEqual(r.how, 'closed', 'the handshake fails with an alert');
  });

  test('TCP route to a cluster with DestinationRule tls SIMPLE: TLS is originated and verified against the CA', async () => {
    const payload = randomBytes(256 * 1024);
    const r = await within(20_000, exchange(gw.httpPort, payload, null), 'originated exchange');
    assert.equal(r.answer, expectAnswer('tls-up', payload));
  });

  test('wrong CA for the upstream: the client connection is closed and logged UF with TLS_error:CERTIFICATE_VERIFY_FAILED', async () => {
    const r = await within(10_000, new Promise<{ data: string; how: string }>((resolve) => {
      const s = tls.connect({ port: gw.httpsPort, host: '127.0.0.1', servername: 'bad.example.com', ca: pki.caA.cert });
      let data = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (data += d));
      s.on('secureConnect', () => s.write('hello'));
      s.on('error', (e: Error & { code?: string }) => resolve({ data, how: e.code ?? e.message }));
      s.on('close', () => resolve({ data, how: 'closed' }));
    }), 'bad upstream');
    assert.equal(r.data, '', 'nothing from the upstream');
    await waitFor(() => gw.output().split('\n').some((l) => l.includes('"requested_server_name":"bad.example.com"')), 5000, 'access log line of the bad.example.com connection');
    const line = gw.output().split('\n').find((l) => l.includes('"requested_server_name":"bad.example.com"'))!;
    const e = JSON.parse(line) as Record<string, unknown>;
    assert.equal(e.response_flags, 'UF', line);
    assert.match(String(e.upstream_transport_failure_reason), /^TLS_error:CERTIFICATE_VERIFY_FAILED/, line);
    assert.equal(e.upstream_cluster, 'outbound|9000||tls-up-bad.default.svc.cluster.local');
    assert.equal(e.response_code, 0);
  });

  test('caCrl: a client certificate revoked by the credential Secret ca.crl is refused; an unrevoked one of the same CA is relayed', async () => {
    const payload = Buffer.from('crl hello');
    const ok = await within(10_000, exchange(gw.httpsPort, payload, { servername: 'crl.example.com', ca: pki.caA.cert, cert: pki.clientA.cert, key: pki.clientA.key }), 'unrevoked');
    assert.equal(ok.answer, expectAnswer('echo', payload));
    const revoked = await within(10_000, refused(gw.httpsPort, { servername: 'crl.example.com', ca: pki.caA.cert, cert: pki.clientOtherSan.cert, key: pki.clientOtherSan.key }), 'revoked');
    assert.equal(revoked.data, 0, `a revoked client certificate must get nothing back (ended ${revoked.how})`);
  });

  test('caCrl upstream: a revoked upstream certificate closes the client connection, logged UF CERT_REVOKED', async () => {
    const r = await within(10_000, refused(gw.httpsPort, { servername: 'revoked.example.com', ca: pki.caA.cert }), 'revoked upstream');
    assert.equal(r.data, 0);
    const find = () => gw.output().split('\n').find((l) => l.includes('"requested_server_name":"revoked.example.com"'));
    await waitFor(() => find() !== undefined, 5000, 'access log line of the revoked.example.com connection');
    const e = JSON.parse(find()!) as Record<string, unknown>;
    assert.equal(e.response_flags, 'UF');
    assert.equal(e.upstream_transport_failure_reason, 'TLS_error:CERTIFICATE_VERIFY_FAILED:CERT_REVOKED');
  });

  test('/config_dump shows the TLS_TERMINATE listener as plain JSON, private keys redacted', async () => {
    const dump = JSON.parse((await get(`http://127.0.0.1:${gw.adminPort}/config_dump`)).body) as { snapshot: { tcpListeners: { port: number; protocol: string; tlsChains: { name: string; tls: { certificates: { privateKey: string }[] } }[] }[] } };
    const l = dump.snapshot.tcpListeners.find((x) => x.port === gw.httpsPort);
    assert.equal(l?.protocol, 'TLS_TERMINATE');
    assert.deepEqual(l.tlsChains.map((c) => c.name), ['tls.443.tls-db.gw.istio-system', 'tls.443.tls-mtls.gw.istio-system', 'tls.443.tls-bad.gw.istio-system', 'tls.443.tls-revoked.gw.istio-system', 'tls.443.tls-crl.gw.istio-system']);
    for (const c of l.tlsChains) for (const cert of c.tls.certificates) assert.equal(cert.privateKey, '[redacted]');
  });

  test('a certificate Secret replaced at run time is used by new connections, without a restart', async () => {
    const pid = gw.proc.pid;
    writeConfig(dir, 'all.yaml', config(rotated.server));
    const want = new X509Certificate(rotated.server.cert).fingerprint256;
    const payload = Buffer.from('after rotation');
    await waitFor(async () => {
      const r = await exchange(gw.httpsPort, payload, { servername: 'db.example.com', ca: rotated.caA.cert }).catch(() => null);
      return r !== null && r.peer?.fingerprint256 === want && r.answer === expectAnswer('echo', payload);
    }, 15_000, 'the rotated certificate on a new connection');
    assert.equal(gw.proc.pid, pid);
    assert.equal(gw.proc.exitCode, null);
  });
});
