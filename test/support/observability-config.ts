/**
 * The config directory the observability tests serve: one Istio Gateway and one VirtualService for
 * `obs.example.com` whose routes produce every outcome a test asserts (a canary split, a timeout,
 * a Service with no ready endpoint, one whose endpoint refuses connections, a slow upstream).
 *
 * Routes (`virtualservice/default/obs/http/<i>`): 0 `/delay` (timeout 200 ms) -> web; 1 `/canary`
 * -> a 80% / b 20%; 2 `/down` -> down; 3 `/empty` -> empty (not ready); 4 `/wait` -> web at
 * `/delay/1500`; 5 `/` -> web.
 */
import { serviceYaml } from '../helpers/gateway.js';

export function observabilityConfig(ports: { web: number; a: number; b: number; down: number }): string {
  return [
    serviceYaml('web', [ports.web]),
    serviceYaml('a', [ports.a]),
    serviceYaml('b', [ports.b]),
    serviceYaml('down', [ports.down]),
    serviceYaml('empty', [ports.web], { notReady: [ports.web] }),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: obs-gateway, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [obs.example.com]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: obs, namespace: default }
spec:
  hosts: [obs.example.com]
  gateways: [obs-gateway]
  http:
    - match: [{ uri: { prefix: /delay } }]
      timeout: 0.2s
      route: [{ destination: { host: web } }]
    - match: [{ uri: { prefix: /canary } }]
      route:
        - { destination: { host: a }, weight: 80 }
        - { destination: { host: b }, weight: 20 }
    - match: [{ uri: { prefix: /down } }]
      route: [{ destination: { host: down } }]
    - match: [{ uri: { prefix: /empty } }]
      route: [{ destination: { host: empty } }]
    - match: [{ uri: { prefix: /wait } }]
      rewrite: { uri: /delay/1500 }
      route: [{ destination: { host: web } }]
    - route: [{ destination: { host: web } }]
`,
  ].join('---\n');
}
