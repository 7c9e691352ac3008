/**
 * `meshgate demo` (what `npm start` runs): echo backends on the 127.0.0.1 ports that examples/
 * declares, the gateway serving examples/, and the curl commands that show each behaviour.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEchoServer } from '../demo/echo-server.js';
import type { Controller } from '../control/controller.js';
import type { RunOptions } from './main.js';

/** The echo backends examples/backends.yaml points at. */
export const DEMO_BACKENDS = [
  { name: 'web', port: 9101 },
  { name: 'api', port: 9102 },
  { name: 'reviews-v1', port: 9103 },
  { name: 'reviews-v2', port: 9104 },
];

interface Deps {
  runGateway(opts: RunOptions): Promise<{ stop: () => Promise<void>; adminPort: number; controller: Controller }>;
  parseRunOptions(args: string[]): RunOptions;
  waitForSignal(): Promise<void>;
}

/** examples/ next to the package (dist/src/cli/demo.js -> ../../../examples). */
export function examplesDir(): string {
  return path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../examples');
}

export async function runDemo(args: string[], deps: Deps): Promise<number> {
  const opts = deps.parseRunOptions(['--config', examplesDir(), ...args]);
  const echoes = await Promise.all(DEMO_BACKENDS.map((b) => startEchoServer({ name: b.name, port: b.port })));
  const gw = await deps.runGateway(opts);
  const http = opts.translate.httpPort;
  const https = opts.translate.httpsPort;
  const lines = [
    '',
    `meshgate demo is running (config: ${opts.configDir}, admin: http://127.0.0.1:${gw.adminPort}/)`,
    '',
    'Kubernetes Ingress (demo.example.com): two paths, TLS, HTTP -> HTTPS redirect',
    `  curl -s --resolve demo.example.com:${https}:127.0.0.1 -k https://demo.example.com:${https}/           # -> web`,
    `  curl -s --resolve demo.example.com:${https}:127.0.0.1 -k https://demo.example.com:${https}/api/users  # -> api`,
    `  curl -si -H 'Host: demo.example.com' http://127.0.0.1:${http}/                                       # 308 to https`,
    '',
    'Istio Gateway + VirtualService (shop.example.com): 90/10 canary and a header route',
    `  for i in $(seq 20); do curl -s -H 'Host: shop.example.com' http://127.0.0.1:${http}/reviews | grep -o '"name":"[^"]*"'; done | sort | uniq -c`,
    `  curl -si -H 'Host: shop.example.com' -H 'x-canary: always' http://127.0.0.1:${http}/reviews        # always reviews-v2, x-route: testers`,
    `  curl -si -H 'Host: unknown.example.com' http://127.0.0.1:${http}/                                    # 404 (no route)`,
    '',
    'Admin',
    `  curl -s http://127.0.0.1:${gw.adminPort}/ready`,
    `  curl -s http://127.0.0.1:${gw.adminPort}/config_dump | head -40`,
    `  curl -s http://127.0.0.1:${gw.adminPort}/diagnostics`,
    '',
    'Edit a file under examples/ and the change is served within a second. Ctrl-C stops.',
    '',
  ];
  process.stdout.write(lines.join('\n'));
  await deps.waitForSignal();
  await gw.stop();
  await Promise.all(echoes.map((e) => e.close()));
  return 0;
}
