/**
 * ingress-nginx `auth-tls-*` end to end: client certificates verified against the Secret's ca.crt on
 * the host's HTTPS requests, ssl-client-* headers upstream (forged copies removed), a missing
 * certificate answered 400 (or redirected to auth-tls-error-page), a certificate of another CA
 * refused, auth-tls-match-cn, optional verification, and no bypass through another SNI.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess, type EchoReport } from '../helpers/gateway.js';
import { makePki, type Pem, type Pki } from '../support/mtls-certs.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;
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

interface Answer { status: number; headers: Record<string, string | string[] | undefined>; json: EchoReport | null; error: string | null }

function request(port: number, host: string, opts: { servername?: string; client?: Pem; headers?: Record<string, string> } = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const req = https.request({ hostname: '127.0.0.1', port, path: '/', headers: { host, ...(opts.headers ?? {}) }, servername: opts.servername ?? host, rejectUnauthorized: false, agent: false, cert: opts.client?.cert, key: opts.client?.key }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        let json: EchoReport | null = null;
        try {
          json = JSON.parse(body) as EchoReport;
        } catch {
          json = null;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, json, error: null });
      });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.on('error', (e) => resolve({ status: 0, headers: {}, json: null, error: e.message }));
    req.end();
  });
}

describe('ingress-nginx auth-tls', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let web: Echo;
  let pki: Pki;
  const names = ['mtls.example.com', 'optional.example.com', 'cn.example.com', 'errpage.example.com', 'open.example.com'];

  before(async () => {
    pki = makePki(names);
    web = await startEchoServer({ name: 'web' });
    const b64 = (s: string) => Buffer.from(s).toString('base64');
    writeConfig(dir, 'all.yaml', [
      serviceYaml('web', [web.port]),
      tlsSecret('server-tls', 'default', pki.server),
      `apiVersion: v1\nkind: Secret\nmetadata: { name: client-ca, namespace: default }\ndata: { ca.crt: ${b64(pki.caA.cert)} }\n`,
      ingress('mtls', 'mtls.example.com', { 'auth-tls-secret': 'default/client-ca', 'auth-tls-pass-certificate-to-upstream': 'true' }),
      ingress('optional', 'optional.example.com', { 'auth-tls-secret': 'default/client-ca', 'auth-tls-verify-client': 'optional' }),
      ingress('cn', 'cn.example.com', { 'auth-tls-secret': 'default/client-ca', 'auth-tls-match-cn': 'CN=client-other' }),
      ingress('errpage', 'errpage.example.com', { 'auth-tls-secret': 'default/client-ca', 'auth-tls-error-page': 'https://help.example.com/certificates' }),
      ingress('open', 'open.example.com', {}),
    ].join('---\n'));
    gw = await startGateway({ configDir: dir });
  });

  after(async () => {
    await gw?.stop();
    await web.close();
    pki?.cleanup();
    removeDir(dir);
  });

  test('a certificate of the Secret\'s CA passes; ssl-client-* headers reach the backend, forged ones do not', async () => {
    const r = await request(gw.httpsPort, 'mtls.example.com', { client: pki.clientA, headers: { 'ssl-client-subject-dn': 'CN=admin' } });
    assert.equal(r.status, 200, r.error ?? '');
    assert.equal(r.json?.headers['ssl-client-verify'], 'SUCCESS');
    assert.equal(r.json?.headers['ssl-client-subject-dn'], 'CN=client-a');
    assert.equal(r.json?.headers['ssl-client-issuer-dn'], 'CN=ca-a');
    assert.match(decodeURIComponent(String(r.json?.headers['ssl-client-cert'])), /^-----BEGIN CERTIFICATE-----/);
  });

  test('no certificate: 400; auth-tls-error-page: 302 there', async () => {
    assert.equal((await request(gw.httpsPort, 'mtls.example.com')).status, 400);
    const e = await request(gw.httpsPort, 'errpage.example.com');
    assert.equal(e.status, 302);
    assert.equal(e.headers.location, 'https://help.example.com/certificates');
  });

  test('a certificate of another CA is refused', async () => {
    const r = await request(gw.httpsPort, 'mtls.example.com', { client: pki.clientB });
    assert.notEqual(r.status, 200);
  });

  test('another SNI does not bypass the check', async () => {
    const r = await request(gw.httpsPort, 'mtls.example.com', { servername: 'open.example.com', client: pki.clientB, headers: { 'ssl-client-verify': 'SUCCESS' } });
    assert.equal(r.status, 400, 'the host still requires a verified certificate');
    assert.equal((await request(gw.httpsPort, 'open.example.com')).status, 200);
  });

  test('auth-tls-verify-client optional: no certificate passes with ssl-client-verify NONE', async () => {
    const r = await request(gw.httpsPort, 'optional.example.com', { headers: { 'ssl-client-verify': 'SUCCESS' } });
    assert.equal(r.status, 200);
    assert.equal(r.json?.headers['ssl-client-verify'], 'NONE');
    const c = await request(gw.httpsPort, 'optional.example.com', { client: pki.clientA });
    assert.equal(c.json?.headers['ssl-client-verify'], 'SUCCESS');
  });

  test('auth-tls-match-cn: a subject that does not match is 403', async () => {
    assert.equal((await request(gw.httpsPort, 'cn.example.com', { client: pki.clientA })).status, 403);
    assert.equal((await request(gw.httpsPort, 'cn.example.com', { client: pki.clientOtherSan })).status, 200);
  });
});
