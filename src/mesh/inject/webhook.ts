/**
 * The sidecar injection webhook: a Kubernetes mutating admission webhook (admission.k8s.io/v1)
 * served by `meshgate control`, doing for each Pod created in a namespace that asks for it what
 * `meshgate inject` does to a manifest (inject.ts), as istiod's `/inject` endpoint does.
 *
 * Which Pods reach it is decided by the API server from the MutatingWebhookConfiguration
 * (deploy/mesh-control.yaml, Istio's selectors): namespaces labelled `istio-injection=enabled` or
 * `meshgate.io/injection=enabled`, and Pods labelled `sidecar.istio.io/inject=true` elsewhere. The
 * Pod's own opt-out (`sidecar.istio.io/inject: "false"`), host networking and an earlier injection
 * are honoured here, by inject.ts. The answer is a JSONPatch replacing the Pod's `metadata.labels`,
 * `metadata.annotations` and `spec` with the injected ones.
 *
 * Served over HTTPS with a certificate from the mesh CA for the control plane's Service names, so
 * the webhook configuration's `caBundle` is the mesh root (control writes it in Kubernetes mode, as
 * istiod's webhook controller patches its own); renewed at half its life.
 */
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { parse as yamlParse } from 'yaml';
import type { Logger } from '../../lib/log.js';
import type { MeshCa } from '../ca/ca.js';
import { injectManifests, type InjectOptions } from './inject.js';

/** istiod's webhook port and path. */
export const WEBHOOK_PORT = 15017;
export const WEBHOOK_PATH = '/inject';
/** The MutatingWebhookConfiguration of sidecar injection (deploy/mesh-control.yaml), whose caBundle `control` keeps. */
export const INJECTOR_WEBHOOK_CONFIG = 'meshgate-sidecar-injector';
/** Largest AdmissionReview read (a Pod with its manifest is far smaller). */
const MAX_BODY = 4 * 1024 * 1024;

export interface AdmissionResponse {
  apiVersion: 'admission.k8s.io/v1';
  kind: 'AdmissionReview';
  response: {
    uid: string;
    allowed: boolean;
    status?: { code: number; message: string };
    patchType?: 'JSONPatch';
    /** base64 of the JSON Patch (RFC 6902). */
    patch?: string;
    warnings?: string[];
  };
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The answer to one AdmissionReview: the Pod injected (a patch), or allowed unchanged (not a Pod
 * CREATE, opted out, host network, already injected), or refused with the reason when the review or
 * the Pod cannot be read (the webhook's `failurePolicy` decides what the API server does then).
 */
export function reviewAdmission(review: unknown, options: InjectOptions): AdmissionResponse {
  const request = isObj(review) && isObj(review.request) ? review.request : null;
  const uid = request !== null && typeof request.uid === 'string' ? request.uid : '';
  const answer = (r: Omit<AdmissionResponse['response'], 'uid'>): AdmissionResponse => ({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, ...r } });
  if (request === null || uid === '') return answer({ allowed: false, status: { code: 400, message: 'not an admission.k8s.io/v1 AdmissionReview with a request uid' } });
  const kind = isObj(request.kind) ? request.kind : {};
  if (kind.kind !== 'Pod' || (request.operation !== undefined && request.operation !== 'CREATE')) return answer({ allowed: true });
  const pod = request.object;
  if (!isObj(pod)) return answer({ allowed: false, status: { code: 400, message: 'the AdmissionReview carries no Pod object' } });
  // A Pod made from a template (generateName) has no name yet; the namespace comes with the request.
  const meta = isObj(pod.metadata) ? pod.metadata : {};
  const namespace = typeof request.namespace === 'string' ? request.namespace : typeof meta.namespace === 'string' ? meta.namespace : 'default';
  const name = typeof meta.name === 'string' && meta.name !== '' ? meta.name : typeof meta.generateName === 'string' ? `${meta.generateName}*` : '';
  const withIdentity = { ...pod, apiVersion: 'v1', kind: 'Pod', metadata: { ...meta, namespace } };
  const result = injectManifests(JSON.stringify(withIdentity), options, `AdmissionReview ${uid}`);
  const outcome = result.outcomes[0];
  const errors = result.diagnostics.filter((d) => d.severity === 'error');
  if (errors.length > 0 || outcome === undefined) {
    return answer({ allowed: false, status: { code: 422, message: `sidecar injection of Pod ${namespace}/${name}: ${errors.map((d) => d.message).join('; ') || 'nothing to inject'}` } });
  }
  const warnings = result.diagnostics.filter((d) => d.severity === 'warning').map((d) => d.message);
  if (outcome.result !== 'injected') return answer({ allowed: true, ...(warnings.length > 0 ? { warnings } : {}) });
  const injected = parseInjectedPod(result.output);
  const out = isObj(injected.metadata) ? injected.metadata : {};
  const patch = [
    { op: 'add', path: '/metadata/labels', value: isObj(out.labels) ? out.labels : {} },
    { op: 'add', path: '/metadata/annotations', value: isObj(out.annotations) ? out.annotations : {} },
    { op: 'add', path: '/spec', value: injected.spec },
  ];
  return answer({ allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64'), ...(warnings.length > 0 ? { warnings } : {}) });
}

/** inject.ts writes YAML (flow style for a JSON document): read it back as data. */
function parseInjectedPod(text: string): Obj {
  return yamlParse(text) as Obj;
}

export interface InjectionWebhookOptions {
  host: string;
  port: number;
  ca: () => MeshCa;
  /** DNS names of the serving certificate: the control plane's Service names. */
  dnsNames: string[];
  /** What injected pods run; a function is read per review (the control plane's current MeshConfig). */
  inject: InjectOptions | (() => InjectOptions);
  log: Logger;
  /** Serving certificate lifetime, s (default 24 h); renewed at half of it. */
  servingTtlSeconds?: number;
}

export interface InjectionWebhook {
  port: number;
  close(): Promise<void>;
}

/** Starts the HTTPS webhook server (`POST /inject`). */
export async function startInjectionWebhook(opts: InjectionWebhookOptions): Promise<InjectionWebhook> {
  const issue = async () => opts.ca().issueServing(opts.dnsNames, opts.servingTtlSeconds ?? 24 * 3600);
  let serving = await issue();
  const server = https.createServer({ cert: serving.certChainPem, key: serving.keyPem, minVersion: 'TLSv1.2' }, (req, res) => {
    const reply = (status: number, body: unknown) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
      res.end(text);
    };
    const url = new URL(req.url ?? '/', 'https://webhook');
    if (req.method !== 'POST' || (url.pathname !== WEBHOOK_PATH && !url.pathname.startsWith(`${WEBHOOK_PATH}/`))) return reply(404, { error: `POST ${WEBHOOK_PATH} only` });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reply(413, { error: 'AdmissionReview too large' });
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      let review: unknown;
      try {
        review = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch (e) {
        return reply(400, { error: `the body is not JSON: ${(e as Error).message}` });
      }
      const answer = reviewAdmission(review, typeof opts.inject === 'function' ? opts.inject() : opts.inject);
      const r = answer.response;
      opts.log.info('injection webhook', { uid: r.uid, allowed: r.allowed, patched: r.patch !== undefined, ...(r.status ? { reason: r.status.message } : {}) });
      reply(200, answer);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, opts.host, () => resolve());
  });
  // New handshakes get the renewed certificate.
  let timer: NodeJS.Timeout | null = null;
  const renew = () => {
    timer = setTimeout(
      () => {
        issue()
          .then((next) => {
            serving = next;
            server.setSecureContext({ cert: serving.certChainPem, key: serving.keyPem, minVersion: 'TLSv1.2' });
          })
          .catch((e: unknown) => opts.log.error('cannot renew the webhook certificate', { error: (e as Error).message }))
          .finally(renew);
      },
      Math.max(1000, (serving.notAfter.getTime() - Date.now()) / 2),
    );
    timer.unref();
  };
  renew();
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        if (timer !== null) clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
