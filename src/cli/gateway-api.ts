/** Gateway API bits of the CLI: the `--gateway-controller-name` flag and status lines for `meshgate validate`. */
import type { GatewayApiCondition, GatewayApiStatus } from '../translate/gatewayapi/status.js';
import { DEFAULT_GATEWAY_CONTROLLER_NAME } from '../translate/gatewayapi/index.js';

export const GATEWAY_API_FLAGS = {
  'gateway-controller-name': { type: 'string' },
} as const;

/** `--gateway-controller-name`: a GatewayClass `controllerName` (`DOMAIN/PATH`). */
export function gatewayApiOptions(str: (k: string) => string | undefined, fail: (message: string) => Error): { gatewayControllerName: string } {
  const name = str('gateway-controller-name') ?? DEFAULT_GATEWAY_CONTROLLER_NAME;
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$/.test(name) || name.length > 253) {
    throw fail(`--gateway-controller-name: "${name}" is not a controller name (DOMAIN/PATH, e.g. ${DEFAULT_GATEWAY_CONTROLLER_NAME})`);
  }
  return { gatewayControllerName: name };
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
