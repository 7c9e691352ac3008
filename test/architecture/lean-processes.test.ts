/**
 * Lean processes (issue 11, item 3): each process loads only the modules of what it runs. The real
 * `meshgate run` runs with a module recorder (test/support/module-recorder.ts) and the test reads
 * which modules each process loaded: no timings, no memory figures.
 *
 * - a worker never loads translate/, providers/, api/, resources/, admin/, YAML or the Kubernetes
 *   client; a primary with workers never loads the runtime (nor undici);
 * - `jose` only in a process serving RequestAuthentication JWT rules;
 * - `@opentelemetry/*` only in a process with tracing on;
 * - prom-client's AggregatorRegistry (cluster metrics) only in a multi-process gateway.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { get, startGateway, tempDir, writeConfig, type GatewayProcess } from '../helpers/gateway.js';

const RECORDER = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../support/module-recorder.js');

const BASE = `apiVersion: v1
kind: Service
metadata: { name: web, namespace: default }
spec:
  ports: [{ name: http, port: 80, targetPort: 9 }]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: { name: web, namespace: default }
spec:
  rules:
    - host: web.example.com
      http:
        paths:
          - { path: /, pathType: Prefix, backend: { service: { name: web, port: { number: 80 } } } }
`;

const REQUEST_AUTHENTICATION = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: { name: jwt, namespace: istio-system }
spec:
  jwtRules:
    - issuer: https://issuer.test
      jwks: '{"keys":[]}'
`;

interface Loaded {
  pid: number;
  modules: string[];
}

/** Runs a gateway with the recorder; returns what each process loaded once it serves the config. */
async function loadedBy(files: Record<string, string>, workers: number, args: string[] = []): Promise<{ primary: Loaded; workers: Loaded[] }> {
  const dir = tempDir();
  const logs = tempDir('meshgate-modules-');
  for (const [name, text] of Object.entries(files)) writeConfig(dir, name, text);
  let gw: GatewayProcess | null = null;
  try {
    gw = await startGateway({ configDir: dir, workers, args, nodeArgs: ['--import', RECORDER], env: { MESHGATE_MODULE_LOG_DIR: logs } });
    // The snapshot is served by every worker before /ready; one request proves the route too.
    const r = await get(`http://127.0.0.1:${gw.httpPort}/`, { host: 'web.example.com' });
    assert.ok(r.status === 503 || r.status === 502 || r.status === 200, `the gateway answers the route (got ${r.status})`);
    const byPid = new Map<number, string[]>();
    for (const f of readdirSync(logs)) byPid.set(Number(f.split('.')[0]), readFileSync(path.join(logs, f), 'utf8').split('\n').filter(Boolean));
    const primaryPid = gw.proc.pid as number;
    const primary = { pid: primaryPid, modules: byPid.get(primaryPid) ?? [] };
    const others = [...byPid.entries()].filter(([pid]) => pid !== primaryPid).map(([pid, modules]) => ({ pid, modules }));
    assert.ok(primary.modules.length > 0, 'the recorder saw the primary load modules');
    assert.equal(others.length, workers, `expected ${workers} worker process(es) recorded, got ${others.length}`);
    return { primary, workers: others };
  } finally {
    await gw?.stop();
    rmSync(dir, { recursive: true, force: true });
    rmSync(logs, { recursive: true, force: true });
  }
}

const PATTERNS: Record<string, RegExp> = {
  jose: /\/node_modules\/jose\//,
  opentelemetry: /\/node_modules\/@opentelemetry\//,
  undici: /\/node_modules\/undici\//,
  yaml: /\/node_modules\/yaml\//,
  kubernetes: /\/node_modules\/@kubernetes\//,
  aggregator: /\/node_modules\/prom-client\/lib\/cluster\.js$/,
  translate: /\/dist\/src\/translate\//,
  providers: /\/dist\/src\/providers\//,
  api: /\/dist\/src\/api\//,
  resources: /\/dist\/src\/resources\//,
  admin: /\/dist\/src\/admin\//,
  runtime: /\/dist\/src\/runtime\//,
};

function loads(p: Loaded, what: keyof typeof PATTERNS): boolean {
  return p.modules.some((m) => PATTERNS[what].test(m));
}

function assertNone(p: Loaded, role: string, what: (keyof typeof PATTERNS)[]): void {
  for (const w of what) {
    const hit = p.modules.find((m) => PATTERNS[w].test(m));
    assert.equal(hit, undefined, `${role} (pid ${p.pid}) must not load ${w}, but loaded ${hit}`);
  }
}

describe('lean processes: what each process loads', { timeout: 120_000 }, () => {
  test('primary + 1 worker, no JWT, tracing off: the worker loads the runtime only; the primary no runtime', async () => {
    const { primary, workers } = await loadedBy({ 'web.yaml': BASE }, 1);
    const [worker] = workers;
    assert.ok(loads(worker, 'runtime'), 'the worker loads the runtime');
    assertNone(worker, 'worker', ['jose', 'opentelemetry', 'yaml', 'kubernetes', 'translate', 'providers', 'api', 'resources', 'admin']);
    assertNone(primary, 'primary', ['runtime', 'undici', 'jose', 'opentelemetry', 'kubernetes']);
    assert.ok(loads(primary, 'translate') && loads(primary, 'admin'), 'the primary translates and serves admin');
  });

  test('RequestAuthentication: the worker loads jose (and still no OpenTelemetry)', async () => {
    const { primary, workers } = await loadedBy({ 'web.yaml': BASE, 'jwt.yaml': REQUEST_AUTHENTICATION }, 1);
    assert.ok(loads(workers[0], 'jose'), 'a worker serving JWT rules loads jose');
    assertNone(workers[0], 'worker', ['opentelemetry']);
    assertNone(primary, 'primary', ['jose']);
  });

  test('tracing on: the worker loads OpenTelemetry; jose stays unloaded', async () => {
    const { primary, workers } = await loadedBy({ 'web.yaml': BASE }, 1, ['--tracing-endpoint', 'http://127.0.0.1:9/v1/traces']);
    assert.ok(loads(workers[0], 'opentelemetry'), 'a worker with tracing on loads the OpenTelemetry SDK');
    assertNone(workers[0], 'worker', ['jose']);
    assertNone(primary, 'primary', ['opentelemetry']);
  });

  test('--workers 0: one process, no jose, no OpenTelemetry, no cluster metrics aggregator', async () => {
    const { primary } = await loadedBy({ 'web.yaml': BASE }, 0);
    assert.ok(loads(primary, 'runtime') && loads(primary, 'translate'), 'the single process runs both planes');
    assertNone(primary, 'the --workers 0 process', ['jose', 'opentelemetry', 'kubernetes', 'aggregator']);
  });
});
