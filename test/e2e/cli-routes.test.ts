/** `meshgate translate --routes` and the startup log show TCP and TLS routes, fault injection and mirrors (#12). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI, freePort, removeDir, serviceYaml, startGateway, tempDir, writeConfig } from '../helpers/gateway.js';

function config(tcpPort: number, tlsPort: number): string {
  return `apiVersion: networking.istio.io/v1
kind: Gateway
metadata: { name: gw, namespace: istio-system }
spec:
  selector: { istio: ingressgateway }
  servers:
    - port: { number: 80, name: http, protocol: HTTP }
      hosts: ["*"]
    - port: { number: ${tcpPort}, name: tcp, protocol: TCP }
      hosts: ["*"]
    - port: { number: ${tlsPort}, name: tls, protocol: TLS }
      hosts: [db.example.com]
      tls: { mode: PASSTHROUGH }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: web, namespace: default }
spec:
  hosts: [a.example.com]
  gateways: [istio-system/gw]
  http:
    - route: [{ destination: { host: web } }]
      fault: { delay: { fixedDelay: 5s, percentage: { value: 100 } }, abort: { httpStatus: 503, percentage: { value: 10 } } }
      mirror: { host: shadow }
      mirrorPercentage: { value: 50 }
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: relay, namespace: default }
spec:
  hosts: ["*"]
  gateways: [istio-system/gw]
  tcp:
    - match: [{ port: ${tcpPort} }]
      route: [{ destination: { host: web, port: { number: 80 } } }]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: { name: db, namespace: default }
spec:
  hosts: [db.example.com]
  gateways: [istio-system/gw]
  tls:
    - match: [{ port: ${tlsPort}, sniHosts: [db.example.com] }]
      route: [{ destination: { host: web, port: { number: 80 } } }]
---
${serviceYaml('web', [9])}
---
${serviceYaml('shadow', [9])}`;
}

test('translate --routes lists HTTP routes with fault and mirror, and the TCP and TLS routes', () => {
  const dir = tempDir();
  try {
    writeConfig(dir, 'all.yaml', config(31400, 15443));
    const r = spawnSync(process.execPath, [CLI, 'translate', dir, '--routes'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    const lines = r.stdout.split('\n');
    const http = lines.find((l) => l.includes('virtualservice/default/web/http/0'));
    assert.ok(http, `no HTTP route row:\n${r.stdout}`);
    assert.match(http, /fault: delay 5000ms 100%, abort 503 10%/);
    assert.match(http, /mirror: outbound\|80\|\|shadow\.default\.svc\.cluster\.local 50%/);
    const tcp = lines.find((l) => l.includes('virtualservice/default/relay/tcp/0'));
    assert.ok(tcp, `no TCP route row:\n${r.stdout}`);
    assert.match(tcp, /^31400\/TCP .*port=31400 .*-> outbound\|80\|\|web\.default\.svc\.cluster\.local/);
    const tls = lines.find((l) => l.includes('virtualservice/default/db/tls/0'));
    assert.ok(tls, `no TLS route row:\n${r.stdout}`);
    assert.match(tls, /^15443\/TLS .*sni:db\.example\.com/);
  } finally {
    removeDir(dir);
  }
});

test('the startup log names the TCP and TLS listeners and counts routes, faults and mirrors', async () => {
  const dir = tempDir();
  const [tcpPort, tlsPort] = [await freePort(), await freePort()];
  writeConfig(dir, 'all.yaml', config(tcpPort, tlsPort));
  const gw = await startGateway({ configDir: dir, workers: 0 });
  try {
    const line = gw.output().split('\n').find((l) => l.includes('"snapshot applied"'));
    assert.ok(line, gw.output());
    const rec = JSON.parse(line) as { listeners: string[]; routes: number; tcpRoutes: number; faults: number; mirrors: number };
    assert.ok(rec.listeners.includes(`TCP 127.0.0.1:${tcpPort}`), line);
    assert.ok(rec.listeners.includes(`TLS 127.0.0.1:${tlsPort}`), line);
    assert.deepEqual([rec.routes, rec.tcpRoutes, rec.faults, rec.mirrors], [1, 2, 1, 1], line);
  } finally {
    await gw.stop();
    removeDir(dir);
  }
});
