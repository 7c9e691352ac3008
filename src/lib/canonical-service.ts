/**
 * Istio's canonical service of a workload (pkg/kube/labels/labels.go `CanonicalService`), shared by
 * the control plane (translate/sidecar/workloads.ts) and the proxies' telemetry (runtime/sidecar/):
 * the first label present of `service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`,
 * else the workload name; the revision from `service.istio.io/canonical-revision`,
 * `app.kubernetes.io/version`, `version`, else `latest`. A label present with an empty value counts
 * as present, as Istio's map lookup does.
 */

export const CANONICAL_NAME_LABEL = 'service.istio.io/canonical-name';
export const CANONICAL_REVISION_LABEL = 'service.istio.io/canonical-revision';

function firstLabel(labels: Readonly<Record<string, string>>, a: string, b: string, c: string): string | undefined {
  return Object.hasOwn(labels, a) ? labels[a] : Object.hasOwn(labels, b) ? labels[b] : Object.hasOwn(labels, c) ? labels[c] : undefined;
}

/** `service.istio.io/canonical-name`, `app.kubernetes.io/name`, `app`, else `workload`. */
export function canonicalServiceName(labels: Readonly<Record<string, string>>, workload: string): string {
  return firstLabel(labels, CANONICAL_NAME_LABEL, 'app.kubernetes.io/name', 'app') ?? workload;
}

/** `service.istio.io/canonical-revision`, `app.kubernetes.io/version`, `version`, else `latest`. */
export function canonicalServiceRevision(labels: Readonly<Record<string, string>>): string {
  return firstLabel(labels, CANONICAL_REVISION_LABEL, 'app.kubernetes.io/version', 'version') ?? 'latest';
}
