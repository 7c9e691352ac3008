/**
 * The admin server (primary process): `/ready`, `/healthz`, `/config_dump`, `/diagnostics`, `/reloads`.
 * Private keys never leave through it.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { IRSnapshot } from '../ir/types.js';
import type { Controller } from '../control/controller.js';
import { handleObservabilityRequest, type AdminObservability } from './dashboard/routes.js';

export interface AdminServer {
  port: number;
  close(): Promise<void>;
}

/** A route's answer that is not JSON (e.g. Prometheus text). */
export class AdminText {
  constructor(
    readonly contentType: string,
    readonly text: string,
  ) {}
}

/** More endpoints by path (e.g. the control plane's `/debug/proxy-status`), each answered with what its function returns (JSON, or an AdminText). */
export type AdminRoutes = Record<string, () => unknown>;

export async function startAdminServer(controller: Controller, port: number, host = '0.0.0.0', observability?: AdminObservability, routes: AdminRoutes = {}): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, { error: 'method not allowed' });
    if (Object.hasOwn(routes, path)) {
      void Promise.resolve()
        .then(() => routes[path]())
        .then(
          (v) => (v instanceof AdminText ? sendText(res, 200, v.text, v.contentType) : send(res, 200, v)),
          (e: unknown) => send(res, 500, { error: (e as Error).message }),
        );
      return;
    }
    switch (path) {
      case '/ready':
      case '/healthz/ready':
        return controller.ready ? sendText(res, 200, 'ready\n') : sendText(res, 503, `not ready: ${controller.notReadyReason() ?? 'starting'}\n`);
      case '/healthz':
        return sendText(res, 200, 'ok\n');
      case '/config_dump': {
        // What is served: the oldest version a runtime serves and its snapshot, and each runtime's version.
        const s = controller.servedState();
        return send(res, 200, {
          version: s.version,
          snapshot: s.snapshot ? redact(s.snapshot) : null,
          listeners: controller.lastApply,
          converged: s.converged,
          workers: s.runtimes.map((r) => ({ runtime: r.runtime, pid: r.pid, version: r.version })),
        });
      }
      case '/diagnostics':
        return send(res, 200, { version: controller.serving?.version ?? null, diagnostics: controller.diagnostics });
      case '/reloads':
        return send(res, 200, { reloads: controller.reloads });
      case '/gateway_api_status':
        // Gateway API conditions as the leader writes them to /status (directory mode: only here and in `meshgate validate`).
        return send(res, 200, { version: controller.serving?.version ?? null, status: controller.gatewayApiStatus });
      case '/':
        return sendText(res, 200, `meshgate admin\n  /ready\n  /healthz\n  /config_dump\n  /diagnostics\n  /reloads\n  /gateway_api_status\n  /metrics\n  /dashboard\n${Object.keys(routes).map((r) => `  ${r}\n`).join('')}`);
      default:
        // /metrics, /dashboard and its JSON (src/admin/dashboard/routes.ts).
        if (observability !== undefined && handleObservabilityRequest(path, res, controller, observability)) return;
        return send(res, 404, { error: 'not found' });
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
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

/** The snapshot without private keys. */
function redact(ir: IRSnapshot): IRSnapshot {
  return {
    ...ir,
    listeners: ir.listeners.map((l) => ({
      ...l,
      filterChains: l.filterChains.map((c) => ({
        ...c,
        tls: c.tls ? { ...c.tls, certificates: c.tls.certificates.map((cert) => ({ ...cert, privateKey: '[redacted]' })) } : null,
      })),
    })),
    // TLS-terminating TCP listeners (Istio protocol TLS, SIMPLE/MUTUAL) carry key pairs too.
    tcpListeners: ir.tcpListeners.map((l) =>
      l.tlsChains.length === 0 ? l : { ...l, tlsChains: l.tlsChains.map((c) => ({ ...c, tls: { ...c.tls, certificates: c.tls.certificates.map((cert) => ({ ...cert, privateKey: '[redacted]' })) } })) },
    ),
    // Upstream TLS client keys (Cluster.tls, MUTUAL); a key given as a file path is only a path.
    clusters: ir.clusters.map((c) =>
      c.tls?.clientCertificate?.privateKey.kind === 'inline'
        ? { ...c, tls: { ...c.tls, clientCertificate: { ...c.tls.clientCertificate, privateKey: { ...c.tls.clientCertificate.privateKey, pem: '[redacted]' } } } }
        : c,
    ),
  };
}

function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendText(res: http.ServerResponse, status: number, text: string, contentType = 'text/plain'): void {
  res.writeHead(status, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
