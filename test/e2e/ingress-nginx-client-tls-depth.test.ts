/**
 * ingress-nginx `auth-tls-verify-depth` (nginx ssl_verify_depth: intermediates allowed between the
 * client certificate and the CA of ca.crt, default 1) and `auth-tls-verify-client: optional_no_ca`
 * (ask for a certificate, accept it unverified, pass it upstream), over real TLS with certificate
 * chains made in JavaScript: a chain too long fails like a verification failure (HTTP 400 after the
 * handshake, as nginx, or the auth-tls-error-page redirect), over HTTP/1.1 and HTTP/2.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import http2 from 'node:http2';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess, type EchoReport } from '../helpers/gateway.js';
import { generatePkiSync, type Pem } from '../support/x509-gen.js';

const P = 'nginx.ingress.kubernetes.io/';

function ingress(name: string, host: string, annotations: Record<string, string>): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(Object.fromEntries(Object.entries(annotations).map(([k, v]) => [P + k, v])))} }
spec:
  tls: [{ hosts: [${host}], secretName: server-tls }]
  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }] }
`;
}

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; body: string; json: EchoReport | null; error: string | null }

function parse(status: number, headers: Answer['headers'], body: string): Answer {
  let json: EchoReport | null = null;
  try {
    json = JSON.parse(body) as EchoReport;
  } catch {
    json = null;
  }
  return { status, headers, body, json, error: null };
}

/** One HTTPS/1.1 request presenting `client` (its cert field may hold the intermediates after the leaf). */
function request(port: number, host: string, client?: Pem): Promise<Answer> {
  return new Promise((resolve) => {
    const req = https.request({ hostname: '127.0.0.1', port, path: '/', headers: { host }, servername: host, rejectUnauthorized: false, agent: false, cert: client?.cert, key: client?.key }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(parse(res.statusCode ?? 0, res.headers, Buffer.concat(chunks).toString('utf8'))));
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ status: 0, headers: {}, body: '', json: null, error: e.message }));
    req.end();
  });
}

/** The same over HTTP/2 (the verdict is read through node:http2's socket proxy). */
function request2(port: number, host: string, client?: Pem): Promise<Answer> {
  return new Promise((resolve) => {
    const session = http2.connect(`https://127.0.0.1:${port}`, { servername: host, rejectUnauthorized: false, cert: client?.cert, key: client?.key });
    session.on('error', (e) => resolve({ status: 0, headers: {}, body: '', json: null, error: e.message }));
    const req = session.request({ ':path': '/', ':authority': host });
    let status = 0;
    let headers: Answer['headers'] = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      status = Number(h[':status']);
      headers = h as Answer['headers'];
    });
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      session.close();
      resolve(parse(status, headers, Buffer.concat(chunks).toString('utf8')));
    });
    req.on('error', (e) => resolve({ status: 0, headers: {}, body: '', json: null, error: e.message }));
    req.setTimeout(10_000, () => req.close());
    req.end();
  });
}

describe('ingress-nginx auth-tls-verify-depth and optional_no_ca', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Awaited<ReturnType<typeof startEchoServer>>;
  let certs: Record<string, Pem>;
  const chain = (leaf: string, ...intermediates: string[]): Pem => ({ cert: [certs[leaf].cert, ...intermediates.map((i) => certs[i].cert)].join(''), key: certs[leaf].key });
  const hosts = ['depth1.example.com', 'depth2.example.com', 'deptherr.example.com', 'noca.example.com', 'optional.example.com'];

  before(async () => {
    ({ certs } = generatePkiSync([
      { name: 'root', ca: true },
      { name: 'int1', ca: true, issuer: 'root' },
      { name: 'int2', ca: true, issuer: 'int1' },
      { name: 'other-ca', ca: true },
      { name: 'server', issuer: 'root', dns: hosts, eku: ['serverAuth'] },
      { name: 'direct', issuer: 'root', eku: ['clientAuth'] },
      { name: 'one', issuer: 'int1', eku: ['clientAuth'] },
      { name: 'two', issuer: 'int2', eku: ['clientAuth'] },
      { name: 'stranger', issuer: 'other-ca', eku: ['clientAuth'] },
    ]));
    web = await startEchoServer({ name: 'web' });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    writeConfig(dir, 'all.yaml', [
      serviceYaml('web', [web.port]),
      tlsSecret('server-tls', 'default', certs.server),
      `apiVersion: v1\nkind: Secret\nmetadata: { name: client-ca, namespace: default }\ndata: { ca.crt: ${b64(certs.root.cert)} }\n`,
      ingress('depth1', 'depth1.example.com', { 'auth-tls-secret': 'client-ca' }),
      ingress('depth2', 'depth2.example.com', { 'auth-tls-secret': 'client-ca', 'auth-tls-verify-depth': '2' }),
      ingress('deptherr', 'deptherr.example.com', { 'auth-tls-secret': 'client-ca', 'auth-tls-error-page': 'https://help.example.com/certs' }),
      ingress('noca', 'noca.example.com', { 'auth-tls-secret': 'client-ca', 'auth-tls-verify-client': 'optional_no_ca', 'auth-tls-pass-certificate-to-upstream': 'true' }),
      ingress('optional', 'optional.example.com', { 'auth-tls-secret': 'client-ca', 'auth-tls-verify-client': 'optional' }),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await web.close();
    removeDir(dir);
  });

  test('default depth 1: a certificate of the CA and one under one intermediate pass; two intermediates is 400 "The SSL certificate error"', async () => {
    const direct = await request(gw.httpsPort, 'depth1.example.com', certs.direct);
    assert.equal(direct.status, 200, direct.error ?? direct.body);
    assert.equal(direct.json?.headers['ssl-client-verify'], 'SUCCESS');
    const one = await request(gw.httpsPort, 'depth1.example.com', chain('one', 'int1'));
    assert.equal(one.status, 200, one.error ?? one.body);
    assert.equal(one.json?.headers['ssl-client-issuer-dn'], 'CN=int1');
    const two = await request(gw.httpsPort, 'depth1.example.com', chain('two', 'int2', 'int1'));
    assert.equal(two.status, 400, `a chain deeper than auth-tls-verify-depth fails after the handshake: ${two.error ?? two.body}`);
    assert.equal(two.json, null, 'the backend is not called');
    assert.match(two.body, /The SSL certificate error/);
  });

  test('auth-tls-verify-depth 2 admits two intermediates; a too-deep chain with auth-tls-error-page is redirected there', async () => {
    const two = await request(gw.httpsPort, 'depth2.example.com', chain('two', 'int2', 'int1'));
    assert.equal(two.status, 200, two.error ?? two.body);
    assert.equal(two.json?.headers['ssl-client-verify'], 'SUCCESS');
    const redirected = await request(gw.httpsPort, 'deptherr.example.com', chain('two', 'int2', 'int1'));
    assert.equal(redirected.status, 302);
    assert.equal(redirected.headers.location, 'https://help.example.com/certs');
  });

  test('over HTTP/2 too: a chain too deep is 400, a good one passes', async () => {
    const bad = await request2(gw.httpsPort, 'depth1.example.com', chain('two', 'int2', 'int1'));
    assert.equal(bad.status, 400, bad.error ?? bad.body);
    const good = await request2(gw.httpsPort, 'depth1.example.com', chain('one', 'int1'));
    assert.equal(good.status, 200, good.error ?? good.body);
  });

  test('a certificate of another CA: 400 with verify on or optional (nginx answers after the handshake)', async () => {
    assert.equal((await request(gw.httpsPort, 'depth1.example.com', certs.stranger)).status, 400);
    const optional = await request(gw.httpsPort, 'optional.example.com', certs.stranger);
    assert.equal(optional.status, 400, optional.error ?? optional.body);
    assert.equal((await request(gw.httpsPort, 'optional.example.com')).json?.headers['ssl-client-verify'], 'NONE');
  });

  test('optional_no_ca: a certificate of an unknown CA is accepted and passed upstream with ssl-client-verify FAILED:<reason>; a good one SUCCESS; none NONE', async () => {
    const stranger = await request(gw.httpsPort, 'noca.example.com', certs.stranger);
    assert.equal(stranger.status, 200, stranger.error ?? stranger.body);
    assert.match(String(stranger.json?.headers['ssl-client-verify']), /^FAILED:/);
    assert.equal(stranger.json?.headers['ssl-client-subject-dn'], 'CN=stranger');
    const pem = decodeURIComponent(String(stranger.json?.headers['ssl-client-cert']));
    assert.equal(pem.trim(), certs.stranger.cert.trim(), 'the unverified certificate is passed upstream');
    const deep = await request(gw.httpsPort, 'noca.example.com', chain('two', 'int2', 'int1'));
    assert.equal(deep.status, 200);
    assert.equal(deep.json?.headers['ssl-client-verify'], 'FAILED:certificate chain too long');
    const good = await request(gw.httpsPort, 'noca.example.com', certs.direct);
    assert.equal(good.json?.headers['ssl-client-verify'], 'SUCCESS');
    const none = await request(gw.httpsPort, 'noca.example.com');
    assert.equal(none.status, 200);
    assert.equal(none.json?.headers['ssl-client-verify'], 'NONE');
  });

  test('a client that tries to resume its TLS session gets a full handshake: the chain and its depth are checked on every connection', async () => {
    // One agent without keep-alive: the second request opens a new connection offering the first one's session.
    const agent = new https.Agent({ keepAlive: false, maxCachedSessions: 10 });
    const once = (client: Pem) =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const req = https.request({ hostname: '127.0.0.1', port: gw.httpsPort, path: '/', headers: { host: 'depth1.example.com' }, servername: 'depth1.example.com', rejectUnauthorized: false, agent, cert: client.cert, key: client.key }, (res) => {
          const reused = (res.socket as import('node:tls').TLSSocket).isSessionReused();
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, reused }));
        });
        req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
        req.on('error', reject);
        req.end();
      });
    const one = chain('one', 'int1');
    try {
      for (let i = 0; i < 3; i++) {
        const r = await once(one);
        assert.equal(r.status, 200, `connection ${i}`);
        assert.equal(r.reused, false, 'no session resumption where client certificates are checked');
      }
    } finally {
      agent.destroy();
    }
  });
});
