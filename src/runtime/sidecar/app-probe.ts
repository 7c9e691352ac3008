/**
 * The app probes `meshgate inject` (and the injection webhook) rewrite, served on the sidecar's status
 * port (15020), as Istio's pilot-agent does: the kubelet calls `GET /app-health/<container>/<readyz|
 * livez|startupz>` on 15020 (never captured, so STRICT mTLS does not refuse it), and the sidecar runs
 * the app's original probe, which the injector put in `ISTIO_KUBE_APP_PROBERS` (JSON: path ->
 * `{httpGet|tcpSocket|grpc, timeoutSeconds}`, Istio's shape).
 *
 * Probes dial the app on 127.0.0.1 unless the probe names a host (loopback is never captured; an app
 * listening only on the pod IP needs `host`). Answers, as the kubelet judges: httpGet 200-399 -> 200,
 * another status is passed on, no answer in `timeoutSeconds` (default 1) -> 503; tcpSocket connect
 * -> 200, else 503; grpc `grpc.health.v1.Health/Check` SERVING -> 200, else 503. Unknown path -> 404.
 */
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';

export const APP_PROBERS_ENV = 'ISTIO_KUBE_APP_PROBERS';

export interface AppProbe {
  httpGet?: { path?: string; port: number | string; host?: string; scheme?: string; httpHeaders?: { name: string; value: string }[] };
  tcpSocket?: { port: number | string; host?: string };
  grpc?: { port: number; service?: string };
  timeoutSeconds?: number;
}

export interface ProbeResult {
  status: number;
  detail: string;
}

/** The probes of ISTIO_KUBE_APP_PROBERS; a malformed value gives none (and the reason). */
export function parseAppProbers(text: string | undefined): { probes: Map<string, AppProbe>; error: string | null } {
  const probes = new Map<string, AppProbe>();
  if (text === undefined || text.trim() === '') return { probes, error: null };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    return { probes, error: `${APP_PROBERS_ENV} is not JSON: ${(e as Error).message}` };
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return { probes, error: `${APP_PROBERS_ENV} is not a JSON object` };
  for (const [path, p] of Object.entries(raw as Record<string, unknown>)) {
    if (p !== null && typeof p === 'object' && path.startsWith('/app-health/')) probes.set(path, p as AppProbe);
  }
  return { probes, error: null };
}

const portOf = (v: number | string): number | null => {
  const n = typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : null;
};

/** Runs one probe against the app. */
export function runAppProbe(p: AppProbe): Promise<ProbeResult> {
  const timeoutMs = Math.max(1, p.timeoutSeconds ?? 1) * 1000;
  if (p.httpGet) return httpProbe(p.httpGet, timeoutMs);
  if (p.tcpSocket) return tcpProbe(p.tcpSocket, timeoutMs);
  if (p.grpc) return grpcProbe(p.grpc, timeoutMs);
  return Promise.resolve({ status: 500, detail: 'the probe has no httpGet, tcpSocket or grpc' });
}

function httpProbe(g: NonNullable<AppProbe['httpGet']>, timeoutMs: number): Promise<ProbeResult> {
  const port = portOf(g.port);
  if (port === null) return Promise.resolve({ status: 500, detail: `port ${String(g.port)} is not a number` });
  const secure = (g.scheme ?? 'HTTP').toUpperCase() === 'HTTPS';
  const headers: Record<string, string> = { 'user-agent': 'kube-probe/meshgate' };
  for (const h of g.httpHeaders ?? []) if (typeof h?.name === 'string' && typeof h.value === 'string') headers[h.name.toLowerCase()] = h.value;
  return new Promise((resolve) => {
    const opts = { host: g.host || '127.0.0.1', port, path: g.path || '/', method: 'GET', headers, agent: false as const, timeout: timeoutMs };
    // As the kubelet: an HTTPS probe does not verify the app's certificate.
    const req = secure ? https.request({ ...opts, rejectUnauthorized: false }) : http.request(opts);
    req.on('response', (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve(code >= 200 && code < 400 ? { status: 200, detail: `app answered ${code}` } : { status: code >= 400 ? code : 503, detail: `app answered ${code}` });
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', (e) => resolve({ status: 503, detail: e.message }));
    req.end();
  });
}

function tcpProbe(t: NonNullable<AppProbe['tcpSocket']>, timeoutMs: number): Promise<ProbeResult> {
  const port = portOf(t.port);
  if (port === null) return Promise.resolve({ status: 500, detail: `port ${String(t.port)} is not a number` });
  return new Promise((resolve) => {
    const s = net.connect({ host: t.host || '127.0.0.1', port });
    const timer = setTimeout(() => s.destroy(new Error(`no connection within ${timeoutMs} ms`)), timeoutMs);
    s.once('connect', () => {
      clearTimeout(timer);
      s.destroy();
      resolve({ status: 200, detail: 'connected' });
    });
    s.once('error', (e) => {
      clearTimeout(timer);
      resolve({ status: 503, detail: e.message });
    });
  });
}

/** grpc.health.v1.Health/Check over h2c: HealthCheckRequest{service} in, HealthCheckResponse{status} out (1 = SERVING). */
function grpcProbe(g: NonNullable<AppProbe['grpc']>, timeoutMs: number): Promise<ProbeResult> {
  const port = portOf(g.port);
  if (port === null) return Promise.resolve({ status: 500, detail: `port ${String(g.port)} is not a number` });
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      session.destroy();
      resolve(r);
    };
    const session = http2.connect(`http://127.0.0.1:${port}`);
    const timer = setTimeout(() => finish({ status: 503, detail: `no answer within ${timeoutMs} ms` }), timeoutMs);
    session.on('error', (e) => finish({ status: 503, detail: e.message }));
    const service = Buffer.from(g.service ?? '', 'utf8');
    // Field 1 (string): tag 0x0a, length (services are short: one varint byte up to 127).
    const msg = service.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, service.length & 0x7f]), service.subarray(0, 127)]);
    const frame = Buffer.alloc(5 + msg.length);
    frame.writeUInt32BE(msg.length, 1);
    msg.copy(frame, 5);
    const stream = session.request({ ':method': 'POST', ':path': '/grpc.health.v1.Health/Check', 'content-type': 'application/grpc', te: 'trailers' });
    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', (e) => finish({ status: 503, detail: e.message }));
    stream.on('end', () => {
      const body = Buffer.concat(chunks);
      // The message after the 5-byte prefix: field 1 (varint) = status; absent = 0 (UNKNOWN).
      const m = body.subarray(5);
      const status = m.length >= 2 && m[0] === 0x08 ? m[1] : 0;
      finish(status === 1 ? { status: 200, detail: 'SERVING' } : { status: 503, detail: `health status ${status}` });
    });
    stream.end(frame);
  });
}

/**
 * A handler for the status server: answers `/app-health/...` paths from ISTIO_KUBE_APP_PROBERS
 * and returns true, or returns false for other paths.
 */
export function appProbeHandler(text: string | undefined = process.env[APP_PROBERS_ENV]): { error: string | null; serve(path: string, res: http.ServerResponse): Promise<boolean> } {
  const { probes, error } = parseAppProbers(text);
  return {
    error,
    async serve(path, res) {
      if (!path.startsWith('/app-health/')) return false;
      const probe = probes.get(path);
      const r = probe === undefined ? { status: 404, detail: `no app probe ${path} (${APP_PROBERS_ENV})` } : await runAppProbe(probe);
      res.writeHead(r.status, { 'content-type': 'text/plain; charset=utf-8' }).end(`${r.detail}\n`);
      return true;
    },
  };
}
