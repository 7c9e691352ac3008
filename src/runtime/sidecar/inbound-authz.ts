/**
 * AuthorizationPolicy on a sidecar's inbound TCP connections (reference/mesh.md §2.9; Istio's
 * "Authorization on TCP traffic"). A TCP connection has only connection attributes: the peer's
 * principal and namespace (mTLS), source and destination IP, the target port and the SNI. Rules
 * that name HTTP-only attributes (methods, paths, hosts, headers, request principals, JWT claims)
 * are adapted as Istio does, always towards the more restrictive answer:
 * - ALLOW: such a rule is dropped (it never matches), so a policy made only of HTTP rules allows
 *   nothing over TCP;
 * - DENY: the HTTP-only conditions are removed and the rest of the rule still applies.
 * CUSTOM policies call an HTTP authorization service and do not apply to TCP; AUDIT and dry-run
 * policies never change an answer.
 *
 * HTTP traffic is authorized by the request path (filters/security.ts) with every attribute.
 */
import type { AuthorizationPolicy, AuthzCondition, AuthzRule } from '../../ir/types.js';
import { authorize, compileAuthz, type AuthzAttributes, type CompiledAuthz } from '../filters/rbac.js';

/** Attribute keys a TCP connection has. */
const CONNECTION_KEYS = new Set(['source.principal', 'source.namespace', 'source.serviceAccount', 'source.ip', 'remote.ip', 'destination.port', 'destination.ip', 'connection.sni']);

function httpOnly(c: AuthzCondition): boolean {
  return !CONNECTION_KEYS.has(c.key);
}

function ruleHasHttpOnly(r: AuthzRule): boolean {
  return r.from.some((s) => s.some(httpOnly)) || r.to.some((s) => s.some(httpOnly)) || r.when.some(httpOnly);
}

function withoutHttpOnly(r: AuthzRule): AuthzRule {
  return {
    from: r.from.map((s) => s.filter((c) => !httpOnly(c))),
    to: r.to.map((s) => s.filter((c) => !httpOnly(c))),
    when: r.when.filter((c) => !httpOnly(c)),
  };
}

/** The policies as they apply to TCP connections (see the file comment). */
export function tcpPolicies(policies: readonly AuthorizationPolicy[]): AuthorizationPolicy[] {
  const out: AuthorizationPolicy[] = [];
  for (const p of policies) {
    if (p.action === 'CUSTOM' || p.action === 'AUDIT' || p.dryRun) continue;
    if (p.action === 'ALLOW') out.push({ ...p, rules: p.rules.filter((r) => !ruleHasHttpOnly(r)) });
    else out.push({ ...p, rules: p.rules.map(withoutHttpOnly) });
  }
  return out;
}

/** null when no policy constrains TCP connections. */
export function compileTcpAuthz(policies: readonly AuthorizationPolicy[]): CompiledAuthz | null {
  return compileAuthz(tcpPolicies(policies));
}

/** What a TCP connection offers to authorization. */
export interface TcpConnectionFacts {
  peerIp: string;
  localIp: string;
  /** Target port (the original destination port). */
  port: number;
  sni: string;
  /** `<td>/ns/<ns>/sa/<sa>` (no `spiffe://`), or null without a verified peer certificate. */
  peerPrincipal: string | null;
}

const NO_LINES: string[] = [];

export function authorizeTcp(z: CompiledAuthz, f: TcpConnectionFacts): { allowed: boolean; policy: string | null } {
  const a: AuthzAttributes = {
    method: '',
    path: '',
    authority: '',
    port: f.port,
    remoteIp: f.peerIp,
    sourceIp: f.peerIp,
    localIp: f.localIp,
    sni: f.sni,
    headerLines: () => NO_LINES,
    identity: null,
    peerPrincipal: f.peerPrincipal,
  };
  const d = authorize(z, a, true);
  return { allowed: d.allowed, policy: d.policy };
}
