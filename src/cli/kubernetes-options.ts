/**
 * The flags of `meshgate run --kubernetes`, read without loading the Kubernetes client: `main.ts`
 * parses them in every process, and imports `kubernetes.ts` (and `@kubernetes/client-node`, about
 * 55 MiB of RSS) only in the process that runs the Kubernetes source, never in data-plane workers.
 */
import { readFileSync } from 'node:fs';
import type { PublishTarget } from '../providers/kubernetes/status.js';

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
  return podNamespace(env, read) ?? 'meshgate-system';
}

/** The namespace this pod runs in (POD_NAMESPACE, else the service account's); null outside a cluster. */
export function podNamespace(env: NodeJS.ProcessEnv = process.env, read: (path: string) => string = (p) => readFileSync(p, 'utf8')): string | null {
  if (env.POD_NAMESPACE) return env.POD_NAMESPACE.trim();
  try {
    const ns = read(SA_NAMESPACE_FILE).trim();
    if (ns) return ns;
  } catch {
    // Not in a cluster.
  }
  return null;
}
