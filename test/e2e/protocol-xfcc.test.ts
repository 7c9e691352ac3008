/**
 * x-forwarded-client-cert (XFCC) at the gateway, as Envoy sets it for Istio gateways: a real client
 * certificate through a MUTUAL / OPTIONAL_MUTUAL listener, a recording HTTP backend, and the exact
 * header value it receives under SANITIZE_SET (Istio's default), APPEND_FORWARD, FORWARD_ONLY,
 * SANITIZE and ALWAYS_FORWARD_ONLY; plaintext and certificate-less requests never get an element.
 * Also MeshConfig's other gateway-topology setting, numTrustedProxies (authorization's remote.ip).
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { ForwardClientCertDetails } from '../../src/ir/security.js';
import type { IRSnapshot, Route } from '../../src/ir/types.js';
import { chain, cluster, forward, httpListener, httpsListener, match, route, snapshot, tlsContext, vhost } from '../support/ir-builders.js';
import { makePki, type Pki } from '../support/mtls-certs.js';
import { generatePkiSync } from '../support/x509-gen.js';
import { startRuntime, type RuntimeHarness } from '../support/runtime-harness.js';
import { freePort } from '../helpers/gateway.js';
import { needs } from '../support/requires.js';

function curl(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => execFile('curl', args, { encoding: 'utf8', timeout: 10_000 }, (err, stdout) => (err ? reject(err) : resolve(stdout))));
}

/** Envoy's URL encoding of a PEM in XFCC `Cert="…"`. */
function envoyPem(pem: string): string {
  return pem.replace(/\r/g, '').replace(/[\n +/=]/g, (c) => ({ '\n': '%0A', ' ': '%20', '+': '%2B', '/': '%2F', '=': '%3D' })[c]!);
}

describe('x-forwarded-client-cert at the gateway', { timeout: 60_000 }, () => {
  let pki: Pki;
  let gw: RuntimeHarness;
  let backend: http.Server;
  let ports: { mutual: number; optional: number; plain: number };
  let gwCert: { cert: string; key: string };
  let expected: string;
  const seen: (string | undefined)[] = [];
  const xffSeen: string[] = [];

  const ir = (mode: ForwardClientCertDetails | undefined, first: Route[] = []): IRSnapshot => {
    const vh = [vhost('x', ['*'], [...first, route('x', forward(['echo']))])];
    const ctx = (m: 'REQUIRED' | 'OPTIONAL') =>
      tlsContext([{ secret: 'default/gw', serverNames: [], certChain: gwCert.cert, privateKey: gwCert.key }], { clientValidation: { mode: m, caCertificates: pki.caA.cert, caSecret: 'default/gw-cacert', subjectAltNames: [] } });
    return snapshot(
      [httpsListener(ports.mutual, [chain('m', vh, [], ctx('REQUIRED'))]), httpsListener(ports.optional, [chain('o', vh, [], ctx('OPTIONAL'))]), httpListener(ports.plain, vh)],
      [cluster('echo', [{ port: (backend.address() as AddressInfo).port }])],
      mode === undefined ? {} : { forwardClientCertDetails: mode },
    );
  };

  before(async () => {
    pki = makePki(['gw.example.com']);
    // The gateway's serving certificate carries a URI SAN: it becomes `By=`.
    gwCert = generatePkiSync([{ name: 'gw', cn: 'gw.example.com', dns: ['gw.example.com'], uris: ['spiffe://cluster.local/ns/istio-system/sa/gateway'] }]).certs.gw;
    backend = http.createServer();
    backend.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
      seen.push(req.headers['x-forwarded-client-cert'] as string | undefined);
      xffSeen.push(String(req.headers['x-forwarded-for']));
      res.end('ok');
    });
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
    ports = { mutual: await freePort(), optional: await freePort(), plain: await freePort() };
    const client = new X509Certificate(pki.clientA.cert);
    expected =
      'By=spiffe://cluster.local/ns/istio-system/sa/gateway' +
      `;Hash=${createHash('sha256').update(client.raw).digest('hex')}` +
      `;Cert="${envoyPem(pki.clientA.cert)}"` +
      ';Subject="CN=client-a"' +
      ';URI=spiffe://test/client-a';
    gw = await startRuntime(ir(undefined));
  });
  after(async () => {
    await gw?.close(300);
    backend?.closeAllConnections();
    await new Promise<void>((r) => backend.close(() => r()));
    pki?.cleanup();
  });

  /** One HTTPS request (client certificate `pem` or none); resolves with the XFCC the backend saw. */
  const viaTls = (port: number, pem: { cert: string; key: string } | null, xfcc?: string): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port, path: '/', servername: 'gw.example.com', rejectUnauthorized: false, agent: false, ...(pem ?? {}), headers: { host: 'gw.example.com', ...(xfcc === undefined ? {} : { 'x-forwarded-client-cert': xfcc }) } },
        (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve(seen.at(-1)) : reject(new Error(`expected 200, got ${res.statusCode}`))));
        },
      );
      req.setTimeout(5000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });
  const viaPlain = (xfcc: string): Promise<string | undefined> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: ports.plain, path: '/', agent: false, headers: { host: 'gw.example.com', 'x-forwarded-client-cert': xfcc } }, (res) => {
        res.resume();
        res.on('end', () => resolve(seen.at(-1)));
      });
      req.setTimeout(5000, () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end();
    });

  const clientSent = 'By=spiffe://evil;Hash=00;Subject="CN=forged"';

  test('default (SANITIZE_SET): the exact Envoy element replaces what the client sent', async () => {
    assert.equal(await viaTls(ports.mutual, pki.clientA, clientSent), expected);
    assert.equal(await viaTls(ports.mutual, pki.clientA), expected);
  });

  test('default (SANITIZE_SET): OPTIONAL_MUTUAL without a certificate and plaintext requests lose a client-sent XFCC', async () => {
    assert.equal(await viaTls(ports.optional, null, clientSent), undefined);
    assert.equal(await viaPlain(clientSent), undefined);
    assert.equal(await viaTls(ports.optional, pki.clientA, clientSent), expected, 'OPTIONAL_MUTUAL with a verified certificate gets the element');
  });

  test('curl --cert through the MUTUAL listener: the upstream sees the element', { skip: needs('curl') }, async () => {
    // Asynchronously: the gateway runs in this process.
    const out = await curl(['-sk', '--max-time', '5', '--cert', join(pki.dir, 'client-a.crt'), '--key', join(pki.dir, 'client-a.key'), '--resolve', `gw.example.com:${ports.mutual}:127.0.0.1`, '-H', `x-forwarded-client-cert: ${clientSent}`, `https://gw.example.com:${ports.mutual}/`]);
    assert.equal(out, 'ok');
    assert.equal(seen.at(-1), expected);
  });

  const cases: { mode: ForwardClientCertDetails; mtlsWithHeader: string | undefined; mtlsWithout: string | undefined; plain: string | undefined }[] = [
    { mode: 'APPEND_FORWARD', mtlsWithHeader: `${clientSent},EXPECTED`, mtlsWithout: 'EXPECTED', plain: undefined },
    { mode: 'FORWARD_ONLY', mtlsWithHeader: clientSent, mtlsWithout: undefined, plain: undefined },
    { mode: 'SANITIZE', mtlsWithHeader: undefined, mtlsWithout: undefined, plain: undefined },
    { mode: 'ALWAYS_FORWARD_ONLY', mtlsWithHeader: clientSent, mtlsWithout: undefined, plain: clientSent },
    { mode: 'SANITIZE_SET', mtlsWithHeader: 'EXPECTED', mtlsWithout: 'EXPECTED', plain: undefined },
  ];
  for (const c of cases) {
    test(`${c.mode}: mTLS with a client XFCC, mTLS without, plaintext`, async () => {
      await gw.apply(ir(c.mode));
      const want = (v: string | undefined) => v?.replace('EXPECTED', expected);
      assert.equal(await viaTls(ports.mutual, pki.clientA, clientSent), want(c.mtlsWithHeader));
      assert.equal(await viaTls(ports.mutual, pki.clientA), want(c.mtlsWithout));
      assert.equal(await viaPlain(clientSent), want(c.plain));
    });
  }

  test('numTrustedProxies: remote.ip is the Nth x-forwarded-for entry from the right, source.ip the peer; XFF gets the peer appended', async () => {
    const src = { kind: 'AuthorizationPolicy', namespace: 'istio-system', name: 'p', file: null, line: null };
    const deny = (key: string, ip: string) => ({ name: `deny-${key}`, source: src, action: 'DENY' as const, provider: null, rules: [{ from: [[{ key, values: [ip], notValues: [] }]], to: [], when: [] }], dryRun: false });
    const base = ir(undefined);
    const status = (xff: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: ports.plain, path: '/', agent: false, headers: { host: 'gw.example.com', 'x-forwarded-for': xff } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      await gw.apply({ ...base, security: { ...base.security, numTrustedProxies: 2, authorizationPolicies: [deny('remote.ip', '203.0.113.7')] } });
      assert.equal(await status('203.0.113.7, 10.0.0.2'), 403, 'the 2nd entry from the right is the client: denied');
      assert.equal(await status('203.0.113.7, 10.0.0.1, 10.0.0.2'), 200, 'another client');
      assert.equal(xffSeen.at(-1), '203.0.113.7, 10.0.0.1, 10.0.0.2, 127.0.0.1', 'x-forwarded-for gets the peer appended');
      assert.equal(await status('203.0.113.7'), 200, 'a list shorter than numTrustedProxies: the peer is the client');
      await gw.apply({ ...base, security: { ...base.security, numTrustedProxies: 2, authorizationPolicies: [deny('source.ip', '203.0.113.7')] } });
      assert.equal(await status('203.0.113.7, 10.0.0.2'), 200, 'source.ip stays the connection peer');
      await gw.apply({ ...base, security: { ...base.security, authorizationPolicies: [deny('remote.ip', '203.0.113.7')] } });
      assert.equal(await status('203.0.113.7, 10.0.0.2'), 200, 'without numTrustedProxies, XFF is not trusted');
    } finally {
      await gw.apply(base);
    }
  });

  test('routes and policies see the settled XFCC: a forged one cannot match a route (Envoy settles it before the router)', async () => {
    // A route for requests whose XFCC claims the forged identity.
    const forged = route('forged', { kind: 'direct', status: 418, body: 'forged identity accepted', contentType: null }, [
      match({ headers: [{ name: 'x-forwarded-client-cert', match: { kind: 'prefix', value: 'By=spiffe://evil', ignoreCase: false }, invert: false }] }),
    ]);
    const status = (xfcc: string) =>
      new Promise<number>((resolve, reject) => {
        const req = http.request({ host: '127.0.0.1', port: ports.plain, path: '/', agent: false, headers: { host: 'gw.example.com', 'x-forwarded-client-cert': xfcc } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end();
      });
    try {
      await gw.apply(ir('SANITIZE_SET', [forged]));
      assert.equal(await status(clientSent), 200, 'SANITIZE_SET: the forged XFCC is gone before routing');
      await gw.apply(ir('ALWAYS_FORWARD_ONLY', [forged]));
      assert.equal(await status(clientSent), 418, 'ALWAYS_FORWARD_ONLY keeps it, and then the route does match');
    } finally {
      await gw.apply(ir(undefined));
    }
  });

  test('Subject is RFC 2253 as OpenSSL prints it: most specific first, specials escaped once', async () => {
    // Subject /C=US/O=Acme, Inc./CN=client-o (encoded in that order), issued by the PKI's CA A.
    const pem = generatePkiSync([{ name: 'client-o', subject: [{ C: 'US' }, { O: 'Acme, Inc.' }, { CN: 'client-o' }], issuer: 'ca-a', uris: ['spiffe://test/client-o'], eku: ['clientAuth'] }], [], { 'ca-a': pki.caA }).certs['client-o'];
    await gw.apply(ir(undefined));
    const got = await viaTls(ports.mutual, pem);
    assert.match(got ?? '', /;Subject="CN=client-o,O=Acme\\, Inc\.,C=US";/, String(got));
  });

  test('HTTP/2 over the MUTUAL listener gets the same element', async () => {
    await gw.apply(ir(undefined));
    const { default: http2 } = await import('node:http2');
    const session = http2.connect(`https://127.0.0.1:${ports.mutual}`, { servername: 'gw.example.com', rejectUnauthorized: false, cert: pki.clientA.cert, key: pki.clientA.key });
    try {
      const status = await new Promise<number>((resolve, reject) => {
        const s = session.request({ ':path': '/', ':authority': 'gw.example.com', 'x-forwarded-client-cert': clientSent });
        s.on('response', (h) => resolve(Number(h[':status'])));
        s.on('error', reject);
        s.resume();
      });
      assert.equal(status, 200);
      assert.equal(seen.at(-1), expected);
    } finally {
      session.close();
    }
  });
});
