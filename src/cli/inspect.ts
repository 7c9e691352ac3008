/**
 * The observability side of the command line:
 *   - `run` flags for metrics, access logs and tracing (parsed into ObservabilityOptions);
 *   - `meshgate routes --admin URL` / `meshgate clusters --admin URL`: tables of a running gateway,
 *     read from its admin `/config_dump`, and `/api/clusters` for clusters (endpoint health and
 *     outlier ejections, which only the data plane knows) (like `istioctl proxy-config routes|clusters`);
 *   - the same tables offline, for `meshgate translate DIR --routes|--clusters`.
 */
import { parseArgs } from 'node:util';
import type { IRSnapshot } from '../ir/types.js';
import { clusterRowsTable, clustersTable, routesTable, type ClusterRow } from '../admin/dashboard/model.js';
import { DEFAULT_IDENTITY } from '../observability/metrics.js';
import type { ObservabilityOptions } from '../observability/observer.js';

export const OBSERVABILITY_FLAGS = {
  metrics: { type: 'string' },
  'access-log': { type: 'string' },
  'access-log-format': { type: 'string' },
  'tracing-endpoint': { type: 'string' },
  'tracing-sampling': { type: 'string' },
  'workload-name': { type: 'string' },
  'workload-namespace': { type: 'string' },
} as const;

export const OBSERVABILITY_USAGE = `               [--metrics on|off] [--access-log stdout|PATH|off] [--access-log-format text|json]
               [--tracing-endpoint URL] [--tracing-sampling PCT] [--workload-name meshgate]
               [--workload-namespace NS]`;

/**
 * `run`'s observability flags; `fail` throws the CLI's usage error. `--access-log` is the operator's
 * default: MeshConfig (`accessLogFile`, `defaultProviders`) and Telemetry `accessLogging`, when
 * present, decide instead (see ir/telemetry.ts).
 */
export function parseObservabilityOptions(v: Record<string, unknown>, fail: (message: string) => never): ObservabilityOptions {
  const str = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const metrics = str('metrics') ?? 'on';
  if (metrics !== 'on' && metrics !== 'off') fail(`--metrics: "${metrics}" is not on or off`);
  const log = str('access-log') ?? 'off';
  if (log === '') fail('--access-log: expected stdout, a file path, or off');
  const format = str('access-log-format') ?? 'text';
  if (format !== 'text' && format !== 'json') fail(`--access-log-format: "${format}" is not text or json`);
  const endpoint = str('tracing-endpoint');
  if (endpoint !== undefined) {
    let ok = false;
    try {
      const u = new URL(endpoint);
      ok = u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      ok = false;
    }
    if (!ok) fail(`--tracing-endpoint: "${endpoint}" is not an http(s) URL (e.g. http://otel-collector:4318/v1/traces)`);
  }
  const samplingRaw = str('tracing-sampling');
  const sampling = samplingRaw === undefined ? 1 : Number(samplingRaw);
  if (samplingRaw !== undefined && (!/^\d+(\.\d+)?$/.test(samplingRaw) || sampling > 100)) fail(`--tracing-sampling: "${samplingRaw}" is not a percentage (0-100)`);
  if (samplingRaw !== undefined && endpoint === undefined) fail('--tracing-sampling needs --tracing-endpoint');
  const workload = str('workload-name') ?? DEFAULT_IDENTITY.workload;
  return {
    metrics: metrics === 'on',
    accessLog: log === 'off' ? null : { path: log, format: format as 'text' | 'json' },
    tracing: endpoint === undefined ? null : { endpoint, samplingPercentage: sampling, serviceName: workload },
    identity: { ...DEFAULT_IDENTITY, workload, app: workload, namespace: str('workload-namespace') ?? DEFAULT_IDENTITY.namespace },
  };
}

/** `meshgate routes|clusters --admin URL`: the table of the snapshot the gateway serves. */
export async function inspectCommand(what: 'routes' | 'clusters', args: string[], fail: (message: string) => never): Promise<number> {
  let admin: string | undefined;
  try {
    admin = parseArgs({ args, options: { admin: { type: 'string' } }, strict: true, allowPositionals: false }).values.admin;
  } catch (e) {
    fail((e as Error).message.split('\n')[0]);
  }
  const base = admin ?? 'http://127.0.0.1:15000';
  let url: URL;
  try {
    url = new URL(what === 'clusters' ? '/api/clusters' : '/config_dump', base.includes('://') ? base : `http://${base}`);
  } catch {
    fail(`--admin: "${base}" is not a URL (e.g. http://127.0.0.1:15000)`);
  }
  if (what === 'clusters') {
    let live: { version: string | null; time: number; clusters: ClusterRow[] };
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      live = (await res.json()) as typeof live;
    } catch (e) {
      process.stderr.write(`meshgate: cannot read ${url.href}: ${(e as Error).message}\n`);
      return 1;
    }
    if (live.version === null) {
      process.stderr.write('meshgate: the gateway serves no snapshot yet\n');
      return 1;
    }
    // Seconds left are counted from the gateway's clock, not ours.
    process.stdout.write(clusterRowsTable(live.clusters, live.time));
    return 0;
  }
  let dump: { snapshot: IRSnapshot | null };
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    dump = (await res.json()) as { snapshot: IRSnapshot | null };
  } catch (e) {
    process.stderr.write(`meshgate: cannot read ${url.href}: ${(e as Error).message}\n`);
    return 1;
  }
  if (dump.snapshot === null) {
    process.stderr.write('meshgate: the gateway serves no snapshot yet\n');
    return 1;
  }
  process.stdout.write(routesTable(dump.snapshot));
  return 0;
}

/** `meshgate translate DIR --routes|--clusters`: the same tables, offline. */
export function snapshotTables(ir: IRSnapshot, routes: boolean, clusters: boolean): string {
  const parts: string[] = [];
  if (routes) parts.push(routesTable(ir));
  if (clusters) parts.push(clustersTable(ir));
  return parts.join('\n');
}
