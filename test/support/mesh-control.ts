/**
 * A control plane for an e2e test (its own CA, config directory and ports) and the flags that make a
 * `meshgate run` gateway its mesh client, as Istio's ingress gateway (istio-system/istio-ingressgateway).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { startControlPlane, type ControlPlane } from '../../src/control/control-plane.js';
import { Logger } from '../../src/lib/log.js';
import { issueToken } from '../../src/mesh/ca/token.js';
import { DEFAULT_TRANSLATE_OPTIONS } from '../../src/translate/index.js';
import { tempDir } from '../helpers/gateway.js';

/** `meshgate control` in-process on 127.0.0.1, trust domain cluster.local, quiet. */
export function startTestControlPlane(prefix: string, certTtlSeconds: number): Promise<ControlPlane> {
  const caDir = path.join(tempDir(`${prefix}-ca-`), 'ca');
  return startControlPlane({ configDir: tempDir(`${prefix}-cp-`), caDir, listenHost: '127.0.0.1', listenPort: 0, trustDomain: 'cluster.local', adminPort: 0, certTtlSeconds, translate: { ...DEFAULT_TRANSLATE_OPTIONS }, log: new Logger('error') });
}

/**
 * `run` flags for a gateway in the mesh of `cp`: `--control`, and `--root-cert` / `--token-file`
 * written to a new directory (a token for istio-system/istio-ingressgateway, valid 1 h).
 */
export async function gatewayMeshArgs(cp: ControlPlane, prefix: string): Promise<string[]> {
  const work = tempDir(`${prefix}-gw-`);
  const tokenFile = path.join(work, 'token');
  writeFileSync(tokenFile, await issueToken(cp.ca.material.signingKey, { namespace: 'istio-system', serviceAccount: 'istio-ingressgateway' }, 3600));
  const rootFile = path.join(work, 'root-cert.pem');
  writeFileSync(rootFile, cp.ca.rootCertPem);
  return ['--control', `127.0.0.1:${cp.grpcPort}`, '--root-cert', rootFile, '--token-file', tokenFile];
}
