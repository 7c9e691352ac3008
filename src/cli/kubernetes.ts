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
import { readFileSync } from 'node:fs';
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
import { IngressStatusWriter, type PublishTarget } from '../providers/kubernetes/status.js';

export interface KubernetesRunOptions {
  /** `--kubeconfig`; null: in-cluster service account, else $KUBECONFIG / ~/.kube/config. */
  kubeconfig: string | null;
  /** `--watch-namespace` (repeatable); null: all namespaces. */
  watchNamespaces: string[] | null;
  /** `--namespace`: where the leader Lease lives. */
  namespace: string;
  publish: PublishTarget | null;
  /** `--secret-label-selector`; null: read only referenced Secrets. */
  secretLabelSelector: string | null;
}

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
const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

type Values = Record<string, string | boolean | string[] | undefined>;

/** Read the Kubernetes flags; `fail` reports bad usage (and does not return). */
export function parseKubernetesOptions(v: Values, fail: (message: string) => never): KubernetesRunOptions {
  const one = (k: string) => (typeof v[k] === 'string' ? (v[k] as string) : undefined);
  const namespaces = Array.isArray(v['watch-namespace']) ? v['watch-namespace'].flatMap((n) => n.split(',')).map((n) => n.trim()).filter(Boolean) : [];
  for (const ns of namespaces) if (!DNS_LABEL.test(ns)) fail(`--watch-namespace: "${ns}" is not a namespace name`);
  const namespace = one('namespace') ?? defaultNamespace();
  if (!DNS_LABEL.test(namespace)) fail(`--namespace: "${namespace}" is not a namespace name`);
  const service = one('publish-service');
  const address = one('publish-address');
  if (service !== undefined && address !== undefined) fail('--publish-service and --publish-address cannot be used together');
  let publish: PublishTarget | null = null;
  if (service !== undefined) {
    const m = /^([a-z0-9-]+)\/([a-z0-9.-]+)$/.exec(service);
    if (!m) fail(`--publish-service: "${service}" is not NAMESPACE/NAME`);
    publish = { service: { namespace: m[1], name: m[2] } };
  } else if (address !== undefined) {
    const addresses = address.split(',').map((a) => a.trim()).filter(Boolean);
    if (addresses.length === 0) fail('--publish-address: give at least one IP or hostname');
    publish = { addresses };
  }
  const selector = one('secret-label-selector');
  if (selector !== undefined && !/^[A-Za-z0-9._/-]+(!?=[A-Za-z0-9._-]*)?(,[A-Za-z0-9._/-]+(!?=[A-Za-z0-9._-]*)?)*$/.test(selector)) fail(`--secret-label-selector: "${selector}" is not a label selector (a=b,c)`);
  return { kubeconfig: one('kubeconfig') ?? null, watchNamespaces: namespaces.length > 0 ? [...new Set(namespaces)] : null, namespace, publish, secretLabelSelector: selector ?? null };
}

/** The pod's own namespace (POD_NAMESPACE, else the service account's), else `meshgate-system`. */
export function defaultNamespace(env: NodeJS.ProcessEnv = process.env, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE.trim();
  try {
    const ns = read(SA_NAMESPACE_FILE).trim();
    if (ns) return ns;
  } catch {
    // Not in a cluster.
  }
  return 'meshgate-system';
}

export interface KubernetesWiring {
  source: KubernetesSource;
  elector: LeaderElector;
  status: IngressStatusWriter;
  events: EventRecorder;
  /** Give to the Controller: runs after every reload. */
  onDiagnostics(diagnostics: Diagnostic[]): void;
  /** Start campaigning for the Lease and watching the publish Service (after the first load). */
  start(): void;
  /** Step down (releasing the Lease) and stop; the source is closed by the Controller. */
  stop(): Promise<void>;
  /** Resolves when status and Event writes scheduled so far are done (tests). */
  idle(): Promise<void>;
}

export function wireKubernetes(opts: KubernetesRunOptions, translate: TranslateOptions, log: Logger, timings: KubernetesTimings = {}, client = ApiClient.load(opts.kubeconfig)): KubernetesWiring {
  const klog = log.child({ component: 'kubernetes' });
  const identity = `${process.env.POD_NAME ?? os.hostname()}_${randomBytes(4).toString('hex')}`;
  const source = new KubernetesSource({ client, log: klog, watchNamespaces: opts.watchNamespaces, secretLabelSelector: opts.secretLabelSelector, debounceMs: timings.debounceMs, rediscoverMs: timings.rediscoverMs, backoff: timings.backoff });
  const status = new IngressStatusWriter({ client, log: klog, publish: opts.publish, backoff: timings.backoff });
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
      if (leading) recordEvents();
    },
  });
  let statusTimer: NodeJS.Timeout | null = null;
  return {
    source,
    elector,
    status,
    events,
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
    },
  };
}
