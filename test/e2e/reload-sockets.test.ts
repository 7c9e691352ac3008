/**
 * Reloads drop no connection when a port's socket stays: the real `meshgate run` (--bind-address
 * 0.0.0.0, one worker process) while the config directory is rewritten again and again through
 * the transitions that used to close and rebind a listening socket:
 *  - a Gateway bound to its own address (127.0.0.7) on the wildcard ports added and removed (the
 *    wildcard listeners gain their first and lose their last hosted listener);
 *  - an ssl-passthrough Ingress switched on and off (the HTTPS listener gains its first and loses
 *    its last passthrough route);
 *  - an Istio Gateway server switched between HTTP and HTTPS on the same port;
 *  - (second test) an Istio Gateway server switched between HTTP and TCP on the same port (the port
 *    moves between the HTTP and the TCP listener managers, which share one socket table).
 * Meanwhile clients open many short connections (HTTP, HTTPS, both addresses) and keep some open
 * (HTTP/1.1 keep-alive, HTTPS keep-alive, one HTTP/2 session). Every connection must be accepted
 * and every request answered; only the answers the transitions change may change (which backend,
 * passthrough or terminated, HTTP or HTTPS on the switching port).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { startEchoServer } from '../../src/demo/echo-server.js';
import { freePort, get, makeCert, removeDir, serviceYaml, startGateway, tempDir, tlsSecret, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

type Echo = Awaited<ReturnType<typeof startEchoServer>>;

/** How long the clients run while the config changes. */
const RUN_MS = 4500;
const P = 'nginx.ingress.kubernetes.io/';

interface Answer {
  status: number;
  /** The echo backend's name, `tls-backend` for the passthrough backend, else the raw body. */
  who: string;
  /** Common name of the certificate the client saw (HTTPS). */
  cn: string | null;
}

function answerOf(status: number, body: string, cn: string | null): Answer {
  if (body.startsWith('tls-backend')) return { status, who: 'tls-backend', cn };
  try {
    return { status, who: (JSON.parse(body) as { name: string }).name, cn };
  } catch {
    return { status, who: body.slice(0, 80), cn };
  }
}

/** One HTTP/1.1 request to `address:port` (`agent` false: a connection of its own). */
function httpAt(address: string, port: number, host: string, agent: http.Agent | false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: address, port, path: '/', headers: { host }, agent }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(answerOf(res.statusCode ?? 0, body, null)));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`HTTP to ${address}:${port} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** One HTTPS request to `address:port` with SNI and Host `name`. */
function httpsAt(address: string, port: number, name: string, agent: https.Agent | false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = https.request({ host: address, port, path: '/', servername: name, headers: { host: name }, rejectUnauthorized: false, agent }, (res) => {
      const cert = (res.socket as TLSSocket).getPeerCertificate();
      const cn = cert?.subject?.CN;
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve(answerOf(res.statusCode ?? 0, body, (Array.isArray(cn) ? cn[0] : cn) ?? null)));
      res.on('error', reject);
    });
    req.setTimeout(10_000, () => req.destroy(new Error(`HTTPS to ${address}:${port} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

function ingress(name: string, host: string, service: string, opts: { tls?: string; passthrough?: boolean }): string {
  return `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: ${name}, namespace: default, annotations: ${JSON.stringify(opts.passthrough ? { [`${P}ssl-passthrough`]: 'true' } : {})} }
spec:
${opts.tls === undefined ? '' : `  tls: [{ hosts: [${host}], secretName: ${opts.tls} }]\n`}  rules:
    - host: ${host}
      http: { paths: [{ path: /, pathType: Prefix, backend: { service: { name: ${service}, port: { number: 80 } } } }] }
`;
}

describe('reloads keep listening sockets: no connection refused or reset', { timeout: 120_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  let xPort: number;
  let yPort: number;
  const echo: Record<string, Echo> = {};
  const backendCert = makeCert(dir, 'backend.internal', ['pass.example.com']);
  // The backend of pass.example.com, on one port: TLS with its own certificate (what passthrough
  // relays reach) or plaintext HTTP (what the gateway forwards when it terminates that host). So a
  // request the gateway terminated just before passthrough was switched on, and routed with the
  // new snapshot, still has a backend that speaks its protocol.
  const tlsBackend = https.createServer({ cert: backendCert.cert, key: backendCert.key }, (_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' }).end('tls-backend');
  });
  const plainBackend = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ name: 'secure' }));
  });
  const dualBackend = net.createServer((socket) => {
    socket.once('data', (chunk: Buffer) => {
      // A TLS record starts with 0x16 (handshake). Handed over as the gateway's own fronts do.
      if (chunk[0] === 0x16) {
        socket.pause();
        socket.unshift(chunk);
        tlsBackend.emit('connection', socket);
      } else {
        plainBackend.emit('connection', socket);
        socket.emit('data', chunk);
      }
    });
  });

  const ownGateway = (on: boolean) =>
    on
      ? `apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: { name: own, namespace: infra }
spec:
  gatewayClassName: meshgate
  addresses: [{ value: 127.0.0.7 }]
  listeners:
    - { name: http, port: 80, protocol: HTTP }
    - { name: https, port: 443, protocol: HTTPS, tls: { certificateRefs: [{ name: own-cert }] } }
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: { name: own, namespace: infra }
spec:
  parentRefs: [{ name: own }]
  rules: [{ backendRefs: [{ name: own, port: 80 }] }]
`
      : '';
  const passIngress = (on: boolean) => ingress('pass', 'pass.example.com', 'secure', { tls: 'gw-tls', passthrough: on });
  const xGateway = (tls: boolean) => `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: xgw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: ${xPort}, name: x, protocol: ${tls ? 'HTTPS' : 'HTTP'} }
      hosts: ["*"]
${tls ? '      tls: { mode: SIMPLE, credentialName: x-cert }\n' : ''}---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: x, namespace: istio-system }
spec:
  hosts: ["*"]
  gateways: [xgw]
  http: [{ route: [{ destination: { host: xport } }] }]
`;

  /** Port Y: an Istio server switching between HTTP (routed by the gateway) and TCP (relayed as bytes). */
  const yGateway = (tcp: boolean) => `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: ygw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: ${yPort}, name: y, protocol: ${tcp ? 'TCP' : 'HTTP'} }
      hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: y, namespace: istio-system }
spec:
  hosts: ["*"]
  gateways: [ygw]
${tcp ? '  tcp: [{ route: [{ destination: { host: xport } }] }]' : '  http: [{ route: [{ destination: { host: xport } }] }]'}
`;

  before(async () => {
    for (const name of ['plain', 'web', 'own', 'xport']) echo[name] = await startEchoServer({ name });
    await new Promise<void>((r) => dualBackend.listen(0, '127.0.0.1', r));
    xPort = await freePort();
    yPort = await freePort();
    writeConfig(dir, 'backends.yaml', [
      serviceYaml('plain', [echo.plain.port]),
      serviceYaml('web', [echo.web.port]),
      serviceYaml('secure', [(dualBackend.address() as AddressInfo).port]),
      serviceYaml('own', [echo.own.port], { namespace: 'infra' }),
      serviceYaml('xport', [echo.xport.port], { namespace: 'istio-system' }),
      tlsSecret('gw-tls', 'default', makeCert(dir, 'gateway.example.com', ['web.example.com', 'pass.example.com'])),
      tlsSecret('own-cert', 'infra', makeCert(dir, 'own.example.com', ['web.example.com'])),
      tlsSecret('x-cert', 'istio-system', makeCert(dir, 'x.example.com')),
      `apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: meshgate }
spec: { controllerName: meshgate.io/gateway-controller }
`,
    ].join('---\n'));
    writeConfig(dir, 'ingresses.yaml', `${ingress('plain', 'plain.example.com', 'plain', {})}---\n${ingress('web', 'web.example.com', 'web', { tls: 'gw-tls' })}`);
    writeConfig(dir, 'own.yaml', ownGateway(false));
    writeConfig(dir, 'pass.yaml', passIngress(false));
    writeConfig(dir, 'x.yaml', xGateway(false));
    writeConfig(dir, 'y.yaml', yGateway(false));
    gw = await startGateway({ configDir: dir, args: ['--bind-address', '0.0.0.0', '--gateway-bind-addresses', '127.0.0.0/8'] });
  });

  after(async () => {
    await gw?.stop();
    for (const e of Object.values(echo)) await e.close();
    tlsBackend.closeAllConnections();
    plainBackend.closeAllConnections();
    await new Promise<void>((r) => dualBackend.close(() => r()));
    removeDir(dir);
  });

  test('own-address Gateway, passthrough routes and HTTP/HTTPS switched repeatedly under client load: zero connection errors, zero failed requests', async (t) => {
    const adminUrl = `http://127.0.0.1:${gw.adminPort}/reloads`;
    const applied = async () => ((JSON.parse((await get(adminUrl)).body) as { reloads: { outcome: string }[] }).reloads.filter((r) => r.outcome === 'applied').length);
    // The starting config serves before the clients start.
    assert.equal((await httpAt('127.0.0.1', gw.httpPort, 'plain.example.com', false)).who, 'plain');

    const failures: string[] = [];
    const seen: Record<string, Set<string>> = {};
    let requests = 0;
    let stop = false;
    const fail = (what: string, detail: string) => {
      if (failures.length < 50) failures.push(`${what}: ${detail}`);
    };
    const note = (what: string, outcome: string) => {
      requests++;
      (seen[what] ??= new Set()).add(outcome);
    };
    /** A client loop: `once` answers the outcome, or throws; `allowed` lists the outcomes a transition may give. */
    const loop = async (what: string, allowed: string[], once: () => Promise<string>, gone: () => boolean = () => false) => {
      while (!stop && !gone()) {
        try {
          const outcome = await once();
          if (!allowed.includes(outcome)) fail(what, `answered ${outcome}, expected one of ${allowed.join(' | ')}`);
          note(what, outcome);
        } catch (e) {
          fail(what, `${(e as NodeJS.ErrnoException).code ?? ''} ${(e as Error).message}`);
          // A failure can be immediate (a closed session): give the event loop a turn.
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 2 });
    const keepAliveTls = new https.Agent({ keepAlive: true, maxSockets: 2 });
    const h2 = http2.connect(`https://127.0.0.1:${gw.httpsPort}`, { servername: 'web.example.com', rejectUnauthorized: false });
    let h2Closed = false;
    h2.on('error', (e) => fail('h2 session', e.message));
    h2.on('goaway', (code) => fail('h2 session', `GOAWAY ${code}`));
    h2.on('close', () => {
      h2Closed = true;
      if (!stop) fail('h2 session', 'closed by the gateway');
    });
    const h2Once = () =>
      new Promise<string>((resolve, reject) => {
        const s = h2.request({ ':path': '/', ':authority': 'web.example.com' });
        let status = 0;
        let body = '';
        s.on('response', (h) => (status = Number(h[':status'])));
        s.on('data', (c: Buffer) => (body += c.toString()));
        s.on('end', () => resolve(`${status} ${answerOf(status, body, null).who}`));
        s.on('error', reject);
        s.on('close', () => reject(new Error(`HTTP/2 stream closed (code ${s.rstCode})`)));
        s.setTimeout(10_000, () => s.close(http2.constants.NGHTTP2_CANCEL));
        s.end();
      });
    /** The port switching between HTTP and HTTPS: the protocol last seen first; a protocol mismatch is retried with the other one. */
    let xTls = false;
    const xOnce = async (): Promise<string> => {
      const errors: string[] = [];
      for (let i = 0; i < 4; i++) {
        try {
          const a = xTls ? await httpsAt('127.0.0.1', xPort, 'x.example.com', false) : await httpAt('127.0.0.1', xPort, 'x.example.com', false);
          return `${a.status} ${a.who} ${xTls ? 'https' : 'http'}`;
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code ?? '';
          // A refused connection is never a protocol mismatch.
          if (code === 'ECONNREFUSED') throw e;
          errors.push(`${xTls ? 'https' : 'http'}: ${code} ${(e as Error).message}`);
          xTls = !xTls;
        }
      }
      throw new Error(`neither HTTP nor HTTPS answered: ${errors.join('; ')}`);
    };

    const clients = [
      loop('HTTP 127.0.0.1 (short)', ['200 plain'], async () => {
        const a = await httpAt('127.0.0.1', gw.httpPort, 'plain.example.com', false);
        return `${a.status} ${a.who}`;
      }),
      loop('HTTP 127.0.0.1 (short)', ['200 plain'], async () => {
        const a = await httpAt('127.0.0.1', gw.httpPort, 'plain.example.com', false);
        return `${a.status} ${a.who}`;
      }),
      loop('HTTP 127.0.0.7 (short)', ['200 own', '200 plain'], async () => {
        const a = await httpAt('127.0.0.7', gw.httpPort, 'plain.example.com', false);
        return `${a.status} ${a.who}`;
      }),
      loop('HTTPS 127.0.0.1 web (short)', ['200 web gateway.example.com'], async () => {
        const a = await httpsAt('127.0.0.1', gw.httpsPort, 'web.example.com', false);
        return `${a.status} ${a.who} ${a.cn}`;
      }),
      loop('HTTPS 127.0.0.7 web (short)', ['200 own own.example.com', '200 web gateway.example.com'], async () => {
        const a = await httpsAt('127.0.0.7', gw.httpsPort, 'web.example.com', false);
        return `${a.status} ${a.who} ${a.cn}`;
      }),
      loop('HTTPS 127.0.0.1 pass (short)', ['200 tls-backend backend.internal', '200 secure gateway.example.com'], async () => {
        const a = await httpsAt('127.0.0.1', gw.httpsPort, 'pass.example.com', false);
        return `${a.status} ${a.who} ${a.cn}`;
      }),
      loop('HTTP 127.0.0.1 (keep-alive)', ['200 plain'], async () => {
        const a = await httpAt('127.0.0.1', gw.httpPort, 'plain.example.com', keepAlive);
        return `${a.status} ${a.who}`;
      }),
      loop('HTTP 127.0.0.1 (keep-alive)', ['200 plain'], async () => {
        const a = await httpAt('127.0.0.1', gw.httpPort, 'plain.example.com', keepAlive);
        return `${a.status} ${a.who}`;
      }),
      loop('HTTPS 127.0.0.1 web (keep-alive)', ['200 web gateway.example.com'], async () => {
        const a = await httpsAt('127.0.0.1', gw.httpsPort, 'web.example.com', keepAliveTls);
        return `${a.status} ${a.who} ${a.cn}`;
      }),
      loop('HTTP/2 127.0.0.1 web (one session)', ['200 web'], h2Once, () => h2Closed),
      loop(`port X (HTTP or HTTPS)`, ['200 xport http', '200 xport https'], xOnce),
    ];

    // The config changes, one transition at a time, each waited for until applied.
    const state = { own: false, pass: false, xTls: false };
    let reloads = 0;
    const t0 = Date.now();
    try {
      for (let step = 0; Date.now() - t0 < RUN_MS || step < 6; step++) {
        const before = await applied();
        if (step % 3 === 0) writeConfig(dir, 'own.yaml', ownGateway((state.own = !state.own)));
        else if (step % 3 === 1) writeConfig(dir, 'pass.yaml', passIngress((state.pass = !state.pass)));
        else writeConfig(dir, 'x.yaml', xGateway((state.xTls = !state.xTls)));
        const deadline = Date.now() + 10_000;
        while ((await applied()) <= before) {
          if (Date.now() > deadline) throw new Error(`step ${step}: no reload applied within 10 s`);
          await new Promise((r) => setTimeout(r, 20));
        }
        reloads++;
        // Let the clients work on this config for a moment (reloads still come faster than a drain ends).
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      stop = true;
      await Promise.all(clients);
      keepAlive.destroy();
      keepAliveTls.destroy();
      h2.close();
    }

    const summary = Object.entries(seen).map(([k, v]) => `${k}: ${[...v].join(' | ')}`).join('\n');
    t.diagnostic(`${requests} requests answered across ${reloads} reloads in ${Date.now() - t0} ms`);
    assert.deepEqual(failures, [], `failed connections or requests during ${reloads} reloads (${requests} requests answered):\n${summary}\ngateway output:\n${gw.output().slice(-3000)}`);
    assert.ok(requests > 200, `only ${requests} requests answered in ${reloads} reloads`);
    // The transitions really happened while the clients ran.
    assert.deepEqual([...(seen['HTTP 127.0.0.7 (short)'] ?? [])].sort(), ['200 own', '200 plain'], summary);
    assert.deepEqual([...(seen['HTTPS 127.0.0.1 pass (short)'] ?? [])].sort(), ['200 secure gateway.example.com', '200 tls-backend backend.internal'], summary);
    assert.deepEqual([...(seen['port X (HTTP or HTTPS)'] ?? [])].sort(), ['200 xport http', '200 xport https'], summary);
  });

  test('a port switched between an HTTP server and a TCP server under client load: every connection accepted and answered', async (t) => {
    const adminUrl = `http://127.0.0.1:${gw.adminPort}/reloads`;
    const applied = async () => ((JSON.parse((await get(adminUrl)).body) as { reloads: { outcome: string }[] }).reloads.filter((r) => r.outcome === 'applied').length);
    const failures: string[] = [];
    const seen = new Set<string>();
    let requests = 0;
    let stop = false;
    // The same HTTP request either way: routed by the gateway (which adds x-forwarded-for on its way to the backend) or relayed to the backend as bytes.
    const loop = async () => {
      while (!stop) {
        try {
          const r = await new Promise<string>((resolve, reject) => {
            const req = http.request({ host: '127.0.0.1', port: yPort, path: '/', headers: { host: 'y.example.com' }, agent: false }, (res) => {
              let body = '';
              res.on('data', (c: Buffer) => (body += c.toString()));
              res.on('end', () => {
                let routed = false;
                try {
                  routed = (JSON.parse(body) as { headers: Record<string, unknown> }).headers['x-forwarded-for'] !== undefined;
                } catch {
                  // Not the echo backend's JSON: answerOf says what it was.
                }
                resolve(`${res.statusCode} ${answerOf(res.statusCode ?? 0, body, null).who} ${routed ? 'http' : 'tcp'}`);
              });
              res.on('error', reject);
            });
            req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
            req.on('error', reject);
            req.end();
          });
          requests++;
          seen.add(r);
          if (!r.startsWith('200 xport')) failures.push(`answered ${r}`);
        } catch (e) {
          if (failures.length < 50) failures.push(`${(e as NodeJS.ErrnoException).code ?? ''} ${(e as Error).message}`);
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    };
    const clients = [loop(), loop(), loop()];
    let tcp = false;
    let reloads = 0;
    const t0 = Date.now();
    try {
      for (let step = 0; Date.now() - t0 < 3000 || step < 4; step++) {
        const before = await applied();
        writeConfig(dir, 'y.yaml', yGateway((tcp = !tcp)));
        const deadline = Date.now() + 10_000;
        while ((await applied()) <= before) {
          if (Date.now() > deadline) throw new Error(`step ${step}: no reload applied within 10 s`);
          await new Promise((r) => setTimeout(r, 20));
        }
        reloads++;
        await new Promise((r) => setTimeout(r, 150));
      }
    } finally {
      stop = true;
      await Promise.all(clients);
    }
    t.diagnostic(`${requests} requests answered across ${reloads} reloads in ${Date.now() - t0} ms`);
    assert.deepEqual(failures, [], `failed connections or requests (${requests} answered: ${[...seen].join(' | ')})\ngateway output:\n${gw.output().slice(-3000)}`);
    assert.deepEqual([...seen].sort(), ['200 xport http', '200 xport tcp']);
  });
});
