/**
 * A fake Kubernetes API server on 127.0.0.1 that speaks the real protocol, for the Kubernetes source's
 * tests and the scale benchmark:
 *
 * - discovery: /api, /apis, /api/v1, /apis/<group>/<version> (an API group can be removed and added
 *   again, as installing a CRD does);
 * - lists with a resourceVersion, `limit`/`continue` pages (tokens expire on compaction with 410),
 *   `labelSelector` (=, ==, !=, exists, !exists) and `fieldSelector` (metadata.name, metadata.namespace);
 * - watches as a chunked stream of JSON lines: ADDED/MODIFIED/DELETED from the requested
 *   resourceVersion, BOOKMARK on request, ERROR 410 Gone when that resourceVersion was compacted away,
 *   DELETED/ADDED when an object leaves/enters a watcher's selector, `timeoutSeconds`;
 * - writes: POST (create, generateName), PUT (optimistic concurrency on resourceVersion; the main
 *   resource keeps `status`, `/status` changes only `status`), merge PATCH, DELETE;
 * - control for tests: drop every watch connection, compact history, hold a kind's lists, and a log of
 *   every write (status, leases, events).
 *
 * HTTPS with a self-signed certificate (the kubeconfig carries the CA), or plain HTTP.
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Socket } from 'node:net';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { makeCerts } from '../support/tls-certs.js';

type Obj = Record<string, unknown>;

export interface ResourceDef {
  group: string;
  /** Versions served, preferred first. */
  versions: string[];
  resource: string;
  kind: string;
  namespaced: boolean;
  /** Has a status subresource (PUT on the object keeps status). */
  status?: boolean;
}

const istio = (resource: string, kind: string, group = 'networking.istio.io'): ResourceDef => ({ group, versions: ['v1', 'v1beta1'], resource, kind, namespaced: true, status: true });

/** What a cluster with Istio's CRDs serves, as far as meshgate's tests need it. */
export const DEFAULT_RESOURCES: ResourceDef[] = [
  { group: '', versions: ['v1'], resource: 'namespaces', kind: 'Namespace', namespaced: false, status: true },
  { group: '', versions: ['v1'], resource: 'services', kind: 'Service', namespaced: true, status: true },
  { group: '', versions: ['v1'], resource: 'endpoints', kind: 'Endpoints', namespaced: true },
  { group: '', versions: ['v1'], resource: 'pods', kind: 'Pod', namespaced: true, status: true },
  { group: '', versions: ['v1'], resource: 'secrets', kind: 'Secret', namespaced: true },
  { group: '', versions: ['v1'], resource: 'configmaps', kind: 'ConfigMap', namespaced: true },
  { group: '', versions: ['v1'], resource: 'events', kind: 'Event', namespaced: true },
  { group: 'networking.k8s.io', versions: ['v1'], resource: 'ingresses', kind: 'Ingress', namespaced: true, status: true },
  { group: 'networking.k8s.io', versions: ['v1'], resource: 'ingressclasses', kind: 'IngressClass', namespaced: false },
  { group: 'discovery.k8s.io', versions: ['v1'], resource: 'endpointslices', kind: 'EndpointSlice', namespaced: true },
  { group: 'coordination.k8s.io', versions: ['v1'], resource: 'leases', kind: 'Lease', namespaced: true },
  { group: 'events.k8s.io', versions: ['v1'], resource: 'events', kind: 'Event', namespaced: true },
  istio('gateways', 'Gateway'),
  istio('virtualservices', 'VirtualService'),
  istio('destinationrules', 'DestinationRule'),
  istio('serviceentries', 'ServiceEntry'),
  istio('workloadentries', 'WorkloadEntry'),
  istio('sidecars', 'Sidecar'),
  istio('requestauthentications', 'RequestAuthentication', 'security.istio.io'),
  istio('authorizationpolicies', 'AuthorizationPolicy', 'security.istio.io'),
  istio('peerauthentications', 'PeerAuthentication', 'security.istio.io'),
];

export interface WriteRecord {
  method: string;
  path: string;
  body: Obj | null;
  status: number;
}

interface HistoryEntry {
  rv: number;
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: Obj;
  /** The object before this change (MODIFIED), to send selector-leaving DELETEDs. */
  previous: Obj | null;
}

interface Watcher {
  res: http.ServerResponse;
  def: ResourceDef;
  version: string;
  namespace: string | null;
  select: (o: Obj) => boolean;
  bookmarks: boolean;
}

interface Route {
  def: ResourceDef;
  version: string;
  namespace: string | null;
  name: string | null;
  sub: string | null;
}

let serverCert: ReturnType<typeof makeCerts>[0] | null = null;

export interface FakeApiServerOptions {
  resources?: ResourceDef[];
  /** Serve HTTPS with a self-signed certificate (default true). */
  tls?: boolean;
  /** Answers POST /apis/authentication.k8s.io/v1/tokenreviews: the review's `status` for its `spec`. */
  tokenReview?: (spec: { token?: string; audiences?: string[] }) => Obj;
}

export class FakeApiServer {
  readonly #server: http.Server;
  readonly #defs: ResourceDef[];
  /** Group/version pairs currently not served (a CRD not installed). */
  readonly #unserved = new Set<string>();
  readonly #store = new Map<ResourceDef, Map<string, Obj>>();
  readonly #history = new Map<ResourceDef, HistoryEntry[]>();
  readonly #watchers = new Set<Watcher>();
  readonly #sockets = new Set<Socket>();
  readonly #continues = new Map<string, { items: Obj[]; rv: number }>();
  readonly #held = new Map<string, Promise<void>>();
  #rv = 1000;
  /** Watches that resume from a resourceVersion at or below this get 410 Gone. */
  #compactedRv = 0;
  readonly writes: WriteRecord[] = [];
  /** Every request as `METHOD path?query` (tests count lists and watches). */
  readonly requests: string[] = [];
  url = '';
  /** See FakeApiServerOptions.tokenReview; settable after start. */
  tokenReview: FakeApiServerOptions['tokenReview'];
  ca = '';

  private constructor(defs: ResourceDef[], server: http.Server) {
    this.#defs = defs;
    this.#server = server;
    for (const d of defs) {
      this.#store.set(d, new Map());
      this.#history.set(d, []);
    }
  }

  static async start(opts: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const defs = opts.resources ?? DEFAULT_RESOURCES;
    let fake: FakeApiServer | null = null;
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void fake!.#handle(req, res);
    let ca = '';
    let server: http.Server;
    if (opts.tls === false) server = http.createServer(handler);
    else {
      // One certificate per process: generating RSA keys is the slowest part of starting a server.
      const cert = (serverCert ??= makeCerts(['localhost'])[0]);
      ca = cert.certChain;
      server = https.createServer({ cert: cert.certChain, key: cert.privateKey }, handler);
    }
    fake = new FakeApiServer(defs, server);
    fake.ca = ca;
    fake.tokenReview = opts.tokenReview;
    server.on('connection', (s: Socket) => {
      fake!.#sockets.add(s);
      s.on('close', () => fake!.#sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    fake.url = `${opts.tls === false ? 'http' : 'https'}://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return fake;
  }

  /** A kubeconfig for this server, written to `file`. */
  writeKubeconfig(file: string): string {
    const cluster = this.ca
      ? `    server: ${this.url}\n    certificate-authority-data: ${Buffer.from(this.ca).toString('base64')}\n    tls-server-name: localhost`
      : `    server: ${this.url}\n    insecure-skip-tls-verify: true`;
    writeFileSync(
      file,
      `apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n${cluster}\nusers:\n- name: tester\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\ncurrent-context: fake\n`,
    );
    return file;
  }

  async close(): Promise<void> {
    this.dropWatches();
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  // ---- test controls ---------------------------------------------------------------------------

  /** Cut every open watch connection mid-stream (the client must reconnect and resume). */
  dropWatches(): number {
    const n = this.#watchers.size;
    for (const w of this.#watchers) w.res.socket?.destroy();
    this.#watchers.clear();
    return n;
  }

  /** Forget history: watches from an older resourceVersion and open continue tokens get 410 Gone. */
  compact(): void {
    this.#compactedRv = this.#rv;
    for (const h of this.#history.values()) h.length = 0;
    this.#continues.clear();
  }

  /** Send a BOOKMARK with the current resourceVersion to every watcher that asked for bookmarks. */
  bookmark(): void {
    for (const w of this.#watchers) {
      if (!w.bookmarks) continue;
      this.#send(w, 'BOOKMARK', { apiVersion: apiVersion(w.def.group, w.version), kind: w.def.kind, metadata: { resourceVersion: String(this.#rv) } });
    }
  }

  /** Lists of `resource` wait until the returned function is called. */
  holdLists(resource: string): () => void {
    let release!: () => void;
    this.#held.set(resource, new Promise((r) => (release = r)));
    return () => {
      this.#held.delete(resource);
      release();
    };
  }

  /** Stop or start serving one API group version (uninstalling or installing a CRD). */
  setServed(group: string, version: string, served: boolean): void {
    if (served) this.#unserved.delete(`${group}/${version}`);
    else this.#unserved.add(`${group}/${version}`);
  }

  /** Open watch connections, for tests. */
  get watcherCount(): number {
    return this.#watchers.size;
  }

  get resourceVersion(): number {
    return this.#rv;
  }

  // ---- direct store access (no HTTP) -------------------------------------------------------------

  /** Create or replace an object as a client would (ADDED or MODIFIED event). */
  apply(o: Obj): Obj {
    const def = this.#defOf(o);
    const meta = obj(o.metadata);
    const ns = def.namespaced ? String(meta.namespace ?? 'default') : '';
    const existing = this.#store.get(def)!.get(key(ns, String(meta.name)));
    return existing ? this.#put(def, { ...o, metadata: { ...meta, resourceVersion: undefined } }, existing) : this.#create(def, ns, o);
  }

  delete(apiVersionText: string, kind: string, namespace: string, name: string): boolean {
    const def = this.#defs.find((d) => d.kind === kind && splitGroup(apiVersionText) === d.group)!;
    return this.#remove(def, def.namespaced ? namespace : '', name) !== null;
  }

  get(kind: string, namespace: string, name: string): Obj | undefined {
    const def = this.#defs.find((d) => d.kind === kind && d.group !== 'events.k8s.io')!;
    return this.#store.get(def)!.get(key(def.namespaced ? namespace : '', name));
  }

  /** Every stored object of one resource (`events.k8s.io/events`, `leases`, ...). */
  list(resource: string, group?: string): Obj[] {
    const def = this.#defs.find((d) => d.resource === resource && (group === undefined || d.group === group))!;
    return [...this.#store.get(def)!.values()];
  }

  // ---- storage -------------------------------------------------------------------------------

  #defOf(o: Obj): ResourceDef {
    const group = splitGroup(String(o.apiVersion));
    const def = this.#defs.find((d) => d.kind === o.kind && d.group === group);
    if (!def) throw new Error(`fake API server: no resource for ${String(o.apiVersion)} ${String(o.kind)}`);
    return def;
  }

  #create(def: ResourceDef, ns: string, o: Obj): Obj {
    const meta = { ...obj(o.metadata) };
    if (!meta.name && meta.generateName) meta.name = `${String(meta.generateName)}${randomUUID().slice(0, 5)}`;
    const stored: Obj = {
      ...o,
      metadata: { ...meta, ...(def.namespaced ? { namespace: ns } : {}), uid: randomUUID(), resourceVersion: String(++this.#rv), creationTimestamp: meta.creationTimestamp ?? new Date(Date.now() + this.#rv).toISOString().replace(/\.\d+Z$/, 'Z'), generation: 1 },
    };
    this.#store.get(def)!.set(key(ns, String(meta.name)), stored);
    this.#record(def, 'ADDED', stored, null);
    return stored;
  }

  #put(def: ResourceDef, o: Obj, existing: Obj, statusOnly = false): Obj {
    const oldMeta = obj(existing.metadata);
    const base = statusOnly ? { ...existing, status: o.status } : def.status ? { ...o, status: existing.status } : { ...o };
    const stored: Obj = { ...base, metadata: { ...(statusOnly ? oldMeta : obj(o.metadata)), name: oldMeta.name, namespace: oldMeta.namespace, uid: oldMeta.uid, creationTimestamp: oldMeta.creationTimestamp, resourceVersion: String(++this.#rv) } };
    if (!def.namespaced) delete (stored.metadata as Obj).namespace;
    this.#store.get(def)!.set(key(String(oldMeta.namespace ?? ''), String(oldMeta.name)), stored);
    this.#record(def, 'MODIFIED', stored, existing);
    return stored;
  }

  #remove(def: ResourceDef, ns: string, name: string): Obj | null {
    const map = this.#store.get(def)!;
    const existing = map.get(key(ns, name));
    if (!existing) return null;
    map.delete(key(ns, name));
    const gone = { ...existing, metadata: { ...obj(existing.metadata), resourceVersion: String(++this.#rv) } };
    this.#record(def, 'DELETED', gone, null);
    return gone;
  }

  #record(def: ResourceDef, type: HistoryEntry['type'], object: Obj, previous: Obj | null): void {
    const entry: HistoryEntry = { rv: this.#rv, type, object, previous };
    this.#history.get(def)!.push(entry);
    for (const w of this.#watchers) if (w.def === def) this.#deliver(w, entry);
  }

  /** One change as a watcher sees it, through its namespace and selectors. */
  #deliver(w: Watcher, e: HistoryEntry): void {
    const ns = String(obj(e.object.metadata).namespace ?? '');
    if (w.namespace !== null && ns !== w.namespace) return;
    const now = w.select(e.object);
    const before = e.previous ? w.select(e.previous) : false;
    if (e.type === 'MODIFIED' && !now && before) return this.#send(w, 'DELETED', e.object);
    if (!now) return;
    this.#send(w, e.type === 'MODIFIED' && !before ? 'ADDED' : e.type, e.object);
  }

  #send(w: Watcher, type: string, object: Obj): void {
    if (w.res.writableEnded || w.res.destroyed) return;
    w.res.write(`${JSON.stringify({ type, object: { ...object, apiVersion: apiVersion(w.def.group, w.version), kind: w.def.kind } })}\n`);
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://fake');
    this.requests.push(`${req.method} ${url.pathname}${url.search}`);
    const body = req.method === 'GET' || req.method === 'DELETE' ? null : await readJson(req);
    const status = await this.#route(req.method ?? 'GET', url, body, res);
    if (req.method !== 'GET') this.writes.push({ method: req.method ?? '', path: url.pathname, body, status });
  }

  async #route(method: string, url: URL, body: Obj | null, res: http.ServerResponse): Promise<number> {
    const p = url.pathname;
    if (p === '/api') return send(res, 200, { kind: 'APIVersions', versions: ['v1'] });
    if (p === '/apis') return send(res, 200, this.#groupList());
    if (p === '/apis/authentication.k8s.io/v1/tokenreviews' && method === 'POST' && this.tokenReview !== undefined) {
      const spec = (body?.spec ?? {}) as { token?: string; audiences?: string[] };
      return send(res, 201, { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec, status: this.tokenReview(spec) });
    }
    const discovery = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))$/.exec(p);
    if (discovery) return this.#resourceList(res, discovery[2] ?? '', discovery[1] ?? discovery[3]);
    const route = this.#parse(p);
    if (!route) return send(res, 404, statusBody(404, 'NotFound', `the server could not find the requested resource (${p})`));
    const { def, namespace, name, sub } = route;
    if (name === null) {
      if (method === 'GET' && url.searchParams.get('watch') === 'true') return this.#watch(res, route, url.searchParams);
      if (method === 'GET') return this.#list(res, route, url.searchParams);
      if (method === 'POST') {
        const ns = def.namespaced ? (namespace ?? String(obj(body?.metadata).namespace ?? 'default')) : '';
        const meta = obj(body?.metadata);
        if (meta.name && this.#store.get(def)!.has(key(ns, String(meta.name)))) return send(res, 409, statusBody(409, 'AlreadyExists', `${def.resource} "${String(meta.name)}" already exists`));
        return send(res, 201, this.#out(route, this.#create(def, ns, body ?? {})));
      }
      return send(res, 405, statusBody(405, 'MethodNotAllowed', method));
    }
    const ns = def.namespaced ? (namespace ?? '') : '';
    const existing = this.#store.get(def)!.get(key(ns, name));
    if (method === 'GET') return existing ? send(res, 200, this.#out(route, existing)) : send(res, 404, statusBody(404, 'NotFound', `${def.resource} "${name}" not found`));
    if (method === 'DELETE') return existing ? send(res, 200, this.#out(route, this.#remove(def, ns, name)!)) : send(res, 404, statusBody(404, 'NotFound', `${def.resource} "${name}" not found`));
    if (!existing) return send(res, 404, statusBody(404, 'NotFound', `${def.resource} "${name}" not found`));
    if (method === 'PUT') {
      const rv = obj(body?.metadata).resourceVersion;
      if (rv !== undefined && rv !== obj(existing.metadata).resourceVersion) return send(res, 409, statusBody(409, 'Conflict', `Operation cannot be fulfilled on ${def.resource} "${name}": the object has been modified; please apply your changes to the latest version and try again`));
      return send(res, 200, this.#out(route, this.#put(def, body ?? {}, existing, sub === 'status')));
    }
    if (method === 'PATCH') return send(res, 200, this.#out(route, this.#put(def, mergePatch(existing, body ?? {}) as Obj, existing, sub === 'status')));
    return send(res, 405, statusBody(405, 'MethodNotAllowed', method));
  }

  #parse(p: string): Route | null {
    const m = /^\/(?:api\/(v1)|apis\/([^/]+)\/([^/]+))\/(.*)$/.exec(p);
    if (!m) return null;
    const group = m[2] ?? '';
    const version = m[1] ?? m[3];
    if (this.#unserved.has(`${group}/${version}`)) return null;
    let parts = m[4].split('/').map(decodeURIComponent);
    let namespace: string | null = null;
    if (parts[0] === 'namespaces' && parts.length >= 3) {
      namespace = parts[1];
      parts = parts.slice(2);
    }
    const def = this.#defs.find((d) => d.group === group && d.versions.includes(version) && d.resource === parts[0]);
    if (!def || parts.length > 3) return null;
    return { def, version, namespace, name: parts[1] ?? null, sub: parts[2] ?? null };
  }

  #out(route: Route, o: Obj): Obj {
    return { ...o, apiVersion: apiVersion(route.def.group, route.version), kind: route.def.kind };
  }

  #groupList(): Obj {
    const groups = new Map<string, string[]>();
    for (const d of this.#defs) {
      if (d.group === '') continue;
      const versions = d.versions.filter((v) => !this.#unserved.has(`${d.group}/${v}`));
      if (versions.length) groups.set(d.group, [...new Set([...(groups.get(d.group) ?? []), ...versions])]);
    }
    return {
      kind: 'APIGroupList',
      apiVersion: 'v1',
      groups: [...groups].map(([name, versions]) => ({ name, versions: versions.map((v) => ({ groupVersion: `${name}/${v}`, version: v })), preferredVersion: { groupVersion: `${name}/${versions[0]}`, version: versions[0] } })),
    };
  }

  #resourceList(res: http.ServerResponse, group: string, version: string): number {
    const defs = this.#defs.filter((d) => d.group === group && d.versions.includes(version));
    if (defs.length === 0 || this.#unserved.has(`${group}/${version}`)) return send(res, 404, statusBody(404, 'NotFound', 'the server could not find the requested resource'));
    const resources = defs.flatMap((d) => [
      { name: d.resource, singularName: d.kind.toLowerCase(), namespaced: d.namespaced, kind: d.kind, verbs: ['create', 'delete', 'get', 'list', 'patch', 'update', 'watch'] },
      ...(d.status ? [{ name: `${d.resource}/status`, singularName: '', namespaced: d.namespaced, kind: d.kind, verbs: ['get', 'patch', 'update'] }] : []),
    ]);
    return send(res, 200, { kind: 'APIResourceList', apiVersion: 'v1', groupVersion: apiVersion(group, version), resources });
  }

  #matching(route: Route, q: URLSearchParams): Obj[] {
    const select = selector(q);
    const out: Obj[] = [];
    for (const o of this.#store.get(route.def)!.values()) {
      if (route.namespace !== null && obj(o.metadata).namespace !== route.namespace) continue;
      if (select(o)) out.push(o);
    }
    return out.sort((a, b) => (sortKey(a) < sortKey(b) ? -1 : 1));
  }

  async #list(res: http.ServerResponse, route: Route, q: URLSearchParams): Promise<number> {
    await this.#held.get(route.def.resource);
    const limit = Number(q.get('limit') ?? '0');
    const token = q.get('continue');
    let page: { items: Obj[]; rv: number };
    let offset = 0;
    if (token) {
      const [id, at] = token.split(':');
      const saved = this.#continues.get(id);
      if (!saved) return send(res, 410, statusBody(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.'));
      page = saved;
      offset = Number(at);
    } else page = { items: this.#matching(route, q), rv: this.#rv };
    const end = limit > 0 ? Math.min(page.items.length, offset + limit) : page.items.length;
    let cont: string | undefined;
    if (end < page.items.length) {
      const id = token ? token.split(':')[0] : randomUUID();
      this.#continues.set(id, page);
      cont = `${id}:${end}`;
    }
    // Built-in lists carry no apiVersion/kind on their items, as the real API server's JSON does.
    const items = page.items.slice(offset, end).map((o) => (route.def.group.includes('.') && !route.def.group.endsWith('k8s.io') ? this.#out(route, o) : stripTypeMeta(o)));
    return send(res, 200, { apiVersion: apiVersion(route.def.group, route.version), kind: `${route.def.kind}List`, metadata: { resourceVersion: String(page.rv), ...(cont ? { continue: cont } : {}) }, items });
  }

  #watch(res: http.ServerResponse, route: Route, q: URLSearchParams): number {
    const rvText = q.get('resourceVersion') ?? '';
    const rv = Number(rvText || '0');
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    const w: Watcher = { res, def: route.def, version: route.version, namespace: route.namespace, select: selector(q), bookmarks: q.get('allowWatchBookmarks') === 'true' };
    if (rv !== 0 && rv <= this.#compactedRv) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: statusBody(410, 'Expired', `too old resource version: ${rv} (${this.#compactedRv + 1})`) })}\n`);
      return 200;
    }
    this.#watchers.add(w);
    res.on('close', () => this.#watchers.delete(w));
    if (rv === 0) for (const o of this.#matching(route, q)) this.#send(w, 'ADDED', o);
    else for (const e of this.#history.get(route.def)!) if (e.rv > rv) this.#deliver(w, e);
    const timeout = Number(q.get('timeoutSeconds') ?? '0');
    if (timeout > 0) {
      const t = setTimeout(() => res.end(), timeout * 1000);
      res.on('close', () => clearTimeout(t));
    }
    return 200;
  }
}

// ---- helpers ---------------------------------------------------------------------------------

function obj(v: unknown): Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Obj) : {};
}

function key(ns: string, name: string): string {
  return `${ns}/${name}`;
}

function sortKey(o: Obj): string {
  const m = obj(o.metadata);
  return `${String(m.namespace ?? '')}/${String(m.name)}`;
}

function splitGroup(apiVersionText: string): string {
  const i = apiVersionText.lastIndexOf('/');
  return i < 0 ? '' : apiVersionText.slice(0, i);
}

function apiVersion(group: string, version: string): string {
  return group ? `${group}/${version}` : version;
}

function stripTypeMeta(o: Obj): Obj {
  const { apiVersion: _a, kind: _k, ...rest } = o;
  return rest;
}

function statusBody(code: number, reason: string, message: string): Obj {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code };
}

function send(res: http.ServerResponse, status: number, body: unknown): number {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
  return status;
}

async function readJson(req: http.IncomingMessage): Promise<Obj | null> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  try {
    return text ? obj(JSON.parse(text)) : null;
  } catch {
    return null;
  }
}

/** RFC 7386 JSON merge patch. */
function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return patch;
  const out: Obj = { ...obj(target) };
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

/** labelSelector and fieldSelector of a request, as one predicate. */
function selector(q: URLSearchParams): (o: Obj) => boolean {
  const tests: ((o: Obj) => boolean)[] = [];
  for (const term of (q.get('labelSelector') ?? '').split(',').filter(Boolean)) {
    const m = /^(!?)([^=!]+)(?:(==|=|!=)(.*))?$/.exec(term.trim());
    if (!m) continue;
    const [, not, k, op, v] = m;
    const labels = (o: Obj) => obj(obj(o.metadata).labels);
    if (!op) tests.push((o) => (k in labels(o)) !== (not === '!'));
    else if (op === '!=') tests.push((o) => labels(o)[k] !== v);
    else tests.push((o) => labels(o)[k] === v);
  }
  for (const term of (q.get('fieldSelector') ?? '').split(',').filter(Boolean)) {
    const [field, value] = term.split('=');
    const name = field.replace(/^metadata\./, '');
    tests.push((o) => String(obj(o.metadata)[name] ?? '') === value);
  }
  return (o) => tests.every((t) => t(o));
}
