/**
 * The health port (`--health-port`, default 15021, on all addresses), as Istio's gateways serve
 * readiness on 15021 and metrics on 15020/15090: what kubelet probes and Prometheus scrape, while
 * the admin server (config dumps, dashboard, reloads) stays on 127.0.0.1.
 *   GET /healthz/ready     200 once the first snapshot serves, else 503 (readiness)
 *   GET /healthz           200 while the process runs (liveness)
 *   GET /stats/prometheus  the same metrics as the admin server's /metrics (when metrics are on)
 * Nothing else: every other path is 404, every other method 405.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Controller } from '../control/controller.js';
import { handleObservabilityRequest, type AdminObservability } from './dashboard/routes.js';

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

export async function startHealthServer(controller: Controller, port: number, observability?: AdminObservability): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(res, 405, 'method not allowed\n');
    switch (path) {
      case '/healthz/ready':
        return controller.ready ? text(res, 200, 'ready\n') : text(res, 503, `not ready: ${controller.notReadyReason() ?? 'starting'}\n`);
      case '/healthz':
        return text(res, 200, 'ok\n');
      case '/stats/prometheus':
        if (observability !== undefined && handleObservabilityRequest(path, res, controller, observability)) return;
        return text(res, 404, 'not found\n');
      default:
        return text(res, 404, 'not found\n');
    }
  });
  // No host: every address, IPv4 and IPv6, as kubelet and Prometheus reach the pod IP.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function text(res: http.ServerResponse, status: number, body: string): void {
  res.writeHead(status, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
