/**
 * Istio ProxyConfig `proxyHeaders` -> IR `SecurityConfig.proxyHeaders` (ir/proxy-headers.ts). PURE.
 *
 * Where it comes from, as Istio 1.2x reads it:
 * - MeshConfig `defaultConfig.proxyHeaders` (ConfigMap istio-system/istio);
 * - overridden by the proxy's pod annotation `proxy.istio.io/config` (ProxyConfig YAML). Istio's merge
 *   (`pkg/config/mesh` MergeProxyConfig): an annotation that has `proxyHeaders` replaces MeshConfig's
 *   whole, except that `forwardedClientCert`, `requestId`, `attemptCount`, `server` and
 *   `envoyDebugHeaders` the annotation leaves out are taken from MeshConfig (`correctProxyHeaders`).
 *   So `metadataExchangeHeaders`, `setCurrentClientCertDetails`, `preserveHttp1HeaderCase` and the
 *   `xForwarded*` fields of MeshConfig are dropped when the annotation says anything of
 *   `proxyHeaders`. The annotation without `proxyHeaders` leaves MeshConfig's as it is.
 * - The ProxyConfig custom resource (networking.istio.io/v1beta1) has no `proxyHeaders` field
 *   (only concurrency, environment variables and image), so it has no say here.
 *
 * Whose annotation: a sidecar's own pod; for the gateway, the Pods of the gateway namespace that carry
 * the gateway labels (as `gatewayTopology`, gateway-topology.ts): one snapshot serves them all, so
 * pods that disagree are reported and MeshConfig alone applies.
 *
 * Per listener class (`pilot/pkg/networking/util/proxy_headers.go` and its callers):
 * - `server`, `requestId`, `envoyDebugHeaders`, `metadataExchangeHeaders`: gateway and sidecar;
 * - `attemptCount`: gateway and sidecar outbound, in Istio and meshgate;
 * - `forwardedClientCert`, `setCurrentClientCertDetails`: a sidecar's inbound side only; Istio's
 *   gateways use `gatewayTopology.forwardClientCertDetails` instead (reported as not applying).
 * - `preserveHttp1HeaderCase`, `xForwardedHost`, `xForwardedPort`: not honoured; reported when set.
 */
import { parse } from 'yaml';
import type { ClientCertDetails, ProxyHeaders } from '../../ir/proxy-headers.js';
import type { ForwardClientCertDetails } from '../../ir/security.js';
import { isObj, obj, type Obj } from '../../lib/unknown.js';
import type { ResourceSet } from '../../resources/resource-set.js';
import type { KubeObject } from '../../resources/types.js';
import { matchesLabels } from '../backends.js';
import { readMeshConfig } from '../mesh-config.js';
import type { TranslateContext } from '../types.js';

/** Istio's per-pod ProxyConfig override. */
const PROXY_CONFIG_ANNOTATION = 'proxy.istio.io/config';

/** The ProxyHeaders fields Istio's merge takes from MeshConfig when the annotation leaves them out. */
const CORRECTED = ['forwardedClientCert', 'requestId', 'attemptCount', 'server', 'envoyDebugHeaders'] as const;

const KNOWN = new Set([...CORRECTED, 'setCurrentClientCertDetails', 'metadataExchangeHeaders', 'preserveHttp1HeaderCase', 'xForwardedHost', 'xForwardedPort']);

const XFCC_MODES: readonly ForwardClientCertDetails[] = ['SANITIZE', 'FORWARD_ONLY', 'APPEND_FORWARD', 'SANITIZE_SET', 'ALWAYS_FORWARD_ONLY'];

/** A `server` value must be a header value a client can read back: visible ASCII and inner spaces. */
const SERVER_VALUE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;

/** Who the snapshot serves: Istio's gateway listener class, or a sidecar (inbound and outbound). */
export type ProxyClass = 'gateway' | 'sidecar';

/** One field's value and where it came from (for diagnostics). */
interface Sourced {
  value: unknown;
  from: KubeObject;
  /** Field path of `proxyHeaders` in `from` (the key is appended). */
  field: string;
}

/**
 * The `proxyHeaders` of one proxy: `pods` are the pods whose annotation applies (a sidecar's own; the
 * gateway's Pods). `{}` when every field keeps its default.
 */
export function translateProxyHeaders(ctx: TranslateContext, resources: ResourceSet, cls: ProxyClass, pods: readonly KubeObject[]): { proxyHeaders?: ProxyHeaders } {
  const merged = mergedProxyHeaders(ctx, resources, pods);
  if (merged === null) return {};
  const out: ProxyHeaders = {};
  /** Invalid values are errors (the field is ignored); what meshgate does not do is MG_UNSUPPORTED. */
  const report = (s: Sourced, key: string, message: string, severity: 'error' | 'warning' | 'info' = 'error'): void =>
    ctx.report(severity, severity === 'error' ? 'MG_INVALID_FIELD' : 'MG_UNSUPPORTED', s.from, `${s.field}.${key}`, message);
  /** A `{ <flag>: bool }` message (Istio's wrappers); undefined when absent or invalid (reported). */
  const flag = (key: string, name: 'disabled' | 'enabled'): boolean | undefined => {
    const s = merged.get(key);
    if (s === undefined || s.value === null) return undefined;
    if (!isObj(s.value)) {
      report(s, key, `${JSON.stringify(s.value)} is not an object like {${name}: true}; it is ignored`);
      return undefined;
    }
    unknownKeys(ctx, s, key, s.value, [name, ...(key === 'server' ? ['value'] : [])]);
    const v = s.value[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') {
      report(s, `${key}.${name}`, `${JSON.stringify(v)} is not a boolean (true or false); it is ignored`);
      return undefined;
    }
    return v;
  };

  // server: disabled wins over value (proxy_headers.go checks it first).
  const server = merged.get('server');
  if (flag('server', 'disabled') === true) out.server = { mode: 'pass-through' };
  else if (server !== undefined && isObj(server.value) && server.value.value !== undefined && server.value.value !== null && server.value.value !== '') {
    const v = server.value.value;
    if (typeof v !== 'string' || !SERVER_VALUE.test(v)) report(server, 'server.value', `${JSON.stringify(v)} is not a header value (visible ASCII, no leading or trailing space); the server header stays meshgate`);
    else if (v !== 'meshgate') out.server = { mode: 'overwrite', name: v };
  }
  if (flag('requestId', 'disabled') === true) out.requestId = false;
  if (flag('attemptCount', 'disabled') === true) out.attemptCount = false;
  if (flag('envoyDebugHeaders', 'disabled') === true) out.envoyDebugHeaders = false;

  const mx = merged.get('metadataExchangeHeaders');
  if (mx !== undefined && mx.value !== null) {
    const mode = isObj(mx.value) ? mx.value.mode : mx.value;
    if (isObj(mx.value)) unknownKeys(ctx, mx, 'metadataExchangeHeaders', mx.value, ['mode']);
    if (mode === 'IN_MESH' || mode === 1) out.metadataExchange = 'IN_MESH';
    else if (mode !== undefined && mode !== null && mode !== 'UNDEFINED' && mode !== 0) report(mx, 'metadataExchangeHeaders.mode', `${JSON.stringify(mode)} is not UNDEFINED or IN_MESH; UNDEFINED applies`);
  }

  const xfcc = merged.get('forwardedClientCert');
  const certDetails = merged.get('setCurrentClientCertDetails');
  if (cls === 'gateway') {
    // Istio's gateways read gatewayTopology for XFCC (gateway.go buildGatewayConnectionManager).
    for (const s of [xfcc, certDetails]) {
      if (s === undefined || s.value === null || (s === xfcc && s.value === 'UNDEFINED')) continue;
      const key = s === xfcc ? 'forwardedClientCert' : 'setCurrentClientCertDetails';
      report(s, key, `${key} applies to sidecars' inbound side only; gateways take x-forwarded-client-cert handling from gatewayTopology.forwardClientCertDetails, as Istio's do`, 'info');
    }
  } else {
    if (xfcc !== undefined && xfcc.value !== null && xfcc.value !== 'UNDEFINED' && xfcc.value !== 0) {
      const mode = typeof xfcc.value === 'number' ? ['UNDEFINED', 'SANITIZE', 'FORWARD_ONLY', 'APPEND_FORWARD', 'SANITIZE_SET', 'ALWAYS_FORWARD_ONLY'][xfcc.value] : xfcc.value;
      if (typeof mode !== 'string' || !(XFCC_MODES as readonly string[]).includes(mode)) report(xfcc, 'forwardedClientCert', `${JSON.stringify(xfcc.value)} is not one of ${XFCC_MODES.join(', ')}; APPEND_FORWARD (the sidecar default) applies`);
      else if (mode !== 'APPEND_FORWARD') out.forwardClientCertDetails = mode as ForwardClientCertDetails;
    }
    if (certDetails !== undefined && certDetails.value !== null) {
      if (!isObj(certDetails.value)) report(certDetails, 'setCurrentClientCertDetails', `${JSON.stringify(certDetails.value)} is not an object; Subject, URI and DNS (the default) apply`);
      else {
        const c = certDetails.value;
        unknownKeys(ctx, certDetails, 'setCurrentClientCertDetails', c, ['subject', 'cert', 'chain', 'dns', 'uri']);
        // Istio's defaults (listener_inbound.go): subject, uri, dns unless false; cert, chain only when true.
        const pick = (k: keyof ClientCertDetails, dflt: boolean): boolean => {
          const v = c[k];
          if (v === undefined || v === null) return dflt;
          if (typeof v !== 'boolean') {
            report(certDetails, `setCurrentClientCertDetails.${k}`, `${JSON.stringify(v)} is not a boolean (true or false); ${String(dflt)} (the default) applies`);
            return dflt;
          }
          return v;
        };
        const d: ClientCertDetails = { subject: pick('subject', true), cert: pick('cert', false), chain: pick('chain', false), dns: pick('dns', true), uri: pick('uri', true) };
        if (!d.subject || d.cert || d.chain || !d.dns || !d.uri) out.clientCertDetails = d;
      }
    }
  }

  const preserve = merged.get('preserveHttp1HeaderCase');
  if (preserve !== undefined && preserve.value !== null && preserve.value !== false) {
    if (preserve.value === true) report(preserve, 'preserveHttp1HeaderCase', 'not honoured: meshgate sends HTTP/1.1 header names in lowercase (as HTTP/2 requires them), whatever case they arrived in; header names are case-insensitive (RFC 9110 §5.1)', 'warning');
    else report(preserve, 'preserveHttp1HeaderCase', `${JSON.stringify(preserve.value)} is not a boolean (true or false); it is ignored`);
  }
  for (const key of ['xForwardedHost', 'xForwardedPort'] as const) {
    const s = merged.get(key);
    if (flag(key, 'enabled') === true) report(s!, key, `not honoured: meshgate does not add ${key === 'xForwardedHost' ? 'x-forwarded-host on rewritten hosts (its gateway always sets x-forwarded-host; its sidecars pass the client\'s on)' : 'x-forwarded-port'}`, 'warning');
  }
  return Object.keys(out).length === 0 ? {} : { proxyHeaders: out };
}

/** Unknown keys of a nested message: reported, ignored (Istio's parser retries ignoring them). */
function unknownKeys(ctx: TranslateContext, s: Sourced, key: string, v: Obj, known: readonly string[]): void {
  for (const k of Object.keys(v)) {
    if (!known.includes(k)) ctx.report('warning', 'MG_UNKNOWN_FIELD', s.from, `${s.field}.${key}.${k}`, `unknown field ${k} of ProxyHeaders.${key} (known: ${known.join(', ')}); ignored`);
  }
}

/**
 * MeshConfig's `defaultConfig.proxyHeaders` merged with the pods' annotation as Istio merges them, by
 * key; null when neither says anything.
 */
function mergedProxyHeaders(ctx: TranslateContext, resources: ResourceSet, pods: readonly KubeObject[]): Map<string, Sourced> | null {
  const mesh = readMeshConfig(ctx, resources);
  const base = new Map<string, Sourced>();
  if (mesh !== null) {
    const raw = obj(mesh.mesh.defaultConfig).proxyHeaders;
    if (raw !== undefined && raw !== null && !isObj(raw)) ctx.report('error', 'MG_INVALID_FIELD', mesh.from, 'data.mesh: defaultConfig.proxyHeaders', `${JSON.stringify(raw)} is not an object; it is ignored`);
    for (const [k, v] of Object.entries(obj(raw))) base.set(k, { value: v, from: mesh.from, field: 'data.mesh: defaultConfig.proxyHeaders' });
  }
  const overlay = podProxyConfigField(ctx, pods, 'proxyHeaders');
  let out = base;
  if (overlay !== null) {
    out = new Map();
    for (const [k, v] of Object.entries(overlay.value)) out.set(k, { value: v, from: overlay.pod, field: `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]: proxyHeaders` });
    for (const k of CORRECTED) {
      const own = out.get(k);
      const absent = own === undefined || own.value === null || (k === 'forwardedClientCert' && (own.value === 'UNDEFINED' || own.value === 0));
      const fromMesh = base.get(k);
      if (absent && fromMesh !== undefined) out.set(k, fromMesh);
    }
  }
  for (const [k, s] of out) {
    if (!KNOWN.has(k)) ctx.report('warning', 'MG_UNKNOWN_FIELD', s.from, `${s.field}.${k}`, `unknown field ${k} of ProxyConfig.proxyHeaders (known: ${[...KNOWN].join(', ')}); ignored`);
  }
  return out.size === 0 ? null : out;
}

/**
 * ProxyConfig field `field` of the pods' `proxy.istio.io/config` annotation (`{}` included); null
 * when no pod's annotation has it, when an annotation is not valid (reported: Istio's agent refuses
 * it, jsonpb cannot read it into the message), or when the pods disagree (reported: one snapshot
 * serves every gateway pod). Then MeshConfig's `defaultConfig` applies.
 */
export function podProxyConfigField(ctx: TranslateContext, pods: readonly KubeObject[], field: 'proxyHeaders' | 'gatewayTopology'): { pod: KubeObject; value: Obj } | null {
  let first: { pod: KubeObject; value: Obj | null; text: string } | null = null;
  for (const pod of pods) {
    const annotation = pod.metadata.annotations[PROXY_CONFIG_ANNOTATION];
    if (annotation === undefined) continue;
    let value: Obj | null;
    try {
      const raw = obj(parse(annotation))[field];
      if (raw !== undefined && raw !== null && !isObj(raw)) {
        ctx.report('error', 'MG_INVALID_FIELD', pod, `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]: ${field}`, `${JSON.stringify(raw)} is not an object; MeshConfig's ${field} applies`);
        return null;
      }
      value = raw === undefined || raw === null ? null : raw;
    } catch (e) {
      ctx.report('error', 'MG_INVALID_FIELD', pod, `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]`, `not valid ProxyConfig YAML (${(e as Error).message.split('\n')[0]}); MeshConfig's ${field} applies`);
      return null;
    }
    const text = JSON.stringify(value);
    if (first === null) first = { pod, value, text };
    else if (first.text !== text) {
      ctx.report('warning', 'MG_UNSUPPORTED', pod, `metadata.annotations["${PROXY_CONFIG_ANNOTATION}"]`, `${field} differs from pod ${first.pod.metadata.name}'s; one snapshot serves every gateway pod, so MeshConfig's ${field} applies`);
      return null;
    }
  }
  return first === null || first.value === null ? null : { pod: first.pod, value: first.value };
}

/** The gateway's Pods (gateway namespace, gateway labels), whose annotation applies to the gateway. */
export function gatewayPods(ctx: TranslateContext, resources: ResourceSet): KubeObject[] {
  return resources.ofKind('Pod').filter((p) => p.metadata.namespace === ctx.options.gatewayNamespace && matchesLabels(p.metadata.labels, ctx.options.gatewayLabels));
}
