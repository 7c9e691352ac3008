/**
 * Diagnostics: what every stage (loading, schema checks, translation) says about its input.
 * The CLI, logs, the admin API and Kubernetes status all read one list of these.
 */

export type Severity = 'error' | 'warning' | 'info';

/** Stable reason codes. Add new ones here; never rename an existing one. */
export type DiagnosticReason =
  | 'MG_PARSE_ERROR' // a file is not valid YAML/JSON
  | 'MG_FILE_UNSETTLED' // a config file still being written when loaded: its last content read whole is used (warning)
  | 'MG_INVALID_OBJECT' // not a Kubernetes object (no apiVersion/kind/metadata.name)
  | 'MG_DUPLICATE_OBJECT' // the same kind/namespace/name defined twice
  | 'MG_UNKNOWN_KIND' // a kind meshgate does not read (ignored)
  | 'MG_UNKNOWN_FIELD' // a field the API does not define
  | 'MG_DEPRECATED_FIELD' // a field the API deprecates: still read, its replacement named (warning)
  | 'MG_INVALID_FIELD' // a field with a value of the wrong type or outside its range
  | 'MG_MISSING_FIELD' // a required field is absent
  | 'MG_INVALID_REGEX' // a regex that does not compile or uses what RE2 lacks
  | 'MG_INVALID_WEIGHTS' // weights that are negative, all zero, or not integers
  | 'MG_SERVICE_NOT_FOUND' // a backend names a Service/host that does not exist
  | 'MG_SERVICE_PORT_NOT_FOUND' // a backend names a port the Service does not have
  | 'MG_SUBSET_NOT_FOUND' // a route names a DestinationRule subset that does not exist
  | 'MG_SECRET_NOT_FOUND' // a TLS Secret that does not exist
  | 'MG_SECRET_INVALID' // a Secret without usable tls.crt/tls.key
  | 'MG_DUPLICATE_HOST' // two objects claim the same host on one listener
  | 'MG_ALIAS' // an ExternalName Service served as an alias of the service it names (info)
  | 'MG_DUPLICATE_PATH' // two Ingress paths with the same host, path and pathType (the first wins)
  | 'MG_GATEWAY_NOT_FOUND' // a VirtualService names a Gateway that does not exist or is not selected
  | 'MG_HOST_NOT_IN_GATEWAY' // a VirtualService host that no server of its gateways admits
  | 'MG_PORT_CONFLICT' // two listeners want one port with different protocols
  | 'MG_INGRESS_CLASS_IGNORED' // an Ingress for another controller (warning: nothing is served for it)
  | 'MG_GATEWAY_NOT_SELECTED' // a Gateway whose selector does not select this proxy (warning; info when it selects other pods)
  | 'MG_UNSUPPORTED' // a field meshgate reads but does not implement yet (warning)
  | 'MG_UNREACHABLE_ROUTE' // a route that can never match (after a catch-all)
  | 'MG_NGINX_SNIPPET_REFUSED' // an ingress-nginx *-snippet annotation or ConfigMap key: never executed, the Ingress is not served
  | 'MG_NOT_BOUND' // a route object that applies to no gateway of this proxy: mesh-only, or not exported to it (info)
  | 'MG_INVALID_IR' // the snapshot failed validation (a translator bug)
  | 'MG_REF_NOT_PERMITTED' // Gateway API: a cross-namespace reference without a ReferenceGrant
  | 'MG_ROUTE_NOT_ACCEPTED' // Gateway API: a route a parent Gateway does not accept (status Accepted=False)
  | 'MG_BACKEND_NOT_RESOLVED' // Gateway API: a backendRef that does not resolve (status ResolvedRefs=False)
  | 'MG_LISTENERS_MERGED' // Gateway API: identical listeners of several Gateways on one address and port serve the union of their routes (info)
  | 'MG_DESTINATION_RULE_IGNORED' // a DestinationRule covering a host a proxy routes to that Istio's lookup does not use for that proxy (warning)
  | 'MG_POLICY_OVERRIDDEN'; // a policy whose settings another one with precedence replaces for some target (BackendTLSPolicy under a DestinationRule's tls) (warning)

/** The object a diagnostic is about. */
export interface ObjectRef {
  kind: string;
  namespace: string;
  name: string;
}

export interface Diagnostic {
  severity: Severity;
  reason: DiagnosticReason;
  /** null when the problem is not tied to an object (e.g. a file that does not parse). */
  object: ObjectRef | null;
  /** Field path inside the object, e.g. `spec.rules[0].http.paths[1].backend.service.port`; null for the whole object. */
  field: string | null;
  /** File the object or problem is in, relative to the config directory; null when not from a file. */
  file: string | null;
  /** 1-based line in `file`; null when unknown. */
  line: number | null;
  /** What is wrong and what to do, for a person. */
  message: string;
}

/** One line for people: `error MG_INVALID_REGEX VirtualService/shop/reviews spec.http[0].match[0].uri.regex (vs.yaml:12): ...` */
export function formatDiagnostic(d: Diagnostic): string {
  const parts: string[] = [d.severity, d.reason];
  if (d.object) parts.push(`${d.object.kind}/${d.object.namespace}/${d.object.name}`);
  if (d.field) parts.push(d.field);
  if (d.file) parts.push(`(${d.file}${d.line !== null ? `:${d.line}` : ''})`);
  return `${parts.join(' ')}: ${d.message}`;
}

/** Canonical order: file, line, then message; so output does not depend on arrival order. */
export function compareDiagnostics(a: Diagnostic, b: Diagnostic): number {
  const ka = `${a.file ?? '~'}\u0000${String(a.line ?? 0).padStart(8, '0')}\u0000${a.object ? `${a.object.kind}/${a.object.namespace}/${a.object.name}` : ''}\u0000${a.field ?? ''}\u0000${a.reason}\u0000${a.message}`;
  const kb = `${b.file ?? '~'}\u0000${String(b.line ?? 0).padStart(8, '0')}\u0000${b.object ? `${b.object.kind}/${b.object.namespace}/${b.object.name}` : ''}\u0000${b.field ?? ''}\u0000${b.reason}\u0000${b.message}`;
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export function hasErrors(diagnostics: readonly Diagnostic[]): boolean {
  return diagnostics.some((d) => d.severity === 'error');
}
