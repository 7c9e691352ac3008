/**
 * A `meshgate control` for the sidecar push lab (sidecar-push.test.ts): the real control plane
 * (CA and config push on LISTEN, config from CONFIG_DIR) whose per-proxy view is the IRSnapshot in
 * VIEW_FILE, read again at every translation (a change in CONFIG_DIR makes one). The real
 * per-proxy translation (translateSidecar, branch sc-translate) is wired into `meshgate control` at
 * merge; this program needs the push server of branch sc-push (`sidecarTranslate`).
 * Prints `{"up": grpcPort}` when serving.
 */
import { readFileSync } from 'node:fs';
import { startControlPlane, type ControlPlaneOptions } from '../../src/control/control-plane.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { Logger } from '../../src/lib/log.js';
import type { IRSnapshot } from '../../src/ir/types.js';

const [host, port] = (process.env.LISTEN ?? '127.0.0.1:15012').split(':');
const base: ControlPlaneOptions = {
  configDir: process.env.CONFIG_DIR!,
  caDir: process.env.CA_DIR!,
  listenHost: host,
  listenPort: Number(port),
  trustDomain: 'cluster.local',
  adminPort: 0,
  certTtlSeconds: 3600,
  translate: { ...DEFAULT_TRANSLATE_OPTIONS },
  log: new Logger('warn'),
};
const sidecarTranslate = () => ({ ir: JSON.parse(readFileSync(process.env.VIEW_FILE!, 'utf8')) as IRSnapshot, diagnostics: [] });
const cp = await startControlPlane({ ...base, ...({ sidecarTranslate, pushDebounce: { afterMs: 50, maxMs: 1000 } } as object) });
console.log(JSON.stringify({ up: cp.grpcPort }));
process.once('SIGTERM', () => void cp.stop().then(() => process.exit(0)));
