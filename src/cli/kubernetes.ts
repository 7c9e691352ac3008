/**
 * `meshgate run --kubernetes`: the Kubernetes source, leader election, Ingress status and Events,
 * wired around the same Controller the file directory uses.
 *
 *   source (list+watch) ──► Controller ──► data plane          (every replica serves traffic)
 *                               │ onDiagnostics
 *                               ▼
 *        served Ingresses ──► status writer ─┐
 *        diagnostics ──────► event recorder ─┴─ write only while this replica holds the Lease
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { Diagnostic } from '../lib/diagnostic.js';
import type { Logger } from '../lib/log.js';
import { ResourceSet } from '../resources/resource-set.js';
import { servedIngresses } from '../translate/ingress/index.js';
import type { TranslateOptions } from '../translate/index.js';
import { ApiClient } from '../providers/kubernetes/api-client.js';
import type { BackoffOptions } from '../providers/kubernetes/backoff.js';
import { EventRecorder } from '../providers/kubernetes/events.js';
import { LeaderElector } from '../providers/kubernetes/leader.js';
import { KubernetesSource } from '../providers/kubernetes/source.js';
import { IngressStatusWriter } from '../providers/kubernetes/status.js';
import { GatewayStatusWriter, type GatewayApiStatusInput } from '../providers/kubernetes/gateway-status.js';
import { GATEWAY_API_GROUP } from '../providers/kubernetes/kinds.js';
import type { KubernetesRunOptions } from './kubernetes-options.js';
import { defaultPodLabelSources, ownPodLabels, type OwnPodLabels } from './pod-labels.js';

export { defaultNamespace, parseKubernetesOptions, type KubernetesRunOptions } from './kubernetes-options.js';

/** Timings tests shorten; production uses the defaults of each component. */
export interface KubernetesTimings {
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
  debounceMs?: number;
  rediscoverMs?: number;
  backoff?: BackoffOptions;
}

export const LEASE_NAME = 'meshgate-leader';
export interface KubernetesWiring {
  source: KubernetesSource;
  elector: LeaderElector;
  status: IngressStatusWriter;
  /** Gateway API status (`/status` of GatewayClasses, Gateways, routes, BackendTLSPolicies), leader only. */
  gatewayStatus: GatewayStatusWriter;
  events: EventRecorder;
  /** Give to the Controller: runs after every reload. */
  onDiagnostics(diagnostics: Diagnostic[]): void;
  /** Give to the Controller: the Gateway API status of every reload. */
  onGatewayApiStatus(status: GatewayApiStatusInput): void;
  /** Start campaigning for the Lease and watching the publish Service (after the first load). */
  start(): void;
  /** Step down (releasing the Lease) and stop; the source is closed by the Controller. */
  stop(): Promise<void>;
  /** Resolves when status and Event writes scheduled so far are done (tests). */
  idle(): Promise<void>;
  /** The labels of meshgate's own Pod (downward API file, else a GET of the pod); null outside a cluster. */
  ownPodLabels(): Promise<OwnPodLabels | null>;
}

export function wireKubernetes(opts: KubernetesRunOptions, translate: TranslateOptions, log: Logger, timings: KubernetesTimings = {}, client = ApiClient.load(opts.kubeconfig)): KubernetesWiring {
  const klog = log.child({ component: 'kubernetes' });
  const identity = `${process.env.POD_NAME ?? os.hostname()}_${randomBytes(4).toString('hex')}`;
  const source = new KubernetesSource({ client, log: klog, watchNamespaces: opts.watchNamespaces, secretLabelSelector: opts.secretLabelSelector, gatewayNamespace: translate.gatewayNamespace, configMaps: translate.nginxConfigMap ? [translate.nginxConfigMap] : [], debounceMs: timings.debounceMs, rediscoverMs: timings.rediscoverMs, backoff: timings.backoff });
  const status = new IngressStatusWriter({ client, log: klog, publish: opts.publish, backoff: timings.backoff });
  const gatewayStatus = new GatewayStatusWriter({
    client,
    log: klog,
    lookup: (k, ns, n) => source.lookupInGroup(GATEWAY_API_GROUP, k, ns, n),
    // The publish Service or --publish-address, as for Ingress status; unknown: none.
    addresses: () => status.addresses()?.map((a) => (a.ip ? { type: 'IPAddress', value: a.ip } : { type: 'Hostname', value: a.hostname ?? '' })) ?? null,
  });
  const events = new EventRecorder({ client, log: klog, identity, lookup: (k, ns, n) => source.lookup(k, ns, n) });
  let diagnostics: Diagnostic[] = [];
  let eventWrites: Promise<void> = Promise.resolve();
  const recordEvents = () => {
    const now = diagnostics;
    eventWrites = eventWrites.then(() => (elector.leading ? events.record(now) : undefined));
  };
  const elector = new LeaderElector({
    client,
    namespace: opts.namespace,
    name: LEASE_NAME,
    identity,
    leaseDurationMs: timings.leaseDurationMs,
    renewDeadlineMs: timings.renewDeadlineMs,
    retryPeriodMs: timings.retryPeriodMs,
    log: klog,
    onChange: (leading) => {
      status.setLeading(leading);
      gatewayStatus.setLeading(leading);
      if (leading) recordEvents();
    },
  });
  let statusTimer: NodeJS.Timeout | null = null;
  return {
    source,
    elector,
    status,
    gatewayStatus,
    events,
    onGatewayApiStatus(s) {
      gatewayStatus.setStatus(s);
    },
    onDiagnostics(d) {
      diagnostics = d;
      recordEvents();
      // Off the reload's path: the snapshot is applied first, status follows.
      statusTimer ??= setTimeout(() => {
        statusTimer = null;
        const resources = new ResourceSet([...source.items('Ingress'), ...source.items('IngressClass')]);
        const served = servedIngresses(resources, translate);
        const servedSet = new Set(served);
        status.setServed(served, resources.ofKind('Ingress').filter((i) => !servedSet.has(i)));
      }, 0);
    },
    start() {
      status.start();
      elector.start();
    },
    async stop() {
      if (statusTimer) clearTimeout(statusTimer);
      await elector.stop(true);
      status.stop();
    },
    async idle() {
      await eventWrites;
      await status.idle();
      await gatewayStatus.idle();
    },
    ownPodLabels() {
      return ownPodLabels(defaultPodLabelSources((ns, name) => client.expect('GET', `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`)));
    },
  };
}
