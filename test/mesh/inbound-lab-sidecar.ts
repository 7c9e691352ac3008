/**
 * The inbound half of a sidecar for the network-namespace lab (sidecar-inbound-lab.test.ts): run
 * under the transparent launcher (uid 1337) in a pod whose inbound traffic `meshgate capture` sends
 * to 127.0.0.1:15006, it hands every accepted connection to InboundHandler, exactly as
 * `meshgate sidecar` (branch sc-runtime) does. Its view and workload certificate come from the JSON
 * file named by INBOUND_CONFIG: `{ "ir": IRSnapshot, "identity": MeshIdentityMaterial }`.
 *
 * Prints JSON lines: `{"ready": spec, "uid"}` per listener; for each stdin line `metrics`,
 * `{"metrics": "<Prometheus text>"}`; `{"stats": InboundStats}` for `stats`.
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { InboundHandler } from '../../src/runtime/sidecar/inbound.js';
import { inheritedTransparentFds, listenTransparent } from '../../src/mesh/capture/transparent.js';
import { DEFAULT_OBSERVABILITY, Observability } from '../../src/observability/observer.js';
import { Logger } from '../../src/lib/log.js';
import type { IRSnapshot } from '../../src/ir/types.js';
import type { MeshIdentityMaterial } from '../../src/runtime/upstream/mesh-identity.js';

const config = JSON.parse(readFileSync(process.env.INBOUND_CONFIG ?? '', 'utf8')) as { ir: IRSnapshot; identity: MeshIdentityMaterial };
const obs = new Observability({ ...DEFAULT_OBSERVABILITY, metrics: true });
const handler = new InboundHandler({ identity: () => config.identity, log: new Logger('warn'), observer: obs });
handler.apply(config.ir);
for (const spec of inheritedTransparentFds().keys()) {
  await listenTransparent(net.createServer({ allowHalfOpen: true, noDelay: true }, (s) => handler.handle(s)), spec);
  console.log(JSON.stringify({ ready: spec, uid: process.getuid?.() }));
}
let buf = '';
process.stdin.setEncoding('utf8').on('data', (d: string) => {
  buf += d;
  let i: number;
  while ((i = buf.indexOf('\n')) >= 0) {
    const cmd = buf.slice(0, i).trim();
    buf = buf.slice(i + 1);
    if (cmd === 'metrics') void obs.registry.metrics().then((m) => console.log(JSON.stringify({ metrics: m })));
    else if (cmd === 'stats') console.log(JSON.stringify({ stats: handler.stats }));
  }
});
