/**
 * Gateway API status as an output of translation. Every condition that says something is wrong is
 * made by `StatusRecorder`, which also files the matching diagnostic, so `meshgate validate`, the
 * admin API and the Kubernetes `/status` writer all read one set of findings (as Contour's status
 * cache and Envoy Gateway's status package do). Conditions carry no lastTransitionTime: translate
 * is pure; the writer stamps the time when a condition's status changes.
 */
import type { DiagnosticReason } from '../../lib/diagnostic.js';
import type { KubeObject } from '../../resources/types.js';
import { num, obj } from '../../lib/unknown.js';
import type { TranslateContext } from '../types.js';

export interface GatewayApiCondition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  observedGeneration: number;
}

export interface RouteGroupKind {
  group: string;
  kind: string;
}

export interface ListenerStatusOut {
  name: string;
  supportedKinds: RouteGroupKind[];
  attachedRoutes: number;
  conditions: GatewayApiCondition[];
}

export interface ParentRefOut {
  group: string;
  kind: string;
  namespace: string;
  name: string;
  sectionName?: string;
  port?: number;
}

export interface RouteParentStatusOut {
  parentRef: ParentRefOut;
  controllerName: string;
  conditions: GatewayApiCondition[];
}

export interface ObjectStatusKey {
  kind: string;
  namespace: string;
  name: string;
  generation: number;
}

export interface GatewayClassStatusOut extends ObjectStatusKey {
  conditions: GatewayApiCondition[];
}

export interface GatewayStatusOut extends ObjectStatusKey {
  addresses: { type: string; value: string }[];
  conditions: GatewayApiCondition[];
  listeners: ListenerStatusOut[];
}

export interface RouteStatusOut extends ObjectStatusKey {
  /** Only parents this controller manages; other controllers' entries are left alone by the writer. */
  parents: RouteParentStatusOut[];
}

export interface PolicyAncestorStatusOut {
  ancestorRef: ParentRefOut;
  controllerName: string;
  conditions: GatewayApiCondition[];
}

export interface PolicyStatusOut extends ObjectStatusKey {
  ancestors: PolicyAncestorStatusOut[];
}

/** Everything meshgate would write to `/status` subresources, sorted by kind, namespace, name. */
export interface GatewayApiStatus {
  controllerName: string;
  gatewayClasses: GatewayClassStatusOut[];
  gateways: GatewayStatusOut[];
  routes: RouteStatusOut[];
  policies: PolicyStatusOut[];
}

export function generationOf(o: KubeObject): number {
  return num(obj(o.body.metadata).generation) ?? 1;
}

export function statusKey(o: KubeObject): ObjectStatusKey {
  return { kind: o.kind, namespace: o.metadata.namespace, name: o.metadata.name, generation: generationOf(o) };
}

/** Which conditions are bad news (filed as diagnostics): `Conflicted`/`OverlappingTLSConfig` are negative polarity. */
function isProblem(c: GatewayApiCondition): boolean {
  if (c.type === 'Conflicted' || c.type === 'OverlappingTLSConfig') return c.status === 'True';
  return c.status === 'False';
}

/** Makes conditions and their diagnostics from one call. */
export class StatusRecorder {
  constructor(readonly ctx: TranslateContext) {}

  /**
   * Set (replace by type) a condition on `list` for `o`. A problem condition is also reported as a
   * diagnostic `<Type>=<Status> <Reason>: <message>` with `reason` at `field`.
   */
  set(
    list: GatewayApiCondition[],
    o: KubeObject,
    type: string,
    status: GatewayApiCondition['status'],
    reason: string,
    message: string,
    diag?: { code: DiagnosticReason; field: string | null; severity?: 'error' | 'warning' | 'info' },
  ): void {
    const c: GatewayApiCondition = { type, status, reason, message, observedGeneration: generationOf(o) };
    const at = list.findIndex((x) => x.type === type);
    if (at >= 0) list[at] = c;
    else list.push(c);
    if (diag && isProblem(c)) this.ctx.report(diag.severity ?? 'error', diag.code, o, diag.field, `${type}=${status} ${reason}: ${message}`);
  }
}

export function emptyStatus(controllerName: string): GatewayApiStatus {
  return { controllerName, gatewayClasses: [], gateways: [], routes: [], policies: [] };
}

function cmpKey(a: ObjectStatusKey, b: ObjectStatusKey): number {
  const ka = `${a.kind}/${a.namespace}/${a.name}`;
  const kb = `${b.kind}/${b.namespace}/${b.name}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export function sortStatus(s: GatewayApiStatus): GatewayApiStatus {
  return { ...s, gatewayClasses: [...s.gatewayClasses].sort(cmpKey), gateways: [...s.gateways].sort(cmpKey), routes: [...s.routes].sort(cmpKey), policies: [...s.policies].sort(cmpKey) };
}
