#!/usr/bin/env node
/**
 * The meshgate command.
 *
 *   meshgate run (--config DIR | --kubernetes [--kubeconfig PATH] [--watch-namespace NS]...
 *                [--namespace NS] [--publish-service NS/NAME | --publish-address IP]
 *                [--secret-label-selector a=b]) [--http-port 8080] [--https-port 8443] [--admin-port 15000]
 *                [--port-map 80=8080,443=8443] [--ingress-class meshgate]
 *                [--gateway-labels istio=ingressgateway] [--workers N] [--log-level info]
 *   meshgate validate DIR...      print every diagnostic; exit 1 when any is an error
 *   meshgate translate DIR        print the IR snapshot as JSON
 *   meshgate demo                 echo backends + examples/ (what `npm start` runs)
 *
 * Bad usage: a one-line error on stderr and exit code 2.
 */
import { SECURITY_FLAGS, securityOptions } from './security-flags.js';
import cluster from 'node:cluster';
import { realpathSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { formatDiagnostic, hasErrors } from '../lib/diagnostic.js';
import { Logger, type LogLevel } from '../lib/log.js';
import { compactHeapSoon } from '../lib/heap.js';
import { loadDirectory } from '../providers/file/load.js';
import { ConfigPipeline } from '../control/pipeline.js';
import { Controller } from '../control/controller.js';
import { DirectorySource } from '../control/source.js';
import type { DataPlane } from '../control/dataplane-types.js';
import { startAdminServer } from '../admin/server.js';
import { DEFAULT_TRANSLATE_OPTIONS, type TranslateOptions } from '../translate/index.js';
import { inspectCommand, OBSERVABILITY_FLAGS, OBSERVABILITY_USAGE, parseObservabilityOptions, snapshotTables } from './inspect.js';
import type { ObservabilityOptions } from '../observability/observer.js';
import { ControlMetrics } from '../observability/control-metrics.js';
import { parseKubernetesOptions, type KubernetesRunOptions } from './kubernetes-options.js';

export class UsageError extends Error {}

const USAGE = `usage:
  meshgate run (--config DIR | --kubernetes [--kubeconfig PATH] [--watch-namespace NS]...
                [--namespace NS] [--publish-service NS/NAME | --publish-address IP]
                [--secret-label-selector a=b])
               [--http-port 8080] [--https-port 8443] [--admin-port 15000]
               [--port-map 80=8080,443=8443] [--ingress-class meshgate]
               [--gateway-labels istio=ingressgateway] [--workers N] [--log-level info]
               [--path-normalization MERGE_SLASHES] [--escaped-slashes REJECT]
               [--headers-with-underscores REJECT_REQUEST] [--gateway-namespace istio-system]
${OBSERVABILITY_USAGE}
  meshgate validate DIR...
  meshgate translate DIR [--routes] [--clusters]
  meshgate routes [--admin http://127.0.0.1:15000]
  meshgate clusters [--admin http://127.0.0.1:15000]
  meshgate demo
`;

const TRANSLATE_FLAGS = {
  'http-port': { type: 'string' },
  'https-port': { type: 'string' },
  'port-map': { type: 'string' },
  'ingress-class': { type: 'string' },
  'gateway-labels': { type: 'string' },
  'bind-address': { type: 'string' },
  ...SECURITY_FLAGS,
} as const;

const RUN_FLAGS = {
  ...TRANSLATE_FLAGS,
  ...OBSERVABILITY_FLAGS,
  config: { type: 'string' },
  'admin-port': { type: 'string' },
  workers: { type: 'string' },
  'log-level': { type: 'string' },
  kubernetes: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  'watch-namespace': { type: 'string', multiple: true },
  namespace: { type: 'string' },
  'publish-service': { type: 'string' },
  'publish-address': { type: 'string' },
  'secret-label-selector': { type: 'string' },
} as const;

export interface RunOptions {
  /** `--config DIR`; '' when the config comes from Kubernetes. */
  configDir: string;
  /** `--kubernetes` and its flags; null with --config. */
  kubernetes: KubernetesRunOptions | null;
  translate: TranslateOptions;
  adminPort: number;
  workers: number;
  logLevel: LogLevel;
  /** Metrics, access log and tracing (`--metrics`, `--access-log`, `--tracing-*`). */
  observability: ObservabilityOptions;
}

function parse<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>(args: string[], options: T, positionals: boolean) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: positionals });
  } catch (e) {
    // node:util's messages are already one line, e.g. "Unknown option '--foo'".
    throw new UsageError((e as Error).message.split('\n')[0]);
  }
}

function port(name: string, value: string | undefined, fallback: number, min = 1): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > 65535) throw new UsageError(`--${name}: "${value}" is not a port number (${min}-65535)`);
  return Number(value);
}

function portMap(value: string | undefined): Record<string, number> {
  if (value === undefined) return { ...DEFAULT_TRANSLATE_OPTIONS.portMap };
  const out: Record<string, number> = {};
  if (value.trim() === '') return out;
  for (const pair of value.split(',')) {
    const m = /^\s*(\d+)=(\d+)\s*$/.exec(pair);
    if (!m) throw new UsageError(`--port-map: "${pair}" is not PORT=PORT (e.g. 80=8080,443=8443)`);
    out[String(port('port-map', m[1], 0))] = port('port-map', m[2], 0);
  }
  return out;
}

function labels(value: string | undefined): Record<string, string> {
  if (value === undefined) return { ...DEFAULT_TRANSLATE_OPTIONS.gatewayLabels };
  const out: Record<string, string> = {};
  if (value.trim() === '') return out;
  for (const pair of value.split(',')) {
    const m = /^\s*([A-Za-z0-9._/-]+)=([A-Za-z0-9._-]*)\s*$/.exec(pair);
    if (!m) throw new UsageError(`--gateway-labels: "${pair}" is not KEY=VALUE (e.g. istio=ingressgateway)`);
    out[m[1]] = m[2];
  }
  return out;
}

function translateOptions(v: Record<string, string | boolean | string[] | undefined>): TranslateOptions {
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const ingressClass = str('ingress-class') ?? DEFAULT_TRANSLATE_OPTIONS.ingressClass;
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(ingressClass)) throw new UsageError(`--ingress-class: "${ingressClass}" is not a valid IngressClass name`);
  return {
    ...DEFAULT_TRANSLATE_OPTIONS,
    ingressClass,
    gatewayLabels: labels(str('gateway-labels')),
    httpPort: port('http-port', str('http-port'), DEFAULT_TRANSLATE_OPTIONS.httpPort),
    httpsPort: port('https-port', str('https-port'), DEFAULT_TRANSLATE_OPTIONS.httpsPort),
    portMap: portMap(str('port-map')),
    bindAddress: str('bind-address') ?? DEFAULT_TRANSLATE_OPTIONS.bindAddress,
    ...securityOptions(str, (m) => new UsageError(m)),
  };
}

export function parseRunOptions(args: string[]): RunOptions {
  const { values } = parse(args, RUN_FLAGS, false);
  if (!values.config === !values.kubernetes) throw new UsageError('run: exactly one of --config DIR and --kubernetes is required');
  const k8sOnly = ['kubeconfig', 'watch-namespace', 'namespace', 'publish-service', 'publish-address', 'secret-label-selector'] as const;
  for (const k of k8sOnly) if (!values.kubernetes && values[k] !== undefined) throw new UsageError(`--${k} needs --kubernetes`);
  const workersRaw = values.workers;
  if (workersRaw !== undefined && !/^\d+$/.test(workersRaw)) throw new UsageError(`--workers: "${workersRaw}" is not a whole number`);
  const level = values['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new UsageError(`--log-level: "${level}" is not one of debug, info, warn, error`);
  return {
    configDir: values.config ? path.resolve(values.config) : '',
    kubernetes: values.kubernetes
      ? parseKubernetesOptions(values, (m) => {
          throw new UsageError(m);
        })
      : null,
    translate: translateOptions(values),
    adminPort: port('admin-port', values['admin-port'], 15000, 0),
    workers: workersRaw === undefined ? os.availableParallelism() : Number(workersRaw),
    logLevel: level as LogLevel,
    observability: parseObservabilityOptions(values, (m) => {
      throw new UsageError(m);
    }),
  };
}

/** Run the gateway until SIGINT/SIGTERM. `--workers 0` serves in this process. */
export async function runGateway(opts: RunOptions): Promise<{ stop: () => Promise<void>; adminPort: number; controller: Controller }> {
  const log = new Logger(opts.logLevel, { component: 'meshgate' });
  // Each process loads only what it runs (docs/architecture.md, lean processes): the runtime only
  // with --workers 0; with workers, the primary forks them on src/cli/worker.ts.
  const dataPlane: DataPlane =
    opts.workers === 0
      ? new (await import('../control/dataplane.js')).InProcessDataPlane(opts.observability)
      : new (await import('../control/cluster-dataplane.js')).ClusterDataPlane(opts.workers, log, opts.observability, fileURLToPath(new URL('./worker.js', import.meta.url)));
  const controlMetrics = new ControlMetrics();
  // Imported here, not at the top: workers (and `--config` runs) never load the Kubernetes client.
  const k8s = opts.kubernetes ? (await import('./kubernetes.js')).wireKubernetes(opts.kubernetes, opts.translate, log) : null;
  const source = k8s ? k8s.source : new DirectorySource(opts.configDir);
  const controller = new Controller({ source, translate: opts.translate, dataPlane, log, onDiagnostics: k8s?.onDiagnostics, onReload: (r) => {
    controlMetrics.reloaded(r);
    // Idle memory after a new snapshot: one full GC once reloads settle (src/lib/heap.ts).
    if (r.outcome === 'applied') compactHeapSoon();
  } });
  controlMetrics.attach(controller);
  const admin = await startAdminServer(controller, opts.adminPort, '0.0.0.0', { dataPlaneMetrics: () => dataPlane.metrics(), controlMetrics: () => controlMetrics.registry.metrics() });
  await controller.start();
  k8s?.start();
  log.info('meshgate started', { config: source.description, admin: admin.port, workers: opts.workers });
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('draining');
      await k8s?.stop();
      await controller.stop(5000);
      await admin.close();
    })());
  return { stop, adminPort: admin.port, controller };
}

async function validate(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, TRANSLATE_FLAGS, true);
  if (positionals.length === 0) throw new UsageError('validate: at least one DIR is required');
  const options = translateOptions(values);
  let failed = false;
  for (const dir of positionals) {
    const loaded = await loadDirectory(path.resolve(dir));
    const result = new ConfigPipeline(options).run(loaded);
    for (const d of result.diagnostics) process.stdout.write(`${positionals.length > 1 ? `${dir}: ` : ''}${formatDiagnostic(d)}\n`);
    const errors = result.diagnostics.filter((d) => d.severity === 'error').length;
    const warnings = result.diagnostics.filter((d) => d.severity === 'warning').length;
    process.stdout.write(`${dir}: ${loaded.objects.length} objects, ${errors} errors, ${warnings} warnings\n`);
    if (hasErrors(result.diagnostics)) failed = true;
  }
  return failed ? 1 : 0;
}

async function translateCommand(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, { ...TRANSLATE_FLAGS, routes: { type: 'boolean' }, clusters: { type: 'boolean' } }, true);
  if (positionals.length !== 1) throw new UsageError('translate: exactly one DIR is required');
  const loaded = await loadDirectory(path.resolve(positionals[0]));
  const result = new ConfigPipeline(translateOptions(values)).run(loaded);
  for (const d of result.diagnostics) if (d.severity !== 'info') process.stderr.write(`${formatDiagnostic(d)}\n`);
  if (!result.snapshot) return 1;
  // --routes / --clusters: readable tables instead of the JSON (src/cli/inspect.ts).
  if (values.routes || values.clusters) return void process.stdout.write(snapshotTables(result.snapshot, !!values.routes, !!values.clusters)), 0;
  const redacted = JSON.parse(JSON.stringify(result.snapshot), (k, v) => (k === 'privateKey' ? '[redacted]' : v));
  process.stdout.write(`${JSON.stringify(redacted, null, 2)}\n`);
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run': {
      const opts = parseRunOptions(rest);
      const gw = await runGateway(opts);
      await waitForSignal();
      await gw.stop();
      return 0;
    }
    case 'validate':
      return validate(rest);
    case 'translate':
      return translateCommand(rest);
    case 'routes':
    case 'clusters':
      return inspectCommand(command, rest, (m) => {
        throw new UsageError(m);
      });
    case 'demo':
      return (await import('./demo.js')).runDemo(rest, { runGateway, parseRunOptions, waitForSignal });
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}" (expected run, validate, translate, routes, clusters or demo)`);
  }
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => resolve();
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
  });
}

const isEntry = process.argv[1] !== undefined && safeRealpath(process.argv[1]) === fileURLToPath(import.meta.url);
if (cluster.isWorker && process.env.MESHGATE_WORKER === '1') {
  // A worker forked on this file (an embedder's ClusterDataPlane without a worker entry).
  void import('../control/worker.js').then((m) => m.runWorker());
} else if (isEntry) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      if (e instanceof UsageError) {
        process.stderr.write(`meshgate: ${e.message}\n`);
        process.exit(2);
      }
      process.stderr.write(`meshgate: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}
