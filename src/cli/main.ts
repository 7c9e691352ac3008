#!/usr/bin/env node
/**
 * The meshgate command.
 *
 *   meshgate run (--config DIR | --kubernetes [--kubeconfig PATH] [--watch-namespace NS]...
 *                [--namespace NS] [--publish-service NS/NAME | --publish-address IP]
 *                [--secret-label-selector a=b]) [--http-port 8080] [--https-port 8443] [--admin-port 15000]
 *                [--admin-address 127.0.0.1] [--health-port 15021] [--port-map 80=8080,443=8443]
 *                [--ingress-class meshgate] [--gateway-labels app=istio-ingressgateway,istio=ingressgateway]
 *                [--workers N] [--log-level info]
 *   meshgate validate DIR...      print every diagnostic; exit 1 when any is an error
 *   meshgate translate DIR        print the IR snapshot as JSON
 *   meshgate migrate DIR|--kubernetes  ingress-nginx annotations: honoured/refused/unsupported/unknown; exit 1 when behaviour would change
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
import { configDirProblem } from '../providers/file/config-dir.js';
import { ConfigPipeline } from '../control/pipeline.js';
import { GATEWAY_API_FLAGS, formatGatewayApiStatus, gatewayApiOptions } from './gateway-api.js';
import { Controller } from '../control/controller.js';
import { DirectorySource } from '../control/source.js';
import type { DataPlane } from '../control/dataplane-types.js';
import { startAdminServer } from '../admin/server.js';
import { startHealthServer } from '../admin/health-server.js';
import { isIP } from 'node:net';
import { DEFAULT_TRANSLATE_OPTIONS, type TranslateOptions } from '../translate/index.js';
import { commandHelp, packageVersion } from './help.js';
import { inspectCommand, OBSERVABILITY_FLAGS, OBSERVABILITY_USAGE, parseObservabilityOptions, snapshotTables } from './inspect.js';
import type { ObservabilityOptions } from '../observability/observer.js';
import { ControlMetrics } from '../observability/control-metrics.js';
import { parseKubernetesOptions, podNamespace, type KubernetesRunOptions } from './kubernetes-options.js';
import { CAPTURE_USAGE, captureCommand } from '../mesh/capture/apply.js';
import { INJECT_USAGE, injectCommand } from '../mesh/inject/cli.js';
import { SIDECAR_USAGE } from './sidecar.js';
import { MESH_CLIENT_FLAGS, parseMeshClientOptions } from './mesh-client-options.js';
import { GATEWAY_EXCHANGE_FLAGS, withGatewayExchange } from './gateway-exchange-options.js';
import type { MeshClientOptions } from '../mesh/identity/options.js';

import { runEntry, usageFail, UsageError, UserError, waitForSignal } from './entry.js';
export { UsageError, UserError } from './entry.js';

const USAGE = `usage:
  meshgate run (--config DIR | --kubernetes [--kubeconfig PATH] [--watch-namespace NS]...
                [--namespace NS] [--publish-service NS/NAME | --publish-address IP]
                [--secret-label-selector a=b])
               [--http-port 8080] [--https-port 8443] [--admin-port 15000]
               [--admin-address 127.0.0.1] [--health-port 15021]
               [--port-map 80=8080,443=8443] [--ingress-class meshgate]
               [--watch-ingress-nginx-class] [--ingress-controller-name NAME] [--nginx-configmap NS/NAME]
               [--default-backend-service NS/NAME]
               [--gateway-labels app=istio-ingressgateway,istio=ingressgateway]
               [--workers N] [--log-level info]
               [--path-normalization MERGE_SLASHES] [--escaped-slashes REJECT]
               [--headers-with-underscores REJECT_REQUEST] [--gateway-namespace istio-system]
               [--http1-engine meshgate|node]
               [--gateway-controller-name meshgate.io/gateway-controller]
               [--gateway-bind-addresses IP/CIDR,...|none]
               [--control HOST:15012 [--root-cert FILE] [--token-file FILE] [--namespace NS]
                [--service-account SA] [--trust-domain cluster.local] [--workload-cert-ttl 24h]
                [--pod-name NAME] [--pod-ip IP] [--cluster-id Kubernetes] (Istio's metadata exchange)]
${OBSERVABILITY_USAGE}
  meshgate validate DIR...
  meshgate translate DIR [--routes] [--clusters]
  meshgate routes [--admin http://127.0.0.1:15000]
  meshgate clusters [--admin http://127.0.0.1:15000]
  meshgate migrate (DIR | --kubernetes [--kubeconfig PATH] [--watch-namespace NS]...) [--output text|json]
               [--ingress-class nginx] [--ingress-controller-name k8s.io/ingress-nginx]
  meshgate demo [run flags]
  meshgate control --config DIR --ca-dir DIR [--listen 0.0.0.0:15012] [--trust-domain cluster.local]
                   [--admin-port 15014] [--cert-ttl 24h] [--webhook-port 15017 (default with --kubernetes; 0 = off)]
                   [--webhook-config meshgate-sidecar-injector] [--inject-image IMAGE] [--inject-control HOST:PORT]
                   [--mesh-graph-interval 10s (0 = off)] [--mesh-graph-window 1m] [--mesh-graph-port 15020]
                   [--token-audiences istio-ca (comma-separated; a caller's token must be for one of them)]
  meshgate token --ca-dir DIR --namespace NS --service-account SA [--ttl 1h]
  meshgate proxy-status [--admin HOST:PORT] [--output table|json]
  meshgate --version
  meshgate COMMAND --help
${CAPTURE_USAGE}${INJECT_USAGE}  ${SIDECAR_USAGE}
`;

const TRANSLATE_FLAGS = {
  'http-port': { type: 'string' },
  'https-port': { type: 'string' },
  'port-map': { type: 'string' },
  'ingress-class': { type: 'string' },
  'ingress-controller-name': { type: 'string' },
  'watch-ingress-nginx-class': { type: 'boolean' },
  'nginx-configmap': { type: 'string' },
  'default-backend-service': { type: 'string' },
  'gateway-labels': { type: 'string' },
  'bind-address': { type: 'string' },
  ...SECURITY_FLAGS,
  ...GATEWAY_API_FLAGS,
} as const;

const RUN_FLAGS = {
  ...TRANSLATE_FLAGS,
  ...OBSERVABILITY_FLAGS,
  config: { type: 'string' },
  'admin-port': { type: 'string' },
  'admin-address': { type: 'string' },
  'health-port': { type: 'string' },
  workers: { type: 'string' },
  'log-level': { type: 'string' },
  kubernetes: { type: 'boolean' },
  kubeconfig: { type: 'string' },
  'watch-namespace': { type: 'string', multiple: true },
  namespace: { type: 'string' },
  'publish-service': { type: 'string' },
  'publish-address': { type: 'string' },
  'secret-label-selector': { type: 'string' },
  'http1-engine': { type: 'string' },
  ...MESH_CLIENT_FLAGS,
  ...GATEWAY_EXCHANGE_FLAGS,
} as const;

export interface RunOptions {
  /** `--config DIR`; '' when the config comes from Kubernetes. */
  configDir: string;
  /** `--kubernetes` and its flags; null with --config. */
  kubernetes: KubernetesRunOptions | null;
  translate: TranslateOptions;
  adminPort: number;
  /** `--admin-address`: where the admin server binds (default 127.0.0.1, as Envoy's admin in Istio). */
  adminAddress: string;
  /** `--health-port`: /healthz/ready, /healthz and /stats/prometheus on all addresses; 0 = off (default 15021, Istio's). */
  healthPort: number;
  workers: number;
  logLevel: LogLevel;
  /** Metrics, access log and tracing (`--metrics`, `--access-log`, `--tracing-*`). */
  observability: ObservabilityOptions;
  /** `--http1-engine meshgate|node`; null = MESHGATE_HTTP1_ENGINE or the default. */
  http1Engine?: 'meshgate' | 'node' | null;
  /** `--kubernetes` without `--gateway-labels`: the gateway's labels are read from meshgate's own Pod. */
  ownPodLabels?: boolean;
  /** `--control` and its flags: a mesh workload identity for Istio mTLS; null/absent = none. */
  mesh?: MeshClientOptions | null;
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

function adminAddress(value: string | undefined): string {
  if (value === undefined) return '127.0.0.1';
  if (isIP(value) === 0 && value !== 'localhost') throw new UsageError(`--admin-address: "${value}" is not an IP address (127.0.0.1, 0.0.0.0, ::)`);
  return value;
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
  // --watch-ingress-nginx-class: take over from ingress-nginx (class `nginx`, IngressClasses of controller k8s.io/ingress-nginx).
  const nginxTakeover = v['watch-ingress-nginx-class'] === true;
  const ingressClass = str('ingress-class') ?? (nginxTakeover ? 'nginx' : DEFAULT_TRANSLATE_OPTIONS.ingressClass);
  const controllerName = str('ingress-controller-name') ?? (nginxTakeover ? 'k8s.io/ingress-nginx' : DEFAULT_TRANSLATE_OPTIONS.controllerName);
  if (!/^[a-z0-9.-]+(\/[A-Za-z0-9._-]+)+$/.test(controllerName)) throw new UsageError(`--ingress-controller-name: "${controllerName}" is not a controller name like example.com/controller`);
  if (!/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/.test(ingressClass)) throw new UsageError(`--ingress-class: "${ingressClass}" is not a valid IngressClass name`);
  const cm = str('nginx-configmap');
  const cmParts = cm === undefined ? null : /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9.]*[a-z0-9])?)$/.exec(cm);
  if (cm !== undefined && cmParts === null) throw new UsageError(`--nginx-configmap: "${cm}" is not NAMESPACE/NAME`);
  const db = str('default-backend-service');
  const dbParts = db === undefined ? null : /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)$/.exec(db);
  if (db !== undefined && dbParts === null) throw new UsageError(`--default-backend-service: "${db}" is not NAMESPACE/NAME of a Service`);
  return {
    ...DEFAULT_TRANSLATE_OPTIONS,
    ingressClass,
    controllerName,
    ...(cmParts ? { nginxConfigMap: { namespace: cmParts[1], name: cmParts[3] } } : {}),
    ...(dbParts ? { nginxDefaultBackend: { namespace: dbParts[1], name: dbParts[3] } } : {}),
    gatewayLabels: labels(str('gateway-labels')),
    httpPort: port('http-port', str('http-port'), DEFAULT_TRANSLATE_OPTIONS.httpPort),
    httpsPort: port('https-port', str('https-port'), DEFAULT_TRANSLATE_OPTIONS.httpsPort),
    portMap: portMap(str('port-map')),
    bindAddress: str('bind-address') ?? DEFAULT_TRANSLATE_OPTIONS.bindAddress,
    ...securityOptions(str, (m) => new UsageError(m)),
    ...gatewayApiOptions(str, (m) => new UsageError(m)),
  };
}

export function parseRunOptions(args: string[]): RunOptions {
  const { values } = parse(args, RUN_FLAGS, false);
  if (!values.config === !values.kubernetes) throw new UsageError('run: exactly one of --config DIR and --kubernetes is required');
  const k8sOnly = ['kubeconfig', 'watch-namespace', 'namespace', 'publish-service', 'publish-address', 'secret-label-selector'] as const;
  // --namespace also names the gateway's mesh identity with --control.
  for (const k of k8sOnly) if (!values.kubernetes && values[k] !== undefined && !(k === 'namespace' && values.control !== undefined)) throw new UsageError(`--${k} needs --kubernetes`);
  const workersRaw = values.workers;
  if (workersRaw !== undefined && !/^\d+$/.test(workersRaw)) throw new UsageError(`--workers: "${workersRaw}" is not a whole number`);
  const level = values['log-level'] ?? 'info';
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new UsageError(`--log-level: "${level}" is not one of debug, info, warn, error`);
  const translate = translateOptions(values);
  // In Kubernetes mode the gateway workload is this pod: its namespace is where Istio reads Gateway
  // credentials and which policies apply, unless --gateway-namespace says otherwise.
  if (values.kubernetes && values['gateway-namespace'] === undefined) translate.gatewayNamespace = podNamespace() ?? translate.gatewayNamespace;
  const mesh = parseMeshClientOptions(values, usageFail);
  return {
    configDir: values.config ? path.resolve(values.config) : '',
    kubernetes: values.kubernetes
      ? parseKubernetesOptions(values, (m) => {
          throw new UsageError(m);
        })
      : null,
    translate,
    adminPort: port('admin-port', values['admin-port'], 15000, 0),
    adminAddress: adminAddress(values['admin-address']),
    healthPort: port('health-port', values['health-port'], 15021, 0),
    workers: workersRaw === undefined ? os.availableParallelism() : Number(workersRaw),
    logLevel: level as LogLevel,
    // As a mesh client, the gateway tells destination sidecars who it is (Istio's metadata exchange).
    observability: withGatewayExchange(
      parseObservabilityOptions(values, (m) => {
        throw new UsageError(m);
      }),
      values,
      mesh?.namespace ?? null,
      translate.gatewayLabels,
      usageFail,
    ),
    http1Engine: http1EngineOption(values['http1-engine']),
    ownPodLabels: !!values.kubernetes && values['gateway-labels'] === undefined,
    mesh,
  };
}

/** `--http1-engine`: meshgate's own HTTP/1.1 engine or node:http's (README "HTTP/1.1 engine"). */
function http1EngineOption(v: string | undefined): 'meshgate' | 'node' | null {
  if (v === undefined) return null;
  if (v !== 'meshgate' && v !== 'node') throw new UsageError(`--http1-engine: "${v}" is not one of meshgate, node`);
  return v;
}

/** Run the gateway until SIGINT/SIGTERM. `--workers 0` serves in this process. */
export async function runGateway(opts: RunOptions): Promise<{ stop: () => Promise<void>; adminPort: number; healthPort: number | null; controller: Controller }> {
  const log = new Logger(opts.logLevel, { component: 'meshgate' });
  if (opts.configDir) {
    const problem = await configDirProblem(opts.configDir, '--config');
    if (problem) throw new UserError(problem);
  }
  // Read by every Runtime, in this process and in the workers it forks (runtime/listeners/http-front.ts).
  if (opts.http1Engine) process.env.MESHGATE_HTTP1_ENGINE = opts.http1Engine;
  // Imported here, not at the top: workers (and `--config` runs) never load the Kubernetes client.
  const k8s = opts.kubernetes ? (await import('./kubernetes.js')).wireKubernetes(opts.kubernetes, opts.translate, log) : null;
  const source = k8s ? k8s.source : new DirectorySource(opts.configDir);
  let translate = opts.translate;
  let observabilityOptions = opts.observability;
  if (k8s && opts.ownPodLabels) {
    // The Gateways and policies that select the pods actually running are the ones applied.
    const own = await k8s.ownPodLabels().catch((e: unknown) => {
      log.warn('cannot read this pod\'s labels; using the --gateway-labels default', { error: (e as Error).message });
      return null;
    });
    if (own) translate = { ...translate, gatewayLabels: own.labels };
    log.info('gateway labels', { labels: translate.gatewayLabels, from: own?.from ?? 'default' });
    // The metadata exchange tells the pod's own labels too (read before the data plane starts).
    const x = observabilityOptions.identity.exchange;
    if (own && x) observabilityOptions = { ...observabilityOptions, identity: { ...observabilityOptions.identity, exchange: { ...x, labels: { ...own.labels } } } };
  }
  // Each process loads only what it runs (docs/architecture.md, lean processes): the runtime only
  // with --workers 0; with workers, the primary forks them on src/cli/worker.ts.
  const dataPlane: DataPlane =
    opts.workers === 0
      ? new (await import('../control/dataplane.js')).InProcessDataPlane(observabilityOptions)
      : new (await import('../control/cluster-dataplane.js')).ClusterDataPlane(opts.workers, log, observabilityOptions, fileURLToPath(new URL('./worker.js', import.meta.url)));
  const controlMetrics = new ControlMetrics();
  const controller = new Controller({ source, translate, dataPlane, log, onDiagnostics: k8s?.onDiagnostics, onGatewayApiStatus: k8s?.onGatewayApiStatus, onReload: (r) => {
    controlMetrics.reloaded(r);
    // Idle memory after a new snapshot: one full GC once reloads settle (src/lib/heap.ts).
    if (r.outcome === 'applied') compactHeapSoon(2000, opts.workers === 0 ? 'small-heap' : 'always');
  } });
  controlMetrics.attach(controller);
  // A mesh client gets its workload certificate before serving, so ISTIO_MUTUAL works from the first request.
  const identity = opts.mesh ? await (await import('../mesh/identity/start.js')).startMeshIdentity(opts.mesh, dataPlane, log) : null;
  const observability = { dataPlaneMetrics: () => dataPlane.metrics(), controlMetrics: () => controlMetrics.registry.metrics() };
  const bindFailed = (what: string, flag: string, port: number) => async (e: NodeJS.ErrnoException) => {
    await dataPlane.close(0);
    if (e.code === 'EADDRINUSE') throw new UserError(`${what} port ${port} is in use (EADDRINUSE): change ${flag}${flag === '--health-port' ? ' (0 turns it off)' : ' (0 picks a free port)'}`);
    if (e.code === 'EACCES') throw new UserError(`${what} port ${port}: permission denied: change ${flag}`);
    if (e.code === 'EADDRNOTAVAIL') throw new UserError(`${what} address ${opts.adminAddress} is not an address of this machine: change --admin-address`);
    throw e;
  };
  const admin = await startAdminServer(controller, opts.adminPort, opts.adminAddress, observability).catch(bindFailed('admin', '--admin-port', opts.adminPort));
  const health = opts.healthPort === 0 ? null : await startHealthServer(controller, opts.healthPort, opts.observability.metrics ? observability : undefined).catch(async (e: NodeJS.ErrnoException) => {
    await admin.close();
    return bindFailed('health', '--health-port', opts.healthPort)(e);
  });
  await controller.start();
  k8s?.start();
  log.info('meshgate started', { config: source.description, admin: `${opts.adminAddress}:${admin.port}`, health: health?.port ?? null, workers: opts.workers });
  let stopping: Promise<void> | null = null;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('draining');
      await k8s?.stop();
      identity?.stop();
      await controller.stop(5000);
      await admin.close();
      await health?.close();
    })());
  return { stop, adminPort: admin.port, healthPort: health?.port ?? null, controller };
}

async function validate(args: string[]): Promise<number> {
  const { values, positionals } = parse(args, TRANSLATE_FLAGS, true);
  if (positionals.length === 0) throw new UsageError('validate: at least one DIR is required');
  const options = translateOptions(values);
  let failed = false;
  for (const dir of positionals) {
    const problem = await configDirProblem(path.resolve(dir), 'validate:');
    if (problem) {
      process.stderr.write(`meshgate: ${problem}\n`);
      failed = true;
      continue;
    }
    const loaded = await loadDirectory(path.resolve(dir));
    const result = new ConfigPipeline(options).run(loaded);
    for (const d of result.diagnostics) process.stdout.write(`${positionals.length > 1 ? `${dir}: ` : ''}${formatDiagnostic(d)}\n`);
    if (result.gatewayApiStatus) for (const line of formatGatewayApiStatus(result.gatewayApiStatus)) process.stdout.write(`${positionals.length > 1 ? `${dir}: ` : ''}${line}\n`);
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
  const problem = await configDirProblem(path.resolve(positionals[0]), 'translate:');
  if (problem) throw new UserError(problem);
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
  // `meshgate COMMAND --help` (or -h): that command's purpose and flags, exit 0.
  if (command !== undefined && (rest.includes('--help') || rest.includes('-h'))) {
    const help = commandHelp(command, USAGE);
    if (help !== null) return void process.stdout.write(help), 0;
  }
  switch (command) {
    case '--version':
    case '-v':
    case 'version':
      process.stdout.write(`meshgate ${packageVersion()}\n`);
      return 0;
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
    case 'control':
      return (await import('./mesh-commands.js')).controlCommand(rest, usageFail, waitForSignal);
    case 'token':
      return (await import('./mesh-commands.js')).tokenCommand(rest, usageFail);
    case 'proxy-status':
      return (await import('../mesh/push/proxy-status.js')).proxyStatusCommand(rest, usageFail);
    case 'migrate': {
      const { values, positionals } = parse(rest, { ...TRANSLATE_FLAGS, output: { type: 'string' }, kubernetes: { type: 'boolean' }, kubeconfig: { type: 'string' }, 'watch-namespace': { type: 'string', multiple: true } }, true);
      if ((positionals.length === 1) === (values.kubernetes === true)) throw new UsageError('migrate: exactly one of DIR and --kubernetes is required');
      const output = values.output ?? 'text';
      if (output !== 'text' && output !== 'json') throw new UsageError(`--output: "${output}" is not text or json`);
      // The report is about taking over ingress-nginx's Ingresses: class nginx unless told otherwise.
      const options = translateOptions({ 'watch-ingress-nginx-class': values['ingress-class'] === undefined && values['ingress-controller-name'] === undefined, ...values });
      const { loadForMigrate, migrateReport } = await import('./migrate.js');
      const loaded = await loadForMigrate(positionals[0] ?? null, { kubeconfig: values.kubeconfig, watchNamespaces: values['watch-namespace'] ?? [], configMaps: options.nginxConfigMap ? [options.nginxConfigMap] : [] });
      return migrateReport(loaded, options, output, (s) => process.stdout.write(s));
    }
    case 'demo':
      return (await import('./demo.js')).runDemo(rest, { runGateway, parseRunOptions, waitForSignal });
    case 'capture':
      return captureCommand(rest, (m) => {
        throw new UsageError(m);
      });
    case 'inject':
      return injectCommand(rest, (m) => {
        throw new UsageError(m);
      });
    case 'sidecar':
      return (await import('./sidecar.js')).sidecarCommand(rest, (m) => {
        throw new UsageError(m);
      }, waitForSignal);
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}" (expected run, validate, translate, routes, clusters, migrate, demo, control, token, proxy-status, capture, inject or sidecar)`);
  }
}

const isEntry = process.argv[1] !== undefined && safeRealpath(process.argv[1]) === fileURLToPath(import.meta.url);
if (cluster.isWorker && process.env.MESHGATE_WORKER === '1') {
  // A worker forked on this file (an embedder's ClusterDataPlane without a worker entry).
  void import('../control/worker.js').then((m) => m.runWorker());
} else if (isEntry) {
  runEntry(main);
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}
