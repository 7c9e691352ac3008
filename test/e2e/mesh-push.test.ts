/**
 * The config push (issue 16, "Config push"; reference/mesh.md §2.11) over real sockets: a real
 * `meshgate control` started in-process on a temporary config directory and CA directory, real
 * `ConfigPushClient`s over TLS gRPC, the admin's `/debug/proxy-status` and the `meshgate
 * proxy-status` command. The per-proxy view is the test's own function of the ResourceSet (the
 * real one, translateSidecar, is wired at merge): one cluster per Service port, so a config
 * change is visible in the view; a Service annotated `test.meshgate.io/poison` makes an invalid
 * view (endpoint port 0) that `validateIR` refuses on the client.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { CLI, tempDir, waitFor, writeConfig } from '../helpers/gateway.js';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import { createSelfSignedRoot } from '../../src/mesh/ca/ca.js';
import { ConfigPushClient } from '../../src/mesh/push/client.js';
import { configPushClient, type PushRequest, type PushResponse } from '../../src/mesh/push/proto.js';
import type { Diagnostic } from '../../src/lib/diagnostic.js';
import type { ProxyStatusReport, SidecarProxyMeta, SidecarTranslate } from '../../src/mesh/push/types.js';
import { formatProxyStatus } from '../../src/mesh/push/proxy-status.js';
import { ConfigPushServer } from '../../src/mesh/push/server.js';
import { configPushService } from '../../src/mesh/push/proto.js';
import { ResourceSet } from '../../src/resources/resource-set.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import { clusterNames, testTranslate } from '../support/push-view.js';
import { Logger } from '../../src/lib/log.js';

const quiet = new Logger('error');
function serviceYaml(name: string, ports: number[], annotations: Record<string, string> = {}): string {
  const ann = Object.keys(annotations).length === 0 ? '' : `\n  annotations:\n${Object.entries(annotations).map(([k, v]) => `    ${k}: "${v}"`).join('\n')}`;
  return `apiVersion: v1\nkind: Service\nmetadata:\n  name: ${name}\n  namespace: shop${ann}\nspec:\n  selector:\n    app: ${name}\n  ports:\n${ports.map((p) => `  - name: http-${p}\n    port: ${p}`).join('\n')}\n`;
}

interface Env {
  configDir: string;
  caDir: string;
  cp: ControlPlane;
  start(port?: number): Promise<ControlPlane>;
}

async function controlPlane(opts: { debounceAfterMs?: number; debounceMaxMs?: number; files?: Record<string, string>; translate?: SidecarTranslate } = {}): Promise<Env> {
  const configDir = tempDir('meshgate-push-config-');
  const caDir = path.join(tempDir('meshgate-push-ca-'), 'ca');
  for (const [f, t] of Object.entries(opts.files ?? { 'svc.yaml': serviceYaml('reviews', [9080]) })) writeConfig(configDir, f, t);
  const env = {
    configDir,
    caDir,
    cp: null as unknown as ControlPlane,
    async start(port = 0): Promise<ControlPlane> {
      env.cp = await startControlPlane({
        configDir,
        caDir,
        listenHost: '127.0.0.1',
        listenPort: port,
        trustDomain: 'cluster.local',
        adminPort: 0,
        certTtlSeconds: 3600,
        translate: { ...DEFAULT_TRANSLATE_OPTIONS },
        log: quiet,
        sidecarTranslate: opts.translate ?? testTranslate,
        ...(opts.debounceAfterMs !== undefined ? { pushDebounce: { afterMs: opts.debounceAfterMs, maxMs: opts.debounceMaxMs ?? 10_000 } } : {}),
      });
      return env.cp;
    },
  };
  await env.start();
  return env;
}

/** A sidecar stand-in: a real ConfigPushClient whose `apply` keeps the view it serves (and can refuse). */
interface Sidecar {
  client: ConfigPushClient;
  /** The view "serving" (what apply last accepted). */
  serving: IRSnapshot | null;
  /** Each applied version with the time it was applied (performance.now()). */
  appliedAt: Map<string, number>;
  refuse: ((ir: IRSnapshot) => string | null) | null;
  /** `connected` events seen (the control plane accepted a hello). */
  accepted: number;
}

async function sidecar(cp: ControlPlane, meta: Partial<SidecarProxyMeta> & { serviceAccount: string; podName: string }, opts: { token?: string | null; rootCertPem?: string; address?: string; clientCertificate?: { certChainPem: string; keyPem: string } } = {}): Promise<Sidecar> {
  const proxy: SidecarProxyMeta = { namespace: 'shop', podIps: ['10.1.0.9'], trustDomain: 'cluster.local', ...meta };
  const tokenFile = path.join(tempDir('meshgate-push-token-'), 'istio-token');
  // token null: no token file at all (the certificate is the only credential).
  if (opts.token !== null) writeFileSync(tokenFile, opts.token ?? (await issueToken(cp.ca.material.signingKey, { namespace: proxy.namespace, serviceAccount: proxy.serviceAccount }, 600)));
  const s: Sidecar = { client: null as unknown as ConfigPushClient, serving: null, appliedAt: new Map(), refuse: null, accepted: 0 };
  s.client = new ConfigPushClient({
    address: opts.address ?? `127.0.0.1:${cp.grpcPort}`,
    rootCertPem: opts.rootCertPem ?? cp.ca.rootCertPem,
    tokenFile,
    proxy,
    log: quiet,
    initialBackoffMs: 100,
    maxBackoffMs: 1000,
    ...(opts.clientCertificate !== undefined ? { clientCertificate: () => opts.clientCertificate! } : {}),
    apply: (ir) => {
      const why = s.refuse?.(ir) ?? null;
      if (why !== null) throw new Error(why);
      s.serving = ir;
      s.appliedAt.set(ir.version, performance.now());
    },
  });
  s.client.on('connected', () => s.accepted++);
  s.client.start();
  return s;
}

async function proxyStatus(cp: ControlPlane): Promise<ProxyStatusReport> {
  const res = await fetch(`http://127.0.0.1:${cp.adminPort}/debug/proxy-status`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return (await res.json()) as ProxyStatusReport;
}

/** Resolves with the time the client applies a view satisfying `ok` (checks the current one first). */
function nextApplied(s: Sidecar, ok: (ir: IRSnapshot) => boolean, timeoutMs: number, what: string): Promise<number> {
  if (s.serving !== null && ok(s.serving)) return Promise.resolve(s.appliedAt.get(s.serving.version) ?? performance.now());
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      s.client.off('applied', on);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; serving ${JSON.stringify(clusterNames(s.serving))}`));
    }, timeoutMs);
    const on = () => {
      if (s.serving !== null && ok(s.serving)) {
        clearTimeout(timer);
        s.client.off('applied', on);
        resolve(s.appliedAt.get(s.serving.version) ?? performance.now());
      }
    };
    s.client.on('applied', on);
  });
}

function nextEvent(s: Sidecar, event: 'rejected' | 'disconnected' | 'connected', timeoutMs: number): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    s.client.once(event, (...args: unknown[]) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

const has = (name: string) => (ir: IRSnapshot) => clusterNames(ir).includes(name);

test('first view, a file change and a rename-replace reach every connected sidecar in under 1 s; proxy-status lists them with versions', async () => {
  const env = await controlPlane();
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-7d9f' });
  const b = await sidecar(env.cp, { serviceAccount: 'web', podName: 'web-5c4b', podIps: ['10.1.0.10'] });
  try {
    await Promise.all([a.client.whenReady(10_000), b.client.whenReady(10_000)]);
    assert.deepEqual(clusterNames(a.serving), ['outbound|9080||reviews.shop.svc.cluster.local']);
    assert.equal(a.serving?.sidecar?.proxy.spiffeId, 'spiffe://cluster.local/ns/shop/sa/cart', 'the view is not the proxy\'s own');
    assert.equal(b.serving?.sidecar?.proxy.spiffeId, 'spiffe://cluster.local/ns/shop/sa/web');
    assert.ok(a.client.connected && b.client.connected);

    // In-place write.
    const t0 = performance.now();
    writeFileSync(path.join(env.configDir, 'svc.yaml'), serviceYaml('reviews', [9080, 9081]));
    const want = has('outbound|9081||reviews.shop.svc.cluster.local');
    const [ta, tb] = await Promise.all([nextApplied(a, want, 5000, 'port 9081 at a'), nextApplied(b, want, 5000, 'port 9081 at b')]);
    const inPlace = Math.max(ta, tb) - t0;

    // Replace by rename (what kubectl's ConfigMap volume updates and editors' atomic saves do).
    const t1 = performance.now();
    const tmp = path.join(env.configDir, '.svc.yaml.tmp');
    writeFileSync(tmp, serviceYaml('ratings', [8080]));
    renameSync(tmp, path.join(env.configDir, 'svc.yaml'));
    const want2 = (ir: IRSnapshot) => clusterNames(ir).join(',') === 'outbound|8080||ratings.shop.svc.cluster.local';
    const [ra, rb] = await Promise.all([nextApplied(a, want2, 5000, 'ratings at a'), nextApplied(b, want2, 5000, 'ratings at b')]);
    const renamed = Math.max(ra, rb) - t1;
    console.log(`# config change -> both sidecars: in-place ${inPlace.toFixed(0)} ms, rename-replace ${renamed.toFixed(0)} ms`);
    assert.ok(inPlace < 1000, `in-place change took ${inPlace.toFixed(0)} ms to reach both sidecars (want < 1000)`);
    assert.ok(renamed < 1000, `rename-replace took ${renamed.toFixed(0)} ms to reach both sidecars (want < 1000)`);

    // proxy-status: both proxies, SYNCED at the version each runs.
    await waitFor(async () => (await proxyStatus(env.cp)).proxies.every((p) => p.state === 'SYNCED'), 5000, 'both proxies SYNCED');
    const report = await proxyStatus(env.cp);
    assert.deepEqual(report.proxies.map((p) => p.name), ['cart-7d9f.shop', 'web-5c4b.shop']);
    const [pa, pb] = report.proxies;
    assert.equal(pa.ackedVersion, a.client.version);
    assert.equal(pa.sentVersion, a.client.version);
    assert.equal(pb.ackedVersion, b.client.version);
    assert.notEqual(a.client.version, b.client.version, 'two proxies got the same view');
    assert.equal(pa.identity, 'spiffe://cluster.local/ns/shop/sa/cart');
    assert.deepEqual(pa.proxy.podIps, ['10.1.0.9']);
    assert.equal(pa.pushes, 3, 'each version is pushed once');
    assert.equal(pa.lastNack, null);

    // The CLI prints them as a table.
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [CLI, 'proxy-status', ...args], { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr })),
      );
    const run = await cli(['--admin', `127.0.0.1:${env.cp.adminPort}`]);
    assert.equal(run.code, 0, run.stderr);
    const out = run.stdout;
    const lines = out.trim().split('\n');
    assert.match(lines[0], /^NAME\s+STATE\s+SENT\s+RUNNING\s+CONNECTED\s+IDENTITY\s+LAST NACK$/);
    assert.match(lines[1], new RegExp(`^cart-7d9f\\.shop\\s+SYNCED\\s+${a.client.version}\\s+${a.client.version}\\s+\\d+s\\s+spiffe://cluster\\.local/ns/shop/sa/cart\\s+-$`));
    assert.match(lines[2], /^web-5c4b\.shop\s+SYNCED\s/);
    const json = await cli(['--admin', `127.0.0.1:${env.cp.adminPort}`, '--output', 'json']);
    assert.deepEqual((JSON.parse(json.stdout) as ProxyStatusReport).proxies.map((p) => [p.name, p.ackedVersion]), [['cart-7d9f.shop', a.client.version], ['web-5c4b.shop', b.client.version]]);
    // Nobody listening: exit 1 and say where it looked.
    const down = await cli(['--admin', '127.0.0.1:1']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach the control plane's admin at 127\.0\.0\.1:1/);

    // Prometheus metrics on the same admin port.
    const metrics = await (await fetch(`http://127.0.0.1:${env.cp.adminPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
    const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    assert.equal(metric('meshgate_push_connected_proxies'), 2, metrics);
    assert.equal(metric('meshgate_push_views_total'), 6, 'two proxies, three versions each');
    assert.equal(metric('meshgate_push_convergence_seconds_count'), 4, 'the two changes, for two proxies');
    assert.ok(metric('meshgate_push_convergence_seconds_sum') < 4, `convergence sum ${metric('meshgate_push_convergence_seconds_sum')} s`);
    assert.equal(metric('meshgate_push_nacks_total'), 0);

    // A sidecar that leaves is no longer listed.
    await b.client.stop();
    await waitFor(async () => (await proxyStatus(env.cp)).proxies.length === 1, 5000, 'the stopped proxy to leave proxy-status');
  } finally {
    await a.client.stop();
    await b.client.stop();
    await env.cp.stop();
  }
});

test('a ConfigMap volume update (the ..data symlink swapped by rename, as the kubelet does) reaches the sidecar in under 1 s', async () => {
  const env = await controlPlane({ files: {} });
  // The kubelet's layout: <dir>/..<timestamp>/file, ..data -> ..<timestamp>, file -> ..data/file.
  const dir = env.configDir;
  const version = (name: string, text: string) => {
    mkdirSync(path.join(dir, name));
    writeFileSync(path.join(dir, name, 'svc.yaml'), text);
  };
  version('..2026_12_07_11_00_00.1', serviceYaml('reviews', [9080]));
  symlinkSync('..2026_12_07_11_00_00.1', path.join(dir, '..data'));
  symlinkSync('..data/svc.yaml', path.join(dir, 'svc.yaml'));
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-1' });
  try {
    await nextApplied(a, has('outbound|9080||reviews.shop.svc.cluster.local'), 10_000, 'the first view from the volume');
    version('..2026_12_07_11_05_00.2', serviceYaml('reviews', [9080, 9443]));
    const t0 = performance.now();
    symlinkSync('..2026_12_07_11_05_00.2', path.join(dir, '..data_tmp'));
    renameSync(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
    const t = (await nextApplied(a, has('outbound|9443||reviews.shop.svc.cluster.local'), 5000, 'the swapped volume')) - t0;
    console.log(`# ConfigMap volume swap -> sidecar: ${t.toFixed(0)} ms`);
    assert.ok(t < 1000, `the volume swap took ${t.toFixed(0)} ms to reach the sidecar (want < 1000)`);
  } finally {
    await a.client.stop();
    await env.cp.stop();
  }
});

test('a view the sidecar rejects is NACKed with its error, shown in proxy-status, and the previous view keeps serving', async () => {
  const env = await controlPlane();
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-1' });
  try {
    await a.client.whenReady(10_000);
    const good = a.client.version;
    assert.ok(good !== null);

    // 1. An invalid view (endpoint port 0): refused by validateIR on the sidecar.
    const rejected = nextEvent(a, 'rejected', 5000);
    writeConfig(env.configDir, 'bad.yaml', serviceYaml('broken', [7070], { 'test.meshgate.io/poison': 'yes' }));
    const [version, error] = (await rejected) as [string, string];
    assert.notEqual(version, good);
    assert.match(error, /invalid view: cluster outbound\|7070\|\|broken\.shop\.svc\.cluster\.local: endpoint 10\.1\.0\.1 has invalid port 0/);
    assert.equal(a.client.version, good, 'the rejected view replaced the running one');
    assert.deepEqual(clusterNames(a.serving), ['outbound|9080||reviews.shop.svc.cluster.local']);
    await waitFor(async () => (await proxyStatus(env.cp)).proxies[0]?.state === 'ERROR', 5000, 'proxy-status ERROR');
    const p = (await proxyStatus(env.cp)).proxies[0];
    assert.equal(p.sentVersion, version);
    assert.equal(p.ackedVersion, good, 'proxy-status does not show the version the proxy runs');
    assert.equal(p.lastNack?.version, version);
    assert.match(p.lastNack?.error ?? '', /invalid port 0/);
    assert.match(formatProxyStatus(await proxyStatus(env.cp)), /ERROR .*invalid view/);
    assert.match(await (await fetch(`http://127.0.0.1:${env.cp.adminPort}/metrics`)).text(), /^meshgate_push_nacks_total 1$/m);

    // 2. A valid view the runtime refuses (apply throws): its message is the NACK's detail.
    a.refuse = (ir) => (clusterNames(ir).some((n) => n.includes('payments')) ? 'payments: port 8443 is reserved by the test runtime' : null);
    const rejected2 = nextEvent(a, 'rejected', 5000);
    writeConfig(env.configDir, 'bad.yaml', serviceYaml('payments', [8443]));
    const [v2, e2] = (await rejected2) as [string, string];
    assert.equal(e2, 'payments: port 8443 is reserved by the test runtime');
    assert.equal(a.client.version, good);
    await waitFor(async () => (await proxyStatus(env.cp)).proxies[0]?.lastNack?.version === v2, 5000, 'the second NACK in proxy-status');
    assert.equal((await proxyStatus(env.cp)).proxies[0].lastNack?.error, 'payments: port 8443 is reserved by the test runtime');

    // 3. A fixed config is applied and ACKed; the proxy is SYNCED again.
    writeConfig(env.configDir, 'bad.yaml', serviceYaml('details', [9090]));
    await nextApplied(a, has('outbound|9090||details.shop.svc.cluster.local'), 5000, 'the fixed config');
    await waitFor(async () => (await proxyStatus(env.cp)).proxies[0]?.state === 'SYNCED', 5000, 'SYNCED after the fix');
  } finally {
    await a.client.stop();
    await env.cp.stop();
  }
});

test('control plane down: the sidecar keeps its view, reconnects when control returns and gets the current version', async () => {
  const env = await controlPlane();
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-1' });
  try {
    await a.client.whenReady(10_000);
    const before = a.client.version;
    const port = env.cp.grpcPort;
    const down = nextEvent(a, 'disconnected', 5000);
    await env.cp.stop();
    await down;
    assert.equal(a.client.connected, false);
    // Down for a while (several reconnection attempts fail): the view stays.
    writeConfig(env.configDir, 'svc.yaml', serviceYaml('reviews', [9080, 9443]));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(a.client.version, before, 'the view changed while the control plane was down');
    assert.deepEqual(clusterNames(a.serving), ['outbound|9080||reviews.shop.svc.cluster.local']);
    assert.ok(a.client.connects >= 2, `no reconnection attempt while down (${a.client.connects} streams opened)`);

    // Back on the same port with the same CA: the sidecar reconnects by itself and gets the config written meanwhile.
    await env.start(port);
    await nextApplied(a, has('outbound|9443||reviews.shop.svc.cluster.local'), 10_000, 'the current version after the restart');
    assert.ok(a.client.connected);
    await waitFor(async () => (await proxyStatus(env.cp)).proxies[0]?.ackedVersion === a.client.version, 5000, 'proxy-status after the reconnect');
  } finally {
    await a.client.stop();
    await env.cp.stop();
  }
});

test('a reconnect to an unchanged control plane re-sends the same version, which is ACKed without applying it again', async () => {
  const env = await controlPlane();
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-1' });
  try {
    await a.client.whenReady(10_000);
    const port = env.cp.grpcPort;
    await env.cp.stop();
    await env.start(port);
    await waitFor(async () => (await proxyStatus(env.cp)).proxies[0]?.state === 'SYNCED', 10_000, 'SYNCED after the reconnect');
    assert.equal(a.client.applied, 1, 'the same view was applied twice');
    assert.equal((await proxyStatus(env.cp)).proxies[0].ackedVersion, a.client.version);
  } finally {
    await a.client.stop();
    await env.cp.stop();
  }
});

test('refused streams: a forged token, another identity, another trust domain, an untrusted control plane', async () => {
  const env = await controlPlane();
  const sidecars: Sidecar[] = [];
  try {
    const forged = (await issueToken((await import('node:crypto')).generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey, { namespace: 'shop', serviceAccount: 'cart' }, 600));
    const cartToken = await issueToken(env.cp.ca.material.signingKey, { namespace: 'shop', serviceAccount: 'cart' }, 600);
    const cases: { name: string; s: Sidecar; want: RegExp }[] = [];
    const add = async (name: string, want: RegExp, meta: Parameters<typeof sidecar>[1], opts: Parameters<typeof sidecar>[2]) => {
      const s = await sidecar(env.cp, meta, opts);
      sidecars.push(s);
      cases.push({ name, s, want });
    };
    await add('forged token', /^UNAUTHENTICATED: request authenticate failure/, { serviceAccount: 'cart', podName: 'p1' }, { token: forged });
    await add('garbage token', /^UNAUTHENTICATED/, { serviceAccount: 'cart', podName: 'p2' }, { token: 'not-a-jwt' });
    await add('token for shop/cart, hello says shop/payments', /^PERMISSION_DENIED: the token's identity shop\/cart is not the proxy's shop\/payments/, { serviceAccount: 'payments', podName: 'p3' }, { token: cartToken });
    await add('token for shop/cart, hello says bank/cart', /^PERMISSION_DENIED/, { namespace: 'bank', serviceAccount: 'cart', podName: 'p4' }, { token: cartToken });
    await add('another trust domain', /^PERMISSION_DENIED: trust domain "evil\.local"/, { serviceAccount: 'cart', podName: 'p5', trustDomain: 'evil.local' }, { token: cartToken });
    const other = await createSelfSignedRoot('cluster.local');
    await add('control plane not signed by the mesh root', /^UNAVAILABLE/, { serviceAccount: 'cart', podName: 'p6' }, { token: cartToken, rootCertPem: other.certPem });
    for (const c of cases) await waitFor(() => c.s.client.lastError !== null && c.s.client.connects >= 2, 10_000, `${c.name}: refused and retried`);
    for (const c of cases) {
      assert.equal(c.s.client.ready, false, `${c.name}: got a view`);
      assert.equal(c.s.accepted, 0, `${c.name}: reported as connected`);
      assert.match(c.s.client.lastError ?? '', c.want, `${c.name}: ${c.s.client.lastError}`);
    }
    assert.deepEqual((await proxyStatus(env.cp)).proxies, [], 'a refused proxy is listed');
  } finally {
    for (const s of sidecars) await s.client.stop();
    await env.cp.stop();
  }
});

/** A workload certificate for `uri` from `ca` (a MeshCa, or another CA's signer for an untrusted one). */
async function workloadCertificate(ca: { signCsr(csr: string, uris: string[], ttl: number): Promise<string[]> }, uri: string): Promise<{ certChainPem: string; keyPem: string }> {
  const { generateKeyPairSync } = await import('node:crypto');
  const { privateKeyPem, signatureParams, toCryptoPrivateKey, toCryptoPublicKey, x509 } = await import('../../src/mesh/ca/keys.js');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    keys: { privateKey: await toCryptoPrivateKey(privateKey), publicKey: await toCryptoPublicKey(privateKey) },
    signingAlgorithm: signatureParams(privateKey),
    extensions: [new x509.SubjectAlternativeNameExtension([{ type: 'url', value: uri }], true)],
  });
  const chain = await ca.signCsr(csr.toString('pem'), [uri], 3600);
  return { certChainPem: chain.slice(0, -1).join('') || chain[0], keyPem: privateKeyPem(privateKey) };
}

test('the workload certificate authenticates a sidecar without a token; its SPIFFE ID must be the proxy\'s namespace and service account', async () => {
  const env = await controlPlane();
  const sidecars: Sidecar[] = [];
  try {
    const cart = await workloadCertificate(env.cp.ca, 'spiffe://cluster.local/ns/shop/sa/cart');
    const ok = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cert-ok' }, { token: null, clientCertificate: cart });
    sidecars.push(ok);
    await ok.client.whenReady(10_000);
    const listed = (await proxyStatus(env.cp)).proxies.find((p) => p.proxy.podName === 'cert-ok');
    assert.equal(listed?.identity, 'spiffe://cluster.local/ns/shop/sa/cart');
    // The certificate's identity is not the hello's: refused, naming both.
    const wrong = await sidecar(env.cp, { serviceAccount: 'payments', podName: 'cert-wrong' }, { token: null, clientCertificate: cart });
    sidecars.push(wrong);
    // A certificate of another mesh (not verified by the mesh roots) proves nothing.
    const { MeshCa, loadOrCreateCaDirectory } = await import('../../src/mesh/ca/ca.js');
    const foreign = new MeshCa(await loadOrCreateCaDirectory(path.join(tempDir('meshgate-push-foreign-ca-'), 'ca'), { trustDomain: 'cluster.local' }));
    const stranger = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cert-foreign' }, { token: null, clientCertificate: await workloadCertificate(foreign, 'spiffe://cluster.local/ns/shop/sa/cart') });
    sidecars.push(stranger);
    await waitFor(() => wrong.client.lastError !== null && wrong.client.connects >= 2 && stranger.client.lastError !== null && stranger.client.connects >= 2, 10_000, 'refused and retried');
    assert.match(wrong.client.lastError ?? '', /^PERMISSION_DENIED: the client certificate's identity \(spiffe:\/\/cluster\.local\/ns\/shop\/sa\/cart\) shop\/cart is not the proxy's shop\/payments/);
    assert.equal(wrong.accepted, 0);
    assert.match(stranger.client.lastError ?? '', /^(UNAUTHENTICATED|UNAVAILABLE)/, stranger.client.lastError ?? '');
    assert.equal(stranger.accepted, 0);
  } finally {
    for (const s of sidecars) await s.client.stop();
    await env.cp.stop();
  }
});

test('protocol: the first message must be a hello; a stream closed before its hello is refused', async () => {
  const env = await controlPlane();
  const Client = configPushClient();
  const client = new Client(`127.0.0.1:${env.cp.grpcPort}`, grpc.credentials.createSsl(Buffer.from(env.cp.ca.rootCertPem)), { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc', 'grpc.default_authority': 'istiod.istio-system.svc' }) as unknown as grpc.Client & { Stream: (md: grpc.Metadata) => grpc.ClientDuplexStream<PushRequest, PushResponse> };
  try {
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${await issueToken(env.cp.ca.material.signingKey, { namespace: 'shop', serviceAccount: 'cart' }, 600)}`);
    const status = (s: grpc.ClientDuplexStream<PushRequest, PushResponse>) =>
      new Promise<grpc.StatusObject>((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no status within 10 s')), 10_000);
        s.on('error', () => {});
        s.on('data', () => {});
        s.on('status', (st: grpc.StatusObject) => {
          clearTimeout(t);
          resolve(st);
        });
      });
    const s1 = client.Stream(md);
    s1.write({ ack: { version: 'x', nonce: '1' } });
    const st1 = await status(s1);
    assert.equal(st1.code, grpc.status.INVALID_ARGUMENT);
    assert.match(st1.details, /first message must be a hello/);
    const s2 = client.Stream(md);
    s2.end();
    const st2 = await status(s2);
    assert.equal(st2.code, grpc.status.INVALID_ARGUMENT);
    assert.match(st2.details, /ended before the hello/);
  } finally {
    client.close();
    await env.cp.stop();
  }
});

test('debounce: a burst of config changes is pushed once, after the quiet time; a change stream that never goes quiet is pushed every debounce-max', async () => {
  const after = 150;
  const max = 800;
  const env = await controlPlane({ debounceAfterMs: after, debounceMaxMs: max });
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-1' });
  try {
    await a.client.whenReady(10_000);
    const push = env.cp.push!;
    const pushes = () => push.status().proxies[0]?.pushes ?? 0;
    const set = (ports: number[]) => push.setResources(new ResourceSet([{ apiVersion: 'v1', kind: 'Service', metadata: { name: 'reviews', namespace: 'shop', labels: {}, annotations: {}, creationTimestamp: null }, body: { spec: { ports: ports.map((port) => ({ port })) } }, origin: { file: null, line: null, order: 'x', fieldLines: {} } }]));
    /** Changes every `everyMs` for `forMs`; returns how many gaps between changes reached the quiet time (a loaded machine may stall the loop: each such gap rightly allows one more push). */
    const stream = async (everyMs: number, forMs: number, first: number): Promise<{ quietGaps: number; last: number }> => {
      const t0 = Date.now();
      let prev = t0;
      let quietGaps = 0;
      let port = first;
      for (;;) {
        set([port]);
        const now = Date.now();
        if (now - prev >= after) quietGaps++;
        prev = now;
        if (now - t0 >= forMs) return { quietGaps, last: port };
        port++;
        await new Promise((r) => setTimeout(r, everyMs));
      }
    };

    // A short burst (10 changes, 20 ms apart): one push, of the last change.
    const before = pushes();
    const burst = await stream(20, 180, 9000);
    await nextApplied(a, has(`outbound|${burst.last}||reviews.shop.svc.cluster.local`), 5000, 'the last of the burst');
    await new Promise((r) => setTimeout(r, after * 2));
    const burstPushes = pushes() - before;
    assert.ok(burstPushes >= 1 && burstPushes <= 1 + burst.quietGaps, `a burst gave ${burstPushes} pushes (want 1${burst.quietGaps > 0 ? `..${1 + burst.quietGaps}, the loop stalled ${burst.quietGaps} time(s)` : ''})`);

    // Changes every 40 ms for 2.4 s never leave 150 ms of quiet: pushes still go out, every ~800 ms.
    const start = pushes();
    const long = await stream(40, 2400, 20_000);
    const during = pushes() - start;
    assert.ok(during >= 2 && during <= 3 + long.quietGaps, `pushes during a 2.4 s stream of changes: ${during} (want 2-${3 + long.quietGaps} with an 800 ms max)`);
    await nextApplied(a, has(`outbound|${long.last}||reviews.shop.svc.cluster.local`), 5000, 'the last change');
  } finally {
    await a.client.stop();
    await env.cp.stop();
  }
});

test('a view larger than gRPC\'s 4 MiB default message arrives whole', async () => {
  // 40 000 clusters: about 6 MB of JSON.
  const big: SidecarTranslate = (resources, proxy, options) => {
    const out = testTranslate(resources, proxy, options);
    const extra = Array.from({ length: 40_000 }, (_, i) => ({ ...out.ir.clusters[0], name: `outbound|${1000 + (i % 60000)}||padding-${i}.shop.svc.cluster.local` }));
    const ir = { ...out.ir, clusters: [...out.ir.clusters, ...extra] };
    return { ir: { ...ir, version: `${out.ir.version}-big` }, diagnostics: [] };
  };
  const env = await controlPlane({ translate: big });
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-1' });
  try {
    await a.client.whenReady(20_000);
    assert.equal(a.serving?.clusters.length, 40_001);
    assert.ok(Buffer.byteLength(JSON.stringify(a.serving)) > 4 * 1024 * 1024, 'the view is not over 4 MiB');
  } finally {
    await a.client.stop();
    await env.cp.stop();
  }
});

test('a view the control plane cannot compute (translator throws, or marks it MG_INVALID_IR) is not sent: the sidecar keeps its view, proxy-status says why', async () => {
  let mode: 'ok' | 'throw' | 'invalid' = 'ok';
  const flaky: SidecarTranslate = (resources, proxy, options) => {
    const out = testTranslate(resources, proxy, options);
    if (mode === 'throw') throw new Error('Pod lookup exploded');
    if (mode === 'invalid') {
      const d: Diagnostic = { severity: 'error', reason: 'MG_INVALID_IR', object: null, field: null, file: null, line: null, message: 'route r: unknown cluster c' };
      return { ir: out.ir, diagnostics: [d] };
    }
    return out;
  };
  const env = await controlPlane({ translate: flaky });
  const a = await sidecar(env.cp, { serviceAccount: 'cart', podName: 'cart-1' });
  try {
    await a.client.whenReady(10_000);
    const good = a.client.version;
    mode = 'throw';
    writeConfig(env.configDir, 'more.yaml', serviceYaml('details', [9090]));
    await waitFor(async () => /Pod lookup exploded/.test((await proxyStatus(env.cp)).proxies[0]?.viewError ?? ''), 5000, 'viewError in proxy-status');
    mode = 'invalid';
    writeConfig(env.configDir, 'more.yaml', serviceYaml('details', [9091]));
    await waitFor(async () => /MG_INVALID_IR/.test((await proxyStatus(env.cp)).proxies[0]?.viewError ?? ''), 5000, 'MG_INVALID_IR in proxy-status');
    const p = (await proxyStatus(env.cp)).proxies[0];
    assert.equal(p.pushes, 1, 'an uncomputable view was pushed');
    assert.equal(p.state, 'SYNCED', 'the proxy still runs the last view sent');
    assert.equal(a.client.version, good);
    mode = 'ok';
    writeConfig(env.configDir, 'more.yaml', serviceYaml('details', [9092]));
    await nextApplied(a, has('outbound|9092||details.shop.svc.cluster.local'), 5000, 'the view once computable again');
    assert.equal((await proxyStatus(env.cp)).proxies[0].viewError, null);
  } finally {
    await a.client.stop();
    await env.cp.stop();
  }
});

test('a stream that sends no hello is ended with DEADLINE_EXCEEDED after the hello timeout', async () => {
  const push = new ConfigPushServer({ translate: testTranslate, translateOptions: DEFAULT_TRANSLATE_OPTIONS, authenticator: { authenticate: async () => ({ namespace: 'shop', serviceAccount: 'cart' }) }, trustDomain: 'cluster.local', log: quiet, helloTimeoutMs: 300 });
  const server = new grpc.Server();
  server.addService(configPushService(), push.handlers());
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const Client = configPushClient();
  const client = new Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure()) as unknown as grpc.Client & { Stream: (md: grpc.Metadata) => grpc.ClientDuplexStream<PushRequest, PushResponse> };
  try {
    const md = new grpc.Metadata();
    md.set('authorization', 'Bearer t');
    const t0 = Date.now();
    const s = client.Stream(md);
    const st = await new Promise<grpc.StatusObject>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no status within 10 s')), 10_000);
      s.on('error', () => {});
      s.on('status', (x: grpc.StatusObject) => {
        clearTimeout(t);
        resolve(x);
      });
    });
    assert.equal(st.code, grpc.status.DEADLINE_EXCEEDED);
    assert.match(st.details, /no hello/);
    assert.ok(Date.now() - t0 >= 250, 'ended before the hello timeout');
  } finally {
    client.close();
    push.close();
    server.forceShutdown();
  }
});

test('a token file that appears late (projected token not mounted yet) is read at the next attempt', async () => {
  const env = await controlPlane();
  const tokenFile = path.join(tempDir('meshgate-push-token-'), 'istio-token');
  let serving: IRSnapshot | null = null;
  const client = new ConfigPushClient({ address: `127.0.0.1:${env.cp.grpcPort}`, rootCertPem: env.cp.ca.rootCertPem, tokenFile, proxy: { namespace: 'shop', serviceAccount: 'cart', podName: 'cart-1', podIps: ['10.1.0.9'], trustDomain: 'cluster.local' }, log: quiet, apply: (ir) => void (serving = ir), initialBackoffMs: 100, maxBackoffMs: 500 });
  client.start();
  try {
    await waitFor(() => /cannot read the token/.test(client.lastError ?? ''), 5000, 'the missing token to be noticed');
    assert.equal(client.ready, false);
    writeFileSync(tokenFile, await issueToken(env.cp.ca.material.signingKey, { namespace: 'shop', serviceAccount: 'cart' }, 600));
    await client.whenReady(10_000);
    assert.deepEqual(clusterNames(serving), ['outbound|9080||reviews.shop.svc.cluster.local']);
  } finally {
    await client.stop();
    await env.cp.stop();
  }
});
