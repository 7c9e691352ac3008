/**
 * `meshgate proxy-status [--admin HOST:PORT] [--output table|json]`: istioctl proxy-status for
 * meshgate. Reads the control plane's `/debug/proxy-status` and prints one row per connected
 * sidecar: its state (SYNCED, STALE, ERROR, NOT SENT), the version sent and the one it runs.
 */
import { parseArgs } from 'node:util';
import type { ProxyStatusReport } from './types.js';

export const PROXY_STATUS_USAGE = `  meshgate proxy-status [--admin HOST:PORT (default 127.0.0.1:15014)] [--output table|json]
`;

/** The table istioctl-style: NAME, STATE, SENT, ACKED (running), CONNECTED, LAST NACK. */
export function formatProxyStatus(report: ProxyStatusReport, now = Date.now()): string {
  const header = ['NAME', 'STATE', 'SENT', 'RUNNING', 'CONNECTED', 'IDENTITY', 'LAST NACK'];
  const rows = report.proxies.map((p) => [
    p.name,
    p.state,
    p.sentVersion ?? '-',
    p.ackedVersion ?? '-',
    age(now - Date.parse(p.connectedAt)),
    p.identity,
    p.lastNack === null ? (p.viewError ?? '-') : `${p.lastNack.version}: ${oneLine(p.lastNack.error, 80)}`,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]))).join('   ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n') + '\n';
}

function oneLine(s: string, max: number): string {
  const t = s.replace(/\s+/g, ' ');
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
}

/** Kubernetes-style age: 45s, 3m12s, 2h5m, 4d3h. */
function age(ms: number): string {
  const s = Math.max(0, Math.floor(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

export async function proxyStatusCommand(args: string[], fail: (message: string) => never, out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  let v: { admin?: string; output?: string };
  try {
    v = parseArgs({ args, options: { admin: { type: 'string' }, output: { type: 'string', short: 'o' } }, strict: true, allowPositionals: false }).values;
  } catch (e) {
    return fail((e as Error).message.split('\n')[0]);
  }
  const admin = v.admin ?? '127.0.0.1:15014';
  if (!/^(\[[0-9a-fA-F:.]+\]|[^:\s/]+):\d{1,5}$/.test(admin)) fail(`--admin: "${admin}" is not HOST:PORT (e.g. 127.0.0.1:15014)`);
  const output = v.output ?? 'table';
  if (output !== 'table' && output !== 'json') fail(`--output: "${output}" is not table or json`);
  const url = `http://${admin}/debug/proxy-status`;
  let report: ProxyStatusReport;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
    if (res.status !== 200) {
      process.stderr.write(`meshgate proxy-status: ${url}: HTTP ${res.status} (is this a meshgate control admin port?)\n`);
      return 1;
    }
    report = (await res.json()) as ProxyStatusReport;
  } catch (e) {
    process.stderr.write(`meshgate proxy-status: cannot reach the control plane's admin at ${admin}: ${(e as Error).message}\n`);
    return 1;
  }
  out(output === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatProxyStatus(report));
  return 0;
}
