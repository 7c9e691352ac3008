/**
 * `meshgate control --kubernetes`: the CA material and caller authentication from the cluster, as
 * istiod does (reference/mesh.md §1.2, §1.3).
 *
 * - CA: Secret `cacerts` in istio-system (plug-in layout) wins; else `istio-ca-secret` (type
 *   `istio.io/ca-root`, `ca-cert.pem` + `ca-key.pem`, the self-signed root); else a new self-signed
 *   root is stored as `istio-ca-secret`. Creation is create-if-absent: when replicas race, the API
 *   server accepts one POST (409 for the others), and every replica then reads that one.
 * - Callers: a TokenReview of the bearer token with `spec.audiences` = the expected audiences
 *   (`--token-audiences`, istiod's TOKEN_AUDIENCES, default `istio-ca`); accepted when authenticated,
 *   in group `system:serviceaccounts`, with a username `system:serviceaccount:<ns>:<sa>`, and when
 *   `status.audiences` intersects the expected ones. Kubernetes (TokenReviewStatus.audiences): a
 *   client that sets `spec.audiences` must check that a compatible audience comes back; an empty
 *   `status.audiences` means the token is valid for the API server's own audience only, or that the
 *   server is not audience-aware: refused either way.
 */
import type { ApiClient } from '../providers/kubernetes/api-client.js';
import type { Logger } from '../lib/log.js';
import { caFromSecretData, createSelfSignedRoot, type CaMaterial } from '../mesh/ca/ca.js';
import { ISTIO_CA_AUDIENCE, serviceAccountOfUsername, TokenError, type ServiceAccount } from '../mesh/ca/token.js';
import type { Authenticator } from '../mesh/grpc/ca-service.js';

export const CA_NAMESPACE = 'istio-system';
export const PLUGIN_SECRET = 'cacerts';
export const SELF_SIGNED_SECRET = 'istio-ca-secret';

type Obj = Record<string, unknown>;

function decode(secret: Obj): Record<string, string> {
  const out: Record<string, string> = {};
  const data = (secret.data ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(data)) if (typeof v === 'string') out[k] = Buffer.from(v, 'base64').toString('utf8');
  const stringData = (secret.stringData ?? {}) as Record<string, unknown>;
  for (const [k, v] of Object.entries(stringData)) if (typeof v === 'string') out[k] = v;
  return out;
}

async function readSecret(client: ApiClient, name: string): Promise<Obj | null> {
  const res = await client.request('GET', `/api/v1/namespaces/${CA_NAMESPACE}/secrets/${name}`);
  if (res.status === 404) return null;
  if (res.status < 200 || res.status > 299) throw new Error(`GET Secret ${CA_NAMESPACE}/${name}: HTTP ${res.status}`);
  return res.body as Obj;
}

export async function loadKubernetesCa(client: ApiClient, trustDomain: string, log: Logger): Promise<CaMaterial> {
  const plugin = await readSecret(client, PLUGIN_SECRET);
  if (plugin !== null) {
    log.info('mesh CA from Secret', { secret: `${CA_NAMESPACE}/${PLUGIN_SECRET}` });
    return caFromSecretData(decode(plugin));
  }
  const existing = await readSecret(client, SELF_SIGNED_SECRET);
  if (existing !== null) {
    log.info('mesh CA from Secret', { secret: `${CA_NAMESPACE}/${SELF_SIGNED_SECRET}` });
    return caFromSecretData(decode(existing));
  }
  const { certPem, keyPem } = await createSelfSignedRoot(trustDomain);
  const body = {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: { name: SELF_SIGNED_SECRET, namespace: CA_NAMESPACE },
    type: 'istio.io/ca-root',
    data: { 'ca-cert.pem': Buffer.from(certPem).toString('base64'), 'ca-key.pem': Buffer.from(keyPem).toString('base64') },
  };
  const res = await client.request('POST', `/api/v1/namespaces/${CA_NAMESPACE}/secrets`, body);
  if (res.status === 409) {
    // Another replica created it first: its root wins.
    const winner = await readSecret(client, SELF_SIGNED_SECRET);
    if (winner === null) throw new Error(`Secret ${CA_NAMESPACE}/${SELF_SIGNED_SECRET} reported as existing but cannot be read`);
    return caFromSecretData(decode(winner));
  }
  if (res.status < 200 || res.status > 299) throw new Error(`POST Secret ${CA_NAMESPACE}/${SELF_SIGNED_SECRET}: HTTP ${res.status}`);
  log.info('mesh CA created', { secret: `${CA_NAMESPACE}/${SELF_SIGNED_SECRET}` });
  return { ...caFromSecretData({ 'ca-cert.pem': certPem, 'ca-key.pem': keyPem }), source: 'self-signed-created' };
}

export class TokenReviewAuthenticator implements Authenticator {
  readonly audiences: readonly string[];

  /** `audiences`: what a caller's token must be for (at least one of them); default `istio-ca`. */
  constructor(readonly client: ApiClient, audiences: readonly string[] = [ISTIO_CA_AUDIENCE]) {
    if (audiences.length === 0) throw new Error('TokenReviewAuthenticator: at least one audience is required');
    this.audiences = [...audiences];
  }

  async authenticate(token: string): Promise<ServiceAccount> {
    const review = { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, audiences: [...this.audiences] } };
    const res = await this.client.request('POST', '/apis/authentication.k8s.io/v1/tokenreviews', review);
    if (res.status < 200 || res.status > 299) throw new TokenError(`TokenReview failed: HTTP ${res.status}`);
    const status = ((res.body as Obj)?.status ?? {}) as { authenticated?: boolean; error?: string; audiences?: string[]; user?: { username?: string; groups?: string[] } };
    if (status.error) throw new TokenError(`TokenReview: ${status.error}`);
    if (status.authenticated !== true) throw new TokenError('TokenReview: not authenticated');
    const granted = Array.isArray(status.audiences) ? status.audiences.filter((a): a is string => typeof a === 'string') : [];
    if (!granted.some((a) => this.audiences.includes(a))) {
      throw new TokenError(granted.length === 0 ? `TokenReview: no audience returned (the token is not for ${this.audiences.join(', ')}, or the API server is not audience-aware)` : `TokenReview: token audiences [${granted.join(', ')}] include none of ${this.audiences.join(', ')}`);
    }
    if (!(status.user?.groups ?? []).includes('system:serviceaccounts')) throw new TokenError('TokenReview: the caller is not a service account (group system:serviceaccounts)');
    const sa = serviceAccountOfUsername(status.user?.username ?? '');
    if (sa === null) throw new TokenError(`TokenReview: username "${status.user?.username ?? ''}" is not system:serviceaccount:<ns>:<sa>`);
    return sa;
  }
}

/** The trust bundle ConfigMap every namespace gets (Istio's namespace controller), key `root-cert.pem`. */
export const ROOT_CERT_CONFIGMAP = 'istio-ca-root-cert';
/** Namespaces Istio leaves alone (inject.IgnoredNamespaces). */
const IGNORED_NAMESPACES = new Set(['kube-system', 'kube-public', 'kube-node-lease', 'local-path-storage']);

/**
 * Writes ConfigMap `istio-ca-root-cert` (`root-cert.pem`) into every namespace now and every
 * `intervalMs` (new namespaces get it at the next pass), creating it or correcting its content.
 * Replicas writing the same content converge (create 409 -> read -> update only when different).
 */
export function publishRootCert(client: ApiClient, rootCertPem: string, log: Logger, intervalMs = 30_000): { stop(): void; synced: Promise<void> } {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const syncOne = async (ns: string): Promise<void> => {
    const path = `/api/v1/namespaces/${ns}/configmaps/${ROOT_CERT_CONFIGMAP}`;
    const want = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: ROOT_CERT_CONFIGMAP, namespace: ns, labels: { 'istio.io/config': 'true' } }, data: { 'root-cert.pem': rootCertPem } };
    const cur = await client.request('GET', path);
    if (cur.status === 404) {
      const res = await client.request('POST', `/api/v1/namespaces/${ns}/configmaps`, want);
      if (res.status !== 409 && (res.status < 200 || res.status > 299)) throw new Error(`POST ConfigMap ${ns}/${ROOT_CERT_CONFIGMAP}: HTTP ${res.status}`);
      return;
    }
    const body = cur.body as { metadata?: { resourceVersion?: string }; data?: Record<string, string> };
    if (body.data?.['root-cert.pem'] === rootCertPem) return;
    const res = await client.request('PUT', path, { ...want, metadata: { ...want.metadata, resourceVersion: body.metadata?.resourceVersion } });
    if (res.status < 200 || res.status > 299) throw new Error(`PUT ConfigMap ${ns}/${ROOT_CERT_CONFIGMAP}: HTTP ${res.status}`);
  };
  const pass = async (): Promise<void> => {
    try {
      const res = await client.request('GET', '/api/v1/namespaces');
      if (res.status < 200 || res.status > 299) throw new Error(`GET namespaces: HTTP ${res.status}`);
      const items = ((res.body as { items?: { metadata?: { name?: string } }[] }).items ?? []).map((n) => n.metadata?.name ?? '').filter((n) => n !== '' && !IGNORED_NAMESPACES.has(n));
      for (const ns of items) {
        if (stopped) return;
        await syncOne(ns).catch((e: unknown) => log.warn('cannot publish the mesh root', { namespace: ns, error: (e as Error).message }));
      }
    } catch (e) {
      log.warn('cannot list namespaces to publish the mesh root', { error: (e as Error).message });
    }
  };
  const loop = async (): Promise<void> => {
    await pass();
    if (!stopped) timer = setTimeout(() => void loop(), intervalMs);
  };
  const synced = pass().then(() => {
    if (!stopped) timer = setTimeout(() => void loop(), intervalMs);
  });
  return {
    synced,
    stop: () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}

/**
 * Keeps `clientConfig.caBundle` of every webhook in MutatingWebhookConfiguration `name` equal to the
 * mesh root, now and every `intervalMs`, as istiod's webhook controller patches its injector's
 * (the webhook serves a certificate from the mesh CA). A missing configuration is logged and retried.
 */
export function keepWebhookCaBundle(client: ApiClient, name: string, rootCertPem: string, log: Logger, intervalMs = 30_000): { stop(): void; synced: Promise<void> } {
  const path = `/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/${name}`;
  const bundle = Buffer.from(rootCertPem).toString('base64');
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  const pass = async (): Promise<void> => {
    try {
      const cur = await client.request('GET', path);
      if (cur.status === 404) {
        log.warn('no MutatingWebhookConfiguration to give the mesh root to; sidecar injection is off until it exists', { name });
        return;
      }
      if (cur.status < 200 || cur.status > 299) throw new Error(`GET MutatingWebhookConfiguration ${name}: HTTP ${cur.status}`);
      const body = cur.body as { webhooks?: { clientConfig?: { caBundle?: string } }[] };
      const hooks = body.webhooks ?? [];
      if (hooks.every((h) => h.clientConfig?.caBundle === bundle)) return;
      for (const h of hooks) h.clientConfig = { ...(h.clientConfig ?? {}), caBundle: bundle };
      const res = await client.request('PUT', path, body);
      if (res.status < 200 || res.status > 299) throw new Error(`PUT MutatingWebhookConfiguration ${name}: HTTP ${res.status}`);
      log.info('injection webhook caBundle set to the mesh root', { name, webhooks: hooks.length });
    } catch (e) {
      log.warn('cannot set the injection webhook caBundle', { name, error: (e as Error).message });
    }
  };
  const loop = async (): Promise<void> => {
    await pass();
    if (!stopped) (timer = setTimeout(() => void loop(), intervalMs)).unref();
  };
  const synced = pass().then(() => {
    if (!stopped) (timer = setTimeout(() => void loop(), intervalMs)).unref();
  });
  return {
    synced,
    stop: () => {
      stopped = true;
      if (timer !== null) clearTimeout(timer);
    },
  };
}
