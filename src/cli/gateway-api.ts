/** Gateway API bits of the CLI: the `--gateway-controller-name` flag and status lines for `meshgate validate`. */
import net from 'node:net';
import os from 'node:os';
import type { GatewayApiCondition, GatewayApiStatus } from '../translate/gatewayapi/status.js';
import { DEFAULT_GATEWAY_CONTROLLER_NAME } from '../translate/gatewayapi/index.js';

export const GATEWAY_API_FLAGS = {
  'gateway-controller-name': { type: 'string' },
  'gateway-bind-addresses': { type: 'string' },
} as const;

/**
 * What this machine can bind, for Gateways with addresses of their own: every address of its
 * interfaces, and the whole prefix of a loopback interface (Linux answers on all of 127.0.0.0/8).
 */
export function localBindableAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(os.networkInterfaces())) {
    for (const a of list ?? []) {
      const entry = a.internal && a.cidr !== null ? a.cidr : a.address.replace(/%.*$/, '');
      if (!out.includes(entry)) out.push(entry);
    }
  }
  return out;
}

/**
 * `--gateway-bind-addresses LIST`: IPs or CIDRs (comma-separated) a Gateway's own `spec.addresses`
 * may be bound at (`none`: no Gateway gets its own sockets). Default: this machine's addresses.
 */
function bindableAddresses(value: string | undefined, fail: (message: string) => Error): string[] {
  if (value === undefined) return localBindableAddresses();
  if (value === 'none') return [];
  const list = value.split(',').map((x) => x.trim()).filter((x) => x !== '');
  for (const c of list) {
    const [ip, prefix, extra] = c.split('/');
    const family = net.isIP(ip);
    const bits = family === 4 ? 32 : 128;
    if (family === 0 || extra !== undefined || (prefix !== undefined && !(/^\d+$/.test(prefix) && Number(prefix) <= bits))) throw fail(`--gateway-bind-addresses: "${c}" is not an IP address or CIDR (e.g. 127.0.0.0/8,10.0.0.5)`);
  }
  return list;
}

/** `--gateway-controller-name`: a GatewayClass `controllerName` (`DOMAIN/PATH`). */
export function gatewayApiOptions(str: (k: string) => string | undefined, fail: (message: string) => Error): { gatewayControllerName: string; gatewayBindableAddresses: string[] } {
  const name = str('gateway-controller-name') ?? DEFAULT_GATEWAY_CONTROLLER_NAME;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/.test(name) || name.length > 253) {
    throw fail(`--gateway-controller-name: "${name}" is not a controller name (DOMAIN/PATH, e.g. ${DEFAULT_GATEWAY_CONTROLLER_NAME})`);
  }
  return { gatewayControllerName: name, gatewayBindableAddresses: bindableAddresses(str('gateway-bind-addresses'), fail) };
}

const conds = (list: GatewayApiCondition[]): string => list.map((c) => `${c.type}=${c.status}(${c.reason})`).join(' ');

/** The conditions Kubernetes mode would write, one line per object, listener and route parent. */
export function formatGatewayApiStatus(s: GatewayApiStatus): string[] {
  const out: string[] = [];
  for (const c of s.gatewayClasses) out.push(`status GatewayClass/${c.name}: ${conds(c.conditions)}`);
  for (const g of s.gateways) {
    out.push(`status Gateway/${g.namespace}/${g.name}: ${conds(g.conditions)}${g.addresses.length ? ` addresses=${g.addresses.map((a) => a.value).join(',')}` : ''}`);
    for (const l of g.listeners) out.push(`  listener ${l.name}: attachedRoutes=${l.attachedRoutes} supportedKinds=${l.supportedKinds.map((k) => k.kind).join(',') || '-'} ${conds(l.conditions)}`);
  }
  for (const r of s.routes) {
    for (const p of r.parents) {
      const ref = `${p.parentRef.namespace}/${p.parentRef.name}${p.parentRef.sectionName ? `/${p.parentRef.sectionName}` : ''}${p.parentRef.port ? `:${p.parentRef.port}` : ''}`;
      out.push(`status ${r.kind}/${r.namespace}/${r.name} parent ${ref}: ${conds(p.conditions)}`);
    }
  }
  for (const p of s.policies) for (const a of p.ancestors) out.push(`status ${p.kind}/${p.namespace}/${p.name}: ${conds(a.conditions)}`);
  return out;
}
