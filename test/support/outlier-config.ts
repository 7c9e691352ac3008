/**
 * An outlier-detection scenario for the observability and dashboard tests: host
 * `flaky.example.com` on its own Gateway (port 80) routes to Service `flaky`, whose two endpoints
 * are a healthy echo server and a server answering every request 503; a DestinationRule ejects an
 * endpoint after 3 consecutive 5xx for 60 s (so the ejection outlasts the test).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { serviceYaml } from '../helpers/gateway.js';

export const FLAKY_HOST = 'flaky.example.com';
export const FLAKY_CLUSTER = 'outbound|80||flaky.default.svc.cluster.local';

export function outlierConfig(ports: { good: number; bad: number }): string {
  return [
    serviceYaml('flaky', [ports.good, ports.bad]),
    `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: flaky-gateway, namespace: default }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: [${FLAKY_HOST}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: flaky, namespace: default }
spec:
  hosts: [${FLAKY_HOST}]
  gateways: [flaky-gateway]
  http:
    - route: [{ destination: { host: flaky } }]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: { name: flaky, namespace: default }
spec:
  host: flaky
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 60s
      maxEjectionPercent: 50
`,
  ].join('---\n');
}

/** A server answering every request 503 on 127.0.0.1. */
export async function startFailingServer(): Promise<{ port: number; close(): Promise<void> }> {
  const server = http.createServer((_req, res) => {
    res.writeHead(503, { 'content-type': 'text/plain' });
    res.end('failing\n');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
