/**
 * `meshgate inject`: the sidecar injection of `istioctl kube-inject`, for meshgate's capture and
 * sidecar. Pure: manifests text in, manifests text and diagnostics out.
 *
 * For every pod template (Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController,
 * Job, CronJob, OpenShift DeploymentConfig, and those inside a `kind: List`) it adds:
 *   - init container `istio-init`: `meshgate capture` (TPROXY, reference mesh.md §2.3) with the ports
 *     and ranges of the `traffic.sidecar.istio.io/*` annotations, as root with NET_ADMIN and NET_RAW;
 *   - container `istio-proxy`: `meshgate sidecar --control ... --pod-ip $(POD_IP) ...`, the values
 *     from the downward API, readiness (and startup) probe GET /healthz/ready on 15021, ports 15020
 *     and 15021;
 *   - volumes: the projected service-account token (audience istio-ca, 12 h) at
 *     /var/run/secrets/tokens/istio-token and ConfigMap istio-ca-root-cert at
 *     /var/run/secrets/istio/root-cert.pem, as Istio mounts them;
 *   - labels `security.istio.io/tlsMode: istio` (auto-mTLS picks meshed endpoints by it) and the
 *     canonical service name and revision; annotations `sidecar.istio.io/status` (what was added:
 *     how a second run knows), kubectl's default container, Prometheus scraping of 15020;
 *   - the app's httpGet/tcpSocket/grpc probes rewritten to the sidecar's 15020
 *     (`/app-health/<container>/readyz`), the originals in ISTIO_KUBE_APP_PROBERS, as Istio does.
 *
 * Container names are Istio's (`istio-init`, `istio-proxy`) so tooling that expects them
 * (`kubectl logs -c istio-proxy`, Kiali, dashboards) keeps working, and a pod that istioctl already
 * injected is recognised as injected.
 *
 * The sidecar starts as root (uid 0, gid 1337) with NET_ADMIN, SETUID and SETGID only, as Istio's
 * injection template does in TPROXY interception mode (`runAsUser: 0`, `runAsGroup: 1337`, NET_ADMIN):
 * TPROXY listeners need IP_TRANSPARENT, which needs CAP_NET_ADMIN at bind time, and Kubernetes gives
 * a non-root container no effective capabilities. It binds its listeners, then drops to --proxy-uid
 * (1337), the uid capture exempts (the issue's contract for `meshgate sidecar`); gid 1337 exempts it
 * from capture even before the drop.
 *
 * Documents that are not injected are copied byte for byte; injected ones keep their comments.
 */
import { Document, isMap, isSeq, parseDocument, type YAMLMap, type YAMLSeq } from 'yaml';
import type { Diagnostic } from '../../lib/diagnostic.js';
import { podDeployName } from '../../lib/workload-name.js';
import { CaptureOptionError, parseCidrList, parseInboundPorts, parseIncludeCidrs, parsePortList } from '../capture/rules.js';

export interface InjectOptions {
  /** The meshgate image for both containers. */
  image: string;
  imagePullPolicy: string;
  /** The control plane (CA and config push), HOST:PORT. */
  control: string;
  /** The proxy's uid: capture exempts it, the sidecar drops to it. */
  proxyUid: number;
  /**
   * Kubernetes native sidecar (1.28+): `istio-proxy` becomes an init container with
   * `restartPolicy: Always` right after `istio-init`, so application init containers already have
   * the proxy and Jobs end when their app does.
   */
  nativeSidecar: boolean;
  /**
   * The mesh-wide DNS capture (MeshConfig `defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE`, which
   * the control plane's webhook passes): capture gets `--redirect-dns`. A pod's
   * `proxy.istio.io/config` overrides it. Default off.
   */
  dnsCapture?: boolean;
}

export const DEFAULT_INJECT_OPTIONS: InjectOptions = {
  image: 'meshgate:0.1.0',
  imagePullPolicy: 'IfNotPresent',
  control: 'istiod.istio-system.svc:15012',
  proxyUid: 1337,
  nativeSidecar: false,
};

export const INIT_CONTAINER = 'istio-init';
export const PROXY_CONTAINER = 'istio-proxy';
export const STATUS_ANNOTATION = 'sidecar.istio.io/status';
const TOKEN_VOLUME = 'istio-token';
const ROOT_CERT_VOLUME = 'istiod-ca-cert';
const TMP_VOLUME = 'meshgate-tmp';
const TOKEN_DIR = '/var/run/secrets/tokens';
const ROOT_CERT_DIR = '/var/run/secrets/istio';
/** Ports the sidecar and capture own in the pod. */
const RESERVED_PORTS = [15000, 15001, 15006, 15008, 15020, 15021, 15090];
/** Inbound ports never captured: 15020 (metrics), 15021 (health), 15090 (Envoy stats), as Istio's template. */
const DEFAULT_EXCLUDE_INBOUND = ['15090', '15021', '15020'];

/** Where the pod template sits in each kind (apiVersion group is not checked: kinds are unambiguous here). */
const TEMPLATE_PATHS: Record<string, (string | number)[]> = {
  Pod: [],
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  Job: ['spec', 'template'],
  DeploymentConfig: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface InjectOutcome {
  kind: string;
  namespace: string;
  name: string;
  /** injected, or why not. */
  result: 'injected' | 'already-injected' | 'disabled' | 'host-network' | 'no-containers' | 'invalid';
}

export interface InjectResult {
  output: string;
  outcomes: InjectOutcome[];
  diagnostics: Diagnostic[];
}

/** A document boundary: `---` alone or followed by a space/comment at column 0. */
const SEPARATOR = /^---(?=\s|$)/;

/** Splits multi-document YAML into [separator line or '', body] chunks, keeping every byte. */
function splitDocuments(text: string): { head: string; body: string; line: number }[] {
  const lines = text.split(/(?<=\n)/);
  const out: { head: string; body: string; line: number }[] = [];
  let cur = { head: '', body: '', line: 1 };
  lines.forEach((l, i) => {
    if (SEPARATOR.test(l)) {
      if (cur.head !== '' || cur.body !== '') out.push(cur);
      cur = { head: l, body: '', line: i + 2 };
    } else cur.body += l;
  });
  out.push(cur);
  return out;
}

/** Injects every pod template in `text` (multi-document YAML). */
export function injectManifests(text: string, options: InjectOptions = DEFAULT_INJECT_OPTIONS, file = '-'): InjectResult {
  const outcomes: InjectOutcome[] = [];
  const diagnostics: Diagnostic[] = [];
  let output = '';
  for (const chunk of splitDocuments(text)) {
    output += chunk.head;
    if (chunk.body.trim() === '' || /^\s*(#.*\n?\s*)*$/.test(chunk.body)) {
      output += chunk.body;
      continue;
    }
    const doc = parseDocument(chunk.body, { keepSourceTokens: false });
    if (doc.errors.length > 0) {
      diagnostics.push({
        severity: 'error',
        reason: 'MG_PARSE_ERROR',
        object: null,
        field: null,
        file,
        line: chunk.line + (doc.errors[0].linePos?.[0].line ?? 1) - 1,
        message: `not valid YAML, left unchanged: ${doc.errors[0].message.split('\n')[0]}`,
      });
      output += chunk.body;
      continue;
    }
    const lineOf = (offset: number | undefined) => (offset === undefined ? chunk.line : chunk.line + (chunk.body.slice(0, offset).match(/\n/g)?.length ?? 0));
    const changed = injectDocument(doc, [], options, outcomes, diagnostics, file, lineOf);
    output += changed ? doc.toString({ lineWidth: 0, flowCollectionPadding: false }) : chunk.body;
  }
  return { output, outcomes, diagnostics };
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function firstNonEmpty(...values: (string | undefined)[]): string | undefined {
  return values.find((v) => v !== undefined && v !== '');
}

/** A YAML node (or scalar) as plain data. */
function yamlToJs(node: unknown): unknown {
  return node !== null && typeof node === 'object' && 'toJSON' in node && typeof node.toJSON === 'function' ? (node.toJSON as () => unknown)() : node;
}

/** Injects the object at `base` (the document root, or a List item). Returns whether anything changed. */
function injectDocument(
  doc: Document,
  base: (string | number)[],
  o: InjectOptions,
  outcomes: InjectOutcome[],
  diagnostics: Diagnostic[],
  file: string,
  lineOf: (offset: number | undefined) => number,
): boolean {
  const kind = str(doc.getIn([...base, 'kind']));
  if (kind === 'List') {
    const items = doc.getIn([...base, 'items']);
    if (!isSeq(items)) return false;
    let changed = false;
    for (let i = 0; i < items.items.length; i++) changed = injectDocument(doc, [...base, 'items', i], o, outcomes, diagnostics, file, lineOf) || changed;
    return changed;
  }
  if (kind === undefined || !(kind in TEMPLATE_PATHS)) return false;
  const tpl = [...base, ...TEMPLATE_PATHS[kind]];
  const ref = {
    kind,
    namespace: str(doc.getIn([...base, 'metadata', 'namespace'])) ?? 'default',
    name: str(doc.getIn([...base, 'metadata', 'name'])) ?? str(doc.getIn([...base, 'metadata', 'generateName'])) ?? '',
  };
  const outcome = (result: InjectOutcome['result']) => outcomes.push({ ...ref, result });
  const fieldBase = TEMPLATE_PATHS[kind].length > 0 ? `${TEMPLATE_PATHS[kind].join('.')}.` : '';
  const annotations = readStringMap(doc.getIn([...tpl, 'metadata', 'annotations']));
  const labels = readStringMap(doc.getIn([...tpl, 'metadata', 'labels']));

  // sidecar.istio.io/inject: "false" (annotation, or the label Istio also honours) turns injection off.
  const inject = annotations['sidecar.istio.io/inject'] ?? labels['sidecar.istio.io/inject'];
  if (inject !== undefined && ['false', 'n', 'no', 'off'].includes(inject.toLowerCase())) return void outcome('disabled'), false;
  if (doc.getIn([...tpl, 'spec', 'hostNetwork']) === true) return void outcome('host-network'), false;
  const containers = doc.getIn([...tpl, 'spec', 'containers']);
  if (!isSeq(containers) || containers.items.length === 0) return void outcome('no-containers'), false;
  const names = (seq: unknown) => (isSeq(seq) ? seq.items.map((c) => (isMap(c) ? str(c.get('name')) : undefined)) : []);
  const initContainers = doc.getIn([...tpl, 'spec', 'initContainers']);
  if (annotations[STATUS_ANNOTATION] !== undefined || names(containers).includes(PROXY_CONTAINER) || names(initContainers).includes(PROXY_CONTAINER)) {
    return void outcome('already-injected'), false;
  }

  // Diagnostics point at the annotation's own line.
  const annotationLine = (key: string) => lineOf((doc.getIn([...tpl, 'metadata', 'annotations', key], true) as { range?: [number] } | undefined)?.range?.[0]);
  const problem = (key: string, message: string, severity: Diagnostic['severity'] = 'error', reason: Diagnostic['reason'] = 'MG_INVALID_FIELD') =>
    diagnostics.push({ severity, reason, object: ref, field: `${fieldBase}metadata.annotations[${key}]`, file, line: annotationLine(key), message });
  const capture = captureArgs(annotations, o, (key, message) => problem(key, `${message}; not injected`));
  if (capture === null) return void outcome('invalid'), false;
  const mode = annotations['sidecar.istio.io/interceptionMode'];
  if (mode === 'REDIRECT') {
    problem('sidecar.istio.io/interceptionMode', 'REDIRECT is not supported (Node cannot read SO_ORIGINAL_DST); TPROXY is used', 'warning', 'MG_UNSUPPORTED');
  }
  const captureOn = mode !== 'NONE';
  // An app port the sidecar or capture owns cannot work once injected (Istio's reserved ports).
  containers.items.forEach((c, i) => {
    const ports = isMap(c) ? c.get('ports') : undefined;
    if (!isSeq(ports)) return;
    ports.items.forEach((p, j) => {
      const port = isMap(p) ? p.get('containerPort') : undefined;
      if (typeof port === 'number' && RESERVED_PORTS.includes(port)) {
        const node = (p as YAMLMap).get('containerPort', true) as { range?: [number] } | undefined;
        diagnostics.push({
          severity: 'warning',
          reason: 'MG_PORT_CONFLICT',
          object: ref,
          field: `${fieldBase}spec.containers[${i}].ports[${j}].containerPort`,
          file,
          line: lineOf(node?.range?.[0]),
          message: `port ${port} is reserved for the sidecar (15000 admin, 15001 outbound, 15006 inbound, 15008 HBONE, 15020 metrics, 15021 health, 15090 stats); injected anyway`,
        });
      }
    });
  });
  const image = annotations['sidecar.istio.io/proxyImage'] ?? o.image;
  const appContainer = str((containers.items[0] as YAMLMap).get('name'));

  const init = captureOn ? initContainer(image, o, capture) : undefined;
  const proxy = proxyContainer(image, o, annotations);
  // Capture redirecting DNS to 15053 needs the DNS proxy listening whatever the view says (a view
  // without DNS, or none yet, must not leave the app without DNS): the sidecar gets --dns-capture.
  if (captureOn && capture.includes('--redirect-dns')) (proxy.args as string[]).push('--dns-capture');
  if (o.nativeSidecar) proxy.restartPolicy = 'Always';
  // Istio's rewriteAppHTTPProbers (on by default): the kubelet's probes go to the sidecar's 15020,
  // which is never captured, and the sidecar probes the app itself; otherwise STRICT mTLS would refuse
  // the kubelet's plaintext probes. `sidecar.istio.io/rewriteAppHTTPProbers: "false"` keeps them.
  if ((annotations['sidecar.istio.io/rewriteAppHTTPProbers'] ?? 'true').toLowerCase() !== 'false') {
    const probers = rewriteProbes(doc, containers);
    if (Object.keys(probers).length > 0) (proxy.env as unknown[]).push({ name: APP_PROBERS_ENV, value: JSON.stringify(probers) });
  }
  const addedInit = [...(init ? [init] : []), ...(o.nativeSidecar ? [proxy] : [])];
  if (addedInit.length > 0) {
    if (isSeq(initContainers)) (initContainers as YAMLSeq).items.unshift(...addedInit.map((c) => doc.createNode(c)));
    else doc.setIn([...tpl, 'spec', 'initContainers'], doc.createNode(addedInit));
  }
  if (!o.nativeSidecar) containers.add(doc.createNode(proxy));
  const vols = volumes();
  const existing = doc.getIn([...tpl, 'spec', 'volumes']);
  if (isSeq(existing)) for (const v of vols) existing.add(doc.createNode(v));
  else doc.setIn([...tpl, 'spec', 'volumes'], doc.createNode(vols));

  // Labels the control plane and peers read (reference mesh.md §2.7 and §4).
  // Istio's DeploymentMeta.Name: the object's own name, but for a Pod the controller's (its
  // Deployment, CronJob...) as pkg/kube/util.go GetDeployMetaFromPod derives it.
  const workload =
    kind === 'Pod'
      ? podDeployName({ name: ref.name, generateName: str(doc.getIn([...base, 'metadata', 'generateName'])), labels, ownerReferences: yamlToJs(doc.getIn([...base, 'metadata', 'ownerReferences'])) })
      : ref.name.replace(/-$/, '');
  const setLabel = (k: string, v: string) => {
    if (labels[k] === undefined) doc.setIn([...tpl, 'metadata', 'labels', k], v);
  };
  setLabel('security.istio.io/tlsMode', 'istio');
  // Istio's template: the first non-empty of the labels, else the workload name, cut to 63 characters
  // and trimmed of '-', '_' and '.' (a label value's limits).
  const canonicalName = (firstNonEmpty(labels['app.kubernetes.io/name'], labels.app) ?? workload).slice(0, 63).replace(/^[-_.]+|[-_.]+$/g, '');
  setLabel('service.istio.io/canonical-name', canonicalName);
  setLabel('service.istio.io/canonical-revision', firstNonEmpty(labels['app.kubernetes.io/version'], labels.version) ?? 'latest');
  const setAnnotation = (k: string, v: string) => {
    if (annotations[k] === undefined) doc.setIn([...tpl, 'metadata', 'annotations', k], v);
  };
  if (appContainer) {
    setAnnotation('kubectl.kubernetes.io/default-container', appContainer);
    setAnnotation('kubectl.kubernetes.io/default-logs-container', appContainer);
  }
  // The app's own Prometheus annotations are kept (the sidecar does not merge app metrics yet).
  if (!Object.keys(annotations).some((k) => k.startsWith('prometheus.io/'))) {
    setAnnotation('prometheus.io/scrape', 'true');
    setAnnotation('prometheus.io/port', '15020');
    setAnnotation('prometheus.io/path', '/stats/prometheus');
  }
  setAnnotation(
    STATUS_ANNOTATION,
    JSON.stringify({
      initContainers: [...(init ? [INIT_CONTAINER] : []), ...(o.nativeSidecar ? [PROXY_CONTAINER] : [])],
      containers: o.nativeSidecar ? [] : [PROXY_CONTAINER],
      volumes: vols.map((v) => v.name),
      imagePullSecrets: null,
    }),
  );
  // Collections we added to are written in block style, even where the input used flow style
  // (`spec: {containers: [...]}`): a sidecar inside a one-line flow map is unreadable.
  for (const p of [[], ['metadata'], ['metadata', 'labels'], ['metadata', 'annotations'], ['spec'], ['spec', 'containers'], ['spec', 'initContainers'], ['spec', 'volumes']]) {
    const node = p.length === 0 && tpl.length === 0 ? doc.contents : doc.getIn([...tpl, ...p], true);
    if (isMap(node) || isSeq(node)) node.flow = false;
  }
  outcome('injected');
  return true;
}

/** The env var that tells the sidecar the app's original probes (Istio's name and JSON shape). */
export const APP_PROBERS_ENV = 'ISTIO_KUBE_APP_PROBERS';
/** The sidecar's status port, where rewritten probes go (`/app-health/<container>/<readyz|livez|startupz>`). */
export const STATUS_PORT = 15020;

/**
 * Rewrites every httpGet, tcpSocket and grpc probe of the app containers to
 * `GET /app-health/<container>/<readyz|livez|startupz>` on the status port, and returns what each
 * path stood for (`{path: {httpGet|tcpSocket|grpc: ..., timeoutSeconds}}`, named ports resolved), as
 * Istio's injector does. exec probes are left alone.
 */
function rewriteProbes(doc: Document, containers: YAMLSeq): Record<string, unknown> {
  const probers: Record<string, unknown> = {};
  for (const c of containers.items) {
    if (!isMap(c)) continue;
    const name = str(c.get('name'));
    if (!name) continue;
    const named = new Map<string, number>();
    const ports = c.get('ports');
    if (isSeq(ports)) {
      for (const p of ports.items) {
        if (isMap(p) && typeof p.get('name') === 'string' && typeof p.get('containerPort') === 'number') named.set(p.get('name') as string, p.get('containerPort') as number);
      }
    }
    const port = (v: unknown) => (typeof v === 'string' && named.has(v) ? named.get(v) : v);
    for (const [field, suffix] of [['readinessProbe', 'readyz'], ['livenessProbe', 'livez'], ['startupProbe', 'startupz']] as const) {
      const probe = c.get(field);
      if (!isMap(probe)) continue;
      const js = probe.toJSON() as Record<string, Record<string, unknown> | number | undefined>;
      const timeoutSeconds = typeof js.timeoutSeconds === 'number' ? js.timeoutSeconds : 1;
      let original: Record<string, unknown> | undefined;
      if (js.httpGet && typeof js.httpGet === 'object') original = { httpGet: { ...js.httpGet, port: port(js.httpGet.port) } };
      else if (js.tcpSocket && typeof js.tcpSocket === 'object') original = { tcpSocket: { ...js.tcpSocket, port: port(js.tcpSocket.port) } };
      else if (js.grpc && typeof js.grpc === 'object') original = { grpc: { ...js.grpc } };
      if (!original) continue;
      const path = `/app-health/${name}/${suffix}`;
      probers[path] = { ...original, timeoutSeconds };
      for (const k of ['httpGet', 'tcpSocket', 'grpc']) probe.delete(k);
      // httpGet first, where the handler was.
      probe.items.unshift(doc.createPair('httpGet', { path, port: STATUS_PORT, scheme: 'HTTP' }));
      probe.flow = false;
    }
  }
  return probers;
}

function readStringMap(node: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isMap(node)) return out;
  for (const pair of node.items) {
    const k = (pair.key as { value?: unknown } | null)?.value;
    const v = (pair.value as { value?: unknown } | null)?.value;
    if (typeof k === 'string' && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) out[k] = String(v);
  }
  return out;
}

/** `meshgate capture` arguments from the traffic annotations (checked with capture's own parsers). */
function captureArgs(a: Record<string, string>, o: InjectOptions, fail: (key: string, message: string) => void): string[] | null {
  const args = ['capture', '--proxy-uid', String(o.proxyUid)];
  const check = (key: string, parse: (v: string) => unknown): string | undefined | null => {
    const v = a[key];
    if (v === undefined) return undefined;
    try {
      parse(v);
      return v.split(',').map((s) => s.trim()).filter((s) => s !== '').join(',');
    } catch (e) {
      if (e instanceof CaptureOptionError) {
        fail(key, e.message);
        return null;
      }
      throw e;
    }
  };
  const include = a['traffic.sidecar.istio.io/includeInboundPorts'];
  const inbound = include !== undefined && include.trim() === '*' ? '*' : check('traffic.sidecar.istio.io/includeInboundPorts', parseInboundPorts);
  const excludeIn = check('traffic.sidecar.istio.io/excludeInboundPorts', (v) => parsePortList('excludeInboundPorts', v));
  const excludeOutPorts = check('traffic.sidecar.istio.io/excludeOutboundPorts', (v) => parsePortList('excludeOutboundPorts', v));
  const includeOutPorts = check('traffic.sidecar.istio.io/includeOutboundPorts', (v) => parsePortList('includeOutboundPorts', v));
  const excludeCidrs = check('traffic.sidecar.istio.io/excludeOutboundIPRanges', (v) => parseCidrList('excludeOutboundIPRanges', v));
  const includeCidrs = a['traffic.sidecar.istio.io/includeOutboundIPRanges']?.trim() === '*' ? '*' : check('traffic.sidecar.istio.io/includeOutboundIPRanges', parseIncludeCidrs);
  if ([inbound, excludeIn, excludeOutPorts, includeOutPorts, excludeCidrs, includeCidrs].includes(null)) return null;
  args.push('--inbound-ports', inbound ?? '*');
  const excluded = [...DEFAULT_EXCLUDE_INBOUND, ...(excludeIn ? excludeIn.split(',') : [])];
  args.push('--exclude-inbound-ports', [...new Set(excluded)].join(','));
  if (excludeOutPorts) args.push('--exclude-outbound-ports', excludeOutPorts);
  if (includeOutPorts) args.push('--include-outbound-ports', includeOutPorts);
  if (excludeCidrs) args.push('--exclude-outbound-cidrs', excludeCidrs);
  if (includeCidrs && includeCidrs !== '*') args.push('--include-outbound-cidrs', includeCidrs);
  // DNS capture: the pod's ProxyConfig (`proxy.istio.io/config` proxyMetadata ISTIO_META_DNS_CAPTURE),
  // which istio-iptables reads as REDIRECT_DNS; MeshConfig's value is the control plane's to apply.
  const dns = dnsCaptureOf(a['proxy.istio.io/config'], o.dnsCapture === true, (message) => fail('proxy.istio.io/config', message));
  if (dns === null) return null;
  if (dns) args.push('--redirect-dns');
  return args;
}

/** `proxyMetadata.ISTIO_META_DNS_CAPTURE` of a `proxy.istio.io/config` annotation (Go booleans), else `mesh`; null when the annotation is not ProxyConfig YAML. */
function dnsCaptureOf(text: string | undefined, mesh: boolean, fail: (message: string) => void): boolean | null {
  if (text === undefined) return mesh;
  const doc = parseDocument(text);
  if (doc.errors.length > 0) {
    fail(`not valid ProxyConfig YAML (${doc.errors[0].message.split('\n')[0]})`);
    return null;
  }
  const value: unknown = doc.getIn(['proxyMetadata', 'ISTIO_META_DNS_CAPTURE']);
  const v = typeof value === 'boolean' ? String(value) : typeof value === 'string' ? value : undefined;
  if (v !== undefined && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (v !== undefined && ['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  return mesh;
}

function initContainer(image: string, o: InjectOptions, args: string[]): Record<string, unknown> {
  return {
    name: INIT_CONTAINER,
    image,
    imagePullPolicy: o.imagePullPolicy,
    args,
    resources: { requests: { cpu: '10m', memory: '40Mi' }, limits: { cpu: '2', memory: '1Gi' } },
    securityContext: {
      allowPrivilegeEscalation: false,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
      privileged: false,
      // iptables takes /run/xtables.lock.
      readOnlyRootFilesystem: false,
      runAsGroup: 0,
      runAsNonRoot: false,
      runAsUser: 0,
    },
  };
}

function proxyContainer(image: string, o: InjectOptions, a: Record<string, string>): Record<string, unknown> {
  const field = (name: string, path: string) => ({ name, valueFrom: { fieldRef: { fieldPath: path } } });
  const requests: Record<string, string> = { cpu: a['sidecar.istio.io/proxyCPU'] ?? '100m', memory: a['sidecar.istio.io/proxyMemory'] ?? '128Mi' };
  const limits: Record<string, string> = { cpu: a['sidecar.istio.io/proxyCPULimit'] ?? '2', memory: a['sidecar.istio.io/proxyMemoryLimit'] ?? '1Gi' };
  const probe = (extra: Record<string, number>) => ({ httpGet: { path: '/healthz/ready', port: 15021, scheme: 'HTTP' }, ...extra });
  return {
    name: PROXY_CONTAINER,
    image,
    imagePullPolicy: o.imagePullPolicy,
    args: [
      'sidecar',
      '--control', o.control,
      '--root-cert', `${ROOT_CERT_DIR}/root-cert.pem`,
      '--token-file', `${TOKEN_DIR}/istio-token`,
      '--pod-ip', '$(POD_IP)',
      '--namespace', '$(POD_NAMESPACE)',
      '--service-account', '$(SERVICE_ACCOUNT)',
      '--pod-name', '$(POD_NAME)',
      '--proxy-uid', String(o.proxyUid),
    ],
    env: [
      field('POD_NAME', 'metadata.name'),
      field('POD_NAMESPACE', 'metadata.namespace'),
      field('POD_IP', 'status.podIP'),
      field('SERVICE_ACCOUNT', 'spec.serviceAccountName'),
      field('NODE_NAME', 'spec.nodeName'),
    ],
    ports: [
      { containerPort: 15020, name: 'http-monitoring', protocol: 'TCP' },
      { containerPort: 15021, name: 'status-port', protocol: 'TCP' },
    ],
    readinessProbe: probe({ periodSeconds: 15, timeoutSeconds: 3, failureThreshold: 4 }),
    startupProbe: probe({ periodSeconds: 1, timeoutSeconds: 3, failureThreshold: 600 }),
    resources: { requests, limits },
    securityContext: {
      allowPrivilegeEscalation: false,
      // NET_ADMIN: IP_TRANSPARENT on the TPROXY listeners; SETUID/SETGID: the drop to --proxy-uid.
      capabilities: { add: ['NET_ADMIN', 'SETUID', 'SETGID'], drop: ['ALL'] },
      privileged: false,
      readOnlyRootFilesystem: true,
      runAsGroup: o.proxyUid,
      runAsNonRoot: false,
      runAsUser: 0,
    },
    volumeMounts: [
      { name: TOKEN_VOLUME, mountPath: TOKEN_DIR, readOnly: true },
      { name: ROOT_CERT_VOLUME, mountPath: ROOT_CERT_DIR, readOnly: true },
      { name: TMP_VOLUME, mountPath: '/tmp' },
    ],
  };
}

function volumes(): { name: string; [k: string]: unknown }[] {
  return [
    { name: TOKEN_VOLUME, projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } },
    { name: ROOT_CERT_VOLUME, configMap: { name: 'istio-ca-root-cert' } },
    { name: TMP_VOLUME, emptyDir: { medium: 'Memory' } },
  ];
}
