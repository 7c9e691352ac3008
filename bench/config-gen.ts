/**
 * Generates the benchmark's routing table, once as meshgate input (Kubernetes YAML) and once as
 * the nearest nginx equivalent, plus the nginx `return 200` upstream.
 *
 * The table: 50 hosts of 10 routes each. Hosts 00-39 come from Istio (one Gateway for
 * `*.bench.example.com`, one VirtualService per host with prefix, exact, regex, header and method
 * matches); hosts 40-49 come from Kubernetes Ingress objects (10 Exact/Prefix paths each).
 * 21 Services: `svc-0`..`svc-19` whose endpoints are a port nothing listens on (a misrouted
 * request fails with 503 instead of looking like a success), and `orders`, the only Service that
 * reaches the upstream. Only the benchmarked route points at `orders`, so a 200 proves the match.
 */

export const HOSTS = 50;
export const ISTIO_HOSTS = 40;
export const DOMAIN = 'bench.example.com';
export const TARGET_HOST_INDEX = 25;
export const TARGET_HOST = hostName(TARGET_HOST_INDEX);
export const TARGET_PATH = '/api/v1/orders/12345';
export const UPSTREAM_BODY = 'hello from upstream\n';
/** What the output and the doc say about the request under test. */
export const TARGET_DESCRIPTION =
  `GET ${TARGET_PATH} with Host: ${TARGET_HOST} (VirtualService vs-${pad(TARGET_HOST_INDEX)}, route 7 of 10 "orders", ` +
  `uri prefix /api/v1/orders; the 6 routes before it are tried and miss: a header match, an exact, a two-prefix, ` +
  `a regex, a prefix+header-regex and a prefix+method route). Table: ${HOSTS} hosts x 10 routes ` +
  `(${ISTIO_HOSTS} Istio VirtualServices behind one Gateway, ${HOSTS - ISTIO_HOSTS} Ingress hosts), 21 Services.`;

function pad(i: number): string {
  return String(i).padStart(2, '0');
}

export function hostName(i: number): string {
  return `svc-${pad(i)}.${DOMAIN}`;
}

function decoyService(i: number, r: number): string {
  return `svc-${(i * 7 + r) % 20}`;
}

function destination(i: number, r: number): string {
  if (i === TARGET_HOST_INDEX && r === 6) return 'orders';
  return decoyService(i, r);
}

/** The 10 Istio HTTP routes of host `i` (route 6, "orders", is the benchmarked one on host 25). */
function istioRoutes(i: number): string {
  const dest = (r: number) => `      route:\n        - destination: { host: ${destination(i, r)}, port: { number: 80 } }\n`;
  return [
    `    - name: canary-header\n      match:\n        - uri: { prefix: / }\n          headers:\n            x-canary: { exact: always }\n${dest(0)}`,
    `    - name: health\n      match:\n        - uri: { exact: /healthz }\n${dest(1)}`,
    `    - name: static\n      match:\n        - uri: { prefix: /static/ }\n        - uri: { prefix: /assets/ }\n${dest(2)}`,
    `    - name: user-profile\n      match:\n        - uri: { regex: "/users/[0-9]+/profile" }\n${dest(3)}`,
    `    - name: api-v2\n      match:\n        - uri: { prefix: /api/v2/ }\n          headers:\n            x-api-version: { regex: "2\\\\.[0-9]+" }\n${dest(4)}`,
    `    - name: admin-write\n      match:\n        - uri: { prefix: /admin/ }\n          method: { exact: POST }\n${dest(5)}`,
    `    - name: orders\n      match:\n        - uri: { prefix: /api/v1/orders }\n${dest(6)}`,
    `    - name: items\n      match:\n        - uri: { regex: "/api/v1/items/[a-z0-9-]+" }\n${dest(7)}`,
    `    - name: api\n      match:\n        - uri: { prefix: /api/ }\n${dest(8)}`,
    `    - name: default\n${dest(9)}`,
  ].join('');
}

/** The 10 Ingress paths of a host, in the order written (Ingress sorts them by specificity). */
const INGRESS_PATHS: Array<[string, 'Exact' | 'Prefix']> = [
  ['/healthz', 'Exact'],
  ['/static', 'Prefix'],
  ['/assets', 'Prefix'],
  ['/users', 'Prefix'],
  ['/api/v2', 'Prefix'],
  ['/admin', 'Prefix'],
  ['/api/v1/orders', 'Prefix'],
  ['/api/v1/items', 'Prefix'],
  ['/api', 'Prefix'],
  ['/', 'Prefix'],
];

function service(name: string, targetPort: number): string {
  return (
    `apiVersion: v1\nkind: Service\nmetadata: { name: ${name}, namespace: bench }\n` +
    `spec:\n  selector: { app: ${name} }\n  ports: [{ name: http, port: 80, targetPort: ${targetPort} }]\n---\n` +
    `apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: ${name}-1\n  namespace: bench\n` +
    `  labels: { kubernetes.io/service-name: ${name} }\naddressType: IPv4\nports: [{ name: http, port: ${targetPort} }]\n` +
    `endpoints:\n  - addresses: [127.0.0.1]\n    conditions: { ready: true }\n---\n`
  );
}

/** Files (name -> YAML) for meshgate's `--config` directory. */
export function meshgateConfig(upstreamPort: number, decoyPort: number): Record<string, string> {
  let services = '';
  for (let k = 0; k < 20; k++) services += service(`svc-${k}`, decoyPort);
  services += service('orders', upstreamPort);

  let istio =
    `apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: { name: bench-gateway, namespace: bench }\n` +
    `spec:\n  selector: { istio: ingressgateway }\n  servers:\n    - port: { number: 80, name: http, protocol: HTTP }\n` +
    `      hosts: ["*.${DOMAIN}"]\n---\n`;
  for (let i = 0; i < ISTIO_HOSTS; i++) {
    istio +=
      `apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: { name: vs-${pad(i)}, namespace: bench }\n` +
      `spec:\n  hosts: [${hostName(i)}]\n  gateways: [bench-gateway]\n  http:\n${istioRoutes(i)}---\n`;
  }

  let ingress =
    `apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: { name: meshgate }\n` +
    `spec:\n  controller: meshgate.io/ingress-controller\n---\n`;
  for (let i = ISTIO_HOSTS; i < HOSTS; i++) {
    ingress +=
      `apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: { name: ing-${pad(i)}, namespace: bench }\n` +
      `spec:\n  ingressClassName: meshgate\n  rules:\n    - host: ${hostName(i)}\n      http:\n        paths:\n`;
    INGRESS_PATHS.forEach(([p, type], r) => {
      ingress += `          - path: ${p}\n            pathType: ${type}\n            backend: { service: { name: ${decoyService(i, r)}, port: { number: 80 } } }\n`;
    });
    ingress += '---\n';
  }
  return { '00-services.yaml': services, '10-istio.yaml': istio, '20-ingress.yaml': ingress };
}

/** Lines every nginx config here shares: one worker, no access log, files kept in `dir`. */
function nginxCommon(dir: string): string {
  return (
    `worker_processes 1;\ndaemon off;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\n` +
    `events { worker_connections 4096; multi_accept on; }\n`
  );
}

function nginxHttpCommon(dir: string): string {
  return (
    `  access_log off;\n  keepalive_timeout 75s;\n  keepalive_requests 1000000;\n` +
    `  client_body_temp_path ${dir}/client_body;\n  proxy_temp_path ${dir}/proxy;\n` +
    `  fastcgi_temp_path ${dir}/fastcgi;\n  uwsgi_temp_path ${dir}/uwsgi;\n  scgi_temp_path ${dir}/scgi;\n`
  );
}

/** nginx `return 200` upstream with a small body. */
export function nginxUpstreamConf(dir: string, port: number): string {
  return (
    nginxCommon(dir) +
    `http {\n${nginxHttpCommon(dir)}` +
    `  server {\n    listen 127.0.0.1:${port} default_server backlog=4096;\n` +
    `    location / { default_type text/plain; return 200 ${JSON.stringify(UPSTREAM_BODY)}; }\n  }\n}\n`
  );
}

/**
 * nginx reverse proxy with the same table: one server block per host, the same path matches as
 * locations (nginx has no native header or method match, so those conditions are dropped; the
 * two regexes stay regex locations), upstream keep-alive, and the forwarding headers meshgate adds
 * (X-Forwarded-For/-Proto/-Host, X-Request-ID) as ingress-nginx sets them.
 */
export function nginxProxyConf(dir: string, port: number, upstreamPort: number, decoyPort: number): string {
  let servers = '';
  for (let i = 0; i < HOSTS; i++) {
    const to = (r: number) => (destination(i, r) === 'orders' ? 'orders' : 'decoy');
    const locs =
      i < ISTIO_HOSTS
        ? [
            `location = /healthz { proxy_pass http://${to(1)}; }`,
            `location /static/ { proxy_pass http://${to(2)}; }`,
            `location /assets/ { proxy_pass http://${to(2)}; }`,
            `location ~ ^/users/[0-9]+/profile$ { proxy_pass http://${to(3)}; }`,
            `location /api/v2/ { proxy_pass http://${to(4)}; }`,
            `location /admin/ { proxy_pass http://${to(5)}; }`,
            `location /api/v1/orders { proxy_pass http://${to(6)}; }`,
            `location ~ ^/api/v1/items/[a-z0-9-]+$ { proxy_pass http://${to(7)}; }`,
            `location /api/ { proxy_pass http://${to(8)}; }`,
            `location / { proxy_pass http://${to(9)}; }`,
          ]
        : INGRESS_PATHS.map(([p, type]) => `location ${type === 'Exact' ? '= ' : ''}${p} { proxy_pass http://decoy; }`);
    servers += `  server {\n    listen 127.0.0.1:${port};\n    server_name ${hostName(i)};\n`;
    for (const l of locs) servers += `    ${l}\n`;
    servers += '  }\n';
  }
  return (
    nginxCommon(dir) +
    `http {\n${nginxHttpCommon(dir)}` +
    `  server_names_hash_bucket_size 128;\n` +
    `  upstream orders { server 127.0.0.1:${upstreamPort}; keepalive 128; keepalive_requests 1000000; }\n` +
    `  upstream decoy { server 127.0.0.1:${decoyPort}; keepalive 16; }\n` +
    `  proxy_http_version 1.1;\n  proxy_set_header Connection "";\n  proxy_set_header Host $host;\n` +
    `  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n  proxy_set_header X-Forwarded-Proto $scheme;\n` +
    `  proxy_set_header X-Forwarded-Host $host;\n  proxy_set_header X-Request-ID $request_id;\n` +
    `  server {\n    listen 127.0.0.1:${port} default_server backlog=4096;\n    return 404;\n  }\n` +
    servers +
    `}\n`
  );
}
