/**
 * Kinds meshgate knowingly does not read: workloads, RBAC and cluster plumbing that sit next to
 * routing config in the same directory (Istio's samples, the Kubernetes docs' examples), and Istio
 * kinds that do not apply to an ingress gateway. Those are info ("not routing config"); any other
 * kind is a warning, with a did-you-mean when it is close to a kind meshgate reads: a typo there
 * means nothing will be served.
 */
export const IGNORED_KINDS: Readonly<Record<string, string>> = Object.fromEntries([
  ...['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'ReplicationController', 'Job', 'CronJob', 'HorizontalPodAutoscaler', 'PodDisruptionBudget'].map((k) => [k, 'a workload, not routing config']),
  ...['ServiceAccount', 'Role', 'RoleBinding', 'ClusterRole', 'ClusterRoleBinding'].map((k) => [k, 'access control of the cluster, not routing config']),
  ...['Namespace', 'PersistentVolume', 'PersistentVolumeClaim', 'StorageClass', 'LimitRange', 'ResourceQuota', 'PriorityClass', 'NetworkPolicy', 'CustomResourceDefinition', 'Node', 'MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration', 'Lease', 'Event'].map((k) => [k, 'cluster plumbing, not routing config']),
  // Istio kinds for sidecars only: a gateway does not use them.
  ...['WorkloadGroup'].map((k) => [k, 'an Istio sidecar setting; it does not apply to an ingress gateway']),
  // Istio's ProxyConfig resource (networking.istio.io/v1beta1) holds concurrency, environment
  // variables and the image of the proxy container; its namesake in MeshConfig (proxyHeaders,
  // gatewayTopology, proxyMetadata) is read from defaultConfig and the pod annotation instead.
  ['ProxyConfig', "Istio's proxy deployment settings (concurrency, environment variables, image), which meshgate does not apply; ProxyConfig proxyHeaders, gatewayTopology and proxyMetadata are read from MeshConfig defaultConfig and the pod annotation proxy.istio.io/config"],
]);
