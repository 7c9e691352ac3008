/**
 * The admin server's observability endpoints (primary process):
 *   /metrics, /stats/prometheus   control-plane metrics + every worker's data-plane metrics, summed
 *   /dashboard                    the live dashboard (one static page polling the two below)
 *   /api/overview                 listeners, hosts and routes with their source, clusters and endpoints,
 *                                 recent diagnostics and reloads
 *   /api/stats                    per route and cluster: requests by status, latency histogram
 *   /api/clusters                 clusters with their endpoints, health and outlier ejections (live,
 *                                 from the workers' metrics; `meshgate clusters --admin` reads it)
 */
import type http from 'node:http';
import type { Controller } from '../../control/controller.js';
import { clusterRows, routeRows } from './model.js';
import { DASHBOARD_HTML, DASHBOARD_JS } from './page.js';
import { outlierStates, routeStats } from './stats.js';

export interface AdminObservability {
  /** Data-plane metrics (Prometheus text, summed over workers). */
  dataPlaneMetrics(): Promise<string>;
  /** Control-plane metrics (Prometheus text). */
  controlMetrics(): Promise<string>;
}

const PROM_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** How long the dashboard APIs share one scrape of the workers (the page polls two of them at once). */
const DASHBOARD_SCRAPE_MS = 250;
const dashboardScrapes = new WeakMap<AdminObservability, { at: number; text: Promise<string> }>();

/**
 * The data-plane metrics for the dashboard APIs: one scrape of every worker serves the requests of
 * the next `DASHBOARD_SCRAPE_MS` (`/metrics` itself always scrapes afresh).
 */
function dashboardMetrics(obs: AdminObservability): Promise<string> {
  const now = Date.now();
  const cached = dashboardScrapes.get(obs);
  if (cached !== undefined && now - cached.at < DASHBOARD_SCRAPE_MS) return cached.text;
  const text = obs.dataPlaneMetrics();
  dashboardScrapes.set(obs, { at: now, text });
  return text;
}

/** Answers `path` when it is one of ours; returns false to let the admin server answer 404. */
export function handleObservabilityRequest(path: string, res: http.ServerResponse, controller: Controller, obs: AdminObservability): boolean {
  switch (path) {
    case '/metrics':
    case '/stats/prometheus':
      void respond(res, async () => {
        const [control, data] = await Promise.all([obs.controlMetrics(), obs.dataPlaneMetrics()]);
        return { type: PROM_CONTENT_TYPE, body: `${control.trimEnd()}\n\n${data.trimEnd()}\n` };
      });
      return true;
    case '/dashboard':
    case '/dashboard/':
      send(res, 200, 'text/html; charset=utf-8', DASHBOARD_HTML);
      return true;
    case '/dashboard/app.js':
      send(res, 200, 'text/javascript; charset=utf-8', DASHBOARD_JS);
      return true;
    case '/api/overview':
      void respond(res, async () => ({ type: 'application/json', body: JSON.stringify(overview(controller, outlierStates(await dashboardMetrics(obs)))) }));
      return true;
    case '/api/clusters':
      void respond(res, async () => {
        const ir = controller.serving;
        const clusters = ir === null ? [] : clusterRows(ir, outlierStates(await dashboardMetrics(obs)));
        return { type: 'application/json', body: `${JSON.stringify({ version: ir?.version ?? null, time: Date.now(), clusters }, null, 2)}\n` };
      });
      return true;
    case '/api/stats':
      void respond(res, async () => ({ type: 'application/json', body: JSON.stringify({ time: Date.now(), routes: routeStats(await dashboardMetrics(obs)) }) }));
      return true;
    default:
      return false;
  }
}

function overview(controller: Controller, outlier: ReturnType<typeof outlierStates>): unknown {
  const ir = controller.serving;
  const bound = new Map<string, { boundPort: number | null; state: string; error: string | null }>();
  for (const r of controller.lastApply) for (const l of r.listeners) if (!bound.has(l.name) || l.state !== 'listening') bound.set(l.name, { boundPort: l.boundPort, state: l.state, error: l.error });
  return {
    version: ir?.version ?? null,
    /** The gateway's clock (epoch ms), for ejection times left. */
    time: Date.now(),
    ready: controller.ready,
    listeners: (ir?.listeners ?? []).map((l) => ({
      name: l.name,
      address: l.address,
      port: l.port,
      externalPort: l.externalPort,
      protocol: l.protocol,
      filterChains: l.filterChains.length,
      virtualHosts: l.filterChains.reduce((n, c) => n + c.virtualHosts.length, 0),
      ...(bound.get(l.name) ?? { boundPort: null, state: 'unknown', error: null }),
    })),
    routes: ir === null ? [] : routeRows(ir),
    clusters: ir === null ? [] : clusterRows(ir, outlier),
    diagnostics: controller.diagnostics.filter((d) => d.severity !== 'info').slice(0, 100),
    reloads: controller.reloads.slice(-20).reverse(),
  };
}

async function respond(res: http.ServerResponse, make: () => Promise<{ type: string; body: string }>): Promise<void> {
  try {
    const { type, body } = await make();
    send(res, 200, type, body);
  } catch (e) {
    send(res, 500, 'text/plain', `${(e as Error).message}\n`);
  }
}

function send(res: http.ServerResponse, status: number, type: string, body: string): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store' });
  res.end(body);
}
