/**
 * TCP and TLS passthrough through the real `meshgate run` process: an Istio Gateway with a TCP
 * server (VirtualService `tcp` routes) and a TLS PASSTHROUGH server (VirtualService `tls` routes
 * on sniHosts). Bytes and half-close are relayed faithfully; TLS is never terminated (the client
 * sees the backend's own certificate); an unknown SNI is closed cleanly; a ClientHello written one
 * byte at a time is still read. With observability on, every connection is counted in the istio_tcp_*
 * metrics (opened, closed, bytes both ways) and gets one access-log line with the TCP fields.
 */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { parsePrometheus } from '../../src/admin/dashboard/stats.js';
import { type GatewayProcess, get, removeDir, serviceYaml, startGateway, tempDir, waitFor, writeConfig } from '../helpers/gateway.js';
import { within } from '../support/http-client.js';
import { makeCerts } from '../support/tls-certs.js';
import { startSummingBackend } from '../support/tcp-backends.js';
import { needs } from '../support/requires.js';

/** A TLS server that says which one it is and echoes. */
async function startTlsBackend(name: string, cert: { certChain: string; privateKey: string }): Promise<{ port: number; close(): Promise<void> }> {
  const server = tls.createServer({ cert: cert.certChain, key: cert.privateKey }, (s) => {
    s.write(`hello from ${name}\n`);
    s.on('data', (c: Buffer) => s.write(c));
    s.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}

/** A TCP Service on port 9000 with one endpoint, 127.0.0.1:`port`. */
const service = (name: string, port: number) => serviceYaml(name, [port], { servicePort: 9000, portName: 'tcp' });

/** A TLS client; resolves with the certificate CN the peer showed and its first line. */
function tlsHello(port: number, servername: string, socket?: Duplex): Promise<{ cn: string; line: string }> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ ...(socket ? { socket } : { host: '127.0.0.1', port }), servername, rejectUnauthorized: false });
    s.setEncoding('utf8');
    let data = '';
    s.on('data', (d: string) => {
      data += d;
      if (data.includes('\n')) {
        const cn = String(s.getPeerCertificate().subject?.CN ?? '');
        s.destroy();
        resolve({ cn, line: data.split('\n')[0] });
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error('closed before a line arrived')));
  });
}

describe('TCP and TLS passthrough through meshgate run', { timeout: 60_000 }, () => {
  const dir = tempDir();
  let gw: GatewayProcess;
  const closers: (() => Promise<void>)[] = [];

  before(async () => {
    const echo = await startSummingBackend('echo');
    const [ca, cb] = makeCerts(['a.example.com', 'b.example.com']);
    const a = await startTlsBackend('a', ca);
    const b = await startTlsBackend('b', cb);
    closers.push(echo.close, a.close, b.close);
    writeConfig(dir, 'all.yaml', [service('echo', echo.port), service('tls-a', a.port), service('tls-b', b.port), service('nowhere', 1)].join('---\n') + `---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: tcp, protocol: TCP }
      hosts: ["*"]
    - port: { number: 443, name: tls, protocol: TLS }
      hosts: ["*.example.com"]
      tls: { mode: PASSTHROUGH }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: tcp, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  tcp:
    - match: [{ port: 80, destinationSubnets: [10.0.0.0/8] }]
      route: [{ destination: { host: nowhere } }]
    - match: [{ port: 80 }]
      route: [{ destination: { host: echo } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: passthrough, namespace: default }
spec:
  hosts: [a.example.com, b.example.com]
  gateways: [istio-system/gw]
  tls:
    - match: [{ port: 443, sniHosts: [a.example.com] }]
      route: [{ destination: { host: tls-a } }]
    - match: [{ port: 443, sniHosts: [b.example.com] }]
      route: [{ destination: { host: tls-b } }]
`);
    gw = await startGateway({ configDir: dir, waitReady: true, args: ['--access-log', 'stdout'] });
  });
  after(async () => {
    await gw?.stop();
    for (const c of closers) await c();
    removeDir(dir);
  });

  test('TCP: 4 MiB relayed byte for byte, and the half-close: the answer sent after the client FIN arrives', async () => {
    const payload = randomBytes(4 * 1024 * 1024);
    const want = createHash('sha256').update(payload).digest('hex');
    const answer = await within(20_000, new Promise<string>((resolve, reject) => {
      const s = net.connect({ port: gw.httpPort, host: '127.0.0.1', allowHalfOpen: true });
      let out = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => (out += d));
      s.on('end', () => {
        s.end();
        resolve(out);
      });
      s.on('error', reject);
      s.on('connect', () => s.end(payload));
    }), 'tcp exchange');
    assert.equal(answer, `echo bytes=${payload.length} sha=${want}`, 'the backend saw every byte, then our FIN, and its answer came back after it');
  });

  test('TLS passthrough: the backend chosen by SNI terminates TLS itself (its own certificate is shown)', async () => {
    const a = await within(10_000, tlsHello(gw.httpsPort, 'a.example.com'), 'sni a');
    assert.deepEqual(a, { cn: 'a.example.com', line: 'hello from a' });
    const b = await within(10_000, tlsHello(gw.httpsPort, 'b.example.com'), 'sni b');
    assert.deepEqual(b, { cn: 'b.example.com', line: 'hello from b' });
  });

  test('TLS passthrough: unknown SNI is closed cleanly, nothing is sent', async () => {
    const got = await within(10_000, new Promise<{ bytes: number; how: string }>((resolve) => {
      const raw = net.connect(gw.httpsPort, '127.0.0.1');
      let bytes = 0;
      raw.on('data', (d: Buffer) => (bytes += d.length));
      const t = tls.connect({ socket: raw, servername: 'unknown.example.com', rejectUnauthorized: false });
      t.on('error', (e: Error & { code?: string }) => resolve({ bytes, how: e.code ?? e.message }));
      t.on('secureConnect', () => resolve({ bytes, how: 'handshake completed' }));
    }), 'unknown sni');
    assert.equal(got.bytes, 0, 'the gateway writes nothing back');
    assert.notEqual(got.how, 'handshake completed');
  });

  test('TLS passthrough: a ClientHello written one byte at a time is still routed by its SNI', async () => {
    const raw = net.connect(gw.httpsPort, '127.0.0.1');
    raw.setNoDelay(true);
    const slow = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        void (async () => {
          for (const byte of chunk) {
            raw.write(Buffer.from([byte]));
            await new Promise((r) => setImmediate(r));
          }
          cb();
        })();
      },
    });
    raw.on('data', (d: Buffer) => slow.push(d));
    raw.on('end', () => slow.push(null));
    await new Promise<void>((r) => raw.once('connect', () => r()));
    try {
      const r = await within(15_000, tlsHello(0, 'b.example.com', slow), 'split hello');
      assert.deepEqual(r, { cn: 'b.example.com', line: 'hello from b' });
    } finally {
      raw.destroy();
    }
  });

  test('openssl s_client sees the backend certificate through the gateway', { skip: needs('openssl') }, async () => {
    const out = await new Promise<string>((resolve) => {
      const p = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${gw.httpsPort}`, '-servername', 'a.example.com'], { timeout: 10_000 }, (_e, stdout) => resolve(stdout));
      p.stdin?.end('Q\n');
    });
    assert.match(out, /subject=CN = a\.example\.com/, `expected the backend's certificate, got:\n${out.slice(0, 400)}`);
  });

  test('observability: istio_tcp_* metrics with the destination labels, and one access-log line per connection', async () => {
    const payload = randomBytes(10_000);
    const before = gw.output().split('\n').filter((l) => l.includes('virtualservice/default/tcp/tcp/1')).length;
    const answers: string[] = [];
    for (let i = 0; i < 3; i++) {
      answers.push(await within(10_000, new Promise<string>((resolve, reject) => {
        const s = net.connect({ port: gw.httpPort, host: '127.0.0.1', allowHalfOpen: true });
        let out = '';
        s.setEncoding('utf8');
        s.on('data', (d: string) => (out += d));
        s.on('end', () => {
          s.end();
          resolve(out);
        });
        s.on('error', reject);
        s.on('connect', () => s.end(payload));
      }), 'tcp exchange'));
    }
    const answerBytes = Buffer.byteLength(answers[0]);
    const lines = (): string[] => gw.output().split('\n').filter((l) => l.startsWith('[') && l.includes('virtualservice/default/tcp/tcp/1'));
    await waitFor(() => lines().length >= before + 3, 5000, 'three access-log lines');
    // Istio's default TEXT format: the HTTP fields are "-", the code 0, then bytes received and sent.
    const line = lines().at(-1)!;
    assert.match(line, new RegExp(`^\\[[^\\]]+\\] "- - -" 0 - - - "-" ${payload.length} ${answerBytes} \\d+ - "-" "-" "-" "-" "127\\.0\\.0\\.1:\\d+" outbound\\|9000\\|\\|echo\\.default\\.svc\\.cluster\\.local - 127\\.0\\.0\\.1:${gw.httpPort} 127\\.0\\.0\\.1:\\d+ - virtualservice/default/tcp/tcp/1$`), line);

    const labels = { destination_service: 'echo.default.svc.cluster.local', destination_service_namespace: 'default', request_protocol: 'tcp', reporter: 'source', response_flags: '-' };
    const sum = (samples: ReturnType<typeof parsePrometheus>, name: string): number =>
      samples.filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v)).reduce((n, x) => n + x.value, 0);
    let samples: ReturnType<typeof parsePrometheus> = [];
    await waitFor(async () => {
      samples = parsePrometheus((await get(`http://127.0.0.1:${gw.adminPort}/metrics`)).body);
      return sum(samples, 'istio_tcp_connections_closed_total') >= 4;
    }, 5000, 'closed connections counted');
    // The 4 MiB test's connection plus these three, to the echo cluster.
    assert.equal(sum(samples, 'istio_tcp_connections_opened_total'), 4);
    assert.equal(sum(samples, 'istio_tcp_connections_closed_total'), 4);
    assert.equal(sum(samples, 'istio_tcp_received_bytes_total'), 4 * 1024 * 1024 + 3 * payload.length);
    assert.ok(sum(samples, 'istio_tcp_sent_bytes_total') >= 3 * answerBytes);
  });

  test('observability: an unknown SNI is logged with flag NR and its SNI', async () => {
    await within(10_000, new Promise<void>((resolve) => {
      const t = tls.connect({ port: gw.httpsPort, host: '127.0.0.1', servername: 'nr.example.com', rejectUnauthorized: false });
      t.on('error', () => resolve());
      t.on('close', () => resolve());
    }), 'unknown sni');
    await waitFor(() => gw.output().includes(' nr.example.com -\n'), 5000, 'the NR line');
    const line = gw.output().split('\n').find((l) => l.includes(' nr.example.com -'))!;
    assert.match(line, /"- - -" 0 NR /, line);
    // Istio labels TCP series with the connection's response flags.
    await waitFor(async () => {
      const samples = parsePrometheus((await get(`http://127.0.0.1:${gw.adminPort}/metrics`)).body);
      return samples.some((x) => x.name === 'istio_tcp_connections_closed_total' && x.labels.response_flags === 'NR' && x.value >= 1);
    }, 5000, 'istio_tcp_connections_closed_total{response_flags="NR"}');
  });
});
