/**
 * Ingress status: `status.loadBalancer.ingress` of every Ingress meshgate serves is set to where
 * meshgate can be reached, as ingress-nginx does:
 *
 * - `--publish-service NS/NAME`: that Service's `status.loadBalancer.ingress` and `spec.externalIPs`;
 *   when it has neither (type ClusterIP), its `spec.clusterIP`;
 * - `--publish-address A,B`: those addresses (an IP becomes `ip`, anything else `hostname`).
 *
 * Only the leader writes, and only when the status differs, so replicas never fight and a steady state
 * costs no writes. Which Ingresses are served is decided by translation and handed in (`setServed`).
 * An Ingress meshgate stops serving has its addresses removed if they are exactly meshgate's.
 */
import { isIP } from 'node:net';
import type { Logger } from '../../lib/log.js';
import type { KubeObject } from '../../resources/types.js';
import { arr, obj, str } from '../../lib/unknown.js';
import type { ApiClient } from './api-client.js';
import type { BackoffOptions } from './backoff.js';
import { Reflector } from './reflector.js';

export type PublishTarget = { service: { namespace: string; name: string } } | { addresses: string[] };

export interface LoadBalancerIngress {
  ip?: string;
  hostname?: string;
}

export interface StatusWriterOptions {
  client: ApiClient;
  log: Logger;
  publish: PublishTarget | null;
  backoff?: BackoffOptions;
}

export class IngressStatusWriter {
  readonly #opts: StatusWriterOptions;
  readonly #service: Reflector | null = null;
  #leading = false;
  #served: KubeObject[] = [];
  #others: KubeObject[] = [];
  #syncing: Promise<void> = Promise.resolve();
  #again = false;
  #running = false;
  /** Status writes done (for tests and logs). */
  writes = 0;

  constructor(opts: StatusWriterOptions) {
    this.#opts = opts;
    if (opts.publish && 'service' in opts.publish) {
      const { namespace, name } = opts.publish.service;
      this.#service = new Reflector({
        client: opts.client,
        path: `/api/v1/namespaces/${encodeURIComponent(namespace)}/services`,
        apiVersion: 'v1',
        kind: 'Service',
        namespaced: true,
        fieldSelector: `metadata.name=${name}`,
        backoff: opts.backoff,
        log: opts.log.child({ publishService: `${namespace}/${name}` }),
        onChange: () => this.#schedule(),
      });
    }
  }

  start(): void {
    this.#service?.start();
  }

  stop(): void {
    this.#service?.stop();
  }

  setLeading(leading: boolean): void {
    this.#leading = leading;
    this.#schedule();
  }

  /** The Ingresses meshgate serves now, and the other Ingresses it can see. */
  setServed(served: KubeObject[], others: KubeObject[]): void {
    this.#served = served;
    this.#others = others;
    this.#schedule();
  }

  /** Resolves when the writes scheduled so far are done (tests). */
  async idle(): Promise<void> {
    while (this.#running) await this.#syncing;
  }

  /** The addresses to publish, sorted; null while the publish Service is not known yet. */
  addresses(): LoadBalancerIngress[] | null {
    const publish = this.#opts.publish;
    if (!publish) return null;
    if ('addresses' in publish) return sortAddresses(publish.addresses.map((a) => (isIP(a) ? { ip: a } : { hostname: a })));
    const svc = this.#service?.get(publish.service.namespace, publish.service.name);
    return svc ? sortAddresses(serviceAddresses(svc)) : null;
  }

  #schedule(): void {
    if (this.#running) {
      this.#again = true;
      return;
    }
    this.#running = true;
    this.#syncing = (async () => {
      do {
        this.#again = false;
        await this.#sync().catch((e: Error) => this.#opts.log.warn('status update failed', { error: e.message }));
      } while (this.#again);
      this.#running = false;
    })();
  }

  async #sync(): Promise<void> {
    const addresses = this.addresses();
    if (!this.#leading || addresses === null) return;
    const mine = JSON.stringify(addresses);
    for (const ing of this.#served) await this.#write(ing, addresses);
    for (const ing of this.#others) if (JSON.stringify(sortAddresses(currentAddresses(ing))) === mine && addresses.length > 0) await this.#write(ing, []);
  }

  /** PUT the status subresource when it differs; on a conflict, read the Ingress again and retry once. */
  async #write(ing: KubeObject, addresses: LoadBalancerIngress[]): Promise<void> {
    if (!this.#leading) return;
    if (JSON.stringify(sortAddresses(currentAddresses(ing))) === JSON.stringify(addresses)) return;
    const path = `/apis/networking.k8s.io/v1/namespaces/${encodeURIComponent(ing.metadata.namespace)}/ingresses/${encodeURIComponent(ing.metadata.name)}`;
    let body = ing.body;
    for (let attempt = 0; attempt < 2; attempt++) {
      const res = await this.#opts.client.request('PUT', `${path}/status`, { ...body, status: { ...obj(body.status), loadBalancer: { ingress: addresses } } });
      if (res.status === 200) {
        this.writes++;
        return;
      }
      if (res.status !== 409) throw new Error(`PUT ${path}/status: ${res.status}`);
      body = obj(await this.#opts.client.expect('GET', path));
      if (JSON.stringify(sortAddresses(arr(obj(obj(body.status).loadBalancer).ingress).map(toAddress))) === JSON.stringify(addresses)) return;
    }
  }
}

function currentAddresses(ing: KubeObject): LoadBalancerIngress[] {
  return arr(obj(obj(ing.body.status).loadBalancer).ingress).map(toAddress);
}

function toAddress(v: unknown): LoadBalancerIngress {
  const o = obj(v);
  const ip = str(o.ip);
  const hostname = str(o.hostname);
  return { ...(ip ? { ip } : {}), ...(hostname ? { hostname } : {}) };
}

/** Where a Service is reachable: its load balancer, external IPs, else its cluster IP. */
export function serviceAddresses(svc: KubeObject): LoadBalancerIngress[] {
  const spec = obj(svc.body.spec);
  const out = arr(obj(obj(svc.body.status).loadBalancer).ingress).map(toAddress).filter((a) => a.ip || a.hostname);
  for (const ip of arr(spec.externalIPs)) if (typeof ip === 'string') out.push({ ip });
  const clusterIP = str(spec.clusterIP);
  if (out.length === 0 && clusterIP && clusterIP !== 'None') out.push({ ip: clusterIP });
  return out;
}

function sortAddresses(list: LoadBalancerIngress[]): LoadBalancerIngress[] {
  const key = (a: LoadBalancerIngress) => `${a.ip ?? ''}|${a.hostname ?? ''}`;
  const seen = new Set<string>();
  return list.filter((a) => !seen.has(key(a)) && seen.add(key(a))).sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0));
}
